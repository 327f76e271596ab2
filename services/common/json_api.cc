#include "services/common/json_api.h"

#include <civetweb.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/common/logging.h"

namespace mlops {
namespace {

using google::protobuf::Message;
using google::protobuf::MethodDescriptor;

constexpr absl::string_view kPrefix = "/api/v1/";

// The services of each package, by full name: what /api/v1/<package>/ reaches.
const std::map<std::string, std::vector<std::string>>& PackageServices() {
  static const auto* services = new std::map<std::string, std::vector<std::string>>{
      {"metadata",
       {"mlops.metadata.v1.MetadataService", "mlops.metadata.v1.LineageService",
        "mlops.metadata.v1.ModelRegistry"}},
      {"artifact", {"mlops.artifact.v1.ArtifactService"}},
      {"scheduler", {"mlops.scheduler.v1.SchedulerService"}},
      {"monitoring", {"mlops.monitoring.v1.MonitoringService"}},
      {"audit", {"mlops.audit.v1.AuditService"}},
  };
  return *services;
}

std::unique_ptr<Message> NewMessage(const google::protobuf::Descriptor* type) {
  const Message* prototype =
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(type);
  return std::unique_ptr<Message>(prototype->New());
}

// Parses `json` into a new message of `type`; INVALID_ARGUMENT naming `what` when it does not.
grpc::Status ParseJson(absl::string_view json, const google::protobuf::Descriptor* type,
                       const std::string& what, std::string* serialized) {
  std::unique_ptr<Message> message = NewMessage(type);
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  absl::string_view trimmed = absl::StripAsciiWhitespace(json);
  if (!trimmed.empty()) {
    auto status = google::protobuf::util::JsonStringToMessage(
        google::protobuf::StringPiece(trimmed.data(), trimmed.size()), message.get(), options);
    if (!status.ok()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat(what, " is not a ", type->full_name(),
                                       " in JSON: ", std::string(status.message())));
    }
  }
  if (!message->SerializeToString(serialized)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, what + ": cannot be serialized");
  }
  return grpc::Status::OK;
}

// The canonical JSON of a serialized message of `type`.
grpc::Status ToJson(const std::string& serialized, const google::protobuf::Descriptor* type,
                    std::string* json) {
  std::unique_ptr<Message> message = NewMessage(type);
  if (!message->ParseFromString(serialized)) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "a response that does not parse");
  }
  google::protobuf::util::JsonPrintOptions options;
  auto status = google::protobuf::util::MessageToJsonString(*message, json, options);
  if (!status.ok()) {
    return grpc::Status(grpc::StatusCode::INTERNAL, std::string(status.message()));
  }
  return grpc::Status::OK;
}

grpc::ByteBuffer ToByteBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromByteBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  (void)buffer.Dump(&slices);
  std::string out;
  out.reserve(buffer.Length());
  for (const grpc::Slice& slice : slices) {
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return out;
}

bool AcceptsEventStream(mg_connection* conn) {
  const char* accept = mg_get_header(conn, "Accept");
  return accept != nullptr && absl::StrContains(accept, "text/event-stream");
}

}  // namespace

int HttpStatusOf(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::CANCELLED:
      return 499;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 412;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::DATA_LOSS:
    default:
      return 500;
  }
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

std::string JsonError(const grpc::Status& status) {
  return absl::StrCat("{\"code\":\"", CodeName(status.error_code()),
                      "\",\"message\":", JsonQuote(status.error_message()), "}");
}

void SendReply(mg_connection* conn, int status, const char* content_type, std::string_view body,
               const std::vector<std::pair<std::string, std::string>>& headers) {
  mg_response_header_start(conn, status);
  mg_response_header_add(conn, "Content-Type", content_type, -1);
  mg_response_header_add(conn, "Content-Length", std::to_string(body.size()).c_str(), -1);
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  for (const auto& [name, value] : headers) {
    mg_response_header_add(conn, name.c_str(), value.c_str(), static_cast<int>(value.size()));
  }
  mg_response_header_send(conn);
  if (!body.empty()) mg_write(conn, body.data(), body.size());
}

int SendError(mg_connection* conn, const grpc::Status& status) {
  int http = HttpStatusOf(status.error_code());
  SendReply(conn, http, "application/json", JsonError(status));
  return http;
}

std::optional<std::string> QueryParameter(mg_connection* conn, const char* name) {
  const mg_request_info* info = mg_get_request_info(conn);
  if (info->query_string == nullptr) return std::nullopt;
  const size_t length = std::strlen(info->query_string);
  std::string value(length + 1, '\0');
  int n = mg_get_var(info->query_string, length, name, value.data(), value.size());
  if (n < 0) return std::nullopt;  // absent (-1), or longer than the query itself (never)
  value.resize(static_cast<size_t>(n));
  return value;
}

bool ReadRequestBody(mg_connection* conn, int64_t max_bytes, std::string* body) {
  const mg_request_info* info = mg_get_request_info(conn);
  auto too_big = [&] {
    // 413 rather than RESOURCE_EXHAUSTED's 429: waiting will not help.
    SendReply(conn, 413, "application/json",
              JsonError(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                     absl::StrCat("request body over ", max_bytes, " bytes"))));
    return false;
  };
  if (info->content_length > max_bytes) return too_big();
  body->clear();
  // On the heap: civetweb's worker threads have small stacks.
  std::string buffer(64 << 10, '\0');
  while (true) {
    int n = mg_read(conn, buffer.data(), buffer.size());
    if (n == 0) return true;
    if (n < 0) {
      SendError(conn,
                grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the request body was cut short"));
      return false;
    }
    if (static_cast<int64_t>(body->size()) + n > max_bytes) return too_big();
    body->append(buffer.data(), n);
  }
}

grpc::Status BlockingGenericCall(grpc::GenericStub& stub, grpc::ClientContext& context,
                                 const std::string& method,
                                 const std::vector<std::string>& requests,
                                 const std::function<bool(std::string response)>& on_response) {
  // Tags are the addresses of these flags; an operation is pending while its flag is set.
  bool start_pending = true, write_pending = false, read_pending = false, finish_pending = false;
  grpc::CompletionQueue queue;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&context, method, &queue);
  call->StartCall(&start_pending);
  size_t next = 0;
  bool writes_done = false, reading_done = false, started = false;
  grpc::ByteBuffer outgoing, incoming;
  auto write_next = [&] {
    if (next < requests.size()) {
      outgoing = ToByteBuffer(requests[next++]);
      grpc::WriteOptions options;
      if (next == requests.size()) options.set_last_message();
      call->Write(outgoing, options, &write_pending);
      if (next == requests.size()) writes_done = true;
    } else {
      call->WritesDone(&write_pending);
      writes_done = true;
    }
    write_pending = true;
  };
  while (start_pending || write_pending || read_pending || (started && !reading_done)) {
    if (started && !reading_done && !read_pending) {
      call->Read(&incoming, &read_pending);
      read_pending = true;
    }
    void* tag = nullptr;
    bool ok = false;
    if (!queue.Next(&tag, &ok)) break;
    if (tag == &start_pending) {
      start_pending = false;
      if (!ok) break;  // the call never started: Finish says why
      started = true;
      write_next();
    } else if (tag == &write_pending) {
      write_pending = false;
      if (ok && !writes_done) write_next();
    } else if (tag == &read_pending) {
      read_pending = false;
      if (!ok) {
        reading_done = true;
      } else if (!on_response(FromByteBuffer(incoming))) {
        context.TryCancel();
      }
    }
  }
  grpc::Status status;
  call->Finish(&status, &finish_pending);
  finish_pending = true;
  while (finish_pending) {
    void* tag = nullptr;
    bool ok = false;
    if (!queue.Next(&tag, &ok)) break;
    if (tag == &finish_pending) finish_pending = false;
  }
  queue.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (queue.Next(&tag, &ok)) {
  }
  return status;
}

JsonApi::JsonApi(std::shared_ptr<grpc::Channel> channel, const std::vector<std::string>& services,
                 Options options)
    : stub_(std::move(channel)), options_(options) {
  const google::protobuf::DescriptorPool* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const std::string& package : services) {
    auto it = PackageServices().find(package);
    if (it == PackageServices().end()) continue;
    for (const std::string& name : it->second) {
      const google::protobuf::ServiceDescriptor* service = pool->FindServiceByName(name);
      if (service == nullptr) continue;  // not linked into this binary
      for (int i = 0; i < service->method_count(); ++i) {
        const MethodDescriptor* method = service->method(i);
        methods_.emplace(absl::StrCat(package, "/", method->name()), method);
      }
    }
  }
}

void JsonApi::AddRoute(const std::string& prefix, RouteHandler handler) {
  routes_.emplace_back(prefix, std::move(handler));
}

const MethodDescriptor* JsonApi::FindMethod(std::string_view service,
                                            std::string_view method) const {
  auto it = methods_.find(std::string(service) + "/" + std::string(method));
  return it == methods_.end() ? nullptr : it->second;
}

std::vector<std::string> JsonApi::Routes() const {
  std::vector<std::string> routes;
  for (const auto& [route, method] : methods_) routes.push_back(route);
  return routes;
}

std::string JsonApi::Index() const {
  std::string out = "{\"routes\":[";
  bool first = true;
  for (const auto& [route, method] : methods_) {
    absl::StrAppend(&out, first ? "" : ",", "{\"route\":", JsonQuote("/api/v1/" + route),
                    ",\"method\":", JsonQuote(method->full_name()),
                    ",\"request\":", JsonQuote(method->input_type()->full_name()),
                    ",\"response\":", JsonQuote(method->output_type()->full_name()),
                    ",\"clientStreaming\":", method->client_streaming() ? "true" : "false",
                    ",\"serverStreaming\":", method->server_streaming() ? "true" : "false", "}");
    first = false;
  }
  return out + "]}";
}

std::vector<std::pair<std::string, std::string>> RequestMetadata(mg_connection* conn) {
  static constexpr std::pair<const char*, const char*> kForwarded[] = {
      {"Authorization", "authorization"},
      {"Mlops-Project", "mlops-project"},
      {"X-Request-Id", "x-request-id"},
  };
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [header, key] : kForwarded) {
    const char* value = mg_get_header(conn, header);
    if (value != nullptr && *value != '\0') out.emplace_back(key, value);
  }
  return out;
}

void JsonApi::CopyRequestMetadata(mg_connection* conn, grpc::ClientContext* context) {
  for (const auto& [key, value] : RequestMetadata(conn)) context->AddMetadata(key, value);
}

int JsonApi::Handle(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  absl::string_view uri = info->local_uri != nullptr ? info->local_uri : "";
  if (!absl::StartsWith(uri, kPrefix)) {
    return SendError(conn, grpc::Status(grpc::StatusCode::NOT_FOUND, "no such route"));
  }
  for (const auto& [prefix, handler] : routes_) {
    absl::string_view rest = uri.substr(kPrefix.size());
    if (absl::ConsumePrefix(&rest, prefix) && (rest.empty() || rest[0] == '/')) {
      return handler(conn, std::string(rest));
    }
  }
  if (uri == kPrefix && std::strcmp(info->request_method, "GET") == 0) {
    SendReply(conn, 200, "application/json", Index());
    return 200;
  }
  std::vector<std::string> parts = absl::StrSplit(uri.substr(kPrefix.size()), '/');
  const MethodDescriptor* method = parts.size() == 2 ? FindMethod(parts[0], parts[1]) : nullptr;
  if (method == nullptr) {
    return SendError(conn, grpc::Status(grpc::StatusCode::NOT_FOUND,
                                        absl::StrCat("no route ", uri, " on this server (",
                                                     "POST /api/v1/<service>/<Method>)")));
  }
  if (std::strcmp(info->request_method, "POST") != 0) {
    SendReply(conn, 405, "application/json",
              JsonError(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                     absl::StrCat(uri, " takes POST, not ", info->request_method))),
              {{"Allow", "POST"}});
    return 405;
  }
  std::string body;
  if (!ReadRequestBody(conn, options_.max_body_bytes, &body)) return 413;

  // Every request parses before anything is called: a bad one changes nothing.
  std::vector<std::string> requests;
  if (method->client_streaming()) {
    int line_number = 0;
    for (absl::string_view line : absl::StrSplit(body, '\n')) {
      ++line_number;
      if (absl::StripAsciiWhitespace(line).empty()) continue;
      std::string serialized;
      grpc::Status parsed =
          ParseJson(line, method->input_type(), absl::StrCat("line ", line_number), &serialized);
      if (!parsed.ok()) return SendError(conn, parsed);
      requests.push_back(std::move(serialized));
    }
  } else {
    std::string serialized;
    grpc::Status parsed = ParseJson(body, method->input_type(), "the body", &serialized);
    if (!parsed.ok()) return SendError(conn, parsed);
    requests.push_back(std::move(serialized));
  }

  grpc::ClientContext context;
  CopyRequestMetadata(conn, &context);
  const std::string path = absl::StrCat("/", method->service()->full_name(), "/", method->name());
  const google::protobuf::Descriptor* output = method->output_type();

  if (!method->server_streaming()) {
    std::string response;
    grpc::Status status =
        BlockingGenericCall(stub_, context, path, requests, [&](std::string message) {
          response = std::move(message);
          return true;
        });
    if (!status.ok()) return SendError(conn, status);
    std::string json;
    status = ToJson(response, output, &json);
    if (!status.ok()) return SendError(conn, status);
    SendReply(conn, 200, "application/json", json);
    return 200;
  }

  // A stream: the headers go with the first response, so that a call refused at once still
  // answers with its own status.
  const bool events = AcceptsEventStream(conn);
  bool headers_sent = false;
  auto send_headers = [&] {
    mg_response_header_start(conn, 200);
    mg_response_header_add(conn, "Content-Type",
                           events ? "text/event-stream" : "application/x-ndjson", -1);
    mg_response_header_add(conn, "Cache-Control", "no-store", -1);
    mg_response_header_add(conn, "Transfer-Encoding", "chunked", -1);
    mg_response_header_send(conn);
    headers_sent = true;
  };
  auto send = [&](const std::string& text) {
    return mg_send_chunk(conn, text.data(), text.size()) > 0;
  };
  grpc::Status status =
      BlockingGenericCall(stub_, context, path, requests, [&](std::string message) {
        std::string json;
        if (!ToJson(message, output, &json).ok()) return false;
        if (!headers_sent) send_headers();
        return send(events ? absl::StrCat("data: ", json, "\n\n") : absl::StrCat(json, "\n"));
      });
  if (!headers_sent) {
    if (!status.ok()) return SendError(conn, status);
    send_headers();
  }
  // The end of the stream says how it ended: a client cannot tell a cut connection otherwise.
  if (events) {
    send(status.ok() ? std::string("event: end\ndata: {}\n\n")
                     : absl::StrCat("event: error\ndata: ", JsonError(status), "\n\n"));
  } else if (!status.ok()) {
    send(absl::StrCat("{\"error\":", JsonError(status), "}\n"));
  }
  mg_send_chunk(conn, "", 0);
  return 200;
}

}  // namespace mlops
