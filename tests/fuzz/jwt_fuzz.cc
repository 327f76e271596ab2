// libFuzzer target: JWKS documents and JWT bearer tokens (services/common/oidc.h), which any
// client may send. The first byte picks the parser: a JWKS, or a token verified against a fixed
// key set (an RSA and a P-256 key made once). An accepted token would be a forgery: abort.
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "services/common/oidc.h"

namespace {

std::string PublicPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(size));
  BIO_free(bio);
  EVP_PKEY_free(key);
  return out;
}

const std::vector<mlops::Jwk>& Keys() {
  static const std::vector<mlops::Jwk> keys = {
      {"r1", "RS256", PublicPem(EVP_RSA_gen(2048))},
      {"e1", "ES256", PublicPem(EVP_EC_gen("P-256"))},
  };
  return keys;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 0) {
    (void)mlops::ParseJwks(text);
    return 0;
  }
  mlops::JwtOptions options;
  options.issuer = "https://issuer.example";
  options.audience = "mlops";
  if (mlops::VerifyJwt(text, Keys(), options, absl::Now()).ok()) std::abort();
  return 0;
}
