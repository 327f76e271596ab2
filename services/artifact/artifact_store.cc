// ArtifactStore: opening, sessions, chunks and chunk files; the helpers the other files share.
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
#include "services/artifact/artifact_store_internal.h"
#include "services/artifact/manifest.h"
#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/page_token.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::artifact {

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

std::string RefKey(char kind, std::string_view raw_digest, std::string_view project) {
  return StrCat(std::string_view(&kind, 1), raw_digest, project);
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

absl::StatusOr<std::unique_ptr<ArtifactStore>> ArtifactStore::Open(const std::string& dir,
                                                                   const Db::Options& options) {
  std::error_code ec;
  std::filesystem::create_directories(dir + "/chunks/tmp", ec);
  if (ec) return absl::UnavailableError(StrCat("create ", dir, "/chunks: ", ec.message()));
  // On-disk formats: 1 (issue 15) records the format; version_requests came with it. 2 (issue
  // 18): project_refs, every chunk and blob stored before it given to project default.
  Migration projects = {
      2, "chunks and blobs stored before projects belong to project default",
      [](Db& db) -> absl::Status {
        rocksdb::WriteBatch batch;
        absl::Status written;
        for (const auto& cf_kind :
             {std::pair{kChunksCf, kChunkRef}, std::pair{kBlobsCf, kBlobRef}}) {
          const char* cf = cf_kind.first;
          const char kind = cf_kind.second;  // a lambda may not capture a structured binding
          RETURN_IF_ERROR(
              db.ScanPrefix(db.Cf(cf), "", {}, [&](std::string_view key, std::string_view value) {
                // A blob is default's since it was created.
                std::string since;
                internal::StoredBlob blob;
                if (kind == kBlobRef && blob.ParseFromString(std::string(value))) {
                  AppendBigEndian64(&since, static_cast<uint64_t>(blob.create_time_ms()));
                }
                batch.Put(db.Cf(kProjectRefsCf), RefKey(kind, key, kDefaultProject), since);
                if (batch.Count() < 100000) return true;
                written = db.Write(&batch);  // in pieces: a store may be large
                batch.Clear();
                return written.ok();
              }));
          RETURN_IF_ERROR(written);
        }
        return db.WriteSync(&batch);
      }};
  Db::Options versioned = Versioned(options, 2, {RecordFormatMigration(), std::move(projects)});
  ASSIGN_OR_RETURN(auto db,
                   Db::Open(dir + "/db",
                            {kChunksCf, kChunkDataCf, kBlobsCf, kSessionsCf, kSessionPinsCf,
                             kChunkPinsCf, kDatasetsCf, kVersionsCf, kVersionLogCf, kManifestsCf,
                             kEntriesCf, kTagsCf, kDamagedCf, kVersionRequestsCf, kProjectRefsCf},
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
      damaged_(db_->Cf(kDamagedCf)),
      project_refs_(db_->Cf(kProjectRefsCf)) {}

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

absl::StatusOr<v1::UploadSession> ArtifactStore::StartUpload(int64_t ttl_seconds,
                                                             std::string_view project) {
  RETURN_IF_ERROR(ValidateProject(project));
  if (ttl_seconds < 0) {
    return absl::InvalidArgumentError(
        StrCat("ttl_seconds ", std::to_string(ttl_seconds), ": must not be negative"));
  }
  internal::StoredSession session;
  session.set_create_time_ms(NowMs());
  session.set_ttl_ms(ttl_seconds == 0 ? kDefaultSessionTtlMs : ttl_seconds * 1000);
  session.set_expire_time_ms(session.create_time_ms() + session.ttl_ms());
  if (project != kDefaultProject) session.set_project(std::string(project));
  std::string id = NewId();
  rocksdb::WriteBatch batch;
  batch.Put(sessions_, id, session.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  v1::UploadSession out;
  out.set_id(Qualify(project, id));
  out.set_create_time_ms(session.create_time_ms());
  out.set_expire_time_ms(session.expire_time_ms());
  return out;
}

absl::StatusOr<ArtifactStore::OpenSession> ArtifactStore::TouchSession(std::string_view session_id,
                                                                       rocksdb::WriteBatch* batch) {
  if (session_id.empty()) return absl::InvalidArgumentError("session_id: required");
  ASSIGN_OR_RETURN(ScopedName scoped, ParseScoped("session_id", session_id));
  ASSIGN_OR_RETURN(auto value, db_->GetProto<internal::StoredSession>(sessions_, scoped.name));
  // A session of another project is reported as one that does not exist.
  if (!value || (value->project().empty() ? kDefaultProject : value->project()) != scoped.project) {
    return absl::NotFoundError(StrCat("upload session ", session_id.substr(0, 200), " not found"));
  }
  OpenSession session{std::move(scoped.name), *std::move(value), std::move(scoped.project)};
  int64_t now = NowMs();
  if (session.record.expire_time_ms() < now) {
    return absl::NotFoundError(StrCat("upload session ", session_id, " expired"));
  }
  session.record.set_expire_time_ms(now + session.record.ttl_ms());
  batch->Put(sessions_, session.id, session.record.SerializeAsString());
  return session;
}

absl::StatusOr<bool> ArtifactStore::Sees(char kind, const RawDigest& digest,
                                         std::string_view project) const {
  ASSIGN_OR_RETURN(auto value, db_->Get(project_refs_, RefKey(kind, DigestBytes(digest), project)));
  return value.has_value();
}

absl::StatusOr<std::vector<bool>> ArtifactStore::SeesAll(char kind,
                                                         const std::vector<RawDigest>& digests,
                                                         std::string_view project) const {
  std::vector<std::string> keys;
  keys.reserve(digests.size());
  for (const RawDigest& digest : digests)
    keys.push_back(RefKey(kind, DigestBytes(digest), project));
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_->raw()->MultiGet(rocksdb::ReadOptions(), project_refs_, slices.size(), slices.data(),
                       values.data(), statuses.data());
  std::vector<bool> out(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!statuses[i].ok() && !statuses[i].IsNotFound()) {
      return FromRocksStatus(statuses[i], "read project references");
    }
    out[i] = statuses[i].ok();
  }
  return out;
}

void ArtifactStore::AddRef(rocksdb::WriteBatch* batch, char kind, const RawDigest& digest,
                           std::string_view project, int64_t now_ms) {
  std::string since;
  AppendBigEndian64(&since, static_cast<uint64_t>(now_ms));
  batch->Put(project_refs_, RefKey(kind, DigestBytes(digest), project), since);
}

void ArtifactStore::DropRefs(rocksdb::WriteBatch* batch, char kind, std::string_view raw_digest) {
  // Project names are printable ASCII: every key of the content sorts before prefix + 0xff.
  std::string prefix = RefKey(kind, raw_digest, "");
  batch->DeleteRange(project_refs_, prefix, prefix + "\xff");
}

absl::Status ArtifactStore::FinishUpload(std::string_view session_id) {
  std::shared_lock lock(gc_mu_);
  rocksdb::WriteBatch batch;
  ASSIGN_OR_RETURN(OpenSession session, TouchSession(session_id, &batch));
  batch.Clear();
  batch.Delete(sessions_, session.id);
  RETURN_IF_ERROR(
      db_->ScanPrefix(session_pins_, session.id, {}, [&](std::string_view key, std::string_view) {
        batch.Delete(session_pins_, key);
        std::string_view digest = key.substr(session.id.size());
        batch.Delete(chunk_pins_, StrCat(digest, session.id));
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
  ASSIGN_OR_RETURN(OpenSession session, TouchSession(session_id, &batch));
  // A chunk the project sees is stored (a reference is written with the chunk or after it, and
  // deleted with it): one lookup of the project's references answers. Stored but not seen is
  // missing to the project: it must show it has the bytes.
  ASSIGN_OR_RETURN(std::vector<bool> seen, SeesAll(kChunkRef, digests, session.project));
  std::vector<int> missing;
  for (size_t i = 0; i < digests.size(); ++i) {
    if (!seen[i] || IsDamaged(DigestBytes(digests[i]))) {
      missing.push_back(static_cast<int>(i));
      continue;
    }
    batch.Put(session_pins_, StrCat(session.id, DigestBytes(digests[i])), "");
    batch.Put(chunk_pins_, StrCat(DigestBytes(digests[i]), session.id), "");
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
  ASSIGN_OR_RETURN(OpenSession session, TouchSession(session_id, &batch));
  PutChunksResult result;
  int64_t now = NowMs();
  std::set<std::string> synced_dirs;
  std::vector<PendingFile> pending;
  absl::flat_hash_set<std::string> new_in_call, new_to_project;
  std::vector<std::string> healed;
  std::vector<RawDigest> digests;
  for (const ChunkInput& chunk : chunks) digests.push_back(chunk.digest);
  ASSIGN_OR_RETURN(std::vector<bool> seen, SeesAll(kChunkRef, digests, session.project));
  for (size_t i = 0; i < chunks.size(); ++i) {
    const ChunkInput& chunk = chunks[i];
    std::string_view key = DigestBytes(chunk.digest);
    if (!seen[i] && new_to_project.insert(std::string(key)).second) {
      ++result.new_to_project;
      result.bytes_new_to_project += static_cast<int64_t>(chunk.data.size());
    }
    batch.Put(session_pins_, StrCat(session.id, key), "");
    batch.Put(chunk_pins_, StrCat(key, session.id), "");
    // The project sent the bytes (verified above): it sees the chunk from now on.
    if (!seen[i]) AddRef(&batch, kChunkRef, chunk.digest, session.project, now);
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

}  // namespace mlops::artifact
