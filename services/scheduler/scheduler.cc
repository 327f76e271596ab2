#include "services/scheduler/scheduler.h"

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
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/scheduler/cron.h"
#include "services/scheduler/metrics_file.h"

namespace mlops::scheduler {
namespace {

// Lost attempts (the scheduler stopped while they ran) retried beyond the step's own limit.
constexpr int kMaxLostAttempts = 3;

}  // namespace

std::string StepKeyOf(std::string_view run_id, std::string_view step) {
  return DigestHex(Sha256Of(StrCat("mlops-step-key:", run_id, "/", step))).substr(0, 32);
}

namespace {

bool Terminal(v1::RunState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CACHED ||
         state == v1::CANCELED || state == v1::SKIPPED;
}

bool Done(v1::RunState state) { return state == v1::SUCCEEDED || state == v1::CACHED; }

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

std::string StepKey(const std::string& run, size_t index) {
  std::string key = run;
  AppendBigEndian64(&key, index);
  return key;
}

}  // namespace

struct Scheduler::Run {
  v1::PipelineRun proto;  // header and steps
  PipelineSpec spec;      // expanded, in the same order as proto.steps
  std::map<std::string, size_t> index;
  // Dataset versions pinned when a step was evaluated: step index -> input name -> version.
  std::map<size_t, std::map<std::string, std::string>> pinned;
  // Steps whose dataset refs a worker is resolving now (the engine never calls out itself).
  std::set<size_t> resolving;
  // The content each step's inputs had when it became ready (for its lineage record).
  std::map<size_t, std::map<std::string, std::string>> input_digests;
  int64_t changes = 0;
  bool cancel_requested = false;
  // Kept current by SetState, so that a step's change costs only its dependents' evaluation.
  std::vector<std::vector<size_t>> dependents;
  size_t terminal = 0;
  size_t failed = 0;   // FAILED or SKIPPED
  size_t started = 0;  // ever RUNNING, or finished
  // Swept steps with an objective: the step as written -> its instances.
  std::map<std::string, std::vector<size_t>> sweeps;

  void Index() {
    dependents.assign(spec.steps.size(), {});
    sweeps.clear();
    for (size_t i = 0; i < spec.steps.size(); ++i) {
      index[spec.steps[i].name] = i;
      for (const auto& need : spec.steps[i].needs) dependents[index[need]].push_back(i);
      if (!spec.steps[i].objective_metric.empty()) sweeps[spec.steps[i].sweep_of].push_back(i);
    }
    terminal = failed = started = 0;
    for (const auto& step : proto.steps()) Count(step.state(), +1);
  }
  void Count(v1::RunState state, int delta) {
    if (Terminal(state)) terminal += delta;
    if (state == v1::FAILED || state == v1::SKIPPED) failed += delta;
    if (state == v1::RUNNING || Terminal(state)) started += delta;
  }
  void SetState(size_t step, v1::RunState state) {
    v1::StepRun& s = *proto.mutable_steps(static_cast<int>(step));
    Count(s.state(), -1);
    s.set_state(state);
    Count(state, +1);
  }
};

struct Scheduler::Event {
  enum class Kind { kAdvance, kStarted, kDone, kCancel, kResolved };
  Kind kind = Kind::kAdvance;
  std::string run;
  size_t step = 0;
  int attempt = 0;  // kStarted, kDone: the attempt's number
  // kStarted: the executor's handle. kStarted, kDone: the attempt's tracking run.
  std::string handle;
  std::string tracking_run_id;
  // kDone: how it ended (outputs already checked and stored), its logs and outputs. kResolved:
  // outputs holds input name -> dataset version, or result.message what failed.
  AttemptResult result;
  std::string stdout_digest;
  std::string stderr_digest;
  std::map<std::string, std::string> outputs;
  std::map<std::string, double> metrics;  // final values from metrics.json

  static Event Of(Kind kind, std::string run) {
    Event event;
    event.kind = kind;
    event.run = std::move(run);
    return event;
  }
  static Event Done(const std::string& run, size_t step, int attempt, AttemptResult result) {
    Event event = Of(Kind::kDone, run);
    event.step = step;
    event.attempt = attempt;
    event.result = std::move(result);
    return event;
  }
};

// What a worker needs to prepare, start and collect one attempt: copies, so that it never reads
// the engine's state.
struct Scheduler::AttemptPlan {
  std::string run_id;
  size_t index = 0;
  int number = 0;
  std::string attempt_id;
  std::string work;  // the attempt's directory
  StepSpec spec;
  struct Input {
    std::string name;
    bool dataset = false;
    std::string digest;     // a blob (step output)
    std::string file_name;  // of the blob under inputs/<name>/
    std::string version;    // a dataset version
  };
  std::vector<Input> inputs;
  StepRecord record;            // for the tracking run
  std::string tracking_run_id;  // set by Prepare before the attempt starts
};

Scheduler::Scheduler(Db* db, Executor* executor, ArtifactGateway* artifacts,
                     SchedulerOptions options, MetadataGateway* metadata)
    : db_(db),
      executor_(executor),
      artifacts_(artifacts),
      metadata_(metadata),
      options_(std::move(options)),
      runs_cf_(db->Cf(kRunsCf)),
      steps_cf_(db->Cf(kStepsCf)),
      cache_cf_(db->Cf(kCacheCf)),
      queues_cf_(db->Cf(kQueuesCf)),
      schedules_cf_(db->Cf(kSchedulesCf)),
      admission_(options_.capacity) {}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Open(Db* db, Executor* executor,
                                                           ArtifactGateway* artifacts,
                                                           SchedulerOptions options,
                                                           MetadataGateway* metadata) {
  std::unique_ptr<Scheduler> scheduler(
      new Scheduler(db, executor, artifacts, std::move(options), metadata));
  RETURN_IF_ERROR(scheduler->Recover());
  scheduler->mailbox_->target = scheduler.get();
  scheduler->workers_ = std::make_unique<WorkQueue>(scheduler->options_.workers);
  scheduler->recorder_ = std::make_unique<WorkQueue>(1);
  // Attempts that were running: re-attached, or collected as they ended or were lost.
  for (auto& [plan, spec] : scheduler->recovered_) {
    scheduler->executor_->Recover(spec, scheduler->WhenDone(plan));
  }
  scheduler->recovered_.clear();
  scheduler->engine_ = std::thread([s = scheduler.get()] { s->Loop(); });
  return scheduler;
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Stop() {
  {
    std::lock_guard lock(mailbox_->mu);
    mailbox_->target = nullptr;
  }
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (engine_.joinable()) engine_.join();
  // Attempts being prepared or collected finish; queued ones are dropped (recovered at the next
  // start, like the attempts still running). What was deferred is recorded.
  if (workers_ != nullptr) workers_->Stop(/*drain=*/false);
  if (recorder_ != nullptr) recorder_->Stop(/*drain=*/true);
}

void Scheduler::Defer(std::function<void()> job) { recorder_->Post(std::move(job)); }

absl::Status Scheduler::Recover() {
  // Queues: "default" always exists.
  bool has_default = false;
  RETURN_IF_ERROR(
      db_->ScanProto<v1::Queue>(queues_cf_, "", {}, [&](std::string_view, v1::Queue& q) {
        admission_
            .SetQueue({q.name(),
                       q.priority(),
                       q.max_concurrency(),
                       {q.cpu_millis(), q.memory_bytes(), q.gpus()}})
            .IgnoreError();
        has_default = has_default || q.name() == "default";
        return true;
      }));
  if (!has_default) RETURN_IF_ERROR(admission_.SetQueue({"default", 0, 0, {}}));
  RETURN_IF_ERROR(db_->ScanProto<v1::Schedule>(schedules_cf_, "", {},
                                               [&](std::string_view key, v1::Schedule& schedule) {
                                                 schedules_[std::string(key)] = std::move(schedule);
                                                 return true;
                                               }));
  // Runs.
  std::vector<std::string> ids;
  RETURN_IF_ERROR(db_->ScanPrefix(runs_cf_, "", {}, [&](std::string_view key, std::string_view) {
    ids.emplace_back(key);
    return true;
  }));
  for (const std::string& id : ids) {
    auto run = std::make_unique<Run>();
    ASSIGN_OR_RETURN(auto header, db_->GetProto<v1::PipelineRun>(runs_cf_, id));
    if (!header) continue;  // scanned a moment ago: nothing deletes runs
    run->proto = *std::move(header);
    if (Terminal(run->proto.state())) continue;  // finished runs are read from storage
    RETURN_IF_ERROR(
        db_->ScanProto<v1::StepRun>(steps_cf_, id, {}, [&](std::string_view, v1::StepRun& step) {
          *run->proto.add_steps() = std::move(step);
          return true;
        }));
    ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipelineSpec(run->proto.spec_yaml()));
    RETURN_IF_ERROR(ApplyParams(&spec, {run->proto.params().begin(), run->proto.params().end()}));
    ASSIGN_OR_RETURN(run->spec, ExpandSweeps(std::move(spec)));
    run->Index();
    // Attempts that were running when the scheduler stopped go back to the executor (Open), which
    // re-attaches to those still running; they keep their resources meanwhile. Queued steps queue
    // again.
    for (size_t i = 0; i < static_cast<size_t>(run->proto.steps_size()); ++i) {
      v1::StepRun& step = *run->proto.mutable_steps(static_cast<int>(i));
      if (step.state() == v1::RUNNING && step.attempts_size() > 0) {
        const v1::Attempt& attempt = step.attempts(step.attempts_size() - 1);
        std::shared_ptr<AttemptPlan> plan = Plan(*run, i);
        RecoverSpec spec;
        spec.attempt_id = plan->attempt_id;
        spec.handle = attempt.handle();
        spec.work_dir = plan->work;
        spec.start_ms = attempt.start_time_ms();
        spec.timeout_ms = plan->spec.timeout_ms;
        admission_.Restore({StrCat(id, "/", plan->spec.name), run->proto.queue(), 0,
                            plan->spec.resources, plan->spec.replicas});
        recovered_.emplace_back(std::move(plan), std::move(spec));
      } else if (step.state() == v1::QUEUED || step.state() == v1::RETRY_WAIT) {
        run->SetState(i, v1::PENDING);  // re-evaluated (and re-queued) by Advance
      }
    }
    events_.push_back(Event::Of(Event::Kind::kAdvance, id));
    runs_[id] = std::move(run);
  }
  return absl::OkStatus();
}

void Scheduler::Post(Event event) {
  {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(event));
  }
  wake_.notify_all();
}

void Scheduler::Touch(Run& run) {
  ++run.changes;
  changed_.notify_all();
}

void Scheduler::PersistHeader(Run& run) {
  v1::PipelineRun header = run.proto;
  header.clear_steps();
  rocksdb::WriteBatch batch;
  batch.Put(runs_cf_, run.proto.id(), header.SerializeAsString());
  if (!db_->Write(&batch).ok()) Fatal("scheduler: cannot persist run " + run.proto.id());
}

void Scheduler::Persist(Run& run, size_t step) {
  rocksdb::WriteBatch batch;
  batch.Put(steps_cf_, StepKey(run.proto.id(), step),
            run.proto.steps(static_cast<int>(step)).SerializeAsString());
  if (!db_->Write(&batch).ok()) Fatal("scheduler: cannot persist step of " + run.proto.id());
  Touch(run);
}

absl::StatusOr<v1::PipelineRun> Scheduler::Submit(const v1::SubmitPipelineRequest& request) {
  ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipelineSpec(request.spec_yaml()));
  RETURN_IF_ERROR(ApplyParams(&spec, {request.params().begin(), request.params().end()}));
  ASSIGN_OR_RETURN(PipelineSpec expanded, ExpandSweeps(std::move(spec)));
  std::lock_guard lock(mu_);
  return SubmitLocked(request, std::move(expanded));
}

absl::StatusOr<v1::PipelineRun> Scheduler::SubmitLocked(const v1::SubmitPipelineRequest& request,
                                                        PipelineSpec expanded) {
  std::string queue = request.queue().empty() ? "default" : request.queue();
  auto run = std::make_unique<Run>();
  v1::PipelineRun& proto = run->proto;
  proto.set_id(NewId());
  proto.set_pipeline(expanded.name);
  proto.set_queue(queue);
  proto.set_state(v1::PENDING);
  for (const auto& [k, v] : expanded.params) (*proto.mutable_params())[k] = v;
  proto.set_create_time_ms(NowMs());
  proto.set_spec_yaml(request.spec_yaml());
  proto.set_no_cache(request.no_cache());
  bool known_queue = false;
  for (const auto& q : admission_.Queues()) known_queue = known_queue || q.name == queue;
  if (!known_queue) return absl::NotFoundError("queue " + queue + " not found");
  rocksdb::WriteBatch batch;
  // A step that could never be admitted is refused now rather than left pending forever; each
  // distinct request is checked once.
  Admission probe(options_.capacity);
  for (const auto& q : admission_.Queues()) probe.SetQueue(q).IgnoreError();
  std::set<std::tuple<int64_t, int64_t, int64_t, int>> checked;
  for (size_t i = 0; i < expanded.steps.size(); ++i) {
    const StepSpec& s = expanded.steps[i];
    if (checked
            .emplace(s.resources.cpu_millis, s.resources.memory_bytes, s.resources.gpus, s.replicas)
            .second) {
      RETURN_IF_ERROR(
          probe.Enqueue({"probe/" + std::to_string(i), queue, 0, s.resources, s.replicas}));
    }
    v1::StepRun* step = proto.add_steps();
    step->set_name(s.name);
    step->set_state(v1::PENDING);
    for (const auto& n : s.needs) step->add_needs(n);
    run->index[s.name] = i;
    batch.Put(steps_cf_, StepKey(proto.id(), i), step->SerializeAsString());
  }
  run->spec = std::move(expanded);
  run->Index();
  v1::PipelineRun header = proto;
  header.clear_steps();
  batch.Put(runs_cf_, proto.id(), header.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  v1::PipelineRun out = proto;
  events_.push_back(Event::Of(Event::Kind::kAdvance, proto.id()));
  runs_[proto.id()] = std::move(run);
  wake_.notify_all();
  return out;
}

absl::StatusOr<v1::PipelineRun> Scheduler::Get(const std::string& id) const {
  {
    std::lock_guard lock(mu_);
    auto it = runs_.find(id);
    if (it != runs_.end()) return it->second->proto;
  }
  if (!IsValidId(id)) return absl::InvalidArgumentError("id \"" + id + "\": not a run id");
  ASSIGN_OR_RETURN(auto header, db_->GetProto<v1::PipelineRun>(runs_cf_, id));
  if (!header) return absl::NotFoundError("pipeline run " + id + " not found");
  v1::PipelineRun run = *std::move(header);
  RETURN_IF_ERROR(
      db_->ScanProto<v1::StepRun>(steps_cf_, id, {}, [&](std::string_view, v1::StepRun& step) {
        *run.add_steps() = std::move(step);
        return true;
      }));
  return run;
}

absl::StatusOr<v1::ListPipelineRunsResponse> Scheduler::List(
    const v1::ListPipelineRunsRequest& request) const {
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size(), 100, 1000));
  uint64_t fingerprint = Fingerprint({"pipeline_runs"});
  std::string before;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageCursor cursor,
                     DecodePageToken(db_->page_token_key(), request.page_token(), fingerprint));
    before = cursor.after;
  }
  v1::ListPipelineRunsResponse response;
  bool more = false;
  std::vector<std::string> ids;
  RETURN_IF_ERROR(
      db_->ScanPrefixReverse(runs_cf_, "", before, [&](std::string_view key, std::string_view) {
        if (static_cast<int>(ids.size()) == page_size) {
          more = true;
          return false;
        }
        ids.emplace_back(key);
        return true;
      }));
  for (const auto& id : ids) {
    ASSIGN_OR_RETURN(v1::PipelineRun run, Get(id));
    run.clear_spec_yaml();
    *response.add_runs() = std::move(run);
  }
  if (more)
    response.set_next_page_token(EncodePageToken(db_->page_token_key(), {fingerprint, ids.back()}));
  return response;
}

absl::StatusOr<v1::PipelineRun> Scheduler::Cancel(const std::string& id) {
  ASSIGN_OR_RETURN(v1::PipelineRun run, Get(id));
  if (Terminal(run.state())) {
    return absl::FailedPreconditionError("pipeline run " + id + " has finished (" +
                                         v1::RunState_Name(run.state()) + ")");
  }
  Post(Event::Of(Event::Kind::kCancel, id));
  return run;
}

absl::StatusOr<v1::PipelineRun> Scheduler::Retry(const std::string& id) {
  ASSIGN_OR_RETURN(v1::PipelineRun old, Get(id));
  if (!Terminal(old.state())) {
    return absl::FailedPreconditionError("pipeline run " + id + " is still " +
                                         v1::RunState_Name(old.state()));
  }
  v1::SubmitPipelineRequest request;
  request.set_spec_yaml(old.spec_yaml());
  *request.mutable_params() = old.params();
  request.set_queue(old.queue());
  // Succeeded steps are reused through the cache (their fingerprints are recorded); a run
  // submitted with no_cache still reuses its own succeeded steps.
  ASSIGN_OR_RETURN(v1::PipelineRun run, Submit(request));
  std::lock_guard lock(mu_);
  auto it = runs_.find(run.id());
  if (it != runs_.end()) {
    it->second->proto.set_retry_of(id);
    PersistHeader(*it->second);
    run.set_retry_of(id);
  }
  return run;
}

absl::StatusOr<v1::Queue> Scheduler::PutQueue(const v1::Queue& queue) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(admission_.SetQueue({queue.name(),
                                       queue.priority(),
                                       queue.max_concurrency(),
                                       {queue.cpu_millis(), queue.memory_bytes(), queue.gpus()}}));
  rocksdb::WriteBatch batch;
  batch.Put(queues_cf_, queue.name(), queue.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  wake_.notify_all();
  return queue;
}

std::vector<v1::Queue> Scheduler::ListQueues() const {
  std::lock_guard lock(mu_);
  std::vector<v1::Queue> out;
  for (const auto& q : admission_.Queues()) {
    v1::Queue queue;
    queue.set_name(q.name);
    queue.set_priority(q.priority);
    queue.set_max_concurrency(q.max_concurrency);
    queue.set_cpu_millis(q.quota.cpu_millis);
    queue.set_memory_bytes(q.quota.memory_bytes);
    queue.set_gpus(q.quota.gpus);
    Admission::QueueStats stats = admission_.Stats(q.name);
    queue.set_pending(static_cast<int64_t>(stats.pending));
    queue.set_running(static_cast<int64_t>(stats.running));
    out.push_back(queue);
  }
  return out;
}

absl::StatusOr<v1::Schedule> Scheduler::CreateSchedule(const v1::Schedule& schedule) {
  bool name_ok = !schedule.name().empty() && schedule.name().size() <= 63 &&
                 std::isalpha(static_cast<unsigned char>(schedule.name()[0]));
  for (char c : schedule.name()) {
    name_ok = name_ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
  }
  if (!name_ok) {
    return absl::InvalidArgumentError("schedule name '" + schedule.name() +
                                      "' must match [A-Za-z][A-Za-z0-9_-]{0,62}");
  }
  ASSIGN_OR_RETURN(CronSchedule cron, CronSchedule::Parse(schedule.cron()));
  ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipelineSpec(schedule.spec_yaml()));
  RETURN_IF_ERROR(ApplyParams(&spec, {schedule.params().begin(), schedule.params().end()}));
  RETURN_IF_ERROR(ExpandSweeps(spec).status());
  std::lock_guard lock(mu_);
  std::string queue = schedule.queue().empty() ? "default" : schedule.queue();
  bool known_queue = false;
  for (const auto& q : admission_.Queues()) known_queue = known_queue || q.name == queue;
  if (!known_queue) return absl::NotFoundError("queue " + queue + " not found");
  if (schedules_.contains(schedule.name())) {
    return absl::AlreadyExistsError("schedule " + schedule.name() + " exists");
  }
  v1::Schedule stored = schedule;
  stored.set_queue(queue);
  stored.set_next_time_ms(schedule.first_time_ms() > 0 ? schedule.first_time_ms()
                                                       : cron.NextAfter(NowMs()));
  if (stored.next_time_ms() < 0) {
    return absl::InvalidArgumentError("cron \"" + schedule.cron() + "\": never fires");
  }
  rocksdb::WriteBatch batch;
  batch.Put(schedules_cf_, stored.name(), stored.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  schedules_[stored.name()] = stored;
  wake_.notify_all();
  return stored;
}

std::vector<v1::Schedule> Scheduler::ListSchedules() const {
  std::lock_guard lock(mu_);
  std::vector<v1::Schedule> out;
  for (const auto& [name, schedule] : schedules_) out.push_back(schedule);
  return out;
}

absl::Status Scheduler::DeleteSchedule(const std::string& name) {
  std::lock_guard lock(mu_);
  if (!schedules_.contains(name)) return absl::NotFoundError("schedule " + name + " not found");
  rocksdb::WriteBatch batch;
  batch.Delete(schedules_cf_, name);
  RETURN_IF_ERROR(db_->Write(&batch));
  schedules_.erase(name);
  return absl::OkStatus();
}

void Scheduler::FireSchedules(int64_t now) {
  for (auto& [name, schedule] : schedules_) {
    if (schedule.next_time_ms() < 0 || schedule.next_time_ms() > now) continue;
    // The next time is recorded before the run is submitted: at most one run per fire time.
    auto cron = CronSchedule::Parse(schedule.cron());
    schedule.set_last_time_ms(schedule.next_time_ms());
    schedule.set_next_time_ms(cron.ok() ? cron->NextAfter(now) : -1);
    rocksdb::WriteBatch batch;
    batch.Put(schedules_cf_, name, schedule.SerializeAsString());
    if (!db_->Write(&batch).ok()) Fatal("scheduler: cannot persist schedule " + name);
    v1::SubmitPipelineRequest request;
    request.set_spec_yaml(schedule.spec_yaml());
    *request.mutable_params() = schedule.params();
    request.set_queue(schedule.queue());
    request.set_no_cache(schedule.no_cache());
    absl::StatusOr<v1::PipelineRun> run = absl::InternalError("spec");
    auto spec = ParsePipelineSpec(schedule.spec_yaml());
    if (spec.ok()) {
      absl::Status applied =
          ApplyParams(&*spec, {schedule.params().begin(), schedule.params().end()});
      auto expanded = applied.ok() ? ExpandSweeps(*spec) : absl::StatusOr<PipelineSpec>(applied);
      run = expanded.ok() ? SubmitLocked(request, std::move(*expanded)) : expanded.status();
    } else {
      run = spec.status();
    }
    if (run.ok()) {
      schedule.set_last_run_id(run->id());
      batch.Clear();
      batch.Put(schedules_cf_, name, schedule.SerializeAsString());
      db_->Write(&batch).IgnoreError();
    } else {
      LogWarning("schedule_submit_failed",
                 {{"schedule", name}, {"error", std::string(run.status().message())}});
    }
  }
}

std::string Scheduler::AttemptDir(const std::string& run, const std::string& step,
                                  int attempt) const {
  return StrCat(options_.work_root, "/", run, "/", step, "/", std::to_string(attempt));
}

int64_t Scheduler::WaitForChange(const std::string& id, int64_t seen, int64_t timeout_ms) const {
  std::unique_lock lock(mu_);
  auto changes = [&]() -> int64_t {
    auto it = runs_.find(id);
    return it == runs_.end() ? -1 : it->second->changes;
  };
  changed_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                    [&] { return stop_ || changes() != seen; });
  return changes();
}

// ---------------------------------------------------------------------------------------------
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
    // Admission: start what fits.
    std::vector<PendingStep> admitted = admission_.Admit();
    for (const PendingStep& p : admitted) {
      size_t slash = p.id.find('/');
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
  step.set_fingerprint(StepFingerprint(spec, input_digests));
  run.input_digests[index] = input_digests;
  if (spec.cache && !run.proto.no_cache()) {
    // A cache record that cannot be read is a miss (logged): the step runs and rewrites it.
    auto cached = db_->GetProto<v1::StepRun>(cache_cf_, step.fingerprint());
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
  workers_->Post([this, run_id = run.proto.id(), index, refs = std::move(refs)] {
    Event event = Event::Of(Event::Kind::kResolved, run_id);
    event.step = index;
    for (const auto& [name, ref] : refs) {
      auto version = artifacts_->ResolveDataset(ref.dataset, ref.ref);
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
  Evaluate(run, event.step);
  return Terminal(run.proto.steps(static_cast<int>(event.step)).state());
}

StepRecord Scheduler::Record(Run& run, size_t index) const {
  const StepSpec& spec = run.spec.steps[index];
  const v1::StepRun& step = run.proto.steps(static_cast<int>(index));
  StepRecord record;
  record.pipeline = run.proto.pipeline();
  record.pipeline_run = run.proto.id();
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
  }
  return record;
}

std::shared_ptr<Scheduler::AttemptPlan> Scheduler::Plan(Run& run, size_t index) const {
  const StepSpec& spec = run.spec.steps[index];
  const v1::StepRun& step = run.proto.steps(static_cast<int>(index));
  auto plan = std::make_shared<AttemptPlan>();
  plan->run_id = run.proto.id();
  plan->index = index;
  plan->number = step.attempts_size() > 0 ? step.attempts(step.attempts_size() - 1).number() : 0;
  plan->attempt_id = StrCat(plan->run_id, "/", spec.name, "/", std::to_string(plan->number));
  plan->work = AttemptDir(plan->run_id, spec.name, plan->number);
  plan->spec = spec;
  plan->tracking_run_id = step.tracking_run_id();
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
  Persist(run, index);
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

void Scheduler::Prepare(std::shared_ptr<AttemptPlan> plan) {
  const StepSpec& spec = plan->spec;
  auto fail = [&](const std::string& message) {
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
  if (!spec.inputs.empty()) std::filesystem::create_directory(work + "/inputs", ec);
  if (!spec.outputs.empty()) std::filesystem::create_directory(work + "/outputs", ec);
  // Inputs by digest; outputs to declared paths under outputs/.
  std::map<std::string, std::string> input_paths, output_paths;
  for (const AttemptPlan::Input& input : plan->inputs) {
    std::string dir = work + "/inputs/" + input.name;
    const InputRef& ref = spec.inputs.at(input.name);
    absl::Status status;
    if (input.dataset) {
      status = artifacts_->MaterializeDataset(ref.dataset, input.version, dir);
      input_paths[input.name] = dir;
    } else {
      std::string file = dir + "/" + input.file_name;
      std::filesystem::create_directories(dir, ec);
      status = artifacts_->MaterializeBlob(input.digest, file);
      input_paths[input.name] = file;
    }
    if (!status.ok()) return fail("input " + input.name + ": " + std::string(status.message()));
  }
  for (const auto& [name, path] : spec.outputs) {
    output_paths[name] = work + "/outputs/" + path;
    std::filesystem::create_directories(std::filesystem::path(output_paths[name]).parent_path(),
                                        ec);
  }
  auto argv = RenderCommand(spec, input_paths, output_paths);
  if (!argv.ok()) return fail(std::string(argv.status().message()));
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
  launch.resources = spec.resources;
  launch.replicas = spec.replicas;
  launch.timeout_ms = spec.timeout_ms;
  launch.env = spec.env;
  for (const auto& [k, v] : spec.params) launch.env["MLOPS_PARAM_" + ToUpper(k)] = v;
  launch.env["MLOPS_PIPELINE_RUN_ID"] = plan->run_id;
  launch.env["MLOPS_STEP"] = spec.name;
  // The same for every attempt of this step in this run: what the step writes (runs, model
  // versions) uses it as the request id, so that a retried attempt repeats no visible effect.
  launch.env["MLOPS_STEP_KEY"] = StepKeyOf(plan->run_id, spec.name);
  for (const auto& [k, v] : options_.step_env) launch.env[k] = v;
  if (!plan->tracking_run_id.empty()) launch.env["MLOPS_RUN_ID"] = plan->tracking_run_id;
  auto handle = executor_->Launch(launch, WhenDone(plan));
  if (!handle.ok()) return fail(std::string(handle.status().message()));
  Event started = Event::Of(Event::Kind::kStarted, plan->run_id);
  started.step = plan->index;
  started.attempt = plan->number;
  started.handle = *handle;
  started.tracking_run_id = plan->tracking_run_id;
  Post(std::move(started));
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
    auto digest = artifacts_->UploadFile(file);
    return digest.ok() ? *digest : "";
  };
  event.stdout_digest = keep(plan.work + "/stdout.log");
  event.stderr_digest = keep(plan.work + "/stderr.log");
  auto fail = [&](std::string message) {
    outcome.outcome = AttemptResult::Outcome::kFailed;
    outcome.message = std::move(message);
  };
  if (outcome.outcome == AttemptResult::Outcome::kSucceeded) {
    // Declared outputs are uploaded from a finished attempt only; a missing one fails the step.
    for (const auto& [name, path] : plan.spec.outputs) {
      std::string file = plan.work + "/outputs/" + path;
      if (!std::filesystem::is_regular_file(file)) {
        fail("declared output " + name + " (" + path + ") was not written");
        break;
      }
      auto digest = artifacts_->UploadFile(file);
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
  attempt.set_end_time_ms(result.end_ms);
  attempt.set_outcome(OutcomeName(result.outcome));
  attempt.set_exit_code(result.exit_code);
  attempt.set_message(result.message);
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
    if (spec.cache) batch.Put(cache_cf_, step.fingerprint(), step.SerializeAsString());
    if (!db_->Write(&batch).ok()) Fatal("scheduler: cannot persist a finished step");
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
