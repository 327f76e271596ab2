#include "services/common/encoding.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace mlops {

void AppendOrderedString(std::string* out, std::string_view value) {
  for (char c : value) {
    out->push_back(c);
    if (c == '\0') out->push_back('\xff');
  }
  out->push_back('\0');
  out->push_back('\x01');
}

bool ConsumeOrderedString(std::string_view* in, std::string* value) {
  value->clear();
  size_t i = 0;
  while (i < in->size()) {
    char c = (*in)[i];
    if (c != '\0') {
      value->push_back(c);
      ++i;
      continue;
    }
    if (i + 1 >= in->size()) return false;
    char next = (*in)[i + 1];
    if (next == '\x01') {
      in->remove_prefix(i + 2);
      return true;
    }
    if (next != '\xff') return false;
    value->push_back('\0');
    i += 2;
  }
  return false;
}

void AppendBigEndian64(std::string* out, uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

uint64_t ReadBigEndian64(std::string_view in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | static_cast<unsigned char>(in[i]);
  return value;
}

void AppendOrderedInt64(std::string* out, int64_t value) {
  AppendBigEndian64(out, static_cast<uint64_t>(value) ^ (uint64_t{1} << 63));
}

bool ConsumeOrderedInt64(std::string_view* in, int64_t* value) {
  if (in->size() < 8) return false;
  *value = static_cast<int64_t>(ReadBigEndian64(*in) ^ (uint64_t{1} << 63));
  in->remove_prefix(8);
  return true;
}

void AppendOrderedDouble(std::string* out, double value) {
  if (std::isnan(value)) {
    AppendBigEndian64(out, 0xfff8000000000000ull | (uint64_t{1} << 63));
    return;
  }
  if (value == 0) value = 0;  // -0 and +0 encode the same.
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  // Positives: flip the sign bit so they sort above negatives. Negatives: flip every bit so larger
  // magnitudes sort lower.
  bits = (bits & (uint64_t{1} << 63)) ? ~bits : bits | (uint64_t{1} << 63);
  AppendBigEndian64(out, bits);
}

bool ConsumeOrderedDouble(std::string_view* in, double* value) {
  if (in->size() < 8) return false;
  uint64_t bits = ReadBigEndian64(*in);
  bits = (bits & (uint64_t{1} << 63)) ? bits & ~(uint64_t{1} << 63) : ~bits;
  std::memcpy(value, &bits, sizeof(bits));
  in->remove_prefix(8);
  return true;
}

}  // namespace mlops
