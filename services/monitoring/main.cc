// mlops-monitoring: the monitoring service on its own (--artifact_address, --metadata_address and
// --scheduler_address name the services it reads datasets from, resolves models in and submits
// retraining to).
#include "services/common/component.h"
#include "services/monitoring/monitoring_component.h"

int main(int argc, char** argv) {
  mlops::InitServerProcess(argc, argv,
                           "mlops-monitoring: drift monitoring.\nUsage: mlops-monitoring "
                           "[--port=50051] [--data_dir=./.mlops] --artifact_address=HOST:PORT ...");
  return mlops::RunServerMain("mlops-monitoring", {mlops::monitoring::OpenMonitoringComponent});
}
