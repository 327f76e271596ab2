#include "services/scheduler/scheduler_component.h"

#include <unistd.h>

#include <thread>

#include "absl/flags/flag.h"
#include "services/common/logging.h"
#include "services/common/metrics.h"
#include "services/common/status.h"
#include "services/scheduler/artifact_gateway.h"
#include "services/scheduler/local_executor.h"
#include "services/scheduler/metadata_gateway.h"
#include "services/scheduler/scheduler_service.h"

ABSL_FLAG(int, scheduler_cpus, 0, "CPU cores steps may use at once; 0: this machine's");
ABSL_FLAG(int64_t, scheduler_memory_mb, 0, "memory steps may use at once; 0: this machine's");
ABSL_FLAG(int, scheduler_gpus, 0, "GPUs steps may use at once");
ABSL_FLAG(std::string, step_waiter, "",
          "The mlops-step-waiter program that steps run under (so that a restarted scheduler "
          "re-attaches to them); empty: the one beside this binary, else on PATH");

namespace mlops::scheduler {
namespace {

// mlops_scheduler_queue_pending{queue} and mlops_scheduler_queue_running{queue}, read at each
// scrape (nothing before the scheduler has started).
class QueueCollector : public prometheus::Collectable {
 public:
  void Set(Scheduler* scheduler) {
    std::lock_guard lock(mu_);
    scheduler_ = scheduler;
  }
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::lock_guard lock(mu_);
    if (scheduler_ == nullptr) return {};
    auto pending =
        GaugeFamily("mlops_scheduler_queue_pending", "Steps of a queue waiting for admission");
    auto running = GaugeFamily("mlops_scheduler_queue_running", "Steps of a queue running now");
    for (const auto& queue : scheduler_->ListQueues()) {
      AddSample(&pending, static_cast<double>(queue.pending()), {{"queue", queue.name()}});
      AddSample(&running, static_cast<double>(queue.running()), {{"queue", queue.name()}});
    }
    return {pending, running};
  }

 private:
  mutable std::mutex mu_;
  Scheduler* scheduler_ = nullptr;
};

class SchedulerComponent : public Component {
 public:
  SchedulerComponent(std::unique_ptr<Db> db, std::string dir, std::string waiter)
      : db_(std::move(db)), dir_(std::move(dir)), executor_(LocalExecutor::Options{2000, waiter}) {
    if (waiter.empty()) {
      LogWarning("step_waiter_missing",
                 {{"detail",
                   "mlops-step-waiter is neither beside this binary nor on PATH (--step_waiter): "
                   "steps a restart interrupts are stopped and retried, not re-attached"}});
    }
  }
  ~SchedulerComponent() override {
    queues_->Set(nullptr);
    scheduler_.reset();  // the engine stops before the executor and the gateway go
  }
  std::string name() const override { return "scheduler"; }
  void Stop() override {
    if (scheduler_ != nullptr) scheduler_->Stop();
  }

  void Register(ServiceHost& host) override {
    host.AddService(&service_);
    host.DeclareServes("scheduler");
    host.rocksdb_collector().Add("scheduler", db_.get());
    host.http().AddCollectable(queues_);
  }

  absl::Status Started(ServiceHost& host) override {
    // Steps read inputs from and write outputs to the artifact service, and are recorded in the
    // metadata service as tracking runs and lineage executions.
    ASSIGN_OR_RETURN(auto artifact, PeerChannel(host, Peer::kArtifact));
    ASSIGN_OR_RETURN(auto metadata, PeerChannel(host, Peer::kMetadata));
    gateway_ = std::make_unique<ClientArtifactGateway>(artifact);
    metadata_ = std::make_unique<ClientMetadataGateway>(metadata);
    SchedulerOptions options;
    options.work_root = dir_ + "/work";
    int cpus = absl::GetFlag(FLAGS_scheduler_cpus);
    if (cpus <= 0) cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    int64_t memory_mb = absl::GetFlag(FLAGS_scheduler_memory_mb);
    if (memory_mb <= 0) {
      memory_mb = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE) >> 20;
    }
    options.capacity = {static_cast<int64_t>(cpus) * 1000, memory_mb << 20,
                        absl::GetFlag(FLAGS_scheduler_gpus)};
    // Steps call the services where this scheduler does (a split deployment passes the peers'
    // addresses; the all-in-one server is all of them), never a hard-coded port.
    options.step_env = {
        {"MLOPS_SERVER", host.ReachableAddress()},
        {"MLOPS_SCHEDULER_SERVER", PeerAddress(host, Peer::kScheduler)},
        {"MLOPS_METADATA_SERVER", PeerAddress(host, Peer::kMetadata)},
        {"MLOPS_ARTIFACT_SERVER", PeerAddress(host, Peer::kArtifact)},
        {"MLOPS_MONITORING_SERVER", PeerAddress(host, Peer::kMonitoring)},
    };
    auto scheduler =
        Scheduler::Open(db_.get(), &executor_, gateway_.get(), options, metadata_.get());
    if (!scheduler.ok()) return scheduler.status();
    scheduler_ = std::move(*scheduler);
    service_.set_scheduler(scheduler_.get());
    queues_->Set(scheduler_.get());
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Db> db_;
  std::string dir_;
  LocalExecutor executor_;
  std::unique_ptr<ClientArtifactGateway> gateway_;
  std::unique_ptr<ClientMetadataGateway> metadata_;
  std::unique_ptr<Scheduler> scheduler_;
  SchedulerServiceImpl service_;
  std::shared_ptr<QueueCollector> queues_ = std::make_shared<QueueCollector>();
};

}  // namespace

absl::StatusOr<std::unique_ptr<Component>> OpenSchedulerComponent(const std::string& data_dir,
                                                                  const Db::Options& options) {
  std::string dir = data_dir + "/scheduler";
  // On-disk formats: 1 (issue 15) records the format.
  Db::Options versioned = Versioned(options, 1, {RecordFormatMigration()});
  auto db = Db::Open(dir + "/db", SchedulerColumnFamilies(), versioned);
  if (!db.ok()) return db.status();
  std::string waiter = absl::GetFlag(FLAGS_step_waiter);
  if (waiter.empty()) waiter = FindStepWaiter();
  return std::unique_ptr<Component>(new SchedulerComponent(std::move(*db), dir, waiter));
}

}  // namespace mlops::scheduler
