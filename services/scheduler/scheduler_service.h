// gRPC adapter of the scheduler: calls Scheduler and maps statuses; every RPC returns the codes
// documented on the Scheduler method it calls (UNAVAILABLE while the scheduler is still starting).
#pragma once

#include <atomic>

#include "mlops/scheduler/v1/scheduler.grpc.pb.h"
#include "services/scheduler/scheduler.h"

namespace mlops::scheduler {

class SchedulerServiceImpl final : public v1::SchedulerService::Service {
 public:
  void set_scheduler(Scheduler* scheduler) { scheduler_.store(scheduler); }

  grpc::Status SubmitPipeline(grpc::ServerContext*, const v1::SubmitPipelineRequest* request,
                              v1::PipelineRun* response) override;
  grpc::Status GetPipelineRun(grpc::ServerContext*, const v1::GetPipelineRunRequest* request,
                              v1::PipelineRun* response) override;
  grpc::Status ListPipelineRuns(grpc::ServerContext*, const v1::ListPipelineRunsRequest* request,
                                v1::ListPipelineRunsResponse* response) override;
  grpc::Status CancelPipelineRun(grpc::ServerContext*, const v1::CancelPipelineRunRequest* request,
                                 v1::PipelineRun* response) override;
  grpc::Status RetryPipelineRun(grpc::ServerContext*, const v1::RetryPipelineRunRequest* request,
                                v1::PipelineRun* response) override;
  grpc::Status WatchPipelineRun(grpc::ServerContext* context,
                                const v1::GetPipelineRunRequest* request,
                                grpc::ServerWriter<v1::PipelineRun>* writer) override;
  grpc::Status GetStepLogs(grpc::ServerContext* context, const v1::GetStepLogsRequest* request,
                           grpc::ServerWriter<v1::LogChunk>* writer) override;
  grpc::Status CreateSchedule(grpc::ServerContext*, const v1::Schedule* request,
                              v1::Schedule* response) override;
  grpc::Status ListSchedules(grpc::ServerContext*, const v1::ListSchedulesRequest* request,
                             v1::ListSchedulesResponse* response) override;
  grpc::Status DeleteSchedule(grpc::ServerContext*, const v1::DeleteScheduleRequest* request,
                              v1::DeleteScheduleResponse* response) override;
  grpc::Status PutQueue(grpc::ServerContext*, const v1::Queue* request,
                        v1::Queue* response) override;
  grpc::Status ListQueues(grpc::ServerContext*, const v1::ListQueuesRequest* request,
                          v1::ListQueuesResponse* response) override;
  grpc::Status ReportAttempt(grpc::ServerContext*, const v1::ReportAttemptRequest* request,
                             v1::ReportAttemptResponse* response) override;
  grpc::Status ReportCheckpoint(grpc::ServerContext*, const v1::ReportCheckpointRequest* request,
                                v1::ReportCheckpointResponse* response) override;

 private:
  absl::StatusOr<Scheduler*> Get() const;
  std::atomic<Scheduler*> scheduler_{nullptr};
};

}  // namespace mlops::scheduler
