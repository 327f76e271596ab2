// Cron expressions for periodic pipelines, written here because no Debian package offers a C++
// cron parser: five fields (minute hour day-of-month month day-of-week, UTC) with *, numbers,
// ranges a-b, lists a,b and steps */n or a-b/n; day-of-week 0-7 (0 and 7 are Sunday); names
// jan-dec and sun-sat; and @hourly, @daily, @weekly, @monthly, @yearly. As in Vixie cron, when
// both day fields are restricted a day matches if either does.
#pragma once

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mlops::scheduler {

class CronSchedule {
 public:
  // INVALID_ARGUMENT naming the field and the problem.
  static absl::StatusOr<CronSchedule> Parse(std::string_view expression);
  // The first matching minute strictly after `time_ms` (milliseconds since the epoch, UTC);
  // -1 when none within five years (e.g. "0 0 30 2 *").
  int64_t NextAfter(int64_t time_ms) const;
  const std::string& expression() const { return expression_; }

 private:
  std::string expression_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1-31
  std::bitset<13> months_;   // 1-12
  std::bitset<7> weekdays_;  // 0-6, Sunday = 0
  bool any_day_ = true;      // day-of-month was *
  bool any_weekday_ = true;  // day-of-week was *
};

}  // namespace mlops::scheduler
