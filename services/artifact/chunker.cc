#include "services/artifact/chunker.h"

#include <array>
#include <bit>

#include "services/common/strings.h"

namespace mlops::artifact {
namespace {

// 256 pseudo-random 64-bit values from splitmix64 with a fixed seed: the gear table must never
// change (see the header).
constexpr std::array<uint64_t, 256> MakeGearTable() {
  std::array<uint64_t, 256> table{};
  uint64_t state = 0x6d6c6f7073636463ULL;  // "mlopscdc"
  for (auto& entry : table) {
    state += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    entry = z ^ (z >> 31);
  }
  return table;
}

constexpr std::array<uint64_t, 256> kGear = MakeGearTable();

// A mask of the `bits` most significant bits: the hash is shifted left once a byte, so its top
// bits depend on the last 64 bytes (the rolling window).
uint64_t TopBits(int bits) { return bits <= 0 ? 0 : ~uint64_t{0} << (64 - bits); }

}  // namespace

absl::Status ValidateChunkerParams(const ChunkerParams& params) {
  if (!std::has_single_bit(params.avg_size) || params.avg_size < (64u << 10) ||
      params.avg_size > (8u << 20)) {
    return absl::InvalidArgumentError(StrCat("chunk average size ", std::to_string(params.avg_size),
                                             ": must be a power of two between 65536 and 8388608"));
  }
  return absl::OkStatus();
}

Chunker::Chunker(const ChunkerParams& params)
    : min_(params.min_size()), avg_(params.avg_size), max_(params.max_size()) {
  int bits = std::countr_zero(params.avg_size);
  // Normalisation level 1: one bit stricter before the average point, one looser after. The
  // first min_size bytes are skipped; chunks average about 1.2 x avg_size. (Level 2 narrows the
  // sizes further but measured worse dedup after edits: tools/bench, docs/performance.md.)
  mask_small_ = TopBits(bits + 1);
  mask_large_ = TopBits(bits - 1);
}

size_t Chunker::NextCut(const uint8_t* data, size_t size, bool last) const {
  if (size <= min_) return last ? size : 0;
  size_t normal = std::min(avg_, size);
  size_t limit = std::min(max_, size);
  uint64_t hash = 0;
  size_t i = min_;
  for (; i < normal; ++i) {
    hash = (hash << 1) + kGear[data[i]];
    if ((hash & mask_small_) == 0) return i + 1;
  }
  for (; i < limit; ++i) {
    hash = (hash << 1) + kGear[data[i]];
    if ((hash & mask_large_) == 0) return i + 1;
  }
  if (limit == max_) return max_;
  return last ? size : 0;
}

}  // namespace mlops::artifact
