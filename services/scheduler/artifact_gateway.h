// ArtifactGateway over the artifact service's gRPC API (the client library).
#pragma once

#include <grpcpp/grpcpp.h>

#include <mutex>

#include "absl/container/flat_hash_set.h"
#include "services/artifact/client/artifact_client.h"
#include "services/scheduler/gateways.h"

namespace mlops::scheduler {

class ClientArtifactGateway final : public ArtifactGateway {
 public:
  explicit ClientArtifactGateway(std::shared_ptr<grpc::Channel> channel);
  absl::StatusOr<std::string> ResolveDataset(const std::string& dataset,
                                             const std::string& ref) override;
  absl::Status MaterializeDataset(const std::string& dataset, const std::string& version,
                                  const std::string& dir) override;
  absl::Status MaterializeBlob(const std::string& digest, const std::string& path) override;
  absl::StatusOr<std::string> UploadFile(const std::string& path) override;

 private:
  artifact::ArtifactClient client_;
  // Small blobs this process stored (pinned, so never collected): the same log or output again
  // costs a hash, not an upload (no-op steps all write the same empty logs).
  std::mutex mu_;
  absl::flat_hash_set<std::string> stored_;
};

}  // namespace mlops::scheduler
