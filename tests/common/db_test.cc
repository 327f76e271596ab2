// The storage wrapper's on-disk formats: a new database records its format, an older one is
// migrated step by step (each step once, resumed after a failure), a newer one is refused.
#include "services/common/db.h"

#include <thread>
#include <vector>

#include "tests/testing/testing.h"

namespace mlops {
namespace {

using ::mlops::testing::StatusIs;

// A replaced pod's new process may start while the old one still holds the lock: with lock_wait
// it waits for the lock instead of failing; without the lock coming free it still says UNAVAILABLE.
TEST(DbTest, OpenWaitsForTheLockWhenAskedAndStillRefusesAfterTheWait) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/db";
  auto held = Db::Open(path, {"things"}, Db::Options());
  ASSERT_TRUE(held.ok()) << held.status();
  Db::Options waiting;
  waiting.lock_wait = absl::Milliseconds(300);
  auto start = absl::Now();
  EXPECT_THAT(Db::Open(path, {"things"}, waiting).status(),
              StatusIs(absl::StatusCode::kUnavailable, "in use"));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));

  waiting.lock_wait = absl::Seconds(20);
  std::thread release([&] {
    absl::SleepFor(absl::Milliseconds(400));
    held->reset();
  });
  start = absl::Now();
  auto opened = Db::Open(path, {"things"}, waiting);
  release.join();
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(DbTest, PrefixScansBothWaysAndSurvivesReopen) {
  testing::TempDir dir;
  {
    auto db = Db::Open(dir.path() + "/db", {"things"}, Db::Options());
    ASSERT_TRUE(db.ok()) << db.status();
    rocksdb::WriteBatch batch;
    for (const char* key : {"a1", "b1", "b2", "b3", "c1"}) batch.Put((*db)->Cf("things"), key, key);
    ASSERT_OK((*db)->Write(&batch));
    // A second open of the same directory is refused while the first holds it.
    EXPECT_THAT(Db::Open(dir.path() + "/db", {"things"}, Db::Options()).status(),
                StatusIs(absl::StatusCode::kUnavailable, "in use"));
  }
  auto db = Db::Open(dir.path() + "/db", {"things"}, Db::Options());
  ASSERT_TRUE(db.ok()) << db.status();
  std::vector<std::string> seen;
  auto collect = [&](std::string_view k, std::string_view) {
    seen.emplace_back(k);
    return true;
  };
  ASSERT_OK((*db)->ScanPrefix((*db)->Cf("things"), "b", "", collect));
  EXPECT_THAT(seen, ::testing::ElementsAre("b1", "b2", "b3"));
  seen.clear();
  ASSERT_OK((*db)->ScanPrefix((*db)->Cf("things"), "b", "b1", collect));
  EXPECT_THAT(seen, ::testing::ElementsAre("b2", "b3"));
  seen.clear();
  ASSERT_OK((*db)->ScanPrefixReverse((*db)->Cf("things"), "b", "", collect));
  EXPECT_THAT(seen, ::testing::ElementsAre("b3", "b2", "b1"));
  seen.clear();
  ASSERT_OK((*db)->ScanPrefixReverse((*db)->Cf("things"), "b", "b3", collect));
  EXPECT_THAT(seen, ::testing::ElementsAre("b2", "b1"));
  EXPECT_EQ(PrefixSuccessor("ab\xff"), "ac");
  EXPECT_EQ(PrefixSuccessor("\xff\xff"), "");
}

class DbFormatTest : public ::testing::Test {
 protected:
  // Opens the database at format `version` with steps 1..version that note when they run; step
  // `failing` fails once.
  absl::StatusOr<std::unique_ptr<Db>> OpenAt(int version, int failing = 0) {
    std::vector<Migration> steps;
    for (int v = 1; v <= version; ++v) {
      steps.push_back({v, "step " + std::to_string(v), [this, v, failing](Db& db) {
                         if (v == failing && !failed_) {
                           failed_ = true;
                           return absl::InternalError("step failed");
                         }
                         ran_.push_back(v);
                         rocksdb::WriteBatch batch;
                         batch.Put(db.Cf("records"), "migrated" + std::to_string(v), "yes");
                         return db.Write(&batch);
                       }});
    }
    return Db::Open(dir_.path() + "/db", {"records"}, Versioned(Db::Options(), version, steps));
  }

  testing::TempDir dir_;
  std::vector<int> ran_;
  bool failed_ = false;
};

TEST_F(DbFormatTest, ANewDatabaseRecordsItsFormatAndRunsNoMigration) {
  auto db = OpenAt(3);
  ASSERT_OK(db.status());
  EXPECT_EQ(*(*db)->StoredFormatVersion(), 3);
  EXPECT_TRUE(ran_.empty());
}

TEST_F(DbFormatTest, AnOlderDatabaseIsMigratedStepByStepOnce) {
  {
    // Written before formats were recorded: format 0, with a record.
    auto old = Db::Open(dir_.path() + "/db", {"records"}, Db::Options());
    ASSERT_OK(old.status());
    rocksdb::WriteBatch batch;
    batch.Put((*old)->Cf("records"), "kept", "1");
    ASSERT_OK((*old)->Write(&batch));
    EXPECT_EQ(*(*old)->StoredFormatVersion(), 0);
  }
  {
    auto db = OpenAt(2);
    ASSERT_OK(db.status());
    EXPECT_EQ(ran_, (std::vector<int>{1, 2}));
    EXPECT_EQ(*(*db)->StoredFormatVersion(), 2);
    EXPECT_EQ(*(*db)->Get((*db)->Cf("records"), "kept"), "1");
    EXPECT_EQ(*(*db)->Get((*db)->Cf("records"), "migrated2"), "yes");
  }
  ran_.clear();
  {
    auto db = OpenAt(3);  // a later binary: only the new step
    ASSERT_OK(db.status());
    EXPECT_EQ(ran_, (std::vector<int>{3}));
  }
  ran_.clear();
  ASSERT_OK(OpenAt(3).status());
  EXPECT_TRUE(ran_.empty());
}

TEST_F(DbFormatTest, ANewerDatabaseIsRefusedAndLeftAlone) {
  ASSERT_OK(OpenAt(4).status());
  EXPECT_THAT(OpenAt(2).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "written by a newer mlops (on-disk format 4; this binary reads formats up "
                       "to 2)"));
  auto db = OpenAt(4);
  ASSERT_OK(db.status());
  EXPECT_EQ(*(*db)->StoredFormatVersion(), 4);
}

TEST_F(DbFormatTest, AFailedStepIsReturnedAndTheMigrationResumesThere) {
  ASSERT_OK(Db::Open(dir_.path() + "/db", {"records"}, Db::Options()).status());
  EXPECT_THAT(OpenAt(3, /*failing=*/2).status(),
              StatusIs(absl::StatusCode::kInternal, "step failed"));
  EXPECT_EQ(ran_, (std::vector<int>{1}));  // step 1 done and recorded
  ran_.clear();
  auto db = OpenAt(3, /*failing=*/2);
  ASSERT_OK(db.status());
  EXPECT_EQ(ran_, (std::vector<int>{2, 3}));
  // A step missing from the list is refused rather than skipped.
  db->reset();
  EXPECT_THAT(Db::Open(dir_.path() + "/db", {"records"},
                       Versioned(Db::Options(), 5, {{4, "four", nullptr}}))
                  .status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no migration to on-disk format 5"));
}

}  // namespace
}  // namespace mlops
