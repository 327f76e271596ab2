// `mlops experiments ...` and `mlops runs ...` (all but `runs compare`): the tracking service.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "tools/cli/cli_util.h"

namespace mlops::cli {

// group: experiments (experiment, exp) or runs. Throws UsageError for an unknown group or command.
int RunTrackingCommand(const std::string& group, const std::string& command, Args& args,
                       std::shared_ptr<grpc::Channel> channel, bool json);

}  // namespace mlops::cli
