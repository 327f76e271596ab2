// libFuzzer target: cron expressions (services/scheduler/cron.h). An expression that parses is
// asked for its next time from a fixed instant, so the search over five years runs too.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "services/scheduler/cron.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto schedule = mlops::scheduler::CronSchedule::Parse(text);
  if (schedule.ok()) (void)schedule->NextAfter(int64_t{1767225600000});  // 2026-01-01T00:00Z
  return 0;
}
