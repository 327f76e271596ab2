// Order-preserving key encodings for RocksDB keys (bytewise comparator): the byte order of the
// encodings equals the natural order of the values, so range scans over an index are range scans
// over values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mlops {

// Strings: every 0x00 byte becomes 0x00 0xff and the string ends with 0x00 0x01, so encodings of
// different strings never prefix each other and compare like the strings.
void AppendOrderedString(std::string* out, std::string_view value);
// Reads one ordered string from the front of *in and advances it; false when malformed.
bool ConsumeOrderedString(std::string_view* in, std::string* value);

// Signed 64-bit integers, 8 bytes big-endian with the sign bit flipped.
void AppendOrderedInt64(std::string* out, int64_t value);
bool ConsumeOrderedInt64(std::string_view* in, int64_t* value);

// Doubles, 8 bytes: -inf < negatives < -0 = +0 < positives < +inf < NaN (every NaN is encoded
// the same, above +inf).
void AppendOrderedDouble(std::string* out, double value);
bool ConsumeOrderedDouble(std::string_view* in, double* value);

// Fixed-width big-endian unsigned integers (not order-flipped).
void AppendBigEndian64(std::string* out, uint64_t value);
uint64_t ReadBigEndian64(std::string_view in);

}  // namespace mlops
