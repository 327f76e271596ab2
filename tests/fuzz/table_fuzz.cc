// libFuzzer target: the dataset readers of the monitoring service (services/monitoring/table.h):
// CSV text, and .mlcol files, which the reader maps into memory. The first byte picks the reader;
// for .mlcol the rest follows the 8-byte magic and is read from a file, as production reads it.
// Every value of a table that was accepted is read, so a column that claims more rows than the
// file holds is caught by ASan.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "services/monitoring/table.h"

namespace {

double Touch(const mlops::monitoring::Table& table) {
  double sum = 0;
  for (const auto& column : table.columns()) {
    if (column.numeric) {
      for (uint64_t i = 0; i < table.rows(); ++i) sum += column.values[i];
    } else {
      if (column.strings.size() != table.rows()) std::abort();
      for (const auto& value : column.strings) sum += static_cast<double>(value.size());
    }
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 0) {
    auto table = mlops::monitoring::Table::ParseCsv(body, {"label"});
    if (table.ok()) (void)Touch(**table);
    return 0;
  }
  static const std::string path = "/tmp/mlops-table-fuzz-" + std::to_string(::getpid()) + ".mlcol";
  std::string file("MLCOL\0\0\1", 8);
  file.append(body);
  FILE* out = std::fopen(path.c_str(), "wb");
  if (out == nullptr) std::abort();
  std::fwrite(file.data(), 1, file.size(), out);
  std::fclose(out);
  auto table = mlops::monitoring::Table::ReadFile(path);
  if (table.ok()) (void)Touch(**table);
  std::remove(path.c_str());
  return 0;
}
