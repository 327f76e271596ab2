#include "services/scheduler/validation_gateway.h"

#include <chrono>

#include "mlops/monitoring/v1/monitoring.grpc.pb.h"
#include "services/common/grpc_status.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::scheduler {
namespace {

namespace mv1 = mlops::monitoring::v1;

std::string KindName(mv1::Anomaly::Kind kind) { return ToLower(mv1::Anomaly::Kind_Name(kind)); }

class MonitoringGateway final : public ValidationGateway {
 public:
  explicit MonitoringGateway(ChannelForProject channels) : channels_(std::move(channels)) {}

  absl::StatusOr<Result> Validate(const Request& request) override {
    mv1::ValidateRequest validate;
    if (!request.blob.empty()) {
      validate.set_blob(request.blob);
      validate.set_blob_name(request.file_name);
      validate.set_project(request.project);
    } else {
      validate.set_dataset(Qualify(request.project, request.dataset + "@" + request.version));
    }
    if (!request.schema.empty()) validate.set_schema(Qualify(request.project, request.schema));
    validate.set_schema_version(request.schema_version);
    ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, channels_(request.project));
    auto stub = mv1::MonitoringService::NewStub(channel);
    mv1::ValidationReport report;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(30));
    RETURN_IF_ERROR(FromGrpcStatus(stub->Validate(&context, validate, &report)));
    Result result;
    result.valid = report.valid();
    result.report_id = report.id();
    const std::string what = report.blob().empty() ? report.dataset() : "blob " + report.blob();
    result.text = StrCat("validated ", what, ": ", std::to_string(report.rows()),
                         " rows against schema ", report.schema(), "@",
                         std::to_string(report.schema_version()), " (report ", report.id(), ")\n");
    for (const mv1::Anomaly& a : report.anomalies()) {
      result.text += StrCat(KindName(a.kind()), ": ", a.description(), "\n");
    }
    result.text += report.valid() ? "valid: no anomaly\n"
                                  : StrCat("INVALID: ", std::to_string(report.anomalies_size()),
                                           " anomalies\n");
    if (!report.valid()) {
      result.summary = StrCat(std::to_string(report.anomalies_size()),
                              " anomalies: ", report.anomalies(0).description().substr(0, 200),
                              report.anomalies_size() > 1 ? " ..." : "");
    }
    return result;
  }

 private:
  ChannelForProject channels_;
};

}  // namespace

std::unique_ptr<ValidationGateway> MonitoringValidationGateway(ChannelForProject channels) {
  if (channels == nullptr) return nullptr;
  return std::make_unique<MonitoringGateway>(std::move(channels));
}

}  // namespace mlops::scheduler
