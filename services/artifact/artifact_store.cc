#include "services/artifact/artifact_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "services/artifact/manifest.h"
#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/page_token.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::artifact {
namespace {

constexpr char kChunksCf[] = "chunks";
constexpr char kChunkDataCf[] = "chunk_data";
constexpr char kBlobsCf[] = "blobs";
constexpr char kSessionsCf[] = "sessions";
constexpr char kSessionPinsCf[] = "session_pins";
constexpr char kChunkPinsCf[] = "chunk_pins";
constexpr char kDatasetsCf[] = "datasets";
constexpr char kVersionsCf[] = "versions";
constexpr char kVersionRequestsCf[] = "version_requests";  // dataset \0 request id -> digest
constexpr char kVersionLogCf[] = "version_log";
constexpr char kManifestsCf[] = "manifests";
constexpr char kEntriesCf[] = "entries";
constexpr char kTagsCf[] = "tags";
constexpr char kDamagedCf[] = "damaged";

constexpr int64_t kDefaultSessionTtlMs = 24LL * 3600 * 1000;
constexpr int64_t kDefaultGraceMs = 3600LL * 1000;
constexpr int64_t kReadPieceBytes = 1 << 20;
constexpr char kLatestTag[] = "latest";
constexpr size_t kMaxReportedDigests = 1000;

std::string ErrnoMessage(std::string_view what, const std::string& path) {
  return StrCat(what, " ", path, ": ", std::strerror(errno));
}

absl::Status ErrnoStatus(std::string_view what, const std::string& path) {
  if (errno == ENOSPC || errno == EDQUOT) {
    return absl::ResourceExhaustedError(ErrnoMessage(what, path));
  }
  return absl::UnavailableError(ErrnoMessage(what, path));
}

std::string EncodeChunkRecord(bool inline_data, int64_t size, int64_t touch_ms) {
  std::string out(1, inline_data ? '\x01' : '\x00');
  AppendBigEndian64(&out, static_cast<uint64_t>(size));
  AppendBigEndian64(&out, static_cast<uint64_t>(touch_ms));
  return out;
}

std::string DatasetPrefix(std::string_view dataset) {
  std::string out;
  AppendOrderedString(&out, dataset);
  return out;
}

std::string VersionKey(std::string_view dataset, const RawDigest& digest) {
  return StrCat(DatasetPrefix(dataset), DigestBytes(digest));
}

// Newest first: the complement of the version's sequence number in its dataset.
std::string VersionLogKey(std::string_view dataset, int64_t sequence, const RawDigest& digest) {
  std::string out = DatasetPrefix(dataset);
  AppendBigEndian64(&out, ~static_cast<uint64_t>(sequence));
  out.append(DigestBytes(digest));
  return out;
}

std::string EntryKey(const RawDigest& version, std::string_view path) {
  return StrCat(DigestBytes(version), path);
}

std::string TagKey(std::string_view dataset, std::string_view tag) {
  return StrCat(DatasetPrefix(dataset), tag);
}

absl::StatusOr<RawDigest> ParseDigestField(std::string_view field, std::string_view hex) {
  RawDigest digest;
  if (!ParseDigestHex(hex, &digest)) {
    return absl::InvalidArgumentError(
        StrCat(field, " \"", hex.substr(0, 100), "\": not a SHA-256 digest (64 hex characters)"));
  }
  return digest;
}

bool IsHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
}

absl::Status ValidateTag(std::string_view tag) {
  RETURN_IF_ERROR(ValidateName(NameKind::kIdentifier, "tag", tag));
  if (tag.size() == 64 && IsHex(tag)) {
    return absl::InvalidArgumentError(StrCat("tag \"", tag, "\": looks like a digest"));
  }
  return absl::OkStatus();
}

absl::Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoStatus("fsync", path);
  return absl::OkStatus();
}

// An entry record (key: version digest + path) as the API's VersionEntry; DATA_LOSS when the record
// does not parse.
absl::StatusOr<v1::VersionEntry> EntryFromStored(const Db& db, rocksdb::ColumnFamilyHandle* cf,
                                                 std::string_view key, std::string_view value) {
  internal::StoredEntry stored;
  RETURN_IF_ERROR(db.ParseRecord(cf, key, value, &stored));
  std::string_view path = key.substr(32);
  v1::VersionEntry entry;
  entry.set_path(std::string(path));
  entry.set_digest(DigestHex(DigestFromBytes(stored.digest())));
  entry.set_size(stored.size());
  entry.set_mode(stored.mode());
  return entry;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ArtifactStore>> ArtifactStore::Open(const std::string& dir,
                                                                   const Db::Options& options) {
  std::error_code ec;
  std::filesystem::create_directories(dir + "/chunks/tmp", ec);
  if (ec) return absl::UnavailableError(StrCat("create ", dir, "/chunks: ", ec.message()));
  // On-disk formats: 1 (issue 15) records the format; version_requests came with it.
  Db::Options versioned = Versioned(options, 1, {RecordFormatMigration()});
  ASSIGN_OR_RETURN(auto db,
                   Db::Open(dir + "/db",
                            {kChunksCf, kChunkDataCf, kBlobsCf, kSessionsCf, kSessionPinsCf,
                             kChunkPinsCf, kDatasetsCf, kVersionsCf, kVersionLogCf, kManifestsCf,
                             kEntriesCf, kTagsCf, kDamagedCf, kVersionRequestsCf},
                            versioned));
  auto store = std::unique_ptr<ArtifactStore>(new ArtifactStore(dir, std::move(db)));
  RETURN_IF_ERROR(
      store->db_->ScanPrefix(store->damaged_, "", {}, [&](std::string_view key, std::string_view) {
        store->damaged_set_.emplace(key);
        return true;
      }));
  store->damaged_count_.store(static_cast<int64_t>(store->damaged_set_.size()));
  return store;
}

ArtifactStore::ArtifactStore(std::string dir, std::unique_ptr<Db> db)
    : dir_(std::move(dir)),
      db_(std::move(db)),
      chunks_(db_->Cf(kChunksCf)),
      chunk_data_(db_->Cf(kChunkDataCf)),
      blobs_(db_->Cf(kBlobsCf)),
      sessions_(db_->Cf(kSessionsCf)),
      session_pins_(db_->Cf(kSessionPinsCf)),
      chunk_pins_(db_->Cf(kChunkPinsCf)),
      datasets_(db_->Cf(kDatasetsCf)),
      versions_(db_->Cf(kVersionsCf)),
      version_requests_(db_->Cf(kVersionRequestsCf)),
      version_log_(db_->Cf(kVersionLogCf)),
      manifests_(db_->Cf(kManifestsCf)),
      entries_(db_->Cf(kEntriesCf)),
      tags_(db_->Cf(kTagsCf)),
      damaged_(db_->Cf(kDamagedCf)) {}

ArtifactStore::~ArtifactStore() = default;

std::string ArtifactStore::ChunkPath(const RawDigest& digest) const {
  std::string hex = DigestHex(digest);
  return StrCat(dir_, "/chunks/", std::string_view(hex).substr(0, 2), "/", hex);
}

StoreStats ArtifactStore::Stats() const {
  StoreStats stats;
  uint64_t value = 0;
  db_->raw()->GetIntProperty(chunks_, "rocksdb.estimate-num-keys", &value);
  stats.chunks = static_cast<int64_t>(value);
  db_->raw()->GetIntProperty(blobs_, "rocksdb.estimate-num-keys", &value);
  stats.blobs = static_cast<int64_t>(value);
  db_->raw()->GetIntProperty(sessions_, "rocksdb.estimate-num-keys", &value);
  stats.open_sessions = static_cast<int64_t>(value);
  return stats;
}

// ---------------------------------------------------------------------------------------------
// Sessions and chunks

absl::StatusOr<v1::UploadSession> ArtifactStore::StartUpload(int64_t ttl_seconds) {
  if (ttl_seconds < 0) {
    return absl::InvalidArgumentError(
        StrCat("ttl_seconds ", std::to_string(ttl_seconds), ": must not be negative"));
  }
  internal::StoredSession session;
  session.set_create_time_ms(NowMs());
  session.set_ttl_ms(ttl_seconds == 0 ? kDefaultSessionTtlMs : ttl_seconds * 1000);
  session.set_expire_time_ms(session.create_time_ms() + session.ttl_ms());
  std::string id = NewId();
  rocksdb::WriteBatch batch;
  batch.Put(sessions_, id, session.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  v1::UploadSession out;
  out.set_id(id);
  out.set_create_time_ms(session.create_time_ms());
  out.set_expire_time_ms(session.expire_time_ms());
  return out;
}

absl::StatusOr<internal::StoredSession> ArtifactStore::TouchSession(std::string_view session_id,
                                                                    rocksdb::WriteBatch* batch) {
  if (session_id.empty()) return absl::InvalidArgumentError("session_id: required");
  ASSIGN_OR_RETURN(auto value, db_->GetProto<internal::StoredSession>(sessions_, session_id));
  if (!value) {
    return absl::NotFoundError(StrCat("upload session ", session_id.substr(0, 64), " not found"));
  }
  internal::StoredSession session = *std::move(value);
  int64_t now = NowMs();
  if (session.expire_time_ms() < now) {
    return absl::NotFoundError(StrCat("upload session ", session_id, " expired"));
  }
  session.set_expire_time_ms(now + session.ttl_ms());
  batch->Put(sessions_, session_id, session.SerializeAsString());
  return session;
}

absl::Status ArtifactStore::FinishUpload(std::string_view session_id) {
  std::shared_lock lock(gc_mu_);
  rocksdb::WriteBatch batch;
  RETURN_IF_ERROR(TouchSession(session_id, &batch).status());
  batch.Clear();
  batch.Delete(sessions_, session_id);
  RETURN_IF_ERROR(
      db_->ScanPrefix(session_pins_, session_id, {}, [&](std::string_view key, std::string_view) {
        batch.Delete(session_pins_, key);
        std::string_view digest = key.substr(session_id.size());
        batch.Delete(chunk_pins_, StrCat(digest, session_id));
        return true;
      }));
  return db_->Write(&batch);
}

absl::StatusOr<std::optional<ArtifactStore::ChunkRecord>> ArtifactStore::GetChunk(
    const RawDigest& digest) const {
  ASSIGN_OR_RETURN(auto value, db_->Get(chunks_, DigestBytes(digest)));
  if (!value) return std::nullopt;
  if (value->size() != 17) {
    return absl::DataLossError(StrCat("chunk record ", DigestHex(digest), ": malformed"));
  }
  ChunkRecord record;
  record.inline_data = (*value)[0] == '\x01';
  record.size = static_cast<int64_t>(ReadBigEndian64(std::string_view(*value).substr(1, 8)));
  record.touch_ms = static_cast<int64_t>(ReadBigEndian64(std::string_view(*value).substr(9, 8)));
  return record;
}

absl::StatusOr<std::vector<int>> ArtifactStore::FindMissingChunks(
    std::string_view session_id, const std::vector<RawDigest>& digests) {
  if (digests.size() > kMaxDigestsPerCall) {
    return absl::InvalidArgumentError(
        StrCat("digests: ", std::to_string(digests.size()), " given, at most 10000 per call"));
  }
  std::shared_lock lock(gc_mu_);
  rocksdb::WriteBatch batch;
  RETURN_IF_ERROR(TouchSession(session_id, &batch).status());
  std::vector<int> missing;
  for (size_t i = 0; i < digests.size(); ++i) {
    ASSIGN_OR_RETURN(auto record, GetChunk(digests[i]));
    if (!record || IsDamaged(DigestBytes(digests[i]))) {
      missing.push_back(static_cast<int>(i));
      continue;
    }
    batch.Put(session_pins_, StrCat(session_id, DigestBytes(digests[i])), "");
    batch.Put(chunk_pins_, StrCat(DigestBytes(digests[i]), session_id), "");
  }
  RETURN_IF_ERROR(db_->Write(&batch));
  return missing;
}

absl::StatusOr<ArtifactStore::PendingFile> ArtifactStore::StartChunkFile(const RawDigest& digest,
                                                                         std::string_view data) {
  PendingFile file;
  file.path = ChunkPath(digest);
  file.tmp = StrCat(dir_, "/chunks/tmp/", NewId());
  file.fd = ::open(file.tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (file.fd < 0) return ErrnoStatus("create", file.tmp);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(file.fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status status = ErrnoStatus("write", file.tmp);
      AbandonChunkFile(file);
      return status;
    }
    done += static_cast<size_t>(n);
  }
  // Start writeback now so that it overlaps with the next chunks' writes and hashes.
  ::sync_file_range(file.fd, 0, 0, SYNC_FILE_RANGE_WRITE);
  return file;
}

void ArtifactStore::AbandonChunkFile(PendingFile& file) {
  if (file.fd >= 0) ::close(file.fd);
  file.fd = -1;
  ::unlink(file.tmp.c_str());
}

absl::Status ArtifactStore::FinishChunkFile(PendingFile& file) {
  if (::fdatasync(file.fd) != 0) {
    absl::Status status = ErrnoStatus("fdatasync", file.tmp);
    AbandonChunkFile(file);
    return status;
  }
  ::close(file.fd);
  file.fd = -1;
  std::string parent = file.path.substr(0, file.path.rfind('/'));
  if (::rename(file.tmp.c_str(), file.path.c_str()) != 0) {
    if (errno != ENOENT || ::mkdir(parent.c_str(), 0755) != 0 ||
        ::rename(file.tmp.c_str(), file.path.c_str()) != 0) {
      absl::Status status = ErrnoStatus("rename", file.path);
      ::unlink(file.tmp.c_str());
      return status;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ArtifactStore::PutChunksResult> ArtifactStore::PutChunks(
    std::string_view session_id, const std::vector<ChunkInput>& chunks) {
  for (const ChunkInput& chunk : chunks) {
    if (static_cast<int64_t>(chunk.data.size()) > kMaxChunkBytes) {
      return absl::InvalidArgumentError(StrCat("chunk ", DigestHex(chunk.digest), ": ",
                                               std::to_string(chunk.data.size()),
                                               " bytes, at most 33554432 per chunk"));
    }
    if (Sha256Of(chunk.data) != chunk.digest) {
      counters_.chunks_rejected.fetch_add(1);
      return absl::InvalidArgumentError(
          StrCat("chunk ", DigestHex(chunk.digest), ": its ", std::to_string(chunk.data.size()),
                 " bytes hash to ", DigestHex(Sha256Of(chunk.data)), "; nothing was stored"));
    }
  }
  std::shared_lock lock(gc_mu_);
  rocksdb::WriteBatch batch;
  RETURN_IF_ERROR(TouchSession(session_id, &batch).status());
  PutChunksResult result;
  int64_t now = NowMs();
  std::set<std::string> synced_dirs;
  std::vector<PendingFile> pending;
  absl::flat_hash_set<std::string> new_in_call;
  std::vector<std::string> healed;
  for (const ChunkInput& chunk : chunks) {
    std::string_view key = DigestBytes(chunk.digest);
    batch.Put(session_pins_, StrCat(session_id, key), "");
    batch.Put(chunk_pins_, StrCat(key, session_id), "");
    ASSIGN_OR_RETURN(auto existing, GetChunk(chunk.digest));
    bool heal = IsDamaged(key);
    if ((existing && !heal) || !new_in_call.insert(std::string(key)).second) {
      ++result.already_present;
      continue;
    }
    if (heal) {
      // The stored bytes were found damaged: these verified bytes replace them.
      batch.Delete(damaged_, key);
      healed.emplace_back(key);
    }
    bool inline_data = chunk.data.size() <= kInlineChunkBytes;
    if (inline_data) {
      batch.Put(chunk_data_, key, rocksdb::Slice(chunk.data.data(), chunk.data.size()));
    } else {
      auto file = StartChunkFile(chunk.digest, chunk.data);
      if (!file.ok()) {
        for (PendingFile& p : pending) AbandonChunkFile(p);
        return file.status();
      }
      pending.push_back(std::move(*file));
      std::string path = ChunkPath(chunk.digest);
      synced_dirs.insert(path.substr(0, path.rfind('/')));
    }
    batch.Put(chunks_, key,
              EncodeChunkRecord(inline_data, static_cast<int64_t>(chunk.data.size()), now));
    ++result.stored;
    result.bytes_stored += static_cast<int64_t>(chunk.data.size());
  }
  // Bytes, then renames, must be durable before a record names them.
  for (size_t i = 0; i < pending.size(); ++i) {
    absl::Status status = FinishChunkFile(pending[i]);
    if (!status.ok()) {
      for (size_t j = i + 1; j < pending.size(); ++j) AbandonChunkFile(pending[j]);
      return status;
    }
  }
  for (const std::string& dir : synced_dirs) RETURN_IF_ERROR(FsyncPath(dir));
  RETURN_IF_ERROR(db_->Write(&batch));
  if (!healed.empty()) ForgetDamaged(healed);
  counters_.chunks_stored.fetch_add(result.stored);
  counters_.bytes_stored.fetch_add(result.bytes_stored);
  counters_.chunks_deduplicated.fetch_add(result.already_present);
  return result;
}

absl::StatusOr<std::string> ArtifactStore::ReadChunk(const RawDigest& digest,
                                                     const ChunkRecord& record, int64_t offset,
                                                     int64_t length) const {
  if (record.inline_data) {
    ASSIGN_OR_RETURN(auto value, db_->Get(chunk_data_, DigestBytes(digest)));
    if (!value || static_cast<int64_t>(value->size()) != record.size) {
      return absl::DataLossError(StrCat("chunk ", DigestHex(digest), ": bytes missing"));
    }
    return value->substr(static_cast<size_t>(offset), static_cast<size_t>(length));
  }
  std::string path = ChunkPath(digest);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::DataLossError(StrCat("chunk ", DigestHex(digest), ": file missing"));
    }
    return ErrnoStatus("open", path);
  }
  std::string out(static_cast<size_t>(length), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done,
                        static_cast<off_t>(offset + static_cast<int64_t>(done)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      if (n == 0) return absl::DataLossError(StrCat("chunk ", DigestHex(digest), ": truncated"));
      return ErrnoStatus("read", path);
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Blobs

absl::StatusOr<std::optional<internal::StoredBlob>> ArtifactStore::GetBlob(
    const RawDigest& digest) const {
  return db_->GetProto<internal::StoredBlob>(blobs_, DigestBytes(digest));
}

namespace {
v1::Blob BlobFromStored(const RawDigest& digest, const internal::StoredBlob& stored) {
  v1::Blob blob;
  blob.set_digest(DigestHex(digest));
  blob.set_size(stored.size());
  blob.set_chunk_count(stored.chunk_sizes_size());
  blob.set_create_time_ms(stored.create_time_ms());
  blob.set_pinned(stored.pinned());
  return blob;
}
}  // namespace

absl::StatusOr<std::vector<v1::Blob>> ArtifactStore::CommitBlobs(
    const v1::CommitBlobsRequest& request) {
  if (static_cast<size_t>(request.blobs_size()) > kMaxBlobsPerCommit) {
    return absl::InvalidArgumentError(
        StrCat("blobs: ", std::to_string(request.blobs_size()), " given, at most 10000 per call"));
  }
  size_t refs = 0;
  for (const auto& blob : request.blobs()) refs += static_cast<size_t>(blob.chunks_size());
  if (refs > kMaxChunkRefsPerCommit) {
    return absl::InvalidArgumentError(
        StrCat("blobs: ", std::to_string(refs), " chunk references, at most 1000000 per call"));
  }
  // Parse and check shapes before touching storage.
  struct Parsed {
    RawDigest digest;
    std::vector<RawDigest> chunks;
  };
  std::vector<Parsed> parsed(static_cast<size_t>(request.blobs_size()));
  for (int i = 0; i < request.blobs_size(); ++i) {
    const v1::BlobManifest& blob = request.blobs(i);
    std::string field = StrCat("blobs[", std::to_string(i), "]");
    ASSIGN_OR_RETURN(parsed[i].digest, ParseDigestField(StrCat(field, ".digest"), blob.digest()));
    int64_t total = 0;
    for (int j = 0; j < blob.chunks_size(); ++j) {
      const v1::ChunkRef& ref = blob.chunks(j);
      std::string chunk_field = StrCat(field, ".chunks[", std::to_string(j), "]");
      ASSIGN_OR_RETURN(RawDigest chunk,
                       ParseDigestField(StrCat(chunk_field, ".digest"), ref.digest()));
      if (ref.size() <= 0 || ref.size() > kMaxChunkBytes) {
        return absl::InvalidArgumentError(
            StrCat(chunk_field, ".size ", std::to_string(ref.size()), ": out of range"));
      }
      total += ref.size();
      parsed[i].chunks.push_back(chunk);
    }
    if (total != blob.size()) {
      return absl::InvalidArgumentError(StrCat(field, ": size ", std::to_string(blob.size()),
                                               " but the chunks add up to ",
                                               std::to_string(total)));
    }
  }
  std::shared_lock lock(gc_mu_);
  rocksdb::WriteBatch batch;
  RETURN_IF_ERROR(TouchSession(request.session_id(), &batch).status());
  int64_t now = NowMs();
  std::vector<v1::Blob> out;
  absl::flat_hash_set<std::string> touched_chunks;
  for (int i = 0; i < request.blobs_size(); ++i) {
    const v1::BlobManifest& manifest = request.blobs(i);
    const RawDigest& digest = parsed[i].digest;
    // The session pins its blobs too, until the client has referenced them (a dataset version).
    batch.Put(session_pins_, StrCat(request.session_id(), DigestBytes(digest)), "");
    batch.Put(chunk_pins_, StrCat(DigestBytes(digest), request.session_id()), "");
    ASSIGN_OR_RETURN(auto existing, GetBlob(digest));
    if (existing) {
      RETURN_IF_ERROR(CheckNotDamaged(digest, *existing));
      existing->set_touch_time_ms(now);
      if (request.pin()) existing->set_pinned(true);
      batch.Put(blobs_, DigestBytes(digest), existing->SerializeAsString());
      out.push_back(BlobFromStored(digest, *existing));
      continue;
    }
    internal::StoredBlob stored;
    stored.set_size(manifest.size());
    stored.set_create_time_ms(now);
    stored.set_touch_time_ms(now);
    stored.set_pinned(request.pin());
    std::vector<ChunkRecord> records;
    for (size_t j = 0; j < parsed[i].chunks.size(); ++j) {
      const RawDigest& chunk = parsed[i].chunks[j];
      ASSIGN_OR_RETURN(auto record, GetChunk(chunk));
      if (!record) {
        return absl::FailedPreconditionError(StrCat("blob ", DigestHex(digest), ": chunk ",
                                                    DigestHex(chunk),
                                                    " is not stored; upload it first"));
      }
      if (IsDamaged(DigestBytes(chunk))) {
        return absl::FailedPreconditionError(StrCat("blob ", DigestHex(digest), ": chunk ",
                                                    DigestHex(chunk),
                                                    " is damaged; upload its content again"));
      }
      if (record->size != manifest.chunks(static_cast<int>(j)).size()) {
        return absl::InvalidArgumentError(
            StrCat("blob ", DigestHex(digest), ": chunk ", DigestHex(chunk), " has ",
                   std::to_string(record->size), " bytes, not ",
                   std::to_string(manifest.chunks(static_cast<int>(j)).size())));
      }
      records.push_back(*record);
      stored.mutable_chunk_digests()->append(DigestBytes(chunk));
      stored.add_chunk_sizes(record->size);
    }
    // A one-chunk blob is its chunk, whose bytes were verified when stored; otherwise hash the
    // chunks in order.
    bool verified = parsed[i].chunks.size() == 1 && parsed[i].chunks[0] == digest;
    if (!verified) {
      Sha256 hash;
      for (size_t j = 0; j < parsed[i].chunks.size(); ++j) {
        ASSIGN_OR_RETURN(std::string data,
                         ReadChunk(parsed[i].chunks[j], records[j], 0, records[j].size));
        hash.Update(data);
      }
      RawDigest actual = hash.Final();
      if (actual != digest) {
        return absl::InvalidArgumentError(
            StrCat("blob ", DigestHex(digest), ": its chunks hash to ", DigestHex(actual)));
      }
    }
    for (size_t j = 0; j < parsed[i].chunks.size(); ++j) {
      std::string_view key = DigestBytes(parsed[i].chunks[j]);
      if (touched_chunks.insert(std::string(key)).second) {
        batch.Put(chunks_, key, EncodeChunkRecord(records[j].inline_data, records[j].size, now));
      }
    }
    batch.Put(blobs_, DigestBytes(digest), stored.SerializeAsString());
    out.push_back(BlobFromStored(digest, stored));
  }
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  counters_.blobs_committed.fetch_add(static_cast<int64_t>(out.size()));
  return out;
}

absl::StatusOr<std::vector<int>> ArtifactStore::FindMissingBlobs(
    const std::vector<RawDigest>& digests) {
  if (digests.size() > kMaxDigestsPerCall) {
    return absl::InvalidArgumentError(
        StrCat("digests: ", std::to_string(digests.size()), " given, at most 10000 per call"));
  }
  std::vector<rocksdb::Slice> keys;
  keys.reserve(digests.size());
  for (const RawDigest& digest : digests) {
    keys.emplace_back(reinterpret_cast<const char*>(digest.data()), digest.size());
  }
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_->raw()->MultiGet(rocksdb::ReadOptions(), blobs_, keys.size(), keys.data(), values.data(),
                       statuses.data());
  std::vector<int> missing;
  bool any_damaged = damaged_count_.load(std::memory_order_acquire) > 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].IsNotFound()) {
      missing.push_back(static_cast<int>(i));
    } else if (!statuses[i].ok()) {
      return FromRocksStatus(statuses[i], "find blobs");
    } else if (any_damaged) {
      // A blob with a damaged chunk is missing until an upload of its content heals it.
      internal::StoredBlob blob;
      RETURN_IF_ERROR(
          db_->ParseRecord(blobs_, DigestBytes(digests[i]), values[i].ToStringView(), &blob));
      if (!CheckNotDamaged(digests[i], blob).ok()) missing.push_back(static_cast<int>(i));
    }
  }
  return missing;
}

absl::StatusOr<v1::Blob> ArtifactStore::StatBlob(const RawDigest& digest, bool include_chunks) {
  ASSIGN_OR_RETURN(auto stored, GetBlob(digest));
  if (!stored) return absl::NotFoundError(StrCat("blob ", DigestHex(digest), " not found"));
  v1::Blob blob = BlobFromStored(digest, *stored);
  if (include_chunks) {
    for (int i = 0; i < stored->chunk_sizes_size(); ++i) {
      v1::ChunkRef* ref = blob.add_chunks();
      ref->set_digest(DigestHex(DigestFromBytes(
          std::string_view(stored->chunk_digests()).substr(static_cast<size_t>(i) * 32, 32))));
      ref->set_size(stored->chunk_sizes(i));
    }
  }
  return blob;
}

absl::StatusOr<v1::ListBlobsResponse> ArtifactStore::ListBlobs(
    const v1::ListBlobsRequest& request) {
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size(), 100, 1000));
  uint64_t fingerprint = Fingerprint({"blobs"});
  std::string after;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageCursor cursor,
                     DecodePageToken(db_->page_token_key(), request.page_token(), fingerprint));
    after = cursor.after;
  }
  v1::ListBlobsResponse response;
  std::string last;
  bool more = false;
  absl::Status parse = absl::OkStatus();
  RETURN_IF_ERROR(db_->ScanProto<internal::StoredBlob>(
      blobs_, "", after, [&](std::string_view key, internal::StoredBlob& stored) {
        if (response.blobs_size() == page_size) {
          more = true;
          return false;
        }
        *response.add_blobs() = BlobFromStored(DigestFromBytes(key), stored);
        last = std::string(key);
        return true;
      }));
  if (more)
    response.set_next_page_token(EncodePageToken(db_->page_token_key(), {fingerprint, last}));
  return response;
}

absl::StatusOr<v1::Blob> ArtifactStore::SetBlobPinned(const RawDigest& digest, bool pinned) {
  std::shared_lock lock(gc_mu_);
  ASSIGN_OR_RETURN(auto stored, GetBlob(digest));
  if (!stored) return absl::NotFoundError(StrCat("blob ", DigestHex(digest), " not found"));
  stored->set_pinned(pinned);
  stored->set_touch_time_ms(NowMs());
  rocksdb::WriteBatch batch;
  batch.Put(blobs_, DigestBytes(digest), stored->SerializeAsString());
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  return BlobFromStored(digest, *stored);
}

absl::Status ArtifactStore::ReadBlob(const RawDigest& digest, int64_t offset, int64_t length,
                                     int64_t* blob_size,
                                     absl::FunctionRef<bool(int64_t, std::string_view)> sink) {
  ASSIGN_OR_RETURN(auto stored, GetBlob(digest));
  if (!stored) return absl::NotFoundError(StrCat("blob ", DigestHex(digest), " not found"));
  *blob_size = stored->size();
  if (offset < 0 || offset > stored->size()) {
    return absl::OutOfRangeError(StrCat("offset ", std::to_string(offset), ": the blob has ",
                                        std::to_string(stored->size()), " bytes"));
  }
  if (length < 0) {
    return absl::InvalidArgumentError(StrCat("length ", std::to_string(length), ": negative"));
  }
  int64_t end = length == 0 ? stored->size() : std::min(stored->size(), offset + length);
  int64_t chunk_start = 0;
  for (int i = 0; i < stored->chunk_sizes_size() && chunk_start < end; ++i) {
    int64_t size = stored->chunk_sizes(i);
    int64_t chunk_end = chunk_start + size;
    if (chunk_end > offset) {
      RawDigest chunk = DigestFromBytes(
          std::string_view(stored->chunk_digests()).substr(static_cast<size_t>(i) * 32, 32));
      ASSIGN_OR_RETURN(auto record, GetChunk(chunk));
      if (!record) {
        RETURN_IF_ERROR(MarkDamaged(chunk, /*missing=*/true));
        return absl::DataLossError(
            StrCat("blob ", DigestHex(digest), ": chunk ", DigestHex(chunk), " is gone"));
      }
      // Every chunk is verified whole before any of its bytes are sent, for ranges too.
      auto data = ReadChunk(chunk, *record, 0, record->size);
      if (!data.ok()) {
        if (data.status().code() != absl::StatusCode::kDataLoss) return data.status();
        RETURN_IF_ERROR(MarkDamaged(chunk, /*missing=*/true));
        return absl::DataLossError(
            StrCat("blob ", DigestHex(digest), ": ", data.status().message()));
      }
      if (RawDigest actual = Sha256Of(*data); actual != chunk) {
        RETURN_IF_ERROR(MarkDamaged(chunk, /*missing=*/false));
        return absl::DataLossError(StrCat("blob ", DigestHex(digest), ": chunk ", DigestHex(chunk),
                                          " is corrupt (its stored bytes hash to ",
                                          DigestHex(actual), ")"));
      }
      int64_t from = std::max(offset, chunk_start) - chunk_start;
      int64_t to = std::min(end, chunk_end) - chunk_start;
      while (from < to) {
        int64_t piece = std::min(kReadPieceBytes, to - from);
        counters_.bytes_downloaded.fetch_add(piece);
        std::string_view bytes =
            std::string_view(*data).substr(static_cast<size_t>(from), static_cast<size_t>(piece));
        if (!sink(chunk_start + from, bytes)) return absl::OkStatus();
        from += piece;
      }
    }
    chunk_start = chunk_end;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Datasets and versions

namespace {
v1::Dataset DatasetFromStored(std::string_view name, const internal::StoredDataset& stored) {
  v1::Dataset dataset;
  dataset.set_name(std::string(name));
  dataset.set_description(stored.description());
  dataset.set_create_time_ms(stored.create_time_ms());
  dataset.set_version_count(stored.version_count());
  return dataset;
}
}  // namespace

absl::StatusOr<v1::Dataset> ArtifactStore::CreateDataset(const v1::CreateDatasetRequest& request) {
  RETURN_IF_ERROR(ValidateName(NameKind::kIdentifier, "name", request.name()));
  if (request.description().size() > kMaxMessageBytes) {
    return absl::InvalidArgumentError("description: longer than 65536 bytes");
  }
  std::lock_guard lock(dataset_mu_);
  ASSIGN_OR_RETURN(auto existing, db_->Get(datasets_, request.name()));
  if (existing) {
    return absl::AlreadyExistsError(StrCat("dataset ", request.name(), " already exists"));
  }
  internal::StoredDataset stored;
  stored.set_description(request.description());
  stored.set_create_time_ms(NowMs());
  rocksdb::WriteBatch batch;
  batch.Put(datasets_, request.name(), stored.SerializeAsString());
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  return DatasetFromStored(request.name(), stored);
}

absl::StatusOr<v1::Dataset> ArtifactStore::GetDataset(std::string_view name) {
  RETURN_IF_ERROR(ValidateName(NameKind::kIdentifier, "name", name));
  ASSIGN_OR_RETURN(auto stored, db_->GetProto<internal::StoredDataset>(datasets_, name));
  if (!stored) return absl::NotFoundError(StrCat("dataset ", name, " not found"));
  v1::Dataset dataset = DatasetFromStored(name, *stored);
  ASSIGN_OR_RETURN(auto latest, db_->Get(tags_, TagKey(name, kLatestTag)));
  if (latest) dataset.set_latest_digest(DigestHex(DigestFromBytes(*latest)));
  return dataset;
}

absl::StatusOr<v1::ListDatasetsResponse> ArtifactStore::ListDatasets(
    const v1::ListDatasetsRequest& request) {
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size(), 100, 1000));
  uint64_t fingerprint = Fingerprint({"datasets"});
  std::string after;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageCursor cursor,
                     DecodePageToken(db_->page_token_key(), request.page_token(), fingerprint));
    after = cursor.after;
  }
  v1::ListDatasetsResponse response;
  std::vector<std::string> names;
  bool more = false;
  RETURN_IF_ERROR(
      db_->ScanPrefix(datasets_, "", after, [&](std::string_view key, std::string_view) {
        if (static_cast<int>(names.size()) == page_size) {
          more = true;
          return false;
        }
        names.emplace_back(key);
        return true;
      }));
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(*response.add_datasets(), GetDataset(name));
  }
  if (more)
    response.set_next_page_token(
        EncodePageToken(db_->page_token_key(), {fingerprint, names.back()}));
  return response;
}

absl::StatusOr<std::vector<std::string>> ArtifactStore::TagsOf(std::string_view dataset,
                                                               const RawDigest& digest) const {
  std::string prefix = DatasetPrefix(dataset);
  std::vector<std::string> tags;
  RETURN_IF_ERROR(
      db_->ScanPrefix(tags_, prefix, {}, [&](std::string_view key, std::string_view value) {
        if (value == DigestBytes(digest)) tags.emplace_back(key.substr(prefix.size()));
        return true;
      }));
  return tags;
}

absl::StatusOr<v1::DatasetVersion> ArtifactStore::LoadVersion(std::string_view dataset,
                                                              const RawDigest& digest) const {
  ASSIGN_OR_RETURN(auto value,
                   db_->GetProto<internal::StoredVersion>(versions_, VersionKey(dataset, digest)));
  if (!value) {
    return absl::NotFoundError(
        StrCat("version ", DigestHex(digest), " of dataset ", dataset, " not found"));
  }
  const internal::StoredVersion& stored = *value;
  v1::DatasetVersion version;
  version.set_dataset(std::string(dataset));
  version.set_digest(DigestHex(digest));
  version.set_message(stored.message());
  if (!stored.parent_digest().empty()) {
    version.set_parent_digest(DigestHex(DigestFromBytes(stored.parent_digest())));
  }
  version.set_create_time_ms(stored.create_time_ms());
  version.set_file_count(stored.file_count());
  version.set_total_bytes(stored.total_bytes());
  ASSIGN_OR_RETURN(auto tags, TagsOf(dataset, digest));
  for (auto& tag : tags) version.add_tags(std::move(tag));
  return version;
}

absl::StatusOr<RawDigest> ArtifactStore::ResolveRef(std::string_view dataset,
                                                    std::string_view ref) const {
  RETURN_IF_ERROR(ValidateName(NameKind::kIdentifier, "dataset", dataset));
  if (ref.empty()) ref = kLatestTag;
  if (ValidateName(NameKind::kIdentifier, "ref", ref).ok()) {
    ASSIGN_OR_RETURN(auto tagged, db_->Get(tags_, TagKey(dataset, ref)));
    if (tagged) return DigestFromBytes(*tagged);
  }
  ASSIGN_OR_RETURN(auto exists, db_->Get(datasets_, dataset));
  if (!exists) return absl::NotFoundError(StrCat("dataset ", dataset, " not found"));
  if (ref.size() < 8 || ref.size() > 64 || !IsHex(ref)) {
    return absl::NotFoundError(StrCat("dataset ", dataset, " has no tag \"", ref.substr(0, 128),
                                      "\" (a digest prefix needs at least 8 hex characters)"));
  }
  std::string lower = ToLower(ref);
  std::string prefix = DatasetPrefix(dataset);
  std::string scan = prefix;
  RawDigest partial{};
  size_t whole_bytes = lower.size() / 2;
  if (whole_bytes > 0) {
    std::string padded = lower.substr(0, whole_bytes * 2) + std::string(64 - whole_bytes * 2, '0');
    ParseDigestHex(padded, &partial);
    scan.append(reinterpret_cast<const char*>(partial.data()), whole_bytes);
  }
  std::vector<RawDigest> matches;
  RETURN_IF_ERROR(db_->ScanPrefix(versions_, scan, {}, [&](std::string_view key, std::string_view) {
    RawDigest digest = DigestFromBytes(key.substr(prefix.size()));
    if (DigestHex(digest).starts_with(lower)) matches.push_back(digest);
    return matches.size() < 2;
  }));
  if (matches.empty()) {
    return absl::NotFoundError(StrCat("dataset ", dataset, " has no version or tag \"", ref, "\""));
  }
  if (matches.size() > 1) {
    return absl::InvalidArgumentError(
        StrCat("ref \"", ref, "\": matches several versions of ", dataset, "; give more digits"));
  }
  return matches[0];
}

absl::StatusOr<v1::DatasetVersion> ArtifactStore::CreateVersion(
    const v1::CreateVersionRequest::Header& header, std::vector<v1::VersionEntry> entries) {
  RETURN_IF_ERROR(ValidateName(NameKind::kIdentifier, "dataset", header.dataset()));
  if (header.message().size() > kMaxMessageBytes) {
    return absl::InvalidArgumentError("message: longer than 65536 bytes");
  }
  if (static_cast<size_t>(header.tags_size()) > kMaxTagsPerVersion) {
    return absl::InvalidArgumentError(
        StrCat("tags: ", std::to_string(header.tags_size()), " given, at most 32"));
  }
  for (const std::string& tag : header.tags()) RETURN_IF_ERROR(ValidateTag(tag));
  if (entries.size() > kMaxVersionEntries) {
    return absl::InvalidArgumentError(
        StrCat("entries: ", std::to_string(entries.size()), " given, at most 2000000 per version"));
  }
  std::vector<ManifestEntry> manifest;
  manifest.reserve(entries.size());
  int64_t total_bytes = 0;
  for (v1::VersionEntry& entry : entries) {
    RETURN_IF_ERROR(ValidatePath(entry.path()));
    ManifestEntry m;
    ASSIGN_OR_RETURN(m.digest,
                     ParseDigestField(StrCat("entry ", entry.path(), ": digest"), entry.digest()));
    if (entry.size() < 0) {
      return absl::InvalidArgumentError(StrCat("entry ", entry.path(), ": negative size"));
    }
    if (entry.mode() > 0777) {
      // Only permission bits are kept: a version must never make a setuid, setgid or sticky
      // file on the machine that pulls it.
      char mode[16];
      std::snprintf(mode, sizeof(mode), "%04o", entry.mode());
      return absl::InvalidArgumentError(StrCat("entry ", entry.path(), ": mode ", mode,
                                               " has bits beyond the permission bits 0777 "
                                               "(setuid, setgid and sticky are not stored)"));
    }
    m.path = std::move(*entry.mutable_path());
    m.size = entry.size();
    m.mode = entry.mode();
    total_bytes += m.size;
    manifest.push_back(std::move(m));
  }
  entries.clear();
  ASSIGN_OR_RETURN(RawDigest digest, SortAndHashManifest(&manifest));
  if (!header.expected_digest().empty() && header.expected_digest() != DigestHex(digest)) {
    return absl::InvalidArgumentError(StrCat("expected_digest ", header.expected_digest(),
                                             ": the entries hash to ", DigestHex(digest)));
  }

  if (header.request_id().size() > 128) {
    return absl::InvalidArgumentError("request_id: longer than 128 bytes");
  }

  std::shared_lock gc_lock(gc_mu_);
  std::lock_guard lock(dataset_mu_);
  const std::string& name = header.dataset();
  const std::string request_key =
      header.request_id().empty() ? "" : StrCat(name, std::string(1, '\0'), header.request_id());
  if (!request_key.empty()) {
    ASSIGN_OR_RETURN(auto earlier, db_->Get(version_requests_, request_key));
    if (earlier) {
      ASSIGN_OR_RETURN(v1::DatasetVersion out, LoadVersion(name, DigestFromBytes(*earlier)));
      out.set_already_existed(true);
      return out;
    }
  }
  ASSIGN_OR_RETURN(auto dataset_value, db_->GetProto<internal::StoredDataset>(datasets_, name));
  internal::StoredDataset dataset;
  int64_t now = NowMs();
  if (dataset_value) {
    dataset = *dataset_value;
  } else if (header.create_dataset()) {
    dataset.set_create_time_ms(now);
  } else {
    return absl::NotFoundError(StrCat("dataset ", name, " not found"));
  }
  rocksdb::WriteBatch batch;
  ASSIGN_OR_RETURN(auto existing, db_->Get(versions_, VersionKey(name, digest)));
  bool already = existing.has_value();
  if (!already) {
    std::optional<RawDigest> parent;
    if (!header.parent().empty()) {
      ASSIGN_OR_RETURN(parent, ResolveRef(name, header.parent()));
    } else if (dataset_value) {
      ASSIGN_OR_RETURN(auto latest, db_->Get(tags_, TagKey(name, kLatestTag)));
      if (latest) parent = DigestFromBytes(*latest);
    }
    // Every blob must be stored with the stated size; each is touched so that a collection running
    // now keeps it.
    absl::flat_hash_map<std::string, int64_t> checked;
    for (const ManifestEntry& entry : manifest) {
      std::string key(DigestBytes(entry.digest));
      auto it = checked.find(key);
      if (it == checked.end()) {
        ASSIGN_OR_RETURN(auto blob, GetBlob(entry.digest));
        if (!blob) {
          return absl::FailedPreconditionError(StrCat("entry ", entry.path, ": blob ",
                                                      DigestHex(entry.digest),
                                                      " is not stored; upload it first"));
        }
        blob->set_touch_time_ms(now);
        batch.Put(blobs_, key, blob->SerializeAsString());
        it = checked.emplace(key, blob->size()).first;
      }
      if (it->second != entry.size) {
        return absl::InvalidArgumentError(
            StrCat("entry ", entry.path, ": size ", std::to_string(entry.size), " but blob ",
                   DigestHex(entry.digest), " has ", std::to_string(it->second), " bytes"));
      }
    }
    ASSIGN_OR_RETURN(auto manifest_written, db_->Get(manifests_, DigestBytes(digest)));
    if (!manifest_written) {
      for (const ManifestEntry& entry : manifest) {
        internal::StoredEntry stored;
        stored.set_digest(std::string(DigestBytes(entry.digest)));
        stored.set_size(entry.size);
        stored.set_mode(entry.mode);
        batch.Put(entries_, EntryKey(digest, entry.path), stored.SerializeAsString());
      }
      batch.Put(manifests_, DigestBytes(digest), std::to_string(manifest.size()));
    }
    internal::StoredVersion version;
    version.set_message(header.message());
    if (parent) version.set_parent_digest(std::string(DigestBytes(*parent)));
    version.set_create_time_ms(now);
    version.set_file_count(static_cast<int64_t>(manifest.size()));
    version.set_total_bytes(total_bytes);
    batch.Put(versions_, VersionKey(name, digest), version.SerializeAsString());
    dataset.set_version_count(dataset.version_count() + 1);
    batch.Put(version_log_, VersionLogKey(name, dataset.version_count(), digest), "");
  }
  batch.Put(datasets_, name, dataset.SerializeAsString());
  if (!request_key.empty()) batch.Put(version_requests_, request_key, DigestBytes(digest));
  batch.Put(tags_, TagKey(name, kLatestTag), DigestBytes(digest));
  for (const std::string& tag : header.tags()) {
    batch.Put(tags_, TagKey(name, tag), DigestBytes(digest));
  }
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  ASSIGN_OR_RETURN(v1::DatasetVersion out, LoadVersion(name, digest));
  out.set_already_existed(already);
  return out;
}

absl::StatusOr<v1::DatasetVersion> ArtifactStore::GetVersion(std::string_view dataset,
                                                             std::string_view ref) {
  ASSIGN_OR_RETURN(RawDigest digest, ResolveRef(dataset, ref));
  return LoadVersion(dataset, digest);
}

absl::StatusOr<v1::ListVersionsResponse> ArtifactStore::ListVersions(
    const v1::ListVersionsRequest& request) {
  ASSIGN_OR_RETURN(v1::Dataset dataset, GetDataset(request.dataset()));
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size(), 100, 1000));
  uint64_t fingerprint = Fingerprint({"versions", request.dataset()});
  std::string prefix = DatasetPrefix(request.dataset());
  std::string after;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageCursor cursor,
                     DecodePageToken(db_->page_token_key(), request.page_token(), fingerprint));
    after = StrCat(prefix, cursor.after);
  }
  std::vector<RawDigest> digests;
  std::string last;
  bool more = false;
  RETURN_IF_ERROR(
      db_->ScanPrefix(version_log_, prefix, after, [&](std::string_view key, std::string_view) {
        if (static_cast<int>(digests.size()) == page_size) {
          more = true;
          return false;
        }
        digests.push_back(DigestFromBytes(key.substr(key.size() - 32)));
        last = std::string(key.substr(prefix.size()));
        return true;
      }));
  v1::ListVersionsResponse response;
  for (const RawDigest& digest : digests) {
    ASSIGN_OR_RETURN(*response.add_versions(), LoadVersion(request.dataset(), digest));
  }
  if (more)
    response.set_next_page_token(EncodePageToken(db_->page_token_key(), {fingerprint, last}));
  return response;
}

absl::Status ArtifactStore::ScanEntries(
    const RawDigest& version, std::string_view prefix, std::string_view after,
    absl::FunctionRef<bool(std::string_view, const v1::VersionEntry&)> fn) const {
  std::string key_prefix = EntryKey(version, prefix);
  std::string after_key = after.empty() ? std::string() : EntryKey(version, after);
  absl::Status bad;
  absl::Status scanned = db_->ScanPrefix(entries_, key_prefix, after_key,
                                         [&](std::string_view key, std::string_view value) {
                                           auto entry = EntryFromStored(*db_, entries_, key, value);
                                           if (!entry.ok()) {
                                             bad = entry.status();
                                             return false;
                                           }
                                           return fn(key.substr(32), *entry);
                                         });
  return bad.ok() ? scanned : bad;
}

absl::StatusOr<v1::ListVersionEntriesResponse> ArtifactStore::ListVersionEntries(
    const v1::ListVersionEntriesRequest& request) {
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size(), 1000, 10000));
  ASSIGN_OR_RETURN(RawDigest digest, ResolveRef(request.dataset(), request.ref()));
  uint64_t fingerprint =
      Fingerprint({"entries", request.dataset(), DigestBytes(digest), request.path_prefix()});
  std::string after;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageCursor cursor,
                     DecodePageToken(db_->page_token_key(), request.page_token(), fingerprint));
    after = cursor.after;
  }
  v1::ListVersionEntriesResponse response;
  ASSIGN_OR_RETURN(*response.mutable_version(), LoadVersion(request.dataset(), digest));
  bool more = false;
  std::string last;
  RETURN_IF_ERROR(ScanEntries(digest, request.path_prefix(), after,
                              [&](std::string_view path, const v1::VersionEntry& entry) {
                                if (response.entries_size() == page_size) {
                                  more = true;
                                  return false;
                                }
                                *response.add_entries() = entry;
                                last = std::string(path);
                                return true;
                              }));
  if (more)
    response.set_next_page_token(EncodePageToken(db_->page_token_key(), {fingerprint, last}));
  return response;
}

absl::StatusOr<v1::DiffVersionsResponse> ArtifactStore::DiffVersions(
    const v1::DiffVersionsRequest& request) {
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size(), 1000, 10000));
  const std::string& to_dataset =
      request.to_dataset().empty() ? request.from_dataset() : request.to_dataset();
  ASSIGN_OR_RETURN(RawDigest from, ResolveRef(request.from_dataset(), request.from_ref()));
  ASSIGN_OR_RETURN(RawDigest to, ResolveRef(to_dataset, request.to_ref()));
  uint64_t fingerprint = Fingerprint({"diff", DigestBytes(from), DigestBytes(to)});
  std::string after;
  bool first_page = request.page_token().empty();
  if (!first_page) {
    ASSIGN_OR_RETURN(PageCursor cursor,
                     DecodePageToken(db_->page_token_key(), request.page_token(), fingerprint));
    after = cursor.after;
  }
  v1::DiffVersionsResponse response;
  ASSIGN_OR_RETURN(*response.mutable_from(), LoadVersion(request.from_dataset(), from));
  ASSIGN_OR_RETURN(*response.mutable_to(), LoadVersion(to_dataset, to));
  v1::DiffSummary summary;
  if (from == to) {
    summary.set_unchanged(response.from().file_count());
    if (first_page) *response.mutable_summary() = summary;
    return response;
  }
  // Merge walk of the two sorted entry ranges.
  std::string from_prefix(DigestBytes(from)), to_prefix(DigestBytes(to));
  auto a = db_->NewIterator(entries_);
  auto b = db_->NewIterator(entries_);
  auto seek = [&](rocksdb::Iterator* it, const std::string& prefix) {
    if (after.empty()) {
      it->Seek(prefix);
    } else {
      std::string key = prefix + after;
      it->Seek(key);
      if (it->Valid() && it->key().ToStringView() == key) it->Next();
    }
  };
  seek(a.get(), from_prefix);
  seek(b.get(), to_prefix);
  auto valid = [](rocksdb::Iterator* it, const std::string& prefix) {
    return it->Valid() && it->key().starts_with(prefix);
  };
  bool more = false;
  std::string last;
  auto emit = [&](v1::FileChange::Kind kind, const v1::VersionEntry* old_entry,
                  const v1::VersionEntry* new_entry) -> bool {
    const std::string& path = old_entry ? old_entry->path() : new_entry->path();
    switch (kind) {
      case v1::FileChange::ADDED:
        summary.set_added(summary.added() + 1);
        summary.set_bytes_added(summary.bytes_added() + new_entry->size());
        break;
      case v1::FileChange::REMOVED:
        summary.set_removed(summary.removed() + 1);
        summary.set_bytes_removed(summary.bytes_removed() + old_entry->size());
        break;
      default:
        summary.set_modified(summary.modified() + 1);
        summary.set_bytes_changed(summary.bytes_changed() + new_entry->size());
    }
    if (response.changes_size() == page_size) {
      more = true;
      return first_page;  // keep counting for the summary on the first page only
    }
    if (more) return true;
    v1::FileChange* change = response.add_changes();
    change->set_path(path);
    change->set_kind(kind);
    if (old_entry) *change->mutable_from() = *old_entry;
    if (new_entry) *change->mutable_to() = *new_entry;
    last = path;
    return true;
  };
  bool go = true;
  while (go && (valid(a.get(), from_prefix) || valid(b.get(), to_prefix))) {
    bool has_a = valid(a.get(), from_prefix), has_b = valid(b.get(), to_prefix);
    std::string_view path_a = has_a ? a->key().ToStringView().substr(32) : std::string_view();
    std::string_view path_b = has_b ? b->key().ToStringView().substr(32) : std::string_view();
    if (has_a && (!has_b || path_a < path_b)) {
      ASSIGN_OR_RETURN(
          v1::VersionEntry old_entry,
          EntryFromStored(*db_, entries_, a->key().ToStringView(), a->value().ToStringView()));
      go = emit(v1::FileChange::REMOVED, &old_entry, nullptr);
      a->Next();
    } else if (has_b && (!has_a || path_b < path_a)) {
      ASSIGN_OR_RETURN(
          v1::VersionEntry new_entry,
          EntryFromStored(*db_, entries_, b->key().ToStringView(), b->value().ToStringView()));
      go = emit(v1::FileChange::ADDED, nullptr, &new_entry);
      b->Next();
    } else {
      if (a->value() != b->value()) {
        ASSIGN_OR_RETURN(
            v1::VersionEntry old_entry,
            EntryFromStored(*db_, entries_, a->key().ToStringView(), a->value().ToStringView()));
        ASSIGN_OR_RETURN(
            v1::VersionEntry new_entry,
            EntryFromStored(*db_, entries_, b->key().ToStringView(), b->value().ToStringView()));
        go = emit(v1::FileChange::MODIFIED, &old_entry, &new_entry);
      } else {
        summary.set_unchanged(summary.unchanged() + 1);
      }
      a->Next();
      b->Next();
    }
  }
  RETURN_IF_ERROR(FromRocksStatus(a->status(), "diff"));
  RETURN_IF_ERROR(FromRocksStatus(b->status(), "diff"));
  if (first_page) *response.mutable_summary() = summary;
  if (more)
    response.set_next_page_token(EncodePageToken(db_->page_token_key(), {fingerprint, last}));
  return response;
}

absl::StatusOr<v1::DatasetVersion> ArtifactStore::TagVersion(const v1::TagVersionRequest& request) {
  RETURN_IF_ERROR(ValidateTag(request.tag()));
  if (request.remove() && request.tag() == kLatestTag) {
    return absl::InvalidArgumentError("tag latest: always names the newest version");
  }
  std::lock_guard lock(dataset_mu_);
  ASSIGN_OR_RETURN(RawDigest digest, ResolveRef(request.dataset(), request.ref()));
  rocksdb::WriteBatch batch;
  std::string key = TagKey(request.dataset(), request.tag());
  if (request.remove()) {
    ASSIGN_OR_RETURN(auto current, db_->Get(tags_, key));
    if (!current || *current != DigestBytes(digest)) {
      return absl::NotFoundError(StrCat("version ", DigestHex(digest), " of ", request.dataset(),
                                        " has no tag ", request.tag()));
    }
    batch.Delete(tags_, key);
  } else {
    batch.Put(tags_, key, DigestBytes(digest));
  }
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  return LoadVersion(request.dataset(), digest);
}

// ---------------------------------------------------------------------------------------------
// Maintenance

absl::StatusOr<v1::ScrubResponse> ArtifactStore::Scrub(bool repair) {
  int64_t start = NowMs();
  v1::ScrubResponse response;
  std::vector<std::pair<RawDigest, ChunkRecord>> corrupt;
  std::vector<std::string> restored;  // marked damaged before, readable again
  auto it = db_->NewIterator(chunks_);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    RawDigest digest = DigestFromBytes(it->key().ToStringView());
    ASSIGN_OR_RETURN(auto record, GetChunk(digest));
    if (!record) continue;  // deleted meanwhile
    auto data = ReadChunk(digest, *record, 0, record->size);
    response.set_chunks_checked(response.chunks_checked() + 1);
    if (!data.ok()) {
      if (data.status().code() != absl::StatusCode::kDataLoss) return data.status();
      RETURN_IF_ERROR(MarkDamaged(digest, /*missing=*/true));
      if (response.missing_size() < static_cast<int>(kMaxReportedDigests)) {
        response.add_missing(DigestHex(digest));
      }
      continue;
    }
    response.set_bytes_checked(response.bytes_checked() + record->size);
    if (Sha256Of(*data) != digest) {
      RETURN_IF_ERROR(MarkDamaged(digest, /*missing=*/false));
      if (response.corrupt_size() < static_cast<int>(kMaxReportedDigests)) {
        response.add_corrupt(DigestHex(digest));
      }
      corrupt.emplace_back(digest, *record);
    } else if (IsDamaged(DigestBytes(digest))) {
      restored.emplace_back(DigestBytes(digest));
    }
  }
  RETURN_IF_ERROR(FromRocksStatus(it->status(), "scrub"));
  if (!restored.empty()) {
    rocksdb::WriteBatch batch;
    for (const std::string& key : restored) batch.Delete(damaged_, key);
    RETURN_IF_ERROR(db_->Write(&batch));
    ForgetDamaged(restored);
  }
  // Blobs that cannot be read whole: a chunk damaged, or its record gone.
  absl::Status scan_error = absl::OkStatus();
  RETURN_IF_ERROR(db_->ScanProto<internal::StoredBlob>(
      blobs_, "", {}, [&](std::string_view key, internal::StoredBlob& blob) {
        std::string_view digests = blob.chunk_digests();
        bool damaged = false;
        for (size_t i = 0; i + 32 <= digests.size() && !damaged; i += 32) {
          std::string_view chunk = digests.substr(i, 32);
          damaged = IsDamaged(chunk);
          if (damaged) continue;
          auto record = db_->Get(chunks_, chunk);
          if (!record.ok()) {
            scan_error = record.status();
            return false;
          }
          if (!record->has_value()) {  // no record at all (a data dir from before the marks)
            damaged = true;
            scan_error = MarkDamaged(DigestFromBytes(chunk), /*missing=*/true);
            if (!scan_error.ok()) return false;
            if (response.missing_size() < static_cast<int>(kMaxReportedDigests)) {
              response.add_missing(DigestHex(DigestFromBytes(chunk)));
            }
          }
        }
        if (damaged) {
          response.set_damaged_blob_count(response.damaged_blob_count() + 1);
          if (response.damaged_blobs_size() < static_cast<int>(kMaxReportedDigests)) {
            response.add_damaged_blobs(DigestHex(DigestFromBytes(key)));
          }
        }
        return true;
      }));
  RETURN_IF_ERROR(scan_error);
  if (repair && !corrupt.empty()) {
    // The wrong bytes go; the records stay, marked damaged, so that later scrubs still report
    // the chunks (as missing) until an upload of the same content heals them.
    std::unique_lock lock(gc_mu_);
    rocksdb::WriteBatch batch;
    for (const auto& [digest, record] : corrupt) {
      if (record.inline_data) batch.Delete(chunk_data_, DigestBytes(digest));
    }
    RETURN_IF_ERROR(db_->WriteSync(&batch));
    for (const auto& [digest, record] : corrupt) {
      if (!record.inline_data) ::unlink(ChunkPath(digest).c_str());
    }
    response.set_chunks_repaired(static_cast<int64_t>(corrupt.size()));
  }
  counters_.scrub_runs.fetch_add(1);
  response.set_duration_ms(NowMs() - start);
  return response;
}

bool ArtifactStore::IsDamaged(std::string_view raw_digest) const {
  if (damaged_count_.load(std::memory_order_acquire) == 0) return false;
  std::lock_guard lock(damaged_mu_);
  return damaged_set_.contains(absl::string_view(raw_digest.data(), raw_digest.size()));
}

absl::Status ArtifactStore::MarkDamaged(const RawDigest& digest, bool missing) {
  std::string key(DigestBytes(digest));
  {
    std::lock_guard lock(damaged_mu_);
    if (!damaged_set_.insert(key).second) return absl::OkStatus();
    damaged_count_.store(static_cast<int64_t>(damaged_set_.size()), std::memory_order_release);
  }
  (missing ? counters_.scrub_missing_chunks : counters_.scrub_corrupt_chunks).fetch_add(1);
  std::string value(1, missing ? 'm' : 'c');
  AppendBigEndian64(&value, static_cast<uint64_t>(NowMs()));
  rocksdb::WriteBatch batch;
  batch.Put(damaged_, key, value);
  return db_->Write(&batch);
}

void ArtifactStore::ForgetDamaged(const std::vector<std::string>& raw_digests) {
  std::lock_guard lock(damaged_mu_);
  for (const std::string& key : raw_digests) damaged_set_.erase(key);
  damaged_count_.store(static_cast<int64_t>(damaged_set_.size()), std::memory_order_release);
}

absl::Status ArtifactStore::CheckNotDamaged(const RawDigest& digest,
                                            const internal::StoredBlob& blob) const {
  if (damaged_count_.load(std::memory_order_acquire) == 0) return absl::OkStatus();
  std::string_view digests = blob.chunk_digests();
  for (size_t i = 0; i + 32 <= digests.size(); i += 32) {
    if (IsDamaged(digests.substr(i, 32))) {
      return absl::FailedPreconditionError(StrCat("blob ", DigestHex(digest), ": chunk ",
                                                  DigestHex(DigestFromBytes(digests.substr(i, 32))),
                                                  " is damaged; upload its content again"));
    }
  }
  return absl::OkStatus();
}

int64_t ArtifactStore::DamagedChunks() const {
  return damaged_count_.load(std::memory_order_acquire);
}

absl::StatusOr<bool> ArtifactStore::PinnedBySession(std::string_view digest) const {
  bool pinned = false;
  RETURN_IF_ERROR(db_->ScanPrefix(chunk_pins_, digest, {}, [&](std::string_view, std::string_view) {
    pinned = true;
    return false;
  }));
  return pinned;
}

absl::StatusOr<v1::GarbageCollectResponse> ArtifactStore::GarbageCollect(
    const v1::GarbageCollectRequest& request) {
  if (request.grace_period_seconds() < 0) {
    return absl::InvalidArgumentError("grace_period_seconds: must not be negative");
  }
  std::lock_guard run_lock(gc_run_mu_);
  int64_t start = NowMs();
  int64_t grace_ms = request.zero_grace()                  ? 0
                     : request.grace_period_seconds() == 0 ? kDefaultGraceMs
                                                           : request.grace_period_seconds() * 1000;
  int64_t cutoff = start - grace_ms;
  v1::GarbageCollectResponse response;

  // 1. Expired sessions release their pins.
  {
    std::vector<std::string> expired;
    RETURN_IF_ERROR(db_->ScanProto<internal::StoredSession>(
        sessions_, "", {}, [&](std::string_view key, internal::StoredSession& session) {
          if (session.expire_time_ms() < start) expired.emplace_back(key);
          return true;
        }));
    if (!request.dry_run() && !expired.empty()) {
      std::unique_lock lock(gc_mu_);
      rocksdb::WriteBatch batch;
      for (const std::string& id : expired) {
        ASSIGN_OR_RETURN(auto session, db_->GetProto<internal::StoredSession>(sessions_, id));
        if (!session || session->expire_time_ms() >= start) {
          continue;  // finished or used again meanwhile
        }
        batch.Delete(sessions_, id);
        RETURN_IF_ERROR(
            db_->ScanPrefix(session_pins_, id, {}, [&](std::string_view key, std::string_view) {
              batch.Delete(session_pins_, key);
              batch.Delete(chunk_pins_, StrCat(key.substr(id.size()), id));
              return true;
            }));
      }
      RETURN_IF_ERROR(db_->Write(&batch));
    }
    response.set_sessions_expired(static_cast<int64_t>(expired.size()));
  }

  // 2. Mark: blobs reachable from pins and from every dataset version.
  absl::flat_hash_set<std::string> live_blobs;
  RETURN_IF_ERROR(db_->ScanProto<internal::StoredEntry>(
      entries_, "", {}, [&](std::string_view, internal::StoredEntry& entry) {
        live_blobs.insert(entry.digest());
        return true;
      }));

  // 3. Sweep blobs, re-checking each under the exclusive lock.
  std::vector<std::string> dead_blobs;
  RETURN_IF_ERROR(db_->ScanProto<internal::StoredBlob>(
      blobs_, "", {}, [&](std::string_view key, internal::StoredBlob& blob) {
        if (blob.pinned() || live_blobs.contains(absl::string_view(key.data(), key.size())) ||
            blob.touch_time_ms() >= cutoff)
          return true;
        dead_blobs.emplace_back(key);
        return true;
      }));
  auto sweep_blobs = [&](size_t from, size_t to) -> absl::Status {
    std::unique_lock lock(gc_mu_);
    rocksdb::WriteBatch batch;
    for (size_t i = from; i < to; ++i) {
      ASSIGN_OR_RETURN(auto blob, GetBlob(DigestFromBytes(dead_blobs[i])));
      if (!blob || blob->pinned() || blob->touch_time_ms() >= cutoff) continue;
      ASSIGN_OR_RETURN(bool session_pinned, PinnedBySession(dead_blobs[i]));
      if (session_pinned) continue;
      batch.Delete(blobs_, dead_blobs[i]);
      response.set_blobs_deleted(response.blobs_deleted() + 1);
    }
    return db_->WriteSync(&batch);
  };
  if (request.dry_run()) {
    response.set_blobs_deleted(static_cast<int64_t>(dead_blobs.size()));
  } else {
    for (size_t i = 0; i < dead_blobs.size(); i += 1000) {
      RETURN_IF_ERROR(sweep_blobs(i, std::min(dead_blobs.size(), i + 1000)));
    }
  }
  absl::flat_hash_set<std::string> dead_blob_set(dead_blobs.begin(), dead_blobs.end());

  // 4. Mark chunks of the blobs that remain.
  absl::flat_hash_set<std::string> live_chunks;
  RETURN_IF_ERROR(db_->ScanProto<internal::StoredBlob>(
      blobs_, "", {}, [&](std::string_view key, internal::StoredBlob& blob) {
        if (request.dry_run() && dead_blob_set.contains(absl::string_view(key.data(), key.size())))
          return true;
        response.set_blobs_live(response.blobs_live() + 1);
        std::string_view digests = blob.chunk_digests();
        for (size_t i = 0; i + 32 <= digests.size(); i += 32) {
          live_chunks.emplace(digests.substr(i, 32));
        }
        return true;
      }));

  // 5. Sweep chunks: unreachable, untouched within the grace period, pinned by no open session.
  std::vector<std::string> dead_chunks;
  RETURN_IF_ERROR(
      db_->ScanPrefix(chunks_, "", {}, [&](std::string_view key, std::string_view value) {
        if (live_chunks.contains(absl::string_view(key.data(), key.size()))) return true;
        int64_t touch = static_cast<int64_t>(ReadBigEndian64(value.substr(9, 8)));
        if (touch >= cutoff) return true;
        dead_chunks.emplace_back(key);
        return true;
      }));
  response.set_chunks_live(static_cast<int64_t>(live_chunks.size()));
  auto sweep_chunks = [&](size_t from, size_t to) -> absl::Status {
    std::unique_lock lock(gc_mu_);
    rocksdb::WriteBatch batch;
    std::vector<std::string> files;
    std::vector<std::string> forgotten;
    for (size_t i = from; i < to; ++i) {
      RawDigest digest = DigestFromBytes(dead_chunks[i]);
      ASSIGN_OR_RETURN(auto record, GetChunk(digest));
      if (!record || record->touch_ms >= cutoff) continue;
      ASSIGN_OR_RETURN(bool pinned, PinnedBySession(dead_chunks[i]));
      if (pinned) continue;
      if (request.dry_run()) {
        response.set_chunks_deleted(response.chunks_deleted() + 1);
        response.set_bytes_freed(response.bytes_freed() + record->size);
        continue;
      }
      batch.Delete(chunks_, dead_chunks[i]);
      if (IsDamaged(dead_chunks[i])) {
        batch.Delete(damaged_, dead_chunks[i]);
        forgotten.push_back(dead_chunks[i]);
      }
      if (record->inline_data) {
        batch.Delete(chunk_data_, dead_chunks[i]);
      } else {
        files.push_back(ChunkPath(digest));
      }
      response.set_chunks_deleted(response.chunks_deleted() + 1);
      response.set_bytes_freed(response.bytes_freed() + record->size);
    }
    RETURN_IF_ERROR(db_->WriteSync(&batch));
    if (!forgotten.empty()) ForgetDamaged(forgotten);
    // Still under the lock: an upload of the same content must not see its new file unlinked.
    for (const std::string& file : files) ::unlink(file.c_str());
    return absl::OkStatus();
  };
  for (size_t i = 0; i < dead_chunks.size(); i += 1000) {
    RETURN_IF_ERROR(sweep_chunks(i, std::min(dead_chunks.size(), i + 1000)));
  }

  // 6. Files no record names (a crash between rename and record) and stale temporary files.
  if (!request.dry_run()) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(dir_ + "/chunks", ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      struct stat st;
      if (::stat(it->path().c_str(), &st) != 0) continue;
      int64_t mtime_ms =
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
      if (mtime_ms >= cutoff) continue;
      std::string name = it->path().filename().string();
      RawDigest digest;
      std::unique_lock lock(gc_mu_);
      if (ParseDigestHex(name, &digest)) {
        ASSIGN_OR_RETURN(auto record, GetChunk(digest));
        if (record) continue;
      }
      ::unlink(it->path().c_str());
    }
  }
  counters_.gc_runs.fetch_add(1);
  counters_.gc_chunks_deleted.fetch_add(request.dry_run() ? 0 : response.chunks_deleted());
  counters_.gc_bytes_freed.fetch_add(request.dry_run() ? 0 : response.bytes_freed());
  response.set_duration_ms(NowMs() - start);
  return response;
}

}  // namespace mlops::artifact
