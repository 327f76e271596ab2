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

// The endpoints reach the command as MLOPS_METADATA_SERVER, MLOPS_ARTIFACT_SERVER, ... and
// MLOPS_SERVER (the metadata service).
int RunCommandLine(Args& args, std::shared_ptr<grpc::Channel> metadata,
                   std::shared_ptr<grpc::Channel> artifact, const Endpoints& endpoints, bool json);
int ReproduceCommandLine(Args& args, std::shared_ptr<grpc::Channel> metadata,
                         std::shared_ptr<grpc::Channel> artifact, const Endpoints& endpoints,
                         bool json);
int CompareRunsCommandLine(Args& args, std::shared_ptr<grpc::Channel> metadata,
                           std::shared_ptr<grpc::Channel> artifact, bool json);

}  // namespace mlops::cli
