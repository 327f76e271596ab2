// Acknowledged writes survive kill -9 of the server; SIGTERM shuts down cleanly.
#include <sys/wait.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <set>
#include <thread>

#include "mlops/metadata/v1/lineage.grpc.pb.h"
#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "mlops/metadata/v1/registry.grpc.pb.h"
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

TEST(DurabilityTest, AcknowledgedExecutionsAndAliasMovesSurviveKill9) {
  testing::TempDir dir;
  testing::ChildServer server(MLOPS_METADATA_BIN, dir.path() + "/data");
  server.Start();
  auto channel = grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
  auto lineage = v1::LineageService::NewStub(channel);
  auto registry = v1::ModelRegistry::NewStub(channel);
  {
    grpc::ClientContext context;
    v1::CreateModelVersionRequest request;
    request.set_name("durable");
    request.set_create_model(true);
    request.set_artifact_digest(std::string(64, 'f'));
    v1::ModelVersion version;
    ASSERT_TRUE(registry->CreateModelVersion(&context, request, &version).ok());
  }
  // A writer records executions (and moves an alias every 20) until the server dies.
  std::vector<v1::PutExecutionResponse> acknowledged;
  std::atomic<size_t> count{0};
  int moves = 0;
  std::thread writer([&] {
    for (int i = 0;; ++i) {
      v1::PutExecutionRequest request;
      request.mutable_execution()->set_type("Train");
      request.mutable_execution()->set_external_id("step-" + std::to_string(i));
      auto* out = request.add_artifacts();
      out->mutable_artifact()->set_type("Model");
      out->set_event_type(v1::Event::OUTPUT);
      v1::PutExecutionResponse response;
      grpc::ClientContext context;
      if (!lineage->PutExecution(&context, request, &response).ok()) break;
      acknowledged.push_back(response);
      count = acknowledged.size();
      if (i % 20 == 0) {
        v1::SetAliasRequest alias;
        alias.set_name("durable");
        alias.set_alias("production");
        alias.set_version(1);
        v1::AliasMove move;
        grpc::ClientContext alias_context;
        if (!registry->SetAlias(&alias_context, alias, &move).ok()) break;
        moves = static_cast<int>(move.sequence());
      }
    }
  });
  while (count.load() < 200) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  server.Kill();
  writer.join();

  testing::ChildServer restarted(MLOPS_METADATA_BIN, dir.path() + "/data");
  restarted.Start();
  auto channel2 = grpc::CreateChannel(restarted.address(), grpc::InsecureChannelCredentials());
  auto lineage2 = v1::LineageService::NewStub(channel2);
  auto registry2 = v1::ModelRegistry::NewStub(channel2);
  for (size_t i = 0; i < acknowledged.size(); ++i) {
    v1::GetLineageRequest request;
    request.set_execution_id(acknowledged[i].execution_id());
    request.set_direction(v1::GetLineageRequest::DOWNSTREAM);
    v1::LineageGraph graph;
    grpc::ClientContext context;
    ASSERT_TRUE(lineage2->GetLineage(&context, request, &graph).ok()) << i;
    ASSERT_EQ(graph.nodes_size(), 2) << "execution " << i << " lost its output";
    EXPECT_EQ(graph.nodes(1).artifact().id(), acknowledged[i].artifact_ids(0));
  }
  v1::GetAliasHistoryRequest history;
  history.set_name("durable");
  history.set_alias("production");
  v1::GetAliasHistoryResponse moved;
  grpc::ClientContext context;
  ASSERT_TRUE(registry2->GetAliasHistory(&context, history, &moved).ok());
  EXPECT_GE(moved.moves_size(), moves);
  // Ids keep growing after the restart: nothing acknowledged is reused.
  v1::PutExecutionRequest next;
  next.mutable_execution()->set_type("Train");
  v1::PutExecutionResponse response;
  grpc::ClientContext next_context;
  ASSERT_TRUE(lineage2->PutExecution(&next_context, next, &response).ok());
  EXPECT_GT(response.execution_id(), acknowledged.back().execution_id());
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
