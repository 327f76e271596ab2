#include "services/artifact/client/hash_cache.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "services/common/strings.h"

namespace mlops::artifact {
namespace {

// Paths may hold any byte but NUL: escape the three that would break a line.
std::string Escape(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (char c : in) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

bool Unescape(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '\\') {
      *out += in[i];
      continue;
    }
    if (++i == in.size()) return false;
    if (in[i] == '\\') {
      *out += '\\';
    } else if (in[i] == 't') {
      *out += '\t';
    } else if (in[i] == 'n') {
      *out += '\n';
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string HashCache::DefaultPath() {
  std::string dir;
  if (const char* v = std::getenv("MLOPS_CACHE_DIR"); v && *v) {
    dir = v;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    dir = StrCat(x, "/mlops");
  } else if (const char* h = std::getenv("HOME"); h && *h) {
    dir = StrCat(h, "/.cache/mlops");
  } else {
    dir = "/tmp/mlops-cache";
  }
  return dir + "/hash-cache.tsv";
}

absl::Status HashCache::Load() {
  std::ifstream in(path_);
  if (!in) return absl::OkStatus();
  std::string line, path;
  while (std::getline(in, line)) {
    // size \t mtime_ns \t inode \t digest \t escaped path
    std::vector<std::string_view> parts;
    std::string_view rest = line;
    for (int i = 0; i < 4; ++i) {
      size_t tab = rest.find('\t');
      if (tab == std::string_view::npos) break;
      parts.push_back(rest.substr(0, tab));
      rest = rest.substr(tab + 1);
    }
    if (parts.size() != 4 || !Unescape(rest, &path)) continue;
    Entry entry;
    char* end = nullptr;
    entry.identity.size = std::strtoll(std::string(parts[0]).c_str(), &end, 10);
    entry.identity.mtime_ns = std::strtoll(std::string(parts[1]).c_str(), &end, 10);
    entry.identity.inode = std::strtoull(std::string(parts[2]).c_str(), &end, 10);
    if (!ParseDigestHex(parts[3], &entry.digest)) continue;
    entries_[path] = entry;
  }
  return absl::OkStatus();
}

absl::Status HashCache::Save() {
  if (!dirty_) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
  std::string tmp = StrCat(path_, ".tmp.", std::to_string(::getpid()));
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return absl::UnavailableError(StrCat("cannot write ", tmp));
    for (const auto& [path, entry] : entries_) {
      out << entry.identity.size << '\t' << entry.identity.mtime_ns << '\t' << entry.identity.inode
          << '\t' << DigestHex(entry.digest) << '\t' << Escape(path) << '\n';
    }
    if (!out.flush()) return absl::UnavailableError(StrCat("cannot write ", tmp));
  }
  std::filesystem::rename(tmp, path_, ec);
  if (ec) return absl::UnavailableError(StrCat("rename ", tmp, ": ", ec.message()));
  dirty_ = false;
  return absl::OkStatus();
}

bool HashCache::Lookup(const std::string& path, const FileIdentity& identity,
                       RawDigest* digest) const {
  auto it = entries_.find(path);
  if (it == entries_.end() || !(it->second.identity == identity)) return false;
  *digest = it->second.digest;
  return true;
}

void HashCache::Put(const std::string& path, const FileIdentity& identity,
                    const RawDigest& digest) {
  Entry& entry = entries_[path];
  if (entry.identity == identity && entry.digest == digest) return;
  entry = {identity, digest};
  dirty_ = true;
}

}  // namespace mlops::artifact
