// The quantities of pipeline specs, also typed on the command line: durations, CPU and memory in
// Kubernetes' notation. Part of mlops_scheduler_format, which the CLI links without the scheduler.
#pragma once

#include <cstdint>
#include <string_view>

namespace mlops::scheduler {

// "90s", "5m", "1h30m", "250ms", "2" (seconds) -> milliseconds; false when malformed or longer
// than 100 years.
bool ParseDuration(std::string_view text, int64_t* ms);
// "500m", "1", "0.5" -> millicores (at most 1,024 cores); false when malformed.
bool ParseCpu(std::string_view text, int64_t* millis);
// "512Mi", "1Gi", "1G", "1000" -> bytes (at most 1 Pi); false when malformed.
bool ParseMemory(std::string_view text, int64_t* bytes);

}  // namespace mlops::scheduler
