// What monitoring_store.cc and monitoring_validation.cc share of the monitoring core's storage
// and naming.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mlops::monitoring {

// name + \0 + version (8 bytes big endian): versions of one name in order.
std::string VersionKey(const std::string& name, int64_t version);

// The stored name of resource `value` (request field `field`): its name in its project, by the
// identifier rule, with the project's prefix outside project default.
absl::StatusOr<std::string> StoredName(std::string_view field, std::string_view value);

// INVALID_ARGUMENT unless `value` (request field `field`) names something of `project`, the
// project of `owner`: one monitor's or profile's references all stay in its project.
absl::Status InProject(std::string_view field, std::string_view value, std::string_view owner,
                       std::string_view project);

// The bare part of an id in its project (`projects/P/x` -> x).
std::string_view InProjectId(std::string_view id);

}  // namespace mlops::monitoring
