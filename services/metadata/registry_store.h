// The model registry core of the metadata service: registered models, numbered versions, and
// aliases that move atomically with a full history. Lives in the lineage database
// (LineageStore::OpenDb); no gRPC.
//
// Storage:
//   models          name -> RegisteredModel (with its current aliases and latest version number)
//   model_versions  ordered(name) + version (8 bytes) -> ModelVersion
//   alias_history   ordered(name) + ordered(alias) + ~sequence (8 bytes) -> AliasMove, newest first
//   request_ids     "model_version:" name \0 request_id -> version
// Every change of one model (a version, an alias move) happens under that model's lock, reading
// and writing the model record in the same batch as the change, so an alias and its history never
// disagree.
#pragma once

#include <array>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "absl/status/statusor.h"
#include "mlops/metadata/v1/registry.pb.h"
#include "services/common/db.h"

namespace mlops::metadata {

inline constexpr char kModelsCf[] = "models";
inline constexpr char kModelVersionsCf[] = "model_versions";
inline constexpr char kAliasHistoryCf[] = "alias_history";

// Besides the codes each method names, every method returns DATA_LOSS for a stored record that
// does not parse (naming its column family and key) and the storage's own error when RocksDB
// fails.
class RegistryStore {
 public:
  // `db` holds the registry column families and "request_ids", and outlives the store.
  explicit RegistryStore(Db* db);

  // INVALID_ARGUMENT (name, description, tags), ALREADY_EXISTS.
  absl::StatusOr<v1::RegisteredModel> CreateRegisteredModel(
      const v1::CreateRegisteredModelRequest& request);
  // NOT_FOUND.
  absl::StatusOr<v1::RegisteredModel> GetRegisteredModel(std::string_view name) const;
  // By name. INVALID_ARGUMENT (page size, page token).
  absl::StatusOr<v1::ListRegisteredModelsResponse> ListRegisteredModels(
      const v1::ListRegisteredModelsRequest& request) const;
  // NOT_FOUND, ABORTED (stale expected_update_time_ms).
  absl::StatusOr<v1::RegisteredModel> UpdateRegisteredModel(
      const v1::UpdateRegisteredModelRequest& request);

  // NOT_FOUND (model, unless create_model), INVALID_ARGUMENT (digest, fields).
  absl::StatusOr<v1::ModelVersion> CreateModelVersion(const v1::CreateModelVersionRequest& request);
  // By number or alias. NOT_FOUND.
  absl::StatusOr<v1::ModelVersion> GetModelVersion(const v1::GetModelVersionRequest& request) const;
  // Newest first. NOT_FOUND (model); INVALID_ARGUMENT (page size, page token).
  absl::StatusOr<v1::ListModelVersionsResponse> ListModelVersions(
      const v1::ListModelVersionsRequest& request) const;
  // NOT_FOUND, ABORTED.
  absl::StatusOr<v1::ModelVersion> UpdateModelVersion(const v1::UpdateModelVersionRequest& request);
  // NOT_FOUND, FAILED_PRECONDITION naming the alias that points at it.
  absl::Status DeleteModelVersion(std::string_view name, int64_t version);

  // NOT_FOUND (model, version), INVALID_ARGUMENT (alias name; an override without a reason),
  // ABORTED (expected_version differs from where the alias points now), FAILED_PRECONDITION (the
  // alias requires a blessing the version lacks: the message names each rule that failed).
  absl::StatusOr<v1::AliasMove> SetAlias(const v1::SetAliasRequest& request);
  // NOT_FOUND (model, alias).
  absl::StatusOr<v1::AliasMove> DeleteAlias(const v1::DeleteAliasRequest& request);
  // Newest first; with at_time_ms, the one move in force then (NOT_FOUND when the alias did not
  // exist at that time).
  absl::StatusOr<v1::GetAliasHistoryResponse> GetAliasHistory(
      const v1::GetAliasHistoryRequest& request) const;

  // Records the version's blessing (replacing an earlier one). NOT_FOUND; INVALID_ARGUMENT for a
  // blessing that is blessed with failed rules, or too large.
  absl::StatusOr<v1::ModelVersion> SetBlessing(const v1::SetBlessingRequest& request);
  // NOT_FOUND (model); INVALID_ARGUMENT (alias name).
  absl::StatusOr<v1::RegisteredModel> SetAliasPolicy(const v1::SetAliasPolicyRequest& request);

  // The moves of an alias after move `after_sequence`, oldest first (each with the version it
  // points at after it, when it still exists). NOT_FOUND (model), INVALID_ARGUMENT (alias),
  // OUT_OF_RANGE when the alias has fewer than `after_sequence` moves.
  absl::StatusOr<std::vector<v1::AliasUpdate>> MovesAfter(std::string_view name,
                                                          std::string_view alias,
                                                          int64_t after_sequence) const;
  // A counter of alias moves (any alias), and a wait until it passes `seen` (at most
  // `timeout_ms`); returns the counter.
  uint64_t moves() const;
  uint64_t WaitForMove(uint64_t seen, int64_t timeout_ms) const;
  // The server is shutting down: WaitForMove returns at once and stopping() is true, so that
  // watches end (their clients reconnect) instead of holding the shutdown for its grace period.
  void StopWatches();
  bool stopping() const;

 private:
  std::mutex& ModelLock(std::string_view name);
  absl::StatusOr<v1::RegisteredModel> LoadModel(std::string_view name) const;
  absl::StatusOr<v1::ModelVersion> LoadVersion(const v1::RegisteredModel& model,
                                               int64_t version) const;
  absl::StatusOr<v1::AliasMove> RecordMove(v1::RegisteredModel& model, const std::string& alias,
                                           int64_t to_version, const std::string& actor,
                                           const std::string& reason, rocksdb::WriteBatch* batch,
                                           bool overridden = false);

  Db* db_;
  rocksdb::ColumnFamilyHandle* models_;
  rocksdb::ColumnFamilyHandle* versions_;
  rocksdb::ColumnFamilyHandle* history_;
  rocksdb::ColumnFamilyHandle* request_ids_;
  std::array<std::mutex, 64> locks_;
  // Alias moves, for watchers (WaitForMove).
  mutable std::mutex moves_mu_;
  mutable std::condition_variable moved_;
  uint64_t moves_ = 0;     // guarded by moves_mu_
  bool stopping_ = false;  // guarded by moves_mu_
  void NoteMove();
};

}  // namespace mlops::metadata
