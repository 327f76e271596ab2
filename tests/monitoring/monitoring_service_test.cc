// The monitoring service over gRPC, in a server that also hosts the metadata, artifact and
// scheduler services: profiles from samples and from dataset versions (CSV and .mlcol), windows
// closed by rows, drift found where the data moved and nowhere else, performance from delayed
// labels, alerts with acknowledgement, retraining submitted once per cooldown, and bad input
// refused without touching what is stored.
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "mlops/metadata/v1/lineage.grpc.pb.h"
#include "mlops/metadata/v1/registry.grpc.pb.h"
#include "mlops/monitoring/v1/monitoring.grpc.pb.h"
#include "mlops/scheduler/v1/scheduler.grpc.pb.h"
#include "services/artifact/artifact_component.h"
#include "services/artifact/client/artifact_client.h"
#include "services/common/grpc_status.h"
#include "services/common/status.h"
#include "services/metadata/metadata_component.h"
#include "services/monitoring/monitoring_component.h"
#include "services/monitoring/table.h"
#include "services/scheduler/scheduler_component.h"
#include "tests/testing/testing.h"

namespace mlops::monitoring {
namespace {

using ::mlops::testing::GrpcStatusIs;

class MonitoringServiceTest : public ::testing::Test {
 protected:
  MonitoringServiceTest()
      : server_({metadata::OpenMetadataComponent, artifact::OpenArtifactComponent,
                 scheduler::OpenSchedulerComponent, OpenMonitoringComponent},
                /*metrics=*/false),
        stub_(v1::MonitoringService::NewStub(server_.NewChannel())) {}

  // Rows of (x ~ N(mean, 1), colour from `colours`), numeric row-major.
  v1::SampleBatch Rows(const std::string& monitor, int n, double mean,
                       std::vector<std::string> colours, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(mean, 1);
    v1::SampleBatch batch;
    batch.set_monitor(monitor);
    batch.add_numeric_columns("x");
    batch.add_categorical_columns("colour");
    for (int i = 0; i < n; ++i) {
      batch.add_numeric(normal(rng));
      batch.add_categorical(colours[rng() % colours.size()]);
    }
    return batch;
  }

  v1::Profile CreateProfile(const std::string& name, v1::SampleBatch samples) {
    v1::CreateProfileRequest request;
    request.set_name(name);
    *request.mutable_samples() = std::move(samples);
    v1::Profile profile;
    grpc::ClientContext context;
    EXPECT_OK(::mlops::FromGrpcStatus(stub_->CreateProfile(&context, request, &profile)));
    return profile;
  }

  grpc::Status CreateMonitor(const v1::Monitor& monitor, v1::Monitor* created = nullptr) {
    v1::Monitor out;
    grpc::ClientContext context;
    grpc::Status status = stub_->CreateMonitor(&context, monitor, &out);
    if (created != nullptr) *created = out;
    return status;
  }

  grpc::Status Ingest(const std::vector<v1::SampleBatch>& batches,
                      v1::IngestSamplesResponse* response) {
    grpc::ClientContext context;
    auto writer = stub_->IngestSamples(&context, response);
    for (const auto& batch : batches) {
      if (!writer->Write(batch)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  std::vector<v1::Alert> Alerts(const std::string& monitor) {
    v1::ListAlertsRequest request;
    request.set_monitor(monitor);
    v1::ListAlertsResponse response;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->ListAlerts(&context, request, &response).ok());
    return {response.alerts().begin(), response.alerts().end()};
  }

  // Dataset `customers`: v1, 200 clean rows; v2, the same with an age out of range, an unseen
  // plan, a repeated id, missing incomes and a leaked label column. Files under `dir`.
  void PushCustomers(const std::string& dir) {
    auto write = [&](const std::string& sub, bool bad) {
      std::filesystem::create_directories(dir + "/" + sub);
      std::ofstream csv(dir + "/" + sub + "/customers.csv");
      csv << "id,age,plan,income" << (bad ? ",label" : "") << "\n";
      for (int i = 0; i < 200; ++i) {
        int id = bad && i == 7 ? 3 : i;
        int age = bad && i % 50 == 0 ? 150 : 18 + i % 60;
        std::string plan = bad && i == 11 ? "gold" : (i % 3 == 0 ? "pro" : "basic");
        std::string income = bad && i % 10 == 1 ? "" : std::to_string(1000 + i * 10.5);
        csv << id << "," << age << "," << plan << "," << income << (bad ? ",1" : "") << "\n";
      }
    };
    write("v1", false);
    write("v2", true);
    artifact::ArtifactClient client(server_.NewChannel());
    ASSERT_OK(client.Push(dir + "/v1", "customers", {"v1"}, "", nullptr).status());
    ASSERT_OK(client.Push(dir + "/v2", "customers", {"v2"}, "", nullptr).status());
  }

  // Version N+1 of registered model `model` (created with its first version), its content
  // digest 64 x `fill`, its lineage Model artifact `artifact_id` (0: none).
  void AddVersion(const std::string& model, char fill, int64_t artifact_id = 0) {
    auto registry = metadata::v1::ModelRegistry::NewStub(server_.NewChannel());
    metadata::v1::CreateModelVersionRequest version;
    version.set_name(model);
    version.set_create_model(true);
    version.set_artifact_digest(std::string(64, fill));
    version.set_artifact_id(artifact_id);
    metadata::v1::ModelVersion created;
    grpc::ClientContext context;
    ASSERT_TRUE(registry->CreateModelVersion(&context, version, &created).ok());
  }

  // Points `model`@production at `version`.
  grpc::Status SetProduction(const std::string& model, int64_t version, bool override = false,
                             const std::string& reason = "") {
    auto registry = metadata::v1::ModelRegistry::NewStub(server_.NewChannel());
    metadata::v1::SetAliasRequest alias;
    alias.set_name(model);
    alias.set_alias("production");
    alias.set_version(version);
    alias.set_override(override);
    alias.set_reason(reason);
    metadata::v1::AliasMove move;
    grpc::ClientContext context;
    return registry->SetAlias(&context, alias, &move);
  }

  testing::InProcessServer server_;
  std::unique_ptr<v1::MonitoringService::Stub> stub_;
};

TEST_F(MonitoringServiceTest, WindowsCloseIntoReportsAndDriftRaisesOneAlert) {
  v1::Profile profile = CreateProfile("train", Rows("", 5000, 0, {"red", "green", "blue"}, 1));
  EXPECT_EQ(profile.version(), 1);
  EXPECT_EQ(profile.rows(), 5000u);
  ASSERT_EQ(profile.features_size(), 2);
  EXPECT_EQ(profile.features(0).kind(), v1::NUMERIC);
  EXPECT_EQ(profile.features(1).kind(), v1::CATEGORICAL);
  EXPECT_EQ(CreateProfile("train", Rows("", 100, 0, {"red"}, 2)).version(), 2);

  v1::Monitor monitor;
  monitor.set_name("churn");
  monitor.set_profile("train");
  monitor.set_profile_version(1);
  monitor.set_window_rows(1000);
  v1::Monitor created;
  ASSERT_TRUE(CreateMonitor(monitor, &created).ok());
  EXPECT_EQ(created.features_size(), 2);  // every feature of the profile
  EXPECT_EQ(created.drift_share_threshold(), 0.5);
  EXPECT_THAT(CreateMonitor(monitor), GrpcStatusIs(grpc::StatusCode::ALREADY_EXISTS, "churn"));

  // 2,500 stable rows in three batches: two windows close, neither drifted.
  v1::IngestSamplesResponse response;
  ASSERT_TRUE(Ingest({Rows("churn", 1200, 0, {"red", "green", "blue"}, 3),
                      Rows("", 800, 0, {"red", "green", "blue"}, 4),
                      Rows("", 500, 0, {"red", "green", "blue"}, 5)},
                     &response)
                  .ok());
  EXPECT_EQ(response.rows(), 2500u);
  ASSERT_EQ(response.closed_size(), 2);
  for (const auto& report : response.closed()) {
    EXPECT_EQ(report.rows(), 1000u);
    EXPECT_FALSE(report.drifted()) << report.DebugString();
    EXPECT_EQ(report.features_size(), 2);
  }
  EXPECT_TRUE(Alerts("churn").empty());

  // x moves by 1.5 and a colour never seen appears: the next window drifts, on both features.
  ASSERT_TRUE(Ingest({Rows("churn", 500, 1.5, {"purple", "red"}, 6)}, &response).ok());
  ASSERT_EQ(response.closed_size(), 1);  // the 500 rows left open plus these 500
  const v1::DriftReport& drifted = response.closed(0);
  EXPECT_TRUE(drifted.drifted());
  EXPECT_EQ(drifted.drift_share(), 1.0);
  for (const auto& feature : drifted.features()) EXPECT_TRUE(feature.drifted()) << feature.name();
  auto alerts = Alerts("churn");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].report_id(), drifted.id());
  EXPECT_THAT(alerts[0].reason(), ::testing::HasSubstr("drift share 1 >= 0.5"));

  v1::ListReportsRequest list;
  list.set_monitor("churn");
  v1::ListReportsResponse reports;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->ListReports(&context, list, &reports).ok());
  ASSERT_EQ(reports.reports_size(), 3);
  EXPECT_EQ(reports.reports(0).id(), drifted.id());  // newest first

  v1::AcknowledgeAlertRequest ack;
  ack.set_id(alerts[0].id());
  ack.set_by("oncall");
  v1::Alert acked;
  grpc::ClientContext ack_context;
  ASSERT_TRUE(stub_->AcknowledgeAlert(&ack_context, ack, &acked).ok());
  EXPECT_TRUE(acked.acknowledged());
  EXPECT_EQ(acked.acknowledged_by(), "oncall");
  v1::ListAlertsRequest open;
  open.set_unacknowledged_only(true);
  v1::ListAlertsResponse none;
  grpc::ClientContext open_context;
  ASSERT_TRUE(stub_->ListAlerts(&open_context, open, &none).ok());
  EXPECT_EQ(none.alerts_size(), 0);
}

TEST_F(MonitoringServiceTest, DatasetsProfileAndEvaluateInBothFormats) {
  testing::TempDir dir;
  // Reference: a CSV; production: a .mlcol file where only `b` moved.
  std::mt19937_64 rng(9);
  std::normal_distribution<double> normal(0, 1);
  std::filesystem::create_directories(dir.path() + "/ref");
  {
    std::ofstream csv(dir.path() + "/ref/part.csv");
    csv << "a,b,city\n";
    for (int i = 0; i < 4000; ++i) {
      csv << normal(rng) << "," << normal(rng) << "," << (i % 3 == 0 ? "paris" : "oslo") << "\n";
    }
  }
  std::filesystem::create_directories(dir.path() + "/prod");
  {
    std::vector<Column> columns(3);
    columns[0].name = "a";
    columns[1].name = "b";
    columns[2].name = "city";
    columns[2].numeric = false;
    for (int i = 0; i < 3000; ++i) {
      columns[0].owned.push_back(normal(rng));
      columns[1].owned.push_back(normal(rng) * 3 + 2);
      columns[2].strings.push_back(i % 3 == 0 ? "paris" : "oslo");
    }
    columns[0].values = columns[0].owned.data();
    columns[1].values = columns[1].owned.data();
    ASSERT_OK(WriteColumnar(dir.path() + "/prod/part.mlcol", columns, 3000));
  }
  artifact::ArtifactClient client(server_.NewChannel());
  ASSERT_OK(client.Push(dir.path() + "/ref", "reference", {"v1"}, "", nullptr).status());
  ASSERT_OK(client.Push(dir.path() + "/prod", "production", {"v1"}, "", nullptr).status());

  v1::CreateProfileRequest request;
  request.set_name("ref");
  request.set_dataset("reference@v1");
  v1::Profile profile;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->CreateProfile(&context, request, &profile).ok());
  EXPECT_EQ(profile.rows(), 4000u);
  EXPECT_THAT(profile.source(), ::testing::StartsWith("dataset reference@"));
  ASSERT_EQ(profile.features_size(), 3);
  EXPECT_EQ(profile.features(2).kind(), v1::CATEGORICAL);

  v1::Monitor monitor;
  monitor.set_name("m");
  monitor.set_profile("ref");
  monitor.add_tests()->set_kind(v1::DriftTest::KS);
  monitor.add_tests()->set_kind(v1::DriftTest::JENSEN_SHANNON);
  ASSERT_TRUE(CreateMonitor(monitor).ok());
  v1::EvaluateDatasetRequest evaluate;
  evaluate.set_monitor("m");
  evaluate.set_dataset("production@v1");
  v1::DriftReport report;
  grpc::ClientContext evaluate_context;
  ASSERT_TRUE(stub_->EvaluateDataset(&evaluate_context, evaluate, &report).ok());
  EXPECT_EQ(report.rows(), 3000u);
  ASSERT_EQ(report.features_size(), 3);
  EXPECT_FALSE(report.features(0).drifted()) << report.features(0).DebugString();
  EXPECT_TRUE(report.features(1).drifted());
  EXPECT_FALSE(report.features(2).drifted()) << report.features(2).DebugString();
  EXPECT_EQ(report.features(2).tests_size(), 1);  // JS only: KS does not apply to categories
  EXPECT_NEAR(report.drift_share(), 1.0 / 3, 1e-12);
  EXPECT_FALSE(report.drifted());  // under the default share of 0.5

  grpc::ClientContext missing_context;
  evaluate.set_dataset("nowhere@v1");
  EXPECT_THAT(stub_->EvaluateDataset(&missing_context, evaluate, &report),
              GrpcStatusIs(grpc::StatusCode::NOT_FOUND, ""));
}

TEST_F(MonitoringServiceTest, LabelsGiveAccuracyAndADegradedModelRetrainsOncePerCooldown) {
  CreateProfile("p", Rows("", 2000, 0, {"a", "b"}, 11));
  v1::Monitor monitor;
  monitor.set_name("fraud");
  monitor.set_profile("p");
  monitor.set_window_rows(100);
  monitor.set_task("classification");
  monitor.set_baseline(0.9);
  monitor.set_max_degradation(0.05);
  monitor.set_retrain_pipeline_yaml("name: retrain\nsteps:\n  - name: fit\n    command: [true]\n");
  monitor.set_cooldown_ms(3600 * 1000);
  ASSERT_TRUE(CreateMonitor(monitor).ok());
  // Two windows of stable features whose predictions turn out 70% right.
  for (int window = 0; window < 2; ++window) {
    v1::SampleBatch batch = Rows("fraud", 99, 0, {"a", "b"}, 20 + window);
    for (int i = 0; i < 99; ++i) {
      batch.add_request_ids("w" + std::to_string(window) + "-" + std::to_string(i));
      batch.add_predictions(1);
    }
    v1::IngestSamplesResponse ingested;
    ASSERT_TRUE(Ingest({batch}, &ingested).ok());
    EXPECT_EQ(ingested.closed_size(), 0);
    v1::FeedbackBatch feedback;
    feedback.set_monitor("fraud");
    for (int i = 0; i < 99; ++i) {
      feedback.add_request_ids("w" + std::to_string(window) + "-" + std::to_string(i));
      feedback.add_labels(i % 10 < 7 ? 1 : 0);
    }
    feedback.add_request_ids("never-seen");
    feedback.add_labels(1);
    v1::IngestFeedbackResponse matched;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->IngestFeedback(&context, feedback, &matched).ok());
    EXPECT_EQ(matched.matched(), 99u);
    EXPECT_EQ(matched.unmatched(), 1u);
    // The 100th row closes the window.
    ASSERT_TRUE(Ingest({Rows("fraud", 1, 0, {"a"}, 30 + window)}, &ingested).ok());
    ASSERT_EQ(ingested.closed_size(), 1);
    const v1::DriftReport& report = ingested.closed(0);
    EXPECT_EQ(report.labeled(), 99u);
    EXPECT_NEAR(report.accuracy(), 70.0 / 99, 1e-12);
    EXPECT_TRUE(report.degraded());
  }
  auto alerts = Alerts("fraud");
  ASSERT_EQ(alerts.size(), 2u);
  EXPECT_THAT(alerts[1].reason(), ::testing::HasSubstr("below baseline 0.9 - 0.05"));
  // The first alert's retraining is submitted by a worker once the alert is stored.
  for (int i = 0; i < 1000 && alerts[1].retrain() == v1::RETRAIN_PENDING; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    alerts = Alerts("fraud");
  }
  EXPECT_EQ(alerts[1].retrain(), v1::RETRAIN_SUBMITTED);
  EXPECT_EQ(alerts[0].retrain(), v1::RETRAIN_NONE);
  // The first alert submitted a retraining run; the second fell in its cooldown.
  EXPECT_EQ(alerts[0].pipeline_run_id(), "");
  ASSERT_NE(alerts[1].pipeline_run_id(), "");
  auto scheduler = scheduler::v1::SchedulerService::NewStub(server_.NewChannel());
  scheduler::v1::GetPipelineRunRequest get;
  get.set_id(alerts[1].pipeline_run_id());
  scheduler::v1::PipelineRun run;
  grpc::ClientContext context;
  ASSERT_TRUE(scheduler->GetPipelineRun(&context, get, &run).ok());
  EXPECT_EQ(run.pipeline(), "retrain");
}

TEST_F(MonitoringServiceTest, BadInputIsRefusedAndLeavesTheWindowAlone) {
  CreateProfile("p", Rows("", 500, 0, {"a"}, 1));
  v1::Monitor monitor;
  monitor.set_name("m");
  monitor.set_profile("p");
  monitor.set_window_rows(1000);
  ASSERT_TRUE(CreateMonitor(monitor).ok());

  v1::Monitor bad = monitor;
  bad.set_name("bad name!");
  EXPECT_THAT(CreateMonitor(bad), GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "name"));
  bad.set_name("other");
  bad.set_profile("nope");
  EXPECT_THAT(CreateMonitor(bad), GrpcStatusIs(grpc::StatusCode::NOT_FOUND, "profile nope"));
  bad.set_profile("p");
  bad.add_features("height");
  EXPECT_THAT(CreateMonitor(bad), GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "height"));
  bad.clear_features();
  bad.set_task("ranking");
  EXPECT_THAT(CreateMonitor(bad), GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "task"));
  bad.set_task("");
  bad.set_model("no-such-model");
  EXPECT_THAT(CreateMonitor(bad), GrpcStatusIs(grpc::StatusCode::NOT_FOUND, "model"));

  v1::IngestSamplesResponse response;
  EXPECT_THAT(Ingest({Rows("ghost", 10, 0, {"a"}, 2)}, &response),
              GrpcStatusIs(grpc::StatusCode::NOT_FOUND, "monitor ghost"));
  v1::SampleBatch ragged = Rows("m", 10, 0, {"a"}, 3);
  ragged.add_numeric(1.0);  // 11 numeric values for 10 rows
  EXPECT_THAT(Ingest({ragged}, &response),
              GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "rows x columns"));
  v1::SampleBatch missing;
  missing.set_monitor("m");
  missing.add_numeric_columns("x");
  missing.add_numeric(1.0);
  EXPECT_THAT(Ingest({missing}, &response),
              GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "feature colour is missing"));
  v1::CreateProfileRequest empty;
  empty.set_name("e");
  v1::Profile profile;
  grpc::ClientContext context;
  EXPECT_THAT(stub_->CreateProfile(&context, empty, &profile),
              GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "source"));
  // None of that counted: 999 good rows leave the window open, the 1,000th closes it.
  ASSERT_TRUE(Ingest({Rows("m", 999, 0, {"a"}, 4)}, &response).ok());
  EXPECT_EQ(response.closed_size(), 0);
  ASSERT_TRUE(Ingest({Rows("m", 1, 0, {"a"}, 5)}, &response).ok());
  ASSERT_EQ(response.closed_size(), 1);
  EXPECT_EQ(response.closed(0).rows(), 1000u);
}

TEST_F(MonitoringServiceTest, TimeWindowsRegressionErrorsAndModelsFromTheRegistry) {
  CreateProfile("p", Rows("", 1000, 0, {"a"}, 1));
  // A model whose alias names version 2.
  auto registry = metadata::v1::ModelRegistry::NewStub(server_.NewChannel());
  {
    metadata::v1::CreateRegisteredModelRequest create;
    create.set_name("pricing");
    metadata::v1::RegisteredModel model;
    grpc::ClientContext context;
    ASSERT_TRUE(registry->CreateRegisteredModel(&context, create, &model).ok());
    AddVersion("pricing", 'a');
    AddVersion("pricing", 'b');
    ASSERT_TRUE(SetProduction("pricing", 2).ok());
  }
  v1::Monitor monitor;
  monitor.set_name("prices");
  monitor.set_profile("p");
  monitor.set_model("pricing");
  monitor.set_model_version("production");
  monitor.set_window_rows(0);
  monitor.set_window_ms(300);
  monitor.set_task("regression");
  monitor.set_baseline(0.5);
  monitor.set_max_degradation(0.1);
  v1::Monitor created;
  ASSERT_TRUE(CreateMonitor(monitor, &created).ok());
  EXPECT_EQ(created.resolved_version(), 2);
  // Ten rows with predictions 1 and labels 0 / 2 (errors of 1): RMSE and MAE 1, worse than 0.5 +
  // 0.1. The window closes at the first ingestion after 300 ms, before that ingestion's rows.
  v1::SampleBatch batch = Rows("prices", 10, 0, {"a"}, 2);
  v1::FeedbackBatch feedback;
  feedback.set_monitor("prices");
  for (int i = 0; i < 10; ++i) {
    batch.add_request_ids("q" + std::to_string(i));
    batch.add_predictions(1);
    feedback.add_request_ids("q" + std::to_string(i));
    feedback.add_labels(i % 2 == 0 ? 0 : 2);
  }
  v1::IngestSamplesResponse response;
  ASSERT_TRUE(Ingest({batch}, &response).ok());
  EXPECT_EQ(response.closed_size(), 0);
  v1::IngestFeedbackResponse matched;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->IngestFeedback(&context, feedback, &matched).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  ASSERT_TRUE(Ingest({Rows("prices", 3, 0, {"a"}, 3)}, &response).ok());
  ASSERT_EQ(response.closed_size(), 1);
  const v1::DriftReport& report = response.closed(0);
  EXPECT_EQ(report.rows(), 10u);
  EXPECT_GE(report.end_time_ms() - report.start_time_ms(), 300);
  EXPECT_EQ(report.labeled(), 10u);
  EXPECT_NEAR(report.rmse(), 1.0, 1e-12);
  EXPECT_NEAR(report.mae(), 1.0, 1e-12);
  EXPECT_TRUE(report.degraded());
  auto alerts = Alerts("prices");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_THAT(alerts[0].reason(), ::testing::HasSubstr("rmse 1 above baseline 0.5 + 0.1"));
  // The 3 rows went into the next window.
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  ASSERT_TRUE(Ingest({Rows("prices", 1, 0, {"a"}, 4)}, &response).ok());
  ASSERT_EQ(response.closed_size(), 1);
  EXPECT_EQ(response.closed(0).rows(), 3u);
  EXPECT_EQ(response.closed(0).labeled(), 0u);
}

TEST_F(MonitoringServiceTest, PredictionsWaitForTheirLabelsOnlySoLong) {
  CreateProfile("p", Rows("", 500, 0, {"a"}, 1));
  v1::Monitor monitor;
  monitor.set_name("late");
  monitor.set_profile("p");
  monitor.set_window_rows(1000);
  monitor.set_task("classification");
  monitor.set_label_ttl_ms(1000);  // long enough for slow (sanitizer) builds
  v1::Monitor created;
  ASSERT_TRUE(CreateMonitor(monitor, &created).ok());
  auto ingest = [&](const std::string& prefix, uint64_t seed) {
    v1::SampleBatch batch = Rows("late", 5, 0, {"a"}, seed);
    for (int i = 0; i < 5; ++i) {
      batch.add_request_ids(prefix + std::to_string(i));
      batch.add_predictions(1);
    }
    v1::IngestSamplesResponse response;
    ASSERT_TRUE(Ingest({batch}, &response).ok());
  };
  auto feedback = [&](const std::string& prefix) {
    v1::FeedbackBatch labels;
    labels.set_monitor("late");
    for (int i = 0; i < 5; ++i) {
      labels.add_request_ids(prefix + std::to_string(i));
      labels.add_labels(1);
    }
    v1::IngestFeedbackResponse matched;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->IngestFeedback(&context, labels, &matched).ok());
    return matched.matched();
  };
  ingest("old-", 2);
  ingest("fresh-", 3);
  EXPECT_EQ(feedback("fresh-"), 5u);  // in time
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ(feedback("old-"), 0u);  // too late
  // A request id that comes again is a new prediction, even while its expired one has not been
  // dropped yet (ingestion drops what expired before it stores what came).
  ingest("gone-", 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  ingest("gone-", 5);
  EXPECT_EQ(feedback("gone-"), 5u);
  ingest("old-", 6);
  EXPECT_EQ(feedback("old-"), 5u);
  EXPECT_EQ(created.label_ttl_ms(), 1000);
  v1::Monitor defaults = monitor;
  defaults.set_name("defaults");
  defaults.set_label_ttl_ms(0);
  ASSERT_TRUE(CreateMonitor(defaults, &created).ok());
  EXPECT_EQ(created.label_ttl_ms(), int64_t{7} * 24 * 3600 * 1000);
}

TEST_F(MonitoringServiceTest, SchemasAreInferredStoredAndValidationsRecordedInLineage) {
  testing::TempDir dir;
  PushCustomers(dir.path());

  v1::InferSchemaRequest infer;
  infer.set_dataset("customers@v1");
  infer.set_save(true);
  v1::Schema schema;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->InferSchema(&context, infer, &schema).ok());
  }
  EXPECT_EQ(schema.name(), "customers");
  EXPECT_EQ(schema.version(), 1);
  EXPECT_THAT(schema.source(), ::testing::StartsWith("inferred from customers@"));
  ASSERT_EQ(schema.features_size(), 4);
  EXPECT_TRUE(schema.features(0).unique());
  EXPECT_EQ(schema.features(1).min(), 18);
  EXPECT_EQ(schema.features(1).max(), 77);

  auto validate = [&](const std::string& dataset, v1::ValidationReport* report) {
    v1::ValidateRequest request;
    request.set_dataset(dataset);
    grpc::ClientContext context;
    return stub_->Validate(&context, request, report);
  };
  v1::ValidationReport good, bad;
  ASSERT_TRUE(validate("customers@v1", &good).ok());
  EXPECT_TRUE(good.valid());
  EXPECT_EQ(good.rows(), 200u);
  EXPECT_EQ(good.schema(), "customers");
  EXPECT_EQ(good.schema_version(), 1);
  EXPECT_GT(good.lineage_artifact_id(), 0);
  ASSERT_TRUE(validate("customers@v2", &bad).ok());
  EXPECT_FALSE(bad.valid());
  std::map<std::string, uint64_t> found;  // "feature kind" -> rows
  for (const auto& a : bad.anomalies()) {
    found[a.feature() + " " + v1::Anomaly::Kind_Name(a.kind())] = a.rows();
  }
  EXPECT_EQ(found, (std::map<std::string, uint64_t>{{"id DUPLICATE_VALUES", 1},
                                                    {"age OUT_OF_RANGE", 4},
                                                    {"plan UNSEEN_CATEGORY", 1},
                                                    {"income TOO_MANY_MISSING", 20},
                                                    {"label UNEXPECTED_COLUMN", 0}}))
      << bad.DebugString();
  EXPECT_EQ(bad.anomalies(4).file(), "customers.csv");

  // In lineage: the dataset version -> Validate -> Statistics holding the verdict.
  auto lineage = metadata::v1::LineageService::NewStub(server_.NewChannel());
  metadata::v1::GetNodeRequest get;
  get.set_id(bad.lineage_artifact_id());
  metadata::v1::Artifact stats;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(lineage->GetArtifact(&context, get, &stats).ok());
  }
  EXPECT_EQ(stats.type(), "Statistics");
  EXPECT_FALSE(stats.custom_properties().at("valid").bool_value());
  EXPECT_EQ(stats.custom_properties().at("anomalies").int_value(), 5);
  metadata::v1::GetLineageRequest walk;
  walk.set_artifact_id(bad.lineage_artifact_id());
  walk.set_max_hops(2);
  metadata::v1::LineageGraph graph;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(lineage->GetLineage(&context, walk, &graph).ok());
  }
  bool dataset_found = false;
  for (const auto& node : graph.nodes()) {
    const auto& a = node.artifact();
    dataset_found = dataset_found || (node.has_artifact() && a.type() == "Dataset" &&
                                      "customers@" + a.digest() == bad.dataset());
  }
  EXPECT_TRUE(dataset_found) << graph.DebugString();

  // Bad input: clear codes, nothing stored.
  v1::ValidationReport unused;
  EXPECT_THAT(validate("nosuch@v1", &unused),
              GrpcStatusIs(grpc::StatusCode::NOT_FOUND, "nosuch has no schema"));
  {
    v1::ValidateRequest request;
    request.set_dataset("customers@v1");
    request.set_schema_version(9);
    grpc::ClientContext context;
    EXPECT_THAT(stub_->Validate(&context, request, &unused),
                GrpcStatusIs(grpc::StatusCode::NOT_FOUND, "version 9"));
  }
  {
    v1::ValidateRequest request;
    request.set_dataset("customers@v1");
    request.set_schema("projects/other/customers");
    grpc::ClientContext context;
    EXPECT_THAT(stub_->Validate(&context, request, &unused),
                GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "project other"));
  }
  {
    v1::ValidateRequest request;
    request.set_dataset("customers@v1");
    auto* f = request.mutable_inline_schema()->add_features();
    f->set_name("age");
    f->set_type(v1::FeatureSchema::STRING);
    f->set_min(3);
    grpc::ClientContext context;
    EXPECT_THAT(stub_->Validate(&context, request, &unused),
                GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "a range needs type"));
  }
  {
    v1::Schema broken = schema;
    broken.mutable_features(1)->set_min(100);
    v1::Schema stored;
    grpc::ClientContext context;
    EXPECT_THAT(stub_->PutSchema(&context, broken, &stored),
                GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "is empty"));
  }
  {
    v1::InferSchemaRequest request;
    request.set_dataset("customers@v1");
    request.add_categorical("nope");
    request.set_save(true);
    grpc::ClientContext context;
    EXPECT_THAT(stub_->InferSchema(&context, request, &schema),
                GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "nope"));
  }
  {
    v1::GetSchemaRequest request;
    request.set_name("customers");
    v1::Schema latest;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->GetSchema(&context, request, &latest).ok());
    EXPECT_EQ(latest.version(), 1);  // the refused calls stored nothing
  }
  // An edited schema (the age range widened) is the next version, and v2 then has one anomaly
  // fewer.
  {
    v1::Schema edited = schema;
    edited.mutable_features(1)->set_max(200);
    v1::Schema stored;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->PutSchema(&context, edited, &stored).ok());
    EXPECT_EQ(stored.version(), 2);
  }
  v1::ValidationReport again;
  ASSERT_TRUE(validate("customers@v2", &again).ok());
  EXPECT_EQ(again.schema_version(), 2);
  EXPECT_EQ(again.anomalies_size(), 4);

  v1::ListValidationsRequest list;
  list.set_dataset("customers");
  v1::ListValidationsResponse listed;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->ListValidations(&context, list, &listed).ok());
  }
  ASSERT_EQ(listed.reports_size(), 3);
  EXPECT_EQ(listed.reports(0).id(), again.id());  // newest first
  EXPECT_EQ(listed.reports(2).id(), good.id());
}

TEST_F(MonitoringServiceTest, APipelinesValidateStepsGateWhatFollows) {
  testing::TempDir dir;
  PushCustomers(dir.path());
  {
    v1::InferSchemaRequest infer;
    infer.set_dataset("customers@v1");
    infer.set_save(true);
    v1::Schema schema;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->InferSchema(&context, infer, &schema).ok());
  }
  auto scheduler = scheduler::v1::SchedulerService::NewStub(server_.NewChannel());
  scheduler::v1::SubmitPipelineRequest submit;
  submit.set_spec_yaml(R"(name: gate
steps:
  - name: good
    validate: {dataset: "dataset:customers@v1"}
  - name: bad
    validate: {dataset: "dataset:customers@v2"}
  - name: train
    needs: [bad]
    command: [sh, -c, "echo trained"]
  - name: copy
    command: [sh, -c, "cp {{inputs.d}}/customers.csv {{outputs.t}}"]
    inputs: {d: "dataset:customers@v1"}
    outputs: {t: t.csv}
  - name: output
    validate: {dataset: copy.outputs.t, schema: customers}
)");
  scheduler::v1::PipelineRun run;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(scheduler->SubmitPipeline(&context, submit, &run).ok());
  }
  for (int i = 0;
       i < 600 && run.state() != scheduler::v1::FAILED && run.state() != scheduler::v1::SUCCEEDED;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    scheduler::v1::GetPipelineRunRequest get;
    get.set_id(run.id());
    grpc::ClientContext context;
    ASSERT_TRUE(scheduler->GetPipelineRun(&context, get, &run).ok());
  }
  ASSERT_EQ(run.state(), scheduler::v1::FAILED) << run.DebugString();
  std::map<std::string, scheduler::v1::StepRun> steps;
  for (const auto& step : run.steps()) steps[step.name()] = step;
  EXPECT_EQ(steps["good"].state(), scheduler::v1::SUCCEEDED);
  EXPECT_EQ(steps["bad"].state(), scheduler::v1::FAILED);
  EXPECT_THAT(steps["bad"].message(), ::testing::HasSubstr("5 anomalies: id: 1 row repeats"));
  EXPECT_EQ(steps["train"].state(), scheduler::v1::SKIPPED);
  EXPECT_EQ(steps["output"].state(), scheduler::v1::SUCCEEDED) << steps["output"].DebugString();

  // Each validation is a stored report: the step output's under the schema's name, by digest.
  v1::ListValidationsRequest list;
  list.set_dataset("customers");
  v1::ListValidationsResponse listed;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->ListValidations(&context, list, &listed).ok());
  }
  ASSERT_EQ(listed.reports_size(), 3);
  int blobs = 0;
  for (const auto& report : listed.reports()) {
    if (report.blob().empty()) continue;
    ++blobs;
    EXPECT_EQ(report.blob(), steps["copy"].output_digests().at("t"));
    EXPECT_TRUE(report.valid());
    EXPECT_GT(report.lineage_artifact_id(), 0);
  }
  EXPECT_EQ(blobs, 1);
}

TEST_F(MonitoringServiceTest, ModelVersionsAreEvaluatedStoredAndLinkedInLineage) {
  // A model whose version 1 has a Model artifact in lineage, and `production` pointing at it.
  auto registry = metadata::v1::ModelRegistry::NewStub(server_.NewChannel());
  auto lineage = metadata::v1::LineageService::NewStub(server_.NewChannel());
  int64_t model_artifact = 0;
  {
    metadata::v1::PutArtifactRequest put;
    put.mutable_artifact()->set_type("Model");
    put.mutable_artifact()->set_name("churn");
    put.mutable_artifact()->set_digest(std::string(64, 'c'));
    metadata::v1::Artifact artifact;
    grpc::ClientContext context;
    ASSERT_TRUE(lineage->PutArtifact(&context, put, &artifact).ok());
    model_artifact = artifact.id();
    AddVersion("churn", 'c', model_artifact);
    ASSERT_TRUE(SetProduction("churn", 1).ok());
  }
  // Test rows: 8 of 10 predictions right; the two wrong ones are in city b.
  testing::TempDir dir;
  std::filesystem::create_directories(dir.path() + "/test");
  {
    std::ofstream csv(dir.path() + "/test/scored.csv");
    csv << "label,prediction,score,city\n"
           "1,1,0.9,a\n0,0,0.2,a\n1,1,0.8,a\n0,0,0.1,a\n1,1,0.7,a\n"
           "0,1,0.6,b\n1,0,0.4,b\n0,0,0.3,b\n1,1,0.95,b\n0,0,0.05,b\n";
  }
  artifact::ArtifactClient client(server_.NewChannel());
  ASSERT_OK(client.Push(dir.path() + "/test", "churn-test", {"v1"}, "", nullptr).status());

  v1::EvaluateModelRequest request;
  request.set_model("churn");
  request.set_version("production");
  request.set_dataset("churn-test@v1");
  request.set_task("classification");
  request.set_score_column("score");
  request.add_slice_by("city");
  request.set_sensitive_feature("city");
  v1::Evaluation evaluation;
  {
    grpc::ClientContext context;
    grpc::Status status = stub_->EvaluateModel(&context, request, &evaluation);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ(evaluation.model(), "churn");
  EXPECT_EQ(evaluation.model_version(), 1);
  EXPECT_THAT(evaluation.dataset(), ::testing::StartsWith("churn-test@"));
  EXPECT_DOUBLE_EQ(evaluation.overall().accuracy(), 0.8);
  // ROC AUC: of the 25 (positive, negative) pairs, only (0.4 vs 0.6) is ordered wrong: 24/25.
  EXPECT_DOUBLE_EQ(evaluation.overall().roc_auc(), 0.96);
  ASSERT_EQ(evaluation.slices_size(), 2);
  EXPECT_DOUBLE_EQ(evaluation.slices(0).metrics().accuracy(), 1.0);
  EXPECT_DOUBLE_EQ(evaluation.slices(1).metrics().accuracy(), 0.6);
  // Selection rates: a 3/5, b 2/5.
  EXPECT_DOUBLE_EQ(evaluation.fairness().demographic_parity_difference(), 0.2);
  EXPECT_GT(evaluation.lineage_artifact_id(), 0);

  // Lineage: the Metrics artifact comes from an Evaluate execution of the model and the dataset.
  metadata::v1::GetLineageRequest walk;
  walk.set_artifact_id(evaluation.lineage_artifact_id());
  walk.set_max_hops(2);
  metadata::v1::LineageGraph graph;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(lineage->GetLineage(&context, walk, &graph).ok());
  }
  bool model_found = false, dataset_found = false;
  for (const auto& node : graph.nodes()) {
    if (!node.has_artifact()) continue;
    model_found = model_found || node.artifact().id() == model_artifact;
    dataset_found =
        dataset_found || "churn-test@" + node.artifact().digest() == evaluation.dataset();
  }
  EXPECT_TRUE(model_found && dataset_found) << graph.DebugString();

  // Stored: by id and by model version.
  {
    v1::GetEvaluationRequest get;
    get.set_id(evaluation.id());
    v1::Evaluation stored;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->GetEvaluation(&context, get, &stored).ok());
    EXPECT_EQ(stored.slices_size(), 2);
    EXPECT_DOUBLE_EQ(stored.overall().roc_auc(), 0.96);
  }
  // No version: the latest.
  {
    v1::EvaluateModelRequest latest = request;
    latest.clear_version();
    latest.clear_slice_by();
    v1::Evaluation again;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->EvaluateModel(&context, latest, &again).ok());
    EXPECT_EQ(again.model_version(), 1);
  }
  // Bad input: clear codes, nothing stored.
  auto refuse = [&](v1::EvaluateModelRequest bad, grpc::StatusCode code, const std::string& what) {
    v1::Evaluation unused;
    grpc::ClientContext context;
    EXPECT_THAT(stub_->EvaluateModel(&context, bad, &unused), GrpcStatusIs(code, what));
  };
  v1::EvaluateModelRequest bad = request;
  bad.set_version("staging");
  refuse(bad, grpc::StatusCode::NOT_FOUND, "staging");
  bad = request;
  bad.set_dataset("nosuch@v1");
  refuse(bad, grpc::StatusCode::NOT_FOUND, "nosuch");
  bad = request;
  bad.set_score_column("city");
  refuse(bad, grpc::StatusCode::INVALID_ARGUMENT, "score_column city: a numeric column");
  bad = request;
  bad.set_dataset("projects/other/churn-test@v1");
  refuse(bad, grpc::StatusCode::INVALID_ARGUMENT, "project other");
  {
    v1::ListEvaluationsRequest list;
    list.set_model("churn");
    v1::ListEvaluationsResponse listed;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->ListEvaluations(&context, list, &listed).ok());
    ASSERT_EQ(listed.evaluations_size(), 2);
    EXPECT_EQ(listed.evaluations(1).id(), evaluation.id());  // newest first
    EXPECT_EQ(listed.evaluations(0).slices_size(), 0);       // listed without slices
  }
}

TEST_F(MonitoringServiceTest, APolicyBlessesAVersionAndTheAliasGateFollowsTheBlessing) {
  // churn v1 is in production; v2 is the challenger. The test rows carry both models'
  // predictions: v2 gets 8 of 10 right, v1 9 of 10.
  auto registry = metadata::v1::ModelRegistry::NewStub(server_.NewChannel());
  AddVersion("churn", 'a');
  AddVersion("churn", 'b');
  ASSERT_TRUE(SetProduction("churn", 1).ok());
  {
    metadata::v1::SetAliasPolicyRequest policy;
    policy.set_name("churn");
    policy.set_alias("production");
    policy.mutable_policy()->set_require_blessing(true);
    metadata::v1::RegisteredModel model;
    grpc::ClientContext context;
    ASSERT_TRUE(registry->SetAliasPolicy(&context, policy, &model).ok());
  }
  testing::TempDir dir;
  std::filesystem::create_directories(dir.path() + "/test");
  {
    std::ofstream csv(dir.path() + "/test/scored.csv");
    csv << "label,prediction,v1\n1,1,1\n0,0,0\n1,1,1\n0,0,0\n1,1,1\n0,1,0\n1,0,1\n0,0,0\n1,1,1\n"
           "0,0,1\n";
  }
  artifact::ArtifactClient client(server_.NewChannel());
  ASSERT_OK(client.Push(dir.path() + "/test", "churn-test", {"v1"}, "", nullptr).status());
  auto evaluate = [&](std::vector<std::string> policy, bool champion_column, v1::Evaluation* out) {
    v1::EvaluateModelRequest request;
    request.set_model("churn");
    request.set_version("2");
    request.set_dataset("churn-test@v1");
    request.set_task("classification");
    for (const auto& rule : policy) request.add_policy(rule);
    if (champion_column) request.set_champion_prediction_column("v1");
    grpc::ClientContext context;
    return stub_->EvaluateModel(&context, request, out);
  };
  auto blessing = [&]() {
    metadata::v1::GetModelVersionRequest get;
    get.set_name("churn");
    get.set_version(2);
    metadata::v1::ModelVersion version;
    grpc::ClientContext context;
    EXPECT_TRUE(registry->GetModelVersion(&context, get, &version).ok());
    return version.blessing();
  };

  // Worse than the champion: not blessed, and the gate refuses the move.
  v1::Evaluation first;
  ASSERT_TRUE(evaluate({"accuracy >= champion", "accuracy >= 0.75"}, true, &first).ok());
  EXPECT_FALSE(first.verdict().blessed());
  EXPECT_EQ(first.verdict().champion_version(), 1);
  EXPECT_DOUBLE_EQ(first.champion().accuracy(), 0.9);
  EXPECT_THAT(first.verdict().failed(),
              ::testing::ElementsAre("accuracy 0.8 < 0.9 (champion 0.9) (accuracy >= champion)"));
  EXPECT_THAT(first.verdict().passed(), ::testing::ElementsAre("accuracy >= 0.75"));
  EXPECT_FALSE(blessing().blessed());
  EXPECT_EQ(blessing().evaluation_id(), first.id());
  EXPECT_THAT(SetProduction("churn", 2),
              GrpcStatusIs(grpc::StatusCode::FAILED_PRECONDITION,
                           "version 2 is not blessed: its evaluation " + first.id() +
                               " failed; accuracy 0.8 < 0.9"));
  // The champion's evaluation on the same data was stored too: a later policy finds it there.
  v1::Evaluation second;
  ASSERT_TRUE(evaluate({"accuracy >= champion - 0.15"}, false, &second).ok());
  EXPECT_TRUE(second.verdict().blessed()) << second.verdict().DebugString();
  EXPECT_FALSE(second.verdict().champion_evaluation().empty());
  EXPECT_TRUE(blessing().blessed());
  EXPECT_TRUE(SetProduction("churn", 2).ok());
  // A bad rule is refused before anything is evaluated.
  v1::Evaluation unused;
  EXPECT_THAT(evaluate({"accuracy ~ 1"}, false, &unused),
              GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "policy rule 'accuracy ~ 1'"));
  EXPECT_TRUE(blessing().blessed());
}

}  // namespace
}  // namespace mlops::monitoring
