#include "services/metadata/filter.h"

#include "tests/testing/testing.h"

namespace mlops::metadata {
namespace {

using ::mlops::testing::StatusIs;

TEST(FilterTest, EmptyFilterMatchesEverything) {
  auto expr = ParseFilter("   ");
  ASSERT_TRUE(expr.ok());
  EXPECT_EQ(*expr, nullptr);
}

TEST(FilterTest, ParsesThePrecedenceOfAndOverOr) {
  auto expr = ParseFilter(
      "metrics.acc > 0.9 and params.opt = \"adam\" or tags.team != 'x' AND status = 'finished'");
  ASSERT_TRUE(expr.ok()) << expr.status();
  ASSERT_EQ((*expr)->type, Expr::Type::kOr);
  ASSERT_EQ((*expr)->children.size(), 2u);
  const Expr& left = *(*expr)->children[0];
  ASSERT_EQ(left.type, Expr::Type::kAnd);
  EXPECT_EQ(left.children[0]->field.kind, FieldKind::kMetric);
  EXPECT_EQ(left.children[0]->field.key, "acc");
  EXPECT_EQ(left.children[0]->op, CompareOp::kGt);
  EXPECT_DOUBLE_EQ(left.children[0]->values[0].number, 0.9);
  EXPECT_EQ(left.children[1]->values[0].text, "adam");
  const Expr& right = *(*expr)->children[1];
  EXPECT_EQ(right.children[0]->op, CompareOp::kNe);
  EXPECT_EQ(right.children[1]->field.attribute, Attribute::kStatus);
  EXPECT_EQ(right.children[1]->values[0].text, "FINISHED");  // normalized
}

TEST(FilterTest, ParsesParenthesesInLikeAndQuotedKeys) {
  auto expr = ParseFilter(
      "(params.lr in ('0.1', \"0.01\") or params.`batch size` like '3%') and "
      "tags.\"my tag\" not in ('a') and start_time >= 1700000000000 and name ilike 'RUN-%' and "
      "metrics.loss <= -1.5e-3");
  ASSERT_TRUE(expr.ok()) << expr.status();
  const Expr& root = **expr;
  ASSERT_EQ(root.type, Expr::Type::kAnd);
  ASSERT_EQ(root.children.size(), 5u);
  EXPECT_EQ(root.children[0]->type, Expr::Type::kOr);
  EXPECT_EQ(root.children[0]->children[0]->values.size(), 2u);
  EXPECT_EQ(root.children[0]->children[1]->field.key, "batch size");
  EXPECT_EQ(root.children[0]->children[1]->op, CompareOp::kLike);
  EXPECT_EQ(root.children[1]->field.key, "my tag");
  EXPECT_EQ(root.children[1]->op, CompareOp::kNotIn);
  EXPECT_EQ(root.children[2]->field.attribute, Attribute::kStartTime);
  EXPECT_EQ(root.children[3]->op, CompareOp::kILike);
  EXPECT_DOUBLE_EQ(root.children[4]->values[0].number, -1.5e-3);
}

TEST(FilterTest, ParamsCompareAsTextEvenWhenGivenANumber) {
  auto expr = ParseFilter("params.epochs = 10");
  ASSERT_TRUE(expr.ok()) << expr.status();
  EXPECT_FALSE((*expr)->values[0].is_number);
  EXPECT_EQ((*expr)->values[0].text, "10");
}

struct BadFilter {
  const char* filter;
  const char* message;
};

class BadFilterTest : public ::testing::TestWithParam<BadFilter> {};

TEST_P(BadFilterTest, IsInvalidArgumentNamingThePosition) {
  EXPECT_THAT(ParseFilter(GetParam().filter).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Errors, BadFilterTest,
    ::testing::Values(
        BadFilter{"metrics.acc >", "at position 14: expected a value after metrics.acc"},
        BadFilter{"metrics.acc > 'high'", "at position 15: metrics.acc compares as a number"},
        BadFilter{"metrics.acc > 0.9 and", "at position 22: expected a field"},
        BadFilter{"metrics.acc > 0.9 params.x = 'a'", "at position 19: expected 'and', 'or'"},
        BadFilter{"(metrics.acc > 0.9", "at position 19: expected ')'"},
        BadFilter{"foo.bar = 1", "at position 1: unknown field prefix 'foo'"},
        BadFilter{"colour = 'red'", "at position 1: unknown attribute 'colour'"},
        BadFilter{"params.x = 'unterminated", "at position 12: unterminated quote"},
        BadFilter{"params.x ~ 'a'", "at position 10: unexpected character '~'"},
        BadFilter{"status = 'DONE'", "unknown status 'DONE'"},
        BadFilter{"metrics.acc like '1%'", "like needs a string field"},
        BadFilter{"params.x in 'a'", "expected '(' after in"},
        BadFilter{"params.x in ('a' 'b')", "expected ',' or ')'"},
        BadFilter{"params.x not = 'a'", "expected in, like or ilike after 'not'"},
        BadFilter{"metrics. > 1", "missing key"}, BadFilter{"params.x ! 'a'", "expected !="},
        // Positions count characters, not bytes: "é" and "日本" are 2 and 6 bytes.
        BadFilter{"params.x = 'é' and", "at position 19: expected a field"},
        BadFilter{"params.x = '日本' ~", "at position 17: unexpected character '~'"},
        BadFilter{"params.x = '日本' and params.y = 'ü", "at position 32: unterminated quote"}));

TEST(FilterTest, NestingIsBoundedInsteadOfOverflowingTheStack) {
  // 32 levels parse; 33 are refused by position; 3,000 (what the fuzzer found, which overflowed
  // the stack) are refused the same way and quickly.
  auto nested = [](int depth) {
    return std::string(depth, '(') + "metrics.a > 1" + std::string(depth, ')');
  };
  ASSERT_TRUE(ParseFilter(nested(32)).ok());
  EXPECT_THAT(ParseFilter(nested(33)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "filter: at position 33: parentheses nested deeper than 32"));
  EXPECT_THAT(ParseFilter(std::string(3000, '(')).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "nested deeper than 32"));
  EXPECT_THAT(ParseFilter(nested(40), FilterDialect::kLineage).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "nested deeper than 32"));
}

TEST(OrderByTest, ParsesFieldAndDirection) {
  auto order = ParseOrderBy("metrics.acc DESC");
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_TRUE(order->descending);
  EXPECT_EQ(order->field.key, "acc");
  order = ParseOrderBy("start_time");
  ASSERT_TRUE(order.ok());
  EXPECT_FALSE(order->descending);
  EXPECT_EQ(order->field.attribute, Attribute::kStartTime);
  EXPECT_THAT(ParseOrderBy("metrics.acc sideways").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "ASC or DESC"));
  EXPECT_THAT(ParseOrderBy("").status(), StatusIs(absl::StatusCode::kInvalidArgument, "expected"));
}

TEST(LikeTest, MatchesSqlPatterns) {
  EXPECT_TRUE(LikeMatch("resnet-50", "resnet%", false));
  EXPECT_TRUE(LikeMatch("resnet-50", "%-5_", false));
  EXPECT_FALSE(LikeMatch("resnet-50", "%-5", false));
  EXPECT_TRUE(LikeMatch("", "%", false));
  EXPECT_FALSE(LikeMatch("ResNet", "resnet", false));
  EXPECT_TRUE(LikeMatch("ResNet", "resnet", true));
  EXPECT_TRUE(LikeMatch("100%", "100\\%", false));
  EXPECT_FALSE(LikeMatch("1000", "100\\%", false));
  EXPECT_TRUE(LikeMatch("abcabc", "%abc", false));
}

TEST(LikeTest, UnderscoreIsOneCharacterOfUtf8Text) {
  EXPECT_TRUE(LikeMatch("café", "caf_", false));  // é is two bytes
  EXPECT_FALSE(LikeMatch("café", "caf__", false));
  EXPECT_TRUE(LikeMatch("日本語", "___", false));  // three bytes each
  EXPECT_FALSE(LikeMatch("日本語", "__", false));
  EXPECT_TRUE(LikeMatch("日本語", "%語", false));
  EXPECT_TRUE(LikeMatch("日本語", "_本_", false));
  EXPECT_FALSE(LikeMatch("日本語", "_日%", false));
  EXPECT_TRUE(LikeMatch("x🙂y", "x_y", false));            // four bytes
  EXPECT_TRUE(LikeMatch("ÉCOLE", "École", false) == false);  // ilike folds ASCII only
  EXPECT_TRUE(LikeMatch("école", "%cole", true));
  // '%' then '_' after a multi-byte character: backtracking moves a character at a time.
  EXPECT_TRUE(LikeMatch("aébc", "a%_c", false));
  EXPECT_FALSE(LikeMatch("aé", "a_%_", false));
}

}  // namespace
}  // namespace mlops::metadata
