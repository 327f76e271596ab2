// What the CLI records of a run, without a service: the environment, the code (commit, branch,
// remote and a patch of every uncommitted change, the user's index untouched), lockfiles, the
// verdict on a reproduction and the comparison of runs.
#include "tools/cli/run_recording.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "services/common/subprocess.h"
#include "tests/testing/testing.h"

namespace mlops::cli {
namespace {

namespace mv1 = ::mlops::metadata::v1;

std::string Git(const std::string& dir, std::vector<std::string> args) {
  SpawnOptions options;
  options.argv = {"git", "-c", "user.name=t", "-c", "user.email=t@example.com"};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.cwd = dir;
  auto output = RunAndCapture(options);
  EXPECT_TRUE(output.ok() && output->exit_code == 0) << "git " << args[0] << ": " << output->err;
  return output.ok() ? output->out : "";
}

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(RunRecordingTest, TheEnvironmentNamesTheSystem) {
  auto env = CaptureEnvironment();
  EXPECT_FALSE(env["os"].empty());
  EXPECT_FALSE(env["kernel"].empty());
  EXPECT_FALSE(env["glibc"].empty());
  EXPECT_TRUE(env["container"] == "yes" || env["container"] == "no");
  EXPECT_THAT(env["c++"], ::testing::Not(::testing::HasSubstr("\n")));
}

TEST(RunRecordingTest, TheCodeIsTheCommitAndAPatchOfEveryChangeLeavingTheIndexAlone) {
  testing::TempDir dir;
  const std::string repo = dir.path() + "/repo";
  std::filesystem::create_directories(repo + "/train");
  Git(repo, {"init", "-q", "-b", "main"});
  Write(repo + "/train/train.py", "print(1)\n");
  Git(repo, {"add", "."});
  Git(repo, {"commit", "-q", "-m", "first"});
  Git(repo, {"remote", "add", "origin", "https://example.com/repo.git"});
  CodeSnapshot clean = SnapshotCode(repo + "/train", {});
  EXPECT_EQ(clean.top, std::filesystem::canonical(repo).string());
  EXPECT_EQ(clean.commit, Git(repo, {"rev-parse", "HEAD"}).substr(0, 40));
  EXPECT_EQ(clean.branch, "main");
  EXPECT_EQ(clean.repository, "https://example.com/repo.git");
  EXPECT_EQ(clean.patch, "");
  // A change, a new file, an output and the scratch dir: the patch holds the first two only.
  Write(repo + "/train/train.py", "print(2)\n");
  Write(repo + "/train/new.py", "x = 1\n");
  Write(repo + "/train/model.bin", "weights");
  std::filesystem::create_directories(repo + "/train/.mlops-run");
  Write(repo + "/train/.mlops-run/log", "scratch");
  const std::string status_before = Git(repo, {"status", "--porcelain"});
  CodeSnapshot dirty = SnapshotCode(repo + "/train", {"model.bin"});
  EXPECT_THAT(dirty.patch, ::testing::HasSubstr("+print(2)"));
  EXPECT_THAT(dirty.patch, ::testing::HasSubstr("train/new.py"));
  EXPECT_THAT(dirty.patch, ::testing::Not(::testing::HasSubstr("model.bin")));
  EXPECT_THAT(dirty.patch, ::testing::Not(::testing::HasSubstr(".mlops-run")));
  EXPECT_EQ(Git(repo, {"status", "--porcelain"}), status_before);  // nothing staged
  // Outside a repository: nothing recorded, and the user is told why.
  CodeSnapshot none = SnapshotCode(dir.path(), {});
  EXPECT_EQ(none.top, "");
  EXPECT_THAT(none.warning, ::testing::HasSubstr("not in a git repository"));
}

TEST(RunRecordingTest, LockfilesAreFoundInTheWorkingDirAndAtTheTop) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir.path() + "/sub");
  Write(dir.path() + "/uv.lock", "");
  Write(dir.path() + "/sub/requirements.txt", "numpy==1.26\n");
  auto found = FindLockfiles(dir.path() + "/sub", dir.path());
  std::map<std::string, std::string> by_key(found.begin(), found.end());
  EXPECT_EQ(by_key.size(), 2u);
  EXPECT_EQ(by_key["uv.lock"], dir.path() + "/uv.lock");
  EXPECT_EQ(by_key["sub/requirements.txt"], dir.path() + "/sub/requirements.txt");
  EXPECT_EQ(FindLockfiles(dir.path() + "/sub", "").at(0).first, "requirements.txt");
}

TEST(RunRecordingTest, EnvNames) {
  EXPECT_EQ(EnvName("learning-rate"), "LEARNING_RATE");
  EXPECT_EQ(EnvName("a.b c"), "A_B_C");
}

mv1::Run Original() {
  mv1::Run run;
  (*run.mutable_tags())["mlops.output.model.bin"] = "aaaa";
  auto* accuracy = run.add_latest_metrics();
  accuracy->set_key("accuracy");
  accuracy->set_value(0.9);
  auto* loss = run.add_latest_metrics();
  loss->set_key("loss");
  loss->set_value(std::nan(""));
  return run;
}

TEST(RunRecordingTest, AReproductionIsIdenticalWithinToleranceOrDifferent) {
  const mv1::Run original = Original();
  const std::vector<std::string> outputs = {"model.bin"};
  Verdict same = JudgeReproduction(original, outputs, 0, {{"model.bin", "aaaa"}},
                                   {{"accuracy", 0.9}, {"loss", std::nan("")}}, 1e-6);
  EXPECT_EQ(same.verdict, "identical");  // NaN equals NaN
  ASSERT_EQ(same.rows.size(), 3u);
  EXPECT_EQ(same.rows[0][3], "identical");
  Verdict close = JudgeReproduction(original, outputs, 0, {{"model.bin", "aaaa"}},
                                    {{"accuracy", 0.9 + 1e-9}, {"loss", std::nan("")}}, 1e-6);
  EXPECT_EQ(close.verdict, "within-tolerance");
  EXPECT_EQ(close.rows[1][3], "within tolerance");
  Verdict far = JudgeReproduction(original, outputs, 0, {{"model.bin", "aaaa"}},
                                  {{"accuracy", 0.8}, {"loss", std::nan("")}}, 1e-6);
  EXPECT_EQ(far.verdict, "different");
  Verdict other_bytes = JudgeReproduction(original, outputs, 0, {{"model.bin", "bbbb"}},
                                          {{"accuracy", 0.9}, {"loss", std::nan("")}}, 1e-6);
  EXPECT_EQ(other_bytes.verdict, "different");
  EXPECT_EQ(other_bytes.rows[0][3], "DIFFERENT");
  Verdict missing =
      JudgeReproduction(original, outputs, 0, {{"model.bin", "aaaa"}}, {{"accuracy", 0.9}}, 1e-6);
  EXPECT_EQ(missing.verdict, "different");
  EXPECT_EQ(missing.rows[2][3], "MISSING");
  Verdict failed = JudgeReproduction(original, outputs, 1, {{"model.bin", "aaaa"}},
                                     {{"accuracy", 0.9}, {"loss", std::nan("")}}, 1e-6);
  EXPECT_EQ(failed.verdict, "different");
}

TEST(RunRecordingTest, ComparingShowsWhatDiffersAndEveryMetric) {
  std::vector<mv1::Run> runs(2);
  for (int i = 0; i < 2; ++i) {
    runs[i].set_id("run" + std::to_string(i) + "0000000000000");
    runs[i].set_name("r" + std::to_string(i));
    (*runs[i].mutable_params())["seed"] = "1";
    (*runs[i].mutable_params())["lr"] = i == 0 ? "0.1" : "0.2";
    auto* metric = runs[i].add_latest_metrics();
    metric->set_key("accuracy");
    metric->set_value(0.5);
  }
  Comparison table = CompareRuns(runs);
  EXPECT_EQ(table.header[2], "run000000000 r0");
  std::vector<std::string> keys;
  for (const auto& row : table.rows) keys.push_back(row[0] + ":" + row[1]);
  // seed and the commit are the same: not shown; the equal metric and the status are.
  EXPECT_THAT(keys, ::testing::ElementsAre("param:lr", "metric:accuracy", "status:"));
}

}  // namespace
}  // namespace mlops::cli
