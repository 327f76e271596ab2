// The token authenticator under concurrent calls while its file changes, as a server's threads use
// it (label `threaded`: also run under ThreadSanitizer). rpc_guard_test covers the guard through
// real gRPC calls; it is a `unit` test because gRPC's own threads hand calls over through Debian's
// uninstrumented libraries, which ThreadSanitizer reports as races. Concurrent audit appends are
// in audit_log_test (RocksDB's write groups hand batches over the same way).
#include <atomic>
#include <thread>
#include <vector>

#include "services/common/auth.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

TEST(TokenFileThreadsTest, CallsWhileTheFileGrowsAlwaysSeeAConsistentTable) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/tokens.yaml";
  const std::string first = testing::AddToken(path, "first", Role::kEditor);
  auto opened = TokenFileAuthenticator::Open(path);
  ASSERT_OK(opened.status());
  std::shared_ptr<Authenticator> authenticator = std::move(*opened);

  std::vector<std::string> added;
  for (int i = 0; i < 3; ++i) added.push_back(NewToken());
  std::atomic<bool> stop{false};
  std::atomic<int> first_refused{0}, calls{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      while (!stop.load()) {
        auto principal = authenticator->Authenticate(first);
        if (!principal.ok() || principal->subject != "first" ||
            principal->RoleIn("default") != Role::kEditor) {
          ++first_refused;
        }
        for (const auto& token : added) (void)authenticator->Authenticate(token);
        ++calls;
      }
    });
  }
  // Entries appended while the callers run; each must be honoured within the reload interval.
  TokenEntry entry;
  entry.principal.grants["default"] = Role::kViewer;
  for (size_t i = 0; i < added.size(); ++i) {
    entry.principal.subject = "added" + std::to_string(i);
    entry.sha256 = TokenHash(added[i]);
    ASSERT_OK(AppendTokenEntry(path, entry));
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    auto principal = authenticator->Authenticate(added[i]);
    ASSERT_OK(principal.status());
    EXPECT_EQ(principal->subject, "added" + std::to_string(i));
  }
  stop = true;
  for (auto& caller : callers) caller.join();
  EXPECT_EQ(first_refused.load(), 0);
  EXPECT_GT(calls.load(), 100);
}

}  // namespace
}  // namespace mlops
