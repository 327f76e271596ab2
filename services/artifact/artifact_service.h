// gRPC adapter of the artifact service: checks request shape, calls ArtifactStore, maps statuses.
// Every RPC returns the codes documented on the ArtifactStore method it calls.
#pragma once

#include "mlops/artifact/v1/artifact.grpc.pb.h"
#include "services/artifact/artifact_store.h"

namespace mlops::artifact {

class ArtifactServiceImpl final : public v1::ArtifactService::Service {
 public:
  explicit ArtifactServiceImpl(ArtifactStore* store) : store_(store) {}

  grpc::Status StartUpload(grpc::ServerContext*, const v1::StartUploadRequest* request,
                           v1::UploadSession* response) override;
  grpc::Status FindMissingChunks(grpc::ServerContext*, const v1::FindMissingChunksRequest* request,
                                 v1::FindMissingChunksResponse* response) override;
  grpc::Status UploadChunks(grpc::ServerContext*,
                            grpc::ServerReader<v1::UploadChunksRequest>* reader,
                            v1::UploadChunksResponse* response) override;
  grpc::Status CommitBlobs(grpc::ServerContext*, const v1::CommitBlobsRequest* request,
                           v1::CommitBlobsResponse* response) override;
  grpc::Status FinishUpload(grpc::ServerContext*, const v1::FinishUploadRequest* request,
                            v1::FinishUploadResponse* response) override;
  grpc::Status FindMissingBlobs(grpc::ServerContext*, const v1::FindMissingBlobsRequest* request,
                                v1::FindMissingBlobsResponse* response) override;
  grpc::Status StatBlob(grpc::ServerContext*, const v1::StatBlobRequest* request,
                        v1::Blob* response) override;
  grpc::Status ListBlobs(grpc::ServerContext*, const v1::ListBlobsRequest* request,
                         v1::ListBlobsResponse* response) override;
  grpc::Status Download(grpc::ServerContext*, const v1::DownloadRequest* request,
                        grpc::ServerWriter<v1::DownloadResponse>* writer) override;
  grpc::Status SetBlobPinned(grpc::ServerContext*, const v1::SetBlobPinnedRequest* request,
                             v1::Blob* response) override;
  grpc::Status CreateDataset(grpc::ServerContext*, const v1::CreateDatasetRequest* request,
                             v1::Dataset* response) override;
  grpc::Status GetDataset(grpc::ServerContext*, const v1::GetDatasetRequest* request,
                          v1::Dataset* response) override;
  grpc::Status ListDatasets(grpc::ServerContext*, const v1::ListDatasetsRequest* request,
                            v1::ListDatasetsResponse* response) override;
  grpc::Status CreateVersion(grpc::ServerContext*,
                             grpc::ServerReader<v1::CreateVersionRequest>* reader,
                             v1::DatasetVersion* response) override;
  grpc::Status GetVersion(grpc::ServerContext*, const v1::GetVersionRequest* request,
                          v1::DatasetVersion* response) override;
  grpc::Status ListVersions(grpc::ServerContext*, const v1::ListVersionsRequest* request,
                            v1::ListVersionsResponse* response) override;
  grpc::Status ListVersionEntries(grpc::ServerContext*,
                                  const v1::ListVersionEntriesRequest* request,
                                  v1::ListVersionEntriesResponse* response) override;
  grpc::Status DiffVersions(grpc::ServerContext*, const v1::DiffVersionsRequest* request,
                            v1::DiffVersionsResponse* response) override;
  grpc::Status TagVersion(grpc::ServerContext*, const v1::TagVersionRequest* request,
                          v1::DatasetVersion* response) override;
  grpc::Status Scrub(grpc::ServerContext*, const v1::ScrubRequest* request,
                     v1::ScrubResponse* response) override;
  grpc::Status GarbageCollect(grpc::ServerContext*, const v1::GarbageCollectRequest* request,
                              v1::GarbageCollectResponse* response) override;

 private:
  ArtifactStore* store_;
};

}  // namespace mlops::artifact
