// Resource ids and clocks.
#pragma once

#include <cstdint>
#include <string>

namespace mlops {

// A new id: 32 lower-case hex characters, 12 of milliseconds since the epoch then 20 random, so
// ids sort by creation time (to the millisecond) and never collide in practice. Ids made by one
// process are strictly increasing.
std::string NewId();

// True when `id` has the shape NewId produces.
bool IsValidId(std::string_view id);

int64_t NowMs();

}  // namespace mlops
