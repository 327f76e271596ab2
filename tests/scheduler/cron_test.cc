// Cron expressions: parsing errors and next fire times (UTC), worked out by hand from a calendar.
#include "services/scheduler/cron.h"

#include <ctime>

#include "tests/testing/testing.h"

namespace mlops::scheduler {
namespace {

using ::mlops::testing::StatusIs;

int64_t Utc(int year, int month, int day, int hour, int minute, int second = 0) {
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

int64_t Next(const std::string& expression, int64_t after) {
  auto schedule = CronSchedule::Parse(expression);
  EXPECT_OK(schedule.status());
  return schedule.ok() ? schedule->NextAfter(after) : -2;
}

TEST(CronTest, NextFireTimes) {
  // 2026-11-27 is a Friday.
  EXPECT_EQ(Next("*/15 * * * *", Utc(2026, 11, 27, 6, 7, 30)), Utc(2026, 11, 27, 6, 15));
  EXPECT_EQ(Next("*/15 * * * *", Utc(2026, 11, 27, 6, 15)), Utc(2026, 11, 27, 6, 30));
  EXPECT_EQ(Next("0 3 * * mon", Utc(2026, 11, 27, 6, 0)), Utc(2026, 11, 30, 3, 0));
  EXPECT_EQ(Next("0 3 * * 1", Utc(2026, 11, 27, 6, 0)), Utc(2026, 11, 30, 3, 0));
  EXPECT_EQ(Next("30 23 31 12 *", Utc(2026, 11, 27, 6, 0)), Utc(2026, 12, 31, 23, 30));
  EXPECT_EQ(Next("0 0 29 feb *", Utc(2026, 3, 1, 0, 0)), Utc(2028, 2, 29, 0, 0));
  EXPECT_EQ(Next("0 0 30 2 *", Utc(2026, 3, 1, 0, 0)), -1);
  EXPECT_EQ(Next("@daily", Utc(2026, 11, 27, 6, 0)), Utc(2026, 11, 28, 0, 0));
  EXPECT_EQ(Next("@hourly", Utc(2026, 11, 27, 6, 0)), Utc(2026, 11, 27, 7, 0));
  EXPECT_EQ(Next("0 0 * * 7", Utc(2026, 11, 27, 6, 0)), Utc(2026, 11, 29, 0, 0));  // Sunday
  // Both day fields restricted: the 1st of the month or a Friday, whichever comes first.
  EXPECT_EQ(Next("0 12 1 * 5", Utc(2026, 11, 26, 13, 0)), Utc(2026, 11, 27, 12, 0));
  EXPECT_EQ(Next("0 12 1 * 5", Utc(2026, 11, 27, 13, 0)), Utc(2026, 12, 1, 12, 0));
  EXPECT_EQ(Next("5-10/5 8-9 * * *", Utc(2026, 11, 27, 8, 7)), Utc(2026, 11, 27, 8, 10));
  EXPECT_EQ(Next("5,55 * * * *", Utc(2026, 11, 27, 8, 7)), Utc(2026, 11, 27, 8, 55));
}

TEST(CronTest, BadExpressionsNameTheField) {
  EXPECT_THAT(CronSchedule::Parse("* * * *").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "five fields"));
  EXPECT_THAT(CronSchedule::Parse("60 * * * *").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "minute"));
  EXPECT_THAT(CronSchedule::Parse("0 24 * * *").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "hour"));
  EXPECT_THAT(CronSchedule::Parse("0 0 0 * *").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "day-of-month"));
  EXPECT_THAT(CronSchedule::Parse("0 0 * foo *").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "month"));
  EXPECT_THAT(CronSchedule::Parse("0 0 * * 8").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "day-of-week"));
  EXPECT_THAT(CronSchedule::Parse("*/0 * * * *").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "step"));
  EXPECT_THAT(CronSchedule::Parse("5-1 * * * *").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "minute"));
}

}  // namespace
}  // namespace mlops::scheduler
