#include "services/common/names.h"

#include <string>

#include "services/common/strings.h"

namespace mlops {
namespace {

bool Alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool Alnum(char c) { return Alpha(c) || (c >= '0' && c <= '9'); }
bool Control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

struct Rule {
  const char* text;
  size_t max;
  bool (*first)(char);
  bool (*rest)(char);
};

Rule RuleOf(NameKind kind) {
  switch (kind) {
    case NameKind::kIdentifier:
      return {"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", 128, Alnum,
              [](char c) { return Alnum(c) || c == '.' || c == '_' || c == '-'; }};
    case NameKind::kType:
      return {"[A-Za-z][A-Za-z0-9._-]{0,127}", 128, Alpha,
              [](char c) { return Alnum(c) || c == '.' || c == '_' || c == '-'; }};
    case NameKind::kAlias:
      return {"[A-Za-z][A-Za-z0-9._-]{0,63}", 64, Alpha,
              [](char c) { return Alnum(c) || c == '.' || c == '_' || c == '-'; }};
    case NameKind::kStep:
      return {"[A-Za-z][A-Za-z0-9_-]{0,62}", 63, Alpha,
              [](char c) { return Alnum(c) || c == '_' || c == '-'; }};
    case NameKind::kQueue:
      return {"[A-Za-z0-9_-]{1,63}", 63, [](char c) { return Alnum(c) || c == '_' || c == '-'; },
              [](char c) { return Alnum(c) || c == '_' || c == '-'; }};
    case NameKind::kDisplay:
      return {"1 to 500 bytes with no control character", kMaxDisplayNameBytes,
              [](char c) { return !Control(c); }, [](char c) { return !Control(c); }};
  }
  return {"", 0, nullptr, nullptr};
}

// The name as shown in a message: at most 200 bytes, control characters as '?'.
std::string Shown(std::string_view name) {
  std::string shown(name.substr(0, 200));
  for (char& c : shown) {
    if (Control(c)) c = '?';
  }
  return shown;
}

}  // namespace

absl::Status ValidateName(NameKind kind, std::string_view field, std::string_view name) {
  Rule rule = RuleOf(kind);
  bool ok = !name.empty() && name.size() <= rule.max && rule.first(name[0]);
  for (size_t i = 1; ok && i < name.size(); ++i) ok = rule.rest(name[i]);
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      StrCat(field, " \"", Shown(name), "\": must match ", rule.text));
}

absl::Status ValidatePath(std::string_view path) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(StrCat("path \"", Shown(path), "\": ", why));
  };
  if (path.empty()) return bad("empty");
  if (path.size() > kMaxPathBytes) return bad("longer than 4096 bytes");
  if (path[0] == '/') return bad("absolute paths are not allowed");
  for (char c : path) {
    if (c == '\0') return bad("contains NUL");
    if (Control(c)) return bad("contains a control character");
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty()) return bad("empty component");
    if (part == "." || part == "..") return bad("'.' and '..' components are not allowed");
    if (part.size() > kMaxPathComponentBytes) return bad("a component is longer than 255 bytes");
    start = end + 1;
  }
  return absl::OkStatus();
}

}  // namespace mlops
