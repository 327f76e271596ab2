// MetadataGateway over the metadata service's gRPC API: each attempt is a tracking run (in an
// experiment named after the pipeline) with the step's params, command and input digests, and
// `metrics.json` logged to it; each finished attempt is a lineage execution ("PipelineStep") with
// its input and output artifacts, in a PipelineRun context named after the pipeline run. All of it
// in the run's project (StepRecord::project), through a channel of that project.
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
#include "services/common/channel.h"
#include "services/scheduler/gateways.h"

namespace mlops::scheduler {

class ClientMetadataGateway final : public MetadataGateway {
 public:
  explicit ClientMetadataGateway(ChannelForProject channels);
  absl::StatusOr<std::string> StartRun(const StepRecord& step) override;
  absl::Status LogMetrics(const std::string& run_id,
                          const std::vector<MetricPoint>& points) override;
  absl::Status FinishRun(const std::string& run_id, const StepRecord& step,
                         bool succeeded) override;

 private:
  // The stubs whose calls act in one project, made on first use.
  struct Project {
    std::unique_ptr<metadata::v1::MetadataService::Stub> tracking;
    std::unique_ptr<metadata::v1::LineageService::Stub> lineage;
    std::atomic<bool> types_registered{false};
  };
  absl::StatusOr<std::shared_ptr<Project>> For(std::string_view project);
  absl::StatusOr<std::string> ExperimentId(Project& stubs, const std::string& project,
                                           const std::string& pipeline);

  ChannelForProject channels_;
  // Called from the scheduler's worker threads at once.
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Project>> projects_;  // guarded by mu_
  // project + '\n' + pipeline -> experiment id; guarded by mu_
  std::map<std::string, std::string> experiments_;
};

}  // namespace mlops::scheduler
