// A real mlops-server child process killed with -9 while a pipeline runs: after a restart the
// scheduler finds the run, re-attaches to the attempt that survived (or retries one that was lost,
// without counting it against the step's retries), and does not run a succeeded step again.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "mlops/scheduler/v1/scheduler.grpc.pb.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

namespace v1 = ::mlops::scheduler::v1;

std::unique_ptr<v1::SchedulerService::Stub> Connect(const testing::ChildServer& server) {
  return v1::SchedulerService::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
}

v1::PipelineRun Get(v1::SchedulerService::Stub* stub, const std::string& id) {
  v1::GetPipelineRunRequest request;
  request.set_id(id);
  v1::PipelineRun run;
  for (int i = 0; i < 100; ++i) {  // the scheduler answers UNAVAILABLE while it starts
    grpc::ClientContext context;
    if (stub->GetPipelineRun(&context, request, &run).ok()) return run;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "GetPipelineRun kept failing";
  return run;
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Waits until run `id` is SUCCEEDED or FAILED.
v1::PipelineRun WaitForEnd(v1::SchedulerService::Stub* stub, const std::string& id) {
  v1::PipelineRun after;
  for (int i = 0; i < 400; ++i) {
    after = Get(stub, id);
    if (after.state() == v1::SUCCEEDED || after.state() == v1::FAILED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return after;
}

bool Alive(pid_t pid) {
  std::string stat = Read("/proc/" + std::to_string(pid) + "/stat");
  return !stat.empty() && stat[stat.rfind(')') + 2] != 'Z';
}

// A pipeline of `first` (counts its runs) and `slow`, which notes its MLOPS_STEP_KEY and its
// waiter's pid, then waits for marks/go before it writes its output; run on a real mlops-server
// that is then killed with -9 while `slow` runs. Returns the run id.
class SchedulerRecoveryTest : public ::testing::Test {
 protected:
  std::string StartAndKill() {
    std::filesystem::create_directories(marks_);
    std::string yaml =
        "name: recover\nsteps:\n"
        "  - name: first\n"
        "    command: [/bin/sh, -c, \"echo ran >> " +
        marks_ +
        "/first; echo x > {{outputs.x}}\"]\n"
        "    outputs: {x: x.txt}\n"
        "  - name: slow\n"
        "    inputs: {x: first.outputs.x}\n"
        "    outputs: {y: y.txt}\n"
        "    command: [/bin/sh, -c, \"echo $MLOPS_STEP_KEY >> " +
        marks_ + "/keys; echo $$ > " + marks_ + "/slow.tmp; echo $PPID > " + marks_ +
        "/waiter; mv " + marks_ + "/slow.tmp " + marks_ + "/slow; while [ ! -e " + marks_ +
        "/go ]; do sleep 0.02; done; echo y > {{outputs.y}}\"]\n";
    server_.Start();
    auto stub = Connect(server_);
    v1::SubmitPipelineRequest submit;
    submit.set_spec_yaml(yaml);
    v1::PipelineRun run;
    grpc::ClientContext context;
    EXPECT_TRUE(stub->SubmitPipeline(&context, submit, &run).ok());
    // Wait until `slow` runs, then kill the server hard.
    for (int i = 0; i < 200 && !std::filesystem::exists(marks_ + "/slow"); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    EXPECT_TRUE(std::filesystem::exists(marks_ + "/slow"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    server_.Kill();
    step_pid_ = std::stoi(Read(marks_ + "/slow"));
    waiter_pid_ = std::stoi(Read(marks_ + "/waiter"));
    EXPECT_TRUE(Alive(step_pid_)) << "the attempt outlives the killed scheduler (as it would)";
    return run.id();
  }

  testing::TempDir dir_;
  std::string marks_ = dir_.path() + "/marks";
  testing::ChildServer server_{MLOPS_SERVER_BIN, dir_.path() + "/data"};
  testing::ChildServer restarted_{MLOPS_SERVER_BIN, dir_.path() + "/data"};
  pid_t step_pid_ = 0;
  pid_t waiter_pid_ = 0;
};

TEST_F(SchedulerRecoveryTest, Kill9MidRunReattachesToTheRunningAttempt) {
  std::string id = StartAndKill();
  restarted_.Start();
  auto stub = Connect(restarted_);
  // Re-attached, not stopped: the step is still RUNNING on its first attempt, its process alive.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  v1::PipelineRun during = Get(stub.get(), id);
  ASSERT_EQ(during.steps(1).state(), v1::RUNNING) << during.DebugString();
  EXPECT_EQ(during.steps(1).attempts_size(), 1);
  EXPECT_TRUE(Alive(step_pid_));
  std::ofstream(marks_ + "/go") << "";
  v1::PipelineRun after = WaitForEnd(stub.get(), id);
  ASSERT_EQ(after.state(), v1::SUCCEEDED) << after.DebugString();
  EXPECT_EQ(Read(marks_ + "/first"), "ran\n") << "a succeeded step ran again";
  const v1::StepRun& slow = after.steps(1);
  ASSERT_EQ(slow.name(), "slow");
  ASSERT_EQ(slow.attempts_size(), 1) << slow.DebugString();
  EXPECT_EQ(slow.attempts(0).outcome(), "SUCCEEDED");
  EXPECT_EQ(slow.attempts(0).exit_code(), 0);
  // Its output, written after the restart, was collected; its logs too; it ran once.
  EXPECT_EQ(slow.output_digests().at("y").size(), 64u);
  EXPECT_FALSE(slow.attempts(0).stdout_digest().empty());
  std::string keys = Read(marks_ + "/keys");
  EXPECT_EQ(std::count(keys.begin(), keys.end(), '\n'), 1) << keys;
}

TEST_F(SchedulerRecoveryTest, AnAttemptLostWithTheSchedulerIsRetriedWithoutCountingAndOnce) {
  // `slow` has no retries of its own. Its waiter dies with the scheduler, so nothing can say how
  // the step would have ended: the attempt is LOST, what is left of it stopped, and it is retried
  // without counting against the step's retries, under the same MLOPS_STEP_KEY.
  std::string id = StartAndKill();
  ::kill(waiter_pid_, SIGKILL);
  std::ofstream(marks_ + "/go") << "";  // the retry does not wait
  for (int i = 0; i < 100 && Alive(waiter_pid_); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  restarted_.Start();
  auto stub = Connect(restarted_);
  v1::PipelineRun after = WaitForEnd(stub.get(), id);
  ASSERT_EQ(after.state(), v1::SUCCEEDED) << after.DebugString();
  EXPECT_EQ(Read(marks_ + "/first"), "ran\n") << "a succeeded step ran again";
  const v1::StepRun& slow = after.steps(1);
  ASSERT_EQ(slow.attempts_size(), 2) << slow.DebugString();
  EXPECT_EQ(slow.attempts(0).outcome(), "LOST");
  EXPECT_EQ(slow.attempts(1).outcome(), "SUCCEEDED");
  // Both attempts saw the same, non-empty step key: what they write can be made idempotent.
  std::string keys = Read(marks_ + "/keys");
  size_t newline = keys.find('\n');
  ASSERT_NE(newline, std::string::npos) << keys;
  std::string key = keys.substr(0, newline);
  EXPECT_EQ(key.size(), 32u);
  EXPECT_EQ(keys, key + "\n" + key + "\n");
}

}  // namespace
}  // namespace mlops
