// mlops-bench: benchmark programs, one suite per service (see bench.h and docs/performance.md).
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "services/common/strings.h"
#include "services/common/subprocess.h"
#include "tools/bench/bench.h"

namespace mlops::bench {

int SpawnServer(const std::string& binary, const std::string& data_dir, int* pid,
                const std::vector<std::string>& extra_args) {
  std::string port_file = data_dir + ".ports";
  std::filesystem::remove(port_file);
  std::vector<std::string> args = {binary, "--host=127.0.0.1", "--port=0", "--metrics_port=-1",
                                   "--data_dir=" + data_dir, "--port_file=" + port_file,
                                   "--max_message_mb=64",
                                   // Nothing is in flight when a suite stops its server.
                                   "--shutdown_grace_s=1"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  SpawnOptions options;
  options.argv = std::move(args);
  auto child = Subprocess::Spawn(options);
  if (!child.ok()) {
    std::cerr << child.status().message() << "\n";
    std::exit(1);
  }
  *pid = child->Release();
  int port = 0;
  for (int i = 0; i < 1000; ++i) {
    std::ifstream in(port_file);
    int metrics_port;
    if (in >> port >> metrics_port) break;
    port = 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (port == 0) {
    std::cerr << binary << " did not start\n";
    std::exit(1);
  }
  return port;
}

const char* FlagValue(const char* arg, const char* name) {
  size_t n = std::strlen(name);
  return std::strncmp(arg, name, n) == 0 && arg[n] == '=' ? arg + n + 1 : nullptr;
}

std::string BenchDir() { return std::filesystem::canonical("/proc/self/exe").parent_path(); }

void StopServer(int pid) {
  kill(pid, SIGTERM);
  int status;
  // A server that has not exited well after its shutdown grace is killed (and said so), so that a
  // suite never waits forever on one.
  for (int i = 0; i < 300; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::cerr << "mlops-bench: server " << pid << " did not stop within 15 s of SIGTERM; killed\n";
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
}

void PrintFigures(const std::map<std::string, double>& figures, bool json) {
  if (!json) {
    for (const auto& [key, value] : figures) std::cout << key << " = " << value << "\n";
    return;
  }
  std::string out = "{";
  bool first = true;
  for (const auto& [key, value] : figures) {
    out += StrCat(first ? "" : ", ", "\"", key, "\": ", FormatDouble(value));
    first = false;
  }
  std::cout << out << "}\n";
}

}  // namespace mlops::bench

int main(int argc, char** argv) {
  std::string suite = argc > 1 ? argv[1] : "";
  if (suite == "metadata") return mlops::bench::RunMetadataBench(argc, argv);
  if (suite == "artifact") return mlops::bench::RunArtifactBench(argc, argv);
  if (suite == "scheduler") return mlops::bench::RunSchedulerBench(argc, argv);
  if (suite == "monitoring") return mlops::bench::RunMonitoringBench(argc, argv);
  if (suite == "k8s") return mlops::bench::RunK8sBench(argc, argv);
  if (suite == "router") return mlops::bench::RunRouterBench(argc, argv);
  if (suite == "ui") return mlops::bench::RunUiBench(argc, argv);
  if (suite == "validation") return mlops::bench::RunValidationBench(argc, argv);
  std::cerr << "usage: mlops-bench metadata|artifact|scheduler|monitoring|k8s|router|ui|validation "
               "[--json] [suite "
               "flags]\n"
               "  (mlops-bench <suite> --help lists a suite's flags)\n";
  return 2;
}
