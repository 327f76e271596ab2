// The HTTP/JSON API of a real mlops-server child process (libcurl as the client): unary,
// client-streaming (NDJSON) and server-streaming (NDJSON and Server-Sent Events) calls, the error
// mapping of bad requests with nothing written, the body limit, and the guard (tokens, roles,
// audit) applying to HTTP calls exactly as to gRPC ones.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <openssl/sha.h>

#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "mlops/artifact/v1/artifact.pb.h"
#include "mlops/audit/v1/audit.pb.h"
#include "mlops/metadata/v1/lineage.pb.h"
#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "mlops/metadata/v1/registry.pb.h"
#include "mlops/monitoring/v1/monitoring.pb.h"
#include "mlops/scheduler/v1/scheduler.pb.h"
#include "services/artifact/blob_routes.h"
#include "services/common/auth.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

namespace v1 = ::mlops::metadata::v1;
namespace av1 = ::mlops::artifact::v1;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

template <class Message>
Message FromJson(const std::string& json) {
  Message message;
  auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in " << json;
  return message;
}

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return absl::BytesToHexString(std::string(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

class JsonApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    server_ =
        new testing::ChildServer(MLOPS_SERVER_BIN, dir_->path() + "/data", {"--max_message_mb=8"});
    server_->Start();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }
  static testing::HttpResponse Post(const std::string& route, const std::string& body,
                                    std::vector<std::string> headers = {}) {
    headers.push_back("Content-Type: application/json");
    return testing::HttpRequest(server_->metrics_port(), "POST", "/api/v1/" + route, body, headers);
  }
  static int ExperimentCount() {
    auto listed = Post("metadata/ListExperiments", R"({"pageSize": 1000})");
    EXPECT_EQ(listed.status, 200) << listed.body;
    return FromJson<v1::ListExperimentsResponse>(listed.body).experiments_size();
  }
  static testing::TempDir* dir_;
  static testing::ChildServer* server_;
};

testing::TempDir* JsonApiTest::dir_ = nullptr;
testing::ChildServer* JsonApiTest::server_ = nullptr;

TEST_F(JsonApiTest, UnaryCallsTakeAndAnswerCanonicalJson) {
  auto created = Post("metadata/CreateExperiment",
                      R"({"name": "http-churn", "tags": {"team": "ml"}, "requestId": "r-1"})");
  ASSERT_EQ(created.status, 200) << created.body;
  EXPECT_THAT(created.content_type, StartsWith("application/json"));
  auto experiment = FromJson<v1::Experiment>(created.body);
  EXPECT_EQ(experiment.name(), "http-churn");
  EXPECT_EQ(experiment.tags().at("team"), "ml");
  // Canonical JSON: lowerCamelCase names, int64 as strings.
  EXPECT_THAT(created.body, HasSubstr("\"createTimeMs\":\""));

  auto run = Post("metadata/CreateRun", absl::StrCat(R"({"experimentId": ")", experiment.id(),
                                                     R"(", "params": {"lr": "0.1"}})"));
  ASSERT_EQ(run.status, 200) << run.body;
  std::string run_id = FromJson<v1::Run>(run.body).id();
  auto got = Post("metadata/GetRun", absl::StrCat(R"({"runId": ")", run_id, R"("})"));
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(FromJson<v1::Run>(got.body).params().at("lr"), "0.1");
  // The same data over gRPC: one implementation behind both.
  auto stub = v1::MetadataService::NewStub(
      grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::GetRunRequest request;
  request.set_run_id(run_id);
  v1::Run over_grpc;
  ASSERT_TRUE(stub->GetRun(&context, request, &over_grpc).ok());
  EXPECT_EQ(over_grpc.experiment_id(), experiment.id());
  // An empty body is the empty request.
  EXPECT_EQ(Post("metadata/ListExperiments", "").status, 200);
}

TEST_F(JsonApiTest, BadRequestsAreRefusedWithTheirCodeAndWriteNothing) {
  ASSERT_EQ(Post("metadata/CreateExperiment", R"({"name": "http-existing"})").status, 200);
  const int before = ExperimentCount();
  struct Case {
    std::string route, body;
    int status;
    std::string code, message;
  };
  const Case cases[] = {
      {"metadata/CreateExperiment", R"({"name": "x",)", 400, "INVALID_ARGUMENT", "JSON"},
      {"metadata/CreateExperiment", R"({"name": 5})", 400, "INVALID_ARGUMENT", "JSON"},
      {"metadata/CreateExperiment", R"({"name": "x", "colour": "red"})", 400, "INVALID_ARGUMENT",
       "colour"},
      {"metadata/CreateExperiment", R"(["name"])", 400, "INVALID_ARGUMENT", "JSON"},
      {"metadata/CreateExperiment", R"({"name": ""})", 400, "INVALID_ARGUMENT", "name"},
      {"metadata/CreateExperiment", R"({"name": "http-existing"})", 409, "ALREADY_EXISTS", ""},
      {"metadata/GetRun", R"({"runId": "0123456789abcdef0123456789abcdef"})", 404, "NOT_FOUND", ""},
      {"metadata/NoSuchMethod", "{}", 404, "NOT_FOUND", "no route"},
      {"nothing/CreateExperiment", "{}", 404, "NOT_FOUND", "no route"},
      {"metadata/CreateExperiment/extra", "{}", 404, "NOT_FOUND", "no route"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.route + " " + c.body);
    auto response = Post(c.route, c.body);
    EXPECT_EQ(response.status, c.status) << response.body;
    auto error = FromJson<google::protobuf::Struct>(response.body);
    EXPECT_EQ(error.fields().at("code").string_value(), c.code);
    EXPECT_THAT(error.fields().at("message").string_value(), HasSubstr(c.message));
  }
  // Only POST reaches a method.
  auto get =
      testing::HttpRequest(server_->metrics_port(), "GET", "/api/v1/metadata/ListExperiments");
  EXPECT_EQ(get.status, 405) << get.body;
  // A body over the server's message limit (--max_message_mb=8) is refused unread.
  std::string big =
      absl::StrCat(R"({"name": "big", "description": ")", std::string(8 << 20, 'x'), R"("})");
  auto too_big = Post("metadata/CreateExperiment", big);
  EXPECT_EQ(too_big.status, 413) << too_big.body.substr(0, 200);
  EXPECT_THAT(too_big.body, HasSubstr("RESOURCE_EXHAUSTED"));
  EXPECT_EQ(ExperimentCount(), before);
}

TEST_F(JsonApiTest, EveryRpcOfEveryServiceHasARouteThatAnswersJson) {
  auto index = testing::HttpRequest(server_->metrics_port(), "GET", "/api/v1/");
  ASSERT_EQ(index.status, 200) << index.body;
  std::set<std::string> routes;
  const auto listing = FromJson<google::protobuf::Struct>(index.body);
  for (const auto& route : listing.fields().at("routes").list_value().values()) {
    routes.insert(route.struct_value().fields().at("route").string_value());
  }
  // Every method of the protos, from the descriptors linked into this test (a message of each
  // file is named so that the linker keeps the file and its services).
  for (const auto* type :
       {v1::NodeType::descriptor(), v1::ModelVersion::descriptor(),
        monitoring::v1::Profile::descriptor(), scheduler::v1::ReportCheckpointRequest::descriptor(),
        audit::v1::AuditEntry::descriptor()}) {
    ASSERT_NE(type, nullptr);
  }
  std::set<std::string> expected;
  const std::pair<std::string, std::string> services[] = {
      {"metadata", "mlops.metadata.v1.MetadataService"},
      {"metadata", "mlops.metadata.v1.LineageService"},
      {"metadata", "mlops.metadata.v1.ModelRegistry"},
      {"artifact", "mlops.artifact.v1.ArtifactService"},
      {"scheduler", "mlops.scheduler.v1.SchedulerService"},
      {"monitoring", "mlops.monitoring.v1.MonitoringService"},
      {"audit", "mlops.audit.v1.AuditService"}};
  for (const auto& [package, name] : services) {
    const auto* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    for (int i = 0; i < service->method_count(); ++i) {
      expected.insert(absl::StrCat("/api/v1/", package, "/", service->method(i)->name()));
    }
  }
  EXPECT_EQ(routes, expected);
  EXPECT_GT(routes.size(), 80u);
  // Each answers an empty request with JSON from its service: OK or the service's own refusal,
  // never a missing route, a server error or an unimplemented method.
  for (const std::string& route : routes) {
    SCOPED_TRACE(route);
    auto response = testing::HttpRequest(server_->metrics_port(), "POST", route, "");
    EXPECT_LT(response.status, 500) << response.body;
    EXPECT_NE(response.status, 405);
    EXPECT_NE(response.status, 0);
    if (response.status != 200) {
      auto error = FromJson<google::protobuf::Struct>(response.body);
      EXPECT_THAT(error.fields().at("message").string_value(), Not(HasSubstr("no route")));
    }
  }
}

TEST_F(JsonApiTest, ClientStreamsTakeOneJsonRequestALine) {
  auto experiment = FromJson<v1::Experiment>(
      Post("metadata/CreateExperiment", R"({"name": "http-stream"})").body);
  std::string run_id =
      FromJson<v1::Run>(Post("metadata/CreateRun",
                             absl::StrCat(R"({"experimentId": ")", experiment.id(), R"("})"))
                            .body)
          .id();
  std::string lines;
  for (int i = 0; i < 3; ++i) {
    absl::StrAppend(&lines, R"({"runId": ")", run_id, R"(", "metrics": [{"key": "loss", "value": )",
                    1.0 / (i + 1), R"(, "step": ")", i, R"("}]})", "\n\n");
  }
  // A bad line anywhere refuses the whole stream before any of it is applied.
  auto bad = Post("metadata/LogStream",
                  lines + absl::StrCat(R"({"runId": ")", run_id, R"(", "metrics": 7})"));
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_THAT(bad.body, HasSubstr("line 7"));
  auto history = [&] {
    auto response = Post("metadata/GetMetricHistory",
                         absl::StrCat(R"({"runId": ")", run_id, R"(", "key": "loss"})"));
    EXPECT_EQ(response.status, 200) << response.body;
    return FromJson<v1::GetMetricHistoryResponse>(response.body).metrics_size();
  };
  EXPECT_EQ(history(), 0);
  auto logged = Post("metadata/LogStream", lines, {"Content-Type: application/x-ndjson"});
  ASSERT_EQ(logged.status, 200) << logged.body;
  auto result = FromJson<v1::LogStreamResponse>(logged.body);
  EXPECT_EQ(result.batches(), 3);
  EXPECT_EQ(result.metrics(), 3);
  EXPECT_EQ(history(), 3);
}

TEST_F(JsonApiTest, AnUploadThroughJsonDownloadsAsJsonLinesAndAsEvents) {
  // The whole upload protocol over HTTP: a session, the missing chunks, the chunks (bytes in
  // base64, NDJSON), the commit.
  const std::string a = testing::RandomBytes(70000, 1), b = testing::RandomBytes(50000, 2);
  auto session = FromJson<av1::UploadSession>(Post("artifact/StartUpload", "{}").body);
  ASSERT_FALSE(session.id().empty());
  auto missing = Post("artifact/FindMissingChunks",
                      absl::StrCat(R"({"sessionId": ")", session.id(), R"(", "digests": [")",
                                   Sha256Hex(a), R"(", ")", Sha256Hex(b), R"("]})"));
  ASSERT_EQ(missing.status, 200) << missing.body;
  EXPECT_EQ(FromJson<av1::FindMissingChunksResponse>(missing.body).missing_size(), 2);
  std::string chunks;
  for (const std::string* data : {&a, &b}) {
    absl::StrAppend(&chunks, R"({"sessionId": ")", session.id(), R"(", "chunks": [{"digest": ")",
                    Sha256Hex(*data), R"(", "data": ")", absl::Base64Escape(*data), "\"}]}\n");
  }
  auto uploaded = Post("artifact/UploadChunks", chunks);
  ASSERT_EQ(uploaded.status, 200) << uploaded.body;
  EXPECT_EQ(FromJson<av1::UploadChunksResponse>(uploaded.body).chunks_stored(), 2);
  const std::string whole = a + b;
  auto committed =
      Post("artifact/CommitBlobs",
           absl::StrCat(R"({"sessionId": ")", session.id(), R"(", "blobs": [{"digest": ")",
                        Sha256Hex(whole), R"(", "size": ")", whole.size(), R"(", "chunks": [)",
                        R"({"digest": ")", Sha256Hex(a), R"(", "size": ")", a.size(), R"("}, )",
                        R"({"digest": ")", Sha256Hex(b), R"(", "size": ")", b.size(), R"("}]}]})"));
  ASSERT_EQ(committed.status, 200) << committed.body;

  // Download, a server stream: one JSON object a line, the data in base64.
  const std::string download = absl::StrCat(R"({"digest": ")", Sha256Hex(whole), R"("})");
  auto lines = Post("artifact/Download", download);
  ASSERT_EQ(lines.status, 200) << lines.body.substr(0, 300);
  EXPECT_THAT(lines.content_type, StartsWith("application/x-ndjson"));
  std::string got;
  for (absl::string_view line : absl::StrSplit(lines.body, '\n', absl::SkipEmpty())) {
    got += FromJson<av1::DownloadResponse>(std::string(line)).data();
  }
  EXPECT_EQ(got, whole);
  // The same as Server-Sent Events, ended by an `end` event.
  auto events = Post("artifact/Download", download, {"Accept: text/event-stream"});
  ASSERT_EQ(events.status, 200);
  EXPECT_THAT(events.content_type, StartsWith("text/event-stream"));
  got.clear();
  for (absl::string_view line : absl::StrSplit(events.body, '\n', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, "data: ") && line != "{}") {
      got += FromJson<av1::DownloadResponse>(std::string(line)).data();
    }
  }
  EXPECT_EQ(got, whole);
  EXPECT_THAT(events.body, HasSubstr("event: end\ndata: {}\n\n"));
  // A stream refused at once answers with its own status, not 200.
  auto absent =
      Post("artifact/Download", absl::StrCat(R"({"digest": ")", Sha256Hex("no"), R"("})"));
  EXPECT_EQ(absent.status, 404) << absent.body;
  EXPECT_THAT(absent.body, HasSubstr("\"code\":\"NOT_FOUND\""));
}

TEST_F(JsonApiTest, BlobsGoUpAndDownAsRawBytesWithRanges) {
  const int port = server_->metrics_port();
  const std::string data = testing::RandomBytes(3 << 20, 7);
  const std::string digest = Sha256Hex(data);
  // A digest that does not match stores nothing.
  auto wrong = testing::HttpRequest(port, "POST", "/api/v1/artifact/blobs?digest=" + Sha256Hex("x"),
                                    data, {"Content-Type: application/octet-stream"});
  EXPECT_EQ(wrong.status, 400) << wrong.body;
  EXPECT_EQ(testing::HttpRequest(port, "GET", "/api/v1/artifact/blobs/" + digest).status, 404);
  auto bad_pin = testing::HttpRequest(port, "POST", "/api/v1/artifact/blobs?pin=yes", data);
  EXPECT_EQ(bad_pin.status, 400) << bad_pin.body;

  auto stored =
      testing::HttpRequest(port, "POST", "/api/v1/artifact/blobs?pin=true&digest=sha256:" + digest,
                           data, {"Content-Type: application/octet-stream"});
  ASSERT_EQ(stored.status, 200) << stored.body;
  auto blob = FromJson<av1::Blob>(stored.body);
  EXPECT_EQ(blob.digest(), digest);
  EXPECT_EQ(blob.size(), static_cast<int64_t>(data.size()));
  EXPECT_TRUE(blob.pinned());
  EXPECT_GT(blob.chunk_count(), 1);  // chunked like the CLI does

  const std::string url = "/api/v1/artifact/blobs/sha256:" + digest;
  auto whole = testing::HttpRequest(port, "GET", url);
  ASSERT_EQ(whole.status, 200);
  EXPECT_TRUE(whole.body == data);
  EXPECT_EQ(whole.content_type, "application/octet-stream");
  EXPECT_EQ(whole.headers["accept-ranges"], "bytes");
  EXPECT_EQ(whole.headers["etag"], "\"sha256:" + digest + "\"");
  auto head = testing::HttpRequest(port, "HEAD", url);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers["content-length"], std::to_string(data.size()));
  EXPECT_TRUE(head.body.empty());

  struct Case {
    std::string range;
    int status;
    size_t begin, end;  // of the expected body
  };
  const size_t n = data.size();
  const Case cases[] = {
      {"bytes=100-199", 206, 100, 200}, {"bytes=3000000-", 206, 3000000, n},
      {"bytes=-10", 206, n - 10, n},    {"bytes=0-99999999", 206, 0, n},
      {"bytes=5-4", 200, 0, n},      // not a range: ignored
      {"bytes=1-2,5-6", 200, 0, n},  // several: the whole blob
      {"items=1-2", 200, 0, n},      // another unit: ignored
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.range);
    auto part = testing::HttpRequest(port, "GET", url, "", {"Range: " + c.range});
    EXPECT_EQ(part.status, c.status);
    EXPECT_TRUE(part.body == data.substr(c.begin, c.end - c.begin)) << part.body.size();
    if (c.status == 206) {
      EXPECT_EQ(part.headers["content-range"],
                absl::StrCat("bytes ", c.begin, "-", c.end - 1, "/", n));
    }
  }
  auto beyond = testing::HttpRequest(port, "GET", url, "", {"Range: bytes=99999999-"});
  EXPECT_EQ(beyond.status, 416);
  EXPECT_EQ(beyond.headers["content-range"], absl::StrCat("bytes */", n));
  auto cached =
      testing::HttpRequest(port, "GET", url, "", {"If-None-Match: \"sha256:" + digest + "\""});
  EXPECT_EQ(cached.status, 304);
  EXPECT_TRUE(cached.body.empty());
  EXPECT_EQ(testing::HttpRequest(port, "GET", "/api/v1/artifact/blobs/not-a-digest").status, 400);
  EXPECT_EQ(testing::HttpRequest(port, "DELETE", url).status, 405);
  EXPECT_EQ(testing::HttpRequest(port, "GET", url + "/more").status, 404);
}

TEST_F(JsonApiTest, TheWebUiIsServedFromTheBinaryWithItsLibrariesAndLicences) {
  int port = server_->metrics_port();
  auto page = testing::HttpRequest(port, "GET", "/");
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("<script type=\"module\" src=\"/assets/app.js\">"), std::string::npos);
  EXPECT_NE(page.headers["content-security-policy"].find("default-src 'self'"), std::string::npos);
  // The state of a view is its query string: every view is the same page.
  EXPECT_EQ(testing::HttpRequest(port, "GET", "/?view=runs&experiments=x").body, page.body);

  // Every file the page or a module names is embedded, with its type.
  struct Asset {
    std::string path, type, contains;
  };
  for (const Asset& a : std::vector<Asset>{
           {"/assets/app.js", "text/javascript; charset=utf-8", "import"},
           {"/assets/pages/runs.js", "text/javascript; charset=utf-8", "SearchRuns"},
           {"/assets/style.css", "text/css; charset=utf-8", ".vtable"},
           {"/assets/vendor/chart.min.js", "text/javascript; charset=utf-8", "Chart.js v3"},
           {"/assets/vendor/d3.min.js", "text/javascript; charset=utf-8", "d3"},
           {"/assets/vendor/chart.js.LICENSE.txt", "text/plain; charset=utf-8", "Expat"},
           {"/assets/vendor/d3.LICENSE.txt", "text/plain; charset=utf-8", "BSD"}}) {
    auto file = testing::HttpRequest(port, "GET", a.path);
    ASSERT_EQ(file.status, 200) << a.path;
    EXPECT_EQ(file.content_type, a.type) << a.path;
    EXPECT_NE(file.body.find(a.contains), std::string::npos) << a.path;
    // Revalidated by its ETag: 304 and no body while it is unchanged.
    std::string etag = file.headers["etag"];
    ASSERT_FALSE(etag.empty()) << a.path;
    auto again = testing::HttpRequest(port, "GET", a.path, "", {"If-None-Match: " + etag});
    EXPECT_EQ(again.status, 304) << a.path;
    EXPECT_TRUE(again.body.empty());
    auto head = testing::HttpRequest(port, "HEAD", a.path);
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head.headers["content-length"], std::to_string(file.body.size()));
  }
  // Each module the page loads imports only embedded modules.
  for (const std::string module : {"/assets/app.js", "/assets/pages/compare.js"}) {
    std::string body = testing::HttpRequest(port, "GET", module).body;
    std::string dir = module.substr(0, module.rfind('/') + 1);
    for (size_t at = body.find("from '"); at != std::string::npos; at = body.find("from '", at)) {
      at += 6;
      std::string target = body.substr(at, body.find('\'', at) - at);
      std::string path = dir + target;
      for (size_t dots; (dots = path.find("/./")) != std::string::npos;) path.erase(dots, 2);
      for (size_t up; (up = path.find("/../")) != std::string::npos;) {
        size_t parent = path.rfind('/', up - 1);
        path.erase(parent, up + 3 - parent);
      }
      EXPECT_EQ(testing::HttpRequest(port, "GET", path).status, 200) << module << " -> " << path;
    }
  }
  EXPECT_EQ(testing::HttpRequest(port, "GET", "/assets/nothing.js").status, 404);
  EXPECT_EQ(testing::HttpRequest(port, "GET", "/index.html").status, 404);  // only "/" is the page
  EXPECT_EQ(testing::HttpRequest(port, "GET", "/runs").status, 404);  // no other top-level path
  EXPECT_EQ(testing::HttpRequest(port, "POST", "/", "x").status, 405);
  EXPECT_EQ(testing::HttpRequest(port, "GET", "/metrics").status, 200);  // beside the UI
}

TEST(ByteRangeTest, FollowsRfc9110) {
  int64_t begin = -1, end = -1;
  bool whole = false;
  EXPECT_TRUE(artifact::ParseByteRange(nullptr, 10, &begin, &end, &whole));
  EXPECT_TRUE(whole);
  EXPECT_TRUE(artifact::ParseByteRange("bytes=2-4", 10, &begin, &end, &whole));
  EXPECT_FALSE(whole);
  EXPECT_EQ(begin, 2);
  EXPECT_EQ(end, 5);
  EXPECT_TRUE(artifact::ParseByteRange("bytes=-20", 10, &begin, &end, &whole));
  EXPECT_EQ(begin, 0);
  EXPECT_EQ(end, 10);
  EXPECT_FALSE(artifact::ParseByteRange("bytes=10-", 10, &begin, &end, &whole));
  EXPECT_FALSE(artifact::ParseByteRange("bytes=-0", 10, &begin, &end, &whole));
  EXPECT_FALSE(artifact::ParseByteRange("bytes=0-", 0, &begin, &end, &whole));
  for (const char* ignored : {"bytes=a-b", "bytes=-", "bytes=1", "bytes=+1-2", "bytes=3-1",
                              "bytes=99999999999999999999-", "bytes=1-2,4-5", "lines=1-2"}) {
    EXPECT_TRUE(artifact::ParseByteRange(ignored, 10, &begin, &end, &whole)) << ignored;
    EXPECT_TRUE(whole) << ignored;
  }
}

TEST(JsonApiAuthTest, HttpCallsPassTheSameGuardAsGrpcCalls) {
  testing::TempDir dir;
  const std::string tokens = dir.path() + "/tokens.yaml";
  std::string viewer = testing::AddToken(tokens, "vi", Role::kViewer);
  std::string editor = testing::AddToken(tokens, "ed", Role::kEditor);
  std::string admin = testing::AddToken(tokens, "boss", Role::kAdmin);
  testing::ChildServer server(MLOPS_SERVER_BIN, dir.path() + "/data",
                              {"--auth_token_file=" + tokens});
  server.Start();
  auto post = [&](const std::string& route, const std::string& body, const std::string& token) {
    std::vector<std::string> headers = {"X-Request-Id: http-req-7"};
    if (!token.empty()) headers.push_back("Authorization: Bearer " + token);
    return testing::HttpRequest(server.metrics_port(), "POST", "/api/v1/" + route, body, headers);
  };
  auto none = post("metadata/CreateExperiment", R"({"name": "guarded"})", "");
  EXPECT_EQ(none.status, 401) << none.body;
  EXPECT_THAT(none.body, HasSubstr("UNAUTHENTICATED"));
  auto denied = post("metadata/CreateExperiment", R"({"name": "guarded"})", viewer);
  EXPECT_EQ(denied.status, 403) << denied.body;
  EXPECT_THAT(denied.body, HasSubstr("vi may not call"));
  EXPECT_EQ(post("metadata/ListExperiments", "{}", viewer).status, 200);
  auto created = post("metadata/CreateExperiment", R"({"name": "guarded"})", editor);
  ASSERT_EQ(created.status, 200) << created.body;
  // The audit log names the HTTP caller and its request id, as for gRPC.
  auto audit = post("audit/ListAuditEntries", "{}", admin);
  ASSERT_EQ(audit.status, 200) << audit.body;
  bool found = false;
  auto entries = FromJson<audit::v1::ListAuditEntriesResponse>(audit.body);
  for (const auto& entry : entries.entries()) {
    if (entry.method() == "/mlops.metadata.v1.MetadataService/CreateExperiment" &&
        entry.code() == "OK") {
      found = true;
      EXPECT_EQ(entry.subject(), "ed");
      EXPECT_EQ(entry.request_id(), "http-req-7");
    }
  }
  EXPECT_TRUE(found) << audit.body;
}

TEST(JsonApiServicesTest, AServiceBinaryAnswersOnlyForItsOwnService) {
  testing::TempDir dir;
  testing::ChildServer server(MLOPS_METADATA_BIN, dir.path() + "/data");
  server.Start();
  auto listed =
      testing::HttpRequest(server.metrics_port(), "POST", "/api/v1/metadata/ListExperiments", "{}");
  EXPECT_EQ(listed.status, 200) << listed.body;
  auto other =
      testing::HttpRequest(server.metrics_port(), "POST", "/api/v1/artifact/StatBlob", "{}");
  EXPECT_EQ(other.status, 404) << other.body;
}

}  // namespace
}  // namespace mlops
