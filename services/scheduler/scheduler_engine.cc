// Scheduler: the engine thread: it decides what runs next, hands attempts to workers and
// records how they end; it never waits on a remote call itself.
#include <cctype>
#include <cmath>
#include <filesystem>
#include <set>
#include <tuple>

#include "services/common/digest.h"
#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/page_token.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/scheduler/cron.h"
#include "services/scheduler/metrics_file.h"
#include "services/scheduler/scheduler.h"
#include "services/scheduler/scheduler_internal.h"

namespace mlops::scheduler {

namespace {

// The instance of a swept step whose objective metric is best (ties: the first listed), or -1
// when none succeeded with the metric reported.
int BestInstance(const PipelineSpec& spec, const v1::PipelineRun& run,
                 const std::vector<size_t>& instances) {
  int best = -1;
  double best_value = 0;
  for (size_t i : instances) {
    const v1::StepRun& step = run.steps(static_cast<int>(i));
    auto it = step.metrics().find(spec.steps[i].objective_metric);
    if (!Done(step.state()) || it == step.metrics().end() || std::isnan(it->second)) continue;
    bool better = spec.steps[i].maximize ? it->second > best_value : it->second < best_value;
    if (best < 0 || better) {
      best = static_cast<int>(i);
      best_value = it->second;
    }
  }
  return best;
}

}  // namespace

// The engine

void Scheduler::Loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    int64_t now = NowMs();
    FireSchedules(now);
    // Due retries.
    while (!timers_.empty() && timers_.begin()->first <= now) {
      auto [run_id, step] = timers_.begin()->second;
      timers_.erase(timers_.begin());
      auto it = runs_.find(run_id);
      if (it == runs_.end()) continue;
      v1::StepRun& s = *it->second->proto.mutable_steps(static_cast<int>(step));
      if (s.state() != v1::RETRY_WAIT) continue;
      it->second->SetState(step, v1::QUEUED);
      Persist(*it->second, step);
      const StepSpec& spec = it->second->spec.steps[step];
      admission_
          .Enqueue({StrCat(run_id, "/", spec.name), it->second->proto.queue(), 0, spec.resources,
                    spec.replicas})
          .IgnoreError();
    }
    if (!events_.empty()) {
      Event event = std::move(events_.front());
      events_.pop_front();
      auto it = runs_.find(event.run);
      if (it == runs_.end()) continue;
      Run& run = *it->second;
      std::vector<size_t> changed;
      bool everything = false;
      switch (event.kind) {
        case Event::Kind::kAdvance:
          everything = true;
          break;
        case Event::Kind::kStarted:
          Started(run, event);
          break;
        case Event::Kind::kDone:
          Finished(run, event);
          // Stored: the executor may drop what it kept to report this attempt again.
          if (storage_error_.ok() && !run.spec.steps[event.step].validate) {
            executor_->Collected(StrCat(run.proto.id(), "/", run.spec.steps[event.step].name, "/",
                                        std::to_string(event.attempt)));
          }
          changed.push_back(event.step);
          break;
        case Event::Kind::kResolved:
          if (Resolved(run, event)) changed.push_back(event.step);
          break;
        case Event::Kind::kCancel:
          run.cancel_requested = true;
          for (int i = 0; i < run.proto.steps_size(); ++i) {
            v1::StepRun& s = *run.proto.mutable_steps(i);
            if (s.state() == v1::RUNNING) {
              executor_
                  ->Cancel(StrCat(run.proto.id(), "/", s.name(), "/",
                                  std::to_string(s.attempts(s.attempts_size() - 1).number())))
                  .IgnoreError();
            } else if (!Terminal(s.state())) {
              admission_.Remove(StrCat(run.proto.id(), "/", s.name()));
              run.SetState(static_cast<size_t>(i), v1::CANCELED);
              s.set_end_time_ms(NowMs());
              Persist(run, static_cast<size_t>(i));
            }
          }
          everything = true;
          break;
      }
      Advance(run, changed, everything);
      continue;
    }
    // Admission: start what fits (nothing once the storage failed).
    std::vector<PendingStep> admitted;
    if (storage_error_.ok()) admitted = admission_.Admit();
    for (const PendingStep& p : admitted) {
      size_t slash = RunIdEnd(p.id);
      auto it = runs_.find(p.id.substr(0, slash));
      if (it == runs_.end()) {
        admission_.Release(p.id);
        continue;
      }
      Launch(*it->second, it->second->index[p.id.substr(slash + 1)]);
    }
    if (!admitted.empty()) continue;
    // Sleep until the next retry or schedule is due, or something wakes the engine.
    int64_t next = timers_.empty() ? -1 : timers_.begin()->first;
    for (const auto& [name, schedule] : schedules_) {
      if (schedule.next_time_ms() >= 0 && (next < 0 || schedule.next_time_ms() < next)) {
        next = schedule.next_time_ms();
      }
    }
    if (next < 0) {
      wake_.wait(lock);
    } else {
      wake_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(1, next - NowMs())));
    }
  }
}

void Scheduler::Advance(Run& run, const std::vector<size_t>& changed, bool everything) {
  // Evaluate the pending steps that may have become ready: every step, or the dependents of the
  // steps that changed (and, transitively, of steps that finished during this evaluation).
  std::vector<size_t> work;
  if (everything) {
    for (size_t i = run.spec.steps.size(); i-- > 0;) work.push_back(i);
  } else {
    for (size_t c : changed) {
      for (size_t d : run.dependents[c]) work.push_back(d);
    }
  }
  while (!work.empty() && !run.cancel_requested) {
    size_t i = work.back();
    work.pop_back();
    if (run.proto.steps(static_cast<int>(i)).state() != v1::PENDING) continue;
    Evaluate(run, i);
    if (Terminal(run.proto.steps(static_cast<int>(i)).state())) {
      for (size_t d : run.dependents[i]) work.push_back(d);
    }
  }
  bool compared = false;
  for (const auto& [name, instances] : run.sweeps) compared = Compare(run, name) || compared;
  v1::RunState state;
  if (run.terminal == run.spec.steps.size()) {
    state = run.cancel_requested ? v1::CANCELED : run.failed > 0 ? v1::FAILED : v1::SUCCEEDED;
  } else {
    state = run.started > 0 ? v1::RUNNING : v1::PENDING;
  }
  if (state != run.proto.state() || compared) {
    run.proto.set_state(state);
    if (Terminal(state) && run.proto.end_time_ms() == 0) run.proto.set_end_time_ms(NowMs());
    PersistHeader(run);
    Touch(run);
  }
}

int Scheduler::Producer(Run& run, const InputRef& ref) const {
  if (!ref.best_of) return static_cast<int>(run.index[ref.step]);
  return BestInstance(run.spec, run.proto, run.sweeps[ref.step]);
}

bool Scheduler::Compare(Run& run, const std::string& swept) {
  for (const v1::SweepResult& done : run.proto.sweeps()) {
    if (done.step() == swept) return false;
  }
  const std::vector<size_t>& instances = run.sweeps[swept];
  for (size_t i : instances) {
    if (!Terminal(run.proto.steps(static_cast<int>(i)).state())) return false;
  }
  const StepSpec& first = run.spec.steps[instances.front()];
  v1::SweepResult* result = run.proto.add_sweeps();
  result->set_step(swept);
  result->set_metric(first.objective_metric);
  result->set_maximize(first.maximize);
  for (size_t i : instances) {
    const v1::StepRun& step = run.proto.steps(static_cast<int>(i));
    auto it = step.metrics().find(first.objective_metric);
    if (Done(step.state()) && it != step.metrics().end()) {
      (*result->mutable_values())[step.name()] = it->second;
    }
  }
  int best = BestInstance(run.spec, run.proto, instances);
  if (best >= 0) {
    result->set_best(run.proto.steps(best).name());
    result->set_best_value(run.proto.steps(best).metrics().at(first.objective_metric));
  }
  return true;
}

void Scheduler::Evaluate(Run& run, size_t index) {
  const StepSpec& spec = run.spec.steps[index];
  v1::StepRun& step = *run.proto.mutable_steps(static_cast<int>(index));
  std::map<std::string, std::string> input_digests;
  for (const auto& need : spec.needs) {
    const v1::StepRun& upstream = run.proto.steps(static_cast<int>(run.index[need]));
    if (upstream.state() == v1::FAILED || upstream.state() == v1::SKIPPED ||
        upstream.state() == v1::CANCELED) {
      run.SetState(index, v1::SKIPPED);
      step.set_message("step " + need + " did not succeed");
      step.set_end_time_ms(NowMs());
      Persist(run, index);
      return;
    }
    if (!Done(upstream.state())) return;  // not yet
  }
  for (const auto& [name, ref] : spec.inputs) {
    if (ref.kind == InputRef::Kind::kStepOutput) {
      int producer = Producer(run, ref);
      if (producer < 0) {
        const StepSpec& instance = run.spec.steps[run.sweeps[ref.step].front()];
        Fail(run, index,
             "input " + name + ": no instance of " + ref.step + " reported metric " +
                 instance.objective_metric,
             v1::FAILED);
        return;
      }
      const v1::StepRun& upstream = run.proto.steps(producer);
      input_digests[name] = upstream.output_digests().at(ref.output);
    } else {
      // Dataset refs are resolved (and pinned) by a worker: a remote call never runs here.
      auto pinned = run.pinned[index].find(name);
      if (pinned == run.pinned[index].end()) {
        Resolve(run, index);
        return;
      }
      input_digests[name] = "dataset:" + ref.dataset + "@" + pinned->second;
    }
  }
  // The versions of its secrets are read by a worker too (a secrets file, the API server).
  if (!spec.secret_env.empty() && !run.secret_versions.contains(index)) {
    Resolve(run, index);
    return;
  }
  // What the executor adds to every pod, and the queue's own pod template (mu_ is held).
  std::string executor_settings = executor_->settings_fingerprint();
  if (auto pod = queue_pod_templates_.find(run.proto.queue()); pod != queue_pod_templates_.end()) {
    executor_settings += "\nqueue:" + pod->second;
  }
  step.set_fingerprint(
      StepFingerprint(spec, input_digests, executor_settings, run.secret_versions[index]));
  run.input_digests[index] = input_digests;
  if (spec.cache && !run.proto.no_cache()) {
    // A cache record that cannot be read is a miss (logged): the step runs and rewrites it.
    auto cached =
        db_->GetProto<v1::StepRun>(cache_cf_, CacheKey(run.proto.id(), step.fingerprint()));
    if (!cached.ok()) {
      LogWarning("cache_record_unreadable", {{"run", run.proto.id()},
                                             {"step", spec.name},
                                             {"error", std::string(cached.status().message())}});
    }
    if (cached.ok() && cached->has_value()) {
      const v1::StepRun& previous = **cached;
      *step.mutable_output_digests() = previous.output_digests();
      *step.mutable_metrics() = previous.metrics();
      step.set_cached_from(previous.cached_from());
      run.SetState(index, v1::CACHED);
      step.set_start_time_ms(NowMs());
      step.set_end_time_ms(step.start_time_ms());
      Persist(run, index);
      return;
    }
  }
  run.SetState(index, v1::QUEUED);
  Persist(run, index);
  admission_
      .Enqueue({StrCat(run.proto.id(), "/", spec.name), run.proto.queue(), 0, spec.resources,
                spec.replicas})
      .IgnoreError();
}

void Scheduler::Resolve(Run& run, size_t index) {
  if (!run.resolving.insert(index).second) return;  // on its way
  std::vector<std::pair<std::string, InputRef>> refs;
  for (const auto& [name, ref] : run.spec.steps[index].inputs) {
    if (ref.kind == InputRef::Kind::kDataset) refs.emplace_back(name, ref);
  }
  workers_->Post([this, run_id = run.proto.id(), index, refs = std::move(refs),
                  secret_env = run.spec.steps[index].secret_env] {
    Event event = Event::Of(Event::Kind::kResolved, run_id);
    event.step = index;
    for (const auto& [name, ref] : secret_env) {
      if (options_.secrets == nullptr) {
        event.result.message =
            "secretEnv " + name +
            ": this scheduler has no secrets (--secrets_file on one machine; the Kubernetes "
            "executor reads the Secrets of its namespace)";
        break;
      }
      auto secret = options_.secrets->Get(ref.secret, ref.key);
      if (!secret.ok()) {
        event.result.message = "secretEnv " + name + ": " + std::string(secret.status().message());
        break;
      }
      event.secret_versions[name] = secret->version;
    }
    for (const auto& [name, ref] : refs) {
      if (!event.result.message.empty()) break;
      auto version =
          artifacts_->ResolveDataset(std::string(ProjectOf(run_id)), ref.dataset, ref.ref);
      if (!version.ok()) {
        event.result.message = "input " + name + ": " + std::string(version.status().message());
        break;
      }
      event.outputs[name] = *version;
    }
    Post(std::move(event));
  });
}

bool Scheduler::Resolved(Run& run, const Event& event) {
  run.resolving.erase(event.step);
  if (run.proto.steps(static_cast<int>(event.step)).state() != v1::PENDING) return false;
  if (!event.result.message.empty()) {
    Fail(run, event.step, event.result.message, v1::FAILED);
    return true;
  }
  run.pinned[event.step] = event.outputs;
  run.secret_versions[event.step] = event.secret_versions;
  Evaluate(run, event.step);
  return Terminal(run.proto.steps(static_cast<int>(event.step)).state());
}

StepRecord Scheduler::Record(Run& run, size_t index) const {
  const StepSpec& spec = run.spec.steps[index];
  const v1::StepRun& step = run.proto.steps(static_cast<int>(index));
  StepRecord record;
  record.pipeline = run.proto.pipeline();
  record.pipeline_run = run.proto.id();
  record.project = std::string(ProjectOf(run.proto.id()));
  record.step = spec.name;
  record.attempt = step.attempts_size();
  record.command = spec.command;
  record.params = spec.params;
  record.inputs = run.input_digests[index];
  record.outputs = {step.output_digests().begin(), step.output_digests().end()};
  if (step.attempts_size() > 0) {
    const v1::Attempt& attempt = step.attempts(step.attempts_size() - 1);
    if (!attempt.stdout_digest().empty()) record.logs["stdout"] = attempt.stdout_digest();
    if (!attempt.stderr_digest().empty()) record.logs["stderr"] = attempt.stderr_digest();
    record.image_id = attempt.image_id();
  }
  record.image = spec.image;
  return record;
}

std::shared_ptr<Scheduler::AttemptPlan> Scheduler::Plan(Run& run, size_t index) const {
  const StepSpec& spec = run.spec.steps[index];
  const v1::StepRun& step = run.proto.steps(static_cast<int>(index));
  auto plan = std::make_shared<AttemptPlan>();
  plan->run_id = run.proto.id();
  plan->project = std::string(ProjectOf(plan->run_id));
  plan->index = index;
  plan->number = step.attempts_size() > 0 ? step.attempts(step.attempts_size() - 1).number() : 0;
  plan->attempt_id = StrCat(plan->run_id, "/", spec.name, "/", std::to_string(plan->number));
  plan->work = AttemptDir(plan->run_id, spec.name, plan->number);
  plan->spec = spec;
  plan->tracking_run_id = step.tracking_run_id();
  if (auto pod = queue_pod_templates_.find(run.proto.queue()); pod != queue_pod_templates_.end()) {
    plan->queue_pod_template_json = pod->second;
  }
  if (auto kueue = queue_kueue_.find(run.proto.queue()); kueue != queue_kueue_.end()) {
    plan->kueue_local_queue = kueue->second;
  }
  return plan;
}

void Scheduler::Launch(Run& run, size_t index) {
  const StepSpec& spec = run.spec.steps[index];
  v1::StepRun& step = *run.proto.mutable_steps(static_cast<int>(index));
  if (run.cancel_requested) {
    admission_.Release(StrCat(run.proto.id(), "/", spec.name));
    return;
  }
  // Recorded before it starts: a restart finds the attempt and stops whatever is left of it.
  v1::Attempt* attempt = step.add_attempts();
  attempt->set_number(step.attempts_size());
  attempt->set_start_time_ms(NowMs());
  if (step.start_time_ms() == 0) step.set_start_time_ms(attempt->start_time_ms());
  step.clear_tracking_run_id();
  run.SetState(index, v1::RUNNING);
  if (!Persist(run, index)) return;  // never start what a restart would not know of
  Advance(run, {}, false);
  std::shared_ptr<AttemptPlan> plan = Plan(run, index);
  for (const auto& [name, ref] : spec.inputs) {
    AttemptPlan::Input input;
    input.name = name;
    if (ref.kind == InputRef::Kind::kStepOutput) {
      const v1::StepRun& upstream = run.proto.steps(Producer(run, ref));
      const StepSpec& producer = run.spec.steps[static_cast<size_t>(Producer(run, ref))];
      input.digest = upstream.output_digests().at(ref.output);
      input.file_name = std::filesystem::path(producer.outputs.at(ref.output)).filename().string();
    } else {
      input.dataset = true;
      input.version = run.pinned[index][name];
    }
    plan->inputs.push_back(std::move(input));
  }
  if (metadata_ != nullptr) plan->record = Record(run, index);
  workers_->Post([this, plan] { Prepare(plan); });
}

void Scheduler::Started(Run& run, const Event& event) {
  v1::StepRun& step = *run.proto.mutable_steps(static_cast<int>(event.step));
  if (step.state() != v1::RUNNING || step.attempts_size() == 0) return;  // it ended already
  v1::Attempt& attempt = *step.mutable_attempts(step.attempts_size() - 1);
  if (attempt.number() != event.attempt || attempt.end_time_ms() != 0) return;
  attempt.set_handle(event.handle);
  step.set_tracking_run_id(event.tracking_run_id);
  Persist(run, event.step);
  // A cancel that came while the attempt was being prepared reaches it now.
  if (run.cancel_requested) {
    executor_
        ->Cancel(StrCat(run.proto.id(), "/", step.name(), "/", std::to_string(attempt.number())))
        .IgnoreError();
  }
}

void Scheduler::Finished(Run& run, const Event& event) {
  const size_t index = event.step;
  const AttemptResult& result = event.result;
  const StepSpec& spec = run.spec.steps[index];
  v1::StepRun& step = *run.proto.mutable_steps(static_cast<int>(index));
  if (step.state() != v1::RUNNING || step.attempts_size() == 0 ||
      step.attempts(step.attempts_size() - 1).number() != event.attempt) {
    return;  // not the attempt that runs
  }
  admission_.Release(StrCat(run.proto.id(), "/", spec.name));
  v1::Attempt& attempt = *step.mutable_attempts(step.attempts_size() - 1);
  // Started later than launched (a Job that waited in Kueue): the attempt ran from then.
  if (result.start_ms > attempt.start_time_ms()) attempt.set_start_time_ms(result.start_ms);
  attempt.set_end_time_ms(result.end_ms);
  attempt.set_outcome(OutcomeName(result.outcome));
  attempt.set_exit_code(result.exit_code);
  attempt.set_message(result.message);
  attempt.set_image_id(result.image_id);
  attempt.set_stdout_digest(event.stdout_digest);
  attempt.set_stderr_digest(event.stderr_digest);
  if (step.tracking_run_id().empty()) step.set_tracking_run_id(event.tracking_run_id);
  if (result.outcome == AttemptResult::Outcome::kSucceeded) {
    for (const auto& [k, v] : event.outputs) (*step.mutable_output_digests())[k] = v;
    for (const auto& [k, v] : event.metrics) (*step.mutable_metrics())[k] = v;
    if (metadata_ != nullptr && !step.tracking_run_id().empty()) {
      Defer([metadata = metadata_, tracking = step.tracking_run_id(), record = Record(run, index)] {
        absl::Status recorded = metadata->FinishRun(tracking, record, true);
        if (!recorded.ok()) {
          LogWarning("lineage_record_failed", {{"run", record.pipeline_run},
                                               {"step", record.step},
                                               {"error", std::string(recorded.message())}});
        }
      });
    }
    run.SetState(index, v1::SUCCEEDED);
    step.set_end_time_ms(NowMs());
    step.set_cached_from(StrCat(run.proto.id(), "/", spec.name));
    rocksdb::WriteBatch batch;
    batch.Put(steps_cf_, StepKey(run.proto.id(), index), step.SerializeAsString());
    if (spec.cache) {
      batch.Put(cache_cf_, CacheKey(run.proto.id(), step.fingerprint()), step.SerializeAsString());
    }
    if (!WriteOrStop(&batch, StrCat("step ", spec.name, " of pipeline run ", run.proto.id()))) {
      return;
    }
    Touch(run);
    return;
  }
  if (metadata_ != nullptr && !step.tracking_run_id().empty()) {
    Defer([metadata = metadata_, tracking = step.tracking_run_id(), record = Record(run, index)] {
      metadata->FinishRun(tracking, record, false).IgnoreError();
    });
  }
  if (result.outcome == AttemptResult::Outcome::kCanceled || run.cancel_requested) {
    run.SetState(index, v1::CANCELED);
    step.set_end_time_ms(NowMs());
    Persist(run, index);
    return;
  }
  // Retry per policy, else the step fails. An attempt lost because the scheduler itself stopped
  // (kill -9, a node gone) is not the step's failure: it is retried without counting against the
  // step's limit, at most kMaxLostAttempts times (as Kubernetes treats a lost node).
  int lost = 0;
  for (const v1::Attempt& a : step.attempts()) lost += a.outcome() == "LOST";
  int counted = step.attempts_size() - lost;
  bool retry = result.outcome == AttemptResult::Outcome::kLost ? lost <= kMaxLostAttempts
                                                               : counted <= spec.retries.limit;
  if (retry) {
    run.SetState(index, v1::RETRY_WAIT);
    step.set_message(attempt.message());
    Persist(run, index);
    timers_.emplace(NowMs() + spec.retries.DelayBeforeAttempt(step.attempts_size() + 1),
                    std::make_pair(run.proto.id(), index));
    return;
  }
  Fail(run, index, attempt.message(), v1::FAILED);
}

void Scheduler::Fail(Run& run, size_t index, const std::string& message, v1::RunState state) {
  run.SetState(index, state);
  v1::StepRun& step = *run.proto.mutable_steps(static_cast<int>(index));
  step.set_message(message);
  step.set_end_time_ms(NowMs());
  Persist(run, index);
}

}  // namespace mlops::scheduler
