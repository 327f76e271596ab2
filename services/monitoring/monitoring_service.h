// mlops.monitoring.v1.MonitoringService: profiles, monitors, windows of production data, drift
// reports, performance from delayed labels, alerts and retraining.
//
// Storage (column families of the monitoring database):
//   mon_profiles     name + version (8 bytes BE) -> Profile
//   mon_monitors     name -> Monitor
//   mon_windows      monitor -> internal.WindowState (the open window; written synchronously when
//                    an IngestSamples or IngestFeedback call is acknowledged)
//   mon_reports      monitor + \0 + end time (8 bytes BE) + id -> DriftReport
//   mon_alerts       id -> Alert
//   mon_predictions  monitor + \0 + request id -> prediction (8 bytes) + expiry time (8 bytes), for
//                    labels that come later
//   mon_prediction_expiry  monitor + \0 + expiry time (8 bytes BE) + request id -> "": what to
//                    drop when predictions outlive the monitor's label_ttl_ms
#pragma once

#include <grpcpp/grpcpp.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>

#include "mlops/monitoring/internal/storage.pb.h"
#include "mlops/monitoring/v1/monitoring.grpc.pb.h"
#include "services/common/db.h"
#include "services/monitoring/profile.h"

namespace mlops::monitoring {

inline constexpr char kProfilesCf[] = "mon_profiles";
inline constexpr char kMonitorsCf[] = "mon_monitors";
inline constexpr char kWindowsCf[] = "mon_windows";
inline constexpr char kReportsCf[] = "mon_reports";
inline constexpr char kAlertsCf[] = "mon_alerts";
inline constexpr char kPredictionsCf[] = "mon_predictions";
inline constexpr char kExpiryCf[] = "mon_prediction_expiry";
const std::vector<std::string>& MonitoringColumnFamilies();

class MonitoringServiceImpl final : public v1::MonitoringService::Service {
 public:
  // `work_dir` holds datasets while they are read. The channels may be null: dataset sources
  // (artifact), model resolution (metadata) and retraining (scheduler) are then unavailable.
  MonitoringServiceImpl(Db* db, std::string work_dir, prometheus::Registry& registry);
  ~MonitoringServiceImpl() override;
  void SetPeers(std::shared_ptr<grpc::Channel> artifact, std::shared_ptr<grpc::Channel> metadata,
                std::shared_ptr<grpc::Channel> scheduler);
  // Loads the monitors and their open windows.
  absl::Status Load();

  grpc::Status CreateProfile(grpc::ServerContext*, const v1::CreateProfileRequest*,
                             v1::Profile*) override;
  grpc::Status GetProfile(grpc::ServerContext*, const v1::GetProfileRequest*,
                          v1::Profile*) override;
  grpc::Status ListProfiles(grpc::ServerContext*, const v1::ListProfilesRequest*,
                            v1::ListProfilesResponse*) override;
  grpc::Status CreateMonitor(grpc::ServerContext*, const v1::Monitor*, v1::Monitor*) override;
  grpc::Status GetMonitor(grpc::ServerContext*, const v1::GetMonitorRequest*,
                          v1::Monitor*) override;
  grpc::Status ListMonitors(grpc::ServerContext*, const v1::ListMonitorsRequest*,
                            v1::ListMonitorsResponse*) override;
  grpc::Status IngestSamples(grpc::ServerContext*, grpc::ServerReader<v1::SampleBatch>*,
                             v1::IngestSamplesResponse*) override;
  grpc::Status IngestFeedback(grpc::ServerContext*, const v1::FeedbackBatch*,
                              v1::IngestFeedbackResponse*) override;
  grpc::Status EvaluateDataset(grpc::ServerContext*, const v1::EvaluateDatasetRequest*,
                               v1::DriftReport*) override;
  grpc::Status ListReports(grpc::ServerContext*, const v1::ListReportsRequest*,
                           v1::ListReportsResponse*) override;
  grpc::Status ListAlerts(grpc::ServerContext*, const v1::ListAlertsRequest*,
                          v1::ListAlertsResponse*) override;
  grpc::Status AcknowledgeAlert(grpc::ServerContext*, const v1::AcknowledgeAlertRequest*,
                                v1::Alert*) override;

 private:
  struct State;
  absl::StatusOr<v1::Profile> ReadProfile(const std::string& name, int64_t version) const;
  absl::StatusOr<std::shared_ptr<State>> Find(const std::string& monitor) const;
  absl::StatusOr<std::vector<std::unique_ptr<class Table>>> ReadDataset(const std::string& ref,
                                                                        std::string* resolved);
  // Closes the window of `state` (held locked): its report is stored, exported and judged.
  v1::DriftReport CloseWindow(State& state, int64_t now);
  // Sets the report's drift share and verdict.
  static void Judge(const State& state, v1::DriftReport* report);
  // Stores a report (and its alert, retraining) and updates the gauges. `state` held locked.
  void Publish(State& state, v1::DriftReport* report);
  void PersistWindow(State& state, rocksdb::WriteBatch* batch);
  // Adds to `batch` the deletion of predictions whose label did not come in time (at most 100,000
  // a call, oldest first).
  void DropExpiredPredictions(const State& state, int64_t now, rocksdb::WriteBatch* batch);

  Db* db_;
  std::string work_dir_;
  std::shared_ptr<grpc::Channel> artifact_, metadata_, scheduler_;
  rocksdb::ColumnFamilyHandle* profiles_cf_;
  rocksdb::ColumnFamilyHandle* monitors_cf_;
  rocksdb::ColumnFamilyHandle* windows_cf_;
  rocksdb::ColumnFamilyHandle* reports_cf_;
  rocksdb::ColumnFamilyHandle* alerts_cf_;
  rocksdb::ColumnFamilyHandle* predictions_cf_;
  rocksdb::ColumnFamilyHandle* expiry_cf_;

  mutable std::mutex mu_;  // guards states_ and profile version assignment
  std::map<std::string, std::shared_ptr<State>> states_;
  std::mutex alerts_mu_;  // alert read-modify-write

  // Creates every per-monitor series at 0 (and the threshold gauge).
  void InitSeries(const v1::Monitor& monitor);
  // Sets the drift and performance gauges from a report.
  void ExportGauges(const v1::Monitor& monitor, const v1::DriftReport& report);

  prometheus::Family<prometheus::Gauge>& psi_;
  prometheus::Family<prometheus::Gauge>& ks_;
  prometheus::Family<prometheus::Gauge>& js_;
  prometheus::Family<prometheus::Gauge>& chi2_p_;
  prometheus::Family<prometheus::Gauge>& drift_share_;
  prometheus::Family<prometheus::Gauge>& drift_share_threshold_;
  prometheus::Family<prometheus::Gauge>& drifted_;
  // One family per unit: accuracy is a ratio, RMSE and MAE are in the label's unit.
  prometheus::Family<prometheus::Gauge>& accuracy_;
  prometheus::Family<prometheus::Gauge>& rmse_;
  prometheus::Family<prometheus::Gauge>& mae_;
  prometheus::Family<prometheus::Counter>& samples_;
  prometheus::Family<prometheus::Counter>& alerts_;
  prometheus::Family<prometheus::Counter>& reports_;
};

}  // namespace mlops::monitoring
