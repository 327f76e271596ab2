// Keys and JWTs made in tests (oidc_test, auth_cli_test): RSA and P-256 keys generated with
// OpenSSL, their JWKS entries, and tokens signed with libjwt as an OIDC provider signs them.
#pragma once

#include <jwt.h>

#include <string>
#include <vector>

namespace mlops::testing {

// A signing key: its private PEM (to sign with) and its JWKS entry (a JSON object).
struct TestKey {
  std::string private_pem;
  std::string jwk;
  jwt_alg_t alg;
};

// type "RSA" (RS256, `rsa_bits`) or "EC" (P-256, ES256), with `kid` in its JWKS entry.
TestKey MakeKey(const std::string& type, const std::string& kid, int rsa_bits = 2048);
// {"keys": [entries...]}
std::string Jwks(const std::vector<std::string>& entries);
// A token of `claims_json` signed with `alg` and `key` (a PEM; for HS256 any bytes; for none
// empty), `kid` in its header when not empty.
std::string Sign(const std::string& claims_json, jwt_alg_t alg, const std::string& key,
                 const std::string& kid);
std::string Sign(const std::string& claims_json, const TestKey& key, const std::string& kid);

}  // namespace mlops::testing
