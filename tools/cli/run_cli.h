// `mlops run -- COMMAND`, `mlops reproduce RUN` and `mlops runs compare RUN RUN...`: record how a
// command was run (code, diff, command, environment, lockfiles, params, input data), run it, keep
// its logs, outputs and metrics; rerun a recorded run from its recorded code and data and say
// whether it came out the same.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "tools/cli/cli_util.h"

namespace mlops::cli {

// `server` is passed to the command as MLOPS_SERVER.
int RunCommandLine(Args& args, std::shared_ptr<grpc::Channel> channel, const std::string& server,
                   bool json);
int ReproduceCommandLine(Args& args, std::shared_ptr<grpc::Channel> channel,
                         const std::string& server, bool json);
int CompareRunsCommandLine(Args& args, std::shared_ptr<grpc::Channel> channel, bool json);

}  // namespace mlops::cli
