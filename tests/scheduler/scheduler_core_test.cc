// The scheduler core with no gRPC in the process: the local executor, RocksDB in a temp dir and an
// in-memory artifact gateway. A write that fails stops the scheduler (an error to every caller,
// nothing new started) instead of killing the process, and a restart resumes from what was
// recorded without repeating what already ran.
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "services/common/digest.h"
#include "services/common/strings.h"
#include "services/scheduler/local_executor.h"
#include "services/scheduler/scheduler.h"
#include "tests/testing/testing.h"

namespace mlops::scheduler {
namespace {

using ::mlops::testing::StatusIs;

// The artifact service as a map from digest to bytes (a fake: the real one is tested in
// scheduler_test through its gRPC client). Datasets resolve to a digest of their name.
class MemoryArtifacts final : public ArtifactGateway {
 public:
  absl::StatusOr<std::string> ResolveDataset(const std::string&, const std::string& dataset,
                                             const std::string& ref) override {
    return DigestHex(Sha256Of(dataset + "@" + ref));
  }
  absl::Status MaterializeDataset(const std::string&, const std::string&, const std::string&,
                                  const std::string& dir) override {
    std::filesystem::create_directories(dir);
    return absl::OkStatus();
  }
  absl::Status MaterializeBlob(const std::string&, const std::string& digest,
                               const std::string& path) override {
    std::lock_guard lock(mu_);
    auto it = blobs_.find(digest);
    if (it == blobs_.end()) return absl::NotFoundError("blob " + digest);
    std::ofstream(path, std::ios::binary) << it->second;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> UploadFile(const std::string&, const std::string& path) override {
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string digest = DigestHex(Sha256Of(bytes));
    std::lock_guard lock(mu_);
    blobs_[digest] = std::move(bytes);
    return digest;
  }

  std::string Bytes(const std::string& digest) {
    std::lock_guard lock(mu_);
    auto it = blobs_.find(digest);
    return it == blobs_.end() ? "" : it->second;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> blobs_;
};

// The monitoring service's Validate as a script (a fake: the real one is driven by a pipeline in
// monitoring_service_test): a blob is UNAVAILABLE at its first try, then has anomalies; a dataset
// version is valid. Every request is kept.
class ScriptedValidation final : public ValidationGateway {
 public:
  absl::StatusOr<Result> Validate(const Request& request) override {
    std::lock_guard lock(mu_);
    requests_.push_back(request);
    Result result;
    if (request.blob.empty()) {
      result.valid = true;
      result.text = "valid: no anomaly\n";
      return result;
    }
    if (++blob_calls_ == 1) return absl::UnavailableError("monitoring is restarting");
    result.text = "out_of_range: age: 2 values outside [0, 120]\nINVALID: 1 anomalies\n";
    result.summary = "1 anomalies: age: 2 values outside [0, 120]";
    return result;
  }
  std::vector<Request> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  std::mutex mu_;
  std::vector<Request> requests_;
  int blob_calls_ = 0;
};

// A stand-in for an executor whose attempts get lost (a node gone, a Job that Kueue preempted),
// which the local executor cannot produce: it runs each attempt on the local executor and reports
// it LOST, and says it has Kueue, so that the core's handling of Kueue queues and of lost attempts
// is tested without a cluster (the real preemption is in kubernetes_pipeline_test).
class LosingExecutor final : public Executor {
 public:
  explicit LosingExecutor(Executor* inner) : inner_(inner) {}
  std::string name() const override { return "losing"; }
  absl::StatusOr<std::string> Launch(const LaunchSpec& spec,
                                     std::function<void(const AttemptResult&)> done) override {
    return inner_->Launch(spec, [done = std::move(done)](const AttemptResult& result) {
      AttemptResult lost = result;
      lost.outcome = AttemptResult::Outcome::kLost;
      lost.message = "preempted (stand-in)";
      done(lost);
    });
  }
  absl::Status Cancel(const std::string& attempt_id) override { return inner_->Cancel(attempt_id); }
  void Recover(const RecoverSpec& spec, std::function<void(const AttemptResult&)> done) override {
    inner_->Recover(spec, std::move(done));
  }
  bool kueue() const override { return true; }
  int running() const override { return inner_->running(); }

 private:
  Executor* inner_;
};

int Lines(const std::string& path) {
  std::ifstream in(path);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

class SchedulerCoreTest : public ::testing::Test {
 protected:
  SchedulerCoreTest() {
    auto db = Db::Open(dir_.path() + "/db", SchedulerColumnFamilies(), Db::Options{});
    EXPECT_OK(db.status());
    db_ = std::move(*db);
  }
  ~SchedulerCoreTest() override { Close(); }

  // With `losing`, through a LosingExecutor over the local one.
  absl::Status Start(bool losing = false) {
    LocalExecutor::Options options;
    options.waiter = MLOPS_STEP_WAITER_BIN;
    executor_ = std::make_unique<LocalExecutor>(options);
    if (losing) losing_ = std::make_unique<LosingExecutor>(executor_.get());
    SchedulerOptions scheduler_options;
    scheduler_options.work_root = dir_.path() + "/work";
    scheduler_options.validation = validation_;
    scheduler_options.capacity = {4000, int64_t{8} << 30, 0};
    auto scheduler =
        Scheduler::Open(db_.get(), losing ? static_cast<Executor*>(losing_.get()) : executor_.get(),
                        &artifacts_, std::move(scheduler_options));
    if (!scheduler.ok()) return scheduler.status();
    scheduler_ = std::move(*scheduler);
    return absl::OkStatus();
  }
  void Close() {
    scheduler_.reset();
    losing_.reset();
    executor_.reset();
  }

  absl::StatusOr<v1::PipelineRun> Submit(const std::string& yaml) {
    v1::SubmitPipelineRequest request;
    request.set_spec_yaml(yaml);
    return scheduler_->Submit(request);
  }

  // Polls the run until `done` holds (at most 20 s).
  template <typename F>
  v1::PipelineRun WaitFor(const std::string& id, F done) {
    v1::PipelineRun run;
    for (int i = 0; i < 2000; ++i) {
      auto got = scheduler_->Get(id);
      EXPECT_OK(got.status());
      if (!got.ok()) break;
      run = *got;
      if (done(run)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return run;
  }

  testing::TempDir dir_;
  MemoryArtifacts artifacts_;
  std::shared_ptr<ScriptedValidation> validation_ = std::make_shared<ScriptedValidation>();
  std::unique_ptr<Db> db_;
  std::unique_ptr<LocalExecutor> executor_;
  std::unique_ptr<LosingExecutor> losing_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerCoreTest, AFailedWriteStopsTheSchedulerAndARestartRepeatsNothing) {
  ASSERT_OK(Start());
  const std::string first = dir_.path() + "/first", second = dir_.path() + "/second";
  const std::string yaml =
      "name: p\nsteps:\n"
      "  - name: first\n    command: [sh, -c, 'sleep 0.3; echo ran >> " +
      first +
      "']\n  - name: second\n    needs: [first]\n"
      "    command: [sh, -c, 'echo ran >> " +
      second + "']\n";
  auto run = Submit(yaml);
  ASSERT_OK(run.status());
  // Started: the attempt has its executor handle (recorded, or about to be).
  WaitFor(run->id(), [](const v1::PipelineRun& r) {
    return r.steps(0).attempts_size() > 0 && !r.steps(0).attempts(0).handle().empty();
  });
  // The disk fails while the first step runs: its end cannot be recorded.
  db_->FailWritesForTesting(absl::UnavailableError("IO error: the disk went away"));
  for (int i = 0; i < 500 && Lines(first) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(Lines(first), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  // Nothing new starts, every change is refused with the reason, reads still answer.
  EXPECT_EQ(Lines(second), 0);
  EXPECT_THAT(Submit(yaml).status(), StatusIs(absl::StatusCode::kUnavailable,
                                              "the scheduler stopped: it could not record"));
  EXPECT_THAT(scheduler_->Cancel(run->id()).status(),
              StatusIs(absl::StatusCode::kUnavailable, "the disk went away"));
  ASSERT_OK(scheduler_->Get(run->id()).status());
  // A restart on a healthy disk resumes from what was recorded: the first step's attempt is
  // found ended (its waiter kept the exit code), so it does not run again; the second runs once.
  Close();
  db_->FailWritesForTesting(absl::OkStatus());
  ASSERT_OK(Start());
  v1::PipelineRun resumed =
      WaitFor(run->id(), [](const v1::PipelineRun& r) { return r.state() == v1::SUCCEEDED; });
  EXPECT_EQ(resumed.state(), v1::SUCCEEDED);
  EXPECT_EQ(Lines(first), 1);
  EXPECT_EQ(Lines(second), 1);
  ASSERT_OK(Submit(yaml).status());
}

TEST_F(SchedulerCoreTest, ASubmissionWhoseWriteFailsIsRefusedAndLeavesNoRun) {
  ASSERT_OK(Start());
  db_->FailWritesForTesting(absl::UnavailableError("IO error: the disk went away"));
  EXPECT_THAT(Submit("name: p\nsteps:\n  - name: a\n    command: [true]\n").status(),
              StatusIs(absl::StatusCode::kUnavailable, "the disk went away"));
  db_->FailWritesForTesting(absl::OkStatus());
  v1::ListPipelineRunsRequest list;
  auto runs = scheduler_->List(list);
  ASSERT_OK(runs.status());
  EXPECT_EQ(runs->runs_size(), 0);
  // The scheduler itself did not stop: the failure was the caller's.
  ASSERT_OK(Submit("name: p\nsteps:\n  - name: a\n    command: [true]\n").status());
}

// A submission retried with its request_id returns the first run, also after a restart; the same
// request id in another project, or none, makes a new run; runs are listed per project.
TEST_F(SchedulerCoreTest, ARetriedSubmissionReturnsTheFirstRunOfItsProject) {
  ASSERT_OK(Start());
  auto submit = [&](const std::string& project, const std::string& request_id) {
    v1::SubmitPipelineRequest request;
    request.set_spec_yaml("name: p\nsteps:\n  - name: a\n    command: [true]\n");
    request.set_project(project);
    request.set_request_id(request_id);
    return scheduler_->Submit(request);
  };
  auto first = submit("", "alert-1");
  ASSERT_OK(first.status());
  EXPECT_EQ(first->id().size(), 32u);
  auto again = submit("default", "alert-1");
  ASSERT_OK(again.status());
  EXPECT_EQ(again->id(), first->id());
  auto vision = submit("vision", "alert-1");
  ASSERT_OK(vision.status());
  EXPECT_THAT(vision->id(), ::testing::StartsWith("projects/vision/"));
  auto unnamed = submit("", "");
  ASSERT_OK(unnamed.status());
  EXPECT_NE(unnamed->id(), first->id());
  EXPECT_THAT(submit("", std::string(257, 'x')).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "request_id"));
  EXPECT_THAT(submit("bad/project", "x").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "project"));
  WaitFor(first->id(), [](const v1::PipelineRun& r) { return r.state() == v1::SUCCEEDED; });
  Close();
  ASSERT_OK(Start());
  auto after = submit("", "alert-1");
  ASSERT_OK(after.status());
  EXPECT_EQ(after->id(), first->id());
  auto vision_after = submit("vision", "alert-1");
  ASSERT_OK(vision_after.status());
  EXPECT_EQ(vision_after->id(), vision->id());

  v1::ListPipelineRunsRequest list;
  auto ours = scheduler_->List(list);
  ASSERT_OK(ours.status());
  ASSERT_EQ(ours->runs_size(), 2);
  EXPECT_EQ(ours->runs(0).id(), unnamed->id());  // newest first
  EXPECT_EQ(ours->runs(1).id(), first->id());
  list.set_project("vision");
  auto theirs = scheduler_->List(list);
  ASSERT_OK(theirs.status());
  ASSERT_EQ(theirs->runs_size(), 1);
  EXPECT_EQ(theirs->runs(0).id(), vision->id());
  // A page token of one project's listing does not list another's.
  list.set_project("");
  list.set_page_size(1);
  auto page = scheduler_->List(list);
  ASSERT_OK(page.status());
  ASSERT_FALSE(page->next_page_token().empty());
  list.set_project("vision");
  list.set_page_token(page->next_page_token());
  EXPECT_THAT(scheduler_->List(list).status(), StatusIs(absl::StatusCode::kInvalidArgument, ""));
  list.set_project("*");
  list.clear_page_token();
  EXPECT_THAT(scheduler_->List(list).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "one project at a time"));
  // Ids: another project's run is not found by its bare id; the long spelling of default works.
  EXPECT_THAT(scheduler_->Get(vision->id().substr(16)).status(),
              StatusIs(absl::StatusCode::kNotFound, ""));
  EXPECT_THAT(scheduler_->Get("projects/other/" + vision->id().substr(16)).status(),
              StatusIs(absl::StatusCode::kNotFound, ""));
  auto long_spelling = scheduler_->Get("projects/default/" + first->id());
  ASSERT_OK(long_spelling.status());
  EXPECT_EQ(long_spelling->id(), first->id());
}

TEST_F(SchedulerCoreTest, ReportsOfRemoteAttemptsAreCheckedAndTheFirstIsKept) {
  ASSERT_OK(Start());
  const std::string go = dir_.path() + "/go";
  auto run = Submit(
      "name: r\nsteps:\n  - name: s\n    outputs: {m: m.bin}\n"
      "    command: [/bin/sh, -c, 'while [ ! -e " +
      go + " ]; do sleep 0.02; done; echo m > {{outputs.m}}']\n");
  ASSERT_OK(run.status());
  WaitFor(run->id(), [](const v1::PipelineRun& r) { return r.steps(0).state() == v1::RUNNING; });
  const std::string digest = DigestHex(Sha256Of("m"));
  auto report = [&](const std::string& attempt, const std::string& output,
                    const std::string& value) {
    v1::ReportAttemptRequest request;
    request.set_attempt_id(attempt);
    if (!output.empty()) (*request.mutable_outputs())[output] = value;
    request.set_metrics_json("{\"a\": 1}");
    return scheduler_->ReportAttempt(request);
  };
  const std::string attempt = run->id() + "/s/1";
  EXPECT_THAT(report("no-slashes", "", "").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "RUN/STEP/NUMBER"));
  EXPECT_THAT(report("nope/s/1", "", "").status(),
              StatusIs(absl::StatusCode::kNotFound, "is not running"));
  EXPECT_THAT(report(run->id() + "/s/2", "", "").status(),
              StatusIs(absl::StatusCode::kNotFound, "is not running"));
  EXPECT_THAT(report(run->id() + "/other/1", "", "").status(),
              StatusIs(absl::StatusCode::kNotFound, "is not running"));
  EXPECT_THAT(report(attempt, "x", digest).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "declares no output 'x'"));
  EXPECT_THAT(report(attempt, "m", "ABC").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "is not a SHA-256"));
  EXPECT_THAT(report(attempt, "m", std::string(64, 'A')).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "is not a SHA-256"));
  // Refused reports stored nothing: the first valid one is kept, a later one changes nothing.
  auto first = report(attempt, "m", digest);
  ASSERT_OK(first.status());
  EXPECT_EQ(first->stored().outputs().at("m"), digest);
  auto again = report(attempt, "m", std::string(64, 'b'));
  ASSERT_OK(again.status());
  EXPECT_EQ(again->stored().outputs().at("m"), digest) << "the first report is kept";
  std::ofstream(go) << "";
  v1::PipelineRun done = WaitFor(run->id(), [](const v1::PipelineRun& r) {
    return r.state() == v1::SUCCEEDED || r.state() == v1::FAILED;
  });
  EXPECT_EQ(done.state(), v1::SUCCEEDED);
  // A local attempt's outputs come from its work dir, whatever was reported.
  EXPECT_EQ(done.steps(0).output_digests().at("m"), DigestHex(Sha256Of("m\n")));
  EXPECT_THAT(report(attempt, "m", digest).status(),
              StatusIs(absl::StatusCode::kNotFound, "is not running"));
}

TEST_F(SchedulerCoreTest, AQueuesPodTemplateIsKeptAndPartOfItsStepsCacheKeys) {
  ASSERT_OK(Start());
  v1::Queue bad;
  bad.set_name("gpu");
  bad.set_pod_template_json("[1]");
  EXPECT_THAT(scheduler_->PutQueue(bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "not a JSON object"));
  v1::Queue gpu;
  gpu.set_name("gpu");
  gpu.set_pod_template_json(R"({"spec": {"nodeSelector": {"pool": "gpu"}}})");
  ASSERT_OK(scheduler_->PutQueue(gpu).status());
  const std::string yaml = "name: q\nsteps:\n  - name: s\n    command: [/bin/true]\n";
  auto fingerprint = [&](const std::string& queue) {
    v1::SubmitPipelineRequest request;
    request.set_spec_yaml(yaml);
    request.set_queue(queue);
    auto run = scheduler_->Submit(request);
    EXPECT_OK(run.status());
    v1::PipelineRun done = WaitFor(run->id(), [](const v1::PipelineRun& r) {
      return r.state() == v1::SUCCEEDED || r.state() == v1::FAILED;
    });
    EXPECT_EQ(done.state(), v1::SUCCEEDED);
    return done.steps(0).fingerprint();
  };
  const std::string in_default = fingerprint("default");
  const std::string in_gpu = fingerprint("gpu");
  EXPECT_NE(in_default, in_gpu) << "what reaches the pod is part of the key";
  EXPECT_EQ(fingerprint("gpu"), in_gpu);
  Close();
  ASSERT_OK(Start());  // kept across a restart
  bool found = false;
  for (const v1::Queue& queue : scheduler_->ListQueues()) {
    if (queue.name() == "gpu") {
      found = true;
      EXPECT_EQ(queue.pod_template_json(), gpu.pod_template_json());
    }
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(fingerprint("gpu"), in_gpu);
}

TEST_F(SchedulerCoreTest, AKueueQueueNeedsAnExecutorWithKueueAndALocalQueueName) {
  ASSERT_OK(Start());
  v1::Queue queue;
  queue.set_name("team");
  queue.set_kueue_local_queue("Team_A");
  EXPECT_THAT(scheduler_->PutQueue(queue).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "is not a LocalQueue name"));
  queue.set_kueue_local_queue(std::string(64, 'a'));
  EXPECT_THAT(scheduler_->PutQueue(queue).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "is not a LocalQueue name"));
  queue.set_kueue_local_queue("team-a");
  EXPECT_THAT(scheduler_->PutQueue(queue).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "the local executor has no Kueue"));
  for (const v1::Queue& listed : scheduler_->ListQueues()) {
    EXPECT_NE(listed.name(), "team") << "a refused queue is not stored";
  }
}

TEST_F(SchedulerCoreTest, AKueueQueueDefersAdmissionAndLostAttemptsAreRetriedThreeTimes) {
  ASSERT_OK(Start(/*losing=*/true));
  v1::Queue queue;
  queue.set_name("team");
  queue.set_max_concurrency(1);
  queue.set_cpu_millis(500);
  queue.set_kueue_local_queue("team-a");
  ASSERT_OK(scheduler_->PutQueue(queue).status());
  // Two steps of 1 cpu in a queue of 500m and one at a time: Kueue decides, so both start.
  const std::string marks = dir_.path() + "/marks";
  v1::SubmitPipelineRequest request;
  request.set_queue("team");
  request.set_spec_yaml(StrCat(R"(name: k
steps:
  - name: a
    resources: {cpu: 1}
    command: [sh, -c, 'echo a >> )",
                               marks, R"(; sleep 0.3']
  - name: b
    resources: {cpu: 1}
    command: [sh, -c, 'echo b >> )",
                               marks, R"(; sleep 0.3']
)"));
  auto run = scheduler_->Submit(request);
  ASSERT_OK(run.status());
  bool both = false;
  WaitFor(run->id(), [&](const v1::PipelineRun& r) {
    both = both || (r.steps(0).state() == v1::RUNNING && r.steps(1).state() == v1::RUNNING);
    return r.state() == v1::SUCCEEDED || r.state() == v1::FAILED;
  });
  EXPECT_TRUE(both) << "the queue's own limits held a step back";
  // Every attempt is lost: retried without counting against `retries`, but 3 times at most.
  v1::PipelineRun done = WaitFor(run->id(), [](const v1::PipelineRun& r) {
    return r.state() == v1::SUCCEEDED || r.state() == v1::FAILED;
  });
  ASSERT_EQ(done.state(), v1::FAILED);
  for (const v1::StepRun& step : done.steps()) {
    ASSERT_EQ(step.attempts_size(), 4) << step.DebugString();
    for (const v1::Attempt& attempt : step.attempts()) EXPECT_EQ(attempt.outcome(), "LOST");
    EXPECT_THAT(step.message(), ::testing::HasSubstr("preempted (stand-in)"));
  }
  EXPECT_EQ(Lines(marks), 8);
  Close();
  ASSERT_OK(Start(/*losing=*/true));
  bool kept = false;
  for (const v1::Queue& listed : scheduler_->ListQueues()) {
    kept = kept || (listed.name() == "team" && listed.kueue_local_queue() == "team-a");
  }
  EXPECT_TRUE(kept) << "the mapping survives a restart";
  Close();
  // An executor without Kueue keeps the stored mapping but admits the queue's steps itself.
  ASSERT_OK(Start());
  for (const v1::Queue& listed : scheduler_->ListQueues()) {
    if (listed.name() == "team") {
      EXPECT_EQ(listed.kueue_local_queue(), "");
    }
  }
}

TEST_F(SchedulerCoreTest, ARetryStartsFromTheCheckpointTheFailedAttemptLeft) {
  ASSERT_OK(Start());
  // The first attempt saves progress and fails; the second finds it and finishes from it.
  auto run = Submit(R"(name: c
steps:
  - name: s
    checkpoint: ckpt/state
    retries: {limit: 1}
    outputs: {o: o.txt}
    command: [/bin/sh, -c, 'if [ -f ckpt/state ]; then cat ckpt/state > {{outputs.o}}; else echo progress-$MLOPS_STEP > ckpt/state; exit 1; fi']
)");
  ASSERT_OK(run.status());
  v1::PipelineRun done = WaitFor(run->id(), [](const v1::PipelineRun& r) {
    return r.state() == v1::SUCCEEDED || r.state() == v1::FAILED;
  });
  ASSERT_EQ(done.state(), v1::SUCCEEDED) << done.DebugString();
  EXPECT_EQ(done.steps(0).attempts_size(), 2);
  EXPECT_EQ(done.steps(0).output_digests().at("o"), DigestHex(Sha256Of("progress-s\n")));
  // A step without a checkpoint cannot report one; a bad digest is refused first.
  v1::ReportCheckpointRequest request;
  request.set_attempt_id(run->id() + "/s/2");
  request.set_digest("x");
  EXPECT_THAT(scheduler_->ReportCheckpoint(request),
              StatusIs(absl::StatusCode::kInvalidArgument, "is not a SHA-256"));
  request.set_digest(DigestHex(Sha256Of("x")));
  EXPECT_THAT(scheduler_->ReportCheckpoint(request),
              StatusIs(absl::StatusCode::kNotFound, "is not running"));
}

TEST_F(SchedulerCoreTest, ValidateStepsRunNoProcessAndTheirAnomaliesStopWhatFollows) {
  ASSERT_OK(Start());
  auto run = Submit(R"(name: v
steps:
  - name: make
    command: [sh, -c, 'echo age > {{outputs.table}}']
    outputs: {table: t.csv}
  - name: check
    validate: {dataset: make.outputs.table, schema: customers@2}
  - name: train
    needs: [check]
    command: [sh, -c, 'echo trained']
  - name: raw
    validate: {dataset: "dataset:customers@v1"}
)");
  ASSERT_OK(run.status());
  v1::PipelineRun done = WaitFor(run->id(), [](const v1::PipelineRun& r) {
    return r.state() == v1::SUCCEEDED || r.state() == v1::FAILED;
  });
  ASSERT_EQ(done.state(), v1::FAILED);
  std::map<std::string, v1::StepRun> steps;
  for (const auto& step : done.steps()) steps[step.name()] = step;
  // The unreachable monitoring service lost the first attempt (not counted), the anomalies failed
  // the second; what needed the step never ran.
  const v1::StepRun& check = steps["check"];
  EXPECT_EQ(check.state(), v1::FAILED);
  ASSERT_EQ(check.attempts_size(), 2) << check.DebugString();
  EXPECT_EQ(check.attempts(0).outcome(), "LOST");
  EXPECT_THAT(check.attempts(0).message(), ::testing::HasSubstr("monitoring is restarting"));
  EXPECT_EQ(check.attempts(1).outcome(), "FAILED");
  EXPECT_EQ(check.attempts(1).exit_code(), 3);
  EXPECT_THAT(check.message(), ::testing::HasSubstr("age: 2 values outside [0, 120]"));
  EXPECT_THAT(artifacts_.Bytes(check.attempts(1).stdout_digest()),
              ::testing::HasSubstr("INVALID: 1 anomalies"));
  EXPECT_EQ(steps["train"].state(), v1::SKIPPED);
  EXPECT_EQ(steps["raw"].state(), v1::SUCCEEDED);
  // What was asked: the step's output by digest and file name, the named schema's version; the
  // dataset at the version the run pinned, against its own schema, in the run's project.
  bool blob = false, dataset = false;
  for (const auto& request : validation_->requests()) {
    EXPECT_EQ(request.project, "default");
    if (!request.blob.empty()) {
      blob = true;
      EXPECT_EQ(request.blob, steps["make"].output_digests().at("table"));
      EXPECT_EQ(request.file_name, "t.csv");
      EXPECT_EQ(request.schema, "customers");
      EXPECT_EQ(request.schema_version, 2);
    } else {
      dataset = true;
      EXPECT_EQ(request.dataset, "customers");
      EXPECT_EQ(request.version, DigestHex(Sha256Of(std::string("customers@v1"))));
      EXPECT_EQ(request.schema, "");
    }
  }
  EXPECT_TRUE(blob && dataset);
  EXPECT_EQ(validation_->requests().size(), 3u);
}

}  // namespace
}  // namespace mlops::scheduler
