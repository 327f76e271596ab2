// The router suite of mlops-bench: what the router's hop costs (docker/router: Debian's nginx with
// grpc_pass, the chart's and compose's single gRPC entry point).
//
//   mlops-bench router [--json] [--calls=20000] [--clients=4] [--size_mb=512]
//                      [--server_bin=PATH] [--router=PATH] [--work_dir=DIR]
//
// Starts a child mlops-server and, in front of it, docker/router/mlops-router.sh (needs nginx on
// this host: `apt-get install nginx-light`), then does the same work twice, straight to the server
// (the floor) and through the router:
//   unary      --calls ListExperiments calls (page_size 1) from --clients threads, each with its
//              own channel: calls per second, p50 and p99 latency.
//   transfer   a --size_mb file of random bytes uploaded and downloaded by the artifact client
//              (chunked, hashed, verified): MB/s.
// Ratios are router / direct (1.0 = the hop costs nothing).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "services/artifact/client/artifact_client.h"
#include "services/common/strings.h"
#include "services/common/subprocess.h"
#include "tools/bench/bench.h"

namespace mlops::bench {
namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "mlops-bench router: " << message << "\n";
  std::exit(1);
}

double Quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(q * static_cast<double>(values.size() - 1))];
}

std::shared_ptr<grpc::Channel> Channel(const std::string& address, int index) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetInt("mlops.bench.channel", index);  // a channel (connection) per client, not shared
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

struct Unary {
  double calls_per_s = 0, p50_us = 0, p99_us = 0;
};

Unary MeasureUnary(const std::string& address, int64_t calls, int clients) {
  std::vector<std::vector<double>> latencies(clients);
  std::vector<std::thread> threads;
  std::atomic<bool> failed{false};
  auto start = Clock::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = metadata::v1::MetadataService::NewStub(Channel(address, c));
      metadata::v1::ListExperimentsRequest request;
      request.set_page_size(1);
      for (int64_t i = c; i < calls; i += clients) {
        grpc::ClientContext context;
        metadata::v1::ListExperimentsResponse response;
        auto t0 = Clock::now();
        if (!stub->ListExperiments(&context, request, &response).ok()) failed = true;
        latencies[c].push_back(
            std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (failed) Fail("a ListExperiments call to " + address + " failed");
  std::vector<double> all;
  for (const auto& some : latencies) all.insert(all.end(), some.begin(), some.end());
  return {static_cast<double>(calls) / seconds, Quantile(all, 0.5), Quantile(all, 0.99)};
}

// Upload then download `file` through `address`: MB/s of each.
std::pair<double, double> MeasureTransfer(const std::string& address, const std::string& file,
                                          const std::string& out, int64_t size_mb) {
  artifact::ArtifactClient client(Channel(address, 1000), artifact::ClientOptions{});
  auto start = Clock::now();
  artifact::TransferStats stats;
  auto blob = client.UploadFile(file, /*pin=*/false, &stats);
  if (!blob.ok()) Fail("upload through " + address + ": " + std::string(blob.status().message()));
  double up =
      static_cast<double>(size_mb) / std::chrono::duration<double>(Clock::now() - start).count();
  start = Clock::now();
  auto down = client.DownloadToFile(blob->digest(), out, nullptr);
  if (!down.ok()) Fail("download through " + address + ": " + std::string(down.message()));
  double rate =
      static_cast<double>(size_mb) / std::chrono::duration<double>(Clock::now() - start).count();
  std::filesystem::remove(out);
  return {up, rate};
}

int FreeLoopbackPort() {
  // Bound and released: nginx cannot take port 0 and report it.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    Fail("no free port");
  }
  int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

}  // namespace

int RunRouterBench(int argc, char** argv) {
  bool json = false;
  int64_t calls = 20000, size_mb = 512;
  int clients = 4;
  std::string server_bin = BenchDir() + "/../server/mlops-server";
  std::string router = MLOPS_SOURCE_DIR "/docker/router/mlops-router.sh";
  std::string work_parent = std::filesystem::temp_directory_path();
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--json") {
      json = true;
    } else if (const char* v = FlagValue(argv[i], "--calls")) {
      calls = std::atoll(v);
    } else if (const char* v = FlagValue(argv[i], "--clients")) {
      clients = std::max(1, std::atoi(v));
    } else if (const char* v = FlagValue(argv[i], "--size_mb")) {
      size_mb = std::atoll(v);
    } else if (const char* v = FlagValue(argv[i], "--server_bin")) {
      server_bin = v;
    } else if (const char* v = FlagValue(argv[i], "--router")) {
      router = v;
    } else if (const char* v = FlagValue(argv[i], "--work_dir")) {
      work_parent = v;
    } else {
      std::cerr << "usage: mlops-bench router [--json] [--calls=20000] [--clients=4] "
                   "[--size_mb=512] [--server_bin=PATH] [--router=PATH] [--work_dir=DIR]\n";
      return 2;
    }
  }
  if (::access("/usr/sbin/nginx", X_OK) != 0) {
    Fail("needs nginx on this host (apt-get install nginx-light), as the router image has");
  }
  if (::access(router.c_str(), X_OK) != 0) Fail("no router script at " + router + " (--router)");
  std::string tmpl = work_parent + "/mlops-bench-router-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) Fail("cannot create a work dir under " + work_parent);
  const std::string work = tmpl;
  auto log = [&](const std::string& line) {
    if (!json) std::cerr << line << "\n";
  };
  ::setenv("MLOPS_CACHE_DIR", (work + "/cache").c_str(), 1);

  int server_pid = 0;
  int server_port = SpawnServer(server_bin, work + "/server", &server_pid);
  const std::string direct = StrCat("127.0.0.1:", server_port);
  const int router_port = FreeLoopbackPort(), health_port = FreeLoopbackPort();
  SpawnOptions options;
  options.argv = {router};
  for (const char* service : {"METADATA", "ARTIFACT", "SCHEDULER", "MONITORING"}) {
    options.env[StrCat("MLOPS_", service, "_ADDRESS")] = direct;
  }
  options.env["MLOPS_ROUTER_PORT"] = std::to_string(router_port);
  options.env["MLOPS_ROUTER_HEALTH_PORT"] = std::to_string(health_port);
  options.env["TMPDIR"] = work;
  options.err = Stdio::File(work + "/router.log");
  auto nginx = Subprocess::Spawn(options);
  if (!nginx.ok()) Fail(std::string(nginx.status().message()));
  const std::string routed = StrCat("127.0.0.1:", router_port);
  bool up = false;
  for (int i = 0; i < 200 && !up; ++i) {
    auto channel = Channel(routed, -1);
    up =
        channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::milliseconds(50));
  }
  if (!up) Fail("the router did not start; see " + work + "/router.log");

  std::map<std::string, double> figures;
  log("unary: warm-up ...");
  MeasureUnary(direct, calls / 10, clients);
  MeasureUnary(routed, calls / 10, clients);
  log("unary: " + std::to_string(calls) + " calls direct, then through the router ...");
  Unary floor = MeasureUnary(direct, calls, clients);
  Unary hop = MeasureUnary(routed, calls, clients);
  figures["direct_unary_calls_per_s"] = floor.calls_per_s;
  figures["direct_unary_p50_us"] = floor.p50_us;
  figures["direct_unary_p99_us"] = floor.p99_us;
  figures["router_unary_calls_per_s"] = hop.calls_per_s;
  figures["router_unary_p50_us"] = hop.p50_us;
  figures["router_unary_p99_us"] = hop.p99_us;
  figures["router_unary_ratio_to_direct"] = hop.calls_per_s / floor.calls_per_s;
  figures["router_added_p50_us"] = hop.p50_us - floor.p50_us;

  log("transfer: a " + std::to_string(size_mb) + " MiB file up and down, direct then routed ...");
  std::string file = work + "/big.bin";
  {
    std::ofstream out(file, std::ios::binary);
    std::mt19937_64 random(7);
    std::vector<uint64_t> block(1 << 17);  // 1 MiB
    for (int64_t mb = 0; mb < size_mb; ++mb) {
      for (auto& word : block) word = random();
      out.write(reinterpret_cast<const char*>(block.data()), 1 << 20);
    }
  }
  auto [direct_up, direct_down] = MeasureTransfer(direct, file, work + "/out.bin", size_mb);
  // The same bytes again would be deduplicated: the routed run sends a file of its own.
  {
    std::fstream edit(file, std::ios::binary | std::ios::in | std::ios::out);
    std::mt19937_64 random(8);
    std::vector<uint64_t> block(1 << 17);
    for (int64_t mb = 0; mb < size_mb; ++mb) {
      for (auto& word : block) word = random();
      edit.write(reinterpret_cast<const char*>(block.data()), 1 << 20);
    }
  }
  auto [routed_up, routed_down] = MeasureTransfer(routed, file, work + "/out.bin", size_mb);
  figures["direct_upload_mb_per_s"] = direct_up;
  figures["direct_download_mb_per_s"] = direct_down;
  figures["router_upload_mb_per_s"] = routed_up;
  figures["router_download_mb_per_s"] = routed_down;
  figures["router_upload_ratio_to_direct"] = routed_up / direct_up;
  figures["router_download_ratio_to_direct"] = routed_down / direct_down;

  nginx->Signal(SIGTERM);
  nginx->Wait();
  StopServer(server_pid);
  std::filesystem::remove_all(work);
  PrintFigures(figures, json);
  return 0;
}

}  // namespace mlops::bench
