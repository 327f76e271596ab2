// A service component that a server process hosts: it opens its own storage under the data dir and
// registers its gRPC services and gauges with the host. mlops-<service> hosts one component,
// mlops-server hosts all of them on one port.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/common/db.h"
#include "services/common/server.h"

namespace mlops {

class Component {
 public:
  virtual ~Component() = default;
  virtual std::string name() const = 0;
  // Registers services and collectors; called once, before the host starts.
  virtual void Register(ServiceHost& host) = 0;
  // Called once the host serves (so the component may call services in the same process through
  // host.InProcessChannel()). An error stops the server.
  virtual absl::Status Started(ServiceHost& host) {
    (void)host;
    return absl::OkStatus();
  }
  // Called when the server is about to shut down, before the host stops serving: ends the
  // component's own threads, which may call services in this process (an in-process channel must
  // not be used once the host has shut down).
  virtual void Stop() {}
};

// The other services a component calls: --artifact_address, --metadata_address and
// --scheduler_address, each a channel to that host:port, or (empty, the default) to this server
// itself in process.
enum class Peer { kArtifact, kMetadata, kScheduler, kMonitoring };
// FAILED_PRECONDITION when the flag is empty and this process does not host the peer (a service
// run on its own must be told where its peers are). A configured peer is watched: its state is
// exported as mlops_peer_up{peer} and shown on /statusz; a peer that is down does not make this
// server unready (services call each other: readiness must not deadlock).
absl::StatusOr<std::shared_ptr<grpc::Channel>> PeerChannel(ServiceHost& host, Peer peer);
// The same for calls that act in `project` (docs/api.md, "Projects"): names and ids in its
// requests without a project get it (MakeProjectInterceptor). Not watched (PeerChannel's is).
absl::StatusOr<std::shared_ptr<grpc::Channel>> PeerChannel(ServiceHost& host, Peer peer,
                                                           const std::string& project);
// Both: a function giving the channel to `peer` for each project (the watched PeerChannel for
// project default), for a component that acts in the projects of the resources it serves.
absl::StatusOr<ChannelForProject> PeerChannelsByProject(ServiceHost& host, Peer peer);
// The host:port of a peer as a child process (a pipeline step) reaches it: the flag's value, or
// this server's reachable address when the flag is empty.
std::string PeerAddress(const ServiceHost& host, Peer peer);

// Opens a component with its storage in `dir` (data_dir/<name>).
using ComponentFactory = std::function<absl::StatusOr<std::unique_ptr<Component>>(
    const std::string& data_dir, const Db::Options& options)>;

// The body of every server main after InitServerProcess: opens each component under --data_dir,
// serves on --port and --metrics_port, writes --port_file, and shuts down gracefully on SIGTERM or
// SIGINT. Returns the process exit code.
int RunServerMain(const std::string& program, const std::vector<ComponentFactory>& factories);

}  // namespace mlops
