// Reference profiles of features and the windows of production values compared against them.
// A numeric feature's profile keeps up to 1,001 distinct quantile points of the reference with the
// reference CDF at and just below each: a window counts its values into the gaps and points of that
// grid (a binary search per value), which is all KS, PSI, chi-squared and JS need. Nothing of the
// reference is recomputed when a window is evaluated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "mlops/monitoring/v1/monitoring.pb.h"

namespace mlops::monitoring {

inline constexpr int kQuantiles = 1000;  // sketch points at i / kQuantiles
inline constexpr int kBins = 10;         // histogram bins (deciles)

// The profile of numeric `values` (NaN is null). Sorts a copy.
v1::FeatureProfile NumericProfile(const std::string& name, std::vector<double> values);
// The profile of categorical `values` ("" is null), keeping the `max_categories` most frequent.
v1::FeatureProfile CategoricalProfile(const std::string& name,
                                      const std::vector<std::string>& values, int max_categories);

// Production values of one feature, counted against its profile (which must outlive it).
class FeatureWindow {
 public:
  explicit FeatureWindow(const v1::FeatureProfile* profile);

  void AddNumeric(double value);  // NaN: null
  // Many values; as fast as the grid search allows.
  void AddNumeric(const double* values, size_t n, size_t stride = 1);
  void AddCategory(std::string_view value);  // "": null
  void Merge(const FeatureWindow& other);
  void Clear();

  uint64_t count() const { return count_; }
  uint64_t nulls() const { return nulls_; }
  const v1::FeatureProfile& profile() const { return *profile_; }

  // Runs `tests` (defaults when empty: KS and PSI for numeric, chi-squared and PSI for
  // categorical). KS on a categorical feature is skipped. A window with no values has no drift.
  v1::FeatureDrift Evaluate(const std::vector<v1::DriftTest>& tests) const;

  // The counts, to persist a window across restarts.
  void Save(std::vector<uint64_t>* counts) const;
  bool Load(const std::vector<uint64_t>& counts);

 private:
  // Proportions of the window over the profile's histogram bins / categories + other, and the
  // reference's.
  std::vector<double> Counts() const;
  std::vector<double> ReferenceProportions() const;
  double KsStatistic() const;

  const v1::FeatureProfile* profile_;
  bool numeric_;
  // NUMERIC: buckets[2i] counts values strictly between points i-1 and i, buckets[2i+1] values
  // equal to point i; the last bucket counts values above the last point.
  std::vector<uint64_t> buckets_;
  // A lookup table over [first point, last point] in equal-width cells: the first point at or
  // above each cell's start, so that finding a value's place is a multiply and a short scan.
  std::vector<uint32_t> cell_start_;
  double lo_ = 0, hi_ = 0, cells_per_unit_ = 0;
  // CATEGORICAL: category -> index; index categories_size() is "other".
  absl::flat_hash_map<std::string, int> index_;
  std::vector<uint64_t> categories_;
  uint64_t count_ = 0;
  uint64_t nulls_ = 0;
  double sum_ = 0;
};

// The one form of a category value on every path (profiles, datasets, streamed samples): a value
// that is a finite number in full ("1.0", "01", "1e0") becomes its shortest form ("1"); any other
// text is kept as it is.
std::string CanonicalCategory(std::string_view value);

// The test's threshold, or its default.
double Threshold(const v1::DriftTest& test);

}  // namespace mlops::monitoring
