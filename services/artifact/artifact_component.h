// The artifact service as a component that mlops-artifact and mlops-server host.
#pragma once

#include "services/common/component.h"

namespace mlops::artifact {

// Opens the store in data_dir/artifact.
absl::StatusOr<std::unique_ptr<Component>> OpenArtifactComponent(const std::string& data_dir,
                                                                 const Db::Options& options);

}  // namespace mlops::artifact
