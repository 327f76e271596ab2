// Projects in resource names (docs/api.md, "Projects"). Every resource belongs to a project. A
// name or id of a resource outside project `default` carries it as a prefix,
// `projects/{project}/{name}`; one without a prefix is in project `default`, so that clients,
// scripts and data dirs from before projects keep working unchanged: in storage, a resource of
// project `default` is keyed by its bare name, one of project P by `projects/P/{name}`, so
// resources of different projects never share a key and nothing needs migrating.
// `projects/default/{name}` is accepted as a spelling of `{name}`; responses always use the short
// form for project `default`.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mlops {

// The project of a resource named without one.
inline constexpr std::string_view kDefaultProject = "default";
inline constexpr std::string_view kProjectsPrefix = "projects/";
// Every project: in a grant, a role in all of them; in a list request, all of their resources.
inline constexpr std::string_view kEveryProject = "*";

// OK when `project` is a valid project name ([A-Za-z0-9][A-Za-z0-9._-]{0,127}, as a dataset's).
absl::Status ValidateProject(std::string_view project);

// A resource name split into its project and the name within it.
struct ScopedName {
  std::string project;  // kDefaultProject when the name has no prefix
  std::string name;     // the rest: what the resource's own naming rules apply to
};

// Splits `value` (a name or id of request field `field`): `projects/P/REST` -> {P, REST}; anything
// else -> {default, value}. INVALID_ARGUMENT naming `field` for `projects/` with no valid project
// or no rest.
absl::StatusOr<ScopedName> ParseScoped(std::string_view field, std::string_view value);

// The project of `value`, kDefaultProject when it has no (valid) prefix.
std::string_view ProjectOf(std::string_view value);

// `name` within `project`: the bare name in project default, `projects/P/name` in any other.
std::string Qualify(std::string_view project, std::string_view name);

// The canonical spelling of `value`: `projects/default/x` -> `x`, anything else unchanged.
std::string CanonicalName(std::string_view value);

// NOT_FOUND for a resource that exists in another project than the one its name says: it is
// reported exactly as one that does not exist, so that nothing reveals another project's data.
absl::Status NotInProject(std::string_view what, std::string_view name, std::string_view project);

}  // namespace mlops
