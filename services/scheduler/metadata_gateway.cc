#include "services/scheduler/metadata_gateway.h"

#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::scheduler {

namespace mv1 = ::mlops::metadata::v1;

namespace {
// Projects whose stubs are kept at most: beyond, the map starts again (calls under way keep
// theirs).
constexpr size_t kMaxProjects = 256;

// The pipeline run's id within its project (request ids, external ids and names are the
// project's own: they carry no prefix).
std::string RunInProject(const StepRecord& step) {
  absl::StatusOr<ScopedName> scoped = ParseScoped("pipeline_run", step.pipeline_run);
  return scoped.ok() ? scoped->name : step.pipeline_run;
}

}  // namespace

ClientMetadataGateway::ClientMetadataGateway(ChannelForProject channels)
    : channels_(std::move(channels)) {}

absl::StatusOr<std::shared_ptr<ClientMetadataGateway::Project>> ClientMetadataGateway::For(
    std::string_view project) {
  std::lock_guard lock(mu_);
  auto it = projects_.find(std::string(project));
  if (it != projects_.end()) return it->second;
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, channels_(std::string(project)));
  if (projects_.size() >= kMaxProjects) {
    projects_.clear();
    experiments_.clear();
  }
  auto stubs = std::make_shared<Project>();
  stubs->tracking = mv1::MetadataService::NewStub(channel);
  stubs->lineage = mv1::LineageService::NewStub(channel);
  projects_[std::string(project)] = stubs;
  return stubs;
}

absl::StatusOr<std::string> ClientMetadataGateway::ExperimentId(Project& stubs,
                                                                const std::string& project,
                                                                const std::string& pipeline) {
  const std::string key = StrCat(project, "\n", pipeline);
  {
    std::lock_guard lock(mu_);
    auto it = experiments_.find(key);
    if (it != experiments_.end()) return it->second;
  }
  std::string name = "pipeline-" + pipeline;
  mv1::Experiment experiment;
  {
    grpc::ClientContext context;
    mv1::CreateExperimentRequest request;
    request.set_name(name);
    request.set_description("runs of the steps of pipeline " + pipeline);
    grpc::Status status = stubs.tracking->CreateExperiment(&context, request, &experiment);
    if (status.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
      grpc::ClientContext get_context;
      mv1::GetExperimentByNameRequest get;
      get.set_name(name);
      RETURN_IF_ERROR(
          FromGrpcStatus(stubs.tracking->GetExperimentByName(&get_context, get, &experiment)));
    } else {
      RETURN_IF_ERROR(FromGrpcStatus(status));
    }
  }
  std::lock_guard lock(mu_);
  experiments_[key] = experiment.id();
  return experiment.id();
}

absl::StatusOr<std::string> ClientMetadataGateway::StartRun(const StepRecord& step) {
  ASSIGN_OR_RETURN(std::shared_ptr<Project> stubs, For(step.project));
  ASSIGN_OR_RETURN(std::string experiment, ExperimentId(*stubs, step.project, step.pipeline));
  mv1::CreateRunRequest request;
  request.set_experiment_id(experiment);
  request.set_name(StrCat(step.step, "#", std::to_string(step.attempt)));
  for (const auto& [k, v] : step.params) (*request.mutable_params())[k] = v;
  (*request.mutable_tags())["mlops.pipeline_run"] = step.pipeline_run;
  (*request.mutable_tags())["mlops.step"] = step.step;
  (*request.mutable_tags())["mlops.attempt"] = std::to_string(step.attempt);
  for (const auto& arg : step.command) request.mutable_source()->add_command(arg);
  for (const auto& [name, digest] : step.inputs) {
    auto* input = request.mutable_source()->add_inputs();
    input->set_name(name);
    input->set_digest(digest);
  }
  // One tracking run per attempt, even when the call is retried.
  request.set_request_id(
      StrCat(RunInProject(step), "/", step.step, "/", std::to_string(step.attempt)));
  mv1::Run run;
  grpc::ClientContext context;
  RETURN_IF_ERROR(FromGrpcStatus(stubs->tracking->CreateRun(&context, request, &run)));
  return run.id();
}

absl::Status ClientMetadataGateway::LogMetrics(const std::string& run_id,
                                               const std::vector<MetricPoint>& points) {
  if (points.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::shared_ptr<Project> stubs, For(ProjectOf(run_id)));
  mv1::LogBatchRequest batch;
  batch.set_run_id(run_id);
  int64_t now = NowMs();
  for (const MetricPoint& point : points) {
    mv1::Metric* metric = batch.add_metrics();
    metric->set_key(point.key);
    metric->set_value(point.value);
    metric->set_step(point.step);
    metric->set_timestamp_ms(now);
  }
  mv1::LogBatchResponse response;
  grpc::ClientContext context;
  return FromGrpcStatus(stubs->tracking->LogBatch(&context, batch, &response));
}

absl::Status ClientMetadataGateway::FinishRun(const std::string& run_id, const StepRecord& step,
                                              bool succeeded) {
  ASSIGN_OR_RETURN(std::shared_ptr<Project> stubs, For(step.project));
  {
    mv1::UpdateRunRequest request;
    request.mutable_run()->set_id(run_id);
    request.mutable_run()->set_status(succeeded ? mv1::FINISHED : mv1::FAILED);
    request.mutable_update_mask()->add_paths("status");
    mv1::Run run;
    grpc::ClientContext context;
    RETURN_IF_ERROR(FromGrpcStatus(stubs->tracking->UpdateRun(&context, request, &run)));
  }
  if (!succeeded) return absl::OkStatus();
  if (!stubs->types_registered) {
    for (auto [kind, name] :
         {std::pair{mv1::EXECUTION, "PipelineStep"}, std::pair{mv1::ARTIFACT, "StepOutput"}}) {
      mv1::PutTypeRequest request;
      request.mutable_type()->set_kind(kind);
      request.mutable_type()->set_name(name);
      mv1::NodeType type;
      grpc::ClientContext context;
      RETURN_IF_ERROR(FromGrpcStatus(stubs->lineage->PutType(&context, request, &type)));
    }
    stubs->types_registered = true;
  }
  mv1::PutExecutionRequest request;
  mv1::Execution* execution = request.mutable_execution();
  execution->set_type("PipelineStep");
  execution->set_name(step.step);
  execution->set_state(mv1::Execution::COMPLETE);
  execution->set_run_id(run_id);
  execution->set_external_id(
      StrCat(RunInProject(step), "/", step.step, "/", std::to_string(step.attempt)));
  if (!step.image.empty()) {
    (*execution->mutable_custom_properties())["image"].set_string_value(step.image);
  }
  if (!step.image_id.empty()) {
    (*execution->mutable_custom_properties())["image_id"].set_string_value(step.image_id);
  }
  auto artifact = [&](const std::string& ref, mv1::Event::Type type, const std::string& path) {
    auto* entry = request.add_artifacts();
    entry->set_event_type(type);
    entry->set_path(path);
    mv1::Artifact* a = entry->mutable_artifact();
    if (ref.rfind("dataset:", 0) == 0) {
      a->set_type("Dataset");
      a->set_name(ref.substr(8));
      a->set_external_id(ref);
      a->set_digest(ref.substr(ref.rfind('@') + 1));
    } else {
      a->set_type("StepOutput");
      a->set_external_id("blob:" + ref);
      a->set_digest(ref);
    }
  };
  for (const auto& [name, ref] : step.inputs) artifact(ref, mv1::Event::INPUT, name);
  for (const auto& [name, ref] : step.outputs) artifact(ref, mv1::Event::OUTPUT, name);
  for (const auto& [name, digest] : step.logs) {
    auto* entry = request.add_artifacts();
    entry->set_event_type(mv1::Event::OUTPUT);
    entry->set_path("logs/" + name);
    entry->mutable_artifact()->set_type("Logs");
    entry->mutable_artifact()->set_name(name);
    entry->mutable_artifact()->set_external_id("logs:" + digest);
    entry->mutable_artifact()->set_digest(digest);
  }
  mv1::Context* context_node = request.add_contexts();
  context_node->set_type("PipelineRun");
  context_node->set_name(RunInProject(step));
  mv1::PutExecutionResponse response;
  grpc::ClientContext context;
  return FromGrpcStatus(stubs->lineage->PutExecution(&context, request, &response));
}

}  // namespace mlops::scheduler
