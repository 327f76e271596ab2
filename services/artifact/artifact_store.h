// The core of the artifact service: a content-addressed chunk store with blob manifests, upload
// sessions, datasets with immutable versions, scrub and garbage collection. Knows nothing of gRPC.
//
// Storage (one RocksDB under <dir>/db, chunk files under <dir>/chunks), column families:
//   chunks        digest -> flags, size, touch time        one record per stored chunk
//   chunk_data    digest -> bytes                          chunks up to 64 KiB, inline
//   blobs         digest -> StoredBlob                     manifests of committed blobs
//   sessions      id -> StoredSession
//   session_pins  id + digest -> ""                        chunks an open session sent or found,
//                                                          blobs it committed
//   chunk_pins    digest + id -> ""                        the same, by digest (GC checks it)
//   datasets      name -> StoredDataset
//   versions      ordered(name) + digest -> StoredVersion
//   version_requests  name + \0 + request id -> version digest   CreateVersion's idempotency keys
//   version_log   ordered(name) + ~sequence + digest -> "" newest first
//   manifests     version digest -> count of entries already written
//   entries       version digest + path -> StoredEntry     shared by every dataset with it
//   tags          ordered(name) + tag -> version digest
//   project_refs  kind ('c'/'b') + digest + project -> when the project first saw it (8 bytes)
//                                                          the projects that may see a chunk or
//                                                          blob (see Projects below)
//   damaged       digest -> kind ('c' corrupt, 'm' missing) + time found
//                 chunks whose stored bytes failed a check (scrub or a download); kept in memory
//                 too. A damaged chunk counts as missing for FindMissingChunks, and a blob with
//                 one as missing for FindMissingBlobs, so that uploading the content again
//                 replaces the bytes and clears the mark.
// Chunks larger than 64 KiB are files chunks/<2 hex>/<64 hex>, written to chunks/tmp, fdatasynced
// and renamed into place before their record is written, so a record always names complete bytes.
// Commits of blobs and versions fsync the write-ahead log before they return.
//
// Projects (docs/api.md, "Projects"): content is stored once, whichever projects upload it, but a
// project sees a chunk or blob only when it uploaded it (an upload session belongs to one project)
// or committed it from chunks it sees; FindMissingChunks/FindMissingBlobs answer, and StatBlob,
// ReadBlob and SetBlobPinned find, by that. A project that never uploaded X is told X is missing
// and sends it; storing it again costs the server nothing but the reference. Datasets are named
// within their project (`projects/P/name`), and a version may list only blobs its project sees.
// Format 2 of the database gave every chunk and blob stored before projects to project default.
//
// Garbage collection: roots are pinned blobs and every blob a dataset version lists. A blob or
// chunk is deleted only when it is unreachable, was not created or newly referenced within the
// grace period, and no open upload session has sent, found or committed it. Deletions re-check
// under an exclusive lock that every writer takes shared, so a collection never races an upload or
// a commit.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "mlops/artifact/internal/storage.pb.h"
#include "mlops/artifact/v1/artifact.pb.h"
#include "services/common/db.h"
#include "services/common/digest.h"
#include "services/common/projects.h"

namespace mlops::artifact {

// Bounds on requests (INVALID_ARGUMENT with the limit in the message).
inline constexpr size_t kMaxDigestsPerCall = 10000;
inline constexpr size_t kMaxBlobsPerCommit = 10000;
inline constexpr size_t kMaxChunkRefsPerCommit = 1000000;
inline constexpr int64_t kMaxChunkBytes = 32 << 20;
inline constexpr size_t kMaxVersionEntries = 2000000;
inline constexpr size_t kMaxMessageBytes = 64 << 10;
inline constexpr size_t kMaxTagsPerVersion = 32;
inline constexpr size_t kInlineChunkBytes = 64 << 10;

// Counters the service exports as Prometheus metrics.
struct ArtifactCounters {
  std::atomic<int64_t> chunks_stored{0};
  std::atomic<int64_t> bytes_stored{0};
  std::atomic<int64_t> chunks_deduplicated{0};  // sent but already present
  std::atomic<int64_t> chunks_rejected{0};      // bytes did not match the digest
  std::atomic<int64_t> blobs_committed{0};
  std::atomic<int64_t> bytes_downloaded{0};
  std::atomic<int64_t> scrub_runs{0};
  std::atomic<int64_t> scrub_corrupt_chunks{0};
  std::atomic<int64_t> scrub_missing_chunks{0};
  std::atomic<int64_t> gc_runs{0};
  std::atomic<int64_t> gc_chunks_deleted{0};
  std::atomic<int64_t> gc_bytes_freed{0};
};

struct StoreStats {
  int64_t chunks = 0;  // estimates from RocksDB
  int64_t blobs = 0;
  int64_t open_sessions = 0;
};

// Besides the codes each method names, every method returns DATA_LOSS for a stored record that
// does not parse (naming its column family and key) and the storage's own error when RocksDB or
// the chunk files fail (UNAVAILABLE; RESOURCE_EXHAUSTED when the disk is full).
class ArtifactStore {
 public:
  // Opens (creating) the store in `dir`. UNAVAILABLE when another process holds it.
  static absl::StatusOr<std::unique_ptr<ArtifactStore>> Open(const std::string& dir,
                                                             const Db::Options& options);
  ~ArtifactStore();

  // --- Upload sessions ---
  // INVALID_ARGUMENT for a negative ttl.
  // Sessions belong to `project`; the session id is `projects/P/<id>` outside project default, and
  // every method taking one answers NOT_FOUND for a session of another project.
  absl::StatusOr<v1::UploadSession> StartUpload(int64_t ttl_seconds,
                                                std::string_view project = kDefaultProject);
  // NOT_FOUND for an unknown or expired session. Releases the session's pins.
  absl::Status FinishUpload(std::string_view session_id);
  // Indices (into `digests`) of the chunks not stored, marked damaged or not seen by the
  // session's project; pins the others to the session.
  // NOT_FOUND (session), INVALID_ARGUMENT (more than 10,000 digests).
  absl::StatusOr<std::vector<int>> FindMissingChunks(std::string_view session_id,
                                                     const std::vector<RawDigest>& digests);
  struct ChunkInput {
    RawDigest digest;
    std::string_view data;
  };
  struct PutChunksResult {
    int64_t stored = 0;  // written now (the server's own count, for its metrics)
    int64_t bytes_stored = 0;
    int64_t already_present = 0;
    // New to the session's project (what the caller is told: whether another project held the
    // bytes must not show), and their bytes.
    int64_t new_to_project = 0;
    int64_t bytes_new_to_project = 0;
  };
  // Verifies every chunk's bytes against its digest, then stores the new ones, and those marked
  // damaged (clearing the mark), durably (files are fdatasynced) and pins all to the session. A
  // mismatching chunk is INVALID_ARGUMENT naming it and nothing of the call is stored; a chunk over
  // 32 MiB is INVALID_ARGUMENT; NOT_FOUND (session).
  absl::StatusOr<PutChunksResult> PutChunks(std::string_view session_id,
                                            const std::vector<ChunkInput>& chunks);
  // Makes blobs visible after checking that every chunk is stored with the stated size and that the
  // chunks, in order, hash to the blob digest and add up to its size. INVALID_ARGUMENT (malformed
  // digest, sizes that disagree, content that does not hash to the digest), FAILED_PRECONDITION
  // (a chunk is not stored, or damaged: upload it first), NOT_FOUND (session), INVALID_ARGUMENT
  // (bounds).
  // Committing a blob that exists is a no-op (it is touched, and pinned when `pin`).
  absl::StatusOr<std::vector<v1::Blob>> CommitBlobs(const v1::CommitBlobsRequest& request);

  // --- Blobs ---
  // Indices of the blobs not stored or with a damaged chunk. INVALID_ARGUMENT over 10,000.
  // Missing means missing to `project`: not stored or not seen by it.
  absl::StatusOr<std::vector<int>> FindMissingBlobs(const std::vector<RawDigest>& digests,
                                                    std::string_view project = kDefaultProject);
  // NOT_FOUND (also when `project` does not see it, worded the same).
  absl::StatusOr<v1::Blob> StatBlob(const RawDigest& digest, bool include_chunks = false,
                                    std::string_view project = kDefaultProject);
  // By digest. INVALID_ARGUMENT (page size, page token).
  absl::StatusOr<v1::ListBlobsResponse> ListBlobs(const v1::ListBlobsRequest& request);
  // NOT_FOUND (as StatBlob).
  absl::StatusOr<v1::Blob> SetBlobPinned(const RawDigest& digest, bool pinned,
                                         std::string_view project = kDefaultProject);
  // Calls sink(offset, bytes) for consecutive pieces (at most 1 MiB) of [offset, offset+length)
  // (length 0: to the end); sink returns false to stop. Sets *blob_size first. Each chunk is read
  // whole and checked against its digest before any of it is passed on. NOT_FOUND (blob),
  // OUT_OF_RANGE (offset beyond the end), INVALID_ARGUMENT (negative length), DATA_LOSS naming
  // the chunk when its bytes are gone or corrupt (the chunk is then marked damaged).
  absl::Status ReadBlob(const RawDigest& digest, int64_t offset, int64_t length, int64_t* blob_size,
                        absl::FunctionRef<bool(int64_t, std::string_view)> sink,
                        std::string_view project = kDefaultProject);

  // --- Datasets ---
  // ALREADY_EXISTS, INVALID_ARGUMENT (name, description over 64 KiB).
  absl::StatusOr<v1::Dataset> CreateDataset(const v1::CreateDatasetRequest& request);
  // NOT_FOUND.
  absl::StatusOr<v1::Dataset> GetDataset(std::string_view name);
  // By name. INVALID_ARGUMENT (page size, page token).
  absl::StatusOr<v1::ListDatasetsResponse> ListDatasets(const v1::ListDatasetsRequest& request);
  // Stores a version (or finds the existing one with the same digest, already_existed=true) and
  // moves its tags and "latest" to it. NOT_FOUND (dataset, unless header.create_dataset; parent),
  // INVALID_ARGUMENT (paths, duplicate paths, malformed digests, expected_digest mismatch, tags),
  // FAILED_PRECONDITION (an entry's blob is not stored, or its size differs from the blob's),
  // INVALID_ARGUMENT (over 2,000,000 entries or 32 tags).
  absl::StatusOr<v1::DatasetVersion> CreateVersion(const v1::CreateVersionRequest::Header& header,
                                                   std::vector<v1::VersionEntry> entries);
  // `ref`: a tag, a digest, or a unique digest prefix of at least 8 hex characters; empty means
  // "latest". NOT_FOUND, INVALID_ARGUMENT (ambiguous prefix).
  absl::StatusOr<v1::DatasetVersion> GetVersion(std::string_view dataset, std::string_view ref);
  // Newest first. NOT_FOUND (dataset); INVALID_ARGUMENT (page size, page token).
  absl::StatusOr<v1::ListVersionsResponse> ListVersions(const v1::ListVersionsRequest& request);
  // By path, optionally under a prefix. NOT_FOUND (dataset, version); INVALID_ARGUMENT (ref, page
  // size, page token).
  absl::StatusOr<v1::ListVersionEntriesResponse> ListVersionEntries(
      const v1::ListVersionEntriesRequest& request);
  // Added, removed and changed paths from `from` to `to`. NOT_FOUND and INVALID_ARGUMENT as
  // GetVersion for either ref.
  absl::StatusOr<v1::DiffVersionsResponse> DiffVersions(const v1::DiffVersionsRequest& request);
  // Moves (or removes) a tag. INVALID_ARGUMENT (tag name; "latest" cannot be removed), NOT_FOUND.
  absl::StatusOr<v1::DatasetVersion> TagVersion(const v1::TagVersionRequest& request);

  // --- Maintenance ---
  // Reads every chunk and checks its bytes against its digest; marks the bad ones damaged (see
  // above) and lists them, and the blobs they make unreadable. With `repair`, deletes the bytes
  // of corrupt chunks (the marks stay: later scrubs report them as missing until healed). A chunk
  // marked damaged that reads correctly again loses its mark.
  absl::StatusOr<v1::ScrubResponse> Scrub(bool repair);
  // Deletes chunks no blob, session or pinned blob uses and that are older than the grace period
  // (dry_run: only counts them). INVALID_ARGUMENT for a negative grace period.
  absl::StatusOr<v1::GarbageCollectResponse> GarbageCollect(
      const v1::GarbageCollectRequest& request);

  const ArtifactCounters& counters() const { return counters_; }
  // Chunks marked damaged now.
  int64_t DamagedChunks() const;
  StoreStats Stats() const;
  Db& db() { return *db_; }
  const std::string& dir() const { return dir_; }
  // Where a file-stored chunk lives (tests corrupt it).
  std::string ChunkPath(const RawDigest& digest) const;

 private:
  struct ChunkRecord {
    bool inline_data = false;
    int64_t size = 0;
    int64_t touch_ms = 0;
  };

  ArtifactStore(std::string dir, std::unique_ptr<Db> db);
  // An open session found by the id a request gave (`projects/P/<id>` or a bare id): its key (the
  // bare id), record and project.
  struct OpenSession {
    std::string id;
    internal::StoredSession record;
    std::string project;
  };
  // The session, its expiry pushed back in `batch`; NOT_FOUND when unknown, expired or of another
  // project than its id names.
  absl::StatusOr<OpenSession> TouchSession(std::string_view session_id, rocksdb::WriteBatch* batch);
  // Whether `project` sees the chunk or blob (kind kChunkRef or kBlobRef).
  absl::StatusOr<bool> Sees(char kind, const RawDigest& digest, std::string_view project) const;
  // Sees for many at once (one MultiGet).
  absl::StatusOr<std::vector<bool>> SeesAll(char kind, const std::vector<RawDigest>& digests,
                                            std::string_view project) const;
  // Lets `project` see the chunk or blob, since `now_ms` (what it is told of the blob's creation:
  // when another project stored it first must not show).
  void AddRef(rocksdb::WriteBatch* batch, char kind, const RawDigest& digest,
              std::string_view project, int64_t now_ms);
  // Deletes every project's reference to the chunk or blob (it is being deleted).
  void DropRefs(rocksdb::WriteBatch* batch, char kind, std::string_view raw_digest);
  // True when an open upload session sent, found or committed this chunk or blob digest.
  absl::StatusOr<bool> PinnedBySession(std::string_view raw_digest) const;
  absl::StatusOr<std::optional<ChunkRecord>> GetChunk(const RawDigest& digest) const;
  bool IsDamaged(std::string_view raw_digest) const;
  // Records that a chunk's bytes failed a check (counted once per chunk until healed).
  absl::Status MarkDamaged(const RawDigest& digest, bool missing);
  // Drops the in-memory marks of chunks whose `damaged` records a written batch deleted.
  void ForgetDamaged(const std::vector<std::string>& raw_digests);
  // FAILED_PRECONDITION naming the first damaged chunk of the blob.
  absl::Status CheckNotDamaged(const RawDigest& digest, const internal::StoredBlob& blob) const;
  // Reads a whole chunk; DATA_LOSS when its bytes are gone.
  absl::StatusOr<std::string> ReadChunk(const RawDigest& digest, const ChunkRecord& record,
                                        int64_t offset, int64_t length) const;
  absl::StatusOr<std::optional<internal::StoredBlob>> GetBlob(const RawDigest& digest) const;
  // The blob when `project` sees it, else none; `*since` (when given) is set to when the project
  // first saw it.
  absl::StatusOr<std::optional<internal::StoredBlob>> GetBlobIn(const RawDigest& digest,
                                                                std::string_view project,
                                                                int64_t* since = nullptr) const;
  // A chunk file written to chunks/tmp, not yet synced or renamed into place.
  struct PendingFile {
    std::string path;
    std::string tmp;
    int fd = -1;
  };
  absl::StatusOr<PendingFile> StartChunkFile(const RawDigest& digest, std::string_view data);
  // fdatasync, then rename into place.
  absl::Status FinishChunkFile(PendingFile& file);
  void AbandonChunkFile(PendingFile& file);
  absl::StatusOr<v1::DatasetVersion> LoadVersion(std::string_view dataset,
                                                 const RawDigest& digest) const;
  absl::StatusOr<RawDigest> ResolveRef(std::string_view dataset, std::string_view ref) const;
  absl::StatusOr<std::vector<std::string>> TagsOf(std::string_view dataset,
                                                  const RawDigest& digest) const;
  absl::Status ScanEntries(
      const RawDigest& version, std::string_view prefix, std::string_view after,
      absl::FunctionRef<bool(std::string_view, const v1::VersionEntry&)> fn) const;

  std::string dir_;
  std::unique_ptr<Db> db_;
  rocksdb::ColumnFamilyHandle* chunks_;
  rocksdb::ColumnFamilyHandle* chunk_data_;
  rocksdb::ColumnFamilyHandle* blobs_;
  rocksdb::ColumnFamilyHandle* sessions_;
  rocksdb::ColumnFamilyHandle* session_pins_;
  rocksdb::ColumnFamilyHandle* chunk_pins_;
  rocksdb::ColumnFamilyHandle* datasets_;
  rocksdb::ColumnFamilyHandle* versions_;
  rocksdb::ColumnFamilyHandle* version_requests_;
  rocksdb::ColumnFamilyHandle* version_log_;
  rocksdb::ColumnFamilyHandle* manifests_;
  rocksdb::ColumnFamilyHandle* entries_;
  rocksdb::ColumnFamilyHandle* tags_;
  rocksdb::ColumnFamilyHandle* damaged_;
  rocksdb::ColumnFamilyHandle* project_refs_;

  mutable std::mutex damaged_mu_;
  absl::flat_hash_set<std::string> damaged_set_;  // raw digests, guarded by damaged_mu_
  std::atomic<int64_t> damaged_count_{0};         // its size, read without the lock

  // Writers hold it shared; garbage collection deletes under it exclusively.
  mutable std::shared_mutex gc_mu_;
  // Serialises read-modify-write of dataset records and tags.
  std::mutex dataset_mu_;
  std::mutex gc_run_mu_;  // one collection at a time
  ArtifactCounters counters_;
};

}  // namespace mlops::artifact
