// `mlops profile ...`, `mlops monitor ...`, `mlops drift ...` and data validation: the monitoring
// service.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "tools/cli/cli_util.h"

namespace mlops::cli {

int RunMonitoringCommand(const std::string& group, Args& args,
                         std::shared_ptr<grpc::Channel> channel, bool json);

// `mlops schema infer|put|show`, `mlops validate` and `mlops validations` (validation_cli.cc).
int RunValidationCommand(const std::string& group, Args& args,
                         std::shared_ptr<grpc::Channel> channel, bool json);

// `mlops models evaluate|evaluations` (analysis_cli.cc).
int RunAnalysisCommand(const std::string& command, Args& args,
                       std::shared_ptr<grpc::Channel> channel, bool json);

}  // namespace mlops::cli
