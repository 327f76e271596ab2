#include "tools/cli/pipeline_cli.h"

#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "absl/strings/str_join.h"
#include "mlops/scheduler/v1/scheduler.grpc.pb.h"
#include "services/common/strings.h"
#include "services/scheduler/quantities.h"

namespace mlops::cli {
namespace {

namespace sv1 = mlops::scheduler::v1;

std::string Duration(int64_t start, int64_t end) {
  if (start == 0) return "-";
  int64_t ms = (end == 0 ? std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count()
                         : end) -
               start;
  char buf[32];
  if (ms < 1000) {
    std::snprintf(buf, sizeof(buf), "%lldms", static_cast<long long>(ms));
  } else if (ms < 60000) {
    std::snprintf(buf, sizeof(buf), "%.1fs", static_cast<double>(ms) / 1000);
  } else {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", static_cast<long long>(ms / 60000),
                  static_cast<long long>(ms / 1000 % 60));
  }
  return buf;
}

class PipelineCli {
 public:
  PipelineCli(std::shared_ptr<grpc::Channel> channel, bool json)
      : stub_(sv1::SchedulerService::NewStub(channel)), json_(json) {}

  template <typename Request, typename Response>
  Response Call(grpc::Status (sv1::SchedulerService::Stub::*method)(grpc::ClientContext*,
                                                                    const Request&, Response*),
                const Request& request) {
    return CallOrExit(stub_.get(), method, request, std::chrono::seconds(60));
  }

  int Pipeline(const std::string& command, Args& args) {
    if (command == "submit") return Submit(args);
    if (command == "list") return List(args);
    if (command == "status") return Status(args);
    if (command == "logs") return Logs(args);
    if (command == "schedule") return Schedule(args);
    if (command == "schedules") {
      args.ExpectEmpty();
      auto response =
          Call(&sv1::SchedulerService::Stub::ListSchedules, sv1::ListSchedulesRequest());
      if (json_) return PrintJson(response), 0;
      std::vector<std::vector<std::string>> rows;
      for (const auto& s : response.schedules()) {
        rows.push_back({s.name(), s.cron(), s.queue(), FormatTime(s.next_time_ms()),
                        FormatTime(s.last_time_ms()), s.last_run_id()});
      }
      PrintTable({"SCHEDULE", "CRON (UTC)", "QUEUE", "NEXT", "LAST", "LAST RUN"}, rows);
      return 0;
    }
    if (command == "unschedule") {
      sv1::DeleteScheduleRequest request;
      request.set_name(args.Positional("NAME"));
      args.ExpectEmpty();
      Call(&sv1::SchedulerService::Stub::DeleteSchedule, request);
      std::cout << "schedule " << request.name() << " deleted\n";
      return 0;
    }
    if (command == "cancel" || command == "retry") {
      std::string id = args.Positional("RUN");
      args.ExpectEmpty();
      sv1::PipelineRun run;
      if (command == "cancel") {
        sv1::CancelPipelineRunRequest request;
        request.set_id(id);
        run = Call(&sv1::SchedulerService::Stub::CancelPipelineRun, request);
        std::cout << "canceling " << id << "\n";
      } else {
        sv1::RetryPipelineRunRequest request;
        request.set_id(id);
        run = Call(&sv1::SchedulerService::Stub::RetryPipelineRun, request);
        std::cout << run.id() << "\n";
        std::cerr << "retrying " << id << " as " << run.id()
                  << ": succeeded steps are reused from the cache\n";
      }
      return 0;
    }
    throw UsageError{"unknown command 'pipeline " + command + "'"};
  }

  int Queues(const std::string& command, Args& args) {
    if (command == "list") {
      args.ExpectEmpty();
      auto response = Call(&sv1::SchedulerService::Stub::ListQueues, sv1::ListQueuesRequest());
      if (json_) return PrintJson(response), 0;
      std::vector<std::vector<std::string>> rows;
      for (const auto& q : response.queues()) {
        auto limit = [](int64_t v, const std::string& unit) {
          return v == 0 ? std::string("-") : std::to_string(v) + unit;
        };
        rows.push_back({q.name(), std::to_string(q.priority()), limit(q.max_concurrency(), ""),
                        limit(q.cpu_millis(), "m"), limit(q.memory_bytes() >> 20, "Mi"),
                        limit(q.gpus(), ""), std::to_string(q.pending()),
                        std::to_string(q.running()),
                        q.kueue_local_queue().empty() ? "-" : q.kueue_local_queue(),
                        q.projects().empty() ? "*" : absl::StrJoin(q.projects(), ",")});
      }
      PrintTable({"QUEUE", "PRIORITY", "MAX RUNNING", "CPU", "MEMORY", "GPU", "PENDING", "RUNNING",
                  "KUEUE", "PROJECTS"},
                 rows);
      return 0;
    }
    if (command == "put") {
      sv1::Queue queue;
      queue.set_name(args.Positional("NAME"));
      queue.set_priority(
          static_cast<int>(ParseInt(args.Take("--priority").value_or("0"), "--priority")));
      queue.set_max_concurrency(static_cast<int>(
          ParseInt(args.Take("--max-concurrency").value_or("0"), "--max-concurrency")));
      if (auto cpu = args.Take("--cpu")) {
        int64_t millis;
        if (!scheduler::ParseCpu(*cpu, &millis)) throw UsageError{"--cpu: cores or 500m"};
        queue.set_cpu_millis(millis);
      }
      if (auto memory = args.Take("--memory")) {
        int64_t bytes;
        if (!scheduler::ParseMemory(*memory, &bytes)) throw UsageError{"--memory: e.g. 4Gi"};
        queue.set_memory_bytes(bytes);
      }
      queue.set_gpus(ParseInt(args.Take("--gpu").value_or("0"), "--gpu"));
      if (auto file = args.Take("--pod-template")) {
        // The Kubernetes executor's pod template for this queue's steps (JSON).
        std::ifstream in(*file, std::ios::binary);
        if (!in) throw UsageError{"--pod-template: cannot read " + *file};
        queue.set_pod_template_json(
            std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
      }
      // The Kubernetes executor: Kueue admits this queue's steps (a LocalQueue's name).
      queue.set_kueue_local_queue(args.Take("--kueue").value_or(""));
      // The projects whose runs may use the queue (none: every project).
      for (const std::string& project : args.TakeAll("--open-to")) {
        queue.add_projects(project);
      }
      args.ExpectEmpty();
      auto stored = Call(&sv1::SchedulerService::Stub::PutQueue, queue);
      if (json_) return PrintJson(stored), 0;
      std::cout << "queue " << stored.name() << " saved\n";
      return 0;
    }
    throw UsageError{"unknown command 'queues " + command + "'"};
  }

 private:
  int Submit(Args& args) {
    std::string file = args.Positional("FILE (a pipeline spec in YAML)");
    sv1::SubmitPipelineRequest request;
    for (const auto& param : args.TakeAll("--param")) {
      auto [k, v] = SplitKeyValue(param, "--param");
      (*request.mutable_params())[k] = v;
    }
    request.set_queue(args.Take("--queue").value_or(""));
    request.set_no_cache(args.TakeFlag("--no-cache"));
    bool watch = args.TakeFlag("--watch");
    args.ExpectEmpty();
    std::ifstream in(file);
    if (!in) throw UsageError{"cannot read " + file};
    std::stringstream text;
    text << in.rdbuf();
    request.set_spec_yaml(text.str());
    auto run = Call(&sv1::SchedulerService::Stub::SubmitPipeline, request);
    if (json_ && !watch) return PrintJson(run), 0;
    std::cout << run.id() << "\n";
    if (!watch) return 0;
    return Watch(run.id());
  }

  int Schedule(Args& args) {
    std::string file = args.Positional("FILE (a pipeline spec in YAML)");
    sv1::Schedule schedule;
    auto cron = args.Take("--cron");
    if (!cron) throw UsageError{"pipeline schedule needs --cron \"MIN HOUR DOM MON DOW\""};
    schedule.set_cron(*cron);
    auto name = args.Take("--name");
    if (!name) throw UsageError{"pipeline schedule needs --name NAME"};
    schedule.set_name(*name);
    for (const auto& param : args.TakeAll("--param")) {
      auto [k, v] = SplitKeyValue(param, "--param");
      (*schedule.mutable_params())[k] = v;
    }
    schedule.set_queue(args.Take("--queue").value_or(""));
    schedule.set_no_cache(args.TakeFlag("--no-cache"));
    args.ExpectEmpty();
    std::ifstream in(file);
    if (!in) throw UsageError{"cannot read " + file};
    std::stringstream text;
    text << in.rdbuf();
    schedule.set_spec_yaml(text.str());
    auto stored = Call(&sv1::SchedulerService::Stub::CreateSchedule, schedule);
    if (json_) return PrintJson(stored), 0;
    std::cout << "schedule " << stored.name() << " (" << stored.cron() << " UTC): next run at "
              << FormatTime(stored.next_time_ms()) << " UTC\n";
    return 0;
  }

  // Prints each step's state changes until the run finishes; exit code 0 only on success.
  int Watch(const std::string& id) {
    grpc::ClientContext context;
    sv1::GetPipelineRunRequest request;
    request.set_id(id);
    auto reader = stub_->WatchPipelineRun(&context, request);
    sv1::PipelineRun run;
    std::map<std::string, sv1::RunState> last;
    while (reader->Read(&run)) {
      for (const auto& step : run.steps()) {
        auto it = last.find(step.name());
        if (it != last.end() && it->second == step.state()) continue;
        last[step.name()] = step.state();
        if (step.state() == sv1::PENDING) continue;
        std::cerr << "  " << step.name() << ": " << sv1::RunState_Name(step.state());
        if (step.state() == sv1::CACHED) std::cerr << " (from " << step.cached_from() << ")";
        if (!step.message().empty() && step.state() != sv1::SUCCEEDED) {
          std::cerr << " - " << step.message();
        }
        std::cerr << "\n";
      }
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) FailRpc(status);
    std::cerr << "pipeline run " << id << ": " << sv1::RunState_Name(run.state()) << "\n";
    return run.state() == sv1::SUCCEEDED ? 0 : 1;
  }

  int List(Args& args) {
    int64_t max = ParseInt(args.Take("--max").value_or("50"), "--max");
    args.ExpectEmpty();
    sv1::ListPipelineRunsRequest request;
    request.set_page_size(static_cast<int>(std::min<int64_t>(max, 1000)));
    auto response = Call(&sv1::SchedulerService::Stub::ListPipelineRuns, request);
    if (json_) return PrintJson(response), 0;
    std::vector<std::vector<std::string>> rows;
    for (const auto& run : response.runs()) {
      int done = 0, cached = 0;
      for (const auto& s : run.steps()) {
        done += s.state() == sv1::SUCCEEDED || s.state() == sv1::CACHED;
        cached += s.state() == sv1::CACHED;
      }
      rows.push_back({run.id(), run.pipeline(), sv1::RunState_Name(run.state()),
                      std::to_string(done) + "/" + std::to_string(run.steps_size()),
                      std::to_string(cached), FormatTime(run.create_time_ms()),
                      Duration(run.create_time_ms(), run.end_time_ms())});
    }
    PrintTable({"RUN", "PIPELINE", "STATE", "STEPS DONE", "CACHED", "CREATED", "DURATION"}, rows);
    return 0;
  }

  int Status(Args& args) {
    sv1::GetPipelineRunRequest request;
    request.set_id(args.Positional("RUN"));
    // --watch: first follow the run to its end (as submit --watch), then show it; the exit code
    // is then 0 only for a run that SUCCEEDED.
    const bool watch = args.TakeFlag("--watch");
    args.ExpectEmpty();
    const int watched = watch ? Watch(request.id()) : 0;
    auto run = Call(&sv1::SchedulerService::Stub::GetPipelineRun, request);
    if (json_) return PrintJson(run), watched;
    std::cout << "run:      " << run.id() << "\npipeline: " << run.pipeline()
              << "\nstate:    " << sv1::RunState_Name(run.state()) << "\nqueue:    " << run.queue()
              << "\ncreated:  " << FormatTime(run.create_time_ms())
              << "\nduration: " << Duration(run.create_time_ms(), run.end_time_ms()) << "\n";
    if (!run.retry_of().empty()) std::cout << "retry of: " << run.retry_of() << "\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : run.steps()) {
      std::string needs;
      for (const auto& n : s.needs()) needs += (needs.empty() ? "<- " : ", ") + n;
      std::string detail = s.state() == sv1::CACHED ? "cache hit: " + s.cached_from() : s.message();
      std::string metrics;
      for (const auto& [k, v] :
           std::map<std::string, double>(s.metrics().begin(), s.metrics().end())) {
        metrics += (metrics.empty() ? "" : " ") + k + "=" + mlops::FormatDouble(v);
      }
      rows.push_back({s.name(), sv1::RunState_Name(s.state()),
                      Duration(s.start_time_ms(), s.end_time_ms()),
                      std::to_string(s.attempts_size()), needs, metrics, detail});
    }
    std::cout << "\n";
    PrintTable({"STEP", "STATE", "DURATION", "ATTEMPTS", "NEEDS", "METRICS", "DETAIL"}, rows);
    // How each swept step's instances compared on its objective.
    for (const auto& sweep : run.sweeps()) {
      std::cout << "\nsweep " << sweep.step() << ": "
                << (sweep.maximize() ? "maximize " : "minimize ") << sweep.metric() << ", best "
                << (sweep.best().empty() ? "(none reported it)" : sweep.best()) << "\n";
      std::vector<std::vector<std::string>> trials;
      for (const auto& s : run.steps()) {
        auto it = sweep.values().find(s.name());
        if (it == sweep.values().end()) continue;
        trials.push_back(
            {s.name(), mlops::FormatDouble(it->second), s.name() == sweep.best() ? "*" : ""});
      }
      PrintTable({"INSTANCE", sweep.metric(), "BEST"}, trials);
    }
    return watched;
  }

  int Logs(Args& args) {
    sv1::GetStepLogsRequest request;
    request.set_run_id(args.Positional("RUN"));
    request.set_step(args.Positional("STEP"));
    request.set_follow(args.TakeFlag("--follow") || args.TakeFlag("-f"));
    request.set_stderr(args.TakeFlag("--stderr"));
    if (auto attempt = args.Take("--attempt")) {
      request.set_attempt(static_cast<int>(ParseInt(*attempt, "--attempt")));
    }
    args.ExpectEmpty();
    grpc::ClientContext context;
    auto reader = stub_->GetStepLogs(&context, request);
    sv1::LogChunk chunk;
    while (reader->Read(&chunk)) {
      if (!chunk.produced_by().empty()) {
        std::cerr << "(step " << request.step()
                  << " was CACHED: these are the logs of the attempt that produced its outputs, "
                  << chunk.produced_by() << ")\n";
      }
      std::cout.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
      std::cout.flush();
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) FailRpc(status);
    return 0;
  }

  std::unique_ptr<sv1::SchedulerService::Stub> stub_;
  bool json_;
};

}  // namespace

int RunPipelineCommand(const std::string& group, const std::string& command, Args& args,
                       std::shared_ptr<grpc::Channel> channel, bool json) {
  PipelineCli cli(channel, json);
  return group == "queues" ? cli.Queues(command, args) : cli.Pipeline(command, args);
}

}  // namespace mlops::cli
