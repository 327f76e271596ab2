// The HTTP side of every service: Prometheus text exposition on /metrics, liveness on /healthz,
// readiness on /readyz (the service's own storage) and /statusz (storage and peers), served by
// civetweb. (prometheus-cpp's Exposer serves only metrics paths, so
// we drive civetweb directly and serialize the registry with prometheus-cpp's TextSerializer.)
#pragma once

#include <prometheus/collectable.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"

struct mg_context;
struct mg_connection;

namespace mlops {

class TlsFront;

// TLS on the HTTP port (tls_front.h): the same files as the gRPC port's.
struct HttpTls {
  std::string cert_file, key_file, client_ca_file;
  int reload_s = 10;
};

class HttpServer {
 public:
  HttpServer();
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Collectables to serialize on each /metrics request. Add before or after Start.
  void AddCollectable(std::weak_ptr<prometheus::Collectable> collectable);
  // /readyz answers 200 only while `ready` returns true (default: always).
  void SetReadiness(std::function<bool()> ready);
  // /statusz answers the text `status` returns (the state of the peers).
  void SetStatusPage(std::function<std::string()> status);
  // Serves every URI that starts with `prefix` (e.g. "/api/v1/") with `handler`, which returns the
  // HTTP status it sent. Before or after Start; the handler must outlive the server.
  void AddHandler(const std::string& prefix, std::function<int(mg_connection*)> handler);

  // Listens on host:port (port 0 picks a free one). UNAVAILABLE when the port is taken. With
  // `tls`, civetweb listens on a loopback port and a TlsFront on host:port terminates TLS in front
  // of it (FAILED_PRECONDITION when the files do not load).
  absl::Status Start(const std::string& host, int port, const HttpTls* tls = nullptr);
  void Stop();
  int port() const { return port_; }

  // The current exposition text (what /metrics returns).
  std::string Render() const;

 private:
  static int HandleMetrics(mg_connection* conn, void* self);
  static int HandleHealth(mg_connection* conn, void* self);
  static int HandleReady(mg_connection* conn, void* self);
  static int HandleStatus(mg_connection* conn, void* self);
  static int HandleRoute(mg_connection* conn, void* route);

  struct Route {
    std::string prefix;
    std::function<int(mg_connection*)> handler;
  };

  mutable std::mutex mu_;
  std::vector<std::weak_ptr<prometheus::Collectable>> collectables_;
  std::function<bool()> ready_;
  std::function<std::string()> status_;
  std::vector<std::unique_ptr<Route>> routes_;
  mg_context* ctx_ = nullptr;
  std::unique_ptr<TlsFront> tls_;
  int port_ = 0;
};

}  // namespace mlops
