#include "services/scheduler/cron.h"

#include <ctime>
#include <vector>

#include "services/common/strings.h"

namespace mlops::scheduler {
namespace {

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t end = text.find(separator, start);
    out.push_back(text.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

// A number or, for months and weekdays, a three-letter name.
bool Value(std::string_view text, const char* const* names, int names_base, int* out) {
  if (text.empty()) return false;
  if (names != nullptr && text.size() == 3) {
    std::string lower = ToLower(text);
    for (int i = 0; names[i] != nullptr; ++i) {
      if (lower == names[i]) {
        *out = names_base + i;
        return true;
      }
    }
  }
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9' || value > 1000) return false;
    value = value * 10 + (c - '0');
  }
  *out = value;
  return true;
}

template <size_t N>
absl::Status ParseField(std::string_view text, std::string_view field, int low, int high,
                        const char* const* names, int names_base, std::bitset<N>* bits,
                        bool* star) {
  auto error = [&](std::string_view why) {
    return absl::InvalidArgumentError(StrCat("cron ", field, " \"", text, "\": ", why));
  };
  *star = text == "*";
  for (std::string_view part : Split(text, ',')) {
    int step = 1;
    size_t slash = part.find('/');
    if (slash != std::string_view::npos) {
      if (!Value(part.substr(slash + 1), nullptr, 0, &step) || step < 1) {
        return error("bad step");
      }
      part = part.substr(0, slash);
    }
    int from = low, to = high;
    if (part != "*") {
      size_t dash = part.find('-');
      if (dash == std::string_view::npos) {
        if (!Value(part, names, names_base, &from)) return error("bad value");
        to = slash == std::string_view::npos ? from : high;
      } else if (!Value(part.substr(0, dash), names, names_base, &from) ||
                 !Value(part.substr(dash + 1), names, names_base, &to)) {
        return error("bad range");
      }
    }
    if (from < low || to > high || from > to) {
      return error(StrCat("outside ", std::to_string(low), "-", std::to_string(high)));
    }
    for (int v = from; v <= to; v += step) bits->set(static_cast<size_t>(v == 7 && N == 7 ? 0 : v));
  }
  return absl::OkStatus();
}

const char* const kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun",  "jul",
                               "aug", "sep", "oct", "nov", "dec", nullptr};
const char* const kWeekdays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", nullptr};

}  // namespace

absl::StatusOr<CronSchedule> CronSchedule::Parse(std::string_view expression) {
  std::string text(expression);
  if (text == "@hourly") text = "0 * * * *";
  if (text == "@daily" || text == "@midnight") text = "0 0 * * *";
  if (text == "@weekly") text = "0 0 * * 0";
  if (text == "@monthly") text = "0 0 1 * *";
  if (text == "@yearly" || text == "@annually") text = "0 0 1 1 *";
  std::vector<std::string> fields;
  std::string current;
  for (char c : text) {
    if (c == ' ' || c == '\t') {
      if (!current.empty()) fields.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) fields.push_back(current);
  if (fields.size() != 5) {
    return absl::InvalidArgumentError(
        StrCat("cron \"", expression,
               "\": five fields (minute hour day-of-month month day-of-week) or @daily etc."));
  }
  CronSchedule schedule;
  schedule.expression_ = std::string(expression);
  bool star = false;
  absl::Status status =
      ParseField(fields[0], "minute", 0, 59, nullptr, 0, &schedule.minutes_, &star);
  if (status.ok())
    status = ParseField(fields[1], "hour", 0, 23, nullptr, 0, &schedule.hours_, &star);
  if (status.ok()) {
    status = ParseField(fields[2], "day-of-month", 1, 31, nullptr, 0, &schedule.days_,
                        &schedule.any_day_);
  }
  if (status.ok())
    status = ParseField(fields[3], "month", 1, 12, kMonths, 1, &schedule.months_, &star);
  if (status.ok()) {
    status = ParseField(fields[4], "day-of-week", 0, 7, kWeekdays, 0, &schedule.weekdays_,
                        &schedule.any_weekday_);
  }
  if (!status.ok()) return status;
  return schedule;
}

int64_t CronSchedule::NextAfter(int64_t time_ms) const {
  int64_t t = (time_ms / 60000 + 1) * 60;  // seconds, next whole minute
  const int64_t limit = t + int64_t{5} * 366 * 24 * 3600;
  while (t < limit) {
    std::time_t seconds = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    if (!months_.test(static_cast<size_t>(tm.tm_mon + 1))) {
      // First minute of the next month.
      tm.tm_mon += 1;
      tm.tm_mday = 1;
      tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
      t = timegm(&tm);
      continue;
    }
    bool day_ok = days_.test(static_cast<size_t>(tm.tm_mday));
    bool weekday_ok = weekdays_.test(static_cast<size_t>(tm.tm_wday));
    bool matches_day = any_day_ && any_weekday_ ? true
                       : any_day_               ? weekday_ok
                       : any_weekday_           ? day_ok
                                                : (day_ok || weekday_ok);
    if (!matches_day) {
      tm.tm_mday += 1;
      tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
      t = timegm(&tm);
      continue;
    }
    if (!hours_.test(static_cast<size_t>(tm.tm_hour))) {
      tm.tm_hour += 1;
      tm.tm_min = tm.tm_sec = 0;
      t = timegm(&tm);
      continue;
    }
    if (!minutes_.test(static_cast<size_t>(tm.tm_min))) {
      t += 60;
      continue;
    }
    return t * 1000;
  }
  return -1;
}

}  // namespace mlops::scheduler
