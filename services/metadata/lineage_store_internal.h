// What the files of LineageStore share (lineage_store.cc: types and nodes, lineage_write.cc:
// executions and contexts, lineage_query.cc: the graph): limits, the key layout, validation,
// filters over nodes and stripe locks. Not part of the store's interface.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mlops/metadata/v1/lineage.pb.h"
#include "services/common/db.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/metadata/filter.h"

namespace mlops::metadata {

inline constexpr size_t kMaxNameBytes = 1024;
inline constexpr size_t kMaxExternalIdBytes = 512;
inline constexpr size_t kMaxPathBytes = 1024;
inline constexpr int64_t kListScanBudget = 200000;

// Keys of the lineage database.
char KindByte(v1::NodeKind kind);
const char* KindName(v1::NodeKind kind);  // "artifact", "execution", "context"
std::string Id8(int64_t id);              // 8 bytes, big-endian
int64_t ReadId8(std::string_view bytes);
std::string NodeKey(v1::NodeKind kind, int64_t id);
std::string ExternalKey(v1::NodeKind kind, std::string_view external_id);
std::string ContextNameKey(std::string_view type, std::string_view name);
std::string ResultKey(std::string_view external_id);
std::string TypeIndexPrefix(v1::NodeKind kind, std::string_view type);
std::string RunIndexPrefix(std::string_view run_id);
std::string ArtifactEdgePrefix(int64_t artifact, v1::Event::Type type);
std::string ExecutionEventsKey(int64_t execution);
std::string MemberKey(int64_t context, v1::NodeKind kind, int64_t node);
std::string MembershipKey(v1::NodeKind kind, int64_t node, int64_t context);

// Validation: INVALID_ARGUMENT naming the field.
absl::Status CheckLength(std::string_view what, std::string_view value, size_t max);
// Properties against the node's type (declared ones typed as declared) and custom ones.
absl::Status CheckProperties(const v1::NodeType& type,
                             const google::protobuf::Map<std::string, v1::Value>& props,
                             const google::protobuf::Map<std::string, v1::Value>& custom);
absl::Status ValidateArtifactFields(const v1::Artifact& a);
// ABORTED when `expected` (not 0) is not the stored update time.
absl::Status CheckExpected(std::string_view what, int64_t expected, int64_t stored);
// INVALID_ARGUMENT when `value` (a type, external id or run id, when given) is not in `project`:
// a node's project is its type's, and its external id is a name in that project.
absl::Status CheckInProject(std::string_view field, std::string_view value,
                            std::string_view project);
// A time after `previous` (update times strictly increase).
int64_t NextTime(int64_t previous);

template <typename Node>
absl::StatusOr<std::optional<Node>> LoadNode(const Db& db, rocksdb::ColumnFamilyHandle* cf,
                                             v1::NodeKind kind, int64_t id) {
  return db.GetProto<Node>(cf, NodeKey(kind, id));
}

template <typename Node>
absl::StatusOr<Node> MustLoad(const Db& db, rocksdb::ColumnFamilyHandle* cf, v1::NodeKind kind,
                              int64_t id) {
  ASSIGN_OR_RETURN(auto node, LoadNode<Node>(db, cf, kind, id));
  if (!node) {
    return absl::NotFoundError(StrCat(KindName(kind), " ", std::to_string(id), " not found"));
  }
  return std::move(*node);
}

// MustLoad, for a node of `project` (a node's project is its type's: docs/api.md, "Projects"): a
// node of another project is NOT_FOUND, worded as one that does not exist.
template <typename Node>
absl::StatusOr<Node> MustLoadIn(const Db& db, rocksdb::ColumnFamilyHandle* cf, v1::NodeKind kind,
                                int64_t id, std::string_view project) {
  ASSIGN_OR_RETURN(auto node, LoadNode<Node>(db, cf, kind, id));
  if (!node || ProjectOf(node->type()) != project) {
    return absl::NotFoundError(StrCat(KindName(kind), " ", std::to_string(id), " not found"));
  }
  return std::move(*node);
}

// One node of any kind, for filters.
struct NodeRef {
  v1::NodeKind kind;
  const v1::Artifact* artifact = nullptr;
  const v1::Execution* execution = nullptr;
  const v1::Context* context = nullptr;
};
// True when the node satisfies the lineage filter `expr` (nullptr: every node).
bool NodeMatches(const Expr* expr, const NodeRef& node);

// Locks a sorted, unique set of stripes.
class StripeLocks {
 public:
  explicit StripeLocks(std::vector<std::mutex*> mutexes) : mutexes_(std::move(mutexes)) {
    std::sort(mutexes_.begin(), mutexes_.end());
    mutexes_.erase(std::unique(mutexes_.begin(), mutexes_.end()), mutexes_.end());
    for (std::mutex* m : mutexes_) m->lock();
  }
  ~StripeLocks() {
    for (auto it = mutexes_.rbegin(); it != mutexes_.rend(); ++it) (*it)->unlock();
  }

 private:
  std::vector<std::mutex*> mutexes_;
};

}  // namespace mlops::metadata
