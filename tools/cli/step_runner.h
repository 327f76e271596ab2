// `mlops step run -- COMMAND...`: runs one attempt of a pipeline step where the scheduler's disk
// is not seen (a pod of the Kubernetes executor). From the manifest the scheduler wrote
// (MLOPS_STEP_MANIFEST) it fetches the inputs by digest, runs the command (stdout and stderr
// pass through: the kubelet keeps them as the step's log), uploads the declared outputs and
// reports them with the step's metrics.json (ReportAttempt, retried while the scheduler is
// unavailable; idempotent by attempt id, so a repeated report changes nothing).
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mlops/scheduler/v1/scheduler.pb.h"

namespace mlops::cli {

// Exit code of the wrapper when it, not the step, failed (an input it could not fetch, an output
// it could not store or report); the reason goes to the report and to stderr.
inline constexpr int kStepWrapperFailed = 125;

// Runs the step; returns the exit code to exit with: the command's (0 once its outputs are
// reported), or kStepWrapperFailed. INVALID_ARGUMENT only for a manifest that does not parse or
// an empty command (nothing was run).
absl::StatusOr<int> RunStep(const std::string& manifest_json, const std::vector<std::string>& argv,
                            std::shared_ptr<grpc::Channel> artifact,
                            std::shared_ptr<grpc::Channel> scheduler);

}  // namespace mlops::cli
