// mlops-artifact: the artifact service on its own.
#include "services/artifact/artifact_component.h"
#include "services/common/component.h"

int main(int argc, char** argv) {
  mlops::InitServerProcess(argc, argv,
                           "mlops-artifact: content-addressed artifacts and dataset versions.\n"
                           "Usage: mlops-artifact [--port=50051] [--data_dir=./.mlops] ...");
  return mlops::RunServerMain("mlops-artifact", {mlops::artifact::OpenArtifactComponent});
}
