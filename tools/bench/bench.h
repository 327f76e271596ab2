// mlops-bench suites. Each prints one flat JSON object of named figures with --json (human lines
// otherwise) and reports ratios against a floor measured in the same run.
#pragma once

#include <map>
#include <string>

namespace mlops::bench {

int RunMetadataBench(int argc, char** argv);
int RunArtifactBench(int argc, char** argv);

// Starts `binary` (an mlops server) on a free loopback port with its data in `data_dir`; returns
// the port and sets *pid. Exits the process when the server does not come up.
int SpawnServer(const std::string& binary, const std::string& data_dir, int* pid);
// Stops a server started by SpawnServer (SIGTERM, then waits).
void StopServer(int pid);

// Prints the figures as one flat JSON object (json) or as "key = value" lines.
void PrintFigures(const std::map<std::string, double>& figures, bool json);

}  // namespace mlops::bench
