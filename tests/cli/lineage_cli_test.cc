// `mlops lineage` and `mlops models` (the built CLI) against a child mlops-server whose lineage
// graph the test writes through the gRPC API; dot output is rendered by Graphviz.
#include <fstream>

#include "mlops/metadata/v1/lineage.grpc.pb.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

namespace v1 = ::mlops::metadata::v1;
using ::testing::HasSubstr;

class LineageCliTest : public testing::ServerSuite {
 protected:
  static testing::CommandResult Mlops(std::vector<std::string> args) {
    return ServerSuite::Mlops(std::move(args), {"USER=carol"});
  }
};

TEST_F(LineageCliTest, ModelsAndTheirLineageFromTheCommandLine) {
  auto stub = v1::LineageService::NewStub(
      grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  // dataset -> Transform -> train split -> Train -> model
  auto put = [&](const std::string& type, std::vector<int64_t> inputs, const std::string& output,
                 const std::string& name) {
    v1::PutExecutionRequest request;
    request.mutable_execution()->set_type(type);
    request.mutable_execution()->set_state(v1::Execution::COMPLETE);
    for (int64_t id : inputs) {
      auto* in = request.add_artifacts();
      in->mutable_artifact()->set_id(id);
      in->set_event_type(v1::Event::INPUT);
      in->set_path("in/0");
    }
    auto* out = request.add_artifacts();
    out->mutable_artifact()->set_type(output);
    out->mutable_artifact()->set_name(name);
    out->mutable_artifact()->set_digest(std::string(64, output == "Model" ? 'b' : 'c'));
    out->set_event_type(v1::Event::OUTPUT);
    out->set_path("out/0");
    v1::PutExecutionResponse response;
    grpc::ClientContext context;
    EXPECT_TRUE(stub->PutExecution(&context, request, &response).ok());
    return response.artifact_ids(response.artifact_ids_size() - 1);
  };
  int64_t raw = put("Transform", {}, "Dataset", "iris-raw");
  int64_t split = put("Transform", {raw}, "Dataset", "iris-train");
  int64_t model = put("Train", {split}, "Model", "iris-model");

  auto create = Mlops({"models", "create", "iris", "--description", "flowers"});
  ASSERT_EQ(create.exit_code, 0) << create.err;
  for (int i = 0; i < 2; ++i) {
    auto reg = Mlops({"models", "register", "iris", "--digest", std::string(64, 'b'),
                      "--artifact-id", std::to_string(model)});
    ASSERT_EQ(reg.exit_code, 0) << reg.err;
    EXPECT_THAT(reg.out, HasSubstr("version:  " + std::to_string(i + 1)));
  }
  auto alias = Mlops({"models", "alias", "iris", "production", "1", "--reason", "first"});
  ASSERT_EQ(alias.exit_code, 0) << alias.err;
  EXPECT_THAT(alias.out, HasSubstr("iris@production: - -> v1"));
  EXPECT_THAT(alias.out, HasSubstr("by carol"));
  ASSERT_EQ(Mlops({"models", "alias", "iris", "production", "2", "--expect", "1"}).exit_code, 0);
  auto stale = Mlops({"models", "alias", "iris", "production", "1", "--expect", "1"});
  EXPECT_EQ(stale.exit_code, 1);
  EXPECT_THAT(stale.err, HasSubstr("ABORTED"));
  auto history = Mlops({"models", "history", "iris", "production"});
  ASSERT_EQ(history.exit_code, 0) << history.err;
  EXPECT_THAT(history.out, HasSubstr("v1    v2"));
  auto at = Mlops({"models", "history", "iris", "production", "--at", "2099-01-01"});
  ASSERT_EQ(at.exit_code, 0) << at.err;
  EXPECT_THAT(at.out, HasSubstr("iris@production at 2099-01-01: version 2"));
  // Before the first move: the time is said as it was written, not in milliseconds.
  auto before = Mlops({"models", "history", "iris", "production", "--at", "2020-01-01T00:00:00Z"});
  EXPECT_EQ(before.exit_code, 1);
  EXPECT_THAT(before.err, HasSubstr("pointed at nothing at 2020-01-01T00:00:00Z\n"));
  auto del = Mlops({"models", "delete-version", "iris", "2"});
  EXPECT_EQ(del.exit_code, 1);
  EXPECT_THAT(del.err, HasSubstr("FAILED_PRECONDITION: alias production points at version 2"));
  auto versions = Mlops({"models", "versions", "iris"});
  ASSERT_EQ(versions.exit_code, 0);
  EXPECT_THAT(versions.out, HasSubstr("production"));
  auto show = Mlops({"models", "show", "iris@production"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("version:  2"));

  auto table = Mlops({"lineage", "model:iris@production", "--depth", "4"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("Model iris-model"));
  EXPECT_THAT(table.out, HasSubstr("Dataset iris-train"));
  EXPECT_THAT(table.out, HasSubstr("Dataset iris-raw"));
  EXPECT_THAT(table.out, HasSubstr("5 nodes, 4 edges"));
  auto shallow = Mlops({"lineage", "artifact:" + std::to_string(model), "--depth", "1"});
  EXPECT_THAT(shallow.out, HasSubstr("2 nodes"));
  auto down = Mlops({"lineage", std::to_string(raw), "--downstream", "--depth", "4"});
  EXPECT_THAT(down.out, HasSubstr("Model iris-model"));

  auto dot = Mlops({"--output", "dot", "lineage", "artifact:" + std::to_string(model)});
  ASSERT_EQ(dot.exit_code, 0) << dot.err;
  EXPECT_THAT(dot.out, HasSubstr("digraph lineage"));
  std::string dot_file = dir_->path() + "/lineage.dot";
  std::ofstream(dot_file) << dot.out;
  auto svg = testing::RunCommand({"/usr/bin/dot", "-Tsvg", dot_file});
  ASSERT_EQ(svg.exit_code, 0) << svg.err;
  EXPECT_THAT(svg.out, HasSubstr("<svg"));
  EXPECT_THAT(svg.out, HasSubstr("iris&#45;model"));

  auto json = Mlops({"--output", "json", "lineage", "artifact:" + std::to_string(model)});
  EXPECT_THAT(json.out, HasSubstr("\"nodes\""));
  auto missing = Mlops({"lineage", "artifact:99999"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
  // A model registered from a file gets a lineage node of its own (none recorded those bytes).
  std::string file = dir_->path() + "/model.bin";
  std::ofstream(file) << "weights";
  auto from_file = Mlops({"models", "register", "fresh", "--file", file});
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  ASSERT_EQ(Mlops({"models", "alias", "fresh", "production", "1"}).exit_code, 0);
  auto fresh = Mlops({"lineage", "model:fresh@production"});
  ASSERT_EQ(fresh.exit_code, 0) << fresh.err;
  EXPECT_THAT(fresh.out, HasSubstr("Model fresh"));
  // The same file again: the same node, a new version.
  auto again = Mlops({"models", "register", "fresh", "--file", file});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  auto versions_json = Mlops({"--output", "json", "models", "versions", "fresh"});
  EXPECT_THAT(versions_json.out, HasSubstr("\"artifact_id\""));
  // By digest alone, with nothing recorded: the error says what to do.
  ASSERT_EQ(Mlops({"models", "register", "bare", "--digest", std::string(64, 'e')}).exit_code, 0);
  auto bare = Mlops({"lineage", "model:bare@1"});
  EXPECT_EQ(bare.exit_code, 1);
  EXPECT_THAT(bare.err, HasSubstr("register the file with --file"));
  // Inside a pipeline step (MLOPS_STEP_KEY), a retried attempt's registration is the same version.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto registered = testing::ServerSuite::Mlops(
        {"models", "register", "stepped", "--digest", std::string(64, 'f')},
        {"MLOPS_STEP_KEY=0123456789abcdef0123456789abcdef"});
    ASSERT_EQ(registered.exit_code, 0) << registered.err;
    EXPECT_THAT(registered.out, HasSubstr("version:  1"));
  }
  auto bad = Mlops({"--output", "dot", "models", "list"});
  EXPECT_EQ(bad.exit_code, 2);
}

}  // namespace
}  // namespace mlops
