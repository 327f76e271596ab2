#include "services/monitoring/drift_engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::monitoring {
namespace {

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

// Four significant digits, for messages.
std::string Short(double value) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", value);
  return buf;
}

}  // namespace

absl::Status MonitorState::Init(v1::Monitor m, v1::Profile p, v1::Schema s) {
  monitor = std::move(m);
  profile = std::move(p);
  schema = std::move(s);
  validator.reset();
  if (!monitor.schema().empty()) {
    validator = std::make_unique<Validator>(schema, ValidatorOptions{false, false});
  }
  features.clear();
  for (const auto& name : monitor.features()) {
    int found = -1;
    for (int i = 0; i < profile.features_size(); ++i) {
      if (profile.features(i).name() == name) found = i;
    }
    if (found < 0) {
      return absl::InvalidArgumentError("features: " + name + " is not a feature of the profile");
    }
    features.push_back(found);
  }
  windows.clear();
  for (int f : features) windows.emplace_back(&profile.features(f));
  tests.assign(monitor.tests().begin(), monitor.tests().end());
  return absl::OkStatus();
}

void MonitorState::Reset(int64_t now) {
  for (auto& w : windows) w.Clear();
  if (validator != nullptr) {
    validator = std::make_unique<Validator>(schema, ValidatorOptions{false, false});
  }
  int64_t last_retrain = window.last_retrain_ms();
  window.Clear();
  window.set_start_time_ms(now);
  window.set_last_retrain_ms(last_retrain);
}

internal::WindowState MonitorState::Save() const {
  internal::WindowState saved = window;
  std::vector<uint64_t> counts;
  for (const FeatureWindow& w : windows) {
    w.Save(&counts);
    saved.add_features()->mutable_counts()->Add(counts.begin(), counts.end());
  }
  if (validator != nullptr) *saved.mutable_validation() = validator->Save();
  return saved;
}

void MonitorState::Load(const internal::WindowState& saved) {
  window = saved;
  for (size_t i = 0; i < windows.size() && i < static_cast<size_t>(window.features_size()); ++i) {
    const auto& counts = window.features(static_cast<int>(i)).counts();
    windows[i].Load({counts.begin(), counts.end()});
  }
  window.clear_features();
  if (validator != nullptr) validator->Load(window.validation());
  window.clear_validation();
}

absl::Status BatchColumns::Map(const MonitorState& state, const v1::SampleBatch& batch) {
  const size_t numeric = static_cast<size_t>(batch.numeric_columns_size());
  const size_t categorical = static_cast<size_t>(batch.categorical_columns_size());
  std::string columns = StrCat(std::to_string(numeric), ":", std::to_string(categorical));
  for (const auto& c : batch.numeric_columns()) columns += "," + c;
  for (const auto& c : batch.categorical_columns()) columns += ";" + c;
  if (columns != seen_ && (numeric > 0 || categorical > 0)) {
    numeric_.assign(state.features.size(), -1);
    categorical_.assign(state.features.size(), -1);
    for (size_t f = 0; f < state.features.size(); ++f) {
      const v1::FeatureProfile& profile = state.profile.features(state.features[f]);
      for (size_t c = 0; c < numeric; ++c) {
        if (batch.numeric_columns(static_cast<int>(c)) == profile.name()) {
          numeric_[f] = static_cast<int>(c);
        }
      }
      for (size_t c = 0; c < categorical; ++c) {
        if (batch.categorical_columns(static_cast<int>(c)) == profile.name()) {
          categorical_[f] = static_cast<int>(c);
        }
      }
      bool numeric_feature = profile.kind() == v1::NUMERIC;
      if ((numeric_feature ? numeric_[f] : categorical_[f]) < 0) {
        seen_.clear();
        return absl::InvalidArgumentError(
            StrCat("feature ", profile.name(), " is missing from the ",
                   numeric_feature ? "numeric" : "categorical", " columns"));
      }
    }
    seen_ = columns;
    numeric_names_.assign(batch.numeric_columns().begin(), batch.numeric_columns().end());
    categorical_names_.assign(batch.categorical_columns().begin(),
                              batch.categorical_columns().end());
    numeric_width_ = numeric;
    categorical_width_ = categorical;
  } else if (seen_.empty()) {
    return absl::InvalidArgumentError("the first batch names its columns");
  }
  rows_ = numeric > 0              ? batch.numeric_size() / numeric
          : categorical > 0        ? batch.categorical_size() / categorical
          : numeric_width_ > 0     ? batch.numeric_size() / numeric_width_
          : categorical_width_ > 0 ? batch.categorical_size() / categorical_width_
                                   : 0;
  if (rows_ * numeric_width_ != static_cast<size_t>(batch.numeric_size()) ||
      rows_ * categorical_width_ != static_cast<size_t>(batch.categorical_size()) ||
      (batch.request_ids_size() > 0 && static_cast<size_t>(batch.request_ids_size()) != rows_) ||
      (batch.predictions_size() > 0 && static_cast<size_t>(batch.predictions_size()) != rows_)) {
    return absl::InvalidArgumentError(
        "values must fill rows x columns; request_ids and predictions one per row");
  }
  return absl::OkStatus();
}

void BatchColumns::AddRows(MonitorState& state, const v1::SampleBatch& batch, size_t begin,
                           size_t n) const {
  for (size_t f = 0; f < state.features.size(); ++f) {
    FeatureWindow& window = state.windows[f];
    if (numeric_[f] >= 0 && window.profile().kind() == v1::NUMERIC) {
      window.AddNumeric(
          batch.numeric().data() + begin * numeric_width_ + static_cast<size_t>(numeric_[f]), n,
          numeric_width_);
    } else {
      for (size_t r = begin; r < begin + n; ++r) {
        window.AddCategory(batch.categorical(
            static_cast<int>(r * categorical_width_ + static_cast<size_t>(categorical_[f]))));
      }
    }
  }
  if (state.validator == nullptr || n == 0) return;
  // The rows as columns: what the validator reads (a copy, only for a monitor with a schema).
  std::vector<Column> columns(numeric_width_ + categorical_width_);
  for (size_t c = 0; c < numeric_width_; ++c) {
    columns[c].name = numeric_names_[c];
    columns[c].owned.resize(n);
    for (size_t r = 0; r < n; ++r) {
      columns[c].owned[r] = batch.numeric(static_cast<int>((begin + r) * numeric_width_ + c));
    }
  }
  for (size_t c = 0; c < categorical_width_; ++c) {
    Column& column = columns[numeric_width_ + c];
    column.name = categorical_names_[c];
    column.numeric = false;
    column.strings.resize(n);
    for (size_t r = 0; r < n; ++r) {
      column.strings[r] = batch.categorical(static_cast<int>((begin + r) * categorical_width_ + c));
    }
  }
  std::unique_ptr<Table> table = Table::FromColumns(std::move(columns), n);
  state.validator->Add(*table, "window");
}

absl::StatusOr<std::unique_ptr<Table>> TableFromSamples(const v1::SampleBatch& samples) {
  const size_t numeric = static_cast<size_t>(samples.numeric_columns_size());
  const size_t categorical = static_cast<size_t>(samples.categorical_columns_size());
  const size_t rows = numeric > 0       ? samples.numeric_size() / numeric
                      : categorical > 0 ? samples.categorical_size() / categorical
                                        : 0;
  if (rows == 0 || rows * numeric != static_cast<size_t>(samples.numeric_size()) ||
      rows * categorical != static_cast<size_t>(samples.categorical_size())) {
    return absl::InvalidArgumentError(
        "samples: values must fill rows x columns, with at least one row");
  }
  std::vector<Column> columns;
  for (size_t c = 0; c < numeric; ++c) {
    Column column;
    column.name = samples.numeric_columns(static_cast<int>(c));
    column.owned.resize(rows);
    for (size_t r = 0; r < rows; ++r) {
      column.owned[r] = samples.numeric(static_cast<int>(r * numeric + c));
    }
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
  return Table::FromColumns(std::move(columns), rows);
}

absl::StatusOr<std::vector<v1::FeatureProfile>> ProfileTables(
    const std::vector<std::unique_ptr<Table>>& tables, const std::vector<std::string>& categorical,
    int32_t max_categories) {
  if (tables.empty()) return absl::InvalidArgumentError("no table to profile");
  std::vector<std::string> names;
  for (const Column& c : tables.front()->columns()) names.push_back(c.name);
  for (const auto& table : tables) {
    for (const std::string& name : names) {
      if (table->Find(name) == nullptr) {
        return absl::InvalidArgumentError("column " + name + " is missing from a file");
      }
    }
  }
  for (const std::string& name : categorical) {
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      return absl::InvalidArgumentError("categorical: no column " + name);
    }
  }
  uint64_t rows = 0;
  for (const auto& table : tables) rows += table->rows();
  std::vector<v1::FeatureProfile> features(names.size());
  ParallelFor(names.size(), [&](size_t i) {
    bool numeric = std::find(categorical.begin(), categorical.end(), names[i]) == categorical.end();
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
      features[i] = CategoricalProfile(names[i], values, max_categories);
    }
  });
  return features;
}

v1::DriftReport WindowReport(const MonitorState& state, int64_t now) {
  v1::DriftReport report;
  report.set_source("window");
  report.set_monitor(state.monitor.name());
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
  return report;
}

absl::StatusOr<v1::DriftReport> DatasetReport(const MonitorState& state,
                                              const std::vector<std::unique_ptr<Table>>& tables) {
  for (int feature : state.features) {
    const std::string& name = state.profile.features(feature).name();
    for (const auto& table : tables) {
      if (table->Find(name) == nullptr) {
        return absl::InvalidArgumentError("has no column " + name);
      }
    }
  }
  // A window per watched feature over every table, features spread over the cores.
  std::vector<v1::FeatureDrift> drifts(state.features.size());
  ParallelFor(state.features.size(), [&](size_t f) {
    const v1::FeatureProfile& profile = state.profile.features(state.features[f]);
    FeatureWindow window(&profile);
    for (const auto& table : tables) {
      const Column* column = table->Find(profile.name());
      if (profile.kind() == v1::NUMERIC && column->numeric) {
        window.AddNumeric(column->values, table->rows());
      } else if (column->numeric) {
        for (uint64_t r = 0; r < table->rows(); ++r) {
          window.AddCategory(std::isnan(column->values[r]) ? "" : FormatDouble(column->values[r]));
        }
      } else if (profile.kind() == v1::CATEGORICAL) {
        for (const std::string& v : column->strings) window.AddCategory(v);
      } else {
        for (const std::string& v : column->strings) {
          char* end = nullptr;
          double value = std::strtod(v.c_str(), &end);
          window.AddNumeric(v.empty() || *end != '\0' ? std::nan("") : value);
        }
      }
    }
    drifts[f] = window.Evaluate(state.tests);
  });
  v1::DriftReport report;
  for (const auto& table : tables) report.set_rows(report.rows() + table->rows());
  for (auto& d : drifts) *report.add_features() = std::move(d);
  return report;
}

void Judge(const v1::Monitor& monitor, v1::DriftReport* report) {
  int evaluated = 0, drifted = 0;
  for (const auto& feature : report->features()) {
    if (feature.tests_size() == 0) continue;
    ++evaluated;
    drifted += feature.drifted();
  }
  report->set_drift_share(evaluated == 0 ? 0 : static_cast<double>(drifted) / evaluated);
  report->set_drifted(evaluated > 0 && report->drift_share() >= monitor.drift_share_threshold());
}

std::string Assess(const v1::Monitor& monitor, v1::DriftReport* report) {
  Judge(monitor, report);
  std::string reason;
  if (report->drifted()) {
    reason = StrCat("drift share ", Short(report->drift_share()),
                    " >= ", Short(monitor.drift_share_threshold()));
  }
  if (report->anomalies_size() > 0) {
    reason += StrCat(reason.empty() ? "" : "; ", "skew: ", std::to_string(report->anomalies_size()),
                     " anomalies against schema ", monitor.schema(), "@",
                     std::to_string(monitor.schema_version()), " (",
                     report->anomalies(0).description().substr(0, 200), ")");
  }
  if (report->labeled() == 0 || monitor.task().empty()) return reason;
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
  return reason;
}

}  // namespace mlops::monitoring
