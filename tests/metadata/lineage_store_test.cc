// LineageStore on a real RocksDB: schemas, atomic PutExecution, idempotent external ids, events on
// missing nodes, optimistic concurrency, context cycles, and lineage queries (directions, hops,
// stop filters, paging) checked against the graph the test built.
#include "services/metadata/lineage_store.h"

#include <set>

#include "tests/testing/testing.h"

namespace mlops::metadata {
namespace {

using ::mlops::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

v1::Value Int(int64_t v) {
  v1::Value value;
  value.set_int_value(v);
  return value;
}

v1::Value Str(const std::string& v) {
  v1::Value value;
  value.set_string_value(v);
  return value;
}

class LineageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    lineage_.reset();
    db_.reset();
    auto db = LineageStore::OpenDb(dir_.path() + "/lineage", Db::Options());
    ASSERT_OK(db.status());
    db_ = std::move(*db);
    auto lineage = LineageStore::Create(db_.get());
    ASSERT_OK(lineage.status());
    lineage_ = std::move(*lineage);
  }

  using Io = std::vector<std::tuple<int64_t, std::string, v1::Event::Type>>;
  // One step: an execution of `type` reading artifacts by id and writing new ones of the given
  // types; returns (execution id, output ids).
  std::pair<int64_t, std::vector<int64_t>> Step(const std::string& type,
                                                const std::vector<int64_t>& inputs,
                                                const std::vector<std::string>& output_types,
                                                const std::string& run_id = "",
                                                const std::string& pipeline = "") {
    v1::PutExecutionRequest request;
    request.mutable_execution()->set_type(type);
    request.mutable_execution()->set_run_id(run_id);
    request.mutable_execution()->set_state(v1::Execution::COMPLETE);
    for (size_t i = 0; i < inputs.size(); ++i) {
      auto* entry = request.add_artifacts();
      entry->mutable_artifact()->set_id(inputs[i]);
      entry->set_event_type(v1::Event::INPUT);
      entry->set_path("in/" + std::to_string(i));
    }
    for (size_t i = 0; i < output_types.size(); ++i) {
      auto* entry = request.add_artifacts();
      entry->mutable_artifact()->set_type(output_types[i]);
      entry->mutable_artifact()->set_name(type + "-out-" + std::to_string(i));
      entry->set_event_type(v1::Event::OUTPUT);
      entry->set_path("out/" + std::to_string(i));
    }
    if (!pipeline.empty()) {
      auto* context = request.add_contexts();
      context->set_type("PipelineRun");
      context->set_name(pipeline);
    }
    auto response = lineage_->PutExecution(request);
    EXPECT_OK(response.status());
    std::vector<int64_t> outputs(response->artifact_ids().begin() + inputs.size(),
                                 response->artifact_ids().end());
    return {response->execution_id(), outputs};
  }

  int64_t NewArtifact(const std::string& type, const std::string& name) {
    v1::PutArtifactRequest request;
    request.mutable_artifact()->set_type(type);
    request.mutable_artifact()->set_name(name);
    auto artifact = lineage_->PutArtifact(request);
    EXPECT_OK(artifact.status());
    return artifact->id();
  }

  // Every node of a lineage query (all pages), as "a<id>" / "e<id>" with the hop.
  std::vector<std::string> Nodes(v1::GetLineageRequest request, int* pages = nullptr) {
    std::vector<std::string> out;
    int count = 0;
    do {
      auto graph = lineage_->GetLineage(request);
      EXPECT_OK(graph.status());
      if (!graph.ok()) break;
      for (const auto& node : graph->nodes()) {
        out.push_back((node.has_artifact() ? "a" + std::to_string(node.artifact().id())
                                           : "e" + std::to_string(node.execution().id())) +
                      "@" + std::to_string(node.hop()));
      }
      request.set_page_token(graph->next_page_token());
      ++count;
    } while (!request.page_token().empty());
    if (pages) *pages = count;
    return out;
  }

  static std::string A(int64_t id, int hop) {
    return "a" + std::to_string(id) + "@" + std::to_string(hop);
  }
  static std::string E(int64_t id, int hop) {
    return "e" + std::to_string(id) + "@" + std::to_string(hop);
  }

  testing::TempDir dir_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<LineageStore> lineage_;
};

TEST_F(LineageStoreTest, BuiltInTypesAndSchemasThatOnlyGrow) {
  auto types = lineage_->ListTypes(v1::ARTIFACT);
  ASSERT_OK(types.status());
  std::set<std::string> names;
  for (const auto& t : *types) names.insert(t.name());
  EXPECT_THAT(names, UnorderedElementsAre("Dataset", "Model", "Metrics", "Statistics", "Logs"));
  auto executions = lineage_->ListTypes(v1::EXECUTION);
  ASSERT_EQ(executions->size(), 5u);

  v1::NodeType type;
  type.set_kind(v1::ARTIFACT);
  type.set_name("Embedding");
  (*type.mutable_properties())["dim"] = v1::INT;
  ASSERT_OK(lineage_->PutType(type).status());
  (*type.mutable_properties())["metric"] = v1::STRING;
  auto grown = lineage_->PutType(type);
  ASSERT_OK(grown.status());
  EXPECT_EQ(grown->properties_size(), 2);
  (*type.mutable_properties())["dim"] = v1::DOUBLE;
  EXPECT_THAT(lineage_->PutType(type).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "only grows"));
  type.set_name("9bad");
  EXPECT_THAT(lineage_->PutType(type).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "type.name"));
  Reopen();  // built-ins are not registered twice; custom types persist
  EXPECT_EQ(lineage_->GetType(v1::ARTIFACT, "Embedding")->properties_size(), 2);
}

TEST_F(LineageStoreTest, PropertiesMustMatchTheSchema) {
  v1::PutArtifactRequest request;
  auto* a = request.mutable_artifact();
  a->set_type("Dataset");
  (*a->mutable_properties())["rows"] = Str("many");
  EXPECT_THAT(lineage_->PutArtifact(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "properties.rows: type Dataset declares it INT"));
  a->mutable_properties()->clear();
  (*a->mutable_properties())["colour"] = Str("red");
  EXPECT_THAT(lineage_->PutArtifact(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "not in the schema"));
  a->mutable_properties()->clear();
  (*a->mutable_properties())["rows"] = Int(150);
  (*a->mutable_custom_properties())["colour"] = Str("red");
  auto stored = lineage_->PutArtifact(request);
  ASSERT_OK(stored.status());
  EXPECT_EQ(stored->state(), v1::Artifact::LIVE);
  a->set_type("NoSuchType");
  EXPECT_THAT(lineage_->PutArtifact(request).status(),
              StatusIs(absl::StatusCode::kNotFound, "NoSuchType"));
  a->set_type("Dataset");
  a->set_digest("not-a-digest");
  EXPECT_THAT(lineage_->PutArtifact(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "digest"));
}

TEST_F(LineageStoreTest, UpdatesUseOptimisticConcurrency) {
  int64_t id = NewArtifact("Model", "m");
  v1::GetNodeRequest get;
  get.set_id(id);
  v1::Artifact read = *lineage_->GetArtifact(get);
  v1::PutArtifactRequest first;
  *first.mutable_artifact() = read;
  first.mutable_artifact()->set_uri("s3://bucket/m1");
  first.set_expected_update_time_ms(read.update_time_ms());
  auto updated = lineage_->PutArtifact(first);
  ASSERT_OK(updated.status());
  EXPECT_GT(updated->update_time_ms(), read.update_time_ms());
  // A second writer that read before the first update loses.
  v1::PutArtifactRequest second = first;
  second.mutable_artifact()->set_uri("s3://bucket/m2");
  EXPECT_THAT(lineage_->PutArtifact(second).status(),
              StatusIs(absl::StatusCode::kAborted, "expected_update_time_ms"));
  EXPECT_EQ(lineage_->GetArtifact(get)->uri(), "s3://bucket/m1");
  second.mutable_artifact()->set_type("Dataset");
  second.set_expected_update_time_ms(0);
  EXPECT_THAT(lineage_->PutArtifact(second).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "types never change"));
  v1::PutArtifactRequest missing;
  missing.mutable_artifact()->set_id(999999);
  EXPECT_THAT(lineage_->PutArtifact(missing).status(),
              StatusIs(absl::StatusCode::kNotFound, "999999"));
}

TEST_F(LineageStoreTest, PutExecutionIsAtomicAndIdempotentByExternalId) {
  int64_t data = NewArtifact("Dataset", "iris");
  v1::PutExecutionRequest request;
  request.mutable_execution()->set_type("Train");
  request.mutable_execution()->set_external_id("pipeline-7/train/attempt-1");
  request.mutable_execution()->set_run_id("0123456789abcdef0123456789abcdef");
  auto* in = request.add_artifacts();
  in->mutable_artifact()->set_id(data);
  in->set_event_type(v1::Event::INPUT);
  in->set_path("train/0");
  auto* out = request.add_artifacts();
  out->mutable_artifact()->set_type("Model");
  out->mutable_artifact()->set_external_id("pipeline-7/model");
  out->set_event_type(v1::Event::OUTPUT);
  out->set_path("model/0");
  auto* context = request.add_contexts();
  context->set_type("PipelineRun");
  context->set_name("pipeline-7");
  auto first = lineage_->PutExecution(request);
  ASSERT_OK(first.status());
  EXPECT_FALSE(first->already_existed());
  ASSERT_EQ(first->artifact_ids_size(), 2);
  EXPECT_EQ(first->artifact_ids(0), data);
  // The retry returns the same ids and writes nothing.
  auto retry = lineage_->PutExecution(request);
  ASSERT_OK(retry.status());
  EXPECT_TRUE(retry->already_existed());
  EXPECT_EQ(retry->execution_id(), first->execution_id());
  EXPECT_EQ(retry->artifact_ids(1), first->artifact_ids(1));
  EXPECT_EQ(retry->context_ids(0), first->context_ids(0));
  v1::ListNodesRequest list;
  EXPECT_EQ(lineage_->ListExecutions(list)->executions_size(), 1);
  EXPECT_EQ(lineage_->ListArtifacts(list)->artifacts_size(), 2);
  // The same external id for another type of execution is refused.
  request.mutable_execution()->set_type("Evaluate");
  EXPECT_THAT(lineage_->PutExecution(request).status(),
              StatusIs(absl::StatusCode::kAlreadyExists, "belongs to a Train"));
  // The context was created once and reused by name; it has both members.
  v1::GetContextMembersRequest members;
  members.set_context_id(first->context_ids(0));
  auto got = lineage_->GetContextMembers(members);
  ASSERT_OK(got.status());
  EXPECT_EQ(got->artifacts_size(), 2);
  EXPECT_EQ(got->executions_size(), 1);
}

TEST_F(LineageStoreTest, EventsOnMissingNodesAreNotFoundAndWriteNothing) {
  v1::PutExecutionRequest request;
  request.mutable_execution()->set_type("Train");
  auto* good = request.add_artifacts();
  good->mutable_artifact()->set_type("Model");
  good->set_event_type(v1::Event::OUTPUT);
  auto* missing = request.add_artifacts();
  missing->mutable_artifact()->set_id(424242);
  missing->set_event_type(v1::Event::INPUT);
  EXPECT_THAT(lineage_->PutExecution(request).status(),
              StatusIs(absl::StatusCode::kNotFound, "artifact 424242"));
  missing->mutable_artifact()->set_id(0);
  missing->mutable_artifact()->set_type("Dataset");
  request.add_contexts()->set_id(777);
  EXPECT_THAT(lineage_->PutExecution(request).status(),
              StatusIs(absl::StatusCode::kNotFound, "context 777"));
  request.clear_contexts();
  missing->set_event_type(v1::Event::TYPE_UNSPECIFIED);
  EXPECT_THAT(lineage_->PutExecution(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "event_type"));
  v1::PutExecutionRequest update;
  update.mutable_execution()->set_id(31337);
  EXPECT_THAT(lineage_->PutExecution(update).status(),
              StatusIs(absl::StatusCode::kNotFound, "execution 31337"));
  v1::ListNodesRequest list;
  EXPECT_EQ(lineage_->ListExecutions(list)->executions_size(), 0);
  EXPECT_EQ(lineage_->ListArtifacts(list)->artifacts_size(), 0);
}

TEST_F(LineageStoreTest, ExecutionUpdatesAddEventsAndCheckTheirVersion) {
  auto [train, outputs] = Step("Train", {}, {});
  v1::GetNodeRequest get;
  get.set_id(train);
  v1::Execution read = *lineage_->GetExecution(get);
  EXPECT_EQ(read.state(), v1::Execution::COMPLETE);
  v1::PutExecutionRequest finish;
  finish.mutable_execution()->set_id(train);
  finish.mutable_execution()->set_state(v1::Execution::FAILED);
  finish.set_expected_update_time_ms(read.update_time_ms());
  auto* log = finish.add_artifacts();
  log->mutable_artifact()->set_type("Logs");
  log->set_event_type(v1::Event::OUTPUT);
  ASSERT_OK(lineage_->PutExecution(finish).status());
  EXPECT_EQ(lineage_->GetExecution(get)->state(), v1::Execution::FAILED);
  EXPECT_THAT(lineage_->PutExecution(finish).status(), StatusIs(absl::StatusCode::kAborted, ""));
}

TEST_F(LineageStoreTest, ContextCyclesAreRejected) {
  std::vector<int64_t> ids;
  for (const char* name : {"a", "b", "c"}) {
    v1::PutContextRequest request;
    request.mutable_context()->set_type("Experiment");
    request.mutable_context()->set_name(name);
    auto context = lineage_->PutContext(request);
    ASSERT_OK(context.status());
    ids.push_back(context->id());
  }
  ASSERT_OK(lineage_->AddParentContext(ids[0], ids[1]));  // b is a's parent
  ASSERT_OK(lineage_->AddParentContext(ids[1], ids[2]));  // c is b's parent
  EXPECT_THAT(lineage_->AddParentContext(ids[2], ids[0]),
              StatusIs(absl::StatusCode::kInvalidArgument, "cycle"));
  EXPECT_THAT(lineage_->AddParentContext(ids[1], ids[1]),
              StatusIs(absl::StatusCode::kInvalidArgument, "own parent"));
  EXPECT_THAT(lineage_->AddParentContext(ids[0], 999), StatusIs(absl::StatusCode::kNotFound, ""));
  ASSERT_OK(lineage_->AddParentContext(ids[0], ids[2]));  // a DAG, not a cycle
  v1::GetContextMembersRequest members;
  members.set_context_id(ids[2]);
  EXPECT_THAT(lineage_->GetContextMembers(members)->child_context_ids(),
              UnorderedElementsAre(ids[0], ids[1]));
  // The same (type, name) is the same context.
  v1::PutContextRequest again;
  again.mutable_context()->set_type("Experiment");
  again.mutable_context()->set_name("a");
  EXPECT_EQ(lineage_->PutContext(again)->id(), ids[0]);
}

TEST_F(LineageStoreTest, LineageUpstreamDownstreamHopsAndStopFilters) {
  // raw -> ingest -> data -> preprocess -> (train_split, test_split) -> train -> model
  //                                          test_split + model -> evaluate -> metrics
  int64_t raw = NewArtifact("Dataset", "raw");
  auto [ingest, ingest_out] = Step("Transform", {raw}, {"Dataset"}, "", "p1");
  auto [prep, splits] = Step("Transform", {ingest_out[0]}, {"Dataset", "Dataset"}, "", "p1");
  auto [train, model] =
      Step("Train", {splits[0]}, {"Model"}, "0123456789abcdef0123456789abcdef", "p1");
  auto [eval, metrics] = Step("Evaluate", {splits[1], model[0]}, {"Metrics"}, "", "p1");

  v1::GetLineageRequest up;
  up.set_artifact_id(model[0]);
  up.set_max_hops(3);
  EXPECT_THAT(Nodes(up), ElementsAre(A(model[0], 0), E(train, 1), A(splits[0], 2), E(prep, 3)));
  up.set_max_hops(10);
  EXPECT_THAT(Nodes(up), ElementsAre(A(model[0], 0), E(train, 1), A(splits[0], 2), E(prep, 3),
                                     A(ingest_out[0], 4), E(ingest, 5), A(raw, 6)));
  // Stop at datasets: included, not expanded.
  up.set_stop_filter("type = 'Dataset' and kind = 'artifact'");
  auto graph = lineage_->GetLineage(up);
  ASSERT_OK(graph.status());
  ASSERT_EQ(graph->nodes_size(), 3);
  EXPECT_TRUE(graph->nodes(2).stopped());
  EXPECT_EQ(graph->edges_size(), 2);

  v1::GetLineageRequest down;
  down.set_artifact_id(splits[1]);
  down.set_direction(v1::GetLineageRequest::DOWNSTREAM);
  EXPECT_THAT(Nodes(down), ElementsAre(A(splits[1], 0), E(eval, 1), A(metrics[0], 2)));

  v1::GetLineageRequest both;
  both.set_execution_id(train);
  both.set_direction(v1::GetLineageRequest::BOTH);
  both.set_max_hops(2);
  EXPECT_THAT(Nodes(both),
              ElementsAre(E(train, 0), A(splits[0], 1), A(model[0], 1), E(prep, 2), E(eval, 2)));

  // From a run: its executions are the start.
  v1::GetLineageRequest run;
  run.set_run_id("0123456789abcdef0123456789abcdef");
  run.set_max_hops(1);
  EXPECT_THAT(Nodes(run), ElementsAre(E(train, 0), A(splits[0], 1)));

  // Paging: one node a page gives the same sequence, and every edge once.
  up.clear_stop_filter();
  up.set_page_size(1);
  int pages = 0;
  EXPECT_EQ(Nodes(up, &pages).size(), 7u);
  EXPECT_EQ(pages, 7);
  size_t edges = 0;
  v1::GetLineageRequest paged = up;
  do {
    auto page = lineage_->GetLineage(paged);
    ASSERT_OK(page.status());
    edges += static_cast<size_t>(page->edges_size());
    paged.set_page_token(page->next_page_token());
  } while (!paged.page_token().empty());
  EXPECT_EQ(edges, 6u);

  v1::GetLineageRequest bad;
  EXPECT_THAT(lineage_->GetLineage(bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "start"));
  bad.set_artifact_id(123456);
  EXPECT_THAT(lineage_->GetLineage(bad).status(), StatusIs(absl::StatusCode::kNotFound, ""));
  bad.set_artifact_id(raw);
  bad.set_max_hops(101);
  EXPECT_THAT(lineage_->GetLineage(bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_hops"));
  bad.set_max_hops(2);
  bad.set_stop_filter("metrics.acc > 1");
  EXPECT_THAT(lineage_->GetLineage(bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "unknown field prefix"));
}

TEST_F(LineageStoreTest, AQueryOverItsBudgetOfNodesOrEdgesIsRefused) {
  // One dataset read by 10 executions: 11 nodes, 10 edges from the dataset.
  int64_t data = NewArtifact("Dataset", "popular");
  for (int i = 0; i < 10; ++i) Step("Train", {data}, {});
  v1::GetLineageRequest down;
  down.set_artifact_id(data);
  down.set_direction(v1::GetLineageRequest::DOWNSTREAM);
  EXPECT_EQ(Nodes(down).size(), 11u);
  auto with_budget = [&](LineageBudget budget) {
    auto store = LineageStore::Create(db_.get(), budget);
    EXPECT_OK(store.status());
    return (*store)->GetLineage(down).status();
  };
  EXPECT_THAT(
      with_budget({5, 100}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "lineage: more than 5 nodes within 3 hops; use fewer hops or a stop_filter"));
  EXPECT_THAT(with_budget({100, 5}),
              StatusIs(absl::StatusCode::kInvalidArgument, "lineage: more than 5 edges within 3"));
  // The executions' own events are read too (one each): 20 edges examined in all.
  EXPECT_THAT(with_budget({100, 15}),
              StatusIs(absl::StatusCode::kInvalidArgument, "more than 15 edges"));
  EXPECT_OK(with_budget({11, 20}));
}

// Projects (docs/api.md, "Projects"): a node's project is its type's; the built-in types exist
// in every project; a node of another project is NOT_FOUND by id, cannot be linked, and is not
// listed; external ids are names in their project.
TEST_F(LineageStoreTest, NodesBelongToTheProjectOfTheirType) {
  v1::PutArtifactRequest theirs;
  theirs.mutable_artifact()->set_type("projects/vision/Dataset");  // built-in, in vision
  theirs.mutable_artifact()->set_name("images");
  theirs.mutable_artifact()->set_external_id("projects/vision/images@1");
  auto artifact = lineage_->PutArtifact(theirs, "vision");
  ASSERT_OK(artifact.status());
  v1::PutArtifactRequest ours;
  ours.mutable_artifact()->set_type("Dataset");
  ours.mutable_artifact()->set_external_id("images@1");  // the same id in default: another node
  auto our_artifact = lineage_->PutArtifact(ours);
  ASSERT_OK(our_artifact.status());
  EXPECT_NE(our_artifact->id(), artifact->id());

  v1::GetNodeRequest get;
  get.set_id(artifact->id());
  EXPECT_OK(lineage_->GetArtifact(get, "vision").status());
  EXPECT_THAT(lineage_->GetArtifact(get).status(),
              StatusIs(absl::StatusCode::kNotFound, "not found"));
  // A type or external id of another project than the request's is refused.
  EXPECT_THAT(lineage_->PutArtifact(theirs, "default").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "is not in project default"));
  // An execution of default cannot read vision's artifact, nor vision's a default one.
  v1::PutExecutionRequest reads;
  reads.mutable_execution()->set_type("Train");
  auto* input = reads.add_artifacts();
  input->mutable_artifact()->set_id(artifact->id());
  input->set_event_type(v1::Event::INPUT);
  EXPECT_THAT(lineage_->PutExecution(reads).status(),
              StatusIs(absl::StatusCode::kNotFound, "not found"));
  reads.mutable_execution()->set_type("projects/vision/Train");
  input->mutable_artifact()->set_id(our_artifact->id());
  EXPECT_THAT(lineage_->PutExecution(reads, "vision").status(),
              StatusIs(absl::StatusCode::kNotFound, "not found"));
  input->mutable_artifact()->set_id(artifact->id());
  auto step = lineage_->PutExecution(reads, "vision");
  ASSERT_OK(step.status());

  // Lineage and lists stay in their project.
  v1::GetLineageRequest down;
  down.set_artifact_id(artifact->id());
  down.set_direction(v1::GetLineageRequest::DOWNSTREAM);
  auto graph = lineage_->GetLineage(down, "vision");
  ASSERT_OK(graph.status());
  EXPECT_EQ(graph->nodes_size(), 2);
  EXPECT_THAT(lineage_->GetLineage(down).status(),
              StatusIs(absl::StatusCode::kNotFound, "not found"));
  v1::ListNodesRequest list;
  auto listed = lineage_->ListArtifacts(list);
  ASSERT_OK(listed.status());
  ASSERT_EQ(listed->artifacts_size(), 1);
  EXPECT_EQ(listed->artifacts(0).id(), our_artifact->id());
  listed = lineage_->ListArtifacts(list, "vision");
  ASSERT_OK(listed.status());
  ASSERT_EQ(listed->artifacts_size(), 1);
  EXPECT_EQ(listed->artifacts(0).id(), artifact->id());

  // Types: vision's own and the built-in ones under its name; default sees none of vision's.
  v1::NodeType type;
  type.set_kind(v1::ARTIFACT);
  type.set_name("projects/vision/Images");
  ASSERT_OK(lineage_->PutType(type).status());
  auto vision_types = lineage_->ListTypes(v1::ARTIFACT, "vision");
  ASSERT_OK(vision_types.status());
  std::vector<std::string> names;
  for (const auto& t : *vision_types) names.push_back(t.name());
  EXPECT_THAT(names, ::testing::Contains("projects/vision/Images"));
  EXPECT_THAT(names, ::testing::Contains("projects/vision/Dataset"));
  EXPECT_THAT(names, ::testing::Not(::testing::Contains("Dataset")));
  auto default_types = lineage_->ListTypes(v1::ARTIFACT);
  ASSERT_OK(default_types.status());
  for (const auto& t : *default_types) EXPECT_EQ(ProjectOf(t.name()), "default") << t.name();
}

TEST_F(LineageStoreTest, ListFiltersUseTheLineageDialect) {
  for (int rows : {10, 200, 3000}) {
    v1::PutArtifactRequest request;
    request.mutable_artifact()->set_type("Dataset");
    request.mutable_artifact()->set_name("d" + std::to_string(rows));
    (*request.mutable_artifact()->mutable_properties())["rows"] = Int(rows);
    ASSERT_OK(lineage_->PutArtifact(request).status());
  }
  NewArtifact("Model", "m");
  v1::ListNodesRequest list;
  list.set_filter("properties.rows > 100");
  auto big = lineage_->ListArtifacts(list);
  ASSERT_OK(big.status());
  ASSERT_EQ(big->artifacts_size(), 2);
  list.set_filter("name like 'd%' and state = 'live'");
  list.set_type("Dataset");
  list.set_page_size(2);
  auto page = lineage_->ListArtifacts(list);
  ASSERT_OK(page.status());
  EXPECT_EQ(page->artifacts_size(), 2);
  list.set_page_token(page->next_page_token());
  EXPECT_EQ(lineage_->ListArtifacts(list)->artifacts_size(), 1);
  list.set_filter("status = 'FINISHED'");
  list.clear_page_token();
  EXPECT_THAT(lineage_->ListArtifacts(list).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "unknown attribute 'status'"));
}

TEST_F(LineageStoreTest, IdsSurviveReopen) {
  int64_t first = NewArtifact("Dataset", "x");
  Reopen();
  int64_t second = NewArtifact("Dataset", "y");
  EXPECT_EQ(second, first + 1);
}

}  // namespace
}  // namespace mlops::metadata
