// The byte routes of the HTTP API (docs/api.md, "Bytes over HTTP"): a blob's content as
// application/octet-stream, whole or by Range, and an upload of raw bytes. Both call the artifact
// service's RPCs on a channel carrying the HTTP caller's credentials (ServiceHost::CallerChannel),
// so they pass the same guard, checks and audit as any call; no second implementation.
//
//   GET|HEAD /api/v1/artifact/blobs/<digest>[?project=P]    Range: bytes=a-b | a- | -n
//   POST     /api/v1/artifact/blobs[?project=P&pin=true&digest=<expected>]   (body: the bytes)
#pragma once

#include <string>

#include "services/common/server.h"

namespace mlops::artifact {

// A raw upload larger than this is refused (413) before it is read.
inline constexpr int64_t kMaxHttpUploadBytes = int64_t{4} << 30;

// A byte range of a blob of `size` bytes from an HTTP Range header: the first and one past the
// last byte. Returns false for a range that cannot be served (416); `whole` is set when the
// header asks for no single satisfiable range that this server honours (absent, malformed, or
// several ranges: the whole blob is sent, as RFC 9110 allows).
bool ParseByteRange(const char* header, int64_t size, int64_t* begin, int64_t* end, bool* whole);

// Registers the routes on `host` (before Start).
void AddBlobRoutes(ServiceHost& host);

}  // namespace mlops::artifact
