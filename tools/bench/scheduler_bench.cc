// The scheduler suite of mlops-bench, as far as the scheduler is built (issue 5 is in progress):
//
//   mlops-bench scheduler [--json] [--steps=10000] [--concurrency=8] [--pending=100000]
//
//   floor_spawn_per_s     posix_spawn of `true` then waitpid, --steps times in a loop
//   executor_steps_per_s  the local executor running --steps `true` attempts, --concurrency at a
//                         time, each in its own work dir with captured output (the executor part
//                         of steps_per_s; the whole scheduler's figure comes with the service)
//   admissions_per_s      admission decisions with --pending steps queued across 10 queues, the
//                         capacity freed as fast as steps are admitted
//   admission_peak_rss_mb this process's peak RSS after queueing --pending steps
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <string>

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

double ExecutorSteps(int steps, int concurrency, const std::string& work) {
  scheduler::LocalExecutor executor;
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

}  // namespace

int RunSchedulerBench(int argc, char** argv) {
  bool json = false;
  int steps = 10000, concurrency = 8;
  int64_t pending = 100000;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      std::string prefix = std::string(name) + "=";
      return arg.rfind(prefix, 0) == 0 ? argv[i] + prefix.size() : nullptr;
    };
    if (arg == "--json") {
      json = true;
    } else if (auto v = value("--steps")) {
      steps = std::atoi(v);
    } else if (auto v = value("--concurrency")) {
      concurrency = std::atoi(v);
    } else if (auto v = value("--pending")) {
      pending = std::atoll(v);
    } else {
      std::cerr << "usage: mlops-bench scheduler [--json] [--steps=N] [--concurrency=N] "
                   "[--pending=N]\n";
      return 2;
    }
  }
  auto log = [&](const std::string& line) {
    if (!json) std::cerr << line << "\n";
  };
  std::string tmpl = "/tmp/mlops-bench-scheduler-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return 1;
  std::map<std::string, double> figures;
  log("floor: posix_spawn of true ...");
  figures["floor_spawn_per_s"] = SpawnFloor(steps);
  log("local executor: no-op steps ...");
  figures["executor_steps_per_s"] = ExecutorSteps(steps, concurrency, tmpl);
  figures["executor_ratio_to_floor"] =
      figures["executor_steps_per_s"] / figures["floor_spawn_per_s"];

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
  figures["admission_peak_rss_mb"] = static_cast<double>(PeakRssBytes()) / (1 << 20);
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
  figures["steps"] = steps;
  figures["concurrency"] = concurrency;
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
  PrintFigures(figures, json);
  return 0;
}

}  // namespace mlops::bench
