// How the scheduler records steps in the metadata service: each attempt is a tracking run (in an
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
#include "services/scheduler/metrics_file.h"

namespace mlops::scheduler {

struct StepRecord {
  std::string pipeline;
  std::string pipeline_run;
  std::string step;
  int attempt = 1;
  std::vector<std::string> command;
  std::map<std::string, std::string> params;
  // Input name -> "dataset:NAME@VERSION" or a blob digest; output name -> blob digest.
  std::map<std::string, std::string> inputs;
  std::map<std::string, std::string> outputs;
  std::map<std::string, std::string> logs;  // "stdout" / "stderr" -> blob digest
};

class MetadataGateway {
 public:
  virtual ~MetadataGateway() = default;
  // Creates the attempt's tracking run (RUNNING); returns its id.
  virtual absl::StatusOr<std::string> StartRun(const StepRecord& step) = 0;
  // Logs the points of the attempt's metrics.json to its tracking run.
  virtual absl::Status LogMetrics(const std::string& run_id,
                                  const std::vector<MetricPoint>& points) = 0;
  // Ends the tracking run (FINISHED or FAILED) and, when it succeeded, records the lineage
  // execution with its inputs and outputs.
  virtual absl::Status FinishRun(const std::string& run_id, const StepRecord& step,
                                 bool succeeded) = 0;
};

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
