#include "services/common/access_table.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

#include "services/common/projects.h"
#include "services/common/strings.h"

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
    {"/mlops.audit.v1.AuditService/ListAuditEntries", Access::kAdmin, false, "project"},
    {"/mlops.artifact.v1.ArtifactService/StartUpload", Access::kEditor, true, "project"},
    {"/mlops.artifact.v1.ArtifactService/FindMissingChunks", Access::kEditor, false, "session_id"},
    {"/mlops.artifact.v1.ArtifactService/UploadChunks", Access::kEditor, true,
     "@metadata session_id"},
    {"/mlops.artifact.v1.ArtifactService/CommitBlobs", Access::kEditor, true, "session_id"},
    {"/mlops.artifact.v1.ArtifactService/FinishUpload", Access::kEditor, true, "session_id"},
    {"/mlops.artifact.v1.ArtifactService/FindMissingBlobs", Access::kEditor, false, "project"},
    {"/mlops.artifact.v1.ArtifactService/StatBlob", Access::kViewer, false, "project"},
    {"/mlops.artifact.v1.ArtifactService/ListBlobs", Access::kOperator, false, ""},
    {"/mlops.artifact.v1.ArtifactService/Download", Access::kViewer, false, "project"},
    {"/mlops.artifact.v1.ArtifactService/SetBlobPinned", Access::kAdmin, true, "project"},
    {"/mlops.artifact.v1.ArtifactService/CreateDataset", Access::kEditor, true, "name"},
    {"/mlops.artifact.v1.ArtifactService/GetDataset", Access::kViewer, false, "name"},
    {"/mlops.artifact.v1.ArtifactService/ListDatasets", Access::kViewer, false, "project"},
    {"/mlops.artifact.v1.ArtifactService/CreateVersion", Access::kEditor, true,
     "@metadata header.dataset"},
    {"/mlops.artifact.v1.ArtifactService/GetVersion", Access::kViewer, false, "dataset"},
    {"/mlops.artifact.v1.ArtifactService/ListVersions", Access::kViewer, false, "dataset"},
    {"/mlops.artifact.v1.ArtifactService/ListVersionEntries", Access::kViewer, false, "dataset"},
    {"/mlops.artifact.v1.ArtifactService/DiffVersions", Access::kViewer, false,
     "from_dataset to_dataset"},
    {"/mlops.artifact.v1.ArtifactService/TagVersion", Access::kEditor, true, "dataset"},
    {"/mlops.artifact.v1.ArtifactService/Scrub", Access::kOperator, true, ""},
    {"/mlops.artifact.v1.ArtifactService/GarbageCollect", Access::kOperator, true, ""},
    {"/mlops.metadata.v1.LineageService/PutType", Access::kEditor, true, "type.name"},
    {"/mlops.metadata.v1.LineageService/GetType", Access::kViewer, false, "name"},
    {"/mlops.metadata.v1.LineageService/ListTypes", Access::kViewer, false, "project"},
    {"/mlops.metadata.v1.LineageService/PutArtifact", Access::kEditor, true,
     "project artifact.type artifact.external_id"},
    {"/mlops.metadata.v1.LineageService/GetArtifact", Access::kViewer, false,
     "project type external_id"},
    {"/mlops.metadata.v1.LineageService/ListArtifacts", Access::kViewer, false, "project type"},
    {"/mlops.metadata.v1.LineageService/PutExecution", Access::kEditor, true,
     "project execution.type execution.external_id execution.run_id artifacts.artifact.type "
     "artifacts.artifact.external_id contexts.type contexts.external_id"},
    {"/mlops.metadata.v1.LineageService/PutExecutionStream", Access::kEditor, true,
     "@metadata project execution.type execution.external_id execution.run_id "
     "artifacts.artifact.type artifacts.artifact.external_id contexts.type contexts.external_id"},
    {"/mlops.metadata.v1.LineageService/GetExecution", Access::kViewer, false,
     "project type external_id"},
    {"/mlops.metadata.v1.LineageService/ListExecutions", Access::kViewer, false, "project type"},
    {"/mlops.metadata.v1.LineageService/PutContext", Access::kEditor, true,
     "project context.type context.external_id"},
    {"/mlops.metadata.v1.LineageService/GetContext", Access::kViewer, false,
     "project type external_id"},
    {"/mlops.metadata.v1.LineageService/ListContexts", Access::kViewer, false, "project type"},
    {"/mlops.metadata.v1.LineageService/AddParentContext", Access::kEditor, true, "project"},
    {"/mlops.metadata.v1.LineageService/GetContextMembers", Access::kViewer, false, "project"},
    {"/mlops.metadata.v1.LineageService/GetLineage", Access::kViewer, false, "project run_id"},
    {"/mlops.metadata.v1.MetadataService/CreateExperiment", Access::kEditor, true, "name"},
    {"/mlops.metadata.v1.MetadataService/GetExperiment", Access::kViewer, false, "experiment_id"},
    {"/mlops.metadata.v1.MetadataService/GetExperimentByName", Access::kViewer, false, "name"},
    {"/mlops.metadata.v1.MetadataService/ListExperiments", Access::kViewer, false, "project"},
    {"/mlops.metadata.v1.MetadataService/UpdateExperiment", Access::kEditor, true,
     "experiment.id experiment.name"},
    {"/mlops.metadata.v1.MetadataService/DeleteExperiment", Access::kAdmin, true, "experiment_id"},
    {"/mlops.metadata.v1.MetadataService/RestoreExperiment", Access::kAdmin, true, "experiment_id"},
    {"/mlops.metadata.v1.MetadataService/CreateRun", Access::kEditor, true, "experiment_id"},
    {"/mlops.metadata.v1.MetadataService/GetRun", Access::kViewer, false, "run_id"},
    {"/mlops.metadata.v1.MetadataService/UpdateRun", Access::kEditor, true, "run.id"},
    {"/mlops.metadata.v1.MetadataService/DeleteRun", Access::kEditor, true, "run_id"},
    {"/mlops.metadata.v1.MetadataService/RestoreRun", Access::kEditor, true, "run_id"},
    {"/mlops.metadata.v1.MetadataService/LogBatch", Access::kEditor, true, "run_id"},
    {"/mlops.metadata.v1.MetadataService/LogStream", Access::kEditor, true, "@metadata run_id"},
    {"/mlops.metadata.v1.MetadataService/DeleteTag", Access::kEditor, true, "run_id"},
    {"/mlops.metadata.v1.MetadataService/GetMetricHistory", Access::kViewer, false, "run_id"},
    {"/mlops.metadata.v1.MetadataService/SearchRuns", Access::kViewer, false, "experiment_ids"},
    {"/mlops.metadata.v1.ModelRegistry/CreateRegisteredModel", Access::kEditor, true, "name"},
    {"/mlops.metadata.v1.ModelRegistry/GetRegisteredModel", Access::kViewer, false, "name"},
    {"/mlops.metadata.v1.ModelRegistry/ListRegisteredModels", Access::kViewer, false, "project"},
    {"/mlops.metadata.v1.ModelRegistry/UpdateRegisteredModel", Access::kEditor, true, "name"},
    {"/mlops.metadata.v1.ModelRegistry/CreateModelVersion", Access::kEditor, true,
     "name source_run_id"},
    {"/mlops.metadata.v1.ModelRegistry/GetModelVersion", Access::kViewer, false, "name"},
    {"/mlops.metadata.v1.ModelRegistry/ListModelVersions", Access::kViewer, false, "name"},
    {"/mlops.metadata.v1.ModelRegistry/UpdateModelVersion", Access::kEditor, true, "name"},
    {"/mlops.metadata.v1.ModelRegistry/DeleteModelVersion", Access::kAdmin, true, "name"},
    {"/mlops.metadata.v1.ModelRegistry/SetAlias", Access::kEditor, true, "name"},
    {"/mlops.metadata.v1.ModelRegistry/DeleteAlias", Access::kEditor, true, "name"},
    {"/mlops.metadata.v1.ModelRegistry/GetAliasHistory", Access::kViewer, false, "name"},
    {"/mlops.metadata.v1.ModelRegistry/WatchAlias", Access::kViewer, false, "name"},
    // A blessing is an evaluation's verdict (editor, as the evaluation); what an alias requires
    // is the model's governance (admin).
    {"/mlops.metadata.v1.ModelRegistry/SetBlessing", Access::kEditor, true, "name"},
    {"/mlops.metadata.v1.ModelRegistry/SetAliasPolicy", Access::kAdmin, true, "name"},
    {"/mlops.monitoring.v1.MonitoringService/CreateProfile", Access::kEditor, true, "name dataset"},
    {"/mlops.monitoring.v1.MonitoringService/GetProfile", Access::kViewer, false, "name"},
    {"/mlops.monitoring.v1.MonitoringService/ListProfiles", Access::kViewer, false, "project"},
    {"/mlops.monitoring.v1.MonitoringService/CreateMonitor", Access::kEditor, true,
     "name model profile"},
    {"/mlops.monitoring.v1.MonitoringService/GetMonitor", Access::kViewer, false, "name"},
    {"/mlops.monitoring.v1.MonitoringService/ListMonitors", Access::kViewer, false, "project"},
    {"/mlops.monitoring.v1.MonitoringService/IngestSamples", Access::kEditor, true,
     "@metadata monitor"},
    {"/mlops.monitoring.v1.MonitoringService/IngestFeedback", Access::kEditor, true, "monitor"},
    {"/mlops.monitoring.v1.MonitoringService/EvaluateDataset", Access::kEditor, true,
     "monitor dataset profile"},
    {"/mlops.monitoring.v1.MonitoringService/ListReports", Access::kViewer, false, "monitor"},
    {"/mlops.monitoring.v1.MonitoringService/ListAlerts", Access::kViewer, false,
     "project monitor"},
    {"/mlops.monitoring.v1.MonitoringService/AcknowledgeAlert", Access::kEditor, true, "id"},
    {"/mlops.monitoring.v1.MonitoringService/InferSchema", Access::kEditor, true, "dataset"},
    {"/mlops.monitoring.v1.MonitoringService/PutSchema", Access::kEditor, true, "name"},
    {"/mlops.monitoring.v1.MonitoringService/GetSchema", Access::kViewer, false, "name"},
    {"/mlops.monitoring.v1.MonitoringService/Validate", Access::kEditor, true,
     "dataset schema project"},
    {"/mlops.monitoring.v1.MonitoringService/ListValidations", Access::kViewer, false, "dataset"},
    {"/mlops.monitoring.v1.MonitoringService/EvaluateModel", Access::kEditor, true,
     "model dataset"},
    {"/mlops.monitoring.v1.MonitoringService/GetEvaluation", Access::kViewer, false, "id"},
    {"/mlops.monitoring.v1.MonitoringService/ListEvaluations", Access::kViewer, false, "model"},
    {"/mlops.scheduler.v1.SchedulerService/SubmitPipeline", Access::kEditor, true, "project"},
    {"/mlops.scheduler.v1.SchedulerService/GetPipelineRun", Access::kViewer, false, "id"},
    {"/mlops.scheduler.v1.SchedulerService/ListPipelineRuns", Access::kViewer, false, "project"},
    {"/mlops.scheduler.v1.SchedulerService/CancelPipelineRun", Access::kEditor, true, "id"},
    {"/mlops.scheduler.v1.SchedulerService/RetryPipelineRun", Access::kEditor, true, "id"},
    {"/mlops.scheduler.v1.SchedulerService/WatchPipelineRun", Access::kViewer, false, "id"},
    {"/mlops.scheduler.v1.SchedulerService/GetStepLogs", Access::kViewer, false, "run_id"},
    {"/mlops.scheduler.v1.SchedulerService/CreateSchedule", Access::kEditor, true, "name"},
    {"/mlops.scheduler.v1.SchedulerService/ListSchedules", Access::kViewer, false, "project"},
    {"/mlops.scheduler.v1.SchedulerService/DeleteSchedule", Access::kEditor, true, "name"},
    {"/mlops.scheduler.v1.SchedulerService/PutQueue", Access::kOperator, true, ""},
    {"/mlops.scheduler.v1.SchedulerService/ListQueues", Access::kAuthenticated, false, ""},
    {"/mlops.scheduler.v1.SchedulerService/ReportAttempt", Access::kEditor, true, "attempt_id"},
    {"/mlops.scheduler.v1.SchedulerService/ReportCheckpoint", Access::kEditor, true, "attempt_id"},
};

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

namespace {

// The space-separated words of `text`.
std::vector<std::string_view> SplitFields(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    size_t space = text.find(' ');
    if (space != 0) out.push_back(text.substr(0, space));
    if (space == std::string_view::npos) break;
    text.remove_prefix(space + 1);
  }
  return out;
}

// Calls `each` with every value of the string field at dotted `path` of `message` (none when a
// message on the way is unset). False when the path names no string field of the message.
bool ForEachValue(const google::protobuf::Message& message, std::string_view path,
                  const std::function<void(const std::string&)>& each) {
  const google::protobuf::Descriptor* descriptor = message.GetDescriptor();
  const google::protobuf::Reflection* reflection = message.GetReflection();
  size_t dot = path.find('.');
  const google::protobuf::FieldDescriptor* field =
      descriptor->FindFieldByName(std::string(path.substr(0, dot)));
  if (field == nullptr) return false;
  if (dot != std::string_view::npos) {
    if (field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) return false;
    std::string_view rest = path.substr(dot + 1);
    if (field->is_repeated()) {  // every element's
      bool known =
          ForEachValue(*google::protobuf::MessageFactory::generated_factory()->GetPrototype(
                           field->message_type()),
                       rest, [](const std::string&) {});
      for (int i = 0; known && i < reflection->FieldSize(message, field); ++i) {
        ForEachValue(reflection->GetRepeatedMessage(message, field, i), rest, each);
      }
      return known;
    }
    if (!reflection->HasField(message, field)) {
      return ForEachValue(reflection->GetMessage(message, field), rest, [](const std::string&) {});
    }
    return ForEachValue(reflection->GetMessage(message, field), rest, each);
  }
  if (field->type() != google::protobuf::FieldDescriptor::TYPE_STRING) return false;
  if (field->is_repeated()) {
    for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
      each(reflection->GetRepeatedString(message, field, i));
    }
  } else {
    each(reflection->GetString(message, field));
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> RequestProject(const MethodAccess& method,
                                           const google::protobuf::Message* request,
                                           std::string_view stream_project) {
  if (method.project.starts_with("@metadata")) {
    std::string project(stream_project.empty() ? kDefaultProject : stream_project);
    if (absl::Status valid = ValidateProject(project); !valid.ok()) {
      return absl::InvalidArgumentError(
          StrCat("metadata ", "mlops-project", ": ", valid.message()));
    }
    return project;
  }
  std::optional<std::string> found;
  std::string first_field;
  absl::Status error;
  if (request != nullptr) {
    for (std::string_view path : SplitFields(method.project)) {
      std::string_view leaf = path.substr(path.rfind('.') + 1);
      bool known = ForEachValue(*request, path, [&](const std::string& value) {
        if (!error.ok() || value.empty()) return;
        std::string project;
        if (leaf == "project") {
          if (value != kEveryProject) {
            if (absl::Status valid = ValidateProject(value); !valid.ok()) {
              error = valid;
              return;
            }
          }
          project = value;
        } else {
          absl::StatusOr<ScopedName> scoped = ParseScoped(path, value);
          if (!scoped.ok()) {
            error = scoped.status();
            return;
          }
          project = std::move(scoped->project);
        }
        if (found && *found != project) {
          error = absl::InvalidArgumentError(StrCat(path, " is in project ", project, " and ",
                                                    first_field, " in project ", *found,
                                                    ": one request acts in one project"));
          return;
        }
        if (!found) first_field = path;
        found = std::move(project);
      });
      if (!known) {
        return absl::InternalError(StrCat("the access table names ", path, " for ", method.method,
                                          ", which its request lacks"));
      }
      if (!error.ok()) return error;
    }
  }
  return found ? *found : std::string(kDefaultProject);
}

namespace {

// Sets every value at dotted `path` of `message` that names no project to its `project` form.
void QualifyValues(google::protobuf::Message* message, std::string_view path,
                   std::string_view project) {
  const google::protobuf::Descriptor* descriptor = message->GetDescriptor();
  const google::protobuf::Reflection* reflection = message->GetReflection();
  size_t dot = path.find('.');
  const google::protobuf::FieldDescriptor* field =
      descriptor->FindFieldByName(std::string(path.substr(0, dot)));
  if (field == nullptr) return;
  if (dot != std::string_view::npos) {
    if (field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) return;
    if (field->is_repeated()) {
      for (int i = 0; i < reflection->FieldSize(*message, field); ++i) {
        QualifyValues(reflection->MutableRepeatedMessage(message, field, i), path.substr(dot + 1),
                      project);
      }
    } else if (reflection->HasField(*message, field)) {
      QualifyValues(reflection->MutableMessage(message, field), path.substr(dot + 1), project);
    }
    return;
  }
  if (field->type() != google::protobuf::FieldDescriptor::TYPE_STRING) return;
  auto qualified = [&](const std::string& value) -> std::optional<std::string> {
    if (field->name() == "project") {
      if (value.empty()) return std::string(project);
      return std::nullopt;
    }
    // "*" (every project) fills `project` fields only: a name is always in one project.
    if (project == kEveryProject || value.empty() || value.starts_with(kProjectsPrefix)) {
      return std::nullopt;
    }
    return Qualify(project, value);
  };
  if (field->is_repeated()) {
    for (int i = 0; i < reflection->FieldSize(*message, field); ++i) {
      if (auto value = qualified(reflection->GetRepeatedString(*message, field, i))) {
        reflection->SetRepeatedString(message, field, i, *value);
      }
    }
  } else if (auto value = qualified(reflection->GetString(*message, field))) {
    reflection->SetString(message, field, *value);
  }
}

}  // namespace

absl::StatusOr<std::string> MessageProject(const MethodAccess& method,
                                           const google::protobuf::Message& message) {
  MethodAccess fields = method;
  if (fields.project.starts_with("@metadata")) fields.project.remove_prefix(9);
  return RequestProject(fields, &message, "");
}

void QualifyRequest(const MethodAccess& method, std::string_view project,
                    google::protobuf::Message* request) {
  if (project.empty() || project == kDefaultProject) return;
  for (std::string_view path : SplitFields(method.project)) {
    if (path != "@metadata") QualifyValues(request, path, project);
  }
}

}  // namespace mlops
