#include "services/scheduler/scheduler_service.h"

#include <fstream>
#include <thread>

#include "services/common/grpc_status.h"
#include "services/common/projects.h"
#include "services/common/status.h"

namespace mlops::scheduler {
namespace {

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
  // A CACHED step has no attempt of its own: follow cached_from ("run id/step") to the run whose
  // attempt produced the outputs (a few hops at most: a cache hit names the producer).
  std::string run_id = CanonicalName(request->run_id()), step_name = request->step(), produced_by;
  v1::StepRun step;
  for (int hop = 0;; ++hop) {
    auto run = scheduler->Get(run_id);
    if (!run.ok()) return ToGrpcStatus(run.status());
    bool found = false;
    for (const auto& s : run->steps()) {
      if (s.name() == step_name) {
        step = s;
        found = true;
      }
    }
    if (!found) {
      return ToGrpcStatus(absl::NotFoundError("run " + run_id + " has no step " + step_name));
    }
    if (step.attempts_size() > 0 || step.state() != v1::CACHED || hop == 8) break;
    size_t slash = RunIdEnd(step.cached_from());
    if (slash == std::string::npos) break;
    run_id = step.cached_from().substr(0, slash);
    step_name = step.cached_from().substr(slash + 1);
    produced_by = step.cached_from();
  }
  if (step.attempts_size() == 0) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        "step " + request->step() + " has not run" +
        (produced_by.empty() ? "" : " (cached from " + produced_by + ", which has no logs)")));
  }
  if (!produced_by.empty() && request->attempt() != 0) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        "attempt: step " + request->step() + " was CACHED from " + produced_by +
        " and has no attempts of its own; ask that run for its attempts"));
  }
  int attempt = request->attempt() == 0 ? step.attempts(step.attempts_size() - 1).number()
                                        : request->attempt();
  if (attempt < 1 || attempt > step.attempts_size()) {
    return ToGrpcStatus(absl::NotFoundError("step " + request->step() + " has no attempt " +
                                            std::to_string(request->attempt())));
  }
  if (!produced_by.empty()) {
    v1::LogChunk note;
    note.set_produced_by(run_id + "/" + step_name + "/" + std::to_string(attempt));
    if (!writer->Write(note)) return grpc::Status::OK;
  }
  std::string path = scheduler->AttemptDir(run_id, step_name, attempt) +
                     (request->stderr() ? "/stderr.log" : "/stdout.log");
  // The values of the step's secrets never leave the scheduler (kept logs are redacted when the
  // attempt ends; a running one's is redacted here).
  Redactor redactor(scheduler->LogRedactions(run_id, step_name));
  auto send = [&](std::string data) {
    if (data.empty()) return true;
    v1::LogChunk chunk;
    chunk.set_data(std::move(data));
    return writer->Write(chunk);
  };
  std::ifstream in(path, std::ios::binary);
  std::string buffer(64 << 10, '\0');
  for (;;) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    std::streamsize n = in.gcount();
    if (n > 0) {
      if (!send(redactor.Feed(std::string_view(buffer.data(), static_cast<size_t>(n))))) {
        return grpc::Status::OK;
      }
      continue;
    }
    if (!request->follow() || context->IsCancelled()) {
      send(redactor.Finish());
      return grpc::Status::OK;
    }
    // Follow: stop once this attempt has ended and everything it wrote was sent.
    auto now = scheduler->Get(run_id);
    bool ended = !now.ok();
    if (now.ok()) {
      for (const auto& s : now->steps()) {
        if (s.name() == step_name) {
          ended = s.attempts_size() >= attempt && s.attempts(attempt - 1).end_time_ms() != 0;
        }
      }
    }
    in.clear();
    if (ended) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      if (in.gcount() == 0) {
        send(redactor.Finish());
        return grpc::Status::OK;
      }
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
                                                 const v1::ListSchedulesRequest* request,
                                                 v1::ListSchedulesResponse* response) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  auto schedules = scheduler->ListSchedules(request->project());
  if (!schedules.ok()) return ToGrpcStatus(schedules.status());
  for (auto& schedule : *schedules) {
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

grpc::Status SchedulerServiceImpl::ReportAttempt(grpc::ServerContext*,
                                                 const v1::ReportAttemptRequest* request,
                                                 v1::ReportAttemptResponse* response) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  return Reply(scheduler->ReportAttempt(*request), response);
}

grpc::Status SchedulerServiceImpl::ReportCheckpoint(grpc::ServerContext*,
                                                    const v1::ReportCheckpointRequest* request,
                                                    v1::ReportCheckpointResponse*) {
  MLOPS_SCHEDULER_OR_RETURN(scheduler);
  return ToGrpcStatus(scheduler->ReportCheckpoint(*request));
}

}  // namespace mlops::scheduler
