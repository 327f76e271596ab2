// JWT bearer tokens (docs/security.md, "OIDC and Kubernetes service accounts"): ID tokens of an
// OpenID Connect provider and Kubernetes service-account tokens, verified offline against the
// provider's JSON Web Key Set. Debian's libjwt 1.10 checks the signature from a PEM key but reads
// no JWKS, so the keys are built here from the JWKS's RSA (n, e) and P-256 (x, y) parameters with
// OpenSSL 3; the claims are checked here too.
//
// A token is accepted when its header names RS256 or ES256 (nothing else, "none" and HMAC
// included: an HMAC keyed with a public key would be forgeable) and a key of the set of that type
// (by `kid` when the header has one), the signature verifies, `iss` equals the issuer, `aud` is or
// contains the audience, `exp` has not passed and `nbf` has (both with the clock skew), and `sub`
// is a valid subject. The caller's grants come from a bindings file (auth.h), by subject and by
// the groups claim.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/auth.h"

namespace mlops {

// A signing key of a JWKS, as a PEM public key.
struct Jwk {
  std::string kid;  // may be empty
  std::string alg;  // "RS256" or "ES256"
  std::string pem;
};

// The usable keys of a JWKS document ({"keys": [...]}): RSA keys of 2,048 bits or more (RS256)
// and EC P-256 keys (ES256), not marked for another use than "sig". Other keys are skipped.
// INVALID_ARGUMENT when the document is not a JWKS or a usable key's parameters are malformed.
absl::StatusOr<std::vector<Jwk>> ParseJwks(std::string_view json);

struct JwtOptions {
  std::string issuer;    // required: the `iss` every token must carry
  std::string audience;  // required: `aud` must be this or a list containing it
  absl::Duration clock_skew = absl::Seconds(60);
  std::string groups_claim = "groups";  // a list of strings (or one string); absent is no group
};

struct JwtClaims {
  std::string subject;
  std::vector<std::string> groups;
  absl::Time expires;
};

// Verifies `token` against `keys` at time `now`. UNAUTHENTICATED naming what failed (never the
// token).
absl::StatusOr<JwtClaims> VerifyJwt(std::string_view token, const std::vector<Jwk>& keys,
                                    const JwtOptions& options, absl::Time now);

// How a JWKS given as a URL is fetched.
struct JwksFetchOptions {
  std::string ca_file;                        // PEM bundle to trust (https); empty: the system's
  std::string bearer_token_file;              // sent as Authorization (the API server's JWKS)
  absl::Duration refresh = absl::Minutes(5);  // fetched again this often
  absl::Duration min_refresh = absl::Seconds(30);  // at most this often for an unknown kid
  absl::Duration timeout = absl::Seconds(10);
};

// The body of GET `url` (http or https), at most 1 MiB. UNAVAILABLE naming the failure (connection,
// TLS, an HTTP status other than 200).
absl::StatusOr<std::string> FetchUrl(const std::string& url, const JwksFetchOptions& options);

// Authenticates JWTs with the keys of a JWKS and the grants of a bindings file. The JWKS is a file
// (re-read when it changes) or an http(s) URL (fetched at start, then every `refresh` by a thread
// of its own, and sooner, at most every `min_refresh`, when a token names a kid it lacks), so a
// key rotation needs no restart either way; a failed reload keeps the keys it had.
class JwtAuthenticator : public Authenticator {
 public:
  // INVALID_ARGUMENT for missing options; the errors of reading (or fetching) and parsing.
  static absl::StatusOr<std::unique_ptr<JwtAuthenticator>> Open(
      const std::string& jwks, JwtOptions options, std::shared_ptr<BindingsFile> bindings,
      JwksFetchOptions fetch = {});
  ~JwtAuthenticator() override;
  absl::StatusOr<Principal> Authenticate(std::string_view token) override;

 private:
  JwtAuthenticator(std::string jwks, JwtOptions options, std::shared_ptr<BindingsFile> bindings,
                   JwksFetchOptions fetch);
  absl::Status LoadKeys();   // from the file
  absl::Status FetchKeys();  // from the URL (without holding mu_ while fetching)
  void RefreshLoop();

  const std::string url_;  // empty for a file
  std::mutex mu_;
  FileWatch jwks_;
  std::vector<Jwk> keys_;
  const JwtOptions options_;
  const std::shared_ptr<BindingsFile> bindings_;
  const JwksFetchOptions fetch_;
  // The URL's refresher.
  std::condition_variable wake_;
  bool stop_ = false;
  bool unknown_kid_ = false;
  std::thread refresher_;
};

// Sends each token to the authenticator for its kind: JWTs (three dot-separated parts) to `jwts`
// when there is one, every other token to `tokens` (the token file). Either may be null.
class ChainAuthenticator : public Authenticator {
 public:
  ChainAuthenticator(std::shared_ptr<Authenticator> tokens, std::shared_ptr<Authenticator> jwts)
      : tokens_(std::move(tokens)), jwts_(std::move(jwts)) {}
  absl::StatusOr<Principal> Authenticate(std::string_view token) override;

 private:
  const std::shared_ptr<Authenticator> tokens_;
  const std::shared_ptr<Authenticator> jwts_;
};

}  // namespace mlops
