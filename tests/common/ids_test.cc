// Time-ordered ids.
#include "services/common/ids.h"

#include <set>

#include "tests/testing/testing.h"

namespace mlops {
namespace {

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

}  // namespace
}  // namespace mlops
