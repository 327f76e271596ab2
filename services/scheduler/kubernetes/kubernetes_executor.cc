#include "services/scheduler/kubernetes/kubernetes_executor.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <optional>

#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "services/common/digest.h"
#include "services/common/logging.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::scheduler::k8s {
namespace {

namespace pb = ::google::protobuf;
namespace pbu = ::google::protobuf::util;

constexpr char kSchedulerLabel[] = "mlops.dev/scheduler";
constexpr char kAttemptLabel[] = "mlops.dev/attempt";
constexpr char kAttemptAnnotation[] = "mlops.dev/attempt-id";
// Kueue admits a Job labelled with its LocalQueue's name.
constexpr char kKueueQueueLabel[] = "kueue.x-k8s.io/queue-name";
// A watch is ended by the server after this long and resumed from where it was.
constexpr int kWatchTimeoutSeconds = 300;
// Waiting reasons of a container that will not start by waiting longer.
const char* const kFatalWaiting[] = {
    "ErrImagePull",         "ImagePullBackOff",           "ErrImageNeverPull", "InvalidImageName",
    "CreateContainerError", "CreateContainerConfigError", "RunContainerError"};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// RFC 3339 ("2026-12-05T16:40:41Z") to ms; 0 when empty or unreadable.
int64_t ParseTimeMs(const std::string& text) {
  absl::Time time;
  std::string error;
  if (text.empty() || !absl::ParseTime(absl::RFC3339_full, text, &time, &error)) return 0;
  return absl::ToUnixMillis(time);
}

// A label value (at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends), or "" when `text`
// cannot be one as it is.
std::string LabelValue(const std::string& text) {
  if (text.empty() || text.size() > 63) return "";
  for (char c : text) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return "";
    }
  }
  if (!std::isalnum(static_cast<unsigned char>(text.front())) ||
      !std::isalnum(static_cast<unsigned char>(text.back()))) {
    return "";
  }
  return text;
}

std::string CpuQuantity(int64_t millis) {
  return millis % 1000 == 0 ? std::to_string(millis / 1000) : StrCat(millis, "m");
}

absl::Status ParseJson(std::string_view json, google::protobuf::Message* out) {
  pbu::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto parsed = pbu::JsonStringToMessage(std::string(json), out, options);
  if (!parsed.ok()) return absl::InvalidArgumentError(std::string(parsed.message()));
  return absl::OkStatus();
}

// A Job's end: Complete and Failed, and (Kubernetes 1.31+) SuccessCriteriaMet and FailureTarget,
// which come first: a failed Job is marked Failed only once all its pods have terminated, which
// for a multi-replica step is a grace period later.
bool Succeeded(const JobCondition& condition) {
  return condition.status() == "True" &&
         (condition.type() == "Complete" || condition.type() == "SuccessCriteriaMet");
}
bool FailedCondition(const JobCondition& condition) {
  return condition.status() == "True" &&
         (condition.type() == "Failed" || condition.type() == "FailureTarget");
}

bool Failed(const Job& job) {
  for (const JobCondition& condition : job.status().conditions()) {
    if (FailedCondition(condition)) return true;
  }
  return false;
}

// The container state that failed the attempt: of all its pods' containers, the one that ended
// first with a non-zero exit code or was OOM-killed (the first failing rank); nullptr if none yet.
const ContainerStateTerminated* FirstFailure(const std::map<std::string, Pod>& pods) {
  const ContainerStateTerminated* first = nullptr;
  for (const auto& [name, pod] : pods) {
    for (const ContainerStatus& status : pod.status().container_statuses()) {
      if (!status.state().has_terminated()) continue;
      const ContainerStateTerminated& terminated = status.state().terminated();
      if (terminated.exit_code() == 0 && terminated.reason() != "OOMKilled") continue;
      // RFC 3339 times of one format compare as text.
      if (first == nullptr || terminated.finished_at() < first->finished_at()) first = &terminated;
    }
  }
  return first;
}

constexpr char kStepContainer[] = "step";

// The most of a step's log kept when it is read at its end rather than followed.
constexpr int64_t kMaxLogBytes = int64_t{256} << 20;

// The pod of rank 0 (of an Indexed Job), or the pod of a one-replica step.
bool RankZero(const Pod& pod) {
  auto index = pod.metadata().annotations().find("batch.kubernetes.io/job-completion-index");
  return index == pod.metadata().annotations().end() || index->second == "0";
}

// Its step container runs or ran: its log can be read.
bool Started(const Pod& pod) {
  for (const ContainerStatus& status : pod.status().container_statuses()) {
    if (status.name() == kStepContainer &&
        (status.state().has_running() || status.state().has_terminated())) {
      return true;
    }
  }
  return false;
}

// The image the step container ran, as the kubelet resolved it (rank 0's, as all ranks run one
// image); "" before a container started.
std::string ImageId(const std::map<std::string, Pod>& pods) {
  std::string found;
  for (const auto& [name, pod] : pods) {
    for (const ContainerStatus& status : pod.status().container_statuses()) {
      if (status.name() != kStepContainer || status.image_id().empty()) continue;
      if (found.empty() || RankZero(pod)) found = status.image_id();
    }
  }
  return found;
}

absl::StatusOr<pb::Value> ToValue(const google::protobuf::Message& message) {
  std::string json;
  if (auto written = pbu::MessageToJsonString(message, &json); !written.ok()) {
    return absl::InternalError(std::string(written.message()));
  }
  pb::Value value;
  if (auto parsed = pbu::JsonStringToMessage(json, &value); !parsed.ok()) {
    return absl::InternalError(std::string(parsed.message()));
  }
  return value;
}

// A list whose elements are all objects with a "name" (containers, env, volumes, volumeMounts).
bool NamedObjects(const pb::Value& value) {
  if (!value.has_list_value() || value.list_value().values_size() == 0) return false;
  for (const pb::Value& item : value.list_value().values()) {
    if (!item.has_struct_value()) return false;
    auto name = item.struct_value().fields().find("name");
    if (name == item.struct_value().fields().end() || !name->second.has_string_value()) {
      return false;
    }
  }
  return true;
}

// Lays `top` over `base`: objects merge key by key, lists of named objects merge element by
// name (`top`'s fields win, new names are appended), anything else in `top` replaces `base`.
void Overlay(pb::Value* base, const pb::Value& top) {
  if (base->has_struct_value() && top.has_struct_value()) {
    auto* fields = base->mutable_struct_value()->mutable_fields();
    for (const auto& [key, value] : top.struct_value().fields()) {
      auto it = fields->find(key);
      if (it == fields->end()) {
        (*fields)[key] = value;
      } else {
        Overlay(&it->second, value);
      }
    }
    return;
  }
  if (NamedObjects(*base) && NamedObjects(top)) {
    auto* items = base->mutable_list_value()->mutable_values();
    for (const pb::Value& item : top.list_value().values()) {
      const std::string& name = item.struct_value().fields().at("name").string_value();
      auto same = std::find_if(items->begin(), items->end(), [&](const pb::Value& existing) {
        return existing.struct_value().fields().at("name").string_value() == name;
      });
      if (same == items->end()) {
        *items->Add() = item;
      } else {
        Overlay(&*same, item);
      }
    }
    return;
  }
  *base = top;
}

// A pod template override as a layer: a JSON object that reads as a PodTemplateSpec where it
// names fields mlops knows (so a wrong type is an error here, not a Job the API refuses), kept
// whole (fields mlops does not model, such as affinity or volumes of any kind, pass through). Its
// first container, when unnamed, is the step's.
absl::StatusOr<pb::Value> PodTemplateLayer(const std::string& json) {
  PodTemplateSpec typed;
  RETURN_IF_ERROR(ParseJson(json, &typed));
  pb::Value layer;
  if (auto parsed = pbu::JsonStringToMessage(json, &layer); !parsed.ok()) {
    return absl::InvalidArgumentError(std::string(parsed.message()));
  }
  if (!layer.has_struct_value()) return absl::InvalidArgumentError("expected a JSON object");
  auto* fields = layer.mutable_struct_value()->mutable_fields();
  if (auto spec = fields->find("spec"); spec != fields->end() && spec->second.has_struct_value()) {
    auto* pod = spec->second.mutable_struct_value()->mutable_fields();
    if (auto containers = pod->find("containers");
        containers != pod->end() && containers->second.has_list_value() &&
        containers->second.list_value().values_size() > 0) {
      pb::Value& first = *containers->second.mutable_list_value()->mutable_values(0);
      if (first.has_struct_value() && !first.struct_value().fields().contains("name")) {
        (*first.mutable_struct_value()->mutable_fields())["name"].set_string_value(kStepContainer);
      }
    }
  }
  return layer;
}

}  // namespace

std::string JobName(const std::string& attempt_id) {
  return StrCat("mlops-", DigestHex(Sha256Of(attempt_id)).substr(0, 40));
}

absl::StatusOr<std::string> BuildJob(const LaunchSpec& spec, const KubernetesOptions& options,
                                     const std::string& namespace_name) {
  if (spec.argv.empty()) return absl::InvalidArgumentError("the step has no command");
  const std::string image = spec.image.empty() ? options.default_image : spec.image;
  if (image.empty()) {
    return absl::InvalidArgumentError(
        "the step names no image and the scheduler has no default image (--k8s_default_image)");
  }
  const std::string name = JobName(spec.attempt_id);
  Job job;
  job.set_api_version("batch/v1");
  job.set_kind("Job");
  ObjectMeta* meta = job.mutable_metadata();
  meta->set_name(name);
  meta->set_namespace_(namespace_name);
  auto env_of = [&](const char* key) {
    auto it = spec.env.find(key);
    return it == spec.env.end() ? std::string() : it->second;
  };
  std::map<std::string, std::string> labels = {{kSchedulerLabel, options.scheduler_id},
                                               {kAttemptLabel, name.substr(6)}};
  // The run's id within its project (a label value holds no '/'), and its project.
  const std::string run_id = env_of("MLOPS_PIPELINE_RUN_ID");
  if (auto run = LabelValue(run_id.substr(run_id.rfind('/') + 1)); !run.empty()) {
    labels["mlops.dev/pipeline-run"] = run;
  }
  if (auto project = LabelValue(std::string(ProjectOf(run_id)));
      !run_id.empty() && !project.empty()) {
    labels["mlops.dev/project"] = project;
  }
  if (auto step = LabelValue(env_of("MLOPS_STEP")); !step.empty()) labels["mlops.dev/step"] = step;
  for (const auto& [k, v] : labels) (*meta->mutable_labels())[k] = v;
  if (!spec.kueue_local_queue.empty()) {
    // Created suspended: Kueue starts it once admitted (on the Job only: its pods are the Job's).
    (*meta->mutable_labels())[kKueueQueueLabel] = spec.kueue_local_queue;
  }
  (*meta->mutable_annotations())[kAttemptAnnotation] = spec.attempt_id;
  (*meta->mutable_annotations())["mlops.dev/pipeline-run-id"] = env_of("MLOPS_PIPELINE_RUN_ID");
  (*meta->mutable_annotations())["mlops.dev/step-name"] = env_of("MLOPS_STEP");

  JobSpec* job_spec = job.mutable_spec();
  job_spec->set_backoff_limit(0);  // retries are the scheduler's
  if (!spec.kueue_local_queue.empty()) job_spec->set_suspend(true);
  job_spec->set_ttl_seconds_after_finished(options.ttl_seconds_after_finished);
  if (spec.timeout_ms > 0) {
    job_spec->set_active_deadline_seconds(
        static_cast<int32_t>(std::min<int64_t>((spec.timeout_ms + 999) / 1000, INT32_MAX)));
  }
  PodTemplateSpec* pod_template = job_spec->mutable_template_();
  for (const auto& [k, v] : labels) (*pod_template->mutable_metadata()->mutable_labels())[k] = v;
  PodSpec* pod = pod_template->mutable_spec();
  pod->set_restart_policy("Never");
  Container* main = pod->add_containers();
  main->set_name(kStepContainer);
  main->set_image(image);
  if (options.wrap_steps) {
    // `mlops step run` fetches the inputs, runs the step in kRemoteWorkDir (an emptyDir), uploads
    // its outputs and reports them. From the step image when one is given (copied by an init
    // container, started through its own loader: any user image works), else from the PATH of
    // the step's image.
    auto mount = [](Container* container, const char* volume, const char* path) {
      VolumeMount* mounted = container->add_volume_mounts();
      mounted->set_name(volume);
      mounted->set_mount_path(path);
    };
    pod->add_volumes()->set_name("mlops-work");
    pod->mutable_volumes(0)->mutable_empty_dir();
    mount(main, "mlops-work", kRemoteWorkDir);
    main->set_working_dir(kRemoteWorkDir);
    if (!options.step_image.empty()) {
      Volume* tools = pod->add_volumes();
      tools->set_name("mlops-tools");
      tools->mutable_empty_dir();
      Container* copy = pod->add_init_containers();
      copy->set_name("mlops-tools");
      copy->set_image(options.step_image);
      copy->set_image_pull_policy(options.image_pull_policy);
      for (const char* arg : {"/bin/cp", "-a", "/mlops/.", "/mlops-tools/"}) copy->add_command(arg);
      mount(copy, "mlops-tools", "/mlops-tools");
      mount(main, "mlops-tools", "/mlops-tools");
      for (const char* arg : {"/mlops-tools/lib/ld-linux-x86-64.so.2", "--library-path",
                              "/mlops-tools/lib", "/mlops-tools/bin/mlops"}) {
        main->add_command(arg);
      }
    } else {
      main->add_command("mlops");
    }
    for (const char* arg : {"step", "run", "--"}) main->add_args(arg);
    for (const std::string& arg : spec.argv) main->add_args(arg);
  } else {
    main->add_command(spec.argv[0]);
    for (size_t i = 1; i < spec.argv.size(); ++i) main->add_args(spec.argv[i]);
  }
  for (const auto& [k, v] : spec.env) {
    EnvVar* var = main->add_env();
    var->set_name(k);
    var->set_value(v);
  }
  // Secret values never pass through the Job: the kubelet reads them from the Secret.
  for (const auto& [k, ref] : spec.secret_env) {
    EnvVar* var = main->add_env();
    var->set_name(k);
    auto* selector = var->mutable_value_from()->mutable_secret_key_ref();
    selector->set_name(ref.secret);
    selector->set_key(ref.key);
  }
  auto set_resource = [&](const std::string& key, const std::string& value) {
    (*main->mutable_resources()->mutable_requests())[key] = value;
    (*main->mutable_resources()->mutable_limits())[key] = value;
  };
  if (spec.resources.cpu_millis > 0) set_resource("cpu", CpuQuantity(spec.resources.cpu_millis));
  if (spec.resources.memory_bytes > 0) {
    set_resource("memory", std::to_string(spec.resources.memory_bytes));
  }
  if (spec.resources.gpus > 0) set_resource("nvidia.com/gpu", std::to_string(spec.resources.gpus));
  if (spec.replicas > 1) {
    // torchrun's rendezvous: ranks from the completion index, rank 0 by its stable DNS name.
    job_spec->set_completion_mode("Indexed");
    job_spec->set_completions(spec.replicas);
    job_spec->set_parallelism(spec.replicas);
    pod->set_subdomain(name);
    auto add_env = [&](const std::string& key, const std::string& value) {
      EnvVar* var = main->add_env();
      var->set_name(key);
      var->set_value(value);
    };
    EnvVar* rank = main->add_env();
    rank->set_name("RANK");
    rank->mutable_value_from()->mutable_field_ref()->set_field_path(
        "metadata.annotations['batch.kubernetes.io/job-completion-index']");
    add_env("WORLD_SIZE", std::to_string(spec.replicas));
    add_env("MASTER_ADDR", StrCat(name, "-0.", name, ".", namespace_name, ".svc.cluster.local"));
    add_env("MASTER_PORT", std::to_string(options.master_port));
  }

  // The pod template, in layers, each laid over the one before: the scheduler's defaults, its
  // --k8s_pod_template, the step's own `kubernetes:` settings, and what mlops sets above.
  PodTemplateSpec defaults;
  PodSpec* default_pod = defaults.mutable_spec();
  default_pod->set_enable_service_links(false);
  if (!options.service_account.empty()) {
    default_pod->set_service_account_name(options.service_account);
  }
  Container* default_main = default_pod->add_containers();
  default_main->set_name(kStepContainer);
  default_main->set_image_pull_policy(options.image_pull_policy);
  ASSIGN_OR_RETURN(pb::Value merged, ToValue(defaults));
  for (const auto& [what, json] :
       {std::pair<const char*, const std::string*>{
            "the scheduler's pod template (--k8s_pod_template)", &options.pod_template_json},
        {"the queue's pod template", &spec.queue_pod_template_json},
        {"the step's pod template", &spec.pod_template_json}}) {
    if (json->empty()) continue;
    auto layer = PodTemplateLayer(*json);
    if (!layer.ok())
      return absl::InvalidArgumentError(StrCat(what, ": ", layer.status().message()));
    Overlay(&merged, *layer);
  }
  ASSIGN_OR_RETURN(pb::Value ours, ToValue(*pod_template));
  Overlay(&merged, ours);
  ASSIGN_OR_RETURN(pb::Value whole, ToValue(job));
  (*(*whole.mutable_struct_value()->mutable_fields())["spec"]
        .mutable_struct_value()
        ->mutable_fields())["template"] = std::move(merged);
  std::string body;
  if (auto written = pbu::MessageToJsonString(whole, &body); !written.ok()) {
    return absl::InternalError(StrCat("writing the Job: ", std::string(written.message())));
  }
  return body;
}

KubernetesExecutor::KubernetesExecutor(std::shared_ptr<KubeClient> client,
                                       KubernetesOptions options)
    : client_(std::move(client)), options_(std::move(options)) {
  namespace_ =
      options_.namespace_name.empty() ? client_->config().namespace_name : options_.namespace_name;
}

absl::StatusOr<std::unique_ptr<KubernetesExecutor>> KubernetesExecutor::Start(
    std::shared_ptr<KubeClient> client, KubernetesOptions options) {
  std::unique_ptr<KubernetesExecutor> executor(
      new KubernetesExecutor(std::move(client), std::move(options)));
  // One list of each first, so that a wrong address or a missing permission is an error here.
  JobList jobs;
  if (absl::Status listed =
          executor->client_->Call("GET", executor->JobsPath() + "&limit=1", nullptr, &jobs);
      !listed.ok()) {
    return listed;
  }
  PodList pods;
  if (absl::Status listed =
          executor->client_->Call("GET", executor->PodsPath() + "&limit=1", nullptr, &pods);
      !listed.ok()) {
    return listed;
  }
  KubernetesExecutor* self = executor.get();
  executor->jobs_watch_ = std::thread([self] { self->WatchLoop(/*jobs=*/true); });
  executor->pods_watch_ = std::thread([self] { self->WatchLoop(/*jobs=*/false); });
  executor->background_ = std::thread([self] {
    for (;;) {
      std::vector<std::function<void()>> tasks;
      {
        std::unique_lock lock(self->tasks_mu_);
        self->tasks_cv_.wait(lock, [self] { return self->stop_ || !self->tasks_.empty(); });
        if (self->tasks_.empty()) return;
        tasks.swap(self->tasks_);
      }
      for (auto& task : tasks) task();
    }
  });
  // Attempts end by events: wait until both watches have their first list.
  for (int i = 0; i < 300 && !(self->listed_jobs_ && self->listed_pods_); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return executor;
}

KubernetesExecutor::~KubernetesExecutor() {
  std::vector<std::shared_ptr<LogFollower>> logs;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, attempt] : attempts_) {
      if (attempt.log != nullptr) logs.push_back(attempt.log);
    }
  }
  for (const auto& log : logs) log->stop = true;
  for (const auto& log : logs) {
    if (log->thread.joinable()) log->thread.join();
  }
  stop_ = true;
  tasks_cv_.notify_all();
  for (std::thread* thread : {&jobs_watch_, &pods_watch_, &background_}) {
    if (thread->joinable()) thread->join();
  }
}

std::string KubernetesExecutor::JobsPath() const {
  return StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs?labelSelector=", kSchedulerLabel,
                "%3D", options_.scheduler_id);
}

std::string KubernetesExecutor::PodsPath() const {
  return StrCat("/api/v1/namespaces/", namespace_, "/pods?labelSelector=", kSchedulerLabel, "%3D",
                options_.scheduler_id);
}

void KubernetesExecutor::Background(std::function<void()> task) {
  {
    std::lock_guard lock(tasks_mu_);
    tasks_.push_back(std::move(task));
  }
  tasks_cv_.notify_one();
}

void KubernetesExecutor::WatchLoop(bool jobs) {
  const std::string path = jobs ? JobsPath() : PodsPath();
  std::string resource_version;
  int failures = 0;
  while (!stop_) {
    if (resource_version.empty()) {
      // (Re)list: the current state of every object, then watch from the list's version.
      bool ok = false;
      if (jobs) {
        JobList list;
        absl::Status listed = client_->Call("GET", path, nullptr, &list);
        if (listed.ok()) {
          for (const Job& job : list.items()) OnJob(job, false);
          resource_version = list.metadata().resource_version();
          listed_jobs_ = ok = true;
        } else {
          LogWarning("k8s_list_failed", {{"what", "jobs"}, {"error", listed.ToString()}});
        }
      } else {
        PodList list;
        absl::Status listed = client_->Call("GET", path, nullptr, &list);
        if (listed.ok()) {
          for (const Pod& pod : list.items()) OnPod(pod);
          resource_version = list.metadata().resource_version();
          listed_pods_ = ok = true;
        } else {
          LogWarning("k8s_list_failed", {{"what", "pods"}, {"error", listed.ToString()}});
        }
      }
      if (!ok) {
        // Back off while the API server is away (bounded: 0.2 s doubling to 5 s).
        std::this_thread::sleep_for(
            std::chrono::milliseconds(std::min(5000, 200 << std::min(failures++, 5))));
        continue;
      }
    }
    bool gone = false;
    absl::Status watched = client_->Watch(
        StrCat(path, "&watch=true&allowWatchBookmarks=true&timeoutSeconds=", kWatchTimeoutSeconds,
               "&resourceVersion=", resource_version),
        [&](std::string_view line) {
          WatchEventType header;
          if (absl::Status parsed = ParseJson(line, &header); !parsed.ok()) {
            LogWarning("k8s_watch_unreadable", {{"what", jobs ? "jobs" : "pods"},
                                                {"error", std::string(parsed.message())}});
            return true;
          }
          if (header.type() == "ERROR") {
            // 410 Gone: the version is too old; anything else: start over too.
            StatusEvent status;
            (void)ParseJson(line, &status);
            if (status.object().code() != 410) {
              LogWarning("k8s_watch_error",
                         {{"what", jobs ? "jobs" : "pods"}, {"error", status.object().message()}});
            }
            gone = true;
            return false;
          }
          if (jobs) {
            JobEvent event;
            if (absl::Status parsed = ParseJson(line, &event); !parsed.ok()) {
              LogWarning("k8s_watch_unreadable",
                         {{"what", "jobs"}, {"error", std::string(parsed.message())}});
              return true;
            }
            if (!event.object().metadata().resource_version().empty()) {
              resource_version = event.object().metadata().resource_version();
            }
            if (event.type() != "BOOKMARK") OnJob(event.object(), event.type() == "DELETED");
          } else {
            PodEvent event;
            if (absl::Status parsed = ParseJson(line, &event); !parsed.ok()) {
              LogWarning("k8s_watch_unreadable",
                         {{"what", "pods"}, {"error", std::string(parsed.message())}});
              return true;
            }
            if (!event.object().metadata().resource_version().empty()) {
              resource_version = event.object().metadata().resource_version();
            }
            if (event.type() != "BOOKMARK") OnPod(event.object());
          }
          return true;
        },
        stop_);
    if (gone || watched.code() == absl::StatusCode::kOutOfRange) {
      resource_version.clear();  // relist
      continue;
    }
    if (!watched.ok()) {
      LogWarning("k8s_watch_failed",
                 {{"what", jobs ? "jobs" : "pods"}, {"error", watched.ToString()}});
      std::this_thread::sleep_for(
          std::chrono::milliseconds(std::min(5000, 200 << std::min(failures++, 5))));
      continue;
    }
    failures = 0;
  }
}

std::optional<AttemptResult> KubernetesExecutor::Judge(const Job& job, const Attempt& attempt) {
  const JobCondition* end = nullptr;
  for (const JobCondition& condition : job.status().conditions()) {
    if (Succeeded(condition) || FailedCondition(condition)) end = &condition;
  }
  AttemptResult result;
  result.image_id = ImageId(attempt.pods);
  result.start_ms = ParseTimeMs(job.status().start_time());
  if (result.start_ms == 0) result.start_ms = attempt.start_ms;
  if (end == nullptr) {
    // A container that cannot start will not start by waiting: the attempt fails now.
    for (const auto& [pod_name, pod] : attempt.pods) {
      for (const ContainerStatus& status : pod.status().container_statuses()) {
        for (const char* reason : kFatalWaiting) {
          if (status.state().waiting().reason() == reason) {
            result.outcome = AttemptResult::Outcome::kFailed;
            result.message = StrCat(reason, ": ", status.state().waiting().message());
            result.end_ms = NowMs();
            return result;
          }
        }
      }
    }
    return std::nullopt;
  }
  result.end_ms = ParseTimeMs(job.status().completion_time());
  if (result.end_ms == 0) result.end_ms = ParseTimeMs(end->last_transition_time());
  if (result.end_ms == 0) result.end_ms = NowMs();
  if (Succeeded(*end)) {
    result.outcome = AttemptResult::Outcome::kSucceeded;
    result.exit_code = 0;
    return result;
  }
  result.outcome = end->reason() == "DeadlineExceeded" ? AttemptResult::Outcome::kTimedOut
                                                       : AttemptResult::Outcome::kFailed;
  result.message = StrCat(end->reason(), end->message().empty() ? "" : ": ", end->message());
  for (const auto& [pod_name, pod] : attempt.pods) {
    // Evicted, a node lost, ...: the pod's own reason says more than the Job's.
    if (!pod.status().reason().empty() && result.outcome == AttemptResult::Outcome::kFailed) {
      result.message = StrCat(pod.status().reason(), ": ", pod.status().message());
    }
  }
  if (const ContainerStateTerminated* failure = FirstFailure(attempt.pods)) {
    result.exit_code = failure->exit_code();
    result.signal = failure->signal();
    if (failure->reason() == "OOMKilled") {
      result.message = "OOMKilled: the step used more memory than its limit";
    } else if (result.outcome == AttemptResult::Outcome::kFailed) {
      result.message = StrCat("exit code ", failure->exit_code(),
                              failure->reason().empty() || failure->reason() == "Error"
                                  ? ""
                                  : " (" + failure->reason() + ")");
    }
  }
  return result;
}

void KubernetesExecutor::OnJob(const Job& job, bool deleted) {
  const std::string& name = job.metadata().name();
  if (!deleted && Failed(job)) {
    // The exit code is in the pods: when no pod event told it yet, one list asks.
    bool need_pods;
    {
      std::lock_guard lock(mu_);
      auto it = attempts_.find(name);
      need_pods = it != attempts_.end() && FirstFailure(it->second.pods) == nullptr;
    }
    if (need_pods) FetchPods(name);
  }
  std::optional<AttemptResult> result;
  bool preempted = false;
  {
    std::lock_guard lock(mu_);
    if (deleted) {
      seen_jobs_.erase(name);
    } else {
      seen_jobs_.insert(name);
    }
    auto it = attempts_.find(name);
    if (it == attempts_.end()) {
      return;
    }
    if (deleted) {
      // Deleted by someone else while it ran: whatever it did is lost.
      result = AttemptResult{};
      result->outcome = AttemptResult::Outcome::kLost;
      result->message = "the Job was deleted while the attempt ran";
      result->start_ms = it->second.start_ms;
      result->end_ms = NowMs();
    } else {
      result = Judge(job, it->second);
      if (!result && job.metadata().labels().contains(kKueueQueueLabel)) {
        // Kueue resumes the Job it admits and suspends it again when it preempts it (its pods
        // are deleted): the attempt is lost and the retry policy decides, bounded, rather than
        // the Job waiting in Kueue's queue again and again.
        if (!job.spec().suspend()) {
          it->second.admitted = true;
        } else if (it->second.admitted) {
          result = AttemptResult{};
          result->outcome = AttemptResult::Outcome::kLost;
          result->message = "preempted: Kueue suspended the running Job";
          result->start_ms = it->second.start_ms;
          result->end_ms = NowMs();
          preempted = true;
        }
      }
    }
  }
  if (preempted) {
    if (std::string why = KueueEviction(job); !why.empty()) {
      result->message = StrCat(result->message, " (", why, ")");
    }
  }
  if (result) Finish(name, *std::move(result));
}

void KubernetesExecutor::OnPod(const Pod& pod) {
  auto label = pod.metadata().labels().find(kAttemptLabel);
  if (label == pod.metadata().labels().end()) return;
  const std::string name = StrCat("mlops-", label->second);
  std::optional<AttemptResult> result;
  {
    std::lock_guard lock(mu_);
    auto it = attempts_.find(name);
    if (it == attempts_.end()) return;
    Attempt& attempt = it->second;
    attempt.pods[pod.metadata().name()] = pod;  // a pod's later state says at least as much
    if (attempt.log == nullptr && !attempt.work_dir.empty() && RankZero(pod) && Started(pod)) {
      FollowLog(pod.metadata().name(), &attempt);
    }
    // Only a container that cannot start ends an attempt from a pod event; the rest waits for
    // the Job's condition. The Job stays until the scheduler has collected the result.
    Job running;
    running.mutable_metadata()->set_name(name);
    result = Judge(running, attempt);
  }
  if (result) Finish(name, *std::move(result));
}

void KubernetesExecutor::Finish(const std::string& name, AttemptResult result) {
  Attempt attempt;
  {
    std::lock_guard lock(mu_);
    auto it = attempts_.find(name);
    if (it == attempts_.end()) return;
    attempt = std::move(it->second);
    attempts_.erase(it);
  }
  const bool ran = result.outcome != AttemptResult::Outcome::kLost &&
                   result.outcome != AttemptResult::Outcome::kCanceled;
  if (attempt.work_dir.empty() || (!ran && attempt.log == nullptr)) {
    attempt.done(result);
    return;
  }
  // The step's log is whole in its work dir before the scheduler collects the attempt.
  Background([this, name, ran, attempt = std::make_shared<Attempt>(std::move(attempt)),
              result = std::move(result)] {
    std::string pod;
    bool whole = false;
    if (const std::shared_ptr<LogFollower>& log = attempt->log) {
      // The stream ends by itself when the container exits, usually before the Job's end is
      // seen: wait a little for that, then stop it and read the log once whole.
      for (int i = 0; i < 60 && !log->ended; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      log->stop = true;
      if (log->thread.joinable()) log->thread.join();
      whole = log->ended;
      pod = log->pod;
    }
    if (ran && !whole) WriteWholeLog(name, pod, attempt->work_dir);
    attempt->done(result);
  });
}

void KubernetesExecutor::FollowLog(const std::string& pod, Attempt* attempt) {
  auto log = std::make_shared<LogFollower>();
  log->pod = pod;
  const std::string file = attempt->work_dir + "/stdout.log";
  log->thread = std::thread([this, log, file] {
    // Truncated first: a scheduler that restarted follows the log again from its start.
    FILE* out = std::fopen(file.c_str(), "w");
    if (out == nullptr) return;
    absl::Status streamed = client_->Stream(
        StrCat("/api/v1/namespaces/", namespace_, "/pods/", log->pod,
               "/log?container=", kStepContainer, "&follow=true"),
        [&](std::string_view data) {
          std::fwrite(data.data(), 1, data.size(), out);
          std::fflush(out);  // `mlops pipeline logs --follow` reads it as it grows
          return true;
        },
        log->stop);
    std::fclose(out);
    if (streamed.ok() && !log->stop) log->ended = true;
  });
  attempt->log = std::move(log);
}

void KubernetesExecutor::WriteWholeLog(const std::string& name, std::string pod,
                                       const std::string& work_dir) {
  if (pod.empty()) {
    // Ended while the scheduler was down: the pod of rank 0 (the only one of most steps).
    PodList pods;
    if (!client_
             ->Call("GET",
                    StrCat("/api/v1/namespaces/", namespace_, "/pods?labelSelector=", kAttemptLabel,
                           "%3D", name.substr(6)),
                    nullptr, &pods)
             .ok()) {
      return;
    }
    for (const Pod& candidate : pods.items()) {
      if (RankZero(candidate)) pod = candidate.metadata().name();
    }
    if (pod.empty()) return;
  }
  auto response = client_->Request(
      "GET", StrCat("/api/v1/namespaces/", namespace_, "/pods/", pod,
                    "/log?container=", kStepContainer, "&limitBytes=", kMaxLogBytes));
  if (!response.ok() || response->http_code != 200) {
    LogWarning("k8s_log_unavailable",
               {{"pod", pod},
                {"error", response.ok() ? StrCat("HTTP ", response->http_code)
                                        : response.status().ToString()}});
    return;
  }
  FILE* out = std::fopen((work_dir + "/stdout.log").c_str(), "w");
  if (out == nullptr) return;
  std::fwrite(response->body.data(), 1, response->body.size(), out);
  std::fclose(out);
}

std::string KubernetesExecutor::settings_fingerprint() const {
  // The step image only carries the wrapper, which does not change what a step computes.
  return StrCat("kubernetes\n", options_.default_image, "\n", options_.pod_template_json);
}

absl::StatusOr<std::string> KubernetesExecutor::Launch(
    const LaunchSpec& spec, std::function<void(const AttemptResult&)> done) {
  ASSIGN_OR_RETURN(std::string body, BuildJob(spec, options_, namespace_));
  Job job;
  RETURN_IF_ERROR(ParseJson(body, &job));
  const std::string name = job.metadata().name();
  {
    std::lock_guard lock(mu_);
    if (attempts_.contains(name)) {
      return absl::AlreadyExistsError(StrCat("attempt ", spec.attempt_id, " is running"));
    }
    Attempt attempt;
    attempt.attempt_id = spec.attempt_id;
    attempt.done = std::move(done);
    attempt.start_ms = NowMs();
    attempt.replicas = spec.replicas;
    attempt.work_dir = spec.work_dir;
    attempts_.emplace(name, std::move(attempt));
    known_.insert(name);
  }
  auto forget = [&](absl::Status status) {
    std::lock_guard lock(mu_);
    attempts_.erase(name);
    known_.erase(name);
    return status;
  };
  if (spec.replicas > 1) {
    // The headless Service that gives rank 0 its DNS name.
    Service service;
    service.set_api_version("v1");
    service.set_kind("Service");
    *service.mutable_metadata() = job.metadata();
    service.mutable_metadata()->clear_resource_version();
    service.mutable_spec()->set_cluster_ip("None");
    service.mutable_spec()->set_publish_not_ready_addresses(true);
    (*service.mutable_spec()->mutable_selector())[kAttemptLabel] = name.substr(6);
    absl::Status created = client_->Call(
        "POST", StrCat("/api/v1/namespaces/", namespace_, "/services"), &service, nullptr);
    if (!created.ok() && created.code() != absl::StatusCode::kAlreadyExists) {
      return forget(created);
    }
    std::lock_guard lock(mu_);
    with_service_.insert(name);
  }
  Job created;
  absl::Status status = client_->CallJson(
      "POST", StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs"), body, &created);
  if (status.code() == absl::StatusCode::kAlreadyExists) {
    // Launched before (by a scheduler that stopped before recording it): attach to it.
    status = client_->Call("GET", StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs/", name),
                           nullptr, &created);
  }
  if (!status.ok()) return forget(status);
  OnJob(created, false);  // it may have ended already (an attached Job)
  return name;
}

absl::Status KubernetesExecutor::Cancel(const std::string& attempt_id) {
  const std::string name = JobName(attempt_id);
  AttemptResult result;
  std::function<void(const AttemptResult&)> done;
  std::shared_ptr<LogFollower> log;
  {
    // Taken out first: the deletion's own watch event must not end it as lost.
    std::lock_guard lock(mu_);
    auto it = attempts_.find(name);
    if (it == attempts_.end()) {
      return absl::NotFoundError(StrCat("attempt ", attempt_id, " is not running"));
    }
    result.start_ms = it->second.start_ms;
    done = std::move(it->second.done);
    log = std::move(it->second.log);
    attempts_.erase(it);
  }
  if (log != nullptr) {
    log->stop = true;
    Background([log] { log->thread.join(); });
  }
  Delete(name);
  result.outcome = AttemptResult::Outcome::kCanceled;
  result.message = "canceled";
  result.end_ms = NowMs();
  done(result);
  return absl::OkStatus();
}

void KubernetesExecutor::Recover(const RecoverSpec& spec,
                                 std::function<void(const AttemptResult&)> done) {
  const std::string name = JobName(spec.attempt_id);
  {
    std::lock_guard lock(mu_);
    Attempt attempt;
    attempt.attempt_id = spec.attempt_id;
    attempt.done = std::move(done);
    attempt.start_ms = spec.start_ms;
    attempt.work_dir = spec.work_dir;
    attempts_[name] = std::move(attempt);
    known_.insert(name);
  }
  Job job;
  absl::Status found = client_->Call(
      "GET", StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs/", name), nullptr, &job);
  if (found.code() == absl::StatusCode::kNotFound) {
    AttemptResult lost;
    lost.outcome = AttemptResult::Outcome::kLost;
    lost.message = "its Job is gone";
    lost.start_ms = spec.start_ms;
    lost.end_ms = NowMs();
    Finish(name, std::move(lost));
    return;
  }
  if (!found.ok()) {
    // The API server is away: the watch reports the Job when it is back.
    LogWarning("k8s_recover_get_failed",
               {{"attempt", spec.attempt_id}, {"error", found.ToString()}});
    return;
  }
  OnJob(job, false);  // a finished one is judged at once
}

std::string KubernetesExecutor::KueueEviction(const Job& job) {
  if (job.metadata().uid().empty()) return "";
  WorkloadList workloads;
  absl::Status listed = client_->Call(
      "GET",
      StrCat("/apis/kueue.x-k8s.io/v1beta2/namespaces/", namespace_,
             "/workloads?labelSelector=kueue.x-k8s.io%2Fjob-uid%3D", job.metadata().uid()),
      nullptr, &workloads);
  if (!listed.ok()) {
    LogWarning("k8s_kueue_workload_unavailable",
               {{"job", job.metadata().name()}, {"error", listed.ToString()}});
    return "";
  }
  for (const Workload& workload : workloads.items()) {
    for (const JobCondition& condition : workload.status().conditions()) {
      if (condition.type() == "Evicted" && condition.status() == "True") {
        return StrCat(condition.reason(), condition.message().empty() ? "" : ": ",
                      condition.message());
      }
    }
  }
  return "";
}

void KubernetesExecutor::FetchPods(const std::string& name) {
  PodList pods;
  if (client_
          ->Call("GET",
                 StrCat("/api/v1/namespaces/", namespace_, "/pods?labelSelector=", kAttemptLabel,
                        "%3D", name.substr(6)),
                 nullptr, &pods)
          .ok()) {
    for (const Pod& pod : pods.items()) OnPod(pod);
  }
}

void KubernetesExecutor::RecoveryDone() {
  Background([this] {
    JobList jobs;
    if (!client_->Call("GET", JobsPath(), nullptr, &jobs).ok()) return;
    for (const Job& job : jobs.items()) {
      const std::string& name = job.metadata().name();
      bool known;
      {
        std::lock_guard lock(mu_);
        known = known_.contains(name);
      }
      if (!known) {
        LogInfo("k8s_orphan_deleted", {{"job", name}});
        Delete(name);
      }
    }
  });
}

void KubernetesExecutor::Collected(const std::string& attempt_id) {
  const std::string name = JobName(attempt_id);
  {
    std::lock_guard lock(mu_);
    known_.erase(name);
  }
  Background([this, name] { Delete(name); });
}

void KubernetesExecutor::Delete(const std::string& name) {
  absl::Status deleted = client_->Call("DELETE",
                                       StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs/",
                                              name, "?propagationPolicy=Background"),
                                       nullptr, nullptr);
  if (!deleted.ok() && deleted.code() != absl::StatusCode::kNotFound) {
    LogWarning("k8s_delete_failed", {{"job", name}, {"error", deleted.ToString()}});
  }
  bool service;
  {
    std::lock_guard lock(mu_);
    service = with_service_.erase(name) > 0;
  }
  if (service) {
    (void)client_->Call("DELETE", StrCat("/api/v1/namespaces/", namespace_, "/services/", name),
                        nullptr, nullptr);
  }
}

int KubernetesExecutor::running() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(attempts_.size());
}

}  // namespace mlops::scheduler::k8s
