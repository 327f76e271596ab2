#include "services/monitoring/table.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "services/common/strings.h"

namespace mlops::monitoring {
namespace {

constexpr char kMagic[8] = {'M', 'L', 'C', 'O', 'L', 0, 0, 1};
constexpr uint8_t kFloat64 = 1;
constexpr uint8_t kString = 2;

size_t Pad8(size_t n) { return (n + 7) / 8 * 8; }

// One CSV record (RFC 4180 quoting) starting at `pos`; advances past its line end.
bool NextRecord(std::string_view text, size_t* pos, std::vector<std::string>* fields) {
  fields->clear();
  if (*pos >= text.size()) return false;
  std::string field;
  bool quoted = false;
  size_t i = *pos;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields->push_back(std::move(field));
      field.clear();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      ++i;
      break;
    } else {
      field += c;
    }
  }
  fields->push_back(std::move(field));
  *pos = i;
  return true;
}

bool ParseNumber(const std::string& text, double* value) {
  if (text.empty()) {
    *value = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  char* end = nullptr;
  *value = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size();
}

}  // namespace

Table::~Table() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

const Column* Table::Find(std::string_view name) const {
  for (const Column& c : columns_) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::unique_ptr<Table> Table::FromColumns(std::vector<Column> columns, uint64_t rows) {
  std::unique_ptr<Table> table(new Table());
  table->rows_ = rows;
  table->columns_ = std::move(columns);
  for (Column& c : table->columns_) {
    if (c.numeric && c.values != nullptr && c.owned.empty())
      c.owned.assign(c.values, c.values + rows);
    if (c.numeric) c.values = c.owned.data();
  }
  return table;
}

absl::StatusOr<std::unique_ptr<Table>> Table::ParseCsv(
    std::string_view text, const std::vector<std::string>& categorical) {
  std::vector<std::string> header, fields;
  size_t pos = 0;
  if (!NextRecord(text, &pos, &header) || (header.size() == 1 && header[0].empty())) {
    return absl::InvalidArgumentError("CSV: no header row");
  }
  std::vector<std::vector<std::string>> cells(header.size());
  uint64_t rows = 0;
  while (NextRecord(text, &pos, &fields)) {
    // A blank line between rows of several columns is skipped; with one column it is an empty
    // cell (a null), like "" (RFC 4180: every line is a record).
    if (fields.size() == 1 && fields[0].empty() && header.size() > 1) continue;
    if (fields.size() != header.size()) {
      return absl::InvalidArgumentError(
          StrCat("CSV: row ", std::to_string(rows + 2), " has ", std::to_string(fields.size()),
                 " fields, the header ", std::to_string(header.size())));
    }
    for (size_t c = 0; c < fields.size(); ++c) cells[c].push_back(std::move(fields[c]));
    ++rows;
  }
  std::unique_ptr<Table> table(new Table());
  table->rows_ = rows;
  for (size_t c = 0; c < header.size(); ++c) {
    Column column;
    column.name = header[c];
    bool forced = std::find(categorical.begin(), categorical.end(), header[c]) != categorical.end();
    column.numeric = !forced;
    if (column.numeric) {
      column.owned.resize(rows);
      for (uint64_t r = 0; r < rows && column.numeric; ++r) {
        column.numeric = ParseNumber(cells[c][r], &column.owned[r]);
      }
    }
    if (column.numeric) {
      column.values = column.owned.data();
    } else {
      column.owned.clear();
      column.strings = std::move(cells[c]);
    }
    table->columns_.push_back(std::move(column));
  }
  return table;
}

absl::StatusOr<std::unique_ptr<Table>> Table::ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError("cannot open " + path);
  struct stat st;
  ::fstat(fd, &st);
  size_t size = static_cast<size_t>(st.st_size);
  char head[8] = {};
  bool columnar = size >= 8 && ::pread(fd, head, 8, 0) == 8 && std::memcmp(head, kMagic, 8) == 0;
  if (!columnar) {
    ::close(fd);
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    auto table = ParseCsv(text.str(), {});
    if (!table.ok())
      return absl::InvalidArgumentError(path + ": " + std::string(table.status().message()));
    return table;
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    return absl::UnavailableError("cannot map " + path + ": " + std::strerror(errno));
  }
  std::unique_ptr<Table> table(new Table());
  table->map_ = map;
  table->map_size_ = size;
  const char* base = static_cast<const char*>(map);
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(path + ": not a valid .mlcol file: " + what);
  };
  size_t off = 8;
  auto read = [&](void* out, size_t n) {
    if (off + n > size) return false;
    std::memcpy(out, base + off, n);
    off += n;
    return true;
  };
  uint64_t rows = 0;
  uint32_t columns = 0, reserved = 0;
  if (!read(&rows, 8) || !read(&columns, 4) || !read(&reserved, 4)) return bad("truncated header");
  table->rows_ = rows;
  // Each column takes at least 8 bytes of the column list: a count the file cannot hold is refused
  // before anything is sized by it (found by tests/fuzz/table_fuzz.cc: 1.6 GB for a 36-byte file).
  if (columns > (size - off) / 8) return bad("truncated column list");
  std::vector<uint8_t> types(columns);
  for (uint32_t c = 0; c < columns; ++c) {
    uint8_t type_and_pad[4];
    uint32_t name_length = 0;
    if (!read(type_and_pad, 4) || !read(&name_length, 4) || off + name_length > size) {
      return bad("truncated column list");
    }
    types[c] = type_and_pad[0];
    if (types[c] != kFloat64 && types[c] != kString) return bad("unknown column type");
    Column column;
    column.name.assign(base + off, name_length);
    column.numeric = types[c] == kFloat64;
    off += name_length;
    table->columns_.push_back(std::move(column));
  }
  off = Pad8(off);
  for (uint32_t c = 0; c < columns; ++c) {
    Column& column = table->columns_[c];
    if (column.numeric) {
      if (rows > (size - std::min(off, size)) / 8) return bad("truncated column " + column.name);
      column.values = reinterpret_cast<const double*>(base + off);
      off = Pad8(off + rows * 8);
    } else {
      if (rows > (size - std::min(off, size)) / 4) return bad("truncated column " + column.name);
      const char* lengths = base + off;
      size_t data = off + rows * 4;
      column.strings.reserve(rows);
      for (uint64_t r = 0; r < rows; ++r) {
        uint32_t length;
        std::memcpy(&length, lengths + r * 4, 4);
        if (data + length > size) return bad("truncated column " + column.name);
        column.strings.emplace_back(base + data, length);
        data += length;
      }
      off = Pad8(data);
    }
  }
  return table;
}

absl::Status WriteColumnar(const std::string& path, const std::vector<Column>& columns,
                           uint64_t rows) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::UnavailableError("cannot write " + path);
  size_t written = 0;
  auto put = [&](const void* data, size_t n) {
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
    written += n;
  };
  auto pad = [&] {
    static const char zeros[8] = {};
    put(zeros, Pad8(written) - written);
  };
  put(kMagic, 8);
  uint32_t count = static_cast<uint32_t>(columns.size()), reserved = 0;
  put(&rows, 8);
  put(&count, 4);
  put(&reserved, 4);
  for (const Column& c : columns) {
    uint8_t type[4] = {c.numeric ? kFloat64 : kString, 0, 0, 0};
    uint32_t length = static_cast<uint32_t>(c.name.size());
    put(type, 4);
    put(&length, 4);
    put(c.name.data(), c.name.size());
  }
  pad();
  for (const Column& c : columns) {
    if (c.numeric) {
      put(c.values, rows * 8);
    } else {
      for (uint64_t r = 0; r < rows; ++r) {
        uint32_t length = static_cast<uint32_t>(c.strings[r].size());
        put(&length, 4);
      }
      for (uint64_t r = 0; r < rows; ++r) put(c.strings[r].data(), c.strings[r].size());
    }
    pad();
  }
  out.close();
  if (!out) return absl::UnavailableError("cannot write " + path);
  return absl::OkStatus();
}

}  // namespace mlops::monitoring
