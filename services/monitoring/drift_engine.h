// The computation behind monitors, with no storage and no transport: a monitor's open window,
// how production rows enter it, how a window or a whole dataset becomes a drift report, and how
// a report is judged (drift share, degraded performance, the alert's reason).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mlops/monitoring/internal/storage.pb.h"
#include "mlops/monitoring/v1/monitoring.pb.h"
#include "services/monitoring/profile.h"
#include "services/monitoring/table.h"
#include "services/monitoring/validation.h"

namespace mlops::monitoring {

// A monitor with its profile and open window. `mu` orders every change to the window.
struct MonitorState {
  std::mutex mu;
  v1::Monitor monitor;
  v1::Profile profile;
  std::vector<int> features;  // watched: indexes into profile.features
  std::vector<FeatureWindow> windows;
  std::vector<v1::DriftTest> tests;
  internal::WindowState window;  // counts live in `windows`; the rest here
  // With the monitor's schema (monitor.schema): the window's rows checked against it
  // (training/serving skew); keys and row counts are not checked on a stream.
  v1::Schema schema;
  std::unique_ptr<Validator> validator;

  // Watches monitor.features() of `profile` with monitor.tests(), and checks rows against
  // `schema` when the monitor names one. INVALID_ARGUMENT naming a feature the profile lacks.
  absl::Status Init(v1::Monitor monitor, v1::Profile profile, v1::Schema schema = {});
  // Empties the window and starts the next one at `now` (the last retraining time stays).
  void Reset(int64_t now);
  // The open window as stored (the counts included).
  internal::WindowState Save() const;
  // Restores a stored window (counts of features the monitor no longer has are ignored).
  void Load(const internal::WindowState& saved);
};

// Maps the columns of a SampleBatch to a monitor's watched features; a later batch of the same
// call may name its columns again or not.
class BatchColumns {
 public:
  // INVALID_ARGUMENT when the first batch names no columns, a watched feature is missing from
  // its kind's columns, or the values do not fill rows x columns (request_ids and predictions:
  // none or one per row).
  absl::Status Map(const MonitorState& state, const v1::SampleBatch& batch);
  size_t rows() const { return rows_; }
  // Adds rows [begin, begin + n) of `batch` to the windows of `state`, and, when it has a
  // validator, every column of those rows to it.
  void AddRows(MonitorState& state, const v1::SampleBatch& batch, size_t begin, size_t n) const;

 private:
  std::vector<std::string> numeric_names_, categorical_names_;  // the columns last named
  std::string seen_;                                            // the column names last mapped
  std::vector<int> numeric_, categorical_;                      // per watched feature; -1: absent
  size_t numeric_width_ = 0, categorical_width_ = 0, rows_ = 0;
};

// A table from the rows of a SampleBatch (numeric columns first). INVALID_ARGUMENT when the
// values do not fill rows x columns or there is no row.
absl::StatusOr<std::unique_ptr<Table>> TableFromSamples(const v1::SampleBatch& samples);

// The profile of `tables` (columns by name across tables; a column is numeric when it is numeric
// in every table and not named in `categorical`). INVALID_ARGUMENT when a table lacks a column of
// the first or `categorical` names no column. Features are profiled in parallel.
absl::StatusOr<std::vector<v1::FeatureProfile>> ProfileTables(
    const std::vector<std::unique_ptr<Table>>& tables, const std::vector<std::string>& categorical,
    int32_t max_categories);

// The report of the open window of `state`, ending at `now` (not yet judged).
v1::DriftReport WindowReport(const MonitorState& state, int64_t now);

// The report of a whole dataset against the watched features of `state` (features in parallel).
// INVALID_ARGUMENT "has no column X" for a watched feature some table lacks.
absl::StatusOr<v1::DriftReport> DatasetReport(const MonitorState& state,
                                              const std::vector<std::unique_ptr<Table>>& tables);

// Sets the report's drift share and verdict by the monitor's drift_share_threshold.
void Judge(const v1::Monitor& monitor, v1::DriftReport* report);

// Judges the report, sets `degraded` from the labels against the monitor's baseline, and returns
// why an alert is due ("" when none is).
std::string Assess(const v1::Monitor& monitor, v1::DriftReport* report);

}  // namespace mlops::monitoring
