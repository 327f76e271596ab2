#include "tools/cli/cli_util.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/support/client_interceptor.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "services/common/channel.h"
#include "services/common/digest.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::cli {

std::vector<std::string> Args::TakeAll(const std::string& name) {
  std::vector<std::string> values;
  for (size_t i = 0; i < args_.size();) {
    if (args_[i] == "--") break;
    if (args_[i] == name) {
      if (i + 1 >= args_.size()) throw UsageError{name + " needs a value"};
      values.push_back(args_[i + 1]);
      args_.erase(args_.begin() + i, args_.begin() + i + 2);
    } else if (args_[i].rfind(name + "=", 0) == 0) {
      values.push_back(args_[i].substr(name.size() + 1));
      args_.erase(args_.begin() + i);
    } else {
      ++i;
    }
  }
  return values;
}

std::optional<std::string> Args::Take(const std::string& name) {
  auto values = TakeAll(name);
  if (values.size() > 1) throw UsageError{name + " given more than once"};
  if (values.empty()) return std::nullopt;
  return values[0];
}

bool Args::TakeFlag(const std::string& name) {
  for (size_t i = 0; i < args_.size(); ++i) {
    if (args_[i] == "--") break;
    if (args_[i] == name) {
      args_.erase(args_.begin() + i);
      return true;
    }
  }
  return false;
}

std::optional<std::string> Args::OptionalPositional() {
  for (size_t i = 0; i < args_.size(); ++i) {
    if (args_[i].rfind("--", 0) != 0 || args_[i].size() == 2) {
      std::string value = args_[i];
      args_.erase(args_.begin() + i);
      return value;
    }
  }
  return std::nullopt;
}

std::string Args::Positional(const std::string& what) {
  auto value = OptionalPositional();
  if (!value) throw UsageError{"missing " + what};
  return *value;
}

std::vector<std::string> Args::Rest() {
  std::vector<std::string> rest;
  for (size_t i = 0; i < args_.size(); ++i) {
    if (args_[i] != "--") continue;
    rest.assign(args_.begin() + static_cast<long>(i) + 1, args_.end());
    args_.erase(args_.begin() + static_cast<long>(i), args_.end());
    break;
  }
  return rest;
}

void Args::ExpectEmpty() {
  if (!args_.empty()) throw UsageError{"unexpected argument '" + args_[0] + "'"};
}

std::pair<std::string, std::string> SplitKeyValue(const std::string& text, const char* what) {
  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw UsageError{StrCat(what, " '", text, "': expected KEY=VALUE")};
  }
  return {text.substr(0, eq), text.substr(eq + 1)};
}

double ParseDouble(const std::string& text, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0') {
    throw UsageError{StrCat(what, ": '", text, "' is not a number")};
  }
  return value;
}

int64_t ParseInt(const std::string& text, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE) {
    throw UsageError{StrCat(what, ": '", text, "' is not an integer")};
  }
  return value;
}

std::string FormatTime(int64_t ms) {
  if (ms == 0) return "-";
  std::time_t seconds = ms / 1000;
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size());
  for (size_t c = 0; c < header.size(); ++c) widths[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
      widths[c] = std::max(widths[c], row[c].size());
    }
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(widths[c] - row[c].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

void PrintJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  std::cout << out;
  if (out.empty() || out.back() != '\n') std::cout << "\n";
}

void FailRpc(const grpc::Status& status) { FailStatus(FromGrpcStatus(status)); }

void FailStatus(const absl::Status& status) {
  int code = static_cast<int>(status.code());
  std::cerr << "error: " << StatusCodeName(code) << ": " << status.message() << "\n";
  if (status.code() == absl::StatusCode::kUnavailable) {
    std::cerr << "(is the server running? start it with mlops-server, or set --server / "
                 "MLOPS_SERVER)\n";
  }
  std::exit(1);
}

std::string StepRequestId(const std::string& what) {
  const char* key = std::getenv("MLOPS_STEP_KEY");
  if (key == nullptr || *key == '\0') return "";
  std::string id = std::string(key) + ":" + what;
  // Request ids are at most 128 bytes: a long one is named by its digest.
  if (id.size() > 128) id = std::string(key) + ":" + DigestHex(Sha256Of(what)).substr(0, 40);
  return id;
}

Endpoints TakeEndpoints(Args& args) {
  auto env = [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::string(value);
  };
  std::optional<std::string> server = args.Take("--server");
  auto pick = [&](const char* flag, const char* variable) {
    if (auto given = args.Take(flag)) return *given;
    if (server) return *server;
    if (auto from_env = env(variable)) return *from_env;
    return env("MLOPS_SERVER").value_or("localhost:50051");
  };
  Endpoints out;
  out.metadata = pick("--metadata_server", "MLOPS_METADATA_SERVER");
  out.artifact = pick("--artifact_server", "MLOPS_ARTIFACT_SERVER");
  out.scheduler = pick("--scheduler_server", "MLOPS_SCHEDULER_SERVER");
  out.monitoring = pick("--monitoring_server", "MLOPS_MONITORING_SERVER");
  std::optional<std::string> ca = args.Take("--ca");
  if (!ca) ca = env("MLOPS_CA");
  if (ca) {
    std::ifstream in(*ca, std::ios::binary);
    std::ostringstream pem;
    pem << in.rdbuf();
    if (!in || pem.str().find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      throw UsageError{"--ca " + *ca + ": not a readable PEM certificate file"};
    }
    out.ca_pem = pem.str();
  }
  // A client certificate for servers that require one (mTLS).
  std::optional<std::string> cert = args.Take("--cert");
  if (!cert) cert = env("MLOPS_CERT");
  std::optional<std::string> key = args.Take("--key");
  if (!key) key = env("MLOPS_KEY");
  if (cert.has_value() != key.has_value()) {
    throw UsageError{cert ? "--cert needs --key (or MLOPS_KEY): the certificate's private key"
                          : "--key needs --cert (or MLOPS_CERT): the client certificate"};
  }
  if (cert) {
    if (out.ca_pem.empty()) {
      throw UsageError{"--cert and --key present a client certificate over TLS: give --ca too"};
    }
    auto read_pem = [](const std::string& flag, const std::string& path, const char* marker) {
      std::ifstream in(path, std::ios::binary);
      std::ostringstream pem;
      pem << in.rdbuf();
      if (!in || pem.str().find(marker) == std::string::npos) {
        throw UsageError{flag + " " + path + ": not a readable PEM file"};
      }
      return pem.str();
    };
    out.cert_pem = read_pem("--cert", *cert, "-----BEGIN CERTIFICATE-----");
    out.key_pem = read_pem("--key", *key, "PRIVATE KEY-----");
  }
  // The project every call acts in (docs/api.md, "Projects").
  std::optional<std::string> project = args.Take("--project");
  if (!project) project = env("MLOPS_PROJECT");
  if (project) {
    absl::Status valid = *project == kEveryProject ? absl::OkStatus() : ValidateProject(*project);
    if (!valid.ok()) {
      throw UsageError{"--project (or MLOPS_PROJECT): " + std::string(valid.message())};
    }
    out.project = *project;
  }
  std::optional<std::string> token_file = args.Take("--token-file");
  if (!token_file) token_file = env("MLOPS_TOKEN_FILE");
  if (auto token = env("MLOPS_TOKEN")) {
    out.token = *token;
  } else if (token_file) {
    std::ifstream in(*token_file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    std::string token = text.str();
    size_t begin = token.find_first_not_of(" \t\r\n");
    size_t end = token.find_last_not_of(" \t\r\n");
    if (!in || begin == std::string::npos) {
      throw UsageError{"--token-file " + *token_file + ": not a readable file holding a token"};
    }
    out.token = token.substr(begin, end - begin + 1);
  }
  for (char c : out.token) {
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) {
      throw UsageError{
          "the bearer token (MLOPS_TOKEN or --token-file) has a character that "
          "cannot travel in a header (space, control or non-ASCII)"};
    }
  }
  return out;
}

namespace {

// Rewrites UNIMPLEMENTED from a server that lacks the whole service into a message naming it.
class MissingServiceInterceptor : public grpc::experimental::Interceptor {
 public:
  MissingServiceInterceptor(std::string address, std::string method)
      : address_(std::move(address)), method_(std::move(method)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::POST_RECV_STATUS)) {
      grpc::Status* status = methods->GetRecvStatus();
      if (status != nullptr && status->error_code() == grpc::StatusCode::UNIMPLEMENTED) {
        // "/mlops.artifact.v1.ArtifactService/Push" -> the service and its flag.
        std::string service = method_.substr(1, method_.rfind('/') - 1);
        std::string short_name = service.substr(6, service.find('.', 6) - 6);  // "artifact"
        std::string upper;
        for (char c : short_name) upper += static_cast<char>(std::toupper(c));
        *status = grpc::Status(
            grpc::StatusCode::UNIMPLEMENTED,
            "the server at " + address_ + " does not serve " + service + "; set --" + short_name +
                "_server (or MLOPS_" + upper + "_SERVER) to where it runs" +
                (status->error_message().empty() ? std::string()
                                                 : " (" + status->error_message() + ")"));
      }
    }
    methods->Proceed();
  }

 private:
  std::string address_, method_;
};

class MissingServiceInterceptorFactory
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit MissingServiceInterceptorFactory(std::string address) : address_(std::move(address)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    std::string method = info->method() == nullptr ? "" : info->method();
    if (method.rfind("/mlops.", 0) != 0) return nullptr;  // health checks and the like
    return new MissingServiceInterceptor(address_, method);
  }

 private:
  std::string address_;
};

}  // namespace

std::shared_ptr<grpc::Channel> ServiceChannel(const std::string& address,
                                              const Endpoints& endpoints) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<MissingServiceInterceptorFactory>(address));
  ChannelSecurity security;
  security.ca_pem = endpoints.ca_pem;
  security.cert_pem = endpoints.cert_pem;
  security.key_pem = endpoints.key_pem;
  if (!endpoints.token.empty()) security.token = [token = endpoints.token] { return token; };
  security.project = endpoints.project;
  return SecureChannel(address, security, args, std::move(factories));
}

}  // namespace mlops::cli
