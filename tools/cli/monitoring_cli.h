// `mlops profile ...`, `mlops monitor ...` and `mlops drift ...`: the monitoring service.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "tools/cli/cli_util.h"

namespace mlops::cli {

int RunMonitoringCommand(const std::string& group, Args& args,
                         std::shared_ptr<grpc::Channel> channel, bool json);

}  // namespace mlops::cli
