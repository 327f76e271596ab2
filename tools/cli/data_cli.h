// `mlops data ...` and `mlops artifact ...`: datasets, versions and blobs.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "tools/cli/cli_util.h"

namespace mlops::cli {

int RunDataCommand(const std::string& group, const std::string& command, Args& args,
                   std::shared_ptr<grpc::Channel> channel, bool json);

}  // namespace mlops::cli
