// The rules for every kind of name the API takes, in one place (docs/api.md, "Names"). Cores apply
// them where a request enters (the service boundary), so that every service refuses a name the
// same way: INVALID_ARGUMENT `FIELD "NAME": must match RULE` (the name cut to 200 bytes).
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace mlops {

enum class NameKind {
  // Datasets, dataset tags, registered models, profiles, monitors:
  // [A-Za-z0-9][A-Za-z0-9._-]{0,127}. No '/', no "..", nothing to escape in a URL or a key.
  kIdentifier,
  // Lineage types (Dataset, Model, Train, ...): [A-Za-z][A-Za-z0-9._-]{0,127}, as ml-metadata's.
  kType,
  // Model aliases (production, staging): [A-Za-z][A-Za-z0-9._-]{0,63}.
  kAlias,
  // Pipelines, pipeline steps and schedules: [A-Za-z][A-Za-z0-9_-]{0,62}. They name processes,
  // Kubernetes Jobs, CronJobs and DNS labels, so no '.'.
  kStep,
  // Scheduler queues: [A-Za-z0-9_-]{1,63}.
  kQueue,
  // Experiment and run names, free text for people: 1 to 500 bytes with no control character.
  kDisplay,
};

// OK when `name` follows the rule of `kind`; `field` names it in the error.
absl::Status ValidateName(NameKind kind, std::string_view field, std::string_view name);

// Paths inside a dataset version (manifest entries): relative, '/'-separated, at most 4,096 bytes
// and 255 a component, no empty, "." or ".." component, no NUL or control character.
absl::Status ValidatePath(std::string_view path);

inline constexpr size_t kMaxDisplayNameBytes = 500;
inline constexpr size_t kMaxPathBytes = 4096;
inline constexpr size_t kMaxPathComponentBytes = 255;

}  // namespace mlops
