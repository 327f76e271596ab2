// The Kubernetes suite of mlops-bench, on a cluster given as tools/k8s/up.sh's DIR/env gives it
// (MLOPS_K8S_API, MLOPS_K8S_CA, MLOPS_K8S_ADMIN_TOKEN; never in CI):
//
//   mlops-bench k8s [--json] [--samples=10] [--steps=100] [--parallel=10] [--jobs=1000]
//
//   floor_job_ms_p50          a bare Job of `true` (busybox), created over REST and watched until
//                             its Complete condition: what the cluster itself takes
//   attempt_ms_p50            the same command as an attempt of the Kubernetes executor, from
//                             Launch until its result is reported (the log read whole included)
//   k8s_step_overhead_ms      attempt_ms_p50 - floor_job_ms_p50: what mlops adds to a step
//   k8s_api_calls_per_step    API requests of the executor per attempt (watches included)
//   steps_wall_s              --steps attempts of `true`, --parallel at a time, through the
//                             executor; steps_per_s the same as a rate
//   rss_mb_idle, rss_mb_with_jobs  this process's RSS with the executor started on an empty
//                             namespace, and with --jobs suspended Jobs of its label (listed and
//                             watched: no pods run)
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "services/common/strings.h"
#include "services/scheduler/kubernetes/kube_client.h"
#include "services/scheduler/kubernetes/kubernetes_executor.h"
#include "tools/bench/bench.h"

namespace mlops::bench {
namespace {

using Clock = std::chrono::steady_clock;
using scheduler::AttemptResult;
using scheduler::LaunchSpec;
namespace k8s = scheduler::k8s;

constexpr char kImage[] = "docker.io/mlops-k8s/busybox:1";

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

double Ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

double RssMb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024;
  }
  return 0;
}

void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::cerr << "mlops-bench k8s: " << what << "\n";
    std::exit(1);
  }
}

class Cluster {
 public:
  Cluster() {
    k8s::KubeConfig config;
    config.server = Env("MLOPS_K8S_API");
    config.ca_file = Env("MLOPS_K8S_CA");
    config.token = Env("MLOPS_K8S_ADMIN_TOKEN");
    config.qps = 0;  // the bench's own setup is not budgeted
    Check(!config.server.empty(), "needs a cluster: tools/k8s/up.sh DIR; source DIR/env");
    admin_ = std::make_shared<k8s::KubeClient>(config);
    namespace_ = StrCat("mlops-bench-", ::getpid());
    auto created =
        admin_->Request("POST", "/api/v1/namespaces",
                        StrCat(R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":")",
                               namespace_, R"("}})"));
    Check(created.ok() && created->http_code == 201, "cannot create a namespace");
    for (int i = 0; i < 100; ++i) {
      auto sa = admin_->Request(
          "GET", StrCat("/api/v1/namespaces/", namespace_, "/serviceaccounts/default"));
      if (sa.ok() && sa->http_code == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ~Cluster() { (void)admin_->Request("DELETE", "/api/v1/namespaces/" + namespace_); }

  std::unique_ptr<k8s::KubernetesExecutor> Executor(const std::string& id) {
    k8s::KubernetesOptions options;
    options.namespace_name = namespace_;
    options.default_image = kImage;
    options.image_pull_policy = "Never";
    options.scheduler_id = id;
    options.wrap_steps = false;  // the executor's own cost: the command runs as given
    k8s::KubeConfig config = admin_->config();
    config.qps = 50;
    config.burst = 100;
    auto executor =
        k8s::KubernetesExecutor::Start(std::make_shared<k8s::KubeClient>(config), options);
    Check(executor.ok(), "the executor does not start: " + executor.status().ToString());
    return *std::move(executor);
  }

  // A bare Job of `true`, created and watched until Complete (ms).
  double BareJob(int i) {
    const std::string name = StrCat("floor-", i);
    const std::string jobs = StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs");
    auto start = Clock::now();
    auto created = admin_->Request(
        "POST", jobs,
        StrCat(R"({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":")", name,
               R"("},"spec":{"backoffLimit":0,"template":{"spec":{"restartPolicy":"Never",)",
               R"("enableServiceLinks":false,"containers":[{"name":"c","image":")", kImage,
               R"(","imagePullPolicy":"Never","command":["true"]}]}}}})"));
    Check(created.ok() && created->http_code == 201, "cannot create a Job");
    std::atomic<bool> stop{false};
    double ms = 0;
    (void)admin_->Watch(
        StrCat(jobs, "?watch=true&fieldSelector=metadata.name%3D", name),
        [&](std::string_view line) {
          if (line.find(R"("type":"Complete","status":"True")") != std::string_view::npos ||
              line.find(R"("type":"SuccessCriteriaMet","status":"True")") !=
                  std::string_view::npos) {
            ms = Ms(start);
            return false;
          }
          return true;
        },
        stop);
    (void)admin_->Request("DELETE", StrCat(jobs, "/", name, "?propagationPolicy=Background"));
    return ms;
  }

  void SuspendedJobs(int n, const std::string& scheduler_id) {
    const std::string jobs = StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs");
    for (int i = 0; i < n; ++i) {
      auto created = admin_->Request(
          "POST", jobs,
          StrCat(R"({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"idle-)", i,
                 R"(","labels":{"mlops.dev/scheduler":")", scheduler_id,
                 R"("}},"spec":{"suspend":true,"backoffLimit":0,"template":{"spec":{)",
                 R"("restartPolicy":"Never","containers":[{"name":"c","image":")", kImage,
                 R"(","command":["true"]}]}}}})"));
      Check(created.ok() && created->http_code == 201, "cannot create a suspended Job");
    }
  }

 private:
  std::shared_ptr<k8s::KubeClient> admin_;
  std::string namespace_;
};

// Attempts of `true`, at most `parallel` at a time; returns each one's Launch-to-result ms.
std::vector<double> RunAttempts(k8s::KubernetesExecutor* executor, const std::string& prefix,
                                int count, int parallel) {
  std::mutex mu;
  std::condition_variable cv;
  int running = 0, done = 0;
  std::vector<double> times;
  for (int i = 0; i < count; ++i) {
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return running < parallel; });
      ++running;
    }
    LaunchSpec spec;
    spec.attempt_id = StrCat(prefix, "/", i);
    spec.argv = {"true"};
    auto start = Clock::now();
    auto launched = executor->Launch(spec, [&, start](const AttemptResult& result) {
      Check(result.outcome == AttemptResult::Outcome::kSucceeded,
            "an attempt failed: " + result.message);
      std::lock_guard lock(mu);
      times.push_back(Ms(start));
      --running;
      ++done;
      cv.notify_all();
    });
    Check(launched.ok(), "Launch: " + launched.status().ToString());
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done == count; });
  for (int i = 0; i < count; ++i) executor->Collected(StrCat(prefix, "/", i));
  return times;
}

}  // namespace

int RunK8sBench(int argc, char** argv) {
  bool json = false;
  int samples = 10, steps = 100, parallel = 10, jobs = 1000;
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--json") {
      json = true;
    } else if (const char* v = FlagValue(argv[i], "--samples")) {
      samples = std::atoi(v);
    } else if (const char* v = FlagValue(argv[i], "--steps")) {
      steps = std::atoi(v);
    } else if (const char* v = FlagValue(argv[i], "--parallel")) {
      parallel = std::atoi(v);
    } else if (const char* v = FlagValue(argv[i], "--jobs")) {
      jobs = std::atoi(v);
    } else {
      std::cerr << "usage: mlops-bench k8s [--json] [--samples=10] [--steps=100] "
                   "[--parallel=10] [--jobs=1000]\n";
      return 2;
    }
  }
  std::map<std::string, double> figures;
  Cluster cluster;
  std::vector<double> floor;
  for (int i = 0; i < samples; ++i) floor.push_back(cluster.BareJob(i));
  figures["floor_job_ms_p50"] = Median(floor);

  auto executor = cluster.Executor("bench");
  const int64_t before = executor->api_requests();
  std::vector<double> sequential = RunAttempts(executor.get(), "seq", samples, 1);
  figures["attempt_ms_p50"] = Median(sequential);
  figures["k8s_step_overhead_ms"] = figures["attempt_ms_p50"] - figures["floor_job_ms_p50"];
  auto start = Clock::now();
  RunAttempts(executor.get(), "par", steps, parallel);
  figures["steps_wall_s"] = Ms(start) / 1000;
  figures["steps_per_s"] = steps / figures["steps_wall_s"];
  // Deletions of collected Jobs happen in the background: let them finish before counting.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  figures["k8s_api_calls_per_step"] =
      static_cast<double>(executor->api_requests() - before) / (samples + steps);
  executor.reset();

  auto idle = cluster.Executor("rss");
  figures["rss_mb_idle"] = RssMb();
  idle.reset();
  cluster.SuspendedJobs(jobs, "rss");
  auto watching = cluster.Executor("rss");
  std::this_thread::sleep_for(std::chrono::seconds(1));
  figures["rss_mb_with_jobs"] = RssMb();
  figures["jobs_watched"] = jobs;
  watching.reset();
  PrintFigures(figures, json);
  return 0;
}

}  // namespace mlops::bench
