// The artifact client used by the CLI, the benchmarks and the other services: chunks and hashes
// locally, sends only what the server lacks, resumes after a dropped connection, verifies every
// download against its digest and writes files atomically (temporary name, then rename).
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mlops/artifact/v1/artifact.grpc.pb.h"
#include "services/artifact/chunker.h"
#include "services/artifact/client/hash_cache.h"
#include "services/common/digest.h"

namespace mlops::artifact {

// A file's content split into chunks.
struct FileChunks {
  RawDigest digest{};
  int64_t size = 0;
  struct Chunk {
    RawDigest digest;
    int64_t offset;
    int64_t size;
  };
  std::vector<Chunk> chunks;
};

// Chunks and hashes `size` bytes at `data` (the chunk hashes and the whole-content hash run on two
// threads when the content is large).
FileChunks ChunkBytes(const uint8_t* data, size_t size, const ChunkerParams& params);

struct TransferStats {
  int64_t files = 0;
  int64_t files_hashed = 0;  // the others' digests came from the hash cache
  int64_t blobs_uploaded = 0;
  int64_t bytes_total = 0;  // content bytes of every file involved
  int64_t chunks_total = 0;
  int64_t chunks_sent = 0;
  int64_t bytes_sent = 0;  // chunk bytes actually sent (or received, for downloads)
  int64_t retries = 0;
};

struct ClientOptions {
  ChunkerParams chunker;
  size_t message_bytes = 4 << 20;  // chunk data per UploadChunks message
  int max_attempts = 5;            // per transfer step, on UNAVAILABLE / connection loss
  // Called with (bytes done, bytes total) as transfers progress.
  std::function<void(int64_t, int64_t)> progress;
  // Make downloads durable: fdatasync a downloaded file before renaming it into place (Pull
  // instead syncs the file system once when every file is written).
  bool sync_downloads = true;
};

struct PushOptions {
  // Inside a pushed directory, follow symbolic links (to files and directories; a link to a
  // directory above it, a loop, is skipped and counted). Off: links are skipped and counted. A link
  // named as the source itself is always followed.
  bool follow_symlinks = false;
  // CreateVersion's idempotency key (empty: none): pushing again under it adds no version.
  std::string request_id;
};

struct PushResult {
  v1::DatasetVersion version;
  bool unchanged = false;  // the content already was a version: nothing uploaded
  TransferStats stats;
  int64_t symlinks_skipped = 0;  // not followed (or dangling, or a loop)
  int64_t special_skipped = 0;   // fifos, sockets, devices
  int64_t empty_dirs = 0;        // a version lists files only: empty directories are not kept
};

struct PullOptions {
  // Re-hash every file already in the target instead of trusting the hash cache for files whose
  // size, mtime and inode are unchanged since they were last hashed or written.
  bool verify = false;
};

struct PullResult {
  v1::DatasetVersion version;
  int64_t files_written = 0;          // downloaded, each verified against its digest
  int64_t files_already_present = 0;  // already in the target with the right content
  int64_t files_trusted = 0;          // of those, known from the hash cache (not re-hashed)
  TransferStats stats;
};

class ArtifactClient {
 public:
  ArtifactClient(std::shared_ptr<grpc::Channel> channel, ClientOptions options = {});

  // Uploads one file (or bytes) as a blob; pinned blobs survive garbage collection without a
  // dataset version naming them. A symbolic link is followed; INVALID_ARGUMENT for a directory,
  // a fifo or a device.
  absl::StatusOr<v1::Blob> UploadFile(const std::string& path, bool pin, TransferStats* stats);
  absl::StatusOr<v1::Blob> UploadBytes(std::string_view data, bool pin, TransferStats* stats);

  // Downloads a blob to `path` (written as a temporary file, verified against the digest, then
  // renamed). DATA_LOSS when the bytes received do not hash to the digest.
  absl::Status DownloadToFile(const std::string& digest, const std::string& path,
                              TransferStats* stats);
  absl::StatusOr<std::string> DownloadBytes(const std::string& digest);

  // Pushes a directory (every regular file under it) or a single file (a symbolic link to one is
  // followed) as a new version of `dataset` (created when missing); file modes are kept as their
  // permission bits (0777). Unchanged content uploads nothing, except blobs the server reports
  // damaged, which are sent again. INVALID_ARGUMENT when the source is neither a directory nor a
  // regular file; NOT_FOUND / PERMISSION_DENIED / FAILED_PRECONDITION for local file errors.
  absl::StatusOr<PushResult> Push(const std::string& source, const std::string& dataset,
                                  const std::vector<std::string>& tags, const std::string& message,
                                  HashCache* cache, const PushOptions& push_options = {});
  // Writes every file of dataset@ref under `dest`, skipping files already there with the right
  // digest (re-hashed, or trusted from the hash cache unless `verify`), verifying every download.
  // Never follows a symbolic link inside `dest` (FAILED_PRECONDITION when a directory of the
  // version is a link there); files get the version's permission bits less the umask; runs of
  // zeros are left as holes.
  absl::StatusOr<PullResult> Pull(const std::string& dataset, const std::string& ref,
                                  const std::string& dest, HashCache* cache,
                                  const PullOptions& pull_options = {});

  v1::ArtifactService::Stub& stub() { return *stub_; }

 private:
  struct LocalFile {
    std::string path;      // absolute path on disk
    std::string rel_path;  // path inside the version
    int64_t size = 0;
    uint32_t mode = 0644;
    RawDigest digest{};
    FileIdentity identity;
    std::shared_ptr<const FileChunks> chunks;  // when already computed
  };
  // Downloads a blob into `name` under the directory `dirfd` through a temporary file renamed
  // into place (never following a link at `name`), created with `mode` less the umask.
  absl::Status DownloadAt(int dirfd, const std::string& name, const std::string& display,
                          const std::string& digest, uint32_t mode, TransferStats* stats);
  // Uploads whichever of `files` the server lacks (their digests are known) in one session.
  absl::Status UploadFiles(const std::vector<LocalFile>& files, bool pin, TransferStats* stats);

  std::unique_ptr<v1::ArtifactService::Stub> stub_;
  ClientOptions options_;
  bool in_pull_ = false;  // Pull syncs the file system once at the end
  int64_t progress_done_ = 0;
  int64_t progress_total_ = 0;
};

// Splits "NAME@REF" (REF optional) into its parts.
void SplitDatasetRef(const std::string& spec, std::string* dataset, std::string* ref);

}  // namespace mlops::artifact
