// The lineage core of the metadata service: types with property schemas, artifacts, executions,
// contexts, events, attributions and associations, and lineage queries. Knows nothing of gRPC.
//
// Lineage and the model registry live in their own RocksDB (<data_dir>/lineage, OpenDb) next to
// the tracking database: tracking inserts metric points with memtable insert hints, which rule out
// concurrent memtable writes, and PutExecution's many small keys need those (docs/performance.md).
//
// Storage:
//   lineage_types   kind byte + name -> NodeType
//   lineage_nodes   kind byte + id (8 bytes, big-endian) -> Artifact / Execution / Context
//   lineage_keys    'x' kind external_id -> id; 'n' ordered(type) name -> context id;
//                   'r' external_id -> PutExecutionResponse (idempotent retries)
//   lineage_edges   'A' artifact event-type execution -> Event   (artifact side)
//                   'E' execution -> ExecutionEvents             (every event of the execution)
//                   'C' context kind node -> ""  (members)   'M' kind node context -> ""
//                   'P' child parent -> ""        'Q' parent child -> ""
//   lineage_index   't' kind ordered(type) id -> ""   'u' run_id execution -> ""
// A traversal step is one prefix scan from an artifact ('A', the artifact and the event type it
// follows) or one lookup from an execution ('E').
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mlops/metadata/v1/lineage.pb.h"
#include "services/common/db.h"
#include "services/common/projects.h"

namespace mlops::metadata {

inline constexpr char kLineageTypesCf[] = "lineage_types";
inline constexpr char kLineageNodesCf[] = "lineage_nodes";
inline constexpr char kLineageKeysCf[] = "lineage_keys";
inline constexpr char kLineageEdgesCf[] = "lineage_edges";
inline constexpr char kLineageIndexCf[] = "lineage_index";

// Bounds (INVALID_ARGUMENT with the limit in the message).
inline constexpr int kMaxArtifactsPerExecution = 10000;
inline constexpr int kMaxContextsPerExecution = 100;
inline constexpr int kMaxProperties = 1000;
inline constexpr int kMaxLineageHops = 100;
inline constexpr size_t kMaxLineageNodes = 1000000;

// The work one GetLineage call may do (docs/api.md, "GetLineage"): nodes reached and edges
// examined, whatever the page asked for. Beyond either: INVALID_ARGUMENT (use fewer hops or a
// stop filter), so that no query pins a core for long.
struct LineageBudget {
  size_t max_nodes = kMaxLineageNodes;
  size_t max_edges = 4 * kMaxLineageNodes;
};

// Besides the codes each method names, every method returns DATA_LOSS for a stored record that
// does not parse (naming its column family and key) and the storage's own error when RocksDB
// fails (UNAVAILABLE; RESOURCE_EXHAUSTED when the disk is full).
class LineageStore {
 public:
  // Opens the lineage and registry database (every column family both stores use).
  // FAILED_PRECONDITION for a database of a newer format.
  static absl::StatusOr<std::unique_ptr<Db>> OpenDb(const std::string& path,
                                                    const Db::Options& options);

  // Registers the built-in types (idempotently) and reads the id counters. `db` must hold the
  // lineage column families and outlive the store. DATA_LOSS for a stored type that does not
  // parse.
  static absl::StatusOr<std::unique_ptr<LineageStore>> Create(Db* db, LineageBudget budget = {});

  // Projects (docs/api.md, "Projects"): a type of project P is named `projects/P/{name}` (the
  // built-in types exist in every project under that name); a node's project is its type's. Every
  // method that finds nodes by id takes the project of the request and answers NOT_FOUND for a
  // node of another, and an external id or context name is one of the project's (the client
  // qualifies it as it does any name). Edges join nodes of one project only, so a lineage query
  // never leaves its project.
  //
  // INVALID_ARGUMENT (kind, name, property types), FAILED_PRECONDITION (changes the type of an
  // existing property).
  absl::StatusOr<v1::NodeType> PutType(const v1::NodeType& type);
  // NOT_FOUND.
  absl::StatusOr<v1::NodeType> GetType(v1::NodeKind kind, std::string_view name) const;
  // The project's types: built-in types first, then by name. INVALID_ARGUMENT for an unknown kind.
  absl::StatusOr<std::vector<v1::NodeType>> ListTypes(
      v1::NodeKind kind, std::string_view project = kDefaultProject) const;

  // Creates or updates. NOT_FOUND (unknown type; id > 0 that does not exist), INVALID_ARGUMENT
  // (properties that do not match the schema, a type change), ABORTED (stale
  // expected_update_time_ms), ALREADY_EXISTS (external_id taken by an artifact of another type).
  absl::StatusOr<v1::Artifact> PutArtifact(const v1::PutArtifactRequest& request,
                                           std::string_view project = kDefaultProject);
  // By id or external_id. NOT_FOUND; INVALID_ARGUMENT when the request names neither.
  absl::StatusOr<v1::Artifact> GetArtifact(const v1::GetNodeRequest& request,
                                           std::string_view project = kDefaultProject) const;
  // INVALID_ARGUMENT (filter with its position, page size, page token). A call that walks
  // 200,000 entries returns a partial page with a token.
  absl::StatusOr<v1::ListArtifactsResponse> ListArtifacts(
      const v1::ListNodesRequest& request, std::string_view project = kDefaultProject) const;

  // Atomic: the execution, new artifacts, events, contexts, associations and attributions in one
  // batch. Codes as PutArtifact, plus NOT_FOUND for events on missing artifacts or contexts, and
  // ALREADY_EXISTS when the execution's external_id was recorded for an execution of another
  // type (same type: the first call's ids are returned, already_existed).
  absl::StatusOr<v1::PutExecutionResponse> PutExecution(const v1::PutExecutionRequest& request,
                                                        std::string_view project = kDefaultProject);
  // As GetArtifact / ListArtifacts.
  absl::StatusOr<v1::Execution> GetExecution(const v1::GetNodeRequest& request,
                                             std::string_view project = kDefaultProject) const;
  absl::StatusOr<v1::ListExecutionsResponse> ListExecutions(
      const v1::ListNodesRequest& request, std::string_view project = kDefaultProject) const;

  // Creates or updates; a context is unique by type and name. Codes as PutArtifact.
  absl::StatusOr<v1::Context> PutContext(const v1::PutContextRequest& request,
                                         std::string_view project = kDefaultProject);
  // By id, external_id or type and name; otherwise as GetArtifact / ListArtifacts.
  absl::StatusOr<v1::Context> GetContext(const v1::GetNodeRequest& request,
                                         std::string_view project = kDefaultProject) const;
  absl::StatusOr<v1::ListContextsResponse> ListContexts(
      const v1::ListNodesRequest& request, std::string_view project = kDefaultProject) const;
  // NOT_FOUND, INVALID_ARGUMENT (a context its own parent, or a link closing a cycle).
  absl::Status AddParentContext(int64_t child_id, int64_t parent_id,
                                std::string_view project = kDefaultProject);
  // NOT_FOUND (context); INVALID_ARGUMENT (page size, page token).
  absl::StatusOr<v1::GetContextMembersResponse> GetContextMembers(
      const v1::GetContextMembersRequest& request,
      std::string_view project = kDefaultProject) const;

  // Breadth-first subgraph around the start node. NOT_FOUND (start), INVALID_ARGUMENT (no start,
  // hops, filter, token), INVALID_ARGUMENT (over the budget: more than 1,000,000 nodes reached or
  // 4,000,000 edges examined; use fewer hops or a stop filter).
  absl::StatusOr<v1::LineageGraph> GetLineage(const v1::GetLineageRequest& request,
                                              std::string_view project = kDefaultProject) const;

 private:
  LineageStore(Db* db, LineageBudget budget);
  absl::Status Init();
  int64_t NextId(v1::NodeKind kind);
  // Give a new node its id and times and add its record and keys to the batch.
  void AddNewArtifact(v1::Artifact* artifact, int64_t now, rocksdb::WriteBatch* batch);
  void AddNewContext(v1::Context* context, int64_t now, rocksdb::WriteBatch* batch);
  // Per-key striped locks for read-check-write of unique keys and node updates.
  std::mutex& Stripe(std::string_view key) const;

  Db* db_;
  const LineageBudget budget_;
  rocksdb::ColumnFamilyHandle* types_;
  rocksdb::ColumnFamilyHandle* nodes_;
  rocksdb::ColumnFamilyHandle* keys_;
  rocksdb::ColumnFamilyHandle* edges_;
  rocksdb::ColumnFamilyHandle* index_;
  std::array<std::atomic<int64_t>, 4> next_id_{};  // by NodeKind
  mutable std::array<std::mutex, 64> stripes_;
  mutable std::mutex types_mu_;  // also serialises context links (cycle checks)
  // Types by kind byte + name: read by every write, changed only by PutType.
  mutable std::mutex type_cache_mu_;
  mutable std::map<std::string, v1::NodeType> type_cache_;

  friend class LineageWriter;
};

}  // namespace mlops::metadata
