#include "services/metadata/metadata_service.h"

#include <algorithm>

#include "services/common/grpc_status.h"
#include "services/common/projects.h"
#include "services/common/request_errors.h"
#include "services/common/rpc_guard.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::metadata {
namespace {

// A request id is unique within its project: outside project default it is keyed as
// "projects/P/<id>", and so one of project default may not begin with "projects/".
absl::StatusOr<std::string> ScopedRequestId(std::string_view project, const std::string& id) {
  if (id.size() > 128) return absl::InvalidArgumentError("request_id: longer than 128 bytes");
  if (id.starts_with(kProjectsPrefix)) {
    return absl::InvalidArgumentError("request_id: must not begin with \"projects/\"");
  }
  if (id.empty() || project == kDefaultProject) return id;
  return Qualify(project, id);
}

// Ids of a project other than default go out as projects/P/<id>.
void Present(v1::Experiment* experiment) {
  experiment->set_id(Qualify(ProjectOf(experiment->name()), experiment->id()));
}
void Present(v1::Run* run, std::string_view project) {
  run->set_id(Qualify(project, run->id()));
  run->set_experiment_id(Qualify(project, run->experiment_id()));
}

template <class T>
grpc::Status ReplyIn(absl::StatusOr<T> result, std::string_view project, T* out) {
  if (result.ok()) Present(&*result, project);
  return Reply(std::move(result), out);
}
grpc::Status ReplyExperiment(absl::StatusOr<v1::Experiment> result, v1::Experiment* out) {
  if (result.ok()) Present(&*result);
  return Reply(std::move(result), out);
}

}  // namespace

void MetadataServiceImpl::Remember(std::unordered_map<std::string, std::string>& cache,
                                   const std::string& id, std::string_view project) {
  std::lock_guard lock(projects_mu_);
  if (cache.size() >= 100000) cache.clear();  // bounded: a miss costs one read
  cache.emplace(id, project);
}

absl::StatusOr<std::string> MetadataServiceImpl::ExperimentProject(const std::string& id) {
  {
    std::lock_guard lock(projects_mu_);
    if (auto it = experiment_projects_.find(id); it != experiment_projects_.end()) {
      return it->second;
    }
  }
  ASSIGN_OR_RETURN(v1::Experiment experiment, store_->GetExperiment(id));
  std::string project(ProjectOf(experiment.name()));
  Remember(experiment_projects_, id, project);
  return project;
}

absl::StatusOr<std::string> MetadataServiceImpl::RunProject(const std::string& id) {
  {
    std::lock_guard lock(projects_mu_);
    if (auto it = run_projects_.find(id); it != run_projects_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(v1::Run run, store_->GetRun(id));
  ASSIGN_OR_RETURN(std::string project, ExperimentProject(run.experiment_id()));
  Remember(run_projects_, id, project);
  return project;
}

absl::StatusOr<std::string> MetadataServiceImpl::BareId(bool run, std::string_view field,
                                                        std::string_view value) {
  ASSIGN_OR_RETURN(ScopedName scoped, ParseScoped(field, value));
  ASSIGN_OR_RETURN(std::string project,
                   run ? RunProject(scoped.name) : ExperimentProject(scoped.name));
  if (project != scoped.project) {
    return NotInProject(run ? "run" : "experiment", scoped.name, scoped.project);
  }
  return std::move(scoped.name);
}

absl::StatusOr<std::string> MetadataServiceImpl::ExperimentId(std::string_view field,
                                                              std::string_view value) {
  return BareId(/*run=*/false, field, value);
}

absl::StatusOr<std::string> MetadataServiceImpl::RunId(std::string_view field,
                                                       std::string_view value) {
  return BareId(/*run=*/true, field, value);
}

grpc::Status MetadataServiceImpl::CreateExperiment(grpc::ServerContext*,
                                                   const v1::CreateExperimentRequest* request,
                                                   v1::Experiment* response) {
  absl::StatusOr<ScopedName> name = ParseScoped("name", request->name());
  if (!name.ok()) return ToGrpcStatus(name.status());
  absl::StatusOr<std::string> request_id = ScopedRequestId(name->project, request->request_id());
  if (!request_id.ok()) return ToGrpcStatus(request_id.status());
  if (request->name() != Qualify(name->project, name->name) ||
      *request_id != request->request_id()) {
    v1::CreateExperimentRequest canonical = *request;  // projects/default/x is x
    canonical.set_name(Qualify(name->project, name->name));
    canonical.set_request_id(*request_id);
    return ReplyExperiment(store_->CreateExperiment(canonical), response);
  }
  return ReplyExperiment(store_->CreateExperiment(*request), response);
}

grpc::Status MetadataServiceImpl::GetExperiment(grpc::ServerContext*,
                                                const v1::GetExperimentRequest* request,
                                                v1::Experiment* response) {
  absl::StatusOr<std::string> id = ExperimentId("experiment_id", request->experiment_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  return ReplyExperiment(store_->GetExperiment(*id), response);
}

grpc::Status MetadataServiceImpl::GetExperimentByName(grpc::ServerContext*,
                                                      const v1::GetExperimentByNameRequest* request,
                                                      v1::Experiment* response) {
  absl::StatusOr<ScopedName> name = ParseScoped("name", request->name());
  if (!name.ok()) return ToGrpcStatus(name.status());
  return ReplyExperiment(store_->GetExperimentByName(Qualify(name->project, name->name)), response);
}

grpc::Status MetadataServiceImpl::ListExperiments(grpc::ServerContext*,
                                                  const v1::ListExperimentsRequest* request,
                                                  v1::ListExperimentsResponse* response) {
  if (!request->project().empty() && request->project() != kEveryProject) {
    if (absl::Status valid = ValidateProject(request->project()); !valid.ok()) {
      return ToGrpcStatus(valid);
    }
  }
  grpc::Status status = Reply(store_->ListExperiments(*request), response);
  for (v1::Experiment& experiment : *response->mutable_experiments()) Present(&experiment);
  return status;
}

grpc::Status MetadataServiceImpl::UpdateExperiment(grpc::ServerContext*,
                                                   const v1::UpdateExperimentRequest* request,
                                                   v1::Experiment* response) {
  const std::string_view project = ProjectOf(request->experiment().id());
  absl::StatusOr<std::string> bare = ExperimentId("experiment.id", request->experiment().id());
  if (!bare.ok()) return ToGrpcStatus(bare.status());
  v1::UpdateExperimentRequest update = *request;
  update.mutable_experiment()->set_id(*bare);
  if (std::find(request->update_mask().paths().begin(), request->update_mask().paths().end(),
                "name") != request->update_mask().paths().end()) {
    absl::StatusOr<ScopedName> name = ParseScoped("experiment.name", request->experiment().name());
    if (!name.ok()) return ToGrpcStatus(name.status());
    if (name->project != project) {
      return ToGrpcStatus(
          absl::InvalidArgumentError(StrCat("experiment.name: an experiment of project ", project,
                                            " cannot be renamed into project ", name->project)));
    }
    update.mutable_experiment()->set_name(Qualify(name->project, name->name));
  }
  return ReplyExperiment(store_->UpdateExperiment(update), response);
}

grpc::Status MetadataServiceImpl::DeleteExperiment(grpc::ServerContext*,
                                                   const v1::DeleteExperimentRequest* request,
                                                   v1::Experiment* response) {
  absl::StatusOr<std::string> id = ExperimentId("experiment_id", request->experiment_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  return ReplyExperiment(store_->SetExperimentLifecycle(*id, v1::DELETED), response);
}

grpc::Status MetadataServiceImpl::RestoreExperiment(grpc::ServerContext*,
                                                    const v1::RestoreExperimentRequest* request,
                                                    v1::Experiment* response) {
  absl::StatusOr<std::string> id = ExperimentId("experiment_id", request->experiment_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  return ReplyExperiment(store_->SetExperimentLifecycle(*id, v1::ACTIVE), response);
}

grpc::Status MetadataServiceImpl::CreateRun(grpc::ServerContext*,
                                            const v1::CreateRunRequest* request,
                                            v1::Run* response) {
  const std::string_view project = ProjectOf(request->experiment_id());
  absl::StatusOr<std::string> id = ExperimentId("experiment_id", request->experiment_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  absl::StatusOr<std::string> request_id = ScopedRequestId(project, request->request_id());
  if (!request_id.ok()) return ToGrpcStatus(request_id.status());
  if (*id == request->experiment_id() && *request_id == request->request_id()) {
    return ReplyIn(store_->CreateRun(*request), project, response);
  }
  v1::CreateRunRequest bare = *request;
  bare.set_experiment_id(*id);
  bare.set_request_id(*request_id);
  return ReplyIn(store_->CreateRun(bare), project, response);
}

grpc::Status MetadataServiceImpl::GetRun(grpc::ServerContext*, const v1::GetRunRequest* request,
                                         v1::Run* response) {
  absl::StatusOr<std::string> id = RunId("run_id", request->run_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  return ReplyIn(store_->GetRun(*id), ProjectOf(request->run_id()), response);
}

grpc::Status MetadataServiceImpl::UpdateRun(grpc::ServerContext*,
                                            const v1::UpdateRunRequest* request,
                                            v1::Run* response) {
  absl::StatusOr<std::string> id = RunId("run.id", request->run().id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  v1::UpdateRunRequest bare = *request;
  bare.mutable_run()->set_id(*id);
  return ReplyIn(store_->UpdateRun(bare), ProjectOf(request->run().id()), response);
}

grpc::Status MetadataServiceImpl::DeleteRun(grpc::ServerContext*,
                                            const v1::DeleteRunRequest* request,
                                            v1::Run* response) {
  absl::StatusOr<std::string> id = RunId("run_id", request->run_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  return ReplyIn(store_->SetRunLifecycle(*id, v1::DELETED), ProjectOf(request->run_id()), response);
}

grpc::Status MetadataServiceImpl::RestoreRun(grpc::ServerContext*,
                                             const v1::RestoreRunRequest* request,
                                             v1::Run* response) {
  absl::StatusOr<std::string> id = RunId("run_id", request->run_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  return ReplyIn(store_->SetRunLifecycle(*id, v1::ACTIVE), ProjectOf(request->run_id()), response);
}

grpc::Status MetadataServiceImpl::LogBatch(grpc::ServerContext*, const v1::LogBatchRequest* request,
                                           v1::LogBatchResponse* response) {
  absl::StatusOr<std::string> id = RunId("run_id", request->run_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  absl::StatusOr<LogResult> result = store_->LogBatch(*id, *request);
  if (!result.ok()) return ToGrpcStatus(result.status());
  response->set_duplicate(result->duplicate);
  return grpc::Status::OK;
}

grpc::Status MetadataServiceImpl::LogStream(grpc::ServerContext* context,
                                            grpc::ServerReader<v1::LogBatchRequest>* reader,
                                            v1::LogStreamResponse* response) {
  const std::string project = StreamProject(*context);
  v1::LogBatchRequest request;
  while (reader->Read(&request)) {
    absl::StatusOr<LogResult> result;
    if (ProjectOf(request.run_id()) != project) {
      result = absl::InvalidArgumentError(
          StrCat("run_id ", request.run_id(), " is not in project ", project,
                 ", the project this stream was opened for (metadata ", kProjectMetadata, ")"));
    } else if (absl::StatusOr<std::string> id = RunId("run_id", request.run_id()); !id.ok()) {
      result = id.status();
    } else {
      result = store_->LogBatch(*id, request);
    }
    if (!result.ok()) {
      const absl::Status& status = result.status();
      return ToGrpcStatus(absl::Status(
          status.code(), StrCat("message ", response->batches() + response->duplicates() + 1, ": ",
                                status.message())));
    }
    if (result->duplicate) {
      response->set_duplicates(response->duplicates() + 1);
      continue;
    }
    response->set_batches(response->batches() + 1);
    response->set_metrics(response->metrics() + result->points);
  }
  if (auto error = TakeParseError()) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        StrCat("message ", response->batches() + response->duplicates() + 1, ": ", *error)));
  }
  return grpc::Status::OK;
}

grpc::Status MetadataServiceImpl::DeleteTag(grpc::ServerContext*,
                                            const v1::DeleteTagRequest* request,
                                            v1::DeleteTagResponse*) {
  absl::StatusOr<std::string> id = RunId("run_id", request->run_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  return ToGrpcStatus(store_->DeleteTag(*id, request->key()));
}

grpc::Status MetadataServiceImpl::GetMetricHistory(grpc::ServerContext*,
                                                   const v1::GetMetricHistoryRequest* request,
                                                   v1::GetMetricHistoryResponse* response) {
  absl::StatusOr<std::string> id = RunId("run_id", request->run_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  if (*id == request->run_id()) return Reply(store_->GetMetricHistory(*request), response);
  v1::GetMetricHistoryRequest bare = *request;
  bare.set_run_id(*id);
  return Reply(store_->GetMetricHistory(bare), response);
}

grpc::Status MetadataServiceImpl::SearchRuns(grpc::ServerContext*,
                                             const v1::SearchRunsRequest* request,
                                             v1::SearchRunsResponse* response) {
  // The guard admitted the request for the one project all its experiments name.
  std::string_view project =
      request->experiment_ids().empty() ? kDefaultProject : ProjectOf(request->experiment_ids(0));
  v1::SearchRunsRequest bare = *request;
  for (std::string& experiment_id : *bare.mutable_experiment_ids()) {
    if (ProjectOf(experiment_id) != project) {
      return ToGrpcStatus(absl::InvalidArgumentError(StrCat("experiment_ids: ", experiment_id,
                                                            " is not in project ", project,
                                                            ": one search reads one project")));
    }
    absl::StatusOr<std::string> id = ExperimentId("experiment_ids", experiment_id);
    if (!id.ok()) return ToGrpcStatus(id.status());
    experiment_id = *std::move(id);
  }
  grpc::Status status = Reply(store_->SearchRuns(bare), response);
  for (v1::Run& run : *response->mutable_runs()) Present(&run, project);
  return status;
}

}  // namespace mlops::metadata
