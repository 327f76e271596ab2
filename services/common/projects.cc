#include "services/common/projects.h"

#include "services/common/names.h"
#include "services/common/strings.h"

namespace mlops {

absl::Status ValidateProject(std::string_view project) {
  return ValidateName(NameKind::kIdentifier, "project", project);
}

absl::StatusOr<ScopedName> ParseScoped(std::string_view field, std::string_view value) {
  if (!value.starts_with(kProjectsPrefix))
    return ScopedName{std::string(kDefaultProject), std::string(value)};
  std::string_view rest = value.substr(kProjectsPrefix.size());
  size_t slash = rest.find('/');
  std::string_view project = rest.substr(0, slash);
  if (absl::Status valid = ValidateProject(project); !valid.ok()) {
    return absl::InvalidArgumentError(StrCat(field, ": \"", value.substr(0, 200),
                                             "\": projects/{project}/{name} needs a valid project "
                                             "([A-Za-z0-9][A-Za-z0-9._-]{0,127})"));
  }
  if (slash == std::string_view::npos || slash + 1 == rest.size()) {
    return absl::InvalidArgumentError(StrCat(field, ": \"", value.substr(0, 200),
                                             "\": projects/{project}/{name} needs a name after "
                                             "the project"));
  }
  return ScopedName{std::string(project), std::string(rest.substr(slash + 1))};
}

std::string_view ProjectOf(std::string_view value) {
  if (!value.starts_with(kProjectsPrefix)) return kDefaultProject;
  std::string_view rest = value.substr(kProjectsPrefix.size());
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos || slash + 1 == rest.size()) return kDefaultProject;
  std::string_view project = rest.substr(0, slash);
  return ValidateProject(project).ok() ? project : kDefaultProject;
}

std::string Qualify(std::string_view project, std::string_view name) {
  if (project.empty() || project == kDefaultProject) return std::string(name);
  return StrCat(kProjectsPrefix, project, "/", name);
}

std::string CanonicalName(std::string_view value) {
  absl::StatusOr<ScopedName> scoped = ParseScoped("", value);
  if (!scoped.ok()) return std::string(value);
  return Qualify(scoped->project, scoped->name);
}

absl::Status NotInProject(std::string_view what, std::string_view name, std::string_view project) {
  return absl::NotFoundError(StrCat(what, " ", name, " not found in project ", project));
}

}  // namespace mlops
