// libFuzzer target: token files (services/common/auth.h), which an operator edits by hand and the
// server reloads while it runs. Every entry accepted must format (as `mlops auth token create`
// appends it) to YAML that parses back to the same entry.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "services/common/auth.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto entries = mlops::ParseTokenFile(text);
  if (!entries.ok()) return 0;
  for (const auto& entry : *entries) {
    auto again = mlops::ParseTokenFile("tokens:\n" + mlops::FormatTokenEntry(entry));
    if (!again.ok() || again->size() != 1) std::abort();
    const auto& back = again->front();
    if (back.sha256 != entry.sha256 || back.principal.subject != entry.principal.subject ||
        back.principal.grants != entry.principal.grants ||
        back.principal.is_operator != entry.principal.is_operator ||
        back.expires != entry.expires) {
      std::abort();
    }
  }
  return 0;
}
