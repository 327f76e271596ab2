#include "services/common/request_errors.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/stubs/logging.h>

#include <mutex>
#include <string_view>

namespace mlops {
namespace {

thread_local std::optional<std::string> t_parse_error;

// The message cut at a UTF-8 character boundary, with how much was left out.
std::string BoundedMessage(const std::string& message) {
  size_t cut = kMaxErrorMessageBytes - 64;
  while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;
  return message.substr(0, cut) + "... (" + std::to_string(message.size() - cut) + " more bytes)";
}
google::protobuf::LogHandler* g_previous_handler = nullptr;

// protobuf logs "String field 'pkg.Message.field' contains invalid UTF-8 data when parsing a
// protocol buffer. ..." (wire_format_lite.cc) before the parse fails.
void CaptureLog(google::protobuf::LogLevel level, const char* filename, int line,
                const std::string& message) {
  constexpr std::string_view kMarker = "contains invalid UTF-8 data when parsing";
  if (message.find(kMarker) != std::string::npos) {
    std::string field = "a string field";
    size_t open = message.find('\'');
    size_t close = open == std::string::npos ? open : message.find('\'', open + 1);
    if (close != std::string::npos) field = "field " + message.substr(open + 1, close - open - 1);
    t_parse_error = field + ": invalid UTF-8 (string fields must be UTF-8; use bytes otherwise)";
    return;
  }
  if (g_previous_handler != nullptr) g_previous_handler(level, filename, line, message);
}

std::string InputTypeOf(std::string_view method) {
  // "/mlops.metadata.v1.MetadataService/CreateRun" -> "mlops.metadata.v1.MetadataService.CreateRun"
  std::string name(method.substr(method.empty() || method[0] != '/' ? 0 : 1));
  for (char& c : name) {
    if (c == '/') c = '.';
  }
  const auto* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(name);
  return descriptor == nullptr ? "request message" : descriptor->input_type()->full_name();
}

class BadRequestInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BadRequestInterceptor(grpc::experimental::ServerRpcInfo* info)
      : method_(info->method() == nullptr ? "" : info->method()),
        one_request_(info->type() == grpc::experimental::ServerRpcInfo::Type::UNARY ||
                     info->type() == grpc::experimental::ServerRpcInfo::Type::SERVER_STREAMING) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      if (methods->GetRecvMessage() != nullptr) {
        t_parse_error.reset();  // this message parsed: anything captured before is stale
      } else if (one_request_) {
        // The only request message failed to parse (there is no end of stream to mistake).
        std::optional<std::string> captured = TakeParseError();
        error_ = captured ? *captured
                          : "request: not a valid " + InputTypeOf(method_) +
                                " (truncated or malformed bytes)";
      } else if (t_parse_error) {
        error_ = *t_parse_error;  // the handler takes it too, to stop before committing
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      // Every error message is bounded: gRPC sends it in the trailing metadata, and a longer one
      // than the peer accepts (8 KiB by default) arrives as RESOURCE_EXHAUSTED instead.
      grpc::Status sent = methods->GetSendStatus();
      if (sent.error_message().size() > kMaxErrorMessageBytes) {
        methods->ModifySendStatus(grpc::Status(
            sent.error_code(), BoundedMessage(sent.error_message()), sent.error_details()));
      }
      // A stream handler that took the error itself has said more (which message it was).
      if (!error_.empty() &&
          methods->GetSendStatus().error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
        methods->ModifySendStatus(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, error_));
      }
      t_parse_error.reset();
    }
    methods->Proceed();
  }

 private:
  std::string method_;
  bool one_request_;
  std::string error_;
};

class BadRequestInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new BadRequestInterceptor(info);
  }
};

}  // namespace

void InstallParseErrorCapture() {
  static std::once_flag once;
  std::call_once(once, [] { g_previous_handler = google::protobuf::SetLogHandler(&CaptureLog); });
}

std::optional<std::string> TakeParseError() {
  std::optional<std::string> out = std::move(t_parse_error);
  t_parse_error.reset();
  return out;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeBadRequestInterceptorFactory() {
  return std::make_unique<BadRequestInterceptorFactory>();
}

}  // namespace mlops
