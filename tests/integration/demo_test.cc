// The end-to-end demo of README command 1 (examples/demo.sh) against a child mlops-server: every
// stage must succeed and say what it did, within the 3 minutes the demo is allowed; then again on
// the same server, as a second run of the quickstart does.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/testing/testing.h"

namespace mlops {
namespace {

using ::testing::HasSubstr;

// Runs the demo (examples/demo.sh) with `env`.
testing::CommandResult RunDemo(const std::vector<std::string>& env) {
  return testing::RunCommand(
      {"/bin/bash", std::string(MLOPS_SOURCE_DIR) + "/examples/demo.sh", MLOPS_BUILD_DIR}, env);
}

// The end of what a run printed, for a failure message.
std::string Tail(const testing::CommandResult& result) {
  return result.out.substr(result.out.size() > 6000 ? result.out.size() - 6000 : 0) + "\n" +
         result.err;
}

TEST(DemoTest, RunsEndToEnd) {
  testing::TempDir dir;
  testing::ChildServer server(MLOPS_SERVER_BIN, dir.path() + "/data");
  server.Start();
  auto start = std::chrono::steady_clock::now();
  auto result = RunDemo({"MLOPS_SERVER=" + server.address()});
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(result.exit_code, 0) << Tail(result);
  EXPECT_LT(seconds, 180);
  const std::string& out = result.out;
  EXPECT_THAT(out, HasSubstr("rows=50000"));  // validate's metric
  EXPECT_THAT(out, HasSubstr("sweep train: maximize val_accuracy, best train[lr="));
  EXPECT_THAT(out, HasSubstr("aliases:  production"));
  EXPECT_THAT(out, HasSubstr("Dataset demo-data@"));  // the model's lineage reaches the data
  EXPECT_THAT(out, HasSubstr("cached steps: 7 of 7"));
  EXPECT_THAT(out, HasSubstr("(DRIFTED)"));
  EXPECT_THAT(out, HasSubstr("retraining pipeline run: "));
  EXPECT_THAT(out, HasSubstr("2        READY   production"));
  EXPECT_THAT(out, HasSubstr("identical (bit for bit)"));

  // The quickstart can be run again on the same server: the demo reruns cleanly (the logs of a
  // cached step come from the attempt that produced it; the monitor is a new one).
  auto again = RunDemo({"MLOPS_SERVER=" + server.address()});
  ASSERT_EQ(again.exit_code, 0) << Tail(again);
  EXPECT_THAT(again.err, HasSubstr("was CACHED: these are the logs of the attempt"));
  EXPECT_THAT(again.out, HasSubstr("cached steps: 7 of 7"));
  EXPECT_THAT(again.out, HasSubstr("mlops monitor create demo-"));
  EXPECT_THAT(again.out, HasSubstr("identical (bit for bit)"));
}

// The value of the series whose labels include `label` in a Prometheus query answer, or "".
std::string ValueFor(const std::string& answer, const std::string& label) {
  std::smatch match;
  std::regex value("\\{[^}]*" + label + "[^}]*\\},\"value\":\\[[0-9.]+,\"([^\"]+)\"\\]");
  return std::regex_search(answer, match, value) ? match[1].str() : "";
}

TEST(DemoTest, EveryDashboardPanelShowsTheTruthAfterTheDemo) {
  testing::TempDir dir;
  testing::ChildServer server(MLOPS_SERVER_BIN, dir.path() + "/data");
  server.Start();
  testing::PrometheusServer prometheus(dir.path(), {server.metrics_port()});
  ASSERT_THAT(prometheus.WaitFor("up{job=\"mlops\"} == 1"), HasSubstr("\"value\""));
  auto demo = RunDemo({"MLOPS_SERVER=" + server.address()});
  ASSERT_EQ(demo.exit_code, 0) << Tail(demo);
  // What the server says now, and Prometheus once it has scraped that (and twice more, for rates).
  auto [code, metrics] = testing::HttpGet(server.metrics_port(), "/metrics");
  ASSERT_EQ(code, 200);
  std::smatch match;
  ASSERT_TRUE(std::regex_search(
      metrics, match, std::regex("mlops_monitoring_alerts_total\\{monitor=\"demo\"\\} ([0-9]+)")));
  std::string alerts = match[1].str();
  ASSERT_NE(alerts, "0");
  ASSERT_THAT(prometheus.WaitFor("mlops_monitoring_alerts_total{monitor=\"demo\"} == " + alerts),
              HasSubstr("\"value\""));
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));

  std::ifstream in(std::string(MLOPS_SOURCE_DIR) + "/charts/mlops/files/grafana-dashboard.json");
  std::stringstream text;
  text << in.rdbuf();
  google::protobuf::Struct dashboard;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(text.str(), &dashboard).ok());
  std::map<std::string, std::vector<std::string>> answers;  // panel title -> one per query
  for (const auto& panel : dashboard.fields().at("panels").list_value().values()) {
    const auto& fields = panel.struct_value().fields();
    auto targets = fields.find("targets");
    if (targets == fields.end()) continue;
    const std::string& title = fields.at("title").string_value();
    for (const auto& target : targets->second.list_value().values()) {
      std::string expr = target.struct_value().fields().at("expr").string_value();
      for (const char* variable : {"$instance", "$model"}) {
        for (size_t at; (at = expr.find(variable)) != std::string::npos;) {
          expr.replace(at, std::strlen(variable), ".*");
        }
      }
      std::string answer = prometheus.Query(expr);
      ASSERT_THAT(answer, HasSubstr("\"status\":\"success\"")) << title << ": " << expr;
      answers[title].push_back(answer);
    }
  }
  ASSERT_GE(answers.size(), 14u);
  for (const auto& [title, list] : answers) {
    // The demo feeds no labels: the performance panel is rightly empty. Every other has data.
    if (title == "Performance from labels") continue;
    for (const std::string& answer : list) {
      EXPECT_THAT(answer, HasSubstr("\"value\"")) << title << " shows nothing: " << answer;
    }
  }
  // The values: alerts as raised, no server errors (0, not "no data"), the demo's drift share.
  EXPECT_EQ(ValueFor(answers["Monitoring alerts raised"][0], "\"monitor\":\"demo\""), alerts);
  const std::string& errors = answers["Server errors"][0];
  EXPECT_EQ(ValueFor(errors, "\"grpc_service\":\"mlops.scheduler.v1.SchedulerService\""), "0");
  EXPECT_EQ(ValueFor(errors, "\"grpc_service\":\"mlops.artifact.v1.ArtifactService\""), "0");
  std::string share = ValueFor(answers["Share of features drifted"][0], "\"monitor\":\"demo\"");
  ASSERT_FALSE(share.empty());
  EXPECT_GE(std::stod(share), 0.3);
  EXPECT_FALSE(ValueFor(answers["Queue depth"][0], "\"queue\":\"default\"").empty());
}

TEST(DemoTest, RunsWithEachServiceInItsOwnProcess) {
  // As on Kubernetes: four servers on loopback, each told where the others are; steps and the
  // CLI reach every service at its own address.
  testing::TempDir dir;
  testing::ChildServer metadata(MLOPS_METADATA_BIN, dir.path() + "/metadata");
  testing::ChildServer artifact(MLOPS_ARTIFACT_BIN, dir.path() + "/artifact");
  metadata.Start();
  artifact.Start();
  testing::ChildServer scheduler(
      MLOPS_SCHEDULER_BIN, dir.path() + "/scheduler",
      {"--metadata_address=" + metadata.address(), "--artifact_address=" + artifact.address()});
  scheduler.Start();
  testing::ChildServer monitoring(
      MLOPS_MONITORING_BIN, dir.path() + "/monitoring",
      {"--metadata_address=" + metadata.address(), "--artifact_address=" + artifact.address(),
       "--scheduler_address=" + scheduler.address()});
  monitoring.Start();
  std::vector<std::string> env = {"MLOPS_SERVER=" + metadata.address(),
                                  "MLOPS_METADATA_SERVER=" + metadata.address(),
                                  "MLOPS_ARTIFACT_SERVER=" + artifact.address(),
                                  "MLOPS_SCHEDULER_SERVER=" + scheduler.address(),
                                  "MLOPS_MONITORING_SERVER=" + monitoring.address()};
  auto result = RunDemo(env);
  ASSERT_EQ(result.exit_code, 0) << Tail(result);
  EXPECT_THAT(result.out, HasSubstr("aliases:  production"));
  EXPECT_THAT(result.out, HasSubstr("cached steps: 7 of 7"));
  EXPECT_THAT(result.out, HasSubstr("retraining pipeline run: "));
  EXPECT_THAT(result.out, HasSubstr("2        READY   production"));
  EXPECT_THAT(result.out, HasSubstr("identical (bit for bit)"));
  // The CLI pointed at a server that lacks a service says which flag to set.
  auto wrong = testing::RunCommand({MLOPS_CLI_BIN, "--server", artifact.address(), "runs", "search",
                                    "--experiment", "demo-fit"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("the server at " + artifact.address() +
                                   " does not serve mlops.metadata.v1.MetadataService; set "
                                   "--metadata_server (or MLOPS_METADATA_SERVER)"));

  // The scheduler watches its peers: up on /metrics and /statusz; a peer that goes away shows as
  // down there, and the scheduler stays ready (its own storage is fine).
  auto metrics = testing::HttpGet(scheduler.metrics_port(), "/metrics").second;
  EXPECT_THAT(metrics, HasSubstr("mlops_peer_up{address=\"" + metadata.address() +
                                 "\",peer=\"metadata\"} 1"));
  std::string status = testing::HttpGet(scheduler.metrics_port(), "/statusz").second;
  EXPECT_THAT(status, HasSubstr("storage: ok\n"));
  EXPECT_THAT(status, HasSubstr("peer artifact " + artifact.address() + ": up"));
  artifact.Kill();
  std::string down = "mlops_peer_up{address=\"" + artifact.address() + "\",peer=\"artifact\"} 0";
  bool seen_down = false;
  for (int i = 0; i < 100 && !seen_down; ++i) {
    seen_down = testing::HttpGet(scheduler.metrics_port(), "/metrics").second.find(down) !=
                std::string::npos;
    if (!seen_down) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(seen_down);
  EXPECT_THAT(testing::HttpGet(scheduler.metrics_port(), "/statusz").second,
              HasSubstr("peer artifact " + artifact.address() + ": DOWN"));
  EXPECT_EQ(testing::HttpGet(scheduler.metrics_port(), "/readyz").first, 200);
}

TEST(DemoTest, AServiceWithoutItsPeersRefusesToStartAndSaysWhichFlag) {
  testing::TempDir dir;
  auto alone = testing::RunCommand({MLOPS_MONITORING_BIN, "--port=0", "--metrics_port=0",
                                    "--data_dir=" + dir.path() + "/monitoring"});
  EXPECT_EQ(alone.exit_code, 1);
  EXPECT_THAT(alone.err + alone.out,
              HasSubstr("calls the artifact service, which does not run in this process: set "
                        "--artifact_address=HOST:PORT"));
}

}  // namespace
}  // namespace mlops
