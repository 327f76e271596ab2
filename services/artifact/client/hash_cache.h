// The client's cache of file digests: (absolute path, size, mtime, inode) -> SHA-256, so that a
// repeat push of an unchanged directory re-hashes nothing. Stored as one text file (one line per
// file, tab-separated, paths escaped) rewritten atomically on Save.
#pragma once

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "services/common/digest.h"

namespace mlops::artifact {

struct FileIdentity {
  int64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t inode = 0;
  bool operator==(const FileIdentity&) const = default;
};

class HashCache {
 public:
  // The default location: $MLOPS_CACHE_DIR, else $XDG_CACHE_HOME/mlops, else ~/.cache/mlops,
  // then "/hash-cache.tsv".
  static std::string DefaultPath();

  explicit HashCache(std::string path) : path_(std::move(path)) {}
  // Reads the cache file; a missing file is an empty cache, a malformed line is skipped.
  absl::Status Load();
  // Writes the cache (temporary file then rename) when it changed.
  absl::Status Save();

  // The digest recorded for `path` when the file still has the same identity.
  bool Lookup(const std::string& path, const FileIdentity& identity, RawDigest* digest) const;
  void Put(const std::string& path, const FileIdentity& identity, const RawDigest& digest);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    FileIdentity identity;
    RawDigest digest;
  };
  std::string path_;
  absl::flat_hash_map<std::string, Entry> entries_;
  bool dirty_ = false;
};

}  // namespace mlops::artifact
