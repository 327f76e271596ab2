#include "services/metadata/metadata_store.h"

#include <cmath>
#include <map>

#include "services/common/ids.h"
#include "tests/testing/testing.h"

namespace mlops::metadata {
namespace {

using ::mlops::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class MetadataStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    store_.reset();
    auto store = MetadataStore::Open(dir_.path() + "/metadata", Db::Options());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  v1::Experiment MakeExperiment(const std::string& name) {
    v1::CreateExperimentRequest request;
    request.set_name(name);
    auto experiment = store_->CreateExperiment(request);
    EXPECT_TRUE(experiment.ok()) << experiment.status();
    return *experiment;
  }

  v1::Run MakeRun(const std::string& experiment_id,
                  std::map<std::string, std::string> params = {}) {
    v1::CreateRunRequest request;
    request.set_experiment_id(experiment_id);
    for (const auto& [k, v] : params) (*request.mutable_params())[k] = v;
    auto run = store_->CreateRun(request);
    EXPECT_TRUE(run.ok()) << run.status();
    return *run;
  }

  static v1::Metric Point(const std::string& key, double value, int64_t step, int64_t ts = 1000) {
    v1::Metric m;
    m.set_key(key);
    m.set_value(value);
    m.set_step(step);
    m.set_timestamp_ms(ts);
    return m;
  }

  testing::TempDir dir_;
  std::unique_ptr<MetadataStore> store_;
};

TEST_F(MetadataStoreTest, ExperimentLifecycle) {
  v1::CreateExperimentRequest request;
  request.set_name("iris");
  request.set_description("flowers");
  (*request.mutable_tags())["team"] = "vision";
  auto created = store_->CreateExperiment(request);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->lifecycle_stage(), v1::ACTIVE);

  EXPECT_THAT(store_->CreateExperiment(request).status(),
              StatusIs(absl::StatusCode::kAlreadyExists, "'iris' is taken"));
  auto by_name = store_->GetExperimentByName("iris");
  ASSERT_TRUE(by_name.ok());
  EXPECT_EQ(by_name->id(), created->id());
  EXPECT_EQ(by_name->tags().at("team"), "vision");

  v1::UpdateExperimentRequest update;
  update.mutable_experiment()->set_id(created->id());
  update.mutable_experiment()->set_name("iris-v2");
  update.mutable_update_mask()->add_paths("name");
  ASSERT_TRUE(store_->UpdateExperiment(update).ok());
  EXPECT_THAT(store_->GetExperimentByName("iris").status(),
              StatusIs(absl::StatusCode::kNotFound, "'iris' not found"));
  EXPECT_TRUE(store_->GetExperimentByName("iris-v2").ok());
  update.mutable_update_mask()->set_paths(0, "create_time_ms");
  EXPECT_THAT(store_->UpdateExperiment(update).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "'create_time_ms' cannot be updated"));

  ASSERT_TRUE(store_->SetExperimentLifecycle(created->id(), v1::DELETED).ok());
  EXPECT_THAT(store_->SetExperimentLifecycle(created->id(), v1::DELETED).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "already DELETED"));
  v1::CreateRunRequest run_request;
  run_request.set_experiment_id(created->id());
  EXPECT_THAT(store_->CreateRun(run_request).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "is deleted"));

  v1::ListExperimentsRequest list;
  EXPECT_EQ(store_->ListExperiments(list)->experiments_size(), 0);
  list.set_view(v1::DELETED_ONLY);
  EXPECT_EQ(store_->ListExperiments(list)->experiments_size(), 1);
  ASSERT_TRUE(store_->SetExperimentLifecycle(created->id(), v1::ACTIVE).ok());
  EXPECT_TRUE(store_->CreateRun(run_request).ok());
}

TEST_F(MetadataStoreTest, BadInputIsRejectedWithSpecificCodes) {
  EXPECT_THAT(store_->GetExperiment("nope").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "not a valid id"));
  EXPECT_THAT(store_->GetExperiment(std::string(32, 'a')).status(),
              StatusIs(absl::StatusCode::kNotFound, "not found"));
  v1::CreateExperimentRequest request;
  EXPECT_THAT(store_->CreateExperiment(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "name: required"));
  request.set_name("bad\nname");
  EXPECT_THAT(store_->CreateExperiment(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "no control character"));
  auto experiment = MakeExperiment("e");
  v1::CreateRunRequest run;
  run.set_experiment_id(experiment.id());
  (*run.mutable_params())["bad key!"] = "1";
  EXPECT_THAT(store_->CreateRun(run).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "param key 'bad key!'"));
  run.mutable_params()->clear();
  (*run.mutable_params())[std::string(251, 'k')] = "1";
  EXPECT_THAT(store_->CreateRun(run).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "longer than 250"));
  run.mutable_params()->clear();
  (*run.mutable_params())["k"] = std::string(6001, 'v');
  EXPECT_THAT(store_->CreateRun(run).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "value longer than 6000"));
}

TEST_F(MetadataStoreTest, RequestIdMakesCreateIdempotent) {
  v1::CreateExperimentRequest request;
  request.set_name("e");
  request.set_request_id("req-1");
  auto first = store_->CreateExperiment(request);
  auto second = store_->CreateExperiment(request);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->id(), second->id());
  v1::CreateRunRequest run;
  run.set_experiment_id(first->id());
  run.set_request_id("run-req");
  auto r1 = store_->CreateRun(run);
  auto r2 = store_->CreateRun(run);
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_EQ(r1->id(), r2->id());
}

TEST_F(MetadataStoreTest, LogBatchIsAtomicAndParamsAreImmutable) {
  auto experiment = MakeExperiment("e");
  auto run = MakeRun(experiment.id(), {{"lr", "0.1"}});
  v1::LogBatchRequest batch;
  batch.set_run_id(run.id());
  (*batch.mutable_params())["epochs"] = "10";
  (*batch.mutable_tags())["team"] = "a";
  *batch.add_metrics() = Point("loss", 1.0, 0);
  *batch.add_metrics() = Point("loss", 0.5, 1);
  ASSERT_OK(store_->LogBatch(batch));

  // Same value again is fine; a different value fails the whole batch, metrics included.
  v1::LogBatchRequest conflict;
  conflict.set_run_id(run.id());
  (*conflict.mutable_params())["lr"] = "0.2";
  (*conflict.mutable_tags())["team"] = "b";
  *conflict.add_metrics() = Point("loss", 0.1, 2);
  EXPECT_THAT(store_->LogBatch(conflict),
              StatusIs(absl::StatusCode::kFailedPrecondition, "param 'lr'"));
  auto stored = store_->GetRun(run.id());
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->params().at("lr"), "0.1");
  EXPECT_EQ(stored->tags().at("team"), "a");
  ASSERT_EQ(stored->latest_metrics_size(), 1);
  EXPECT_EQ(stored->latest_metrics(0).step(), 1);
  v1::GetMetricHistoryRequest history;
  history.set_run_id(run.id());
  history.set_key("loss");
  EXPECT_EQ(store_->GetMetricHistory(history)->metrics_size(), 2);

  // Too many points: rejected before anything is written.
  v1::LogBatchRequest big;
  big.set_run_id(run.id());
  for (int i = 0; i < 10001; ++i) *big.add_metrics() = Point("x", i, i);
  EXPECT_THAT(store_->LogBatch(big), StatusIs(absl::StatusCode::kInvalidArgument, "10001"));

  // A finished run takes metrics and tags but no new params.
  v1::UpdateRunRequest finish;
  finish.mutable_run()->set_id(run.id());
  finish.mutable_run()->set_status(v1::FINISHED);
  finish.mutable_update_mask()->add_paths("status");
  auto finished = store_->UpdateRun(finish);
  ASSERT_TRUE(finished.ok());
  EXPECT_GT(finished->end_time_ms(), 0);
  v1::LogBatchRequest late;
  late.set_run_id(run.id());
  (*late.mutable_params())["new"] = "1";
  EXPECT_THAT(store_->LogBatch(late),
              StatusIs(absl::StatusCode::kFailedPrecondition, "finished run's params"));
  late.mutable_params()->clear();
  *late.add_metrics() = Point("acc", 0.9, 0);
  EXPECT_OK(store_->LogBatch(late));
}

TEST_F(MetadataStoreTest, SeriesAreStoredLikeMetricsAndCountAgainstTheBatchLimit) {
  auto run = MakeRun(MakeExperiment("e").id());
  v1::LogBatchRequest batch;
  batch.set_run_id(run.id());
  v1::MetricSeries* loss = batch.add_series();
  loss->set_key("loss");
  for (int i = 0; i < 5; ++i) {
    loss->add_values(1.0 / (i + 1));
    loss->add_steps(i);
    loss->add_timestamps_ms(1000 + i);
  }
  v1::MetricSeries* lr = batch.add_series();  // no steps, no timestamps: step 0, now
  lr->set_key("lr");
  lr->add_values(0.1);
  *batch.add_metrics() = Point("acc", 0.5, 4);
  auto logged = store_->LogBatch(batch);
  ASSERT_OK(logged);
  EXPECT_FALSE(logged->duplicate);
  EXPECT_EQ(logged->points, 7);

  v1::GetMetricHistoryRequest history;
  history.set_run_id(run.id());
  history.set_key("loss");
  auto points = store_->GetMetricHistory(history);
  ASSERT_OK(points);
  ASSERT_EQ(points->metrics_size(), 5);
  EXPECT_EQ(points->metrics(3).step(), 3);
  EXPECT_EQ(points->metrics(3).timestamp_ms(), 1003);
  EXPECT_DOUBLE_EQ(points->metrics(3).value(), 0.25);
  history.set_key("lr");
  points = store_->GetMetricHistory(history);
  ASSERT_EQ(points->metrics_size(), 1);
  EXPECT_EQ(points->metrics(0).step(), 0);
  EXPECT_GT(points->metrics(0).timestamp_ms(), 1000000);  // the server's now
  auto stored = store_->GetRun(run.id());
  ASSERT_OK(stored);
  std::map<std::string, double> latest;
  for (const v1::Metric& m : stored->latest_metrics()) latest[m.key()] = m.value();
  EXPECT_EQ(latest, (std::map<std::string, double>{{"acc", 0.5}, {"loss", 0.2}, {"lr", 0.1}}));

  // Malformed series and batches over the limit change nothing.
  v1::LogBatchRequest bad;
  bad.set_run_id(run.id());
  v1::MetricSeries* uneven = bad.add_series();
  uneven->set_key("loss");
  uneven->add_values(9);
  uneven->add_values(9);
  uneven->add_steps(7);
  EXPECT_THAT(store_->LogBatch(bad), StatusIs(absl::StatusCode::kInvalidArgument, "one per value"));
  bad.clear_series();
  bad.add_series()->set_key("bad key!");
  EXPECT_THAT(store_->LogBatch(bad), StatusIs(absl::StatusCode::kInvalidArgument, "series key"));
  bad.clear_series();
  for (int i = 0; i < 5001; ++i) *bad.add_metrics() = Point("loss", 9, 100 + i);
  v1::MetricSeries* more = bad.add_series();
  more->set_key("loss");
  for (int i = 0; i < 5000; ++i) more->add_values(9);
  EXPECT_THAT(store_->LogBatch(bad), StatusIs(absl::StatusCode::kInvalidArgument, "10001 points"));
  history.set_key("loss");
  EXPECT_EQ(store_->GetMetricHistory(history)->metrics_size(), 5);
}

TEST_F(MetadataStoreTest, ABatchOfAWriterIsAppliedOnceWhateverIsReplayed) {
  auto experiment = MakeExperiment("e");
  auto run = MakeRun(experiment.id());
  auto other_run = MakeRun(experiment.id());
  auto batch_of = [](const std::string& run_id, const std::string& writer, int64_t sequence,
                     const std::string& tag, int64_t step) {
    v1::LogBatchRequest batch;
    batch.set_run_id(run_id);
    batch.set_writer(writer);
    batch.set_sequence(sequence);
    (*batch.mutable_tags())["last"] = tag;
    *batch.add_metrics() = Point("loss", static_cast<double>(step), step, 1000 + step);
    return batch;
  };
  auto tag_of = [&](const std::string& run_id) {
    return store_->GetRun(run_id)->tags().at("last");
  };
  auto points_of = [&](const std::string& run_id) {
    v1::GetMetricHistoryRequest history;
    history.set_run_id(run_id);
    history.set_key("loss");
    return store_->GetMetricHistory(history)->metrics_size();
  };

  auto first = store_->LogBatch(batch_of(run.id(), "proc-a", 1, "one", 1));
  ASSERT_OK(first);
  EXPECT_FALSE(first->duplicate);
  ASSERT_OK(store_->LogBatch(batch_of(run.id(), "proc-a", 2, "two", 2)));
  // Replays of 1 and 2 (after answers that never came) change nothing, even with other content.
  auto replay = store_->LogBatch(batch_of(run.id(), "proc-a", 1, "replayed", 3));
  ASSERT_OK(replay);
  EXPECT_TRUE(replay->duplicate);
  EXPECT_EQ(replay->points, 0);
  EXPECT_TRUE(store_->LogBatch(batch_of(run.id(), "proc-a", 2, "replayed", 3))->duplicate);
  EXPECT_EQ(tag_of(run.id()), "two");
  EXPECT_EQ(points_of(run.id()), 2);
  // Gaps are fine; another writer, and the same writer on another run, have sequences of their own.
  EXPECT_FALSE(store_->LogBatch(batch_of(run.id(), "proc-a", 10, "ten", 10))->duplicate);
  EXPECT_FALSE(store_->LogBatch(batch_of(run.id(), "proc-b", 1, "b", 11))->duplicate);
  EXPECT_FALSE(store_->LogBatch(batch_of(other_run.id(), "proc-a", 1, "x", 1))->duplicate);
  EXPECT_EQ(points_of(run.id()), 4);
  // A batch without a writer is applied every time it is sent.
  v1::LogBatchRequest plain = batch_of(run.id(), "", 0, "plain", 20);
  ASSERT_OK(store_->LogBatch(plain));
  ASSERT_OK(store_->LogBatch(plain));
  EXPECT_EQ(tag_of(run.id()), "plain");

  // The sequences survive a restart.
  Reopen();
  EXPECT_TRUE(store_->LogBatch(batch_of(run.id(), "proc-a", 10, "again", 30))->duplicate);
  EXPECT_TRUE(store_->LogBatch(batch_of(run.id(), "proc-b", 1, "again", 30))->duplicate);
  EXPECT_EQ(points_of(run.id()), 5);

  // Malformed writers and sequences are refused, and a refused batch leaves no sequence.
  EXPECT_THAT(store_->LogBatch(batch_of(run.id(), "proc/a", 1, "x", 40)),
              StatusIs(absl::StatusCode::kInvalidArgument, "writer: only letters"));
  EXPECT_THAT(store_->LogBatch(batch_of(run.id(), std::string(65, 'w'), 1, "x", 40)),
              StatusIs(absl::StatusCode::kInvalidArgument, "longer than 64"));
  EXPECT_THAT(store_->LogBatch(batch_of(run.id(), "proc-c", 0, "x", 40)),
              StatusIs(absl::StatusCode::kInvalidArgument, "sequence: must be above 0"));
  EXPECT_THAT(store_->LogBatch(batch_of(run.id(), "", 5, "x", 40)),
              StatusIs(absl::StatusCode::kInvalidArgument, "without a writer"));
  v1::LogBatchRequest refused = batch_of(run.id(), "proc-d", 1, "x", 40);
  refused.mutable_metrics(0)->set_key("");
  EXPECT_THAT(store_->LogBatch(refused), StatusIs(absl::StatusCode::kInvalidArgument, "metric"));
  refused.mutable_metrics(0)->set_key("loss");
  EXPECT_FALSE(store_->LogBatch(refused)->duplicate);
  EXPECT_EQ(points_of(run.id()), 6);
}

TEST_F(MetadataStoreTest, WriterSequencesArePurgedAWeekAfterTheirRunEnded) {
  auto experiment = MakeExperiment("e");
  auto running = MakeRun(experiment.id());
  auto ended = MakeRun(experiment.id());
  for (const v1::Run* run : {&running, &ended}) {
    for (const char* writer : {"w1", "w2"}) {
      v1::LogBatchRequest batch;
      batch.set_run_id(run->id());
      batch.set_writer(writer);
      batch.set_sequence(1);
      *batch.add_metrics() = Point("loss", 1, 1);
      ASSERT_OK(store_->LogBatch(batch));
    }
  }
  v1::UpdateRunRequest finish;
  finish.mutable_run()->set_id(ended.id());
  finish.mutable_run()->set_status(v1::FINISHED);
  finish.mutable_run()->set_end_time_ms(5000);
  finish.mutable_update_mask()->add_paths("status");
  finish.mutable_update_mask()->add_paths("end_time_ms");
  ASSERT_OK(store_->UpdateRun(finish));

  EXPECT_EQ(*store_->PurgeLogWriters(5000 + kLogWriterWindowMs), 0u);
  EXPECT_EQ(*store_->PurgeLogWriters(5001 + kLogWriterWindowMs), 2u);
  EXPECT_EQ(*store_->PurgeLogWriters(NowMs() + 2 * kLogWriterWindowMs), 0u);  // running: kept
  v1::LogBatchRequest replay;
  replay.set_run_id(running.id());
  replay.set_writer("w1");
  replay.set_sequence(1);
  EXPECT_TRUE(store_->LogBatch(replay)->duplicate);
  replay.set_run_id(ended.id());
  EXPECT_FALSE(store_->LogBatch(replay)->duplicate);  // forgotten: applied again
}

TEST_F(MetadataStoreTest, NanAndInfinityAreValues) {
  auto experiment = MakeExperiment("e");
  auto run = MakeRun(experiment.id());
  v1::LogBatchRequest batch;
  batch.set_run_id(run.id());
  *batch.add_metrics() = Point("m", std::nan(""), 0);
  *batch.add_metrics() = Point("m", INFINITY, 1);
  *batch.add_metrics() = Point("m", -INFINITY, 2);
  ASSERT_OK(store_->LogBatch(batch));
  v1::GetMetricHistoryRequest history;
  history.set_run_id(run.id());
  history.set_key("m");
  auto points = store_->GetMetricHistory(history);
  ASSERT_TRUE(points.ok());
  ASSERT_EQ(points->metrics_size(), 3);
  EXPECT_TRUE(std::isnan(points->metrics(0).value()));
  EXPECT_EQ(points->metrics(1).value(), INFINITY);
  EXPECT_EQ(points->metrics(2).value(), -INFINITY);
}

TEST_F(MetadataStoreTest, LatestMetricIsHighestStepThenTimestamp) {
  auto experiment = MakeExperiment("e");
  auto run = MakeRun(experiment.id());
  v1::LogBatchRequest batch;
  batch.set_run_id(run.id());
  *batch.add_metrics() = Point("acc", 0.7, 5, 100);
  *batch.add_metrics() = Point("acc", 0.9, 3, 900);  // older step, newer time: not latest
  *batch.add_metrics() = Point("acc", 0.8, 5, 200);  // same step, newer time: latest
  ASSERT_OK(store_->LogBatch(batch));
  auto stored = store_->GetRun(run.id());
  ASSERT_EQ(stored->latest_metrics_size(), 1);
  EXPECT_DOUBLE_EQ(stored->latest_metrics(0).value(), 0.8);
}

TEST_F(MetadataStoreTest, MetricHistoryPagesAndDownsamples) {
  auto experiment = MakeExperiment("e");
  auto run = MakeRun(experiment.id());
  v1::LogBatchRequest batch;
  batch.set_run_id(run.id());
  for (int i = 0; i < 1000; ++i) {
    double value = (i == 500) ? 100.0 : (i == 501 ? -100.0 : std::sin(i / 10.0));
    *batch.add_metrics() = Point("curve", value, i);
  }
  ASSERT_OK(store_->LogBatch(batch));

  v1::GetMetricHistoryRequest request;
  request.set_run_id(run.id());
  request.set_key("curve");
  request.set_page_size(300);
  std::vector<int64_t> steps;
  do {
    auto page = store_->GetMetricHistory(request);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& m : page->metrics()) steps.push_back(m.step());
    request.set_page_token(page->next_page_token());
  } while (!request.page_token().empty());
  ASSERT_EQ(steps.size(), 1000u);
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i], static_cast<int64_t>(i));

  request.set_page_token("");
  request.set_max_points(50);
  auto sampled = store_->GetMetricHistory(request);
  ASSERT_TRUE(sampled.ok());
  EXPECT_LE(sampled->metrics_size(), 50);
  EXPECT_GE(sampled->metrics_size(), 40);
  EXPECT_EQ(sampled->total_points(), 1000);
  bool has_max = false, has_min = false;
  int64_t prev = -1;
  for (const auto& m : sampled->metrics()) {
    has_max |= m.value() == 100.0;
    has_min |= m.value() == -100.0;
    EXPECT_GT(m.step(), prev);  // still in step order
    prev = m.step();
  }
  EXPECT_TRUE(has_max);
  EXPECT_TRUE(has_min);
  EXPECT_EQ(sampled->metrics(sampled->metrics_size() - 1).step(), 999);  // the last point

  request.set_max_points(2);
  EXPECT_THAT(store_->GetMetricHistory(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_points"));
  request.set_max_points(0);
  request.set_page_token("garbage");
  EXPECT_THAT(store_->GetMetricHistory(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "page_token"));
}

TEST_F(MetadataStoreTest, AStepRangeIsServedAtFullDetailOrDownsampledAgain) {
  auto experiment = MakeExperiment("e");
  auto run = MakeRun(experiment.id());
  v1::LogBatchRequest batch;
  batch.set_run_id(run.id());
  for (int i = 0; i < 9000; ++i) *batch.add_metrics() = Point("curve", i % 7, i);
  *batch.add_metrics() = Point("curve", 42, 5000, 1);  // a second point at step 5000
  ASSERT_OK(store_->LogBatch(batch));

  v1::GetMetricHistoryRequest request;
  request.set_run_id(run.id());
  request.set_key("curve");
  request.set_max_points(1000);
  request.set_min_step(5000);
  request.set_max_step(5400);
  auto zoomed = store_->GetMetricHistory(request);
  ASSERT_TRUE(zoomed.ok()) << zoomed.status();
  // 402 points fit in 1,000: every one, both points of step 5000 included, nothing outside.
  ASSERT_EQ(zoomed->metrics_size(), 402);
  EXPECT_EQ(zoomed->total_points(), 402);
  EXPECT_EQ(zoomed->metrics(0).step(), 5000);
  EXPECT_EQ(zoomed->metrics(1).step(), 5000);
  EXPECT_EQ(zoomed->metrics(401).step(), 5400);

  request.set_max_points(101);  // downsampled within the range: the range's last point kept
  auto sampled = store_->GetMetricHistory(request);
  ASSERT_TRUE(sampled.ok());
  EXPECT_LE(sampled->metrics_size(), 101);
  EXPECT_EQ(sampled->total_points(), 402);
  EXPECT_GE(sampled->metrics(0).step(), 5000);
  EXPECT_EQ(sampled->metrics(sampled->metrics_size() - 1).step(), 5400);

  // Pages of a range; a token of one range is refused for another.
  request.set_max_points(0);
  request.set_page_size(150);
  request.clear_max_step();  // open above: to the end
  std::vector<int64_t> steps;
  std::string first_token;
  do {
    auto page = store_->GetMetricHistory(request);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& m : page->metrics()) steps.push_back(m.step());
    if (first_token.empty()) first_token = page->next_page_token();
    request.set_page_token(page->next_page_token());
  } while (!request.page_token().empty());
  ASSERT_EQ(steps.size(), 4001u);
  EXPECT_EQ(steps.front(), 5000);
  EXPECT_EQ(steps.back(), 8999);
  request.set_min_step(10);
  request.set_page_token(first_token);
  EXPECT_THAT(store_->GetMetricHistory(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "page_token"));

  request.set_page_token("");
  request.set_min_step(9000);
  request.set_max_step(10);
  EXPECT_THAT(store_->GetMetricHistory(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "min_step"));
  request.set_min_step(20000);  // beyond the last step: empty, not an error
  request.clear_max_step();
  auto none = store_->GetMetricHistory(request);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->metrics_size(), 0);
}

TEST_F(MetadataStoreTest, ALongHistoryIsDownsampledFromTilesWithItsSpikesAndLastPoint) {
  auto experiment = MakeExperiment("e");
  auto run = MakeRun(experiment.id());
  // 100,000 points in ten batches (tiles merge across batches), with spikes and a NaN stretch.
  const int n = 100000;
  auto value = [](int i) {
    if (i == 9999) return 500.0;   // outside the zoomed range below
    if (i == 10000) return 400.0;  // its first step
    if (i == 77777) return -300.0;
    if (i >= 50000 && i < 52048) return std::nan("");  // whole blocks of NaN
    return std::sin(i / 1000.0);
  };
  for (int from = 0; from < n; from += 10000) {
    v1::LogBatchRequest batch;
    batch.set_run_id(run.id());
    for (int i = from; i < from + 10000; ++i) *batch.add_metrics() = Point("curve", value(i), i);
    ASSERT_OK(store_->LogBatch(batch));
  }
  v1::GetMetricHistoryRequest request;
  request.set_run_id(run.id());
  request.set_key("curve");
  // 301 points of 100,000: drawn from tiles (more than 64 x 301 points, 391 blocks of 256 steps).
  request.set_max_points(301);
  auto sampled = store_->GetMetricHistory(request);
  ASSERT_TRUE(sampled.ok()) << sampled.status();
  EXPECT_EQ(sampled->total_points(), n);
  EXPECT_LE(sampled->metrics_size(), 301);
  EXPECT_GE(sampled->metrics_size(), 150);
  std::map<int64_t, double> shown;
  int64_t previous = -1;
  for (const auto& m : sampled->metrics()) {
    EXPECT_GT(m.step(), previous);  // in step order, each point once
    previous = m.step();
    shown[m.step()] = m.value();
    if (!std::isnan(m.value())) {
      EXPECT_DOUBLE_EQ(m.value(), value(static_cast<int>(m.step())));
    }
  }
  EXPECT_EQ(shown.count(9999), 1u);  // the spikes survive (10000's shares 9999's bucket)
  EXPECT_EQ(shown.count(77777), 1u);
  EXPECT_EQ(shown.rbegin()->first, n - 1);  // the last point
  bool nan_bucket = false;
  for (const auto& [step, v] : shown) nan_bucket |= step >= 50000 && step < 52048 && std::isnan(v);
  EXPECT_TRUE(nan_bucket);

  // A zoomed range: nothing outside it, its own spikes, its first and last steps' blocks exact.
  request.set_min_step(10000);
  request.set_max_step(90000);
  auto zoomed = store_->GetMetricHistory(request);
  ASSERT_TRUE(zoomed.ok()) << zoomed.status();
  EXPECT_EQ(zoomed->total_points(), 80001);
  ASSERT_GT(zoomed->metrics_size(), 0);
  EXPECT_LE(zoomed->metrics_size(), 301);
  EXPECT_EQ(zoomed->metrics(0).step(), 10000);  // the range's maximum is its first point
  EXPECT_EQ(zoomed->metrics(zoomed->metrics_size() - 1).step(), 90000);
  bool low_spike = false;
  for (const auto& m : zoomed->metrics()) {
    EXPECT_GE(m.step(), 10000);
    EXPECT_LE(m.step(), 90000);
    low_spike |= m.step() == 77777;
  }
  EXPECT_TRUE(low_spike);

  // A narrow range is read point by point: every point.
  request.set_min_step(30000);
  request.set_max_step(30500);
  request.set_max_points(1001);
  auto narrow = store_->GetMetricHistory(request);
  ASSERT_TRUE(narrow.ok());
  EXPECT_EQ(narrow->metrics_size(), 501);

  // Points logged later, out of step order, merge into their tiles.
  v1::LogBatchRequest late;
  late.set_run_id(run.id());
  *late.add_metrics() = Point("curve", 1000.0, 42, 5);  // beside step 42's point (time 1000)
  ASSERT_OK(store_->LogBatch(late));
  request.clear_min_step();
  request.clear_max_step();
  request.set_max_points(301);
  auto again = store_->GetMetricHistory(request);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->total_points(), n + 1);
  bool late_spike = false;
  for (const auto& m : again->metrics()) late_spike |= m.step() == 42 && m.value() == 1000.0;
  EXPECT_TRUE(late_spike);
}

TEST_F(MetadataStoreTest, EachMetricKeepsItsMinMaxAndCountAcrossBatches) {
  auto experiment = MakeExperiment("e");
  auto run = MakeRun(experiment.id());
  v1::LogBatchRequest batch;
  batch.set_run_id(run.id());
  *batch.add_metrics() = Point("loss", 2.5, 0);
  *batch.add_metrics() = Point("loss", std::nan(""), 1);  // never the min or max
  *batch.add_metrics() = Point("loss", 0.5, 2);
  *batch.add_metrics() = Point("only_nan", std::nan(""), 0);
  v1::MetricSeries* series = batch.add_series();
  series->set_key("acc");
  for (double v : {0.1, 0.9, 0.4}) series->add_values(v);
  ASSERT_OK(store_->LogBatch(batch));
  v1::LogBatchRequest more;
  more.set_run_id(run.id());
  *more.add_metrics() = Point("loss", 1.0, 3);  // the last value, neither min nor max
  *more.add_metrics() = Point("loss", -INFINITY, 4);
  ASSERT_OK(store_->LogBatch(more));

  auto stored = store_->GetRun(run.id());
  ASSERT_TRUE(stored.ok());
  std::map<std::string, v1::MetricSummary> summaries;
  for (const auto& s : stored->metric_summaries()) summaries[s.key()] = s;
  ASSERT_EQ(summaries.size(), 3u);
  EXPECT_EQ(summaries["loss"].min(), -INFINITY);
  EXPECT_DOUBLE_EQ(summaries["loss"].max(), 2.5);
  EXPECT_EQ(summaries["loss"].count(), 5);
  EXPECT_DOUBLE_EQ(summaries["acc"].min(), 0.1);
  EXPECT_DOUBLE_EQ(summaries["acc"].max(), 0.9);
  EXPECT_EQ(summaries["acc"].count(), 3);
  EXPECT_TRUE(std::isnan(summaries["only_nan"].min()));
  EXPECT_TRUE(std::isnan(summaries["only_nan"].max()));
  EXPECT_EQ(summaries["only_nan"].count(), 1);

  // A refused batch changes no summary.
  v1::LogBatchRequest bad;
  bad.set_run_id(run.id());
  *bad.add_metrics() = Point("loss", -50, 5);
  *bad.add_metrics() = Point("", 1, 5);
  EXPECT_FALSE(store_->LogBatch(bad).ok());
  auto again = store_->GetRun(run.id());
  ASSERT_TRUE(again.ok());
  for (const auto& s : again->metric_summaries()) {
    if (s.key() == "loss") {
      EXPECT_EQ(s.min(), -INFINITY);
    }
  }
}

TEST_F(MetadataStoreTest, EverythingSurvivesReopen) {
  auto experiment = MakeExperiment("e");
  auto run = MakeRun(experiment.id(), {{"lr", "0.1"}});
  v1::LogBatchRequest batch;
  batch.set_run_id(run.id());
  *batch.add_metrics() = Point("acc", 0.5, 1);
  ASSERT_OK(store_->LogBatch(batch));
  Reopen();
  auto stored = store_->GetRun(run.id());
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->params().at("lr"), "0.1");
  v1::SearchRunsRequest search;
  search.add_experiment_ids(experiment.id());
  search.set_filter("metrics.acc = 0.5");
  auto found = store_->SearchRuns(search);
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->runs_size(), 1);
  EXPECT_EQ(found->runs(0).id(), run.id());
}

TEST_F(MetadataStoreTest, DeletedRunsAreHiddenFromSearchUntilRestored) {
  auto experiment = MakeExperiment("e");
  auto a = MakeRun(experiment.id());
  auto b = MakeRun(experiment.id());
  ASSERT_TRUE(store_->SetRunLifecycle(a.id(), v1::DELETED).ok());
  v1::SearchRunsRequest search;
  search.add_experiment_ids(experiment.id());
  auto active = store_->SearchRuns(search);
  ASSERT_EQ(active->runs_size(), 1);
  EXPECT_EQ(active->runs(0).id(), b.id());
  search.set_view(v1::DELETED_ONLY);
  EXPECT_EQ(store_->SearchRuns(search)->runs(0).id(), a.id());
  search.set_view(v1::ALL);
  EXPECT_EQ(store_->SearchRuns(search)->runs_size(), 2);
  v1::LogBatchRequest batch;
  batch.set_run_id(a.id());
  (*batch.mutable_tags())["x"] = "y";
  EXPECT_THAT(store_->LogBatch(batch), StatusIs(absl::StatusCode::kFailedPrecondition, "deleted"));
  ASSERT_TRUE(store_->SetRunLifecycle(a.id(), v1::ACTIVE).ok());
  EXPECT_OK(store_->LogBatch(batch));
  EXPECT_OK(store_->DeleteTag(a.id(), "x"));
  EXPECT_THAT(store_->DeleteTag(a.id(), "x"), StatusIs(absl::StatusCode::kNotFound, "no tag"));
}

TEST_F(MetadataStoreTest, RunsOfADeletedExperimentTakeNoWrites) {
  v1::Experiment experiment = MakeExperiment("doomed");
  v1::Run run = MakeRun(experiment.id(), {{"lr", "0.1"}});
  v1::LogBatchRequest tag;
  tag.set_run_id(run.id());
  (*tag.mutable_tags())["team"] = "a";
  ASSERT_OK(store_->LogBatch(tag));
  ASSERT_OK(store_->SetExperimentLifecycle(experiment.id(), v1::DELETED).status());

  v1::LogBatchRequest batch;
  batch.set_run_id(run.id());
  (*batch.mutable_params())["seed"] = "7";
  *batch.add_metrics() = Point("loss", 1.0, 0);
  EXPECT_THAT(store_->LogBatch(batch),
              StatusIs(absl::StatusCode::kFailedPrecondition, "which is deleted"));
  v1::UpdateRunRequest finish;
  finish.mutable_run()->set_id(run.id());
  finish.mutable_run()->set_status(v1::FINISHED);
  finish.mutable_update_mask()->add_paths("status");
  EXPECT_THAT(store_->UpdateRun(finish).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "restore the experiment"));
  EXPECT_THAT(store_->DeleteTag(run.id(), "team"),
              StatusIs(absl::StatusCode::kFailedPrecondition, experiment.id()));
  // Nothing of it was stored.
  auto stored = store_->GetRun(run.id());
  ASSERT_OK(stored.status());
  EXPECT_EQ(stored->status(), v1::RUNNING);
  EXPECT_EQ(stored->params().size(), 1u);
  EXPECT_EQ(stored->tags().at("team"), "a");
  EXPECT_EQ(stored->latest_metrics_size(), 0);
  // A deleted run cannot be restored into a deleted experiment; after restoring it, writes work.
  ASSERT_OK(store_->SetRunLifecycle(run.id(), v1::DELETED).status());
  EXPECT_THAT(store_->SetRunLifecycle(run.id(), v1::ACTIVE).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "restore the experiment first"));
  ASSERT_OK(store_->SetExperimentLifecycle(experiment.id(), v1::ACTIVE).status());
  EXPECT_THAT(store_->LogBatch(batch),
              StatusIs(absl::StatusCode::kFailedPrecondition, "run " + run.id() + " is deleted"));
  ASSERT_OK(store_->SetRunLifecycle(run.id(), v1::ACTIVE).status());
  ASSERT_OK(store_->LogBatch(batch));
  ASSERT_OK(store_->UpdateRun(finish).status());
  ASSERT_OK(store_->DeleteTag(run.id(), "team"));
}

TEST_F(MetadataStoreTest, AnEmptyMetricKeyIsRejectedAnywhereInTheBatch) {
  v1::Run run = MakeRun(MakeExperiment("keys").id());
  for (int where = 0; where < 2; ++where) {
    v1::LogBatchRequest batch;
    batch.set_run_id(run.id());
    if (where == 1) *batch.add_metrics() = Point("ok", 1.0, 0);
    *batch.add_metrics() = Point("", 2.0, 0);
    EXPECT_THAT(store_->LogBatch(batch),
                StatusIs(absl::StatusCode::kInvalidArgument, "metric key: must not be empty"));
  }
  auto stored = store_->GetRun(run.id());
  ASSERT_OK(stored.status());
  EXPECT_EQ(stored->latest_metrics_size(), 0);
}

TEST_F(MetadataStoreTest, ACorruptRecordIsDataLossNamingWhereNotAnEmptyRun) {
  v1::Run run = MakeRun(MakeExperiment("corrupt").id());
  store_.reset();
  testing::CorruptRecord(dir_.path() + "/metadata", "runs", run.id());
  Reopen();
  EXPECT_THAT(store_->GetRun(run.id()).status(),
              StatusIs(absl::StatusCode::kDataLoss, "column family runs, key \"" + run.id()));
}

}  // namespace
}  // namespace mlops::metadata
