#include "services/monitoring/policy.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "services/common/strings.h"

namespace mlops::monitoring {
namespace {

using Getter = double (*)(const v1::ModelMetrics&);

// The figures of ModelMetrics a rule may name (their optional ones are checked separately).
const std::map<std::string, Getter, std::less<>>& Figures() {
  static const auto* figures = new std::map<std::string, Getter, std::less<>>{
      {"accuracy", [](const v1::ModelMetrics& m) { return m.accuracy(); }},
      {"macro_precision", [](const v1::ModelMetrics& m) { return m.macro_precision(); }},
      {"macro_recall", [](const v1::ModelMetrics& m) { return m.macro_recall(); }},
      {"macro_f1", [](const v1::ModelMetrics& m) { return m.macro_f1(); }},
      {"weighted_precision", [](const v1::ModelMetrics& m) { return m.weighted_precision(); }},
      {"weighted_recall", [](const v1::ModelMetrics& m) { return m.weighted_recall(); }},
      {"weighted_f1", [](const v1::ModelMetrics& m) { return m.weighted_f1(); }},
      {"roc_auc", [](const v1::ModelMetrics& m) { return m.roc_auc(); }},
      {"pr_auc", [](const v1::ModelMetrics& m) { return m.pr_auc(); }},
      {"log_loss", [](const v1::ModelMetrics& m) { return m.log_loss(); }},
      {"brier", [](const v1::ModelMetrics& m) { return m.brier(); }},
      {"ece", [](const v1::ModelMetrics& m) { return m.ece(); }},
      {"rmse", [](const v1::ModelMetrics& m) { return m.rmse(); }},
      {"mae", [](const v1::ModelMetrics& m) { return m.mae(); }},
      {"r2", [](const v1::ModelMetrics& m) { return m.r2(); }},
      {"mape", [](const v1::ModelMetrics& m) { return m.mape(); }},
  };
  return *figures;
}

bool Defined(const v1::ModelMetrics& m, std::string_view metric) {
  if (metric == "roc_auc") return m.has_roc_auc();
  if (metric == "pr_auc") return m.has_pr_auc();
  if (metric == "log_loss") return m.has_log_loss();
  if (metric == "brier") return m.has_brier();
  if (metric == "ece") return m.has_ece();
  return m.count() > 0;
}

bool IsFairness(std::string_view metric) {
  return metric == "demographic_parity_difference" || metric == "demographic_parity_ratio" ||
         metric == "equalized_odds_difference" || metric == "equalized_odds_ratio";
}

const char* OpText(Rule::Op op) {
  switch (op) {
    case Rule::Op::kGe:
      return ">=";
    case Rule::Op::kGt:
      return ">";
    case Rule::Op::kLe:
      return "<=";
    default:
      return "<";
  }
}

// The operator that says the rule failed ("accuracy 0.84 < 0.9").
const char* Negated(Rule::Op op) {
  switch (op) {
    case Rule::Op::kGe:
      return "<";
    case Rule::Op::kGt:
      return "<=";
    case Rule::Op::kLe:
      return ">";
    default:
      return ">=";
  }
}

bool Holds(Rule::Op op, double value, double bound) {
  switch (op) {
    case Rule::Op::kGe:
      return value >= bound;
    case Rule::Op::kGt:
      return value > bound;
    case Rule::Op::kLe:
      return value <= bound;
    default:
      return value < bound;
  }
}

std::string Short(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.4g", v);
  return buffer;
}

bool ParseNumber(const std::string& text, double* value) {
  char* end = nullptr;
  *value = std::strtod(text.c_str(), &end);
  return !text.empty() && end == text.c_str() + text.size() && std::isfinite(*value);
}

}  // namespace

absl::StatusOr<Rule> ParseRule(std::string_view text) {
  Rule rule;
  rule.text = std::string(text);
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        StrCat("policy rule '", std::string(text.substr(0, 200)), "': ", why));
  };
  // Operators may stand without spaces: split them off.
  std::string spaced;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '>' || c == '<') {
      spaced += ' ';
      spaced += c;
      if (i + 1 < text.size() && text[i + 1] == '=') spaced += text[++i];
      spaced += ' ';
    } else if ((c == '+' || c == '-') && spaced.ends_with("champion")) {
      spaced += ' ';
      spaced += c;
      spaced += ' ';
    } else {
      spaced += c;
    }
  }
  std::vector<std::string> words;
  for (size_t i = 0; i < spaced.size();) {
    while (i < spaced.size() && std::isspace(static_cast<unsigned char>(spaced[i]))) ++i;
    size_t j = i;
    while (j < spaced.size() && !std::isspace(static_cast<unsigned char>(spaced[j]))) ++j;
    if (j > i) words.push_back(spaced.substr(i, j - i));
    i = j;
  }
  size_t w = 0;
  if (w < words.size() && words[w] == "slice") {
    rule.per_slice = true;
    ++w;
  }
  if (w >= words.size()) return bad("expected [slice] METRIC OP VALUE");
  rule.metric = ToLower(words[w++]);
  if (rule.metric == "auc") rule.metric = "roc_auc";
  if (rule.metric == "f1") rule.metric = "macro_f1";
  if (!Figures().contains(rule.metric) && !IsFairness(rule.metric)) {
    std::string known;
    for (const auto& [name, getter] : Figures()) known += (known.empty() ? "" : ", ") + name;
    return bad(StrCat("unknown metric ", rule.metric, " (known: ", known,
                      ", demographic_parity_difference, demographic_parity_ratio, "
                      "equalized_odds_difference, equalized_odds_ratio)"));
  }
  if (rule.per_slice && IsFairness(rule.metric)) {
    return bad("fairness is across groups: it has no per-slice value");
  }
  if (w >= words.size()) return bad("expected an operator: >=, >, <= or <");
  const std::string& op = words[w++];
  if (op == ">=") {
    rule.op = Rule::Op::kGe;
  } else if (op == ">") {
    rule.op = Rule::Op::kGt;
  } else if (op == "<=") {
    rule.op = Rule::Op::kLe;
  } else if (op == "<") {
    rule.op = Rule::Op::kLt;
  } else {
    return bad("expected an operator: >=, >, <= or <, not " + op);
  }
  if (w >= words.size()) return bad("expected a number or champion");
  if (words[w] == "champion") {
    rule.relative = true;
    ++w;
    if (w < words.size() && (words[w] == "+" || words[w] == "-")) {
      const bool minus = words[w++] == "-";
      if (w >= words.size() || !ParseNumber(words[w], &rule.value)) {
        return bad("expected a number after champion " + std::string(minus ? "-" : "+"));
      }
      if (minus) rule.value = -rule.value;
      ++w;
    }
  } else if (!ParseNumber(words[w++], &rule.value)) {
    return bad("expected a number or champion, not " + words[w - 1]);
  }
  if (w < words.size() && words[w] == "min_rows") {
    if (!rule.per_slice) return bad("min_rows is for slice rules");
    char* end = nullptr;
    if (++w >= words.size() || (rule.min_rows = std::strtoull(words[w].c_str(), &end, 10), *end)) {
      return bad("expected a row count after min_rows");
    }
    ++w;
  }
  if (w < words.size()) return bad("unexpected " + words[w]);
  return rule;
}

std::optional<double> MetricValue(const v1::Evaluation& evaluation, const v1::ModelMetrics& metrics,
                                  const std::string& metric) {
  if (IsFairness(metric)) {
    const v1::Fairness& f = evaluation.fairness();
    if (f.feature().empty()) return std::nullopt;
    if (metric == "demographic_parity_difference") return f.demographic_parity_difference();
    if (metric == "demographic_parity_ratio") return f.demographic_parity_ratio();
    if (metric == "equalized_odds_difference") return f.equalized_odds_difference();
    return f.equalized_odds_ratio();
  }
  auto it = Figures().find(metric);
  if (it == Figures().end() || !Defined(metrics, metric)) return std::nullopt;
  return it->second(metrics);
}

v1::Verdict Judge(const std::vector<Rule>& rules, const v1::Evaluation& challenger,
                  const v1::Evaluation* champion, int64_t champion_version) {
  v1::Verdict verdict;
  verdict.set_champion_version(champion_version);
  if (champion != nullptr) verdict.set_champion_evaluation(champion->id());
  // One check: `what` names where the value comes from ("" overall, "slice city=b (n=150): ").
  auto check = [&](const Rule& rule, const std::string& what, std::optional<double> value,
                   std::optional<double> champion_value, bool* failed) {
    std::string bound_text;
    double bound = rule.value;
    if (rule.relative) {
      if (champion_version == 0) return;  // nothing to beat
      if (!champion_value.has_value()) {
        verdict.add_failed(StrCat(what, rule.metric, ": the champion (version ",
                                  std::to_string(champion_version),
                                  ") has no value on this dataset (", rule.text, ")"));
        *failed = true;
        return;
      }
      bound = *champion_value + rule.value;
      bound_text = StrCat(" (champion ", Short(*champion_value), ")");
    }
    if (!value.has_value()) {
      verdict.add_failed(StrCat(what, rule.metric, " is undefined (", rule.text, ")"));
      *failed = true;
      return;
    }
    if (!Holds(rule.op, *value, bound)) {
      verdict.add_failed(StrCat(what, rule.metric, " ", Short(*value), " ", Negated(rule.op), " ",
                                Short(bound), bound_text, " (", rule.text, ")"));
      *failed = true;
    }
  };
  for (const Rule& rule : rules) {
    verdict.add_policy(rule.text);
    if (rule.relative && champion_version > 0 && champion == nullptr) {
      verdict.add_failed(StrCat("no evaluation of the champion (version ",
                                std::to_string(champion_version),
                                ") on this dataset to compare with (", rule.text, ")"));
      continue;
    }
    bool failed = false;
    if (!rule.per_slice) {
      std::optional<double> champion_value;
      if (champion != nullptr) {
        champion_value = MetricValue(*champion, champion->overall(), rule.metric);
      }
      check(rule, "", MetricValue(challenger, challenger.overall(), rule.metric), champion_value,
            &failed);
    } else {
      for (const v1::SliceMetrics& slice : challenger.slices()) {
        if (slice.metrics().count() < rule.min_rows) continue;
        std::optional<double> champion_value;
        if (champion != nullptr) {
          for (const v1::SliceMetrics& theirs : champion->slices()) {
            if (theirs.feature() == slice.feature() && theirs.value() == slice.value()) {
              champion_value = MetricValue(*champion, theirs.metrics(), rule.metric);
            }
          }
          if (!champion_value.has_value() && rule.relative) continue;  // no such slice there
        }
        check(rule,
              StrCat("slice ", slice.feature(), "=", slice.value(),
                     " (n=", std::to_string(slice.metrics().count()), "): "),
              MetricValue(challenger, slice.metrics(), rule.metric), champion_value, &failed);
      }
    }
    if (!failed) verdict.add_passed(rule.text);
  }
  verdict.set_blessed(verdict.failed_size() == 0);
  return verdict;
}

}  // namespace mlops::monitoring
