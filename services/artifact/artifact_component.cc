#include "services/artifact/artifact_component.h"

#include "mlops/artifact/v1/artifact.guard.pb.h"
#include "services/artifact/artifact_service.h"
#include "services/artifact/blob_routes.h"
#include "services/common/metrics.h"

namespace mlops::artifact {
namespace {

// mlops_artifact_* families, read from the store's counters at each scrape.
class ArtifactCollector : public prometheus::Collectable {
 public:
  explicit ArtifactCollector(const ArtifactStore* store) : store_(store) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    const ArtifactCounters& c = store_->counters();
    std::vector<prometheus::MetricFamily> out;
    auto counter = [&](const char* name, const char* help, int64_t value) {
      auto family = GaugeFamily(name, help, prometheus::MetricType::Counter);
      AddSample(&family, static_cast<double>(value));
      out.push_back(std::move(family));
    };
    auto gauge = [&](const char* name, const char* help, int64_t value) {
      auto family = GaugeFamily(name, help);
      AddSample(&family, static_cast<double>(value));
      out.push_back(std::move(family));
    };
    counter("mlops_artifact_chunks_stored_total", "Chunks newly stored.", c.chunks_stored.load());
    counter("mlops_artifact_stored_bytes_total", "Bytes of newly stored chunks.",
            c.bytes_stored.load());
    counter("mlops_artifact_chunks_deduplicated_total", "Chunks sent that were already stored.",
            c.chunks_deduplicated.load());
    counter("mlops_artifact_chunks_rejected_total",
            "Chunks rejected because their bytes did not match their digest.",
            c.chunks_rejected.load());
    counter("mlops_artifact_blobs_committed_total", "Blobs committed.", c.blobs_committed.load());
    counter("mlops_artifact_downloaded_bytes_total", "Bytes served by Download.",
            c.bytes_downloaded.load());
    counter("mlops_artifact_scrub_runs_total", "Scrub runs.", c.scrub_runs.load());
    counter("mlops_artifact_scrub_corrupt_chunks_total",
            "Chunks found corrupt (stored bytes that no longer match their digest) by a scrub or "
            "a download; each counted once until an upload heals it.",
            c.scrub_corrupt_chunks.load());
    counter("mlops_artifact_scrub_missing_chunks_total",
            "Chunks found with their stored bytes gone by a scrub or a download; each counted once "
            "until an upload heals it.",
            c.scrub_missing_chunks.load());
    counter("mlops_artifact_gc_runs_total", "Garbage collections.", c.gc_runs.load());
    counter("mlops_artifact_gc_chunks_deleted_total", "Chunks deleted by garbage collection.",
            c.gc_chunks_deleted.load());
    counter("mlops_artifact_gc_freed_bytes_total", "Bytes freed by garbage collection.",
            c.gc_bytes_freed.load());
    StoreStats stats = store_->Stats();
    gauge("mlops_artifact_chunks", "Stored chunks (estimate).", stats.chunks);
    gauge("mlops_artifact_blobs", "Committed blobs (estimate).", stats.blobs);
    gauge("mlops_artifact_upload_sessions", "Upload sessions not finished (estimate).",
          stats.open_sessions);
    gauge("mlops_artifact_damaged_chunks",
          "Chunks marked damaged (corrupt or missing) and not yet healed by an upload.",
          store_->DamagedChunks());
    return out;
  }

 private:
  const ArtifactStore* store_;
};

class ArtifactComponent : public Component {
 public:
  explicit ArtifactComponent(std::unique_ptr<ArtifactStore> store)
      : store_(std::move(store)),
        service_(store_.get()),
        collector_(std::make_shared<ArtifactCollector>(store_.get())) {}
  std::string name() const override { return "artifact"; }
  void Register(ServiceHost& host) override {
    host.AddService(&service_);
    host.DeclareServes("artifact");
    host.rocksdb_collector().Add("artifact", &store_->db());
    host.http().AddCollectable(collector_);
    AddBlobRoutes(host);
  }

 private:
  std::unique_ptr<ArtifactStore> store_;
  ArtifactServiceImpl service_;
  std::shared_ptr<ArtifactCollector> collector_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Component>> OpenArtifactComponent(const std::string& data_dir,
                                                                 const Db::Options& options) {
  auto store = ArtifactStore::Open(data_dir + "/artifact", options);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Component>(new ArtifactComponent(std::move(*store)));
}

}  // namespace mlops::artifact
