// A fixed pool of threads running jobs in the order they were posted (several at once when the
// pool has several threads). For work that blocks on I/O or RPCs and must stay off a latency-
// critical thread, such as the scheduler's engine.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mlops {

class WorkQueue {
 public:
  explicit WorkQueue(int threads);
  ~WorkQueue();  // Stop(/*drain=*/true) unless stopped already

  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues `job`; false (and the job is dropped) once Stop has been called.
  bool Post(std::function<void()> job);
  // Stops the threads after the jobs already queued have run (drain), or after only the running
  // ones have finished (the queued ones are dropped). Jobs may Post while it waits: those are
  // dropped. Idempotent; must not be called from a job.
  void Stop(bool drain);
  // Jobs queued and not yet started.
  size_t pending() const;

 private:
  void Work();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  bool drain_ = true;
  std::vector<std::thread> threads_;
};

}  // namespace mlops
