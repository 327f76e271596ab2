// The Kubernetes executor: each attempt is one batch/v1 Job (an Indexed Job and a headless
// Service for a multi-replica step), created through the API server's REST API with a name
// derived from the attempt id, so that a restarted scheduler finds its Jobs instead of creating
// them twice. Attempts end by watch events (one watch of Jobs and one of Pods, both filtered by
// this scheduler's label, resumed from their resourceVersion and relisted after 410 Gone), never
// by polling. A Job is deleted once the scheduler has recorded its result (Collected); its
// ttlSecondsAfterFinished is only a safety net. The log of a step (of rank 0 for several
// replicas; stdout and stderr together, as the kubelet keeps them) is followed into
// <work dir>/stdout.log while it runs and is whole there before the attempt is reported.
// An attempt of a queue that Kueue admits (LaunchSpec::kueue_local_queue) is created suspended
// with Kueue's queue-name label; Kueue resumes it when admitted, and when Kueue suspends it again
// (preemption) the attempt ends as lost (its Workload's eviction reason in the message), so that
// the scheduler's bounded retry of lost attempts decides, not an endless requeue.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mlops/scheduler/internal/kubernetes.pb.h"
#include "services/scheduler/executor.h"
#include "services/scheduler/kubernetes/kube_client.h"

namespace mlops::scheduler::k8s {

struct KubernetesOptions {
  std::string namespace_name;  // "" = the client config's namespace
  // Which scheduler owns a Job (label mlops.dev/scheduler): two schedulers sharing a namespace
  // never touch each other's Jobs.
  std::string scheduler_id = "mlops";
  std::string default_image;  // for steps that name none
  std::string image_pull_policy = "IfNotPresent";
  int ttl_seconds_after_finished = 86400;  // the safety net, long enough to collect after a restart
  std::string service_account;             // "" = the namespace's default
  // Laid under every Job's pod template (JSON of a PodTemplateSpec: nodeSelector, tolerations,
  // volumes, affinity, ...); the step's own template (LaunchSpec::pod_template_json) lies over it
  // and what mlops sets (image, command, env, resources, labels) over both.
  std::string pod_template_json;
  int master_port = 29500;  // MASTER_PORT of multi-replica steps
  // Steps run under `mlops step run` (inputs fetched, outputs uploaded and reported by the pod:
  // the executor is remote). False only for tests of the executor alone: commands run as given.
  bool wrap_steps = true;
  // The image with /mlops (docker/step/build.sh), copied into every step pod by an init
  // container; "" = the step's image has `mlops` on its PATH.
  std::string step_image;
};

// The Job name of an attempt: "mlops-" and 40 hex digits of its SHA-256 (a DNS label).
std::string JobName(const std::string& attempt_id);

// The Job an attempt is launched as (exposed for tests): labels mlops.dev/scheduler,
// mlops.dev/attempt (the name's hash), mlops.dev/pipeline-run (the run's id within its project),
// mlops.dev/project and mlops.dev/step where they are valid label values; annotations with the
// attempt id, run and step; backoffLimit 0; activeDeadlineSeconds from the timeout; requests =
// limits for cpu, memory and nvidia.com/gpu; for replicas > 1 an Indexed Job with RANK, WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT in the env. Returns the Job's JSON: pod template overrides keep
// fields mlops does not model. Objects merge key by key, lists of named objects (containers, env,
// volumes, volumeMounts) by name, the first container of an override, if unnamed, is the step's;
// INVALID_ARGUMENT for an override that is no JSON object or names a known field with a wrong type.
absl::StatusOr<std::string> BuildJob(const LaunchSpec& spec, const KubernetesOptions& options,
                                     const std::string& namespace_name);

class KubernetesExecutor final : public Executor {
 public:
  // Lists this scheduler's Jobs and Pods and starts watching them. The client is shared with
  // whoever else talks to the same API server. UNAVAILABLE when the API server cannot be
  // reached, PERMISSION_DENIED when the account may not list Jobs or Pods.
  static absl::StatusOr<std::unique_ptr<KubernetesExecutor>> Start(
      std::shared_ptr<KubeClient> client, KubernetesOptions options);
  ~KubernetesExecutor() override;

  std::string name() const override { return "kubernetes"; }
  // Creates the attempt's Job (and Service). A Job of that name that exists already (a launch
  // repeated after a restart) is attached to, not created again. INVALID_ARGUMENT for an empty
  // argv or no image; the API's codes (PERMISSION_DENIED, UNAVAILABLE, ...).
  absl::StatusOr<std::string> Launch(const LaunchSpec& spec,
                                     std::function<void(const AttemptResult&)> done) override;
  // Deletes the Job (background propagation: its pods go too); `done` reports kCanceled.
  absl::Status Cancel(const std::string& attempt_id) override;
  // Finds the attempt's Job: running, it is watched on; finished while the scheduler was down,
  // `done` reports how; gone, `done` reports kLost.
  void Recover(const RecoverSpec& spec, std::function<void(const AttemptResult&)> done) override;
  // Deletes, in the background, every Job of this scheduler that no attempt launched or recovered
  // (a Job created just before a crash that never recorded it).
  void RecoveryDone() override;
  // Deletes the Job of an attempt whose result the scheduler has stored.
  void Collected(const std::string& attempt_id) override;
  int running() const override;
  bool remote() const override { return options_.wrap_steps; }
  bool kueue() const override { return true; }
  // The default image and the scheduler's pod template.
  std::string settings_fingerprint() const override;

  // API requests made so far (figures of the API budget).
  int64_t api_requests() const { return client_->requests(); }

 private:
  // A step's log, streamed (follow=true) into <work dir>/stdout.log while it runs.
  struct LogFollower {
    std::string pod;
    std::atomic<bool> stop{false};
    std::atomic<bool> ended{false};  // the stream ended by itself: the file holds the whole log
    std::thread thread;
  };
  struct Attempt {
    std::string attempt_id;
    std::function<void(const AttemptResult&)> done;
    int64_t start_ms = 0;
    int replicas = 1;
    // The latest state seen of each pod of the attempt, by name (exit codes, waiting reasons).
    std::map<std::string, Pod> pods;
    std::string work_dir;              // stdout.log goes there ("" = nowhere)
    std::shared_ptr<LogFollower> log;  // once rank 0's container has started
    bool admitted = false;             // a Kueue Job seen resumed (admitted) by Kueue
  };

  KubernetesExecutor(std::shared_ptr<KubeClient> client, KubernetesOptions options);
  std::string JobsPath() const;
  std::string PodsPath() const;
  // Both watches, each in its own thread: list, then watch from the list's resourceVersion.
  void WatchLoop(bool jobs);
  // A Job or Pod seen (listed or watched).
  void OnJob(const Job& job, bool deleted);
  void OnPod(const Pod& pod);
  // Why Kueue evicted the Job (its Workload's Evicted condition: "Preempted: ..."); "" when it
  // cannot be told.
  std::string KueueEviction(const Job& job);
  // Lists the pods of Job `name` into OnPod (their exit codes).
  void FetchPods(const std::string& name);
  // Ends the attempt of Job `name` with `result` (once: it is removed first), outside mu_; when
  // it ran, its log is whole in its work dir first (on the background thread).
  void Finish(const std::string& name, AttemptResult result);
  // Starts following `pod`'s log into the attempt's work dir; called with mu_ held.
  void FollowLog(const std::string& pod, Attempt* attempt);
  // Reads the whole log of `pod` (found among the Job's pods when "") into work_dir/stdout.log.
  void WriteWholeLog(const std::string& name, std::string pod, const std::string& work_dir);
  // How a finished Job ended, from its conditions and its pods' states; nullopt while it runs.
  std::optional<AttemptResult> Judge(const Job& job, const Attempt& attempt);
  // Deletes the Job (and its headless Service, if it has one); NOT_FOUND is fine.
  void Delete(const std::string& name);
  // Runs `task` on the background thread (deletions).
  void Background(std::function<void()> task);

  std::shared_ptr<KubeClient> client_;
  const KubernetesOptions options_;
  std::string namespace_;
  mutable std::mutex mu_;
  std::map<std::string, Attempt> attempts_;  // by Job name; guarded by mu_
  std::set<std::string> seen_jobs_;          // Jobs of ours listed or watched; guarded by mu_
  // Jobs of attempts launched or recovered and not yet collected: not orphans.
  std::set<std::string> known_;         // guarded by mu_
  std::set<std::string> with_service_;  // Jobs with a headless Service; guarded by mu_
  std::atomic<bool> stop_{false};
  std::thread jobs_watch_, pods_watch_, background_;
  std::mutex tasks_mu_;
  std::condition_variable tasks_cv_;
  std::vector<std::function<void()>> tasks_;  // guarded by tasks_mu_
  std::atomic<bool> listed_jobs_{false}, listed_pods_{false};
};

}  // namespace mlops::scheduler::k8s
