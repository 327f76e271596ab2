// Acknowledged writes survive kill -9 of the server; SIGTERM shuts down cleanly.
#include <sys/wait.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <set>
#include <thread>

#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

namespace v1 = ::mlops::metadata::v1;

std::unique_ptr<v1::MetadataService::Stub> Connect(const testing::ChildServer& server) {
  return v1::MetadataService::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
}

TEST(DurabilityTest, AcknowledgedPointsSurviveKill9) {
  testing::TempDir dir;
  testing::ChildServer server(MLOPS_METADATA_BIN, dir.path() + "/data");
  server.Start();
  auto stub = Connect(server);
  std::string run_id;
  {
    grpc::ClientContext c1;
    v1::CreateExperimentRequest e;
    e.set_name("durable");
    v1::Experiment experiment;
    ASSERT_TRUE(stub->CreateExperiment(&c1, e, &experiment).ok());
    grpc::ClientContext c2;
    v1::CreateRunRequest r;
    r.set_experiment_id(experiment.id());
    v1::Run run;
    ASSERT_TRUE(stub->CreateRun(&c2, r, &run).ok());
    run_id = run.id();
  }
  // Ingest batches until the server dies; remember which batches were acknowledged.
  std::atomic<int> acknowledged{0};
  std::atomic<bool> failed{false};
  std::thread writer([&] {
    for (int batch = 0; batch < 100000 && !failed; ++batch) {
      v1::LogBatchRequest request;
      request.set_run_id(run_id);
      for (int i = 0; i < 100; ++i) {
        v1::Metric* m = request.add_metrics();
        m->set_key("loss");
        m->set_value(batch + i / 100.0);
        m->set_step(batch * 100 + i);
        m->set_timestamp_ms(1);
      }
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      v1::LogBatchResponse response;
      if (!stub->LogBatch(&context, request, &response).ok()) {
        failed = true;
        break;
      }
      acknowledged = batch + 1;
    }
  });
  while (acknowledged < 200) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  server.Kill();  // SIGKILL while the writer is mid-stream
  writer.join();
  ASSERT_TRUE(failed);
  int acked = acknowledged;
  ASSERT_GE(acked, 200);

  server.Start();
  auto restarted = Connect(server);
  v1::GetMetricHistoryRequest history;
  history.set_run_id(run_id);
  history.set_key("loss");
  history.set_page_size(100000);
  std::set<int64_t> steps;
  do {
    grpc::ClientContext context;
    v1::GetMetricHistoryResponse page;
    ASSERT_TRUE(restarted->GetMetricHistory(&context, history, &page).ok());
    for (const auto& m : page.metrics()) steps.insert(m.step());
    history.set_page_token(page.next_page_token());
  } while (!history.page_token().empty());
  // Every acknowledged point is there; the batch in flight is all there or not at all.
  for (int64_t step = 0; step < static_cast<int64_t>(acked) * 100; ++step) {
    ASSERT_TRUE(steps.count(step)) << "acknowledged step " << step << " lost";
  }
  EXPECT_EQ(steps.size() % 100, 0u) << "a batch was applied partially";
  EXPECT_LE(steps.size(), static_cast<size_t>(acked + 1) * 100);
  // The run record (latest metrics) agrees with the history.
  grpc::ClientContext get_context;
  v1::GetRunRequest get;
  get.set_run_id(run_id);
  v1::Run run;
  ASSERT_TRUE(restarted->GetRun(&get_context, get, &run).ok());
  ASSERT_EQ(run.latest_metrics_size(), 1);
  EXPECT_EQ(run.latest_metrics(0).step(), *steps.rbegin());
}

TEST(DurabilityTest, SigtermShutsDownGracefully) {
  testing::TempDir dir;
  // Flags fall back to MLOPS_<FLAG> environment variables: JSON logs without --log_format.
  setenv("MLOPS_LOG_FORMAT", "json", 1);
  testing::ChildServer server(MLOPS_SERVER_BIN, dir.path() + "/data");
  server.Start();
  unsetenv("MLOPS_LOG_FORMAT");
  int status = server.Terminate();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::ifstream log(dir.path() + "/data.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, ::testing::HasSubstr("\"level\":\"INFO\",\"event\":\"serving\""));
  EXPECT_THAT(text, ::testing::HasSubstr("\"event\":\"stopped\""));
  // It released the database: a new server opens the same directory.
  server.Start();
  EXPECT_GT(server.pid(), 0);
}

}  // namespace
}  // namespace mlops
