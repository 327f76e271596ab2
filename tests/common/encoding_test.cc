// Order-preserving key encodings: strings, doubles (NaN last), int64.
#include "services/common/encoding.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "tests/testing/testing.h"

namespace mlops {
namespace {

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

}  // namespace
}  // namespace mlops
