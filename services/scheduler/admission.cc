#include "services/scheduler/admission.h"

#include <algorithm>

#include "services/common/names.h"
#include "services/common/strings.h"

namespace mlops::scheduler {
namespace {

Resources Add(const Resources& a, const Resources& b) {
  return {a.cpu_millis + b.cpu_millis, a.memory_bytes + b.memory_bytes, a.gpus + b.gpus};
}

Resources Sub(const Resources& a, const Resources& b) {
  return {a.cpu_millis - b.cpu_millis, a.memory_bytes - b.memory_bytes, a.gpus - b.gpus};
}

// `request` fits under `limit` given `used`. Quotas: a zero dimension is unlimited. Capacity: taken
// literally (a machine without GPUs admits no GPU step).
bool Within(const Resources& used, const Resources& request, const Resources& limit,
            bool zero_is_unlimited) {
  auto ok = [&](int64_t u, int64_t r, int64_t l) {
    return (zero_is_unlimited && l == 0) || u + r <= l;
  };
  return ok(used.cpu_millis, request.cpu_millis, limit.cpu_millis) &&
         ok(used.memory_bytes, request.memory_bytes, limit.memory_bytes) &&
         ok(used.gpus, request.gpus, limit.gpus);
}

std::string Describe(const Resources& r) {
  return StrCat("cpu ", std::to_string(r.cpu_millis), "m, memory ", std::to_string(r.memory_bytes),
                " bytes, gpu ", std::to_string(r.gpus));
}

}  // namespace

Resources PendingStep::Total() const {
  return {per_replica.cpu_millis * replicas, per_replica.memory_bytes * replicas,
          per_replica.gpus * replicas};
}

Admission::Admission(Resources capacity, int lookahead)
    : capacity_(capacity), lookahead_(std::max(1, lookahead)) {}

absl::Status Admission::SetQueue(const QueueConfig& config) {
  if (absl::Status name = ValidateName(NameKind::kQueue, "queue name", config.name); !name.ok()) {
    return name;
  }
  if (config.max_concurrency < 0 || config.quota.cpu_millis < 0 || config.quota.memory_bytes < 0 ||
      config.quota.gpus < 0) {
    return absl::InvalidArgumentError("queue " + config.name + ": limits must not be negative");
  }
  queues_[config.name].config = config;
  return absl::OkStatus();
}

std::vector<QueueConfig> Admission::Queues() const {
  std::vector<QueueConfig> out;
  for (const auto& [name, queue] : queues_) out.push_back(queue.config);
  return out;
}

absl::Status Admission::Enqueue(const PendingStep& step) {
  auto it = queues_.find(step.queue);
  if (it == queues_.end()) return absl::NotFoundError("queue " + step.queue + " not found");
  if (pending_index_.contains(step.id) || running_.contains(step.id)) {
    return absl::AlreadyExistsError("step " + step.id + " is already queued or running");
  }
  Resources total = step.Total();
  if (!it->second.config.deferred && !Within({}, total, capacity_, false)) {
    return absl::ResourceExhaustedError(StrCat("step ", step.id, " requests ", Describe(total),
                                               ", more than the capacity (", Describe(capacity_),
                                               ")"));
  }
  if (!it->second.config.deferred && !Within({}, total, it->second.config.quota, true)) {
    return absl::ResourceExhaustedError(StrCat("step ", step.id, " requests ", Describe(total),
                                               ", more than queue ", step.queue, "'s quota (",
                                               Describe(it->second.config.quota), ")"));
  }
  Key key{step.priority, next_seq_++};
  it->second.steps.emplace(key, step);
  pending_index_[step.id] = {step.queue, key};
  ++pending_count_;
  return absl::OkStatus();
}

bool Admission::Remove(const std::string& id) {
  auto it = pending_index_.find(id);
  if (it == pending_index_.end()) return false;
  queues_[it->second.first].steps.erase(it->second.second);
  pending_index_.erase(it);
  --pending_count_;
  return true;
}

bool Admission::Fits(const Queue& queue, const Resources& request) const {
  if (queue.config.deferred) return true;
  if (queue.config.max_concurrency > 0 &&
      queue.running >= static_cast<size_t>(queue.config.max_concurrency)) {
    return false;
  }
  return Within(queue.used, request, queue.config.quota, true) &&
         Within(used_, request, capacity_, false);
}

double Admission::Share(const Queue& queue) const {
  // Dominant share of the queue's quota (of the capacity where the quota is unlimited).
  auto share = [](int64_t used, int64_t quota, int64_t capacity) {
    int64_t base = quota > 0 ? quota : capacity;
    return base > 0 ? static_cast<double>(used) / static_cast<double>(base) : 0.0;
  };
  return std::max(
      {share(queue.used.cpu_millis, queue.config.quota.cpu_millis, capacity_.cpu_millis),
       share(queue.used.memory_bytes, queue.config.quota.memory_bytes, capacity_.memory_bytes),
       share(queue.used.gpus, queue.config.quota.gpus, capacity_.gpus),
       share(static_cast<int64_t>(queue.running), queue.config.max_concurrency, 0)});
}

std::vector<PendingStep> Admission::Admit(size_t max) {
  std::vector<PendingStep> admitted;
  // Queues with something that may fit; a queue drops out once nothing in its lookahead fits.
  std::vector<Queue*> candidates;
  for (auto& [name, queue] : queues_) {
    if (!queue.steps.empty()) candidates.push_back(&queue);
  }
  while (admitted.size() < max && !candidates.empty()) {
    // Highest priority, then smallest share, then name.
    auto best = std::min_element(candidates.begin(), candidates.end(), [&](Queue* a, Queue* b) {
      if (a->config.priority != b->config.priority) {
        return a->config.priority > b->config.priority;
      }
      double sa = Share(*a), sb = Share(*b);
      if (sa != sb) return sa < sb;
      return a->config.name < b->config.name;
    });
    Queue& queue = **best;
    bool found = false;
    int looked = 0;
    for (auto it = queue.steps.begin(); it != queue.steps.end() && looked < lookahead_;
         ++it, ++looked) {
      Resources total = it->second.Total();
      if (!Fits(queue, total)) continue;
      PendingStep step = std::move(it->second);
      queue.steps.erase(it);
      pending_index_.erase(step.id);
      --pending_count_;
      queue.used = Add(queue.used, total);
      queue.running += 1;
      step.deferred = queue.config.deferred;
      if (!step.deferred) used_ = Add(used_, total);
      running_[step.id] = step;
      admitted.push_back(std::move(step));
      found = true;
      break;
    }
    if (!found || queue.steps.empty()) candidates.erase(best);
  }
  return admitted;
}

void Admission::Restore(const PendingStep& step) {
  if (running_.contains(step.id)) return;
  Resources total = step.Total();
  PendingStep restored = step;
  restored.deferred = false;
  auto queue = queues_.find(step.queue);
  if (queue != queues_.end()) {
    queue->second.used = Add(queue->second.used, total);
    queue->second.running += 1;
    restored.deferred = queue->second.config.deferred;
  }
  if (!restored.deferred) used_ = Add(used_, total);
  running_[step.id] = std::move(restored);
}

void Admission::Release(const std::string& id) {
  auto it = running_.find(id);
  if (it == running_.end()) return;
  Resources total = it->second.Total();
  auto queue = queues_.find(it->second.queue);
  if (queue != queues_.end()) {
    queue->second.used = Sub(queue->second.used, total);
    queue->second.running -= 1;
  }
  if (!it->second.deferred) used_ = Sub(used_, total);
  running_.erase(it);
}

Admission::QueueStats Admission::Stats(const std::string& name) const {
  QueueStats stats;
  auto it = queues_.find(name);
  if (it == queues_.end()) return stats;
  stats.pending = it->second.steps.size();
  stats.running = it->second.running;
  stats.used = it->second.used;
  return stats;
}

}  // namespace mlops::scheduler
