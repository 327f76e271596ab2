// String helpers that take std::string_view. Debian 12's abseil is built with its own
// absl::string_view (not std::string_view), so absl::StrCat and friends reject std::string_view
// arguments; these small helpers keep the code free of conversions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/string_view.h"

namespace mlops {

namespace strings_internal {
inline void Append(std::string* out, std::string_view piece) { out->append(piece); }
inline void Append(std::string* out, const char* piece) { out->append(piece); }
inline void Append(std::string* out, const std::string& piece) { out->append(piece); }
inline void Append(std::string* out, absl::string_view piece) {
  out->append(piece.data(), piece.size());
}
inline void Append(std::string* out, char c) { out->push_back(c); }
inline void Append(std::string* out, bool b) { out->append(b ? "true" : "false"); }
void Append(std::string* out, double value);  // shortest round-trip form
template <typename T>
requires std::is_integral_v<T>
void Append(std::string* out, T value) { out->append(std::to_string(value)); }
}  // namespace strings_internal

// Concatenates strings, string_views, characters, integers and doubles.
template <typename... Args>
std::string StrCat(const Args&... args) {
  std::string out;
  (strings_internal::Append(&out, args), ...);
  return out;
}

std::string ToLower(std::string_view text);
std::string ToUpper(std::string_view text);
bool EqualsIgnoreCase(std::string_view a, std::string_view b);
// Whether `text` is UTF-8 (what a proto string must hold): well-formed sequences, no overlong
// forms, no surrogates, nothing past U+10FFFF.
bool IsUtf8(std::string_view text);
// `text` with every byte that is not part of a UTF-8 sequence written as \xNN.
std::string Utf8Safe(std::string_view text);
// Shortest text that parses back to the same double ("0.1", "1e+300", "nan", "inf").
std::string FormatDouble(double value);
// Milliseconds since the epoch as RFC 3339 in UTC, as people write times in messages:
// "2026-11-27T12:00:00Z", with ".123" only when the milliseconds are not zero.
std::string FormatRfc3339(int64_t ms);

}  // namespace mlops
