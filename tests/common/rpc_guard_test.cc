// The guard in front of every RPC, on a real server hosting all four services with token
// authentication on: the access table covers every method of every service descriptor, no token
// is UNAUTHENTICATED everywhere, each role is held to the table on every method, a refused write
// stores nothing, the token file reloads without a restart, per-subject rate and stream limits.
#include "services/common/rpc_guard.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <thread>

#include "mlops/audit/v1/audit.grpc.pb.h"
#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "services/artifact/artifact_component.h"
#include "services/common/ids.h"
#include "services/metadata/metadata_component.h"
#include "services/monitoring/monitoring_component.h"
#include "services/scheduler/scheduler_component.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

namespace md = mlops::metadata::v1;
using ::testing::Not;

constexpr const char* kServiceFiles[] = {
    "mlops/metadata/v1/metadata.proto",   "mlops/metadata/v1/lineage.proto",
    "mlops/metadata/v1/registry.proto",   "mlops/artifact/v1/artifact.proto",
    "mlops/scheduler/v1/scheduler.proto", "mlops/monitoring/v1/monitoring.proto",
    "mlops/audit/v1/audit.proto",
};

// Every "/pkg.Service/Method" of every service of mlops, from the generated descriptors.
std::vector<std::string> AllMethods() {
  std::vector<std::string> out;
  for (const char* name : kServiceFiles) {
    const auto* file = google::protobuf::DescriptorPool::generated_pool()->FindFileByName(name);
    EXPECT_NE(file, nullptr) << name;
    if (file == nullptr) continue;
    for (int s = 0; s < file->service_count(); ++s) {
      const auto* service = file->service(s);
      for (int m = 0; m < service->method_count(); ++m) {
        out.push_back("/" + service->full_name() + "/" + service->method(m)->name());
      }
    }
  }
  return out;
}

TEST(AccessTableTest, EveryMethodOfEveryServiceHasAnEntryAndEveryEntryAMethod) {
  std::vector<std::string> methods = AllMethods();
  ASSERT_GT(methods.size(), 80u);
  for (const std::string& method : methods) {
    EXPECT_NE(FindMethodAccess(method), nullptr) << method << " has no entry in the access table";
  }
  for (const MethodAccess& entry : AccessTable()) {
    EXPECT_NE(std::find(methods.begin(), methods.end(), entry.method), methods.end())
        << entry.method << " is in the access table but no service has it";
  }
  EXPECT_EQ(AccessTable().size(), methods.size());
}

TEST(AccessTableTest, ReadsNeedViewerAndEveryMutationMoreThanThat) {
  for (const MethodAccess& entry : AccessTable()) {
    if (entry.mutation) {
      EXPECT_GE(static_cast<int>(entry.access), static_cast<int>(Access::kEditor)) << entry.method;
    }
    // Names the table's convention depends on: a Get/List/Search/Watch never mutates.
    std::string_view name = entry.method.substr(entry.method.rfind('/') + 1);
    for (std::string_view read : {"Get", "List", "Search", "Watch", "Stat", "Diff"}) {
      if (name.substr(0, read.size()) == read) {
        EXPECT_FALSE(entry.mutation) << entry.method;
      }
    }
  }
}

const google::protobuf::MethodDescriptor* MethodOf(std::string_view method) {
  std::string name(method.substr(1));
  std::replace(name.begin(), name.end(), '/', '.');
  return google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(name);
}

std::vector<std::string_view> Paths(std::string_view fields) {
  std::vector<std::string_view> out;
  for (size_t start = 0; start < fields.size();) {
    size_t end = std::min(fields.find(' ', start), fields.size());
    out.push_back(fields.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Sets the string field at dotted `path` of `message` to `value` (adds it when repeated).
void SetPath(google::protobuf::Message* message, std::string_view path, const std::string& value) {
  const auto* reflection = message->GetReflection();
  size_t dot = path.find('.');
  const auto* field = message->GetDescriptor()->FindFieldByName(std::string(path.substr(0, dot)));
  ASSERT_NE(field, nullptr) << path;
  if (dot != std::string_view::npos) {
    google::protobuf::Message* inner = !field->is_repeated()
                                           ? reflection->MutableMessage(message, field)
                                       : reflection->FieldSize(*message, field) == 0
                                           ? reflection->AddMessage(message, field)
                                           : reflection->MutableRepeatedMessage(message, field, 0);
    SetPath(inner, path.substr(dot + 1), value);
  } else if (field->is_repeated()) {
    reflection->AddString(message, field, value);
  } else {
    reflection->SetString(message, field, value);
  }
}

// A request of `method` whose project fields all name `project`.
std::string RequestIn(const MethodAccess& entry, const std::string& project,
                      const std::string& second_project = "") {
  const auto* method = MethodOf(entry.method);
  std::unique_ptr<google::protobuf::Message> request(
      google::protobuf::MessageFactory::generated_factory()
          ->GetPrototype(method->input_type())
          ->New());
  int i = 0;
  for (std::string_view path : Paths(entry.project)) {
    const std::string& in = i++ > 0 && !second_project.empty() ? second_project : project;
    bool bare = path.substr(path.rfind('.') + 1) == "project";
    SetPath(request.get(), path, bare ? in : "projects/" + in + "/x");
  }
  return request->SerializeAsString();
}

TEST(AccessTableTest, EveryProjectScopedMethodSaysWhereItsRequestNamesTheProject) {
  int scoped = 0;
  for (const MethodAccess& entry : AccessTable()) {
    const auto* method = MethodOf(entry.method);
    ASSERT_NE(method, nullptr) << entry.method;
    bool in_project = entry.access == Access::kViewer || entry.access == Access::kEditor ||
                      entry.access == Access::kAdmin;
    if (!in_project) {
      EXPECT_EQ(entry.project, "") << entry.method << ": a global access names no project";
      continue;
    }
    ++scoped;
    if (method->client_streaming()) {
      EXPECT_TRUE(entry.project.starts_with("@metadata "))
          << entry.method << ": a client stream's project comes with the call, and the table "
          << "names the fields of its messages that must be in it";
      std::unique_ptr<google::protobuf::Message> message(
          google::protobuf::MessageFactory::generated_factory()
              ->GetPrototype(method->input_type())
              ->New());
      for (std::string_view path : Paths(entry.project)) {
        if (path != "@metadata") SetPath(message.get(), path, "projects/other/x");
      }
      QualifyRequest(entry, "vision", message.get());  // leaves a named project as it is
      EXPECT_THAT(message->ShortDebugString(), ::testing::HasSubstr("projects/other/x"));
      continue;
    }
    ASSERT_NE(entry.project, "") << entry.method << " names no project field";
    ASSERT_FALSE(entry.project.starts_with("@metadata")) << entry.method;
    // Every path is a string field of the request: reading it from an empty request succeeds.
    const google::protobuf::Message* prototype =
        google::protobuf::MessageFactory::generated_factory()->GetPrototype(method->input_type());
    absl::StatusOr<std::string> project = RequestProject(entry, prototype, "");
    ASSERT_TRUE(project.ok()) << entry.method << ": " << project.status();
    EXPECT_EQ(*project, "default") << entry.method;
  }
  EXPECT_GE(scoped, 60);  // every service's resources are in projects
}

TEST(AccessTableTest, QualifyRequestPutsBareNamesInTheProjectAndLeavesQualifiedOnes) {
  const MethodAccess* search = FindMethodAccess("/mlops.metadata.v1.MetadataService/SearchRuns");
  ASSERT_NE(search, nullptr);
  md::SearchRunsRequest request;
  request.add_experiment_ids("0123");
  request.add_experiment_ids("projects/other/4567");
  request.set_filter("params.x = 'y'");
  QualifyRequest(*search, "vision", &request);
  EXPECT_EQ(request.experiment_ids(0), "projects/vision/0123");
  EXPECT_EQ(request.experiment_ids(1), "projects/other/4567");
  EXPECT_EQ(request.filter(), "params.x = 'y'");
  const MethodAccess* list = FindMethodAccess("/mlops.metadata.v1.MetadataService/ListExperiments");
  md::ListExperimentsRequest list_request;
  QualifyRequest(*list, "vision", &list_request);
  EXPECT_EQ(list_request.project(), "vision");
  md::ListExperimentsRequest untouched;
  QualifyRequest(*list, "default", &untouched);
  EXPECT_EQ(untouched.project(), "");
}

struct Caller {
  std::string token;
  TokenEntry entry;
};

class GuardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    auto add = [](const std::string& subject, std::map<std::string, Role, std::less<>> grants,
                  bool is_operator, absl::Time expires = absl::InfiniteFuture()) {
      Caller caller;
      caller.token = NewToken();
      caller.entry.sha256 = TokenHash(caller.token);
      caller.entry.principal.subject = subject;
      caller.entry.principal.grants = std::move(grants);
      caller.entry.principal.is_operator = is_operator;
      caller.entry.expires = expires;
      ASSERT_OK(AppendTokenEntry(dir_->path() + "/tokens.yaml", caller.entry));
      (*callers_)[subject] = caller;
    };
    callers_ = new std::map<std::string, Caller>();
    add("viewer", {{"default", Role::kViewer}}, false);
    add("editor", {{"default", Role::kEditor}}, false);
    add("admin", {{"default", Role::kAdmin}}, false);
    add("other", {{"other", Role::kAdmin}}, false);
    add("everywhere", {{"*", Role::kViewer}}, false);
    add("operator", {}, true);
    add("expired", {{"default", Role::kAdmin}}, true, absl::Now() - absl::Hours(1));
    auto authenticator = TokenFileAuthenticator::Open(dir_->path() + "/tokens.yaml");
    ASSERT_OK(authenticator.status());
    server_ = new testing::InProcessServer(
        {metadata::OpenMetadataComponent, artifact::OpenArtifactComponent,
         scheduler::OpenSchedulerComponent, monitoring::OpenMonitoringComponent},
        /*metrics=*/true, std::move(*authenticator));
  }
  static void TearDownTestSuite() {
    delete server_;
    delete callers_;
    delete dir_;
  }

  static grpc::Status CallAs(const std::string& subject, const std::string& method) {
    std::vector<std::pair<std::string, std::string>> metadata;
    if (!subject.empty()) {
      metadata.emplace_back("authorization", "Bearer " + callers_->at(subject).token);
    }
    return testing::RawUnaryCall(channel(), method, "", metadata).first;
  }
  static std::shared_ptr<grpc::Channel> channel() {
    static auto* channel = new std::shared_ptr<grpc::Channel>(server_->NewChannel());
    return *channel;
  }

  static inline testing::TempDir* dir_ = nullptr;
  static inline std::map<std::string, Caller>* callers_ = nullptr;
  static inline testing::InProcessServer* server_ = nullptr;
};

TEST_F(GuardTest, NoTokenIsUnauthenticatedOnEveryMethod) {
  for (const MethodAccess& entry : AccessTable()) {
    grpc::Status status = CallAs("", std::string(entry.method));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << entry.method << ": " << status.error_message();
  }
}

TEST_F(GuardTest, UnknownExpiredAndMalformedTokensAreUnauthenticated) {
  const std::string method = "/mlops.metadata.v1.MetadataService/ListExperiments";
  auto call = [&](const std::string& header) {
    return testing::RawUnaryCall(channel(), method, "", {{"authorization", header}}).first;
  };
  EXPECT_THAT(call("Bearer mlops_not-a-token"),
              testing::GrpcStatusIs(grpc::StatusCode::UNAUTHENTICATED, "unknown bearer token"));
  EXPECT_THAT(call("Basic " + callers_->at("admin").token),
              testing::GrpcStatusIs(grpc::StatusCode::UNAUTHENTICATED, "Bearer <token>"));
  EXPECT_THAT(call("Bearer "), testing::GrpcStatusIs(grpc::StatusCode::UNAUTHENTICATED, ""));
  EXPECT_THAT(CallAs("expired", method),
              testing::GrpcStatusIs(grpc::StatusCode::UNAUTHENTICATED, "expired at"));
  // Health checks need no token (kubelet and load balancers probe them).
  // grpc.health.v1.Health/Check, empty request; the answer's field 1 is SERVING (1).
  auto [health, bytes] = testing::RawUnaryCall(channel(), "/grpc.health.v1.Health/Check", "");
  ASSERT_TRUE(health.ok()) << health.error_message();
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

// Whether `subject` (as set up above) may call a method needing `access` in project default.
bool Allowed(const std::string& subject, Access access) {
  std::map<std::string, int> role = {{"viewer", 1}, {"editor", 2},     {"admin", 3},
                                     {"other", 0},  {"everywhere", 1}, {"operator", 0}};
  switch (access) {
    case Access::kAuthenticated:
      return true;
    case Access::kOperator:
      return subject == "operator";
    case Access::kViewer:
      return role[subject] >= 1;
    case Access::kEditor:
      return role[subject] >= 2;
    case Access::kAdmin:
      return role[subject] >= 3;
  }
  return false;
}

TEST_F(GuardTest, EachRoleIsHeldToTheTableOnEveryMethod) {
  int allowed = 0, denied = 0;
  for (const std::string subject :
       {"viewer", "editor", "admin", "other", "everywhere", "operator"}) {
    for (const MethodAccess& entry : AccessTable()) {
      grpc::Status status = CallAs(subject, std::string(entry.method));
      if (Allowed(subject, entry.access)) {
        ++allowed;
        // Admitted: the empty request reaches the service, which judges it on its merits.
        EXPECT_NE(status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << subject << " " << entry.method << ": " << status.error_message();
        EXPECT_NE(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
            << subject << " " << entry.method;
      } else {
        ++denied;
        EXPECT_THAT(status, testing::GrpcStatusIs(grpc::StatusCode::PERMISSION_DENIED,
                                                  subject + " may not"))
            << entry.method;
      }
    }
  }
  EXPECT_GT(allowed, 100);
  EXPECT_GT(denied, 100);
}

// Generated from the table: on every method that names a project, a request in project "other"
// admits the admin of "other" and refuses the admin of "default" (whose grants say nothing of
// "other"); a request naming two projects is refused before anyone's role is looked at.
TEST_F(GuardTest, EveryMethodIsCheckedInTheProjectItsRequestNames) {
  int checked = 0;
  for (const MethodAccess& entry : AccessTable()) {
    if (entry.project.empty()) continue;
    const bool stream = entry.project.starts_with("@metadata");
    std::string request = stream ? "" : RequestIn(entry, "other");
    auto call = [&](const std::string& subject, const std::string& body) {
      std::vector<std::pair<std::string, std::string>> metadata = {
          {"authorization", "Bearer " + callers_->at(subject).token}};
      if (stream) metadata.emplace_back("mlops-project", "other");
      return testing::RawUnaryCall(channel(), std::string(entry.method), body, metadata).first;
    };
    grpc::Status theirs = call("other", request);
    EXPECT_NE(theirs.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << entry.method << ": " << theirs.error_message();
    EXPECT_NE(theirs.error_code(), grpc::StatusCode::UNAUTHENTICATED) << entry.method;
    EXPECT_THAT(call("admin", request),
                testing::GrpcStatusIs(grpc::StatusCode::PERMISSION_DENIED, "in project other"))
        << entry.method;
    if (!stream && Paths(entry.project).size() > 1) {
      EXPECT_THAT(call("other", RequestIn(entry, "other", "third")),
                  testing::GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT,
                                        "one request acts in one project"))
          << entry.method;
    }
    ++checked;
  }
  EXPECT_GE(checked, 30);
  // A malformed project is refused as such.
  std::vector<std::pair<std::string, std::string>> metadata = {
      {"authorization", "Bearer " + callers_->at("admin").token}};
  md::GetRunRequest bad;
  bad.set_run_id("projects/no way/0123");
  EXPECT_THAT(testing::RawUnaryCall(channel(), "/mlops.metadata.v1.MetadataService/GetRun",
                                    bad.SerializeAsString(), metadata)
                  .first,
              testing::GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "valid project"));
}

TEST_F(GuardTest, ARefusedWriteStoresNothingAndTheRefusalIsCounted) {
  auto stub = md::MetadataService::NewStub(channel());
  auto create = [&](const std::string& subject, const std::string& name) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + callers_->at(subject).token);
    md::CreateExperimentRequest request;
    request.set_name(name);
    md::Experiment response;
    return stub->CreateExperiment(&context, request, &response);
  };
  auto names = [&](const std::string& subject) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + callers_->at(subject).token);
    md::ListExperimentsRequest request;
    md::ListExperimentsResponse response;
    EXPECT_TRUE(stub->ListExperiments(&context, request, &response).ok());
    std::vector<std::string> out;
    for (const auto& experiment : response.experiments()) out.push_back(experiment.name());
    return out;
  };
  EXPECT_THAT(create("viewer", "by-viewer"),
              testing::GrpcStatusIs(grpc::StatusCode::PERMISSION_DENIED,
                                    "needs editor in project default"));
  EXPECT_THAT(create("other", "by-other"),
              testing::GrpcStatusIs(grpc::StatusCode::PERMISSION_DENIED, "other may not"));
  EXPECT_THAT(names("admin"), Not(::testing::Contains("by-viewer")));
  EXPECT_THAT(names("admin"), Not(::testing::Contains("by-other")));
  ASSERT_TRUE(create("editor", "by-editor").ok());
  EXPECT_THAT(names("viewer"), ::testing::Contains("by-editor"));

  EXPECT_EQ(CallAs("", "/mlops.metadata.v1.MetadataService/ListExperiments").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  auto [code, body] = testing::HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_EQ(code, 200);
  EXPECT_THAT(body,
              ::testing::HasSubstr("mlops_rpc_refused_total{code=\"PERMISSION_DENIED\",method=\"/"
                                   "mlops.metadata.v1.MetadataService/CreateExperiment\"}"));
  EXPECT_THAT(body, ::testing::HasSubstr("mlops_rpc_refused_total{code=\"UNAUTHENTICATED\""));
  // No token reaches the exposition.
  for (const auto& [subject, caller] : *callers_) {
    EXPECT_THAT(body, Not(::testing::HasSubstr(caller.token)));
  }
}

TEST_F(GuardTest, EveryMutationOfAScriptedSessionIsAuditedAndNoReadIs) {
  int64_t start = NowMs();
  auto stub = md::MetadataService::NewStub(channel());
  auto context = [&](grpc::ClientContext* c, const std::string& subject, const std::string& id) {
    c->AddMetadata("authorization", "Bearer " + callers_->at(subject).token);
    c->AddMetadata("x-request-id", id);
  };
  md::Experiment experiment;
  {
    grpc::ClientContext c;
    context(&c, "editor", "audit-1");
    md::CreateExperimentRequest request;
    request.set_name("audited");
    ASSERT_TRUE(stub->CreateExperiment(&c, request, &experiment).ok());
  }
  {
    grpc::ClientContext c;
    context(&c, "viewer", "audit-2");
    md::CreateExperimentRequest request;
    request.set_name("audited-by-viewer");
    md::Experiment out;
    EXPECT_EQ(stub->CreateExperiment(&c, request, &out).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext c;
    context(&c, "editor", "audit-read");
    md::ListExperimentsRequest request;
    md::ListExperimentsResponse out;
    ASSERT_TRUE(stub->ListExperiments(&c, request, &out).ok());
  }
  md::Run run;
  {
    grpc::ClientContext c;
    context(&c, "editor", "audit-3");
    md::CreateRunRequest request;
    request.set_experiment_id(experiment.id());
    ASSERT_TRUE(stub->CreateRun(&c, request, &run).ok());
  }
  {
    grpc::ClientContext c;
    context(&c, "editor", "audit-4");
    md::LogBatchRequest request;
    request.set_run_id(run.id());
    (*request.mutable_params())["lr"] = "0.1";
    md::LogBatchResponse out;
    ASSERT_TRUE(stub->LogBatch(&c, request, &out).ok());
  }
  {
    grpc::ClientContext c;
    context(&c, "editor", "audit-5");
    md::CreateExperimentRequest request;
    request.set_name("audited");  // taken: refused by the service, still audited
    md::Experiment out;
    EXPECT_EQ(stub->CreateExperiment(&c, request, &out).error_code(),
              grpc::StatusCode::ALREADY_EXISTS);
  }

  auto audit = audit::v1::AuditService::NewStub(channel());
  auto list = [&](const std::string& subject, audit::v1::ListAuditEntriesRequest request) {
    std::map<std::string, audit::v1::AuditEntry> by_id;
    request.set_page_size(3);  // several pages
    for (int pages = 0; pages < 1000; ++pages) {
      grpc::ClientContext c;
      c.AddMetadata("authorization", "Bearer " + callers_->at(subject).token);
      audit::v1::ListAuditEntriesResponse response;
      grpc::Status status = audit->ListAuditEntries(&c, request, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      for (const auto& entry : response.entries()) {
        if (!entry.request_id().empty()) by_id[entry.request_id()] = entry;
      }
      if (!status.ok() || response.next_page_token().empty()) break;
      request.set_page_token(response.next_page_token());
    }
    return by_id;
  };
  audit::v1::ListAuditEntriesRequest request;
  request.set_since_ms(start);
  std::map<std::string, audit::v1::AuditEntry> entries = list("admin", request);
  ASSERT_TRUE(entries.contains("audit-1"));
  EXPECT_EQ(entries["audit-1"].subject(), "editor");
  EXPECT_EQ(entries["audit-1"].method(), "/mlops.metadata.v1.MetadataService/CreateExperiment");
  EXPECT_EQ(entries["audit-1"].code(), "OK");
  EXPECT_EQ(entries["audit-1"].project(), "default");
  EXPECT_EQ(entries["audit-1"].resource(), "name=audited");
  EXPECT_GE(entries["audit-1"].time_ms(), start);
  ASSERT_TRUE(entries.contains("audit-2"));
  EXPECT_EQ(entries["audit-2"].subject(), "viewer");
  EXPECT_EQ(entries["audit-2"].code(), "PERMISSION_DENIED");
  ASSERT_TRUE(entries.contains("audit-3"));
  EXPECT_EQ(entries["audit-3"].resource(), "experiment_id=" + experiment.id());
  ASSERT_TRUE(entries.contains("audit-4"));
  EXPECT_EQ(entries["audit-4"].method(), "/mlops.metadata.v1.MetadataService/LogBatch");
  EXPECT_EQ(entries["audit-4"].resource(), "run_id=" + run.id());
  ASSERT_TRUE(entries.contains("audit-5"));
  EXPECT_EQ(entries["audit-5"].code(), "ALREADY_EXISTS");
  EXPECT_FALSE(entries.contains("audit-read"));  // reads are not audited
  // Filters: by subject, and a window that ends before the session.
  audit::v1::ListAuditEntriesRequest by_viewer = request;
  by_viewer.set_subject("viewer");
  EXPECT_EQ(list("admin", by_viewer).size(), 1u);
  audit::v1::ListAuditEntriesRequest before = request;
  before.set_since_ms(1);
  before.set_until_ms(start);
  EXPECT_FALSE(list("admin", before).contains("audit-1"));
  // Only admins read the log; viewers are refused.
  grpc::ClientContext c;
  c.AddMetadata("authorization", "Bearer " + callers_->at("viewer").token);
  audit::v1::ListAuditEntriesResponse out;
  EXPECT_EQ(audit->ListAuditEntries(&c, request, &out).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  auto [code, body] = testing::HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_THAT(body, ::testing::HasSubstr("mlops_audit_entries_total{code=\"OK\"}"));
  EXPECT_THAT(body, ::testing::HasSubstr("mlops_audit_entries_total{code=\"PERMISSION_DENIED\"}"));
}

TEST(TokenFileReloadTest, AddedAndRevokedTokensApplyWithoutARestart) {
  testing::TempDir dir;
  std::string path = dir.path() + "/tokens.yaml";
  auto entry_for = [](const std::string& subject, const std::string& token) {
    TokenEntry entry;
    entry.sha256 = TokenHash(token);
    entry.principal.subject = subject;
    entry.principal.grants["default"] = Role::kViewer;
    return entry;
  };
  std::string first = NewToken(), second = NewToken();
  ASSERT_OK(AppendTokenEntry(path, entry_for("first", first)));
  auto authenticator = TokenFileAuthenticator::Open(path);
  ASSERT_OK(authenticator.status());
  testing::InProcessServer server({metadata::OpenMetadataComponent}, /*metrics=*/false,
                                  std::move(*authenticator));
  auto channel = server.NewChannel();
  auto list = [&](const std::string& token) {
    return testing::RawUnaryCall(channel, "/mlops.metadata.v1.MetadataService/ListExperiments", "",
                                 {{"authorization", "Bearer " + token}})
        .first.error_code();
  };
  auto eventually = [&](const std::string& token, grpc::StatusCode want) {
    for (int i = 0; i < 50 && list(token) != want; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return list(token);
  };
  EXPECT_EQ(list(first), grpc::StatusCode::OK);
  EXPECT_EQ(list(second), grpc::StatusCode::UNAUTHENTICATED);
  ASSERT_OK(AppendTokenEntry(path, entry_for("second", second)));
  EXPECT_EQ(eventually(second, grpc::StatusCode::OK), grpc::StatusCode::OK);
  // Revoked: the file rewritten without the first token.
  {
    std::ofstream out(path + ".new");
    out << "tokens:\n" << FormatTokenEntry(entry_for("second", second));
  }
  ASSERT_EQ(std::rename((path + ".new").c_str(), path.c_str()), 0);
  EXPECT_EQ(eventually(first, grpc::StatusCode::UNAUTHENTICATED),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(list(second), grpc::StatusCode::OK);
  // A file that no longer parses keeps the tokens read before.
  {
    std::ofstream out(path + ".new");
    out << "tokens: [ {subject: broken\n";
  }
  ASSERT_EQ(std::rename((path + ".new").c_str(), path.c_str()), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(list(second), grpc::StatusCode::OK);
  EXPECT_EQ(list(first), grpc::StatusCode::UNAUTHENTICATED);
}

// A server config authenticating with the token file at `path` (the test fails if it does not
// open).
ServerConfig TokenFileConfig(const std::string& path) {
  auto authenticator = TokenFileAuthenticator::Open(path);
  EXPECT_TRUE(authenticator.ok()) << authenticator.status();
  ServerConfig config;
  if (authenticator.ok()) config.authenticator = std::move(*authenticator);
  return config;
}

// Per-subject limits: a token bucket of calls and a cap on open streams, each subject on its own,
// the refusal RESOURCE_EXHAUSTED with a retry hint, counted; the server's own calls exempt.
TEST(LimitTest, EachSubjectHasItsOwnRateLimit) {
  testing::TempDir dir;
  std::string path = dir.path() + "/tokens.yaml";
  std::string alice = testing::AddToken(path, "alice", Role::kEditor);
  std::string bob = testing::AddToken(path, "bob", Role::kEditor);
  ServerConfig config = TokenFileConfig(path);
  config.metrics_port = 0;
  config.rate_limit_per_subject = 2;  // a call every 500 ms
  config.rate_limit_burst = 3;
  testing::InProcessServer server({metadata::OpenMetadataComponent}, config);
  auto channel = server.NewChannel();
  auto list = [&](const std::string& token) {
    return testing::RawUnaryCall(channel, "/mlops.metadata.v1.MetadataService/ListExperiments", "",
                                 {{"authorization", "Bearer " + token}})
        .first;
  };
  // The burst, then refusals naming the rate and when to retry; bob is not held back by alice.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(list(alice).ok()) << i;
  grpc::Status refused = list(alice);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(
      refused.error_message(),
      ::testing::HasSubstr("alice is over its rate limit of 2 calls/s (burst 3): retry in"));
  EXPECT_TRUE(list(bob).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_TRUE(list(alice).ok());  // refilled
  EXPECT_EQ(list(alice).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  // The hint travels as trailing metadata too.
  md::MetadataService::Stub stub(channel);
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + alice);
    md::ListExperimentsResponse response;
    grpc::Status status = stub.ListExperiments(&context, {}, &response);
    ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    auto hint = context.GetServerTrailingMetadata().find("retry-after-ms");
    ASSERT_NE(hint, context.GetServerTrailingMetadata().end());
    int wait_ms = std::stoi(std::string(hint->second.data(), hint->second.size()));
    EXPECT_GT(wait_ms, 0);
    EXPECT_LE(wait_ms, 500);
  }

  std::string metrics = testing::HttpGet(server.metrics_port(), "/metrics").second;
  EXPECT_THAT(metrics,
              ::testing::HasSubstr("mlops_rpc_refused_total{code=\"RESOURCE_EXHAUSTED\",method=\"/"
                                   "mlops.metadata.v1.MetadataService/ListExperiments\"}"));
}

TEST(LimitTest, OneSubjectHasAtMostItsStreamsOpen) {
  testing::TempDir dir;
  std::string path = dir.path() + "/tokens.yaml";
  std::string bob = testing::AddToken(path, "bob", Role::kEditor);
  ServerConfig config = TokenFileConfig(path);
  config.max_streams_per_subject = 1;
  testing::InProcessServer server({metadata::OpenMetadataComponent}, config);
  md::MetadataService::Stub stub(server.NewChannel());
  auto stream = [&](grpc::ClientContext* context, md::LogStreamResponse* response) {
    context->AddMetadata("authorization", "Bearer " + bob);
    return stub.LogStream(context, response);
  };
  auto one_more = [&] {
    grpc::ClientContext context;
    md::LogStreamResponse response;
    auto call = stream(&context, &response);
    call->WritesDone();
    return call->Finish();
  };
  // While bob's first LogStream is open (the server reads it until the client is done), another
  // is refused.
  grpc::ClientContext first_context;
  md::LogStreamResponse first_response;
  auto first = stream(&first_context, &first_response);
  // The first must reach the server before any probe: a probe arriving first would take the slot
  // and the first be refused (seen under ASan, where the first call is slower to be served). Its
  // status at the end says whether it was admitted.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  grpc::Status second;
  for (int i = 0; i < 50; ++i) {
    second = one_more();
    if (second.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(second.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(second.error_message(), ::testing::HasSubstr("bob has 1 streams open"));
  // Unary calls are not streams: still admitted.
  grpc::ClientContext list_context;
  list_context.AddMetadata("authorization", "Bearer " + bob);
  md::ListExperimentsResponse listed;
  EXPECT_TRUE(stub.ListExperiments(&list_context, {}, &listed).ok());
  first->WritesDone();
  EXPECT_TRUE(first->Finish().ok());
  grpc::Status after;
  for (int i = 0; i < 50; ++i) {  // the slot is released as the first call is torn down
    after = one_more();
    if (after.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(after.ok()) << after.error_message();
}

}  // namespace
}  // namespace mlops
