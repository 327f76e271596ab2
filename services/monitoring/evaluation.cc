#include "services/monitoring/evaluation.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <numeric>
#include <set>

#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/monitoring/profile.h"

namespace mlops::monitoring {
namespace {

constexpr double kEpsilon = std::numeric_limits<double>::epsilon();  // numpy's float64 eps
constexpr char kMissing[] = "(missing)";
constexpr size_t kMaxValuesAsSlices = 10;  // more distinct numbers: quantile buckets

// A value as a label or a slice key: numbers in their shortest form ("1.0" is "1"), text as it
// is; "" for a missing value.
std::string KeyOf(const Column& column, uint64_t row) {
  if (column.numeric) {
    double v = column.values[row];
    return std::isnan(v) ? "" : FormatDouble(v == 0 ? 0.0 : v);
  }
  const std::string& text = column.strings[row];
  return text.empty() ? "" : CanonicalCategory(text);
}

bool AsNumber(const std::string& text, double* value) {
  char* end = nullptr;
  *value = std::strtod(text.c_str(), &end);
  return !text.empty() && end == text.c_str() + text.size();
}

// Numbers by value before text, text by its bytes.
bool LabelLess(const std::string& a, const std::string& b) {
  double x, y;
  bool an = AsNumber(a, &x), bn = AsNumber(b, &y);
  if (an && bn) return x < y;
  if (an != bn) return an;
  return a < b;
}

// Every row's value of one feature across the tables, as numbers when every table has them as
// numbers.
struct FeatureValues {
  std::string name;
  bool numeric = true;
  std::vector<double> numbers;
  std::vector<std::string> texts;
};

// What was read of the tables: one entry per evaluated row (rows without a label or a
// prediction are skipped).
struct Data {
  bool classification = true;
  std::vector<std::string> classes;  // sorted
  std::vector<int> y, yhat;          // class indexes
  std::vector<double> yv, yhatv;     // regression
  bool has_score = false;
  std::vector<double> score;
  int positive = -1;  // the positive class's index (binary), -1 when it is no label
  uint64_t skipped = 0;
};

// The slice key of every evaluated row for one feature, and the order of the keys.
struct SliceKeys {
  std::vector<std::string> keys;   // per row
  std::vector<std::string> order;  // distinct keys, in order
};

SliceKeys KeysOf(const FeatureValues& f, int buckets) {
  SliceKeys out;
  const size_t n = f.numeric ? f.numbers.size() : f.texts.size();
  out.keys.resize(n);
  if (!f.numeric) {
    std::set<std::string, decltype(&LabelLess)> order(&LabelLess);
    for (size_t i = 0; i < n; ++i) {
      out.keys[i] = f.texts[i].empty() ? kMissing : f.texts[i];
      order.insert(out.keys[i]);
    }
    out.order.assign(order.begin(), order.end());
    return out;
  }
  std::vector<double> present;
  for (double v : f.numbers) {
    if (!std::isnan(v)) present.push_back(v == 0 ? 0.0 : v);
  }
  std::sort(present.begin(), present.end());
  std::vector<double> distinct = present;
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  bool missing = present.size() < n;
  if (distinct.size() <= kMaxValuesAsSlices) {
    for (size_t i = 0; i < n; ++i) {
      double v = f.numbers[i];
      out.keys[i] = std::isnan(v) ? kMissing : FormatDouble(v == 0 ? 0.0 : v);
    }
    for (double v : distinct) out.order.push_back(FormatDouble(v));
  } else {
    // Quantile buckets [e_k, e_k+1), the last closed; edges by nearest rank, distinct.
    std::vector<double> edges;
    for (int k = 0; k <= buckets; ++k) {
      size_t rank = static_cast<size_t>(
          std::llround(static_cast<double>(k) / buckets * static_cast<double>(present.size() - 1)));
      double edge = present[rank];
      if (edges.empty() || edge > edges.back()) edges.push_back(edge);
    }
    std::vector<std::string> names;
    for (size_t k = 0; k + 1 < edges.size(); ++k) {
      names.push_back(StrCat("[", FormatDouble(edges[k]), ", ", FormatDouble(edges[k + 1]),
                             k + 2 == edges.size() ? "]" : ")"));
    }
    for (size_t i = 0; i < n; ++i) {
      double v = f.numbers[i];
      if (std::isnan(v)) {
        out.keys[i] = kMissing;
        continue;
      }
      size_t k =
          static_cast<size_t>(std::upper_bound(edges.begin(), edges.end(), v) - edges.begin());
      k = std::min(k == 0 ? 0 : k - 1, names.size() - 1);
      out.keys[i] = names[k];
    }
    out.order = names;
  }
  if (missing) out.order.push_back(kMissing);
  return out;
}

// scikit-learn's roc_auc_score for a binary label: the Mann-Whitney U statistic with ties
// counted half (the area under the ROC curve with tied scores as one step).
double RocAuc(const std::vector<std::pair<double, bool>>& scored, double positives,
              double negatives) {
  std::vector<std::pair<double, bool>> sorted = scored;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  double rank_sum = 0;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j < sorted.size() && sorted[j].first == sorted[i].first) ++j;
    const double average_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2;
    for (size_t k = i; k < j; ++k) {
      if (sorted[k].second) rank_sum += average_rank;
    }
    i = j;
  }
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

// scikit-learn's average_precision_score: sum over the distinct thresholds, highest first, of
// (recall_k - recall_k-1) * precision_k.
double AveragePrecision(const std::vector<std::pair<double, bool>>& scored, double positives) {
  std::vector<std::pair<double, bool>> sorted = scored;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  double tp = 0, fp = 0, previous_recall = 0, ap = 0;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    for (; j < sorted.size() && sorted[j].first == sorted[i].first; ++j) {
      (sorted[j].second ? tp : fp) += 1;
    }
    const double recall = tp / positives;
    ap += (recall - previous_recall) * (tp / (tp + fp));
    previous_recall = recall;
    i = j;
  }
  return ap;
}

v1::ModelMetrics Classification(const Data& d, const std::vector<uint32_t>& rows, int bins) {
  v1::ModelMetrics m;
  const size_t k = d.classes.size();
  m.set_count(rows.size());
  if (rows.empty()) return m;
  std::vector<uint64_t> confusion(k * k, 0);
  for (uint32_t r : rows) ++confusion[static_cast<size_t>(d.y[r]) * k + d.yhat[r]];
  // The labels scikit-learn would see in these rows: true or predicted.
  std::vector<size_t> present;
  std::vector<uint64_t> row_sum(k, 0), col_sum(k, 0);
  for (size_t a = 0; a < k; ++a) {
    for (size_t b = 0; b < k; ++b) {
      row_sum[a] += confusion[a * k + b];
      col_sum[b] += confusion[a * k + b];
    }
  }
  for (size_t c = 0; c < k; ++c) {
    if (row_sum[c] > 0 || col_sum[c] > 0) present.push_back(c);
  }
  uint64_t correct = 0;
  for (size_t c = 0; c < k; ++c) correct += confusion[c * k + c];
  const double n = static_cast<double>(rows.size());
  m.set_accuracy(static_cast<double>(correct) / n);
  double macro_p = 0, macro_r = 0, macro_f = 0, weighted_p = 0, weighted_r = 0, weighted_f = 0;
  for (size_t c : present) {
    const double tp = static_cast<double>(confusion[c * k + c]);
    const double precision = col_sum[c] > 0 ? tp / static_cast<double>(col_sum[c]) : 0;
    const double recall = row_sum[c] > 0 ? tp / static_cast<double>(row_sum[c]) : 0;
    const double f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
    v1::ClassMetrics* out = m.add_classes();
    out->set_label(Utf8Safe(d.classes[c]));
    out->set_precision(precision);
    out->set_recall(recall);
    out->set_f1(f1);
    out->set_support(row_sum[c]);
    macro_p += precision;
    macro_r += recall;
    macro_f += f1;
    const double w = static_cast<double>(row_sum[c]) / n;
    weighted_p += w * precision;
    weighted_r += w * recall;
    weighted_f += w * f1;
  }
  const double classes = static_cast<double>(present.size());
  m.set_macro_precision(macro_p / classes);
  m.set_macro_recall(macro_r / classes);
  m.set_macro_f1(macro_f / classes);
  m.set_weighted_precision(weighted_p);
  m.set_weighted_recall(weighted_r);
  m.set_weighted_f1(weighted_f);
  for (size_t a : present) {
    for (size_t b : present) m.add_confusion(confusion[a * k + b]);
  }
  if (!d.has_score) return m;

  // Binary scores: the probability of the positive class.
  std::vector<std::pair<double, bool>> scored;
  scored.reserve(rows.size());
  double positives = 0, log_loss = 0, brier = 0;
  for (uint32_t r : rows) {
    const bool positive = d.y[r] == d.positive;
    const double p = d.score[r];
    scored.emplace_back(p, positive);
    positives += positive;
    const double clipped = std::clamp(p, kEpsilon, 1 - kEpsilon);
    log_loss -= std::log(positive ? clipped : 1 - clipped);
    brier += (p - (positive ? 1.0 : 0.0)) * (p - (positive ? 1.0 : 0.0));
  }
  const double negatives = n - positives;
  if (positives > 0 && negatives > 0) m.set_roc_auc(RocAuc(scored, positives, negatives));
  if (positives > 0) m.set_pr_auc(AveragePrecision(scored, positives));
  m.set_log_loss(log_loss / n);
  m.set_brier(brier / n);
  // Equal-width bins as scikit-learn's calibration_curve(strategy="uniform"): edges i / bins
  // (numpy's linspace), a score on an inner edge in the lower bin.
  std::vector<double> inner;
  for (int i = 1; i < bins; ++i) inner.push_back(i * (1.0 / bins));
  std::vector<uint64_t> count(static_cast<size_t>(bins), 0);
  std::vector<double> score_sum(static_cast<size_t>(bins), 0), positive_sum(count.size(), 0);
  for (const auto& [p, positive] : scored) {
    const size_t b =
        static_cast<size_t>(std::lower_bound(inner.begin(), inner.end(), p) - inner.begin());
    ++count[b];
    score_sum[b] += p;
    positive_sum[b] += positive;
  }
  double ece = 0;
  for (size_t b = 0; b < count.size(); ++b) {
    if (count[b] == 0) continue;
    v1::CalibrationBin* bin = m.add_calibration();
    bin->set_lower(b == 0 ? 0 : inner[b - 1]);
    bin->set_upper(b + 1 == count.size() ? 1 : inner[b]);
    bin->set_count(count[b]);
    const double c = static_cast<double>(count[b]);
    bin->set_mean_score(score_sum[b] / c);
    bin->set_fraction_positive(positive_sum[b] / c);
    ece += c / n * std::abs(bin->mean_score() - bin->fraction_positive());
  }
  m.set_ece(ece);
  return m;
}

v1::ModelMetrics Regression(const Data& d, const std::vector<uint32_t>& rows) {
  v1::ModelMetrics m;
  m.set_count(rows.size());
  if (rows.empty()) return m;
  const double n = static_cast<double>(rows.size());
  double mean = 0;
  for (uint32_t r : rows) mean += d.yv[r];
  mean /= n;
  double squared = 0, absolute = 0, total = 0, percentage = 0;
  for (uint32_t r : rows) {
    const double error = d.yv[r] - d.yhatv[r];
    squared += error * error;
    absolute += std::abs(error);
    total += (d.yv[r] - mean) * (d.yv[r] - mean);
    percentage += std::abs(error) / std::max(std::abs(d.yv[r]), kEpsilon);
  }
  m.set_rmse(std::sqrt(squared / n));
  m.set_mae(absolute / n);
  // scikit-learn's force_finite: constant labels give 1 when predicted exactly, else 0.
  m.set_r2(total > 0 ? 1 - squared / total : (squared == 0 ? 1 : 0));
  m.set_mape(percentage / n);
  return m;
}

double Spread(const std::vector<double>& rates) {
  if (rates.empty()) return 0;
  auto [lo, hi] = std::minmax_element(rates.begin(), rates.end());
  return *hi - *lo;
}

double Ratio(const std::vector<double>& rates) {
  if (rates.empty()) return 1;
  auto [lo, hi] = std::minmax_element(rates.begin(), rates.end());
  return *hi == 0 ? 1 : *lo / *hi;
}

}  // namespace

absl::StatusOr<v1::Evaluation> EvaluatePredictions(const std::vector<const Table*>& tables,
                                                   const v1::EvaluateModelRequest& given) {
  v1::EvaluateModelRequest request = given;
  if (request.label_column().empty()) request.set_label_column("label");
  if (request.prediction_column().empty()) request.set_prediction_column("prediction");
  if (request.positive_class().empty()) request.set_positive_class("1");
  if (request.buckets() <= 0) request.set_buckets(4);
  if (request.calibration_bins() <= 0) request.set_calibration_bins(10);
  if (request.buckets() > 100 || request.calibration_bins() > 1000) {
    return absl::InvalidArgumentError("buckets: at most 100; calibration_bins: at most 1,000");
  }
  Data d;
  if (request.task() == "regression") {
    d.classification = false;
  } else if (request.task() != "classification") {
    return absl::InvalidArgumentError("task: classification or regression");
  }
  if (!d.classification &&
      (!request.score_column().empty() || !request.sensitive_feature().empty())) {
    return absl::InvalidArgumentError(
        "score_column and sensitive_feature are for binary classification");
  }
  if (tables.empty()) return absl::InvalidArgumentError("no table to evaluate");

  // The slice features and crosses, by name.
  std::vector<std::string> features(request.slice_by().begin(), request.slice_by().end());
  std::vector<std::pair<std::string, std::string>> crosses;
  for (const std::string& cross : request.cross()) {
    size_t comma = cross.find(',');
    if (comma == std::string::npos || comma == 0 || comma + 1 == cross.size()) {
      return absl::InvalidArgumentError("cross " + cross + ": two features, \"a,b\"");
    }
    crosses.emplace_back(cross.substr(0, comma), cross.substr(comma + 1));
    features.push_back(crosses.back().first);
    features.push_back(crosses.back().second);
  }
  if (!request.sensitive_feature().empty()) features.push_back(request.sensitive_feature());
  std::sort(features.begin(), features.end());
  features.erase(std::unique(features.begin(), features.end()), features.end());
  std::map<std::string, FeatureValues> values;
  for (const std::string& name : features) values[name].name = name;
  for (const Table* table : tables) {
    for (const std::string& name : features) {
      const Column* c = table->Find(name);
      if (c == nullptr) return absl::InvalidArgumentError("a table has no column " + name);
      values[name].numeric = values[name].numeric && c->numeric;
    }
  }

  // Labels and predictions (and scores), row by row.
  std::vector<std::string> label_text, prediction_text;
  std::vector<bool> kept;
  for (const Table* table : tables) {
    const Column* label = table->Find(request.label_column());
    const Column* prediction = table->Find(request.prediction_column());
    const Column* score =
        request.score_column().empty() ? nullptr : table->Find(request.score_column());
    for (const auto& [column, name] : {std::pair{label, request.label_column()},
                                       std::pair{prediction, request.prediction_column()}}) {
      if (column == nullptr) return absl::InvalidArgumentError("a table has no column " + name);
    }
    if (!request.score_column().empty() && (score == nullptr || !score->numeric)) {
      return absl::InvalidArgumentError("score_column " + request.score_column() +
                                        ": a numeric column every table has");
    }
    for (uint64_t i = 0; i < table->rows(); ++i) {
      std::string y = KeyOf(*label, i), yhat = KeyOf(*prediction, i);
      const bool ok =
          !y.empty() && !yhat.empty() && (score == nullptr || !std::isnan(score->values[i]));
      kept.push_back(ok);
      if (!ok) {
        ++d.skipped;
        continue;
      }
      if (score != nullptr) {
        double p = score->values[i];
        if (p < 0 || p > 1) {
          return absl::InvalidArgumentError(StrCat("score_column ", request.score_column(), ": ",
                                                   FormatDouble(p),
                                                   " is not a probability in [0, 1]"));
        }
        d.score.push_back(p);
      }
      label_text.push_back(std::move(y));
      prediction_text.push_back(std::move(yhat));
    }
    // The slice features of the same rows.
    for (const std::string& name : features) {
      FeatureValues& f = values[name];
      const Column* c = table->Find(name);
      for (uint64_t i = 0; i < table->rows(); ++i) {
        if (!kept[kept.size() - table->rows() + i]) continue;
        if (f.numeric) {
          f.numbers.push_back(c->values[i]);
        } else {
          f.texts.push_back(KeyOf(*c, i));
        }
      }
    }
  }
  const size_t n = label_text.size();
  if (n == 0) return absl::InvalidArgumentError("no row has both a label and a prediction");
  d.has_score = !request.score_column().empty();
  if (d.classification) {
    std::set<std::string, decltype(&LabelLess)> classes(&LabelLess);
    for (size_t i = 0; i < n; ++i) {
      classes.insert(label_text[i]);
      classes.insert(prediction_text[i]);
    }
    d.classes.assign(classes.begin(), classes.end());
    std::map<std::string, int> index;
    for (size_t c = 0; c < d.classes.size(); ++c) index[d.classes[c]] = static_cast<int>(c);
    for (size_t i = 0; i < n; ++i) {
      d.y.push_back(index[label_text[i]]);
      d.yhat.push_back(index[prediction_text[i]]);
    }
    const std::string positive = CanonicalCategory(request.positive_class());
    if (auto it = index.find(positive); it != index.end()) d.positive = it->second;
    const bool binary_use = d.has_score || !request.sensitive_feature().empty();
    if (binary_use && (d.classes.size() > 2 || (d.positive < 0 && d.classes.size() == 2))) {
      return absl::InvalidArgumentError(
          StrCat("scores and fairness need binary labels with positive_class ", positive,
                 " among them; found ", std::to_string(d.classes.size()), " labels"));
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      double y, yhat;
      if (!AsNumber(label_text[i], &y) || !AsNumber(prediction_text[i], &yhat)) {
        return absl::InvalidArgumentError("regression: labels and predictions are numbers; found " +
                                          label_text[i].substr(0, 60) + ", " +
                                          prediction_text[i].substr(0, 60));
      }
      d.yv.push_back(y);
      d.yhatv.push_back(yhat);
    }
  }

  auto metrics = [&](const std::vector<uint32_t>& rows) {
    return d.classification ? Classification(d, rows, request.calibration_bins())
                            : Regression(d, rows);
  };
  v1::Evaluation evaluation;
  evaluation.set_task(request.task());
  evaluation.set_skipped(d.skipped);
  std::vector<uint32_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  *evaluation.mutable_overall() = metrics(all);

  std::map<std::string, SliceKeys> keys;
  for (const std::string& name : features) keys[name] = KeysOf(values[name], request.buckets());
  auto add_slices = [&](const std::string& feature, const std::vector<std::string>& row_keys,
                        const std::vector<std::string>& order) {
    std::map<std::string, std::vector<uint32_t>> groups;
    for (size_t i = 0; i < n; ++i) groups[row_keys[i]].push_back(static_cast<uint32_t>(i));
    for (const std::string& value : order) {
      auto it = groups.find(value);
      if (it == groups.end()) continue;
      v1::SliceMetrics* slice = evaluation.add_slices();
      slice->set_feature(Utf8Safe(feature));
      slice->set_value(Utf8Safe(value));
      *slice->mutable_metrics() = metrics(it->second);
    }
  };
  for (const std::string& name : request.slice_by()) {
    add_slices(name, keys[name].keys, keys[name].order);
  }
  for (const auto& [a, b] : crosses) {
    std::vector<std::string> row_keys(n), order;
    for (size_t i = 0; i < n; ++i) {
      row_keys[i] = StrCat(a, "=", keys[a].keys[i], ", ", b, "=", keys[b].keys[i]);
    }
    for (const std::string& x : keys[a].order) {
      for (const std::string& y : keys[b].order)
        order.push_back(StrCat(a, "=", x, ", ", b, "=", y));
    }
    add_slices(a + "," + b, row_keys, order);
  }

  if (!request.sensitive_feature().empty()) {
    const SliceKeys& groups = keys[request.sensitive_feature()];
    v1::Fairness* fairness = evaluation.mutable_fairness();
    fairness->set_feature(request.sensitive_feature());
    std::vector<double> selection, tpr, fpr;
    for (const std::string& group : groups.order) {
      uint64_t count = 0, selected = 0, positives = 0, negatives = 0, tp = 0, fp = 0;
      for (size_t i = 0; i < n; ++i) {
        if (groups.keys[i] != group) continue;
        ++count;
        const bool predicted = d.yhat[i] == d.positive, actual = d.y[i] == d.positive;
        selected += predicted;
        positives += actual;
        negatives += !actual;
        tp += predicted && actual;
        fp += predicted && !actual;
      }
      if (count == 0) continue;
      v1::GroupRates* rates = fairness->add_groups();
      rates->set_group(Utf8Safe(group));
      rates->set_count(count);
      rates->set_selection_rate(static_cast<double>(selected) / static_cast<double>(count));
      selection.push_back(rates->selection_rate());
      if (positives > 0) {
        rates->set_true_positive_rate(static_cast<double>(tp) / static_cast<double>(positives));
        tpr.push_back(rates->true_positive_rate());
      }
      if (negatives > 0) {
        rates->set_false_positive_rate(static_cast<double>(fp) / static_cast<double>(negatives));
        fpr.push_back(rates->false_positive_rate());
      }
    }
    fairness->set_demographic_parity_difference(Spread(selection));
    fairness->set_demographic_parity_ratio(Ratio(selection));
    fairness->set_equalized_odds_difference(std::max(Spread(tpr), Spread(fpr)));
    fairness->set_equalized_odds_ratio(std::min(Ratio(tpr), Ratio(fpr)));
  }
  *evaluation.mutable_request() = request;
  return evaluation;
}

}  // namespace mlops::monitoring
