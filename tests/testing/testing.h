// Shared test fixtures: temporary directories, an in-process server on port 0, a child server
// process, and status matchers.
#pragma once

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/common/component.h"
#include "services/common/server.h"

namespace mlops::testing {

// A fresh directory under $TMPDIR, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Overwrites the record at `key` of column family `cf` in the (closed) RocksDB at `db_path` with
// bytes that parse as no protobuf message, as a damaged disk or a bug might leave them.
void CorruptRecord(const std::string& db_path, const std::string& cf, const std::string& key);
// Writes `value` at `key` of column family `cf` in the (closed) RocksDB at `db_path`.
void SetRecord(const std::string& db_path, const std::string& cf, const std::string& key,
               const std::string& value);

// Components served in this process on loopback port 0, with a metrics port (also 0).
class InProcessServer {
 public:
  // `authenticator` non-null: authentication on (docs/security.md), as --auth_token_file does.
  explicit InProcessServer(const std::vector<ComponentFactory>& factories, bool metrics = true,
                           std::shared_ptr<Authenticator> authenticator = nullptr);
  // With a config of the caller's (limits, ...); its hosts and port are set here (loopback, any
  // free port), its metrics_port kept (-1: none, 0: any free port).
  InProcessServer(const std::vector<ComponentFactory>& factories, ServerConfig config);
  ~InProcessServer();
  std::string address() const { return "127.0.0.1:" + std::to_string(host_->port()); }
  int metrics_port() const { return host_->metrics_port(); }
  std::shared_ptr<grpc::Channel> NewChannel() const;
  // A channel whose calls act in `project` (MakeProjectInterceptor; plain for "" and default), and
  // the function that makes one per project (what a scheduler's gateways take).
  std::shared_ptr<grpc::Channel> NewChannel(const std::string& project) const;
  ChannelForProject ChannelsByProject() const;
  const std::string& data_dir() const { return dir_.path(); }

 private:
  TempDir dir_;
  std::vector<std::unique_ptr<Component>> components_;
  std::unique_ptr<ServiceHost> host_;
};

// A server binary run as a child process with --port=0 --metrics_port=0 and a port file.
class ChildServer {
 public:
  ChildServer(std::string binary, std::string data_dir, std::vector<std::string> extra_args = {});
  ~ChildServer();
  // Starts the process and waits (up to 20 s) until it has written its ports.
  void Start();
  // SIGKILL, then reap.
  void Kill();
  // SIGTERM, then reap; returns the exit status from waitpid.
  int Terminate();
  pid_t pid() const { return pid_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int metrics_port() const { return metrics_port_; }

 private:
  std::string binary_, data_dir_, port_file_;
  std::vector<std::string> extra_args_;
  pid_t pid_ = -1;
  int port_ = 0, metrics_port_ = 0;
};

// `n` pseudo-random (incompressible, reproducible) bytes from `seed`.
std::string RandomBytes(size_t n, uint64_t seed);

// Result of running a command to completion.
struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};
// Runs argv (no shell) with extra environment entries, capturing stdout and stderr.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& env = {});

#if defined(MLOPS_SERVER_BIN) && defined(MLOPS_CLI_BIN)
// A child mlops-server shared by the tests of one suite, and the built CLI pointed at it (each
// integration test binary holds one such suite).
class ServerSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    server_ = new ChildServer(MLOPS_SERVER_BIN, dir_->path() + "/data");
    server_->Start();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
    server_ = nullptr;
    dir_ = nullptr;
  }
  // `mlops --server <the child> args...`
  static CommandResult Mlops(std::vector<std::string> args,
                             const std::vector<std::string>& env = {}) {
    args.insert(args.begin(), {MLOPS_CLI_BIN, "--server", server_->address()});
    return RunCommand(args, env);
  }

  static inline TempDir* dir_ = nullptr;
  static inline ChildServer* server_ = nullptr;
};
#endif

// HTTP GET on 127.0.0.1:port; returns the status code and body.
std::pair<int, std::string> HttpGet(int port, const std::string& path);

// One HTTP request to 127.0.0.1:port (libcurl): the status (0 when none came), the body and the
// Content-Type.
struct HttpResponse {
  int status = 0;
  std::string body, content_type;
  std::map<std::string, std::string> headers;  // names in lower case
};
HttpResponse HttpRequest(int port, const std::string& method, const std::string& path,
                         const std::string& body = "",
                         const std::vector<std::string>& headers = {});

// Appends to the token file at `path` an entry for `subject` holding `role` in project "default";
// returns the new token (the test fails when the file cannot be written).
std::string AddToken(const std::string& path, const std::string& subject, Role role);

// A free TCP port on 127.0.0.1 (bound and released: for programs that cannot bind port 0).
int FreePort();

// The real Prometheus server (Debian's /usr/bin/prometheus) as a child process, scraping the given
// /metrics ports on 127.0.0.1 every second, its data in `dir`. Stopped (SIGTERM) when destroyed.
class PrometheusServer {
 public:
  PrometheusServer(const std::string& dir, const std::vector<int>& metrics_ports);
  ~PrometheusServer();
  int port() const { return port_; }
  // The JSON answer of /api/v1/query for `expr` (URL-encoded here); empty on an HTTP error.
  std::string Query(const std::string& expr) const;
  // Waits (up to `seconds`) until `expr` returns at least one sample; the last answer.
  std::string WaitFor(const std::string& expr, int seconds = 30) const;

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

// A unary call of `method` ("/pkg.Service/Method") with `request` as the raw bytes on the wire,
// for requests no generated stub would send. Returns the status and the raw response bytes.
// `metadata`: extra request metadata (authorization, ...).
std::pair<grpc::Status, std::string> RawUnaryCall(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
    const std::string& request,
    const std::vector<std::pair<std::string, std::string>>& metadata = {});

// The status of an absl::Status or absl::StatusOr, for the matchers and macros below.
inline const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& value) {
  return value.status();
}

MATCHER_P2(StatusIs, code, substring, "") {
  const absl::Status& status = ::mlops::testing::StatusOf(arg);
  if (status.code() != code) {
    *result_listener << "code " << absl::StatusCodeToString(status.code()) << ": "
                     << status.message();
    return false;
  }
  if (std::string(status.message()).find(substring) == std::string::npos) {
    *result_listener << "message: " << status.message();
    return false;
  }
  return true;
}

MATCHER_P2(GrpcStatusIs, code, substring, "") {
  const grpc::Status& status = arg;
  if (status.error_code() != code) {
    *result_listener << "code " << status.error_code() << ": " << status.error_message();
    return false;
  }
  if (status.error_message().find(substring) == std::string::npos) {
    *result_listener << "message: " << status.error_message();
    return false;
  }
  return true;
}

#define ASSERT_OK(expr)                                                                   \
  do {                                                                                    \
    const auto& assert_ok_status_ = (expr);                                               \
    ASSERT_TRUE(assert_ok_status_.ok()) << ::mlops::testing::StatusOf(assert_ok_status_); \
  } while (false)

#define EXPECT_OK(expr)                                                                   \
  do {                                                                                    \
    const auto& expect_ok_status_ = (expr);                                               \
    EXPECT_TRUE(expect_ok_status_.ok()) << ::mlops::testing::StatusOf(expect_ok_status_); \
  } while (false)

}  // namespace mlops::testing
