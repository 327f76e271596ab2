// libFuzzer target: names, projects in names, dataset paths and manifests (services/common/names.h,
// projects.h, services/artifact/manifest.h). The input is a list of lines: each is checked as every
// kind of name, split into its project and name, and checked as a dataset path; the lines that are
// valid paths form a manifest to hash. A path accepted must be relative and free of "." and ".."
// components, whatever its bytes; a name split must put back together as it was written (or as
// its canonical spelling) and name the project ProjectOf says.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "services/artifact/manifest.h"
#include "services/common/names.h"
#include "services/common/projects.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<mlops::artifact::ManifestEntry> entries;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    for (auto kind : {mlops::NameKind::kIdentifier, mlops::NameKind::kType, mlops::NameKind::kAlias,
                      mlops::NameKind::kStep, mlops::NameKind::kQueue, mlops::NameKind::kDisplay}) {
      (void)mlops::ValidateName(kind, "name", line);
    }
    if (absl::StatusOr<mlops::ScopedName> scoped = mlops::ParseScoped("name", line); scoped.ok()) {
      if (!mlops::ValidateProject(scoped->project).ok() ||
          mlops::ProjectOf(line) != scoped->project ||
          mlops::Qualify(scoped->project, scoped->name) != mlops::CanonicalName(line) ||
          (scoped->project != "default" && mlops::CanonicalName(line) != line)) {
        std::abort();  // a name that does not say which project it is in
      }
    } else if (!line.starts_with("projects/")) {
      std::abort();  // only a projects/ prefix can be malformed
    }
    if (!mlops::ValidatePath(line).ok()) continue;
    const std::string padded = "/" + std::string(line) + "/";
    if (line.empty() || line.front() == '/' || padded.find("/../") != std::string::npos ||
        padded.find("/./") != std::string::npos || line.find('\0') != std::string_view::npos) {
      std::abort();  // a path that escapes its version was accepted
    }
    mlops::artifact::ManifestEntry entry;
    entry.path = std::string(line);
    entry.size = static_cast<int64_t>(line.size());
    entry.digest[0] = static_cast<uint8_t>(line.size());
    entries.push_back(std::move(entry));
  }
  (void)mlops::artifact::SortAndHashManifest(&entries);
  return 0;
}
