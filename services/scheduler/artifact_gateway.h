// ArtifactGateway over the artifact service's gRPC API (the client library).
#pragma once

#include <grpcpp/grpcpp.h>

#include "services/artifact/client/artifact_client.h"
#include "services/scheduler/scheduler.h"

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
};

}  // namespace mlops::scheduler
