#include "services/common/logging.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mlops {
namespace {

std::atomic<LogFormat> g_format{LogFormat::kText};
std::atomic<LogLevel> g_min_level{LogLevel::kInfo};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
  }
  return "INFO";
}

bool NeedsQuoting(std::string_view value) {
  if (value.empty()) return true;
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) return true;
  }
  return false;
}

}  // namespace

void SetLogFormat(LogFormat format) { g_format = format; }
void SetMinLogLevel(LogLevel level) { g_min_level = level; }

bool ParseLogFormat(std::string_view text, LogFormat* format) {
  if (text == "text") {
    *format = LogFormat::kText;
  } else if (text == "json") {
    *format = LogFormat::kJson;
  } else {
    return false;
  }
  return true;
}

std::string JsonQuote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

void Log(LogLevel level, std::string_view event, const LogFields& fields) {
  if (level < g_min_level.load()) return;
  std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::string line;
  if (g_format.load() == LogFormat::kJson) {
    line = "{\"ts\":" + JsonQuote(ts) + ",\"level\":" + JsonQuote(LevelName(level)) +
           ",\"event\":" + JsonQuote(event);
    for (const auto& [key, value] : fields) {
      line += "," + JsonQuote(key) + ":" + JsonQuote(value);
    }
    line += "}\n";
  } else {
    line = ts + " " + LevelName(level) + " " + std::string(event);
    for (const auto& [key, value] : fields) {
      line += " " + std::string(key) + "=" + (NeedsQuoting(value) ? JsonQuote(value) : value);
    }
    line += "\n";
  }
  std::fwrite(line.data(), 1, line.size(), stderr);
}

void Fatal(std::string_view message) {
  Log(LogLevel::kError, "fatal", {{"message", std::string(message)}});
  std::fflush(stderr);
  std::abort();
}

}  // namespace mlops
