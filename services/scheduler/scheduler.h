// The scheduler core: pipeline runs as state machines over their steps, driven by one engine
// thread. Every state change is written to RocksDB before it is acted on (a step is recorded as
// RUNNING with its attempt before the process starts; its outputs are uploaded, then it is recorded
// SUCCEEDED), so a restarted scheduler finds every run where it stood: attempts that were running
// go back to the executor, which re-attaches to those still running and reports how the others
// ended (or that they were lost: retried, at most kMaxLostAttempts times without counting against
// the step's retries); succeeded steps never run again.
//
// Storage (column families of the scheduler's database):
//   sched_runs    run id -> PipelineRun without steps
//   sched_steps   run id + step index (4 bytes) -> StepRun
//   sched_cache   step fingerprint -> StepRun of the attempt that produced the outputs
//   sched_queues  queue name -> Queue
//   sched_schedules  schedule name -> Schedule (cron, spec, next and last fire)
//
// Steps get inputs and put outputs through ArtifactGateway and are recorded through MetadataGateway
// (gateways.h: interfaces; their gRPC clients live in the adapter library); they run through an
// Executor (local processes here, Kubernetes Jobs later): nothing in this file assumes either.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/statusor.h"
#include "mlops/scheduler/v1/scheduler.pb.h"
#include "services/common/db.h"
#include "services/common/work_queue.h"
#include "services/scheduler/admission.h"
#include "services/scheduler/executor.h"
#include "services/scheduler/gateways.h"
#include "services/scheduler/pipeline_spec.h"
#include "services/scheduler/secrets.h"

namespace mlops::scheduler {

inline constexpr char kRunsCf[] = "sched_runs";
inline constexpr char kStepsCf[] = "sched_steps";
inline constexpr char kCacheCf[] = "sched_cache";
inline constexpr char kQueuesCf[] = "sched_queues";
inline constexpr char kSchedulesCf[] = "sched_schedules";
// Reports of attempts that ran where the scheduler's disk is not seen (ReportAttempt), by id; the
// latest checkpoint of each step ("checkpoint:" keys); the run each submission's request_id made
// (kRequestKeyPrefix + the request id in its project).
inline constexpr char kReportsCf[] = "sched_reports";
inline constexpr char kRequestKeyPrefix[] = "request:";
inline constexpr size_t kMaxRequestIdBytes = 256;
// Every column family Open needs.
inline const std::vector<std::string>& SchedulerColumnFamilies() {
  static const std::vector<std::string> names = {kRunsCf,   kStepsCf,     kCacheCf,
                                                 kQueuesCf, kSchedulesCf, kReportsCf};
  return names;
}

struct SchedulerOptions {
  std::string work_root;  // attempts run in <work_root>/<run>/<step>/<attempt>
  Resources capacity;     // of this executor
  // Added to every step's environment: where each service is (MLOPS_SERVER,
  // MLOPS_METADATA_SERVER, MLOPS_ARTIFACT_SERVER, MLOPS_SCHEDULER_SERVER, MLOPS_MONITORING_SERVER).
  std::map<std::string, std::string> step_env;
  // Where the values of the steps' secretEnv come from (secret_stores.h); null: a step with
  // secretEnv fails, naming the flag that would give one.
  std::shared_ptr<SecretStore> secrets;
  // Threads that prepare attempts (inputs, tracking run, process start) and collect them (logs,
  // outputs, metrics): the engine thread only decides and persists.
  int workers = 4;
  // Where built-in `validate:` steps are carried out (the monitoring service); null: they fail,
  // saying so.
  std::shared_ptr<ValidationGateway> validation;
};

// Where the pipeline run id that `key` starts with ends: `key` is "RUN/STEP" or
// "RUN/STEP/ATTEMPT" (an attempt id, a cached_from), and a run id is a bare id or, outside project
// default, `projects/P/<id>`. npos when no '/' follows the run id.
size_t RunIdEnd(std::string_view key);

// The stable key of a step of a pipeline run (32 hex characters), passed to every attempt as
// MLOPS_STEP_KEY.
std::string StepKeyOf(std::string_view run_id, std::string_view step);

class Scheduler {
 public:
  // Opens (and recovers) the scheduler over `db`, which must hold the scheduler column families.
  // `metadata` may be null: steps are then not recorded as tracking runs and lineage executions.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Open(Db* db, Executor* executor,
                                                         ArtifactGateway* artifacts,
                                                         SchedulerOptions options,
                                                         MetadataGateway* metadata = nullptr);
  ~Scheduler();  // Stop()
  // Stops the engine and the workers (what they are doing finishes; queued work is dropped and
  // recovered at the next start) and records what was deferred. Running attempts keep their
  // recorded state. Idempotent; the scheduler still answers reads afterwards.
  void Stop();

  // Every call that changes state is UNAVAILABLE once a write of the engine failed (the scheduler
  // has stopped starting anything: a restart resumes from what is on disk), and returns the
  // storage's error when its own write fails (nothing is then changed). Reads keep answering, from
  // memory, which may be ahead of the disk after such a failure.

  // Runs and schedules belong to projects (their ids and names carry the project; docs/api.md,
  // "Projects"): a run acts in its project (its steps' inputs, outputs, tracking runs, lineage and
  // step cache), a schedule submits into its project. Queues are shared by every project.
  //
  // A submission with a request_id made before (in the same project) returns that run.
  // INVALID_ARGUMENT (spec, params, project, request_id over kMaxRequestIdBytes), NOT_FOUND
  // (queue), RESOURCE_EXHAUSTED (a step that can never fit the capacity or its queue's quota).
  absl::StatusOr<v1::PipelineRun> Submit(const v1::SubmitPipelineRequest& request);
  // NOT_FOUND; DATA_LOSS for a stored run that does not parse.
  absl::StatusOr<v1::PipelineRun> Get(const std::string& id) const;
  // One project's runs, newest first. INVALID_ARGUMENT (project, page size, page token); DATA_LOSS.
  absl::StatusOr<v1::ListPipelineRunsResponse> List(
      const v1::ListPipelineRunsRequest& request) const;
  // NOT_FOUND; FAILED_PRECONDITION when the run has finished.
  absl::StatusOr<v1::PipelineRun> Cancel(const std::string& id);
  // NOT_FOUND; FAILED_PRECONDITION while the run is still going; then as Submit.
  absl::StatusOr<v1::PipelineRun> Retry(const std::string& id);
  // INVALID_ARGUMENT (name, negative quota).
  absl::StatusOr<v1::Queue> PutQueue(const v1::Queue& queue);
  // INVALID_ARGUMENT (name, cron, spec, params), NOT_FOUND (queue), ALREADY_EXISTS (name).
  absl::StatusOr<v1::Schedule> CreateSchedule(const v1::Schedule& schedule);
  // The schedules of `project` ("" = default, "*" = every project). INVALID_ARGUMENT (project).
  absl::StatusOr<std::vector<v1::Schedule>> ListSchedules(const std::string& project) const;
  // NOT_FOUND.
  absl::Status DeleteSchedule(const std::string& name);
  std::vector<v1::Queue> ListQueues() const;
  // What a remote attempt (Executor::remote) produced, from `mlops step run` in its pod; stored
  // durably before the answer, the first report kept (a repeated one changes nothing and gets the
  // stored one back). NOT_FOUND for an attempt that is not running (unknown, finished or a later
  // attempt runs); INVALID_ARGUMENT for a malformed attempt id, an output the step does not
  // declare or a digest that is not 64 lowercase hex digits; the storage's error.
  absl::StatusOr<v1::ReportAttemptResponse> ReportAttempt(const v1::ReportAttemptRequest& request);
  // The step's declared checkpoint, uploaded by the pod of a running attempt: kept (durably) as
  // the one its next attempt starts from. NOT_FOUND / INVALID_ARGUMENT as ReportAttempt;
  // FAILED_PRECONDITION for a step that declares no checkpoint.
  absl::Status ReportCheckpoint(const v1::ReportCheckpointRequest& request);
  // Where an attempt runs (and writes stdout.log, stderr.log, outputs/).
  std::string AttemptDir(const std::string& run, const std::string& step, int attempt) const;
  // Waits until run `id` has changed more than `seen` times (or `timeout_ms`); returns the change
  // count. For WatchPipelineRun.
  int64_t WaitForChange(const std::string& id, int64_t seen, int64_t timeout_ms) const;
  // What the logs of a step of a run must not show, for reading them: the values of its secretEnv
  // as its attempts had them and as they are now, each with what stands in its place. Empty for a
  // step without secretEnv (or a run or step that does not exist).
  std::vector<Redaction> LogRedactions(const std::string& run_id, const std::string& step);

 private:
  struct Run;
  struct Event;
  Scheduler(Db* db, Executor* executor, ArtifactGateway* artifacts, SchedulerOptions options,
            MetadataGateway* metadata);
  struct AttemptPlan;
  // The running attempt an attempt id names (mu_ not held): its run and its step's spec.
  struct RunningAttemptInfo {
    std::string run_id;
    StepSpec spec;
  };
  absl::StatusOr<RunningAttemptInfo> RunningAttempt(const std::string& id);
  // A run as stored (header and steps); NOT_FOUND, DATA_LOSS. No lock needed.
  absl::StatusOr<v1::PipelineRun> ReadRun(const std::string& id) const;
  // The latest checkpoint kept for a step of a run ("" for none), and keeping one.
  absl::StatusOr<std::string> LatestCheckpoint(const std::string& run_id,
                                               const std::string& step) const;
  absl::Status KeepCheckpoint(const std::string& run_id, const std::string& step,
                              const std::string& digest);
  StepRecord Record(Run& run, size_t step) const;
  absl::Status Recover();
  void Loop();
  void Post(Event event);
  // Engine-thread work.
  // Evaluates what may have become ready (everything, or the dependents of `changed`) and
  // updates the run's own state.
  void Advance(Run& run, const std::vector<size_t>& changed, bool everything);
  void Evaluate(Run& run, size_t step);
  // Hands the step's dataset refs to a worker to resolve; its kResolved event pins the versions
  // (or fails the step) and evaluates the step again (Resolved: true when it then finished).
  void Resolve(Run& run, size_t step);
  bool Resolved(Run& run, const Event& event);
  // Records the attempt (RUNNING) and hands it to a worker to prepare and start.
  void Launch(Run& run, size_t step);
  std::shared_ptr<AttemptPlan> Plan(Run& run, size_t step) const;
  // The step whose output an input takes: the named one, or the best instance of a swept step
  // (-1 when none reported the objective's metric).
  int Producer(Run& run, const InputRef& ref) const;
  // Once every instance of swept step `swept` has finished: records how they compared in the
  // run's header (true), unless it is there already.
  bool Compare(Run& run, const std::string& swept);
  // The worker started the attempt (or it finished already, when the event is stale).
  void Started(Run& run, const Event& event);
  void Finished(Run& run, const Event& event);
  void Fail(Run& run, size_t step, const std::string& message, v1::RunState state);
  // Writes a step's state (PersistHeader: a run's header). False when the write failed: the
  // scheduler then stops (StorageFailed) rather than act on state it could not record.
  bool Persist(Run& run, size_t step);
  // Worker-thread work: nothing here touches the runs; results come back as events.
  void Prepare(std::shared_ptr<AttemptPlan> plan);
  // A built-in validate step: the monitoring service checks its input; no process runs.
  void RunValidation(std::shared_ptr<AttemptPlan> plan);
  void Collect(const AttemptPlan& plan, AttemptResult result);
  // The executor's `done` for an attempt: hands the result to a worker to collect (dropped once
  // the scheduler is gone: the attempt is recovered at the next start).
  std::function<void(const AttemptResult&)> WhenDone(std::shared_ptr<AttemptPlan> plan);
  // Submission with mu_ held (the engine submits scheduled runs).
  absl::StatusOr<v1::PipelineRun> SubmitLocked(const v1::SubmitPipelineRequest& request,
                                               PipelineSpec expanded);
  void FireSchedules(int64_t now);
  bool PersistHeader(Run& run);
  // Writes `batch`; on failure records the error (see storage_error_) and returns false.
  bool WriteOrStop(rocksdb::WriteBatch* batch, const std::string& what);
  // UNAVAILABLE naming the failed write once the storage failed, else OK. mu_ held.
  absl::Status CheckStorage() const;
  void Touch(Run& run);

  Db* db_;
  Executor* executor_;
  ArtifactGateway* artifacts_;
  MetadataGateway* metadata_;
  SchedulerOptions options_;
  rocksdb::ColumnFamilyHandle* runs_cf_;
  rocksdb::ColumnFamilyHandle* steps_cf_;
  rocksdb::ColumnFamilyHandle* cache_cf_;
  rocksdb::ColumnFamilyHandle* queues_cf_;
  rocksdb::ColumnFamilyHandle* schedules_cf_;
  rocksdb::ColumnFamilyHandle* reports_cf_;
  std::mutex reports_mu_;  // one report stored per attempt: read and written under it

  mutable std::mutex mu_;  // guards everything below
  // The first failed write of the engine. From then on nothing new starts and every call that
  // would change state is UNAVAILABLE: what is on disk is what a restart resumes from.
  absl::Status storage_error_;
  mutable std::condition_variable changed_;
  std::condition_variable wake_;
  std::deque<Event> events_;
  std::map<std::string, std::unique_ptr<Run>> runs_;  // runs not finished, and finished ones read
  Admission admission_;
  std::multimap<int64_t, std::pair<std::string, size_t>> timers_;  // retry time -> step
  std::map<std::string, v1::Schedule> schedules_;
  std::map<std::string, std::string> queue_pod_templates_;  // queue -> Queue.pod_template_json
  std::map<std::string, std::string> queue_kueue_;          // queue -> Queue.kueue_local_queue
  std::map<std::string, std::vector<std::string>> queue_projects_;  // queue -> Queue.projects
  // OK when `queue` exists and runs of `project` may use it: NOT_FOUND, PERMISSION_DENIED. mu_
  // held.
  absl::Status CheckQueue(const std::string& queue, std::string_view project) const;
  bool stop_ = false;
  std::thread engine_;
  // Attempts found running by Recover, handed back to the executor once the workers run.
  std::vector<std::pair<std::shared_ptr<AttemptPlan>, RecoverSpec>> recovered_;
  std::unique_ptr<WorkQueue> workers_;
  // Ending tracking runs and recording lineage happen on this thread, off the engine's path: the
  // step's own state is already durable; the records follow (idempotent by external id).
  void Defer(std::function<void()> job);
  // The values of `spec`'s secretEnv now, as redactions (those that cannot be read are left out).
  std::vector<Redaction> CurrentRedactions(const StepSpec& spec) const;
  // The redactions of attempts started by this process and not yet collected, by attempt id.
  std::mutex redactions_mu_;
  std::map<std::string, std::vector<Redaction>> redactions_;
  std::unique_ptr<WorkQueue> recorder_;
  // Executor callbacks reach the scheduler through this, so that one arriving after the scheduler
  // is gone (its attempt outlived it) is dropped: the attempt is recovered at the next start.
  struct Mailbox {
    std::mutex mu;
    Scheduler* target = nullptr;
  };
  std::shared_ptr<Mailbox> mailbox_ = std::make_shared<Mailbox>();
};

}  // namespace mlops::scheduler
