// libFuzzer target: a step's metrics.json (services/scheduler/metrics_file.h), written by user
// code and read by the scheduler after every attempt.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "services/scheduler/metrics_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto points = mlops::scheduler::ParseMetricsJson(text);
  if (points.ok()) (void)mlops::scheduler::FinalMetrics(*points);
  return 0;
}
