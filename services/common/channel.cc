#include "services/common/channel.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <vector>

#include "services/common/access_table.h"
#include "services/common/projects.h"

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

class MetadataInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit MetadataInterceptor(const std::vector<std::pair<std::string, std::string>>* entries)
      : entries_(entries) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      for (const auto& [key, value] : *entries_) {
        methods->GetSendInitialMetadata()->emplace(key, value);
      }
    }
    methods->Proceed();
  }

 private:
  const std::vector<std::pair<std::string, std::string>>* entries_;
};

class MetadataInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit MetadataInterceptorFactory(std::vector<std::pair<std::string, std::string>> entries)
      : entries_(std::move(entries)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new MetadataInterceptor(&entries_);
  }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

// Puts every call in one project (docs/api.md, "Projects"): the request's names and ids written
// without a project get it (QualifyRequest, by the access table), and the call carries it as
// mlops-project metadata (what a client stream acts in). The request is rewritten in its
// serialized form: parsed as its method's input type, qualified, serialized again.
class ProjectInterceptor : public grpc::experimental::Interceptor {
 public:
  ProjectInterceptor(const std::string* project, const MethodAccess* access,
                     const google::protobuf::Message* prototype)
      : project_(project), access_(access), prototype_(prototype) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      if (*project_ != kEveryProject) {
        methods->GetSendInitialMetadata()->emplace("mlops-project", *project_);
      }
    }
    if (access_ != nullptr && prototype_ != nullptr &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      if (grpc::ByteBuffer* buffer = methods->GetSerializedSendMessage(); buffer != nullptr) {
        std::vector<grpc::Slice> slices;
        if (buffer->Dump(&slices).ok()) {
          std::string bytes;
          for (const grpc::Slice& slice : slices) {
            bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
          }
          std::unique_ptr<google::protobuf::Message> request(prototype_->New());
          if (request->ParseFromString(bytes)) {
            QualifyRequest(*access_, *project_, request.get());
            grpc::Slice slice(request->SerializeAsString());
            grpc::ByteBuffer qualified(&slice, 1);
            buffer->Swap(&qualified);
          }
        }
      }
    }
    methods->Proceed();
  }

 private:
  const std::string* project_;
  const MethodAccess* access_;
  const google::protobuf::Message* prototype_;
};

class ProjectInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit ProjectInterceptorFactory(std::string project) : project_(std::move(project)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    std::string method = info->method() == nullptr ? "" : info->method();
    const MethodAccess* access = FindMethodAccess(method);
    const google::protobuf::Message* prototype = nullptr;
    if (access != nullptr && !access->project.empty() && access->project != "@metadata") {
      // Unary and server-streaming requests, and each message of a client stream.
      std::string name = method.substr(1);  // "/pkg.Service/Method" -> "pkg.Service.Method"
      std::replace(name.begin(), name.end(), '/', '.');
      if (const auto* descriptor =
              google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(name)) {
        prototype = google::protobuf::MessageFactory::generated_factory()->GetPrototype(
            descriptor->input_type());
      }
    }
    return new ProjectInterceptor(&project_, access, prototype);
  }

 private:
  std::string project_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> MakeProjectInterceptor(
    std::string project) {
  return std::make_unique<ProjectInterceptorFactory>(std::move(project));
}

std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> MakeMetadataInterceptor(
    std::vector<std::pair<std::string, std::string>> entries) {
  return std::make_unique<MetadataInterceptorFactory>(std::move(entries));
}

std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> MakeBearerTokenInterceptor(
    std::function<std::string()> token) {
  return std::make_unique<BearerTokenInterceptorFactory>(std::move(token));
}

std::shared_ptr<grpc::Channel> SecureChannel(
    const std::string& address, const ChannelSecurity& security, grpc::ChannelArguments args,
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> more) {
  if (security.token) more.insert(more.begin(), MakeBearerTokenInterceptor(security.token));
  if (!security.project.empty() && security.project != kDefaultProject) {
    more.insert(more.begin(), MakeProjectInterceptor(security.project));
  }
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
