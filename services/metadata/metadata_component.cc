#include "services/metadata/metadata_component.h"

#include "services/metadata/metadata_service.h"

namespace mlops::metadata {
namespace {

class MetadataComponent : public Component {
 public:
  explicit MetadataComponent(std::unique_ptr<MetadataStore> store)
      : store_(std::move(store)), service_(store_.get()) {}
  std::string name() const override { return "metadata"; }
  void Register(ServiceHost& host) override {
    host.AddService(&service_);
    host.rocksdb_collector().Add("metadata", &store_->db());
  }

 private:
  std::unique_ptr<MetadataStore> store_;
  MetadataServiceImpl service_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Component>> OpenMetadataComponent(const std::string& data_dir,
                                                                 const Db::Options& options) {
  auto store = MetadataStore::Open(data_dir + "/metadata", options);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Component>(new MetadataComponent(std::move(*store)));
}

}  // namespace mlops::metadata
