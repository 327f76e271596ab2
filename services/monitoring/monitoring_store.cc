#include "services/monitoring/monitoring_store.h"

#include <algorithm>
#include <cstring>

#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/names.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/monitoring/monitoring_store_internal.h"

namespace mlops::monitoring {

std::string VersionKey(const std::string& name, int64_t version) {
  std::string key = name + '\0';
  AppendBigEndian64(&key, static_cast<uint64_t>(version));
  return key;
}

absl::StatusOr<std::string> StoredName(std::string_view field, std::string_view value) {
  ASSIGN_OR_RETURN(ScopedName scoped, ParseScoped(field, value));
  RETURN_IF_ERROR(ValidateName(NameKind::kIdentifier, field, scoped.name));
  return Qualify(scoped.project, scoped.name);
}

absl::Status InProject(std::string_view field, std::string_view value, std::string_view owner,
                       std::string_view project) {
  if (value.empty() || ProjectOf(value) == project) return absl::OkStatus();
  return absl::InvalidArgumentError(StrCat(field, " ", value.substr(0, 200), " is in project ",
                                           ProjectOf(value), ", ", owner, " in project ", project,
                                           ": one request acts in one project"));
}

std::string_view InProjectId(std::string_view id) {
  return id.starts_with(kProjectsPrefix) ? id.substr(id.find('/', kProjectsPrefix.size()) + 1) : id;
}

namespace {

// A list request's project: "" is default, "*" every project.
absl::StatusOr<std::string> ListedProject(const std::string& project) {
  if (project.empty()) return std::string(kDefaultProject);
  if (project != kEveryProject) RETURN_IF_ERROR(ValidateProject(project));
  return project;
}

bool Listed(std::string_view project, std::string_view name) {
  return project == kEveryProject || ProjectOf(name) == project;
}

// A stored prediction: the predicted value and when it expires.
std::string EncodePrediction(double prediction, int64_t expires) {
  std::string value(sizeof(prediction) + sizeof(expires), '\0');
  std::memcpy(value.data(), &prediction, sizeof(prediction));
  std::memcpy(value.data() + sizeof(prediction), &expires, sizeof(expires));
  return value;
}

// False for a value of another size (not a prediction). Values of one double (the first format)
// never expire.
bool DecodePrediction(std::string_view value, double* prediction, int64_t* expires) {
  if (value.size() != sizeof(double) && value.size() != 2 * sizeof(double)) return false;
  std::memcpy(prediction, value.data(), sizeof(*prediction));
  *expires = 0;
  if (value.size() == 2 * sizeof(double)) {
    std::memcpy(expires, value.data() + sizeof(*prediction), sizeof(*expires));
  }
  return true;
}

}  // namespace

const std::vector<std::string>& MonitoringColumnFamilies() {
  static const std::vector<std::string> names = {
      kProfilesCf, kMonitorsCf, kWindowsCf,     kReportsCf,     kAlertsCf,       kPredictionsCf,
      kExpiryCf,   kSchemasCf,  kValidationsCf, kEvaluationsCf, kEvaluationIdsCf};
  return names;
}

struct MonitoringStore::Change {
  struct Op {
    rocksdb::ColumnFamilyHandle* cf;
    std::string key;
    std::optional<std::string> value;  // none: delete
  };
  std::vector<Op> ops;  // in order: a later op on a key wins
  std::vector<RetrainJob> retrains;
  bool drop_expired = false;  // expired predictions of the state go first

  void Put(rocksdb::ColumnFamilyHandle* cf, std::string key, std::string value) {
    ops.push_back({cf, std::move(key), std::move(value)});
  }
  void Delete(rocksdb::ColumnFamilyHandle* cf, std::string key) {
    ops.push_back({cf, std::move(key), std::nullopt});
  }
};

MonitoringStore::MonitoringStore(Db* db, prometheus::Registry& registry,
                                 std::unique_ptr<DatasetSource> datasets,
                                 std::unique_ptr<ModelResolver> models,
                                 std::unique_ptr<RetrainTrigger> retrain, Options options)
    : db_(db),
      metrics_(registry),
      datasets_(std::move(datasets)),
      models_(std::move(models)),
      retrain_(std::move(retrain)),
      options_(options),
      profiles_cf_(db->Cf(kProfilesCf)),
      monitors_cf_(db->Cf(kMonitorsCf)),
      windows_cf_(db->Cf(kWindowsCf)),
      reports_cf_(db->Cf(kReportsCf)),
      alerts_cf_(db->Cf(kAlertsCf)),
      predictions_cf_(db->Cf(kPredictionsCf)),
      expiry_cf_(db->Cf(kExpiryCf)),
      schemas_cf_(db->Cf(kSchemasCf)),
      validations_cf_(db->Cf(kValidationsCf)),
      evaluations_cf_(db->Cf(kEvaluationsCf)),
      evaluation_ids_cf_(db->Cf(kEvaluationIdsCf)) {}

MonitoringStore::~MonitoringStore() {
  {
    std::lock_guard lock(retrain_mu_);
    stopping_ = true;
  }
  retrain_cv_.notify_all();
  if (retrain_thread_.joinable()) retrain_thread_.join();
}

absl::Status MonitoringStore::Load() {
  std::map<std::string, double> alert_counts;  // per monitor, from the stored alerts
  std::vector<v1::Alert> pending;              // retrainings still to submit
  RETURN_IF_ERROR(
      db_->ScanProto<v1::Alert>(alerts_cf_, "", {}, [&](std::string_view, v1::Alert& alert) {
        ++alert_counts[alert.monitor()];
        if (alert.retrain() == v1::RETRAIN_PENDING) pending.push_back(std::move(alert));
        return true;
      }));
  std::vector<v1::Monitor> monitors;
  RETURN_IF_ERROR(
      db_->ScanProto<v1::Monitor>(monitors_cf_, "", {}, [&](std::string_view, v1::Monitor& m) {
        monitors.push_back(std::move(m));
        return true;
      }));
  for (v1::Monitor& monitor : monitors) {
    auto state = std::make_shared<MonitorState>();
    ASSIGN_OR_RETURN(v1::Profile profile, GetProfile(monitor.profile(), monitor.profile_version()));
    v1::Schema schema;
    if (!monitor.schema().empty()) {
      ASSIGN_OR_RETURN(schema, GetSchema(monitor.schema(), monitor.schema_version()));
    }
    RETURN_IF_ERROR(state->Init(std::move(monitor), std::move(profile), std::move(schema)));
    const std::string& name = state->monitor.name();
    state->Reset(NowMs());
    ASSIGN_OR_RETURN(auto saved, db_->GetProto<internal::WindowState>(windows_cf_, name));
    if (saved.has_value()) state->Load(*saved);
    // The gauges come back from the last stored report (a restart does not blank a dashboard).
    metrics_.InitSeries(state->monitor);
    double stored_reports = 0;
    RETURN_IF_ERROR(db_->ScanProtoReverse<v1::DriftReport>(
        reports_cf_, name + '\0', {}, [&](std::string_view, v1::DriftReport& report) {
          if (stored_reports++ == 0) metrics_.ExportReport(state->monitor, report);
          return true;
        }));
    // Alerts and reports are kept: their counters go on from what is stored, across restarts.
    metrics_.RestoreCounts(name, stored_reports, alert_counts[name]);
    states_[name] = std::move(state);
  }
  for (const v1::Alert& alert : pending) {
    auto state = states_.find(alert.monitor());
    if (state == states_.end()) continue;
    retrain_queue_.push_back(RetrainJobFor(state->second->monitor, alert, 0));
  }
  if (!pending.empty()) {
    LogInfo("retrains_resumed", {{"count", std::to_string(retrain_queue_.size())}});
  }
  retrain_thread_ = std::thread([this] { RetrainLoop(); });
  return absl::OkStatus();
}

MonitoringStore::RetrainJob MonitoringStore::RetrainJobFor(const v1::Monitor& monitor,
                                                           const v1::Alert& alert,
                                                           int64_t previous_retrain_ms) {
  RetrainJob job{monitor.name(), alert.id(), previous_retrain_ms, {}};
  job.request.project = std::string(ProjectOf(monitor.name()));
  job.request.spec_yaml = monitor.retrain_pipeline_yaml();
  job.request.params = {monitor.retrain_params().begin(), monitor.retrain_params().end()};
  job.request.queue = monitor.retrain_queue();
  job.request.request_id = std::string(InProjectId(alert.id()));
  return job;
}

absl::StatusOr<std::shared_ptr<MonitorState>> MonitoringStore::Find(
    const std::string& requested) const {
  const std::string monitor = CanonicalName(requested);
  std::lock_guard lock(mu_);
  auto it = states_.find(monitor);
  if (it == states_.end()) return absl::NotFoundError("monitor " + monitor + " not found");
  return it->second;
}

// ---------------------------------------------------------------------------------------------
// Profiles

absl::StatusOr<v1::Profile> MonitoringStore::CreateProfile(
    const v1::CreateProfileRequest& request) {
  ASSIGN_OR_RETURN(const std::string name, StoredName("name", request.name()));
  RETURN_IF_ERROR(InProject("dataset", request.dataset(), "the profile", ProjectOf(name)));
  std::vector<std::unique_ptr<Table>> tables;
  std::string source;
  if (request.has_samples()) {
    ASSIGN_OR_RETURN(auto table, TableFromSamples(request.samples()));
    tables.push_back(std::move(table));
    source = "samples";
  } else if (!request.dataset().empty()) {
    if (datasets_ == nullptr) {
      return absl::FailedPreconditionError("no artifact service configured");
    }
    ASSIGN_OR_RETURN(DatasetSource::Dataset dataset,
                     datasets_->Read(CanonicalName(request.dataset())));
    tables = std::move(dataset.tables);
    source = "dataset " + dataset.resolved;
  } else {
    return absl::InvalidArgumentError("source: a dataset (NAME@REF) or samples");
  }
  std::vector<std::string> categorical(request.categorical().begin(), request.categorical().end());
  ASSIGN_OR_RETURN(auto features, ProfileTables(tables, categorical, request.max_categories()));
  v1::Profile profile;
  profile.set_name(name);
  profile.set_source(source);
  uint64_t rows = 0;
  for (const auto& table : tables) rows += table->rows();
  profile.set_rows(rows);
  for (auto& f : features) *profile.add_features() = std::move(f);
  std::lock_guard lock(mu_);
  auto latest = GetProfile(name, 0);
  if (!latest.ok() && !absl::IsNotFound(latest.status())) return latest.status();
  profile.set_version(latest.ok() ? latest->version() + 1 : 1);
  profile.set_create_time_ms(NowMs());
  rocksdb::WriteBatch batch;
  batch.Put(profiles_cf_, VersionKey(profile.name(), profile.version()),
            profile.SerializeAsString());
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  return profile;
}

absl::StatusOr<v1::Profile> MonitoringStore::GetProfile(const std::string& requested,
                                                        int64_t version) const {
  const std::string name = CanonicalName(requested);
  std::optional<v1::Profile> profile;
  if (version > 0) {
    ASSIGN_OR_RETURN(profile, db_->GetProto<v1::Profile>(profiles_cf_, VersionKey(name, version)));
  } else {
    RETURN_IF_ERROR(db_->ScanProtoReverse<v1::Profile>(profiles_cf_, name + '\0', {},
                                                       [&](std::string_view, v1::Profile& stored) {
                                                         profile = std::move(stored);
                                                         return false;
                                                       }));
  }
  if (!profile.has_value()) {
    return absl::NotFoundError(
        version > 0 ? StrCat("profile ", name, " version ", std::to_string(version), " not found")
                    : "profile " + name + " not found");
  }
  return *std::move(profile);
}

absl::StatusOr<std::vector<v1::Profile>> MonitoringStore::ListProfiles(
    const std::string& requested) const {
  ASSIGN_OR_RETURN(const std::string project, ListedProject(requested));
  std::map<std::string, v1::Profile> latest;
  RETURN_IF_ERROR(db_->ScanProto<v1::Profile>(profiles_cf_, "", {},
                                              [&](std::string_view, v1::Profile& profile) {
                                                if (!Listed(project, profile.name())) return true;
                                                profile.clear_features();
                                                // Versions ascend: the last one stays.
                                                latest[profile.name()] = std::move(profile);
                                                return true;
                                              }));
  std::vector<v1::Profile> profiles;
  for (auto& [name, profile] : latest) profiles.push_back(std::move(profile));
  return profiles;
}

// ---------------------------------------------------------------------------------------------
// Monitors

absl::StatusOr<v1::Monitor> MonitoringStore::CreateMonitor(v1::Monitor monitor) {
  ASSIGN_OR_RETURN(const std::string name, StoredName("name", monitor.name()));
  monitor.set_name(name);
  RETURN_IF_ERROR(InProject("profile", monitor.profile(), "the monitor", ProjectOf(name)));
  RETURN_IF_ERROR(InProject("model", monitor.model(), "the monitor", ProjectOf(name)));
  monitor.set_profile(CanonicalName(monitor.profile()));
  monitor.set_model(CanonicalName(monitor.model()));
  ASSIGN_OR_RETURN(v1::Profile profile, GetProfile(monitor.profile(), monitor.profile_version()));
  monitor.set_profile_version(profile.version());
  if (monitor.features().empty()) {
    for (const auto& f : profile.features()) monitor.add_features(f.name());
  }
  for (const auto& test : monitor.tests()) {
    if (test.kind() == v1::DriftTest::KIND_UNSPECIFIED ||
        !v1::DriftTest::Kind_IsValid(test.kind())) {
      return absl::InvalidArgumentError("tests: kind is PSI, KS, CHI_SQUARED or JENSEN_SHANNON");
    }
    if (test.threshold() < 0) {
      return absl::InvalidArgumentError("tests: a threshold is not negative");
    }
  }
  if (monitor.drift_share_threshold() == 0) monitor.set_drift_share_threshold(0.5);
  if (monitor.drift_share_threshold() < 0 || monitor.drift_share_threshold() > 1) {
    return absl::InvalidArgumentError("drift_share_threshold: in (0, 1]");
  }
  if (monitor.window_rows() < 0 || monitor.window_ms() < 0) {
    return absl::InvalidArgumentError("window: not negative");
  }
  if (monitor.window_rows() == 0 && monitor.window_ms() == 0) monitor.set_window_rows(10000);
  if (!monitor.task().empty() && monitor.task() != "classification" &&
      monitor.task() != "regression") {
    return absl::InvalidArgumentError("task: classification or regression");
  }
  if (monitor.cooldown_ms() == 0) monitor.set_cooldown_ms(3600 * 1000);
  if (monitor.label_ttl_ms() < 0) return absl::InvalidArgumentError("label_ttl_ms: not negative");
  if (monitor.label_ttl_ms() == 0) monitor.set_label_ttl_ms(int64_t{7} * 24 * 3600 * 1000);
  if (!monitor.model().empty() && models_ != nullptr) {
    // The model version now behind the name or alias; a registry that cannot answer leaves it
    // unresolved.
    auto version = models_->Resolve(monitor.model(), monitor.model_version());
    if (absl::IsNotFound(version.status())) {
      return absl::NotFoundError("model: " + std::string(version.status().message()));
    }
    if (version.ok()) monitor.set_resolved_version(*version);
  }
  v1::Schema schema;
  if (!monitor.schema().empty()) {
    // Rows are checked against this version of the schema for the monitor's life.
    ASSIGN_OR_RETURN(std::string schema_name, StoredName("schema", monitor.schema()));
    RETURN_IF_ERROR(InProject("schema", schema_name, "the monitor", ProjectOf(name)));
    if (monitor.schema_version() < 0) {
      return absl::InvalidArgumentError("schema_version: 0 (the latest) or a version");
    }
    auto found = GetSchema(schema_name, monitor.schema_version());
    if (absl::IsNotFound(found.status())) {
      return absl::NotFoundError("schema: " + std::string(found.status().message()));
    }
    if (!found.ok()) return found.status();
    schema = *std::move(found);
    monitor.set_schema(schema_name);
    monitor.set_schema_version(schema.version());
  } else if (monitor.schema_version() != 0) {
    return absl::InvalidArgumentError("schema_version without a schema");
  }
  monitor.set_create_time_ms(NowMs());
  auto state = std::make_shared<MonitorState>();
  RETURN_IF_ERROR(state->Init(monitor, std::move(profile), std::move(schema)));
  state->Reset(monitor.create_time_ms());
  std::lock_guard lock(mu_);
  if (states_.contains(monitor.name())) {
    return absl::AlreadyExistsError("monitor " + monitor.name() + " exists");
  }
  rocksdb::WriteBatch batch;
  batch.Put(monitors_cf_, monitor.name(), monitor.SerializeAsString());
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  states_[monitor.name()] = state;
  metrics_.InitSeries(monitor);
  return monitor;
}

absl::StatusOr<v1::Monitor> MonitoringStore::GetMonitor(const std::string& name) const {
  ASSIGN_OR_RETURN(auto state, Find(name));
  std::lock_guard lock(state->mu);
  return state->monitor;
}

absl::StatusOr<std::vector<v1::Monitor>> MonitoringStore::ListMonitors(
    const std::string& requested) const {
  ASSIGN_OR_RETURN(const std::string project, ListedProject(requested));
  std::vector<std::shared_ptr<MonitorState>> states;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, state] : states_) {
      if (Listed(project, name)) states.push_back(state);
    }
  }
  std::vector<v1::Monitor> monitors;
  for (const auto& state : states) {
    std::lock_guard lock(state->mu);
    monitors.push_back(state->monitor);
  }
  return monitors;
}

// ---------------------------------------------------------------------------------------------
// Windows and reports

absl::Status MonitoringStore::DropExpiredPredictions(const MonitorState& state, int64_t now,
                                                     Change& change) {
  const std::string prefix = state.monitor.name() + '\0';
  size_t dropped = 0;
  absl::Status status;
  RETURN_IF_ERROR(
      db_->ScanPrefix(expiry_cf_, prefix, {}, [&](std::string_view key, std::string_view) {
        if (key.size() < prefix.size() + 8) return true;
        const int64_t expires = static_cast<int64_t>(ReadBigEndian64(key.substr(prefix.size(), 8)));
        if (expires >= now || dropped >= 100000) return false;
        change.Delete(expiry_cf_, std::string(key));
        // The prediction goes only if it is the one this entry was made for (a request id that
        // came again has a later expiry).
        std::string prediction_key = prefix + std::string(key.substr(prefix.size() + 8));
        auto value = db_->Get(predictions_cf_, prediction_key);
        if (!value.ok()) {
          status = value.status();
          return false;
        }
        double prediction;
        int64_t stored;
        if (value->has_value() && DecodePrediction(**value, &prediction, &stored) &&
            stored == expires) {
          change.Delete(predictions_cf_, std::move(prediction_key));
        }
        ++dropped;
        return true;
      }));
  return status;
}

absl::Status MonitoringStore::Commit(Change& change, const MonitorState* state) {
  rocksdb::WriteBatch batch;
  if (state != nullptr && change.drop_expired) {
    // Expired predictions go first, so that a request id that came again keeps its new one.
    Change expired;
    RETURN_IF_ERROR(DropExpiredPredictions(*state, NowMs(), expired));
    for (const auto& op : expired.ops) batch.Delete(op.cf, op.key);
  }
  for (const auto& op : change.ops) {
    if (op.value.has_value()) {
      batch.Put(op.cf, op.key, *op.value);
    } else {
      batch.Delete(op.cf, op.key);
    }
  }
  if (state != nullptr) {
    batch.Put(windows_cf_, state->monitor.name(), state->Save().SerializeAsString());
  }
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  if (!change.retrains.empty()) {
    std::lock_guard lock(retrain_mu_);
    for (auto& job : change.retrains) retrain_queue_.push_back(std::move(job));
    change.retrains.clear();
  }
  retrain_cv_.notify_all();
  return absl::OkStatus();
}

v1::DriftReport MonitoringStore::CloseWindow(MonitorState& state, int64_t now, Change& change) {
  v1::DriftReport report = WindowReport(state, now);
  if (state.validator != nullptr) {
    for (v1::Anomaly& anomaly : state.validator->Finish()) {
      *report.add_anomalies() = std::move(anomaly);
    }
  }
  Publish(state, &report, change);
  state.Reset(now);
  return report;
}

void MonitoringStore::Publish(MonitorState& state, v1::DriftReport* report, Change& change) {
  const v1::Monitor& monitor = state.monitor;
  const std::string_view project = ProjectOf(monitor.name());
  report->set_id(Qualify(project, NewId()));
  report->set_monitor(monitor.name());
  const std::string reason = Assess(monitor, report);
  metrics_.ExportReport(monitor, *report);
  metrics_.CountReport(monitor.name());
  std::string key = monitor.name() + '\0';
  AppendBigEndian64(&key, static_cast<uint64_t>(report->end_time_ms()));
  key += report->id();
  change.Put(reports_cf_, std::move(key), report->SerializeAsString());
  if (reason.empty()) return;
  v1::Alert alert;
  alert.set_id(Qualify(project, NewId()));
  alert.set_monitor(monitor.name());
  alert.set_report_id(report->id());
  alert.set_time_ms(NowMs());
  alert.set_reason(reason);
  metrics_.CountAlert(monitor.name());
  // One retraining per episode: none while the cooldown after the last one runs. The scheduler
  // is called by the retraining worker once the alert is stored, never under the state's lock.
  // Skew alone alerts but retrains nothing: a model retrained on data that breaks its schema would
  // learn the break.
  const int64_t last = state.window.last_retrain_ms();
  if ((report->drifted() || report->degraded()) && !monitor.retrain_pipeline_yaml().empty() &&
      retrain_ != nullptr && (last == 0 || alert.time_ms() - last >= monitor.cooldown_ms())) {
    alert.set_retrain(v1::RETRAIN_PENDING);
    state.window.set_last_retrain_ms(alert.time_ms());
    change.retrains.push_back(RetrainJobFor(monitor, alert, last));
  }
  change.Put(alerts_cf_, alert.id(), alert.SerializeAsString());
}

absl::Status MonitoringStore::IngestSamples(const std::function<bool(v1::SampleBatch*)>& next,
                                            v1::IngestSamplesResponse* response) {
  v1::SampleBatch batch;
  std::shared_ptr<MonitorState> state;
  BatchColumns columns;
  Change change;
  change.drop_expired = true;
  uint64_t rows_total = 0;
  absl::Status status;
  while (status.ok() && next(&batch)) {
    if (state == nullptr) {
      ASSIGN_OR_RETURN(state, Find(batch.monitor()));
    } else if (!batch.monitor().empty() &&
               CanonicalName(batch.monitor()) != state->monitor.name()) {
      status = absl::InvalidArgumentError("one IngestSamples call feeds one monitor");
      break;
    }
    std::lock_guard lock(state->mu);
    status = columns.Map(*state, batch);
    if (!status.ok()) break;
    const v1::Monitor& monitor = state->monitor;
    const size_t rows = columns.rows();
    size_t done = 0;
    while (done < rows) {
      int64_t now = NowMs();
      if (monitor.window_ms() > 0 && state->window.rows() > 0 &&
          now - state->window.start_time_ms() >= monitor.window_ms()) {
        *response->add_closed() = CloseWindow(*state, now, change);
      }
      size_t take = rows - done;
      if (monitor.window_rows() > 0) {
        take = std::min<size_t>(take,
                                static_cast<size_t>(monitor.window_rows()) - state->window.rows());
      }
      columns.AddRows(*state, batch, done, take);
      const int64_t expires = NowMs() + monitor.label_ttl_ms();
      for (size_t r = done; r < done + take && batch.predictions_size() > 0; ++r) {
        if (batch.request_ids_size() == 0) break;
        const std::string& request_id = batch.request_ids(static_cast<int>(r));
        change.Put(predictions_cf_, monitor.name() + '\0' + request_id,
                   EncodePrediction(batch.predictions(static_cast<int>(r)), expires));
        std::string expiry = monitor.name() + '\0';
        AppendBigEndian64(&expiry, static_cast<uint64_t>(expires));
        change.Put(expiry_cf_, expiry + request_id, "");
      }
      state->window.set_rows(state->window.rows() + take);
      done += take;
      if (monitor.window_rows() > 0 &&
          state->window.rows() >= static_cast<uint64_t>(monitor.window_rows())) {
        *response->add_closed() = CloseWindow(*state, NowMs(), change);
      }
    }
    rows_total += rows;
  }
  response->set_rows(rows_total);
  if (state == nullptr) return status;
  metrics_.CountSamples(state->monitor.name(), rows_total);
  // Acknowledged means durable: the open window, its reports and the predictions reach the disk
  // in one batch, also when a bad batch ended the call (what came before it is kept).
  std::lock_guard lock(state->mu);
  RETURN_IF_ERROR(Commit(change, state.get()));
  return status;
}

absl::StatusOr<v1::IngestFeedbackResponse> MonitoringStore::IngestFeedback(
    const v1::FeedbackBatch& request) {
  ASSIGN_OR_RETURN(auto found, Find(request.monitor()));
  if (request.request_ids_size() != request.labels_size()) {
    return absl::InvalidArgumentError("one label per request id");
  }
  v1::IngestFeedbackResponse response;
  MonitorState& state = *found;
  std::lock_guard lock(state.mu);
  Change change;
  internal::WindowState& window = state.window;
  for (int i = 0; i < request.request_ids_size(); ++i) {
    std::string key = state.monitor.name() + '\0' + request.request_ids(i);
    ASSIGN_OR_RETURN(auto value, db_->Get(predictions_cf_, key));
    double prediction;
    int64_t expires;
    if (!value.has_value() || !DecodePrediction(*value, &prediction, &expires)) {
      response.set_unmatched(response.unmatched() + 1);
      continue;
    }
    change.Delete(predictions_cf_, key);      // one label per request
    if (expires != 0 && expires < NowMs()) {  // too late: as if it had been dropped
      response.set_unmatched(response.unmatched() + 1);
      continue;
    }
    const double label = request.labels(i);
    window.set_labeled(window.labeled() + 1);
    window.set_correct(window.correct() + (prediction == label ? 1 : 0));
    window.set_abs_error(window.abs_error() + std::fabs(prediction - label));
    window.set_squared_error(window.squared_error() + (prediction - label) * (prediction - label));
    response.set_matched(response.matched() + 1);
  }
  RETURN_IF_ERROR(Commit(change, &state));
  return response;
}

absl::StatusOr<v1::DriftReport> MonitoringStore::EvaluateDataset(
    const v1::EvaluateDatasetRequest& request) {
  std::shared_ptr<MonitorState> state;
  // The project the dataset must be in: the monitor's, or the profile's.
  const std::string_view project =
      ProjectOf(request.monitor().empty() ? request.profile() : request.monitor());
  RETURN_IF_ERROR(InProject("dataset", request.dataset(),
                            request.monitor().empty() ? "the profile" : "the monitor", project));
  if (!request.monitor().empty()) {
    ASSIGN_OR_RETURN(state, Find(request.monitor()));
  } else if (!request.profile().empty()) {
    // A one-off comparison: every feature of the profile, the requested tests.
    ASSIGN_OR_RETURN(v1::Profile profile, GetProfile(request.profile(), request.profile_version()));
    v1::Monitor monitor;
    monitor.set_name("profile " + profile.name());
    monitor.set_drift_share_threshold(0.5);
    for (const auto& f : profile.features()) monitor.add_features(f.name());
    *monitor.mutable_tests() = request.tests();
    state = std::make_shared<MonitorState>();
    RETURN_IF_ERROR(state->Init(std::move(monitor), std::move(profile)));
  } else {
    return absl::InvalidArgumentError("monitor or profile: what to compare the dataset against");
  }
  if (datasets_ == nullptr) return absl::FailedPreconditionError("no artifact service configured");
  ASSIGN_OR_RETURN(DatasetSource::Dataset dataset,
                   datasets_->Read(CanonicalName(request.dataset())));
  // The profile and tests of a monitor never change: no lock while the dataset is evaluated.
  auto report = DatasetReport(*state, dataset.tables);
  if (!report.ok()) {
    return absl::InvalidArgumentError(
        StrCat("dataset ", dataset.resolved, " ", report.status().message()));
  }
  report->set_source("dataset " + dataset.resolved);
  if (!state->monitor.schema().empty()) {
    // Skew of a whole dataset: every check but the row count (the training set's is no guide).
    Validator validator(state->schema, ValidatorOptions{true, false});
    for (size_t i = 0; i < dataset.tables.size(); ++i) {
      validator.Add(*dataset.tables[i], i < dataset.files.size() ? dataset.files[i] : "");
    }
    for (v1::Anomaly& anomaly : validator.Finish()) *report->add_anomalies() = std::move(anomaly);
  }
  report->set_start_time_ms(NowMs());
  report->set_end_time_ms(report->start_time_ms());
  if (request.monitor().empty()) {
    Judge(state->monitor, &*report);
    return report;
  }
  std::lock_guard lock(state->mu);
  Change change;
  Publish(*state, &*report, change);
  RETURN_IF_ERROR(Commit(change, state.get()));
  return report;
}

absl::StatusOr<std::vector<v1::DriftReport>> MonitoringStore::ListReports(
    const std::string& monitor, int limit) const {
  RETURN_IF_ERROR(Find(monitor).status());
  const std::string name = CanonicalName(monitor);
  std::vector<v1::DriftReport> reports;
  RETURN_IF_ERROR(db_->ScanProtoReverse<v1::DriftReport>(
      reports_cf_, name + '\0', {}, [&](std::string_view, v1::DriftReport& report) {
        reports.push_back(std::move(report));
        return static_cast<int>(reports.size()) < limit;
      }));
  return reports;
}

absl::StatusOr<std::vector<v1::Alert>> MonitoringStore::ListAlerts(
    const std::string& requested_monitor, const std::string& requested_project,
    bool unacknowledged_only) const {
  const std::string monitor = CanonicalName(requested_monitor);
  ASSIGN_OR_RETURN(const std::string project, ListedProject(requested_project));
  std::vector<v1::Alert> alerts;
  RETURN_IF_ERROR(
      db_->ScanProto<v1::Alert>(alerts_cf_, "", {}, [&](std::string_view, v1::Alert& alert) {
        if ((monitor.empty() ? Listed(project, alert.monitor()) : alert.monitor() == monitor) &&
            !(unacknowledged_only && alert.acknowledged())) {
          alerts.push_back(std::move(alert));
        }
        return true;
      }));
  // Newest first. Ids are time-ordered within a project (keys of other projects sort apart).
  std::sort(alerts.begin(), alerts.end(), [](const v1::Alert& a, const v1::Alert& b) {
    std::string_view x = InProjectId(a.id()), y = InProjectId(b.id());
    return x != y ? x > y : a.id() > b.id();
  });
  return alerts;
}

absl::StatusOr<v1::Alert> MonitoringStore::AcknowledgeAlert(const std::string& requested,
                                                            const std::string& by) {
  const std::string id = CanonicalName(requested);
  std::lock_guard lock(alerts_mu_);
  ASSIGN_OR_RETURN(auto stored, db_->GetProto<v1::Alert>(alerts_cf_, id));
  if (!stored.has_value()) return absl::NotFoundError("alert " + id + " not found");
  v1::Alert alert = *std::move(stored);
  if (!alert.acknowledged()) {
    alert.set_acknowledged(true);
    alert.set_acknowledged_by(by);
    rocksdb::WriteBatch batch;
    batch.Put(alerts_cf_, alert.id(), alert.SerializeAsString());
    RETURN_IF_ERROR(db_->WriteSync(&batch));
  }
  return alert;
}

}  // namespace mlops::monitoring
