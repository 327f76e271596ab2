// Who is calling and what they may do: principals, roles per project, and the token file that
// authenticates bearer tokens (docs/security.md).
//
// A token file stores only the SHA-256 of each token, with the subject it stands for and that
// subject's grants, as YAML:
//
//   tokens:
//     - subject: alice
//       sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
//       grants: {default: editor, vision: viewer}   # project -> viewer | editor | admin
//       operator: false                             # GC, scrub, queues (every project)
//       expires: 2027-06-30T00:00:00Z               # optional, RFC 3339
//
// `mlops auth token create` appends an entry and prints the token once; a token is never stored.
#pragma once

#include <sys/stat.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/projects.h"

namespace mlops {

// Roles in a project, each including the ones before it.
enum class Role : int { kNone = 0, kViewer = 1, kEditor = 2, kAdmin = 3 };
std::string_view RoleName(Role role);
// "viewer", "editor" or "admin"; false for anything else.
bool ParseRole(std::string_view text, Role* role);

// An authenticated caller.
struct Principal {
  std::string subject;
  std::map<std::string, Role, std::less<>> grants;  // project (or "*") -> role
  bool is_operator = false;  // the global operator role: GC, scrub, blobs, queues
  // The caller's role in `project`: the higher of its grant there and its grant on "*".
  Role RoleIn(std::string_view project) const;
};

// One entry of a token file.
struct TokenEntry {
  std::string sha256;  // lowercase hex of SHA-256(token)
  Principal principal;
  absl::Time expires = absl::InfiniteFuture();
};

// A grant to callers authenticated by other means than a token file (JWTs: OIDC users, Kubernetes
// service accounts): by their subject (the JWT's `sub`) or by a group they are in (its groups
// claim). Written in a bindings file:
//
//   bindings:
//     - subject: system:serviceaccount:ml:trainer      # a Kubernetes service account
//       grants: {default: editor}
//     - group: ml-platform                             # everyone in this OIDC group
//       grants: {"*": admin}
//       operator: true
struct Binding {
  std::string subject;  // exactly one of subject and group
  std::string group;
  Principal principal;  // grants and operator (subject unused)
};
// INVALID_ARGUMENT naming the binding at fault (neither or both of subject and group, an unknown
// key or role, a project that breaks the identifier rule).
absl::StatusOr<std::vector<Binding>> ParseBindingsFile(std::string_view text);

// Parses a token file. INVALID_ARGUMENT naming the entry (by its index and subject) at fault:
// a missing subject, a sha256 that is not 64 lowercase hex digits, an unknown role or key, a
// project name that breaks the identifier rule, an unparsable expiry, a hash listed twice.
absl::StatusOr<std::vector<TokenEntry>> ParseTokenFile(std::string_view text);
// The YAML of one entry (a list item), as ParseTokenFile reads it.
std::string FormatTokenEntry(const TokenEntry& entry);

// A new random bearer token: "mlops_" followed by 43 base64url characters (256 bits).
std::string NewToken();
// Lowercase hex of SHA-256(token), the form a token file stores.
std::string TokenHash(std::string_view token);

// A small configuration file read again when it changes (its size, mtime or inode), checked at
// most once a second, so that edits apply without a restart. Not thread-safe: callers lock.
class FileWatch {
 public:
  explicit FileWatch(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  // The file's text; FAILED_PRECONDITION when it cannot be read. What was read counts as seen.
  absl::StatusOr<std::string> Read();
  // True when a second has passed since the last check and the file differs from what was last
  // read (a file being replaced, briefly missing, is not a change).
  bool Changed();

 private:
  const std::string path_;
  struct stat seen_ = {};
  absl::Time last_check_ = absl::InfinitePast();
};

// Verifies bearer tokens; implementations are thread-safe.
class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // UNAUTHENTICATED (never naming the token) for a token it does not accept.
  virtual absl::StatusOr<Principal> Authenticate(std::string_view token) = 0;
};

// The tokens of a token file, re-read when the file changes (its size, mtime or inode; checked
// at most once a second), so that adding or revoking a token needs no restart. A file that no
// longer parses keeps the tokens read before and logs `token_file_invalid`.
class TokenFileAuthenticator : public Authenticator {
 public:
  // FAILED_PRECONDITION when the file cannot be read, INVALID_ARGUMENT when it does not parse.
  static absl::StatusOr<std::unique_ptr<TokenFileAuthenticator>> Open(std::string path);
  absl::StatusOr<Principal> Authenticate(std::string_view token) override;

 private:
  explicit TokenFileAuthenticator(std::string path) : file_(std::move(path)) {}
  absl::Status Load();

  std::mutex mu_;
  FileWatch file_;
  std::map<std::string, TokenEntry, std::less<>> by_hash_;
};

// The bindings of a bindings file, re-read when it changes as a token file is.
class BindingsFile {
 public:
  // FAILED_PRECONDITION when the file cannot be read, INVALID_ARGUMENT when it does not parse.
  static absl::StatusOr<std::unique_ptr<BindingsFile>> Open(std::string path);
  // The principal `subject` is, in the given groups: the highest role of every binding that names
  // the subject or one of the groups, per project; operator when any of them is.
  Principal PrincipalOf(const std::string& subject, const std::vector<std::string>& groups);

 private:
  explicit BindingsFile(std::string path) : file_(std::move(path)) {}
  absl::Status Load();

  std::mutex mu_;
  FileWatch file_;
  std::vector<Binding> bindings_;
};

// Appends `entry` to the token file at `path` (created 0600 with a header when missing), then
// checks that the whole file still parses. INVALID_ARGUMENT when it would not.
absl::Status AppendTokenEntry(const std::string& path, const TokenEntry& entry);

}  // namespace mlops
