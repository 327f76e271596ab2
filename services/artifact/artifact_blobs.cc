// ArtifactStore: blobs (commit from chunks, missing, stat, list, pin, read).
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
  ASSIGN_OR_RETURN(OpenSession session, TouchSession(request.session_id(), &batch));
  // What the project sees of the blobs and their chunks, looked up at once.
  std::vector<RawDigest> blob_digests, chunk_digests;
  for (const Parsed& blob : parsed) {
    blob_digests.push_back(blob.digest);
    chunk_digests.insert(chunk_digests.end(), blob.chunks.begin(), blob.chunks.end());
  }
  ASSIGN_OR_RETURN(std::vector<bool> blobs_seen, SeesAll(kBlobRef, blob_digests, session.project));
  ASSIGN_OR_RETURN(std::vector<bool> chunks_seen,
                   SeesAll(kChunkRef, chunk_digests, session.project));
  absl::flat_hash_set<std::string> seen_chunks;
  for (size_t i = 0; i < chunk_digests.size(); ++i) {
    if (chunks_seen[i]) seen_chunks.insert(std::string(DigestBytes(chunk_digests[i])));
  }
  int64_t now = NowMs();
  std::vector<v1::Blob> out;
  absl::flat_hash_set<std::string> touched_chunks;
  for (int i = 0; i < request.blobs_size(); ++i) {
    const v1::BlobManifest& manifest = request.blobs(i);
    const RawDigest& digest = parsed[i].digest;
    // The session pins its blobs too, until the client has referenced them (a dataset version).
    batch.Put(session_pins_, StrCat(session.id, DigestBytes(digest)), "");
    batch.Put(chunk_pins_, StrCat(DigestBytes(digest), session.id), "");
    ASSIGN_OR_RETURN(auto existing, GetBlob(digest));
    // A blob the project sees already is only touched; one stored for other projects only is
    // checked from the project's own chunks like a new one (it must show it has the content).
    if (existing && blobs_seen[static_cast<size_t>(i)]) {
      RETURN_IF_ERROR(CheckNotDamaged(digest, *existing));
      int64_t since = 0;
      RETURN_IF_ERROR(GetBlobIn(digest, session.project, &since).status());
      existing->set_touch_time_ms(now);
      if (request.pin()) existing->set_pinned(true);
      batch.Put(blobs_, DigestBytes(digest), existing->SerializeAsString());
      out.push_back(BlobFromStored(digest, *existing));
      if (since > 0) out.back().set_create_time_ms(since);
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
      // A chunk the project never sent is not stored as far as it can tell.
      if (!record || !seen_chunks.contains(std::string(DigestBytes(chunk)))) {
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
    AddRef(&batch, kBlobRef, digest, session.project, now);
    if (existing) {  // stored for other projects: now this one's too
      RETURN_IF_ERROR(CheckNotDamaged(digest, *existing));
      existing->set_touch_time_ms(now);
      if (request.pin()) existing->set_pinned(true);
      batch.Put(blobs_, DigestBytes(digest), existing->SerializeAsString());
      out.push_back(BlobFromStored(digest, *existing));
      out.back().set_create_time_ms(now);  // for this project, it is created now
      continue;
    }
    batch.Put(blobs_, DigestBytes(digest), stored.SerializeAsString());
    out.push_back(BlobFromStored(digest, stored));
  }
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  counters_.blobs_committed.fetch_add(static_cast<int64_t>(out.size()));
  return out;
}

absl::StatusOr<std::vector<int>> ArtifactStore::FindMissingBlobs(
    const std::vector<RawDigest>& digests, std::string_view project) {
  if (digests.size() > kMaxDigestsPerCall) {
    return absl::InvalidArgumentError(
        StrCat("digests: ", std::to_string(digests.size()), " given, at most 10000 per call"));
  }
  // A blob the project sees is stored (its reference is written with it and deleted with it):
  // one lookup of the project's references answers, and the blob records are read only to look
  // for damaged chunks when there are any.
  ASSIGN_OR_RETURN(std::vector<bool> seen, SeesAll(kBlobRef, digests, project));
  std::vector<int> missing;
  bool any_damaged = damaged_count_.load(std::memory_order_acquire) > 0;
  for (size_t i = 0; i < digests.size(); ++i) {
    if (!seen[i]) {
      missing.push_back(static_cast<int>(i));
    } else if (any_damaged) {
      // A blob with a damaged chunk is missing until an upload of its content heals it.
      ASSIGN_OR_RETURN(auto blob, GetBlob(digests[i]));
      if (!blob || !CheckNotDamaged(digests[i], *blob).ok()) {
        missing.push_back(static_cast<int>(i));
      }
    }
  }
  return missing;
}

absl::StatusOr<std::optional<internal::StoredBlob>> ArtifactStore::GetBlobIn(
    const RawDigest& digest, std::string_view project, int64_t* since) const {
  ASSIGN_OR_RETURN(auto ref,
                   db_->Get(project_refs_, RefKey(kBlobRef, DigestBytes(digest), project)));
  if (!ref) return std::nullopt;
  if (since != nullptr) {
    *since = ref->size() == 8 ? static_cast<int64_t>(ReadBigEndian64(*ref)) : 0;
  }
  return GetBlob(digest);
}

absl::StatusOr<v1::Blob> ArtifactStore::StatBlob(const RawDigest& digest, bool include_chunks,
                                                 std::string_view project) {
  int64_t since = 0;
  ASSIGN_OR_RETURN(auto stored, GetBlobIn(digest, project, &since));
  if (!stored) return absl::NotFoundError(StrCat("blob ", DigestHex(digest), " not found"));
  v1::Blob blob = BlobFromStored(digest, *stored);
  if (since > 0) blob.set_create_time_ms(since);  // when this project first had it
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
  ASSIGN_OR_RETURN(Pager pager, Pager::Start(db_->page_token_key(), request.page_size(), 100, 1000,
                                             request.page_token(), Fingerprint({"blobs"})));
  v1::ListBlobsResponse response;
  RETURN_IF_ERROR(db_->ScanProto<internal::StoredBlob>(
      blobs_, "", pager.after(), [&](std::string_view key, internal::StoredBlob& stored) {
        if (!pager.Take(key)) return false;
        *response.add_blobs() = BlobFromStored(DigestFromBytes(key), stored);
        return true;
      }));
  response.set_next_page_token(pager.NextToken());
  return response;
}

absl::StatusOr<v1::Blob> ArtifactStore::SetBlobPinned(const RawDigest& digest, bool pinned,
                                                      std::string_view project) {
  std::shared_lock lock(gc_mu_);
  int64_t since = 0;
  ASSIGN_OR_RETURN(auto stored, GetBlobIn(digest, project, &since));
  if (!stored) return absl::NotFoundError(StrCat("blob ", DigestHex(digest), " not found"));
  stored->set_pinned(pinned);
  stored->set_touch_time_ms(NowMs());
  rocksdb::WriteBatch batch;
  batch.Put(blobs_, DigestBytes(digest), stored->SerializeAsString());
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  v1::Blob blob = BlobFromStored(digest, *stored);
  if (since > 0) blob.set_create_time_ms(since);
  return blob;
}

absl::Status ArtifactStore::ReadBlob(const RawDigest& digest, int64_t offset, int64_t length,
                                     int64_t* blob_size,
                                     absl::FunctionRef<bool(int64_t, std::string_view)> sink,
                                     std::string_view project) {
  ASSIGN_OR_RETURN(auto stored, GetBlobIn(digest, project));
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

}  // namespace mlops::artifact
