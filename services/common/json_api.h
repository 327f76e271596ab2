// The HTTP/JSON API (docs/api.md, "HTTP/JSON API"): every RPC of the services a server hosts, on
// its HTTP port, as
//
//   POST /api/v1/<service>/<Method>     e.g. POST /api/v1/metadata/SearchRuns
//
// where <service> is the proto package's name (metadata, artifact, scheduler, monitoring, audit)
// and the bodies are the protos' canonical JSON (protobuf's util/json_util.h). Client-streaming
// methods take newline-delimited JSON (one request a line); server-streaming ones answer
// newline-delimited JSON, or Server-Sent Events when the request accepts text/event-stream.
// Errors are {"code": "NOT_FOUND", "message": "..."} with the HTTP status of the gRPC code.
//
// There is no second implementation of anything: a request becomes a gRPC call on an in-process
// channel to this server, carrying the HTTP request's Authorization, mlops-project and
// x-request-id headers, so it passes the same guard (authentication, roles, limits), validation,
// metrics and audit log as a call from the network. Nothing of a URL reaches the filesystem.
#pragma once

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace google::protobuf {
class Message;
class MethodDescriptor;
}  // namespace google::protobuf

struct mg_connection;

namespace mlops {

// The HTTP status of a gRPC code (the mapping of google.rpc.Code): 400, 401, 403, 404, 409, 412,
// 429, 499, 500, 501, 503, 504.
int HttpStatusOf(grpc::StatusCode code);
// "NOT_FOUND" for NOT_FOUND, and so on.
const char* CodeName(grpc::StatusCode code);
// The JSON error body {"code": ..., "message": ...}.
std::string JsonError(const grpc::Status& status);

// Drives one call of a generic stub on a completion queue of its own, blocking the calling thread:
// the requests are written as fast as the server takes them while the responses are read, and each
// response goes to `on_response` as it comes (false from it cancels the call). Works for every
// kind of method (a generic call is a stream either way). Returns the call's status.
grpc::Status BlockingGenericCall(grpc::GenericStub& stub, grpc::ClientContext& context,
                                 const std::string& method,
                                 const std::vector<std::string>& requests,
                                 const std::function<bool(std::string response)>& on_response);

class JsonApi {
 public:
  struct Options {
    // A request body over this is refused (413, RESOURCE_EXHAUSTED) before anything is called.
    int64_t max_body_bytes = 64 << 20;
  };

  // `channel`: an in-process channel to this server that carries no credentials of its own (each
  // call carries the HTTP request's). `services`: the packages this server hosts ("metadata",
  // ...); a request for another answers 404.
  JsonApi(std::shared_ptr<grpc::Channel> channel, const std::vector<std::string>& services,
          Options options);

  // Serves every URI under /api/v1/<prefix>/ (and /api/v1/<prefix> itself) with `handler`, given
  // what follows the prefix ("" or "/..."): routes beyond the RPCs, such as the byte routes of the
  // artifact service. The handler returns the HTTP status it sent.
  using RouteHandler = std::function<int(mg_connection* conn, const std::string& rest)>;
  void AddRoute(const std::string& prefix, RouteHandler handler);

  // The method of /api/v1/<service>/<method>, or null when this server hosts none such.
  const google::protobuf::MethodDescriptor* FindMethod(std::string_view service,
                                                       std::string_view method) const;
  // "metadata/SearchRuns", ... : every route, sorted.
  std::vector<std::string> Routes() const;
  // What GET /api/v1/ answers: {"routes": [{"route", "method", "request", "response",
  // "clientStreaming", "serverStreaming"}, ...]}.
  std::string Index() const;

  // Serves one request under /api/v1/ (registered with HttpServer::AddHandler). Returns the HTTP
  // status sent.
  int Handle(mg_connection* conn);

  // A ClientContext carrying the credentials and ids of the HTTP request (for routes of other
  // components that call the services the same way: the byte routes of the artifact service).
  static void CopyRequestMetadata(mg_connection* conn, grpc::ClientContext* context);
  grpc::GenericStub& stub() { return stub_; }

 private:
  grpc::GenericStub stub_;
  Options options_;
  // "metadata/SearchRuns" -> its method.
  std::map<std::string, const google::protobuf::MethodDescriptor*, std::less<>> methods_;
  std::vector<std::pair<std::string, RouteHandler>> routes_;
};

// The gRPC metadata an HTTP request forwards: its Authorization, Mlops-Project and X-Request-Id
// headers as authorization, mlops-project and x-request-id.
std::vector<std::pair<std::string, std::string>> RequestMetadata(mg_connection* conn);

// Reads the request body of `conn` into `body`: false (with a 413 or 400 JSON error sent) when it
// is over `max_bytes` or the connection breaks.
bool ReadRequestBody(mg_connection* conn, int64_t max_bytes, std::string* body);
// Sends a whole reply.
void SendReply(mg_connection* conn, int status, const char* content_type, std::string_view body,
               const std::vector<std::pair<std::string, std::string>>& headers = {});
// Sends `status` as a JSON error reply; returns its HTTP status.
int SendError(mg_connection* conn, const grpc::Status& status);
// The value of query parameter `name` of the request (URL-decoded), or nullopt.
std::optional<std::string> QueryParameter(mg_connection* conn, const char* name);

}  // namespace mlops
