#include "services/common/component.h"

#include <filesystem>

#include "absl/flags/flag.h"
#include "services/common/logging.h"
#include "services/common/projects.h"
#include "services/common/status.h"

ABSL_FLAG(std::string, artifact_address, "",
          "the artifact service (host:port) this server's components call; empty: this server");
ABSL_FLAG(std::string, metadata_address, "",
          "the metadata service (host:port) this server's components call; empty: this server");
ABSL_FLAG(std::string, scheduler_address, "",
          "the scheduler service (host:port) this server's components call; empty: this server");
ABSL_FLAG(std::string, monitoring_address, "",
          "the monitoring service (host:port) that pipeline steps are told of; empty: this server");

namespace mlops {

namespace {
std::string PeerFlag(Peer peer) {
  switch (peer) {
    case Peer::kArtifact:
      return absl::GetFlag(FLAGS_artifact_address);
    case Peer::kMetadata:
      return absl::GetFlag(FLAGS_metadata_address);
    case Peer::kScheduler:
      return absl::GetFlag(FLAGS_scheduler_address);
    case Peer::kMonitoring:
      return absl::GetFlag(FLAGS_monitoring_address);
  }
  return "";
}
}  // namespace

static const char* PeerName(Peer peer) {
  switch (peer) {
    case Peer::kArtifact:
      return "artifact";
    case Peer::kMetadata:
      return "metadata";
    case Peer::kScheduler:
      return "scheduler";
    case Peer::kMonitoring:
      return "monitoring";
  }
  return "";
}

std::string PeerAddress(const ServiceHost& host, Peer peer) {
  std::string address = PeerFlag(peer);
  return address.empty() ? host.ReachableAddress() : address;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> PeerChannel(ServiceHost& host, Peer peer,
                                                           const std::string& project) {
  std::string address = PeerFlag(peer);
  std::string name = PeerName(peer);
  if (address.empty()) {
    if (!host.Serves(name)) {
      return absl::FailedPreconditionError("this server calls the " + name +
                                           " service, which does not run in this process: set --" +
                                           name + "_address=HOST:PORT");
    }
    return host.InProcessChannel(project);
  }
  return host.PeerChannel(address, project);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> PeerChannel(ServiceHost& host, Peer peer) {
  ASSIGN_OR_RETURN(auto channel, PeerChannel(host, peer, ""));
  if (std::string address = PeerFlag(peer); !address.empty()) {
    host.WatchPeer(PeerName(peer), address, channel);
  }
  return channel;
}

absl::StatusOr<ChannelForProject> PeerChannelsByProject(ServiceHost& host, Peer peer) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, PeerChannel(host, peer));
  return ChannelForProject(
      [&host, peer,
       channel](const std::string& project) -> absl::StatusOr<std::shared_ptr<grpc::Channel>> {
        if (project.empty() || project == kDefaultProject) return channel;
        return PeerChannel(host, peer, project);
      });
}

int RunServerMain(const std::string& program, const std::vector<ComponentFactory>& factories) {
  std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    LogError("data_dir_failed", {{"data_dir", data_dir}, {"error", ec.message()}});
    return 1;
  }
  Db::Options db_options;
  db_options.sync_writes = absl::GetFlag(FLAGS_sync_writes);
  db_options.lock_wait = absl::Seconds(std::max(0, absl::GetFlag(FLAGS_lock_wait_s)));
  std::vector<std::unique_ptr<Component>> components;
  ServerConfig config = ServerConfig::FromFlags();
  if (absl::Status status = config.ApplySecurityFlags(); !status.ok()) {
    LogError("security_config_invalid", {{"error", std::string(status.message())}});
    return 2;
  }
  ServiceHost host(std::move(config));
  for (const auto& factory : factories) {
    auto component = factory(data_dir, db_options);
    if (!component.ok()) {
      LogError("open_failed", {{"data_dir", data_dir}, {"error", component.status().ToString()}});
      return 1;
    }
    (*component)->Register(host);
    components.push_back(std::move(*component));
  }
  if (absl::Status status = host.OpenAuditLog(data_dir + "/audit", db_options); !status.ok()) {
    LogError("open_failed", {{"data_dir", data_dir}, {"error", status.ToString()}});
    return 1;
  }
  if (absl::Status status = host.Start(); !status.ok()) {
    LogError("start_failed", {{"error", status.ToString()}});
    return 1;
  }
  for (const auto& component : components) {
    if (absl::Status status = component->Started(host); !status.ok()) {
      LogError("start_failed", {{"component", component->name()}, {"error", status.ToString()}});
      for (const auto& started : components) started->Stop();
      host.Shutdown(absl::ZeroDuration());
      components.clear();
      return 1;
    }
  }
  if (absl::Status status =
          WritePortFile(absl::GetFlag(FLAGS_port_file), host.port(), host.metrics_port());
      !status.ok()) {
    LogError("port_file_failed", {{"error", status.ToString()}});
    return 1;
  }
  std::string names;
  for (const auto& component : components) names += (names.empty() ? "" : ",") + component->name();
  LogInfo("serving", {{"program", program},
                      {"services", names},
                      {"port", std::to_string(host.port())},
                      {"metrics_port", std::to_string(host.metrics_port())},
                      {"data_dir", data_dir}});
  int sig = WaitForShutdownSignal();
  LogInfo("shutting_down", {{"signal", std::to_string(sig)}});
  for (const auto& component : components) component->Stop();
  host.Shutdown(absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_s)));
  components.clear();
  LogInfo("stopped", {{"program", program}});
  return 0;
}

}  // namespace mlops
