// mlops-bench stays runnable: tiny metadata and artifact suites print one flat JSON object with
// every figure the docs quote. (Its numbers are not checked here: benchmarks are programs, not
// timed tests.)
#include <algorithm>

#include "tests/testing/testing.h"

namespace mlops {
namespace {

TEST(BenchSmokeTest, MetadataSuitePrintsItsFigures) {
  // Under `timeout`, so that a suite that hangs fails with what it printed (the phase it was in).
  auto result = testing::RunCommand({"timeout", "-k", "5", "200", MLOPS_BENCH_BIN, "metadata",
                                     "--json", "--runs=2000", "--batches=5", "--batch_points=200",
                                     "--queries=5", "--lineage_runs=200", "--put_executions=2000"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const std::string& out = result.out;
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.front(), '{');
  EXPECT_EQ(out.substr(out.find_last_not_of('\n'), 1), "}");
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line of JSON";
  for (const char* key :
       {"ingest_points_per_s", "ingest_floor_points_per_s", "ingest_ratio_to_floor",
        "search_selective_p50_ms", "search_selective_p99_ms", "search_unselective_p50_ms",
        "search_unselective_p99_ms", "server_peak_rss_mb", "lineage_3hop_p99_ms",
        "put_execution_per_s", "put_execution_unary_per_s", "put_execution_floor_per_s"}) {
    EXPECT_NE(out.find(std::string("\"") + key + "\": "), std::string::npos) << key;
  }
  EXPECT_NE(out.find("\"search_runs\": 2000"), std::string::npos) << out;
  EXPECT_EQ(out.find("nan"), std::string::npos) << out;
  EXPECT_EQ(testing::RunCommand({MLOPS_BENCH_BIN, "nonsense"}).exit_code, 2);
}

TEST(BenchSmokeTest, ArtifactSuitePrintsItsFigures) {
  auto result = testing::RunCommand({MLOPS_BENCH_BIN, "artifact", "--json", "--size_mb=16",
                                     "--dedup_mb=16", "--small_files=300"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const std::string& out = result.out;
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.front(), '{');
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line of JSON";
  for (const char* key :
       {"upload_mb_per_s", "download_mb_per_s", "floor_sha256_mb_per_s", "floor_dd_mb_per_s",
        "dedup_sent_fraction", "dedup_stored_fraction", "restic_seconds", "restic_added_bytes",
        "mlops_v2_push_seconds", "noop_repush_100k_files_s"}) {
    EXPECT_NE(out.find(std::string("\"") + key + "\": "), std::string::npos) << key;
  }
  EXPECT_EQ(out.find("nan"), std::string::npos) << out;
}

TEST(BenchSmokeTest, SchedulerSuitePrintsItsFigures) {
  auto result = testing::RunCommand(
      {MLOPS_BENCH_BIN, "scheduler", "--json", "--steps=200", "--pending=2000"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const std::string& out = result.out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line of JSON";
  for (const char* key :
       {"steps_per_s", "floor_spawn_per_s", "admissions_per_s", "scheduler_peak_rss_mb"}) {
    EXPECT_NE(out.find(std::string("\"") + key + "\": "), std::string::npos) << key;
  }
}

TEST(BenchSmokeTest, MonitoringSuitePrintsItsFigures) {
  auto result =
      testing::RunCommand({MLOPS_BENCH_BIN, "monitoring", "--json", "--rows=20000", "--features=12",
                           "--reference_rows=5000", "--stream_seconds=0.5", "--clients=2"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const std::string& out = result.out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line of JSON";
  for (const char* key : {"batch_drift_seconds", "batch_floor_seconds", "stream_values_per_s",
                          "batch_compute_seconds", "profile_seconds"}) {
    EXPECT_NE(out.find(std::string("\"") + key + "\": "), std::string::npos) << key;
  }
  // Features 0..9 moved, and were found; the other two did not move (a false positive at the 5%
  // level is possible, so they are not asserted).
  size_t at = out.find("\"batch_drifted_features\": ");
  ASSERT_NE(at, std::string::npos);
  EXPECT_GE(std::atoi(out.c_str() + at + 26), 10) << out;
}

TEST(BenchSmokeTest, ValidationSuitePrintsItsFigures) {
  // pandas is the bench's own business: the smoke test does not need it.
  auto result =
      testing::RunCommand({MLOPS_BENCH_BIN, "validation", "--json", "--rows=20000", "--features=12",
                           "--categorical=3", "--rounds=1", "--pandas=false"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const std::string& out = result.out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line of JSON";
  for (const char* key : {"validate_seconds", "floor_seconds", "ratio_to_floor", "infer_seconds",
                          "rpc_validate_seconds", "rpc_check_seconds"}) {
    EXPECT_NE(out.find(std::string("\"") + key + "\": "), std::string::npos) << key;
  }
  // The four planted anomalies, and nothing else.
  EXPECT_NE(out.find("\"anomalies\": 4,"), std::string::npos) << out;
}

}  // namespace
}  // namespace mlops
