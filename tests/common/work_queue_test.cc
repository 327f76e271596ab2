// The work queue: every job on its threads, drained or dropped on stop.
#include "services/common/work_queue.h"

#include <atomic>
#include <future>
#include <set>
#include <thread>

#include "tests/testing/testing.h"

namespace mlops {
namespace {

TEST(WorkQueueTest, RunsEveryJobOnItsThreadsAndDrainsOnStop) {
  std::atomic<int> done{0};
  std::mutex mu;
  std::set<std::thread::id> threads;
  {
    WorkQueue queue(3);
    for (int i = 0; i < 300; ++i) {
      ASSERT_TRUE(queue.Post([&] {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        std::lock_guard lock(mu);
        threads.insert(std::this_thread::get_id());
        ++done;
      }));
    }
  }  // the destructor drains
  EXPECT_EQ(done.load(), 300);
  EXPECT_GE(threads.size(), 2u);
  EXPECT_EQ(threads.count(std::this_thread::get_id()), 0u);
}

TEST(WorkQueueTest, StopWithoutDrainDropsQueuedJobsAndRefusesNewOnes) {
  std::atomic<int> done{0};
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::promise<void> started;
  WorkQueue queue(1);
  queue.Post([&, gate] {
    started.set_value();
    gate.wait();
    ++done;
  });
  started.get_future().wait();
  for (int i = 0; i < 10; ++i) queue.Post([&] { ++done; });
  EXPECT_EQ(queue.pending(), 10u);
  std::thread stopper([&] { queue.Stop(/*drain=*/false); });
  while (queue.pending() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  release.set_value();
  stopper.join();
  EXPECT_EQ(done.load(), 1);  // only the running job finished
  EXPECT_FALSE(queue.Post([&] { ++done; }));
  queue.Stop(/*drain=*/true);  // idempotent
  EXPECT_EQ(done.load(), 1);
}

}  // namespace
}  // namespace mlops
