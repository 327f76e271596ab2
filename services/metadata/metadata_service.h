// gRPC adapter of the metadata service: checks request shape, calls MetadataStore, maps statuses.
// Every RPC returns the codes documented on the MetadataStore method it calls.
//
// Projects (docs/api.md, "Projects") live here, at the boundary: the store keys experiments and
// runs by their bare 32-hex ids and experiments' names in full (`projects/P/churn`), so an
// experiment's project is the one its name says and a run's is its experiment's. Ids that come in
// as `projects/P/<id>` are checked to be in P (an id of another project is NOT_FOUND, exactly as
// an unknown one) and passed on bare; ids that go out carry their project again.
#pragma once

#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"
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
  // The bare id of experiment (run) `value` of request field `field`, when it is in the project
  // `value` names; NOT_FOUND otherwise.
  absl::StatusOr<std::string> ExperimentId(std::string_view field, std::string_view value);
  absl::StatusOr<std::string> RunId(std::string_view field, std::string_view value);
  absl::StatusOr<std::string> BareId(bool run, std::string_view field, std::string_view value);
  // The project of the experiment (run) with bare id `id`; remembered, as it never changes.
  absl::StatusOr<std::string> ExperimentProject(const std::string& id);
  absl::StatusOr<std::string> RunProject(const std::string& id);
  void Remember(std::unordered_map<std::string, std::string>& cache, const std::string& id,
                std::string_view project);

  MetadataStore* store_;
  std::mutex projects_mu_;
  std::unordered_map<std::string, std::string> experiment_projects_, run_projects_;
};

}  // namespace mlops::metadata
