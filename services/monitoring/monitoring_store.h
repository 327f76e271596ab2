// The monitoring core: profiles, monitors and their open windows, drift reports, performance from
// delayed labels, alerts and the retraining they ask for. No transport: the gRPC service
// (monitoring_service.h) is a thin adapter over it, and the peers it needs are gateways
// (gateways.h).
//
// Storage (column families of the monitoring database):
//   mon_profiles     name + \0 + version (8 bytes BE) -> Profile
//   mon_monitors     name -> Monitor
//   mon_windows      monitor -> internal.WindowState (the open window; written synchronously,
//                    with the reports, alerts and predictions of the same call, in one batch when
//                    an IngestSamples, IngestFeedback or EvaluateDataset call is acknowledged)
//   mon_reports      monitor + \0 + end time (8 bytes BE) + id -> DriftReport
//   mon_alerts       id -> Alert (an alert whose retrain is RETRAIN_PENDING is submitted again
//                    after a restart)
//   mon_predictions  monitor + \0 + request id -> prediction (8 bytes) + expiry time (8 bytes), for
//                    labels that come later
//   mon_prediction_expiry  monitor + \0 + expiry time (8 bytes BE) + request id -> "": what to
//                    drop when predictions outlive the monitor's label_ttl_ms
//   mon_schemas      dataset name + \0 + version (8 bytes BE) -> Schema
//   mon_validations  dataset name + \0 + time (8 bytes BE) + id -> ValidationReport
//   mon_evaluations  model name + \0 + version (8 bytes BE) + time (8 bytes BE) + id -> Evaluation
//   mon_evaluation_ids  evaluation id -> its key in mon_evaluations
//
// Every method returns OK or the code its comment names; DATA_LOSS when a stored record does not
// parse, and the storage's own error when a read or write fails.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "mlops/monitoring/v1/monitoring.pb.h"
#include "services/common/db.h"
#include "services/monitoring/drift_engine.h"
#include "services/monitoring/gateways.h"
#include "services/monitoring/monitoring_metrics.h"

namespace mlops::monitoring {

inline constexpr char kProfilesCf[] = "mon_profiles";
inline constexpr char kMonitorsCf[] = "mon_monitors";
inline constexpr char kWindowsCf[] = "mon_windows";
inline constexpr char kReportsCf[] = "mon_reports";
inline constexpr char kAlertsCf[] = "mon_alerts";
inline constexpr char kPredictionsCf[] = "mon_predictions";
inline constexpr char kExpiryCf[] = "mon_prediction_expiry";
inline constexpr char kSchemasCf[] = "mon_schemas";
inline constexpr char kValidationsCf[] = "mon_validations";
inline constexpr char kEvaluationsCf[] = "mon_evaluations";
inline constexpr char kEvaluationIdsCf[] = "mon_evaluation_ids";
const std::vector<std::string>& MonitoringColumnFamilies();

class MonitoringStore {
 public:
  struct Options {
    // Submissions of a retraining are retried this many times while the scheduler answers
    // UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED or ABORTED, waiting `retrain_backoff_ms`
    // doubled after each try; then the alert's retrain is RETRAIN_FAILED, counted, and the
    // monitor's cooldown is released so that its next alert tries again.
    int retrain_attempts = 6;
    int64_t retrain_backoff_ms = 500;
  };

  // The gateways may be null: dataset sources, model resolution and retraining are then
  // unavailable (FAILED_PRECONDITION for the first, skipped for the others).
  MonitoringStore(Db* db, prometheus::Registry& registry, std::unique_ptr<DatasetSource> datasets,
                  std::unique_ptr<ModelResolver> models, std::unique_ptr<RetrainTrigger> retrain,
                  Options options);
  MonitoringStore(Db* db, prometheus::Registry& registry, std::unique_ptr<DatasetSource> datasets,
                  std::unique_ptr<ModelResolver> models, std::unique_ptr<RetrainTrigger> retrain)
      : MonitoringStore(db, registry, std::move(datasets), std::move(models), std::move(retrain),
                        Options()) {}
  // Stops the retraining worker (a submission in flight finishes first).
  ~MonitoringStore();
  MonitoringStore(const MonitoringStore&) = delete;
  MonitoringStore& operator=(const MonitoringStore&) = delete;

  // Loads the monitors, their open windows and gauges, queues the retrainings still pending and
  // starts the retraining worker. Call once, before anything else.
  absl::Status Load();

  // Names (profiles, monitors, models, datasets) carry their project (docs/api.md, "Projects"):
  // `projects/P/name`, a bare name in project default (`projects/default/name` is that name too).
  // A monitor's profile and model, and the datasets a profile is made from or a monitor compared
  // with, are in the monitor's (profile's) project: INVALID_ARGUMENT otherwise. Reports and alerts
  // take the monitor's project (their ids `projects/P/<hex>`), and so does its retraining.
  //
  // A new version of profile `request.name`. INVALID_ARGUMENT for a bad name, samples that do not
  // fill rows x columns, a column missing from a file or a `categorical` naming no column;
  // NOT_FOUND / INVALID_ARGUMENT / UNAVAILABLE from the dataset source; FAILED_PRECONDITION when
  // there is no dataset source.
  absl::StatusOr<v1::Profile> CreateProfile(const v1::CreateProfileRequest& request);
  // Version `version` (0: the latest). NOT_FOUND.
  absl::StatusOr<v1::Profile> GetProfile(const std::string& name, int64_t version) const;
  // The latest version of every profile of `project` ("" = default, "*" = every project), without
  // its features, by name. INVALID_ARGUMENT for a malformed project.
  absl::StatusOr<std::vector<v1::Profile>> ListProfiles(const std::string& project) const;

  // Creates a monitor (defaults filled in). INVALID_ARGUMENT for a bad name, feature, test,
  // threshold, window, task or ttl; NOT_FOUND for its profile or model; ALREADY_EXISTS.
  absl::StatusOr<v1::Monitor> CreateMonitor(v1::Monitor monitor);
  // NOT_FOUND.
  absl::StatusOr<v1::Monitor> GetMonitor(const std::string& name) const;
  // The monitors of `project` ("" = default, "*" = every project). INVALID_ARGUMENT (project).
  absl::StatusOr<std::vector<v1::Monitor>> ListMonitors(const std::string& project) const;

  // Feeds the batches `next` yields (until it returns false) to one monitor; windows that fill up
  // or time out close into reports (response.closed). What was added before a bad batch is kept
  // and stored: response.rows counts it. NOT_FOUND for the monitor; INVALID_ARGUMENT for a batch
  // naming another monitor, lacking a watched feature or not filling rows x columns.
  absl::Status IngestSamples(const std::function<bool(v1::SampleBatch*)>& next,
                             v1::IngestSamplesResponse* response);
  // Matches labels to the predictions of earlier samples by request id. NOT_FOUND for the monitor;
  // INVALID_ARGUMENT unless there is one label per request id.
  absl::StatusOr<v1::IngestFeedbackResponse> IngestFeedback(const v1::FeedbackBatch& request);
  // Compares a dataset with a monitor (the report is stored and may alert) or a profile (nothing
  // is stored). NOT_FOUND for the monitor, profile or dataset; INVALID_ARGUMENT when neither is
  // named or the dataset lacks a watched feature; FAILED_PRECONDITION without a dataset source.
  absl::StatusOr<v1::DriftReport> EvaluateDataset(const v1::EvaluateDatasetRequest& request);
  // The newest `limit` reports of a monitor, newest first. NOT_FOUND for the monitor.
  absl::StatusOr<std::vector<v1::DriftReport>> ListReports(const std::string& monitor,
                                                           int limit) const;
  // Alerts newest first, of one monitor ("": every one of `project`; "" = default, "*" = every
  // project).
  absl::StatusOr<std::vector<v1::Alert>> ListAlerts(const std::string& monitor,
                                                    const std::string& project,
                                                    bool unacknowledged_only) const;
  // NOT_FOUND. Acknowledging twice keeps the first `by`.
  absl::StatusOr<v1::Alert> AcknowledgeAlert(const std::string& id, const std::string& by);

  // Waits until no retraining is queued or in flight (for tests and orderly shutdown).
  void WaitForRetrains();

  // Data validation (monitoring_validation.cc, docs/validation.md). A schema is named by its
  // dataset (`projects/P/NAME`) and versioned; validation reports are kept under the dataset's
  // name.
  //
  // Where validations are recorded in lineage (null: not recorded). Call before Load.
  void SetLineage(std::unique_ptr<LineageRecorder> lineage) { lineage_ = std::move(lineage); }
  // The schema of dataset `request.dataset` (NAME@REF) inferred from that version; stored as the
  // next version of the dataset's schema when `request.save`. NOT_FOUND / INVALID_ARGUMENT /
  // UNAVAILABLE from the dataset source, INVALID_ARGUMENT for a `categorical` naming no column,
  // FAILED_PRECONDITION without a dataset source.
  absl::StatusOr<v1::Schema> InferSchema(const v1::InferSchemaRequest& request);
  // Stores `schema` as the next version of schema `schema.name`. INVALID_ARGUMENT for a bad name
  // or a schema CheckSchema refuses (nothing stored).
  absl::StatusOr<v1::Schema> PutSchema(v1::Schema schema);
  // Version `version` (0: the latest). NOT_FOUND.
  absl::StatusOr<v1::Schema> GetSchema(const std::string& name, int64_t version) const;
  // Checks dataset `request.dataset` against the request's schema, or the stored one of
  // `request.schema` (default: the dataset's name) version `schema_version` (0: the latest). The
  // report is stored and recorded in lineage (when that fails the report is still returned and
  // stored, with lineage_artifact_id 0, and the failure logged and counted). NOT_FOUND for the
  // schema or the dataset; INVALID_ARGUMENT for a bad schema or a schema of another project;
  // FAILED_PRECONDITION without a dataset source; UNAVAILABLE when the dataset cannot be read.
  absl::StatusOr<v1::ValidationReport> Validate(const v1::ValidateRequest& request);
  // The newest `limit` reports of dataset `dataset` (a name), newest first.
  absl::StatusOr<std::vector<v1::ValidationReport>> ListValidations(const std::string& dataset,
                                                                    int limit) const;

  // Model analysis (monitoring_evaluation.cc, docs/analysis.md). The metrics of model
  // `request.model` version `request.version` (a number or an alias, "" = latest) on dataset
  // `request.dataset` (in the model's project), stored and recorded in lineage (a failure to
  // record is logged and counted; lineage_artifact_id is then 0). NOT_FOUND for the model,
  // version or dataset; INVALID_ARGUMENT for a bad request (EvaluatePredictions) or a dataset of
  // another project; FAILED_PRECONDITION without a model registry or a dataset source.
  absl::StatusOr<v1::Evaluation> EvaluateModel(const v1::EvaluateModelRequest& request);
  // NOT_FOUND.
  absl::StatusOr<v1::Evaluation> GetEvaluation(const std::string& id) const;
  // The newest `limit` evaluations of a model (version 0: of every version), without slices.
  absl::StatusOr<std::vector<v1::Evaluation>> ListEvaluations(const std::string& model,
                                                              int64_t version, int limit) const;

 private:
  // What one call changes, written as one batch when it ends.
  struct Change;
  struct RetrainJob {
    std::string monitor;
    std::string alert_id;
    int64_t previous_retrain_ms = 0;  // the cooldown to restore when the submission fails
    RetrainRequest request;
  };

  absl::StatusOr<std::shared_ptr<MonitorState>> Find(const std::string& monitor) const;
  // The retraining an alert of `monitor` asks for.
  static RetrainJob RetrainJobFor(const v1::Monitor& monitor, const v1::Alert& alert,
                                  int64_t previous_retrain_ms);
  // Closes the window of `state` (held locked) into a published report.
  v1::DriftReport CloseWindow(MonitorState& state, int64_t now, Change& change);
  // Judges the report, exports it, and adds it (and its alert, and the alert's retraining) to
  // `change`. `state` held locked.
  void Publish(MonitorState& state, v1::DriftReport* report, Change& change);
  // Adds the deletion of predictions whose label did not come in time (at most 100,000 a call,
  // oldest first) to `change`.
  absl::Status DropExpiredPredictions(const MonitorState& state, int64_t now, Change& change);
  // Writes `change` (and the window of `state`, when given) synchronously, then queues its
  // retrainings.
  absl::Status Commit(Change& change, const MonitorState* state);

  // Retraining worker (monitoring_retrain.cc).
  void RetrainLoop();
  void Retrain(const RetrainJob& job);
  // Records the outcome on the alert (and, on failure, releases the monitor's cooldown).
  void FinishRetrain(const RetrainJob& job, const absl::StatusOr<std::string>& run);

  Db* db_;
  MonitoringMetrics metrics_;
  std::unique_ptr<DatasetSource> datasets_;
  std::unique_ptr<ModelResolver> models_;
  std::unique_ptr<RetrainTrigger> retrain_;
  std::unique_ptr<LineageRecorder> lineage_;
  Options options_;
  rocksdb::ColumnFamilyHandle* profiles_cf_;
  rocksdb::ColumnFamilyHandle* monitors_cf_;
  rocksdb::ColumnFamilyHandle* windows_cf_;
  rocksdb::ColumnFamilyHandle* reports_cf_;
  rocksdb::ColumnFamilyHandle* alerts_cf_;
  rocksdb::ColumnFamilyHandle* predictions_cf_;
  rocksdb::ColumnFamilyHandle* expiry_cf_;
  rocksdb::ColumnFamilyHandle* schemas_cf_;
  rocksdb::ColumnFamilyHandle* validations_cf_;
  rocksdb::ColumnFamilyHandle* evaluations_cf_;
  rocksdb::ColumnFamilyHandle* evaluation_ids_cf_;

  mutable std::mutex mu_;  // guards states_ and profile and schema version assignment
  std::map<std::string, std::shared_ptr<MonitorState>> states_;
  std::mutex alerts_mu_;  // alert read-modify-write (acknowledgement, retraining outcome)

  std::mutex retrain_mu_;
  std::condition_variable retrain_cv_;
  std::deque<RetrainJob> retrain_queue_;  // guarded by retrain_mu_
  int retrains_in_flight_ = 0;            // guarded by retrain_mu_
  bool stopping_ = false;                 // guarded by retrain_mu_
  std::thread retrain_thread_;
};

}  // namespace mlops::monitoring
