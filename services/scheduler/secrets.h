// Secret values for the steps' `secretEnv` (docs/pipelines.md, "Secrets"): where they come from,
// the version that stands for a value in step fingerprints, and the redaction of values from the
// logs a step writes. Values live only in memory and in the environment of the step's process;
// specs, run records, fingerprints, logs and metrics hold references and versions.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace mlops::scheduler {

struct SecretValue {
  std::string value;
  // Changes when the value does and tells nothing of it: SecretVersion below.
  std::string version;
};

// A source of secrets; implementations are thread-safe (secret_stores.h: a secrets file, the
// Kubernetes Secrets of a namespace).
class SecretStore {
 public:
  virtual ~SecretStore() = default;
  // Where values come from, for messages: "secrets file /etc/mlops/secrets.yaml".
  virtual std::string source() const = 0;
  // The value of `key` of secret `secret`. NOT_FOUND naming the secret or the key (never a value);
  // FAILED_PRECONDITION or UNAVAILABLE when the source cannot be read now.
  virtual absl::StatusOr<SecretValue> Get(const std::string& secret, const std::string& key) = 0;
};

// The version of a secret's value: the first 16 bytes of HMAC-SHA256 keyed with `version_key` (a
// random key of the scheduler's, never shown) over the secret's name, key and value, in hex. Equal
// values give equal versions under one key; without the key a version cannot be tested against a
// guessed value.
std::string SecretVersion(std::string_view version_key, std::string_view secret,
                          std::string_view key, std::string_view value);

// The version key at `path`: 32 random bytes, created (mode 0600) when the file is missing.
// FAILED_PRECONDITION when it cannot be read or created.
absl::StatusOr<std::string> LoadOrCreateVersionKey(const std::string& path);

// A value to hide and what stands in its place ("[redacted: DB_PASSWORD]").
struct Redaction {
  std::string value;
  std::string replacement;
};

// Replaces every occurrence of the values in a stream of text that arrives in pieces (a match may
// span pieces), exactly as a replacement over the whole text would: where values overlap, the
// earliest match wins, then the longest. Only a tail that may still become a value is held back
// (at most the longest value's length minus one byte). Empty values are ignored.
class Redactor {
 public:
  explicit Redactor(std::vector<Redaction> redactions);
  bool empty() const { return redactions_.empty(); }
  // The text that is final so far.
  std::string Feed(std::string_view data);
  // The rest, at the end of the stream.
  std::string Finish();

 private:
  std::string Drain(bool final);
  // The first position at or after `from` whose text to the end is a proper prefix of a value.
  size_t HoldFrom(size_t from) const;
  std::vector<Redaction> redactions_;
  size_t longest_ = 0;
  std::string pending_;
};

// Rewrites `path` with the values redacted (through a temporary file renamed over it, keeping its
// mode). OK without change when there is nothing to redact or no file.
absl::Status RedactFile(const std::string& path, const std::vector<Redaction>& redactions);

}  // namespace mlops::scheduler
