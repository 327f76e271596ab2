// The metadata service over a real gRPC channel to a server on loopback port 0.
#include "services/metadata/metadata_service.h"

#include <grpcpp/generic/generic_stub.h>

#include <condition_variable>
#include <mutex>

#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "services/metadata/metadata_component.h"
#include "tests/testing/testing.h"

namespace mlops::metadata {
namespace {

using ::mlops::testing::GrpcStatusIs;

class MetadataServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new testing::InProcessServer({OpenMetadataComponent}, /*metrics=*/false);
  }
  static void TearDownTestSuite() { delete server_; }
  void SetUp() override { stub_ = v1::MetadataService::NewStub(server_->NewChannel()); }

  v1::Experiment CreateExperiment(const std::string& name) {
    grpc::ClientContext context;
    v1::CreateExperimentRequest request;
    request.set_name(name);
    v1::Experiment experiment;
    EXPECT_TRUE(stub_->CreateExperiment(&context, request, &experiment).ok());
    return experiment;
  }

  v1::Run CreateRun(const std::string& experiment_id) {
    grpc::ClientContext context;
    v1::CreateRunRequest request;
    request.set_experiment_id(experiment_id);
    (*request.mutable_params())["lr"] = "0.1";
    request.mutable_source()->mutable_code()->set_commit("0123abcd");
    request.mutable_source()->add_command("python3");
    request.mutable_source()->add_command("train.py");
    v1::Run run;
    EXPECT_TRUE(stub_->CreateRun(&context, request, &run).ok());
    return run;
  }

  v1::GetMetricHistoryResponse History(const std::string& run_id, const std::string& key) {
    grpc::ClientContext context;
    v1::GetMetricHistoryRequest request;
    request.set_run_id(run_id);
    request.set_key(key);
    v1::GetMetricHistoryResponse points;
    EXPECT_TRUE(stub_->GetMetricHistory(&context, request, &points).ok());
    return points;
  }

  static testing::InProcessServer* server_;
  std::unique_ptr<v1::MetadataService::Stub> stub_;
};

testing::InProcessServer* MetadataServiceTest::server_ = nullptr;

TEST_F(MetadataServiceTest, ExperimentsAndRunsRoundTrip) {
  auto experiment = CreateExperiment("svc-roundtrip");
  auto run = CreateRun(experiment.id());
  grpc::ClientContext context;
  v1::GetRunRequest get;
  get.set_run_id(run.id());
  v1::Run fetched;
  ASSERT_TRUE(stub_->GetRun(&context, get, &fetched).ok());
  EXPECT_EQ(fetched.params().at("lr"), "0.1");
  EXPECT_EQ(fetched.source().code().commit(), "0123abcd");
  EXPECT_EQ(fetched.source().command_size(), 2);
  EXPECT_EQ(fetched.status(), v1::RUNNING);

  grpc::ClientContext list_context;
  v1::ListExperimentsRequest list;
  v1::ListExperimentsResponse experiments;
  ASSERT_TRUE(stub_->ListExperiments(&list_context, list, &experiments).ok());
  bool found = false;
  for (const auto& e : experiments.experiments()) found |= e.id() == experiment.id();
  EXPECT_TRUE(found);
}

TEST_F(MetadataServiceTest, ErrorsCarryTheMostSpecificCode) {
  auto experiment = CreateExperiment("svc-errors");
  {
    grpc::ClientContext context;
    v1::CreateExperimentRequest request;
    request.set_name("svc-errors");
    v1::Experiment out;
    EXPECT_THAT(stub_->CreateExperiment(&context, request, &out),
                GrpcStatusIs(grpc::StatusCode::ALREADY_EXISTS, "svc-errors"));
  }
  {
    grpc::ClientContext context;
    v1::GetRunRequest request;
    request.set_run_id(std::string(32, 'f'));
    v1::Run out;
    EXPECT_THAT(stub_->GetRun(&context, request, &out),
                GrpcStatusIs(grpc::StatusCode::NOT_FOUND, "not found"));
  }
  {
    grpc::ClientContext context;
    v1::SearchRunsRequest request;
    request.add_experiment_ids(experiment.id());
    request.set_filter("params.lr = ");
    v1::SearchRunsResponse out;
    EXPECT_THAT(stub_->SearchRuns(&context, request, &out),
                GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "at position 13"));
  }
  {
    auto run = CreateRun(experiment.id());
    grpc::ClientContext context;
    v1::LogBatchRequest request;
    request.set_run_id(run.id());
    (*request.mutable_params())["lr"] = "0.5";
    v1::LogBatchResponse out;
    EXPECT_THAT(stub_->LogBatch(&context, request, &out),
                GrpcStatusIs(grpc::StatusCode::FAILED_PRECONDITION, "immutable"));
  }
}

TEST_F(MetadataServiceTest, LogStreamAppliesEveryMessageInOrder) {
  auto experiment = CreateExperiment("svc-stream");
  auto run = CreateRun(experiment.id());
  grpc::ClientContext context;
  v1::LogStreamResponse response;
  auto writer = stub_->LogStream(&context, &response);
  for (int b = 0; b < 20; ++b) {
    v1::LogBatchRequest batch;
    batch.set_run_id(run.id());
    for (int i = 0; i < 500; ++i) {
      v1::Metric* m = batch.add_metrics();
      m->set_key("loss");
      m->set_value(1.0 / (b * 500 + i + 1));
      m->set_step(b * 500 + i);
      m->set_timestamp_ms(1);
    }
    ASSERT_TRUE(writer->Write(batch));
  }
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_EQ(response.batches(), 20);
  EXPECT_EQ(response.metrics(), 10000);

  v1::GetMetricHistoryResponse points = History(run.id(), "loss");
  EXPECT_EQ(points.metrics_size(), 10000);
  EXPECT_EQ(points.metrics(9999).step(), 9999);

  // A bad message ends the stream with its error; earlier ones stay applied.
  grpc::ClientContext bad_context;
  v1::LogStreamResponse bad_response;
  auto bad = stub_->LogStream(&bad_context, &bad_response);
  v1::LogBatchRequest good;
  good.set_run_id(run.id());
  (*good.mutable_tags())["stage"] = "one";
  bad->Write(good);
  v1::LogBatchRequest broken;
  broken.set_run_id("not-an-id");
  bad->Write(broken);
  bad->WritesDone();
  EXPECT_THAT(bad->Finish(), GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "message 2"));
  grpc::ClientContext get_context;
  v1::GetRunRequest get;
  get.set_run_id(run.id());
  v1::Run fetched;
  ASSERT_TRUE(stub_->GetRun(&get_context, get, &fetched).ok());
  EXPECT_EQ(fetched.tags().at("stage"), "one");
}

TEST_F(MetadataServiceTest, ReplayedBatchesOfAWriterAreAnsweredAsDuplicates) {
  auto run = CreateRun(CreateExperiment("svc-replay").id());
  auto batch_of = [&](int64_t sequence) {
    v1::LogBatchRequest batch;
    batch.set_run_id(run.id());
    batch.set_writer("sdk-1234");
    batch.set_sequence(sequence);
    v1::MetricSeries* series = batch.add_series();
    series->set_key("loss");
    for (int i = 0; i < 100; ++i) {
      series->add_values(i);
      series->add_steps(sequence * 100 + i);
      series->add_timestamps_ms(1);
    }
    return batch;
  };
  // A stream broke after its first two batches were applied: the client sends all four again.
  {
    grpc::ClientContext context;
    v1::LogStreamResponse response;
    auto writer = stub_->LogStream(&context, &response);
    ASSERT_TRUE(writer->Write(batch_of(1)) && writer->Write(batch_of(2)));
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
    EXPECT_EQ(response.metrics(), 200);
  }
  grpc::ClientContext context;
  v1::LogStreamResponse response;
  auto writer = stub_->LogStream(&context, &response);
  for (int64_t sequence = 1; sequence <= 4; ++sequence)
    ASSERT_TRUE(writer->Write(batch_of(sequence)));
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_EQ(response.batches(), 2);
  EXPECT_EQ(response.duplicates(), 2);
  EXPECT_EQ(response.metrics(), 200);
  // Unary: the answer says so.
  grpc::ClientContext unary_context;
  v1::LogBatchResponse unary;
  ASSERT_TRUE(stub_->LogBatch(&unary_context, batch_of(3), &unary).ok());
  EXPECT_TRUE(unary.duplicate());

  EXPECT_EQ(History(run.id(), "loss").metrics_size(), 400);  // each of the four batches once
}

TEST_F(MetadataServiceTest, HealthServiceReportsServing) {
  // grpc.health.v1.Health/Check with an empty request (the overall server status).
  auto [status, bytes] =
      testing::RawUnaryCall(server_->NewChannel(), "/grpc.health.v1.Health/Check", "");
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING
}

TEST_F(MetadataServiceTest, ErrorMessagesAreBoundedWhateverTheRequestHolds) {
  // A 15,000-character attribute name is echoed by the filter error; unbounded, the message would
  // exceed gRPC's metadata limit and reach the client as RESOURCE_EXHAUSTED.
  v1::Experiment experiment = CreateExperiment("bounded");
  grpc::ClientContext context;
  v1::SearchRunsRequest request;
  request.add_experiment_ids(experiment.id());
  request.set_filter(std::string(15000, 'x') + " = 1");
  v1::SearchRunsResponse response;
  grpc::Status status = stub_->SearchRuns(&context, request, &response);
  EXPECT_THAT(status, GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "more bytes)"));
  EXPECT_LE(status.error_message().size(), 2048u);
  EXPECT_THAT(status.error_message(),
              ::testing::StartsWith("filter: at position 1: unknown attribute"));
}

TEST_F(MetadataServiceTest, RequestsThatDoNotParseAreInvalidArgumentNamingTheField) {
  auto channel = server_->NewChannel();
  auto count = [&] {
    grpc::ClientContext context;
    v1::ListExperimentsRequest request;
    request.set_page_size(1000);
    v1::ListExperimentsResponse response;
    EXPECT_TRUE(stub_->ListExperiments(&context, request, &response).ok());
    return response.experiments_size();
  };
  int before = count();
  // CreateExperimentRequest.name (field 1) holding the bytes ff fe: not UTF-8.
  auto [bad_utf8, unused1] = testing::RawUnaryCall(
      channel, "/mlops.metadata.v1.MetadataService/CreateExperiment", "\x0a\x02\xff\xfe");
  EXPECT_THAT(bad_utf8, GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT,
                                     "field mlops.metadata.v1.CreateExperimentRequest.name: "
                                     "invalid UTF-8"));
  // A length prefix of 5 with 2 bytes after it: truncated.
  auto [truncated, unused2] =
      testing::RawUnaryCall(channel, "/mlops.metadata.v1.MetadataService/CreateExperiment",
                            "\x0a\x05"
                            "ab");
  EXPECT_THAT(truncated,
              GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT,
                           "not a valid mlops.metadata.v1.CreateExperimentRequest (truncated"));
  EXPECT_EQ(count(), before);
  // Through a generated stub too (the client serialises invalid UTF-8 with only a warning): a
  // map value, and a filter.
  v1::Run run = CreateRun(CreateExperiment("utf8").id());
  {
    grpc::ClientContext context;
    v1::LogBatchRequest request;
    request.set_run_id(run.id());
    (*request.mutable_tags())["team"] = "caf\xc3";
    v1::LogBatchResponse response;
    EXPECT_THAT(stub_->LogBatch(&context, request, &response),
                GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "invalid UTF-8"));
  }
  {
    grpc::ClientContext context;
    v1::SearchRunsRequest request;
    request.add_experiment_ids(run.experiment_id());
    request.set_filter("tags.team = '\xe2\x82'");
    v1::SearchRunsResponse response;
    EXPECT_THAT(stub_->SearchRuns(&context, request, &response),
                GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT,
                             "mlops.metadata.v1.SearchRunsRequest.filter"));
  }
  // In a stream: the earlier message stays applied, the call names the one that did not parse.
  {
    grpc::ClientContext context;
    v1::LogStreamResponse response;
    auto writer = stub_->LogStream(&context, &response);
    v1::LogBatchRequest ok;
    ok.set_run_id(run.id());
    (*ok.mutable_tags())["stage"] = "one";
    ASSERT_TRUE(writer->Write(ok));
    v1::LogBatchRequest bad = ok;
    (*bad.mutable_tags())["stage"] = "\xff";
    writer->Write(bad);
    writer->WritesDone();
    EXPECT_THAT(writer->Finish(),
                GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "message 2: field"));
  }
  grpc::ClientContext context;
  v1::GetRunRequest get;
  get.set_run_id(run.id());
  v1::Run fetched;
  ASSERT_TRUE(stub_->GetRun(&context, get, &fetched).ok());
  EXPECT_EQ(fetched.tags().at("stage"), "one");
  EXPECT_EQ(fetched.tags().count("team"), 0u);
}

}  // namespace
}  // namespace mlops::metadata
