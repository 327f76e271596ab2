// Client side of the transport security (docs/security.md): TLS channel credentials, and the
// bearer token each call presents. Used by the CLI, the benchmarks and a server's calls to its
// peers.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_interceptor.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mlops {

struct ChannelSecurity {
  std::string ca_pem;    // non-empty: TLS, trusting this CA; empty: plaintext
  std::string cert_pem;  // with key_pem: the client certificate presented (mTLS)
  std::string key_pem;
  // The bearer token of each call, asked for per call (so that a rotated token file applies);
  // null or "": no authorization metadata.
  std::function<std::string()> token;
  // Non-empty and not "default": every call acts in this project (MakeProjectInterceptor).
  std::string project;
};

// A channel to one peer for calls in `project` (each puts its calls in that project), as a service
// that acts in the projects of the resources it serves makes them (the scheduler's gateways).
using ChannelForProject =
    std::function<absl::StatusOr<std::shared_ptr<grpc::Channel>>(const std::string& project)>;

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsFor(const ChannelSecurity& security);

// Adds `authorization: Bearer <token()>` to every call of the channel it is installed on.
std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> MakeBearerTokenInterceptor(
    std::function<std::string()> token);

// Adds these metadata entries (key, value) to every call of the channel it is installed on.
std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> MakeMetadataInterceptor(
    std::vector<std::pair<std::string, std::string>> entries);

// Puts every call of the channel in `project` (docs/api.md, "Projects"): names and ids that its
// request's project fields (the access table's) give without a project get `projects/{project}/`,
// an empty `project` field is set, and the call carries `mlops-project: {project}` metadata.
std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> MakeProjectInterceptor(
    std::string project);

// A channel to `address` with `security` (and, when it has a token or a project, the interceptors
// above) plus
// `more` interceptors.
std::shared_ptr<grpc::Channel> SecureChannel(
    const std::string& address, const ChannelSecurity& security, grpc::ChannelArguments args,
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> more = {});

// The token in a file (a Kubernetes service-account token, a token `mlops auth token create`
// printed), trimmed, re-read when the file changes (checked at most once a second).
class FileTokenSource {
 public:
  // FAILED_PRECONDITION when the file cannot be read or holds no token.
  static absl::StatusOr<std::shared_ptr<FileTokenSource>> Open(std::string path);
  std::string Token();

 private:
  explicit FileTokenSource(std::string path) : path_(std::move(path)) {}
  absl::Status Read();
  const std::string path_;
  std::mutex mu_;
  std::string token_;
  absl::Time last_check_ = absl::InfinitePast();
};

// Reads a whole (small) file; FAILED_PRECONDITION naming it when it cannot.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes = 1 << 20);

}  // namespace mlops
