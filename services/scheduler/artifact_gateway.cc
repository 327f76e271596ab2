#include "services/scheduler/artifact_gateway.h"

#include <filesystem>
#include <fstream>

#include "services/common/digest.h"
#include "services/common/grpc_status.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::scheduler {

namespace {
constexpr uintmax_t kSmallFileBytes = 1 << 20;

artifact::ClientOptions Options() {
  artifact::ClientOptions options;
  options.sync_downloads = false;  // inputs are scratch copies; the artifact service has them
  return options;
}
}  // namespace

// Clients kept at most: beyond, the map starts again (calls under way keep theirs).
constexpr size_t kMaxClients = 256;

ClientArtifactGateway::ClientArtifactGateway(ChannelForProject channels)
    : channels_(std::move(channels)) {}

absl::StatusOr<std::shared_ptr<artifact::ArtifactClient>> ClientArtifactGateway::Client(
    const std::string& project) {
  std::lock_guard lock(mu_);
  auto it = clients_.find(project);
  if (it != clients_.end()) return it->second;
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, channels_(project));
  if (clients_.size() >= kMaxClients) clients_.clear();
  auto client = std::make_shared<artifact::ArtifactClient>(std::move(channel), Options());
  clients_[project] = client;
  return client;
}

absl::StatusOr<std::string> ClientArtifactGateway::ResolveDataset(const std::string& project,
                                                                  const std::string& dataset,
                                                                  const std::string& ref) {
  ASSIGN_OR_RETURN(auto client, Client(project));
  artifact::v1::GetVersionRequest request;
  request.set_dataset(dataset);
  request.set_ref(ref);
  artifact::v1::DatasetVersion version;
  grpc::ClientContext context;
  RETURN_IF_ERROR(FromGrpcStatus(client->stub().GetVersion(&context, request, &version)));
  return version.digest();
}

absl::Status ClientArtifactGateway::MaterializeDataset(const std::string& project,
                                                       const std::string& dataset,
                                                       const std::string& version,
                                                       const std::string& dir) {
  ASSIGN_OR_RETURN(auto client, Client(project));
  return client->Pull(dataset, version, dir, nullptr).status();
}

absl::Status ClientArtifactGateway::MaterializeBlob(const std::string& project,
                                                    const std::string& digest,
                                                    const std::string& path) {
  ASSIGN_OR_RETURN(auto client, Client(project));
  return client->DownloadToFile(digest, path, nullptr);
}

absl::StatusOr<std::string> ClientArtifactGateway::UploadFile(const std::string& project,
                                                              const std::string& path) {
  ASSIGN_OR_RETURN(auto client, Client(project));
  std::string small_key;
  std::error_code ec;
  if (std::filesystem::file_size(path, ec) <= kSmallFileBytes && !ec) {
    std::ifstream in(path, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    small_key = StrCat(project, "\n", DigestHex(Sha256Of(data)));
    std::lock_guard lock(mu_);
    if (stored_.contains(small_key)) return small_key.substr(project.size() + 1);
  }
  // Pinned: a step output is a root until lineage and runs reference it (a later issue).
  ASSIGN_OR_RETURN(auto blob, client->UploadFile(path, /*pin=*/true, nullptr));
  if (!small_key.empty()) {
    std::lock_guard lock(mu_);
    stored_.insert(StrCat(project, "\n", blob.digest()));
  }
  return blob.digest();
}

}  // namespace mlops::scheduler
