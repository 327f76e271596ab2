// The retraining worker of MonitoringStore: submits the retraining an alert asked for, outside
// every lock the ingestion paths take, retrying while the scheduler is unavailable.
#include "services/common/logging.h"
#include "services/common/status.h"
#include "services/monitoring/monitoring_store.h"

namespace mlops::monitoring {
namespace {

bool Retryable(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

}  // namespace

void MonitoringStore::RetrainLoop() {
  std::unique_lock lock(retrain_mu_);
  while (true) {
    retrain_cv_.wait(lock, [&] { return stopping_ || !retrain_queue_.empty(); });
    if (stopping_) return;
    RetrainJob job = std::move(retrain_queue_.front());
    retrain_queue_.pop_front();
    ++retrains_in_flight_;
    lock.unlock();
    Retrain(job);
    lock.lock();
    --retrains_in_flight_;
    retrain_cv_.notify_all();
  }
}

void MonitoringStore::Retrain(const RetrainJob& job) {
  absl::StatusOr<std::string> run = absl::UnavailableError("no scheduler configured");
  int64_t backoff_ms = options_.retrain_backoff_ms;
  for (int attempt = 1; retrain_ != nullptr; ++attempt) {
    run = retrain_->Submit(job.request);
    if (run.ok() || !Retryable(run.status()) || attempt >= options_.retrain_attempts) break;
    LogWarning("retrain_submit_retry", {{"monitor", job.monitor},
                                        {"alert", job.alert_id},
                                        {"attempt", std::to_string(attempt)},
                                        {"error", std::string(run.status().message())}});
    std::unique_lock lock(retrain_mu_);
    if (retrain_cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms),
                             [&] { return stopping_; })) {
      return;  // still RETRAIN_PENDING: the next start submits it
    }
    backoff_ms *= 2;
  }
  FinishRetrain(job, run);
}

void MonitoringStore::FinishRetrain(const RetrainJob& job, const absl::StatusOr<std::string>& run) {
  if (run.ok()) {
    metrics_.CountRetrain(job.monitor);
  } else {
    metrics_.CountRetrainFailure(job.monitor);
    LogError(
        "retrain_submit_failed",
        {{"monitor", job.monitor}, {"alert", job.alert_id}, {"error", run.status().ToString()}});
  }
  auto state = Find(job.monitor);
  // Lock order: a monitor's state, then the alerts.
  std::unique_lock<std::mutex> state_lock;
  if (state.ok()) state_lock = std::unique_lock((*state)->mu);
  std::lock_guard lock(alerts_mu_);
  auto stored = db_->GetProto<v1::Alert>(alerts_cf_, job.alert_id);
  if (!stored.ok() || !stored->has_value()) {
    LogError("retrain_alert_unreadable", {{"alert", job.alert_id}});
    return;
  }
  v1::Alert alert = **std::move(stored);
  rocksdb::WriteBatch batch;
  if (run.ok()) {
    alert.set_retrain(v1::RETRAIN_SUBMITTED);
    alert.set_pipeline_run_id(*run);
  } else {
    alert.set_retrain(v1::RETRAIN_FAILED);
    alert.set_retrain_error(std::string(run.status().message()));
    // The cooldown this retraining started is released: the monitor's next alert tries again.
    if (state.ok() && (*state)->window.last_retrain_ms() == alert.time_ms()) {
      (*state)->window.set_last_retrain_ms(job.previous_retrain_ms);
      batch.Put(windows_cf_, job.monitor, (*state)->Save().SerializeAsString());
    }
  }
  batch.Put(alerts_cf_, alert.id(), alert.SerializeAsString());
  if (absl::Status written = db_->WriteSync(&batch); !written.ok()) {
    LogError("retrain_outcome_write_failed",
             {{"alert", job.alert_id}, {"error", written.ToString()}});
  }
}

void MonitoringStore::WaitForRetrains() {
  std::unique_lock lock(retrain_mu_);
  retrain_cv_.wait(lock, [&] { return retrain_queue_.empty() && retrains_in_flight_ == 0; });
}

}  // namespace mlops::monitoring
