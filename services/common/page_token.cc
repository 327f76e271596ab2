#include "services/common/page_token.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "mlops/common/v1/page_token.pb.h"

namespace mlops {

std::string EncodePageToken(const PageCursor& cursor) {
  mlops::common::v1::PageToken token;
  token.set_request_fingerprint(cursor.fingerprint);
  token.set_after(cursor.after);
  std::string out;
  absl::WebSafeBase64Escape(token.SerializeAsString(), &out);
  return out;
}

absl::StatusOr<PageCursor> DecodePageToken(std::string_view token, uint64_t fingerprint) {
  std::string bytes;
  mlops::common::v1::PageToken parsed;
  if (!absl::WebSafeBase64Unescape(absl::string_view(token.data(), token.size()), &bytes) ||
      !parsed.ParseFromString(bytes)) {
    return absl::InvalidArgumentError("page_token: malformed token");
  }
  if (parsed.request_fingerprint() != fingerprint) {
    return absl::InvalidArgumentError(
        "page_token: the token belongs to a request with different parameters");
  }
  return PageCursor{parsed.request_fingerprint(), parsed.after()};
}

uint64_t Fingerprint(std::initializer_list<std::string_view> parts) {
  uint64_t hash = 1469598103934665603ull;
  auto mix = [&hash](unsigned char byte) {
    hash ^= byte;
    hash *= 1099511628211ull;
  };
  for (std::string_view part : parts) {
    uint64_t size = part.size();
    for (int i = 0; i < 8; ++i) mix(static_cast<unsigned char>(size >> (8 * i)));
    for (char c : part) mix(static_cast<unsigned char>(c));
  }
  return hash;
}

absl::StatusOr<int> NormalizePageSize(int page_size, int default_size, int max_size) {
  if (page_size < 0) {
    return absl::InvalidArgumentError(absl::StrCat("page_size: must be >= 0, got ", page_size));
  }
  if (page_size == 0) return default_size;
  return page_size > max_size ? max_size : page_size;
}

}  // namespace mlops
