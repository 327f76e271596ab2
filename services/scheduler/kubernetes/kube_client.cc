#include "services/scheduler/kubernetes/kube_client.h"

#include <curl/curl.h>
#include <google/protobuf/util/json_util.h>
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "mlops/scheduler/internal/kubernetes.pb.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::scheduler::k8s {
namespace {

constexpr long kConnectTimeoutMs = 5000;
constexpr long kRequestTimeoutMs = 30000;
constexpr size_t kPoolSize = 4;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

absl::StatusOr<std::string> ReadFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(StrCat("cannot read ", what, " ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string TrimSpace(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  return text.substr(start);
}

size_t AppendBody(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

}  // namespace

struct KubeClient::Handle {
  CURL* curl = nullptr;
  curl_slist* headers = nullptr;
  ~Handle() {
    if (headers != nullptr) curl_slist_free_all(headers);
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
};

absl::StatusOr<KubeConfig> InClusterConfig(const std::string& root) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr || *host == '\0') {
    return absl::FailedPreconditionError(
        "not in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set): give a kubeconfig");
  }
  KubeConfig config;
  std::string address = host;
  if (address.find(':') != std::string::npos) address = StrCat("[", address, "]");  // IPv6
  config.server = StrCat("https://", address, ":", port);
  config.token_file = root + "/token";
  config.ca_file = root + "/ca.crt";
  auto ns = ReadFile(root + "/namespace", "the service account's namespace");
  if (ns.ok()) config.namespace_name = TrimSpace(*ns);
  struct stat info;
  if (::stat(config.token_file.c_str(), &info) != 0) {
    return absl::FailedPreconditionError(StrCat("no service-account token at ", config.token_file));
  }
  return config;
}

absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const std::exception& e) {
    return absl::FailedPreconditionError(StrCat("kubeconfig ", path, ": ", e.what()));
  }
  auto named = [&](const char* list, const std::string& name, const char* inner) -> YAML::Node {
    if (root[list]) {
      for (const auto& item : root[list]) {
        if (item["name"] && item["name"].as<std::string>() == name) return item[inner];
      }
    }
    return YAML::Node();
  };
  auto text = [](const YAML::Node& node, const char* key) {
    return node && node.IsMap() && node[key] ? node[key].as<std::string>() : std::string();
  };
  // Relative file names in a kubeconfig are relative to the file.
  std::string dir = path.substr(0, path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  auto file = [&](const std::string& name) {
    return name.empty() || name[0] == '/' ? name : dir + name;
  };
  auto decoded = [](const std::string& base64) {
    std::string out;
    absl::Base64Unescape(base64, &out);
    return out;
  };
  const std::string current = text(root, "current-context");
  if (current.empty()) {
    return absl::FailedPreconditionError(StrCat("kubeconfig ", path, ": no current-context"));
  }
  YAML::Node context = named("contexts", current, "context");
  if (!context || !context.IsMap()) {
    return absl::FailedPreconditionError(
        StrCat("kubeconfig ", path, ": context ", current, " is not defined"));
  }
  YAML::Node cluster = named("clusters", text(context, "cluster"), "cluster");
  YAML::Node user = named("users", text(context, "user"), "user");
  if (!cluster || !cluster.IsMap() || text(cluster, "server").empty()) {
    return absl::FailedPreconditionError(
        StrCat("kubeconfig ", path, ": the cluster of context ", current, " has no server"));
  }
  KubeConfig config;
  config.server = text(cluster, "server");
  config.ca_file = file(text(cluster, "certificate-authority"));
  config.ca_data = decoded(text(cluster, "certificate-authority-data"));
  if (!text(context, "namespace").empty()) config.namespace_name = text(context, "namespace");
  config.token = text(user, "token");
  config.token_file = file(text(user, "tokenFile"));
  config.client_cert_file = file(text(user, "client-certificate"));
  config.client_key_file = file(text(user, "client-key"));
  config.client_cert_data = decoded(text(user, "client-certificate-data"));
  config.client_key_data = decoded(text(user, "client-key-data"));
  return config;
}

absl::Status StatusFromResponse(const KubeResponse& response, std::string_view what) {
  if (response.http_code >= 200 && response.http_code < 300) return absl::OkStatus();
  Status status;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  std::string message =
      google::protobuf::util::JsonStringToMessage(response.body, &status, options).ok()
          ? status.message()
          : response.body.substr(0, 300);
  message =
      StrCat(what, ": ", message.empty() ? "HTTP " + std::to_string(response.http_code) : message);
  switch (response.http_code) {
    case 400:
    case 422:
      return absl::InvalidArgumentError(message);
    case 401:
      return absl::UnauthenticatedError(message);
    case 403:
      return absl::PermissionDeniedError(message);
    case 404:
      return absl::NotFoundError(message);
    case 409:
      return status.reason() == "AlreadyExists" ? absl::AlreadyExistsError(message)
                                                : absl::AbortedError(message);
    case 410:
      return absl::OutOfRangeError(message);
    case 429:
      return absl::ResourceExhaustedError(message);
    default:
      if (response.http_code >= 500) return absl::UnavailableError(message);
      return absl::UnknownError(message);
  }
}

KubeClient::KubeClient(KubeConfig config)
    : config_(std::move(config)),
      tokens_(std::max(1, config_.burst)),
      refilled_(std::chrono::steady_clock::now()) {
  GlobalInit();
}

KubeClient::~KubeClient() = default;

void KubeClient::Throttle() {
  if (config_.qps <= 0) return;
  for (;;) {
    std::chrono::duration<double> wait;
    {
      std::lock_guard lock(mu_);
      auto now = std::chrono::steady_clock::now();
      tokens_ = std::min<double>(
          std::max(1, config_.burst),
          tokens_ + std::chrono::duration<double>(now - refilled_).count() * config_.qps);
      refilled_ = now;
      if (tokens_ >= 1) {
        tokens_ -= 1;
        return;
      }
      wait = std::chrono::duration<double>((1 - tokens_) / config_.qps);
    }
    std::this_thread::sleep_for(wait);
  }
}

std::string KubeClient::BearerToken() {
  if (config_.token_file.empty()) return config_.token;
  struct stat info;
  std::lock_guard lock(mu_);
  if (::stat(config_.token_file.c_str(), &info) == 0) {
    int64_t mtime = static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 + info.st_mtim.tv_nsec;
    if (mtime != file_token_mtime_ns_) {
      auto text = ReadFile(config_.token_file, "token file");
      if (text.ok()) {
        file_token_ = TrimSpace(*text);
        file_token_mtime_ns_ = mtime;
      }
    }
  }
  return file_token_.empty() ? config_.token : file_token_;
}

std::unique_ptr<KubeClient::Handle> KubeClient::Acquire() {
  std::unique_ptr<Handle> handle;
  {
    std::lock_guard lock(mu_);
    if (!pool_.empty()) {
      handle = std::move(pool_.back());
      pool_.pop_back();
    }
  }
  if (handle == nullptr) {
    handle = std::make_unique<Handle>();
    handle->curl = curl_easy_init();
  } else {
    curl_easy_reset(handle->curl);  // keeps the connection for the next request
  }
  if (handle->headers != nullptr) {
    curl_slist_free_all(handle->headers);
    handle->headers = nullptr;
  }
  CURL* curl = handle->curl;
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, kConnectTimeoutMs);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https,http");
  if (!config_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, config_.ca_file.c_str());
  if (!config_.ca_data.empty()) {
    curl_blob blob{const_cast<char*>(config_.ca_data.data()), config_.ca_data.size(),
                   CURL_BLOB_COPY};
    curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &blob);
  }
  if (!config_.client_cert_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, config_.client_cert_file.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLKEY, config_.client_key_file.c_str());
  }
  if (!config_.client_cert_data.empty()) {
    curl_blob cert{const_cast<char*>(config_.client_cert_data.data()),
                   config_.client_cert_data.size(), CURL_BLOB_COPY};
    curl_blob key{const_cast<char*>(config_.client_key_data.data()), config_.client_key_data.size(),
                  CURL_BLOB_COPY};
    curl_easy_setopt(curl, CURLOPT_SSLCERT_BLOB, &cert);
    curl_easy_setopt(curl, CURLOPT_SSLKEY_BLOB, &key);
  }
  handle->headers = curl_slist_append(handle->headers, "Accept: application/json");
  std::string token = BearerToken();
  if (!token.empty()) {
    handle->headers =
        curl_slist_append(handle->headers, StrCat("Authorization: Bearer ", token).c_str());
  }
  return handle;
}

void KubeClient::Release(std::unique_ptr<Handle> handle) {
  std::lock_guard lock(mu_);
  if (pool_.size() < kPoolSize) pool_.push_back(std::move(handle));
}

absl::StatusOr<KubeResponse> KubeClient::Request(std::string_view method, const std::string& path,
                                                 const std::string& body) {
  Throttle();
  requests_.fetch_add(1);
  std::unique_ptr<Handle> handle = Acquire();
  CURL* curl = handle->curl;
  const std::string url = config_.server + path;
  const std::string verb(method);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, kRequestTimeoutMs);
  if (verb != "GET") curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, verb.c_str());
  if (!body.empty() || verb == "POST" || verb == "PUT" || verb == "PATCH") {
    handle->headers = curl_slist_append(
        handle->headers, verb == "PATCH" ? "Content-Type: application/merge-patch+json"
                                         : "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, handle->headers);
  KubeResponse response;
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
  CURLcode code = curl_easy_perform(curl);
  if (code != CURLE_OK) {
    return absl::UnavailableError(StrCat(verb, " ", config_.server, path.substr(0, path.find('?')),
                                         ": ", curl_easy_strerror(code)));
  }
  long http = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
  response.http_code = static_cast<int>(http);
  Release(std::move(handle));
  return response;
}

absl::Status KubeClient::Call(std::string_view method, const std::string& path,
                              const google::protobuf::Message* in, google::protobuf::Message* out) {
  std::string body;
  if (in != nullptr) {
    auto written = google::protobuf::util::MessageToJsonString(*in, &body);
    if (!written.ok())
      return absl::InternalError(StrCat("encoding ", path, ": ", std::string(written.message())));
  }
  return CallJson(method, path, body, out);
}

absl::Status KubeClient::CallJson(std::string_view method, const std::string& path,
                                  const std::string& body, google::protobuf::Message* out) {
  auto response = Request(method, path, body);
  if (!response.ok()) return response.status();
  std::string what = StrCat(method, " ", path.substr(0, path.find('?')));
  if (absl::Status status = StatusFromResponse(*response, what); !status.ok()) return status;
  if (out == nullptr) return absl::OkStatus();
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto parsed = google::protobuf::util::JsonStringToMessage(response->body, out, options);
  if (!parsed.ok()) {
    return absl::InternalError(
        StrCat(what, ": cannot read the answer: ", std::string(parsed.message())));
  }
  return absl::OkStatus();
}

namespace {

// What a stream's callbacks share.
struct StreamState {
  CURL* curl = nullptr;
  const std::function<bool(std::string_view)>* on_data = nullptr;
  const std::atomic<bool>* stop = nullptr;
  long http = 0;
  std::string error_body;  // of an answer that is not 2xx
  bool stopped = false;
};

size_t StreamWrite(char* data, size_t size, size_t count, void* opaque) {
  auto* state = static_cast<StreamState*>(opaque);
  const size_t n = size * count;
  if (state->http == 0) curl_easy_getinfo(state->curl, CURLINFO_RESPONSE_CODE, &state->http);
  if (state->http < 200 || state->http >= 300) {
    if (state->error_body.size() < 4096) state->error_body.append(data, n);
    return n;
  }
  if (!(*state->on_data)(std::string_view(data, n))) {
    state->stopped = true;
    return 0;  // aborts the transfer
  }
  return n;
}

int StreamProgress(void* opaque, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* state = static_cast<StreamState*>(opaque);
  if (state->stop->load()) {
    state->stopped = true;
    return 1;  // aborts the transfer
  }
  return 0;
}

}  // namespace

absl::Status KubeClient::Stream(const std::string& path,
                                const std::function<bool(std::string_view)>& on_data,
                                const std::atomic<bool>& stop) {
  Throttle();
  requests_.fetch_add(1);
  std::unique_ptr<Handle> handle = Acquire();
  CURL* curl = handle->curl;
  const std::string url = config_.server + path;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, handle->headers);
  StreamState state;
  state.curl = curl;
  state.on_data = &on_data;
  state.stop = &stop;
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, StreamWrite);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &state);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, StreamProgress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &state);
  CURLcode code = curl_easy_perform(curl);
  if (state.stopped) {
    // The connection may be mid-stream: not reused.
    return absl::OkStatus();
  }
  const std::string what = StrCat("GET ", path.substr(0, path.find('?')));
  if (code != CURLE_OK) return absl::UnavailableError(StrCat(what, ": ", curl_easy_strerror(code)));
  long http = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
  KubeResponse response{static_cast<int>(http), state.error_body};
  RETURN_IF_ERROR(StatusFromResponse(response, what));
  Release(std::move(handle));
  return absl::OkStatus();
}

absl::Status KubeClient::Watch(const std::string& path,
                               const std::function<bool(std::string_view)>& on_line,
                               const std::atomic<bool>& stop) {
  std::string pending;  // a line not yet complete
  return Stream(
      path,
      [&](std::string_view data) {
        pending.append(data);
        size_t start = 0;
        for (size_t newline; (newline = pending.find('\n', start)) != std::string::npos;
             start = newline + 1) {
          std::string_view line(pending.data() + start, newline - start);
          if (line.empty()) continue;
          if (!on_line(line)) return false;
        }
        pending.erase(0, start);
        return true;
      },
      stop);
}

}  // namespace mlops::scheduler::k8s
