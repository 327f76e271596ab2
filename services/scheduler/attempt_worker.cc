// Scheduler: what a worker does for one attempt (inputs, tracking run, start) and for its end
// (outputs, logs, metrics), off the engine thread.
#include <google/protobuf/util/json_util.h>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <tuple>

#include "services/common/digest.h"
#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/page_token.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/scheduler/cron.h"
#include "services/scheduler/metrics_file.h"
#include "services/scheduler/scheduler.h"
#include "services/scheduler/scheduler_internal.h"
#include "services/scheduler/secrets.h"

namespace mlops::scheduler {

void Scheduler::Prepare(std::shared_ptr<AttemptPlan> plan) {
  const StepSpec& spec = plan->spec;
  auto fail = [&](const std::string& message) {
    {
      std::lock_guard lock(redactions_mu_);
      redactions_.erase(plan->attempt_id);
    }
    AttemptResult failed;
    failed.outcome = AttemptResult::Outcome::kFailed;
    failed.message = message;
    failed.start_ms = failed.end_ms = NowMs();
    Event event = Event::Done(plan->run_id, plan->index, plan->number, failed);
    event.tracking_run_id = plan->tracking_run_id;
    Post(std::move(event));
  };
  const std::string& work = plan->work;
  std::error_code ec;
  std::filesystem::remove_all(work, ec);  // a previous life's leftovers
  // Only the directories the step uses: each costs a file-system operation per attempt.
  std::filesystem::create_directories(work, ec);
  if (spec.validate) return RunValidation(std::move(plan));
  std::map<std::string, std::string> input_paths, output_paths;
  const bool remote = executor_->remote();
  v1::StepManifest manifest;
  if (remote) {
    // The pod fetches its inputs and uploads its outputs itself (`mlops step run`): the same
    // layout under kRemoteWorkDir.
    const std::string pod_work = kRemoteWorkDir;
    manifest.set_attempt_id(plan->attempt_id);
    manifest.set_metrics_path(pod_work + "/metrics.json");
    for (const AttemptPlan::Input& input : plan->inputs) {
      const InputRef& ref = spec.inputs.at(input.name);
      v1::StepManifest::Input* entry = manifest.add_inputs();
      entry->set_name(input.name);
      if (input.dataset) {
        entry->set_dataset(ref.dataset);
        entry->set_version(input.version);
        entry->set_path(pod_work + "/inputs/" + input.name);
      } else {
        entry->set_digest(input.digest);
        entry->set_path(pod_work + "/inputs/" + input.name + "/" + input.file_name);
      }
      input_paths[input.name] = entry->path();
    }
    for (const auto& [name, path] : spec.outputs) {
      output_paths[name] = pod_work + "/outputs/" + path;
      (*manifest.mutable_outputs())[name] = output_paths[name];
    }
  }
  if (!remote && !spec.inputs.empty()) std::filesystem::create_directory(work + "/inputs", ec);
  if (!remote && !spec.outputs.empty()) std::filesystem::create_directory(work + "/outputs", ec);
  // Inputs by digest; outputs to declared paths under outputs/.
  for (const AttemptPlan::Input& input :
       remote ? std::vector<AttemptPlan::Input>{} : plan->inputs) {
    std::string dir = work + "/inputs/" + input.name;
    const InputRef& ref = spec.inputs.at(input.name);
    absl::Status status;
    if (input.dataset) {
      status = artifacts_->MaterializeDataset(plan->project, ref.dataset, input.version, dir);
      input_paths[input.name] = dir;
    } else {
      std::string file = dir + "/" + input.file_name;
      std::filesystem::create_directories(dir, ec);
      status = artifacts_->MaterializeBlob(plan->project, input.digest, file);
      input_paths[input.name] = file;
    }
    if (!status.ok()) return fail("input " + input.name + ": " + std::string(status.message()));
  }
  for (const auto& [name, path] : remote ? std::map<std::string, std::string>{} : spec.outputs) {
    output_paths[name] = work + "/outputs/" + path;
    std::filesystem::create_directories(std::filesystem::path(output_paths[name]).parent_path(),
                                        ec);
  }
  if (!spec.checkpoint.empty()) {
    // The latest checkpoint of an earlier attempt: the step resumes from it.
    auto latest = LatestCheckpoint(plan->run_id, spec.name);
    if (!latest.ok()) return fail("reading the step's checkpoint: " + latest.status().ToString());
    if (remote) {
      manifest.set_checkpoint_path(std::string(kRemoteWorkDir) + "/" + spec.checkpoint);
      manifest.set_checkpoint_digest(*latest);
    } else {
      const std::string file = work + "/" + spec.checkpoint;
      std::filesystem::create_directories(std::filesystem::path(file).parent_path(), ec);
      if (!latest->empty()) {
        absl::Status restored = artifacts_->MaterializeBlob(plan->project, *latest, file);
        if (!restored.ok()) return fail("restoring the checkpoint: " + restored.ToString());
      }
    }
  }
  auto argv = RenderCommand(spec, input_paths, output_paths);
  if (!argv.ok()) return fail(std::string(argv.status().message()));
  // Secret values are read now, kept in memory for redacting the attempt's logs, and reach only
  // the process's environment (a remote executor's pods take them from its own Secrets).
  std::map<std::string, std::string> secret_values;
  if (!spec.secret_env.empty()) {
    std::vector<Redaction> redactions;
    for (const auto& [name, ref] : spec.secret_env) {
      if (options_.secrets == nullptr) return fail("secretEnv " + name + ": no secrets source");
      auto secret = options_.secrets->Get(ref.secret, ref.key);
      if (!secret.ok()) {
        return fail("secretEnv " + name + ": " + std::string(secret.status().message()));
      }
      redactions.push_back({secret->value, "[redacted: " + name + "]"});
      if (!remote) secret_values[name] = std::move(secret->value);
    }
    std::lock_guard lock(redactions_mu_);
    redactions_[plan->attempt_id] = std::move(redactions);
  }
  if (metadata_ != nullptr) {
    // The attempt as a tracking run (MLOPS_RUN_ID lets the step log to it).
    auto tracking = metadata_->StartRun(plan->record);
    if (tracking.ok()) {
      plan->tracking_run_id = *tracking;
    } else {
      LogWarning("tracking_run_failed", {{"run", plan->run_id},
                                         {"step", spec.name},
                                         {"error", std::string(tracking.status().message())}});
    }
  }
  LaunchSpec launch;
  launch.attempt_id = plan->attempt_id;
  launch.argv = *std::move(argv);
  launch.work_dir = work;
  launch.image = spec.image;
  launch.pod_template_json = spec.pod_template_json;
  launch.queue_pod_template_json = plan->queue_pod_template_json;
  launch.kueue_local_queue = plan->kueue_local_queue;
  launch.resources = spec.resources;
  launch.replicas = spec.replicas;
  launch.timeout_ms = spec.timeout_ms;
  launch.env = spec.env;
  launch.env.merge(secret_values);
  if (remote) launch.secret_env = spec.secret_env;
  for (const auto& [k, v] : spec.params) launch.env["MLOPS_PARAM_" + ToUpper(k)] = v;
  launch.env["MLOPS_PIPELINE_RUN_ID"] = plan->run_id;
  // What the step does through the CLI or the SDK happens in its run's project.
  launch.env["MLOPS_PROJECT"] = plan->project;
  launch.env["MLOPS_STEP"] = spec.name;
  // The same for every attempt of this step in this run: what the step writes (runs, model
  // versions) uses it as the request id, so that a retried attempt repeats no visible effect.
  launch.env["MLOPS_STEP_KEY"] = StepKeyOf(plan->run_id, spec.name);
  for (const auto& [k, v] : options_.step_env) launch.env[k] = v;
  if (!plan->tracking_run_id.empty()) launch.env["MLOPS_RUN_ID"] = plan->tracking_run_id;
  if (remote) {
    std::string json;
    if (auto written = google::protobuf::util::MessageToJsonString(manifest, &json);
        !written.ok()) {
      return fail("writing the step manifest: " + std::string(written.message()));
    }
    launch.env["MLOPS_STEP_MANIFEST"] = json;
    launch.env["MLOPS_ATTEMPT_ID"] = plan->attempt_id;
  }
  auto handle = executor_->Launch(launch, WhenDone(plan));
  if (!handle.ok()) return fail(std::string(handle.status().message()));
  Event started = Event::Of(Event::Kind::kStarted, plan->run_id);
  started.step = plan->index;
  started.attempt = plan->number;
  started.handle = *handle;
  started.tracking_run_id = plan->tracking_run_id;
  Post(std::move(started));
}

void Scheduler::RunValidation(std::shared_ptr<AttemptPlan> plan) {
  const StepSpec& spec = plan->spec;
  if (metadata_ != nullptr) {
    auto tracking = metadata_->StartRun(plan->record);
    if (tracking.ok()) plan->tracking_run_id = *tracking;
  }
  Event started = Event::Of(Event::Kind::kStarted, plan->run_id);
  started.step = plan->index;
  started.attempt = plan->number;
  started.handle = kValidationHandle;
  started.tracking_run_id = plan->tracking_run_id;
  Post(std::move(started));

  AttemptResult result;
  result.start_ms = NowMs();
  ValidationGateway::Request request;
  request.project = plan->project;
  request.schema = spec.validate_schema;
  request.schema_version = spec.validate_schema_version;
  for (const AttemptPlan::Input& input : plan->inputs) {  // the one input, "data"
    if (input.dataset) {
      request.dataset = spec.inputs.at(input.name).dataset;
      request.version = input.version;
    } else {
      request.blob = input.digest;
      request.file_name = input.file_name;
    }
  }
  absl::StatusOr<ValidationGateway::Result> verdict =
      options_.validation == nullptr
          ? absl::FailedPreconditionError(
                "a validate step needs the monitoring service: this scheduler has none "
                "(--monitoring_address)")
          : options_.validation->Validate(request);
  // What a process would have printed: the report on stdout, a failure to make one on stderr.
  std::ofstream(plan->work + (verdict.ok() ? "/stdout.log" : "/stderr.log"))
      << (verdict.ok() ? verdict->text : "validation: " + verdict.status().ToString() + "\n");
  result.end_ms = NowMs();
  if (!verdict.ok()) {
    // The monitoring service out of reach is the scheduler's trouble, not the step's: the attempt
    // is lost and tried again (at most kMaxLostAttempts times); any other error fails it.
    const bool unreachable =
        absl::IsUnavailable(verdict.status()) || absl::IsDeadlineExceeded(verdict.status());
    result.outcome = unreachable ? AttemptResult::Outcome::kLost : AttemptResult::Outcome::kFailed;
    result.message = "validation: " + std::string(verdict.status().message());
  } else if (verdict->valid) {
    result.outcome = AttemptResult::Outcome::kSucceeded;
    result.exit_code = 0;
  } else {
    result.outcome = AttemptResult::Outcome::kFailed;
    result.exit_code = 3;  // as `mlops validate`
    result.message = verdict->summary;
  }
  Collect(*plan, std::move(result));
}

std::function<void(const AttemptResult&)> Scheduler::WhenDone(std::shared_ptr<AttemptPlan> plan) {
  return [mailbox = mailbox_, plan = std::move(plan)](const AttemptResult& result) {
    std::lock_guard lock(mailbox->mu);
    Scheduler* target = mailbox->target;
    if (target == nullptr) return;
    target->workers_->Post([target, plan, result] { target->Collect(*plan, result); });
  };
}

void Scheduler::Collect(const AttemptPlan& plan, AttemptResult result) {
  Event event = Event::Done(plan.run_id, plan.index, plan.number, std::move(result));
  event.tracking_run_id = plan.tracking_run_id;
  AttemptResult& outcome = event.result;
  // The attempt's output streams are kept in the artifact service, whatever the outcome.
  auto keep = [&](const std::string& file) -> std::string {
    if (!std::filesystem::is_regular_file(file)) return "";
    auto digest = artifacts_->UploadFile(plan.project, file);
    return digest.ok() ? *digest : "";
  };
  // What the step printed of its secrets never leaves its work dir: the logs are redacted in place
  // before they are kept (and ReadLogs redacts while the attempt runs).
  if (!plan.spec.secret_env.empty()) {
    std::vector<Redaction> redactions = CurrentRedactions(plan.spec);
    {
      std::lock_guard lock(redactions_mu_);
      auto it = redactions_.find(plan.attempt_id);
      if (it != redactions_.end()) {
        redactions.insert(redactions.end(), it->second.begin(), it->second.end());
        redactions_.erase(it);
      }
    }
    for (const char* log : {"/stdout.log", "/stderr.log"}) {
      absl::Status redacted = RedactFile(plan.work + log, redactions);
      if (!redacted.ok()) {
        // Kept unredacted nowhere: the log is dropped rather than uploaded.
        LogWarning("log_not_redacted",
                   {{"attempt", plan.attempt_id}, {"error", std::string(redacted.message())}});
        std::error_code ec;
        std::filesystem::remove(plan.work + log, ec);
      }
    }
  }
  event.stdout_digest = keep(plan.work + "/stdout.log");
  event.stderr_digest = keep(plan.work + "/stderr.log");
  if (!plan.spec.checkpoint.empty() && !executor_->remote() &&
      outcome.outcome != AttemptResult::Outcome::kSucceeded) {
    // What a local attempt that did not succeed left as its checkpoint is where the next starts
    // (a pod reports its own while it runs).
    std::string digest = keep(plan.work + "/" + plan.spec.checkpoint);
    if (!digest.empty()) {
      absl::Status kept = KeepCheckpoint(plan.run_id, plan.spec.name, digest);
      if (!kept.ok()) {
        LogWarning("checkpoint_not_kept",
                   {{"attempt", plan.attempt_id}, {"error", kept.ToString()}});
      }
    }
  }
  auto fail = [&](std::string message) {
    outcome.outcome = AttemptResult::Outcome::kFailed;
    outcome.message = std::move(message);
  };
  if (executor_->remote() && !plan.spec.validate) {
    // What the pod reported: its outputs are uploaded already; its metrics.json comes here.
    std::lock_guard lock(reports_mu_);
    auto report = db_->GetProto<v1::ReportAttemptRequest>(reports_cf_, plan.attempt_id);
    if (!report.ok()) {
      fail("reading the attempt's report: " + std::string(report.status().message()));
    } else if (*report && !(*report)->error().empty()) {
      // The wrapper's own failure (an input it could not fetch, an output it could not store)
      // says more than its exit code.
      if (outcome.outcome == AttemptResult::Outcome::kSucceeded ||
          outcome.outcome == AttemptResult::Outcome::kFailed) {
        fail((*report)->error());
      }
    } else if (outcome.outcome == AttemptResult::Outcome::kSucceeded) {
      if (!*report) {
        fail(
            "the step's pod reported nothing: it must run under `mlops step run` "
            "(docs/kubernetes.md)");
      } else {
        for (const auto& [name, path] : plan.spec.outputs) {
          auto digest = (*report)->outputs().find(name);
          if (digest == (*report)->outputs().end()) {
            fail("declared output " + name + " (" + path + ") was not written");
            break;
          }
          event.outputs[name] = digest->second;
        }
        std::error_code ec;
        std::filesystem::remove(plan.work + "/metrics.json", ec);
        if (!(*report)->metrics_json().empty()) {
          std::ofstream out(plan.work + "/metrics.json", std::ios::binary);
          out << (*report)->metrics_json();
          if (!out.flush()) fail("writing metrics.json to " + plan.work);
        }
      }
    }
  } else if (outcome.outcome == AttemptResult::Outcome::kSucceeded) {
    // Declared outputs are uploaded from a finished attempt only; a missing one fails the step.
    for (const auto& [name, path] : plan.spec.outputs) {
      std::string file = plan.work + "/outputs/" + path;
      if (!std::filesystem::is_regular_file(file)) {
        fail("declared output " + name + " (" + path + ") was not written");
        break;
      }
      auto digest = artifacts_->UploadFile(plan.project, file);
      if (!digest.ok()) {
        fail("upload of output " + name + ": " + std::string(digest.status().message()));
        break;
      }
      event.outputs[name] = *digest;
    }
  }
  if (outcome.outcome == AttemptResult::Outcome::kSucceeded) {
    // What the step reports: logged to its tracking run, final values kept on the step.
    auto points = ReadMetricsFile(plan.work + "/metrics.json");
    if (!points.ok()) {
      fail(std::string(points.status().message()));
    } else {
      event.metrics = FinalMetrics(*points);
      if (metadata_ != nullptr && !plan.tracking_run_id.empty()) {
        absl::Status logged = metadata_->LogMetrics(plan.tracking_run_id, *points);
        if (!logged.ok()) fail("logging metrics: " + std::string(logged.message()));
      }
    }
  }
  if (outcome.outcome != AttemptResult::Outcome::kSucceeded) {
    event.outputs.clear();
    event.metrics.clear();
  }
  Post(std::move(event));
}

std::vector<Redaction> Scheduler::CurrentRedactions(const StepSpec& spec) const {
  std::vector<Redaction> redactions;
  if (options_.secrets == nullptr) return redactions;
  for (const auto& [name, ref] : spec.secret_env) {
    auto secret = options_.secrets->Get(ref.secret, ref.key);
    if (secret.ok()) redactions.push_back({std::move(secret->value), "[redacted: " + name + "]"});
  }
  return redactions;
}

std::vector<Redaction> Scheduler::LogRedactions(const std::string& run_id,
                                                const std::string& step) {
  StepSpec spec;
  {
    std::lock_guard lock(mu_);
    auto run = runs_.find(run_id);
    if (run == runs_.end()) return {};
    auto index = run->second->index.find(step);
    if (index == run->second->index.end()) return {};
    spec = run->second->spec.steps[index->second];
  }
  if (spec.secret_env.empty()) return {};
  std::vector<Redaction> redactions = CurrentRedactions(spec);
  const std::string prefix = StrCat(run_id, "/", step, "/");
  std::lock_guard lock(redactions_mu_);
  for (auto it = redactions_.lower_bound(prefix);
       it != redactions_.end() && it->first.starts_with(prefix); ++it) {
    redactions.insert(redactions.end(), it->second.begin(), it->second.end());
  }
  return redactions;
}

}  // namespace mlops::scheduler
