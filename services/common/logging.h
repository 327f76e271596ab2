// Structured logs: one line per event on stderr, either human text
//   2026-11-27T01:02:03.456Z INFO server_started port=50051 service=metadata
// or, with --log_format=json, one JSON object per line:
//   {"ts":"2026-11-27T01:02:03.456Z","level":"INFO","event":"server_started","port":"50051"}
// (absl 20220623 has no absl/log, hence this small logger.)
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mlops {

enum class LogLevel { kDebug, kInfo, kWarning, kError };
enum class LogFormat { kText, kJson };

using LogFields = std::vector<std::pair<std::string_view, std::string>>;

void SetLogFormat(LogFormat format);
// Messages below this level are dropped. Default kInfo.
void SetMinLogLevel(LogLevel level);
// Parses "text" or "json"; false for anything else.
bool ParseLogFormat(std::string_view text, LogFormat* format);

void Log(LogLevel level, std::string_view event, const LogFields& fields = {});
inline void LogInfo(std::string_view event, const LogFields& fields = {}) {
  Log(LogLevel::kInfo, event, fields);
}
inline void LogWarning(std::string_view event, const LogFields& fields = {}) {
  Log(LogLevel::kWarning, event, fields);
}
inline void LogError(std::string_view event, const LogFields& fields = {}) {
  Log(LogLevel::kError, event, fields);
}

// Logs at error level and aborts: for broken invariants only, never for bad input.
[[noreturn]] void Fatal(std::string_view message);

// JSON string escaping (quotes included).
std::string JsonQuote(std::string_view text);

}  // namespace mlops
