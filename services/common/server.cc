#include "services/common/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <signal.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/internal/program_name.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "mlops/audit/v1/audit.guard.pb.h"
#include "services/common/audit_log.h"
#include "services/common/json_api.h"
#include "services/common/logging.h"
#include "services/common/oidc.h"
#include "services/common/projects.h"
#include "services/common/request_errors.h"
#include "services/common/web_ui.h"

ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address the gRPC and HTTP servers bind to. Beyond loopback it needs authentication "
          "(--auth_token_file or --oidc_jwks) or --insecure_allow_unauthenticated.");
ABSL_FLAG(int, port, 50051, "gRPC port (0 picks a free one).");
ABSL_FLAG(std::string, advertise_host, "",
          "The host name steps and peers reach this server by (in Kubernetes, its Service's DNS "
          "name); empty: --host, or 127.0.0.1 when --host is every address");
ABSL_FLAG(int, metrics_port, 9464,
          "HTTP port for /metrics, /healthz and /readyz (0 picks a free one, -1 disables).");
ABSL_FLAG(std::string, data_dir, "./.mlops", "Directory holding each service's RocksDB.");
ABSL_FLAG(std::string, log_format, "text", "Log format: text or json.");
ABSL_FLAG(int, max_message_mb, 64, "Largest gRPC message accepted or sent, in MiB.");
ABSL_FLAG(int, shutdown_grace_s, 10,
          "On SIGTERM, seconds that running RPCs get to finish before they are cancelled.");
ABSL_FLAG(bool, sync_writes, false,
          "fsync the write-ahead log on every write (survives power loss, slower). Without it, "
          "acknowledged writes survive a crash of the process but not of the machine.");
ABSL_FLAG(int, lock_wait_s, 0,
          "When another process holds a database (a pod being replaced whose old process has not "
          "exited yet), wait up to this many seconds for it instead of exiting at once.");
ABSL_FLAG(std::string, port_file, "",
          "When set, write the bound gRPC and metrics ports to this file once serving.");

ABSL_FLAG(bool, log_rpcs, false,
          "Log every finished RPC (method, code, ms, x-request-id, error). Off by default: at "
          "high request rates the log costs more than the request.");

ABSL_FLAG(std::string, auth_token_file, "",
          "Token file (docs/security.md): bearer tokens as SHA-256 hashes with subjects and "
          "grants; re-read when it changes. Set: every RPC needs a token the table allows.");
ABSL_FLAG(std::string, oidc_jwks, "",
          "JWKS file or http(s) URL (an OIDC provider's jwks_uri, or the Kubernetes API server's "
          "/openid/v1/jwks): accept JWT bearer tokens signed by its keys (RS256, ES256); a file "
          "is re-read when it changes, a URL fetched every --oidc_jwks_refresh_s. Needs "
          "--oidc_issuer, --oidc_audience and --auth_bindings_file.");
ABSL_FLAG(std::string, oidc_jwks_ca, "",
          "PEM CA bundle trusted when --oidc_jwks is an https URL (default: the system's).");
ABSL_FLAG(std::string, oidc_jwks_token_file, "",
          "Bearer token sent when fetching --oidc_jwks (in a pod: its service-account token, for "
          "https://kubernetes.default.svc/openid/v1/jwks).");
ABSL_FLAG(int, oidc_jwks_refresh_s, 300, "Seconds between fetches of a --oidc_jwks URL.");
ABSL_FLAG(std::string, oidc_issuer, "", "The iss claim every JWT must carry.");
ABSL_FLAG(std::string, oidc_audience, "", "The aud claim every JWT must carry (or contain).");
ABSL_FLAG(int, oidc_clock_skew_s, 60, "Seconds of clock skew allowed on exp and nbf.");
ABSL_FLAG(std::string, oidc_groups_claim, "groups",
          "The claim listing a JWT subject's groups (bindings may name groups).");
ABSL_FLAG(std::string, auth_bindings_file, "",
          "Bindings file (docs/security.md): the grants of JWT subjects and groups; re-read "
          "when it changes.");
ABSL_FLAG(double, rate_limit_per_subject, 0,
          "Calls per second each subject may make (a token bucket; 0: unlimited). Beyond it: "
          "RESOURCE_EXHAUSTED with a retry-after-ms hint. The server's own calls are exempt.");
ABSL_FLAG(double, rate_limit_burst, 0,
          "Calls a subject may make at once before --rate_limit_per_subject applies (0: twice "
          "the rate).");
ABSL_FLAG(int, max_streams_per_subject, 0,
          "Streaming calls (log follows, uploads, downloads, batches) one subject may have open "
          "at once (0: unlimited).");
ABSL_FLAG(int, audit_retention_days, 0,
          "Delete audit entries older than this many days (checked at start and hourly); 0 keeps "
          "them forever.");
ABSL_FLAG(bool, insecure_allow_unauthenticated, false,
          "Listen beyond loopback with authentication off (anyone who reaches the port may do "
          "anything). Logged as a warning.");
ABSL_FLAG(
    std::string, tls_cert, "",
    "PEM certificate chain served on the gRPC port (with --tls_key); re-read when it changes.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: require client certificates it signs (mutual TLS).");
ABSL_FLAG(int, tls_reload_s, 10, "Seconds between checks of the TLS files for a rotation.");
ABSL_FLAG(std::string, peer_ca, "",
          "PEM CA bundle: call peer services over TLS trusting it (presenting --tls_cert as the "
          "client certificate); empty: plaintext.");
ABSL_FLAG(
    std::string, identity_token_file, "",
    "File holding the bearer token this server presents to its peers (a Kubernetes "
    "service-account token, or one from `mlops auth token create`); re-read when it changes.");

namespace mlops {

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

std::string ServiceHost::ReachableAddress() const {
  if (!config_.advertise_host.empty()) {
    return config_.advertise_host + ":" + std::to_string(port_);
  }
  const std::string& host = config_.host;
  bool any = host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]";
  return (any ? std::string("127.0.0.1") : host) + ":" + std::to_string(port_);
}

std::vector<char*> InitServerProcess(int argc, char** argv, const char* usage) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  absl::SetProgramUsageMessage(usage);
  // --help lists this binary's own flags (absl's default matches only the file of main(), which
  // defines none here), and exits 0.
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-help" || arg == "-h") {
      absl::flags_internal::SetProgramInvocationName(argv[0]);
      absl::flags_internal::FlagsHelp(std::cout, "/services/",
                                      absl::flags_internal::HelpFormat::kHumanReadable, usage);
      std::cout << "\nEvery flag can also be set as MLOPS_<FLAG> in the environment "
                   "(MLOPS_DATA_DIR=...); the command line wins.\n";
      std::exit(0);
    }
  }
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    std::string env = "MLOPS_";
    for (char c : name) env += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (const char* value = std::getenv(env.c_str())) {
      std::string error;
      if (!flag->ParseFrom(value, &error)) {
        std::fprintf(stderr, "invalid %s=%s: %s\n", env.c_str(), value, error.c_str());
        std::exit(2);
      }
    }
  }
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  LogFormat format;
  if (!ParseLogFormat(absl::GetFlag(FLAGS_log_format), &format)) {
    std::fprintf(stderr, "--log_format must be text or json\n");
    std::exit(2);
  }
  SetLogFormat(format);
  return args;
}

ServerConfig ServerConfig::FromFlags() {
  ServerConfig config;
  config.host = absl::GetFlag(FLAGS_host);
  config.advertise_host = absl::GetFlag(FLAGS_advertise_host);
  config.port = absl::GetFlag(FLAGS_port);
  config.metrics_host = absl::GetFlag(FLAGS_host);
  config.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  config.max_message_bytes = absl::GetFlag(FLAGS_max_message_mb) << 20;
  config.log_rpcs = absl::GetFlag(FLAGS_log_rpcs);
  config.insecure_allow_unauthenticated = absl::GetFlag(FLAGS_insecure_allow_unauthenticated);
  config.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  config.tls_key = absl::GetFlag(FLAGS_tls_key);
  config.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  config.tls_reload_s = std::max(1, absl::GetFlag(FLAGS_tls_reload_s));
  config.peer_ca = absl::GetFlag(FLAGS_peer_ca);
  config.identity_token_file = absl::GetFlag(FLAGS_identity_token_file);
  config.rate_limit_per_subject = std::max(0.0, absl::GetFlag(FLAGS_rate_limit_per_subject));
  config.rate_limit_burst = std::max(0.0, absl::GetFlag(FLAGS_rate_limit_burst));
  config.max_streams_per_subject = std::max(0, absl::GetFlag(FLAGS_max_streams_per_subject));
  return config;
}

absl::Status ServerConfig::ApplySecurityFlags() {
  std::string token_file = absl::GetFlag(FLAGS_auth_token_file);
  std::shared_ptr<Authenticator> tokens, jwts;
  if (!token_file.empty()) {
    absl::StatusOr<std::unique_ptr<TokenFileAuthenticator>> opened =
        TokenFileAuthenticator::Open(token_file);
    if (!opened.ok()) return opened.status();
    tokens = std::move(*opened);
  }
  std::string jwks = absl::GetFlag(FLAGS_oidc_jwks);
  std::string bindings_file = absl::GetFlag(FLAGS_auth_bindings_file);
  if (!jwks.empty()) {
    if (bindings_file.empty()) {
      return absl::FailedPreconditionError(
          "--oidc_jwks needs --auth_bindings_file: the grants of JWT subjects and groups");
    }
    if (absl::GetFlag(FLAGS_oidc_issuer).empty() || absl::GetFlag(FLAGS_oidc_audience).empty()) {
      return absl::FailedPreconditionError("--oidc_jwks needs --oidc_issuer and --oidc_audience");
    }
    absl::StatusOr<std::unique_ptr<BindingsFile>> bindings = BindingsFile::Open(bindings_file);
    if (!bindings.ok()) return bindings.status();
    JwtOptions options;
    options.issuer = absl::GetFlag(FLAGS_oidc_issuer);
    options.audience = absl::GetFlag(FLAGS_oidc_audience);
    options.clock_skew = absl::Seconds(std::max(0, absl::GetFlag(FLAGS_oidc_clock_skew_s)));
    options.groups_claim = absl::GetFlag(FLAGS_oidc_groups_claim);
    JwksFetchOptions fetch;
    fetch.ca_file = absl::GetFlag(FLAGS_oidc_jwks_ca);
    fetch.bearer_token_file = absl::GetFlag(FLAGS_oidc_jwks_token_file);
    fetch.refresh = absl::Seconds(std::max(1, absl::GetFlag(FLAGS_oidc_jwks_refresh_s)));
    absl::StatusOr<std::unique_ptr<JwtAuthenticator>> opened =
        JwtAuthenticator::Open(jwks, std::move(options), std::move(*bindings), std::move(fetch));
    if (!opened.ok()) return opened.status();
    jwts = std::move(*opened);
  } else if (!bindings_file.empty()) {
    return absl::FailedPreconditionError(
        "--auth_bindings_file grants JWT subjects: it needs --oidc_jwks");
  }
  if (jwts != nullptr) {
    authenticator = std::make_shared<ChainAuthenticator>(tokens, jwts);
  } else {
    authenticator = tokens;
  }
  if (tls_cert.empty() != tls_key.empty()) {
    return absl::FailedPreconditionError("--tls_cert and --tls_key go together");
  }
  if (!tls_client_ca.empty() && tls_cert.empty()) {
    return absl::FailedPreconditionError("--tls_client_ca needs --tls_cert and --tls_key");
  }
  for (const std::string* path : {&tls_cert, &tls_key, &tls_client_ca, &peer_ca}) {
    if (!path->empty()) {
      if (absl::StatusOr<std::string> pem = ReadSmallFile(*path); !pem.ok()) return pem.status();
    }
  }
  if (authenticator == nullptr && !IsLoopbackHost(host)) {
    if (!insecure_allow_unauthenticated) {
      return absl::FailedPreconditionError(
          "--host " + host +
          " listens beyond loopback but authentication is off: set --auth_token_file or "
          "--oidc_jwks (see "
          "docs/security.md), or accept that anyone reaching the port may do anything with "
          "--insecure_allow_unauthenticated");
    }
    LogWarning("insecure_unauthenticated",
               {{"host", host},
                {"detail",
                 "authentication is off on a non-loopback address: anyone who reaches "
                 "the port may read, change and delete everything"}});
  }
  return absl::OkStatus();
}

// mlops_peer_up{peer,address} for every watched peer, and the /statusz text.
class PeerCollector : public prometheus::Collectable {
 public:
  void Add(std::string name, std::string address, std::shared_ptr<grpc::Channel> channel) {
    std::lock_guard lock(mu_);
    peers_.push_back({std::move(name), std::move(address), std::move(channel), -1});
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    prometheus::MetricFamily family;
    family.name = "mlops_peer_up";
    family.help = "1 when a peer service's channel is connected or connecting, 0 when it fails";
    family.type = prometheus::MetricType::Gauge;
    std::lock_guard lock(mu_);
    for (Peer& peer : peers_) {
      int up = Up(peer);
      if (up != peer.last_up) {
        LogInfo(up ? "peer_up" : "peer_down", {{"peer", peer.name}, {"address", peer.address}});
        peer.last_up = up;
      }
      prometheus::ClientMetric metric;
      metric.label = {{"address", peer.address}, {"peer", peer.name}};
      metric.gauge.value = up;
      family.metric.push_back(std::move(metric));
    }
    if (family.metric.empty()) return {};
    return {std::move(family)};
  }

  std::string Status() const {
    std::lock_guard lock(mu_);
    std::string out;
    for (const Peer& peer : peers_) {
      out += "peer " + peer.name + " " + peer.address + ": " + (Up(peer) ? "up" : "DOWN") + "\n";
    }
    return out.empty() ? "no remote peers (every service this server calls runs in it)\n" : out;
  }

 private:
  struct Peer {
    std::string name, address;
    std::shared_ptr<grpc::Channel> channel;
    int last_up;
  };
  static int Up(const Peer& peer) {
    grpc_connectivity_state state = peer.channel->GetState(/*try_to_connect=*/true);
    return state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN ? 0 : 1;
  }
  mutable std::mutex mu_;
  mutable std::vector<Peer> peers_;
};

ServiceHost::ServiceHost(ServerConfig config)
    : config_(std::move(config)),
      registry_(std::make_shared<prometheus::Registry>()),
      process_(MakeProcessCollector()),
      rocksdb_(std::make_shared<RocksDbCollector>()),
      peers_(std::make_shared<PeerCollector>()),
      rpc_metrics_(std::make_unique<RpcMetrics>(*registry_)) {
  rpc_metrics_->set_log_rpcs(config_.log_rpcs);
  RpcGuard::Options guard_options;
  guard_options.authenticator = config_.authenticator;
  guard_options.internal_token = NewToken();
  guard_options.calls_per_second = config_.rate_limit_per_subject;
  guard_options.burst = config_.rate_limit_burst;
  guard_options.max_streams = config_.max_streams_per_subject;
  guard_ = std::make_unique<RpcGuard>(*registry_, std::move(guard_options));
  if (!config_.identity_token_file.empty()) {
    absl::StatusOr<std::shared_ptr<FileTokenSource>> source =
        FileTokenSource::Open(config_.identity_token_file);
    // Checked by ApplySecurityFlags in servers; a test passing a bad path learns it on calls.
    if (source.ok()) {
      identity_token_ = std::move(*source);
    } else {
      LogError("identity_token_unreadable", {{"error", std::string(source.status().message())}});
    }
  }
  http_.AddCollectable(registry_);
  http_.AddCollectable(process_);
  http_.AddCollectable(rocksdb_);
  http_.AddCollectable(peers_);
  // Ready while this server's own storage is usable; peers do not count (see WatchPeer).
  http_.SetReadiness([rocksdb = rocksdb_]() { return rocksdb->Unusable().empty(); });
  http_.SetStatusPage([peers = peers_, rocksdb = rocksdb_]() {
    std::string storage = "storage: ";
    std::vector<std::string> bad = rocksdb->Unusable();
    if (bad.empty()) storage += "ok";
    for (const std::string& name : bad) storage += name + " UNUSABLE ";
    return storage + "\n" + peers->Status();
  });
}

void ServiceHost::WatchPeer(const std::string& name, const std::string& address,
                            std::shared_ptr<grpc::Channel> channel) {
  peers_->Add(name, address, std::move(channel));
}

ServiceHost::~ServiceHost() { Shutdown(absl::ZeroDuration()); }

absl::Status ServiceHost::Start() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::string address = config_.host + ":" + std::to_string(config_.port);
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!config_.tls_cert.empty()) {
    // gRPC's file watcher re-reads the files every tls_reload_s: cert-manager's rotation of the
    // Secret (or a `mv` of new files) reaches new handshakes with no restart.
    auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        config_.tls_key, config_.tls_cert, config_.tls_client_ca,
        static_cast<unsigned>(config_.tls_reload_s));
    grpc::experimental::TlsServerCredentialsOptions options(provider);
    options.watch_identity_key_cert_pairs();
    if (!config_.tls_client_ca.empty()) {
      options.watch_root_certs();
      options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    }
    credentials = grpc::experimental::TlsServerCredentials(options);
  }
  builder.AddListeningPort(address, credentials, &port_);
  builder.SetMaxReceiveMessageSize(config_.max_message_bytes);
  builder.SetMaxSendMessageSize(config_.max_message_bytes);
  audit_service_ = std::make_unique<AuditServiceImpl>(audit_log_.get());
  AddService(audit_service_.get());
  for (const auto& service : guarded_) builder.RegisterService(service.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> factories;
  // Send-side hooks run in this order: the status is corrected before metrics record it.
  InstallParseErrorCapture();
  factories.push_back(MakeBadRequestInterceptorFactory());
  factories.push_back(MakeRpcMetricsInterceptorFactory(rpc_metrics_.get()));
  factories.push_back(MakeAuditInterceptorFactory(guard_.get(), audit_log_.get()));
  factories.push_back(MakeStreamSlotInterceptorFactory(guard_.get()));
  builder.experimental().SetInterceptorCreators(std::move(factories));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return absl::UnavailableError("grpc: cannot listen on " + address);
  }
  if (config_.metrics_port >= 0) {
    // The JSON API calls this server in-process without the internal token: each call carries
    // the HTTP request's credentials and passes the guard like any other.
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(config_.max_message_bytes);
    args.SetMaxSendMessageSize(config_.max_message_bytes);
    std::vector<std::string> services(serves_.begin(), serves_.end());
    services.push_back("audit");
    JsonApi::Options options;
    options.max_body_bytes = config_.max_message_bytes;
    json_api_ = std::make_unique<JsonApi>(server_->InProcessChannel(args), services, options);
    for (auto& [prefix, handler] : api_routes_) json_api_->AddRoute(prefix, std::move(handler));
    api_routes_.clear();
    http_.AddHandler("/api/v1/",
                     [api = json_api_.get()](mg_connection* conn) { return api->Handle(conn); });
    ServeWebUi(&http_);
    // TLS on the HTTP port too when the gRPC port has it: the same files, reloaded the same way.
    HttpTls tls{config_.tls_cert, config_.tls_key, config_.tls_client_ca, config_.tls_reload_s};
    absl::Status status = http_.Start(config_.metrics_host, config_.metrics_port,
                                      config_.tls_cert.empty() ? nullptr : &tls);
    if (!status.ok()) {
      server_->Shutdown();
      server_.reset();
      return status;
    }
  }
  return absl::OkStatus();
}

absl::Status ServiceHost::OpenAuditLog(const std::string& path, const Db::Options& options) {
  const int days = absl::GetFlag(FLAGS_audit_retention_days);
  if (days < 0) {
    return absl::InvalidArgumentError("--audit_retention_days: must be 0 (forever) or more");
  }
  absl::StatusOr<std::unique_ptr<AuditLog>> log =
      AuditLog::Open(path, options, *registry_, int64_t{days} * 86400000);
  if (!log.ok()) return log.status();
  audit_log_ = std::move(*log);
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> ServiceHost::InProcessChannel(const std::string& project) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(config_.max_message_bytes);
  args.SetMaxSendMessageSize(config_.max_message_bytes);
  const bool in_project = !project.empty() && project != kDefaultProject;
  if (guard_->internal_token().empty() && !in_project) return server_->InProcessChannel(args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  if (!guard_->internal_token().empty()) {
    factories.push_back(
        MakeBearerTokenInterceptor([token = guard_->internal_token()] { return token; }));
  }
  if (in_project) factories.push_back(MakeProjectInterceptor(project));
  return server_->experimental().InProcessChannelWithInterceptors(args, std::move(factories));
}

void ServiceHost::AddApiRoute(
    const std::string& prefix,
    std::function<int(mg_connection* conn, const std::string& rest)> handler) {
  api_routes_.emplace_back(prefix, std::move(handler));
}

std::shared_ptr<grpc::Channel> ServiceHost::CallerChannel(mg_connection* conn,
                                                          const std::string& project) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(config_.max_message_bytes);
  args.SetMaxSendMessageSize(config_.max_message_bytes);
  std::vector<std::pair<std::string, std::string>> entries = RequestMetadata(conn);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(MakeMetadataInterceptor(std::move(entries)));
  if (!project.empty() && project != kDefaultProject) {
    factories.push_back(MakeProjectInterceptor(project));
  }
  return server_->experimental().InProcessChannelWithInterceptors(args, std::move(factories));
}

std::shared_ptr<grpc::Channel> ServiceHost::PeerChannel(const std::string& address,
                                                        const std::string& project) {
  ChannelSecurity security;
  security.project = project;
  if (!config_.peer_ca.empty()) {
    security.ca_pem = ReadSmallFile(config_.peer_ca).value_or("");
    if (!config_.tls_cert.empty()) {
      security.cert_pem = ReadSmallFile(config_.tls_cert).value_or("");
      security.key_pem = ReadSmallFile(config_.tls_key).value_or("");
    }
  }
  if (identity_token_ != nullptr) {
    security.token = [source = identity_token_] { return source->Token(); };
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(config_.max_message_bytes);
  args.SetMaxSendMessageSize(config_.max_message_bytes);
  return SecureChannel(address, security, args);
}

void ServiceHost::Shutdown(absl::Duration grace) {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(grace));
    server_->Wait();
  }
  http_.Stop();  // after the RPCs (those of the JSON API end with them), before the server goes
  server_.reset();
}

int WaitForShutdownSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

absl::Status WritePortFile(const std::string& path, int port, int metrics_port) {
  if (path.empty()) return absl::OkStatus();
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n" << metrics_port << "\n";
    if (!out) return absl::InternalError("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError("cannot rename " + tmp + " to " + path);
  }
  return absl::OkStatus();
}

}  // namespace mlops
