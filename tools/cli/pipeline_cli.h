// `mlops pipeline ...` and `mlops queues ...`: the scheduler.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "tools/cli/cli_util.h"

namespace mlops::cli {

int RunPipelineCommand(const std::string& group, const std::string& command, Args& args,
                       std::shared_ptr<grpc::Channel> channel, bool json);

}  // namespace mlops::cli
