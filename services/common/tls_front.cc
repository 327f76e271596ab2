#include "services/common/tls_front.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/strings.h"

namespace mlops {
namespace {

std::string OpenSslError() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

void SetTimeouts(int fd, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_ino == b.st_ino && a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
         a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsFront>> TlsFront::Start(const std::string& host, int port,
                                                          int backend_port, Options options) {
  // A peer that goes away while the relay writes to it must not end the process: OpenSSL writes
  // through plain write(2).
  std::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<TlsFront> front(new TlsFront(backend_port, std::move(options)));
  auto context = front->Load();
  if (!context.ok()) return context.status();
  front->context_ = std::move(*context);
  const std::string* files[3] = {&front->options_.cert_file, &front->options_.key_file,
                                 &front->options_.client_ca_file};
  for (int i = 0; i < 3; ++i) {
    if (!files[i]->empty()) ::stat(files[i]->c_str(), &front->seen_[i]);
  }
  front->last_check_ms_ = NowMs();

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int rc =
          ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
      rc != 0) {
    return absl::UnavailableError(StrCat("https: cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  std::string error = "no address";
  for (addrinfo* at = found; at != nullptr && front->listener_ < 0; at = at->ai_next) {
    int fd = ::socket(at->ai_family, at->ai_socktype | SOCK_CLOEXEC, at->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, at->ai_addr, at->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      front->listener_ = fd;
    } else {
      error = std::strerror(errno);
      ::close(fd);
    }
  }
  ::freeaddrinfo(found);
  if (front->listener_ < 0) {
    return absl::UnavailableError(
        StrCat("https: cannot listen on ", host, ":", service, ": ", error));
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  ::getsockname(front->listener_, reinterpret_cast<sockaddr*>(&bound), &length);
  front->port_ =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  front->acceptor_ = std::thread(&TlsFront::Accept, front.get());
  return front;
}

TlsFront::~TlsFront() { Stop(); }

void TlsFront::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && listener_ < 0) return;
    stopping_ = true;
    for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
  }
  if (listener_ >= 0) {
    ::shutdown(listener_, SHUT_RDWR);  // wakes accept(2)
    if (acceptor_.joinable()) acceptor_.join();
    ::close(listener_);
    listener_ = -1;
  }
  std::unique_lock lock(mu_);
  idle_.wait(lock, [&] { return serving_ == 0; });
}

absl::StatusOr<std::shared_ptr<SSL_CTX>> TlsFront::Load() const {
  std::shared_ptr<SSL_CTX> context(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (context == nullptr) return absl::InternalError("https: " + OpenSslError());
  SSL_CTX* ctx = context.get();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, options_.cert_file.c_str()) != 1) {
    return absl::FailedPreconditionError(
        StrCat("https: certificate ", options_.cert_file, ": ", OpenSslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, options_.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return absl::FailedPreconditionError(
        StrCat("https: key ", options_.key_file, ": ", OpenSslError()));
  }
  if (!options_.client_ca_file.empty()) {
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options_.client_ca_file.c_str());
    if (names == nullptr ||
        SSL_CTX_load_verify_locations(ctx, options_.client_ca_file.c_str(), nullptr) != 1) {
      if (names != nullptr) sk_X509_NAME_pop_free(names, X509_NAME_free);
      return absl::FailedPreconditionError(
          StrCat("https: client CA ", options_.client_ca_file, ": ", OpenSslError()));
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return context;
}

std::shared_ptr<SSL_CTX> TlsFront::Current() {
  std::lock_guard lock(mu_);
  const int64_t now = NowMs();
  if (now - last_check_ms_ < int64_t{options_.reload_s} * 1000) return context_;
  last_check_ms_ = now;
  const std::string* files[3] = {&options_.cert_file, &options_.key_file, &options_.client_ca_file};
  struct stat current[3] = {};
  bool changed = false;
  for (int i = 0; i < 3; ++i) {
    if (files[i]->empty()) continue;
    // A file being replaced (briefly missing) is not a change yet.
    if (::stat(files[i]->c_str(), &current[i]) != 0) return context_;
    changed = changed || !SameFile(current[i], seen_[i]);
  }
  if (!changed) return context_;
  auto loaded = Load();
  if (!loaded.ok()) {
    // Tried again at the next check; the previous certificate keeps serving.
    LogWarning("https_reload_failed", {{"error", std::string(loaded.status().message())}});
    return context_;
  }
  context_ = std::move(*loaded);
  for (int i = 0; i < 3; ++i) seen_[i] = current[i];
  LogInfo("https_certificate_reloaded", {{"cert", options_.cert_file}});
  return context_;
}

void TlsFront::Accept() {
  for (;;) {
    int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;
      }
      // Out of descriptors or memory: back off rather than spin.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    std::lock_guard lock(mu_);
    if (stopping_ || serving_ >= options_.max_connections) {
      ::close(fd);
      if (stopping_) return;
      continue;
    }
    ++serving_;
    open_.insert(fd);
    std::thread(&TlsFront::Serve, this, fd).detach();
  }
}

void TlsFront::Serve(int client) {
  int backend = -1;
  SSL* ssl = nullptr;
  auto finish = [&] {
    if (ssl != nullptr) SSL_free(ssl);
    std::lock_guard lock(mu_);
    for (int fd : {client, backend}) {
      if (fd < 0) continue;
      open_.erase(fd);
      ::close(fd);
    }
    --serving_;
    idle_.notify_all();
  };
  SetTimeouts(client, options_.handshake_timeout_ms);
  std::shared_ptr<SSL_CTX> context = Current();
  ssl = SSL_new(context.get());
  if (ssl == nullptr || SSL_set_fd(ssl, client) != 1) return finish();
  // A record that carries no data (a key update) returns to the loop instead of blocking.
  SSL_clear_mode(ssl, SSL_MODE_AUTO_RETRY);
  if (SSL_accept(ssl) != 1) {
    ERR_clear_error();  // a client that failed the handshake (no certificate, a wrong CA)
    return finish();
  }
  backend = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(backend_port_));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  {
    std::lock_guard lock(mu_);
    if (backend < 0 || stopping_) return finish();
    open_.insert(backend);
  }
  if (::connect(backend, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return finish();
  }
  int one = 1;
  ::setsockopt(backend, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  SetTimeouts(client, options_.idle_timeout_ms);
  SetTimeouts(backend, options_.idle_timeout_ms);
  char buffer[16 << 10];
  for (;;) {
    pollfd fds[2] = {{client, POLLIN, 0}, {backend, POLLIN, 0}};
    if (SSL_pending(ssl) > 0) {
      fds[0].revents = POLLIN;  // decrypted bytes wait in OpenSSL's buffer
    } else {
      int ready = ::poll(fds, 2, options_.idle_timeout_ms);
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) break;  // idle too long, or an error
    }
    if (fds[0].revents != 0) {
      int n = SSL_read(ssl, buffer, sizeof(buffer));
      if (n > 0) {
        if (!SendAll(backend, buffer, static_cast<size_t>(n))) break;
      } else {
        int error = SSL_get_error(ssl, n);
        if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) break;
      }
    }
    if (fds[1].revents != 0) {
      ssize_t n = ::recv(backend, buffer, sizeof(buffer), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the HTTP server closed the connection
      if (SSL_write(ssl, buffer, static_cast<int>(n)) != static_cast<int>(n)) break;
    }
  }
  SSL_shutdown(ssl);
  ERR_clear_error();
  finish();
}

}  // namespace mlops
