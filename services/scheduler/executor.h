// Executors run step attempts. The scheduler core talks only to this interface: the local executor
// runs child processes on this machine, the Kubernetes executor (kubernetes/) runs Jobs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/scheduler/pipeline_spec.h"

namespace mlops::scheduler {

// Where a remote attempt (Executor::remote) runs in its pod: inputs under inputs/, outputs under
// outputs/, metrics.json, as in a local attempt's work dir.
inline constexpr char kRemoteWorkDir[] = "/mlops-work";

struct LaunchSpec {
  std::string attempt_id;  // unique; the executor's handle for the attempt
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;  // added to a minimal environment
  // Variables whose values an executor that runs elsewhere (remote()) takes from its own Secrets;
  // a local executor gets the values in `env` instead.
  std::map<std::string, SecretRef> secret_env;
  std::string work_dir;  // exists; outputs are written under it
  std::string image;     // ignored by the local executor
  // Pod template overrides (JSON of a PodTemplateSpec; ignored by the local executor): the
  // step's, and its queue's (laid under the step's).
  std::string pod_template_json;
  std::string queue_pod_template_json;
  // The Kueue LocalQueue that admits the attempt ("" = none; only for an executor with kueue()).
  std::string kueue_local_queue;
  Resources resources;
  int replicas = 1;
  int64_t timeout_ms = 0;  // 0: none
};

struct AttemptResult {
  enum class Outcome { kSucceeded, kFailed, kTimedOut, kCanceled, kLost };
  Outcome outcome = Outcome::kFailed;
  int exit_code = -1;  // when the process exited
  int signal = 0;      // when a signal ended it
  std::string message;
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  std::string image_id;  // the image that ran, as the node resolved it ("" = not known)
};

// An attempt recorded as running by a scheduler that stopped.
struct RecoverSpec {
  std::string attempt_id;
  std::string handle;    // what Launch returned; empty when the scheduler stopped before storing it
  std::string work_dir;  // the attempt's, as launched
  int64_t start_ms = 0;  // when the attempt started
  int64_t timeout_ms = 0;  // the step's (0: none), counted from start_ms
};

const char* OutcomeName(AttemptResult::Outcome outcome);

class Executor {
 public:
  virtual ~Executor() = default;
  virtual std::string name() const = 0;

  // Starts the attempt and returns once it runs; `done` is called exactly once, on another
  // thread, when it ends. Returns an opaque handle to persist (for Recover after a restart).
  // INVALID_ARGUMENT for an empty argv, FAILED_PRECONDITION when the program cannot be started
  // (not found, not executable), ALREADY_EXISTS for an attempt id in use, UNAVAILABLE when the
  // system cannot start it now (no memory, too many processes).
  virtual absl::StatusOr<std::string> Launch(const LaunchSpec& spec,
                                             std::function<void(const AttemptResult&)> done) = 0;
  // Ends a running attempt (its `done` reports kCanceled). NOT_FOUND when it is not running.
  virtual absl::Status Cancel(const std::string& attempt_id) = 0;
  // After a restart of the scheduler, for an attempt recorded as running: when it is still
  // running, re-attaches to it (it runs on, Cancel and its timeout reach it, and `done` reports how
  // it ends, as for Launch); when it ended while the scheduler was down and the executor can tell
  // how, `done` reports that; otherwise whatever is left of it is stopped and `done` reports kLost,
  // so that the retry policy decides. `done` is called exactly once, possibly before this returns.
  virtual void Recover(const RecoverSpec& spec, std::function<void(const AttemptResult&)> done) = 0;
  // After the last Recover of a restart: whatever the executor still holds of attempts that were
  // neither launched nor recovered (started just before a crash, never recorded) can go.
  virtual void RecoveryDone() {}
  // The scheduler has stored the result of `attempt_id`: what the executor kept of it to report
  // that result again after a restart can go. Must not block.
  virtual void Collected(const std::string& attempt_id) { (void)attempt_id; }
  // The attempt runs where the scheduler's disk is not seen (a pod): instead of reading its work
  // dir, the scheduler hands it a manifest (MLOPS_STEP_MANIFEST: inputs by digest, outputs to
  // write) and `mlops step run` in the pod fetches, uploads and reports (ReportAttempt). The
  // executor still writes the attempt's stdout.log into its (local) work dir.
  virtual bool remote() const { return false; }
  // What this executor adds to every step that may change what it computes (the Kubernetes
  // executor's default image and pod template), for the steps' cache keys; "" for nothing.
  virtual std::string settings_fingerprint() const { return ""; }
  // Queues may defer admission to Kueue (LaunchSpec::kueue_local_queue).
  virtual bool kueue() const { return false; }
  // Attempts running now.
  virtual int running() const = 0;
};

}  // namespace mlops::scheduler
