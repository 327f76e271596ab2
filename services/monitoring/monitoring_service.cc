#include "services/monitoring/monitoring_service.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <thread>

#include "mlops/metadata/v1/registry.grpc.pb.h"
#include "mlops/scheduler/v1/scheduler.grpc.pb.h"
#include "services/artifact/client/artifact_client.h"
#include "services/common/encoding.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/names.h"
#include "services/common/request_errors.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/monitoring/table.h"

namespace mlops::monitoring {
namespace {

namespace internal = ::mlops::monitoring::internal;

std::string VersionKey(const std::string& name, int64_t version) {
  std::string key = name + '\0';
  AppendBigEndian64(&key, static_cast<uint64_t>(version));
  return key;
}

// Four significant digits, for messages.
std::string Short(double value) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", value);
  return buf;
}

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

// Runs f(i) for i in [0, n) on up to hardware_concurrency threads.
template <typename F>
void ParallelFor(size_t n, F f) {
  size_t threads = std::min<size_t>(n, std::max(1u, std::thread::hardware_concurrency()));
  if (threads <= 1) {
    for (size_t i = 0; i < n; ++i) f(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (size_t i = next++; i < n; i = next++) f(i);
    });
  }
  for (auto& thread : pool) thread.join();
}

}  // namespace

const std::vector<std::string>& MonitoringColumnFamilies() {
  static const std::vector<std::string> names = {
      kProfilesCf, kMonitorsCf, kWindowsCf, kReportsCf, kAlertsCf, kPredictionsCf, kExpiryCf};
  return names;
}

// A monitor with its profile and open window. Its mutex orders every change to the window.
struct MonitoringServiceImpl::State {
  std::mutex mu;
  v1::Monitor monitor;
  v1::Profile profile;
  std::vector<int> features;  // watched: indexes into profile.features
  std::vector<FeatureWindow> windows;
  std::vector<v1::DriftTest> tests;
  internal::WindowState window;  // counts live in `windows`; the rest here

  void Reset(int64_t now) {
    for (auto& w : windows) w.Clear();
    int64_t last_retrain = window.last_retrain_ms();
    window.Clear();
    window.set_start_time_ms(now);
    window.set_last_retrain_ms(last_retrain);
  }
};

MonitoringServiceImpl::MonitoringServiceImpl(Db* db, std::string work_dir,
                                             prometheus::Registry& registry)
    : db_(db),
      work_dir_(std::move(work_dir)),
      profiles_cf_(db->Cf(kProfilesCf)),
      monitors_cf_(db->Cf(kMonitorsCf)),
      windows_cf_(db->Cf(kWindowsCf)),
      reports_cf_(db->Cf(kReportsCf)),
      alerts_cf_(db->Cf(kAlertsCf)),
      predictions_cf_(db->Cf(kPredictionsCf)),
      expiry_cf_(db->Cf(kExpiryCf)),
      psi_(prometheus::BuildGauge()
               .Name("mlops_feature_drift_psi")
               .Help("PSI of a feature in the last closed window against the reference profile")
               .Register(registry)),
      ks_(prometheus::BuildGauge()
              .Name("mlops_feature_drift_ks_statistic")
              .Help("Two-sample KS statistic of a feature in the last closed window")
              .Register(registry)),
      js_(prometheus::BuildGauge()
              .Name("mlops_feature_drift_js_distance")
              .Help("Jensen-Shannon distance (base 2) of a feature in the last closed window")
              .Register(registry)),
      chi2_p_(prometheus::BuildGauge()
                  .Name("mlops_feature_drift_chi2_p_value")
                  .Help("Chi-squared p-value of a feature in the last closed window")
                  .Register(registry)),
      drift_share_(prometheus::BuildGauge()
                       .Name("mlops_model_drift_share")
                       .Help("Share of a monitor's features that drifted in the last window")
                       .Register(registry)),
      drift_share_threshold_(prometheus::BuildGauge()
                                 .Name("mlops_model_drift_share_threshold")
                                 .Help("The monitor's drift_share_threshold: a window whose "
                                       "drift share reaches it is drifted")
                                 .Register(registry)),
      drifted_(prometheus::BuildGauge()
                   .Name("mlops_model_drifted")
                   .Help("1 when the monitor's last window drifted (by its own threshold), else 0")
                   .Register(registry)),
      accuracy_(prometheus::BuildGauge()
                    .Name("mlops_model_accuracy_ratio")
                    .Help("Accuracy from labels in the last window (classification), 0 to 1")
                    .Register(registry)),
      rmse_(prometheus::BuildGauge()
                .Name("mlops_model_rmse")
                .Help("Root mean squared error from labels in the last window (regression), in "
                      "the label's unit")
                .Register(registry)),
      mae_(prometheus::BuildGauge()
               .Name("mlops_model_mae")
               .Help("Mean absolute error from labels in the last window (regression), in the "
                     "label's unit")
               .Register(registry)),
      samples_(prometheus::BuildCounter()
                   .Name("mlops_monitoring_samples_total")
                   .Help("Production rows ingested, per monitor")
                   .Register(registry)),
      alerts_(prometheus::BuildCounter()
                  .Name("mlops_monitoring_alerts_total")
                  .Help("Alerts raised, per monitor")
                  .Register(registry)),
      reports_(prometheus::BuildCounter()
                   .Name("mlops_monitoring_reports_total")
                   .Help("Drift reports produced, per monitor")
                   .Register(registry)) {}

MonitoringServiceImpl::~MonitoringServiceImpl() = default;

void MonitoringServiceImpl::SetPeers(std::shared_ptr<grpc::Channel> artifact,
                                     std::shared_ptr<grpc::Channel> metadata,
                                     std::shared_ptr<grpc::Channel> scheduler) {
  artifact_ = std::move(artifact);
  metadata_ = std::move(metadata);
  scheduler_ = std::move(scheduler);
}

absl::StatusOr<v1::Profile> MonitoringServiceImpl::ReadProfile(const std::string& name,
                                                               int64_t version) const {
  v1::Profile profile;
  bool found = false;
  if (version > 0) {
    ASSIGN_OR_RETURN(auto value,
                     db_->GetProto<v1::Profile>(profiles_cf_, VersionKey(name, version)));
    if (value.has_value()) {
      profile = *std::move(value);
      found = true;
    }
  } else {
    RETURN_IF_ERROR(db_->ScanProtoReverse<v1::Profile>(profiles_cf_, name + '\0', {},
                                                       [&](std::string_view, v1::Profile& stored) {
                                                         profile = std::move(stored);
                                                         found = true;
                                                         return false;
                                                       }));
  }
  if (!found) {
    return absl::NotFoundError(
        version > 0 ? StrCat("profile ", name, " version ", std::to_string(version), " not found")
                    : "profile " + name + " not found");
  }
  return profile;
}

absl::Status MonitoringServiceImpl::Load() {
  std::map<std::string, double> alert_counts;  // per monitor, from the stored alerts
  RETURN_IF_ERROR(
      db_->ScanProto<v1::Alert>(alerts_cf_, "", {}, [&](std::string_view, v1::Alert& alert) {
        ++alert_counts[alert.monitor()];
        return true;
      }));
  std::vector<v1::Monitor> monitors;
  RETURN_IF_ERROR(
      db_->ScanProto<v1::Monitor>(monitors_cf_, "", {}, [&](std::string_view, v1::Monitor& m) {
        monitors.push_back(std::move(m));
        return true;
      }));
  for (const v1::Monitor& monitor : monitors) {
    auto state = std::make_shared<State>();
    state->monitor = monitor;
    ASSIGN_OR_RETURN(state->profile, ReadProfile(monitor.profile(), monitor.profile_version()));
    for (const auto& name : monitor.features()) {
      for (int i = 0; i < state->profile.features_size(); ++i) {
        if (state->profile.features(i).name() == name) state->features.push_back(i);
      }
    }
    for (int f : state->features) state->windows.emplace_back(&state->profile.features(f));
    state->tests.assign(monitor.tests().begin(), monitor.tests().end());
    state->Reset(NowMs());
    ASSIGN_OR_RETURN(auto saved, db_->GetProto<internal::WindowState>(windows_cf_, monitor.name()));
    if (saved.has_value()) {
      state->window = *std::move(saved);
      for (size_t i = 0;
           i < state->windows.size() && i < static_cast<size_t>(state->window.features_size());
           ++i) {
        const auto& counts = state->window.features(static_cast<int>(i)).counts();
        state->windows[i].Load({counts.begin(), counts.end()});
      }
      state->window.clear_features();
    }
    // The gauges come back from the last stored report (a restart does not blank a dashboard).
    InitSeries(monitor);
    v1::DriftReport last;
    bool have_last = false;
    RETURN_IF_ERROR(db_->ScanProtoReverse<v1::DriftReport>(
        reports_cf_, monitor.name() + '\0', {}, [&](std::string_view, v1::DriftReport& report) {
          last = std::move(report);
          have_last = true;
          return false;
        }));
    if (have_last) ExportGauges(monitor, last);
    // Alerts and reports are kept: their counters go on from what is stored, across restarts.
    double stored_reports = 0;
    RETURN_IF_ERROR(db_->ScanPrefix(reports_cf_, monitor.name() + '\0', {},
                                    [&](std::string_view, std::string_view) {
                                      ++stored_reports;
                                      return true;
                                    }));
    alerts_.Add({{"monitor", monitor.name()}}).Increment(alert_counts[monitor.name()]);
    reports_.Add({{"monitor", monitor.name()}}).Increment(stored_reports);
    states_[monitor.name()] = std::move(state);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<MonitoringServiceImpl::State>> MonitoringServiceImpl::Find(
    const std::string& monitor) const {
  std::lock_guard lock(mu_);
  auto it = states_.find(monitor);
  if (it == states_.end()) return absl::NotFoundError("monitor " + monitor + " not found");
  return it->second;
}

// ---------------------------------------------------------------------------------------------
// Profiles

absl::StatusOr<std::vector<std::unique_ptr<Table>>> MonitoringServiceImpl::ReadDataset(
    const std::string& ref, std::string* resolved) {
  if (artifact_ == nullptr) return absl::FailedPreconditionError("no artifact service configured");
  size_t at = ref.find('@');
  std::string dataset = ref.substr(0, at),
              version = at == std::string::npos ? "" : ref.substr(at + 1);
  std::string dir = StrCat(work_dir_, "/", NewId());
  artifact::ClientOptions options;
  options.sync_downloads = false;  // a scratch copy
  artifact::ArtifactClient client(artifact_, options);
  auto pulled = client.Pull(dataset, version, dir, nullptr);
  std::vector<std::unique_ptr<Table>> tables;
  absl::Status status = pulled.status();
  if (status.ok()) {
    *resolved = StrCat(dataset, "@", pulled->version.digest());
    std::vector<std::string> files;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
      std::string ext = entry.path().extension().string();
      if (entry.is_regular_file() && (ext == ".csv" || ext == ".mlcol")) {
        files.push_back(entry.path().string());
      }
    }
    std::sort(files.begin(), files.end());
    for (const std::string& file : files) {
      auto table = Table::ReadFile(file);
      if (!table.ok()) {
        status = table.status();
        break;
      }
      tables.push_back(std::move(*table));
    }
    if (status.ok() && tables.empty()) {
      status = absl::InvalidArgumentError("dataset " + ref + " holds no .csv or .mlcol file");
    }
  }
  // The tables map or copied what they need; the files go (a mapping stays valid after unlink).
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!status.ok()) return status;
  return tables;
}

grpc::Status MonitoringServiceImpl::CreateProfile(grpc::ServerContext*,
                                                  const v1::CreateProfileRequest* request,
                                                  v1::Profile* response) {
  if (absl::Status name = ValidateName(NameKind::kIdentifier, "name", request->name());
      !name.ok()) {
    return ToGrpcStatus(name);
  }
  std::vector<std::unique_ptr<Table>> tables;
  std::string source;
  if (request->has_samples()) {
    const v1::SampleBatch& samples = request->samples();
    size_t numeric = static_cast<size_t>(samples.numeric_columns_size());
    size_t categorical = static_cast<size_t>(samples.categorical_columns_size());
    size_t rows = numeric > 0       ? samples.numeric_size() / numeric
                  : categorical > 0 ? samples.categorical_size() / categorical
                                    : 0;
    if (rows == 0 || rows * numeric != static_cast<size_t>(samples.numeric_size()) ||
        rows * categorical != static_cast<size_t>(samples.categorical_size())) {
      return Invalid("samples: values must fill rows x columns, with at least one row");
    }
    std::vector<Column> columns;
    for (size_t c = 0; c < numeric; ++c) {
      Column column;
      column.name = samples.numeric_columns(static_cast<int>(c));
      column.owned.resize(rows);
      for (size_t r = 0; r < rows; ++r)
        column.owned[r] = samples.numeric(static_cast<int>(r * numeric + c));
      columns.push_back(std::move(column));
    }
    for (size_t c = 0; c < categorical; ++c) {
      Column column;
      column.name = samples.categorical_columns(static_cast<int>(c));
      column.numeric = false;
      for (size_t r = 0; r < rows; ++r) {
        column.strings.push_back(samples.categorical(static_cast<int>(r * categorical + c)));
      }
      columns.push_back(std::move(column));
    }
    tables.push_back(Table::FromColumns(std::move(columns), rows));
    source = "samples";
  } else if (!request->dataset().empty()) {
    auto read = ReadDataset(request->dataset(), &source);
    if (!read.ok()) return ToGrpcStatus(read.status());
    tables = std::move(*read);
    source = "dataset " + source;
  } else {
    return Invalid("source: a dataset (NAME@REF) or samples");
  }
  // Columns by name across the files; a column must be numeric in all of them or in none.
  std::vector<std::string> names;
  for (const Column& c : tables.front()->columns()) names.push_back(c.name);
  for (const auto& table : tables) {
    for (const std::string& name : names) {
      if (table->Find(name) == nullptr)
        return Invalid("column " + name + " is missing from a file");
    }
  }
  std::vector<std::string> forced(request->categorical().begin(), request->categorical().end());
  for (const std::string& name : forced) {
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      return Invalid("categorical: no column " + name);
    }
  }
  v1::Profile profile;
  profile.set_name(request->name());
  profile.set_source(source);
  uint64_t rows = 0;
  for (const auto& table : tables) rows += table->rows();
  profile.set_rows(rows);
  std::vector<v1::FeatureProfile> features(names.size());
  ParallelFor(names.size(), [&](size_t i) {
    bool numeric = std::find(forced.begin(), forced.end(), names[i]) == forced.end();
    for (const auto& table : tables) numeric = numeric && table->Find(names[i])->numeric;
    if (numeric) {
      std::vector<double> values;
      values.reserve(rows);
      for (const auto& table : tables) {
        const Column* c = table->Find(names[i]);
        values.insert(values.end(), c->values, c->values + table->rows());
      }
      features[i] = NumericProfile(names[i], std::move(values));
    } else {
      std::vector<std::string> values;
      for (const auto& table : tables) {
        const Column* c = table->Find(names[i]);
        if (c->numeric) {
          for (uint64_t r = 0; r < table->rows(); ++r) {
            values.push_back(std::isnan(c->values[r]) ? "" : FormatDouble(c->values[r]));
          }
        } else {
          values.insert(values.end(), c->strings.begin(), c->strings.end());
        }
      }
      features[i] = CategoricalProfile(names[i], values, request->max_categories());
    }
  });
  for (auto& f : features) *profile.add_features() = std::move(f);
  std::lock_guard lock(mu_);
  auto latest = ReadProfile(request->name(), 0);
  profile.set_version(latest.ok() ? latest->version() + 1 : 1);
  profile.set_create_time_ms(NowMs());
  rocksdb::WriteBatch batch;
  batch.Put(profiles_cf_, VersionKey(profile.name(), profile.version()),
            profile.SerializeAsString());
  absl::Status written = db_->WriteSync(&batch);
  if (!written.ok()) return ToGrpcStatus(written);
  *response = std::move(profile);
  return grpc::Status::OK;
}

grpc::Status MonitoringServiceImpl::GetProfile(grpc::ServerContext*,
                                               const v1::GetProfileRequest* request,
                                               v1::Profile* response) {
  auto profile = ReadProfile(request->name(), request->version());
  if (!profile.ok()) return ToGrpcStatus(profile.status());
  *response = std::move(*profile);
  return grpc::Status::OK;
}

grpc::Status MonitoringServiceImpl::ListProfiles(grpc::ServerContext*,
                                                 const v1::ListProfilesRequest*,
                                                 v1::ListProfilesResponse* response) {
  std::map<std::string, v1::Profile> latest;
  absl::Status status = db_->ScanProto<v1::Profile>(
      profiles_cf_, "", {}, [&](std::string_view, v1::Profile& profile) {
        profile.clear_features();
        latest[profile.name()] = std::move(profile);  // versions ascend: the last one stays
        return true;
      });
  if (!status.ok()) return ToGrpcStatus(status);
  for (auto& [name, profile] : latest) *response->add_profiles() = std::move(profile);
  return grpc::Status::OK;
}

// ---------------------------------------------------------------------------------------------
// Monitors

grpc::Status MonitoringServiceImpl::CreateMonitor(grpc::ServerContext*, const v1::Monitor* request,
                                                  v1::Monitor* response) {
  v1::Monitor monitor = *request;
  if (absl::Status name = ValidateName(NameKind::kIdentifier, "name", monitor.name()); !name.ok()) {
    return ToGrpcStatus(name);
  }
  auto profile = ReadProfile(monitor.profile(), monitor.profile_version());
  if (!profile.ok()) return ToGrpcStatus(profile.status());
  monitor.set_profile_version(profile->version());
  if (monitor.features().empty()) {
    for (const auto& f : profile->features()) monitor.add_features(f.name());
  }
  auto state = std::make_shared<State>();
  state->profile = std::move(*profile);
  for (const auto& name : monitor.features()) {
    int found = -1;
    for (int i = 0; i < state->profile.features_size(); ++i) {
      if (state->profile.features(i).name() == name) found = i;
    }
    if (found < 0) return Invalid("features: " + name + " is not a feature of the profile");
    state->features.push_back(found);
  }
  for (const auto& test : monitor.tests()) {
    if (test.kind() == v1::DriftTest::KIND_UNSPECIFIED ||
        !v1::DriftTest::Kind_IsValid(test.kind())) {
      return Invalid("tests: kind is PSI, KS, CHI_SQUARED or JENSEN_SHANNON");
    }
    if (test.threshold() < 0) return Invalid("tests: a threshold is not negative");
  }
  if (monitor.drift_share_threshold() == 0) monitor.set_drift_share_threshold(0.5);
  if (monitor.drift_share_threshold() < 0 || monitor.drift_share_threshold() > 1) {
    return Invalid("drift_share_threshold: in (0, 1]");
  }
  if (monitor.window_rows() < 0 || monitor.window_ms() < 0) return Invalid("window: not negative");
  if (monitor.window_rows() == 0 && monitor.window_ms() == 0) monitor.set_window_rows(10000);
  if (!monitor.task().empty() && monitor.task() != "classification" &&
      monitor.task() != "regression") {
    return Invalid("task: classification or regression");
  }
  if (monitor.cooldown_ms() == 0) monitor.set_cooldown_ms(3600 * 1000);
  if (monitor.label_ttl_ms() < 0) return Invalid("label_ttl_ms: not negative");
  if (monitor.label_ttl_ms() == 0) monitor.set_label_ttl_ms(int64_t{7} * 24 * 3600 * 1000);
  if (!monitor.model().empty() && metadata_ != nullptr) {
    // The model version now behind the name or alias.
    auto registry = metadata::v1::ModelRegistry::NewStub(metadata_);
    metadata::v1::GetModelVersionRequest get;
    get.set_name(monitor.model());
    char* end = nullptr;
    int64_t number = std::strtoll(monitor.model_version().c_str(), &end, 10);
    if (!monitor.model_version().empty() && *end == '\0') {
      get.set_version(number);
    } else {
      get.set_alias(monitor.model_version().empty() ? "latest" : monitor.model_version());
    }
    metadata::v1::ModelVersion version;
    grpc::ClientContext context;
    grpc::Status found = registry->GetModelVersion(&context, get, &version);
    if (found.error_code() == grpc::StatusCode::NOT_FOUND) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "model: " + found.error_message());
    }
    if (found.ok()) monitor.set_resolved_version(version.version());
  }
  monitor.set_create_time_ms(NowMs());
  state->monitor = monitor;
  for (int f : state->features) state->windows.emplace_back(&state->profile.features(f));
  state->tests.assign(monitor.tests().begin(), monitor.tests().end());
  state->Reset(monitor.create_time_ms());
  std::lock_guard lock(mu_);
  if (states_.contains(monitor.name())) {
    return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "monitor " + monitor.name() + " exists");
  }
  rocksdb::WriteBatch batch;
  batch.Put(monitors_cf_, monitor.name(), monitor.SerializeAsString());
  absl::Status written = db_->WriteSync(&batch);
  if (!written.ok()) return ToGrpcStatus(written);
  states_[monitor.name()] = state;
  InitSeries(monitor);
  *response = monitor;
  return grpc::Status::OK;
}

grpc::Status MonitoringServiceImpl::GetMonitor(grpc::ServerContext*,
                                               const v1::GetMonitorRequest* request,
                                               v1::Monitor* response) {
  auto state = Find(request->name());
  if (!state.ok()) return ToGrpcStatus(state.status());
  std::lock_guard lock((*state)->mu);
  *response = (*state)->monitor;
  return grpc::Status::OK;
}

grpc::Status MonitoringServiceImpl::ListMonitors(grpc::ServerContext*,
                                                 const v1::ListMonitorsRequest*,
                                                 v1::ListMonitorsResponse* response) {
  std::lock_guard lock(mu_);
  for (const auto& [name, state] : states_) *response->add_monitors() = state->monitor;
  return grpc::Status::OK;
}

// ---------------------------------------------------------------------------------------------
// Windows and reports

void MonitoringServiceImpl::PersistWindow(State& state, rocksdb::WriteBatch* batch) {
  internal::WindowState saved = state.window;
  std::vector<uint64_t> counts;
  for (const FeatureWindow& w : state.windows) {
    w.Save(&counts);
    saved.add_features()->mutable_counts()->Add(counts.begin(), counts.end());
  }
  batch->Put(windows_cf_, state.monitor.name(), saved.SerializeAsString());
}

void MonitoringServiceImpl::DropExpiredPredictions(const State& state, int64_t now,
                                                   rocksdb::WriteBatch* batch) {
  const std::string prefix = state.monitor.name() + '\0';
  size_t dropped = 0;
  db_->ScanPrefix(
         expiry_cf_, prefix, {},
         [&](std::string_view key, std::string_view) {
           if (key.size() < prefix.size() + 8) return true;
           const int64_t expires =
               static_cast<int64_t>(ReadBigEndian64(key.substr(prefix.size(), 8)));
           if (expires >= now || dropped >= 100000) return false;
           batch->Delete(expiry_cf_, key);
           // The prediction goes only if it is the one this entry was made for (a request id that
           // came again has a later expiry).
           std::string prediction_key = prefix + std::string(key.substr(prefix.size() + 8));
           auto value = db_->Get(predictions_cf_, prediction_key);
           if (value.ok() && value->has_value() && (*value)->size() == 2 * sizeof(double)) {
             int64_t stored = 0;
             std::memcpy(&stored, (*value)->data() + sizeof(double), sizeof(stored));
             if (stored == expires) batch->Delete(predictions_cf_, prediction_key);
           }
           ++dropped;
           return true;
         })
      .IgnoreError();
}

v1::DriftReport MonitoringServiceImpl::CloseWindow(State& state, int64_t now) {
  v1::DriftReport report;
  report.set_source("window");
  report.set_start_time_ms(state.window.start_time_ms());
  report.set_end_time_ms(now);
  report.set_rows(state.window.rows());
  for (const FeatureWindow& w : state.windows) *report.add_features() = w.Evaluate(state.tests);
  report.set_labeled(state.window.labeled());
  if (state.window.labeled() > 0) {
    double n = static_cast<double>(state.window.labeled());
    report.set_accuracy(static_cast<double>(state.window.correct()) / n);
    report.set_rmse(std::sqrt(state.window.squared_error() / n));
    report.set_mae(state.window.abs_error() / n);
  }
  Publish(state, &report);
  state.Reset(now);
  return report;
}

void MonitoringServiceImpl::Judge(const State& state, v1::DriftReport* report) {
  int evaluated = 0, drifted = 0;
  for (const auto& feature : report->features()) {
    if (feature.tests_size() == 0) continue;
    ++evaluated;
    drifted += feature.drifted();
  }
  report->set_drift_share(evaluated == 0 ? 0 : static_cast<double>(drifted) / evaluated);
  report->set_drifted(evaluated > 0 &&
                      report->drift_share() >= state.monitor.drift_share_threshold());
}

namespace {
std::string ModelLabel(const v1::Monitor& monitor) {
  return monitor.model().empty() ? monitor.name() : monitor.model();
}
}  // namespace

void MonitoringServiceImpl::InitSeries(const v1::Monitor& monitor) {
  // Every series exists from the start at 0, so that increase() sees a monitor's first alert.
  std::map<std::string, std::string> by_monitor = {{"monitor", monitor.name()}};
  samples_.Add(by_monitor);
  alerts_.Add(by_monitor);
  reports_.Add(by_monitor);
  std::map<std::string, std::string> labels = {{"model", ModelLabel(monitor)},
                                               {"monitor", monitor.name()}};
  drift_share_threshold_.Add(labels).Set(monitor.drift_share_threshold());
  drifted_.Add(labels);
}

void MonitoringServiceImpl::ExportGauges(const v1::Monitor& monitor,
                                         const v1::DriftReport& report) {
  const std::string model = ModelLabel(monitor);
  for (const auto& feature : report.features()) {
    std::map<std::string, std::string> labels = {
        {"model", model}, {"monitor", monitor.name()}, {"feature", feature.name()}};
    for (const auto& test : feature.tests()) {
      switch (test.kind()) {
        case v1::DriftTest::PSI:
          psi_.Add(labels).Set(test.statistic());
          break;
        case v1::DriftTest::KS:
          ks_.Add(labels).Set(test.statistic());
          break;
        case v1::DriftTest::JENSEN_SHANNON:
          js_.Add(labels).Set(test.statistic());
          break;
        case v1::DriftTest::CHI_SQUARED:
          chi2_p_.Add(labels).Set(test.p_value());
          break;
        default:
          break;
      }
    }
  }
  std::map<std::string, std::string> labels = {{"model", model}, {"monitor", monitor.name()}};
  drift_share_.Add(labels).Set(report.drift_share());
  drifted_.Add(labels).Set(report.drifted() ? 1 : 0);
  if (report.labeled() > 0 && monitor.task() == "classification") {
    accuracy_.Add(labels).Set(report.accuracy());
  } else if (report.labeled() > 0 && !monitor.task().empty()) {
    rmse_.Add(labels).Set(report.rmse());
    mae_.Add(labels).Set(report.mae());
  }
}

void MonitoringServiceImpl::Publish(State& state, v1::DriftReport* report) {
  const v1::Monitor& monitor = state.monitor;
  report->set_id(NewId());
  report->set_monitor(monitor.name());
  Judge(state, report);
  ExportGauges(monitor, *report);
  reports_.Add({{"monitor", monitor.name()}}).Increment();
  std::string reason;
  if (report->drifted()) {
    reason = StrCat("drift share ", Short(report->drift_share()),
                    " >= ", Short(monitor.drift_share_threshold()));
  }
  if (report->labeled() > 0 && !monitor.task().empty()) {
    if (monitor.task() == "classification") {
      report->set_degraded(report->accuracy() < monitor.baseline() - monitor.max_degradation());
      if (report->degraded()) {
        reason += StrCat(reason.empty() ? "" : "; ", "accuracy ", Short(report->accuracy()),
                         " below baseline ", Short(monitor.baseline()), " - ",
                         Short(monitor.max_degradation()));
      }
    } else {
      report->set_degraded(report->rmse() > monitor.baseline() + monitor.max_degradation());
      if (report->degraded()) {
        reason +=
            StrCat(reason.empty() ? "" : "; ", "rmse ", Short(report->rmse()), " above baseline ",
                   Short(monitor.baseline()), " + ", Short(monitor.max_degradation()));
      }
    }
  }
  rocksdb::WriteBatch batch;
  std::string key = monitor.name() + '\0';
  AppendBigEndian64(&key, static_cast<uint64_t>(report->end_time_ms()));
  key += report->id();
  batch.Put(reports_cf_, key, report->SerializeAsString());
  if (!reason.empty()) {
    v1::Alert alert;
    alert.set_id(NewId());
    alert.set_monitor(monitor.name());
    alert.set_report_id(report->id());
    alert.set_time_ms(NowMs());
    alert.set_reason(reason);
    alerts_.Add({{"monitor", monitor.name()}}).Increment();
    // One retraining per episode: none while the cooldown after the last one runs.
    if (!monitor.retrain_pipeline_yaml().empty() && scheduler_ != nullptr &&
        (state.window.last_retrain_ms() == 0 ||
         alert.time_ms() - state.window.last_retrain_ms() >= monitor.cooldown_ms())) {
      auto stub = scheduler::v1::SchedulerService::NewStub(scheduler_);
      scheduler::v1::SubmitPipelineRequest submit;
      submit.set_spec_yaml(monitor.retrain_pipeline_yaml());
      for (const auto& [k, v] : monitor.retrain_params()) (*submit.mutable_params())[k] = v;
      submit.set_queue(monitor.retrain_queue());
      submit.set_request_id(alert.id());
      scheduler::v1::PipelineRun run;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      grpc::Status submitted = stub->SubmitPipeline(&context, submit, &run);
      if (submitted.ok()) {
        alert.set_pipeline_run_id(run.id());
        state.window.set_last_retrain_ms(alert.time_ms());
      } else {
        LogWarning("retrain_submit_failed",
                   {{"monitor", monitor.name()}, {"error", submitted.error_message()}});
      }
    }
    batch.Put(alerts_cf_, alert.id(), alert.SerializeAsString());
  }
  if (!db_->WriteSync(&batch).ok()) LogError("report_write_failed", {{"monitor", monitor.name()}});
}

grpc::Status MonitoringServiceImpl::IngestSamples(grpc::ServerContext*,
                                                  grpc::ServerReader<v1::SampleBatch>* reader,
                                                  v1::IngestSamplesResponse* response) {
  v1::SampleBatch batch;
  std::shared_ptr<State> state;
  std::vector<int> numeric_column, categorical_column;  // per watched feature; -1: absent
  std::string columns_seen;
  rocksdb::WriteBatch predictions;
  uint64_t rows_total = 0;
  while (reader->Read(&batch)) {
    if (state == nullptr) {
      auto found = Find(batch.monitor());
      if (!found.ok()) return ToGrpcStatus(found.status());
      state = *found;
    } else if (!batch.monitor().empty() && batch.monitor() != state->monitor.name()) {
      return Invalid("one IngestSamples call feeds one monitor");
    }
    size_t numeric = static_cast<size_t>(batch.numeric_columns_size());
    size_t categorical = static_cast<size_t>(batch.categorical_columns_size());
    std::string columns = StrCat(std::to_string(numeric), ":", std::to_string(categorical));
    for (const auto& c : batch.numeric_columns()) columns += "," + c;
    for (const auto& c : batch.categorical_columns()) columns += ";" + c;
    if (columns != columns_seen && (numeric > 0 || categorical > 0)) {
      // Map the batch's columns to the watched features (a later batch may repeat them or not).
      numeric_column.assign(state->features.size(), -1);
      categorical_column.assign(state->features.size(), -1);
      for (size_t f = 0; f < state->features.size(); ++f) {
        const v1::FeatureProfile& profile = state->profile.features(state->features[f]);
        for (size_t c = 0; c < numeric; ++c) {
          if (batch.numeric_columns(static_cast<int>(c)) == profile.name()) {
            numeric_column[f] = static_cast<int>(c);
          }
        }
        for (size_t c = 0; c < categorical; ++c) {
          if (batch.categorical_columns(static_cast<int>(c)) == profile.name()) {
            categorical_column[f] = static_cast<int>(c);
          }
        }
        bool numeric_feature = profile.kind() == v1::NUMERIC;
        if ((numeric_feature ? numeric_column[f] : categorical_column[f]) < 0) {
          return Invalid(StrCat("feature ", profile.name(), " is missing from the ",
                                numeric_feature ? "numeric" : "categorical", " columns"));
        }
      }
      columns_seen = columns;
    } else if (columns_seen.empty()) {
      return Invalid("the first batch names its columns");
    }
    size_t rows = numeric > 0       ? batch.numeric_size() / numeric
                  : categorical > 0 ? batch.categorical_size() / categorical
                                    : 0;
    if (rows * numeric != static_cast<size_t>(batch.numeric_size()) ||
        rows * categorical != static_cast<size_t>(batch.categorical_size()) ||
        (batch.request_ids_size() > 0 && static_cast<size_t>(batch.request_ids_size()) != rows) ||
        (batch.predictions_size() > 0 && static_cast<size_t>(batch.predictions_size()) != rows)) {
      return Invalid("values must fill rows x columns; request_ids and predictions one per row");
    }
    std::lock_guard lock(state->mu);
    const v1::Monitor& monitor = state->monitor;
    size_t done = 0;
    while (done < rows) {
      int64_t now = NowMs();
      if (monitor.window_ms() > 0 && state->window.rows() > 0 &&
          now - state->window.start_time_ms() >= monitor.window_ms()) {
        *response->add_closed() = CloseWindow(*state, now);
      }
      size_t take = rows - done;
      if (monitor.window_rows() > 0) {
        take = std::min<size_t>(take,
                                static_cast<size_t>(monitor.window_rows()) - state->window.rows());
      }
      for (size_t f = 0; f < state->features.size(); ++f) {
        FeatureWindow& window = state->windows[f];
        if (numeric_column[f] >= 0 && window.profile().kind() == v1::NUMERIC) {
          window.AddNumeric(
              batch.numeric().data() + done * numeric + static_cast<size_t>(numeric_column[f]),
              take, numeric);
        } else {
          for (size_t r = done; r < done + take; ++r) {
            window.AddCategory(batch.categorical(
                static_cast<int>(r * categorical + static_cast<size_t>(categorical_column[f]))));
          }
        }
      }
      const int64_t expires = NowMs() + monitor.label_ttl_ms();
      for (size_t r = done; r < done + take && batch.request_ids_size() > 0; ++r) {
        if (batch.predictions_size() == 0) break;
        double prediction = batch.predictions(static_cast<int>(r));
        const std::string& request_id = batch.request_ids(static_cast<int>(r));
        std::string value(sizeof(prediction) + sizeof(expires), '\0');
        std::memcpy(value.data(), &prediction, sizeof(prediction));
        std::memcpy(value.data() + sizeof(prediction), &expires, sizeof(expires));
        predictions.Put(predictions_cf_, monitor.name() + '\0' + request_id, value);
        std::string expiry = monitor.name() + '\0';
        AppendBigEndian64(&expiry, static_cast<uint64_t>(expires));
        predictions.Put(expiry_cf_, expiry + request_id, "");
      }
      state->window.set_rows(state->window.rows() + take);
      done += take;
      if (monitor.window_rows() > 0 &&
          state->window.rows() >= static_cast<uint64_t>(monitor.window_rows())) {
        *response->add_closed() = CloseWindow(*state, NowMs());
      }
    }
    rows_total += rows;
  }
  // A batch that did not parse ends the reads: what came before it is kept (as for any failing
  // batch), and the call says where it stopped.
  std::optional<std::string> parse_error = TakeParseError();
  auto finish = [&]() {
    if (!parse_error) return grpc::Status::OK;
    return ToGrpcStatus(absl::InvalidArgumentError(
        StrCat("after ", std::to_string(rows_total), " rows: ", *parse_error)));
  };
  if (state == nullptr) return finish();
  samples_.Add({{"monitor", state->monitor.name()}}).Increment(static_cast<double>(rows_total));
  response->set_rows(rows_total);
  // Acknowledged means durable: the open window (and the predictions) reach the disk now.
  std::lock_guard lock(state->mu);
  // Expired predictions go first, so that a request id that came again keeps its new one.
  rocksdb::WriteBatch expired;
  DropExpiredPredictions(*state, NowMs(), &expired);
  if (expired.Count() > 0) {
    absl::Status dropped = db_->Write(&expired);
    if (!dropped.ok()) return ToGrpcStatus(dropped);
  }
  PersistWindow(*state, &predictions);
  absl::Status written = db_->WriteSync(&predictions);
  if (!written.ok()) return ToGrpcStatus(written);
  return finish();
}

grpc::Status MonitoringServiceImpl::IngestFeedback(grpc::ServerContext*,
                                                   const v1::FeedbackBatch* request,
                                                   v1::IngestFeedbackResponse* response) {
  auto found = Find(request->monitor());
  if (!found.ok()) return ToGrpcStatus(found.status());
  if (request->request_ids_size() != request->labels_size()) {
    return Invalid("one label per request id");
  }
  State& state = **found;
  std::lock_guard lock(state.mu);
  rocksdb::WriteBatch batch;
  for (int i = 0; i < request->request_ids_size(); ++i) {
    std::string key = state.monitor.name() + '\0' + request->request_ids(i);
    auto value = db_->Get(predictions_cf_, key);
    if (!value.ok() || !value->has_value() ||
        ((*value)->size() != sizeof(double) && (*value)->size() != 2 * sizeof(double))) {
      response->set_unmatched(response->unmatched() + 1);
      continue;
    }
    double prediction;
    std::memcpy(&prediction, (*value)->data(), sizeof(prediction));
    int64_t expires = 0;
    if ((*value)->size() == 2 * sizeof(double)) {
      std::memcpy(&expires, (*value)->data() + sizeof(prediction), sizeof(expires));
    }
    if (expires != 0 && expires < NowMs()) {  // too late: as if it had been dropped
      batch.Delete(predictions_cf_, key);
      response->set_unmatched(response->unmatched() + 1);
      continue;
    }
    double label = request->labels(i);
    state.window.set_labeled(state.window.labeled() + 1);
    state.window.set_correct(state.window.correct() + (prediction == label ? 1 : 0));
    state.window.set_abs_error(state.window.abs_error() + std::fabs(prediction - label));
    state.window.set_squared_error(state.window.squared_error() +
                                   (prediction - label) * (prediction - label));
    batch.Delete(predictions_cf_, key);  // one label per request
    response->set_matched(response->matched() + 1);
  }
  PersistWindow(state, &batch);
  absl::Status written = db_->WriteSync(&batch);
  if (!written.ok()) return ToGrpcStatus(written);
  return grpc::Status::OK;
}

grpc::Status MonitoringServiceImpl::EvaluateDataset(grpc::ServerContext*,
                                                    const v1::EvaluateDatasetRequest* request,
                                                    v1::DriftReport* response) {
  std::shared_ptr<State> found;
  if (!request->monitor().empty()) {
    auto monitor = Find(request->monitor());
    if (!monitor.ok()) return ToGrpcStatus(monitor.status());
    found = *monitor;
  } else if (!request->profile().empty()) {
    // A one-off comparison: every feature of the profile, the requested tests.
    found = std::make_shared<State>();
    auto profile = ReadProfile(request->profile(), request->profile_version());
    if (!profile.ok()) return ToGrpcStatus(profile.status());
    found->profile = std::move(*profile);
    for (int i = 0; i < found->profile.features_size(); ++i) found->features.push_back(i);
    found->tests.assign(request->tests().begin(), request->tests().end());
    found->monitor.set_name("profile " + found->profile.name());
    found->monitor.set_drift_share_threshold(0.5);
  } else {
    return Invalid("monitor or profile: what to compare the dataset against");
  }
  State& state = *found;
  std::string resolved;
  auto tables = ReadDataset(request->dataset(), &resolved);
  if (!tables.ok()) return ToGrpcStatus(tables.status());
  // A window per watched feature over every file, features spread over the cores.
  std::vector<std::unique_ptr<FeatureWindow>> windows(state.features.size());
  std::string missing;
  for (size_t f = 0; f < state.features.size(); ++f) {
    const std::string& name = state.profile.features(state.features[f]).name();
    for (const auto& table : *tables) {
      if (table->Find(name) == nullptr) missing = name;
    }
  }
  if (!missing.empty()) return Invalid("dataset " + resolved + " has no column " + missing);
  ParallelFor(state.features.size(), [&](size_t f) {
    const v1::FeatureProfile& profile = state.profile.features(state.features[f]);
    windows[f] = std::make_unique<FeatureWindow>(&profile);
    for (const auto& table : *tables) {
      const Column* column = table->Find(profile.name());
      if (profile.kind() == v1::NUMERIC && column->numeric) {
        windows[f]->AddNumeric(column->values, table->rows());
      } else if (column->numeric) {
        for (uint64_t r = 0; r < table->rows(); ++r) {
          windows[f]->AddCategory(std::isnan(column->values[r]) ? ""
                                                                : FormatDouble(column->values[r]));
        }
      } else if (profile.kind() == v1::CATEGORICAL) {
        for (const std::string& v : column->strings) windows[f]->AddCategory(v);
      } else {
        for (const std::string& v : column->strings) {
          char* end = nullptr;
          double value = std::strtod(v.c_str(), &end);
          windows[f]->AddNumeric(v.empty() || *end != '\0' ? std::nan("") : value);
        }
      }
    }
  });
  v1::DriftReport report;
  report.set_source("dataset " + resolved);
  report.set_start_time_ms(NowMs());
  report.set_end_time_ms(report.start_time_ms());
  for (const auto& table : *tables) report.set_rows(report.rows() + table->rows());
  std::vector<v1::FeatureDrift> drifts(windows.size());
  ParallelFor(windows.size(), [&](size_t f) { drifts[f] = windows[f]->Evaluate(state.tests); });
  for (auto& d : drifts) *report.add_features() = std::move(d);
  if (request->monitor().empty()) {
    Judge(state, &report);
    *response = std::move(report);
    return grpc::Status::OK;
  }
  std::lock_guard lock(state.mu);
  Publish(state, &report);
  *response = std::move(report);
  return grpc::Status::OK;
}

grpc::Status MonitoringServiceImpl::ListReports(grpc::ServerContext*,
                                                const v1::ListReportsRequest* request,
                                                v1::ListReportsResponse* response) {
  auto found = Find(request->monitor());
  if (!found.ok()) return ToGrpcStatus(found.status());
  int limit = request->page_size() > 0 ? std::min(request->page_size(), 1000) : 20;
  absl::Status status = db_->ScanProtoReverse<v1::DriftReport>(
      reports_cf_, request->monitor() + '\0', {}, [&](std::string_view, v1::DriftReport& report) {
        *response->add_reports() = std::move(report);
        return response->reports_size() < limit;
      });
  return ToGrpcStatus(status);
}

grpc::Status MonitoringServiceImpl::ListAlerts(grpc::ServerContext*,
                                               const v1::ListAlertsRequest* request,
                                               v1::ListAlertsResponse* response) {
  std::vector<v1::Alert> alerts;
  absl::Status status =
      db_->ScanProto<v1::Alert>(alerts_cf_, "", {}, [&](std::string_view, v1::Alert& alert) {
        if ((request->monitor().empty() || alert.monitor() == request->monitor()) &&
            !(request->unacknowledged_only() && alert.acknowledged())) {
          alerts.push_back(std::move(alert));
        }
        return true;
      });
  if (!status.ok()) return ToGrpcStatus(status);
  // Ids are time-ordered: newest first.
  for (auto it = alerts.rbegin(); it != alerts.rend(); ++it) *response->add_alerts() = *it;
  return grpc::Status::OK;
}

grpc::Status MonitoringServiceImpl::AcknowledgeAlert(grpc::ServerContext*,
                                                     const v1::AcknowledgeAlertRequest* request,
                                                     v1::Alert* response) {
  std::lock_guard lock(alerts_mu_);
  auto value = db_->GetProto<v1::Alert>(alerts_cf_, request->id());
  if (!value.ok()) return ToGrpcStatus(value.status());
  if (!value->has_value()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "alert " + request->id() + " not found");
  }
  v1::Alert alert = **value;
  if (!alert.acknowledged()) {
    alert.set_acknowledged(true);
    alert.set_acknowledged_by(request->by());
    rocksdb::WriteBatch batch;
    batch.Put(alerts_cf_, alert.id(), alert.SerializeAsString());
    absl::Status written = db_->WriteSync(&batch);
    if (!written.ok()) return ToGrpcStatus(written);
  }
  *response = std::move(alert);
  return grpc::Status::OK;
}

}  // namespace mlops::monitoring
