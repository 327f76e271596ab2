#include "services/monitoring/monitoring_service.h"

#include <chrono>

#include "services/common/grpc_status.h"
#include "services/common/projects.h"
#include "services/common/request_errors.h"
#include "services/common/rpc_guard.h"
#include "services/common/strings.h"

namespace mlops::monitoring {

void MonitoringServiceImpl::SetStore(MonitoringStore* store) {
  {
    std::lock_guard lock(mu_);
    store_ = store;
  }
  ready_.notify_all();
}

absl::StatusOr<MonitoringStore*> MonitoringServiceImpl::Store() {
  std::unique_lock lock(mu_);
  if (!ready_.wait_for(lock, std::chrono::seconds(10), [&] { return store_ != nullptr; })) {
    return absl::UnavailableError("the monitoring service is still loading; try again");
  }
  return store_;
}

template <typename F>
grpc::Status MonitoringServiceImpl::WithStore(F call) {
  auto store = Store();
  if (!store.ok()) return ToGrpcStatus(store.status());
  return call(**store);
}

grpc::Status MonitoringServiceImpl::CreateProfile(grpc::ServerContext*,
                                                  const v1::CreateProfileRequest* request,
                                                  v1::Profile* response) {
  return WithStore(
      [&](MonitoringStore& store) { return Reply(store.CreateProfile(*request), response); });
}

grpc::Status MonitoringServiceImpl::GetProfile(grpc::ServerContext*,
                                               const v1::GetProfileRequest* request,
                                               v1::Profile* response) {
  return WithStore([&](MonitoringStore& store) {
    return Reply(store.GetProfile(request->name(), request->version()), response);
  });
}

grpc::Status MonitoringServiceImpl::ListProfiles(grpc::ServerContext*,
                                                 const v1::ListProfilesRequest* request,
                                                 v1::ListProfilesResponse* response) {
  return WithStore([&](MonitoringStore& store) {
    auto profiles = store.ListProfiles(request->project());
    if (!profiles.ok()) return ToGrpcStatus(profiles.status());
    for (auto& profile : *profiles) *response->add_profiles() = std::move(profile);
    return grpc::Status::OK;
  });
}

grpc::Status MonitoringServiceImpl::CreateMonitor(grpc::ServerContext*, const v1::Monitor* request,
                                                  v1::Monitor* response) {
  return WithStore(
      [&](MonitoringStore& store) { return Reply(store.CreateMonitor(*request), response); });
}

grpc::Status MonitoringServiceImpl::GetMonitor(grpc::ServerContext*,
                                               const v1::GetMonitorRequest* request,
                                               v1::Monitor* response) {
  return WithStore(
      [&](MonitoringStore& store) { return Reply(store.GetMonitor(request->name()), response); });
}

grpc::Status MonitoringServiceImpl::ListMonitors(grpc::ServerContext*,
                                                 const v1::ListMonitorsRequest* request,
                                                 v1::ListMonitorsResponse* response) {
  return WithStore([&](MonitoringStore& store) {
    auto monitors = store.ListMonitors(request->project());
    if (!monitors.ok()) return ToGrpcStatus(monitors.status());
    for (auto& monitor : *monitors) *response->add_monitors() = std::move(monitor);
    return grpc::Status::OK;
  });
}

grpc::Status MonitoringServiceImpl::IngestSamples(grpc::ServerContext* context,
                                                  grpc::ServerReader<v1::SampleBatch>* reader,
                                                  v1::IngestSamplesResponse* response) {
  // The stream acts in the project of its metadata (the guard checked the caller's role there): a
  // batch naming a monitor of another project ends it.
  const std::string project = StreamProject(*context);
  absl::Status foreign;
  return WithStore([&](MonitoringStore& store) {
    absl::Status status = store.IngestSamples(
        [&](v1::SampleBatch* batch) {
          if (!reader->Read(batch)) return false;
          if (batch->monitor().empty() || ProjectOf(batch->monitor()) == project) return true;
          foreign = absl::InvalidArgumentError(
              StrCat("monitor ", batch->monitor().substr(0, 200), " is not in project ", project,
                     ", the project this stream was opened for (metadata ", kProjectMetadata, ")"));
          return false;
        },
        response);
    if (!status.ok()) return ToGrpcStatus(status);
    if (!foreign.ok()) return ToGrpcStatus(foreign);
    // A batch that did not parse ends the reads: what came before it is kept (as for any failing
    // batch), and the call says where it stopped.
    if (std::optional<std::string> parse_error = TakeParseError()) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          StrCat("after ", std::to_string(response->rows()), " rows: ", *parse_error)));
    }
    return grpc::Status::OK;
  });
}

grpc::Status MonitoringServiceImpl::IngestFeedback(grpc::ServerContext*,
                                                   const v1::FeedbackBatch* request,
                                                   v1::IngestFeedbackResponse* response) {
  return WithStore(
      [&](MonitoringStore& store) { return Reply(store.IngestFeedback(*request), response); });
}

grpc::Status MonitoringServiceImpl::EvaluateDataset(grpc::ServerContext*,
                                                    const v1::EvaluateDatasetRequest* request,
                                                    v1::DriftReport* response) {
  return WithStore(
      [&](MonitoringStore& store) { return Reply(store.EvaluateDataset(*request), response); });
}

grpc::Status MonitoringServiceImpl::ListReports(grpc::ServerContext*,
                                                const v1::ListReportsRequest* request,
                                                v1::ListReportsResponse* response) {
  return WithStore([&](MonitoringStore& store) {
    int limit = request->page_size() > 0 ? std::min(request->page_size(), 1000) : 20;
    auto reports = store.ListReports(request->monitor(), limit);
    if (!reports.ok()) return ToGrpcStatus(reports.status());
    for (auto& report : *reports) *response->add_reports() = std::move(report);
    return grpc::Status::OK;
  });
}

grpc::Status MonitoringServiceImpl::ListAlerts(grpc::ServerContext*,
                                               const v1::ListAlertsRequest* request,
                                               v1::ListAlertsResponse* response) {
  return WithStore([&](MonitoringStore& store) {
    auto alerts =
        store.ListAlerts(request->monitor(), request->project(), request->unacknowledged_only());
    if (!alerts.ok()) return ToGrpcStatus(alerts.status());
    for (auto& alert : *alerts) *response->add_alerts() = std::move(alert);
    return grpc::Status::OK;
  });
}

grpc::Status MonitoringServiceImpl::AcknowledgeAlert(grpc::ServerContext*,
                                                     const v1::AcknowledgeAlertRequest* request,
                                                     v1::Alert* response) {
  return WithStore([&](MonitoringStore& store) {
    return Reply(store.AcknowledgeAlert(request->id(), request->by()), response);
  });
}

grpc::Status MonitoringServiceImpl::InferSchema(grpc::ServerContext*,
                                                const v1::InferSchemaRequest* request,
                                                v1::Schema* response) {
  return WithStore(
      [&](MonitoringStore& store) { return Reply(store.InferSchema(*request), response); });
}

grpc::Status MonitoringServiceImpl::PutSchema(grpc::ServerContext*, const v1::Schema* request,
                                              v1::Schema* response) {
  return WithStore(
      [&](MonitoringStore& store) { return Reply(store.PutSchema(*request), response); });
}

grpc::Status MonitoringServiceImpl::GetSchema(grpc::ServerContext*,
                                              const v1::GetSchemaRequest* request,
                                              v1::Schema* response) {
  return WithStore([&](MonitoringStore& store) {
    return Reply(store.GetSchema(request->name(), request->version()), response);
  });
}

grpc::Status MonitoringServiceImpl::Validate(grpc::ServerContext*,
                                             const v1::ValidateRequest* request,
                                             v1::ValidationReport* response) {
  return WithStore(
      [&](MonitoringStore& store) { return Reply(store.Validate(*request), response); });
}

grpc::Status MonitoringServiceImpl::ListValidations(grpc::ServerContext*,
                                                    const v1::ListValidationsRequest* request,
                                                    v1::ListValidationsResponse* response) {
  return WithStore([&](MonitoringStore& store) {
    int limit = request->page_size() > 0 ? std::min(request->page_size(), 1000) : 20;
    auto reports = store.ListValidations(request->dataset(), limit);
    if (!reports.ok()) return ToGrpcStatus(reports.status());
    for (auto& report : *reports) *response->add_reports() = std::move(report);
    return grpc::Status::OK;
  });
}

grpc::Status MonitoringServiceImpl::EvaluateModel(grpc::ServerContext*,
                                                  const v1::EvaluateModelRequest* request,
                                                  v1::Evaluation* response) {
  return WithStore(
      [&](MonitoringStore& store) { return Reply(store.EvaluateModel(*request), response); });
}

grpc::Status MonitoringServiceImpl::GetEvaluation(grpc::ServerContext*,
                                                  const v1::GetEvaluationRequest* request,
                                                  v1::Evaluation* response) {
  return WithStore(
      [&](MonitoringStore& store) { return Reply(store.GetEvaluation(request->id()), response); });
}

grpc::Status MonitoringServiceImpl::ListEvaluations(grpc::ServerContext*,
                                                    const v1::ListEvaluationsRequest* request,
                                                    v1::ListEvaluationsResponse* response) {
  return WithStore([&](MonitoringStore& store) {
    int limit = request->page_size() > 0 ? std::min(request->page_size(), 1000) : 20;
    auto evaluations = store.ListEvaluations(request->model(), request->version(), limit);
    if (!evaluations.ok()) return ToGrpcStatus(evaluations.status());
    for (auto& e : *evaluations) *response->add_evaluations() = std::move(e);
    return grpc::Status::OK;
  });
}

}  // namespace mlops::monitoring
