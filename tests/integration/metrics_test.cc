// The metrics endpoint of a real mlops-server child process: scraped over HTTP, checked by
// promtool, and scraped by a real Prometheus server.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <thread>

#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

namespace v1 = ::mlops::metadata::v1;
using ::testing::HasSubstr;

class MetricsTest : public ::testing::Test {
 protected:
  // One server for the suite: civetweb takes seconds to stop once it has served a request.
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    server_ = new testing::ChildServer(MLOPS_SERVER_BIN, dir_->path() + "/data");
    server_->Start();
    auto stub = v1::MetadataService::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
    for (int i = 0; i < 2; ++i) {
      grpc::ClientContext context;
      v1::CreateExperimentRequest request;
      request.set_name("metrics-test");
      v1::Experiment out;
      (void)stub->CreateExperiment(&context, request, &out);  // second one: ALREADY_EXISTS
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }
  static testing::TempDir* dir_;
  static testing::ChildServer* server_;
};

testing::TempDir* MetricsTest::dir_ = nullptr;
testing::ChildServer* MetricsTest::server_ = nullptr;

TEST_F(MetricsTest, ExposesRpcProcessAndRocksDbMetrics) {
  auto [code, body] = testing::HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_EQ(code, 200);
  EXPECT_THAT(body, HasSubstr("grpc_server_handled_total{grpc_code=\"OK\",grpc_method="
                              "\"CreateExperiment\",grpc_service=\"mlops.metadata.v1."
                              "MetadataService\",grpc_type=\"unary\"} 1"));
  EXPECT_THAT(body, HasSubstr("grpc_code=\"ALREADY_EXISTS\",grpc_method=\"CreateExperiment\""));
  EXPECT_THAT(body, HasSubstr("grpc_server_handling_seconds_bucket{"));
  EXPECT_THAT(body, HasSubstr("process_resident_memory_bytes "));
  EXPECT_THAT(body, HasSubstr("mlops_rocksdb_estimate_num_keys{db=\"metadata\"}"));
}

TEST_F(MetricsTest, PassesPromtoolCheck) {
  auto [code, body] = testing::HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_EQ(code, 200);
  std::string file = dir_->path() + "/metrics.txt";
  std::ofstream(file) << body;
  auto result = testing::RunCommand({"/bin/sh", "-c", "promtool check metrics < " + file});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
}

TEST_F(MetricsTest, HealthAndReadiness) {
  EXPECT_EQ(testing::HttpGet(server_->metrics_port(), "/healthz").first, 200);
  EXPECT_EQ(testing::HttpGet(server_->metrics_port(), "/readyz").first, 200);
  EXPECT_EQ(testing::HttpGet(server_->metrics_port(), "/nothing").first, 404);
}

TEST_F(MetricsTest, RealPrometheusScrapesTheServer) {
  testing::PrometheusServer prometheus(dir_->path(), {server_->metrics_port()});
  auto check = testing::RunCommand(
      {"/usr/bin/promtool", "check", "config", dir_->path() + "/prometheus.yml"});
  ASSERT_EQ(check.exit_code, 0) << check.out << check.err;
  std::string body = prometheus.WaitFor(
      "grpc_server_handled_total{grpc_method=\"CreateExperiment\",grpc_code=\"OK\"}");
  ASSERT_THAT(body, HasSubstr("\"value\"")) << body;
  EXPECT_THAT(body, HasSubstr("\"job\":\"mlops\""));
  EXPECT_THAT(body, HasSubstr(",\"1\"]"));  // the counter's value as Prometheus stored it
}

TEST(ServerFlagsTest, HelpListsEachBinarysFlagsAndExitsZero) {
  for (const char* binary : {MLOPS_SERVER_BIN, MLOPS_METADATA_BIN, MLOPS_ARTIFACT_BIN}) {
    auto help = testing::RunCommand({binary, "--help"});
    EXPECT_EQ(help.exit_code, 0) << binary << help.err;
    EXPECT_THAT(help.out, HasSubstr("--port"));
    EXPECT_THAT(help.out, HasSubstr("--data_dir"));
    EXPECT_THAT(help.out, HasSubstr("MLOPS_<FLAG>"));
    EXPECT_THAT(help.out, ::testing::Not(HasSubstr("No flags matched")));
  }
  // The all-in-one server runs the scheduler: its capacity flags are listed there.
  EXPECT_THAT(testing::RunCommand({MLOPS_SERVER_BIN, "--help"}).out, HasSubstr("--scheduler_cpus"));
  EXPECT_THAT(testing::RunCommand({MLOPS_METADATA_BIN, "--help"}).out,
              ::testing::Not(HasSubstr("--scheduler_cpus")));
}

TEST(RpcLogTest, LogsEveryRpcWithTheClientsRequestId) {
  testing::TempDir dir;
  testing::ChildServer server(MLOPS_SERVER_BIN, dir.path() + "/data",
                              {"--log_rpcs", "--log_format=json"});
  server.Start();
  auto stub = v1::MetadataService::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext context;
    context.AddMetadata("x-request-id", "req-" + std::to_string(i));
    v1::CreateExperimentRequest request;
    request.set_name("logged");
    v1::Experiment out;
    (void)stub->CreateExperiment(&context, request, &out);  // second one: ALREADY_EXISTS
  }
  stub.reset();
  ASSERT_EQ(WEXITSTATUS(server.Terminate()), 0);
  std::ifstream in(dir.path() + "/data.log");
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(log, HasSubstr("\"event\":\"rpc\",\"method\":\"/mlops.metadata.v1.MetadataService/"
                             "CreateExperiment\",\"code\":\"OK\""));
  EXPECT_THAT(log, HasSubstr("\"request_id\":\"req-0\""));
  EXPECT_THAT(log, HasSubstr("\"code\":\"ALREADY_EXISTS\""));
  // The subject the guard admitted: anonymous with authentication off.
  EXPECT_THAT(log, HasSubstr("\"request_id\":\"req-1\",\"subject\":\"anonymous\",\"error\":"
                             "\"experiment name 'logged' is taken"));
}

}  // namespace
}  // namespace mlops
