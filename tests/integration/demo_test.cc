// The end-to-end demo of README command 1 (examples/demo.sh) against a child mlops-server: every
// stage must succeed and say what it did, within the 3 minutes the demo is allowed; then again on
// the same server, as a second run of the quickstart does.
#include <chrono>

#include "tests/testing/testing.h"

namespace mlops {
namespace {

using ::testing::HasSubstr;

TEST(DemoTest, RunsEndToEnd) {
  testing::TempDir dir;
  testing::ChildServer server(MLOPS_SERVER_BIN, dir.path() + "/data");
  server.Start();
  auto start = std::chrono::steady_clock::now();
  auto result = testing::RunCommand(
      {"/bin/bash", std::string(MLOPS_SOURCE_DIR) + "/examples/demo.sh", MLOPS_BUILD_DIR},
      {"MLOPS_SERVER=" + server.address()});
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(result.exit_code, 0) << result.out.substr(
                                        result.out.size() > 6000 ? result.out.size() - 6000 : 0)
                                 << result.err;
  EXPECT_LT(seconds, 180);
  const std::string& out = result.out;
  EXPECT_THAT(out, HasSubstr("rows=50000"));  // validate's metric
  EXPECT_THAT(out, HasSubstr("sweep train: maximize val_accuracy, best train[lr="));
  EXPECT_THAT(out, HasSubstr("aliases:  production"));
  EXPECT_THAT(out, HasSubstr("Dataset demo-data@"));  // the model's lineage reaches the data
  EXPECT_THAT(out, HasSubstr("cached steps: 7 of 7"));
  EXPECT_THAT(out, HasSubstr("(DRIFTED)"));
  EXPECT_THAT(out, HasSubstr("retraining pipeline run: "));
  EXPECT_THAT(out, HasSubstr("2        READY   production"));
  EXPECT_THAT(out, HasSubstr("identical (bit for bit)"));

  // The quickstart can be run again on the same server: the demo reruns cleanly (the logs of a
  // cached step come from the attempt that produced it; the monitor is a new one).
  auto again = testing::RunCommand(
      {"/bin/bash", std::string(MLOPS_SOURCE_DIR) + "/examples/demo.sh", MLOPS_BUILD_DIR},
      {"MLOPS_SERVER=" + server.address()});
  ASSERT_EQ(again.exit_code, 0) << again.out.substr(
                                       again.out.size() > 6000 ? again.out.size() - 6000 : 0)
                                << again.err;
  EXPECT_THAT(again.err, HasSubstr("was CACHED: these are the logs of the attempt"));
  EXPECT_THAT(again.out, HasSubstr("cached steps: 7 of 7"));
  EXPECT_THAT(again.out, HasSubstr("mlops monitor create demo-"));
  EXPECT_THAT(again.out, HasSubstr("identical (bit for bit)"));
}

}  // namespace
}  // namespace mlops
