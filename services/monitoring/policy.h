// Promotion policies (docs/analysis.md): rules an evaluation of a model version must pass to be
// blessed, absolute ("accuracy >= 0.9"), relative to the champion's evaluation on the same data
// ("roc_auc >= champion - 0.01"), on fairness ("equalized_odds_difference <= 0.1") or on every
// slice of at least N rows ("slice accuracy >= 0.8 min_rows 100").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "mlops/monitoring/v1/monitoring.pb.h"

namespace mlops::monitoring {

struct Rule {
  std::string text;  // as written
  bool per_slice = false;
  uint64_t min_rows = 100;  // per slice: smaller slices are not judged
  std::string metric;       // a ModelMetrics figure or a Fairness one
  enum class Op { kGe, kGt, kLe, kLt } op = Op::kGe;
  bool relative = false;  // the bound is the champion's value plus `value`
  double value = 0;
};

// `[slice] METRIC (>=|>|<=|<) (NUMBER | champion [(+|-) NUMBER]) [min_rows N]`. INVALID_ARGUMENT
// naming the rule and what is wrong (an unknown metric lists the known ones).
absl::StatusOr<Rule> ParseRule(std::string_view text);

// The value of `metric` (a ModelMetrics figure of `metrics`, or a fairness figure of
// `evaluation`); none when it is undefined there (no ROC AUC for one class, no fairness asked).
std::optional<double> MetricValue(const v1::Evaluation& evaluation, const v1::ModelMetrics& metrics,
                                  const std::string& metric);

// Judges `challenger` by `rules`, against `champion` (null: none to compare with). A relative
// rule without a champion version passes (nothing to beat); with a champion version but no
// evaluation of it (`champion_version` > 0, `champion` null) it fails. Fills blessed, failed,
// passed and policy.
v1::Verdict Judge(const std::vector<Rule>& rules, const v1::Evaluation& challenger,
                  const v1::Evaluation* champion, int64_t champion_version);

}  // namespace mlops::monitoring
