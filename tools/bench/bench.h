// mlops-bench suites. Each prints one flat JSON object of named figures with --json (human lines
// otherwise) and reports ratios against a floor measured in the same run.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace mlops::bench {

int RunMetadataBench(int argc, char** argv);
int RunArtifactBench(int argc, char** argv);
int RunSchedulerBench(int argc, char** argv);
int RunMonitoringBench(int argc, char** argv);
int RunK8sBench(int argc, char** argv);
int RunRouterBench(int argc, char** argv);
int RunUiBench(int argc, char** argv);
int RunValidationBench(int argc, char** argv);

// The lineage part of the metadata suite (lineage_bench.cc).
struct LineageOptions {
  int64_t pipeline_runs = 100000;  // x5 executions, x10 artifacts
  int clients = 8;                 // PutExecution client threads
  int64_t puts = 100000;           // PutExecution calls in all
  int queries = 200;
  std::string dir;  // keep (and reuse) the graph here
  std::string metadata_bin;
  std::string work_dir;
};
void RunLineageBench(const LineageOptions& options, std::map<std::string, double>* figures,
                     const std::function<void(const std::string&)>& log);

// Starts `binary` (an mlops server) on a free loopback port with its data in `data_dir`; returns
// the port and sets *pid. Exits the process when the server does not come up. `extra_args` are
// appended to its command line.
int SpawnServer(const std::string& binary, const std::string& data_dir, int* pid,
                const std::vector<std::string>& extra_args = {});
// Stops a server started by SpawnServer (SIGTERM, then waits).
void StopServer(int pid);

// "--name=value" -> "value" when `arg` is that flag, else nullptr.
const char* FlagValue(const char* arg, const char* name);
// The directory of the mlops-bench binary (server binaries are found relative to it).
std::string BenchDir();

// Prints the figures as one flat JSON object (json) or as "key = value" lines.
void PrintFigures(const std::map<std::string, double>& figures, bool json);

}  // namespace mlops::bench
