#include "services/common/rpc_guard.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <set>
#include <unordered_map>
#include <vector>

namespace mlops {

std::string_view AccessName(Access access) {
  switch (access) {
    case Access::kAuthenticated:
      return "authenticated";
    case Access::kViewer:
      return "viewer";
    case Access::kEditor:
      return "editor";
    case Access::kAdmin:
      return "admin";
    case Access::kOperator:
      return "operator";
  }
  return "?";
}

namespace {

// The one table of what every RPC needs (docs/security.md prints it). Reading needs viewer;
// changing runs, datasets, models, lineage and pipelines needs editor; deleting experiments and
// model versions, and pinning blobs, needs admin; what acts on the whole store (GC, scrub, listing
// every blob) or configures it (queues) needs the global operator role.
constexpr MethodAccess kAccessTable[] = {
    // Every server's audit log: the entries of the request's project (every project's when the
    // request names none: today every request acts in project default).
    {"/mlops.audit.v1.AuditService/ListAuditEntries", Access::kAdmin, false},
    {"/mlops.artifact.v1.ArtifactService/StartUpload", Access::kEditor, true},
    {"/mlops.artifact.v1.ArtifactService/FindMissingChunks", Access::kEditor, false},
    {"/mlops.artifact.v1.ArtifactService/UploadChunks", Access::kEditor, true},
    {"/mlops.artifact.v1.ArtifactService/CommitBlobs", Access::kEditor, true},
    {"/mlops.artifact.v1.ArtifactService/FinishUpload", Access::kEditor, true},
    {"/mlops.artifact.v1.ArtifactService/FindMissingBlobs", Access::kEditor, false},
    {"/mlops.artifact.v1.ArtifactService/StatBlob", Access::kViewer, false},
    {"/mlops.artifact.v1.ArtifactService/ListBlobs", Access::kOperator, false},
    {"/mlops.artifact.v1.ArtifactService/Download", Access::kViewer, false},
    {"/mlops.artifact.v1.ArtifactService/SetBlobPinned", Access::kAdmin, true},
    {"/mlops.artifact.v1.ArtifactService/CreateDataset", Access::kEditor, true},
    {"/mlops.artifact.v1.ArtifactService/GetDataset", Access::kViewer, false},
    {"/mlops.artifact.v1.ArtifactService/ListDatasets", Access::kViewer, false},
    {"/mlops.artifact.v1.ArtifactService/CreateVersion", Access::kEditor, true},
    {"/mlops.artifact.v1.ArtifactService/GetVersion", Access::kViewer, false},
    {"/mlops.artifact.v1.ArtifactService/ListVersions", Access::kViewer, false},
    {"/mlops.artifact.v1.ArtifactService/ListVersionEntries", Access::kViewer, false},
    {"/mlops.artifact.v1.ArtifactService/DiffVersions", Access::kViewer, false},
    {"/mlops.artifact.v1.ArtifactService/TagVersion", Access::kEditor, true},
    {"/mlops.artifact.v1.ArtifactService/Scrub", Access::kOperator, true},
    {"/mlops.artifact.v1.ArtifactService/GarbageCollect", Access::kOperator, true},
    {"/mlops.metadata.v1.LineageService/PutType", Access::kEditor, true},
    {"/mlops.metadata.v1.LineageService/GetType", Access::kViewer, false},
    {"/mlops.metadata.v1.LineageService/ListTypes", Access::kViewer, false},
    {"/mlops.metadata.v1.LineageService/PutArtifact", Access::kEditor, true},
    {"/mlops.metadata.v1.LineageService/GetArtifact", Access::kViewer, false},
    {"/mlops.metadata.v1.LineageService/ListArtifacts", Access::kViewer, false},
    {"/mlops.metadata.v1.LineageService/PutExecution", Access::kEditor, true},
    {"/mlops.metadata.v1.LineageService/PutExecutionStream", Access::kEditor, true},
    {"/mlops.metadata.v1.LineageService/GetExecution", Access::kViewer, false},
    {"/mlops.metadata.v1.LineageService/ListExecutions", Access::kViewer, false},
    {"/mlops.metadata.v1.LineageService/PutContext", Access::kEditor, true},
    {"/mlops.metadata.v1.LineageService/GetContext", Access::kViewer, false},
    {"/mlops.metadata.v1.LineageService/ListContexts", Access::kViewer, false},
    {"/mlops.metadata.v1.LineageService/AddParentContext", Access::kEditor, true},
    {"/mlops.metadata.v1.LineageService/GetContextMembers", Access::kViewer, false},
    {"/mlops.metadata.v1.LineageService/GetLineage", Access::kViewer, false},
    {"/mlops.metadata.v1.MetadataService/CreateExperiment", Access::kEditor, true},
    {"/mlops.metadata.v1.MetadataService/GetExperiment", Access::kViewer, false},
    {"/mlops.metadata.v1.MetadataService/GetExperimentByName", Access::kViewer, false},
    {"/mlops.metadata.v1.MetadataService/ListExperiments", Access::kViewer, false},
    {"/mlops.metadata.v1.MetadataService/UpdateExperiment", Access::kEditor, true},
    {"/mlops.metadata.v1.MetadataService/DeleteExperiment", Access::kAdmin, true},
    {"/mlops.metadata.v1.MetadataService/RestoreExperiment", Access::kAdmin, true},
    {"/mlops.metadata.v1.MetadataService/CreateRun", Access::kEditor, true},
    {"/mlops.metadata.v1.MetadataService/GetRun", Access::kViewer, false},
    {"/mlops.metadata.v1.MetadataService/UpdateRun", Access::kEditor, true},
    {"/mlops.metadata.v1.MetadataService/DeleteRun", Access::kEditor, true},
    {"/mlops.metadata.v1.MetadataService/RestoreRun", Access::kEditor, true},
    {"/mlops.metadata.v1.MetadataService/LogBatch", Access::kEditor, true},
    {"/mlops.metadata.v1.MetadataService/LogStream", Access::kEditor, true},
    {"/mlops.metadata.v1.MetadataService/DeleteTag", Access::kEditor, true},
    {"/mlops.metadata.v1.MetadataService/GetMetricHistory", Access::kViewer, false},
    {"/mlops.metadata.v1.MetadataService/SearchRuns", Access::kViewer, false},
    {"/mlops.metadata.v1.ModelRegistry/CreateRegisteredModel", Access::kEditor, true},
    {"/mlops.metadata.v1.ModelRegistry/GetRegisteredModel", Access::kViewer, false},
    {"/mlops.metadata.v1.ModelRegistry/ListRegisteredModels", Access::kViewer, false},
    {"/mlops.metadata.v1.ModelRegistry/UpdateRegisteredModel", Access::kEditor, true},
    {"/mlops.metadata.v1.ModelRegistry/CreateModelVersion", Access::kEditor, true},
    {"/mlops.metadata.v1.ModelRegistry/GetModelVersion", Access::kViewer, false},
    {"/mlops.metadata.v1.ModelRegistry/ListModelVersions", Access::kViewer, false},
    {"/mlops.metadata.v1.ModelRegistry/UpdateModelVersion", Access::kEditor, true},
    {"/mlops.metadata.v1.ModelRegistry/DeleteModelVersion", Access::kAdmin, true},
    {"/mlops.metadata.v1.ModelRegistry/SetAlias", Access::kEditor, true},
    {"/mlops.metadata.v1.ModelRegistry/DeleteAlias", Access::kEditor, true},
    {"/mlops.metadata.v1.ModelRegistry/GetAliasHistory", Access::kViewer, false},
    {"/mlops.monitoring.v1.MonitoringService/CreateProfile", Access::kEditor, true},
    {"/mlops.monitoring.v1.MonitoringService/GetProfile", Access::kViewer, false},
    {"/mlops.monitoring.v1.MonitoringService/ListProfiles", Access::kViewer, false},
    {"/mlops.monitoring.v1.MonitoringService/CreateMonitor", Access::kEditor, true},
    {"/mlops.monitoring.v1.MonitoringService/GetMonitor", Access::kViewer, false},
    {"/mlops.monitoring.v1.MonitoringService/ListMonitors", Access::kViewer, false},
    {"/mlops.monitoring.v1.MonitoringService/IngestSamples", Access::kEditor, true},
    {"/mlops.monitoring.v1.MonitoringService/IngestFeedback", Access::kEditor, true},
    {"/mlops.monitoring.v1.MonitoringService/EvaluateDataset", Access::kEditor, true},
    {"/mlops.monitoring.v1.MonitoringService/ListReports", Access::kViewer, false},
    {"/mlops.monitoring.v1.MonitoringService/ListAlerts", Access::kViewer, false},
    {"/mlops.monitoring.v1.MonitoringService/AcknowledgeAlert", Access::kEditor, true},
    {"/mlops.scheduler.v1.SchedulerService/SubmitPipeline", Access::kEditor, true},
    {"/mlops.scheduler.v1.SchedulerService/GetPipelineRun", Access::kViewer, false},
    {"/mlops.scheduler.v1.SchedulerService/ListPipelineRuns", Access::kViewer, false},
    {"/mlops.scheduler.v1.SchedulerService/CancelPipelineRun", Access::kEditor, true},
    {"/mlops.scheduler.v1.SchedulerService/RetryPipelineRun", Access::kEditor, true},
    {"/mlops.scheduler.v1.SchedulerService/WatchPipelineRun", Access::kViewer, false},
    {"/mlops.scheduler.v1.SchedulerService/GetStepLogs", Access::kViewer, false},
    {"/mlops.scheduler.v1.SchedulerService/CreateSchedule", Access::kEditor, true},
    {"/mlops.scheduler.v1.SchedulerService/ListSchedules", Access::kViewer, false},
    {"/mlops.scheduler.v1.SchedulerService/DeleteSchedule", Access::kEditor, true},
    {"/mlops.scheduler.v1.SchedulerService/PutQueue", Access::kOperator, true},
    {"/mlops.scheduler.v1.SchedulerService/ListQueues", Access::kAuthenticated, false},
    {"/mlops.scheduler.v1.SchedulerService/ReportAttempt", Access::kEditor, true},
    {"/mlops.scheduler.v1.SchedulerService/ReportCheckpoint", Access::kEditor, true},
};

thread_local std::string t_call_subject;

}  // namespace

std::span<const MethodAccess> AccessTable() { return kAccessTable; }

const MethodAccess* FindMethodAccess(std::string_view method) {
  static const auto* by_method = [] {
    auto* out = new std::unordered_map<std::string_view, const MethodAccess*>();
    for (const MethodAccess& entry : kAccessTable) (*out)[entry.method] = &entry;
    return out;
  }();
  auto it = by_method->find(method);
  return it == by_method->end() ? nullptr : it->second;
}

std::string RequestResource(const google::protobuf::Message* request) {
  if (request == nullptr) return "";
  const google::protobuf::Descriptor* descriptor = request->GetDescriptor();
  const google::protobuf::Reflection* reflection = request->GetReflection();
  std::string out;
  int fields = 0;
  for (int i = 0; i < descriptor->field_count() && fields < 6; ++i) {
    const google::protobuf::FieldDescriptor* field = descriptor->field(i);
    if (field->is_repeated() || field->type() != google::protobuf::FieldDescriptor::TYPE_STRING) {
      continue;
    }
    const std::string& name = field->name();
    auto ends_with = [&](std::string_view suffix) {
      return name.size() >= suffix.size() &&
             std::string_view(name).substr(name.size() - suffix.size()) == suffix;
    };
    static const std::set<std::string_view> kNames = {
        "name", "id",    "dataset",  "model",   "alias",   "digest", "version",
        "tag",  "queue", "pipeline", "monitor", "profile", "parent"};
    if (!kNames.contains(name) && !ends_with("_id") && !ends_with("_name")) continue;
    std::string value = reflection->GetString(*request, field);
    if (value.empty()) continue;
    if (value.size() > 128) {
      size_t cut = 128;  // at a UTF-8 character boundary: audit entries are proto3 strings
      while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
      value = value.substr(0, cut) + "...";
    }
    if (!out.empty()) out += " ";
    out += name + "=" + value;
    ++fields;
  }
  return out;
}

void RpcGuard::KeepCallRecord(const grpc::ServerContextBase* context, CallRecord record) {
  std::lock_guard lock(records_mu_);
  records_[context] = std::move(record);
}

std::optional<CallRecord> RpcGuard::TakeCallRecord(const grpc::ServerContextBase* context) {
  std::lock_guard lock(records_mu_);
  auto it = records_.find(context);
  if (it == records_.end()) return std::nullopt;
  CallRecord out = std::move(it->second);
  records_.erase(it);
  return out;
}

std::string TakeCallSubject() {
  std::string out = std::move(t_call_subject);
  t_call_subject.clear();
  return out;
}

std::string_view RequestProject(const google::protobuf::Message* request) {
  (void)request;
  return kDefaultProject;
}

RpcGuard::RpcGuard(prometheus::Registry& registry, Options options)
    : options_(std::move(options)),
      refused_(&prometheus::BuildCounter()
                    .Name("mlops_rpc_refused_total")
                    .Help("RPCs refused by the guard before they ran, by method and code "
                          "(UNAUTHENTICATED, PERMISSION_DENIED)")
                    .Register(registry)) {}

grpc::Status RpcGuard::Admit(const grpc::ServerContextBase& context, std::string_view method,
                             const google::protobuf::Message* request, Principal* principal) {
  const MethodAccess* access = FindMethodAccess(method);
  if (!options_.authenticator) {
    principal->subject = "anonymous";
    return grpc::Status::OK;
  }
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "this server requires a bearer token (metadata authorization: Bearer "
                        "<token>; the CLI reads --token or MLOPS_TOKEN)");
  }
  std::string_view value(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (value.size() <= kBearer.size() || value.substr(0, kBearer.size()) != kBearer) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "the authorization metadata must be \"Bearer <token>\"");
  }
  std::string_view token = value.substr(kBearer.size());
  const std::string& internal = options_.internal_token;
  if (!internal.empty() && token.size() == internal.size() &&
      CRYPTO_memcmp(token.data(), internal.data(), token.size()) == 0) {
    principal->subject = "mlops-internal";
    principal->is_operator = true;
    principal->grants = {{std::string(kEveryProject), Role::kAdmin}};
    return grpc::Status::OK;
  }
  absl::StatusOr<Principal> authenticated = options_.authenticator->Authenticate(token);
  if (!authenticated.ok()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        std::string(authenticated.status().message()));
  }
  *principal = std::move(*authenticated);
  if (access == nullptr) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        std::string(method) + " is in no access table: denied");
  }
  auto denied = [&](std::string need) {
    return grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        principal->subject + " may not call " + std::string(method) + ": it needs " + need);
  };
  switch (access->access) {
    case Access::kAuthenticated:
      return grpc::Status::OK;
    case Access::kOperator:
      return principal->is_operator ? grpc::Status::OK : denied("the operator role");
    case Access::kViewer:
    case Access::kEditor:
    case Access::kAdmin: {
      std::string_view project = RequestProject(request);
      Role need = access->access == Access::kViewer   ? Role::kViewer
                  : access->access == Access::kEditor ? Role::kEditor
                                                      : Role::kAdmin;
      if (principal->RoleIn(project) >= need) return grpc::Status::OK;
      return denied(std::string(RoleName(need)) + " in project " + std::string(project));
    }
  }
  return denied("an access the table does not define");
}

RpcGuard::Call::Call(RpcGuard* guard, grpc::ServerContextBase* context, const char* method,
                     const google::protobuf::Message* request) {
  refusal_ = guard->Admit(*context, method, request, &principal_);
  t_call_subject = principal_.subject;
  if (const MethodAccess* access = FindMethodAccess(method);
      access == nullptr || access->mutation) {
    guard->KeepCallRecord(context, {principal_.subject, std::string(RequestProject(request)),
                                    RequestResource(request)});
  }
  if (!refusal_.ok()) {
    guard->refused_
        ->Add({{"method", method},
               {"code", refusal_.error_code() == grpc::StatusCode::UNAUTHENTICATED
                            ? "UNAUTHENTICATED"
                            : "PERMISSION_DENIED"}})
        .Increment();
  }
}

}  // namespace mlops
