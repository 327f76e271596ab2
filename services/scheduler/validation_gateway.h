// ValidationGateway over the monitoring service's gRPC API (MonitoringService.Validate), through
// a channel of the run's project: the built-in `validate:` steps of pipelines.
#pragma once

#include <memory>
#include <string>

#include "services/common/channel.h"
#include "services/scheduler/gateways.h"

namespace mlops::scheduler {

// Null when `channels` is null (no monitoring service: validate steps fail, saying so).
std::unique_ptr<ValidationGateway> MonitoringValidationGateway(ChannelForProject channels);

}  // namespace mlops::scheduler
