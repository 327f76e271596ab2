// The Kubernetes executor on a real single-node cluster (tools/k8s/up.sh; run by tools/test.sh's
// Kubernetes stage with DIR/env sourced). Steps are busybox pods; the executor uses an account
// that holds exactly the Role the chart grants (jobs, pods, pods/log, services, Kueue workloads),
// in a namespace of its own per test. Attempts succeed, fail with their exit code, time out, are
// canceled, fail on an image that is not there, run 3 ranks that find rank 0 by name, survive a
// restart of the scheduler (re-attached, never created twice; orphans deleted; a gone Job is LOST).
#include "services/scheduler/kubernetes/kubernetes_executor.h"

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "services/common/strings.h"
#include "services/scheduler/kubernetes/kube_client.h"
#include "tests/testing/testing.h"

namespace mlops::scheduler::k8s {
namespace {

using ::mlops::testing::TempDir;
using ::testing::HasSubstr;
using Outcome = AttemptResult::Outcome;

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

KubeConfig ConfigWithToken(const std::string& token) {
  KubeConfig config;
  config.server = Env("MLOPS_K8S_API");
  config.ca_file = Env("MLOPS_K8S_CA");
  config.token = token;
  return config;
}

// One attempt's end, awaited.
class Done {
 public:
  std::function<void(const AttemptResult&)> Callback() {
    return [this](const AttemptResult& result) {
      std::lock_guard lock(mu_);
      ++calls_;
      result_ = result;
      cv_.notify_all();
    };
  }
  AttemptResult Wait(int seconds = 60) {
    std::unique_lock lock(mu_);
    EXPECT_TRUE(
        cv_.wait_for(lock, std::chrono::seconds(seconds), [&] { return result_.has_value(); }))
        << "no result in " << seconds << " s";
    return result_.value_or(AttemptResult{});
  }
  int calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<AttemptResult> result_;
  int calls_ = 0;
};

class KubernetesExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Env("MLOPS_K8S_API").empty()) {
      GTEST_SKIP() << "needs a cluster: tools/k8s/up.sh DIR, then source DIR/env";
    }
    admin_ = std::make_shared<KubeClient>(ConfigWithToken(Env("MLOPS_K8S_ADMIN_TOKEN")));
    namespace_ = StrCat("mlops-test-", ::getpid(), "-", counter_++);
    Apply("/api/v1/namespaces",
          StrCat(R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":")", namespace_,
                 R"("}})"));
    // The Role of the chart: nothing more.
    Apply(StrCat("/apis/rbac.authorization.k8s.io/v1/namespaces/", namespace_, "/roles"),
          R"({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role",
              "metadata":{"name":"mlops-scheduler"},
              "rules":[{"apiGroups":["batch"],"resources":["jobs"],
                        "verbs":["create","get","list","watch","delete"]},
                       {"apiGroups":[""],"resources":["pods","pods/log"],
                        "verbs":["get","list","watch"]},
                       {"apiGroups":[""],"resources":["services"],
                        "verbs":["create","delete"]},
                       {"apiGroups":["kueue.x-k8s.io"],"resources":["workloads"],
                        "verbs":["get","list"]}]})");
    Apply(StrCat("/apis/rbac.authorization.k8s.io/v1/namespaces/", namespace_, "/rolebindings"),
          R"({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding",
              "metadata":{"name":"mlops-scheduler"},
              "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role",
                         "name":"mlops-scheduler"},
              "subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User",
                           "name":"mlops-test-client"}]})");
    // Pods need the namespace's default service account before they can be created.
    for (int i = 0; i < 100; ++i) {
      auto sa = admin_->Request(
          "GET", StrCat("/api/v1/namespaces/", namespace_, "/serviceaccounts/default"));
      if (sa.ok() && sa->http_code == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    options_.namespace_name = namespace_;
    options_.default_image = "docker.io/mlops-k8s/busybox:1";
    options_.image_pull_policy = "Never";
    options_.scheduler_id = "test";
    options_.wrap_steps = false;  // the executor alone: commands run as given
  }

  void TearDown() override {
    if (admin_ != nullptr) {
      (void)admin_->Request("DELETE", StrCat("/api/v1/namespaces/", namespace_));
    }
  }

  void Apply(const std::string& path, const std::string& json) {
    auto response = admin_->Request("POST", path, json);
    ASSERT_TRUE(response.ok()) << response.status();
    ASSERT_TRUE(response->http_code == 201 || response->http_code == 409)
        << path << ": " << response->body;
  }

  std::unique_ptr<KubernetesExecutor> StartExecutor() {
    auto client = std::make_shared<KubeClient>(ConfigWithToken(Env("MLOPS_K8S_CLIENT_TOKEN")));
    auto executor = KubernetesExecutor::Start(client, options_);
    EXPECT_TRUE(executor.ok()) << executor.status();
    return executor.ok() ? *std::move(executor) : nullptr;
  }

  static LaunchSpec Shell(const std::string& attempt, const std::string& script) {
    LaunchSpec spec;
    spec.attempt_id = attempt;
    spec.argv = {"/bin/sh", "-c", script};
    spec.env = {{"MLOPS_PIPELINE_RUN_ID", "run1"}, {"MLOPS_STEP", "step"}};
    return spec;
  }

  // Jobs of this test's namespace (as the admin sees them).
  int JobCount() {
    JobList jobs;
    EXPECT_TRUE(
        admin_
            ->Call("GET", StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs"), nullptr, &jobs)
            .ok());
    return jobs.items_size();
  }
  bool JobExists(const std::string& attempt) {
    Job job;
    return admin_
        ->Call("GET", StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs/", JobName(attempt)),
               nullptr, &job)
        .ok();
  }
  // Waits until `condition` holds (up to `seconds`).
  static bool Eventually(const std::function<bool()>& condition, int seconds = 30) {
    for (int i = 0; i < seconds * 10; ++i) {
      if (condition()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return condition();
  }

  static inline int counter_ = 0;
  std::shared_ptr<KubeClient> admin_;
  std::string namespace_;
  KubernetesOptions options_;
};

TEST_F(KubernetesExecutorTest, AttemptsSucceedFailTimeOutAndAreCanceled) {
  auto executor = StartExecutor();
  ASSERT_NE(executor, nullptr);
  const int64_t before = executor->api_requests();
  Done ok, failed, slow, canceled, missing;
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(executor->Launch(Shell("r/ok/1", "echo fine"), ok.Callback()).ok());
  ASSERT_TRUE(executor->Launch(Shell("r/fail/1", "echo oops >&2; exit 3"), failed.Callback()).ok());
  LaunchSpec timed = Shell("r/slow/1", "sleep 60");
  timed.timeout_ms = 2000;
  ASSERT_TRUE(executor->Launch(timed, slow.Callback()).ok());
  ASSERT_TRUE(executor->Launch(Shell("r/cancel/1", "sleep 60"), canceled.Callback()).ok());
  LaunchSpec nowhere = Shell("r/image/1", "true");
  nowhere.image = "docker.io/mlops-k8s/no-such-image:1";
  ASSERT_TRUE(executor->Launch(nowhere, missing.Callback()).ok());
  EXPECT_EQ(executor->running(), 5);
  // The same attempt twice is refused while it runs.
  EXPECT_EQ(executor->Launch(Shell("r/cancel/1", "true"), Done().Callback()).status().code(),
            absl::StatusCode::kAlreadyExists);

  AttemptResult result = ok.Wait();
  const double ok_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(result.outcome, Outcome::kSucceeded) << result.message;
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_GT(result.start_ms, 0);
  EXPECT_GE(result.end_ms, result.start_ms);

  result = failed.Wait();
  EXPECT_EQ(result.outcome, Outcome::kFailed);
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_THAT(result.message, HasSubstr("exit code 3"));

  result = missing.Wait();
  EXPECT_EQ(result.outcome, Outcome::kFailed);
  EXPECT_THAT(result.message, HasSubstr("ErrImageNeverPull"));

  ASSERT_TRUE(executor->Cancel("r/cancel/1").ok());
  result = canceled.Wait();
  EXPECT_EQ(result.outcome, Outcome::kCanceled);
  EXPECT_EQ(executor->Cancel("r/cancel/1").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Eventually([&] { return !JobExists("r/cancel/1"); }));

  result = slow.Wait();
  EXPECT_EQ(result.outcome, Outcome::kTimedOut) << result.message;
  EXPECT_THAT(result.message, HasSubstr("DeadlineExceeded"));

  // Each reported exactly once; collected Jobs are deleted by the executor.
  for (Done* done : {&ok, &failed, &slow, &canceled, &missing}) EXPECT_EQ(done->calls(), 1);
  EXPECT_EQ(executor->running(), 0);
  for (const char* attempt : {"r/ok/1", "r/fail/1", "r/slow/1", "r/image/1"}) {
    EXPECT_TRUE(JobExists(attempt)) << attempt << " is kept until collected";
    executor->Collected(attempt);
  }
  EXPECT_TRUE(Eventually([&] { return JobCount() == 0; }));
  const int64_t calls = executor->api_requests() - before;
  std::cout << "k8s: 5 attempts, " << calls << " API requests (" << calls / 5.0
            << " per attempt); a 'echo' step ended " << ok_seconds << " s after its launch\n";
  EXPECT_LE(calls, 5 * 5) << "the API budget: a few requests per attempt, no polling";
}

TEST_F(KubernetesExecutorTest, ThreeReplicasSeeTheirRanksAndFindRankZero) {
  auto executor = StartExecutor();
  ASSERT_NE(executor, nullptr);
  Done done;
  // Every rank checks WORLD_SIZE and its RANK; ranks 1 and 2 resolve rank 0's name; rank 0 waits
  // for them to have done so (a file is no way across pods: it simply stays up for a while).
  LaunchSpec spec = Shell("r/ddp/1", R"(
    test "$WORLD_SIZE" = 3 || exit 10
    case "$RANK" in 0|1|2) ;; *) exit 11 ;; esac
    test "$MASTER_PORT" = 29500 || exit 12
    if [ "$RANK" = 0 ]; then sleep 6; exit 0; fi
    for i in $(seq 1 50); do nslookup "$MASTER_ADDR" >/dev/null 2>&1 && exit 0; sleep 0.2; done
    exit 13)");
  spec.replicas = 3;
  ASSERT_TRUE(executor->Launch(spec, done.Callback()).ok());
  AttemptResult result = done.Wait(90);
  EXPECT_EQ(result.outcome, Outcome::kSucceeded) << result.message << " exit " << result.exit_code;
  executor->Collected("r/ddp/1");
  EXPECT_TRUE(Eventually([&] {
    auto service = admin_->Request(
        "GET", StrCat("/api/v1/namespaces/", namespace_, "/services/", JobName("r/ddp/1")));
    return service.ok() && service->http_code == 404 && JobCount() == 0;
  }));
  // The first failing rank fails the attempt.
  Done failing;
  LaunchSpec bad = Shell("r/ddp/2", R"(if [ "$RANK" = 1 ]; then exit 7; fi; sleep 30)");
  bad.replicas = 3;
  ASSERT_TRUE(executor->Launch(bad, failing.Callback()).ok());
  result = failing.Wait(60);
  EXPECT_EQ(result.outcome, Outcome::kFailed);
  EXPECT_EQ(result.exit_code, 7) << result.message;
}

TEST_F(KubernetesExecutorTest, LogsAreFollowedLiveAndWholeWhenReported) {
  auto executor = StartExecutor();
  ASSERT_NE(executor, nullptr);
  TempDir work;
  auto read = [&](const std::string& dir) {
    std::ifstream in(dir + "/stdout.log");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  const std::string live = work.path() + "/live";
  const std::string failing = work.path() + "/failing";
  std::filesystem::create_directories(live);
  std::filesystem::create_directories(failing);
  Done live_done, failing_done;
  LaunchSpec spec = Shell("r/live/1",
                          "echo first; sleep 4; for i in $(seq 1 2000); do echo "
                          "line-$i; done; echo last");
  spec.work_dir = live;
  ASSERT_TRUE(executor->Launch(spec, live_done.Callback()).ok());
  LaunchSpec bad = Shell("r/stderr/1", "echo to-stderr >&2; exit 4");
  bad.work_dir = failing;
  ASSERT_TRUE(executor->Launch(bad, failing_done.Callback()).ok());
  // While the step sleeps, its first line is already in the file.
  EXPECT_TRUE(Eventually([&] { return read(live) == "first\n"; }, 20)) << read(live);
  EXPECT_EQ(live_done.calls(), 0);
  AttemptResult result = live_done.Wait();
  EXPECT_EQ(result.outcome, Outcome::kSucceeded);
  const std::string text = read(live);  // whole when the attempt is reported
  EXPECT_EQ(text.rfind("first\nline-1\n", 0), 0u) << text.substr(0, 100);
  EXPECT_THAT(text, HasSubstr("line-2000\nlast\n"));
  result = failing_done.Wait();
  EXPECT_EQ(result.exit_code, 4);
  EXPECT_EQ(read(failing), "to-stderr\n")
      << "stdout and stderr together, as the kubelet keeps them";
}

TEST_F(KubernetesExecutorTest, ARestartedSchedulerReattachesAndNeverCreatesTwice) {
  auto first = StartExecutor();
  ASSERT_NE(first, nullptr);
  Done lost_with_first;
  ASSERT_TRUE(first->Launch(Shell("r/long/1", "sleep 4; exit 5"), lost_with_first.Callback()).ok());
  ASSERT_TRUE(first->Launch(Shell("r/quick/1", "true"), Done().Callback()).ok());
  // A Job launched just before a crash whose launch was never recorded: an orphan.
  ASSERT_TRUE(first->Launch(Shell("r/orphan/1", "sleep 60"), Done().Callback()).ok());
  EXPECT_TRUE(Eventually([&] { return JobCount() == 3; }));
  first.reset();  // the scheduler stops (its watches end; the Jobs run on)
  std::this_thread::sleep_for(std::chrono::seconds(3));  // r/quick/1 ends while it is down

  auto second = StartExecutor();
  ASSERT_NE(second, nullptr);
  Done long_done, quick_done, gone_done;
  second->Recover({"r/long/1", JobName("r/long/1"), "", 1, 0}, long_done.Callback());
  second->Recover({"r/quick/1", JobName("r/quick/1"), "", 1, 0}, quick_done.Callback());
  second->Recover({"r/gone/1", "", "", 1, 0}, gone_done.Callback());
  second->RecoveryDone();
  AttemptResult quick = quick_done.Wait();
  EXPECT_EQ(quick.outcome, Outcome::kSucceeded) << "finished while the scheduler was down";
  AttemptResult gone = gone_done.Wait();
  EXPECT_EQ(gone.outcome, Outcome::kLost);
  AttemptResult long_result = long_done.Wait();
  EXPECT_EQ(long_result.outcome, Outcome::kFailed);
  EXPECT_EQ(long_result.exit_code, 5) << "re-attached: its real end is reported";
  EXPECT_EQ(lost_with_first.calls(), 0);
  EXPECT_TRUE(Eventually([&] { return !JobExists("r/orphan/1"); })) << "orphans are deleted";
  // A launch repeated for a recorded attempt attaches to its Job instead of creating another.
  Done again;
  ASSERT_TRUE(second->Launch(Shell("r/long/1", "exit 99"), again.Callback()).ok());
  AttemptResult attached = again.Wait();
  EXPECT_EQ(attached.exit_code, 5) << "the existing Job, not a new one";
  EXPECT_EQ(JobCount(), 2);  // r/long/1 and r/quick/1, never created twice
}

// Last: it restarts the cluster's API server.
TEST_F(KubernetesExecutorTest, WatchesDroppedByAnApiServerRestartResume) {
  auto executor = StartExecutor();
  ASSERT_NE(executor, nullptr);
  Done during;
  ASSERT_TRUE(executor->Launch(Shell("r/outage/1", "sleep 5; exit 6"), during.Callback()).ok());
  ASSERT_TRUE(Eventually([&] { return JobCount() == 1; }));
  // Every watch drops; the API server is away for 2 s, then starts again (a few s more).
  const std::string restart =
      StrCat(MLOPS_SOURCE_DIR, "/tools/k8s/restart-apiserver.sh ", Env("MLOPS_K8S_DIR"), " 2");
  ASSERT_EQ(std::system(restart.c_str()), 0);
  AttemptResult result = during.Wait(90);
  EXPECT_EQ(result.outcome, Outcome::kFailed) << result.message;
  EXPECT_EQ(result.exit_code, 6) << "its end, seen by the resumed watches";
  Done after;
  ASSERT_TRUE(executor->Launch(Shell("r/outage/2", "exit 0"), after.Callback()).ok());
  EXPECT_EQ(after.Wait(60).outcome, Outcome::kSucceeded);
}

}  // namespace
}  // namespace mlops::scheduler::k8s
