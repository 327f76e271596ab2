// Helpers shared by the CLI's command groups: argument parsing, tables, JSON, RPC errors.
#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/status.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/common/grpc_status.h"

namespace mlops::cli {

// Thrown on a bad command line: main prints it with a hint and exits 2.
struct UsageError {
  std::string message;
};

class Args {
 public:
  Args(std::vector<std::string> args) : args_(std::move(args)) {}
  // Removes and returns every value of --name (as "--name V" or "--name=V").
  std::vector<std::string> TakeAll(const std::string& name);
  std::optional<std::string> Take(const std::string& name);
  bool TakeFlag(const std::string& name);
  std::string Positional(const std::string& what);
  // The next positional argument, if any.
  std::optional<std::string> OptionalPositional();
  // Everything after "--" (removed with it); empty when there is no "--".
  std::vector<std::string> Rest();
  void ExpectEmpty();

 private:
  std::vector<std::string> args_;
};

std::pair<std::string, std::string> SplitKeyValue(const std::string& text, const char* what);
double ParseDouble(const std::string& text, const std::string& what);
int64_t ParseInt(const std::string& text, const std::string& what);
std::string FormatTime(int64_t ms);
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);
void PrintJson(const google::protobuf::Message& message);
// Prints a failed call's code and message (with a hint when the server is unreachable); exits 1.
[[noreturn]] void FailStatus(const absl::Status& status);
[[noreturn]] void FailRpc(const grpc::Status& status);

// The CLI's one way to make a unary call: `method` of `stub` with a deadline `timeout` from now;
// the response, or the call's status.
template <typename Stub, typename Request, typename Response>
absl::StatusOr<Response> Call(Stub* stub,
                              grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                           Response*),
                              const Request& request, std::chrono::seconds timeout) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  Response response;
  grpc::Status status = (stub->*method)(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

// Call, for commands that can only stop on an error: prints it (FailStatus) and exits 1, so the
// caller only sees a response.
template <typename Stub, typename Request, typename Response>
Response CallOrExit(Stub* stub,
                    grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                    const Request& request, std::chrono::seconds timeout) {
  auto response = Call(stub, method, request, timeout);
  if (!response.ok()) FailStatus(response.status());
  return *std::move(response);
}

// Inside a pipeline step (MLOPS_STEP_KEY set by the scheduler, the same for every attempt of the
// step): "<key>:<what>" (what by its digest when that is over 128 bytes), the request id that
// makes a retried attempt's write a no-op; else "".
std::string StepRequestId(const std::string& what);

// Where each service is: --metadata_server, --artifact_server, --scheduler_server and
// --monitoring_server, each defaulting to --server; then MLOPS_METADATA_SERVER ... in the
// environment; then MLOPS_SERVER; then localhost:50051. Flags are taken from `args`.
struct Endpoints {
  std::string metadata, artifact, scheduler, monitoring;
  // PEM of the CA that signs the servers' certificates (--ca FILE or $MLOPS_CA): when set, every
  // channel uses TLS (e.g. the chart's router with tls.enabled); empty: plaintext.
  std::string ca_pem;
  // The client certificate and key presented to servers that ask for one (mTLS: --tls_client_ca):
  // --cert FILE and --key FILE, or $MLOPS_CERT and $MLOPS_KEY; both or neither, with --ca.
  std::string cert_pem, key_pem;
  // The bearer token every call presents (docs/security.md): $MLOPS_TOKEN, else the contents of
  // --token-file FILE or $MLOPS_TOKEN_FILE (a Kubernetes service-account token); empty: none.
  std::string token;
  // The project every call acts in: --project P or $MLOPS_PROJECT; empty: default. Names and ids
  // given without a project are put in it, lists list it (docs/api.md, "Projects").
  std::string project;
};
Endpoints TakeEndpoints(Args& args);

// A channel to `address` on which a call that the server answers UNIMPLEMENTED (it does not host
// that service: a split deployment) fails with a message that says so and names the flag to set.
// With the endpoints' security: TLS when `ca_pem` is set (presenting `cert_pem` when set), the
// bearer token when set.
std::shared_ptr<grpc::Channel> ServiceChannel(const std::string& address,
                                              const Endpoints& endpoints);

}  // namespace mlops::cli
