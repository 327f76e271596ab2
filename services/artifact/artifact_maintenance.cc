// ArtifactStore: maintenance: scrub (and the damaged-chunk marks it leaves), garbage collection.
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
#include "services/artifact/artifact_store.h"
#include "services/artifact/artifact_store_internal.h"
#include "services/artifact/manifest.h"
#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/page_token.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::artifact {

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
      DropRefs(&batch, kBlobRef, dead_blobs[i]);
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
      DropRefs(&batch, kChunkRef, dead_chunks[i]);
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
