#include "tests/testing/jwt_testing.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace mlops::testing {

namespace {

std::string B64(const unsigned char* data, size_t size) {
  return absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<const char*>(data), size));
}

std::string BigNumParam(EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(key, name, &bn), 1);
  std::string bytes(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(bytes.data()));
  BN_free(bn);
  return B64(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

}  // namespace

TestKey MakeKey(const std::string& type, const std::string& kid, int rsa_bits) {
  EVP_PKEY* key =
      type == "RSA" ? EVP_RSA_gen(static_cast<unsigned int>(rsa_bits)) : EVP_EC_gen("P-256");
  EXPECT_NE(key, nullptr);
  TestKey out;
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  out.private_pem.assign(data, static_cast<size_t>(size));
  BIO_free(bio);
  if (type == "RSA") {
    out.alg = JWT_ALG_RS256;
    out.jwk = absl::StrCat(R"({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": ")", kid,
                           R"(", "n": ")", BigNumParam(key, OSSL_PKEY_PARAM_RSA_N), R"(", "e": ")",
                           BigNumParam(key, OSSL_PKEY_PARAM_RSA_E), R"("})");
  } else {
    out.alg = JWT_ALG_ES256;
    unsigned char point[65];
    size_t length = 0;
    EXPECT_EQ(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point),
                                              &length),
              1);
    EXPECT_EQ(length, 65u);
    out.jwk = absl::StrCat(R"({"kty": "EC", "crv": "P-256", "kid": ")", kid, R"(", "x": ")",
                           B64(point + 1, 32), R"(", "y": ")", B64(point + 33, 32), R"("})");
  }
  EVP_PKEY_free(key);
  return out;
}

std::string Jwks(const std::vector<std::string>& entries) {
  std::string out = R"({"keys": [)";
  for (size_t i = 0; i < entries.size(); ++i) out += (i ? ", " : "") + entries[i];
  return out + "]}";
}

std::string Sign(const std::string& claims_json, jwt_alg_t alg, const std::string& key,
                 const std::string& kid) {
  jwt_t* jwt = nullptr;
  EXPECT_EQ(jwt_new(&jwt), 0);
  EXPECT_EQ(jwt_add_grants_json(jwt, claims_json.c_str()), 0);
  if (!kid.empty()) {
    EXPECT_EQ(jwt_add_header(jwt, "kid", kid.c_str()), 0);
  }
  EXPECT_EQ(jwt_set_alg(jwt, alg,
                        key.empty() ? nullptr : reinterpret_cast<const unsigned char*>(key.data()),
                        static_cast<int>(key.size())),
            0);
  char* encoded = jwt_encode_str(jwt);
  std::string out = encoded == nullptr ? "" : encoded;
  free(encoded);
  jwt_free(jwt);
  return out;
}

std::string Sign(const std::string& claims_json, const TestKey& key, const std::string& kid) {
  return Sign(claims_json, key.alg, key.private_pem, kid);
}

}  // namespace mlops::testing
