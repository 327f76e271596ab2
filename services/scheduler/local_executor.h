// The local executor: each attempt is a child process in its own process group, started with
// posix_spawn in its work dir, stdout and stderr written to <work_dir>/stdout.log and stderr.log.
// A watcher thread per attempt waits on a pidfd with the attempt's deadline; a timeout or a cancel
// kills the whole process group (SIGTERM, then SIGKILL after a grace period), so a step's own
// children die with it. The handle is "pid:pgid:start_time_ticks", enough to find (and stop) what
// is left of an attempt after the scheduler restarts, without mistaking a reused pid.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "services/scheduler/executor.h"

namespace mlops::scheduler {

class LocalExecutor final : public Executor {
 public:
  struct Options {
    int64_t kill_grace_ms = 2000;  // between SIGTERM and SIGKILL on cancel
  };
  LocalExecutor();
  explicit LocalExecutor(Options options);
  ~LocalExecutor() override;  // cancels and waits for every running attempt

  std::string name() const override { return "local"; }
  absl::StatusOr<std::string> Launch(const LaunchSpec& spec,
                                     std::function<void(const AttemptResult&)> done) override;
  absl::Status Cancel(const std::string& attempt_id) override;
  AttemptResult Recover(const std::string& attempt_id, const std::string& handle) override;
  int running() const override { return running_.load(); }

 private:
  struct Attempt;
  void Watch(std::shared_ptr<Attempt> attempt);

  Options options_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Attempt>> attempts_;
  std::atomic<int> running_{0};
};

}  // namespace mlops::scheduler
