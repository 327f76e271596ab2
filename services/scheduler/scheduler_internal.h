// What the files of Scheduler share (scheduler.cc: opening, recovery, the API; scheduler_engine.cc:
// the engine; attempt_worker.cc: the workers; schedules.cc: cron): a run's in-memory state, the
// engine's events and a worker's plan for one attempt. Not part of the scheduler's interface.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "services/common/encoding.h"
#include "services/common/projects.h"
#include "services/scheduler/scheduler.h"

namespace mlops::scheduler {

// Lost attempts (the scheduler stopped while they ran) retried beyond the step's own limit.
inline constexpr int kMaxLostAttempts = 3;
// The handle recorded for a built-in validate step's attempt (no executor holds it).
inline constexpr char kValidationHandle[] = "builtin:validate";

inline bool Terminal(v1::RunState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CACHED ||
         state == v1::CANCELED || state == v1::SKIPPED;
}

inline bool Done(v1::RunState state) { return state == v1::SUCCEEDED || state == v1::CACHED; }

// The key of step `index` of a run in the steps column family.
inline std::string StepKey(const std::string& run, size_t index) {
  std::string key = run;
  AppendBigEndian64(&key, index);
  return key;
}

// The key of a step's record in the cache column family: the fingerprint within the run's project
// (project default's are bare, as before projects), so that a project reuses only what its own
// runs produced (another's outputs are content it may not see).
inline std::string CacheKey(std::string_view run_id, std::string_view fingerprint) {
  return Qualify(ProjectOf(run_id), fingerprint);
}

struct Scheduler::Run {
  v1::PipelineRun proto;  // header and steps
  PipelineSpec spec;      // expanded, in the same order as proto.steps
  std::map<std::string, size_t> index;
  // Dataset versions pinned when a step was evaluated: step index -> input name -> version.
  std::map<size_t, std::map<std::string, std::string>> pinned;
  // The versions of each step's secrets when it was evaluated: step index -> variable -> version.
  std::map<size_t, std::map<std::string, std::string>> secret_versions;
  // Steps whose dataset refs and secrets a worker is resolving now (the engine never calls out
  // itself).
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
  // outputs holds input name -> dataset version and secret_versions variable -> version, or
  // result.message what failed.
  AttemptResult result;
  std::string stdout_digest;
  std::string stderr_digest;
  std::map<std::string, std::string> outputs;
  std::map<std::string, double> metrics;  // final values from metrics.json
  std::map<std::string, std::string> secret_versions;

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
  std::string project;  // the run's: its steps' inputs and outputs are that project's
  size_t index = 0;
  int number = 0;
  std::string attempt_id;
  std::string work;  // the attempt's directory
  StepSpec spec;
  std::string queue_pod_template_json;  // the run's queue's, when it has one
  std::string kueue_local_queue;        // the run's queue's, when Kueue admits it
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

}  // namespace mlops::scheduler
