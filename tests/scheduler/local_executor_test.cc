// The local executor with real child processes: output capture, exit codes, environment and work
// dir, timeouts and cancel that kill the whole process group, programs that cannot start, and
// recovery of an orphaned attempt after a restart.
#include "services/scheduler/local_executor.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "services/common/ids.h"
#include "tests/testing/testing.h"

extern char** environ;

namespace mlops::scheduler {
namespace {

using ::mlops::testing::StatusIs;
using Outcome = AttemptResult::Outcome;

// Field 22 of /proc/<pid>/stat: the start time in clock ticks, as handles record it.
std::string StartTicks(pid_t pid) {
  std::string stat;
  {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::getline(in, stat);
  }
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  for (int i = 3; i <= 22; ++i) fields >> field;
  return field;
}

// Starts `script` under mlops-step-waiter in a process group of its own, as a killed scheduler
// would have left it, and returns the waiter's pid and the handle Launch would have returned.
std::pair<pid_t, std::string> StartWaited(const std::string& work_dir, const std::string& script) {
  std::string exit_file = work_dir + "/.mlops-exit.0";
  std::vector<std::string> args = {MLOPS_STEP_WAITER_BIN, exit_file, "/bin/sh", "-c", script};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addchdir_np(&actions, work_dir.c_str());
  pid_t pid = -1;
  EXPECT_EQ(posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  return {pid, "w:" + std::to_string(pid) + ":" + std::to_string(pid) + ":" + StartTicks(pid)};
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Running, not a zombie: an orphan killed with its group waits for an init that may not reap it
// (containers), and kill(pid, 0) still finds a zombie.
bool Alive(pid_t pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

class LocalExecutorTest : public ::testing::Test {
 protected:
  // Runs argv to the end and returns the result.
  AttemptResult Run(std::vector<std::string> argv, int64_t timeout_ms = 0,
                    std::map<std::string, std::string> env = {}, int replicas = 1) {
    LaunchSpec spec;
    spec.replicas = replicas;
    spec.attempt_id = "a" + std::to_string(next_++);
    spec.argv = std::move(argv);
    spec.work_dir = dir_.path();
    spec.timeout_ms = timeout_ms;
    spec.env = std::move(env);
    std::promise<AttemptResult> promise;
    auto handle = executor_.Launch(spec, [&](const AttemptResult& r) { promise.set_value(r); });
    EXPECT_OK(handle.status());
    return promise.get_future().get();
  }

  // Recover, waiting for its result.
  AttemptResult RecoverNow(const std::string& attempt_id, const std::string& handle,
                           int64_t start_ms = 0, int64_t timeout_ms = 0) {
    std::promise<AttemptResult> promise;
    executor_.Recover(Spec(attempt_id, handle, start_ms, timeout_ms),
                      [&](const AttemptResult& r) { promise.set_value(r); });
    return promise.get_future().get();
  }
  RecoverSpec Spec(const std::string& attempt_id, const std::string& handle, int64_t start_ms = 0,
                   int64_t timeout_ms = 0) {
    RecoverSpec spec;
    spec.attempt_id = attempt_id;
    spec.handle = handle;
    spec.work_dir = dir_.path();
    spec.start_ms = start_ms;
    spec.timeout_ms = timeout_ms;
    return spec;
  }

  testing::TempDir dir_;
  LocalExecutor executor_{LocalExecutor::Options{200, MLOPS_STEP_WAITER_BIN}};
  int next_ = 0;
};

TEST_F(LocalExecutorTest, CapturesOutputExitCodeEnvironmentAndWorkDir) {
  auto ok = Run({"/bin/sh", "-c", "echo out; echo err >&2; pwd; echo $STEP_PARAM; touch made"}, 0,
                {{"STEP_PARAM", "lr=0.1"}});
  EXPECT_EQ(ok.outcome, Outcome::kSucceeded) << ok.message;
  EXPECT_EQ(ok.exit_code, 0);
  EXPECT_EQ(ReadFile(dir_.path() + "/stdout.log"), "out\n" + dir_.path() + "\nlr=0.1\n");
  EXPECT_EQ(ReadFile(dir_.path() + "/stderr.log"), "err\n");
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/made"));
  auto failed = Run({"/bin/sh", "-c", "exit 3"});
  EXPECT_EQ(failed.outcome, Outcome::kFailed);
  EXPECT_EQ(failed.exit_code, 3);
  EXPECT_EQ(failed.message, "exit code 3");
  auto path_lookup = Run({"true"});  // found through PATH
  EXPECT_EQ(path_lookup.outcome, Outcome::kSucceeded);
}

TEST_F(LocalExecutorTest, TimeoutKillsTheWholeProcessGroup) {
  std::string pids = dir_.path() + "/child.pid";
  auto start = std::chrono::steady_clock::now();
  // The step starts a grandchild that would outlive it, then waits.
  auto result = Run({"/bin/sh", "-c", "sleep 60 & echo $! > " + pids + "; wait"}, 300);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(result.outcome, Outcome::kTimedOut);
  EXPECT_LT(seconds, 5.0);
  pid_t grandchild = std::stoi(ReadFile(pids));
  for (int i = 0; i < 100 && Alive(grandchild); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(Alive(grandchild)) << "the step's own child survived the timeout";
}

TEST_F(LocalExecutorTest, CancelEscalatesToSigkill) {
  LaunchSpec spec;
  spec.attempt_id = "stubborn";
  // Ignores SIGTERM: only the SIGKILL after the grace period ends it.
  spec.argv = {"/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.05; done"};
  spec.work_dir = dir_.path();
  std::promise<AttemptResult> promise;
  ASSERT_OK(executor_.Launch(spec, [&](const AttemptResult& r) { promise.set_value(r); }).status());
  EXPECT_EQ(executor_.running(), 1);
  EXPECT_THAT(executor_.Launch(spec, [](const AttemptResult&) {}).status(),
              StatusIs(absl::StatusCode::kAlreadyExists, "stubborn"));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_OK(executor_.Cancel("stubborn"));
  AttemptResult result = promise.get_future().get();
  EXPECT_EQ(result.outcome, Outcome::kCanceled);
  EXPECT_EQ(result.signal, SIGKILL);
  EXPECT_THAT(executor_.Cancel("stubborn"), StatusIs(absl::StatusCode::kNotFound, "stubborn"));
}

TEST_F(LocalExecutorTest, ProgramsThatCannotStartAreRejected) {
  LaunchSpec spec;
  spec.attempt_id = "missing";
  spec.argv = {"no-such-program-mlops"};
  spec.work_dir = dir_.path();
  EXPECT_THAT(executor_.Launch(spec, [](const AttemptResult&) {}).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no-such-program-mlops"));
  spec.argv.clear();
  EXPECT_THAT(executor_.Launch(spec, [](const AttemptResult&) {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "argv"));
  EXPECT_EQ(executor_.running(), 0);
}

TEST_F(LocalExecutorTest, RecoverStopsAnOrphanedAttemptThatHasNoWaiter) {
  // Stands in for an attempt started, without mlops-step-waiter, by a scheduler that was killed: a
  // process group of its own. Nothing can tell how it would end: it is stopped and lost.
  pid_t pid;
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  char sh[] = "/bin/sh", c[] = "-c", body[] = "sleep 60";
  char* argv[] = {sh, c, body, nullptr};
  ASSERT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, &attr, argv, environ), 0);
  posix_spawnattr_destroy(&attr);
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  // The handle format of Launch: pid:pgid:start ticks (field 22).
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  for (int i = 3; i <= 22; ++i) fields >> field;
  std::string handle = std::to_string(pid) + ":" + std::to_string(pid) + ":" + field;
  AttemptResult result = RecoverNow("old", handle);
  EXPECT_EQ(result.outcome, Outcome::kLost);
  EXPECT_NE(result.message.find("stopped"), std::string::npos);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status));
  // A handle whose process is gone (or whose pid was reused) kills nothing.
  EXPECT_NE(RecoverNow("old", handle).message.find("gone"), std::string::npos);
}

TEST_F(LocalExecutorTest, ReplicasRunAsOneGangWithRankAndWorldSize) {
  auto ok = Run({"/bin/sh", "-c",
                 "echo $RANK $LOCAL_RANK $WORLD_SIZE $MASTER_ADDR $MASTER_PORT > rank_$RANK; "
                 "echo line from $RANK"},
                0, {}, 3);
  EXPECT_EQ(ok.outcome, Outcome::kSucceeded) << ok.message;
  std::string port;
  for (int rank = 0; rank < 3; ++rank) {
    std::istringstream fields(ReadFile(dir_.path() + "/rank_" + std::to_string(rank)));
    std::string r, local, world, addr, p;
    fields >> r >> local >> world >> addr >> p;
    EXPECT_EQ(r, std::to_string(rank));
    EXPECT_EQ(local, r);
    EXPECT_EQ(world, "3");
    EXPECT_EQ(addr, "127.0.0.1");
    EXPECT_GT(std::atoi(p.c_str()), 0);
    if (rank > 0) {
      EXPECT_EQ(p, port);  // one rendezvous port for the gang
    }
    port = p;
  }
  std::string out = ReadFile(dir_.path() + "/stdout.log");
  for (int rank = 0; rank < 3; ++rank) {
    EXPECT_NE(out.find("line from " + std::to_string(rank)), std::string::npos) << out;
  }
}

TEST_F(LocalExecutorTest, OneFailingReplicaFailsAndStopsTheGang) {
  auto start = std::chrono::steady_clock::now();
  auto result = Run(
      {"/bin/sh", "-c", "if [ $RANK = 1 ]; then exit 3; fi; echo $$ > pid_$RANK; exec sleep 60"}, 0,
      {}, 3);
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(result.outcome, Outcome::kFailed);
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.message, "replica 1 of 3: exit code 3");
  EXPECT_LT(seconds, 10);  // the sleeping replicas did not run their 60 s
  for (int rank : {0, 2}) {
    std::string pid = ReadFile(dir_.path() + "/pid_" + std::to_string(rank));
    if (!pid.empty()) {
      EXPECT_FALSE(Alive(std::atoi(pid.c_str())));
    }
  }
}

TEST_F(LocalExecutorTest, RecoverFindsAnAttemptWithoutAHandleByItsId) {
  // An attempt recorded as running whose handle was never stored: the scheduler died between
  // starting it and recording the handle. Its environment names it.
  pid_t pid;
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  char sh[] = "/bin/sh", c[] = "-c", body[] = "sleep 60";
  char* argv[] = {sh, c, body, nullptr};
  char var[] = "MLOPS_ATTEMPT_ID=run/step/7";
  char* envp[] = {var, nullptr};
  ASSERT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, &attr, argv, envp), 0);
  // posix_spawn returns while the kernel may still be setting up the new program's environment.
  for (int i = 0; i < 500 && ReadFile("/proc/" + std::to_string(pid) + "/environ").empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  posix_spawnattr_destroy(&attr);
  // Another attempt's id kills nothing.
  EXPECT_NE(RecoverNow("run/step/70", "").message.find("gone"), std::string::npos);
  EXPECT_TRUE(Alive(pid));
  AttemptResult result = RecoverNow("run/step/7", "");
  EXPECT_EQ(result.outcome, Outcome::kLost);
  EXPECT_NE(result.message.find("stopped"), std::string::npos);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status));
}

TEST_F(LocalExecutorTest, RecoverReattachesToARunningAttemptAndCollectsHowItEnds) {
  // The scheduler died; the attempt runs on under its waiter. Recovered, it is watched again: the
  // result is the step's own (exit code 3), reported when it ends, not before.
  auto [waiter, handle] =
      StartWaited(dir_.path(), "while [ ! -e go ]; do sleep 0.02; done; exit 3");
  int64_t start = NowMs();
  std::promise<AttemptResult> promise;
  auto future = promise.get_future();
  executor_.Recover(Spec("run/s/1", handle, start),
                    [&](const AttemptResult& r) { promise.set_value(r); });
  EXPECT_EQ(future.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  EXPECT_EQ(executor_.running(), 1);
  std::ofstream(dir_.path() + "/go") << "";
  AttemptResult result = future.get();
  EXPECT_EQ(result.outcome, Outcome::kFailed);
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.message, "exit code 3");
  EXPECT_EQ(result.start_ms, start);
  int status;
  ASSERT_EQ(waitpid(waiter, &status, 0), waiter);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3) << "the waiter ends as its step did";
}

TEST_F(LocalExecutorTest, RecoverReportsAnAttemptThatEndedWhileTheSchedulerWasDown) {
  auto [waiter, handle] = StartWaited(dir_.path(), "echo done > out.txt");
  int status;
  ASSERT_EQ(waitpid(waiter, &status, 0), waiter);
  AttemptResult result = RecoverNow("run/s/1", handle);
  EXPECT_EQ(result.outcome, Outcome::kSucceeded) << result.message;
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(ReadFile(dir_.path() + "/out.txt"), "done\n");
}

TEST_F(LocalExecutorTest, AnAttemptThatEndedBeforeItsHandleWasRecordedIsReportedNotRerun) {
  // The scheduler recorded the attempt but stopped before it stored the handle; the step ended.
  auto [waiter, handle] = StartWaited(dir_.path(), "echo done >> out.txt; exit 3");
  int status;
  ASSERT_EQ(waitpid(waiter, &status, 0), waiter);
  AttemptResult result = RecoverNow("run/s/1", "");
  EXPECT_EQ(result.outcome, Outcome::kFailed) << result.message;
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.message, "exit code 3");
  EXPECT_EQ(ReadFile(dir_.path() + "/out.txt"), "done\n");
}

TEST_F(LocalExecutorTest, RecoverCountsAnAttemptWhoseWaiterDiedUnheardAsLost) {
  auto [waiter, handle] = StartWaited(dir_.path(), "exec sleep 60");
  ::kill(waiter, SIGKILL);  // the waiter goes before it can say how its step ended
  int status;
  ASSERT_EQ(waitpid(waiter, &status, 0), waiter);
  AttemptResult result = RecoverNow("run/s/1", handle);
  EXPECT_EQ(result.outcome, Outcome::kLost);
  EXPECT_NE(result.message.find("without recording"), std::string::npos) << result.message;
}

TEST_F(LocalExecutorTest, ARecoveredAttemptCanBeCanceledAndTimesOut) {
  auto [waiter, handle] = StartWaited(dir_.path(), "echo $$ > pid; exec sleep 60");
  std::promise<AttemptResult> promise;
  executor_.Recover(Spec("run/s/1", handle, NowMs()),
                    [&](const AttemptResult& r) { promise.set_value(r); });
  EXPECT_OK(executor_.Cancel("run/s/1"));
  AttemptResult canceled = promise.get_future().get();
  EXPECT_EQ(canceled.outcome, Outcome::kCanceled);
  int status;
  ASSERT_EQ(waitpid(waiter, &status, 0), waiter);
  std::string step_pid = ReadFile(dir_.path() + "/pid");
  if (!step_pid.empty()) {
    EXPECT_FALSE(Alive(std::atoi(step_pid.c_str())));
  }
  // The step's timeout counts from its recorded start: one long past ends it at once.
  auto [waiter2, handle2] = StartWaited(dir_.path(), "exec sleep 60");
  AttemptResult timed_out = RecoverNow("run/s/2", handle2, NowMs() - 10'000, 1'000);
  EXPECT_EQ(timed_out.outcome, Outcome::kTimedOut);
  ASSERT_EQ(waitpid(waiter2, &status, 0), waiter2);
}

TEST_F(LocalExecutorTest, AProgramTheWaiterCannotStartFailsNamingIt) {
  // Executable, but no program: the waiter's posix_spawnp fails (ENOEXEC), and says so.
  std::string bogus = dir_.path() + "/bogus";
  std::ofstream(bogus) << "\x7f"
                          "ELF not really";
  std::filesystem::permissions(bogus, std::filesystem::perms::owner_all);
  AttemptResult result = Run({bogus});
  EXPECT_EQ(result.outcome, Outcome::kFailed);
  EXPECT_EQ(result.exit_code, 127);
  EXPECT_NE(result.message.find("cannot start '" + bogus + "'"), std::string::npos)
      << result.message;
}

}  // namespace
}  // namespace mlops::scheduler
