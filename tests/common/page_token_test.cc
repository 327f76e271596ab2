// Page tokens: authenticated, bound to their request, refused when foreign or altered.
#include "services/common/page_token.h"

#include "absl/strings/escaping.h"
#include "services/common/db.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

using ::mlops::testing::StatusIs;

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

// Pages of a prefix scan: tokens hold the part after the prefix, passed (filtered) keys move the
// position, a suspended scan resumes where it stopped, and the last page has no token.
TEST(PageTokenTest, APagerWalksAPrefixScanWithFilteredKeysAndABudget) {
  const std::string key(32, 'k');
  const uint64_t fp = Fingerprint({"list"});
  const std::vector<std::string> keys = {"p/1", "p/2", "p/3", "p/4", "p/5"};
  // One page: up to 2 items, skipping "p/2", examining at most 3 keys.
  auto page = [&](const std::string& token, std::vector<std::string>* got) {
    auto pager = Pager::Start(key, 2, 10, 100, token, fp, "p/");
    EXPECT_TRUE(pager.ok()) << pager.status();
    int examined = 0;
    for (const auto& k : keys) {
      if (!pager->after().empty() && k <= pager->after()) continue;  // strictly after
      if (++examined > 3) {
        pager->Suspend();
        break;
      }
      if (k == "p/2") {
        pager->Pass(k);
        continue;
      }
      if (!pager->Take(k)) break;
      got->push_back(k);
    }
    return pager->NextToken();
  };
  std::vector<std::string> got;
  std::string token = page("", &got);
  EXPECT_EQ(got, (std::vector<std::string>{"p/1", "p/3"}));
  auto cursor = DecodePageToken(key, token, fp);
  ASSERT_TRUE(cursor.ok());
  EXPECT_EQ(cursor->after, "3");  // relative to the prefix
  token = page(token, &got);
  EXPECT_EQ(got, (std::vector<std::string>{"p/1", "p/3", "p/4", "p/5"}));
  EXPECT_EQ(token, "");
  // A budget that runs out before the page is full still gives a token that resumes.
  auto pager = Pager::Start(key, 5, 10, 100, "", fp, "p/");
  ASSERT_TRUE(pager.ok());
  EXPECT_TRUE(pager->first_page());
  pager->Pass("p/2");
  pager->Suspend();
  auto resumed = Pager::Start(key, 5, 10, 100, pager->NextToken(), fp, "p/");
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(resumed->after(), "p/2");
  EXPECT_FALSE(resumed->first_page());
}

}  // namespace
}  // namespace mlops
