// gRPC adapter of the metadata service: checks request shape, calls MetadataStore, maps statuses.
// Every RPC returns the codes documented on the MetadataStore method it calls.
#pragma once

#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "services/metadata/metadata_store.h"

namespace mlops::metadata {

class MetadataServiceImpl final : public v1::MetadataService::Service {
 public:
  explicit MetadataServiceImpl(MetadataStore* store) : store_(store) {}

  grpc::Status CreateExperiment(grpc::ServerContext*, const v1::CreateExperimentRequest* request,
                                v1::Experiment* response) override;
  grpc::Status GetExperiment(grpc::ServerContext*, const v1::GetExperimentRequest* request,
                             v1::Experiment* response) override;
  grpc::Status GetExperimentByName(grpc::ServerContext*,
                                   const v1::GetExperimentByNameRequest* request,
                                   v1::Experiment* response) override;
  grpc::Status ListExperiments(grpc::ServerContext*, const v1::ListExperimentsRequest* request,
                               v1::ListExperimentsResponse* response) override;
  grpc::Status UpdateExperiment(grpc::ServerContext*, const v1::UpdateExperimentRequest* request,
                                v1::Experiment* response) override;
  grpc::Status DeleteExperiment(grpc::ServerContext*, const v1::DeleteExperimentRequest* request,
                                v1::Experiment* response) override;
  grpc::Status RestoreExperiment(grpc::ServerContext*, const v1::RestoreExperimentRequest* request,
                                 v1::Experiment* response) override;
  grpc::Status CreateRun(grpc::ServerContext*, const v1::CreateRunRequest* request,
                         v1::Run* response) override;
  grpc::Status GetRun(grpc::ServerContext*, const v1::GetRunRequest* request,
                      v1::Run* response) override;
  grpc::Status UpdateRun(grpc::ServerContext*, const v1::UpdateRunRequest* request,
                         v1::Run* response) override;
  grpc::Status DeleteRun(grpc::ServerContext*, const v1::DeleteRunRequest* request,
                         v1::Run* response) override;
  grpc::Status RestoreRun(grpc::ServerContext*, const v1::RestoreRunRequest* request,
                          v1::Run* response) override;
  grpc::Status LogBatch(grpc::ServerContext*, const v1::LogBatchRequest* request,
                        v1::LogBatchResponse* response) override;
  grpc::Status LogStream(grpc::ServerContext*, grpc::ServerReader<v1::LogBatchRequest>* reader,
                         v1::LogStreamResponse* response) override;
  grpc::Status DeleteTag(grpc::ServerContext*, const v1::DeleteTagRequest* request,
                         v1::DeleteTagResponse* response) override;
  grpc::Status GetMetricHistory(grpc::ServerContext*, const v1::GetMetricHistoryRequest* request,
                                v1::GetMetricHistoryResponse* response) override;
  grpc::Status SearchRuns(grpc::ServerContext*, const v1::SearchRunsRequest* request,
                          v1::SearchRunsResponse* response) override;

 private:
  MetadataStore* store_;
};

}  // namespace mlops::metadata
