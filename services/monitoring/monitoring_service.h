// mlops.monitoring.v1.MonitoringService: the gRPC adapter over MonitoringStore (the core, which
// documents the storage and the codes each call returns).
#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <memory>
#include <mutex>

#include "mlops/monitoring/v1/monitoring.grpc.pb.h"
#include "services/monitoring/monitoring_store.h"

namespace mlops::monitoring {

class MonitoringServiceImpl final : public v1::MonitoringService::Service {
 public:
  MonitoringServiceImpl() = default;
  // The core, once it is loaded (the server may serve before: calls wait for it, then
  // UNAVAILABLE after 10 s). Not owned.
  void SetStore(MonitoringStore* store);

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
  grpc::Status InferSchema(grpc::ServerContext*, const v1::InferSchemaRequest*,
                           v1::Schema*) override;
  grpc::Status PutSchema(grpc::ServerContext*, const v1::Schema*, v1::Schema*) override;
  grpc::Status GetSchema(grpc::ServerContext*, const v1::GetSchemaRequest*, v1::Schema*) override;
  grpc::Status Validate(grpc::ServerContext*, const v1::ValidateRequest*,
                        v1::ValidationReport*) override;
  grpc::Status ListValidations(grpc::ServerContext*, const v1::ListValidationsRequest*,
                               v1::ListValidationsResponse*) override;
  grpc::Status EvaluateModel(grpc::ServerContext*, const v1::EvaluateModelRequest*,
                             v1::Evaluation*) override;
  grpc::Status GetEvaluation(grpc::ServerContext*, const v1::GetEvaluationRequest*,
                             v1::Evaluation*) override;
  grpc::Status ListEvaluations(grpc::ServerContext*, const v1::ListEvaluationsRequest*,
                               v1::ListEvaluationsResponse*) override;

 private:
  absl::StatusOr<MonitoringStore*> Store();
  // call(store) once the store is there.
  template <typename F>
  grpc::Status WithStore(F call);

  std::mutex mu_;
  std::condition_variable ready_;
  MonitoringStore* store_ = nullptr;  // guarded by mu_
};

}  // namespace mlops::monitoring
