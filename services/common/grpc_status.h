// The transport side of status plumbing: absl::Status (what cores return) to and from
// grpc::Status (what the wire carries), and the one helper every gRPC adapter replies with. Cores
// never include this file.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mlops {

// Maps each canonical code to the same gRPC code (an exhaustive switch; a code outside the
// canonical set becomes UNKNOWN) and keeps the message.
grpc::Status ToGrpcStatus(const absl::Status& status);
// The inverse: UNKNOWN for a code outside the canonical set.
absl::Status FromGrpcStatus(const grpc::Status& status);

// A handler's reply: moves the value into `out` when `result` is OK; the status either way.
template <typename T>
grpc::Status Reply(absl::StatusOr<T> result, T* out) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *out = std::move(*result);
  return grpc::Status::OK;
}

}  // namespace mlops
