// What the files of ArtifactStore share (artifact_store.cc, artifact_blobs.cc,
// artifact_datasets.cc, artifact_maintenance.cc): column family names, key layouts and small
// helpers. Not part of the store's interface.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mlops/artifact/internal/storage.pb.h"
#include "mlops/artifact/v1/artifact.pb.h"
#include "services/common/db.h"
#include "services/common/digest.h"

namespace mlops::artifact {

inline constexpr char kChunksCf[] = "chunks";
inline constexpr char kChunkDataCf[] = "chunk_data";
inline constexpr char kBlobsCf[] = "blobs";
inline constexpr char kSessionsCf[] = "sessions";
inline constexpr char kSessionPinsCf[] = "session_pins";
inline constexpr char kChunkPinsCf[] = "chunk_pins";
inline constexpr char kDatasetsCf[] = "datasets";
inline constexpr char kVersionsCf[] = "versions";
inline constexpr char kVersionRequestsCf[] = "version_requests";  // dataset \0 request id -> digest
inline constexpr char kVersionLogCf[] = "version_log";
inline constexpr char kManifestsCf[] = "manifests";
inline constexpr char kEntriesCf[] = "entries";
inline constexpr char kTagsCf[] = "tags";
inline constexpr char kDamagedCf[] = "damaged";
// kind ('c' chunk, 'b' blob) + raw digest + project -> "": the projects that may see the content
// (uploaded it, or reference it); see ArtifactStore.
inline constexpr char kProjectRefsCf[] = "project_refs";
inline constexpr char kChunkRef = 'c';
inline constexpr char kBlobRef = 'b';

inline constexpr int64_t kDefaultSessionTtlMs = 24LL * 3600 * 1000;
inline constexpr int64_t kDefaultGraceMs = 3600LL * 1000;
inline constexpr int64_t kReadPieceBytes = 1 << 20;
inline constexpr char kLatestTag[] = "latest";
inline constexpr size_t kMaxReportedDigests = 1000;

// errno after a failed system call on `path` as a status: RESOURCE_EXHAUSTED when the disk is
// full, else UNAVAILABLE.
std::string ErrnoMessage(std::string_view what, const std::string& path);
absl::Status ErrnoStatus(std::string_view what, const std::string& path);
// A chunks record: inline flag, size, last touch.
std::string EncodeChunkRecord(bool inline_data, int64_t size, int64_t touch_ms);
// Keys: every dataset key starts with the dataset's name in order-preserving form.
std::string DatasetPrefix(std::string_view dataset);
std::string VersionKey(std::string_view dataset, const RawDigest& digest);
// Newest first: the complement of the version's sequence number in its dataset.
std::string VersionLogKey(std::string_view dataset, int64_t sequence, const RawDigest& digest);
std::string EntryKey(const RawDigest& version, std::string_view path);
std::string TagKey(std::string_view dataset, std::string_view tag);
// A project_refs key; with an empty project, the prefix of every project's key of the content.
std::string RefKey(char kind, std::string_view raw_digest, std::string_view project);
// INVALID_ARGUMENT naming `field` unless `hex` is 64 hex characters.
absl::StatusOr<RawDigest> ParseDigestField(std::string_view field, std::string_view hex);
bool IsHex(std::string_view s);
// A tag is an identifier that does not look like a digest. INVALID_ARGUMENT.
absl::Status ValidateTag(std::string_view tag);
absl::Status FsyncPath(const std::string& path);
// An entry record (key: version digest + path) as the API's VersionEntry; DATA_LOSS when the record
// does not parse.
absl::StatusOr<v1::VersionEntry> EntryFromStored(const Db& db, rocksdb::ColumnFamilyHandle* cf,
                                                 std::string_view key, std::string_view value);

}  // namespace mlops::artifact
