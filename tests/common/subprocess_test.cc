// Child processes started one way: argv without a shell, the environment set over this process's
// (or alone), the working directory, streams captured, to a file or closed, process groups that
// one signal ends, signal state reset, and clear errors for programs that cannot start.
#include "services/common/subprocess.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/testing/testing.h"

namespace mlops {
namespace {

using ::mlops::testing::StatusIs;

CommandOutput Capture(SpawnOptions options) {
  auto output = RunAndCapture(std::move(options));
  EXPECT_OK(output.status());
  return output.ok() ? *output : CommandOutput{};
}

TEST(SubprocessTest, CapturesBothStreamsAndTheExitCode) {
  SpawnOptions options;
  options.argv = {"sh", "-c", "echo out; echo err >&2; exit 3"};
  CommandOutput output = Capture(options);
  EXPECT_EQ(output.exit_code, 3);
  EXPECT_EQ(output.out, "out\n");
  EXPECT_EQ(output.err, "err\n");
  // A large output on both streams at once blocks neither.
  options.argv = {"sh", "-c", "head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2"};
  output = Capture(options);
  EXPECT_EQ(output.out.size(), 1000000u);
  EXPECT_EQ(output.err.size(), 1000000u);
}

TEST(SubprocessTest, ASignalEndsWith128PlusItsNumber) {
  SpawnOptions options;
  options.argv = {"sh", "-c", "kill -9 $$"};
  EXPECT_EQ(Capture(options).exit_code, 128 + SIGKILL);
}

TEST(SubprocessTest, TheEnvironmentIsSetOverThisProcesssOrAlone) {
  ::setenv("MLOPS_SUBPROCESS_TEST", "parent", 1);
  SpawnOptions options;
  options.argv = {"sh", "-c", "env | grep '^MLOPS_SUBPROCESS_TEST='; echo \"$OTHER\""};
  options.env["MLOPS_SUBPROCESS_TEST"] = "child";
  options.env["OTHER"] = "x";
  // Set over: one entry, the child's value (getenv takes the first, so a duplicate would lie).
  EXPECT_EQ(Capture(options).out, "MLOPS_SUBPROCESS_TEST=child\nx\n");
  options.inherit_env = false;
  options.env = {{"PATH", "/usr/bin:/bin"}};
  options.argv = {"env"};
  EXPECT_EQ(Capture(options).out, "PATH=/usr/bin:/bin\n");
  ::unsetenv("MLOPS_SUBPROCESS_TEST");
}

TEST(SubprocessTest, WorkingDirectoryAndFiles) {
  testing::TempDir dir;
  SpawnOptions options;
  options.argv = {"sh", "-c", "pwd; echo second >&2"};
  options.cwd = dir.path();
  options.out = Stdio::File(dir.path() + "/out.log");
  options.err = Stdio::File(dir.path() + "/out.log");
  for (int i = 0; i < 2; ++i) {
    auto child = Subprocess::Spawn(options);
    ASSERT_OK(child.status());
    EXPECT_EQ(child->Wait(), 0);
  }
  std::ifstream in(dir.path() + "/out.log");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string once = std::filesystem::canonical(dir.path()).string() + "\nsecond\n";
  EXPECT_EQ(text, once + once);  // appended, not truncated
  options.out = Stdio::File(dir.path() + "/out.log", /*append=*/false);
  options.err = Stdio::Null();
  auto child = Subprocess::Spawn(options);
  ASSERT_OK(child.status());
  EXPECT_EQ(child->Wait(), 0);
  std::ifstream again(dir.path() + "/out.log");
  std::string truncated((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>());
  EXPECT_EQ(truncated, std::filesystem::canonical(dir.path()).string() + "\n");
}

TEST(SubprocessTest, OneSignalEndsTheWholeGroup) {
  testing::TempDir dir;
  SpawnOptions options;
  // The child leads a group; its own child (sleep) is in it too.
  options.argv = {"sh", "-c", "sleep 100 & echo $! > " + dir.path() + "/grandchild; wait"};
  options.process_group = 0;
  auto child = Subprocess::Spawn(options);
  ASSERT_OK(child.status());
  EXPECT_EQ(::getpgid(child->pid()), child->pid());
  pid_t grandchild = 0;
  for (int i = 0; i < 500 && grandchild == 0; ++i) {
    std::ifstream in(dir.path() + "/grandchild");
    in >> grandchild;
    if (grandchild == 0) usleep(10000);
  }
  ASSERT_GT(grandchild, 0);
  EXPECT_EQ(::getpgid(grandchild), child->pid());
  child->Signal(SIGTERM);
  EXPECT_EQ(child->Wait(), 128 + SIGTERM);
  // The grandchild got the signal too (it is gone, or a zombie waiting for init).
  for (int i = 0; i < 500; ++i) {
    std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
    std::string pid, comm, state;
    if (!(stat >> pid >> comm >> state) || state == "Z") break;
    usleep(10000);
    ASSERT_LT(i, 499) << "sleep outlived its group's signal";
  }
}

TEST(SubprocessTest, TheChildStartsWithNoSignalBlocked) {
  sigset_t blocked, previous;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &blocked, &previous), 0);
  SpawnOptions options;
  options.argv = {"grep", "SigBlk", "/proc/self/status"};
  std::string reset = Capture(options).out;
  options.reset_signals = false;
  std::string kept = Capture(options).out;
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  EXPECT_EQ(reset, "SigBlk:\t0000000000000000\n");
  EXPECT_NE(kept, reset);  // SIGTERM (bit 15) stays blocked without the reset
}

TEST(SubprocessTest, WhatCannotStartSaysWhy) {
  SpawnOptions options;
  EXPECT_THAT(Subprocess::Spawn(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "nothing to run"));
  options.argv = {"no-such-program-mlops"};
  EXPECT_THAT(Subprocess::Spawn(options).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "cannot start 'no-such-program-mlops': No such file or directory"));
  testing::TempDir dir;
  std::ofstream(dir.path() + "/mlops-script") << "#!/bin/sh\n";
  options.argv = {dir.path() + "/mlops-script"};
  EXPECT_THAT(Subprocess::Spawn(options).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "Permission denied"));
  EXPECT_EQ(ProgramError("no-such-program-mlops", dir.path(), "/usr/bin:/bin"), ENOENT);
  EXPECT_EQ(ProgramError("mlops-script", dir.path(), ":/usr/bin"), EACCES);  // "" on PATH is cwd
  EXPECT_EQ(ProgramError("sh", dir.path(), "/usr/bin:/bin"), 0);
}

}  // namespace
}  // namespace mlops
