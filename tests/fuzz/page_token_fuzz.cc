// libFuzzer target: page tokens (services/common/page_token.h) as a client could send them. Every
// input must be refused or decode to a cursor that encodes back to the same token; a token made
// here with the key decodes to its cursor.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "services/common/page_token.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr std::string_view kKey = "fuzz-page-token-key-0123456789ab";
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const uint64_t fingerprint = mlops::Fingerprint({"experiments", "filter"});
  auto cursor = mlops::DecodePageToken(kKey, text, fingerprint);
  if (cursor.ok() && mlops::EncodePageToken(kKey, *cursor) != text) std::abort();
  // The input as a position to resume after: it must round-trip.
  mlops::PageCursor made{fingerprint, std::string(text)};
  auto back = mlops::DecodePageToken(kKey, mlops::EncodePageToken(kKey, made), fingerprint);
  if (!back.ok() || back->after != made.after) std::abort();
  return 0;
}
