// Opaque page tokens: URL-safe base64 of a mlops.common.v1.PageToken followed by a 16-byte
// HMAC-SHA256 of it under the database's own key (Db::page_token_key), so that a token that was
// altered, or made by another database, is refused instead of resuming somewhere else. A token is
// also bound to the request that produced it by a fingerprint of the fields that must not change
// between pages.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mlops {

struct PageCursor {
  uint64_t fingerprint = 0;
  std::string after;  // resume strictly after this encoded position.
};

std::string EncodePageToken(std::string_view key, const PageCursor& cursor);
// INVALID_ARGUMENT when the token is malformed, fails its authentication (altered, or made with
// another key) or was made for a different request.
absl::StatusOr<PageCursor> DecodePageToken(std::string_view key, std::string_view token,
                                           uint64_t fingerprint);

// A stable 64-bit fingerprint of the given strings (FNV-1a over length-prefixed parts).
uint64_t Fingerprint(std::initializer_list<std::string_view> parts);

// page_size 0 means `default_size`; negative is INVALID_ARGUMENT; above `max_size` is clamped.
absl::StatusOr<int> NormalizePageSize(int page_size, int default_size, int max_size);

}  // namespace mlops
