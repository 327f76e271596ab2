#include "services/common/channel.h"

#include <fstream>
#include <sstream>

namespace mlops {

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsFor(const ChannelSecurity& security) {
  if (security.ca_pem.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = security.ca_pem;
  options.pem_cert_chain = security.cert_pem;
  options.pem_private_key = security.key_pem;
  return grpc::SslCredentials(options);
}

namespace {

class BearerTokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerTokenInterceptor(const std::function<std::string()>* token) : token_(token) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      std::string token = (*token_)();
      if (!token.empty()) {
        methods->GetSendInitialMetadata()->emplace("authorization", "Bearer " + token);
      }
    }
    methods->Proceed();
  }

 private:
  const std::function<std::string()>* token_;
};

class BearerTokenInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenInterceptorFactory(std::function<std::string()> token)
      : token_(std::move(token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    (void)info;
    return new BearerTokenInterceptor(&token_);
  }

 private:
  std::function<std::string()> token_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> MakeBearerTokenInterceptor(
    std::function<std::string()> token) {
  return std::make_unique<BearerTokenInterceptorFactory>(std::move(token));
}

std::shared_ptr<grpc::Channel> SecureChannel(
    const std::string& address, const ChannelSecurity& security, grpc::ChannelArguments args,
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> more) {
  if (security.token) more.insert(more.begin(), MakeBearerTokenInterceptor(security.token));
  if (more.empty()) {
    return grpc::CreateCustomChannel(address, ChannelCredentialsFor(security), args);
  }
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      address, ChannelCredentialsFor(security), args, std::move(more));
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(path + ": cannot read it");
  std::string out;
  char buffer[4096];
  while (in.read(buffer, sizeof(buffer)) || in.gcount() > 0) {
    out.append(buffer, static_cast<size_t>(in.gcount()));
    if (out.size() > max_bytes) {
      return absl::FailedPreconditionError(path + ": larger than " + std::to_string(max_bytes) +
                                           " bytes");
    }
  }
  return out;
}

absl::StatusOr<std::shared_ptr<FileTokenSource>> FileTokenSource::Open(std::string path) {
  std::shared_ptr<FileTokenSource> out(new FileTokenSource(std::move(path)));
  std::lock_guard lock(out->mu_);
  if (absl::Status status = out->Read(); !status.ok()) return status;
  return out;
}

absl::Status FileTokenSource::Read() {
  absl::StatusOr<std::string> text = ReadSmallFile(path_, 64 << 10);
  if (!text.ok()) return text.status();
  size_t begin = text->find_first_not_of(" \t\r\n");
  size_t end = text->find_last_not_of(" \t\r\n");
  if (begin == std::string::npos) return absl::FailedPreconditionError(path_ + ": no token in it");
  token_ = text->substr(begin, end - begin + 1);
  last_check_ = absl::Now();
  return absl::OkStatus();
}

std::string FileTokenSource::Token() {
  std::lock_guard lock(mu_);
  if (absl::Now() - last_check_ >= absl::Seconds(1)) {
    (void)Read();  // an unreadable file (being replaced) keeps the token read before
    last_check_ = absl::Now();
  }
  return token_;
}

}  // namespace mlops
