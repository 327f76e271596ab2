// The guard in front of every RPC (docs/security.md): authentication of the bearer token,
// authorization by the access table below, refusal counters and the calling subject for the RPC
// log line. Generated guarded services (tools/build/protoc_gen_guard.cc, `<file>.guard.pb.h`)
// run every method through it; ServiceHost registers only guarded services.
//
// With no authenticator configured the guard admits every call as subject "anonymous"; the server
// then binds loopback only unless told --insecure_allow_unauthenticated. With one, everything is
// denied by default: no token -> UNAUTHENTICATED, a role below the table's -> PERMISSION_DENIED,
// a method missing from the table -> PERMISSION_DENIED.
#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/access_table.h"
#include "services/common/auth.h"

namespace mlops {

// The subject of the RPC this thread is serving, set by the guard and taken (cleared) by the RPC
// metrics interceptor for the RPC log line. Empty when the guard did not run (a request that did
// not parse).
std::string TakeCallSubject();

// What the audit log records of a call besides the method, code and time (see audit_log.h).
struct CallRecord {
  std::string subject, project, resource;
};

class RpcGuard {
 public:
  struct Options {
    // Verifies bearer tokens; null: authentication off (every call is admitted as "anonymous").
    std::shared_ptr<Authenticator> authenticator;
    // Calls carrying this token are this process's own (in-process channels): subject
    // "mlops-internal", every role. Empty: none.
    std::string internal_token;
    // Per-subject limits (docs/security.md, "Limits"), 0 for none; the internal subject is exempt.
    // Calls are admitted from a token bucket refilled at `calls_per_second`, holding `burst`
    // (0: twice the rate, at least 1); streaming calls open at once are at most `max_streams`.
    // Beyond either: RESOURCE_EXHAUSTED, with a retry hint (trailing metadata retry-after-ms).
    double calls_per_second = 0;
    double burst = 0;
    int max_streams = 0;
  };
  RpcGuard(prometheus::Registry& registry, Options options);

  bool authentication_enabled() const { return options_.authenticator != nullptr; }
  const std::string& internal_token() const { return options_.internal_token; }

  // One call through the guard (used by generated code).
  class Call {
   public:
    Call(RpcGuard* guard, grpc::ServerContextBase* context, const char* method,
         const google::protobuf::Message* request);
    bool admitted() const { return refusal_.ok(); }
    const grpc::Status& refusal() const { return refusal_; }
    // Returns the implementation's status unchanged.
    grpc::Status Finish(grpc::Status status) { return status; }
    const Principal& principal() const { return principal_; }

   private:
    grpc::Status refusal_;
    Principal principal_;
  };

  // Ends the stream `context` holds a slot for (its call is over); nothing when it holds none.
  void ReleaseStream(const grpc::ServerContextBase* context);

  // The record of a call of a mutating method (or of one missing from the table), kept from its
  // admission (or refusal) until the audit interceptor takes it when the status is sent.
  std::optional<CallRecord> TakeCallRecord(const grpc::ServerContextBase* context);

  // Authenticates the call's `authorization: Bearer <token>` metadata and checks `method`'s
  // access for the project of `request` (null for client streams). OK, UNAUTHENTICATED or
  // PERMISSION_DENIED.
  // `project` is set to the project the request acts in (for the audit log) when it is known.
  grpc::Status Admit(const grpc::ServerContextBase& context, std::string_view method,
                     const google::protobuf::Message* request, Principal* principal,
                     std::string* project);

 private:
  void KeepCallRecord(const grpc::ServerContextBase* context, CallRecord record);
  // OK, or RESOURCE_EXHAUSTED when `subject` is over its rate or stream limit (then the hint is
  // set on `context`).
  grpc::Status Limit(grpc::ServerContextBase* context, std::string_view method,
                     const std::string& subject);

  Options options_;
  prometheus::Family<prometheus::Counter>* refused_;
  std::mutex records_mu_;
  std::unordered_map<const grpc::ServerContextBase*, CallRecord> records_;
  struct SubjectLimits {
    double tokens = 0;
    absl::Time refilled;
    int streams = 0;
  };
  std::mutex limits_mu_;
  std::unordered_map<std::string, SubjectLimits> limits_;
  std::unordered_map<const grpc::ServerContextBase*, std::string> open_streams_;
};

// Releases each call's stream slot when the call is over (its interceptors are destroyed then,
// whichever API served it and however it ended).
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeStreamSlotInterceptorFactory(RpcGuard* guard);

// For generated guarded services (`<file>.guard.pb.h`).
namespace guard_internal {
// Wrapper<Base> when `kWrap`, else Base: the callback-API wrappers a guarded service inherits.
template <bool kWrap, template <class> class Wrapper, class Base>
using Pick = std::conditional_t<kWrap, Wrapper<Base>, Base>;
}  // namespace guard_internal

// Refusals of methods served through the callback API.
inline grpc::ServerUnaryReactor* RefuseUnary(grpc::CallbackServerContext* context,
                                             const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}
template <class Request, class Response>
class RefusedBidiReactor final : public grpc::ServerBidiReactor<Request, Response> {
 public:
  explicit RefusedBidiReactor(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};
template <class Request>
class RefusedReadReactor final : public grpc::ServerReadReactor<Request> {
 public:
  explicit RefusedReadReactor(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};
template <class Response>
class RefusedWriteReactor final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit RefusedWriteReactor(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

// The request's identifying fields as "field=value" pairs (names, ids, digests; each value cut to
// 128 bytes, at most 6 fields), for the audit log. "" for null (a client stream).
std::string RequestResource(const google::protobuf::Message* request);

// The project of a client-streaming call (its `mlops-project` metadata, default when absent), for
// implementations that must refuse a streamed message of another project.
std::string StreamProject(const grpc::ServerContextBase& context);
inline constexpr char kProjectMetadata[] = "mlops-project";

}  // namespace mlops
