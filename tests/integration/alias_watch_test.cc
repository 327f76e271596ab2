// WatchAlias across a server restart: `mlops models watch` (a real CLI process) sees where the
// alias points, then each move; when the metadata server stops it reconnects and resumes after
// the last move it saw, so the moves made while it was away arrive in order, none twice.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "mlops/metadata/v1/registry.grpc.pb.h"
#include "services/common/subprocess.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

namespace v1 = ::mlops::metadata::v1;
using ::mlops::testing::GrpcStatusIs;

// A loopback port nothing listens on now (the server is restarted on the same one).
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string Text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Waits (at most 20 s) until `path` has `n` lines.
bool WaitForLines(const std::string& path, size_t n) {
  for (int i = 0; i < 400; ++i) {
    if (Lines(path).size() >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

class Registry {
 public:
  explicit Registry(const std::string& address)
      : stub_(v1::ModelRegistry::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {}
  grpc::Status Move(int64_t version, const std::string& reason = "") {
    v1::SetAliasRequest request;
    request.set_name("churn");
    request.set_alias("production");
    request.set_version(version);
    request.set_reason(reason);
    v1::AliasMove move;
    grpc::ClientContext context;
    return stub_->SetAlias(&context, request, &move);
  }
  v1::ModelRegistry::Stub* stub() { return stub_.get(); }

 private:
  std::unique_ptr<v1::ModelRegistry::Stub> stub_;
};

TEST(AliasWatchTest, TheWatchResumesAfterARestartWithEveryMoveOnceInOrder) {
  testing::TempDir dir;
  const int port = FreePort();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  testing::ChildServer server(MLOPS_SERVER_BIN, dir.path() + "/data",
                              {"--port=" + std::to_string(port)});
  server.Start();
  {
    Registry registry(address);
    for (int i = 0; i < 4; ++i) {
      v1::CreateModelVersionRequest version;
      version.set_name("churn");
      version.set_create_model(true);
      version.set_artifact_digest(std::string(64, static_cast<char>('a' + i)));
      v1::ModelVersion created;
      grpc::ClientContext context;
      ASSERT_TRUE(registry.stub()->CreateModelVersion(&context, version, &created).ok());
    }
    ASSERT_TRUE(registry.Move(1).ok());
    // Bad requests: a model that does not exist, a position ahead of the history.
    v1::WatchAliasRequest request;
    request.set_name("nosuch");
    request.set_alias("production");
    v1::AliasUpdate update;
    {
      grpc::ClientContext context;
      auto reader = registry.stub()->WatchAlias(&context, request);
      EXPECT_FALSE(reader->Read(&update));
      EXPECT_THAT(reader->Finish(), GrpcStatusIs(grpc::StatusCode::NOT_FOUND, "nosuch"));
    }
    request.set_name("churn");
    request.set_after_sequence(7);
    {
      grpc::ClientContext context;
      auto reader = registry.stub()->WatchAlias(&context, request);
      EXPECT_FALSE(reader->Read(&update));
      EXPECT_THAT(reader->Finish(),
                  GrpcStatusIs(grpc::StatusCode::OUT_OF_RANGE, "has had 1 moves, not 7"));
    }
  }

  const std::string out = dir.path() + "/watch.jsonl";
  SpawnOptions options;
  options.argv = {MLOPS_CLI_BIN, "models", "watch",    "churn", "production",
                  "--count",     "5",      "--output", "json"};
  options.env["MLOPS_SERVER"] = address;
  options.out = Stdio::File(out);
  options.err = Stdio::File(dir.path() + "/watch.err");
  auto watch = Subprocess::Spawn(options);
  ASSERT_OK(watch.status());
  ASSERT_TRUE(WaitForLines(out, 1)) << "the current position first";
  {
    Registry registry(address);
    ASSERT_TRUE(registry.Move(2, "canary").ok());
  }
  ASSERT_TRUE(WaitForLines(out, 2));
  server.Terminate();
  // While the server is down and after it is back, before the watcher reconnects (it waits
  // 500 ms, then 1 s, ...): three more moves, one of them while it was gone for good.
  testing::ChildServer again(MLOPS_SERVER_BIN, dir.path() + "/data",
                             {"--port=" + std::to_string(port)});
  again.Start();
  {
    Registry registry(address);
    ASSERT_TRUE(registry.Move(3).ok());
    ASSERT_TRUE(registry.Move(4).ok());
    ASSERT_TRUE(registry.Move(1, "rollback").ok());
  }
  EXPECT_EQ(watch->Wait(), 0);
  std::vector<std::string> lines = Lines(out);
  ASSERT_EQ(lines.size(), 5u) << Text(dir.path() + "/watch.err");
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_NE(lines[i].find("\"sequence\":\"" + std::to_string(i + 1) + "\""), std::string::npos)
        << lines[i];
  }
  EXPECT_NE(lines[1].find("\"toVersion\":\"2\""), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("\"artifactDigest\":\"" + std::string(64, 'b')), std::string::npos);
  EXPECT_NE(lines[4].find("\"reason\":\"rollback\""), std::string::npos) << lines[4];
  EXPECT_NE(Text(dir.path() + "/watch.err").find("reconnecting"), std::string::npos);
}

}  // namespace
}  // namespace mlops
