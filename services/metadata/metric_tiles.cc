#include "services/metadata/metric_tiles.h"

#include <cmath>
#include <cstring>

#include "services/common/encoding.h"

namespace mlops::metadata::internal {
namespace {

bool After(int64_t step, int64_t timestamp, int64_t than_step, int64_t than_timestamp) {
  return step != than_step ? step > than_step : timestamp >= than_timestamp;
}

}  // namespace

void Tile::Add(int64_t step, int64_t timestamp, double value) {
  if (!std::isnan(value)) {
    if (std::isnan(min) || value < min) {
      min = value;
      min_step = step;
      min_timestamp = timestamp;
    }
    if (std::isnan(max) || value > max) {
      max = value;
      max_step = step;
      max_timestamp = timestamp;
    }
  }
  if (count == 0 || After(step, timestamp, last_step, last_timestamp)) {
    last_step = step;
    last_timestamp = timestamp;
    last_value = value;
  }
  ++count;
}

void Tile::Merge(const Tile& other) {
  if (other.count == 0) return;
  if (!std::isnan(other.min) && (std::isnan(min) || other.min < min)) {
    min = other.min;
    min_step = other.min_step;
    min_timestamp = other.min_timestamp;
  }
  if (!std::isnan(other.max) && (std::isnan(max) || other.max > max)) {
    max = other.max;
    max_step = other.max_step;
    max_timestamp = other.max_timestamp;
  }
  if (count == 0 || After(other.last_step, other.last_timestamp, last_step, last_timestamp)) {
    last_step = other.last_step;
    last_timestamp = other.last_timestamp;
    last_value = other.last_value;
  }
  count += other.count;
}

// Ten 8-byte fields in the host's byte order (like every double this store writes).
std::string Tile::Encode() const {
  std::string out(10 * 8, '\0');
  char* p = out.data();
  for (double d : {min, max, last_value}) {
    std::memcpy(p, &d, 8);
    p += 8;
  }
  for (int64_t i :
       {min_step, min_timestamp, max_step, max_timestamp, last_step, last_timestamp, count}) {
    std::memcpy(p, &i, 8);
    p += 8;
  }
  return out;
}

bool Tile::Decode(std::string_view bytes, Tile* tile) {
  if (bytes.size() != 10 * 8) return false;
  const char* p = bytes.data();
  for (double* d : {&tile->min, &tile->max, &tile->last_value}) {
    std::memcpy(d, p, 8);
    p += 8;
  }
  for (int64_t* i : {&tile->min_step, &tile->min_timestamp, &tile->max_step, &tile->max_timestamp,
                     &tile->last_step, &tile->last_timestamp, &tile->count}) {
    std::memcpy(i, p, 8);
    p += 8;
  }
  return tile->count >= 0;
}

std::string TileLevelPrefix(std::string_view metric_prefix, int level) {
  std::string out(metric_prefix);
  out.push_back(static_cast<char>(level));
  return out;
}

std::string TileKey(std::string_view metric_prefix, int level, int64_t block) {
  std::string out = TileLevelPrefix(metric_prefix, level);
  AppendOrderedInt64(&out, block);
  return out;
}

void TileBuilder::Add(int64_t step, int64_t timestamp, double value) {
  int64_t block = TileBlock(step, 0);
  if (current_ == nullptr || block != current_block_) {
    current_ = &level0_[block];
    current_block_ = block;
  }
  current_->Add(step, timestamp, value);
}

std::map<int64_t, Tile> TileBuilder::Level(int level) const {
  if (level == 0) return level0_;
  std::map<int64_t, Tile> out;
  const int shift = TileShift(level) - TileShift(0);
  for (const auto& [block, tile] : level0_) out[block >> shift].Merge(tile);
  return out;
}

}  // namespace mlops::metadata::internal
