#include "services/monitoring/monitoring_component.h"

#include <filesystem>

#include "mlops/monitoring/v1/monitoring.guard.pb.h"
#include "services/common/status.h"
#include "services/monitoring/monitoring_service.h"
#include "services/monitoring/peer_gateways.h"

namespace mlops::monitoring {
namespace {

class MonitoringComponent : public Component {
 public:
  MonitoringComponent(std::unique_ptr<Db> db, std::string dir)
      : db_(std::move(db)), dir_(std::move(dir)) {}
  std::string name() const override { return "monitoring"; }

  void Register(ServiceHost& host) override {
    service_ = std::make_unique<MonitoringServiceImpl>();
    host.AddService(service_.get());
    host.DeclareServes("monitoring");
    host.rocksdb_collector().Add("monitoring", db_.get());
  }

  absl::Status Started(ServiceHost& host) override {
    std::error_code ec;
    std::filesystem::remove_all(dir_ + "/work", ec);  // datasets a previous life was reading
    std::filesystem::create_directories(dir_ + "/work", ec);
    // Datasets are read in their project, through a channel of that project.
    ASSIGN_OR_RETURN(ChannelForProject artifact, PeerChannelsByProject(host, Peer::kArtifact));
    ASSIGN_OR_RETURN(auto metadata, PeerChannel(host, Peer::kMetadata));
    ASSIGN_OR_RETURN(auto scheduler, PeerChannel(host, Peer::kScheduler));
    store_ = std::make_unique<MonitoringStore>(
        db_.get(), host.registry(), ArtifactDatasetSource(std::move(artifact), dir_ + "/work"),
        RegistryModelResolver(metadata), SchedulerRetrainTrigger(scheduler));
    store_->SetLineage(LineageServiceRecorderFor(metadata));
    RETURN_IF_ERROR(store_->Load());
    service_->SetStore(store_.get());
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Db> db_;
  std::string dir_;
  std::unique_ptr<MonitoringServiceImpl> service_;
  std::unique_ptr<MonitoringStore> store_;  // after service_: stopped before it goes
};

}  // namespace

absl::StatusOr<std::unique_ptr<Component>> OpenMonitoringComponent(const std::string& data_dir,
                                                                   const Db::Options& options) {
  std::string dir = data_dir + "/monitoring";
  // On-disk formats: 1 (issue 15) records the format; 2 (issue 21) adds schemas and validations,
  // 3 (issue 21) model evaluations.
  Db::Options versioned = Versioned(options, 3,
                                    {RecordFormatMigration(),
                                     {2, "schemas and validation reports", nullptr},
                                     {3, "model evaluations", nullptr}});
  auto db = Db::Open(dir + "/db", MonitoringColumnFamilies(), versioned);
  if (!db.ok()) return db.status();
  return std::unique_ptr<Component>(new MonitoringComponent(std::move(*db), dir));
}

}  // namespace mlops::monitoring
