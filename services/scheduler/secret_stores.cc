#include "services/scheduler/secret_stores.h"

#include <openssl/crypto.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "mlops/scheduler/internal/kubernetes.pb.h"
#include "services/common/logging.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/common/yaml_list.h"
#include "services/scheduler/pipeline_spec.h"

namespace mlops::scheduler {
namespace {

using Entry = std::pair<std::string, std::map<std::string, std::string>>;

absl::StatusOr<Entry> ParseEntry(const YAML::Node& node, size_t index) {
  std::string where = "secrets[" + std::to_string(index) + "]";
  if (!node.IsMap()) return absl::InvalidArgumentError(where + ": expected {name, data}");
  for (const auto& field : node) {
    const std::string name = field.first.as<std::string>();
    if (name != "name" && name != "data") {
      return absl::InvalidArgumentError(where + ": unknown key '" + name +
                                        "' (expected name, data)");
    }
  }
  if (!node["name"] || !node["name"].IsScalar()) {
    return absl::InvalidArgumentError(where + ": 'name' is required");
  }
  Entry entry;
  entry.first = node["name"].Scalar();
  if (!ValidSecretName(entry.first)) {
    return absl::InvalidArgumentError(where + ": name '" + entry.first +
                                      "' must be a Kubernetes Secret's name");
  }
  where += " (" + entry.first + ")";
  const YAML::Node data = node["data"];
  if (!data || !data.IsMap()) return absl::InvalidArgumentError(where + ": 'data' must be a map");
  for (const auto& field : data) {
    const std::string key = field.first.as<std::string>();
    if (!ValidSecretKey(key)) {
      return absl::InvalidArgumentError(where + ": key '" + key +
                                        "' must match [A-Za-z0-9_.-]{1,253}");
    }
    // Never the value in a message: only which key is wrong.
    if (!field.second.IsScalar()) {
      return absl::InvalidArgumentError(where + ": the value of " + key + " must be a string");
    }
    entry.second[key] = field.second.Scalar();
  }
  return entry;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SecretsFile>> SecretsFile::Open(std::string path,
                                                               std::string version_key) {
  struct stat st = {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::FailedPreconditionError("secrets file " + path + ": " + std::strerror(errno));
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return absl::FailedPreconditionError(
        StrCat("secrets file ", path, ": mode ", mode, " lets others read it; chmod 600 it"));
  }
  std::unique_ptr<SecretsFile> file(new SecretsFile(std::move(path), std::move(version_key)));
  RETURN_IF_ERROR(file->Load());
  return file;
}

absl::Status SecretsFile::Load() {
  ASSIGN_OR_RETURN(std::string text, file_.Read());
  absl::StatusOr<std::vector<Entry>> entries =
      ParseListFile<Entry>(text, "secrets", "secrets", ParseEntry);
  OPENSSL_cleanse(text.data(), text.size());
  if (!entries.ok()) return entries.status();
  std::map<std::string, std::map<std::string, std::string>> secrets;
  for (auto& [name, data] : *entries) {
    if (!secrets.emplace(name, std::move(data)).second) {
      return absl::InvalidArgumentError("secrets file: secret " + name + " is listed twice");
    }
  }
  secrets_ = std::move(secrets);
  return absl::OkStatus();
}

absl::StatusOr<SecretValue> SecretsFile::Get(const std::string& secret, const std::string& key) {
  std::lock_guard lock(mu_);
  if (file_.Changed()) {
    // A file that no longer parses keeps what was read before (as the token file does).
    if (absl::Status loaded = Load(); !loaded.ok()) {
      LogWarning("secrets_file_not_reloaded",
                 {{"file", file_.path()}, {"error", std::string(loaded.message())}});
    }
  }
  auto it = secrets_.find(secret);
  if (it == secrets_.end()) {
    return absl::NotFoundError(StrCat("secret ", secret, " is not in ", source()));
  }
  auto value = it->second.find(key);
  if (value == it->second.end()) {
    return absl::NotFoundError(StrCat("secret ", secret, " has no key ", key, " (", source(), ")"));
  }
  return SecretValue{value->second, SecretVersion(version_key_, secret, key, value->second)};
}

absl::StatusOr<SecretValue> KubernetesSecrets::Get(const std::string& secret,
                                                   const std::string& key) {
  k8s::Secret object;
  absl::Status got = client_->Call(
      "GET", StrCat("/api/v1/namespaces/", namespace_, "/secrets/", secret), nullptr, &object);
  if (got.code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(StrCat("secret ", secret, " is not in ", source()));
  }
  if (!got.ok()) {
    return absl::Status(got.code(),
                        StrCat("reading secret ", secret, " (", source(), "): ", got.message()));
  }
  auto value = object.data().find(key);
  if (value == object.data().end()) {
    return absl::NotFoundError(StrCat("secret ", secret, " has no key ", key, " (", source(), ")"));
  }
  return SecretValue{value->second, SecretVersion(version_key_, secret, key, value->second)};
}

}  // namespace mlops::scheduler
