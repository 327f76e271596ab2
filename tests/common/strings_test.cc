// String helpers: RFC 3339 times, StrCat and formatting.
#include "services/common/strings.h"

#include <cmath>

#include "tests/testing/testing.h"

namespace mlops {
namespace {

TEST(StringsTest, FormatsTimesAsRfc3339) {
  EXPECT_EQ(FormatRfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatRfc3339(1795780800000), "2026-11-27T12:00:00Z");
  EXPECT_EQ(FormatRfc3339(1795780800999), "2026-11-27T12:00:00.999Z");
  EXPECT_EQ(FormatRfc3339(-1), "1969-12-31T23:59:59.999Z");
}

TEST(StringsTest, CatAndFormat) {
  EXPECT_EQ(StrCat("a", std::string_view("b"), 3, '-', 0.5, std::string("x")), "ab3-0.5x");
  EXPECT_EQ(FormatDouble(0.1), "0.1");
  EXPECT_EQ(FormatDouble(std::nan("")), "nan");
  EXPECT_EQ(std::strtod(FormatDouble(1.0 / 3).c_str(), nullptr), 1.0 / 3);
  EXPECT_TRUE(EqualsIgnoreCase("AnD", "and"));
}

TEST(StringsTest, Utf8IsCheckedAndBadBytesAreEscaped) {
  EXPECT_TRUE(IsUtf8(""));
  EXPECT_TRUE(IsUtf8("plain"));
  EXPECT_TRUE(IsUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));  // é € 😀
  EXPECT_FALSE(IsUtf8("caf\xe9"));                                   // Latin-1 é
  EXPECT_FALSE(IsUtf8("\xc3"));                                      // cut short
  EXPECT_FALSE(IsUtf8("\xc0\xaf"));                                  // overlong '/'
  EXPECT_FALSE(IsUtf8("\xed\xa0\x80"));                              // a surrogate
  EXPECT_FALSE(IsUtf8("\xf4\x90\x80\x80"));                          // past U+10FFFF
  EXPECT_EQ(Utf8Safe("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(Utf8Safe("caf\xe9!"), "caf\\xe9!");
  EXPECT_EQ(Utf8Safe("\xc3"), "\\xc3");
}

}  // namespace
}  // namespace mlops
