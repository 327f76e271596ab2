#include "services/common/auth.h"

#include <fcntl.h>
#include <google/protobuf/stubs/common.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/escaping.h"
#include "services/common/digest.h"
#include "services/common/logging.h"
#include "services/common/names.h"
#include "services/common/status.h"
#include "services/common/yaml_list.h"

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

// A subject: 1 to 256 bytes of UTF-8 without control characters.
absl::Status ValidateSubject(const std::string& where, std::string_view subject) {
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
  return absl::OkStatus();
}

// Every key of `node` is one of `allowed` (listed in the error).
absl::Status CheckKeys(const std::string& where, const YAML::Node& node,
                       std::initializer_list<std::string_view> allowed) {
  for (const auto& item : node) {
    std::string key = item.first.Scalar();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string names;
      for (std::string_view name : allowed)
        names += (names.empty() ? "" : ", ") + std::string(name);
      return absl::InvalidArgumentError(where + ": unknown key \"" + key + "\" (allowed: " + names +
                                        ")");
    }
  }
  return absl::OkStatus();
}

// `grants` (project -> role) and `operator` of an entry into `principal`.
absl::Status ParseGrants(const std::string& where, const YAML::Node& node, Principal* principal) {
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
      principal->grants[project] = role;
    }
  }
  if (const YAML::Node& op = node["operator"]; op) {
    if (!op.IsScalar() || (op.Scalar() != "true" && op.Scalar() != "false")) {
      return absl::InvalidArgumentError(where + ": operator must be true or false");
    }
    principal->is_operator = op.Scalar() == "true";
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenEntry> ParseEntry(const YAML::Node& node, size_t index) {
  std::string where = "tokens[" + std::to_string(index) + "]";
  if (!node.IsMap()) return absl::InvalidArgumentError(where + ": must be a mapping");
  TokenEntry entry;
  if (node["subject"] && node["subject"].IsScalar()) {
    entry.principal.subject = node["subject"].Scalar();
    where += " (subject " + entry.principal.subject + ")";
  }
  RETURN_IF_ERROR(CheckKeys(where, node, {"subject", "sha256", "grants", "operator", "expires"}));
  RETURN_IF_ERROR(ValidateSubject(where, entry.principal.subject));
  if (!node["sha256"] || !node["sha256"].IsScalar() || !IsLowerHex64(node["sha256"].Scalar())) {
    return absl::InvalidArgumentError(where +
                                      ": sha256 must be 64 lowercase hex digits (the SHA-256 of "
                                      "the token, as `mlops auth token create` writes it)");
  }
  entry.sha256 = node["sha256"].Scalar();
  RETURN_IF_ERROR(ParseGrants(where, node, &entry.principal));
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

absl::StatusOr<Binding> ParseBinding(const YAML::Node& node, size_t index) {
  std::string where = "bindings[" + std::to_string(index) + "]";
  if (!node.IsMap()) return absl::InvalidArgumentError(where + ": must be a mapping");
  RETURN_IF_ERROR(CheckKeys(where, node, {"subject", "group", "grants", "operator"}));
  Binding binding;
  const bool has_subject = node["subject"].IsDefined(), has_group = node["group"].IsDefined();
  if (has_subject == has_group || !node[has_subject ? "subject" : "group"].IsScalar()) {
    return absl::InvalidArgumentError(where + ": needs either subject or group");
  }
  (has_subject ? binding.subject : binding.group) =
      node[has_subject ? "subject" : "group"].Scalar();
  where += has_subject ? " (subject " + binding.subject + ")" : " (group " + binding.group + ")";
  RETURN_IF_ERROR(ValidateSubject(where, has_subject ? binding.subject : binding.group));
  RETURN_IF_ERROR(ParseGrants(where, node, &binding.principal));
  return binding;
}

}  // namespace

absl::StatusOr<std::vector<TokenEntry>> ParseTokenFile(std::string_view text) {
  ASSIGN_OR_RETURN(std::vector<TokenEntry> entries,
                   ParseListFile<TokenEntry>(text, "token", "tokens", ParseEntry));
  std::set<std::string> seen;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!seen.insert(entries[i].sha256).second) {
      return absl::InvalidArgumentError("token file: tokens[" + std::to_string(i) +
                                        "]: the same sha256 is listed twice");
    }
  }
  return entries;
}

absl::StatusOr<std::vector<Binding>> ParseBindingsFile(std::string_view text) {
  return ParseListFile<Binding>(text, "bindings", "bindings", ParseBinding);
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

absl::StatusOr<std::string> FileWatch::Read() {
  // stat before reading: a file replaced in between is read new and seen old, so read again.
  struct stat st;
  if (stat(path_.c_str(), &st) != 0)
    return absl::FailedPreconditionError(path_ + ": cannot read it");
  std::ifstream in(path_);
  if (!in) {
    return absl::FailedPreconditionError(path_ + ": cannot read it");
  }
  std::stringstream text;
  text << in.rdbuf();
  seen_ = st;
  return text.str();
}

bool FileWatch::Changed() {
  absl::Time now = absl::Now();
  if (now - last_check_ < absl::Seconds(1)) return false;
  last_check_ = now;
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) return false;  // a file being replaced: keep what was read
  return st.st_ino != seen_.st_ino || st.st_size != seen_.st_size ||
         st.st_mtim.tv_sec != seen_.st_mtim.tv_sec || st.st_mtim.tv_nsec != seen_.st_mtim.tv_nsec;
}

namespace {

// Loads `file` into `load` (which parses and swaps in), or keeps what was loaded before and logs
// `event` once per change when the new text does not parse.
template <typename LoadFn>
void ReloadIfChanged(FileWatch& file, const char* event, LoadFn load) {
  if (!file.Changed()) return;
  if (absl::Status status = load(); !status.ok()) {
    LogError(
        event,
        {{"path", file.path()}, {"error", std::string(status.message())}, {"kept", "previous"}});
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenFileAuthenticator>> TokenFileAuthenticator::Open(
    std::string path) {
  std::unique_ptr<TokenFileAuthenticator> out(new TokenFileAuthenticator(std::move(path)));
  std::lock_guard lock(out->mu_);
  if (absl::Status status = out->Load(); !status.ok()) return status;
  return out;
}

absl::Status TokenFileAuthenticator::Load() {
  absl::StatusOr<std::string> text = file_.Read();
  if (!text.ok())
    return absl::FailedPreconditionError("token file " + std::string(text.status().message()));
  absl::StatusOr<std::vector<TokenEntry>> entries = ParseTokenFile(*text);
  if (!entries.ok()) {
    return absl::InvalidArgumentError(file_.path() + ": " +
                                      std::string(entries.status().message()));
  }
  by_hash_.clear();
  for (TokenEntry& entry : *entries) {
    std::string hash = entry.sha256;
    by_hash_.emplace(std::move(hash), std::move(entry));
  }
  LogInfo("token_file_loaded",
          {{"path", file_.path()}, {"tokens", std::to_string(by_hash_.size())}});
  return absl::OkStatus();
}

absl::StatusOr<Principal> TokenFileAuthenticator::Authenticate(std::string_view token) {
  std::string hash = TokenHash(token);
  std::lock_guard lock(mu_);
  ReloadIfChanged(file_, "token_file_invalid", [this] { return Load(); });
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return absl::UnauthenticatedError("unknown bearer token");
  if (absl::Now() >= it->second.expires) {
    return absl::UnauthenticatedError(
        "the bearer token of " + it->second.principal.subject + " expired at " +
        absl::FormatTime(absl::RFC3339_sec, it->second.expires, absl::UTCTimeZone()));
  }
  return it->second.principal;
}

absl::StatusOr<std::unique_ptr<BindingsFile>> BindingsFile::Open(std::string path) {
  std::unique_ptr<BindingsFile> out(new BindingsFile(std::move(path)));
  std::lock_guard lock(out->mu_);
  if (absl::Status status = out->Load(); !status.ok()) return status;
  return out;
}

absl::Status BindingsFile::Load() {
  absl::StatusOr<std::string> text = file_.Read();
  if (!text.ok()) {
    return absl::FailedPreconditionError("bindings file " + std::string(text.status().message()));
  }
  absl::StatusOr<std::vector<Binding>> bindings = ParseBindingsFile(*text);
  if (!bindings.ok()) {
    return absl::InvalidArgumentError(file_.path() + ": " +
                                      std::string(bindings.status().message()));
  }
  bindings_ = std::move(*bindings);
  LogInfo("bindings_file_loaded",
          {{"path", file_.path()}, {"bindings", std::to_string(bindings_.size())}});
  return absl::OkStatus();
}

Principal BindingsFile::PrincipalOf(const std::string& subject,
                                    const std::vector<std::string>& groups) {
  Principal out;
  out.subject = subject;
  std::lock_guard lock(mu_);
  ReloadIfChanged(file_, "bindings_file_invalid", [this] { return Load(); });
  for (const Binding& binding : bindings_) {
    bool applies = binding.subject.empty()
                       ? std::find(groups.begin(), groups.end(), binding.group) != groups.end()
                       : binding.subject == subject;
    if (!applies) continue;
    for (const auto& [project, role] : binding.principal.grants) {
      Role& held = out.grants[project];
      if (role > held) held = role;
    }
    out.is_operator = out.is_operator || binding.principal.is_operator;
  }
  return out;
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
