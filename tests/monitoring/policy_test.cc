// Promotion policies (services/monitoring/policy.h): the rule language with every error named,
// and verdicts: absolute rules, rules relative to a champion (with none to beat, or none
// evaluated), per-slice rules that only judge slices large enough, fairness, undefined metrics.
#include "services/monitoring/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/testing.h"

namespace mlops::monitoring {
namespace {

using ::mlops::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<Rule> Rules(std::initializer_list<const char*> texts) {
  std::vector<Rule> rules;
  for (const char* text : texts) {
    auto rule = ParseRule(text);
    EXPECT_OK(rule.status());
    if (rule.ok()) rules.push_back(*rule);
  }
  return rules;
}

v1::Evaluation Evaluated(double accuracy, double roc_auc, double b_accuracy, uint64_t b_rows) {
  v1::Evaluation e;
  e.set_id("e");
  e.mutable_overall()->set_count(1000);
  e.mutable_overall()->set_accuracy(accuracy);
  e.mutable_overall()->set_roc_auc(roc_auc);
  auto* a = e.add_slices();
  a->set_feature("city");
  a->set_value("a");
  a->mutable_metrics()->set_count(1000 - b_rows);
  a->mutable_metrics()->set_accuracy(accuracy);
  auto* b = e.add_slices();
  b->set_feature("city");
  b->set_value("b");
  b->mutable_metrics()->set_count(b_rows);
  b->mutable_metrics()->set_accuracy(b_accuracy);
  e.mutable_fairness()->set_feature("sex");
  e.mutable_fairness()->set_equalized_odds_difference(0.15);
  return e;
}

TEST(PolicyTest, RulesParseWithOrWithoutSpaces) {
  auto rule = ParseRule("auc>=champion-0.01");
  ASSERT_OK(rule.status());
  EXPECT_EQ(rule->metric, "roc_auc");
  EXPECT_TRUE(rule->relative);
  EXPECT_DOUBLE_EQ(rule->value, -0.01);
  rule = ParseRule("slice accuracy >= 0.8 min_rows 50");
  ASSERT_OK(rule.status());
  EXPECT_TRUE(rule->per_slice);
  EXPECT_EQ(rule->min_rows, 50u);
  rule = ParseRule("rmse < 1e-3");
  ASSERT_OK(rule.status());
  EXPECT_EQ(rule->op, Rule::Op::kLt);
  EXPECT_DOUBLE_EQ(rule->value, 1e-3);
  for (const auto& [text, why] : std::vector<std::pair<std::string, std::string>>{
           {"accuracy = 0.9", "expected an operator"},
           {"precision >= 0.9", "unknown metric precision (known: accuracy"},
           {"accuracy >= high", "expected a number or champion, not high"},
           {"accuracy >= champion -", "expected a number after champion -"},
           {"accuracy >= 0.9 min_rows 10", "min_rows is for slice rules"},
           {"slice equalized_odds_difference <= 0.1", "no per-slice value"},
           {"accuracy >= 0.9 please", "unexpected please"},
           {"", "expected [slice] METRIC OP VALUE"},
       }) {
    EXPECT_THAT(ParseRule(text).status(), StatusIs(absl::StatusCode::kInvalidArgument, why))
        << text;
  }
}

TEST(PolicyTest, VerdictsNameEveryRuleThatFailedWithTheValueFound) {
  v1::Evaluation challenger = Evaluated(0.88, 0.91, 0.70, 150);
  v1::Evaluation champion = Evaluated(0.90, 0.93, 0.85, 150);
  champion.set_id("champ");
  auto rules = Rules({"accuracy >= 0.85", "roc_auc >= champion - 0.01",
                      "equalized_odds_difference <= 0.1", "slice accuracy >= 0.8"});
  v1::Verdict verdict = Judge(rules, challenger, &champion, 3);
  EXPECT_FALSE(verdict.blessed());
  EXPECT_EQ(verdict.champion_version(), 3);
  EXPECT_EQ(verdict.champion_evaluation(), "champ");
  EXPECT_THAT(verdict.passed(), ElementsAre("accuracy >= 0.85"));
  ASSERT_EQ(verdict.failed_size(), 3);
  EXPECT_EQ(verdict.failed(0), "roc_auc 0.91 < 0.92 (champion 0.93) (roc_auc >= champion - 0.01)");
  EXPECT_EQ(verdict.failed(1),
            "equalized_odds_difference 0.15 > 0.1 "
            "(equalized_odds_difference <= 0.1)");
  EXPECT_EQ(verdict.failed(2), "slice city=b (n=150): accuracy 0.7 < 0.8 (slice accuracy >= 0.8)");
  EXPECT_EQ(verdict.policy_size(), 4);

  // A slice under min_rows is not judged.
  v1::Evaluation small = Evaluated(0.88, 0.95, 0.70, 40);
  EXPECT_TRUE(Judge(Rules({"slice accuracy >= 0.8"}), small, nullptr, 0).blessed());
  // No champion: a relative rule has nothing to beat. A champion never evaluated on this data:
  // it cannot be judged, so it fails.
  EXPECT_TRUE(Judge(Rules({"roc_auc >= champion"}), challenger, nullptr, 0).blessed());
  v1::Verdict unevaluated = Judge(Rules({"roc_auc >= champion"}), challenger, nullptr, 3);
  EXPECT_FALSE(unevaluated.blessed());
  EXPECT_THAT(unevaluated.failed(0), HasSubstr("no evaluation of the champion (version 3)"));
  // An undefined metric fails rather than passing silently.
  v1::Evaluation one_class = challenger;
  one_class.mutable_overall()->clear_roc_auc();
  v1::Verdict undefined = Judge(Rules({"roc_auc >= 0.5"}), one_class, nullptr, 0);
  EXPECT_THAT(undefined.failed(), ElementsAre("roc_auc is undefined (roc_auc >= 0.5)"));
  one_class.clear_fairness();
  EXPECT_FALSE(Judge(Rules({"demographic_parity_ratio >= 0.8"}), one_class, nullptr, 0).blessed());
}

}  // namespace
}  // namespace mlops::monitoring
