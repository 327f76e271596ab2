// The metadata service as a component that mlops-metadata and mlops-server host.
#pragma once

#include "services/common/component.h"

namespace mlops::metadata {

// Opens the store in data_dir/metadata.
absl::StatusOr<std::unique_ptr<Component>> OpenMetadataComponent(const std::string& data_dir,
                                                                 const Db::Options& options);

}  // namespace mlops::metadata
