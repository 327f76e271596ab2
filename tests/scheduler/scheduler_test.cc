// The scheduler engine end to end on real parts: a real artifact service on loopback, RocksDB in a
// temp dir, the local executor running shell steps. DAG progress, outputs by digest, content-keyed
// caching (hit, miss on one changed byte, opt-out), retries with backoff, failures that skip what
// depends on them, missing outputs, timeouts and cancel.
#include "services/scheduler/scheduler.h"

#include <filesystem>
#include <fstream>
#include <future>

#include "services/artifact/artifact_component.h"
#include "services/artifact/client/artifact_client.h"
#include "services/common/ids.h"
#include "services/metadata/metadata_component.h"
#include "services/scheduler/artifact_gateway.h"
#include "services/scheduler/local_executor.h"
#include "services/scheduler/metadata_gateway.h"
#include "tests/testing/testing.h"

namespace mlops::scheduler {
namespace {

using ::mlops::testing::StatusIs;

// The real gateway, except that resolving the dataset "held" waits until `release` is set: a
// remote call that hangs.
class HoldingGateway final : public ArtifactGateway {
 public:
  explicit HoldingGateway(ArtifactGateway* real) : real_(real) {}
  absl::StatusOr<std::string> ResolveDataset(const std::string& project, const std::string& dataset,
                                             const std::string& ref) override {
    if (dataset == "held") {
      entered.set_value();
      release.get_future().wait();
    }
    return real_->ResolveDataset(project, dataset, ref);
  }
  absl::Status MaterializeDataset(const std::string& project, const std::string& dataset,
                                  const std::string& version, const std::string& dir) override {
    return real_->MaterializeDataset(project, dataset, version, dir);
  }
  absl::Status MaterializeBlob(const std::string& project, const std::string& digest,
                               const std::string& path) override {
    return real_->MaterializeBlob(project, digest, path);
  }
  absl::StatusOr<std::string> UploadFile(const std::string& project,
                                         const std::string& path) override {
    return real_->UploadFile(project, path);
  }
  std::promise<void> entered;
  std::promise<void> release;

 private:
  ArtifactGateway* real_;
};

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest()
      : artifact_server_({artifact::OpenArtifactComponent, metadata::OpenMetadataComponent},
                         /*metrics=*/false),
        gateway_(artifact_server_.ChannelsByProject()),
        metadata_(artifact_server_.ChannelsByProject()),
        client_(artifact_server_.NewChannel()) {}

  void SetUp() override {
    auto db = Db::Open(dir_.path() + "/scheduler", SchedulerColumnFamilies(), Db::Options());
    ASSERT_OK(db.status());
    db_ = std::move(*db);
    Start();
  }

  void Start() {
    SchedulerOptions options;
    options.work_root = dir_.path() + "/work";
    options.capacity = {4000, int64_t{8} << 30, 0};
    auto scheduler = Scheduler::Open(db_.get(), &executor_, &gateway_, options, &metadata_);
    ASSERT_OK(scheduler.status());
    scheduler_ = std::move(*scheduler);
  }

  v1::PipelineRun Submit(const std::string& yaml, std::map<std::string, std::string> params = {},
                         bool no_cache = false) {
    v1::SubmitPipelineRequest request;
    request.set_spec_yaml(yaml);
    for (const auto& [k, v] : params) (*request.mutable_params())[k] = v;
    request.set_no_cache(no_cache);
    auto run = scheduler_->Submit(request);
    EXPECT_OK(run.status());
    return *run;
  }

  // Waits (up to 60 s) until the run has finished.
  v1::PipelineRun Wait(const std::string& id) {
    int64_t seen = -2;
    for (int i = 0; i < 600; ++i) {
      auto run = scheduler_->Get(id);
      EXPECT_OK(run.status());
      if (run->state() == v1::SUCCEEDED || run->state() == v1::FAILED ||
          run->state() == v1::CANCELED) {
        return *run;
      }
      seen = scheduler_->WaitForChange(id, seen, 100);
    }
    ADD_FAILURE() << "run " << id << " did not finish";
    return *scheduler_->Get(id);
  }

  const v1::StepRun& Step(const v1::PipelineRun& run, const std::string& name) {
    for (const auto& s : run.steps()) {
      if (s.name() == name) return s;
    }
    static v1::StepRun none;
    ADD_FAILURE() << "no step " << name;
    return none;
  }

  std::string Download(const std::string& digest) {
    auto bytes = client_.DownloadBytes(digest);
    EXPECT_OK(bytes.status());
    return bytes.ok() ? *bytes : "";
  }

  testing::TempDir dir_;
  testing::InProcessServer artifact_server_;
  ClientArtifactGateway gateway_;
  ClientMetadataGateway metadata_;
  artifact::ArtifactClient client_;
  LocalExecutor executor_{LocalExecutor::Options{200, MLOPS_STEP_WAITER_BIN}};
  std::unique_ptr<Db> db_;
  std::unique_ptr<Scheduler> scheduler_;
};

constexpr char kChain[] = R"(name: chain
params: {word: hello}
steps:
  - name: produce
    command: [/bin/sh, -c, "echo {{params.word}} > {{outputs.data}}"]
    outputs: {data: data.txt}
  - name: shout
    command: [/bin/sh, -c, "tr a-z A-Z < {{inputs.text}} > {{outputs.loud}}"]
    inputs: {text: produce.outputs.data}
    outputs: {loud: loud.txt}
  - name: count
    command: [/bin/sh, -c, "wc -c < {{inputs.text}} > {{outputs.n}}"]
    inputs: {text: shout.outputs.loud}
    outputs: {n: n.txt}
)";

TEST_F(SchedulerTest, StepsRunInOrderAndPassOutputsByDigest) {
  v1::PipelineRun run = Wait(Submit(kChain).id());
  ASSERT_EQ(run.state(), v1::SUCCEEDED) << run.DebugString();
  EXPECT_EQ(Download(Step(run, "shout").output_digests().at("loud")), "HELLO\n");
  EXPECT_EQ(Download(Step(run, "count").output_digests().at("n")), "6\n");
  for (const auto& step : run.steps()) {
    EXPECT_EQ(step.state(), v1::SUCCEEDED);
    EXPECT_EQ(step.attempts_size(), 1);
    EXPECT_EQ(step.fingerprint().size(), 64u);
  }
}

TEST_F(SchedulerTest, UnchangedStepsAreCachedAndChangedOnesRerun) {
  v1::PipelineRun first = Wait(Submit(kChain).id());
  ASSERT_EQ(first.state(), v1::SUCCEEDED);
  v1::PipelineRun same = Wait(Submit(kChain).id());
  ASSERT_EQ(same.state(), v1::SUCCEEDED);
  for (const auto& step : same.steps()) {
    EXPECT_EQ(step.state(), v1::CACHED) << step.name();
    EXPECT_EQ(step.attempts_size(), 0);
  }
  EXPECT_EQ(Step(same, "count").output_digests().at("n"),
            Step(first, "count").output_digests().at("n"));
  // A different param: produce's output changes by content, so everything downstream reruns.
  v1::PipelineRun changed = Wait(Submit(kChain, {{"word", "hellp"}}).id());
  ASSERT_EQ(changed.state(), v1::SUCCEEDED);
  EXPECT_EQ(Step(changed, "produce").state(), v1::SUCCEEDED);
  EXPECT_EQ(Step(changed, "shout").state(), v1::SUCCEEDED);
  // `count` reads a different file (of the same length): its input digest differs, so it reruns.
  EXPECT_EQ(Step(changed, "count").state(), v1::SUCCEEDED);
  // Opting out of the cache runs everything again.
  v1::PipelineRun opt_out = Wait(Submit(kChain, {}, /*no_cache=*/true).id());
  for (const auto& step : opt_out.steps()) EXPECT_EQ(step.state(), v1::SUCCEEDED);
}

TEST_F(SchedulerTest, DatasetInputsArePinnedByContent) {
  std::string src = dir_.path() + "/dataset";
  std::filesystem::create_directories(src);
  std::ofstream(src + "/rows.csv") << "a,1\nb,2\n";
  artifact::HashCache cache(dir_.path() + "/cache.tsv");
  ASSERT_OK(client_.Push(src, "rows", {}, "v1", &cache).status());
  const std::string yaml = R"(name: ds
steps:
  - name: lines
    command: [/bin/sh, -c, "cat {{inputs.rows}}/rows.csv | wc -l > {{outputs.n}}"]
    inputs: {rows: "dataset:rows"}
    outputs: {n: n.txt}
)";
  v1::PipelineRun first = Wait(Submit(yaml).id());
  ASSERT_EQ(first.state(), v1::SUCCEEDED) << first.DebugString();
  EXPECT_EQ(Download(Step(first, "lines").output_digests().at("n")), "2\n");
  EXPECT_EQ(Step(Wait(Submit(yaml).id()), "lines").state(), v1::CACHED);
  // One byte of the dataset changes: a new version, so the step runs again.
  std::ofstream(src + "/rows.csv") << "a,1\nb,3\n";
  ASSERT_OK(client_.Push(src, "rows", {}, "v2", &cache).status());
  v1::PipelineRun again = Wait(Submit(yaml).id());
  EXPECT_EQ(Step(again, "lines").state(), v1::SUCCEEDED);
  EXPECT_NE(Step(again, "lines").fingerprint(), Step(first, "lines").fingerprint());
}

TEST_F(SchedulerTest, FailedAttemptsRetryWithBackoffThenSucceed) {
  std::string marker = dir_.path() + "/tried";
  const std::string yaml =
      "name: flaky\nsteps:\n  - name: flaky\n    command: [/bin/sh, -c, "
      "\"if [ -e " +
      marker + " ]; then exit 0; else touch " + marker +
      "; exit 7; fi\"]\n    retries: {limit: 2, backoff: 200ms}\n";
  v1::PipelineRun run = Wait(Submit(yaml).id());
  ASSERT_EQ(run.state(), v1::SUCCEEDED) << run.DebugString();
  const v1::StepRun& step = Step(run, "flaky");
  ASSERT_EQ(step.attempts_size(), 2);
  EXPECT_EQ(step.attempts(0).outcome(), "FAILED");
  EXPECT_EQ(step.attempts(0).exit_code(), 7);
  EXPECT_GE(step.attempts(1).start_time_ms() - step.attempts(0).end_time_ms(), 190);
}

TEST_F(SchedulerTest, FailuresSkipWhatDependsOnThemAndMissingOutputsFail) {
  const std::string yaml = R"(name: broken
steps:
  - name: bad
    command: [/bin/sh, -c, "exit 3"]
    retries: {limit: 1, backoff: 10ms}
    outputs: {x: x.txt}
  - name: after
    command: ["true"]
    inputs: {x: bad.outputs.x}
  - name: forgetful
    command: ["true"]
    outputs: {model: model.bin}
  - name: independent
    command: ["true"]
)";
  v1::PipelineRun run = Wait(Submit(yaml).id());
  EXPECT_EQ(run.state(), v1::FAILED);
  EXPECT_EQ(Step(run, "bad").state(), v1::FAILED);
  EXPECT_EQ(Step(run, "bad").attempts_size(), 2);
  EXPECT_EQ(Step(run, "after").state(), v1::SKIPPED);
  EXPECT_EQ(Step(run, "forgetful").state(), v1::FAILED);
  EXPECT_NE(Step(run, "forgetful").message().find("declared output model"), std::string::npos);
  EXPECT_EQ(Step(run, "independent").state(), v1::SUCCEEDED);
}

TEST_F(SchedulerTest, TimeoutsAndCancel) {
  v1::PipelineRun slow = Wait(Submit("name: slow\nsteps:\n  - name: sleepy\n    command: [sleep, "
                                     "\"30\"]\n    timeout: 300ms\n")
                                  .id());
  EXPECT_EQ(slow.state(), v1::FAILED);
  EXPECT_EQ(Step(slow, "sleepy").attempts(0).outcome(), "TIMED_OUT");

  v1::PipelineRun run = Submit(
      "name: long\nsteps:\n  - name: a\n    command: [sleep, \"30\"]\n  - name: b\n    needs: [a]\n"
      "    command: [\"true\"]\n");
  for (int i = 0; i < 100 && Step(*scheduler_->Get(run.id()), "a").state() != v1::RUNNING; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_OK(scheduler_->Cancel(run.id()).status());
  v1::PipelineRun canceled = Wait(run.id());
  EXPECT_EQ(canceled.state(), v1::CANCELED);
  EXPECT_EQ(Step(canceled, "a").state(), v1::CANCELED);
  EXPECT_EQ(Step(canceled, "b").state(), v1::CANCELED);
  EXPECT_THAT(scheduler_->Cancel(run.id()).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "finished"));
}

TEST_F(SchedulerTest, StepsAreRecordedAsTrackingRunsAndLineage) {
  std::string src = dir_.path() + "/labels";
  std::filesystem::create_directories(src);
  std::ofstream(src + "/labels.txt") << "cat\ndog\n";
  artifact::HashCache cache(dir_.path() + "/cache.tsv");
  auto pushed = client_.Push(src, "labels", {}, "v1", &cache);
  ASSERT_OK(pushed.status());
  const std::string yaml = R"(name: recorded
params: {lr: "0.1", other: "not used by train"}
steps:
  - name: train
    command: [/bin/sh, -c, "wc -l < {{inputs.labels}}/labels.txt > {{outputs.model}}; echo $MLOPS_RUN_ID > run_id.txt; echo '{\"accuracy\": 0.93, \"loss\": 0.2}' > metrics.json; echo training >&2"]
    inputs: {labels: "dataset:labels"}
    outputs: {model: model.bin}
    params: [lr]
)";
  v1::PipelineRun run = Wait(Submit(yaml).id());
  ASSERT_EQ(run.state(), v1::SUCCEEDED) << run.DebugString();
  const v1::StepRun& train = Step(run, "train");
  ASSERT_EQ(train.tracking_run_id().size(), 32u);
  // The step saw its tracking run id.
  std::ifstream seen(scheduler_->AttemptDir(run.id(), "train", 1) + "/run_id.txt");
  std::string seen_id;
  seen >> seen_id;
  EXPECT_EQ(seen_id, train.tracking_run_id());
  // The tracking run: params, FINISHED, metrics from metrics.json.
  // Recorded just after the step's own state (on the scheduler's recording thread).
  auto tracking = metadata::v1::MetadataService::NewStub(artifact_server_.NewChannel());
  metadata::v1::GetRunRequest get;
  get.set_run_id(train.tracking_run_id());
  metadata::v1::Run tracked;
  for (int i = 0; i < 100; ++i) {
    grpc::ClientContext context;
    ASSERT_TRUE(tracking->GetRun(&context, get, &tracked).ok());
    if (tracked.status() == metadata::v1::FINISHED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(tracked.status(), metadata::v1::FINISHED);
  EXPECT_EQ(tracked.params().at("lr"), "0.1");
  EXPECT_EQ(tracked.params().count("other"), 0u);  // a step sees only the params it uses
  ASSERT_EQ(tracked.latest_metrics_size(), 2);
  EXPECT_EQ(tracked.tags().at("mlops.pipeline_run"), run.id());
  // Lineage: from the model, upstream to the execution and the dataset version it read.
  auto lineage = metadata::v1::LineageService::NewStub(artifact_server_.NewChannel());
  metadata::v1::GetNodeRequest by_external;
  by_external.set_external_id("blob:" + train.output_digests().at("model"));
  metadata::v1::Artifact model;
  bool found = false;
  for (int i = 0; i < 100 && !found; ++i) {
    grpc::ClientContext get_context;
    found = lineage->GetArtifact(&get_context, by_external, &model).ok();
    if (!found) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(found) << "the model never appeared in the lineage graph";
  metadata::v1::GetLineageRequest up;
  up.set_artifact_id(model.id());
  metadata::v1::LineageGraph graph;
  grpc::ClientContext lineage_context;
  ASSERT_TRUE(lineage->GetLineage(&lineage_context, up, &graph).ok());
  ASSERT_EQ(graph.nodes_size(), 3);
  EXPECT_EQ(graph.nodes(1).execution().run_id(), train.tracking_run_id());
  EXPECT_EQ(graph.nodes(2).artifact().type(), "Dataset");
  EXPECT_EQ(graph.nodes(2).artifact().digest(), pushed->version.digest());
  // The attempt's stdout and stderr are blobs, and Logs outputs of the execution.
  ASSERT_EQ(train.attempts_size(), 1);
  EXPECT_EQ(Download(train.attempts(0).stdout_digest()), "");
  EXPECT_EQ(Download(train.attempts(0).stderr_digest()), "training\n");
  metadata::v1::GetLineageRequest down;
  down.set_execution_id(graph.nodes(1).execution().id());
  down.set_direction(metadata::v1::GetLineageRequest::DOWNSTREAM);
  metadata::v1::LineageGraph outputs;
  grpc::ClientContext down_context;
  ASSERT_TRUE(lineage->GetLineage(&down_context, down, &outputs).ok());
  int logs = 0;
  for (const auto& node : outputs.nodes()) logs += node.artifact().type() == "Logs";
  EXPECT_EQ(logs, 2);
  // A malformed metrics.json fails the attempt.
  v1::PipelineRun bad =
      Wait(Submit("name: badmetrics\nsteps:\n  - name: m\n    command: [/bin/sh, -c, \"echo "
                  "'[1,2]' > metrics.json\"]\n")
               .id());
  EXPECT_EQ(bad.state(), v1::FAILED);
  EXPECT_NE(Step(bad, "m").message().find("metrics.json"), std::string::npos);
}

TEST_F(SchedulerTest, SchedulesSubmitRunsOnTime) {
  v1::Schedule schedule;
  schedule.set_name("nightly");
  schedule.set_cron("0 3 * * *");
  schedule.set_spec_yaml(kChain);
  schedule.set_first_time_ms(NowMs() + 200);  // the first run soon, then at 03:00 UTC
  auto created = scheduler_->CreateSchedule(schedule);
  ASSERT_OK(created.status());
  std::vector<v1::Schedule> listed;
  for (int i = 0; i < 100; ++i) {
    listed = *scheduler_->ListSchedules("");
    if (!listed[0].last_run_id().empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(listed.size(), 1u);
  ASSERT_FALSE(listed[0].last_run_id().empty()) << "the schedule did not fire";
  EXPECT_EQ(Wait(listed[0].last_run_id()).state(), v1::SUCCEEDED);
  // The next fire is the next 03:00 UTC.
  int64_t next = listed[0].next_time_ms();
  EXPECT_GT(next, NowMs());
  EXPECT_EQ(next / 1000 % 86400, 3 * 3600);
  // Restart: the schedule survives, nothing fires again before its time.
  scheduler_.reset();
  Start();
  ASSERT_EQ(scheduler_->ListSchedules("")->size(), 1u);
  EXPECT_EQ((*scheduler_->ListSchedules(""))[0].last_run_id(), listed[0].last_run_id());
  EXPECT_THAT(scheduler_->CreateSchedule(schedule).status(),
              StatusIs(absl::StatusCode::kAlreadyExists, "nightly"));
  schedule.set_name("bad");
  schedule.set_cron("61 * * * *");
  EXPECT_THAT(scheduler_->CreateSchedule(schedule).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "minute"));
  ASSERT_OK(scheduler_->DeleteSchedule("nightly"));
  EXPECT_THAT(scheduler_->DeleteSchedule("nightly"), StatusIs(absl::StatusCode::kNotFound, ""));
}

TEST_F(SchedulerTest, BadSubmissionsAreRefused) {
  v1::SubmitPipelineRequest request;
  request.set_spec_yaml(
      "name: x\nsteps:\n  - name: a\n    command: [y]\n    resources: {cpu: 64}\n");
  EXPECT_THAT(scheduler_->Submit(request).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, "capacity"));
  request.set_spec_yaml(kChain);
  request.set_queue("nope");
  EXPECT_THAT(scheduler_->Submit(request).status(), StatusIs(absl::StatusCode::kNotFound, "nope"));
  request.clear_queue();
  (*request.mutable_params())["undeclared"] = "1";
  EXPECT_THAT(scheduler_->Submit(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "undeclared"));
  EXPECT_THAT(scheduler_->Get("00000000000000000000000000000000").status(),
              StatusIs(absl::StatusCode::kNotFound, ""));
}

TEST_F(SchedulerTest, MultiReplicaStepsRunEveryRank) {
  v1::PipelineRun run = Wait(Submit(R"(name: gang
steps:
  - name: train
    command: [/bin/sh, -c, "echo $RANK/$WORLD_SIZE >> {{outputs.ranks}}"]
    outputs: {ranks: ranks.txt}
    resources: {cpu: 1}
    replicas: 4
)")
                                 .id());
  ASSERT_EQ(run.state(), v1::SUCCEEDED) << run.DebugString();
  std::string ranks = Download(Step(run, "train").output_digests().at("ranks"));
  for (int rank = 0; rank < 4; ++rank) {
    EXPECT_NE(ranks.find(std::to_string(rank) + "/4\n"), std::string::npos) << ranks;
  }
  // Five replicas of one CPU each never fit this scheduler's four CPUs: refused up front.
  v1::SubmitPipelineRequest request;
  request.set_spec_yaml(R"(name: toobig
steps:
  - name: train
    command: [/bin/true]
    resources: {cpu: 1}
    replicas: 5
)");
  EXPECT_THAT(scheduler_->Submit(request).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, ""));
}

// A sweep whose instances report accuracy 0.5, 0.9 and 0.2 (and, with `broken`, none).
std::string TuneSpec(const std::string& goal, bool broken = false) {
  return R"(name: tune
params: {lr: "0.1"}
steps:
  - name: train
    command:
      - /bin/sh
      - -c
      - |
        case {{params.lr}} in 0.01) a=0.5;; 0.1) a=0.9;; *) a=0.2;; esac
        )" +
         std::string(
             broken
                 ? ""
                 : R"(echo "[{\"key\": \"accuracy\", \"value\": 0, \"step\": 1}, {\"key\": \"accuracy\", \"value\": $a, \"step\": 2}]" > metrics.json)") +
         R"(
        echo model-{{params.lr}} > {{outputs.model}}
    outputs: {model: model.bin}
    sweep: {lr: ["0.01", "0.1", "1.0"]}
    objective: {metric: accuracy, goal: )" +
         goal + R"(}
  - name: register
    command: [/bin/sh, -c, "cp {{inputs.model}} {{outputs.chosen}}"]
    inputs: {model: train.outputs.model}
    outputs: {chosen: chosen.bin}
)";
}

TEST_F(SchedulerTest, SweepsCompareTheirInstancesAndPassTheBestOn) {
  v1::PipelineRun run = Wait(Submit(TuneSpec("maximize")).id());
  ASSERT_EQ(run.state(), v1::SUCCEEDED) << run.DebugString();
  ASSERT_EQ(run.sweeps_size(), 1);
  const v1::SweepResult& sweep = run.sweeps(0);
  EXPECT_EQ(sweep.step(), "train");
  EXPECT_EQ(sweep.metric(), "accuracy");
  EXPECT_TRUE(sweep.maximize());
  EXPECT_EQ(sweep.best(), "train[lr=0.1]");
  EXPECT_DOUBLE_EQ(sweep.best_value(), 0.9);
  EXPECT_EQ(sweep.values_size(), 3);
  EXPECT_DOUBLE_EQ(sweep.values().at("train[lr=0.01]"), 0.5);
  // The final value (highest step) is the one compared and kept on the step.
  EXPECT_DOUBLE_EQ(Step(run, "train[lr=1.0]").metrics().at("accuracy"), 0.2);
  EXPECT_EQ(Download(Step(run, "register").output_digests().at("chosen")), "model-0.1\n");

  // Minimizing picks the other end; the instances themselves are reused from the cache, metrics
  // included.
  v1::PipelineRun low = Wait(Submit(TuneSpec("minimize")).id());
  ASSERT_EQ(low.state(), v1::SUCCEEDED) << low.DebugString();
  EXPECT_EQ(Step(low, "train[lr=1.0]").state(), v1::CACHED);
  ASSERT_EQ(low.sweeps_size(), 1);
  EXPECT_EQ(low.sweeps(0).best(), "train[lr=1.0]");
  EXPECT_EQ(Download(Step(low, "register").output_digests().at("chosen")), "model-1.0\n");
  // Read back from storage after a restart, the comparison is still there.
  scheduler_.reset();
  Start();
  auto stored = scheduler_->Get(low.id());
  ASSERT_OK(stored.status());
  ASSERT_EQ(stored->sweeps_size(), 1);
  EXPECT_EQ(stored->sweeps(0).best(), "train[lr=1.0]");
}

TEST_F(SchedulerTest, ASweepWhereNoInstanceReportsTheMetricFailsItsConsumer) {
  v1::PipelineRun run = Wait(Submit(TuneSpec("maximize", /*broken=*/true)).id());
  ASSERT_EQ(run.state(), v1::FAILED) << run.DebugString();
  EXPECT_EQ(Step(run, "train[lr=0.1]").state(), v1::SUCCEEDED);
  EXPECT_EQ(Step(run, "register").state(), v1::FAILED);
  EXPECT_THAT(Step(run, "register").message(),
              ::testing::HasSubstr("no instance of train reported metric accuracy"));
  ASSERT_EQ(run.sweeps_size(), 1);
  EXPECT_EQ(run.sweeps(0).best(), "");
  EXPECT_EQ(run.sweeps(0).values_size(), 0);
}

TEST_F(SchedulerTest, ACorruptRecordIsDataLossNamingWhere) {
  v1::PipelineRun run =
      Wait(Submit("name: c\nsteps:\n  - name: a\n    command: [/bin/true]\n").id());
  ASSERT_EQ(run.state(), v1::SUCCEEDED);
  scheduler_.reset();
  db_.reset();
  testing::CorruptRecord(dir_.path() + "/scheduler", kRunsCf, run.id());
  auto db = Db::Open(dir_.path() + "/scheduler", SchedulerColumnFamilies(), Db::Options());
  ASSERT_OK(db.status());
  db_ = std::move(*db);
  // Refuses to start on a run it cannot read, saying which, rather than forgetting the run.
  SchedulerOptions options;
  options.work_root = dir_.path() + "/work";
  EXPECT_THAT(Scheduler::Open(db_.get(), &executor_, &gateway_, options, &metadata_).status(),
              StatusIs(absl::StatusCode::kDataLoss, "column family sched_runs, key \"" + run.id()));
}

TEST_F(SchedulerTest, AHangingDatasetLookupHoldsUpNothingElse) {
  // The engine never calls another service itself: while a worker waits on one run's dataset
  // lookup, other runs are admitted, run and finish.
  HoldingGateway holding(&gateway_);
  scheduler_.reset();
  SchedulerOptions options;
  options.work_root = dir_.path() + "/work";
  options.capacity = {4000, int64_t{8} << 30, 0};
  auto opened = Scheduler::Open(db_.get(), &executor_, &holding, options, &metadata_);
  ASSERT_OK(opened.status());
  scheduler_ = std::move(*opened);
  v1::PipelineRun held = Submit(
      "name: held\nsteps:\n  - name: read\n    inputs: {rows: \"dataset:held\"}\n"
      "    command: [/bin/true]\n");
  holding.entered.get_future().wait();
  v1::PipelineRun other = Wait(Submit("name: other\nsteps:\n  - name: a\n    command: [/bin/true]\n"
                                      "  - name: b\n    needs: [a]\n    command: [/bin/true]\n")
                                   .id());
  EXPECT_EQ(other.state(), v1::SUCCEEDED);
  EXPECT_EQ(scheduler_->Get(held.id())->steps(0).state(), v1::PENDING);
  holding.release.set_value();
  // The lookup's answer reaches the step: the dataset does not exist, so it fails naming it.
  v1::PipelineRun ended = Wait(held.id());
  EXPECT_EQ(ended.state(), v1::FAILED);
  EXPECT_NE(ended.steps(0).message().find("input rows"), std::string::npos)
      << ended.steps(0).message();
  scheduler_.reset();  // before `holding` goes
}

}  // namespace
}  // namespace mlops::scheduler
