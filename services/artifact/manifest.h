// Dataset manifests: the Merkle digest of a version (names and paths follow services/common/
// names.h), shared by
// the server (which computes it when storing a version) and the client (which computes it before
// uploading anything, so an unchanged directory costs one lookup).
//
// The digest of a version is the tree hash of its root directory. A directory's hash is the SHA-256
// of its children in path order (a subdirectory `d` sorts as "d/"), each encoded as
//   file:       "f " <mode, octal> " " <size, decimal> " " <name> "\0" <32-byte blob digest>
//   directory:  "d " <name> "\0" <32-byte tree hash>
// so an unchanged subdirectory keeps its hash, and the empty version hashes the empty string.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "services/common/digest.h"
#include "services/common/names.h"

namespace mlops::artifact {

struct ManifestEntry {
  std::string path;
  RawDigest digest{};
  int64_t size = 0;
  uint32_t mode = 0644;
};

// Sorts entries by path and computes the version digest. INVALID_ARGUMENT on a duplicate path or a
// path that is both a file and a directory ("a" and "a/b").
absl::StatusOr<RawDigest> SortAndHashManifest(std::vector<ManifestEntry>* entries);

}  // namespace mlops::artifact
