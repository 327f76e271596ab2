#include "services/scheduler/scheduler_service.h"

#include <fstream>
#include <thread>

#include "services/common/status.h"

namespace mlops::scheduler {
namespace {

template <typename T>
grpc::Status Reply(absl::StatusOr<T> result, T* out) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *out = std::move(*result);
  return grpc::Status::OK;
}

bool Finished(v1::RunState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELED;
}

}  // namespace

absl::StatusOr<Scheduler*> SchedulerServiceImpl::Get() const {
  Scheduler* scheduler = scheduler_.load();
  if (scheduler == nullptr) return absl::UnavailableError("the scheduler is starting");
  return scheduler;
}

#define MLOPS_SCHEDULER_OR_RETURN(name)                         \
  auto name##_or = Get();                                       \
  if (!name##_or.ok()) return ToGrpcStatus(name##_or.status()); \
  Scheduler* name = *name##_or

grpc::Status SchedulerServiceImpl::SubmitPipeline(grpc::ServerContext*,
                                                  const v1::SubmitPipelineRequest* request,
                                                  v1::PipelineRun* response) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  return Reply(scheduler->Submit(*request), response);
}

grpc::Status SchedulerServiceImpl::GetPipelineRun(grpc::ServerContext*,
                                                  const v1::GetPipelineRunRequest* request,
                                                  v1::PipelineRun* response) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  return Reply(scheduler->Get(request->id()), response);
}

grpc::Status SchedulerServiceImpl::ListPipelineRuns(grpc::ServerContext*,
                                                    const v1::ListPipelineRunsRequest* request,
                                                    v1::ListPipelineRunsResponse* response) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  return Reply(scheduler->List(*request), response);
}

grpc::Status SchedulerServiceImpl::CancelPipelineRun(grpc::ServerContext*,
                                                     const v1::CancelPipelineRunRequest* request,
                                                     v1::PipelineRun* response) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  return Reply(scheduler->Cancel(request->id()), response);
}

grpc::Status SchedulerServiceImpl::RetryPipelineRun(grpc::ServerContext*,
                                                    const v1::RetryPipelineRunRequest* request,
                                                    v1::PipelineRun* response) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  return Reply(scheduler->Retry(request->id()), response);
}

grpc::Status SchedulerServiceImpl::WatchPipelineRun(grpc::ServerContext* context,
                                                    const v1::GetPipelineRunRequest* request,
                                                    grpc::ServerWriter<v1::PipelineRun>* writer) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  int64_t seen = -2;
  for (;;) {
    auto run = scheduler->Get(request->id());
    if (!run.ok()) return ToGrpcStatus(run.status());
    run->clear_spec_yaml();
    if (!writer->Write(*run)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    if (Finished(run->state())) return grpc::Status::OK;
    int64_t now = seen;
    while (now == seen && !context->IsCancelled())
      now = scheduler->WaitForChange(request->id(), seen, 500);
    if (context->IsCancelled())
      return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    seen = now;
  }
}

grpc::Status SchedulerServiceImpl::GetStepLogs(grpc::ServerContext* context,
                                               const v1::GetStepLogsRequest* request,
                                               grpc::ServerWriter<v1::LogChunk>* writer) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  auto run = scheduler->Get(request->run_id());
  if (!run.ok()) return ToGrpcStatus(run.status());
  const v1::StepRun* step = nullptr;
  for (const auto& s : run->steps()) {
    if (s.name() == request->step()) step = &s;
  }
  if (step == nullptr) {
    return ToGrpcStatus(
        absl::NotFoundError("run " + request->run_id() + " has no step " + request->step()));
  }
  if (step->attempts_size() == 0) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        "step " + request->step() + " has not run" +
        (step->state() == v1::CACHED ? " (cached from " + step->cached_from() + ")" : "")));
  }
  int attempt = request->attempt() == 0 ? step->attempts(step->attempts_size() - 1).number()
                                        : request->attempt();
  if (attempt < 1 || attempt > step->attempts_size()) {
    return ToGrpcStatus(absl::NotFoundError("step " + request->step() + " has no attempt " +
                                            std::to_string(request->attempt())));
  }
  std::string path = scheduler->AttemptDir(request->run_id(), request->step(), attempt) +
                     (request->stderr() ? "/stderr.log" : "/stdout.log");
  std::ifstream in(path, std::ios::binary);
  std::string buffer(64 << 10, '\0');
  for (;;) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    std::streamsize n = in.gcount();
    if (n > 0) {
      v1::LogChunk chunk;
      chunk.set_data(buffer.data(), static_cast<size_t>(n));
      if (!writer->Write(chunk)) return grpc::Status::OK;
      continue;
    }
    if (!request->follow() || context->IsCancelled()) return grpc::Status::OK;
    // Follow: stop once this attempt has ended and everything it wrote was sent.
    auto now = scheduler->Get(request->run_id());
    bool ended = !now.ok();
    if (now.ok()) {
      for (const auto& s : now->steps()) {
        if (s.name() == request->step()) {
          ended = s.attempts_size() >= attempt && s.attempts(attempt - 1).end_time_ms() != 0;
        }
      }
    }
    in.clear();
    if (ended) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      if (in.gcount() == 0) return grpc::Status::OK;
      in.clear();
      in.seekg(-in.gcount(), std::ios::cur);
      continue;
    }
    if (!in.is_open()) in.open(path, std::ios::binary);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

grpc::Status SchedulerServiceImpl::CreateSchedule(grpc::ServerContext*, const v1::Schedule* request,
                                                  v1::Schedule* response) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  return Reply(scheduler->CreateSchedule(*request), response);
}

grpc::Status SchedulerServiceImpl::ListSchedules(grpc::ServerContext*,
                                                 const v1::ListSchedulesRequest*,
                                                 v1::ListSchedulesResponse* response) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  for (auto& schedule : scheduler->ListSchedules()) {
    schedule.clear_spec_yaml();
    *response->add_schedules() = std::move(schedule);
  }
  return grpc::Status::OK;
}

grpc::Status SchedulerServiceImpl::DeleteSchedule(grpc::ServerContext*,
                                                  const v1::DeleteScheduleRequest* request,
                                                  v1::DeleteScheduleResponse*) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  return ToGrpcStatus(scheduler->DeleteSchedule(request->name()));
}

grpc::Status SchedulerServiceImpl::PutQueue(grpc::ServerContext*, const v1::Queue* request,
                                            v1::Queue* response) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  return Reply(scheduler->PutQueue(*request), response);
}

grpc::Status SchedulerServiceImpl::ListQueues(grpc::ServerContext*, const v1::ListQueuesRequest*,
                                              v1::ListQueuesResponse* response) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  for (auto& queue : scheduler->ListQueues()) *response->add_queues() = std::move(queue);
  return grpc::Status::OK;
}

}  // namespace mlops::scheduler
