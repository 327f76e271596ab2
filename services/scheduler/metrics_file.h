// The metrics a step reports: `metrics.json` in its work dir, either a flat object
// ({"accuracy": 0.93, "loss": 0.2}) or a list of points ([{"key": "loss", "value": 0.5, "step": 1},
// ...]). The scheduler logs them to the attempt's tracking run and keeps each key's final value
// on the step, where sweeps compare them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mlops::scheduler {

struct MetricPoint {
  std::string key;
  double value = 0;
  int64_t step = 0;
};

// The points of the file at `path`, in file order; none when there is no file. INVALID_ARGUMENT
// naming what is wrong when it is not one of the two shapes, or a value is not a number.
absl::StatusOr<std::vector<MetricPoint>> ReadMetricsFile(const std::string& path);
// The same for the file's text.
absl::StatusOr<std::vector<MetricPoint>> ParseMetricsJson(std::string_view text);

// Each key's final value: that of its point with the highest step (the later one among equals).
std::map<std::string, double> FinalMetrics(const std::vector<MetricPoint>& points);

}  // namespace mlops::scheduler
