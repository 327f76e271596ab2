// mlops-server: the all-in-one server, the embedded default. Every service in one process, on one
// gRPC port, each with its own RocksDB under --data_dir, plus one /metrics port.
#include "services/artifact/artifact_component.h"
#include "services/common/component.h"
#include "services/metadata/metadata_component.h"
#include "services/monitoring/monitoring_component.h"
#include "services/scheduler/scheduler_component.h"

int main(int argc, char** argv) {
  mlops::InitServerProcess(argc, argv,
                           "mlops-server: every mlops service in one process.\n"
                           "Usage: mlops-server [--port=50051] [--metrics_port=9464] "
                           "[--data_dir=./.mlops] ...");
  return mlops::RunServerMain(
      "mlops-server",
      {mlops::metadata::OpenMetadataComponent, mlops::artifact::OpenArtifactComponent,
       mlops::scheduler::OpenSchedulerComponent, mlops::monitoring::OpenMonitoringComponent});
}
