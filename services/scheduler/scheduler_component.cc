#include "services/scheduler/scheduler_component.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "absl/flags/flag.h"
#include "mlops/scheduler/v1/scheduler.guard.pb.h"
#include "services/common/logging.h"
#include "services/common/metrics.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/scheduler/artifact_gateway.h"
#include "services/scheduler/kubernetes/kubernetes_executor.h"
#include "services/scheduler/local_executor.h"
#include "services/scheduler/metadata_gateway.h"
#include "services/scheduler/scheduler_service.h"
#include "services/scheduler/secret_stores.h"
#include "services/scheduler/validation_gateway.h"

ABSL_FLAG(int, scheduler_cpus, 0, "CPU cores steps may use at once; 0: this machine's");
ABSL_FLAG(int64_t, scheduler_memory_mb, 0, "memory steps may use at once; 0: this machine's");
ABSL_FLAG(int, scheduler_gpus, 0, "GPUs steps may use at once");
ABSL_FLAG(std::string, step_waiter, "",
          "The mlops-step-waiter program that steps run under (so that a restarted scheduler "
          "re-attaches to them); empty: the one beside this binary, else on PATH");

ABSL_FLAG(std::string, executor, "local",
          "Where steps run: local (child processes of this scheduler) or kubernetes (one Job per "
          "attempt; docs/kubernetes.md)");
ABSL_FLAG(std::string, k8s_kubeconfig, "",
          "kubernetes: the kubeconfig to use (its current context); empty: the in-cluster config "
          "of the pod this scheduler runs in (service-account token, CA, KUBERNETES_SERVICE_HOST)");
ABSL_FLAG(std::string, k8s_namespace, "",
          "kubernetes: the namespace of the Jobs; empty: the kubeconfig's or the pod's");
ABSL_FLAG(std::string, k8s_default_image, "",
          "kubernetes: the image of steps that name none (pin it by digest: it is part of every "
          "step's cache key)");
ABSL_FLAG(std::string, k8s_image_pull_policy, "IfNotPresent",
          "kubernetes: imagePullPolicy of the step container unless a pod template sets one");
ABSL_FLAG(std::string, k8s_step_image, "",
          "kubernetes: the image with /mlops (docker/step/build.sh) that an init container copies "
          "into every step pod, so that steps of any image run under `mlops step run`; empty: "
          "step images have mlops on their PATH");
ABSL_FLAG(std::string, k8s_service_account, "",
          "kubernetes: the service account of step pods; empty: the namespace's default");
ABSL_FLAG(std::string, k8s_pod_template, "",
          "kubernetes: a file with the JSON of a PodTemplateSpec laid under every step's pod "
          "(volumes, node selectors, tolerations, ...); steps' own `kubernetes:` lie over it");
ABSL_FLAG(std::string, k8s_scheduler_id, "mlops",
          "kubernetes: the mlops.dev/scheduler label of this scheduler's Jobs (schedulers sharing "
          "a namespace need different ones)");
ABSL_FLAG(std::string, secrets_file, "",
          "the values of the steps' secretEnv (YAML `secrets: [{name, data: {KEY: VALUE}}]`, mode "
          "0600, re-read when it changes); without it, --executor=kubernetes reads the Secrets of "
          "the Jobs' namespace");
ABSL_FLAG(double, k8s_qps, 20, "kubernetes: API requests per second, sustained");
ABSL_FLAG(int, k8s_burst, 40, "kubernetes: API requests in a burst above --k8s_qps");

namespace mlops::scheduler {
namespace {

// The Kubernetes executor as the flags say. FAILED_PRECONDITION for a configuration that cannot
// work (no kubeconfig, not in a pod, an unreadable pod template); the API's codes when it cannot
// list Jobs and Pods (UNAVAILABLE, PERMISSION_DENIED). `*secrets`, when null, becomes the Secrets
// of the Jobs' namespace.
absl::StatusOr<std::unique_ptr<Executor>> OpenKubernetesExecutor(
    std::shared_ptr<SecretStore>* secrets,
    const std::function<absl::StatusOr<std::string>()>& key) {
  const std::string kubeconfig = absl::GetFlag(FLAGS_k8s_kubeconfig);
  absl::StatusOr<k8s::KubeConfig> config =
      kubeconfig.empty() ? k8s::InClusterConfig() : k8s::LoadKubeconfig(kubeconfig);
  if (!config.ok()) return config.status();
  config->qps = absl::GetFlag(FLAGS_k8s_qps);
  config->burst = absl::GetFlag(FLAGS_k8s_burst);
  k8s::KubernetesOptions options;
  options.namespace_name = absl::GetFlag(FLAGS_k8s_namespace);
  options.default_image = absl::GetFlag(FLAGS_k8s_default_image);
  options.image_pull_policy = absl::GetFlag(FLAGS_k8s_image_pull_policy);
  options.service_account = absl::GetFlag(FLAGS_k8s_service_account);
  options.scheduler_id = absl::GetFlag(FLAGS_k8s_scheduler_id);
  options.step_image = absl::GetFlag(FLAGS_k8s_step_image);
  if (const std::string file = absl::GetFlag(FLAGS_k8s_pod_template); !file.empty()) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) {
      return absl::FailedPreconditionError(
          StrCat("--k8s_pod_template: cannot read ", file, ": ", std::strerror(errno)));
    }
    options.pod_template_json = text.str();
  }
  if (options.namespace_name.empty() && config->namespace_name.empty()) {
    options.namespace_name = "default";
  }
  auto client = std::make_shared<k8s::KubeClient>(*config);
  if (*secrets == nullptr) {
    ASSIGN_OR_RETURN(std::string version_key, key());
    *secrets = std::make_shared<KubernetesSecrets>(
        client, options.namespace_name.empty() ? config->namespace_name : options.namespace_name,
        std::move(version_key));
  }
  auto executor = k8s::KubernetesExecutor::Start(client, options);
  if (!executor.ok()) {
    return absl::Status(
        executor.status().code(),
        StrCat("the Kubernetes executor (", config->server, "): ", executor.status().message()));
  }
  return std::unique_ptr<Executor>(std::move(*executor));
}

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
  SchedulerComponent(std::unique_ptr<Db> db, std::string dir, std::unique_ptr<Executor> executor,
                     std::shared_ptr<SecretStore> secrets)
      : db_(std::move(db)),
        dir_(std::move(dir)),
        executor_(std::move(executor)),
        secrets_(std::move(secrets)) {}
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
    // Each run acts in its project, through channels of that project.
    ASSIGN_OR_RETURN(ChannelForProject artifact, PeerChannelsByProject(host, Peer::kArtifact));
    ASSIGN_OR_RETURN(ChannelForProject metadata, PeerChannelsByProject(host, Peer::kMetadata));
    gateway_ = std::make_unique<ClientArtifactGateway>(std::move(artifact));
    metadata_ = std::make_unique<ClientMetadataGateway>(std::move(metadata));
    SchedulerOptions options;
    options.work_root = dir_ + "/work";
    options.secrets = secrets_;
    // Built-in validate steps are carried out by the monitoring service, in the run's project;
    // a scheduler that has none runs every other step (its validate steps fail, saying why).
    if (auto monitoring = PeerChannelsByProject(host, Peer::kMonitoring); monitoring.ok()) {
      options.validation = MonitoringValidationGateway(*std::move(monitoring));
    } else {
      LogInfo("validate_steps_unavailable",
              {{"detail", std::string(monitoring.status().message())}});
    }
    int cpus = absl::GetFlag(FLAGS_scheduler_cpus);
    int64_t memory_mb = absl::GetFlag(FLAGS_scheduler_memory_mb);
    const bool local = executor_->name() == "local";
    // Local steps share this machine; Jobs share the cluster, whose scheduler (and Kueue) decide
    // what fits: there, only limits given by flag apply.
    constexpr int64_t kUnlimited = int64_t{1} << 40;
    if (cpus <= 0) {
      cpus = local ? static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))
                   : static_cast<int>(kUnlimited >> 20);
    }
    if (memory_mb <= 0) {
      memory_mb = local
                      ? static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE) >> 20
                      : kUnlimited;
    }
    int64_t gpus = absl::GetFlag(FLAGS_scheduler_gpus);
    if (gpus <= 0 && !local) gpus = kUnlimited >> 20;
    options.capacity = {static_cast<int64_t>(cpus) * 1000, memory_mb << 20, gpus};
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
        Scheduler::Open(db_.get(), executor_.get(), gateway_.get(), options, metadata_.get());
    if (!scheduler.ok()) return scheduler.status();
    scheduler_ = std::move(*scheduler);
    service_.set_scheduler(scheduler_.get());
    queues_->Set(scheduler_.get());
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Db> db_;
  std::string dir_;
  std::unique_ptr<Executor> executor_;
  std::shared_ptr<SecretStore> secrets_;
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
  // Secret versions (in step fingerprints) are keyed with this scheduler's own random key.
  auto version_key = [&]() { return LoadOrCreateVersionKey(dir + "/secret_version_key"); };
  std::shared_ptr<SecretStore> secrets;
  if (const std::string file = absl::GetFlag(FLAGS_secrets_file); !file.empty()) {
    ASSIGN_OR_RETURN(std::string key, version_key());
    auto opened = SecretsFile::Open(file, std::move(key));
    if (!opened.ok()) {
      return absl::Status(opened.status().code(),
                          StrCat("--secrets_file: ", opened.status().message()));
    }
    secrets = std::move(*opened);
  }
  std::unique_ptr<Executor> executor;
  const std::string kind = absl::GetFlag(FLAGS_executor);
  if (kind == "kubernetes") {
    ASSIGN_OR_RETURN(executor, OpenKubernetesExecutor(&secrets, version_key));
  } else if (kind == "local") {
    std::string waiter = absl::GetFlag(FLAGS_step_waiter);
    if (waiter.empty()) waiter = FindStepWaiter();
    if (waiter.empty()) {
      LogWarning("step_waiter_missing",
                 {{"detail",
                   "mlops-step-waiter is neither beside this binary nor on PATH (--step_waiter): "
                   "steps a restart interrupts are stopped and retried, not re-attached"}});
    }
    executor = std::make_unique<LocalExecutor>(LocalExecutor::Options{2000, waiter});
  } else {
    return absl::InvalidArgumentError(
        StrCat("--executor=", kind, ": expected local or kubernetes"));
  }
  return std::unique_ptr<Component>(
      new SchedulerComponent(std::move(*db), dir, std::move(executor), std::move(secrets)));
}

}  // namespace mlops::scheduler
