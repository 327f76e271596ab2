// `mlops run`, `mlops reproduce` and `mlops runs compare` (the built CLI) against a child
// mlops-server, on a real git repository: the code, its uncommitted and untracked changes, the
// environment, lockfiles, params and input data are recorded; a reproduction from the recorded
// commit and diff comes out bit for bit the same, a nondeterministic one is called different.
#include <filesystem>
#include <fstream>
#include <regex>

#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

namespace v1 = ::mlops::metadata::v1;
using ::testing::HasSubstr;

class RunCliTest : public testing::ServerSuite {
 protected:
  void SetUp() override {
    repo_ =
        dir_->path() + "/repo-" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(repo_ + "/data");
    Write(repo_ + "/data/rows.csv", "x\n1\n2\n3\n");
    ASSERT_EQ(
        Mlops({"data", "push", repo_ + "/data", "--dataset", "rows", "--tag", "v1"}, dir_->path())
            .exit_code,
        0);
    std::filesystem::remove_all(repo_ + "/data");
    Git({"init", "-q"});
    Write(repo_ + "/.gitignore", "model.bin\nmetrics.json\n");
    Write(repo_ + "/requirements.txt", "numpy==1.24.2\n");
    // The "training": reads its input and a config, writes a model and metrics.
    Write(repo_ + "/train.sh",
          "#!/bin/sh\nset -e\nn=$(cat \"$MLOPS_INPUT_DATA\"/*.csv | wc -l)\n"
          "echo \"training lr=$MLOPS_PARAM_LR rows=$n\"\n"
          "echo \"model v1 lr=$MLOPS_PARAM_LR rows=$n $(cat config.txt)\" > model.bin\n"
          "echo \"{\\\"accuracy\\\": 0.$n$n, \\\"loss\\\": $MLOPS_PARAM_LR}\" > metrics.json\n");
    std::filesystem::permissions(repo_ + "/train.sh", std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add);
    Write(repo_ + "/config.txt", "committed-config");
    Git({"add", "-A"});
    Git({"-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "first"});
  }

  static void Write(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  }
  static std::string Read(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  void Git(std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/git", "-C", repo_});
    auto result = testing::RunCommand(args);
    ASSERT_EQ(result.exit_code, 0) << result.err;
  }

  // The CLI run in `cwd` (the repository by default).
  testing::CommandResult Mlops(std::vector<std::string> args, std::string cwd = "") {
    if (cwd.empty()) cwd = repo_;
    std::string line = "cd '" + cwd + "' && exec " + std::string(MLOPS_CLI_BIN) + " --server " +
                       server_->address();
    for (const auto& a : args) line += " '" + a + "'";
    return testing::RunCommand({"/bin/sh", "-c", line});
  }

  v1::Run GetRun(const std::string& id) {
    auto stub = v1::MetadataService::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
    v1::GetRunRequest request;
    request.set_run_id(id);
    v1::Run run;
    grpc::ClientContext context;
    EXPECT_TRUE(stub->GetRun(&context, request, &run).ok());
    return run;
  }

  static std::string RunId(const std::string& err) {
    std::smatch match;
    return std::regex_search(err, match, std::regex("mlops: run ([0-9a-f]{32})")) ? match[1].str()
                                                                                  : "";
  }

  std::string repo_;
};

TEST_F(RunCliTest, RecordsEverythingAndReproducesADirtyTreeBitForBit) {
  // Uncommitted changes that matter: an edited script and an untracked file it reads.
  std::string script = Read(repo_ + "/train.sh");
  Write(repo_ + "/train.sh", std::regex_replace(script, std::regex("model v1"), "model v2"));
  Write(repo_ + "/config.txt", "edited-config");
  Write(repo_ + "/notes.txt", "untracked");
  auto run = Mlops({"run", "--experiment", "repro", "--name", "first", "--param", "lr=0.5",
                    "--input", "data=rows@v1", "--output", "model.bin", "--", "./train.sh"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("training lr=0.5 rows=4"));  // the command's output, shown
  EXPECT_THAT(run.err, HasSubstr("the working tree is dirty"));
  std::string id = RunId(run.err);
  ASSERT_FALSE(id.empty()) << run.err;
  v1::Run recorded = GetRun(id);
  EXPECT_EQ(recorded.status(), v1::FINISHED);
  EXPECT_EQ(recorded.params().at("lr"), "0.5");
  const v1::RunSource& source = recorded.source();
  EXPECT_EQ(source.code().commit().size(), 40u);
  EXPECT_TRUE(source.code().dirty());
  EXPECT_THAT(source.code().diff_digest(), ::testing::StartsWith("sha256:"));
  ASSERT_EQ(source.command_size(), 1);
  EXPECT_EQ(source.command(0), "./train.sh");
  EXPECT_FALSE(source.environment().at("os").empty());
  EXPECT_FALSE(source.environment().at("kernel").empty());
  EXPECT_FALSE(source.environment().at("glibc").empty());
  EXPECT_TRUE(source.dependency_digests().contains("requirements.txt"));
  ASSERT_EQ(source.inputs_size(), 1);
  EXPECT_EQ(source.inputs(0).name(), "rows");
  EXPECT_EQ(recorded.tags().at("mlops.exit_code"), "0");
  EXPECT_EQ(recorded.tags().at("mlops.output.model.bin").size(), 64u);
  ASSERT_EQ(recorded.latest_metrics_size(), 2);
  std::string model = Read(repo_ + "/model.bin");
  EXPECT_EQ(model, "model v2 lr=0.5 rows=4 edited-config\n");

  // The tree moves on; the reproduction starts from the recorded commit and diff, not from it.
  Write(repo_ + "/train.sh", std::regex_replace(script, std::regex("model v1"), "model v3"));
  Write(repo_ + "/config.txt", "later-config");
  auto again = Mlops({"reproduce", id});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_THAT(again.out, HasSubstr("identical (bit for bit)"));
  EXPECT_THAT(again.out, HasSubstr("output model.bin"));
  v1::Run marked = GetRun(id);
  EXPECT_EQ(marked.tags().at("mlops.reproduced"), "identical");
  v1::Run reproduction = GetRun(marked.tags().at("mlops.reproduced_by"));
  EXPECT_EQ(reproduction.tags().at("mlops.reproduction_of"), id);
  EXPECT_EQ(reproduction.tags().at("mlops.output.model.bin"),
            recorded.tags().at("mlops.output.model.bin"));
  EXPECT_EQ(reproduction.source().code().commit(), source.code().commit());
  EXPECT_EQ(Read(repo_ + "/model.bin"), model);  // the user's tree was not touched
  auto status = testing::RunCommand({"/usr/bin/git", "-C", repo_, "status", "--porcelain"});
  EXPECT_THAT(status.out, ::testing::Not(HasSubstr(".mlops-run")));  // scratch stays out of git

  // compare: the params that differ, the metrics side by side.
  auto other = Mlops({"run", "--experiment", "repro", "--param", "lr=0.25", "--input",
                      "data=rows@v1", "--", "./train.sh"});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  auto compare = Mlops({"runs", "compare", id, RunId(other.err)});
  ASSERT_EQ(compare.exit_code, 0) << compare.err;
  EXPECT_THAT(compare.out, HasSubstr("param"));
  EXPECT_THAT(compare.out, HasSubstr("0.25"));
  EXPECT_THAT(compare.out, HasSubstr("metric"));
}

TEST_F(RunCliTest, InsideAPipelineStepARetriedAttemptFindsItsRun) {
  // MLOPS_STEP_KEY is the same for every attempt of a step: `mlops run` of the same command under
  // it is the same run; another command is another run.
  auto run_in_step = [&](const std::string& command) {
    std::string line = "cd '" + repo_ + "' && MLOPS_STEP_KEY=ffeeddccbbaa99887766554433221100 " +
                       std::string(MLOPS_CLI_BIN) + " --server " + server_->address() +
                       " run --experiment stepped -- " + command;
    auto result = testing::RunCommand({"/bin/sh", "-c", line});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return RunId(result.err);
  };
  std::string first = run_in_step("true");
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(run_in_step("true"), first);
  std::string other = run_in_step("echo other");
  EXPECT_FALSE(other.empty());
  EXPECT_NE(other, first);
  EXPECT_EQ(GetRun(first).status(), v1::FINISHED);
}

TEST_F(RunCliTest, NondeterminismFailuresAndBadUsage) {
  Write(repo_ + "/noisy.sh",
        "#!/bin/sh\nhead -c 16 /dev/urandom > model.bin\n"
        "echo '{\"score\": 1}' > metrics.json\n");
  std::filesystem::permissions(repo_ + "/noisy.sh", std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add);
  Git({"add", "-A"});
  Git({"-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "noisy"});
  auto noisy = Mlops({"run", "--output", "model.bin", "--", "./noisy.sh"});
  ASSERT_EQ(noisy.exit_code, 0) << noisy.err;
  EXPECT_THAT(noisy.err, ::testing::Not(HasSubstr("dirty")));
  std::string id = RunId(noisy.err);
  auto again = Mlops({"reproduce", id});
  EXPECT_EQ(again.exit_code, 1) << again.out;
  EXPECT_THAT(again.out, HasSubstr("DIFFERENT"));
  EXPECT_THAT(again.out, HasSubstr(": different"));
  EXPECT_EQ(GetRun(id).tags().at("mlops.reproduced"), "different");

  // A failing command: its exit code, the run FAILED.
  auto failing = Mlops({"run", "--", "/bin/sh", "-c", "echo oops >&2; exit 3"});
  EXPECT_EQ(failing.exit_code, 3);
  EXPECT_THAT(failing.err, HasSubstr("oops"));
  v1::Run failed = GetRun(RunId(failing.err));
  EXPECT_EQ(failed.status(), v1::FAILED);
  EXPECT_EQ(failed.tags().at("mlops.exit_code"), "3");
  // A declared output that was not written fails the run.
  auto missing = Mlops({"run", "--output", "nothing.bin", "--", "/bin/true"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(GetRun(RunId(missing.err)).tags().at("mlops.message"),
            "declared output nothing.bin was not written");

  EXPECT_EQ(Mlops({"run"}).exit_code, 2);
  EXPECT_EQ(Mlops({"run", "--input", "data=nowhere@v1", "--", "/bin/true"}).exit_code, 1);
  // Outside a repository the run is recorded, but cannot be reproduced.
  std::string outside = dir_->path() + "/outside";
  std::filesystem::create_directories(outside);
  auto loose = Mlops({"run", "--", "/bin/true"}, outside);
  ASSERT_EQ(loose.exit_code, 0) << loose.err;
  EXPECT_THAT(loose.err, HasSubstr("not in a git repository"));
  auto refused = Mlops({"reproduce", RunId(loose.err)});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("recorded no git commit"));
}

}  // namespace
}  // namespace mlops
