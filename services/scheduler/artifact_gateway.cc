#include "services/scheduler/artifact_gateway.h"

#include <filesystem>
#include <fstream>

#include "services/common/digest.h"
#include "services/common/grpc_status.h"
#include "services/common/status.h"

namespace mlops::scheduler {

namespace {
constexpr uintmax_t kSmallFileBytes = 1 << 20;

artifact::ClientOptions Options() {
  artifact::ClientOptions options;
  options.sync_downloads = false;  // inputs are scratch copies; the artifact service has them
  return options;
}
}  // namespace

ClientArtifactGateway::ClientArtifactGateway(std::shared_ptr<grpc::Channel> channel)
    : client_(std::move(channel), Options()) {}

absl::StatusOr<std::string> ClientArtifactGateway::ResolveDataset(const std::string& dataset,
                                                                  const std::string& ref) {
  artifact::v1::GetVersionRequest request;
  request.set_dataset(dataset);
  request.set_ref(ref);
  artifact::v1::DatasetVersion version;
  grpc::ClientContext context;
  RETURN_IF_ERROR(FromGrpcStatus(client_.stub().GetVersion(&context, request, &version)));
  return version.digest();
}

absl::Status ClientArtifactGateway::MaterializeDataset(const std::string& dataset,
                                                       const std::string& version,
                                                       const std::string& dir) {
  return client_.Pull(dataset, version, dir, nullptr).status();
}

absl::Status ClientArtifactGateway::MaterializeBlob(const std::string& digest,
                                                    const std::string& path) {
  return client_.DownloadToFile(digest, path, nullptr);
}

absl::StatusOr<std::string> ClientArtifactGateway::UploadFile(const std::string& path) {
  std::string small_digest;
  std::error_code ec;
  if (std::filesystem::file_size(path, ec) <= kSmallFileBytes && !ec) {
    std::ifstream in(path, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    small_digest = DigestHex(Sha256Of(data));
    std::lock_guard lock(mu_);
    if (stored_.contains(small_digest)) return small_digest;
  }
  // Pinned: a step output is a root until lineage and runs reference it (a later issue).
  ASSIGN_OR_RETURN(auto blob, client_.UploadFile(path, /*pin=*/true, nullptr));
  if (!small_digest.empty()) {
    std::lock_guard lock(mu_);
    stored_.insert(blob.digest());
  }
  return blob.digest();
}

}  // namespace mlops::scheduler
