// TLS on the HTTP port (docs/security.md, "TLS"): a listener that terminates TLS (and mutual TLS)
// with OpenSSL 3 and relays each connection's bytes to the plaintext HTTP server on a loopback
// port. Written by hand: Debian 12's civetweb 1.15 cannot serve TLS with OpenSSL 3 (it calls
// SSL_get_peer_certificate, which OpenSSL 3 no longer exports, and crashes on every connection),
// and no Debian package offers an embeddable TLS terminator.
//
// The certificate, key and client CA are read again when a file changes (checked at most every
// `reload_s` seconds, when a connection arrives), so a rotated certificate reaches new connections
// without a restart; a file that does not load keeps the previous ones (logged). Each connection
// is served by a thread of its own, at most `max_connections` at once (more are closed at once);
// a handshake or an idle connection times out.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace mlops {

class TlsFront {
 public:
  struct Options {
    std::string cert_file, key_file;  // PEM: the chain served, its key
    std::string client_ca_file;       // PEM: require client certificates it signs ("" = none)
    int reload_s = 10;
    int max_connections = 128;
    int handshake_timeout_ms = 10000;
    int idle_timeout_ms = 120000;
  };

  // Listens on host:port (0 picks a free one) and relays to 127.0.0.1:backend_port.
  // FAILED_PRECONDITION when the certificate, key or CA do not load; UNAVAILABLE when the port
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<TlsFront>> Start(const std::string& host, int port,
                                                         int backend_port, Options options);
  ~TlsFront();  // Stop()
  TlsFront(const TlsFront&) = delete;
  TlsFront& operator=(const TlsFront&) = delete;

  // Stops listening, ends every connection and waits for their threads.
  void Stop();
  int port() const { return port_; }

 private:
  TlsFront(int backend_port, Options options) : backend_port_(backend_port), options_(options) {}
  // A context from the files as they are now.
  absl::StatusOr<std::shared_ptr<SSL_CTX>> Load() const;
  // The current context, reloaded first when the files changed.
  std::shared_ptr<SSL_CTX> Current();
  void Accept();
  void Serve(int client);

  const int backend_port_;
  const Options options_;
  int listener_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  std::mutex mu_;  // guards what follows
  std::shared_ptr<SSL_CTX> context_;
  struct stat seen_[3] = {};
  int64_t last_check_ms_ = 0;
  bool stopping_ = false;
  std::set<int> open_;  // sockets of connections being served (client and backend)
  int serving_ = 0;
  std::condition_variable idle_;
};

}  // namespace mlops
