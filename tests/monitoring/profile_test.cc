// Profiles and windows: the KS statistic from the sketch against a brute-force two-sample KS (and
// SciPy's ks_2samp for a fixed pair of samples), deciles, PSI of a known shift, categorical
// features with unseen categories, and the edge cases: empty windows, constant features, NaN, a
// single sample.
#include "services/monitoring/profile.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>

#include "services/monitoring/stats.h"
#include "services/monitoring/table.h"
#include "tests/testing/testing.h"

namespace mlops::monitoring {
namespace {

// Two-sample KS statistic by definition: the largest gap between the empirical CDFs, checked at
// every value of either sample.
double BruteForceKs(std::vector<double> a, std::vector<double> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  std::vector<double> all = a;
  all.insert(all.end(), b.begin(), b.end());
  double d = 0;
  for (double x : all) {
    double fa = static_cast<double>(std::upper_bound(a.begin(), a.end(), x) - a.begin()) / a.size();
    double fb = static_cast<double>(std::upper_bound(b.begin(), b.end(), x) - b.begin()) / b.size();
    d = std::max(d, std::fabs(fa - fb));
  }
  return d;
}

const v1::TestResult* Find(const v1::FeatureDrift& drift, v1::DriftTest::Kind kind) {
  for (const auto& t : drift.tests()) {
    if (t.kind() == kind) return &t;
  }
  return nullptr;
}

v1::DriftTest Kind(v1::DriftTest::Kind kind) {
  v1::DriftTest test;
  test.set_kind(kind);
  return test;
}

TEST(ProfileTest, KsMatchesScipyOnSmallSamples) {
  // The samples scipy.stats.ks_2samp(a, b) gives D = 0.28 for (SciPy 1.10.1).
  std::vector<double> a = {0.61, 0.29, 0.06,  0.59,  -1.73, -0.74, 0.51, -0.56, 0.39,
                           1.64, 0.05, -0.06, 0.64,  -0.82, 0.37,  1.77, 1.09,  -1.28,
                           2.36, 1.31, 1.05,  -0.32, -0.4,  1.06,  -2.47};
  std::vector<double> b = {2.2,  1.66, 1.38,  0.2,   0.36, 0.0, 0.96, 1.56,  0.44, 1.5, -0.3, 0.66,
                           2.31, 3.29, -0.27, -0.37, 0.38, 0.7, 0.19, -0.24, 0.22, 0.8, 0.85, 1.21};
  v1::FeatureProfile profile = NumericProfile("x", a);
  EXPECT_EQ(profile.count(), 25u);
  EXPECT_EQ(profile.points_size(), 25);  // every distinct value: KS is exact
  FeatureWindow window(&profile);
  window.AddNumeric(b.data(), b.size());
  v1::FeatureDrift drift = window.Evaluate({Kind(v1::DriftTest::KS)});
  const v1::TestResult* ks = Find(drift, v1::DriftTest::KS);
  ASSERT_NE(ks, nullptr);
  EXPECT_NEAR(ks->statistic(), 0.28, 1e-12);
  EXPECT_NEAR(ks->p_value(), 0.2922900370409981, 1e-12);
  EXPECT_FALSE(ks->drifted());
}

TEST(ProfileTest, KsEqualsBruteForceWithTiesAndApproximatesItForLargeReferences) {
  std::mt19937_64 rng(7);
  // Integers 0..40 with many ties: every distinct value is a point, so the sketch is exact.
  std::binomial_distribution<int> small_ref(40, 0.5), small_cur(40, 0.55);
  for (int round = 0; round < 20; ++round) {
    std::vector<double> ref(500 + round * 37), cur(1 + round * 53);
    for (double& v : ref) v = small_ref(rng);
    for (double& v : cur) v = small_cur(rng);
    v1::FeatureProfile profile = NumericProfile("x", ref);
    FeatureWindow window(&profile);
    for (double v : cur) window.AddNumeric(v);
    double ks = Find(window.Evaluate({Kind(v1::DriftTest::KS)}), v1::DriftTest::KS)->statistic();
    EXPECT_NEAR(ks, BruteForceKs(ref, cur), 1e-12) << "round " << round;
  }
  // Continuous values, 800 in the reference (all of them points: exact), current ones anywhere,
  // including exactly on points and beyond both ends.
  std::normal_distribution<double> wide(0.2, 2);
  for (int round = 0; round < 10; ++round) {
    std::vector<double> ref(800), cur(3000);
    for (double& v : ref) v = std::normal_distribution<double>(0, 1)(rng);
    for (size_t k = 0; k < cur.size(); ++k) cur[k] = k % 7 == 0 ? ref[k % ref.size()] : wide(rng);
    v1::FeatureProfile profile = NumericProfile("x", ref);
    FeatureWindow window(&profile);
    window.AddNumeric(cur.data(), cur.size());
    double ks = Find(window.Evaluate({Kind(v1::DriftTest::KS)}), v1::DriftTest::KS)->statistic();
    EXPECT_NEAR(ks, BruteForceKs(ref, cur), 1e-12) << "round " << round;
  }
  // 200,000 continuous values: at most 1,001 points, so within 1/1000 of the exact statistic.
  std::normal_distribution<double> normal(0, 1), shifted(0.05, 1.1);
  std::vector<double> ref(200000), cur(50000);
  for (double& v : ref) v = normal(rng);
  for (double& v : cur) v = shifted(rng);
  v1::FeatureProfile profile = NumericProfile("x", ref);
  EXPECT_LE(profile.points_size(), kQuantiles + 1);
  FeatureWindow window(&profile);
  window.AddNumeric(cur.data(), cur.size());
  v1::FeatureDrift drift = window.Evaluate({});
  double exact = BruteForceKs(ref, cur);
  EXPECT_NEAR(Find(drift, v1::DriftTest::KS)->statistic(), exact, 1.0 / kQuantiles);
  EXPECT_TRUE(Find(drift, v1::DriftTest::KS)->drifted());  // a real shift, 50,000 samples
  EXPECT_TRUE(drift.drifted());
}

TEST(ProfileTest, DecilesAndPsiOfAKnownShift) {
  std::vector<double> ref(1000);
  for (int i = 0; i < 1000; ++i) ref[i] = i;
  v1::FeatureProfile profile = NumericProfile("x", ref);
  ASSERT_EQ(profile.bin_proportions_size(), kBins);
  for (double p : profile.bin_proportions()) EXPECT_NEAR(p, 0.1, 0.002);
  EXPECT_NEAR(profile.mean(), 499.5, 1e-9);
  EXPECT_EQ(profile.min(), 0);
  EXPECT_EQ(profile.max(), 999);
  // The same distribution: PSI 0. Everything above the old maximum: the last bin holds it all.
  FeatureWindow same(&profile), above(&profile);
  same.AddNumeric(ref.data(), ref.size());
  for (int i = 0; i < 100; ++i) above.AddNumeric(2000 + i);
  EXPECT_NEAR(Find(same.Evaluate({}), v1::DriftTest::PSI)->statistic(), 0, 1e-3);
  v1::FeatureDrift moved =
      above.Evaluate({Kind(v1::DriftTest::PSI), Kind(v1::DriftTest::JENSEN_SHANNON),
                      Kind(v1::DriftTest::CHI_SQUARED)});
  EXPECT_NEAR(moved.proportions(kBins - 1), 1.0, 1e-12);
  std::vector<double> reference(profile.bin_proportions().begin(), profile.bin_proportions().end());
  std::vector<double> current(kBins, 0);
  current[kBins - 1] = 100;
  EXPECT_NEAR(Find(moved, v1::DriftTest::PSI)->statistic(), Psi(reference, current), 1e-12);
  EXPECT_GT(Find(moved, v1::DriftTest::PSI)->statistic(), 1);
  EXPECT_GT(Find(moved, v1::DriftTest::JENSEN_SHANNON)->statistic(), 0.8);
  EXPECT_LT(Find(moved, v1::DriftTest::CHI_SQUARED)->p_value(), 1e-10);
  EXPECT_TRUE(moved.drifted());
  EXPECT_NEAR(moved.mean(), 2049.5, 1e-9);
}

TEST(ProfileTest, EdgeCasesEmptyConstantNanAndSingleSample) {
  std::vector<double> constant(100, 5.0);
  constant.push_back(std::numeric_limits<double>::quiet_NaN());
  v1::FeatureProfile profile = NumericProfile("c", constant);
  EXPECT_EQ(profile.count(), 100u);
  EXPECT_EQ(profile.nulls(), 1u);
  EXPECT_EQ(profile.std(), 0);
  EXPECT_EQ(profile.points_size(), 1);
  // Empty window: counted, no tests, no drift.
  FeatureWindow empty(&profile);
  v1::FeatureDrift none = empty.Evaluate({});
  EXPECT_EQ(none.tests_size(), 0);
  EXPECT_FALSE(none.drifted());
  // Same constant (and NaN, which is only a null): no drift.
  FeatureWindow same(&profile);
  for (int i = 0; i < 50; ++i) same.AddNumeric(5.0);
  same.AddNumeric(std::numeric_limits<double>::quiet_NaN());
  v1::FeatureDrift stable = same.Evaluate({});
  EXPECT_EQ(stable.count(), 50u);
  EXPECT_EQ(stable.nulls(), 1u);
  EXPECT_EQ(Find(stable, v1::DriftTest::KS)->statistic(), 0);
  EXPECT_NEAR(Find(stable, v1::DriftTest::PSI)->statistic(), 0, 1e-12);
  EXPECT_FALSE(stable.drifted());
  // A single different sample: KS 1 but a p-value that a single sample cannot push below 0.05.
  FeatureWindow single(&profile);
  single.AddNumeric(7.0);
  v1::FeatureDrift one = single.Evaluate({});
  EXPECT_EQ(Find(one, v1::DriftTest::KS)->statistic(), 1);
  EXPECT_NEAR(Find(one, v1::DriftTest::KS)->p_value(), KolmogorovSurvival(std::sqrt(100.0 / 101)),
              1e-12);
  EXPECT_FALSE(Find(one, v1::DriftTest::KS)->drifted());
  // A profile of nothing but nulls compares nothing.
  v1::FeatureProfile nulls = NumericProfile("n", {std::nan(""), std::nan("")});
  FeatureWindow against_nulls(&nulls);
  against_nulls.AddNumeric(1.0);
  EXPECT_EQ(against_nulls.Evaluate({}).tests_size(), 0);
}

TEST(ProfileTest, CategoricalFeaturesCountUnseenValuesAsOther) {
  std::vector<std::string> ref;
  for (int i = 0; i < 600; ++i) ref.push_back("red");
  for (int i = 0; i < 300; ++i) ref.push_back("green");
  for (int i = 0; i < 100; ++i) ref.push_back("blue");
  ref.push_back("");
  v1::FeatureProfile profile = CategoricalProfile("colour", ref, /*max_categories=*/2);
  ASSERT_EQ(profile.categories_size(), 2);
  EXPECT_EQ(profile.categories(0), "red");
  EXPECT_EQ(profile.nulls(), 1u);
  ASSERT_EQ(profile.category_proportions_size(), 3);
  EXPECT_NEAR(profile.category_proportions(2), 0.1, 1e-12);  // blue is "other"
  FeatureWindow same(&profile), unseen(&profile);
  for (int i = 0; i < 60; ++i) same.AddCategory("red");
  for (int i = 0; i < 30; ++i) same.AddCategory("green");
  for (int i = 0; i < 10; ++i) same.AddCategory("blue");
  v1::FeatureDrift stable =
      same.Evaluate({Kind(v1::DriftTest::CHI_SQUARED), Kind(v1::DriftTest::KS)});
  EXPECT_EQ(stable.tests_size(), 1);  // KS does not apply to categories
  EXPECT_NEAR(Find(stable, v1::DriftTest::CHI_SQUARED)->statistic(), 0, 1e-9);
  EXPECT_FALSE(stable.drifted());
  for (int i = 0; i < 50; ++i) unseen.AddCategory("purple");
  for (int i = 0; i < 50; ++i) unseen.AddCategory("red");
  v1::FeatureDrift moved = unseen.Evaluate({});
  EXPECT_NEAR(moved.proportions(2), 0.5, 1e-12);
  // A test of homogeneity of the reference counts (600, 300, 100) and these (50, 0, 50):
  // scipy.stats.chi2_contingency gives 138.20512820512818.
  EXPECT_NEAR(Find(moved, v1::DriftTest::CHI_SQUARED)->statistic(), 138.20512820512818, 1e-9);
  EXPECT_TRUE(moved.drifted());
}

TEST(ProfileTest, WindowsMergeAndSurviveASaveAndLoad) {
  std::vector<double> ref(1000);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0, 1);
  for (double& v : ref) v = normal(rng);
  v1::FeatureProfile profile = NumericProfile("x", ref);
  FeatureWindow a(&profile), b(&profile), all(&profile);
  for (int i = 0; i < 300; ++i) {
    double v = normal(rng) + 0.3;
    (i % 2 ? a : b).AddNumeric(v);
    all.AddNumeric(v);
  }
  a.Merge(b);
  std::vector<uint64_t> saved;
  a.Save(&saved);
  FeatureWindow restored(&profile);
  ASSERT_TRUE(restored.Load(saved));
  v1::FeatureDrift merged = restored.Evaluate({}), direct = all.Evaluate({});
  EXPECT_NEAR(merged.mean(), direct.mean(), 1e-12);  // summed in another order
  merged.clear_mean();
  direct.clear_mean();
  EXPECT_EQ(merged.DebugString(), direct.DebugString());
  EXPECT_FALSE(restored.Load({1, 2}));  // the wrong shape is refused
}

TEST(ProfileTest, NumericCodedCategoriesHaveOneFormOnEveryPath) {
  EXPECT_EQ(CanonicalCategory("1.0"), "1");
  EXPECT_EQ(CanonicalCategory("01"), "1");
  EXPECT_EQ(CanonicalCategory("1e1"), "10");
  EXPECT_EQ(CanonicalCategory("-0"), "0");
  EXPECT_EQ(CanonicalCategory("2.50"), "2.5");
  EXPECT_EQ(CanonicalCategory("1.0x"), "1.0x");
  EXPECT_EQ(CanonicalCategory("nan"), "nan");
  EXPECT_EQ(CanonicalCategory(" 1"), " 1");
  EXPECT_EQ(CanonicalCategory("red"), "red");
  // A profile built from "1.0"/"2.0" text and a window fed "1"/"2" (or the reverse) agree.
  std::vector<std::string> ref;
  for (int i = 0; i < 700; ++i) ref.push_back("1.0");
  for (int i = 0; i < 300; ++i) ref.push_back("2.0");
  v1::FeatureProfile profile = CategoricalProfile("code", ref, 10);
  ASSERT_EQ(profile.categories_size(), 2);
  EXPECT_EQ(profile.categories(0), "1");
  FeatureWindow window(&profile);
  for (int i = 0; i < 70; ++i) window.AddCategory(i % 2 == 0 ? "1" : "1.00");
  for (int i = 0; i < 30; ++i) window.AddCategory("2");
  v1::FeatureDrift drift = window.Evaluate({Kind(v1::DriftTest::PSI)});
  EXPECT_NEAR(drift.proportions(profile.categories_size()), 0, 1e-12);  // nothing is "other"
  EXPECT_NEAR(Find(drift, v1::DriftTest::PSI)->statistic(), 0, 1e-9);
  EXPECT_FALSE(drift.drifted());
}

TEST(ProfileTest, AConstantCategoryAgainstItselfIsNotDrift) {
  std::vector<std::string> sevens(50000, "7");
  v1::FeatureProfile profile = CategoricalProfile("code", sevens, 10);
  FeatureWindow window(&profile);
  for (const std::string& v : sevens) window.AddCategory(v);
  v1::FeatureDrift drift = window.Evaluate({});  // chi-squared and PSI
  EXPECT_FALSE(drift.drifted());
  EXPECT_EQ(Find(drift, v1::DriftTest::CHI_SQUARED)->p_value(), 1);
  EXPECT_NEAR(Find(drift, v1::DriftTest::PSI)->statistic(), 0, 1e-12);
}

TEST(TableTest, AOneColumnCsvKeepsEmptyCellsAsNulls) {
  // Rows: x (header), "" (quoted empty), an empty line, 1.5.
  auto table = Table::ParseCsv("x\n\"\"\n\n1.5\n", {});
  ASSERT_OK(table.status());
  EXPECT_EQ((*table)->rows(), 3u);
  const Column* x = (*table)->Find("x");
  ASSERT_NE(x, nullptr);
  ASSERT_TRUE(x->numeric);
  EXPECT_TRUE(std::isnan(x->values[0]));
  EXPECT_TRUE(std::isnan(x->values[1]));
  EXPECT_EQ(x->values[2], 1.5);
  // With several columns a blank line is still skipped.
  auto two = Table::ParseCsv("a,b\n1,2\n\n3,4\n", {});
  ASSERT_OK(two.status());
  EXPECT_EQ((*two)->rows(), 2u);
}

TEST(TableTest, MlcolFilesRoundTripAndHostileHeadersAreRefusedWithoutSizingAnything) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/t.mlcol";
  std::vector<double> xs = {1.0, 2.5, std::nan("")};
  Column x;
  x.name = "x";
  x.values = xs.data();
  Column label;
  label.name = "label";
  label.numeric = false;
  label.strings = {"cat", "dog", ""};
  ASSERT_OK(WriteColumnar(path, {x, label}, 3));
  auto table = Table::ReadFile(path);
  ASSERT_OK(table.status());
  EXPECT_EQ((*table)->rows(), 3u);
  ASSERT_NE((*table)->Find("label"), nullptr);
  EXPECT_EQ((*table)->Find("label")->strings[1], "dog");
  EXPECT_EQ((*table)->Find("x")->values[1], 2.5);

  // A header claiming 2^32-1 columns (or 2^64-1 rows) in a file of a few bytes: the fuzzer's
  // finding was 1.6 GB allocated for the column list before the file was checked.
  auto header = [](uint64_t rows, uint32_t columns) {
    std::string bytes("MLCOL\0\0\1", 8);
    bytes.append(reinterpret_cast<const char*>(&rows), 8);
    bytes.append(reinterpret_cast<const char*>(&columns), 4);
    bytes.append(4, '\0');
    return bytes;
  };
  std::string column_list("\1\0\0\0\1\0\0\0x", 9);
  for (const auto& [name, bytes] : std::vector<std::pair<std::string, std::string>>{
           {"columns", header(3, 0xffffffffu) + column_list},
           {"rows", header(~uint64_t{0}, 1) + column_list + std::string(7, '\0')},
           {"header", std::string("MLCOL\0\0\1\3", 9)}}) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    EXPECT_THAT(Table::ReadFile(path).status(),
                testing::StatusIs(absl::StatusCode::kInvalidArgument, "not a valid .mlcol file"))
        << name;
  }
}

}  // namespace
}  // namespace mlops::monitoring
