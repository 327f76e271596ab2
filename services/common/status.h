// Status plumbing every core uses, with abseil alone: the canonical code names and the
// RETURN_IF_ERROR / ASSIGN_OR_RETURN macros that Debian's abseil (20220623) lacks. Conversions to
// and from the wire are in grpc_status.h (transport only), from RocksDB in db.h (storage).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mlops {

// The canonical name of a gRPC/absl status code ("NOT_FOUND"); "UNKNOWN" outside 0..16.
const char* StatusCodeName(int code);

}  // namespace mlops

#define MLOPS_STATUS_CONCAT_INNER_(a, b) a##b
#define MLOPS_STATUS_CONCAT_(a, b) MLOPS_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status mlops_status_ = (expr);         \
    if (!mlops_status_.ok()) return mlops_status_; \
  } while (false)

// ASSIGN_OR_RETURN(auto x, Fn()): evaluates Fn() (an absl::StatusOr<T>); returns its status when
// not OK, otherwise moves the value into the declaration on the left.
#define ASSIGN_OR_RETURN(lhs, expr) \
  MLOPS_ASSIGN_OR_RETURN_IMPL_(MLOPS_STATUS_CONCAT_(mlops_statusor_, __LINE__), lhs, expr)
#define MLOPS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()
