#include "services/common/ids.h"

#include <chrono>
#include <mutex>
#include <random>

#include "absl/strings/str_format.h"

namespace mlops {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string NewId() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  // State of the last id: 48 bits of milliseconds, then an 80-bit value as 16 high + 64 low bits.
  static uint64_t last_ms = 0, high = 0, low = 0;
  std::lock_guard<std::mutex> lock(mu);
  uint64_t ms = static_cast<uint64_t>(NowMs()) & 0xffffffffffffull;
  if (ms > last_ms) {
    last_ms = ms;
    high = rng() & 0x7fff;  // the top bit stays clear, leaving room to count up within this ms.
    low = rng();
  } else if (++low == 0) {  // same millisecond, or the clock went back: count up.
    ++high;
  }
  return absl::StrFormat("%012x%04x%016x", last_ms, high & 0xffff, low);
}

bool IsValidId(std::string_view id) {
  if (id.size() != 32) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace mlops
