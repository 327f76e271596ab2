#include "services/scheduler/quantities.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

namespace mlops::scheduler {

namespace {
constexpr double kMaxMemoryBytes = 1125899906842624.0;     // 1 Pi
constexpr double kMaxDurationMs = 100 * 366 * 86400000.0;  // 100 years
}  // namespace

bool ParseDuration(std::string_view text, int64_t* ms) {
  if (text.empty()) return false;
  if (text.find_first_not_of("0123456789") == std::string_view::npos) {
    if (text.size() > 9) return false;
    *ms = std::atoll(std::string(text).c_str()) * 1000;
    return true;
  }
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
    if (i == start || i - start > 12) return false;
    double value = std::atof(std::string(text.substr(start, i - start)).c_str());
    size_t unit_start = i;
    while (i < text.size() && text[i] >= 'a' && text[i] <= 'z') ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    double factor;
    if (unit == "ms") {
      factor = 1;
    } else if (unit == "s") {
      factor = 1000;
    } else if (unit == "m") {
      factor = 60000;
    } else if (unit == "h") {
      factor = 3600000;
    } else if (unit == "d") {
      factor = 86400000;
    } else {
      return false;
    }
    // Bounded before the cast, which is undefined beyond int64 (found with the quantities
    // fuzz target: "999999999999d").
    if (!(value * factor <= kMaxDurationMs - static_cast<double>(total))) return false;
    total += static_cast<int64_t>(value * factor);
  }
  *ms = total;
  return true;
}

namespace {
// Plain decimal: digits, optionally a point and more digits (no sign, exponent, hex, inf or nan).
bool IsPlainDecimal(std::string_view text) {
  size_t digits = 0, points = 0;
  for (char c : text) {
    if (c >= '0' && c <= '9') {
      ++digits;
    } else if (c == '.' && points == 0) {
      ++points;
    } else {
      return false;
    }
  }
  return digits > 0 && digits <= 30;
}
}  // namespace

bool ParseCpu(std::string_view text, int64_t* millis) {
  if (text.empty()) return false;
  bool milli = text.back() == 'm';
  std::string number(milli ? text.substr(0, text.size() - 1) : text);
  if (!IsPlainDecimal(number) || (milli && number.find('.') != std::string::npos)) return false;
  double value = std::strtod(number.c_str(), nullptr) * (milli ? 1 : 1000);
  if (!(value <= 1024.0 * 1000)) return false;  // at most 1,024 cores
  *millis = static_cast<int64_t>(std::llround(value));
  return true;
}

bool ParseMemory(std::string_view text, int64_t* bytes) {
  static const std::pair<const char*, double> kUnits[] = {
      {"Ki", 1024.0}, {"Mi", 1048576.0}, {"Gi", 1073741824.0}, {"Ti", 1099511627776.0},
      {"K", 1e3},     {"M", 1e6},        {"G", 1e9},           {"T", 1e12},
      {"", 1}};
  std::string s(text);
  for (const auto& [unit, factor] : kUnits) {
    size_t n = std::strlen(unit);
    if (s.size() <= n || s.compare(s.size() - n, n, unit) != 0) continue;
    std::string number = s.substr(0, s.size() - n);
    if (!IsPlainDecimal(number)) return false;
    double value = std::strtod(number.c_str(), nullptr) * factor;
    if (!(value <= kMaxMemoryBytes)) return false;  // also keeps the cast below defined
    *bytes = static_cast<int64_t>(value);
    return true;
  }
  return false;
}

}  // namespace mlops::scheduler
