#include "services/common/rpc_guard.h"

#include <google/protobuf/descriptor.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_format.h"
#include "services/common/projects.h"
#include "services/common/strings.h"

namespace mlops {

namespace {

thread_local std::string t_call_subject;

}  // namespace

std::string RequestResource(const google::protobuf::Message* request) {
  if (request == nullptr) return "";
  const google::protobuf::Descriptor* descriptor = request->GetDescriptor();
  const google::protobuf::Reflection* reflection = request->GetReflection();
  std::string out;
  int fields = 0;
  for (int i = 0; i < descriptor->field_count() && fields < 6; ++i) {
    const google::protobuf::FieldDescriptor* field = descriptor->field(i);
    if (field->is_repeated() || field->type() != google::protobuf::FieldDescriptor::TYPE_STRING) {
      continue;
    }
    const std::string& name = field->name();
    auto ends_with = [&](std::string_view suffix) {
      return name.size() >= suffix.size() &&
             std::string_view(name).substr(name.size() - suffix.size()) == suffix;
    };
    static const std::set<std::string_view> kNames = {
        "name", "id",    "dataset",  "model",   "alias",   "digest", "version",
        "tag",  "queue", "pipeline", "monitor", "profile", "parent"};
    if (!kNames.contains(name) && !ends_with("_id") && !ends_with("_name")) continue;
    std::string value = reflection->GetString(*request, field);
    if (value.empty()) continue;
    if (value.size() > 128) {
      size_t cut = 128;  // at a UTF-8 character boundary: audit entries are proto3 strings
      while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
      value = value.substr(0, cut) + "...";
    }
    if (!out.empty()) out += " ";
    out += name + "=" + value;
    ++fields;
  }
  return out;
}

void RpcGuard::KeepCallRecord(const grpc::ServerContextBase* context, CallRecord record) {
  std::lock_guard lock(records_mu_);
  records_[context] = std::move(record);
}

std::optional<CallRecord> RpcGuard::TakeCallRecord(const grpc::ServerContextBase* context) {
  std::lock_guard lock(records_mu_);
  auto it = records_.find(context);
  if (it == records_.end()) return std::nullopt;
  CallRecord out = std::move(it->second);
  records_.erase(it);
  return out;
}

std::string TakeCallSubject() {
  std::string out = std::move(t_call_subject);
  t_call_subject.clear();
  return out;
}

std::string StreamProject(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kProjectMetadata);
  if (it == metadata.end() || it->second.empty()) return std::string(kDefaultProject);
  return std::string(it->second.data(), it->second.size());
}

RpcGuard::RpcGuard(prometheus::Registry& registry, Options options)
    : options_(std::move(options)),
      refused_(&prometheus::BuildCounter()
                    .Name("mlops_rpc_refused_total")
                    .Help("RPCs refused by the guard before they ran, by method and code "
                          "(UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED)")
                    .Register(registry)) {}

grpc::Status RpcGuard::Admit(const grpc::ServerContextBase& context, std::string_view method,
                             const google::protobuf::Message* request, Principal* principal,
                             std::string* project) {
  const MethodAccess* access = FindMethodAccess(method);
  // The project is read before anything else: a request naming no valid project, or two, is
  // refused alike whoever sends it.
  if (access != nullptr) {
    absl::StatusOr<std::string> named = RequestProject(*access, request, StreamProject(context));
    if (!named.ok()) {
      return grpc::Status(static_cast<grpc::StatusCode>(named.status().code()),
                          std::string(named.status().message()));
    }
    *project = std::move(*named);
  }
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  // The server's own in-process calls carry its internal token (with authentication off too, so
  // that they are told apart from callers: exempt from limits, audited as themselves).
  const std::string& internal = options_.internal_token;
  std::string_view presented = it == metadata.end()
                                   ? std::string_view()
                                   : std::string_view(it->second.data(), it->second.size());
  if (!internal.empty() && presented.size() == internal.size() + 7 &&
      presented.starts_with("Bearer ") &&
      CRYPTO_memcmp(presented.data() + 7, internal.data(), internal.size()) == 0) {
    principal->subject = "mlops-internal";
    principal->is_operator = true;
    principal->grants = {{std::string(kEveryProject), Role::kAdmin}};
    return grpc::Status::OK;
  }
  if (!options_.authenticator) {
    principal->subject = "anonymous";
    return grpc::Status::OK;
  }
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "this server requires a bearer token (metadata authorization: Bearer "
                        "<token>; the CLI reads MLOPS_TOKEN or --token-file)");
  }
  std::string_view value(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (value.size() <= kBearer.size() || value.substr(0, kBearer.size()) != kBearer) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "the authorization metadata must be \"Bearer <token>\"");
  }
  std::string_view token = value.substr(kBearer.size());
  absl::StatusOr<Principal> authenticated = options_.authenticator->Authenticate(token);
  if (!authenticated.ok()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        std::string(authenticated.status().message()));
  }
  *principal = std::move(*authenticated);
  if (access == nullptr) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        std::string(method) + " is in no access table: denied");
  }
  auto denied = [&](std::string need) {
    return grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        principal->subject + " may not call " + std::string(method) + ": it needs " + need);
  };
  switch (access->access) {
    case Access::kAuthenticated:
      return grpc::Status::OK;
    case Access::kOperator:
      return principal->is_operator ? grpc::Status::OK : denied("the operator role");
    case Access::kViewer:
    case Access::kEditor:
    case Access::kAdmin: {
      Role need = access->access == Access::kViewer   ? Role::kViewer
                  : access->access == Access::kEditor ? Role::kEditor
                                                      : Role::kAdmin;
      if (principal->RoleIn(*project) >= need) return grpc::Status::OK;
      return denied(std::string(RoleName(need)) + " in project " + *project);
    }
  }
  return denied("an access the table does not define");
}

namespace {

// True for methods with a client or server stream, from the generated descriptors.
bool IsStreaming(std::string_view method) {
  static const auto* streaming = [] {
    auto* out = new std::unordered_map<std::string_view, bool>();
    for (const MethodAccess& entry : AccessTable()) {
      std::string name(entry.method.substr(1));  // "/pkg.Service/Method" -> "pkg.Service.Method"
      std::replace(name.begin(), name.end(), '/', '.');
      const auto* descriptor =
          google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(name);
      (*out)[entry.method] = descriptor != nullptr &&
                             (descriptor->client_streaming() || descriptor->server_streaming());
    }
    return out;
  }();
  auto it = streaming->find(method);
  return it != streaming->end() && it->second;
}

class StreamSlotInterceptor : public grpc::experimental::Interceptor {
 public:
  StreamSlotInterceptor(RpcGuard* guard, const grpc::ServerContextBase* context)
      : guard_(guard), context_(context) {}
  ~StreamSlotInterceptor() override { guard_->ReleaseStream(context_); }
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    methods->Proceed();
  }

 private:
  RpcGuard* guard_;
  const grpc::ServerContextBase* context_;
};

class StreamSlotInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit StreamSlotInterceptorFactory(RpcGuard* guard) : guard_(guard) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new StreamSlotInterceptor(guard_, info->server_context());
  }

 private:
  RpcGuard* guard_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeStreamSlotInterceptorFactory(RpcGuard* guard) {
  return std::make_unique<StreamSlotInterceptorFactory>(guard);
}

grpc::Status RpcGuard::Limit(grpc::ServerContextBase* context, std::string_view method,
                             const std::string& subject) {
  const bool stream = options_.max_streams > 0 && IsStreaming(method);
  if ((options_.calls_per_second <= 0 && !stream) || subject == "mlops-internal") {
    return grpc::Status::OK;
  }
  const double burst =
      options_.burst > 0 ? options_.burst : std::max(1.0, 2 * options_.calls_per_second);
  const absl::Time now = absl::Now();
  std::lock_guard lock(limits_mu_);
  if (limits_.size() > 100000) {
    // Forget subjects at rest (a full bucket, no stream open): they would start full anyway.
    for (auto it = limits_.begin(); it != limits_.end();) {
      bool full = it->second.tokens + absl::ToDoubleSeconds(now - it->second.refilled) *
                                          options_.calls_per_second >=
                  burst;
      it = full && it->second.streams == 0 ? limits_.erase(it) : std::next(it);
    }
  }
  auto [it, fresh] = limits_.try_emplace(subject);
  SubjectLimits& limits = it->second;
  if (fresh) {
    limits.tokens = burst;
    limits.refilled = now;
  }
  if (options_.calls_per_second > 0) {
    limits.tokens = std::min(burst, limits.tokens + absl::ToDoubleSeconds(now - limits.refilled) *
                                                        options_.calls_per_second);
    limits.refilled = now;
    if (limits.tokens < 1) {
      int64_t wait_ms =
          static_cast<int64_t>(std::ceil((1 - limits.tokens) / options_.calls_per_second * 1000));
      context->AddTrailingMetadata("retry-after-ms", std::to_string(wait_ms));
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrFormat("%s is over its rate limit of %g calls/s (burst %g): "
                                          "retry in %d ms",
                                          subject, options_.calls_per_second, burst, wait_ms));
    }
  }
  if (stream) {
    if (limits.streams >= options_.max_streams) {
      context->AddTrailingMetadata("retry-after-ms", "1000");
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrFormat("%s has %d streams open, the most one subject may: "
                                          "retry when one ends",
                                          subject, limits.streams));
    }
    ++limits.streams;
    open_streams_[context] = subject;
  }
  if (options_.calls_per_second > 0) limits.tokens -= 1;
  return grpc::Status::OK;
}

void RpcGuard::ReleaseStream(const grpc::ServerContextBase* context) {
  std::lock_guard lock(limits_mu_);
  auto it = open_streams_.find(context);
  if (it == open_streams_.end()) return;
  if (auto subject = limits_.find(it->second); subject != limits_.end()) {
    --subject->second.streams;
  }
  open_streams_.erase(it);
}

RpcGuard::Call::Call(RpcGuard* guard, grpc::ServerContextBase* context, const char* method,
                     const google::protobuf::Message* request) {
  std::string project(kDefaultProject);
  refusal_ = guard->Admit(*context, method, request, &principal_, &project);
  if (refusal_.ok()) refusal_ = guard->Limit(context, method, principal_.subject);
  t_call_subject = principal_.subject;
  if (const MethodAccess* access = FindMethodAccess(method);
      access == nullptr || access->mutation) {
    guard->KeepCallRecord(context,
                          {principal_.subject, std::move(project), RequestResource(request)});
  }
  if (!refusal_.ok()) {
    const grpc::StatusCode code = refusal_.error_code();
    guard->refused_
        ->Add({{"method", method},
               {"code", code == grpc::StatusCode::UNAUTHENTICATED      ? "UNAUTHENTICATED"
                        : code == grpc::StatusCode::RESOURCE_EXHAUSTED ? "RESOURCE_EXHAUSTED"
                                                                       : "PERMISSION_DENIED"}})
        .Increment();
  }
}

}  // namespace mlops
