#include "tests/testing/testing.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <grpcpp/generic/generic_stub.h>
#include <netinet/in.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <thread>

#include "services/common/subprocess.h"

namespace mlops::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/mlops-test-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (mkdtemp(buffer.data()) == nullptr) std::abort();
  path_ = buffer.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

namespace {

ServerConfig DefaultTestConfig(bool metrics, std::shared_ptr<Authenticator> authenticator) {
  ServerConfig config;
  config.authenticator = std::move(authenticator);
  config.metrics_port = metrics ? 0 : -1;
  return config;
}

}  // namespace

InProcessServer::InProcessServer(const std::vector<ComponentFactory>& factories, bool metrics,
                                 std::shared_ptr<Authenticator> authenticator)
    : InProcessServer(factories, DefaultTestConfig(metrics, std::move(authenticator))) {}

InProcessServer::InProcessServer(const std::vector<ComponentFactory>& factories,
                                 ServerConfig config) {
  config.host = "127.0.0.1";
  config.port = 0;
  config.metrics_host = "127.0.0.1";
  host_ = std::make_unique<ServiceHost>(config);
  for (const auto& factory : factories) {
    auto component = factory(dir_.path(), Db::Options());
    if (!component.ok()) {
      ADD_FAILURE() << component.status();
      std::abort();
    }
    (*component)->Register(*host_);
    components_.push_back(std::move(*component));
  }
  absl::Status status = host_->OpenAuditLog(dir_.path() + "/audit", Db::Options());
  if (status.ok()) status = host_->Start();
  if (!status.ok()) {
    ADD_FAILURE() << status;
    std::abort();
  }
  for (const auto& component : components_) {
    if (absl::Status started = component->Started(*host_); !started.ok()) {
      ADD_FAILURE() << started;
      std::abort();
    }
  }
}

InProcessServer::~InProcessServer() {
  // As RunServerMain: the components stop their own threads (which may call the in-process
  // channel), then the server stops serving.
  for (const auto& component : components_) component->Stop();
  host_->Shutdown(absl::Seconds(1));
  components_.clear();
  host_.reset();
}

std::shared_ptr<grpc::Channel> InProcessServer::NewChannel() const {
  return grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
}

std::shared_ptr<grpc::Channel> InProcessServer::NewChannel(const std::string& project) const {
  ChannelSecurity plain;
  plain.project = project;
  return SecureChannel(address(), plain, grpc::ChannelArguments());
}

ChannelForProject InProcessServer::ChannelsByProject() const {
  return [this](const std::string& project) -> absl::StatusOr<std::shared_ptr<grpc::Channel>> {
    return NewChannel(project);
  };
}

ChildServer::ChildServer(std::string binary, std::string data_dir,
                         std::vector<std::string> extra_args)
    : binary_(std::move(binary)),
      data_dir_(std::move(data_dir)),
      port_file_(data_dir_ + ".ports"),
      extra_args_(std::move(extra_args)) {}

ChildServer::~ChildServer() {
  if (pid_ > 0) Kill();
}

void ChildServer::Start() {
  std::filesystem::remove(port_file_);
  std::vector<std::string> args = {binary_,
                                   "--host=127.0.0.1",
                                   "--port=0",
                                   "--metrics_port=0",
                                   "--data_dir=" + data_dir_,
                                   "--port_file=" + port_file_};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  SpawnOptions options;
  options.argv = std::move(args);
  std::string log = data_dir_ + ".log";
  options.err = Stdio::File(log);
  auto child = Subprocess::Spawn(options);
  ASSERT_TRUE(child.ok()) << child.status();
  pid_ = child->Release();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(port_file_);
    if (in >> port_ >> metrics_port_) return;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      FAIL() << binary_ << " exited early with status " << status << "; see " << log;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL() << binary_ << " did not write " << port_file_;
}

void ChildServer::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

int ChildServer::Terminate() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& env_extra) {
  SpawnOptions options;
  options.argv = argv;
  options.SetEnv(env_extra);
  CommandResult result;
  auto output = RunAndCapture(std::move(options));
  if (!output.ok()) return result;
  result.exit_code = output->exit_code;
  result.out = std::move(output->out);
  result.err = std::move(output->err);
  return result;
}

std::pair<int, std::string> HttpGet(int port, const std::string& path) {
  CURL* curl = curl_easy_init();
  std::string body;
  std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t n, void* out) -> size_t {
        static_cast<std::string*>(out)->append(data, size * n);
        return size * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  long code = 0;
  if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(curl);
  return {static_cast<int>(code), body};
}

HttpResponse HttpRequest(int port, const std::string& method, const std::string& path,
                         const std::string& body, const std::vector<std::string>& headers) {
  CURL* curl = curl_easy_init();
  HttpResponse response;
  std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  if (!body.empty() || method == "POST" || method == "PUT") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_slist* list = nullptr;
  for (const std::string& header : headers) list = curl_slist_append(list, header.c_str());
  if (list != nullptr) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t n, void* out) -> size_t {
        static_cast<std::string*>(out)->append(data, size * n);
        return size * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
  curl_easy_setopt(
      curl, CURLOPT_HEADERFUNCTION, +[](char* data, size_t size, size_t n, void* out) -> size_t {
        std::string line(data, size * n);
        size_t colon = line.find(':');
        if (colon != std::string::npos) {
          std::string name = line.substr(0, colon);
          for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          size_t start = line.find_first_not_of(' ', colon + 1);
          size_t stop = line.find_last_not_of("\r\n");
          (*static_cast<std::map<std::string, std::string>*>(out))[name] =
              start == std::string::npos || stop < start ? ""
                                                         : line.substr(start, stop - start + 1);
        }
        return size * n;
      });
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response.headers);
  if (curl_easy_perform(curl) == CURLE_OK) {
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    response.status = static_cast<int>(code);
    char* type = nullptr;
    curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &type);
    if (type != nullptr) response.content_type = type;
  }
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  return response;
}

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<char>(rng());
  return out;
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

PrometheusServer::PrometheusServer(const std::string& dir, const std::vector<int>& metrics_ports) {
  std::string config = dir + "/prometheus.yml";
  {
    std::ofstream out(config);
    out << "global:\n  scrape_interval: 1s\nscrape_configs:\n"
        << "  - job_name: mlops\n    static_configs:\n      - targets: [";
    for (size_t i = 0; i < metrics_ports.size(); ++i) {
      out << (i ? ", " : "") << "'127.0.0.1:" << metrics_ports[i] << "'";
    }
    out << "]\n";
  }
  port_ = FreePort();
  SpawnOptions options;
  options.argv = {"/usr/bin/prometheus", "--config.file=" + config,
                  "--storage.tsdb.path=" + dir + "/tsdb",
                  "--web.listen-address=127.0.0.1:" + std::to_string(port_)};
  options.out = Stdio::Null();
  options.err = Stdio::Null();
  auto child = Subprocess::Spawn(options);
  if (child.ok()) pid_ = child->Release();
}

PrometheusServer::~PrometheusServer() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
}

std::string PrometheusServer::Query(const std::string& expr) const {
  CURL* curl = curl_easy_init();
  char* escaped = curl_easy_escape(curl, expr.c_str(), static_cast<int>(expr.size()));
  std::string path = std::string("/api/v1/query?query=") + escaped;
  curl_free(escaped);
  curl_easy_cleanup(curl);
  auto [code, body] = HttpGet(port_, path);
  return code == 200 ? body : "";
}

std::string PrometheusServer::WaitFor(const std::string& expr, int seconds) const {
  std::string body;
  for (int i = 0; i < seconds * 10; ++i) {
    body = Query(expr);
    if (body.find("\"value\"") != std::string::npos) return body;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return body;
}

std::string AddToken(const std::string& path, const std::string& subject, Role role) {
  std::string token = NewToken();
  TokenEntry entry;
  entry.principal.subject = subject;
  entry.principal.grants[std::string(kDefaultProject)] = role;
  entry.sha256 = TokenHash(token);
  EXPECT_TRUE(AppendTokenEntry(path, entry).ok()) << path;
  return token;
}

std::pair<grpc::Status, std::string> RawUnaryCall(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
    const std::string& request, const std::vector<std::pair<std::string, std::string>>& metadata) {
  grpc::GenericStub generic(channel);
  grpc::ClientContext context;
  for (const auto& [key, value] : metadata) context.AddMetadata(key, value);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  std::promise<grpc::Status> done;
  generic.UnaryCall(&context, method, grpc::StubOptions(), &request_buffer, &response_buffer,
                    [&](grpc::Status status) { done.set_value(std::move(status)); });
  grpc::Status status = done.get_future().get();
  std::string bytes;
  std::vector<grpc::Slice> slices;
  if (status.ok() && response_buffer.Dump(&slices).ok()) {
    for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return {status, bytes};
}

void SetRecord(const std::string& db_path, const std::string& cf, const std::string& key,
               const std::string& value) {
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), db_path, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : names) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), db_path, descriptors, &handles, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::ColumnFamilyHandle* target = nullptr;
  for (auto* handle : handles) {
    if (handle->GetName() == cf) target = handle;
  }
  EXPECT_NE(target, nullptr) << "no column family " << cf;
  if (target != nullptr) {
    EXPECT_TRUE(db->Put(rocksdb::WriteOptions(), target, key, value).ok());
  }
  for (auto* handle : handles) db->DestroyColumnFamilyHandle(handle);
}

void CorruptRecord(const std::string& db_path, const std::string& cf, const std::string& key) {
  // A truncated varint tag: no message parses from it.
  SetRecord(db_path, cf, key, std::string("\xff\xff\xff", 3));
}

}  // namespace mlops::testing
