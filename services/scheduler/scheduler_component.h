// The scheduler service as a component that mlops-scheduler and mlops-server host.
#pragma once

#include "services/common/component.h"

namespace mlops::scheduler {

// Opens the scheduler's database in data_dir/scheduler/db; attempts run under
// data_dir/scheduler/work. The engine starts (and recovers) once the host serves.
absl::StatusOr<std::unique_ptr<Component>> OpenSchedulerComponent(const std::string& data_dir,
                                                                  const Db::Options& options);

}  // namespace mlops::scheduler
