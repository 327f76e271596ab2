// The local executor: each attempt is a child process in its own process group, started with
// posix_spawn in its work dir, stdout and stderr written to <work_dir>/stdout.log and stderr.log.
// A watcher thread per attempt waits on a pidfd with the attempt's deadline; a timeout or a cancel
// kills the whole process group (SIGTERM, then SIGKILL after a grace period), so a step's own
// children die with it.
//
// Each replica runs under mlops-step-waiter (step_waiter.cc), which writes how the step ended to
// <work_dir>/.mlops-exit.<rank>. The handle is "w:pid:pgid:start_ticks[,pid:start_ticks...]" of
// the waiters: after a restart Recover finds a surviving attempt by it (a reused pid has another
// start time), re-attaches to it through a pidfd and reads its end from the files; an attempt that
// ended while the scheduler was down is reported from the files too. Without a waiter (none found)
// steps are spawned directly, the handle has no "w:", and Recover can only stop what is left.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "services/scheduler/executor.h"

namespace mlops::scheduler {

// mlops-step-waiter beside the running program (/proc/self/exe), else on PATH; empty when neither.
std::string FindStepWaiter();

class LocalExecutor final : public Executor {
 public:
  struct Options {
    int64_t kill_grace_ms = 2000;  // between SIGTERM and SIGKILL on cancel
    // The mlops-step-waiter program; empty: steps are spawned directly (see above).
    std::string waiter;
  };
  LocalExecutor();
  explicit LocalExecutor(Options options);
  ~LocalExecutor() override;  // cancels and waits for every running attempt

  std::string name() const override { return "local"; }
  // The Executor contract (executor.h), codes included.
  absl::StatusOr<std::string> Launch(const LaunchSpec& spec,
                                     std::function<void(const AttemptResult&)> done) override;
  absl::Status Cancel(const std::string& attempt_id) override;
  void Recover(const RecoverSpec& spec, std::function<void(const AttemptResult&)> done) override;
  int running() const override { return running_.load(); }

 private:
  struct Attempt;
  void Watch(std::shared_ptr<Attempt> attempt);
  // Registers an attempt and starts its watcher; ALREADY_EXISTS for an id in use.
  absl::Status Start(std::shared_ptr<Attempt> attempt);

  Options options_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Attempt>> attempts_;
  std::atomic<int> running_{0};
};

}  // namespace mlops::scheduler
