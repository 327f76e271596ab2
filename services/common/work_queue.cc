#include "services/common/work_queue.h"

namespace mlops {

WorkQueue::WorkQueue(int threads) {
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { Work(); });
}

WorkQueue::~WorkQueue() { Stop(/*drain=*/true); }

bool WorkQueue::Post(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void WorkQueue::Stop(bool drain) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    drain_ = drain;
    if (!drain) jobs_.clear();
  }
  cv_.notify_all();
  for (std::thread& thread : threads_) thread.join();
  std::lock_guard lock(mu_);
  threads_.clear();
  jobs_.clear();
}

size_t WorkQueue::pending() const {
  std::lock_guard lock(mu_);
  return jobs_.size();
}

void WorkQueue::Work() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty() || (stopping_ && !drain_)) return;
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    job = nullptr;  // its captures go before the lock is taken again
    lock.lock();
  }
}

}  // namespace mlops
