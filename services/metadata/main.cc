// mlops-metadata: the metadata service on its own.
#include "absl/flags/flag.h"
#include "services/common/logging.h"
#include "services/common/server.h"
#include "services/metadata/metadata_service.h"

int main(int argc, char** argv) {
  mlops::InitServerProcess(argc, argv,
                           "mlops-metadata: experiment tracking service.\n"
                           "Usage: mlops-metadata [--port=50051] [--data_dir=./.mlops] ...");
  std::string dir = absl::GetFlag(FLAGS_data_dir) + "/metadata";
  mlops::Db::Options db_options;
  db_options.sync_writes = absl::GetFlag(FLAGS_sync_writes);
  auto store = mlops::metadata::MetadataStore::Open(dir, db_options);
  if (!store.ok()) {
    mlops::LogError("open_failed", {{"dir", dir}, {"error", store.status().ToString()}});
    return 1;
  }
  mlops::metadata::MetadataServiceImpl service(store->get());
  mlops::ServiceHost host(mlops::ServerConfig::FromFlags());
  host.AddService(&service);
  host.rocksdb_collector().Add("metadata", &(*store)->db());
  if (absl::Status status = host.Start(); !status.ok()) {
    mlops::LogError("start_failed", {{"error", status.ToString()}});
    return 1;
  }
  (void)mlops::WritePortFile(absl::GetFlag(FLAGS_port_file), host.port(), host.metrics_port());
  mlops::LogInfo("serving", {{"service", "metadata"},
                             {"port", std::to_string(host.port())},
                             {"metrics_port", std::to_string(host.metrics_port())},
                             {"data_dir", dir}});
  int sig = mlops::WaitForShutdownSignal();
  mlops::LogInfo("shutting_down", {{"signal", std::to_string(sig)}});
  host.Shutdown(absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_s)));
  mlops::LogInfo("stopped");
  return 0;
}
