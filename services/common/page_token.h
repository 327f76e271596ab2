// Opaque page tokens: URL-safe base64 of a mlops.common.v1.PageToken. A token is bound to the
// request that produced it by a fingerprint of the fields that must not change between pages.
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

std::string EncodePageToken(const PageCursor& cursor);
// INVALID_ARGUMENT when the token is malformed or was made for a different request.
absl::StatusOr<PageCursor> DecodePageToken(std::string_view token, uint64_t fingerprint);

// A stable 64-bit fingerprint of the given strings (FNV-1a over length-prefixed parts).
uint64_t Fingerprint(std::initializer_list<std::string_view> parts);

// page_size 0 means `default_size`; negative is INVALID_ARGUMENT; above `max_size` is clamped.
absl::StatusOr<int> NormalizePageSize(int page_size, int default_size, int max_size);

}  // namespace mlops
