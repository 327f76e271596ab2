// mlops-metadata: the metadata service on its own.
#include "services/common/component.h"
#include "services/metadata/metadata_component.h"

int main(int argc, char** argv) {
  mlops::InitServerProcess(argc, argv,
                           "mlops-metadata: experiment tracking and search.\n"
                           "Usage: mlops-metadata [--port=50051] [--data_dir=./.mlops] ...");
  return mlops::RunServerMain("mlops-metadata", {mlops::metadata::OpenMetadataComponent});
}
