#include "services/common/page_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "mlops/common/v1/page_token.pb.h"

namespace mlops {

namespace {

constexpr size_t kMacBytes = 16;

std::string Mac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &length);
  return std::string(reinterpret_cast<const char*>(out), kMacBytes);
}

}  // namespace

std::string EncodePageToken(std::string_view key, const PageCursor& cursor) {
  mlops::common::v1::PageToken token;
  token.set_request_fingerprint(cursor.fingerprint);
  token.set_after(cursor.after);
  std::string bytes = token.SerializeAsString();
  bytes += Mac(key, bytes);
  std::string out;
  absl::WebSafeBase64Escape(bytes, &out);
  return out;
}

absl::StatusOr<PageCursor> DecodePageToken(std::string_view key, std::string_view token,
                                           uint64_t fingerprint) {
  std::string bytes;
  if (!absl::WebSafeBase64Unescape(absl::string_view(token.data(), token.size()), &bytes) ||
      bytes.size() < kMacBytes) {
    return absl::InvalidArgumentError("page_token: malformed token");
  }
  std::string_view body = std::string_view(bytes).substr(0, bytes.size() - kMacBytes);
  std::string expected = Mac(key, body);
  if (CRYPTO_memcmp(expected.data(), bytes.data() + body.size(), kMacBytes) != 0) {
    return absl::InvalidArgumentError(
        "page_token: not a token this service issued (altered, or from another server); start "
        "again without a page_token");
  }
  mlops::common::v1::PageToken parsed;
  if (!parsed.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
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

absl::StatusOr<Pager> Pager::Start(std::string_view token_key, int page_size, int default_size,
                                   int max_size, std::string_view token, uint64_t fingerprint,
                                   std::string_view prefix) {
  Pager pager;
  auto size = NormalizePageSize(page_size, default_size, max_size);
  if (!size.ok()) return size.status();
  pager.page_size_ = *size;
  pager.token_key_ = std::string(token_key);
  pager.fingerprint_ = fingerprint;
  pager.prefix_ = std::string(prefix);
  if (!token.empty()) {
    auto cursor = DecodePageToken(token_key, token, fingerprint);
    if (!cursor.ok()) return cursor.status();
    pager.after_ = pager.prefix_ + cursor->after;
  }
  return pager;
}

bool Pager::Take(std::string_view key) {
  if (taken_ == page_size_) {
    more_ = true;
    return false;
  }
  ++taken_;
  Pass(key);
  return true;
}

void Pager::Pass(std::string_view key) {
  if (key.substr(0, prefix_.size()) == prefix_) key.remove_prefix(prefix_.size());
  last_.assign(key);
}

std::string Pager::NextToken() const {
  return more_ ? EncodePageToken(token_key_, {fingerprint_, last_}) : "";
}

}  // namespace mlops
