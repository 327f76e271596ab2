// SHA-256 through OpenSSL (which uses the CPU's SHA extensions when present) and hex digests.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace mlops {

using RawDigest = std::array<uint8_t, 32>;

// Incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t size);
  void Update(std::string_view data) { Update(data.data(), data.size()); }
  // The digest of everything updated so far; the object is reset for reuse.
  RawDigest Final();

 private:
  EVP_MD_CTX* ctx_;
};

RawDigest Sha256Of(const void* data, size_t size);
inline RawDigest Sha256Of(std::string_view data) { return Sha256Of(data.data(), data.size()); }

// 64 lower-case hex characters.
std::string DigestHex(const RawDigest& digest);
// Exactly 64 hex characters (either case) -> the raw digest; false otherwise.
bool ParseDigestHex(std::string_view hex, RawDigest* out);
inline std::string_view DigestBytes(const RawDigest& digest) {
  return std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size());
}
// 32 raw bytes -> digest (the caller checked the size).
RawDigest DigestFromBytes(std::string_view bytes);

}  // namespace mlops
