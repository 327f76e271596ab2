// Where the values of the steps' secretEnv come from: a secrets file on one machine, the
// Kubernetes Secrets of the Jobs' namespace on a cluster (docs/pipelines.md, "Secrets").
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "services/common/auth.h"
#include "services/scheduler/kubernetes/kube_client.h"
#include "services/scheduler/secrets.h"

namespace mlops::scheduler {

// A YAML file of secrets, read again when it changes (at most once a second):
//
//   secrets:
//     - name: warehouse                      # as a Kubernetes Secret's name
//       data: {password: "s3cr3t", user: etl}
//
// It must be readable by its owner only (mode 0600 or 0400).
class SecretsFile : public SecretStore {
 public:
  // FAILED_PRECONDITION when the file cannot be read or others may read it, INVALID_ARGUMENT when
  // it does not parse (the message names the entry, never a value).
  static absl::StatusOr<std::unique_ptr<SecretsFile>> Open(std::string path,
                                                           std::string version_key);
  std::string source() const override { return "secrets file " + file_.path(); }
  absl::StatusOr<SecretValue> Get(const std::string& secret, const std::string& key) override;

 private:
  SecretsFile(std::string path, std::string version_key)
      : file_(std::move(path)), version_key_(std::move(version_key)) {}
  absl::Status Load();

  std::mutex mu_;
  FileWatch file_;
  const std::string version_key_;
  std::map<std::string, std::map<std::string, std::string>> secrets_;  // name -> key -> value
};

// The Secrets of one namespace, read through the API server at each use (the scheduler's service
// account needs `get` on secrets there; the Helm chart's Role grants it).
class KubernetesSecrets : public SecretStore {
 public:
  KubernetesSecrets(std::shared_ptr<k8s::KubeClient> client, std::string namespace_name,
                    std::string version_key)
      : client_(std::move(client)),
        namespace_(std::move(namespace_name)),
        version_key_(std::move(version_key)) {}
  std::string source() const override { return "Kubernetes Secrets in namespace " + namespace_; }
  absl::StatusOr<SecretValue> Get(const std::string& secret, const std::string& key) override;

 private:
  std::shared_ptr<k8s::KubeClient> client_;
  const std::string namespace_;
  const std::string version_key_;
};

}  // namespace mlops::scheduler
