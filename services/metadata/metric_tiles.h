// Downsampling tiles of metric histories (docs/api.md, GetMetricHistory): so that a curve of
// millions of points is drawn from a thousand stored summaries rather than a scan of every point.
//
// For every metric of a run and every level L (0..kTileLevels-1), the steps are cut into aligned
// blocks of 2^(8 + 5L) steps (256; 8,192; 262,144); a reader takes the finest level with at most
// 32 blocks per bucket and merges adjacent tiles into its buckets, so 32,768 tiles of the coarsest
// level cover 8.6 billion steps (a wider range is read point by point). Each level costs every
// LogBatch a tile write per metric, so there are only three (docs/performance.md). A tile holds its
// block's minimum and maximum points (NaN never counts), its last point (highest step, then
// timestamp) and how many points were logged into it. LogBatch merges each batch's tiles into the
// stored ones in the same atomic write. Written by hand: no Debian package keeps a multi-resolution
// summary of a series in a key-value store.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <string_view>

namespace mlops::metadata::internal {

constexpr int kTileLevels = 3;  // blocks of 2^8, 2^13, 2^18 steps
inline int TileShift(int level) { return 8 + 5 * level; }
inline int64_t TileBlock(int64_t step, int level) { return step >> TileShift(level); }

struct Tile {
  double min = std::numeric_limits<double>::quiet_NaN();
  double max = std::numeric_limits<double>::quiet_NaN();
  int64_t min_step = 0, min_timestamp = 0, max_step = 0, max_timestamp = 0;
  int64_t last_step = 0, last_timestamp = 0;
  double last_value = 0;
  int64_t count = 0;  // 0: empty (no last point either)

  void Add(int64_t step, int64_t timestamp, double value);
  void Merge(const Tile& other);
  std::string Encode() const;
  static bool Decode(std::string_view bytes, Tile* tile);
};

// The key of a tile: the metric's prefix (run id | ordered key), the level byte, ordered(block).
std::string TileKey(std::string_view metric_prefix, int level, int64_t block);
// The prefix of every tile of one level of one metric.
std::string TileLevelPrefix(std::string_view metric_prefix, int level);

// The tiles of one metric touched by one batch, every level: points are added at level 0 (the
// previous block is remembered, so points in step order cost one comparison), the coarser levels
// are made from it by Levels().
class TileBuilder {
 public:
  void Add(int64_t step, int64_t timestamp, double value);
  bool empty() const { return level0_.empty(); }
  // Every level's tiles: levels[L] maps block -> tile.
  std::map<int64_t, Tile> Level(int level) const;

 private:
  std::map<int64_t, Tile> level0_;
  Tile* current_ = nullptr;
  int64_t current_block_ = 0;
};

}  // namespace mlops::metadata::internal
