// A compact, read-only YAML document for pipeline specs, built from yaml-cpp's event parser.
// yaml-cpp's own node tree (YAML::Load) costs about 3 KB per node: a 100,000-step spec took over
// 300 MB to parse. This keeps each node in 24 bytes plus its scalar; yaml-cpp still does all of the
// YAML syntax. Written by hand because no Debian package offers a lighter YAML DOM for C++.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mlops::scheduler {

struct YamlMark {
  int line = 0;  // 0-based, like yaml-cpp's
  int column = 0;
};

class YamlDocument;

// A handle on one node of a YamlDocument (which must outlive it); default-constructed or looked
// up under a missing key, it is undefined (false).
class YamlNode {
 public:
  YamlNode() = default;
  explicit operator bool() const { return doc_ != nullptr; }
  bool IsMap() const;
  bool IsSequence() const;
  bool IsScalar() const;
  // A scalar written without quotes (so `true`, `3` and `null` may mean a bool, a number, null).
  bool IsPlainScalar() const;
  bool IsNull() const;
  // The scalar's text; empty for other nodes.
  const std::string& Scalar() const;
  YamlMark Mark() const;
  // Entries of a map, elements of a sequence; 0 otherwise.
  size_t size() const;
  // The value under `key` in a map (the first, if the key repeats); undefined if absent.
  YamlNode operator[](std::string_view key) const;
  // Element `i` of a sequence; undefined when out of range.
  YamlNode operator[](size_t i) const;
  // Entry `i` of a map.
  YamlNode key(size_t i) const;
  YamlNode value(size_t i) const;

 private:
  friend class YamlDocument;
  YamlNode(const YamlDocument* doc, uint32_t index) : doc_(doc), index_(index) {}
  YamlNode Child(size_t i) const;
  const YamlDocument* doc_ = nullptr;
  uint32_t index_ = 0;
};

class YamlDocument {
 public:
  // The first document of `text`. INVALID_ARGUMENT "line L, column C: not valid YAML: ..." when
  // yaml-cpp rejects it; an empty text is a null document.
  static absl::StatusOr<std::unique_ptr<YamlDocument>> Parse(std::string_view text);
  YamlNode root() const { return YamlNode(this, root_); }

 private:
  friend class YamlNode;
  friend class YamlBuilder;
  enum Kind : uint8_t { kNull, kScalar, kSequence, kMap };
  struct Node {
    Kind kind = kNull;
    bool plain = false;  // kScalar: written without quotes
    int32_t line = 0;
    int32_t column = 0;
    uint32_t first = 0;  // kScalar: index in scalars_; kSequence, kMap: first child in children_
    uint32_t count = 0;  // children (a map's are key, value, key, value, ...)
  };
  std::vector<Node> nodes_;
  std::vector<uint32_t> children_;
  std::vector<std::string> scalars_;
  uint32_t root_ = 0;
};

}  // namespace mlops::scheduler
