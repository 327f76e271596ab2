#include "services/metadata/metadata_service.h"

#include "services/common/grpc_status.h"
#include "services/common/request_errors.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::metadata {
grpc::Status MetadataServiceImpl::CreateExperiment(grpc::ServerContext*,
                                                   const v1::CreateExperimentRequest* request,
                                                   v1::Experiment* response) {
  return Reply(store_->CreateExperiment(*request), response);
}

grpc::Status MetadataServiceImpl::GetExperiment(grpc::ServerContext*,
                                                const v1::GetExperimentRequest* request,
                                                v1::Experiment* response) {
  return Reply(store_->GetExperiment(request->experiment_id()), response);
}

grpc::Status MetadataServiceImpl::GetExperimentByName(grpc::ServerContext*,
                                                      const v1::GetExperimentByNameRequest* request,
                                                      v1::Experiment* response) {
  return Reply(store_->GetExperimentByName(request->name()), response);
}

grpc::Status MetadataServiceImpl::ListExperiments(grpc::ServerContext*,
                                                  const v1::ListExperimentsRequest* request,
                                                  v1::ListExperimentsResponse* response) {
  return Reply(store_->ListExperiments(*request), response);
}

grpc::Status MetadataServiceImpl::UpdateExperiment(grpc::ServerContext*,
                                                   const v1::UpdateExperimentRequest* request,
                                                   v1::Experiment* response) {
  return Reply(store_->UpdateExperiment(*request), response);
}

grpc::Status MetadataServiceImpl::DeleteExperiment(grpc::ServerContext*,
                                                   const v1::DeleteExperimentRequest* request,
                                                   v1::Experiment* response) {
  return Reply(store_->SetExperimentLifecycle(request->experiment_id(), v1::DELETED), response);
}

grpc::Status MetadataServiceImpl::RestoreExperiment(grpc::ServerContext*,
                                                    const v1::RestoreExperimentRequest* request,
                                                    v1::Experiment* response) {
  return Reply(store_->SetExperimentLifecycle(request->experiment_id(), v1::ACTIVE), response);
}

grpc::Status MetadataServiceImpl::CreateRun(grpc::ServerContext*,
                                            const v1::CreateRunRequest* request,
                                            v1::Run* response) {
  return Reply(store_->CreateRun(*request), response);
}

grpc::Status MetadataServiceImpl::GetRun(grpc::ServerContext*, const v1::GetRunRequest* request,
                                         v1::Run* response) {
  return Reply(store_->GetRun(request->run_id()), response);
}

grpc::Status MetadataServiceImpl::UpdateRun(grpc::ServerContext*,
                                            const v1::UpdateRunRequest* request,
                                            v1::Run* response) {
  return Reply(store_->UpdateRun(*request), response);
}

grpc::Status MetadataServiceImpl::DeleteRun(grpc::ServerContext*,
                                            const v1::DeleteRunRequest* request,
                                            v1::Run* response) {
  return Reply(store_->SetRunLifecycle(request->run_id(), v1::DELETED), response);
}

grpc::Status MetadataServiceImpl::RestoreRun(grpc::ServerContext*,
                                             const v1::RestoreRunRequest* request,
                                             v1::Run* response) {
  return Reply(store_->SetRunLifecycle(request->run_id(), v1::ACTIVE), response);
}

grpc::Status MetadataServiceImpl::LogBatch(grpc::ServerContext*, const v1::LogBatchRequest* request,
                                           v1::LogBatchResponse*) {
  return ToGrpcStatus(store_->LogBatch(*request));
}

grpc::Status MetadataServiceImpl::LogStream(grpc::ServerContext*,
                                            grpc::ServerReader<v1::LogBatchRequest>* reader,
                                            v1::LogStreamResponse* response) {
  v1::LogBatchRequest request;
  while (reader->Read(&request)) {
    absl::Status status = store_->LogBatch(request);
    if (!status.ok()) {
      return ToGrpcStatus(absl::Status(
          status.code(), StrCat("message ", response->batches() + 1, ": ", status.message())));
    }
    response->set_batches(response->batches() + 1);
    response->set_metrics(response->metrics() + request.metrics_size());
  }
  if (auto error = TakeParseError()) {
    return ToGrpcStatus(
        absl::InvalidArgumentError(StrCat("message ", response->batches() + 1, ": ", *error)));
  }
  return grpc::Status::OK;
}

grpc::Status MetadataServiceImpl::DeleteTag(grpc::ServerContext*,
                                            const v1::DeleteTagRequest* request,
                                            v1::DeleteTagResponse*) {
  return ToGrpcStatus(store_->DeleteTag(request->run_id(), request->key()));
}

grpc::Status MetadataServiceImpl::GetMetricHistory(grpc::ServerContext*,
                                                   const v1::GetMetricHistoryRequest* request,
                                                   v1::GetMetricHistoryResponse* response) {
  return Reply(store_->GetMetricHistory(*request), response);
}

grpc::Status MetadataServiceImpl::SearchRuns(grpc::ServerContext*,
                                             const v1::SearchRunsRequest* request,
                                             v1::SearchRunsResponse* response) {
  return Reply(store_->SearchRuns(*request), response);
}

}  // namespace mlops::metadata
