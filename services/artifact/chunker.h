// Content-defined chunking in the style of FastCDC (Xia et al., USENIX ATC 2016), written here
// because no Debian package offers it: a rolling "gear" hash over the bytes declares a cut point
// where its top bits are zero, so boundaries depend on nearby content only and an insertion shifts
// no boundary beyond the chunk it falls in. Normalised chunking (a stricter mask before the average
// size, a looser one after) keeps sizes close to the average; no cut before min_size, a forced cut
// at max_size.
//
// Boundaries are part of the storage format's dedup behaviour (not of its correctness): changing
// the gear table or the masks only costs dedup against content chunked before the change.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace mlops::artifact {

struct ChunkerParams {
  // A power of two in [64 KiB, 8 MiB]. 512 KiB by default (chunks average about 600 KiB): with
  // 1 MiB an edit of 1 MiB costs about 3.4 MiB (the edit, the chunks it straddles, one more
  // before boundaries resynchronise), too much for the 3% dedup target; see docs/performance.md.
  size_t avg_size = 512 << 10;
  size_t min_size() const { return avg_size / 4; }
  size_t max_size() const { return avg_size * 4; }
};

// INVALID_ARGUMENT unless avg_size is a power of two within bounds.
absl::Status ValidateChunkerParams(const ChunkerParams& params);

class Chunker {
 public:
  explicit Chunker(const ChunkerParams& params);

  // The length of the chunk that starts at data[0], given `size` bytes available. When `last` is
  // false and no cut point lies within the data (size < max_size), returns 0: the caller must
  // supply more bytes. With `last`, the remainder is a chunk.
  size_t NextCut(const uint8_t* data, size_t size, bool last) const;

  size_t max_size() const { return max_; }

 private:
  size_t min_;
  size_t avg_;
  size_t max_;
  uint64_t mask_small_;  // before avg: harder to match
  uint64_t mask_large_;  // after avg: easier
};

}  // namespace mlops::artifact
