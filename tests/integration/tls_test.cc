// TLS on a real mlops-server with certificates made by openssl in the test: the CLI's --ca, a
// foreign CA and plaintext refused, mutual TLS (no client certificate, one from another CA:
// refused; the CLI's --cert/--key), and a certificate rotated on disk while a client streams: new
// connections get the new certificate with no restart, the open stream finishes on the old one.
// The HTTP port (/metrics, /healthz) serves the same certificates through the same rotation,
// checked with curl.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "services/common/channel.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

namespace md = mlops::metadata::v1;
using ::testing::HasSubstr;

// A CA and certificates it signs, made with the openssl command line (P-256 keys).
class Pki {
 public:
  explicit Pki(std::string dir) : dir_(std::move(dir)) {}
  // Makes NAME.key and NAME.pem, a self-signed CA.
  void Ca(const std::string& name) {
    Run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", Path(name + ".key"), "-out", Path(name + ".pem"), "-days", "2",
         "-subj", "/CN=" + name});
  }
  // Makes NAME.key and NAME.pem signed by CA, valid for localhost and 127.0.0.1.
  void Leaf(const std::string& name, const std::string& ca) {
    std::ofstream(Path(name + ".ext")) << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    Run({"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", Path(name + ".key"), "-out", Path(name + ".csr"), "-subj", "/CN=" + name});
    Run({"openssl", "x509", "-req", "-in", Path(name + ".csr"), "-CA", Path(ca + ".pem"), "-CAkey",
         Path(ca + ".key"), "-CAcreateserial", "-out", Path(name + ".pem"), "-days", "2",
         "-extfile", Path(name + ".ext")});
  }
  std::string Path(const std::string& file) const { return dir_ + "/" + file; }
  std::string Read(const std::string& file) const {
    std::ifstream in(Path(file));
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  static void Run(const std::vector<std::string>& argv) {
    testing::CommandResult result = testing::RunCommand(argv);
    ASSERT_EQ(result.exit_code, 0) << argv[1] << ": " << result.err;
  }
  std::string dir_;
};

std::shared_ptr<grpc::Channel> TlsChannel(const std::string& address, const std::string& ca_pem,
                                          const std::string& cert_pem = "",
                                          const std::string& key_pem = "") {
  ChannelSecurity security;
  security.ca_pem = ca_pem;
  security.cert_pem = cert_pem;
  security.key_pem = key_pem;
  return SecureChannel(address, security, grpc::ChannelArguments());
}

// GET https://127.0.0.1:PORT/PATH with curl, trusting `ca` (and presenting a client certificate
// when given): the body on success, "" (with curl's reason in *error) otherwise.
std::string Https(int port, const std::string& path, const std::string& ca,
                  const std::string& cert = "", const std::string& key = "",
                  std::string* error = nullptr) {
  std::vector<std::string> argv = {"curl", "-sS", "-f", "--max-time", "10", "--cacert", ca};
  if (!cert.empty()) argv.insert(argv.end(), {"--cert", cert, "--key", key});
  argv.push_back("https://127.0.0.1:" + std::to_string(port) + path);
  testing::CommandResult result = testing::RunCommand(argv);
  if (error != nullptr) *error = result.err;
  return result.exit_code == 0 ? result.out : "";
}

grpc::Status ListExperiments(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = md::MetadataService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  md::ListExperimentsRequest request;
  md::ListExperimentsResponse response;
  return stub->ListExperiments(&context, request, &response);
}

TEST(TlsTest, TheCliConnectsWithItsCaAndNothingElseDoes) {
  testing::TempDir dir;
  Pki pki(dir.path());
  pki.Ca("ca");
  pki.Leaf("server", "ca");
  pki.Ca("other");
  testing::ChildServer server(
      MLOPS_SERVER_BIN, dir.path() + "/data",
      {"--tls_cert=" + pki.Path("server.pem"), "--tls_key=" + pki.Path("server.key")});
  server.Start();
  auto mlops = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {MLOPS_CLI_BIN, "--server", server.address()});
    return testing::RunCommand(args);
  };
  auto created = mlops({"--ca", pki.Path("ca.pem"), "experiments", "create", "over-tls"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  auto listed = mlops({"--ca", pki.Path("ca.pem"), "experiments", "list"});
  EXPECT_THAT(listed.out, HasSubstr("over-tls"));
  auto plaintext = mlops({"experiments", "list"});
  EXPECT_EQ(plaintext.exit_code, 1);
  EXPECT_THAT(plaintext.err, HasSubstr("UNAVAILABLE"));
  auto foreign = mlops({"--ca", pki.Path("other.pem"), "experiments", "list"});
  EXPECT_EQ(foreign.exit_code, 1);
  EXPECT_THAT(foreign.err, HasSubstr("UNAVAILABLE"));
  // The HTTP port serves the same certificate: /metrics over TLS, nothing in plaintext.
  std::string metrics = Https(server.metrics_port(), "/metrics", pki.Path("ca.pem"));
  EXPECT_THAT(metrics, HasSubstr("grpc_server_handled_total"));
  EXPECT_EQ(Https(server.metrics_port(), "/healthz", pki.Path("ca.pem")), "ok\n");
  EXPECT_NE(testing::HttpGet(server.metrics_port(), "/metrics").first, 200);
  std::string error;
  EXPECT_EQ(Https(server.metrics_port(), "/metrics", pki.Path("other.pem"), "", "", &error), "");
  EXPECT_THAT(error, HasSubstr("certificate"));
  // Many scrapes, some at once, each over its own connection.
  std::vector<std::thread> scrapers;
  std::atomic<int> scraped{0};
  for (int i = 0; i < 8; ++i) {
    scrapers.emplace_back([&] {
      for (int j = 0; j < 5; ++j) {
        if (Https(server.metrics_port(), "/metrics", pki.Path("ca.pem")).find("# TYPE") !=
            std::string::npos) {
          ++scraped;
        }
      }
    });
  }
  for (auto& t : scrapers) t.join();
  EXPECT_EQ(scraped.load(), 40);
}

TEST(TlsTest, MutualTlsRefusesClientsWithoutACertificateTheCaSigned) {
  testing::TempDir dir;
  Pki pki(dir.path());
  pki.Ca("ca");
  pki.Leaf("server", "ca");
  pki.Ca("clients");
  pki.Leaf("alice", "clients");
  pki.Ca("rogue");
  pki.Leaf("mallory", "rogue");
  testing::ChildServer server(
      MLOPS_SERVER_BIN, dir.path() + "/data",
      {"--tls_cert=" + pki.Path("server.pem"), "--tls_key=" + pki.Path("server.key"),
       "--tls_client_ca=" + pki.Path("clients.pem")});
  server.Start();
  std::string ca = pki.Read("ca.pem");
  EXPECT_TRUE(ListExperiments(
                  TlsChannel(server.address(), ca, pki.Read("alice.pem"), pki.Read("alice.key")))
                  .ok());
  EXPECT_EQ(ListExperiments(TlsChannel(server.address(), ca)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ListExperiments(
                TlsChannel(server.address(), ca, pki.Read("mallory.pem"), pki.Read("mallory.key")))
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // The HTTP port asks for client certificates as well.
  EXPECT_THAT(Https(server.metrics_port(), "/metrics", pki.Path("ca.pem"), pki.Path("alice.pem"),
                    pki.Path("alice.key")),
              HasSubstr("# TYPE"));
  EXPECT_EQ(Https(server.metrics_port(), "/metrics", pki.Path("ca.pem")), "");
  EXPECT_EQ(Https(server.metrics_port(), "/metrics", pki.Path("ca.pem"), pki.Path("mallory.pem"),
                  pki.Path("mallory.key")),
            "");
  // The CLI presents its certificate with --cert/--key (or MLOPS_CERT/MLOPS_KEY).
  auto mlops = [&](std::vector<std::string> args, const std::vector<std::string>& env = {}) {
    args.insert(args.begin(),
                {MLOPS_CLI_BIN, "--server", server.address(), "--ca", pki.Path("ca.pem")});
    return testing::RunCommand(args, env);
  };
  auto created = mlops({"--cert", pki.Path("alice.pem"), "--key", pki.Path("alice.key"),
                        "experiments", "create", "over-mtls"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  auto listed = mlops({"experiments", "list"}, {"MLOPS_CERT=" + pki.Path("alice.pem"),
                                                "MLOPS_KEY=" + pki.Path("alice.key")});
  EXPECT_THAT(listed.out, HasSubstr("over-mtls"));
  auto without = mlops({"experiments", "list"});
  EXPECT_EQ(without.exit_code, 1);
  EXPECT_THAT(without.err, HasSubstr("UNAVAILABLE"));
  auto rogue = mlops(
      {"--cert", pki.Path("mallory.pem"), "--key", pki.Path("mallory.key"), "experiments", "list"});
  EXPECT_EQ(rogue.exit_code, 1);
  auto half = mlops({"--cert", pki.Path("alice.pem"), "experiments", "list"});
  EXPECT_EQ(half.exit_code, 2);
  EXPECT_THAT(half.err, HasSubstr("--cert needs --key"));
  auto not_pem = mlops(
      {"--cert", pki.Path("alice.key"), "--key", pki.Path("alice.key"), "experiments", "list"});
  EXPECT_EQ(not_pem.exit_code, 2);
  EXPECT_THAT(not_pem.err, HasSubstr("not a readable PEM file"));
}

TEST(TlsTest, ARotatedCertificateServesNewConnectionsWhileAnOpenStreamFinishes) {
  testing::TempDir dir;
  Pki pki(dir.path());
  pki.Ca("old-ca");
  pki.Leaf("old", "old-ca");
  pki.Ca("new-ca");
  pki.Leaf("new", "new-ca");
  // The files the server watches, replaced by rename as cert-manager's Secret update does.
  std::filesystem::copy_file(pki.Path("old.pem"), pki.Path("tls.crt"));
  std::filesystem::copy_file(pki.Path("old.key"), pki.Path("tls.key"));
  testing::ChildServer server(MLOPS_SERVER_BIN, dir.path() + "/data",
                              {"--tls_cert=" + pki.Path("tls.crt"),
                               "--tls_key=" + pki.Path("tls.key"), "--tls_reload_s=1"});
  server.Start();
  auto old_channel = TlsChannel(server.address(), pki.Read("old-ca.pem"));
  auto stub = md::MetadataService::NewStub(old_channel);
  md::Run run;
  {
    grpc::ClientContext context;
    md::CreateExperimentRequest request;
    request.set_name("rotation");
    md::Experiment experiment;
    ASSERT_TRUE(stub->CreateExperiment(&context, request, &experiment).ok());
    grpc::ClientContext run_context;
    md::CreateRunRequest run_request;
    run_request.set_experiment_id(experiment.id());
    ASSERT_TRUE(stub->CreateRun(&run_context, run_request, &run).ok());
  }
  grpc::ClientContext stream_context;
  md::LogStreamResponse stream_response;
  auto stream = stub->LogStream(&stream_context, &stream_response);
  auto write_point = [&](int step) {
    md::LogBatchRequest batch;
    batch.set_run_id(run.id());
    auto* metric = batch.add_metrics();
    metric->set_key("loss");
    metric->set_value(1.0 / (step + 1));
    metric->set_step(step);
    return stream->Write(batch);
  };
  ASSERT_TRUE(write_point(0));

  std::filesystem::copy_file(pki.Path("new.pem"), pki.Path("tls.crt.tmp"));
  std::filesystem::copy_file(pki.Path("new.key"), pki.Path("tls.key.tmp"));
  std::filesystem::rename(pki.Path("tls.key.tmp"), pki.Path("tls.key"));
  std::filesystem::rename(pki.Path("tls.crt.tmp"), pki.Path("tls.crt"));
  auto start = std::chrono::steady_clock::now();
  grpc::Status fresh;
  for (int i = 0; i < 100; ++i) {
    fresh = ListExperiments(TlsChannel(server.address(), pki.Read("new-ca.pem")));
    if (fresh.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(fresh.ok()) << fresh.error_message();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 8.0);
  std::cout << "rotation reached a new connection in " << seconds << " s\n";
  // A new connection trusting only the old CA is refused now.
  EXPECT_EQ(ListExperiments(TlsChannel(server.address(), pki.Read("old-ca.pem"))).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // The HTTP port rotated too (it checks at most every second, as connections arrive).
  std::string rotated;
  for (int i = 0; i < 50 && rotated.empty(); ++i) {
    rotated = Https(server.metrics_port(), "/healthz", pki.Path("new-ca.pem"));
    if (rotated.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(rotated, "ok\n");
  EXPECT_EQ(Https(server.metrics_port(), "/healthz", pki.Path("old-ca.pem")), "");
  // The stream opened before the rotation goes on and finishes.
  ASSERT_TRUE(write_point(1));
  ASSERT_TRUE(stream->WritesDone());
  grpc::Status finished = stream->Finish();
  ASSERT_TRUE(finished.ok()) << finished.error_message();
  grpc::ClientContext history_context;
  md::GetMetricHistoryRequest history_request;
  history_request.set_run_id(run.id());
  history_request.set_key("loss");
  md::GetMetricHistoryResponse history;
  auto new_stub =
      md::MetadataService::NewStub(TlsChannel(server.address(), pki.Read("new-ca.pem")));
  ASSERT_TRUE(new_stub->GetMetricHistory(&history_context, history_request, &history).ok());
  EXPECT_EQ(history.metrics_size(), 2);
}

}  // namespace
}  // namespace mlops
