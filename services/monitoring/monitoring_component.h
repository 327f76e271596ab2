// The monitoring service as a component that mlops-monitoring and mlops-server host.
#pragma once

#include "services/common/component.h"

namespace mlops::monitoring {

// Opens the monitoring database in data_dir/monitoring/db; datasets being evaluated are read
// under data_dir/monitoring/work.
absl::StatusOr<std::unique_ptr<Component>> OpenMonitoringComponent(const std::string& data_dir,
                                                                   const Db::Options& options);

}  // namespace mlops::monitoring
