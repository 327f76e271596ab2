#include "services/common/auth.h"

#include <fcntl.h>
#include <google/protobuf/stubs/common.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/escaping.h"
#include "services/common/digest.h"
#include "services/common/logging.h"
#include "services/common/names.h"

namespace mlops {

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kNone:
      return "none";
    case Role::kViewer:
      return "viewer";
    case Role::kEditor:
      return "editor";
    case Role::kAdmin:
      return "admin";
  }
  return "none";
}

bool ParseRole(std::string_view text, Role* role) {
  for (Role candidate : {Role::kViewer, Role::kEditor, Role::kAdmin}) {
    if (text == RoleName(candidate)) {
      *role = candidate;
      return true;
    }
  }
  return false;
}

Role Principal::RoleIn(std::string_view project) const {
  Role role = Role::kNone;
  if (auto it = grants.find(project); it != grants.end()) role = it->second;
  if (auto it = grants.find(kEveryProject); it != grants.end() && it->second > role) {
    role = it->second;
  }
  return role;
}

namespace {

bool IsLowerHex64(std::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::StatusOr<TokenEntry> ParseEntry(const YAML::Node& node, size_t index) {
  std::string where = "tokens[" + std::to_string(index) + "]";
  if (!node.IsMap()) return absl::InvalidArgumentError(where + ": must be a mapping");
  TokenEntry entry;
  if (node["subject"] && node["subject"].IsScalar()) {
    entry.principal.subject = node["subject"].Scalar();
    where += " (subject " + entry.principal.subject + ")";
  }
  for (const auto& item : node) {
    std::string key = item.first.Scalar();
    if (key != "subject" && key != "sha256" && key != "grants" && key != "operator" &&
        key != "expires") {
      return absl::InvalidArgumentError(where + ": unknown key \"" + key +
                                        "\" (allowed: subject, sha256, grants, operator, expires)");
    }
  }
  const std::string& subject = entry.principal.subject;
  if (subject.empty() || subject.size() > 256) {
    return absl::InvalidArgumentError(where + ": subject must be 1 to 256 bytes");
  }
  for (char c : subject) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(where + ": subject has a control character");
    }
  }
  // Subjects reach audit entries and logs as proto3 strings (found with the token_file fuzz
  // target: a subject of invalid UTF-8 did not survive being written back).
  if (!google::protobuf::internal::IsStructurallyValidUTF8(subject.data(),
                                                           static_cast<int>(subject.size()))) {
    return absl::InvalidArgumentError(where + ": subject is not valid UTF-8");
  }
  if (!node["sha256"] || !node["sha256"].IsScalar() || !IsLowerHex64(node["sha256"].Scalar())) {
    return absl::InvalidArgumentError(where +
                                      ": sha256 must be 64 lowercase hex digits (the SHA-256 of "
                                      "the token, as `mlops auth token create` writes it)");
  }
  entry.sha256 = node["sha256"].Scalar();
  if (const YAML::Node& grants = node["grants"]; grants) {
    if (!grants.IsMap()) {
      return absl::InvalidArgumentError(where + ": grants must map projects to roles");
    }
    for (const auto& grant : grants) {
      std::string project = grant.first.Scalar();
      if (project != kEveryProject) {
        if (absl::Status valid = ValidateName(NameKind::kIdentifier, "project", project);
            !valid.ok()) {
          return absl::InvalidArgumentError(where + ": " + std::string(valid.message()));
        }
      }
      Role role;
      if (!grant.second.IsScalar() || !ParseRole(grant.second.Scalar(), &role)) {
        return absl::InvalidArgumentError(where + ": grant on project \"" + project +
                                          "\" must be viewer, editor or admin");
      }
      entry.principal.grants[project] = role;
    }
  }
  if (const YAML::Node& op = node["operator"]; op) {
    if (!op.IsScalar() || (op.Scalar() != "true" && op.Scalar() != "false")) {
      return absl::InvalidArgumentError(where + ": operator must be true or false");
    }
    entry.principal.is_operator = op.Scalar() == "true";
  }
  if (const YAML::Node& expires = node["expires"]; expires) {
    std::string error;
    if (!expires.IsScalar() ||
        !absl::ParseTime(absl::RFC3339_full, expires.Scalar(), &entry.expires, &error)) {
      return absl::InvalidArgumentError(where +
                                        ": expires must be an RFC 3339 time "
                                        "(2027-06-30T00:00:00Z)");
    }
  }
  return entry;
}

}  // namespace

absl::StatusOr<std::vector<TokenEntry>> ParseTokenFile(std::string_view text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(std::string("token file: not YAML: ") + e.what());
  }
  std::vector<TokenEntry> entries;
  if (root.IsNull()) return entries;
  if (!root.IsMap() || (root.size() != 1 || !root["tokens"])) {
    return absl::InvalidArgumentError("token file: must be a mapping with one key, tokens");
  }
  const YAML::Node& tokens = root["tokens"];
  if (tokens.IsNull()) return entries;
  if (!tokens.IsSequence()) return absl::InvalidArgumentError("token file: tokens must be a list");
  std::set<std::string> seen;
  for (size_t i = 0; i < tokens.size(); ++i) {
    absl::StatusOr<TokenEntry> entry;
    try {
      entry = ParseEntry(tokens[i], i);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError("token file: tokens[" + std::to_string(i) +
                                        "]: " + e.what());
    }
    if (!entry.ok())
      return absl::InvalidArgumentError("token file: " + std::string(entry.status().message()));
    if (!seen.insert(entry->sha256).second) {
      return absl::InvalidArgumentError("token file: tokens[" + std::to_string(i) +
                                        "]: the same sha256 is listed twice");
    }
    entries.push_back(std::move(*entry));
  }
  return entries;
}

std::string FormatTokenEntry(const TokenEntry& entry) {
  YAML::Emitter out;
  out << YAML::BeginSeq << YAML::BeginMap;
  out << YAML::Key << "subject" << YAML::Value << YAML::DoubleQuoted << entry.principal.subject;
  out << YAML::Key << "sha256" << YAML::Value << entry.sha256;
  out << YAML::Key << "grants" << YAML::Value << YAML::Flow << YAML::BeginMap;
  for (const auto& [project, role] : entry.principal.grants) {
    out << YAML::Key << YAML::DoubleQuoted << project << YAML::Value << std::string(RoleName(role));
  }
  out << YAML::EndMap;
  out << YAML::Key << "operator" << YAML::Value << entry.principal.is_operator;
  if (entry.expires != absl::InfiniteFuture()) {
    out << YAML::Key << "expires" << YAML::Value
        << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", entry.expires, absl::UTCTimeZone());
  }
  out << YAML::EndMap << YAML::EndSeq;
  return std::string(out.c_str()) + "\n";
}

std::string NewToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) Fatal("RAND_bytes failed");
  std::string out = "mlops_" + absl::WebSafeBase64Escape(absl::string_view(
                                   reinterpret_cast<const char*>(bytes), sizeof(bytes)));
  OPENSSL_cleanse(bytes, sizeof(bytes));
  return out;
}

std::string TokenHash(std::string_view token) { return DigestHex(Sha256Of(token)); }

absl::StatusOr<std::unique_ptr<TokenFileAuthenticator>> TokenFileAuthenticator::Open(
    std::string path) {
  std::unique_ptr<TokenFileAuthenticator> out(new TokenFileAuthenticator(std::move(path)));
  struct stat st;
  if (stat(out->path_.c_str(), &st) != 0) {
    return absl::FailedPreconditionError("token file " + out->path_ + ": cannot read it");
  }
  std::lock_guard lock(out->mu_);
  if (absl::Status status = out->Load(st); !status.ok()) return status;
  return out;
}

absl::Status TokenFileAuthenticator::Load(const struct stat& st) {
  std::ifstream in(path_);
  if (!in) return absl::FailedPreconditionError("token file " + path_ + ": cannot read it");
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::vector<TokenEntry>> entries = ParseTokenFile(text.str());
  if (!entries.ok()) {
    return absl::InvalidArgumentError(path_ + ": " + std::string(entries.status().message()));
  }
  by_hash_.clear();
  for (TokenEntry& entry : *entries) {
    std::string hash = entry.sha256;
    by_hash_.emplace(std::move(hash), std::move(entry));
  }
  loaded_ = st;
  LogInfo("token_file_loaded", {{"path", path_}, {"tokens", std::to_string(by_hash_.size())}});
  return absl::OkStatus();
}

void TokenFileAuthenticator::MaybeReload() {
  absl::Time now = absl::Now();
  if (now - last_check_ < absl::Seconds(1)) return;
  last_check_ = now;
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) return;  // a file being replaced: keep what was read
  if (st.st_ino == loaded_.st_ino && st.st_size == loaded_.st_size &&
      st.st_mtim.tv_sec == loaded_.st_mtim.tv_sec &&
      st.st_mtim.tv_nsec == loaded_.st_mtim.tv_nsec) {
    return;
  }
  if (absl::Status status = Load(st); !status.ok()) {
    loaded_ = st;  // reported once per change
    LogError("token_file_invalid",
             {{"path", path_}, {"error", std::string(status.message())}, {"kept", "previous"}});
  }
}

absl::StatusOr<Principal> TokenFileAuthenticator::Authenticate(std::string_view token) {
  std::string hash = TokenHash(token);
  std::lock_guard lock(mu_);
  MaybeReload();
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return absl::UnauthenticatedError("unknown bearer token");
  if (absl::Now() >= it->second.expires) {
    return absl::UnauthenticatedError(
        "the bearer token of " + it->second.principal.subject + " expired at " +
        absl::FormatTime(absl::RFC3339_sec, it->second.expires, absl::UTCTimeZone()));
  }
  return it->second.principal;
}

absl::Status AppendTokenEntry(const std::string& path, const TokenEntry& entry) {
  std::string existing;
  {
    std::ifstream in(path);
    if (in) {
      std::stringstream text;
      text << in.rdbuf();
      existing = text.str();
    }
  }
  std::string header;
  if (existing.find_first_not_of(" \t\r\n") == std::string::npos) {
    header =
        "# mlops token file (docs/security.md): the SHA-256 of each token, never the token.\n"
        "tokens:\n";
    existing.clear();
  } else if (existing.back() != '\n') {
    existing += "\n";
  }
  std::string text = existing + header + FormatTokenEntry(entry);
  if (absl::StatusOr<std::vector<TokenEntry>> parsed = ParseTokenFile(text); !parsed.ok()) {
    return absl::InvalidArgumentError(
        "appending to " + path + " would not parse: " + std::string(parsed.status().message()));
  }
  // Written beside the file and renamed over it, so that a server reloading it never reads half.
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::FailedPreconditionError("cannot write " + tmp);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n <= 0) {
      close(fd);
      unlink(tmp.c_str());
      return absl::FailedPreconditionError("cannot write " + tmp);
    }
    done += static_cast<size_t>(n);
  }
  fsync(fd);
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    unlink(tmp.c_str());
    return absl::FailedPreconditionError("cannot rename " + tmp + " to " + path);
  }
  return absl::OkStatus();
}

}  // namespace mlops
