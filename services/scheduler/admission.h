// Admission: which pending steps may start now. Queues have a priority, a concurrency limit and a
// resource quota (cpu, memory, gpu); the machine or cluster has a capacity. A step is admitted only
// when its whole request fits (every replica at once: gang admission) within its queue's remaining
// quota and the free capacity. Among queues of equal priority the one using the smallest share of
// its quota goes first (fair share); within a queue steps go by step priority, then arrival
// (best-effort FIFO: a step that does not fit is passed over, not waited for, looking at most
// `lookahead` steps deep so a decision stays cheap with 100,000 pending).
//
// In memory only: the scheduler persists steps and rebuilds this from them after a restart.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "services/scheduler/pipeline_spec.h"

namespace mlops::scheduler {

struct QueueConfig {
  std::string name;
  int priority = 0;         // higher first
  int max_concurrency = 0;  // running steps; 0: no limit
  Resources quota;          // per dimension; 0: no limit (capacity, unlike quotas, is literal)
  // Admission is deferred to something else (a Kueue LocalQueue): the queue's steps are admitted
  // as soon as they are enqueued, whatever their request, the queue's limits and the free
  // capacity, and they do not count against the capacity.
  bool deferred = false;
};

struct PendingStep {
  std::string id;
  std::string queue;
  int priority = 0;  // within the queue, higher first
  Resources per_replica;
  int replicas = 1;
  bool deferred = false;  // set by Admission: admitted from a deferred queue, capacity not counted
  Resources Total() const;
};

class Admission {
 public:
  explicit Admission(Resources capacity, int lookahead = 64);

  // Creates or updates a queue. INVALID_ARGUMENT for a bad name or negative limits.
  absl::Status SetQueue(const QueueConfig& config);
  std::vector<QueueConfig> Queues() const;
  // NOT_FOUND (queue), ALREADY_EXISTS (id), RESOURCE_EXHAUSTED when the step could never fit
  // (its request exceeds the capacity or its queue's quota), so it is not left pending forever.
  absl::Status Enqueue(const PendingStep& step);
  // Drops a pending step (canceled); false when it was not pending.
  bool Remove(const std::string& id);
  // Admits what fits now, at most `max` steps, in admission order; their resources count as used
  // until Release.
  std::vector<PendingStep> Admit(size_t max = SIZE_MAX);
  // A step that runs already (re-attached after a restart) counts as admitted, whatever is free:
  // its resources count as used until Release.
  void Restore(const PendingStep& step);
  // A running step ended: its resources and concurrency slot are free again.
  void Release(const std::string& id);

  size_t pending() const { return pending_count_; }
  size_t running() const { return running_.size(); }
  struct QueueStats {
    size_t pending = 0;
    size_t running = 0;
    Resources used;
  };
  QueueStats Stats(const std::string& queue) const;

 private:
  struct Key {  // order within a queue
    int priority;
    uint64_t seq;
    bool operator<(const Key& o) const {
      return priority != o.priority ? priority > o.priority : seq < o.seq;
    }
  };
  struct Queue {
    QueueConfig config;
    std::map<Key, PendingStep> steps;
    Resources used;
    size_t running = 0;
  };
  bool Fits(const Queue& queue, const Resources& request) const;
  double Share(const Queue& queue) const;

  Resources capacity_;
  Resources used_;
  int lookahead_;
  uint64_t next_seq_ = 0;
  std::map<std::string, Queue> queues_;
  absl::flat_hash_map<std::string, std::pair<std::string, Key>> pending_index_;  // id -> queue
  absl::flat_hash_map<std::string, PendingStep> running_;
  size_t pending_count_ = 0;
};

}  // namespace mlops::scheduler
