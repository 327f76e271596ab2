// The monitoring core without gRPC: windows closed into reports stored with the window in one
// batch, retraining submitted by a worker that no slow scheduler can make ingestion wait for,
// failures counted and the cooldown released, a pending retraining submitted after a restart,
// datasets from a source, and a corrupt record read as DATA_LOSS rather than as an empty one.
#include "services/monitoring/monitoring_store.h"

#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "services/common/status.h"
#include "tests/testing/testing.h"

namespace mlops::monitoring {
namespace {

using ::mlops::testing::StatusIs;

// A scheduler gateway whose answers the test decides: it can hold every call until released,
// answer with an error, or hand out run ids.
class ScriptedTrigger : public RetrainTrigger {
 public:
  absl::StatusOr<std::string> Submit(const RetrainRequest& request) override {
    std::unique_lock lock(mu_);
    ++calls_;
    requests_.push_back(request);
    cv_.notify_all();
    cv_.wait(lock, [&] { return !hold_; });
    if (!answer_.ok()) return answer_;
    return "run-" + request.request_id;
  }
  void Hold(bool hold) {
    std::lock_guard lock(mu_);
    hold_ = hold;
    cv_.notify_all();
  }
  void Answer(absl::Status status) {
    std::lock_guard lock(mu_);
    answer_ = std::move(status);
  }
  void WaitForCalls(int n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return calls_ >= n; });
  }
  int calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::vector<RetrainRequest> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  absl::Status answer_;
  int calls_ = 0;
  std::vector<RetrainRequest> requests_;
};

// Forwards to a trigger the test keeps (the store owns its gateways).
class TriggerRef : public RetrainTrigger {
 public:
  explicit TriggerRef(ScriptedTrigger* trigger) : trigger_(trigger) {}
  absl::StatusOr<std::string> Submit(const RetrainRequest& request) override {
    return trigger_->Submit(request);
  }

 private:
  ScriptedTrigger* trigger_;
};

// Datasets from memory: NAME@v1 holds one table of column x ~ N(mean, 1).
class MemoryDatasets : public DatasetSource {
 public:
  absl::StatusOr<Dataset> Read(const std::string& ref) override {
    if (ref != "shifted@v1" && ref != "nox@v1") return absl::NotFoundError("dataset " + ref);
    std::mt19937_64 rng(5);
    std::normal_distribution<double> normal(3, 1);
    Column column;
    column.name = ref == "nox@v1" ? "y" : "x";
    for (int i = 0; i < 1000; ++i) column.owned.push_back(normal(rng));
    std::vector<Column> columns;
    columns.push_back(std::move(column));
    Dataset dataset;
    dataset.resolved = ref;
    dataset.tables.push_back(Table::FromColumns(std::move(columns), 1000));
    return dataset;
  }
};

v1::SampleBatch Rows(const std::string& monitor, int n, double mean, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(mean, 1);
  v1::SampleBatch batch;
  batch.set_monitor(monitor);
  batch.add_numeric_columns("x");
  for (int i = 0; i < n; ++i) batch.add_numeric(normal(rng));
  return batch;
}

double CounterValue(prometheus::Registry& registry, const std::string& name,
                    const std::string& monitor) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      for (const auto& label : metric.label) {
        if (label.name == "monitor" && label.value == monitor) return metric.counter.value;
      }
    }
  }
  return -1;
}

class MonitoringStoreTest : public ::testing::Test {
 protected:
  MonitoringStoreTest() { Open(); }

  void Open(MonitoringStore::Options options = {}) {
    store_.reset();
    db_.reset();
    registry_ = std::make_unique<prometheus::Registry>();
    auto db = Db::Open(dir_.path() + "/db", MonitoringColumnFamilies(), Db::Options{});
    ASSERT_OK(db.status());
    db_ = std::move(*db);
    store_ = std::make_unique<MonitoringStore>(db_.get(), *registry_,
                                               std::make_unique<MemoryDatasets>(), nullptr,
                                               std::make_unique<TriggerRef>(&trigger_), options);
    load_ = store_->Load();
  }

  void Close() {
    store_.reset();
    db_.reset();
  }

  // A profile of x ~ N(0, 1) and a monitor over it, windows of 100 rows, retraining on alerts.
  void CreateMonitor(const std::string& name, int64_t cooldown_ms = 3600 * 1000) {
    v1::CreateProfileRequest profile;
    profile.set_name("p-" + name);
    *profile.mutable_samples() = Rows("", 2000, 0, 1);
    ASSERT_OK(store_->CreateProfile(profile).status());
    v1::Monitor monitor;
    monitor.set_name(name);
    monitor.set_profile("p-" + name);
    monitor.set_window_rows(100);
    monitor.set_cooldown_ms(cooldown_ms);
    auto* test = monitor.add_tests();
    test->set_kind(v1::DriftTest::PSI);
    test->set_threshold(0.2);
    monitor.set_retrain_pipeline_yaml(
        "name: retrain\nsteps:\n  - name: fit\n    command: [true]\n");
    (*monitor.mutable_retrain_params())["lr"] = "0.1";
    ASSERT_OK(store_->CreateMonitor(monitor).status());
  }

  absl::StatusOr<v1::IngestSamplesResponse> Ingest(std::vector<v1::SampleBatch> batches) {
    size_t next = 0;
    v1::IngestSamplesResponse response;
    absl::Status status = store_->IngestSamples(
        [&](v1::SampleBatch* batch) {
          if (next == batches.size()) return false;
          *batch = batches[next++];
          return true;
        },
        &response);
    if (!status.ok()) return status;
    return response;
  }

  std::vector<v1::Alert> Alerts(const std::string& monitor) {
    auto alerts = store_->ListAlerts(monitor, "", false);
    EXPECT_OK(alerts.status());
    return alerts.ok() ? *alerts : std::vector<v1::Alert>{};
  }

  testing::TempDir dir_;
  ScriptedTrigger trigger_;
  std::unique_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<MonitoringStore> store_;
  absl::Status load_;
};

TEST_F(MonitoringStoreTest, AClosedWindowIsStoredWithTheWindowThatFollowsIt) {
  ASSERT_OK(load_);
  CreateMonitor("m");
  // 150 rows: one report of 100, and 50 rows in the open window.
  auto ingested = Ingest({Rows("m", 150, 0, 2)});
  ASSERT_OK(ingested.status());
  ASSERT_EQ(ingested->closed_size(), 1);
  EXPECT_EQ(ingested->rows(), 150u);
  EXPECT_FALSE(ingested->closed(0).drifted());
  Open();
  ASSERT_OK(load_);
  auto reports = store_->ListReports("m", 10);
  ASSERT_OK(reports.status());
  ASSERT_EQ(reports->size(), 1u);
  EXPECT_EQ((*reports)[0].id(), ingested->closed(0).id());
  // The 50 stored rows and 50 more close the next window.
  ingested = Ingest({Rows("m", 50, 0, 3)});
  ASSERT_OK(ingested.status());
  ASSERT_EQ(ingested->closed_size(), 1);
  EXPECT_EQ(ingested->closed(0).rows(), 100u);
  EXPECT_EQ(CounterValue(*registry_, "mlops_monitoring_reports_total", "m"), 2);
}

TEST_F(MonitoringStoreTest, ABatchWithoutColumnNamesHasTheColumnsLastNamed) {
  ASSERT_OK(load_);
  CreateMonitor("m");
  v1::SampleBatch unnamed = Rows("", 30, 0, 4);
  unnamed.clear_numeric_columns();
  auto ingested = Ingest({Rows("m", 30, 0, 3), unnamed});
  ASSERT_OK(ingested.status());
  EXPECT_EQ(ingested->rows(), 60u);
  // The first batch of a call must name them.
  unnamed.set_monitor("m");
  EXPECT_THAT(Ingest({unnamed}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "the first batch names its columns"));
}

TEST_F(MonitoringStoreTest, ASchedulerThatHangsHoldsUpNoIngestion) {
  ASSERT_OK(load_);
  CreateMonitor("a");
  CreateMonitor("b");
  trigger_.Hold(true);
  // A drifted window alerts; its retraining reaches the scheduler, which does not answer.
  auto drifted = Ingest({Rows("a", 100, 3, 5)});
  ASSERT_OK(drifted.status());
  ASSERT_EQ(drifted->closed_size(), 1);
  EXPECT_TRUE(drifted->closed(0).drifted());
  trigger_.WaitForCalls(1);
  auto alerts = Alerts("a");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].retrain(), v1::RETRAIN_PENDING);
  // Meanwhile both monitors take samples and close windows.
  const auto start = std::chrono::steady_clock::now();
  for (const std::string monitor : {"a", "b"}) {
    auto more = Ingest({Rows(monitor, 100, 0, 6)});
    ASSERT_OK(more.status());
    EXPECT_EQ(more->closed_size(), 1);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  trigger_.Hold(false);
  store_->WaitForRetrains();
  alerts = Alerts("a");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].retrain(), v1::RETRAIN_SUBMITTED);
  EXPECT_EQ(alerts[0].pipeline_run_id(), "run-" + alerts[0].id());
  ASSERT_EQ(trigger_.requests().size(), 1u);
  EXPECT_EQ(trigger_.requests()[0].request_id, alerts[0].id());
  EXPECT_EQ(trigger_.requests()[0].params.at("lr"), "0.1");
  EXPECT_EQ(CounterValue(*registry_, "mlops_monitoring_retrains_total", "a"), 1);
}

TEST_F(MonitoringStoreTest, AFailedRetrainingIsCountedAndTheNextAlertTriesAgain) {
  MonitoringStore::Options options;
  options.retrain_attempts = 3;
  options.retrain_backoff_ms = 1;
  Open(options);
  ASSERT_OK(load_);
  CreateMonitor("m");
  trigger_.Answer(absl::UnavailableError("scheduler down"));
  ASSERT_OK(Ingest({Rows("m", 100, 3, 7)}).status());
  store_->WaitForRetrains();
  EXPECT_EQ(trigger_.calls(), 3);  // retried while unavailable
  auto alerts = Alerts("m");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].retrain(), v1::RETRAIN_FAILED);
  EXPECT_EQ(alerts[0].retrain_error(), "scheduler down");
  EXPECT_EQ(alerts[0].pipeline_run_id(), "");
  EXPECT_EQ(CounterValue(*registry_, "mlops_monitoring_retrain_failures_total", "m"), 1);
  // The cooldown was released: the next alert submits again; a refusal is not retried.
  trigger_.Answer(absl::InvalidArgumentError("bad spec"));
  ASSERT_OK(Ingest({Rows("m", 100, 3, 8)}).status());
  store_->WaitForRetrains();
  EXPECT_EQ(trigger_.calls(), 4);
  EXPECT_EQ(CounterValue(*registry_, "mlops_monitoring_retrain_failures_total", "m"), 2);
  // A submission that works starts a cooldown: the alert after it retrains nothing.
  trigger_.Answer(absl::OkStatus());
  ASSERT_OK(Ingest({Rows("m", 100, 3, 9)}).status());
  ASSERT_OK(Ingest({Rows("m", 100, 3, 10)}).status());
  store_->WaitForRetrains();
  EXPECT_EQ(trigger_.calls(), 5);
  alerts = Alerts("m");
  ASSERT_EQ(alerts.size(), 4u);
  EXPECT_EQ(alerts[0].retrain(), v1::RETRAIN_NONE);
  EXPECT_EQ(alerts[1].retrain(), v1::RETRAIN_SUBMITTED);
  EXPECT_EQ(CounterValue(*registry_, "mlops_monitoring_alerts_total", "m"), 4);
}

TEST_F(MonitoringStoreTest, APendingRetrainingIsSubmittedAfterARestart) {
  MonitoringStore::Options options;
  options.retrain_attempts = 1000;
  options.retrain_backoff_ms = 60000;
  Open(options);
  ASSERT_OK(load_);
  CreateMonitor("m");
  trigger_.Answer(absl::UnavailableError("scheduler down"));
  ASSERT_OK(Ingest({Rows("m", 100, 3, 11)}).status());
  trigger_.WaitForCalls(1);
  Close();  // the worker stops in its backoff: the alert stays PENDING
  trigger_.Answer(absl::OkStatus());
  Open();
  ASSERT_OK(load_);
  store_->WaitForRetrains();
  auto alerts = Alerts("m");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].retrain(), v1::RETRAIN_SUBMITTED);
  EXPECT_EQ(alerts[0].pipeline_run_id(), "run-" + alerts[0].id());
  EXPECT_EQ(trigger_.requests().back().request_id, alerts[0].id());
  EXPECT_EQ(trigger_.calls(), 2);
}

TEST_F(MonitoringStoreTest, DatasetsComeFromTheSource) {
  ASSERT_OK(load_);
  CreateMonitor("m");
  trigger_.Hold(false);
  v1::EvaluateDatasetRequest request;
  request.set_monitor("m");
  request.set_dataset("shifted@v1");
  auto report = store_->EvaluateDataset(request);
  ASSERT_OK(report.status());
  EXPECT_EQ(report->source(), "dataset shifted@v1");
  EXPECT_EQ(report->rows(), 1000u);
  EXPECT_TRUE(report->drifted());
  request.set_dataset("nox@v1");
  EXPECT_THAT(store_->EvaluateDataset(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "dataset nox@v1 has no column x"));
  request.set_dataset("nowhere@v1");
  EXPECT_THAT(store_->EvaluateDataset(request).status(),
              StatusIs(absl::StatusCode::kNotFound, "nowhere"));
  // Against a profile nothing is stored.
  request.clear_monitor();
  request.set_profile("p-m");
  request.set_dataset("shifted@v1");
  request.add_tests()->set_kind(v1::DriftTest::KS);
  ASSERT_OK(store_->EvaluateDataset(request).status());
  store_->WaitForRetrains();
  auto reports = store_->ListReports("m", 10);
  ASSERT_OK(reports.status());
  EXPECT_EQ(reports->size(), 1u);
}

TEST_F(MonitoringStoreTest, ACorruptRecordIsDataLossNotAnEmptyOne) {
  ASSERT_OK(load_);
  CreateMonitor("m");
  ASSERT_OK(Ingest({Rows("m", 100, 3, 12)}).status());
  store_->WaitForRetrains();
  const std::string alert = Alerts("m").at(0).id();
  Close();
  testing::CorruptRecord(dir_.path() + "/db", kAlertsCf, alert);
  Open();
  EXPECT_THAT(load_, StatusIs(absl::StatusCode::kDataLoss, "column family mon_alerts"));
  Close();
  testing::CorruptRecord(dir_.path() + "/db", kMonitorsCf, "m");
  testing::SetRecord(dir_.path() + "/db", kAlertsCf, alert, v1::Alert().SerializeAsString());
  Open();
  EXPECT_THAT(load_, StatusIs(absl::StatusCode::kDataLoss, "column family mon_monitors, key \"m"));
}

TEST_F(MonitoringStoreTest, WindowsAreCheckedAgainstTheMonitorsSchemaAcrossARestart) {
  ASSERT_OK(load_);
  v1::Schema schema;
  schema.set_name("serving");
  auto* x = schema.add_features();
  x->set_name("x");
  x->set_type(v1::FeatureSchema::FLOAT);
  x->set_min(-5);
  x->set_max(5);
  auto* colour = schema.add_features();
  colour->set_name("colour");
  colour->set_type(v1::FeatureSchema::CATEGORY);
  colour->add_values("red");
  colour->add_values("green");
  ASSERT_OK(store_->PutSchema(schema).status());
  v1::CreateProfileRequest profile;
  profile.set_name("p-skew");
  *profile.mutable_samples() = Rows("", 2000, 0, 1);
  ASSERT_OK(store_->CreateProfile(profile).status());
  v1::Monitor monitor;
  monitor.set_name("skew");
  monitor.set_profile("p-skew");
  monitor.set_window_rows(100);
  monitor.set_retrain_pipeline_yaml("name: retrain\nsteps:\n  - name: fit\n    command: [true]\n");
  monitor.set_schema("nosuch");
  EXPECT_THAT(store_->CreateMonitor(monitor).status(),
              StatusIs(absl::StatusCode::kNotFound, "schema: dataset nosuch has no schema"));
  monitor.set_schema("serving");
  monitor.set_schema_version(5);
  EXPECT_THAT(store_->CreateMonitor(monitor).status(),
              StatusIs(absl::StatusCode::kNotFound, "version 5"));
  monitor.set_schema_version(0);
  auto created = store_->CreateMonitor(monitor);
  ASSERT_OK(created.status());
  EXPECT_EQ(created->schema_version(), 1);  // the latest, resolved at creation

  // Rows with x (watched and checked) and colour (only checked); `odd` rows break the schema.
  auto rows = [](int n, uint64_t seed, std::map<int, double> bad_x,
                 std::map<int, std::string> bad_colour) {
    v1::SampleBatch batch = Rows("skew", n, 0, seed);
    batch.add_categorical_columns("colour");
    for (int i = 0; i < n; ++i) {
      if (bad_x.contains(i)) batch.set_numeric(i, bad_x[i]);
      batch.add_categorical(bad_colour.contains(i) ? bad_colour[i] : "red");
    }
    return batch;
  };
  auto first = Ingest({rows(60, 2, {{3, 50}, {9, -70}}, {{4, "blue"}})});
  ASSERT_OK(first.status());
  EXPECT_EQ(first->closed_size(), 0);
  Open();  // a restart in the middle of the window: what it counted is kept
  ASSERT_OK(load_);
  auto second = Ingest({rows(40, 3, {{1, 99}}, {{2, "purple"}})});
  ASSERT_OK(second.status());
  ASSERT_EQ(second->closed_size(), 1);
  const v1::DriftReport& report = second->closed(0);
  ASSERT_EQ(report.anomalies_size(), 2) << report.DebugString();
  EXPECT_EQ(report.anomalies(0).kind(), v1::Anomaly::OUT_OF_RANGE);
  EXPECT_EQ(report.anomalies(0).rows(), 3u);
  EXPECT_EQ(report.anomalies(0).found(), "[-70, 99]");
  EXPECT_EQ(report.anomalies(1).kind(), v1::Anomaly::UNSEEN_CATEGORY);
  EXPECT_THAT(report.anomalies(1).examples(), ::testing::ElementsAre("blue", "purple"));
  EXPECT_FALSE(report.drifted());
  // Skew alerts, and retrains nothing.
  store_->WaitForRetrains();
  auto alerts = Alerts("skew");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_THAT(alerts[0].reason(),
              ::testing::HasSubstr("skew: 2 anomalies against schema serving@1 (x: 3 values"));
  EXPECT_EQ(alerts[0].retrain(), v1::RETRAIN_NONE);
  EXPECT_EQ(trigger_.calls(), 0);
  // The next window starts clean.
  auto clean = Ingest({rows(100, 4, {}, {})});
  ASSERT_OK(clean.status());
  ASSERT_EQ(clean->closed_size(), 1);
  EXPECT_EQ(clean->closed(0).anomalies_size(), 0);
  EXPECT_EQ(Alerts("skew").size(), 1u);
}

}  // namespace
}  // namespace mlops::monitoring
