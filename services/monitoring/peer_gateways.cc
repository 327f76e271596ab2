#include "services/monitoring/peer_gateways.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>

#include "mlops/metadata/v1/lineage.grpc.pb.h"
#include "mlops/metadata/v1/registry.grpc.pb.h"
#include "mlops/scheduler/v1/scheduler.grpc.pb.h"
#include "services/artifact/client/artifact_client.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::monitoring {
namespace {

class ArtifactSource final : public DatasetSource {
 public:
  ArtifactSource(ChannelForProject channels, std::string work_dir)
      : channels_(std::move(channels)), work_dir_(std::move(work_dir)) {}

  absl::StatusOr<Dataset> Read(const std::string& ref) override {
    size_t at = ref.find('@');
    std::string dataset = ref.substr(0, at),
                version = at == std::string::npos ? "" : ref.substr(at + 1);
    std::string dir = StrCat(work_dir_, "/", NewId());
    artifact::ClientOptions options;
    options.sync_downloads = false;  // a scratch copy
    // Read in the dataset's project: its version and the content that project sees.
    ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, Channel(ProjectOf(dataset)));
    artifact::ArtifactClient client(std::move(channel), options);
    auto pulled = client.Pull(dataset, version, dir, nullptr);
    Dataset result;
    absl::Status status = pulled.status();
    if (status.ok()) {
      result.resolved = StrCat(dataset, "@", pulled->version.digest());
      std::vector<std::string> files;
      for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
        std::string ext = entry.path().extension().string();
        if (entry.is_regular_file() && (ext == ".csv" || ext == ".mlcol")) {
          files.push_back(entry.path().string());
        }
      }
      std::sort(files.begin(), files.end());
      for (const std::string& file : files) {
        auto table = Table::ReadFile(file);
        if (!table.ok()) {
          status = table.status();
          break;
        }
        result.tables.push_back(std::move(*table));
        result.files.push_back(std::filesystem::relative(file, dir).string());
      }
      if (status.ok() && result.tables.empty()) {
        status = absl::InvalidArgumentError("dataset " + ref + " holds no .csv or .mlcol file");
      }
    }
    // The tables map or copied what they need; the files go (a mapping stays valid after unlink).
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    if (!status.ok()) return status;
    return result;
  }

  absl::StatusOr<Dataset> ReadBlob(const std::string& project, const std::string& digest,
                                   const std::string& file_name) override {
    const std::string ext = std::filesystem::path(file_name).extension().string();
    if (ext != ".csv" && ext != ".mlcol") {
      return absl::InvalidArgumentError("blob_name " + file_name +
                                        ": a .csv or .mlcol file is what can be validated");
    }
    std::string dir = StrCat(work_dir_, "/", NewId());
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    const std::string file = dir + "/data" + ext;
    ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, Channel(project));
    artifact::ClientOptions options;
    options.sync_downloads = false;  // a scratch copy
    artifact::ArtifactClient client(std::move(channel), options);
    absl::Status status = client.DownloadToFile(digest, file, nullptr);
    Dataset result;
    if (status.ok()) {
      auto table = Table::ReadFile(file);
      status = table.status();
      if (table.ok()) {
        result.resolved = "blob:" + digest;
        result.tables.push_back(std::move(*table));
        result.files.push_back(std::filesystem::path(file_name).filename().string());
      }
    }
    std::filesystem::remove_all(dir, ec);
    if (!status.ok()) return status;
    return result;
  }

 private:
  // The channel of `project`, made on first use (at most kMaxChannels kept).
  absl::StatusOr<std::shared_ptr<grpc::Channel>> Channel(std::string_view project) {
    std::lock_guard lock(mu_);
    auto it = by_project_.find(project);
    if (it != by_project_.end()) return it->second;
    ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, channels_(std::string(project)));
    if (by_project_.size() >= kMaxChannels) by_project_.clear();
    by_project_.emplace(project, channel);
    return channel;
  }

  static constexpr size_t kMaxChannels = 256;
  ChannelForProject channels_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>, std::less<>> by_project_;
  std::string work_dir_;
};

class RegistryResolver final : public ModelResolver {
 public:
  explicit RegistryResolver(std::shared_ptr<grpc::Channel> channel)
      : stub_(metadata::v1::ModelRegistry::NewStub(channel)) {}

  absl::StatusOr<int64_t> Resolve(const std::string& model, const std::string& version) override {
    ASSIGN_OR_RETURN(ModelVersionRef ref, Describe(model, version));
    return ref.version;
  }

  absl::Status RecordBlessing(const std::string& model, int64_t version,
                              const v1::Evaluation& evaluation) override {
    metadata::v1::SetBlessingRequest request;
    request.set_name(model);
    request.set_version(version);
    metadata::v1::Blessing* blessing = request.mutable_blessing();
    const v1::Verdict& verdict = evaluation.verdict();
    blessing->set_blessed(verdict.blessed());
    blessing->set_evaluation_id(evaluation.id());
    for (const auto& rule : verdict.failed()) blessing->add_failed(rule);
    for (const auto& rule : verdict.passed()) blessing->add_passed(rule);
    for (const auto& rule : verdict.policy()) blessing->add_policy(rule);
    blessing->set_champion_version(verdict.champion_version());
    metadata::v1::ModelVersion updated;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return FromGrpcStatus(stub_->SetBlessing(&context, request, &updated));
  }

  absl::StatusOr<ModelVersionRef> Describe(const std::string& model,
                                           const std::string& version) override {
    metadata::v1::GetModelVersionRequest get;
    get.set_name(model);
    char* end = nullptr;
    int64_t number = std::strtoll(version.c_str(), &end, 10);
    if (!version.empty() && *end == '\0') {
      get.set_version(number);
    } else if (!version.empty()) {
      get.set_alias(version);
    } else {
      // The latest version: the registered model knows its number.
      metadata::v1::GetRegisteredModelRequest model_request;
      model_request.set_name(model);
      metadata::v1::RegisteredModel registered;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      grpc::Status status = stub_->GetRegisteredModel(&context, model_request, &registered);
      if (!status.ok()) return FromGrpcStatus(status);
      if (registered.latest_version() == 0) {
        return absl::NotFoundError("model " + model + " has no version yet");
      }
      get.set_version(registered.latest_version());
    }
    metadata::v1::ModelVersion found;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status status = stub_->GetModelVersion(&context, get, &found);
    if (!status.ok()) return FromGrpcStatus(status);
    ModelVersionRef ref;
    ref.version = found.version();
    ref.artifact_id = found.artifact_id();
    ref.artifact_digest = found.artifact_digest();
    return ref;
  }

 private:
  std::unique_ptr<metadata::v1::ModelRegistry::Stub> stub_;
};

class SchedulerTrigger final : public RetrainTrigger {
 public:
  explicit SchedulerTrigger(std::shared_ptr<grpc::Channel> channel)
      : stub_(scheduler::v1::SchedulerService::NewStub(channel)) {}

  absl::StatusOr<std::string> Submit(const RetrainRequest& request) override {
    scheduler::v1::SubmitPipelineRequest submit;
    submit.set_spec_yaml(request.spec_yaml);
    for (const auto& [k, v] : request.params) (*submit.mutable_params())[k] = v;
    submit.set_queue(request.queue);
    submit.set_request_id(request.request_id);
    submit.set_project(request.project);
    scheduler::v1::PipelineRun run;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status status = stub_->SubmitPipeline(&context, submit, &run);
    if (!status.ok()) return FromGrpcStatus(status);
    return run.id();
  }

 private:
  std::unique_ptr<scheduler::v1::SchedulerService::Stub> stub_;
};

class LineageServiceRecorder final : public LineageRecorder {
 public:
  explicit LineageServiceRecorder(std::shared_ptr<grpc::Channel> channel)
      : stub_(metadata::v1::LineageService::NewStub(channel)) {}

  absl::StatusOr<int64_t> RecordValidation(const v1::ValidationReport& report) override {
    namespace mv1 = metadata::v1;
    const bool blob = !report.blob().empty();
    // A dataset's report is in its project; a blob's id carries the project it was read in.
    ASSIGN_OR_RETURN(ScopedName scoped,
                     ParseScoped("dataset", blob ? report.id() : report.dataset()));
    const std::string dataset = blob ? "blob:" + report.blob() : scoped.name;
    if (blob) RETURN_IF_ERROR(RegisterStepOutputType(scoped.project));
    mv1::PutExecutionRequest request;
    request.set_project(scoped.project);
    mv1::Execution* execution = request.mutable_execution();
    execution->set_type("Validate");
    execution->set_name("validate " + dataset.substr(0, dataset.find('@')));
    execution->set_state(mv1::Execution::COMPLETE);
    execution->set_external_id("validation:" + report.id());
    auto* input = request.add_artifacts();
    input->set_event_type(mv1::Event::INPUT);
    input->set_path("dataset");
    if (blob) {
      // The node the scheduler records for a step's output (metadata_gateway.cc).
      input->mutable_artifact()->set_type("StepOutput");
      input->mutable_artifact()->set_external_id(dataset);
      input->mutable_artifact()->set_digest(report.blob());
    } else {
      input->mutable_artifact()->set_type("Dataset");
      input->mutable_artifact()->set_name(dataset);
      input->mutable_artifact()->set_external_id("dataset:" + dataset);
      input->mutable_artifact()->set_digest(dataset.substr(dataset.rfind('@') + 1));
    }
    auto* output = request.add_artifacts();
    output->set_event_type(mv1::Event::OUTPUT);
    output->set_path("validation");
    mv1::Artifact* stats = output->mutable_artifact();
    stats->set_type("Statistics");
    stats->set_name("validation of " + dataset);
    stats->set_external_id("validation:" + report.id());
    stats->set_uri("validation:" + report.id());
    auto& props = *stats->mutable_custom_properties();
    props["kind"].set_string_value("validation");
    props["report"].set_string_value(report.id());
    props["valid"].set_bool_value(report.valid());
    props["anomalies"].set_int_value(report.anomalies_size());
    props["rows"].set_int_value(static_cast<int64_t>(report.rows()));
    if (!report.schema().empty()) {
      props["schema"].set_string_value(
          StrCat(report.schema(), "@", std::to_string(report.schema_version())));
    }
    mv1::PutExecutionResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status status = stub_->PutExecution(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    if (response.artifact_ids_size() < 2) return absl::InternalError("no artifact id returned");
    return response.artifact_ids(1);
  }

  absl::StatusOr<int64_t> RecordEvaluation(const v1::Evaluation& evaluation,
                                           int64_t model_artifact_id) override {
    namespace mv1 = metadata::v1;
    ASSIGN_OR_RETURN(ScopedName model, ParseScoped("model", evaluation.model()));
    ASSIGN_OR_RETURN(ScopedName dataset, ParseScoped("dataset", evaluation.dataset()));
    mv1::PutExecutionRequest request;
    request.set_project(model.project);
    mv1::Execution* execution = request.mutable_execution();
    execution->set_type("Evaluate");
    execution->set_name(
        StrCat("evaluate ", model.name, " v", std::to_string(evaluation.model_version())));
    execution->set_state(mv1::Execution::COMPLETE);
    execution->set_external_id("evaluation:" + evaluation.id());
    if (model_artifact_id > 0) {
      auto* input = request.add_artifacts();
      input->set_event_type(mv1::Event::INPUT);
      input->set_path("model");
      input->mutable_artifact()->set_id(model_artifact_id);
    }
    auto* data = request.add_artifacts();
    data->set_event_type(mv1::Event::INPUT);
    data->set_path("dataset");
    data->mutable_artifact()->set_type("Dataset");
    data->mutable_artifact()->set_name(dataset.name);
    data->mutable_artifact()->set_external_id("dataset:" + dataset.name);
    data->mutable_artifact()->set_digest(dataset.name.substr(dataset.name.rfind('@') + 1));
    auto* output = request.add_artifacts();
    output->set_event_type(mv1::Event::OUTPUT);
    output->set_path("evaluation");
    mv1::Artifact* metrics = output->mutable_artifact();
    metrics->set_type("Metrics");
    metrics->set_name(
        StrCat("evaluation of ", model.name, " v", std::to_string(evaluation.model_version())));
    metrics->set_external_id("evaluation:" + evaluation.id());
    metrics->set_uri("evaluation:" + evaluation.id());
    auto& props = *metrics->mutable_custom_properties();
    props["kind"].set_string_value("evaluation");
    props["evaluation"].set_string_value(evaluation.id());
    props["model"].set_string_value(model.name);
    props["model_version"].set_int_value(evaluation.model_version());
    props["rows"].set_int_value(static_cast<int64_t>(evaluation.overall().count()));
    const v1::ModelMetrics& overall = evaluation.overall();
    if (evaluation.task() == "regression") {
      props["rmse"].set_double_value(overall.rmse());
      props["r2"].set_double_value(overall.r2());
    } else {
      props["accuracy"].set_double_value(overall.accuracy());
      props["macro_f1"].set_double_value(overall.macro_f1());
      if (overall.has_roc_auc()) props["roc_auc"].set_double_value(overall.roc_auc());
    }
    mv1::PutExecutionResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status status = stub_->PutExecution(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    if (response.artifact_ids_size() == 0) return absl::InternalError("no artifact id returned");
    return response.artifact_ids(response.artifact_ids_size() - 1);
  }

 private:
  // The scheduler's type of a step's output, in `project` (PutType of an identical type is OK).
  absl::Status RegisterStepOutputType(const std::string& project) {
    metadata::v1::PutTypeRequest request;
    request.mutable_type()->set_kind(metadata::v1::ARTIFACT);
    request.mutable_type()->set_name(Qualify(project, "StepOutput"));
    metadata::v1::NodeType type;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return FromGrpcStatus(stub_->PutType(&context, request, &type));
  }

  std::unique_ptr<metadata::v1::LineageService::Stub> stub_;
};

}  // namespace

std::unique_ptr<LineageRecorder> LineageServiceRecorderFor(
    std::shared_ptr<grpc::Channel> metadata) {
  if (metadata == nullptr) return nullptr;
  return std::make_unique<LineageServiceRecorder>(std::move(metadata));
}

std::unique_ptr<DatasetSource> ArtifactDatasetSource(ChannelForProject artifact,
                                                     std::string work_dir) {
  if (artifact == nullptr) return nullptr;
  return std::make_unique<ArtifactSource>(std::move(artifact), std::move(work_dir));
}

std::unique_ptr<ModelResolver> RegistryModelResolver(std::shared_ptr<grpc::Channel> metadata) {
  if (metadata == nullptr) return nullptr;
  return std::make_unique<RegistryResolver>(std::move(metadata));
}

std::unique_ptr<RetrainTrigger> SchedulerRetrainTrigger(std::shared_ptr<grpc::Channel> scheduler) {
  if (scheduler == nullptr) return nullptr;
  return std::make_unique<SchedulerTrigger>(std::move(scheduler));
}

}  // namespace mlops::monitoring
