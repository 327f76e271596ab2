#include "services/metadata/metadata_store.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/names.h"
#include "services/common/page_token.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/metadata/metric_tiles.h"
#include "services/metadata/run_index_internal.h"

namespace mlops::metadata {
namespace {

constexpr char kExperimentsCf[] = "experiments";
constexpr char kExperimentNamesCf[] = "experiment_names";
constexpr char kRunsCf[] = "runs";
constexpr char kMetricsCf[] = "metrics";
constexpr char kMetricTilesCf[] = "metric_tiles";
constexpr char kRunIndexCf[] = "run_index";
constexpr char kRequestIdsCf[] = "request_ids";
constexpr char kLogWritersCf[] = "log_writers";

absl::Status ValidateId(std::string_view field, std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError(StrCat(field, ": required"));
  if (!IsValidId(id)) {
    return absl::InvalidArgumentError(
        StrCat(field, ": '", id.substr(0, 64), "' is not a valid id (32 hex characters)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateKey(std::string_view what, std::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError(StrCat(what, " key: must not be empty"));
  if (key.size() > StoreLimits::kMaxKeyLength) {
    return absl::InvalidArgumentError(StrCat(what, " key '", key.substr(0, 40),
                                             "...': longer than ", StoreLimits::kMaxKeyLength,
                                             " characters"));
  }
  for (char c : key) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == '/' || c == ':' || c == ' ';
    if (!ok) {
      return absl::InvalidArgumentError(
          StrCat(what, " key '", key, "': only letters, digits and _ - . / : space allowed"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateName(std::string_view what, std::string_view name, bool required) {
  if (name.empty()) {
    return required ? absl::InvalidArgumentError(StrCat(what, ": required")) : absl::OkStatus();
  }
  return ValidateName(NameKind::kDisplay, what, name);
}

absl::Status ValidateStringMap(std::string_view what,
                               const google::protobuf::Map<std::string, std::string>& map,
                               size_t max_value, int max_entries) {
  if (static_cast<int>(map.size()) > max_entries) {
    return absl::InvalidArgumentError(
        StrCat("too many ", what, "s: ", map.size(), " > ", max_entries));
  }
  for (const auto& [key, value] : map) {
    RETURN_IF_ERROR(ValidateKey(what, key));
    if (value.size() > max_value) {
      return absl::InvalidArgumentError(
          StrCat(what, " '", key, "': value longer than ", max_value, " bytes"));
    }
  }
  return absl::OkStatus();
}

// A LogBatch writer: 1..64 characters of [A-Za-z0-9._:-].
absl::Status ValidateWriter(const v1::LogBatchRequest& request) {
  const std::string& writer = request.writer();
  if (writer.empty()) {
    if (request.sequence() != 0) {
      return absl::InvalidArgumentError("sequence: set without a writer (give both or neither)");
    }
    return absl::OkStatus();
  }
  if (writer.size() > StoreLimits::kMaxWriterLength) {
    return absl::InvalidArgumentError(StrCat("writer '", writer.substr(0, 40), "...': longer than ",
                                             StoreLimits::kMaxWriterLength, " characters"));
  }
  for (char c : writer) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == ':';
    if (!ok) {
      return absl::InvalidArgumentError(
          "writer: only letters, digits and _ - . : allowed (e.g. a random id per process)");
    }
  }
  if (request.sequence() <= 0) {
    return absl::InvalidArgumentError(StrCat("sequence: must be above 0 with writer '", writer,
                                             "' (got ", request.sequence(), ")"));
  }
  return absl::OkStatus();
}

bool IsTerminal(v1::RunStatus status) {
  return status == v1::FINISHED || status == v1::FAILED || status == v1::KILLED;
}

// Encodes a metric point key: run id | ordered(key) | ordered(step) | ordered(timestamp).
std::string MetricPrefix(std::string_view run_id, std::string_view key) {
  std::string out(run_id);
  AppendOrderedString(&out, key);
  return out;
}

std::string EncodeDouble(double value) {
  std::string out(sizeof(double), '\0');
  std::memcpy(out.data(), &value, sizeof(double));
  return out;
}

double DecodeDouble(std::string_view bytes) {
  double value = 0;
  if (bytes.size() == sizeof(double)) std::memcpy(&value, bytes.data(), sizeof(double));
  return value;
}

// True when a point at (step, timestamp) supersedes `latest` as the latest point of its metric:
// a higher step, or the same step and a timestamp as late or later.
// A point's key is MetricPrefix | ordered(step) | ordered(timestamp): its step and timestamp.
void ParsePointKey(std::string_view key, size_t prefix_size, int64_t* step, int64_t* timestamp) {
  std::string_view rest = key.substr(prefix_size);
  ConsumeOrderedInt64(&rest, step);
  ConsumeOrderedInt64(&rest, timestamp);
}

// The key a scan of a metric's points from `step` on begins after (ScanPrefix's `after`): past
// every point of step - 1; empty for the lowest step.
std::string PointsFrom(std::string_view metric_prefix, int64_t step) {
  if (step == std::numeric_limits<int64_t>::min()) return "";
  std::string out(metric_prefix);
  AppendOrderedInt64(&out, step - 1);
  AppendOrderedInt64(&out, std::numeric_limits<int64_t>::max());
  return out;
}

// Counts one point into a metric's summary; NaN never becomes its min or max.
void FoldSummary(double value, v1::MetricSummary* summary) {
  summary->set_count(summary->count() + 1);
  if (std::isnan(value)) return;
  if (std::isnan(summary->min()) || value < summary->min()) summary->set_min(value);
  if (std::isnan(summary->max()) || value > summary->max()) summary->set_max(value);
}

bool Supersedes(int64_t step, int64_t timestamp, const v1::Metric& latest) {
  if (step != latest.step()) return step > latest.step();
  return timestamp >= latest.timestamp_ms();
}

// run id (32 bytes) + ordered metric key, through its 0x00 0x01 terminator.
class SeriesPrefix : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "mlops.MetricSeriesPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), End(key));
  }
  bool InDomain(const rocksdb::Slice& key) const override { return End(key) != 0; }

 private:
  // Length of the prefix, 0 when the key has none.
  static size_t End(const rocksdb::Slice& key) {
    for (size_t i = internal::kIdLength; i + 1 < key.size(); ++i) {
      if (key[i] != '\0') continue;
      if (key[i + 1] == '\x01') return i + 2;
      ++i;  // an escaped 0x00 0xff inside the key
    }
    return 0;
  }
};

}  // namespace

std::shared_ptr<const rocksdb::SliceTransform> MetricSeriesPrefixExtractor() {
  static const auto extractor = std::make_shared<SeriesPrefix>();
  return extractor;
}

absl::StatusOr<std::unique_ptr<MetadataStore>> MetadataStore::Open(const std::string& path,
                                                                   const Db::Options& options) {
  // On-disk formats: 1 (issue 15) records the format; 2 adds the metric_tiles column family,
  // filled as metrics are logged (a metric logged before gets its tiles at its next batch).
  Db::Options db_options = Versioned(
      options, 2,
      {RecordFormatMigration(),
       {2, "metric tiles for downsampled histories (filled as metrics are logged)", nullptr}});
  db_options.insert_hint_prefixes.emplace_back(kMetricsCf, MetricSeriesPrefixExtractor());
  ASSIGN_OR_RETURN(auto db, Db::Open(path,
                                     {kExperimentsCf, kExperimentNamesCf, kRunsCf, kMetricsCf,
                                      kMetricTilesCf, kRunIndexCf, kRequestIdsCf, kLogWritersCf},
                                     db_options));
  return std::unique_ptr<MetadataStore>(new MetadataStore(std::move(db)));
}

MetadataStore::MetadataStore(std::unique_ptr<Db> db)
    : db_(std::move(db)),
      experiments_(db_->Cf(kExperimentsCf)),
      experiment_names_(db_->Cf(kExperimentNamesCf)),
      runs_(db_->Cf(kRunsCf)),
      metrics_(db_->Cf(kMetricsCf)),
      tiles_(db_->Cf(kMetricTilesCf)),
      index_(db_->Cf(kRunIndexCf)),
      request_ids_(db_->Cf(kRequestIdsCf)),
      log_writers_(db_->Cf(kLogWritersCf)) {}

std::mutex& MetadataStore::RunLock(std::string_view run_id) {
  return run_locks_[std::hash<std::string_view>()(run_id) % run_locks_.size()];
}

absl::StatusOr<std::optional<std::string>> MetadataStore::LookupRequestId(
    std::string_view kind, std::string_view request_id) const {
  if (request_id.empty()) return std::nullopt;
  if (request_id.size() > 300) {  // 128, plus the project the service adds (projects/P/)
    return absl::InvalidArgumentError("request_id: longer than 128 bytes");
  }
  return db_->Get(request_ids_, StrCat(kind, ":", request_id));
}

// ---- Experiments ----

absl::StatusOr<v1::Experiment> MetadataStore::LoadExperiment(std::string_view id) const {
  RETURN_IF_ERROR(ValidateId("experiment_id", id));
  ASSIGN_OR_RETURN(auto experiment, db_->GetProto<v1::Experiment>(experiments_, id));
  if (!experiment) return absl::NotFoundError(StrCat("experiment ", id, " not found"));
  return *std::move(experiment);
}

absl::StatusOr<v1::Experiment> MetadataStore::CreateExperiment(
    const v1::CreateExperimentRequest& request) {
  RETURN_IF_ERROR(ValidateName("name", request.name(), true));
  if (request.description().size() > StoreLimits::kMaxDescriptionLength) {
    return absl::InvalidArgumentError("description: longer than 64 KiB");
  }
  RETURN_IF_ERROR(ValidateStringMap("tag", request.tags(), StoreLimits::kMaxTagValueLength,
                                    StoreLimits::kMaxTagsPerBatch));
  std::lock_guard<std::mutex> lock(experiments_mu_);
  ASSIGN_OR_RETURN(auto previous, LookupRequestId("experiment", request.request_id()));
  if (previous) return LoadExperiment(*previous);
  ASSIGN_OR_RETURN(auto existing, db_->Get(experiment_names_, request.name()));
  if (existing) {
    return absl::AlreadyExistsError(
        StrCat("experiment name '", request.name(), "' is taken by experiment ", *existing));
  }
  v1::Experiment experiment;
  experiment.set_id(NewId());
  experiment.set_name(request.name());
  experiment.set_description(request.description());
  *experiment.mutable_tags() = request.tags();
  experiment.set_lifecycle_stage(v1::ACTIVE);
  experiment.set_create_time_ms(NowMs());
  experiment.set_update_time_ms(experiment.create_time_ms());
  rocksdb::WriteBatch batch;
  batch.Put(experiments_, experiment.id(), experiment.SerializeAsString());
  batch.Put(experiment_names_, experiment.name(), experiment.id());
  if (!request.request_id().empty()) {
    batch.Put(request_ids_, StrCat("experiment:", request.request_id()), experiment.id());
  }
  RETURN_IF_ERROR(db_->Write(&batch));
  return experiment;
}

absl::StatusOr<v1::Experiment> MetadataStore::GetExperiment(std::string_view id) const {
  return LoadExperiment(id);
}

absl::StatusOr<v1::Experiment> MetadataStore::GetExperimentByName(std::string_view name) const {
  RETURN_IF_ERROR(ValidateName("name", name, true));
  ASSIGN_OR_RETURN(auto id, db_->Get(experiment_names_, name));
  if (!id) return absl::NotFoundError(StrCat("experiment '", name, "' not found"));
  return LoadExperiment(*id);
}

absl::StatusOr<v1::ListExperimentsResponse> MetadataStore::ListExperiments(
    const v1::ListExperimentsRequest& request) const {
  ASSIGN_OR_RETURN(
      Pager pager,
      Pager::Start(
          db_->page_token_key(), request.page_size(), 100, 1000, request.page_token(),
          Fingerprint({"experiments", v1::ViewType_Name(request.view()), request.project()})));
  // Names carry the project (docs/api.md, "Projects"): empty is default, "*" every project.
  const std::string_view project =
      request.project().empty() ? kDefaultProject : std::string_view(request.project());
  v1::ListExperimentsResponse response;
  RETURN_IF_ERROR(db_->ScanProto<v1::Experiment>(
      experiments_, "", pager.after(), [&](std::string_view key, v1::Experiment& experiment) {
        bool deleted = experiment.lifecycle_stage() == v1::DELETED;
        bool wanted =
            request.view() == v1::ALL || (request.view() == v1::DELETED_ONLY ? deleted : !deleted);
        if (project != kEveryProject && ProjectOf(experiment.name()) != project) wanted = false;
        if (!wanted) {
          pager.Pass(key);
          return true;
        }
        if (!pager.Take(key)) return false;
        *response.add_experiments() = std::move(experiment);
        return true;
      }));
  response.set_next_page_token(pager.NextToken());
  return response;
}

absl::StatusOr<v1::Experiment> MetadataStore::UpdateExperiment(
    const v1::UpdateExperimentRequest& request) {
  const v1::Experiment& update = request.experiment();
  if (request.update_mask().paths_size() == 0) {
    return absl::InvalidArgumentError(
        "update_mask: list the fields to update (name, description, "
        "tags)");
  }
  std::lock_guard<std::mutex> lock(experiments_mu_);
  ASSIGN_OR_RETURN(v1::Experiment experiment, LoadExperiment(update.id()));
  rocksdb::WriteBatch batch;
  for (const std::string& path : request.update_mask().paths()) {
    if (path == "name") {
      RETURN_IF_ERROR(ValidateName("name", update.name(), true));
      if (update.name() == experiment.name()) continue;
      ASSIGN_OR_RETURN(auto existing, db_->Get(experiment_names_, update.name()));
      if (existing) {
        return absl::AlreadyExistsError(
            StrCat("experiment name '", update.name(), "' is taken by experiment ", *existing));
      }
      batch.Delete(experiment_names_, experiment.name());
      batch.Put(experiment_names_, update.name(), experiment.id());
      experiment.set_name(update.name());
    } else if (path == "description") {
      if (update.description().size() > StoreLimits::kMaxDescriptionLength) {
        return absl::InvalidArgumentError("description: longer than 64 KiB");
      }
      experiment.set_description(update.description());
    } else if (path == "tags") {
      RETURN_IF_ERROR(ValidateStringMap("tag", update.tags(), StoreLimits::kMaxTagValueLength,
                                        StoreLimits::kMaxTagsPerBatch));
      *experiment.mutable_tags() = update.tags();
    } else {
      return absl::InvalidArgumentError(
          StrCat("update_mask: '", path, "' cannot be updated (name, description, tags can)"));
    }
  }
  experiment.set_update_time_ms(NowMs());
  batch.Put(experiments_, experiment.id(), experiment.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  return experiment;
}

absl::StatusOr<v1::Experiment> MetadataStore::SetExperimentLifecycle(std::string_view id,
                                                                     v1::LifecycleStage stage) {
  std::lock_guard<std::mutex> lock(experiments_mu_);
  ASSIGN_OR_RETURN(v1::Experiment experiment, LoadExperiment(id));
  if (experiment.lifecycle_stage() == stage) {
    return absl::FailedPreconditionError(
        StrCat("experiment ", id, " is already ", v1::LifecycleStage_Name(stage)));
  }
  experiment.set_lifecycle_stage(stage);
  experiment.set_update_time_ms(NowMs());
  rocksdb::WriteBatch batch;
  batch.Put(experiments_, experiment.id(), experiment.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  return experiment;
}

// ---- Runs ----

absl::StatusOr<v1::Run> MetadataStore::LoadRun(std::string_view id) const {
  RETURN_IF_ERROR(ValidateId("run_id", id));
  ASSIGN_OR_RETURN(auto run, db_->GetProto<v1::Run>(runs_, id));
  if (!run) return absl::NotFoundError(StrCat("run ", id, " not found"));
  return *std::move(run);
}

void MetadataStore::PutRun(const v1::Run* old, const v1::Run& run,
                           rocksdb::WriteBatch* batch) const {
  batch->Put(runs_, run.id(), run.SerializeAsString());
  std::vector<std::string> now = internal::IndexKeys(run);
  std::vector<std::string> before;
  if (old != nullptr) before = internal::IndexKeys(*old);
  std::vector<std::string> removed, added;
  std::set_difference(before.begin(), before.end(), now.begin(), now.end(),
                      std::back_inserter(removed));
  std::set_difference(now.begin(), now.end(), before.begin(), before.end(),
                      std::back_inserter(added));
  for (const auto& key : removed) batch->Delete(index_, key);
  for (const auto& key : added) batch->Put(index_, key, "");
}

absl::StatusOr<v1::Run> MetadataStore::CreateRun(const v1::CreateRunRequest& request) {
  RETURN_IF_ERROR(ValidateName("name", request.name(), false));
  RETURN_IF_ERROR(ValidateStringMap("param", request.params(), StoreLimits::kMaxParamValueLength,
                                    StoreLimits::kMaxParamsPerBatch));
  RETURN_IF_ERROR(ValidateStringMap("tag", request.tags(), StoreLimits::kMaxTagValueLength,
                                    StoreLimits::kMaxTagsPerBatch));
  if (request.source().ByteSizeLong() > (1 << 20)) {
    return absl::InvalidArgumentError("source: larger than 1 MiB");
  }
  ASSIGN_OR_RETURN(v1::Experiment experiment, LoadExperiment(request.experiment_id()));
  if (experiment.lifecycle_stage() == v1::DELETED) {
    return absl::FailedPreconditionError(
        StrCat("experiment ", experiment.id(), " is deleted; restore it first"));
  }
  std::unique_lock<std::mutex> request_lock(request_ids_mu_, std::defer_lock);
  if (!request.request_id().empty()) {
    request_lock.lock();
    ASSIGN_OR_RETURN(auto previous, LookupRequestId("run", request.request_id()));
    if (previous) return LoadRun(*previous);
  }
  v1::Run run;
  run.set_id(NewId());
  run.set_experiment_id(experiment.id());
  run.set_name(request.name().empty() ? "run-" + run.id().substr(24) : request.name());
  run.set_status(v1::RUNNING);
  run.set_start_time_ms(request.start_time_ms() != 0 ? request.start_time_ms() : NowMs());
  run.set_lifecycle_stage(v1::ACTIVE);
  *run.mutable_params() = request.params();
  *run.mutable_tags() = request.tags();
  *run.mutable_source() = request.source();
  run.set_create_time_ms(NowMs());
  run.set_update_time_ms(run.create_time_ms());
  rocksdb::WriteBatch batch;
  PutRun(nullptr, run, &batch);
  if (!request.request_id().empty()) {
    batch.Put(request_ids_, StrCat("run:", request.request_id()), run.id());
  }
  RETURN_IF_ERROR(db_->Write(&batch));
  return run;
}

absl::StatusOr<v1::Run> MetadataStore::GetRun(std::string_view id) const { return LoadRun(id); }

absl::StatusOr<v1::Run> MetadataStore::UpdateRun(const v1::UpdateRunRequest& request) {
  const v1::Run& update = request.run();
  if (request.update_mask().paths_size() == 0) {
    return absl::InvalidArgumentError(
        "update_mask: list the fields to update (status, end_time_ms, name)");
  }
  RETURN_IF_ERROR(ValidateId("run.id", update.id()));
  std::lock_guard<std::mutex> lock(RunLock(update.id()));
  ASSIGN_OR_RETURN(v1::Run run, LoadRun(update.id()));
  RETURN_IF_ERROR(CheckWritable(run, "updating it"));
  const v1::Run old = run;
  bool end_time_set = false;
  for (const std::string& path : request.update_mask().paths()) {
    if (path == "status") {
      if (update.status() == v1::RUN_STATUS_UNSPECIFIED ||
          !v1::RunStatus_IsValid(update.status())) {
        return absl::InvalidArgumentError(
            "run.status: must be RUNNING, FINISHED, FAILED or KILLED");
      }
      run.set_status(update.status());
    } else if (path == "end_time_ms") {
      if (update.end_time_ms() < 0) {
        return absl::InvalidArgumentError("run.end_time_ms: must not be negative");
      }
      run.set_end_time_ms(update.end_time_ms());
      end_time_set = true;
    } else if (path == "name") {
      RETURN_IF_ERROR(ValidateName("run.name", update.name(), true));
      run.set_name(update.name());
    } else {
      return absl::InvalidArgumentError(
          StrCat("update_mask: '", path, "' cannot be updated (status, end_time_ms, name can)"));
    }
  }
  if (IsTerminal(run.status()) && !end_time_set && run.end_time_ms() == 0) {
    run.set_end_time_ms(NowMs());
  }
  if (run.status() == v1::RUNNING && !end_time_set) run.set_end_time_ms(0);
  run.set_update_time_ms(NowMs());
  rocksdb::WriteBatch batch;
  PutRun(&old, run, &batch);
  RETURN_IF_ERROR(db_->Write(&batch));
  return run;
}

absl::StatusOr<v1::Run> MetadataStore::SetRunLifecycle(std::string_view id,
                                                       v1::LifecycleStage stage) {
  RETURN_IF_ERROR(ValidateId("run_id", id));
  std::lock_guard<std::mutex> lock(RunLock(id));
  ASSIGN_OR_RETURN(v1::Run run, LoadRun(id));
  if (run.lifecycle_stage() == stage) {
    return absl::FailedPreconditionError(
        StrCat("run ", id, " is already ", v1::LifecycleStage_Name(stage)));
  }
  if (stage == v1::ACTIVE) {
    ASSIGN_OR_RETURN(v1::Experiment experiment, LoadExperiment(run.experiment_id()));
    if (experiment.lifecycle_stage() == v1::DELETED) {
      return absl::FailedPreconditionError(
          StrCat("run ", id, " is in experiment ", experiment.id(),
                 ", which is deleted; restore the experiment first"));
    }
  }
  const v1::Run old = run;
  run.set_lifecycle_stage(stage);
  run.set_update_time_ms(NowMs());
  rocksdb::WriteBatch batch;
  PutRun(&old, run, &batch);
  RETURN_IF_ERROR(db_->Write(&batch));
  return run;
}

absl::Status MetadataStore::CheckWritable(const v1::Run& run, std::string_view action) const {
  if (run.lifecycle_stage() == v1::DELETED) {
    return absl::FailedPreconditionError(
        StrCat("run ", run.id(), " is deleted; restore it before ", action));
  }
  ASSIGN_OR_RETURN(v1::Experiment experiment, LoadExperiment(run.experiment_id()));
  if (experiment.lifecycle_stage() == v1::DELETED) {
    return absl::FailedPreconditionError(StrCat("run ", run.id(), " is in experiment ",
                                                experiment.id(),
                                                ", which is deleted; restore the "
                                                "experiment before ",
                                                action));
  }
  return absl::OkStatus();
}

absl::StatusOr<LogResult> MetadataStore::LogBatch(const v1::LogBatchRequest& request) {
  return LogBatch(request.run_id(), request);
}

absl::StatusOr<LogResult> MetadataStore::LogBatch(std::string_view run_id,
                                                  const v1::LogBatchRequest& request) {
  RETURN_IF_ERROR(ValidateId("run_id", run_id));
  int64_t points = request.metrics_size();
  for (const v1::MetricSeries& series : request.series()) {
    RETURN_IF_ERROR(ValidateKey("series", series.key()));
    if ((series.steps_size() != 0 && series.steps_size() != series.values_size()) ||
        (series.timestamps_ms_size() != 0 && series.timestamps_ms_size() != series.values_size())) {
      return absl::InvalidArgumentError(
          StrCat("series '", series.key(), "': ", series.values_size(), " values, ",
                 series.steps_size(), " steps and ", series.timestamps_ms_size(),
                 " timestamps; steps and timestamps_ms must be empty or one per value"));
    }
    points += series.values_size();
  }
  if (points > StoreLimits::kMaxMetricsPerBatch) {
    return absl::InvalidArgumentError(StrCat("metrics: ", points, " points in one batch; at most ",
                                             StoreLimits::kMaxMetricsPerBatch));
  }
  RETURN_IF_ERROR(ValidateWriter(request));
  RETURN_IF_ERROR(ValidateStringMap("param", request.params(), StoreLimits::kMaxParamValueLength,
                                    StoreLimits::kMaxParamsPerBatch));
  RETURN_IF_ERROR(ValidateStringMap("tag", request.tags(), StoreLimits::kMaxTagValueLength,
                                    StoreLimits::kMaxTagsPerBatch));
  // Validate every metric key once per distinct key (batches repeat a few keys many times).
  const std::string* last_key = nullptr;
  for (const v1::Metric& metric : request.metrics()) {
    if (last_key != nullptr && metric.key() == *last_key) continue;
    RETURN_IF_ERROR(ValidateKey("metric", metric.key()));
    last_key = &metric.key();
  }
  int64_t now = NowMs();

  std::lock_guard<std::mutex> lock(RunLock(run_id));
  ASSIGN_OR_RETURN(v1::Run run, LoadRun(run_id));
  RETURN_IF_ERROR(CheckWritable(run, "logging"));
  std::string writer_key;
  if (!request.writer().empty()) {
    writer_key = StrCat(run_id, request.writer());
    ASSIGN_OR_RETURN(std::optional<std::string> last, db_->Get(log_writers_, writer_key));
    if (last.has_value()) {
      std::string_view rest = *last;
      int64_t applied = 0;
      if (!ConsumeOrderedInt64(&rest, &applied)) {
        return absl::DataLossError(StrCat("log_writers: record of ", writer_key, " is corrupt"));
      }
      if (request.sequence() <= applied) return LogResult{.duplicate = true};
    }
  }
  const v1::Run old = run;
  for (const auto& [key, value] : request.params()) {
    auto it = run.params().find(key);
    if (it != run.params().end()) {
      if (it->second != value) {
        return absl::FailedPreconditionError(
            StrCat("param '", key, "' of run ", run.id(), " is already '", it->second,
                   "'; params are immutable (tried '", value, "')"));
      }
      continue;
    }
    if (IsTerminal(run.status())) {
      return absl::FailedPreconditionError(
          StrCat("run ", run.id(), " is ", v1::RunStatus_Name(run.status()),
                 "; a finished run's params are immutable (tried to add '", key, "')"));
    }
    (*run.mutable_params())[key] = value;
  }
  for (const auto& [key, value] : request.tags()) (*run.mutable_tags())[key] = value;

  rocksdb::WriteBatch batch;
  if (points > 0) {
    // key -> index into run.latest_metrics (owning keys: the messages are overwritten below)
    std::map<std::string, int, std::less<>> latest_index;
    for (int i = 0; i < run.latest_metrics_size(); ++i) {
      latest_index[run.latest_metrics(i).key()] = i;
    }
    // key -> index into run.metric_summaries
    std::map<std::string, int, std::less<>> summary_index;
    for (int i = 0; i < run.metric_summaries_size(); ++i) {
      summary_index[run.metric_summaries(i).key()] = i;
    }
    absl::Status backfilled;
    std::map<std::string, internal::TileBuilder, std::less<>> tiles;  // metric key -> its tiles
    internal::TileBuilder* builder = nullptr;
    std::string key_buffer;
    std::string prefix;
    std::string_view prefix_key;
    bool have_prefix = false;
    auto add = [&](const std::string& key, double value, int64_t step, int64_t timestamp_ms) {
      if (!have_prefix || key != prefix_key) {
        prefix = MetricPrefix(run.id(), key);
        prefix_key = key;
        have_prefix = true;
        builder = &tiles[key];
      }
      auto summary_it = summary_index.find(key);
      if (summary_it == summary_index.end()) {
        v1::MetricSummary* created = run.add_metric_summaries();
        created->set_key(key);
        created->set_min(std::numeric_limits<double>::quiet_NaN());
        created->set_max(std::numeric_limits<double>::quiet_NaN());
        summary_it = summary_index.emplace(key, run.metric_summaries_size() - 1).first;
        if (latest_index.count(key) != 0) {
          // A metric logged before runs kept summaries (an older data dir): its stored points
          // first (this batch's are not written yet).
          backfilled.Update(db_->ScanPrefix(
              metrics_, prefix, "", [&](std::string_view stored, std::string_view v) {
                int64_t old_step = 0, old_timestamp = 0;
                ParsePointKey(stored, prefix.size(), &old_step, &old_timestamp);
                FoldSummary(DecodeDouble(v), run.mutable_metric_summaries(summary_it->second));
                builder->Add(old_step, old_timestamp, DecodeDouble(v));
                return true;
              }));
        }
      }
      FoldSummary(value, run.mutable_metric_summaries(summary_it->second));
      int64_t timestamp = timestamp_ms != 0 ? timestamp_ms : now;
      builder->Add(step, timestamp, value);
      key_buffer = prefix;
      AppendOrderedInt64(&key_buffer, step);
      AppendOrderedInt64(&key_buffer, timestamp);
      batch.Put(metrics_, key_buffer, EncodeDouble(value));

      auto it = latest_index.find(key);
      if (it == latest_index.end()) {
        v1::Metric* added = run.add_latest_metrics();
        added->set_key(key);
        added->set_value(value);
        added->set_step(step);
        added->set_timestamp_ms(timestamp);
        latest_index.emplace(key, run.latest_metrics_size() - 1);
      } else if (Supersedes(step, timestamp, run.latest_metrics(it->second))) {
        v1::Metric* latest = run.mutable_latest_metrics(it->second);
        latest->set_value(value);
        latest->set_step(step);
        latest->set_timestamp_ms(timestamp);
      }
    };
    for (const v1::Metric& metric : request.metrics()) {
      add(metric.key(), metric.value(), metric.step(), metric.timestamp_ms());
    }
    for (const v1::MetricSeries& series : request.series()) {
      for (int i = 0; i < series.values_size(); ++i) {
        add(series.key(), series.values(i), series.steps_size() != 0 ? series.steps(i) : 0,
            series.timestamps_ms_size() != 0 ? series.timestamps_ms(i) : 0);
      }
    }
    RETURN_IF_ERROR(backfilled);
    // Each touched tile merged into the stored one, every level, in the same write (the run's
    // lock keeps another batch of this run from merging in between).
    for (const auto& [key, builder] : tiles) {
      std::string metric_prefix = MetricPrefix(run.id(), key);
      for (int level = 0; level < internal::kTileLevels; ++level) {
        for (auto& [block, tile] : builder.Level(level)) {
          std::string tile_key = internal::TileKey(metric_prefix, level, block);
          ASSIGN_OR_RETURN(std::optional<std::string> stored, db_->Get(tiles_, tile_key));
          internal::Tile merged;
          if (stored.has_value() && !internal::Tile::Decode(*stored, &merged)) {
            return absl::DataLossError(StrCat("metric_tiles: the tile of ", run.id(), " '", key,
                                              "' level ", level, " is corrupt"));
          }
          merged.Merge(tile);
          batch.Put(tiles_, tile_key, merged.Encode());
        }
      }
    }
  }
  if (!writer_key.empty()) {
    std::string sequence;
    AppendOrderedInt64(&sequence, request.sequence());
    batch.Put(log_writers_, writer_key, sequence);
  }
  run.set_update_time_ms(now);
  PutRun(&old, run, &batch);
  RETURN_IF_ERROR(db_->Write(&batch));
  return LogResult{.duplicate = false, .points = points};
}

absl::StatusOr<uint64_t> MetadataStore::PurgeLogWriters(int64_t now_ms) {
  // Entries are keyed run id (32 bytes) | writer: one run at a time, its record read once.
  std::vector<std::string> stale;
  std::string current_run;
  bool current_stale = false;
  RETURN_IF_ERROR(
      db_->ScanPrefix(log_writers_, "", "", [&](std::string_view key, std::string_view) {
        if (key.size() <= internal::kIdLength) {
          stale.emplace_back(key);  // not a key this store writes
          return true;
        }
        std::string_view run_id = key.substr(0, internal::kIdLength);
        if (run_id != current_run) {
          current_run = std::string(run_id);
          absl::StatusOr<v1::Run> run = LoadRun(current_run);
          current_stale = run.status().code() == absl::StatusCode::kNotFound ||
                          (run.ok() && IsTerminal(run->status()) &&
                           run->end_time_ms() + kLogWriterWindowMs < now_ms);
        }
        if (current_stale) stale.emplace_back(key);
        return true;
      }));
  rocksdb::WriteBatch batch;
  for (const std::string& key : stale) batch.Delete(log_writers_, key);
  if (!stale.empty()) RETURN_IF_ERROR(db_->Write(&batch));
  return stale.size();
}

absl::Status MetadataStore::DeleteTag(std::string_view run_id, std::string_view key) {
  RETURN_IF_ERROR(ValidateId("run_id", run_id));
  RETURN_IF_ERROR(ValidateKey("tag", key));
  std::lock_guard<std::mutex> lock(RunLock(run_id));
  ASSIGN_OR_RETURN(v1::Run run, LoadRun(run_id));
  RETURN_IF_ERROR(CheckWritable(run, "deleting its tags"));
  const v1::Run old = run;
  if (run.mutable_tags()->erase(std::string(key)) == 0) {
    return absl::NotFoundError(StrCat("run ", run_id, " has no tag '", key, "'"));
  }
  run.set_update_time_ms(NowMs());
  rocksdb::WriteBatch batch;
  PutRun(&old, run, &batch);
  return db_->Write(&batch);
}

absl::StatusOr<bool> MetadataStore::TiledHistory(const v1::GetMetricHistoryRequest& request,
                                                 const v1::Run& run,
                                                 v1::GetMetricHistoryResponse* response) const {
  // Tiles pay off once a history has many more points than asked for; shorter ones (and metrics
  // logged before tiles existed, which have no summary yet) are read point by point.
  constexpr int64_t kTilesOver = 64;
  const int64_t max_points = request.max_points();
  const v1::MetricSummary* summary = nullptr;
  for (const v1::MetricSummary& s : run.metric_summaries()) {
    if (s.key() == request.key()) summary = &s;
  }
  if (summary == nullptr || summary->count() <= kTilesOver * max_points) return false;

  const std::string prefix = MetricPrefix(request.run_id(), request.key());
  auto step_of = [&prefix](std::string_view key) {
    int64_t step = 0, timestamp = 0;
    ParsePointKey(key, prefix.size(), &step, &timestamp);
    return step;
  };
  // The steps drawn: the range asked for, narrowed to the first and last points in it.
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const int64_t want_lo = request.has_min_step() ? request.min_step() : kMin;
  const int64_t want_hi = request.has_max_step() ? request.max_step() : kMax;
  const std::string after = PointsFrom(prefix, want_lo);
  std::string before;
  if (want_hi < kMax) {
    before = prefix;
    AppendOrderedInt64(&before, want_hi + 1);
  }
  bool any = false;
  int64_t lo = 0, hi = 0;
  RETURN_IF_ERROR(
      db_->ScanPrefix(metrics_, prefix, after, [&](std::string_view key, std::string_view) {
        lo = step_of(key);
        any = lo <= want_hi;
        return false;
      }));
  if (!any) return true;  // no point in the range: an empty answer
  RETURN_IF_ERROR(
      db_->ScanPrefixReverse(metrics_, prefix, before, [&](std::string_view key, std::string_view) {
        hi = step_of(key);
        return false;
      }));

  // The finest level with at most 32 blocks per bucket over [lo, hi] (at most 32,768 tile reads);
  // its tiles are merged, adjacent ones together, into at most (max_points - 1) / 2 buckets, each
  // shown by its minimum and maximum. A range of fewer finest blocks than buckets is read point
  // by point instead (its buckets would be coarser than asked for).
  const int64_t buckets = (max_points - 1) / 2;
  if (internal::TileBlock(hi, 0) - internal::TileBlock(lo, 0) + 1 < buckets) return false;
  const int64_t max_reads = std::min<int64_t>(32 * buckets, 32768);
  int level = 0;
  while (level + 1 < internal::kTileLevels &&
         internal::TileBlock(hi, level) - internal::TileBlock(lo, level) + 1 > max_reads) {
    ++level;
  }
  if (internal::TileBlock(hi, level) - internal::TileBlock(lo, level) + 1 > max_reads) {
    return false;  // too few points asked for even the coarsest tiles
  }
  const int64_t first = internal::TileBlock(lo, level), last = internal::TileBlock(hi, level);
  const std::string level_prefix = internal::TileLevelPrefix(prefix, level);
  std::string start;
  if (first > kMin) start = internal::TileKey(prefix, level, first - 1);
  std::vector<std::pair<int64_t, internal::Tile>> tiles;
  absl::Status corrupt;
  RETURN_IF_ERROR(db_->ScanPrefix(
      tiles_, level_prefix, start, [&](std::string_view key, std::string_view value) {
        std::string_view rest = key.substr(level_prefix.size());
        int64_t block = 0;
        ConsumeOrderedInt64(&rest, &block);
        if (block > last) return false;
        internal::Tile tile;
        if (!internal::Tile::Decode(value, &tile)) {
          corrupt = absl::DataLossError(StrCat("metric_tiles: a tile of run ", request.run_id(),
                                               " '", request.key(), "' is corrupt"));
          return false;
        }
        tiles.emplace_back(block, tile);
        return true;
      }));
  RETURN_IF_ERROR(corrupt);
  // A block the range cuts is summed again from its points inside the range (one at each end).
  auto exact = [&](internal::Tile* tile, int64_t from, int64_t to) -> absl::Status {
    *tile = internal::Tile();
    return db_->ScanPrefix(metrics_, prefix, PointsFrom(prefix, from),
                           [&](std::string_view key, std::string_view value) {
                             int64_t step = 0, timestamp = 0;
                             ParsePointKey(key, prefix.size(), &step, &timestamp);
                             if (step > to) return false;
                             tile->Add(step, timestamp, DecodeDouble(value));
                             return true;
                           });
  };
  const int shift = internal::TileShift(level);
  for (auto& [block, tile] : tiles) {
    // (|block| <= 2^(63 - shift): the product fits; shifted as unsigned to stay defined)
    int64_t block_lo = static_cast<int64_t>(static_cast<uint64_t>(block) << shift);
    int64_t block_hi = block_lo + ((int64_t{1} << shift) - 1);
    // Without a range, lo and hi are the first and last points: no block holds a point beyond.
    if ((block == first && request.has_min_step() && want_lo > block_lo) ||
        (block == last && request.has_max_step() && want_hi < block_hi)) {
      RETURN_IF_ERROR(exact(&tile, std::max(lo, block_lo), std::min(hi, block_hi)));
    }
  }
  int64_t total = 0;
  for (const auto& [block, tile] : tiles) total += tile.count;
  if (total <= kTilesOver * max_points) {
    return false;  // few enough to read point by point
  }
  // Adjacent tiles merged into the buckets: `per` blocks each.
  const int64_t per = (last - first + buckets) / buckets;
  std::vector<std::pair<int64_t, internal::Tile>> merged;
  for (const auto& [block, tile] : tiles) {
    int64_t bucket = (block - first) / per;
    if (merged.empty() || merged.back().first != bucket)
      merged.emplace_back(bucket, tile);
    else
      merged.back().second.Merge(tile);
  }
  tiles.swap(merged);

  auto add = [&](int64_t step, int64_t timestamp, double value) {
    v1::Metric* metric = response->add_metrics();
    metric->set_key(request.key());
    metric->set_step(step);
    metric->set_timestamp_ms(timestamp);
    metric->set_value(value);
  };
  const internal::Tile* final_tile = nullptr;
  for (const auto& [block, tile] : tiles) {
    if (tile.count == 0) continue;
    final_tile = &tile;
    if (std::isnan(tile.min)) {  // every point NaN: the bucket shows as its last point
      add(tile.last_step, tile.last_timestamp, tile.last_value);
      continue;
    }
    bool min_first = std::make_pair(tile.min_step, tile.min_timestamp) <=
                     std::make_pair(tile.max_step, tile.max_timestamp);
    if (min_first) {
      add(tile.min_step, tile.min_timestamp, tile.min);
      if (tile.max_step != tile.min_step || tile.max_timestamp != tile.min_timestamp) {
        add(tile.max_step, tile.max_timestamp, tile.max);
      }
    } else {
      add(tile.max_step, tile.max_timestamp, tile.max);
      add(tile.min_step, tile.min_timestamp, tile.min);
    }
  }
  // Always the last point.
  if (final_tile != nullptr) {
    const v1::Metric& shown = response->metrics(response->metrics_size() - 1);
    if (shown.step() != final_tile->last_step ||
        shown.timestamp_ms() != final_tile->last_timestamp) {
      add(final_tile->last_step, final_tile->last_timestamp, final_tile->last_value);
    }
  }
  response->set_total_points(total);
  return true;
}

absl::StatusOr<v1::GetMetricHistoryResponse> MetadataStore::GetMetricHistory(
    const v1::GetMetricHistoryRequest& request) const {
  RETURN_IF_ERROR(ValidateId("run_id", request.run_id()));
  RETURN_IF_ERROR(ValidateKey("metric", request.key()));
  if (request.max_points() < 0 || request.max_points() == 1 || request.max_points() == 2) {
    return absl::InvalidArgumentError("max_points: must be 0 (no downsampling) or at least 3");
  }
  RETURN_IF_ERROR(NormalizePageSize(request.page_size(), 10000, 100000).status());
  ASSIGN_OR_RETURN(std::optional<v1::Run> run, db_->GetProto<v1::Run>(runs_, request.run_id()));
  if (!run) return absl::NotFoundError(StrCat("run ", request.run_id(), " not found"));

  if (request.has_min_step() && request.has_max_step() && request.min_step() > request.max_step()) {
    return absl::InvalidArgumentError(
        StrCat("min_step ", request.min_step(), " is greater than max_step ", request.max_step()));
  }

  std::string prefix = MetricPrefix(request.run_id(), request.key());
  // The scan of a step range begins after every point of step min_step - 1 and stops at the first
  // point beyond max_step (keys are ordered by step, then timestamp).
  const std::string range_start =
      request.has_min_step() ? PointsFrom(prefix, request.min_step()) : std::string();
  struct Point {
    int64_t step = 0, timestamp = 0;
    double value = 0;
  };
  // False when the point is beyond max_step (the scan stops there).
  auto decode = [&prefix, &request](std::string_view key, std::string_view value, Point* point) {
    ParsePointKey(key, prefix.size(), &point->step, &point->timestamp);
    point->value = DecodeDouble(value);
    return !request.has_max_step() || point->step <= request.max_step();
  };
  auto add = [&request](const Point& point, v1::GetMetricHistoryResponse* response) {
    v1::Metric* metric = response->add_metrics();
    metric->set_key(request.key());
    metric->set_step(point.step);
    metric->set_timestamp_ms(point.timestamp);
    metric->set_value(point.value);
  };
  v1::GetMetricHistoryResponse response;
  if (request.max_points() > 0) {
    ASSIGN_OR_RETURN(bool tiled, TiledHistory(request, *run, &response));
    if (tiled) return response;
    std::vector<Point> points;
    RETURN_IF_ERROR(db_->ScanPrefix(metrics_, prefix, range_start,
                                    [&](std::string_view key, std::string_view value) {
                                      Point point;
                                      if (!decode(key, value, &point)) return false;
                                      points.push_back(point);
                                      return true;
                                    }));
    response.set_total_points(static_cast<int64_t>(points.size()));
    size_t max_points = static_cast<size_t>(request.max_points());
    if (points.size() <= max_points) {
      for (const Point& point : points) add(point, &response);
      return response;
    }
    // Equal-count buckets; from each the minimum and maximum (in step order), plus the last point.
    size_t buckets = (max_points - 1) / 2;
    size_t n = points.size() - 1;  // the last point is kept separately
    for (size_t b = 0; b < buckets; ++b) {
      size_t begin = b * n / buckets, end = (b + 1) * n / buckets;
      if (begin >= end) continue;
      size_t lo = begin, hi = begin;
      for (size_t i = begin; i < end; ++i) {
        // NaN never wins min or max; keep it only if the whole bucket is NaN.
        if (points[i].value < points[lo].value || std::isnan(points[lo].value)) lo = i;
        if (points[i].value > points[hi].value || std::isnan(points[hi].value)) hi = i;
      }
      add(points[std::min(lo, hi)], &response);
      if (lo != hi) add(points[std::max(lo, hi)], &response);
    }
    add(points.back(), &response);
    return response;
  }
  ASSIGN_OR_RETURN(
      Pager pager,
      Pager::Start(db_->page_token_key(), request.page_size(), 10000, 100000, request.page_token(),
                   Fingerprint({"history", request.run_id(), request.key(),
                                request.has_min_step() ? StrCat(request.min_step()) : "",
                                request.has_max_step() ? StrCat(request.max_step()) : ""}),
                   prefix));
  std::string_view after = pager.after().empty() ? std::string_view(range_start) : pager.after();
  RETURN_IF_ERROR(
      db_->ScanPrefix(metrics_, prefix, after, [&](std::string_view key, std::string_view value) {
        Point point;
        if (!decode(key, value, &point)) return false;
        if (!pager.Take(key)) return false;
        add(point, &response);
        return true;
      }));
  response.set_next_page_token(pager.NextToken());
  return response;
}

}  // namespace mlops::metadata
