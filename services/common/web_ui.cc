#include "services/common/web_ui.h"

#include <civetweb.h>

#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "services/common/embedded_files.h"
#include "services/common/http_server.h"

namespace mlops {
namespace {

absl::string_view ContentType(absl::string_view path) {
  if (absl::EndsWith(path, ".html")) return "text/html; charset=utf-8";
  if (absl::EndsWith(path, ".js")) return "text/javascript; charset=utf-8";
  if (absl::EndsWith(path, ".css")) return "text/css; charset=utf-8";
  if (absl::EndsWith(path, ".svg")) return "image/svg+xml";
  return "text/plain; charset=utf-8";  // the licences
}

const std::unordered_map<std::string_view, const EmbeddedFile*>& FilesByPath() {
  static const auto* files = [] {
    auto* map = new std::unordered_map<std::string_view, const EmbeddedFile*>();
    for (const EmbeddedFile& file : EmbeddedFiles()) map->emplace(file.path, &file);
    return map;
  }();
  return *files;
}

int SendText(mg_connection* conn, int status, std::string_view text) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: %zu\r\nConnection: close\r\n\r\n",
            status, mg_get_response_code_text(conn, status), text.size());
  mg_write(conn, text.data(), text.size());
  return status;
}

// Answers GET and HEAD of one embedded file, revalidated by its ETag (the page and its modules
// change together with the binary, so nothing may be served stale from a browser's cache).
int ServeFile(mg_connection* conn, std::string_view path) {
  const mg_request_info* request = mg_get_request_info(conn);
  std::string_view method = request->request_method;
  if (method != "GET" && method != "HEAD") {
    mg_printf(conn,
              "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 0\r\n"
              "Connection: close\r\n\r\n");
    return 405;
  }
  auto it = FilesByPath().find(path);
  if (it == FilesByPath().end()) return SendText(conn, 404, "no such page\n");
  const EmbeddedFile& file = *it->second;
  std::string etag = absl::StrCat("\"", file.etag, "\"");
  const char* if_none_match = mg_get_header(conn, "If-None-Match");
  // The page's scripts run only from this origin (Chart.js sets inline styles on its canvas).
  std::string headers =
      absl::StrCat("Content-Type: ", ContentType(file.path), "\r\nETag: ", etag,
                   "\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
                   "Content-Security-Policy: default-src 'self'; style-src 'self' 'unsafe-inline'; "
                   "img-src 'self' data:; frame-ancestors 'none'\r\n");
  if (if_none_match != nullptr && etag == if_none_match) {
    mg_printf(conn, "HTTP/1.1 304 Not Modified\r\n%sContent-Length: 0\r\n\r\n", headers.c_str());
    return 304;
  }
  mg_printf(conn, "HTTP/1.1 200 OK\r\n%sContent-Length: %zu\r\n\r\n", headers.c_str(), file.size);
  if (method == "GET") mg_write(conn, file.data, file.size);
  return 200;
}

}  // namespace

void ServeWebUi(HttpServer* http) {
  // "/" alone is the page (its state is in the query string); "/$" leaves every other top-level
  // path to the routes registered for it, and to 404.
  http->AddHandler("/$", [](mg_connection* conn) { return ServeFile(conn, "/index.html"); });
  http->AddHandler("/assets/", [](mg_connection* conn) {
    const char* uri = mg_get_request_info(conn)->local_uri;
    return ServeFile(conn, uri != nullptr ? uri : "");
  });
}

}  // namespace mlops
