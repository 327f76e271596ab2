// ArtifactGateway over the artifact service's gRPC API (the client library), one client per
// project the scheduler's runs act in.
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <mutex>

#include "absl/container/flat_hash_set.h"
#include "services/artifact/client/artifact_client.h"
#include "services/common/channel.h"
#include "services/scheduler/gateways.h"

namespace mlops::scheduler {

class ClientArtifactGateway final : public ArtifactGateway {
 public:
  explicit ClientArtifactGateway(ChannelForProject channels);
  absl::StatusOr<std::string> ResolveDataset(const std::string& project, const std::string& dataset,
                                             const std::string& ref) override;
  absl::Status MaterializeDataset(const std::string& project, const std::string& dataset,
                                  const std::string& version, const std::string& dir) override;
  absl::Status MaterializeBlob(const std::string& project, const std::string& digest,
                               const std::string& path) override;
  absl::StatusOr<std::string> UploadFile(const std::string& project,
                                         const std::string& path) override;

 private:
  // The client whose calls act in `project`, made on first use.
  absl::StatusOr<std::shared_ptr<artifact::ArtifactClient>> Client(const std::string& project);

  ChannelForProject channels_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<artifact::ArtifactClient>> clients_;  // by project
  // Small blobs this process stored (pinned, so never collected), as project + '\n' + digest: the
  // same log or output again in that project costs a hash, not an upload (no-op steps all write
  // the same empty logs). Per project, as a project sees only the content it uploaded.
  absl::flat_hash_set<std::string> stored_;
};

}  // namespace mlops::scheduler
