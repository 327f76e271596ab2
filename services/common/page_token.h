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

// One page of a keyed scan: where the previous page ended, and, as items are taken, whether a next
// page exists and the token that resumes there.
//   ASSIGN_OR_RETURN(Pager pager, Pager::Start(key, request.page_size(), 100, 1000,
//                                               request.page_token(), fingerprint));
//   db.Scan...(cf, prefix, pager.after(), [&](key, value) {
//     if (!pager.Take(key)) return false;  // the page is full
//     ...add the item...
//   });
//   response.set_next_page_token(pager.NextToken());
// A scan within a key prefix passes it as `prefix`: tokens then hold only the part after it, and
// after() gives the whole key to resume from.
class Pager {
 public:
  // INVALID_ARGUMENT for a negative page size or a token DecodePageToken refuses.
  static absl::StatusOr<Pager> Start(std::string_view token_key, int page_size, int default_size,
                                     int max_size, std::string_view token, uint64_t fingerprint,
                                     std::string_view prefix = {});
  // Scan from strictly after this key ("" for the first page).
  const std::string& after() const { return after_; }
  bool first_page() const { return after_.empty(); }
  // Before adding the item at `key`: false when the page is already full (a next page exists).
  bool Take(std::string_view key);
  // The item at `key` was examined but is not returned (a filter refused it): the next page
  // starts after it.
  void Pass(std::string_view key);
  // The scan stops before the page is full (a budget of examined items ran out): the next page
  // goes on from the last key taken or passed.
  void Suspend() { more_ = true; }
  int taken() const { return taken_; }
  // The token of the next page; "" when the scan ended within this page.
  std::string NextToken() const;

 private:
  std::string token_key_;
  uint64_t fingerprint_ = 0;
  int page_size_ = 0;
  int taken_ = 0;
  bool more_ = false;
  std::string prefix_, after_, last_;
};

}  // namespace mlops
