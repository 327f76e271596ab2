#include <rocksdb/status.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <future>
#include <limits>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/escaping.h"
#include "services/common/db.h"
#include "services/common/encoding.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/page_token.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/common/work_queue.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

using ::mlops::testing::StatusIs;

TEST(EncodingTest, OrderedStringsSortLikeStrings) {
  std::vector<std::string> values = {
      "", "a", "ab", "b", std::string("a\0b", 3), std::string("a\0", 2), "\xff", "a\x01"};
  std::vector<std::pair<std::string, std::string>> encoded;
  for (const auto& v : values) {
    std::string e;
    AppendOrderedString(&e, v);
    encoded.emplace_back(e, v);
  }
  std::sort(encoded.begin(), encoded.end());
  std::vector<std::string> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    EXPECT_EQ(encoded[i].second, sorted[i]) << i;
    std::string_view in = encoded[i].first;
    std::string decoded;
    ASSERT_TRUE(ConsumeOrderedString(&in, &decoded));
    EXPECT_EQ(decoded, sorted[i]);
    EXPECT_TRUE(in.empty());
  }
}

TEST(EncodingTest, OrderedDoublesSortNumericallyWithNanLast) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> values = {-inf, -1e300, -2.5, -1e-300, 0.0, 1e-300, 0.5, 1, 3e10, inf};
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> dist(-1e6, 1e6);
  for (int i = 0; i < 200; ++i) values.push_back(dist(rng));
  std::vector<std::string> encoded;
  for (double v : values) {
    std::string e;
    AppendOrderedDouble(&e, v);
    encoded.push_back(e);
    std::string_view in = e;
    double back;
    ASSERT_TRUE(ConsumeOrderedDouble(&in, &back));
    EXPECT_EQ(back, v);
  }
  for (size_t i = 0; i < values.size(); ++i) {
    for (size_t j = 0; j < values.size(); ++j) {
      EXPECT_EQ(values[i] < values[j], encoded[i] < encoded[j]) << values[i] << " " << values[j];
    }
  }
  std::string nan, pos_inf;
  AppendOrderedDouble(&nan, std::nan(""));
  AppendOrderedDouble(&pos_inf, inf);
  EXPECT_GT(nan, pos_inf);
  std::string neg_zero, zero;
  AppendOrderedDouble(&neg_zero, -0.0);
  AppendOrderedDouble(&zero, 0.0);
  EXPECT_EQ(neg_zero, zero);
}

TEST(EncodingTest, OrderedInt64) {
  std::vector<int64_t> values = {std::numeric_limits<int64_t>::min(), -5, -1, 0, 1, 7,
                                 std::numeric_limits<int64_t>::max()};
  std::string prev;
  for (int64_t v : values) {
    std::string e;
    AppendOrderedInt64(&e, v);
    if (!prev.empty()) {
      EXPECT_LT(prev, e);
    }
    prev = e;
    std::string_view in = e;
    int64_t back;
    ASSERT_TRUE(ConsumeOrderedInt64(&in, &back));
    EXPECT_EQ(back, v);
  }
}

TEST(IdsTest, IdsAreUniqueValidAndIncreasing) {
  std::string prev;
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    std::string id = NewId();
    EXPECT_TRUE(IsValidId(id)) << id;
    EXPECT_LT(prev, id);
    prev = id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 10000u);
  EXPECT_FALSE(IsValidId("xyz"));
  EXPECT_FALSE(IsValidId(std::string(32, 'G')));
}

TEST(StringsTest, FormatsTimesAsRfc3339) {
  EXPECT_EQ(FormatRfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatRfc3339(1795780800000), "2026-11-27T12:00:00Z");
  EXPECT_EQ(FormatRfc3339(1795780800999), "2026-11-27T12:00:00.999Z");
  EXPECT_EQ(FormatRfc3339(-1), "1969-12-31T23:59:59.999Z");
}

TEST(PageTokenTest, RoundTripsAndRejectsForeignTokens) {
  const std::string key(32, 'k');
  uint64_t fp = Fingerprint({"a", "b"});
  EXPECT_NE(fp, Fingerprint({"ab", ""}));
  std::string token = EncodePageToken(key, {fp, std::string("k\0ey", 4)});
  auto cursor = DecodePageToken(key, token, fp);
  ASSERT_TRUE(cursor.ok()) << cursor.status();
  EXPECT_EQ(cursor->after, std::string("k\0ey", 4));
  EXPECT_THAT(DecodePageToken(key, token, fp + 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "different parameters"));
  EXPECT_THAT(DecodePageToken(key, "!!notbase64", fp).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "malformed"));
  EXPECT_THAT(DecodePageToken(key, "", fp).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "malformed"));
  // Another server's key.
  EXPECT_THAT(DecodePageToken(std::string(32, 'x'), token, fp).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "not a token this service issued"));
  EXPECT_THAT(NormalizePageSize(-1, 10, 100).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "page_size"));
  EXPECT_EQ(*NormalizePageSize(0, 10, 100), 10);
  EXPECT_EQ(*NormalizePageSize(1000, 10, 100), 100);
}

TEST(PageTokenTest, EveryFlippedBitIsRefused) {
  const std::string key(32, 'k');
  uint64_t fp = Fingerprint({"runs"});
  std::string token = EncodePageToken(key, {fp, "resume-after-this-key"});
  std::string bytes;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(token, &bytes));
  for (size_t bit = 0; bit < bytes.size() * 8; ++bit) {
    std::string flipped = bytes;
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    std::string tampered;
    absl::WebSafeBase64Escape(flipped, &tampered);
    EXPECT_THAT(DecodePageToken(key, tampered, fp).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, "page_token"))
        << "bit " << bit;
  }
}

TEST(PageTokenTest, TheKeyIsMadeOnceAndKeptInTheDatabase) {
  testing::TempDir dir;
  std::string key;
  {
    auto db = Db::Open(dir.path() + "/db", {"things"}, Db::Options());
    ASSERT_TRUE(db.ok()) << db.status();
    key = (*db)->page_token_key();
    EXPECT_EQ(key.size(), 32u);
  }
  auto again = Db::Open(dir.path() + "/db", {"things"}, Db::Options());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->page_token_key(), key);
  testing::TempDir other;
  auto foreign = Db::Open(other.path() + "/db", {"things"}, Db::Options());
  ASSERT_TRUE(foreign.ok());
  EXPECT_NE((*foreign)->page_token_key(), key);
}

TEST(StatusTest, MapsRocksDbCodesExplicitly) {
  EXPECT_EQ(FromRocksStatus(rocksdb::Status::OK()).code(), absl::StatusCode::kOk);
  EXPECT_EQ(FromRocksStatus(rocksdb::Status::NotFound()).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FromRocksStatus(rocksdb::Status::Corruption()).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(FromRocksStatus(rocksdb::Status::Busy()).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromRocksStatus(rocksdb::Status::InvalidArgument("x"), "put").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(FromRocksStatus(rocksdb::Status::NoSpace(), "write"),
              StatusIs(absl::StatusCode::kResourceExhausted, "write: "));
  grpc::Status g = ToGrpcStatus(absl::NotFoundError("run x not found"));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(g.error_message(), "run x not found");
  EXPECT_EQ(FromGrpcStatus(g).code(), absl::StatusCode::kNotFound);
  EXPECT_STREQ(StatusCodeName(5), "NOT_FOUND");
  EXPECT_STREQ(StatusCodeName(16), "UNAUTHENTICATED");
  EXPECT_STREQ(StatusCodeName(99), "UNKNOWN");
}

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(int quarter, Half(half));
  RETURN_IF_ERROR(absl::OkStatus());
  return quarter;
}

TEST(StatusTest, Macros) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_THAT(Quarter(6).status(), StatusIs(absl::StatusCode::kInvalidArgument, "odd"));
}

TEST(StringsTest, CatAndFormat) {
  EXPECT_EQ(StrCat("a", std::string_view("b"), 3, '-', 0.5, std::string("x")), "ab3-0.5x");
  EXPECT_EQ(FormatDouble(0.1), "0.1");
  EXPECT_EQ(FormatDouble(std::nan("")), "nan");
  EXPECT_EQ(std::strtod(FormatDouble(1.0 / 3).c_str(), nullptr), 1.0 / 3);
  EXPECT_TRUE(EqualsIgnoreCase("AnD", "and"));
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

TEST(WorkQueueTest, RunsEveryJobOnItsThreadsAndDrainsOnStop) {
  std::atomic<int> done{0};
  std::mutex mu;
  std::set<std::thread::id> threads;
  {
    WorkQueue queue(3);
    for (int i = 0; i < 300; ++i) {
      ASSERT_TRUE(queue.Post([&] {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        std::lock_guard lock(mu);
        threads.insert(std::this_thread::get_id());
        ++done;
      }));
    }
  }  // the destructor drains
  EXPECT_EQ(done.load(), 300);
  EXPECT_GE(threads.size(), 2u);
  EXPECT_EQ(threads.count(std::this_thread::get_id()), 0u);
}

TEST(WorkQueueTest, StopWithoutDrainDropsQueuedJobsAndRefusesNewOnes) {
  std::atomic<int> done{0};
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::promise<void> started;
  WorkQueue queue(1);
  queue.Post([&, gate] {
    started.set_value();
    gate.wait();
    ++done;
  });
  started.get_future().wait();
  for (int i = 0; i < 10; ++i) queue.Post([&] { ++done; });
  EXPECT_EQ(queue.pending(), 10u);
  std::thread stopper([&] { queue.Stop(/*drain=*/false); });
  while (queue.pending() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  release.set_value();
  stopper.join();
  EXPECT_EQ(done.load(), 1);  // only the running job finished
  EXPECT_FALSE(queue.Post([&] { ++done; }));
  queue.Stop(/*drain=*/true);  // idempotent
  EXPECT_EQ(done.load(), 1);
}
}  // namespace
}  // namespace mlops
