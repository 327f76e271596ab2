// `mlops lineage ...` and `mlops models ...`: lineage queries and the model registry.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "tools/cli/cli_util.h"

namespace mlops::cli {

// `output` is table, json or dot (dot: lineage only).
// `artifact` is used by `models register --file` to upload the model.
int RunLineageCommand(const std::string& group, const std::string& command, Args& args,
                      std::shared_ptr<grpc::Channel> metadata,
                      std::shared_ptr<grpc::Channel> artifact, const std::string& output);

}  // namespace mlops::cli
