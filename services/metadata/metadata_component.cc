#include "services/metadata/metadata_component.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "mlops/metadata/v1/lineage.guard.pb.h"
#include "mlops/metadata/v1/metadata.guard.pb.h"
#include "mlops/metadata/v1/registry.guard.pb.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/metadata/lineage_service.h"
#include "services/metadata/metadata_service.h"

namespace mlops::metadata {
namespace {

// Tracking, lineage and the model registry: three gRPC services over one database.
class MetadataComponent : public Component {
 public:
  MetadataComponent(std::unique_ptr<MetadataStore> store, std::unique_ptr<Db> lineage_db,
                    std::unique_ptr<LineageStore> lineage)
      : store_(std::move(store)),
        lineage_db_(std::move(lineage_db)),
        lineage_(std::move(lineage)),
        registry_(lineage_db_.get()),
        service_(store_.get()),
        lineage_service_(lineage_.get()),
        registry_service_(&registry_) {}
  std::string name() const override { return "metadata"; }
  void Register(ServiceHost& host) override {
    host.AddService(&service_);
    host.DeclareServes("metadata");
    host.AddService(&lineage_service_);
    host.AddService(&registry_service_);
    host.rocksdb_collector().Add("metadata", &store_->db());
    host.rocksdb_collector().Add("lineage", lineage_db_.get());
  }
  absl::Status Started(ServiceHost&) override {
    purger_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(mu_);
      do {
        absl::StatusOr<uint64_t> purged = store_->PurgeLogWriters(NowMs());
        if (!purged.ok()) {
          LogWarning("log_writers_purge_failed", {{"error", purged.status().ToString()}});
        }
      } while (!stop_cv_.wait_for(lock, std::chrono::hours(1), [this] { return stopping_; }));
    });
    return absl::OkStatus();
  }
  void Stop() override {
    registry_.StopWatches();  // watchers reconnect elsewhere now, not after the grace period
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    stop_cv_.notify_all();
    if (purger_.joinable()) purger_.join();
  }
  ~MetadataComponent() override { Stop(); }

 private:
  std::unique_ptr<MetadataStore> store_;
  std::unique_ptr<Db> lineage_db_;
  std::unique_ptr<LineageStore> lineage_;
  RegistryStore registry_;
  MetadataServiceImpl service_;
  LineageServiceImpl lineage_service_;
  ModelRegistryImpl registry_service_;
  // Purges the writer sequences of long-ended runs at start and hourly (PurgeLogWriters).
  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread purger_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Component>> OpenMetadataComponent(const std::string& data_dir,
                                                                 const Db::Options& options) {
  auto store = MetadataStore::Open(data_dir + "/metadata", options);
  if (!store.ok()) return store.status();
  auto lineage_db = LineageStore::OpenDb(data_dir + "/lineage", options);
  if (!lineage_db.ok()) return lineage_db.status();
  auto lineage = LineageStore::Create(lineage_db->get());
  if (!lineage.ok()) return lineage.status();
  return std::unique_ptr<Component>(
      new MetadataComponent(std::move(*store), std::move(*lineage_db), std::move(*lineage)));
}

}  // namespace mlops::metadata
