// mlops-scheduler: the scheduler service on its own (--artifact_address and --metadata_address
// name the services steps use).
#include "services/common/component.h"
#include "services/scheduler/scheduler_component.h"

int main(int argc, char** argv) {
  mlops::InitServerProcess(argc, argv,
                           "mlops-scheduler: pipelines, queues, step caching, local executor.\n"
                           "Usage: mlops-scheduler [--port=50051] [--data_dir=./.mlops] "
                           "--artifact_address=HOST:PORT --metadata_address=HOST:PORT ...");
  return mlops::RunServerMain("mlops-scheduler", {mlops::scheduler::OpenSchedulerComponent});
}
