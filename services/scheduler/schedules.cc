// Scheduler: cron schedules (create, list, delete) and firing them.
#include <cctype>
#include <cmath>
#include <filesystem>
#include <set>
#include <tuple>

#include "services/common/digest.h"
#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/names.h"
#include "services/common/page_token.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/scheduler/cron.h"
#include "services/scheduler/metrics_file.h"
#include "services/scheduler/scheduler.h"
#include "services/scheduler/scheduler_internal.h"

namespace mlops::scheduler {

absl::StatusOr<v1::Schedule> Scheduler::CreateSchedule(const v1::Schedule& requested) {
  // Keyed by its name in its project (`projects/P/name`; a bare name in project default).
  ASSIGN_OR_RETURN(ScopedName scoped, ParseScoped("name", requested.name()));
  RETURN_IF_ERROR(ValidateName(NameKind::kStep, "name", scoped.name));
  v1::Schedule schedule = requested;
  schedule.set_name(Qualify(scoped.project, scoped.name));
  ASSIGN_OR_RETURN(CronSchedule cron, CronSchedule::Parse(schedule.cron()));
  ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipelineSpec(schedule.spec_yaml()));
  RETURN_IF_ERROR(ApplyParams(&spec, {schedule.params().begin(), schedule.params().end()}));
  RETURN_IF_ERROR(ExpandSweeps(spec).status());
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(CheckStorage());
  std::string queue = schedule.queue().empty() ? "default" : schedule.queue();
  RETURN_IF_ERROR(CheckQueue(queue, scoped.project));
  if (schedules_.contains(schedule.name())) {
    return absl::AlreadyExistsError("schedule " + schedule.name() + " exists");
  }
  v1::Schedule stored = schedule;
  stored.set_queue(queue);
  stored.set_next_time_ms(schedule.first_time_ms() > 0 ? schedule.first_time_ms()
                                                       : cron.NextAfter(NowMs()));
  if (stored.next_time_ms() < 0) {
    return absl::InvalidArgumentError("cron \"" + schedule.cron() + "\": never fires");
  }
  rocksdb::WriteBatch batch;
  batch.Put(schedules_cf_, stored.name(), stored.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  schedules_[stored.name()] = stored;
  wake_.notify_all();
  return stored;
}

absl::StatusOr<std::vector<v1::Schedule>> Scheduler::ListSchedules(
    const std::string& requested) const {
  const std::string project = requested.empty() ? std::string(kDefaultProject) : requested;
  if (project != kEveryProject) RETURN_IF_ERROR(ValidateProject(project));
  std::lock_guard lock(mu_);
  std::vector<v1::Schedule> out;
  for (const auto& [name, schedule] : schedules_) {
    if (project == kEveryProject || ProjectOf(name) == project) out.push_back(schedule);
  }
  return out;
}

absl::Status Scheduler::DeleteSchedule(const std::string& requested) {
  ASSIGN_OR_RETURN(ScopedName scoped, ParseScoped("name", requested));
  const std::string name = Qualify(scoped.project, scoped.name);
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(CheckStorage());
  if (!schedules_.contains(name)) return absl::NotFoundError("schedule " + name + " not found");
  rocksdb::WriteBatch batch;
  batch.Delete(schedules_cf_, name);
  RETURN_IF_ERROR(db_->Write(&batch));
  schedules_.erase(name);
  return absl::OkStatus();
}

void Scheduler::FireSchedules(int64_t now) {
  for (auto& [name, schedule] : schedules_) {
    if (schedule.next_time_ms() < 0 || schedule.next_time_ms() > now) continue;
    // The next time is recorded before the run is submitted: at most one run per fire time.
    auto cron = CronSchedule::Parse(schedule.cron());
    schedule.set_last_time_ms(schedule.next_time_ms());
    schedule.set_next_time_ms(cron.ok() ? cron->NextAfter(now) : -1);
    rocksdb::WriteBatch batch;
    batch.Put(schedules_cf_, name, schedule.SerializeAsString());
    if (!WriteOrStop(&batch, "schedule " + name)) return;
    v1::SubmitPipelineRequest request;
    request.set_spec_yaml(schedule.spec_yaml());
    *request.mutable_params() = schedule.params();
    request.set_queue(schedule.queue());
    request.set_no_cache(schedule.no_cache());
    request.set_project(std::string(ProjectOf(name)));
    absl::StatusOr<v1::PipelineRun> run = absl::InternalError("spec");
    auto spec = ParsePipelineSpec(schedule.spec_yaml());
    if (spec.ok()) {
      absl::Status applied =
          ApplyParams(&*spec, {schedule.params().begin(), schedule.params().end()});
      auto expanded = applied.ok() ? ExpandSweeps(*spec) : absl::StatusOr<PipelineSpec>(applied);
      run = expanded.ok() ? SubmitLocked(request, std::move(*expanded)) : expanded.status();
    } else {
      run = spec.status();
    }
    if (run.ok()) {
      schedule.set_last_run_id(run->id());
      batch.Clear();
      batch.Put(schedules_cf_, name, schedule.SerializeAsString());
      db_->Write(&batch).IgnoreError();
    } else {
      LogWarning("schedule_submit_failed",
                 {{"schedule", name}, {"error", std::string(run.status().message())}});
    }
  }
}

}  // namespace mlops::scheduler
