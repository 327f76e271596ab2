// Configuration files that are one YAML key holding a list (the token file, the bindings file,
// the scheduler's secrets file), parsed the same way.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mlops {

// A YAML file holding one key, `key`, a list of items each parsed by `parse(node, index)` (which
// returns absl::StatusOr<Item>); errors start with "<what> file: ". An empty file or list is no
// items.
template <typename Item, typename Parse>
absl::StatusOr<std::vector<Item>> ParseListFile(std::string_view text, const std::string& what,
                                                const std::string& key, Parse parse) {
  const std::string file = what + " file: ";
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(file + "not YAML: " + e.what());
  }
  std::vector<Item> items;
  if (root.IsNull()) return items;
  if (!root.IsMap() || root.size() != 1 || !root[key]) {
    return absl::InvalidArgumentError(file + "must be a mapping with one key, " + key);
  }
  const YAML::Node& list = root[key];
  if (list.IsNull()) return items;
  if (!list.IsSequence()) return absl::InvalidArgumentError(file + key + " must be a list");
  for (size_t i = 0; i < list.size(); ++i) {
    absl::StatusOr<Item> item;
    try {
      item = parse(list[i], i);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(file + key + "[" + std::to_string(i) + "]: " + e.what());
    }
    if (!item.ok()) return absl::InvalidArgumentError(file + std::string(item.status().message()));
    items.push_back(std::move(*item));
  }
  return items;
}

}  // namespace mlops
