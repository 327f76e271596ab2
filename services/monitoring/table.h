// Tables of feature values read from dataset files: CSV (a header row; a column is numeric when
// every non-empty value parses as a number) and the mlops columnar format (.mlcol), which a
// reader maps into memory and evaluates in place:
//
//   bytes 0-7    "MLCOL\0\0\1" (magic, format version 1)
//   u64          rows
//   u32          columns
//   u32          0 (reserved)
//   per column   u8 type (1 = float64, 2 = string), 3 zero bytes, u32 name length, the name
//   zero padding to a multiple of 8
//   per column, in order, its data, each padded with zeros to a multiple of 8:
//     float64    rows x 8 bytes (IEEE 754, little endian; NaN is null)
//     string     rows x u32 lengths, then the bytes of every value back to back (length 0 is null)
//
// All integers little endian. Written by hand: no Debian package offers a columnar file format to
// C++ short of Arrow/Parquet, which Debian 12 does not ship.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mlops::monitoring {

struct Column {
  std::string name;
  bool numeric = true;
  // Numeric values: either owned (CSV) or pointing into a mapped .mlcol file.
  const double* values = nullptr;
  std::vector<double> owned;
  std::vector<std::string> strings;  // categorical
};

class Table {
 public:
  ~Table();
  // INVALID_ARGUMENT naming the file and what is wrong (truncated, bad magic, ragged CSV rows).
  static absl::StatusOr<std::unique_ptr<Table>> ReadFile(const std::string& path);
  // CSV text; `categorical` forces those columns to categories. INVALID_ARGUMENT for ragged rows
  // or no header.
  static absl::StatusOr<std::unique_ptr<Table>> ParseCsv(
      std::string_view text, const std::vector<std::string>& categorical);
  // Values as they are (copied into the table).
  static std::unique_ptr<Table> FromColumns(std::vector<Column> columns, uint64_t rows);

  uint64_t rows() const { return rows_; }
  const std::vector<Column>& columns() const { return columns_; }
  const Column* Find(std::string_view name) const;

 private:
  Table() = default;
  uint64_t rows_ = 0;
  std::vector<Column> columns_;
  void* map_ = nullptr;  // a mapped .mlcol file
  size_t map_size_ = 0;
};

// Writes columns (all of `rows` values) in the .mlcol format. UNAVAILABLE when the file cannot be
// written.
absl::Status WriteColumnar(const std::string& path, const std::vector<Column>& columns,
                           uint64_t rows);

}  // namespace mlops::monitoring
