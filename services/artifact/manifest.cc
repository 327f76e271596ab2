#include "services/artifact/manifest.h"

#include <algorithm>
#include <memory>

#include "services/common/strings.h"

namespace mlops::artifact {

namespace {

struct Frame {
  std::string name;    // component name ("" for the root)
  std::string prefix;  // "a/b/" for directory a/b, "" for the root
  Sha256 hash;
};

void AppendFileRecord(Sha256& hash, std::string_view name, const ManifestEntry& entry) {
  char mode[16];
  int n = snprintf(mode, sizeof(mode), "%o", entry.mode);
  hash.Update("f ", 2);
  hash.Update(mode, n);
  hash.Update(" ", 1);
  hash.Update(std::to_string(entry.size));
  hash.Update(" ", 1);
  hash.Update(name);
  hash.Update("\0", 1);
  hash.Update(entry.digest.data(), entry.digest.size());
}

}  // namespace

absl::StatusOr<RawDigest> SortAndHashManifest(std::vector<ManifestEntry>* entries) {
  std::sort(entries->begin(), entries->end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.path < b.path; });
  auto is_file = [&](std::string_view path) {
    auto it =
        std::lower_bound(entries->begin(), entries->end(), path,
                         [](const ManifestEntry& e, std::string_view p) { return e.path < p; });
    return it != entries->end() && it->path == path;
  };
  std::vector<std::unique_ptr<Frame>> stack;
  stack.push_back(std::make_unique<Frame>());
  auto pop = [&]() {
    std::unique_ptr<Frame> done = std::move(stack.back());
    stack.pop_back();
    RawDigest digest = done->hash.Final();
    Sha256& parent = stack.back()->hash;
    parent.Update("d ", 2);
    parent.Update(done->name);
    parent.Update("\0", 1);
    parent.Update(digest.data(), digest.size());
  };
  for (size_t i = 0; i < entries->size(); ++i) {
    const ManifestEntry& entry = (*entries)[i];
    if (i > 0 && (*entries)[i - 1].path == entry.path) {
      return absl::InvalidArgumentError(StrCat("path \"", entry.path, "\": listed twice"));
    }
    std::string_view path = entry.path;
    while (stack.size() > 1 && !path.starts_with(stack.back()->prefix)) pop();
    // Open the directories between the innermost open one and the file.
    for (;;) {
      size_t from = stack.back()->prefix.size();
      size_t slash = path.find('/', from);
      if (slash == std::string_view::npos) break;
      auto frame = std::make_unique<Frame>();
      frame->name = std::string(path.substr(from, slash - from));
      frame->prefix = std::string(path.substr(0, slash + 1));
      std::string_view dir = path.substr(0, slash);
      if (is_file(dir)) {
        return absl::InvalidArgumentError(
            StrCat("path \"", dir, "\": is both a file and a directory"));
      }
      stack.push_back(std::move(frame));
    }
    AppendFileRecord(stack.back()->hash, path.substr(stack.back()->prefix.size()), entry);
  }
  while (stack.size() > 1) pop();
  return stack.back()->hash.Final();
}

}  // namespace mlops::artifact
