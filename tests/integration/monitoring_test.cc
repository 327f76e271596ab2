// The monitoring service in a child mlops-server: drift gauges scraped and checked by promtool,
// the shipped alerting rules (promtool check + test rules), every metric the Grafana dashboard
// queries actually exported, an open window that survives kill -9, and `mlops drift`, `mlops
// monitor` and `mlops profile` from the command line.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include "mlops/monitoring/v1/monitoring.grpc.pb.h"
#include "mlops/scheduler/v1/scheduler.grpc.pb.h"
#include "services/common/strings.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

namespace v1 = ::mlops::monitoring::v1;
using ::testing::HasSubstr;

v1::SampleBatch Rows(const std::string& monitor, int n, double mean, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(mean, 1);
  v1::SampleBatch batch;
  batch.set_monitor(monitor);
  batch.add_numeric_columns("x");
  batch.add_categorical_columns("city");
  for (int i = 0; i < n; ++i) {
    batch.add_numeric(normal(rng));
    batch.add_categorical(i % 2 ? "oslo" : "rome");
  }
  return batch;
}

std::unique_ptr<v1::MonitoringService::Stub> Connect(const testing::ChildServer& server) {
  return v1::MonitoringService::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
}

grpc::Status Ingest(v1::MonitoringService::Stub* stub, const v1::SampleBatch& batch,
                    v1::IngestSamplesResponse* response) {
  grpc::ClientContext context;
  auto writer = stub->IngestSamples(&context, response);
  writer->Write(batch);
  writer->WritesDone();
  return writer->Finish();
}

void CreateChurnMonitor(v1::MonitoringService::Stub* stub) {
  v1::CreateProfileRequest profile;
  profile.set_name("train");
  *profile.mutable_samples() = Rows("", 3000, 0, 1);
  v1::Profile created;
  grpc::ClientContext c1;
  ASSERT_TRUE(stub->CreateProfile(&c1, profile, &created).ok());
  v1::Monitor monitor;
  monitor.set_name("churn");
  monitor.set_profile("train");
  monitor.set_window_rows(1000);
  v1::Monitor out;
  grpc::ClientContext c2;
  ASSERT_TRUE(stub->CreateMonitor(&c2, monitor, &out).ok());
}

// A child mlops-server with profile "train" and monitor "churn" (windows of 1,000 rows).
struct ChurnServer {
  ChurnServer() {
    server.Start();
    stub = Connect(server);
    CreateChurnMonitor(stub.get());
  }
  testing::TempDir dir;
  testing::ChildServer server{MLOPS_SERVER_BIN, dir.path() + "/data"};
  std::unique_ptr<v1::MonitoringService::Stub> stub;
};

TEST(MonitoringTest, DriftIsExportedAndEveryDashboardMetricExists) {
  ChurnServer churn;
  testing::TempDir& dir = churn.dir;
  testing::ChildServer& server = churn.server;
  auto& stub = churn.stub;
  v1::IngestSamplesResponse response;
  ASSERT_TRUE(Ingest(stub.get(), Rows("churn", 1000, 2.0, 2), &response).ok());
  ASSERT_EQ(response.closed_size(), 1);
  EXPECT_TRUE(response.closed(0).drifted());
  // A window with labels, so that performance is exported too.
  {
    v1::Monitor fraud;
    fraud.set_name("fraud");
    fraud.set_profile("train");
    fraud.set_window_rows(10);
    fraud.set_task("classification");
    fraud.set_baseline(0.5);
    v1::Monitor out;
    grpc::ClientContext c1;
    ASSERT_TRUE(stub->CreateMonitor(&c1, fraud, &out).ok());
    v1::SampleBatch batch = Rows("fraud", 9, 0, 7);
    v1::FeedbackBatch feedback;
    feedback.set_monitor("fraud");
    for (int i = 0; i < 9; ++i) {
      batch.add_request_ids("r" + std::to_string(i));
      batch.add_predictions(i % 2);
      feedback.add_request_ids("r" + std::to_string(i));
      feedback.add_labels(1);
    }
    ASSERT_TRUE(Ingest(stub.get(), batch, &response).ok());
    v1::IngestFeedbackResponse matched;
    grpc::ClientContext c2;
    ASSERT_TRUE(stub->IngestFeedback(&c2, feedback, &matched).ok());
    ASSERT_TRUE(Ingest(stub.get(), Rows("fraud", 1, 0, 8), &response).ok());
    ASSERT_EQ(response.closed_size(), 1);
    EXPECT_NEAR(response.closed(0).accuracy(), 4.0 / 9, 1e-12);
  }
  // A regression monitor with labels (RMSE and MAE), and one that has seen nothing yet.
  {
    v1::Monitor price;
    price.set_name("price");
    price.set_profile("train");
    price.set_window_rows(4);
    price.set_task("regression");
    price.set_baseline(1.0);
    v1::Monitor out;
    grpc::ClientContext c1;
    ASSERT_TRUE(stub->CreateMonitor(&c1, price, &out).ok());
    v1::SampleBatch batch = Rows("price", 3, 0, 9);
    v1::FeedbackBatch feedback;
    feedback.set_monitor("price");
    for (int i = 0; i < 3; ++i) {
      batch.add_request_ids("p" + std::to_string(i));
      batch.add_predictions(10.0);
      feedback.add_request_ids("p" + std::to_string(i));
      feedback.add_labels(12.0);
    }
    ASSERT_TRUE(Ingest(stub.get(), batch, &response).ok());
    v1::IngestFeedbackResponse matched;
    grpc::ClientContext c2;
    ASSERT_TRUE(stub->IngestFeedback(&c2, feedback, &matched).ok());
    ASSERT_TRUE(Ingest(stub.get(), Rows("price", 1, 0, 10), &response).ok());
    ASSERT_EQ(response.closed_size(), 1);
    v1::Monitor quiet;
    quiet.set_name("quiet");
    quiet.set_profile("train");
    quiet.set_drift_share_threshold(0.3);
    quiet.set_window_rows(100);
    grpc::ClientContext c3;
    ASSERT_TRUE(stub->CreateMonitor(&c3, quiet, &out).ok());
  }
  // Some scheduler traffic, so that its RPC and queue series exist.
  auto scheduler = scheduler::v1::SchedulerService::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext queues_context;
  scheduler::v1::ListQueuesResponse queues;
  ASSERT_TRUE(scheduler->ListQueues(&queues_context, {}, &queues).ok());
  grpc::ClientContext submit_context;
  scheduler::v1::SubmitPipelineRequest submit;
  submit.set_spec_yaml("name: p\nsteps:\n  - name: s\n    command: [true]\n");
  scheduler::v1::PipelineRun run;
  ASSERT_TRUE(scheduler->SubmitPipeline(&submit_context, submit, &run).ok());

  auto metrics = testing::HttpGet(server.metrics_port(), "/metrics");
  ASSERT_EQ(metrics.first, 200);
  const std::string& body = metrics.second;
  auto exported = [&](const std::string& text) { return body.find(text) != std::string::npos; };
  // x moved, city did not: half of the features drifted, which meets the default threshold.
  EXPECT_TRUE(exported("mlops_feature_drift_psi{feature=\"x\",model=\"churn\",monitor=\"churn\"}"));
  EXPECT_TRUE(exported("mlops_feature_drift_ks_statistic{feature=\"x\""));
  EXPECT_TRUE(exported("mlops_feature_drift_chi2_p_value{feature=\"city\""));
  EXPECT_TRUE(exported("mlops_model_drift_share{model=\"churn\",monitor=\"churn\"} 0.5\n"));
  EXPECT_TRUE(exported("mlops_monitoring_samples_total{monitor=\"churn\"} 1000\n"));
  EXPECT_TRUE(exported("mlops_monitoring_alerts_total{monitor=\"churn\"} 1\n"));
  EXPECT_TRUE(exported("mlops_scheduler_queue_pending{queue=\"default\"}"));
  EXPECT_TRUE(exported("mlops_model_accuracy_ratio{model=\"fraud\",monitor=\"fraud\"} 0.444"));
  EXPECT_TRUE(exported("mlops_model_rmse{model=\"price\",monitor=\"price\"} 2\n"));
  EXPECT_TRUE(exported("mlops_model_mae{model=\"price\",monitor=\"price\"} 2\n"));
  // Drifted by the monitor's own threshold, exported beside it.
  EXPECT_TRUE(exported("mlops_model_drifted{model=\"churn\",monitor=\"churn\"} 1\n"));
  EXPECT_TRUE(
      exported("mlops_model_drift_share_threshold{model=\"churn\",monitor=\"churn\"} 0.5\n"));
  // A monitor's series exist at 0 from its creation, so that increase() sees its first alert.
  EXPECT_TRUE(exported("mlops_monitoring_alerts_total{monitor=\"quiet\"} 0\n"));
  EXPECT_TRUE(exported("mlops_monitoring_samples_total{monitor=\"quiet\"} 0\n"));
  EXPECT_TRUE(exported("mlops_monitoring_reports_total{monitor=\"quiet\"} 0\n"));
  EXPECT_TRUE(exported("mlops_model_drifted{model=\"quiet\",monitor=\"quiet\"} 0\n"));
  EXPECT_TRUE(
      exported("mlops_model_drift_share_threshold{model=\"quiet\",monitor=\"quiet\"} 0.3\n"));
  // RPC latency is labelled by the kind of call.
  EXPECT_TRUE(
      exported("grpc_server_handling_seconds_bucket{grpc_method=\"IngestSamples\","
               "grpc_service=\"mlops.monitoring.v1.MonitoringService\","
               "grpc_type=\"client_stream\""));
  EXPECT_TRUE(exported("grpc_type=\"unary\""));
  std::string file = dir.path() + "/metrics.txt";
  std::ofstream(file) << body;
  auto check = testing::RunCommand({"/bin/sh", "-c", "promtool check metrics < " + file});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;

  // Every metric a dashboard query names is exported (histograms by their _bucket series).
  std::ifstream in(std::string(MLOPS_SOURCE_DIR) + "/charts/mlops/files/grafana-dashboard.json");
  std::stringstream text;
  text << in.rdbuf();
  google::protobuf::Struct dashboard;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(text.str(), &dashboard).ok());
  std::set<std::string> names;
  std::regex metric(R"(\b((mlops|grpc_server|process)_[a-z_]+)\b)");
  int queries = 0;
  for (const auto& panel : dashboard.fields().at("panels").list_value().values()) {
    auto targets = panel.struct_value().fields().find("targets");
    if (targets == panel.struct_value().fields().end()) continue;
    for (const auto& target : targets->second.list_value().values()) {
      const std::string& expr = target.struct_value().fields().at("expr").string_value();
      ++queries;
      for (std::sregex_iterator it(expr.begin(), expr.end(), metric), end; it != end; ++it) {
        names.insert((*it)[1]);
      }
    }
  }
  EXPECT_GE(queries, 15);
  for (const std::string& name : names) {
    EXPECT_TRUE(exported("\n" + name + "{") || exported("\n" + name + " "))
        << name << " is queried but not exported";
  }
}

TEST(MonitoringTest, AlertingRulesPassPromtool) {
  std::string files = std::string(MLOPS_SOURCE_DIR) + "/charts/mlops/files";
  auto check = testing::RunCommand(
      {"/usr/bin/promtool", "check", "rules", files + "/prometheus-rules.yaml"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  auto test = testing::RunCommand(
      {"/bin/sh", "-c", "cd " + files + " && promtool test rules prometheus-rules.test.yaml"});
  EXPECT_EQ(test.exit_code, 0) << test.out << test.err;
  EXPECT_THAT(test.out + test.err, HasSubstr("SUCCESS"));
}

TEST(MonitoringTest, AnAcknowledgedWindowSurvivesKill9) {
  ChurnServer churn;
  testing::ChildServer& server = churn.server;
  auto& stub = churn.stub;
  v1::IngestSamplesResponse response;
  ASSERT_TRUE(Ingest(stub.get(), Rows("churn", 600, 0, 3), &response).ok());
  EXPECT_EQ(response.closed_size(), 0);
  server.Kill();
  server.Start();
  stub = Connect(server);
  // The 600 acknowledged rows are still in the window: 400 more close it.
  ASSERT_TRUE(Ingest(stub.get(), Rows("churn", 399, 0, 4), &response).ok());
  EXPECT_EQ(response.closed_size(), 0);
  ASSERT_TRUE(Ingest(stub.get(), Rows("churn", 1, 0, 5), &response).ok());
  ASSERT_EQ(response.closed_size(), 1);
  EXPECT_EQ(response.closed(0).rows(), 1000u);
  EXPECT_EQ(response.closed(0).features(0).count(), 1000u);
  // After another restart the drift gauges come back from the last stored report.
  std::string share = "mlops_model_drift_share{model=\"churn\",monitor=\"churn\"} " +
                      FormatDouble(response.closed(0).drift_share()) + "\n";
  server.Kill();
  server.Start();
  auto [code, body] = testing::HttpGet(server.metrics_port(), "/metrics");
  ASSERT_EQ(code, 200);
  EXPECT_THAT(body, HasSubstr(share));
  EXPECT_THAT(body, HasSubstr("mlops_feature_drift_psi{feature=\"x\",model=\"churn\""));
}

TEST(MonitoringTest, CommandLine) {
  testing::TempDir dir;
  testing::ChildServer server(MLOPS_SERVER_BIN, dir.path() + "/data");
  server.Start();
  auto mlops = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {MLOPS_CLI_BIN, "--server", server.address()});
    return testing::RunCommand(args, {"USER=dana"});
  };
  std::filesystem::create_directories(dir.path() + "/ref");
  std::filesystem::create_directories(dir.path() + "/new");
  {
    std::mt19937_64 rng(5);
    std::normal_distribution<double> normal(0, 1);
    std::ofstream ref(dir.path() + "/ref/data.csv"), now(dir.path() + "/new/data.csv");
    ref << "age,plan\n";
    now << "age,plan\n";
    for (int i = 0; i < 2000; ++i)
      ref << normal(rng) * 10 + 40 << "," << (i % 4 ? "basic" : "pro") << "\n";
    for (int i = 0; i < 2000; ++i)
      now << normal(rng) * 10 + 48 << "," << (i % 4 ? "basic" : "pro") << "\n";
  }
  ASSERT_EQ(
      mlops({"data", "push", dir.path() + "/ref", "--dataset", "users", "--tag", "v1"}).exit_code,
      0);
  ASSERT_EQ(
      mlops({"data", "push", dir.path() + "/new", "--dataset", "users", "--tag", "v2"}).exit_code,
      0);
  auto profile = mlops({"profile", "create", "users-train", "--dataset", "users@v1"});
  ASSERT_EQ(profile.exit_code, 0) << profile.err;
  EXPECT_THAT(profile.out, HasSubstr("profile users-train@1: 2000 rows, 2 features"));
  auto show = mlops({"profile", "show", "users-train"});
  EXPECT_THAT(show.out, HasSubstr("categorical"));
  // Same data: exit 0. Moved data: exit 3, the moved feature marked.
  auto same = mlops({"drift", "users@v1", "--against", "users-train"});
  EXPECT_EQ(same.exit_code, 0) << same.out << same.err;
  auto moved = mlops({"drift", "users@v2", "--against", "users-train", "--test", "ks,psi"});
  EXPECT_EQ(moved.exit_code, 3) << moved.out << moved.err;
  EXPECT_THAT(moved.out, HasSubstr("DRIFT"));
  EXPECT_THAT(moved.out, HasSubstr("ref "));
  // The exit code says "drifted" whatever the output format.
  auto moved_json = mlops(
      {"--output", "json", "drift", "users@v2", "--against", "users-train", "--test", "ks,psi"});
  EXPECT_EQ(moved_json.exit_code, 3) << moved_json.err;
  EXPECT_THAT(moved_json.out, HasSubstr("\"drifted\": true"));
  EXPECT_EQ(mlops({"--output", "json", "drift", "users@v1", "--against", "users-train"}).exit_code,
            0);
  auto create = mlops({"monitor", "create", "users", "--profile", "users-train", "--window-rows",
                       "500", "--test", "ks,psi:0.1"});
  ASSERT_EQ(create.exit_code, 0) << create.err;
  auto streamed = mlops(
      {"monitor", "ingest", "users", "--file", dir.path() + "/new/data.csv", "--batch", "300"});
  ASSERT_EQ(streamed.exit_code, 0) << streamed.err;
  EXPECT_THAT(streamed.out, HasSubstr("ingested 2000 rows into users; 4 window(s) closed"));
  EXPECT_THAT(streamed.out, HasSubstr("(DRIFTED)"));
  auto stored = mlops({"drift", "users@v2", "--monitor", "users"});
  EXPECT_EQ(stored.exit_code, 3);
  auto report = mlops({"monitor", "report", "users"});
  EXPECT_THAT(report.out, HasSubstr("DRIFTED"));
  auto alerts = mlops({"--output", "json", "monitor", "alerts", "users", "--open"});
  ASSERT_EQ(alerts.exit_code, 0) << alerts.err;
  std::smatch id;
  ASSERT_TRUE(std::regex_search(alerts.out, id, std::regex(R"re("id": "([0-9a-f]{32})")re")))
      << alerts.out;
  auto ack = mlops({"monitor", "ack", id[1]});
  EXPECT_EQ(ack.exit_code, 0) << ack.err;
  EXPECT_THAT(ack.out, HasSubstr("acknowledged by dana"));
  EXPECT_THAT(mlops({"monitor", "alerts", "--open"}).out, ::testing::Not(HasSubstr(id[1].str())));
  auto bad = mlops({"drift", "users@v2"});
  EXPECT_EQ(bad.exit_code, 2);
  auto unknown = mlops({"drift", "users@v2", "--against", "nope"});
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_THAT(unknown.err, HasSubstr("NOT_FOUND"));
}

}  // namespace
}  // namespace mlops
