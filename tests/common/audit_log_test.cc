// The audit log's storage: entries in time order across a reopen (appending continues after the
// last, never over it), filters, paging, bad requests refused, concurrent appends all kept, and
// a retention that deletes only older entries.
#include "services/common/audit_log.h"

#include <prometheus/text_serializer.h>

#include <set>
#include <thread>
#include <vector>

#include "services/common/ids.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

using testing::StatusIs;

audit::v1::AuditEntry Entry(int64_t time_ms, const std::string& subject,
                            const std::string& project = "default") {
  audit::v1::AuditEntry entry;
  entry.set_time_ms(time_ms);
  entry.set_subject(subject);
  entry.set_project(project);
  entry.set_method("/mlops.metadata.v1.MetadataService/CreateRun");
  entry.set_code("OK");
  return entry;
}

std::vector<std::string> Subjects(const audit::v1::ListAuditEntriesResponse& response) {
  std::vector<std::string> out;
  for (const auto& entry : response.entries()) out.push_back(entry.subject());
  return out;
}

TEST(AuditLogTest, EntriesKeepTheirOrderAcrossAReopenAndFiltersAndPagesApply) {
  testing::TempDir dir;
  prometheus::Registry registry;
  {
    auto log = AuditLog::Open(dir.path() + "/audit", Db::Options(), registry);
    ASSERT_OK(log.status());
    ASSERT_OK((*log)->Append(Entry(1000, "a")));
    ASSERT_OK((*log)->Append(Entry(1000, "b", "vision")));  // the same millisecond: kept after a
    ASSERT_OK((*log)->Append(Entry(2000, "c")));
  }
  prometheus::Registry registry2;
  auto log = AuditLog::Open(dir.path() + "/audit", Db::Options(), registry2);
  ASSERT_OK(log.status());
  ASSERT_OK((*log)->Append(Entry(1000, "d")));  // a clock that went back: still never overwrites
  ASSERT_OK((*log)->Append(Entry(3000, "e")));
  audit::v1::ListAuditEntriesRequest all;
  all.set_project("*");  // every project's
  auto listed = (*log)->List(all);
  ASSERT_OK(listed.status());
  EXPECT_THAT(Subjects(*listed), ::testing::ElementsAre("a", "b", "d", "c", "e"));
  audit::v1::ListAuditEntriesRequest no_project;  // project default's
  EXPECT_THAT(Subjects(*(*log)->List(no_project)), ::testing::ElementsAre("a", "d", "c", "e"));
  audit::v1::ListAuditEntriesRequest vision;
  vision.set_project("vision");
  EXPECT_THAT(Subjects(*(*log)->List(vision)), ::testing::ElementsAre("b"));

  audit::v1::ListAuditEntriesRequest window;
  window.set_since_ms(1000);
  window.set_until_ms(3000);
  window.set_project("default");
  EXPECT_THAT(Subjects(*(*log)->List(window)), ::testing::ElementsAre("a", "d", "c"));
  audit::v1::ListAuditEntriesRequest by_subject;
  by_subject.set_subject("e");
  EXPECT_THAT(Subjects(*(*log)->List(by_subject)), ::testing::ElementsAre("e"));

  audit::v1::ListAuditEntriesRequest page;
  page.set_project("*");
  page.set_page_size(2);
  std::vector<std::string> paged;
  for (int i = 0; i < 10; ++i) {
    auto response = (*log)->List(page);
    ASSERT_OK(response.status());
    for (const std::string& subject : Subjects(*response)) paged.push_back(subject);
    if (response->next_page_token().empty()) break;
    page.set_page_token(response->next_page_token());
  }
  EXPECT_THAT(paged, ::testing::ElementsAre("a", "b", "d", "c", "e"));
  // A token is bound to its filters.
  audit::v1::ListAuditEntriesRequest first;
  first.set_page_size(1);
  auto one = (*log)->List(first);
  ASSERT_OK(one.status());
  audit::v1::ListAuditEntriesRequest other = first;
  other.set_subject("a");
  other.set_page_token(one->next_page_token());
  EXPECT_THAT((*log)->List(other).status(), StatusIs(absl::StatusCode::kInvalidArgument, ""));
  audit::v1::ListAuditEntriesRequest negative;
  negative.set_since_ms(-1);
  EXPECT_THAT((*log)->List(negative).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "negative"));
  negative.set_since_ms(0);
  negative.set_page_size(-1);
  EXPECT_THAT((*log)->List(negative).status(), StatusIs(absl::StatusCode::kInvalidArgument, ""));
}

TEST(AuditLogTest, ARetentionDeletesOnlyOlderEntriesAtOpenAndOnPurge) {
  testing::TempDir dir;
  const int64_t now = NowMs();
  const int64_t day = 86400000;
  {
    prometheus::Registry registry;
    auto log = AuditLog::Open(dir.path() + "/audit", Db::Options(), registry);
    ASSERT_OK(log.status());
    for (int64_t age : {40, 31, 29, 2, 0}) {
      ASSERT_OK((*log)->Append(Entry(now - age * day, "age" + std::to_string(age))));
    }
  }
  // Opened with 30 days: the two older ones go at once, and are counted.
  prometheus::Registry registry;
  auto log = AuditLog::Open(dir.path() + "/audit", Db::Options(), registry, 30 * day);
  ASSERT_OK(log.status());
  audit::v1::ListAuditEntriesRequest all;
  EXPECT_THAT(Subjects(*(*log)->List(all)), ::testing::ElementsAre("age29", "age2", "age0"));
  const std::string exposition = prometheus::TextSerializer().Serialize(registry.Collect());
  EXPECT_THAT(exposition, ::testing::HasSubstr("mlops_audit_entries_purged_total 2"));
  // A later purge takes what has aged past it since; appending goes on after it.
  auto purged = (*log)->Purge(now - day);
  ASSERT_OK(purged.status());
  EXPECT_EQ(*purged, 2u);
  EXPECT_EQ(*(*log)->Purge(now - day), 0u);
  ASSERT_OK((*log)->Append(Entry(now + 1, "new")));
  EXPECT_THAT(Subjects(*(*log)->List(all)), ::testing::ElementsAre("age0", "new"));
}

TEST(AuditLogTest, ConcurrentAppendsAreAllKeptEachUnderItsOwnKey) {
  testing::TempDir dir;
  prometheus::Registry registry;
  auto log = AuditLog::Open(dir.path() + "/audit", Db::Options(), registry);
  ASSERT_OK(log.status());
  constexpr int kThreads = 4, kEach = 200;
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        audit::v1::AuditEntry entry;
        entry.set_time_ms(1000);  // one millisecond for all: only the sequence tells them apart
        entry.set_subject("writer" + std::to_string(t));
        entry.set_project("default");
        entry.set_resource("n=" + std::to_string(i));
        entry.set_method("/mlops.metadata.v1.MetadataService/CreateRun");
        entry.set_code("OK");
        EXPECT_OK((*log)->Append(entry));
      }
    });
  }
  for (auto& writer : writers) writer.join();
  audit::v1::ListAuditEntriesRequest request;
  request.set_page_size(1000);
  std::set<std::string> seen;
  std::string token;
  do {
    request.set_page_token(token);
    auto page = (*log)->List(request);
    ASSERT_OK(page.status());
    for (const auto& entry : page->entries()) seen.insert(entry.subject() + "/" + entry.resource());
    token = page->next_page_token();
  } while (!token.empty());
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kEach));
}

}  // namespace
}  // namespace mlops
