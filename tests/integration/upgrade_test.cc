// Upgrades: a data dir written before on-disk formats were recorded (tests/fixtures/
// format0-datadir.tar.gz, made by tests/fixtures/make_format0_datadir.sh with the server of
// commit 66476f3 and the README's tour) opened by today's mlops-server: every database is
// migrated once, and the runs, datasets, models, pipeline runs, profiles and monitors are all
// there and readable (in project default).
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "tests/testing/testing.h"

namespace mlops {
namespace {

using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(UpgradeTest, ADataDirFromBeforeFormatsOpensWithEverythingInIt) {
  testing::TempDir dir;
  auto unpacked = testing::RunCommand(
      {"/bin/tar", "-C", dir.path(), "-xzf",
       std::string(MLOPS_SOURCE_DIR) + "/tests/fixtures/format0-datadir.tar.gz"});
  ASSERT_EQ(unpacked.exit_code, 0) << unpacked.err;
  std::string data = dir.path() + "/data";
  testing::ChildServer server(MLOPS_SERVER_BIN, data);
  server.Start();
  auto mlops = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {MLOPS_CLI_BIN, "--server", server.address()});
    auto result = testing::RunCommand(args, {"HOME=" + dir.path()});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return result.out;
  };
  EXPECT_THAT(mlops({"--output", "json", "runs", "search", "--experiment", "iris"}),
              HasSubstr("accuracy"));
  std::string versions = mlops({"data", "log", "churn"});
  EXPECT_GE(Count(versions, "\n"), 3u) << versions;  // a header and at least two versions
  std::string checkout = dir.path() + "/checkout";
  mlops({"data", "pull", "churn@v1", checkout});
  EXPECT_FALSE(std::filesystem::is_empty(checkout));
  EXPECT_THAT(mlops({"models", "show", "churn"}), HasSubstr("production"));
  EXPECT_THAT(mlops({"pipeline", "list"}), HasSubstr("SUCCEEDED"));
  EXPECT_THAT(mlops({"profile", "list"}), HasSubstr("churn-train"));
  EXPECT_THAT(mlops({"monitor", "list"}), HasSubstr("churn"));
  // Each of the five databases (metadata, lineage, artifact, scheduler, monitoring) went from
  // format 0 to 1, once, artifact's on to 2, which gave every chunk and blob stored before
  // projects to project default (the pull above read them through it), metadata's on to 2
  // (the metric tiles' column family, empty until metrics are logged) and monitoring's on to 2
  // and 3 (the column families of schemas and validation reports, then of model evaluations).
  server.Terminate();
  std::string log = ReadAll(data + ".log");
  EXPECT_EQ(Count(log, "storage_migrated"), 9u) << log;
  EXPECT_EQ(Count(log, "from=1 to=2 what=\"metric tiles"), 1u) << log;
  EXPECT_EQ(Count(log, "from=1 to=2 what=\"schemas and validation reports"), 1u) << log;
  EXPECT_EQ(Count(log, "from=2 to=3 what=\"model evaluations"), 1u) << log;
  EXPECT_EQ(Count(log, "from=1 to=2 what=\"chunks and blobs stored before projects"), 1u) << log;
  std::filesystem::rename(data + ".log", data + ".first.log");
  testing::ChildServer again(MLOPS_SERVER_BIN, data);
  again.Start();
  again.Terminate();
  EXPECT_EQ(Count(ReadAll(data + ".log"), "storage_migrated"), 0u);
}

TEST(UpgradeTest, ADataDirOfANewerFormatIsRefusedAndLeftAlone) {
  testing::TempDir dir;
  std::string data = dir.path() + "/data";
  {
    testing::ChildServer server(MLOPS_SERVER_BIN, data);
    server.Start();
    server.Terminate();
  }
  // Stands in for a newer binary: the scheduler's database says format 99.
  testing::SetRecord(data + "/scheduler/db", "default", "mlops.format_version", "99");
  auto result = testing::RunCommand(
      {MLOPS_SERVER_BIN, "--host=127.0.0.1", "--port=0", "--metrics_port=0", "--data_dir=" + data});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.err, HasSubstr("written by a newer mlops (on-disk format 99"));
}

}  // namespace
}  // namespace mlops
