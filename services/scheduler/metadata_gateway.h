// MetadataGateway over the metadata service's gRPC API: each attempt is a tracking run (in an
// experiment named after the pipeline) with the step's params, command and input digests, and
// `metrics.json` logged to it; each finished attempt is a lineage execution ("PipelineStep") with
// its input and output artifacts, in a PipelineRun context named after the pipeline run.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mlops/metadata/v1/lineage.grpc.pb.h"
#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "services/scheduler/gateways.h"

namespace mlops::scheduler {

class ClientMetadataGateway final : public MetadataGateway {
 public:
  explicit ClientMetadataGateway(std::shared_ptr<grpc::Channel> channel);
  absl::StatusOr<std::string> StartRun(const StepRecord& step) override;
  absl::Status LogMetrics(const std::string& run_id,
                          const std::vector<MetricPoint>& points) override;
  absl::Status FinishRun(const std::string& run_id, const StepRecord& step,
                         bool succeeded) override;

 private:
  absl::StatusOr<std::string> ExperimentId(const std::string& pipeline);
  std::unique_ptr<metadata::v1::MetadataService::Stub> tracking_;
  std::unique_ptr<metadata::v1::LineageService::Stub> lineage_;
  // Called from the scheduler's worker threads at once.
  std::mutex mu_;
  std::map<std::string, std::string> experiments_;  // pipeline -> experiment id; guarded by mu_
  std::atomic<bool> types_registered_{false};
};

}  // namespace mlops::scheduler
