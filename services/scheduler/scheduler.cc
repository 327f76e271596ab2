#include "services/scheduler/scheduler.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
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
#include "services/scheduler/scheduler_internal.h"

namespace mlops::scheduler {

std::string StepKeyOf(std::string_view run_id, std::string_view step) {
  return DigestHex(Sha256Of(StrCat("mlops-step-key:", run_id, "/", step))).substr(0, 32);
}

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
      reports_cf_(db->Cf(kReportsCf)),
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
    if (plan->spec.validate) {
      // No process to re-attach to: the validation the restart interrupted is done again.
      AttemptResult lost;
      lost.outcome = AttemptResult::Outcome::kLost;
      lost.message = "the scheduler restarted during the validation";
      lost.start_ms = spec.start_ms;
      lost.end_ms = NowMs();
      scheduler->WhenDone(plan)(lost);
      continue;
    }
    scheduler->executor_->Recover(spec, scheduler->WhenDone(plan));
  }
  scheduler->recovered_.clear();
  scheduler->executor_->RecoveryDone();
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
        bool kueue = !q.kueue_local_queue().empty();
        if (kueue && !executor_->kueue()) {
          // Kept as stored, for an executor that has Kueue; meanwhile mlops admits its steps.
          LogWarning("queue_kueue_ignored", {{"queue", q.name()},
                                             {"kueue_local_queue", q.kueue_local_queue()},
                                             {"executor", executor_->name()}});
          kueue = false;
        }
        admission_
            .SetQueue({q.name(),
                       q.priority(),
                       q.max_concurrency(),
                       {q.cpu_millis(), q.memory_bytes(), q.gpus()},
                       kueue})
            .IgnoreError();
        has_default = has_default || q.name() == "default";
        if (!q.pod_template_json().empty()) queue_pod_templates_[q.name()] = q.pod_template_json();
        if (kueue) queue_kueue_[q.name()] = q.kueue_local_queue();
        if (!q.projects().empty()) {
          queue_projects_[q.name()] = {q.projects().begin(), q.projects().end()};
        }
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

bool Scheduler::WriteOrStop(rocksdb::WriteBatch* batch, const std::string& what) {
  absl::Status written = db_->Write(batch);
  if (written.ok()) return true;
  if (storage_error_.ok()) {
    storage_error_ = absl::UnavailableError(StrCat("the scheduler stopped: it could not record ",
                                                   what, " (", written.message(),
                                                   "); restart it once its storage is healthy"));
    LogError("scheduler_storage_failed", {{"what", what}, {"error", written.ToString()}});
  }
  return false;
}

absl::Status Scheduler::CheckStorage() const { return storage_error_; }

bool Scheduler::PersistHeader(Run& run) {
  v1::PipelineRun header = run.proto;
  header.clear_steps();
  rocksdb::WriteBatch batch;
  batch.Put(runs_cf_, run.proto.id(), header.SerializeAsString());
  return WriteOrStop(&batch, "pipeline run " + run.proto.id());
}

bool Scheduler::Persist(Run& run, size_t step) {
  rocksdb::WriteBatch batch;
  batch.Put(steps_cf_, StepKey(run.proto.id(), step),
            run.proto.steps(static_cast<int>(step)).SerializeAsString());
  if (!WriteOrStop(&batch, StrCat("a step of pipeline run ", run.proto.id()))) return false;
  Touch(run);
  return true;
}

size_t RunIdEnd(std::string_view key) {
  size_t start = 0;
  if (key.starts_with(kProjectsPrefix)) {
    start = key.find('/', kProjectsPrefix.size());
    if (start == std::string_view::npos) return start;
    ++start;
  }
  return key.find('/', start);
}

namespace {

// The stored key of the run that `id` names (`projects/default/x` is `x`), INVALID_ARGUMENT for
// an id no run can have.
absl::StatusOr<std::string> RunKey(std::string_view id) {
  ASSIGN_OR_RETURN(ScopedName scoped, ParseScoped("id", id));
  if (!IsValidId(scoped.name)) {
    return absl::InvalidArgumentError(StrCat("id \"", id.substr(0, 200), "\": not a run id"));
  }
  return Qualify(scoped.project, scoped.name);
}

}  // namespace

absl::StatusOr<v1::PipelineRun> Scheduler::Submit(const v1::SubmitPipelineRequest& request) {
  if (!request.project().empty()) RETURN_IF_ERROR(ValidateProject(request.project()));
  ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipelineSpec(request.spec_yaml()));
  RETURN_IF_ERROR(ApplyParams(&spec, {request.params().begin(), request.params().end()}));
  ASSIGN_OR_RETURN(PipelineSpec expanded, ExpandSweeps(std::move(spec)));
  std::lock_guard lock(mu_);
  return SubmitLocked(request, std::move(expanded));
}

absl::StatusOr<v1::PipelineRun> Scheduler::SubmitLocked(const v1::SubmitPipelineRequest& request,
                                                        PipelineSpec expanded) {
  RETURN_IF_ERROR(CheckStorage());
  const std::string_view project =
      request.project().empty() ? kDefaultProject : std::string_view(request.project());
  // A submission retried with its request_id (a client that timed out, the monitoring service's
  // retraining worker) returns the run the first one made: the id is recorded with the run.
  std::string request_key;
  if (!request.request_id().empty()) {
    if (request.request_id().size() > kMaxRequestIdBytes) {
      return absl::InvalidArgumentError(
          StrCat("request_id: at most ", std::to_string(kMaxRequestIdBytes), " bytes"));
    }
    request_key = StrCat(kRequestKeyPrefix, Qualify(project, request.request_id()));
    ASSIGN_OR_RETURN(std::optional<std::string> earlier, db_->Get(reports_cf_, request_key));
    if (earlier.has_value()) {
      auto it = runs_.find(*earlier);
      if (it != runs_.end()) return it->second->proto;
      return ReadRun(*earlier);
    }
  }
  std::string queue = request.queue().empty() ? "default" : request.queue();
  auto run = std::make_unique<Run>();
  v1::PipelineRun& proto = run->proto;
  proto.set_id(Qualify(project, NewId()));
  proto.set_pipeline(expanded.name);
  proto.set_queue(queue);
  proto.set_state(v1::PENDING);
  for (const auto& [k, v] : expanded.params) (*proto.mutable_params())[k] = v;
  proto.set_create_time_ms(NowMs());
  proto.set_spec_yaml(request.spec_yaml());
  proto.set_no_cache(request.no_cache());
  RETURN_IF_ERROR(CheckQueue(queue, project));
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
  if (!request_key.empty()) batch.Put(reports_cf_, request_key, proto.id());
  RETURN_IF_ERROR(db_->Write(&batch));
  v1::PipelineRun out = proto;
  events_.push_back(Event::Of(Event::Kind::kAdvance, proto.id()));
  runs_[proto.id()] = std::move(run);
  wake_.notify_all();
  return out;
}

absl::StatusOr<v1::PipelineRun> Scheduler::Get(const std::string& requested) const {
  ASSIGN_OR_RETURN(const std::string id, RunKey(requested));
  {
    std::lock_guard lock(mu_);
    auto it = runs_.find(id);
    if (it != runs_.end()) return it->second->proto;
  }
  return ReadRun(id);
}

absl::StatusOr<v1::PipelineRun> Scheduler::ReadRun(const std::string& id) const {
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
  // Newest first: a page resumes before the key where the last one ended. A project's runs are
  // the keys `projects/P/...`; project default's are the bare ids, which sort before them.
  const std::string project = request.project().empty() ? "default" : request.project();
  if (project == kEveryProject) {
    return absl::InvalidArgumentError(
        "project: runs are listed one project at a time (\"*\" is not accepted here)");
  }
  RETURN_IF_ERROR(ValidateProject(project));
  ASSIGN_OR_RETURN(Pager pager,
                   Pager::Start(db_->page_token_key(), request.page_size(), 100, 1000,
                                request.page_token(), Fingerprint({"pipeline_runs", project})));
  const bool in_default = project == kDefaultProject;
  const std::string prefix = in_default ? "" : Qualify(project, "");
  std::string before = pager.after();
  if (before.empty() && in_default) before = std::string(kProjectsPrefix);
  v1::ListPipelineRunsResponse response;
  std::vector<std::string> ids;
  RETURN_IF_ERROR(
      db_->ScanPrefixReverse(runs_cf_, prefix, before, [&](std::string_view key, std::string_view) {
        if (in_default && key.starts_with(kProjectsPrefix)) {
          return true;  // a token from before projects
        }
        if (!pager.Take(key)) return false;
        ids.emplace_back(key);
        return true;
      }));
  for (const auto& id : ids) {
    ASSIGN_OR_RETURN(v1::PipelineRun run, Get(id));
    run.clear_spec_yaml();
    *response.add_runs() = std::move(run);
  }
  response.set_next_page_token(pager.NextToken());
  return response;
}

absl::StatusOr<v1::PipelineRun> Scheduler::Cancel(const std::string& requested) {
  {
    std::lock_guard lock(mu_);
    RETURN_IF_ERROR(CheckStorage());
  }
  ASSIGN_OR_RETURN(v1::PipelineRun run, Get(requested));
  const std::string& id = run.id();
  if (Terminal(run.state())) {
    return absl::FailedPreconditionError("pipeline run " + id + " has finished (" +
                                         v1::RunState_Name(run.state()) + ")");
  }
  Post(Event::Of(Event::Kind::kCancel, id));
  return run;
}

namespace {

absl::Status CheckDigest(const std::string& what, const std::string& digest) {
  RawDigest raw;
  if (!ParseDigestHex(digest, &raw) || DigestHex(raw) != digest) {
    return absl::InvalidArgumentError(
        StrCat(what, ": '", digest.substr(0, 80), "' is not a SHA-256 (64 hex digits)"));
  }
  return absl::OkStatus();
}

// Where the latest checkpoint of a step of a run is kept (in the reports column family; attempt
// ids never start so, nor kRequestKeyPrefix).
std::string CheckpointKey(const std::string& run_id, const std::string& step) {
  return StrCat("checkpoint:", run_id, "/", step);
}

}  // namespace

absl::StatusOr<Scheduler::RunningAttemptInfo> Scheduler::RunningAttempt(const std::string& id) {
  // RUN/STEP/NUMBER: a run id holds '/' only in its project prefix; swept step names may.
  const size_t first = RunIdEnd(id);
  const size_t last = id.rfind('/');
  if (first == std::string::npos || last == first || last + 1 >= id.size()) {
    return absl::InvalidArgumentError(
        StrCat("attempt id '", id.substr(0, 200), "': expected RUN/STEP/NUMBER"));
  }
  RunningAttemptInfo info;
  ASSIGN_OR_RETURN(ScopedName run_id, ParseScoped("attempt_id", id.substr(0, first)));
  info.run_id = Qualify(run_id.project, run_id.name);
  const std::string step_name = id.substr(first + 1, last - first - 1);
  const std::string number = id.substr(last + 1);
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(CheckStorage());
  auto not_running = absl::NotFoundError(StrCat("attempt ", id, " is not running"));
  auto run = runs_.find(info.run_id);
  if (run == runs_.end()) return not_running;
  auto index = run->second->index.find(step_name);
  if (index == run->second->index.end()) return not_running;
  const v1::StepRun& step = run->second->proto.steps(static_cast<int>(index->second));
  if (step.state() != v1::RUNNING || step.attempts_size() == 0 ||
      std::to_string(step.attempts(step.attempts_size() - 1).number()) != number) {
    return not_running;
  }
  info.spec = run->second->spec.steps[index->second];
  return info;
}

absl::StatusOr<v1::ReportAttemptResponse> Scheduler::ReportAttempt(
    const v1::ReportAttemptRequest& request) {
  const std::string id = CanonicalName(request.attempt_id());
  ASSIGN_OR_RETURN(RunningAttemptInfo attempt, RunningAttempt(id));
  for (const auto& [name, digest] : request.outputs()) {
    RETURN_IF_ERROR(CheckDigest("output " + name, digest));
    if (!attempt.spec.outputs.contains(name)) {
      return absl::InvalidArgumentError(
          StrCat("step ", attempt.spec.name, " declares no output '", name.substr(0, 128), "'"));
    }
  }
  std::lock_guard lock(reports_mu_);
  ASSIGN_OR_RETURN(auto stored, db_->GetProto<v1::ReportAttemptRequest>(reports_cf_, id));
  v1::ReportAttemptResponse response;
  if (stored) {
    *response.mutable_stored() = *std::move(stored);
    return response;
  }
  rocksdb::WriteBatch batch;
  batch.Put(reports_cf_, id, request.SerializeAsString());
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  *response.mutable_stored() = request;
  return response;
}

absl::Status Scheduler::ReportCheckpoint(const v1::ReportCheckpointRequest& request) {
  RETURN_IF_ERROR(CheckDigest("checkpoint", request.digest()));
  ASSIGN_OR_RETURN(RunningAttemptInfo attempt, RunningAttempt(CanonicalName(request.attempt_id())));
  if (attempt.spec.checkpoint.empty()) {
    return absl::FailedPreconditionError(
        StrCat("step ", attempt.spec.name, " declares no checkpoint"));
  }
  return KeepCheckpoint(attempt.run_id, attempt.spec.name, request.digest());
}

absl::Status Scheduler::KeepCheckpoint(const std::string& run_id, const std::string& step,
                                       const std::string& digest) {
  rocksdb::WriteBatch batch;
  batch.Put(reports_cf_, CheckpointKey(run_id, step), digest);
  return db_->WriteSync(&batch);
}

absl::StatusOr<std::string> Scheduler::LatestCheckpoint(const std::string& run_id,
                                                        const std::string& step) const {
  ASSIGN_OR_RETURN(auto digest, db_->Get(reports_cf_, CheckpointKey(run_id, step)));
  return digest.value_or("");
}

absl::StatusOr<v1::PipelineRun> Scheduler::Retry(const std::string& requested) {
  ASSIGN_OR_RETURN(v1::PipelineRun old, Get(requested));
  const std::string& id = old.id();
  if (!Terminal(old.state())) {
    return absl::FailedPreconditionError("pipeline run " + id + " is still " +
                                         v1::RunState_Name(old.state()));
  }
  v1::SubmitPipelineRequest request;
  request.set_spec_yaml(old.spec_yaml());
  *request.mutable_params() = old.params();
  request.set_queue(old.queue());
  request.set_project(std::string(ProjectOf(id)));
  // Succeeded steps are reused through the cache (their fingerprints are recorded); a run
  // submitted with no_cache still reuses its own succeeded steps.
  ASSIGN_OR_RETURN(v1::PipelineRun run, Submit(request));
  std::lock_guard lock(mu_);
  auto it = runs_.find(run.id());
  if (it != runs_.end()) {
    it->second->proto.set_retry_of(id);
    if (!PersistHeader(*it->second)) return CheckStorage();
    run.set_retry_of(id);
  }
  return run;
}

absl::StatusOr<v1::Queue> Scheduler::PutQueue(const v1::Queue& queue) {
  if (!queue.pod_template_json().empty()) {
    google::protobuf::Value parsed;
    if (!google::protobuf::util::JsonStringToMessage(queue.pod_template_json(), &parsed).ok() ||
        !parsed.has_struct_value()) {
      return absl::InvalidArgumentError(
          StrCat("queue ", queue.name(), ": pod_template_json is not a JSON object"));
    }
  }
  const std::string& kueue = queue.kueue_local_queue();
  if (!kueue.empty()) {
    // A LocalQueue's name goes into a label value: a DNS label.
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    bool label = kueue.size() <= 63 && alnum(kueue.front()) && alnum(kueue.back());
    for (char c : kueue) label = label && (alnum(c) || c == '-');
    if (!label) {
      return absl::InvalidArgumentError(
          StrCat("queue ", queue.name(), ": kueue_local_queue '", kueue,
                 "' is not a LocalQueue name (lower-case letters, digits and '-', at most 63)"));
    }
    if (!executor_->kueue()) {
      return absl::FailedPreconditionError(
          StrCat("queue ", queue.name(), ": the ", executor_->name(),
                 " executor has no Kueue (kueue_local_queue needs --executor=kubernetes)"));
    }
  }
  for (const std::string& project : queue.projects()) {
    if (absl::Status valid = ValidateProject(project); !valid.ok()) {
      return absl::InvalidArgumentError(
          StrCat("queue ", queue.name(), ": projects: ", valid.message()));
    }
  }
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(CheckStorage());
  RETURN_IF_ERROR(admission_.SetQueue({queue.name(),
                                       queue.priority(),
                                       queue.max_concurrency(),
                                       {queue.cpu_millis(), queue.memory_bytes(), queue.gpus()},
                                       !kueue.empty()}));
  rocksdb::WriteBatch batch;
  v1::Queue stored = queue;
  stored.clear_pending();
  stored.clear_running();
  batch.Put(queues_cf_, queue.name(), stored.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  if (queue.pod_template_json().empty()) {
    queue_pod_templates_.erase(queue.name());
  } else {
    queue_pod_templates_[queue.name()] = queue.pod_template_json();
  }
  if (kueue.empty()) {
    queue_kueue_.erase(queue.name());
  } else {
    queue_kueue_[queue.name()] = kueue;
  }
  if (queue.projects().empty()) {
    queue_projects_.erase(queue.name());
  } else {
    queue_projects_[queue.name()] = {queue.projects().begin(), queue.projects().end()};
  }
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
    if (auto pod = queue_pod_templates_.find(q.name); pod != queue_pod_templates_.end()) {
      queue.set_pod_template_json(pod->second);
    }
    if (auto kueue = queue_kueue_.find(q.name); kueue != queue_kueue_.end()) {
      queue.set_kueue_local_queue(kueue->second);
    }
    if (auto projects = queue_projects_.find(q.name); projects != queue_projects_.end()) {
      for (const std::string& project : projects->second) queue.add_projects(project);
    }
    Admission::QueueStats stats = admission_.Stats(q.name);
    queue.set_pending(static_cast<int64_t>(stats.pending));
    queue.set_running(static_cast<int64_t>(stats.running));
    out.push_back(queue);
  }
  return out;
}

absl::Status Scheduler::CheckQueue(const std::string& queue, std::string_view project) const {
  bool known = false;
  for (const auto& q : admission_.Queues()) known = known || q.name == queue;
  if (!known) return absl::NotFoundError("queue " + queue + " not found");
  auto projects = queue_projects_.find(queue);
  if (projects == queue_projects_.end() ||
      std::find(projects->second.begin(), projects->second.end(), project) !=
          projects->second.end()) {
    return absl::OkStatus();
  }
  std::string open_to;
  for (const std::string& p : projects->second) open_to += (open_to.empty() ? "" : ", ") + p;
  return absl::PermissionDeniedError(
      StrCat("queue ", queue, " is open to project(s) ", open_to, ", not to project ", project));
}

std::string Scheduler::AttemptDir(const std::string& run, const std::string& step,
                                  int attempt) const {
  return StrCat(options_.work_root, "/", run, "/", step, "/", std::to_string(attempt));
}

int64_t Scheduler::WaitForChange(const std::string& requested, int64_t seen,
                                 int64_t timeout_ms) const {
  const std::string id = CanonicalName(requested);
  std::unique_lock lock(mu_);
  auto changes = [&]() -> int64_t {
    auto it = runs_.find(id);
    return it == runs_.end() ? -1 : it->second->changes;
  };
  changed_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                    [&] { return stop_ || changes() != seen; });
  return changes();
}

}  // namespace mlops::scheduler
