// libFuzzer target: durations, CPU and memory quantities (services/scheduler/quantities.h) as a
// pipeline spec or a queue quota gives them. An accepted quantity is never negative.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "services/scheduler/quantities.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  int64_t value = 0;
  if (mlops::scheduler::ParseDuration(text, &value) && value < 0) std::abort();
  if (mlops::scheduler::ParseCpu(text, &value) && value < 0) std::abort();
  if (mlops::scheduler::ParseMemory(text, &value) && value < 0) std::abort();
  return 0;
}
