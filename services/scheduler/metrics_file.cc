#include "services/scheduler/metrics_file.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <fstream>
#include <sstream>

namespace mlops::scheduler {

absl::StatusOr<std::vector<MetricPoint>> ReadMetricsFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::vector<MetricPoint>();  // no metrics.json: nothing reported
  std::stringstream text;
  text << in.rdbuf();
  return ParseMetricsJson(text.str());
}

absl::StatusOr<std::vector<MetricPoint>> ParseMetricsJson(std::string_view text) {
  std::vector<MetricPoint> points;
  google::protobuf::Value value;
  if (!google::protobuf::util::JsonStringToMessage(
           google::protobuf::StringPiece(text.data(), text.size()), &value)
           .ok()) {
    return absl::InvalidArgumentError("metrics.json: not valid JSON");
  }
  if (value.has_struct_value()) {
    for (const auto& [key, v] : value.struct_value().fields()) {
      if (!v.has_number_value()) {
        return absl::InvalidArgumentError("metrics.json: " + key + " is not a number");
      }
      points.push_back({key, v.number_value(), 0});
    }
  } else if (value.has_list_value()) {
    for (const auto& item : value.list_value().values()) {
      const auto& fields = item.struct_value().fields();
      auto key = fields.find("key");
      auto v = fields.find("value");
      if (key == fields.end() || !key->second.has_string_value() || v == fields.end() ||
          !v->second.has_number_value()) {
        return absl::InvalidArgumentError(
            "metrics.json: list items are {\"key\": ..., \"value\": number, \"step\": n}");
      }
      auto step = fields.find("step");
      int64_t step_number = 0;
      if (step != fields.end()) {
        // An integer in int64's range: the cast of anything else is undefined (found with the
        // metrics_json fuzz target: "step": 1e300).
        double number = step->second.number_value();
        if (!step->second.has_number_value() || !(std::abs(number) < 9.2e18) ||
            number != std::trunc(number)) {
          return absl::InvalidArgumentError("metrics.json: \"step\" is an integer");
        }
        step_number = static_cast<int64_t>(number);
      }
      points.push_back({key->second.string_value(), v->second.number_value(), step_number});
    }
  } else {
    return absl::InvalidArgumentError("metrics.json: a flat object or a list of points");
  }
  return points;
}

std::map<std::string, double> FinalMetrics(const std::vector<MetricPoint>& points) {
  std::map<std::string, std::pair<int64_t, double>> last;
  for (const MetricPoint& point : points) {
    auto [it, inserted] = last.try_emplace(point.key, point.step, point.value);
    if (!inserted && point.step >= it->second.first) it->second = {point.step, point.value};
  }
  std::map<std::string, double> out;
  for (const auto& [key, entry] : last) out[key] = entry.second;
  return out;
}

}  // namespace mlops::scheduler
