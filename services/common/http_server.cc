#include "services/common/http_server.h"

#include <civetweb.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <sstream>

#include "services/common/tls_front.h"

namespace mlops {
namespace {

void Reply(mg_connection* conn, int code, const char* content_type, const std::string& body) {
  mg_response_header_start(conn, code);
  mg_response_header_add(conn, "Content-Type", content_type, -1);
  mg_response_header_add(conn, "Content-Length", std::to_string(body.size()).c_str(), -1);
  mg_response_header_send(conn);
  mg_write(conn, body.data(), body.size());
}

}  // namespace

HttpServer::HttpServer() = default;
HttpServer::~HttpServer() { Stop(); }

void HttpServer::AddCollectable(std::weak_ptr<prometheus::Collectable> collectable) {
  std::lock_guard<std::mutex> lock(mu_);
  collectables_.push_back(std::move(collectable));
}

void HttpServer::SetReadiness(std::function<bool()> ready) {
  std::lock_guard<std::mutex> lock(mu_);
  ready_ = std::move(ready);
}

void HttpServer::AddHandler(const std::string& prefix, std::function<int(mg_connection*)> handler) {
  std::lock_guard<std::mutex> lock(mu_);
  routes_.push_back(std::make_unique<Route>(Route{prefix, std::move(handler)}));
  if (ctx_ != nullptr) {
    mg_set_request_handler(ctx_, prefix.c_str(), &HttpServer::HandleRoute, routes_.back().get());
  }
}

int HttpServer::HandleRoute(mg_connection* conn, void* route) {
  return static_cast<Route*>(route)->handler(conn);
}

absl::Status HttpServer::Start(const std::string& host, int port, const HttpTls* tls) {
  mg_init_library(0);
  // Behind a TLS front, civetweb is reached only from this process's relay, on loopback.
  std::string listen = tls != nullptr ? "127.0.0.1:0" : host + ":" + std::to_string(port);
  // A keep-alive connection, and a followed stream of the JSON API, hold a worker thread each.
  // TCP_NODELAY: a reply's headers and body leave in separate writes; with Nagle's algorithm the
  // body waits for the client's delayed ACK (~40 ms on Linux) on a kept-alive connection.
  // max_request_size (request line and headers; civetweb's default is 16 KiB): the web UI's
  // compare page names up to 500 run ids in its URL (~17 KiB).
  const char* options[] = {"listening_ports",   listen.c_str(), "num_threads", "64",
                           "enable_keep_alive", "yes",          "tcp_nodelay", "1",
                           "max_request_size",  "65536",        nullptr};
  mg_callbacks callbacks{};
  // civetweb logs bind failures through this callback; returning 1 silences its own printing.
  callbacks.log_message = [](const mg_connection*, const char*) { return 1; };
  ctx_ = mg_start(&callbacks, this, options);
  if (ctx_ == nullptr) {
    return absl::UnavailableError("metrics: cannot listen on " + listen);
  }
  mg_server_port ports[4];
  int n = mg_get_server_ports(ctx_, 4, ports);
  port_ = n > 0 ? ports[0].port : port;
  mg_set_request_handler(ctx_, "/metrics$", &HttpServer::HandleMetrics, this);
  mg_set_request_handler(ctx_, "/healthz$", &HttpServer::HandleHealth, this);
  mg_set_request_handler(ctx_, "/readyz$", &HttpServer::HandleReady, this);
  mg_set_request_handler(ctx_, "/statusz$", &HttpServer::HandleStatus, this);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& route : routes_) {
      mg_set_request_handler(ctx_, route->prefix.c_str(), &HttpServer::HandleRoute, route.get());
    }
  }
  if (tls != nullptr) {
    TlsFront::Options options;
    options.cert_file = tls->cert_file;
    options.key_file = tls->key_file;
    options.client_ca_file = tls->client_ca_file;
    options.reload_s = tls->reload_s;
    auto front = TlsFront::Start(host, port, port_, options);
    if (!front.ok()) {
      Stop();
      return front.status();
    }
    tls_ = std::move(*front);
    port_ = tls_->port();
  }
  return absl::OkStatus();
}

void HttpServer::Stop() {
  tls_.reset();  // first: it relays to civetweb
  if (ctx_ != nullptr) {
    mg_stop(ctx_);
    ctx_ = nullptr;
  }
}

std::string HttpServer::Render() const {
  std::vector<prometheus::MetricFamily> families;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& weak : collectables_) {
      if (auto collectable = weak.lock()) {
        auto collected = collectable->Collect();
        families.insert(families.end(), std::make_move_iterator(collected.begin()),
                        std::make_move_iterator(collected.end()));
      }
    }
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

int HttpServer::HandleMetrics(mg_connection* conn, void* self) {
  Reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8",
        static_cast<HttpServer*>(self)->Render());
  return 200;
}

int HttpServer::HandleHealth(mg_connection* conn, void*) {
  Reply(conn, 200, "text/plain", "ok\n");
  return 200;
}

int HttpServer::HandleReady(mg_connection* conn, void* self) {
  auto* server = static_cast<HttpServer*>(self);
  bool ready = true;
  {
    std::lock_guard<std::mutex> lock(server->mu_);
    if (server->ready_) ready = server->ready_();
  }
  Reply(conn, ready ? 200 : 503, "text/plain", ready ? "ready\n" : "not ready\n");
  return ready ? 200 : 503;
}

void HttpServer::SetStatusPage(std::function<std::string()> status) {
  std::lock_guard<std::mutex> lock(mu_);
  status_ = std::move(status);
}

int HttpServer::HandleStatus(mg_connection* conn, void* self) {
  auto* server = static_cast<HttpServer*>(self);
  std::string text;
  {
    std::lock_guard<std::mutex> lock(server->mu_);
    if (server->status_) text = server->status_();
  }
  Reply(conn, 200, "text/plain", text);
  return 200;
}

}  // namespace mlops
