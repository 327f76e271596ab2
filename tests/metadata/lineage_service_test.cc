// The lineage service and the model registry over a real gRPC channel (loopback, port 0): unary
// and streamed PutExecution, lineage of a run, registry codes, and data that survives a restart.
#include <thread>

#include "mlops/metadata/v1/lineage.grpc.pb.h"
#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "mlops/metadata/v1/registry.grpc.pb.h"
#include "services/metadata/metadata_component.h"
#include "tests/testing/testing.h"

namespace mlops::metadata {
namespace {

using ::mlops::testing::GrpcStatusIs;

class LineageServiceTest : public ::testing::Test {
 protected:
  LineageServiceTest() : server_({OpenMetadataComponent}, /*metrics=*/false) {
    lineage_ = v1::LineageService::NewStub(server_.NewChannel());
    registry_ = v1::ModelRegistry::NewStub(server_.NewChannel());
    tracking_ = v1::MetadataService::NewStub(server_.NewChannel());
  }

  v1::PutExecutionRequest TrainRequest(int64_t input, const std::string& run_id) {
    v1::PutExecutionRequest request;
    request.mutable_execution()->set_type("Train");
    request.mutable_execution()->set_run_id(run_id);
    auto* in = request.add_artifacts();
    in->mutable_artifact()->set_id(input);
    in->set_event_type(v1::Event::INPUT);
    auto* out = request.add_artifacts();
    out->mutable_artifact()->set_type("Model");
    out->set_event_type(v1::Event::OUTPUT);
    return request;
  }

  testing::InProcessServer server_;
  std::unique_ptr<v1::LineageService::Stub> lineage_;
  std::unique_ptr<v1::ModelRegistry::Stub> registry_;
  std::unique_ptr<v1::MetadataService::Stub> tracking_;
};

TEST_F(LineageServiceTest, RunsExecutionsAndModelsAcrossTheThreeServices) {
  // A tracking run, an execution linked to it, a model version from it.
  v1::Experiment experiment;
  {
    grpc::ClientContext context;
    v1::CreateExperimentRequest request;
    request.set_name("lineage-over-grpc");
    ASSERT_TRUE(tracking_->CreateExperiment(&context, request, &experiment).ok());
  }
  v1::Run run;
  {
    grpc::ClientContext context;
    v1::CreateRunRequest request;
    request.set_experiment_id(experiment.id());
    ASSERT_TRUE(tracking_->CreateRun(&context, request, &run).ok());
  }
  v1::Artifact dataset;
  {
    grpc::ClientContext context;
    v1::PutArtifactRequest request;
    request.mutable_artifact()->set_type("Dataset");
    request.mutable_artifact()->set_digest(std::string(64, 'd'));
    ASSERT_TRUE(lineage_->PutArtifact(&context, request, &dataset).ok());
  }
  v1::PutExecutionResponse put;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(lineage_->PutExecution(&context, TrainRequest(dataset.id(), run.id()), &put).ok());
  }
  {
    grpc::ClientContext context;
    v1::CreateModelVersionRequest request;
    request.set_name("grpc-model");
    request.set_create_model(true);
    request.set_source_run_id(run.id());
    request.set_artifact_id(put.artifact_ids(1));
    request.set_artifact_digest(std::string(64, 'e'));
    v1::ModelVersion version;
    ASSERT_TRUE(registry_->CreateModelVersion(&context, request, &version).ok());
    EXPECT_EQ(version.version(), 1);
  }
  // "Which data produced the model in production?" — one query from the run.
  v1::GetLineageRequest request;
  request.set_run_id(run.id());
  v1::LineageGraph graph;
  grpc::ClientContext context;
  ASSERT_TRUE(lineage_->GetLineage(&context, request, &graph).ok());
  ASSERT_EQ(graph.nodes_size(), 2);
  EXPECT_EQ(graph.nodes(1).artifact().digest(), std::string(64, 'd'));
}

TEST_F(LineageServiceTest, StreamedPutExecutionAnswersEachRequestInOrder) {
  v1::Artifact dataset;
  {
    grpc::ClientContext context;
    v1::PutArtifactRequest request;
    request.mutable_artifact()->set_type("Dataset");
    ASSERT_TRUE(lineage_->PutArtifact(&context, request, &dataset).ok());
  }
  grpc::ClientContext context;
  auto stream = lineage_->PutExecutionStream(&context);
  std::vector<v1::PutExecutionResult> results;
  std::thread reader([&] {
    v1::PutExecutionResult result;
    while (stream->Read(&result)) results.push_back(result);
  });
  for (int i = 0; i < 50; ++i) {
    // Every tenth request names a missing artifact: answered with NOT_FOUND, the stream goes on.
    ASSERT_TRUE(stream->Write(TrainRequest(i % 10 == 9 ? 999999 : dataset.id(), "")));
  }
  stream->WritesDone();
  reader.join();
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(results.size(), 50u);
  int64_t previous = 0;
  for (int i = 0; i < 50; ++i) {
    if (i % 10 == 9) {
      EXPECT_EQ(results[i].code(), grpc::StatusCode::NOT_FOUND) << i;
      EXPECT_NE(results[i].message().find("999999"), std::string::npos);
      continue;
    }
    ASSERT_EQ(results[i].code(), 0) << results[i].message();
    EXPECT_GT(results[i].response().execution_id(), previous);  // in request order
    previous = results[i].response().execution_id();
  }
}

TEST_F(LineageServiceTest, CodesOverTheWire) {
  {
    grpc::ClientContext context;
    v1::PutExecutionRequest request = TrainRequest(4242, "");
    v1::PutExecutionResponse response;
    EXPECT_THAT(lineage_->PutExecution(&context, request, &response),
                GrpcStatusIs(grpc::StatusCode::NOT_FOUND, "artifact 4242"));
  }
  {
    grpc::ClientContext context;
    v1::GetTypeRequest request;
    request.set_kind(v1::ARTIFACT);
    request.set_name("Model");
    v1::NodeType type;
    ASSERT_TRUE(lineage_->GetType(&context, request, &type).ok());
    EXPECT_TRUE(type.built_in());
  }
  {
    grpc::ClientContext context;
    v1::DeleteModelVersionRequest request;
    request.set_name("nope");
    request.set_version(1);
    v1::DeleteModelVersionResponse response;
    EXPECT_THAT(registry_->DeleteModelVersion(&context, request, &response),
                GrpcStatusIs(grpc::StatusCode::NOT_FOUND, "nope"));
  }
  {
    grpc::ClientContext context;
    v1::GetLineageRequest request;
    request.set_artifact_id(1);
    request.set_stop_filter("type = ");
    v1::LineageGraph graph;
    EXPECT_EQ(lineage_->GetLineage(&context, request, &graph).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
}

}  // namespace
}  // namespace mlops::metadata
