// The scheduler suite of mlops-bench (steps run under mlops-step-waiter, as in the server):
//
//   mlops-bench scheduler [--json] [--steps=10000] [--concurrency=8] [--pending=100000]
//
//   floor_spawn_per_s     posix_spawn of `true` then waitpid, --steps times in a loop
//   steps_per_s           a pipeline of --steps independent `true` steps submitted to a child
//                         mlops-server through a queue of --concurrency, from submission until the
//                         run succeeded (parse, persistence of every state change, admission,
//                         work dirs, process start and exit, output capture)
//   executor_steps_per_s  the local executor alone running the same attempts (under the
//                         step waiter, as the server runs them); executor_unwaited_steps_per_s
//                         the same spawned directly; executor_waiter_cost_ratio the first over
//                         the second (what re-attaching after a restart costs)
//   admissions_per_s      admission decisions with --pending steps queued across 10 queues, the
//                         capacity freed as fast as steps are admitted
//   scheduler_peak_rss_mb a child mlops-server's peak RSS holding --pending queued steps (one
//                         pipeline of sleeping steps through a queue that runs one at a time);
//                         scheduler_server_peak_rss_mb is its RSS during the no-op pipeline
#include <grpcpp/grpcpp.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>

#include "mlops/scheduler/v1/scheduler.grpc.pb.h"
#include "services/common/metrics.h"
#include "services/scheduler/admission.h"
#include "services/scheduler/local_executor.h"
#include "tools/bench/bench.h"

extern char** environ;

namespace mlops::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

double SpawnFloor(int steps) {
  char name[] = "true";
  char* argv[] = {name, nullptr};
  auto start = Clock::now();
  for (int i = 0; i < steps; ++i) {
    pid_t pid;
    if (posix_spawnp(&pid, "true", nullptr, nullptr, argv, environ) != 0) std::exit(1);
    int status;
    waitpid(pid, &status, 0);
  }
  return steps / Seconds(start);
}

double ExecutorSteps(int steps, int concurrency, const std::string& work,
                     const std::string& waiter) {
  scheduler::LocalExecutor executor({2000, waiter});
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0, finished = 0, failed = 0;
  auto start = Clock::now();
  for (int i = 0; i < steps; ++i) {
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight < concurrency; });
      ++in_flight;
    }
    scheduler::LaunchSpec spec;
    spec.attempt_id = "s" + std::to_string(i);
    spec.argv = {"true"};
    spec.work_dir = work + "/" + spec.attempt_id;
    std::filesystem::create_directories(spec.work_dir);
    auto handle = executor.Launch(spec, [&](const scheduler::AttemptResult& result) {
      std::lock_guard lock(mu);
      --in_flight;
      ++finished;
      if (result.outcome != scheduler::AttemptResult::Outcome::kSucceeded) ++failed;
      cv.notify_all();
    });
    if (!handle.ok()) {
      std::cerr << handle.status() << "\n";
      std::exit(1);
    }
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return finished == steps; });
  if (failed > 0) {
    std::cerr << failed << " no-op steps failed\n";
    std::exit(1);
  }
  return steps / Seconds(start);
}

// Calls a scheduler RPC, retrying while the scheduler starts (UNAVAILABLE); exits on other errors.
template <typename Method, typename Request, typename Response>
void Call(scheduler::v1::SchedulerService::Stub* stub, Method method, const Request& request,
          Response* response) {
  for (int i = 0; i < 200; ++i) {
    grpc::ClientContext context;
    grpc::Status status = (stub->*method)(&context, request, response);
    if (status.ok()) return;
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      std::cerr << status.error_message() << "\n";
      std::exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  std::cerr << "the scheduler did not become available\n";
  std::exit(1);
}

// A queue running `concurrency` steps at a time, and a pipeline of `steps` independent steps that
// each run `command` (a YAML flow list, optionally followed by more step keys) submitted to it.
scheduler::v1::PipelineRun SubmitThroughQueue(scheduler::v1::SchedulerService::Stub* stub,
                                              const std::string& queue_name, int concurrency,
                                              const std::string& pipeline, int64_t steps,
                                              const std::string& command) {
  scheduler::v1::Queue queue;
  queue.set_name(queue_name);
  queue.set_max_concurrency(concurrency);
  scheduler::v1::Queue stored;
  Call(stub, &scheduler::v1::SchedulerService::Stub::PutQueue, queue, &stored);
  std::string yaml = "name: " + pipeline + "\nsteps:\n";
  for (int64_t i = 0; i < steps; ++i) {
    yaml += "  - name: s" + std::to_string(i) + "\n    command: " + command + "\n";
  }
  scheduler::v1::SubmitPipelineRequest submit;
  submit.set_spec_yaml(yaml);
  submit.set_queue(queue_name);
  scheduler::v1::PipelineRun run;
  Call(stub, &scheduler::v1::SchedulerService::Stub::SubmitPipeline, submit, &run);
  return run;
}

// The whole scheduler: a pipeline of `steps` no-op steps through a child mlops-server.
double SchedulerSteps(const std::string& server_bin, const std::string& work, int steps,
                      int concurrency, double* peak_rss_mb) {
  int pid = 0;
  int port = SpawnServer(server_bin, work + "/server", &pid);
  auto stub = scheduler::v1::SchedulerService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  auto start = Clock::now();
  scheduler::v1::PipelineRun run = SubmitThroughQueue(stub.get(), "bench", concurrency, "noop",
                                                      steps, "[\"true\"]\n    cache: false");
  grpc::ClientContext context;
  scheduler::v1::GetPipelineRunRequest watch;
  watch.set_id(run.id());
  auto reader = stub->WatchPipelineRun(&context, watch);
  while (reader->Read(&run)) {
  }
  double seconds = Seconds(start);
  if (!reader->Finish().ok() || run.state() != scheduler::v1::SUCCEEDED) {
    std::cerr << "the no-op pipeline did not succeed: " << scheduler::v1::RunState_Name(run.state())
              << "\n";
    std::exit(1);
  }
  *peak_rss_mb = static_cast<double>(PeakRssBytes(pid)) / (1 << 20);
  StopServer(pid);
  return steps / seconds;
}

// A server holding `pending` queued steps (a pipeline of sleeping steps through a queue that runs
// one at a time): its peak RSS, then the run is canceled.
double PendingRss(const std::string& server_bin, const std::string& work, int64_t pending) {
  int pid = 0;
  int port = SpawnServer(server_bin, work + "/pending", &pid);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  auto stub = scheduler::v1::SchedulerService::NewStub(grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args));
  auto call = [&](auto method, const auto& request, auto* response) {
    Call(stub.get(), method, request, response);
  };
  scheduler::v1::PipelineRun run =
      SubmitThroughQueue(stub.get(), "hold", 1, "pending", pending, "[sleep, \"600\"]");
  scheduler::v1::GetPipelineRunRequest get;
  get.set_id(run.id());
  for (int i = 0; i < 600 && run.state() != scheduler::v1::RUNNING; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    call(&scheduler::v1::SchedulerService::Stub::GetPipelineRun, get, &run);
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  double rss = static_cast<double>(PeakRssBytes(pid)) / (1 << 20);
  scheduler::v1::CancelPipelineRunRequest cancel;
  cancel.set_id(run.id());
  call(&scheduler::v1::SchedulerService::Stub::CancelPipelineRun, cancel, &run);
  StopServer(pid);
  return rss;
}

}  // namespace

int RunSchedulerBench(int argc, char** argv) {
  bool json = false;
  int steps = 10000, concurrency = 8;
  int64_t pending = 100000;
  std::string self = BenchDir();
  std::string server_bin = self + "/../server/mlops-server";
  std::string work_parent = "/tmp";
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name) { return FlagValue(argv[i], name); };
    if (arg == "--json") {
      json = true;
    } else if (auto v = value("--steps")) {
      steps = std::atoi(v);
    } else if (auto v = value("--concurrency")) {
      concurrency = std::atoi(v);
    } else if (auto v = value("--pending")) {
      pending = std::atoll(v);
    } else if (auto v = value("--server_bin")) {
      server_bin = v;
    } else if (auto v = value("--work_dir")) {
      work_parent = v;
    } else {
      std::cerr << "usage: mlops-bench scheduler [--json] [--steps=N] [--concurrency=N] "
                   "[--pending=N] [--server_bin=PATH] [--work_dir=DIR]\n";
      return 2;
    }
  }
  auto log = [&](const std::string& line) {
    if (!json) std::cerr << line << "\n";
  };
  std::string tmpl = work_parent + "/mlops-bench-scheduler-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return 1;
  std::map<std::string, double> figures;
  log("floor: posix_spawn of true ...");
  figures["floor_spawn_per_s"] = SpawnFloor(steps);
  log("scheduler: a pipeline of no-op steps ...");
  double server_rss = 0;
  figures["steps_per_s"] = SchedulerSteps(server_bin, tmpl, steps, concurrency, &server_rss);
  figures["steps_ratio_to_floor"] = figures["steps_per_s"] / figures["floor_spawn_per_s"];
  figures["scheduler_server_peak_rss_mb"] = server_rss;
  log("local executor: no-op steps ...");
  figures["executor_steps_per_s"] =
      ExecutorSteps(steps, concurrency, tmpl, scheduler::FindStepWaiter());
  figures["executor_ratio_to_floor"] =
      figures["executor_steps_per_s"] / figures["floor_spawn_per_s"];
  log("local executor without mlops-step-waiter: no-op steps ...");
  figures["executor_unwaited_steps_per_s"] = ExecutorSteps(steps, concurrency, tmpl, "");
  figures["executor_waiter_cost_ratio"] =
      figures["executor_steps_per_s"] / figures["executor_unwaited_steps_per_s"];

  log("admission: queueing pending steps ...");
  scheduler::Admission admission({static_cast<int64_t>(concurrency) * 1000, int64_t{1} << 40, 0});
  for (int q = 0; q < 10; ++q) {
    scheduler::QueueConfig config;
    config.name = "q" + std::to_string(q);
    config.priority = q % 3;
    config.max_concurrency = concurrency;
    if (!admission.SetQueue(config).ok()) return 1;
  }
  for (int64_t i = 0; i < pending; ++i) {
    scheduler::PendingStep step;
    step.id = "p" + std::to_string(i);
    step.queue = "q" + std::to_string(i % 10);
    step.per_replica = {250 + 250 * (i % 4), 64 << 20, 0};
    step.replicas = 1 + static_cast<int>(i % 3 == 0);
    if (!admission.Enqueue(step).ok()) return 1;
  }
  log("admission: decisions ...");
  auto start = Clock::now();
  int64_t admitted = 0;
  while (admission.pending() > 0) {
    auto batch = admission.Admit(1);  // one decision at a time, as steps finish one by one
    if (batch.empty()) return 1;
    admitted += static_cast<int64_t>(batch.size());
    for (const auto& step : batch) admission.Release(step.id);
  }
  figures["admissions_per_s"] = static_cast<double>(admitted) / Seconds(start);
  figures["admission_pending"] = static_cast<double>(pending);
  log("scheduler: a server holding the pending steps ...");
  figures["scheduler_peak_rss_mb"] = PendingRss(server_bin, tmpl, pending);
  figures["steps"] = steps;
  figures["concurrency"] = concurrency;
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
  PrintFigures(figures, json);
  return 0;
}

}  // namespace mlops::bench
