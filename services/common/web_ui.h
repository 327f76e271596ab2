// The web UI (docs/ui.md): its page at "/" and its files under "/assets/", served from the files
// embedded at build time (embedded_files.h) by every binary's HTTP server. The page calls the
// HTTP/JSON API (json_api.h) on the same port.
#pragma once

namespace mlops {

class HttpServer;

// Registers "/" and "/assets/" on `http`.
void ServeWebUi(HttpServer* http);

}  // namespace mlops
