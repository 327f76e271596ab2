// The monitoring service's Prometheus series: per feature drift statistics, per monitor drift
// share, verdict, performance and counters. Every per-monitor series exists at 0 from the
// monitor's creation (increase() then sees its first alert), and a restart restores them from the
// stored reports and alerts.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <string>

#include "mlops/monitoring/v1/monitoring.pb.h"

namespace mlops::monitoring {

class MonitoringMetrics {
 public:
  explicit MonitoringMetrics(prometheus::Registry& registry);

  // Creates every per-monitor series at 0 (and sets the threshold gauge).
  void InitSeries(const v1::Monitor& monitor);
  // Sets the drift and performance gauges from a judged report.
  void ExportReport(const v1::Monitor& monitor, const v1::DriftReport& report);
  // Counters go on from what is stored: called once per monitor at start.
  void RestoreCounts(const std::string& monitor, double reports, double alerts);

  void CountSamples(const std::string& monitor, uint64_t rows);
  void CountReport(const std::string& monitor);
  void CountAlert(const std::string& monitor);
  void CountRetrain(const std::string& monitor);
  void CountRetrainFailure(const std::string& monitor);
  // A validation (docs/validation.md): its verdict, its anomalies by kind, and whether its lineage
  // record failed.
  void CountValidation(const v1::ValidationReport& report, bool lineage_failed);
  // A model evaluation, and whether its lineage record failed.
  void CountEvaluation(bool lineage_failed);

 private:
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
  prometheus::Family<prometheus::Counter>& retrains_;
  prometheus::Family<prometheus::Counter>& retrain_failures_;
  prometheus::Family<prometheus::Counter>& validations_;
  prometheus::Family<prometheus::Counter>& anomalies_;
  prometheus::Family<prometheus::Counter>& lineage_failures_;
  prometheus::Family<prometheus::Counter>& evaluations_;
  prometheus::Family<prometheus::Counter>& evaluation_lineage_failures_;
};

}  // namespace mlops::monitoring
