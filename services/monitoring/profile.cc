#include "services/monitoring/profile.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>

#include "services/common/strings.h"
#include "services/monitoring/stats.h"

namespace mlops::monitoring {

double Threshold(const v1::DriftTest& test) {
  if (test.threshold() > 0) return test.threshold();
  switch (test.kind()) {
    case v1::DriftTest::PSI:
      return 0.2;
    case v1::DriftTest::JENSEN_SHANNON:
      return 0.1;
    default:
      return 0.05;
  }
}

v1::FeatureProfile NumericProfile(const std::string& name, std::vector<double> values) {
  v1::FeatureProfile profile;
  profile.set_name(name);
  profile.set_kind(v1::NUMERIC);
  size_t before = values.size();
  values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return std::isnan(v); }),
               values.end());
  profile.set_nulls(before - values.size());
  profile.set_count(values.size());
  if (values.empty()) return profile;
  std::sort(values.begin(), values.end());
  const double n = static_cast<double>(values.size());
  double sum = 0, sum_sq = 0;
  for (double v : values) sum += v;
  double mean = sum / n;
  for (double v : values) sum_sq += (v - mean) * (v - mean);
  profile.set_mean(mean);
  profile.set_std(std::sqrt(sum_sq / n));
  profile.set_min(values.front());
  profile.set_max(values.back());
  // Quantile points (nearest rank), distinct, with the reference CDF at and below each.
  std::vector<size_t> point_rank;  // the quantile each distinct point was first taken for
  for (int i = 0; i <= kQuantiles; ++i) {
    size_t rank = static_cast<size_t>(std::llround(static_cast<double>(i) / kQuantiles * (n - 1)));
    double point = values[rank];
    if (profile.points_size() > 0 && profile.points(profile.points_size() - 1) == point) continue;
    profile.add_points(point);
    point_rank.push_back(static_cast<size_t>(i));
    auto lo = std::lower_bound(values.begin(), values.end(), point);
    auto hi = std::upper_bound(values.begin(), values.end(), point);
    profile.add_cdf_lt(static_cast<double>(lo - values.begin()) / n);
    profile.add_cdf_le(static_cast<double>(hi - values.begin()) / n);
  }
  // Decile bins: the upper edge of bin b is the point taken for quantile (b+1)/10 (or the nearest
  // one below it after deduplication); equal edges collapse.
  double previous = 0;
  for (int b = 1; b < kBins; ++b) {
    size_t target = static_cast<size_t>(b * kQuantiles / kBins);
    int edge = 0;
    for (size_t p = 0; p < point_rank.size() && point_rank[p] <= target; ++p) {
      edge = static_cast<int>(p);
    }
    if (profile.bin_edges_size() > 0 && profile.bin_edges(profile.bin_edges_size() - 1) == edge) {
      continue;
    }
    profile.add_bin_edges(edge);
    profile.add_bin_proportions(profile.cdf_le(edge) - previous);
    previous = profile.cdf_le(edge);
  }
  profile.add_bin_proportions(1 - previous);
  return profile;
}

namespace {
bool LooksNumeric(std::string_view value) {
  if (value.empty()) return false;
  char c = value[0];
  return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.';
}
}  // namespace

std::string CanonicalCategory(std::string_view value) {
  if (!LooksNumeric(value)) return std::string(value);
  std::string text(value);
  char* end = nullptr;
  double number = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(number)) return text;
  return FormatDouble(number == 0 ? 0.0 : number);  // -0 and 0 are one category
}

v1::FeatureProfile CategoricalProfile(const std::string& name,
                                      const std::vector<std::string>& values, int max_categories) {
  v1::FeatureProfile profile;
  profile.set_name(name);
  profile.set_kind(v1::CATEGORICAL);
  std::map<std::string, uint64_t> counts;
  uint64_t nulls = 0;
  for (const std::string& v : values) {
    if (v.empty()) {
      ++nulls;
    } else {
      ++counts[CanonicalCategory(v)];
    }
  }
  profile.set_nulls(nulls);
  uint64_t count = values.size() - nulls;
  profile.set_count(count);
  std::vector<std::pair<std::string, uint64_t>> sorted(counts.begin(), counts.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  if (max_categories <= 0) max_categories = 100;
  uint64_t kept = 0;
  for (size_t i = 0; i < sorted.size() && i < static_cast<size_t>(max_categories); ++i) {
    profile.add_categories(sorted[i].first);
    profile.add_category_proportions(count == 0 ? 0
                                                : static_cast<double>(sorted[i].second) / count);
    kept += sorted[i].second;
  }
  profile.add_category_proportions(count == 0 ? 0 : static_cast<double>(count - kept) / count);
  return profile;
}

FeatureWindow::FeatureWindow(const v1::FeatureProfile* profile)
    : profile_(profile), numeric_(profile->kind() == v1::NUMERIC) {
  if (numeric_) {
    const size_t size = static_cast<size_t>(profile->points_size());
    buckets_.assign(2 * size + 1, 0);
    if (size >= 2 && profile->points(0) < profile->points(static_cast<int>(size) - 1)) {
      lo_ = profile->points(0);
      hi_ = profile->points(static_cast<int>(size) - 1);
      const size_t cells = 4 * size;
      cells_per_unit_ = static_cast<double>(cells) / (hi_ - lo_);
      cell_start_.resize(cells + 1);
      size_t i = 0;
      for (size_t c = 0; c <= cells; ++c) {
        double start = lo_ + static_cast<double>(c) / cells_per_unit_;
        while (i < size && profile->points(static_cast<int>(i)) < start) ++i;
        cell_start_[c] = static_cast<uint32_t>(i);
      }
    }
  } else {
    for (int i = 0; i < profile->categories_size(); ++i) index_[profile->categories(i)] = i;
    categories_.assign(static_cast<size_t>(profile->categories_size()) + 1, 0);
  }
}

void FeatureWindow::AddNumeric(double value) { AddNumeric(&value, 1); }

void FeatureWindow::AddNumeric(const double* values, size_t n, size_t stride) {
  const double* points = profile_->points().data();
  const size_t size = static_cast<size_t>(profile_->points_size());
  uint64_t* buckets = buckets_.data();
  uint64_t nulls = 0;
  double sum = 0;
  for (size_t k = 0; k < n; ++k) {
    double v = values[k * stride];
    if (std::isnan(v)) {
      ++nulls;
      continue;
    }
    sum += v;
    // The first point >= v: a guess from the cell table, corrected by short scans (which also
    // make it exact whatever rounding put v in a neighbouring cell).
    size_t i;
    if (!cell_start_.empty()) {
      if (v <= lo_) {
        i = 0;
      } else if (v > hi_) {
        i = size;
      } else {
        size_t cell = static_cast<size_t>((v - lo_) * cells_per_unit_);
        i = cell_start_[std::min(cell, cell_start_.size() - 1)];
        while (i < size && points[i] < v) ++i;
        while (i > 0 && points[i - 1] >= v) --i;
      }
    } else {
      i = static_cast<size_t>(std::lower_bound(points, points + size, v) - points);
    }
    ++buckets[2 * i + (i < size && points[i] == v ? 1 : 0)];
  }
  nulls_ += nulls;
  count_ += n - nulls;
  sum_ += sum;
}

void FeatureWindow::AddCategory(std::string_view value) {
  if (value.empty()) {
    ++nulls_;
    return;
  }
  ++count_;
  auto it = index_.find(absl::string_view(value.data(), value.size()));
  if (it == index_.end() && LooksNumeric(value)) {
    // "1.0" and "1" are one category on every path (profiles store the canonical form).
    std::string canonical = CanonicalCategory(value);
    it = index_.find(absl::string_view(canonical.data(), canonical.size()));
  }
  ++categories_[it == index_.end() ? categories_.size() - 1 : static_cast<size_t>(it->second)];
}

void FeatureWindow::Merge(const FeatureWindow& other) {
  for (size_t i = 0; i < buckets_.size() && i < other.buckets_.size(); ++i) {
    buckets_[i] += other.buckets_[i];
  }
  for (size_t i = 0; i < categories_.size() && i < other.categories_.size(); ++i) {
    categories_[i] += other.categories_[i];
  }
  count_ += other.count_;
  nulls_ += other.nulls_;
  sum_ += other.sum_;
}

void FeatureWindow::Clear() {
  std::fill(buckets_.begin(), buckets_.end(), 0);
  std::fill(categories_.begin(), categories_.end(), 0);
  count_ = nulls_ = 0;
  sum_ = 0;
}

std::vector<double> FeatureWindow::Counts() const {
  if (!numeric_) return std::vector<double>(categories_.begin(), categories_.end());
  std::vector<double> bins;
  uint64_t cumulative = 0, previous = 0;
  size_t next = 0;
  for (int edge : profile_->bin_edges()) {
    for (; next <= 2 * static_cast<size_t>(edge) + 1; ++next) cumulative += buckets_[next];
    bins.push_back(static_cast<double>(cumulative - previous));
    previous = cumulative;
  }
  for (; next < buckets_.size(); ++next) cumulative += buckets_[next];
  bins.push_back(static_cast<double>(cumulative - previous));
  return bins;
}

std::vector<double> FeatureWindow::ReferenceProportions() const {
  if (numeric_) {
    return {profile_->bin_proportions().begin(), profile_->bin_proportions().end()};
  }
  return {profile_->category_proportions().begin(), profile_->category_proportions().end()};
}

double FeatureWindow::KsStatistic() const {
  // Both CDFs at and just below each point: the supremum of their difference is reached there when
  // the points hold every distinct reference value (see profile.h).
  const double m = static_cast<double>(count_);
  double d = 0;
  uint64_t below = 0;  // values < point i
  for (int i = 0; i < profile_->points_size(); ++i) {
    below += buckets_[2 * static_cast<size_t>(i)];
    uint64_t at_or_below = below + buckets_[2 * static_cast<size_t>(i) + 1];
    d = std::max(d, std::fabs(profile_->cdf_lt(i) - static_cast<double>(below) / m));
    d = std::max(d, std::fabs(profile_->cdf_le(i) - static_cast<double>(at_or_below) / m));
    below = at_or_below;
  }
  return d;
}

v1::FeatureDrift FeatureWindow::Evaluate(const std::vector<v1::DriftTest>& tests) const {
  v1::FeatureDrift drift;
  drift.set_name(profile_->name());
  drift.set_kind(profile_->kind());
  drift.set_count(count_);
  drift.set_nulls(nulls_);
  if (numeric_ && count_ > 0) drift.set_mean(sum_ / static_cast<double>(count_));
  std::vector<double> counts = Counts();
  for (double p : Proportions(counts)) drift.add_proportions(p);
  std::vector<v1::DriftTest> run = tests;
  if (run.empty()) {
    v1::DriftTest first, second;
    first.set_kind(numeric_ ? v1::DriftTest::KS : v1::DriftTest::CHI_SQUARED);
    second.set_kind(v1::DriftTest::PSI);
    run = {first, second};
  }
  if (count_ == 0 || profile_->count() == 0) return drift;  // nothing to compare
  std::vector<double> reference = ReferenceProportions();
  for (const v1::DriftTest& test : run) {
    v1::TestResult* result = drift.add_tests();
    result->set_kind(test.kind());
    result->set_threshold(Threshold(test));
    switch (test.kind()) {
      case v1::DriftTest::PSI:
        result->set_statistic(Psi(reference, counts));
        result->set_drifted(result->statistic() >= result->threshold());
        break;
      case v1::DriftTest::JENSEN_SHANNON:
        result->set_statistic(JensenShannonDistance(reference, counts));
        result->set_drifted(result->statistic() >= result->threshold());
        break;
      case v1::DriftTest::CHI_SQUARED: {
        std::vector<double> reference_counts = reference;
        for (double& c : reference_counts) c *= static_cast<double>(profile_->count());
        ChiSquared chi = ChiSquaredHomogeneity(reference_counts, counts);
        result->set_statistic(chi.statistic);
        result->set_p_value(chi.p_value);
        result->set_drifted(chi.p_value < result->threshold());
        break;
      }
      case v1::DriftTest::KS:
        if (!numeric_) {
          drift.mutable_tests()->RemoveLast();
          break;
        }
        result->set_statistic(KsStatistic());
        result->set_p_value(KsPValue(result->statistic(), static_cast<double>(profile_->count()),
                                     static_cast<double>(count_)));
        result->set_drifted(result->p_value() < result->threshold());
        break;
      default:
        drift.mutable_tests()->RemoveLast();
        break;
    }
  }
  for (const auto& result : drift.tests()) drift.set_drifted(drift.drifted() || result.drifted());
  return drift;
}

void FeatureWindow::Save(std::vector<uint64_t>* counts) const {
  counts->clear();
  counts->push_back(count_);
  counts->push_back(nulls_);
  uint64_t bits;
  static_assert(sizeof(bits) == sizeof(sum_));
  std::memcpy(&bits, &sum_, sizeof(bits));
  counts->push_back(bits);
  const auto& cells = numeric_ ? buckets_ : categories_;
  counts->insert(counts->end(), cells.begin(), cells.end());
}

bool FeatureWindow::Load(const std::vector<uint64_t>& counts) {
  auto& cells = numeric_ ? buckets_ : categories_;
  if (counts.size() != cells.size() + 3) return false;
  count_ = counts[0];
  nulls_ = counts[1];
  std::memcpy(&sum_, &counts[2], sizeof(sum_));
  std::copy(counts.begin() + 3, counts.end(), cells.begin());
  return true;
}

}  // namespace mlops::monitoring
