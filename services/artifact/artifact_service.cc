#include "services/artifact/artifact_service.h"

#include "services/common/grpc_status.h"
#include "services/common/projects.h"
#include "services/common/request_errors.h"
#include "services/common/rpc_guard.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::artifact {
namespace {

absl::StatusOr<std::vector<RawDigest>> ParseDigests(
    const google::protobuf::RepeatedPtrField<std::string>& hex) {
  if (static_cast<size_t>(hex.size()) > kMaxDigestsPerCall) {
    return absl::InvalidArgumentError(
        StrCat("digests: ", std::to_string(hex.size()), " given, at most 10000 per call"));
  }
  std::vector<RawDigest> out(static_cast<size_t>(hex.size()));
  for (int i = 0; i < hex.size(); ++i) {
    if (!ParseDigestHex(hex[i], &out[i])) {
      return absl::InvalidArgumentError(StrCat("digests[", std::to_string(i), "] \"",
                                               std::string_view(hex[i]).substr(0, 100),
                                               "\": not a SHA-256 digest"));
    }
  }
  return out;
}

absl::StatusOr<RawDigest> ParseDigest(std::string_view hex) {
  RawDigest digest;
  if (!ParseDigestHex(hex, &digest)) {
    return absl::InvalidArgumentError(
        StrCat("digest \"", hex.substr(0, 100), "\": not a SHA-256 digest (64 hex characters)"));
  }
  return digest;
}

// A list or read request's project field: empty is default.
std::string_view ProjectField(const std::string& project) {
  return project.empty() ? kDefaultProject : std::string_view(project);
}

// A client stream acts in the project of its metadata (the guard checked the caller's role there):
// a message naming another is refused.
absl::Status InStreamProject(grpc::ServerContext* context, std::string_view field,
                             std::string_view name) {
  std::string project = StreamProject(*context);
  if (ProjectOf(name) == project) return absl::OkStatus();
  return absl::InvalidArgumentError(StrCat(field, " ", name.substr(0, 200), " is not in project ",
                                           project,
                                           ", the project this stream was opened for "
                                           "(metadata ",
                                           kProjectMetadata, ")"));
}

}  // namespace

grpc::Status ArtifactServiceImpl::StartUpload(grpc::ServerContext*,
                                              const v1::StartUploadRequest* request,
                                              v1::UploadSession* response) {
  if (!request->project().empty()) {
    if (absl::Status valid = ValidateProject(request->project()); !valid.ok()) {
      return ToGrpcStatus(valid);
    }
  }
  return Reply(store_->StartUpload(request->ttl_seconds(), ProjectField(request->project())),
               response);
}

grpc::Status ArtifactServiceImpl::FindMissingChunks(grpc::ServerContext*,
                                                    const v1::FindMissingChunksRequest* request,
                                                    v1::FindMissingChunksResponse* response) {
  auto digests = ParseDigests(request->digests());
  if (!digests.ok()) return ToGrpcStatus(digests.status());
  auto missing = store_->FindMissingChunks(request->session_id(), *digests);
  if (!missing.ok()) return ToGrpcStatus(missing.status());
  for (int i : *missing) response->add_missing(request->digests(i));
  return grpc::Status::OK;
}

grpc::Status ArtifactServiceImpl::UploadChunks(grpc::ServerContext* context,
                                               grpc::ServerReader<v1::UploadChunksRequest>* reader,
                                               v1::UploadChunksResponse* response) {
  v1::UploadChunksRequest request;
  std::string session_id;
  std::vector<ArtifactStore::ChunkInput> chunks;
  while (reader->Read(&request)) {
    if (session_id.empty()) {
      session_id = request.session_id();
      if (session_id.empty()) {
        return ToGrpcStatus(
            absl::InvalidArgumentError("session_id: required in the first message"));
      }
      if (absl::Status in = InStreamProject(context, "session_id", session_id); !in.ok()) {
        return ToGrpcStatus(in);
      }
    } else if (!request.session_id().empty() && request.session_id() != session_id) {
      return ToGrpcStatus(
          absl::InvalidArgumentError("session_id: differs from the first message's"));
    }
    chunks.clear();
    for (int i = 0; i < request.chunks_size(); ++i) {
      const v1::Chunk& chunk = request.chunks(i);
      RawDigest digest;
      if (!ParseDigestHex(chunk.digest(), &digest)) {
        return ToGrpcStatus(absl::InvalidArgumentError(
            StrCat("chunks[", std::to_string(i), "].digest \"",
                   std::string_view(chunk.digest()).substr(0, 100), "\": not a SHA-256 digest")));
      }
      chunks.push_back({digest, chunk.data()});
    }
    auto result = store_->PutChunks(session_id, chunks);
    if (!result.ok()) return ToGrpcStatus(result.status());
    response->set_chunks_received(response->chunks_received() + request.chunks_size());
    // As the project sees it: a chunk it never sent counts as stored even when the server held
    // the bytes for another project (nothing may tell it so).
    response->set_chunks_stored(response->chunks_stored() + result->new_to_project);
    response->set_bytes_stored(response->bytes_stored() + result->bytes_new_to_project);
  }
  return grpc::Status::OK;
}

grpc::Status ArtifactServiceImpl::CommitBlobs(grpc::ServerContext*,
                                              const v1::CommitBlobsRequest* request,
                                              v1::CommitBlobsResponse* response) {
  auto blobs = store_->CommitBlobs(*request);
  if (!blobs.ok()) return ToGrpcStatus(blobs.status());
  for (auto& blob : *blobs) *response->add_blobs() = std::move(blob);
  return grpc::Status::OK;
}

grpc::Status ArtifactServiceImpl::FinishUpload(grpc::ServerContext*,
                                               const v1::FinishUploadRequest* request,
                                               v1::FinishUploadResponse*) {
  return ToGrpcStatus(store_->FinishUpload(request->session_id()));
}

grpc::Status ArtifactServiceImpl::FindMissingBlobs(grpc::ServerContext*,
                                                   const v1::FindMissingBlobsRequest* request,
                                                   v1::FindMissingBlobsResponse* response) {
  auto digests = ParseDigests(request->digests());
  if (!digests.ok()) return ToGrpcStatus(digests.status());
  auto missing = store_->FindMissingBlobs(*digests, ProjectField(request->project()));
  if (!missing.ok()) return ToGrpcStatus(missing.status());
  for (int i : *missing) response->add_missing(request->digests(i));
  response->set_damaged_chunks(store_->DamagedChunks());
  return grpc::Status::OK;
}

grpc::Status ArtifactServiceImpl::StatBlob(grpc::ServerContext*, const v1::StatBlobRequest* request,
                                           v1::Blob* response) {
  auto digest = ParseDigest(request->digest());
  if (!digest.ok()) return ToGrpcStatus(digest.status());
  return Reply(
      store_->StatBlob(*digest, request->include_chunks(), ProjectField(request->project())),
      response);
}

grpc::Status ArtifactServiceImpl::ListBlobs(grpc::ServerContext*,
                                            const v1::ListBlobsRequest* request,
                                            v1::ListBlobsResponse* response) {
  return Reply(store_->ListBlobs(*request), response);
}

grpc::Status ArtifactServiceImpl::Download(grpc::ServerContext* context,
                                           const v1::DownloadRequest* request,
                                           grpc::ServerWriter<v1::DownloadResponse>* writer) {
  auto digest = ParseDigest(request->digest());
  if (!digest.ok()) return ToGrpcStatus(digest.status());
  int64_t blob_size = 0;
  bool first = true;
  bool broken = false;
  absl::Status status = store_->ReadBlob(
      *digest, request->offset(), request->length(), &blob_size,
      [&](int64_t offset, std::string_view data) {
        if (context->IsCancelled()) {
          broken = true;
          return false;
        }
        v1::DownloadResponse response;
        response.set_offset(offset);
        response.set_data(std::string(data));
        if (first) response.set_blob_size(blob_size);
        first = false;
        if (!writer->Write(response)) {
          broken = true;
          return false;
        }
        return true;
      },
      ProjectField(request->project()));
  if (!status.ok()) return ToGrpcStatus(status);
  if (broken) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
  if (first) {  // empty blob or empty range: still say how big the blob is
    v1::DownloadResponse response;
    response.set_offset(request->offset());
    response.set_blob_size(blob_size);
    writer->Write(response);
  }
  return grpc::Status::OK;
}

grpc::Status ArtifactServiceImpl::SetBlobPinned(grpc::ServerContext*,
                                                const v1::SetBlobPinnedRequest* request,
                                                v1::Blob* response) {
  auto digest = ParseDigest(request->digest());
  if (!digest.ok()) return ToGrpcStatus(digest.status());
  return Reply(store_->SetBlobPinned(*digest, request->pinned(), ProjectField(request->project())),
               response);
}

grpc::Status ArtifactServiceImpl::CreateDataset(grpc::ServerContext*,
                                                const v1::CreateDatasetRequest* request,
                                                v1::Dataset* response) {
  return Reply(store_->CreateDataset(*request), response);
}

grpc::Status ArtifactServiceImpl::GetDataset(grpc::ServerContext*,
                                             const v1::GetDatasetRequest* request,
                                             v1::Dataset* response) {
  return Reply(store_->GetDataset(request->name()), response);
}

grpc::Status ArtifactServiceImpl::ListDatasets(grpc::ServerContext*,
                                               const v1::ListDatasetsRequest* request,
                                               v1::ListDatasetsResponse* response) {
  return Reply(store_->ListDatasets(*request), response);
}

grpc::Status ArtifactServiceImpl::CreateVersion(
    grpc::ServerContext* context, grpc::ServerReader<v1::CreateVersionRequest>* reader,
    v1::DatasetVersion* response) {
  v1::CreateVersionRequest request;
  v1::CreateVersionRequest::Header header;
  bool have_header = false;
  std::vector<v1::VersionEntry> entries;
  while (reader->Read(&request)) {
    if (request.has_header()) {
      if (have_header) {
        return ToGrpcStatus(absl::InvalidArgumentError("header: sent twice"));
      }
      header = request.header();
      have_header = true;
      if (absl::Status in = InStreamProject(context, "header.dataset", header.dataset());
          !in.ok()) {
        return ToGrpcStatus(in);
      }
    } else if (!have_header) {
      return ToGrpcStatus(absl::InvalidArgumentError("header: required in the first message"));
    }
    if (entries.size() + static_cast<size_t>(request.entries_size()) > kMaxVersionEntries) {
      return ToGrpcStatus(absl::InvalidArgumentError("entries: more than 2000000 in one version"));
    }
    for (auto& entry : *request.mutable_entries()) entries.push_back(std::move(entry));
  }
  // A message that did not parse ends the reads too: never store the entries before it.
  if (auto error = TakeParseError()) return ToGrpcStatus(absl::InvalidArgumentError(*error));
  if (!have_header) {
    return ToGrpcStatus(absl::InvalidArgumentError("header: required in the first message"));
  }
  return Reply(store_->CreateVersion(header, std::move(entries)), response);
}

grpc::Status ArtifactServiceImpl::GetVersion(grpc::ServerContext*,
                                             const v1::GetVersionRequest* request,
                                             v1::DatasetVersion* response) {
  return Reply(store_->GetVersion(request->dataset(), request->ref()), response);
}

grpc::Status ArtifactServiceImpl::ListVersions(grpc::ServerContext*,
                                               const v1::ListVersionsRequest* request,
                                               v1::ListVersionsResponse* response) {
  return Reply(store_->ListVersions(*request), response);
}

grpc::Status ArtifactServiceImpl::ListVersionEntries(grpc::ServerContext*,
                                                     const v1::ListVersionEntriesRequest* request,
                                                     v1::ListVersionEntriesResponse* response) {
  return Reply(store_->ListVersionEntries(*request), response);
}

grpc::Status ArtifactServiceImpl::DiffVersions(grpc::ServerContext*,
                                               const v1::DiffVersionsRequest* request,
                                               v1::DiffVersionsResponse* response) {
  return Reply(store_->DiffVersions(*request), response);
}

grpc::Status ArtifactServiceImpl::TagVersion(grpc::ServerContext*,
                                             const v1::TagVersionRequest* request,
                                             v1::DatasetVersion* response) {
  return Reply(store_->TagVersion(*request), response);
}

grpc::Status ArtifactServiceImpl::Scrub(grpc::ServerContext*, const v1::ScrubRequest* request,
                                        v1::ScrubResponse* response) {
  return Reply(store_->Scrub(request->repair()), response);
}

grpc::Status ArtifactServiceImpl::GarbageCollect(grpc::ServerContext*,
                                                 const v1::GarbageCollectRequest* request,
                                                 v1::GarbageCollectResponse* response) {
  return Reply(store_->GarbageCollect(*request), response);
}

}  // namespace mlops::artifact
