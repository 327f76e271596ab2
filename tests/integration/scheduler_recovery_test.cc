// A real mlops-server child process killed with -9 while a pipeline runs: after a restart the
// scheduler finds the run, stops what is left of the interrupted attempt, retries it per policy,
// and does not run the step that had already succeeded again.
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

TEST(SchedulerRecoveryTest, Kill9MidRunLosesNothingAndRepeatsNothing) {
  testing::TempDir dir;
  std::string marks = dir.path() + "/marks";
  std::filesystem::create_directories(marks);
  // `first` counts its runs; `slow` sleeps on its first attempt (recording its pid) and succeeds at
  // once on the next. `slow` has no retries of its own: an attempt lost to the scheduler's death
  // is retried without counting against them. Each attempt notes its MLOPS_STEP_KEY.
  std::string yaml =
      "name: recover\nsteps:\n"
      "  - name: first\n"
      "    command: [/bin/sh, -c, \"echo ran >> " +
      marks +
      "/first; echo x > {{outputs.x}}\"]\n"
      "    outputs: {x: x.txt}\n"
      "  - name: slow\n"
      "    inputs: {x: first.outputs.x}\n"
      "    command: [/bin/sh, -c, \"echo $MLOPS_STEP_KEY >> " +
      marks + "/keys; if [ -e " + marks +
      "/slow ]; then exit 0; fi; "
      "echo $$ > " +
      marks + "/slow; exec sleep 60\"]\n";
  testing::ChildServer server(MLOPS_SERVER_BIN, dir.path() + "/data");
  server.Start();
  auto stub = Connect(server);
  v1::SubmitPipelineRequest submit;
  submit.set_spec_yaml(yaml);
  v1::PipelineRun run;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->SubmitPipeline(&context, submit, &run).ok());
  }
  // Wait until `slow` runs, then kill the server hard.
  for (int i = 0; i < 200 && !std::filesystem::exists(marks + "/slow"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_TRUE(std::filesystem::exists(marks + "/slow"));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server.Kill();
  pid_t orphan = std::stoi(Read(marks + "/slow"));
  EXPECT_EQ(::kill(orphan, 0), 0) << "the attempt outlives the killed scheduler (as it would)";

  testing::ChildServer restarted(MLOPS_SERVER_BIN, dir.path() + "/data");
  restarted.Start();
  auto stub2 = Connect(restarted);
  v1::PipelineRun after;
  for (int i = 0; i < 400; ++i) {
    after = Get(stub2.get(), run.id());
    if (after.state() == v1::SUCCEEDED || after.state() == v1::FAILED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_EQ(after.state(), v1::SUCCEEDED) << after.DebugString();
  EXPECT_EQ(Read(marks + "/first"), "ran\n") << "a succeeded step ran again";
  const v1::StepRun& slow = after.steps(1);
  ASSERT_EQ(slow.name(), "slow");
  ASSERT_EQ(slow.attempts_size(), 2);
  EXPECT_EQ(slow.attempts(0).outcome(), "LOST");
  EXPECT_EQ(slow.attempts(1).outcome(), "SUCCEEDED");
  // Both attempts saw the same, non-empty step key: what they write can be made idempotent.
  std::string keys = Read(marks + "/keys");
  size_t newline = keys.find('\n');
  ASSERT_NE(newline, std::string::npos) << keys;
  std::string key = keys.substr(0, newline);
  EXPECT_EQ(key.size(), 32u);
  EXPECT_EQ(keys, key + "\n" + key + "\n");
  // The interrupted attempt's process was stopped by the restarted scheduler.
  std::string stat = Read("/proc/" + std::to_string(orphan) + "/stat");
  bool alive = !stat.empty() && stat[stat.rfind(')') + 2] != 'Z';
  EXPECT_FALSE(alive);
}

}  // namespace
}  // namespace mlops
