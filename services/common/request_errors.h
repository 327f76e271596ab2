// Requests that do not parse. gRPC answers a request message it cannot deserialize (a string
// field holding invalid UTF-8, a truncated message) with INTERNAL and an empty message; these turn
// it into INVALID_ARGUMENT naming the field or the message type. Transport only: no core uses it.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <optional>
#include <string>

namespace mlops {

// Installs, once per process, a protobuf log handler that remembers on each thread the last
// "invalid UTF-8" parse error (and forwards every other log line to the previous handler).
void InstallParseErrorCapture();

// The parse error captured on this thread since the last call, e.g. "field
// mlops.metadata.v1.CreateRunRequest.name: invalid UTF-8", and clears it. A client-streaming
// handler calls it when Read() returns false, to tell a request that did not parse from the end
// of the stream (a truncated message in a stream cannot be told apart from the end).
std::optional<std::string> TakeParseError();

// Error messages longer than this are cut (at a character boundary, saying how much was left out)
// before they are sent, in every service.
inline constexpr size_t kMaxErrorMessageBytes = 2048;

// Server interceptor: a request that did not parse becomes INVALID_ARGUMENT with a message naming
// the field (invalid UTF-8) or the expected message type (truncated or malformed bytes); every
// error message is bounded to kMaxErrorMessageBytes.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeBadRequestInterceptorFactory();

}  // namespace mlops
