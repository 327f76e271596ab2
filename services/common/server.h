// Server bootstrap shared by every service binary and mlops-server: flags (with MLOPS_* environment
// fallback), a gRPC server with the health service, reflection, bounded message sizes and per-RPC
// metrics, the HTTP metrics endpoint, and graceful shutdown on SIGTERM/SIGINT.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>
#include <prometheus/registry.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "services/common/auth.h"
#include "services/common/channel.h"
#include "services/common/db.h"
#include "services/common/http_server.h"
#include "services/common/metrics.h"
#include "services/common/rpc_guard.h"

ABSL_DECLARE_FLAG(std::string, host);
ABSL_DECLARE_FLAG(int, port);
ABSL_DECLARE_FLAG(int, metrics_port);
ABSL_DECLARE_FLAG(std::string, data_dir);
ABSL_DECLARE_FLAG(std::string, log_format);
ABSL_DECLARE_FLAG(int, max_message_mb);
ABSL_DECLARE_FLAG(int, shutdown_grace_s);
ABSL_DECLARE_FLAG(bool, sync_writes);
ABSL_DECLARE_FLAG(int, lock_wait_s);
ABSL_DECLARE_FLAG(std::string, port_file);
ABSL_DECLARE_FLAG(bool, log_rpcs);
ABSL_DECLARE_FLAG(std::string, auth_token_file);
ABSL_DECLARE_FLAG(bool, insecure_allow_unauthenticated);
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_client_ca);
ABSL_DECLARE_FLAG(std::string, peer_ca);
ABSL_DECLARE_FLAG(std::string, identity_token_file);

namespace mlops {

// Blocks SIGTERM/SIGINT in the calling thread (so every thread started later inherits the mask and
// WaitForShutdownSignal can sigwait for them), applies MLOPS_<FLAG> environment variables to flags,
// then parses the command line (which wins over the environment). Returns positional arguments.
std::vector<char*> InitServerProcess(int argc, char** argv, const char* usage);

struct ServerConfig {
  std::string host = "127.0.0.1";
  // The host name others reach this server by (steps, peers): "" = `host`, or 127.0.0.1 when
  // `host` is every address.
  std::string advertise_host;
  int port = 0;  // 0: pick a free port.
  std::string metrics_host = "0.0.0.0";
  int metrics_port = -1;  // -1: no HTTP endpoint; 0: pick a free port.
  int max_message_bytes = 64 << 20;
  bool log_rpcs = false;  // one log line per finished RPC
  // Bearer-token authentication (docs/security.md); null: off, and then `host` must be a
  // loopback address unless `insecure_allow_unauthenticated`.
  std::shared_ptr<Authenticator> authenticator;
  bool insecure_allow_unauthenticated = false;
  // TLS on the gRPC port: PEM files, re-read when they change (every `tls_reload_s`), so that a
  // rotated certificate needs no restart. `tls_client_ca`: require client certificates it signs.
  std::string tls_cert, tls_key, tls_client_ca;
  int tls_reload_s = 10;
  // How this server calls its peers: TLS trusting `peer_ca` (presenting tls_cert/tls_key as client
  // certificate), and the bearer token of `identity_token_file`.
  std::string peer_ca;
  std::string identity_token_file;
  // Per-subject limits of the guard (RpcGuard::Options), 0 for none.
  double rate_limit_per_subject = 0;
  double rate_limit_burst = 0;
  int max_streams_per_subject = 0;
  // The config given by the common flags (without the authenticator: see ApplySecurityFlags).
  static ServerConfig FromFlags();
  // Opens --auth_token_file; INVALID_ARGUMENT/FAILED_PRECONDITION when it cannot, and
  // FAILED_PRECONDITION when the server would listen beyond loopback without authentication and
  // without --insecure_allow_unauthenticated, or when TLS flags come without their pair.
  absl::Status ApplySecurityFlags();
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(const std::string& host);

// Hosts gRPC services (and the metrics endpoint) in this process.
class ServiceHost {
 public:
  explicit ServiceHost(ServerConfig config);
  ~ServiceHost();

  // Registers `service` behind the guard (its generated `MakeGuarded`, found by argument-dependent
  // lookup: include the service's `.guard.pb.h`). Services must outlive the host; register them
  // before Start.
  template <class Impl>
  void AddService(Impl* service) {
    guarded_.push_back(MakeGuarded(service, guard_.get()));
  }
  RpcGuard& guard() { return *guard_; }
  // Opens the audit log at `path` (every server with a data dir keeps one: <data_dir>/audit);
  // call before Start. Without it mutating calls are not recorded and ListAuditEntries is
  // FAILED_PRECONDITION. The errors of Db::Open.
  absl::Status OpenAuditLog(const std::string& path, const Db::Options& options);
  // Which of mlops' services ("metadata", "artifact", "scheduler", "monitoring") this process
  // hosts: a peer it hosts is reached in-process.
  void DeclareServes(const std::string& name) { serves_.insert(name); }
  bool Serves(const std::string& name) const { return serves_.contains(name); }
  prometheus::Registry& registry() { return *registry_; }
  RocksDbCollector& rocksdb_collector() { return *rocksdb_; }
  HttpServer& http() { return http_; }
  // Routes of the HTTP API beyond the RPCs (JsonApi::AddRoute: /api/v1/<prefix>/...), served once
  // Start has run with an HTTP port. Register before Start.
  void AddApiRoute(const std::string& prefix,
                   std::function<int(mg_connection* conn, const std::string& rest)> handler);
  // A channel to this server for serving the HTTP request `conn`: its calls carry the request's
  // Authorization, Mlops-Project and X-Request-Id headers (not the internal token), so they pass
  // the guard as the caller; with a project other than default they act in it.
  std::shared_ptr<grpc::Channel> CallerChannel(mg_connection* conn, const std::string& project);

  // Builds and starts the gRPC server, then the HTTP endpoint. UNAVAILABLE when a port is taken.
  absl::Status Start();
  int port() const { return port_; }
  // Where other processes on this machine reach this server: its --host (127.0.0.1 when it binds
  // every interface) and bound port.
  std::string ReachableAddress() const;
  int metrics_port() const { return http_.port(); }
  // A channel to this server that stays inside the process (its calls are this process's own:
  // they carry the guard's internal token).
  // With a project other than default, every call of the channel acts in it
  // (MakeProjectInterceptor).
  std::shared_ptr<grpc::Channel> InProcessChannel(const std::string& project = "");
  // A channel to a peer service at `address`, secured as the config says (peer_ca, client
  // certificate, identity token).
  std::shared_ptr<grpc::Channel> PeerChannel(const std::string& address,
                                             const std::string& project = "");
  // Watches a peer service's channel: mlops_peer_up{peer,address} (1 unless the channel is in
  // TRANSIENT_FAILURE or shut down, read at each scrape, which also asks it to connect), a log
  // line when that changes, and a line on /statusz.
  void WatchPeer(const std::string& name, const std::string& address,
                 std::shared_ptr<grpc::Channel> channel);
  // Stops accepting RPCs, lets running ones finish until `grace`, then cancels the rest.
  void Shutdown(absl::Duration grace);

 private:
  ServerConfig config_;
  std::set<std::string> serves_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> process_;
  std::shared_ptr<RocksDbCollector> rocksdb_;
  std::shared_ptr<class PeerCollector> peers_;
  std::unique_ptr<RpcMetrics> rpc_metrics_;
  std::unique_ptr<RpcGuard> guard_;
  std::unique_ptr<class AuditLog> audit_log_;
  std::unique_ptr<class AuditServiceImpl> audit_service_;
  std::vector<std::unique_ptr<grpc::Service>> guarded_;
  std::shared_ptr<FileTokenSource> identity_token_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<class JsonApi> json_api_;
  std::vector<std::pair<std::string, std::function<int(mg_connection*, const std::string&)>>>
      api_routes_;
  HttpServer http_;
  int port_ = 0;
};

// Waits for SIGTERM or SIGINT (blocked by InitServerProcess) and returns the signal number.
int WaitForShutdownSignal();

// Writes "port\nmetrics_port\n" atomically (write then rename) to `path` when it is non-empty, so
// that tests and scripts can start a server on port 0 and learn its ports.
absl::Status WritePortFile(const std::string& path, int port, int metrics_port);

}  // namespace mlops
