// A client of the Kubernetes API server's REST API for the Kubernetes executor: HTTPS through
// libcurl, objects as JSON written and read by protobuf (kubernetes.proto), bearer tokens (static,
// or a file re-read when it rotates) or client certificates, a bounded request rate, and watches
// streamed line by line. No gRPC: part of the scheduler core.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message.h"

namespace mlops::scheduler::k8s {

struct KubeConfig {
  std::string server;  // https://HOST:PORT
  // Trust: a PEM file or PEM text; neither: the system's roots.
  std::string ca_file, ca_data;
  // Who we are: a bearer token, a token file (re-read when it changes: service-account tokens
  // rotate), or a client certificate and key (files or PEM text).
  std::string token, token_file;
  std::string client_cert_file, client_key_file, client_cert_data, client_key_data;
  std::string namespace_name = "default";  // of the current context
  // The request budget: at most `qps` requests a second on average, `burst` at once. A watch
  // counts once, when it starts.
  double qps = 20;
  int burst = 40;
};

// The pod's own service account: KUBERNETES_SERVICE_HOST/PORT, the token, CA and namespace under
// /var/run/secrets/kubernetes.io/serviceaccount (`root` replaces that directory in tests).
// FAILED_PRECONDITION when not in a pod.
absl::StatusOr<KubeConfig> InClusterConfig(
    const std::string& root = "/var/run/secrets/kubernetes.io/serviceaccount");
// The current context of a kubeconfig file: server, CA (file or data), token, tokenFile or client
// certificate (file or data), namespace. FAILED_PRECONDITION naming what is missing or unreadable.
absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path);

struct KubeResponse {
  int http_code = 0;
  std::string body;
};

// The code for an API error: 400/422 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
// 404 NOT_FOUND, 409 ALREADY_EXISTS (reason AlreadyExists) or ABORTED (a conflict), 410
// OUT_OF_RANGE (a resource version too old: relist), 429 RESOURCE_EXHAUSTED, 5xx UNAVAILABLE; the
// message is the API's Status message.
absl::Status StatusFromResponse(const KubeResponse& response, std::string_view what);

class KubeClient {
 public:
  explicit KubeClient(KubeConfig config);
  ~KubeClient();
  KubeClient(const KubeClient&) = delete;
  KubeClient& operator=(const KubeClient&) = delete;

  const KubeConfig& config() const { return config_; }

  // One request: `path` with its query ("/apis/batch/v1/namespaces/ns/jobs?..."), JSON `body`.
  // Waits for the request budget. UNAVAILABLE when the server cannot be reached (with curl's
  // reason); any HTTP answer is returned as is.
  absl::StatusOr<KubeResponse> Request(std::string_view method, const std::string& path,
                                       const std::string& body = "");

  // Request, decoding a 2xx answer into `out` (unknown fields ignored) and mapping any other
  // answer through StatusFromResponse. `body` is written from `in` when given.
  absl::Status Call(std::string_view method, const std::string& path,
                    const google::protobuf::Message* in, google::protobuf::Message* out);
  // Call with a JSON body as it is.
  absl::Status CallJson(std::string_view method, const std::string& path, const std::string& body,
                        google::protobuf::Message* out);

  // Streams the answer of a GET (`path` with its query: a pod's log with follow=true, a watch):
  // each piece goes to `on_data` as it arrives, which returns false to stop. Returns when
  // `on_data` stops it, `stop` becomes true (seen within about a second), or the server ends the
  // answer (OK); an HTTP error through StatusFromResponse; UNAVAILABLE when the connection fails
  // or drops.
  absl::Status Stream(const std::string& path, const std::function<bool(std::string_view)>& on_data,
                      const std::atomic<bool>& stop);
  // Streams a watch (`path` must carry watch=true): each line (one event's JSON) goes to
  // `on_line`, which returns false to stop. Returns when `on_line` stops it, `stop` becomes true
  // (seen within about a second), or the server ends the stream (OK); an HTTP error through
  // StatusFromResponse; UNAVAILABLE when the connection fails or drops.
  absl::Status Watch(const std::string& path, const std::function<bool(std::string_view)>& on_line,
                     const std::atomic<bool>& stop);

  // Requests made (watches included), for the API budget figures.
  int64_t requests() const { return requests_.load(); }

 private:
  struct Handle;
  // Waits until the budget allows one more request.
  void Throttle();
  // The Authorization header's token (re-read from token_file when it changed); "" for none.
  std::string BearerToken();
  // A curl handle set up for `path` (URL, TLS, auth headers), from a small pool.
  std::unique_ptr<Handle> Acquire();
  void Release(std::unique_ptr<Handle> handle);

  const KubeConfig config_;
  std::atomic<int64_t> requests_{0};
  std::mutex mu_;
  double tokens_;                                   // guarded by mu_
  std::chrono::steady_clock::time_point refilled_;  // guarded by mu_
  std::string file_token_;                          // guarded by mu_
  int64_t file_token_mtime_ns_ = -1;                // guarded by mu_
  std::vector<std::unique_ptr<Handle>> pool_;       // guarded by mu_
};

}  // namespace mlops::scheduler::k8s
