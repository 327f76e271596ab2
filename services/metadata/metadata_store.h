// The metadata store: experiments, runs, params, tags, metric histories and run search, on one
// RocksDB database. Knows nothing of gRPC; the service adapter and the tests drive it directly.
//
// Storage layout (column families):
//   experiments        id -> Experiment
//   experiment_names   name -> id (names stay reserved by deleted experiments)
//   runs               id -> Run (params, tags, latest metrics and source included)
//   metrics            run id | ordered(key) | ordered(step) | ordered(timestamp) -> double
//   run_index          kind | ordered(key) | ordered(value) | run id -> "" (secondary indexes:
//                      'p' params, 't' tags, 'm' latest metric values, 'a' attributes)
//   request_ids        kind:request_id -> id (idempotent Create)
//   log_writers        run id | writer -> ordered(last sequence applied) (exactly-once LogBatch;
//                      purged 7 days after the run ended: PurgeLogWriters)
// Every mutation is one WriteBatch. Run mutations are serialized per run by a striped lock; index
// entries are diffed against the previous version of the run.
//
// Limits (INVALID_ARGUMENT beyond them): keys 1..250 characters of [A-Za-z0-9_-./: ]; param values
// up to 6,000 bytes; tag values up to 8,000 bytes; names up to 500 bytes without control
// characters; per LogBatch at most 10,000 metric points, 1,000 params and 1,000 tags; metric
// values may be NaN or +/-inf.
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "mlops/metadata/v1/metadata.pb.h"
#include "services/common/db.h"

namespace mlops::metadata {

struct StoreLimits {
  static constexpr size_t kMaxKeyLength = 250;
  static constexpr size_t kMaxParamValueLength = 6000;
  static constexpr size_t kMaxTagValueLength = 8000;
  static constexpr size_t kMaxNameLength = 500;
  static constexpr size_t kMaxDescriptionLength = 64 * 1024;
  static constexpr int kMaxMetricsPerBatch = 10000;
  static constexpr int kMaxParamsPerBatch = 1000;
  static constexpr int kMaxTagsPerBatch = 1000;
  static constexpr int kMaxFilterLength = 16 * 1024;
  static constexpr size_t kMaxWriterLength = 64;
};

// How long after its run ended a LogBatch writer's last sequence is kept (replays after that may
// apply again: the spools of the SDK are replayed within minutes, not days).
inline constexpr int64_t kLogWriterWindowMs = int64_t{7} * 24 * 3600 * 1000;

struct LogResult {
  bool duplicate = false;  // writer and sequence said it was applied before: nothing changed
  int64_t points = 0;      // metric points stored
};

// Search planning limits (see run_search.cc). Tests shrink them to drive every strategy.
struct SearchTuning {
  size_t candidate_limit = 50000;    // a predicate matching more runs is checked per run
  size_t in_memory_sort_max = 2000;  // complete candidate sets up to this size are sorted in memory
  size_t work_budget = 200000;       // index entries plus runs examined by one call's walk
};

// The prefix of a metric point key that names its series (run id + ordered metric key), used as
// the memtable insert hint of the metrics column family: the points of one series arrive in step
// order, so each insert lands next to the previous one.
std::shared_ptr<const rocksdb::SliceTransform> MetricSeriesPrefixExtractor();

// Besides the codes each method names, every method returns DATA_LOSS for a stored record that
// does not parse (naming its column family and key) and the storage's own error when RocksDB
// fails (UNAVAILABLE; RESOURCE_EXHAUSTED when the disk is full).
class MetadataStore {
 public:
  // Opens (creating when missing) the store in directory `path`. The storage's error when RocksDB
  // cannot open it; FAILED_PRECONDITION for a database of a newer format.
  static absl::StatusOr<std::unique_ptr<MetadataStore>> Open(const std::string& path,
                                                             const Db::Options& options);

  const Db& db() const { return *db_; }
  Db& mutable_db() { return *db_; }
  void set_search_tuning(const SearchTuning& tuning) { tuning_ = tuning; }

  // ALREADY_EXISTS when the name is taken (also by a deleted experiment); INVALID_ARGUMENT for a
  // bad name or tag. With a request_id seen before, returns the experiment it created.
  absl::StatusOr<v1::Experiment> CreateExperiment(const v1::CreateExperimentRequest& request);
  // NOT_FOUND when absent; INVALID_ARGUMENT for a malformed id.
  absl::StatusOr<v1::Experiment> GetExperiment(std::string_view id) const;
  // NOT_FOUND.
  absl::StatusOr<v1::Experiment> GetExperimentByName(std::string_view name) const;
  // In creation order. INVALID_ARGUMENT for a bad page size or token.
  absl::StatusOr<v1::ListExperimentsResponse> ListExperiments(
      const v1::ListExperimentsRequest& request) const;
  // update_mask paths: name, description, tags. INVALID_ARGUMENT for other paths or an empty
  // mask, ALREADY_EXISTS for a taken name, NOT_FOUND.
  absl::StatusOr<v1::Experiment> UpdateExperiment(const v1::UpdateExperimentRequest& request);
  // Soft delete and restore. FAILED_PRECONDITION when already in that stage.
  absl::StatusOr<v1::Experiment> SetExperimentLifecycle(std::string_view id,
                                                        v1::LifecycleStage stage);

  // NOT_FOUND for an unknown experiment; FAILED_PRECONDITION when it is deleted.
  absl::StatusOr<v1::Run> CreateRun(const v1::CreateRunRequest& request);
  // NOT_FOUND; INVALID_ARGUMENT for a malformed id.
  absl::StatusOr<v1::Run> GetRun(std::string_view id) const;
  // update_mask paths: status, end_time_ms, name. INVALID_ARGUMENT (mask, values), NOT_FOUND,
  // FAILED_PRECONDITION when the run or its experiment is deleted.
  absl::StatusOr<v1::Run> UpdateRun(const v1::UpdateRunRequest& request);
  // Soft delete and restore. NOT_FOUND; FAILED_PRECONDITION when already in that stage, or when
  // restoring a run whose experiment is deleted.
  absl::StatusOr<v1::Run> SetRunLifecycle(std::string_view id, v1::LifecycleStage stage);

  // Atomic: either every param, tag and point is stored or none. FAILED_PRECONDITION when a param
  // already has a different value, when a new param is logged to a run in a terminal status, or
  // when the run or its experiment is deleted; NOT_FOUND for an unknown run; INVALID_ARGUMENT for
  // a bad key (empty metric keys included) or value, a malformed series, writer or sequence, or a
  // batch over the limits. With a writer, a sequence at or below the last one applied for it on
  // this run is a duplicate: nothing changes (the check and the write are one WriteBatch under
  // the run's lock, so a batch is applied at most once).
  absl::StatusOr<LogResult> LogBatch(const v1::LogBatchRequest& request);
  // The same for run `run_id`, whatever request.run_id() says.
  absl::StatusOr<LogResult> LogBatch(std::string_view run_id, const v1::LogBatchRequest& request);
  // Deletes the writer sequences of runs that ended more than kLogWriterWindowMs before `now_ms`
  // (or no longer exist). Returns how many entries it deleted.
  absl::StatusOr<uint64_t> PurgeLogWriters(int64_t now_ms);
  // NOT_FOUND when the run or the tag is absent; FAILED_PRECONDITION when the run or its
  // experiment is deleted.
  absl::Status DeleteTag(std::string_view run_id, std::string_view key);

  // Points in step order, then timestamp. A point logged again with the same step and timestamp
  // replaces the earlier one. NOT_FOUND for the run; INVALID_ARGUMENT for a malformed id, an empty
  // key, a bad page size or token.
  absl::StatusOr<v1::GetMetricHistoryResponse> GetMetricHistory(
      const v1::GetMetricHistoryRequest& request) const;

  // See filter.h for the language. INVALID_ARGUMENT for a malformed filter, order or token;
  // NOT_FOUND for an unknown experiment. May return fewer runs than page_size (even none) with a
  // next_page_token when it examined its work budget (200,000 index entries or runs) in one call.
  absl::StatusOr<v1::SearchRunsResponse> SearchRuns(const v1::SearchRunsRequest& request) const;

 private:
  explicit MetadataStore(std::unique_ptr<Db> db);

  std::mutex& RunLock(std::string_view run_id);
  absl::StatusOr<v1::Run> LoadRun(std::string_view id) const;
  absl::StatusOr<v1::Experiment> LoadExperiment(std::string_view id) const;
  // FAILED_PRECONDITION when the run, or its experiment, is deleted ("... before <action>").
  absl::Status CheckWritable(const v1::Run& run, std::string_view action) const;
  // Writes `run` (and the index diff from `old`, which is null for a new run) into `batch`.
  void PutRun(const v1::Run* old, const v1::Run& run, rocksdb::WriteBatch* batch) const;
  absl::StatusOr<std::optional<std::string>> LookupRequestId(std::string_view kind,
                                                             std::string_view request_id) const;

  // GetMetricHistory with max_points from the metric's tiles (metric_tiles.h): false when the
  // history is short enough (or too old to have tiles) to be read point by point.
  absl::StatusOr<bool> TiledHistory(const v1::GetMetricHistoryRequest& request, const v1::Run& run,
                                    v1::GetMetricHistoryResponse* response) const;

  std::unique_ptr<Db> db_;
  SearchTuning tuning_;
  rocksdb::ColumnFamilyHandle* experiments_;
  rocksdb::ColumnFamilyHandle* experiment_names_;
  rocksdb::ColumnFamilyHandle* runs_;
  rocksdb::ColumnFamilyHandle* metrics_;
  rocksdb::ColumnFamilyHandle* tiles_;  // metric_tiles.h
  rocksdb::ColumnFamilyHandle* index_;
  rocksdb::ColumnFamilyHandle* request_ids_;
  rocksdb::ColumnFamilyHandle* log_writers_;

  std::mutex experiments_mu_;  // serializes experiment mutations (name uniqueness)
  std::mutex request_ids_mu_;  // serializes create-with-request-id
  std::array<std::mutex, 64> run_locks_;
};

}  // namespace mlops::metadata
