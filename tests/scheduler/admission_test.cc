// Admission: priorities, fair share, quotas, concurrency limits, all-or-nothing admission of
// multi-replica steps, requests that could never fit, and queues whose admission Kueue makes.
#include "services/scheduler/admission.h"

#include "tests/testing/testing.h"

namespace mlops::scheduler {
namespace {

using ::mlops::testing::StatusIs;
using ::testing::ElementsAre;

// A machine with this much cpu, plenty of memory and no GPU.
Resources Cpu(int64_t millis) { return {millis, int64_t{1} << 40, 0}; }

PendingStep Step(const std::string& id, const std::string& queue, int64_t cpu, int replicas = 1,
                 int priority = 0) {
  PendingStep step;
  step.id = id;
  step.queue = queue;
  step.per_replica = {cpu, 0, 0};
  step.replicas = replicas;
  step.priority = priority;
  return step;
}

std::vector<std::string> Ids(const std::vector<PendingStep>& steps) {
  std::vector<std::string> out;
  for (const auto& s : steps) out.push_back(s.id);
  return out;
}

TEST(AdmissionTest, HigherPriorityQueuesGoFirstAndCapacityBounds) {
  Admission admission(Cpu(4000));
  ASSERT_OK(admission.SetQueue({"batch", 0, 0, {}}));
  ASSERT_OK(admission.SetQueue({"urgent", 10, 0, {}}));
  ASSERT_OK(admission.Enqueue(Step("b1", "batch", 1000)));
  ASSERT_OK(admission.Enqueue(Step("b2", "batch", 1000)));
  ASSERT_OK(admission.Enqueue(Step("u1", "urgent", 1000)));
  ASSERT_OK(admission.Enqueue(Step("u2", "urgent", 2000)));
  ASSERT_OK(admission.Enqueue(Step("b3", "batch", 1000)));
  EXPECT_THAT(Ids(admission.Admit()), ElementsAre("u1", "u2", "b1"));  // 4 cores used
  EXPECT_EQ(admission.pending(), 2u);
  EXPECT_TRUE(admission.Admit().empty());
  admission.Release("u2");
  EXPECT_THAT(Ids(admission.Admit()), ElementsAre("b2", "b3"));
}

TEST(AdmissionTest, EqualPriorityQueuesShareFairly) {
  Admission admission(Cpu(6000));
  ASSERT_OK(admission.SetQueue({"a", 0, 0, Cpu(6000)}));
  ASSERT_OK(admission.SetQueue({"b", 0, 0, Cpu(6000)}));
  for (int i = 0; i < 6; ++i) {
    ASSERT_OK(admission.Enqueue(Step("a" + std::to_string(i), "a", 1000)));
    ASSERT_OK(admission.Enqueue(Step("b" + std::to_string(i), "b", 1000)));
  }
  auto admitted = admission.Admit();
  ASSERT_EQ(admitted.size(), 6u);
  EXPECT_EQ(admission.Stats("a").running, 3u);
  EXPECT_EQ(admission.Stats("b").running, 3u);
}

TEST(AdmissionTest, QuotasAndConcurrencyLimitsHold) {
  Admission admission({100000, int64_t{1} << 40, 4});  // four GPUs
  ASSERT_OK(admission.SetQueue({"small", 0, 2, {}}));
  ASSERT_OK(admission.SetQueue({"gpu", 0, 0, {0, 0, 1}}));
  for (int i = 0; i < 5; ++i)
    ASSERT_OK(admission.Enqueue(Step("s" + std::to_string(i), "small", 1)));
  PendingStep g1 = Step("g1", "gpu", 1);
  g1.per_replica.gpus = 1;
  PendingStep g2 = g1;
  g2.id = "g2";
  ASSERT_OK(admission.Enqueue(g1));
  ASSERT_OK(admission.Enqueue(g2));
  EXPECT_THAT(Ids(admission.Admit()), ElementsAre("g1", "s0", "s1"));
  admission.Release("g1");
  admission.Release("s0");
  EXPECT_THAT(Ids(admission.Admit()), ElementsAre("g2", "s2"));
}

TEST(AdmissionTest, ADeferredQueueIsAdmittedAtOnceAndLeavesTheCapacityToOthers) {
  // A queue whose admission Kueue makes: its limits and the capacity hold nothing back, and its
  // running steps take no capacity from the other queues.
  Admission admission(Cpu(2000));
  ASSERT_OK(admission.SetQueue({"kueue", 0, 1, Cpu(1000), /*deferred=*/true}));
  ASSERT_OK(admission.SetQueue({"local", 0, 0, {}}));
  ASSERT_OK(admission.Enqueue(Step("k1", "kueue", 1500)));
  ASSERT_OK(admission.Enqueue(Step("k2", "kueue", 8000, /*replicas=*/2)));  // > capacity
  ASSERT_OK(admission.Enqueue(Step("l1", "local", 2000)));
  auto admitted = admission.Admit();
  EXPECT_THAT(Ids(admitted), ::testing::UnorderedElementsAre("k1", "k2", "l1"));
  EXPECT_EQ(admission.Stats("kueue").running, 2u);
  ASSERT_OK(admission.Enqueue(Step("l2", "local", 1)));
  EXPECT_TRUE(admission.Admit().empty());  // "local" holds the whole capacity
  admission.Release("k1");
  admission.Release("k2");
  EXPECT_TRUE(admission.Admit().empty());  // releasing deferred steps freed nothing
  admission.Release("l1");
  EXPECT_THAT(Ids(admission.Admit()), ElementsAre("l2"));
  // Restored after a restart, a deferred queue's step takes no capacity either.
  admission.Restore(Step("k3", "kueue", 4000));
  ASSERT_OK(admission.Enqueue(Step("l3", "local", 1999)));
  EXPECT_THAT(Ids(admission.Admit()), ElementsAre("l3"));
  // A queue that stops deferring is bounded by its limits again.
  ASSERT_OK(admission.SetQueue({"kueue", 0, 1, Cpu(1000)}));
  ASSERT_THAT(admission.Enqueue(Step("k4", "kueue", 1500)),
              StatusIs(absl::StatusCode::kResourceExhausted, "quota"));
}

TEST(AdmissionTest, MultiReplicaStepsAreAdmittedWholeOrNotAtAll) {
  Admission admission(Cpu(4000));
  ASSERT_OK(admission.SetQueue({"q", 0, 0, {}}));
  ASSERT_OK(admission.Enqueue(Step("warm", "q", 2000)));
  ASSERT_OK(admission.Enqueue(Step("gang", "q", 1000, /*replicas=*/4)));  // needs 4 cores at once
  ASSERT_OK(admission.Enqueue(Step("small", "q", 1000)));
  // The gang does not fit next to `warm`; `small` is not held up behind it.
  EXPECT_THAT(Ids(admission.Admit()), ElementsAre("warm", "small"));
  admission.Release("warm");
  EXPECT_TRUE(admission.Admit().empty());  // 3 free cores: still not enough for all 4 replicas
  admission.Release("small");
  EXPECT_THAT(Ids(admission.Admit()), ElementsAre("gang"));
}

TEST(AdmissionTest, BadRequestsAreRefusedUpFront) {
  Admission admission(Cpu(2000));
  ASSERT_OK(admission.SetQueue({"q", 0, 0, {1000, 0, 0}}));
  EXPECT_THAT(admission.Enqueue(Step("x", "nope", 1)),
              StatusIs(absl::StatusCode::kNotFound, "nope"));
  EXPECT_THAT(admission.Enqueue(Step("huge", "q", 1000, 3)),
              StatusIs(absl::StatusCode::kResourceExhausted, "more than the capacity"));
  EXPECT_THAT(admission.Enqueue(Step("over", "q", 1500)),
              StatusIs(absl::StatusCode::kResourceExhausted, "quota"));
  PendingStep gpu = Step("gpu", "q", 100);
  gpu.per_replica.gpus = 1;  // this machine has none
  EXPECT_THAT(admission.Enqueue(gpu),
              StatusIs(absl::StatusCode::kResourceExhausted, "more than the capacity"));
  ASSERT_OK(admission.Enqueue(Step("ok", "q", 500)));
  EXPECT_THAT(admission.Enqueue(Step("ok", "q", 500)),
              StatusIs(absl::StatusCode::kAlreadyExists, "ok"));
  EXPECT_THAT(admission.SetQueue({"bad name", 0, 0, {}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "queue name"));
  EXPECT_TRUE(admission.Remove("ok"));
  EXPECT_FALSE(admission.Remove("ok"));
  EXPECT_EQ(admission.pending(), 0u);
}

TEST(AdmissionTest, ManyPendingStepsDrainInOrder) {
  Admission admission(Cpu(8000));
  for (int q = 0; q < 10; ++q) ASSERT_OK(admission.SetQueue({"q" + std::to_string(q), 0, 0, {}}));
  for (int i = 0; i < 20000; ++i) {
    ASSERT_OK(admission.Enqueue(Step("s" + std::to_string(i), "q" + std::to_string(i % 10), 1000)));
  }
  size_t done = 0;
  while (admission.pending() > 0) {
    auto batch = admission.Admit();
    ASSERT_FALSE(batch.empty());
    ASSERT_LE(admission.running(), 8u);
    for (const auto& step : batch) admission.Release(step.id);
    done += batch.size();
  }
  EXPECT_EQ(done, 20000u);
}

}  // namespace
}  // namespace mlops::scheduler
