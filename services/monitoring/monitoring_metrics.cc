#include "services/monitoring/monitoring_metrics.h"

#include <cctype>
#include <map>

namespace mlops::monitoring {
namespace {

prometheus::Family<prometheus::Gauge>& Gauge(prometheus::Registry& registry, const char* name,
                                             const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Counter>& Counter(prometheus::Registry& registry, const char* name,
                                                 const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

std::string ModelLabel(const v1::Monitor& monitor) {
  return monitor.model().empty() ? monitor.name() : monitor.model();
}

std::map<std::string, std::string> ByMonitor(const std::string& monitor) {
  return {{"monitor", monitor}};
}

}  // namespace

MonitoringMetrics::MonitoringMetrics(prometheus::Registry& registry)
    : psi_(Gauge(registry, "mlops_feature_drift_psi",
                 "PSI of a feature in the last closed window against the reference profile")),
      ks_(Gauge(registry, "mlops_feature_drift_ks_statistic",
                "Two-sample KS statistic of a feature in the last closed window")),
      js_(Gauge(registry, "mlops_feature_drift_js_distance",
                "Jensen-Shannon distance (base 2) of a feature in the last closed window")),
      chi2_p_(Gauge(registry, "mlops_feature_drift_chi2_p_value",
                    "Chi-squared p-value of a feature in the last closed window")),
      drift_share_(Gauge(registry, "mlops_model_drift_share",
                         "Share of a monitor's features that drifted in the last window")),
      drift_share_threshold_(Gauge(registry, "mlops_model_drift_share_threshold",
                                   "The monitor's drift_share_threshold: a window whose drift "
                                   "share reaches it is drifted")),
      drifted_(Gauge(registry, "mlops_model_drifted",
                     "1 when the monitor's last window drifted (by its own threshold), else 0")),
      accuracy_(Gauge(registry, "mlops_model_accuracy_ratio",
                      "Accuracy from labels in the last window (classification), 0 to 1")),
      rmse_(Gauge(registry, "mlops_model_rmse",
                  "Root mean squared error from labels in the last window (regression), in the "
                  "label's unit")),
      mae_(Gauge(registry, "mlops_model_mae",
                 "Mean absolute error from labels in the last window (regression), in the "
                 "label's unit")),
      samples_(Counter(registry, "mlops_monitoring_samples_total",
                       "Production rows ingested, per monitor")),
      alerts_(Counter(registry, "mlops_monitoring_alerts_total", "Alerts raised, per monitor")),
      reports_(Counter(registry, "mlops_monitoring_reports_total",
                       "Drift reports produced, per monitor")),
      retrains_(Counter(registry, "mlops_monitoring_retrains_total",
                        "Retraining pipelines submitted to the scheduler, per monitor")),
      retrain_failures_(Counter(registry, "mlops_monitoring_retrain_failures_total",
                                "Retrainings that could not be submitted (the scheduler refused "
                                "them or stayed unavailable), per monitor")),
      validations_(Counter(registry, "mlops_validations_total",
                           "Datasets validated against a schema, by result (valid, invalid)")),
      anomalies_(Counter(registry, "mlops_validation_anomalies_total",
                         "Anomalies found by validations, by kind")),
      lineage_failures_(Counter(registry, "mlops_validation_lineage_failures_total",
                                "Validations whose lineage record failed (the report is stored)")),
      evaluations_(Counter(registry, "mlops_model_evaluations_total",
                           "Model versions evaluated on a dataset (EvaluateModel)")),
      evaluation_lineage_failures_(
          Counter(registry, "mlops_model_evaluation_lineage_failures_total",
                  "Evaluations whose lineage record failed (the evaluation is stored)")) {
  // At 0 from the start, so that increase() sees the first one.
  validations_.Add({{"result", "valid"}});
  validations_.Add({{"result", "invalid"}});
  lineage_failures_.Add({});
  evaluations_.Add({});
  evaluation_lineage_failures_.Add({});
}

void MonitoringMetrics::InitSeries(const v1::Monitor& monitor) {
  auto by_monitor = ByMonitor(monitor.name());
  samples_.Add(by_monitor);
  alerts_.Add(by_monitor);
  reports_.Add(by_monitor);
  retrains_.Add(by_monitor);
  retrain_failures_.Add(by_monitor);
  std::map<std::string, std::string> labels = {{"model", ModelLabel(monitor)},
                                               {"monitor", monitor.name()}};
  drift_share_threshold_.Add(labels).Set(monitor.drift_share_threshold());
  drifted_.Add(labels);
}

void MonitoringMetrics::ExportReport(const v1::Monitor& monitor, const v1::DriftReport& report) {
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

void MonitoringMetrics::RestoreCounts(const std::string& monitor, double reports, double alerts) {
  reports_.Add(ByMonitor(monitor)).Increment(reports);
  alerts_.Add(ByMonitor(monitor)).Increment(alerts);
}

void MonitoringMetrics::CountSamples(const std::string& monitor, uint64_t rows) {
  samples_.Add(ByMonitor(monitor)).Increment(static_cast<double>(rows));
}
void MonitoringMetrics::CountReport(const std::string& monitor) {
  reports_.Add(ByMonitor(monitor)).Increment();
}
void MonitoringMetrics::CountAlert(const std::string& monitor) {
  alerts_.Add(ByMonitor(monitor)).Increment();
}
void MonitoringMetrics::CountRetrain(const std::string& monitor) {
  retrains_.Add(ByMonitor(monitor)).Increment();
}
void MonitoringMetrics::CountRetrainFailure(const std::string& monitor) {
  retrain_failures_.Add(ByMonitor(monitor)).Increment();
}

void MonitoringMetrics::CountValidation(const v1::ValidationReport& report, bool lineage_failed) {
  validations_.Add({{"result", report.valid() ? "valid" : "invalid"}}).Increment();
  for (const v1::Anomaly& anomaly : report.anomalies()) {
    std::string kind = v1::Anomaly::Kind_Name(anomaly.kind());
    for (char& c : kind) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    anomalies_.Add({{"kind", kind}}).Increment();
  }
  if (lineage_failed) lineage_failures_.Add({}).Increment();
}

void MonitoringMetrics::CountEvaluation(bool lineage_failed) {
  evaluations_.Add({}).Increment();
  if (lineage_failed) evaluation_lineage_failures_.Add({}).Increment();
}

}  // namespace mlops::monitoring
