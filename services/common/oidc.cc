#include "services/common/oidc.h"

#include <curl/curl.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/escaping.h"
#include "services/common/channel.h"
#include "services/common/logging.h"
#include "services/common/status.h"

namespace mlops {

namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

constexpr size_t kMaxTokenBytes = 16 * 1024;

absl::StatusOr<std::string> Base64Url(std::string_view text, std::string_view what) {
  std::string out;
  if (!absl::WebSafeBase64Unescape(absl::string_view(text.data(), text.size()), &out)) {
    return absl::InvalidArgumentError(std::string(what) + " is not base64url");
  }
  return out;
}

absl::StatusOr<Struct> JsonObject(std::string_view json, std::string_view what) {
  Struct out;
  if (!google::protobuf::util::JsonStringToMessage(
           google::protobuf::StringPiece(json.data(), json.size()), &out)
           .ok()) {
    return absl::InvalidArgumentError(std::string(what) + " is not a JSON object");
  }
  return out;
}

std::string StringField(const Struct& object, const std::string& key) {
  auto it = object.fields().find(key);
  return it != object.fields().end() && it->second.has_string_value() ? it->second.string_value()
                                                                      : "";
}

struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

// A public key from OpenSSL 3 parameters of `type` ("RSA" or "EC").
absl::StatusOr<Pkey> KeyFromParams(const char* type, OSSL_PARAM_BLD* builder) {
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(builder);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* key = nullptr;
  bool ok = params != nullptr && ctx != nullptr && EVP_PKEY_fromdata_init(ctx) == 1 &&
            EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) == 1;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  if (!ok) return absl::InvalidArgumentError(std::string("not a valid ") + type + " public key");
  return Pkey(key);
}

absl::StatusOr<Pkey> RsaKey(const std::string& n, const std::string& e) {
  BIGNUM* bn_n = BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()),
                           static_cast<int>(n.size()), nullptr);
  BIGNUM* bn_e = BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()),
                           static_cast<int>(e.size()), nullptr);
  OSSL_PARAM_BLD* builder = OSSL_PARAM_BLD_new();
  absl::StatusOr<Pkey> key = absl::InvalidArgumentError("RSA key: n or e malformed");
  if (bn_n != nullptr && bn_e != nullptr && builder != nullptr &&
      OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
      OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1) {
    key = KeyFromParams("RSA", builder);
  }
  OSSL_PARAM_BLD_free(builder);
  BN_free(bn_n);
  BN_free(bn_e);
  return key;
}

absl::StatusOr<Pkey> P256Key(const std::string& x, const std::string& y) {
  if (x.size() != 32 || y.size() != 32) {
    return absl::InvalidArgumentError("EC key: x and y must be 32 bytes each (P-256)");
  }
  std::string point = "\x04" + x + y;  // uncompressed point
  OSSL_PARAM_BLD* builder = OSSL_PARAM_BLD_new();
  absl::StatusOr<Pkey> key = absl::InvalidArgumentError("EC key: malformed");
  if (builder != nullptr &&
      OSSL_PARAM_BLD_push_utf8_string(builder, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
      OSSL_PARAM_BLD_push_octet_string(builder, OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) == 1) {
    key = KeyFromParams("EC", builder);
  }
  OSSL_PARAM_BLD_free(builder);
  return key;
}

std::string Pem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  std::string out;
  if (bio != nullptr && PEM_write_bio_PUBKEY(bio, key) == 1) {
    char* data = nullptr;
    long size = BIO_get_mem_data(bio, &data);
    if (size > 0) out.assign(data, static_cast<size_t>(size));
  }
  BIO_free(bio);
  return out;
}

// The key of one JWKS entry; its pem is empty when the entry is not a usable signing key.
absl::StatusOr<Jwk> ParseKey(const Struct& entry, size_t index) {
  std::string where = "JWKS keys[" + std::to_string(index) + "]";
  Jwk jwk;
  jwk.kid = StringField(entry, "kid");
  std::string kty = StringField(entry, "kty"), use = StringField(entry, "use");
  std::string alg = StringField(entry, "alg");
  if (!use.empty() && use != "sig") return jwk;  // an encryption key
  absl::StatusOr<Pkey> key = absl::InvalidArgumentError("unused");
  if (kty == "RSA" && (alg.empty() || alg == "RS256")) {
    ASSIGN_OR_RETURN(std::string n, Base64Url(StringField(entry, "n"), where + ": n"));
    ASSIGN_OR_RETURN(std::string e, Base64Url(StringField(entry, "e"), where + ": e"));
    key = RsaKey(n, e);
    jwk.alg = "RS256";
  } else if (kty == "EC" && StringField(entry, "crv") == "P-256" &&
             (alg.empty() || alg == "ES256")) {
    ASSIGN_OR_RETURN(std::string x, Base64Url(StringField(entry, "x"), where + ": x"));
    ASSIGN_OR_RETURN(std::string y, Base64Url(StringField(entry, "y"), where + ": y"));
    key = P256Key(x, y);
    jwk.alg = "ES256";
  } else {
    return jwk;  // another algorithm: not used
  }
  if (!key.ok()) {
    return absl::InvalidArgumentError(where + ": " + std::string(key.status().message()));
  }
  if (jwk.alg == "RS256" && EVP_PKEY_get_bits(key->get()) < 2048) {
    return absl::InvalidArgumentError(where + ": RSA keys must have at least 2048 bits");
  }
  jwk.pem = Pem(key->get());
  if (jwk.pem.empty()) return absl::InternalError(where + ": cannot write the key as PEM");
  return jwk;
}

// The strings of a claim that is a string or a list of strings.
std::vector<std::string> Strings(const Struct& claims, const std::string& name) {
  std::vector<std::string> out;
  auto it = claims.fields().find(name);
  if (it == claims.fields().end()) return out;
  if (it->second.has_string_value()) out.push_back(it->second.string_value());
  if (it->second.has_list_value()) {
    for (const Value& item : it->second.list_value().values()) {
      if (item.has_string_value()) out.push_back(item.string_value());
    }
  }
  return out;
}

// A NumericDate claim (seconds since the epoch); false when absent or not a finite number.
bool NumericDate(const Struct& claims, const std::string& name, absl::Time* out) {
  auto it = claims.fields().find(name);
  if (it == claims.fields().end() || !it->second.has_number_value() ||
      !std::isfinite(it->second.number_value()) || std::abs(it->second.number_value()) > 1e11) {
    return false;
  }
  *out = absl::FromUnixSeconds(static_cast<int64_t>(it->second.number_value()));
  return true;
}

absl::Status Refuse(const std::string& why) { return absl::UnauthenticatedError("JWT: " + why); }

}  // namespace

absl::StatusOr<std::vector<Jwk>> ParseJwks(std::string_view json) {
  ASSIGN_OR_RETURN(Struct document, JsonObject(json, "JWKS"));
  auto keys = document.fields().find("keys");
  if (keys == document.fields().end() || !keys->second.has_list_value()) {
    return absl::InvalidArgumentError("JWKS: no \"keys\" list");
  }
  std::vector<Jwk> out;
  const auto& list = keys->second.list_value().values();
  for (int i = 0; i < list.size(); ++i) {
    if (!list[i].has_struct_value()) {
      return absl::InvalidArgumentError("JWKS keys[" + std::to_string(i) + "]: not an object");
    }
    ASSIGN_OR_RETURN(Jwk key, ParseKey(list[i].struct_value(), static_cast<size_t>(i)));
    if (!key.pem.empty()) out.push_back(std::move(key));
  }
  return out;
}

absl::StatusOr<JwtClaims> VerifyJwt(std::string_view token, const std::vector<Jwk>& keys,
                                    const JwtOptions& options, absl::Time now) {
  if (token.size() > kMaxTokenBytes) return Refuse("longer than 16 KiB");
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    size_t dot = token.find('.', start);
    parts.push_back(token.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (parts.size() != 3) return Refuse("not three dot-separated parts");
  absl::StatusOr<std::string> header_json = Base64Url(parts[0], "header");
  if (!header_json.ok()) return Refuse("malformed header");
  absl::StatusOr<Struct> header = JsonObject(*header_json, "header");
  if (!header.ok()) return Refuse("malformed header");
  // The algorithm is checked before libjwt sees the token: libjwt 1.10 would verify "HS256" with
  // the PEM of a public key as the HMAC secret, which anyone can compute.
  const std::string alg = StringField(*header, "alg"), kid = StringField(*header, "kid");
  if (alg != "RS256" && alg != "ES256") {
    return Refuse("algorithm \"" + alg + "\" is not accepted (RS256 or ES256)");
  }
  const std::string text(token);
  bool candidate = false;
  jwt_t* verified = nullptr;
  for (const Jwk& key : keys) {
    // A key without a kid may verify any token of its algorithm.
    if (key.alg != alg || (!kid.empty() && !key.kid.empty() && key.kid != kid)) continue;
    candidate = true;
    if (jwt_decode(&verified, text.c_str(), reinterpret_cast<const unsigned char*>(key.pem.data()),
                   static_cast<int>(key.pem.size())) == 0) {
      break;
    }
    verified = nullptr;
  }
  if (!candidate) return Refuse("no " + alg + " key" + (kid.empty() ? "" : " with kid " + kid));
  if (verified == nullptr) return Refuse("the signature does not verify");
  const bool alg_matches = jwt_get_alg(verified) == jwt_str_alg(alg.c_str());
  jwt_free(verified);
  if (!alg_matches) return Refuse("the signature does not verify");

  absl::StatusOr<std::string> payload = Base64Url(parts[1], "payload");
  if (!payload.ok()) return Refuse("malformed claims");
  absl::StatusOr<Struct> claims = JsonObject(*payload, "claims");
  if (!claims.ok()) return Refuse("malformed claims");
  if (StringField(*claims, "iss") != options.issuer) {
    return Refuse("issued by \"" + StringField(*claims, "iss").substr(0, 200) + "\", not \"" +
                  options.issuer + "\"");
  }
  std::vector<std::string> audiences = Strings(*claims, "aud");
  if (std::find(audiences.begin(), audiences.end(), options.audience) == audiences.end()) {
    return Refuse("not for audience \"" + options.audience + "\"");
  }
  JwtClaims out;
  if (!NumericDate(*claims, "exp", &out.expires)) return Refuse("no valid exp claim");
  if (now > out.expires + options.clock_skew) {
    return Refuse("expired at " +
                  absl::FormatTime(absl::RFC3339_sec, out.expires, absl::UTCTimeZone()));
  }
  absl::Time not_before;
  if (claims->fields().contains("nbf")) {
    if (!NumericDate(*claims, "nbf", &not_before)) return Refuse("nbf is not a date");
    if (now + options.clock_skew < not_before) {
      return Refuse("not valid before " +
                    absl::FormatTime(absl::RFC3339_sec, not_before, absl::UTCTimeZone()));
    }
  }
  out.subject = StringField(*claims, "sub");
  if (out.subject.empty() || out.subject.size() > 256) return Refuse("sub must be 1 to 256 bytes");
  for (char c : out.subject) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return Refuse("sub has a control character");
    }
  }
  out.groups = Strings(*claims, options.groups_claim);
  return out;
}

namespace {

size_t AppendBody(char* data, size_t size, size_t count, void* out) {
  auto* body = static_cast<std::string*>(out);
  if (body->size() + size * count > (1u << 20)) return 0;  // more than 1 MiB: abort the transfer
  body->append(data, size * count);
  return size * count;
}

}  // namespace

absl::StatusOr<std::string> FetchUrl(const std::string& url, const JwksFetchOptions& options) {
  static const bool initialised = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!initialised) return absl::InternalError("libcurl failed to initialise");
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("libcurl: no handle");
  std::string body;
  curl_slist* headers = nullptr;
  if (!options.bearer_token_file.empty()) {
    absl::StatusOr<std::string> token = ReadSmallFile(options.bearer_token_file);
    if (!token.ok()) {
      curl_easy_cleanup(curl);
      return token.status();
    }
    std::string value(*token);
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
    headers = curl_slist_append(headers, ("Authorization: Bearer " + value).c_str());
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options.timeout)));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  if (headers != nullptr) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (!options.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options.ca_file.c_str());
  CURLcode code = curl_easy_perform(curl);
  long http = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (code != CURLE_OK) {
    return absl::UnavailableError("GET " + url + ": " + curl_easy_strerror(code));
  }
  if (http != 200) return absl::UnavailableError("GET " + url + ": HTTP " + std::to_string(http));
  return body;
}

JwtAuthenticator::JwtAuthenticator(std::string jwks, JwtOptions options,
                                   std::shared_ptr<BindingsFile> bindings, JwksFetchOptions fetch)
    : url_(jwks.rfind("http://", 0) == 0 || jwks.rfind("https://", 0) == 0 ? jwks : ""),
      jwks_(jwks),
      options_(std::move(options)),
      bindings_(std::move(bindings)),
      fetch_(std::move(fetch)) {}

JwtAuthenticator::~JwtAuthenticator() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (refresher_.joinable()) refresher_.join();
}

absl::StatusOr<std::unique_ptr<JwtAuthenticator>> JwtAuthenticator::Open(
    const std::string& jwks, JwtOptions options, std::shared_ptr<BindingsFile> bindings,
    JwksFetchOptions fetch) {
  if (options.issuer.empty() || options.audience.empty()) {
    return absl::InvalidArgumentError("JWT authentication needs an issuer and an audience");
  }
  if (bindings == nullptr) {
    return absl::InvalidArgumentError("JWT authentication needs a bindings file for its grants");
  }
  std::unique_ptr<JwtAuthenticator> out(
      new JwtAuthenticator(jwks, std::move(options), std::move(bindings), std::move(fetch)));
  if (out->url_.empty()) {
    std::lock_guard lock(out->mu_);
    RETURN_IF_ERROR(out->LoadKeys());
  } else {
    RETURN_IF_ERROR(out->FetchKeys());
    out->refresher_ = std::thread([raw = out.get()] { raw->RefreshLoop(); });
  }
  return out;
}

namespace {

absl::StatusOr<std::vector<Jwk>> UsableKeys(const std::string& source, const std::string& text) {
  absl::StatusOr<std::vector<Jwk>> keys = ParseJwks(text);
  if (!keys.ok()) {
    return absl::InvalidArgumentError(source + ": " + std::string(keys.status().message()));
  }
  if (keys->empty()) {
    return absl::InvalidArgumentError(source + ": no RS256 or ES256 signing key");
  }
  return keys;
}

}  // namespace

absl::Status JwtAuthenticator::LoadKeys() {
  absl::StatusOr<std::string> text = jwks_.Read();
  if (!text.ok()) {
    return absl::FailedPreconditionError("JWKS file " + std::string(text.status().message()));
  }
  ASSIGN_OR_RETURN(keys_, UsableKeys(jwks_.path(), *text));
  LogInfo("jwks_loaded", {{"source", jwks_.path()}, {"keys", std::to_string(keys_.size())}});
  return absl::OkStatus();
}

absl::Status JwtAuthenticator::FetchKeys() {
  absl::StatusOr<std::string> text = FetchUrl(url_, fetch_);
  if (!text.ok()) return text.status();
  ASSIGN_OR_RETURN(std::vector<Jwk> keys, UsableKeys(url_, *text));
  std::lock_guard lock(mu_);
  keys_ = std::move(keys);
  LogInfo("jwks_loaded", {{"source", url_}, {"keys", std::to_string(keys_.size())}});
  return absl::OkStatus();
}

void JwtAuthenticator::RefreshLoop() {
  absl::Time last = absl::Now();
  std::unique_lock lock(mu_);
  while (!stop_) {
    const absl::Time due = unknown_kid_ ? last + fetch_.min_refresh : last + fetch_.refresh;
    const absl::Time now = absl::Now();
    if (now < due) {
      wake_.wait_for(lock, absl::ToChronoMilliseconds(std::min(due - now, absl::Seconds(1))));
      continue;
    }
    unknown_kid_ = false;
    lock.unlock();
    if (absl::Status status = FetchKeys(); !status.ok()) {
      LogError("jwks_invalid",
               {{"source", url_}, {"error", std::string(status.message())}, {"kept", "previous"}});
    }
    last = absl::Now();
    lock.lock();
  }
}

absl::StatusOr<Principal> JwtAuthenticator::Authenticate(std::string_view token) {
  absl::StatusOr<JwtClaims> claims;
  {
    std::lock_guard lock(mu_);
    if (url_.empty() && jwks_.Changed()) {
      if (absl::Status status = LoadKeys(); !status.ok()) {
        LogError("jwks_invalid", {{"source", jwks_.path()},
                                  {"error", std::string(status.message())},
                                  {"kept", "previous"}});
      }
    }
    claims = VerifyJwt(token, keys_, options_, absl::Now());
    if (!url_.empty() && !claims.ok() &&
        claims.status().message().find("key with kid") != std::string_view::npos) {
      unknown_kid_ = true;  // perhaps a key newer than ours: the refresher fetches soon
      wake_.notify_all();
    }
  }
  if (!claims.ok()) return claims.status();
  return bindings_->PrincipalOf(claims->subject, claims->groups);
}

absl::StatusOr<Principal> ChainAuthenticator::Authenticate(std::string_view token) {
  const bool jwt = std::count(token.begin(), token.end(), '.') == 2;
  const std::shared_ptr<Authenticator>& to = jwt && jwts_ != nullptr ? jwts_ : tokens_;
  if (to == nullptr) return absl::UnauthenticatedError("unknown bearer token");
  return to->Authenticate(token);
}

}  // namespace mlops
