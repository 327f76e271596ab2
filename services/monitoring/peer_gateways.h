// The monitoring core's gateways (gateways.h) over the other services' gRPC APIs.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "services/common/channel.h"
#include "services/monitoring/gateways.h"

namespace mlops::monitoring {

// Pulls a dataset version into a scratch directory under `work_dir`, reads its tables and removes
// the files (the tables keep what they need).
std::unique_ptr<DatasetSource> ArtifactDatasetSource(ChannelForProject artifact,
                                                     std::string work_dir);
// Asks the model registry (ModelRegistry.GetModelVersion).
std::unique_ptr<ModelResolver> RegistryModelResolver(std::shared_ptr<grpc::Channel> metadata);
// LineageService.PutExecution with a 30 s deadline.
std::unique_ptr<LineageRecorder> LineageServiceRecorderFor(std::shared_ptr<grpc::Channel> metadata);
// SchedulerService.SubmitPipeline with a 30 s deadline.
std::unique_ptr<RetrainTrigger> SchedulerRetrainTrigger(std::shared_ptr<grpc::Channel> scheduler);

}  // namespace mlops::monitoring
