// The drift statistics against values computed independently. Unless a comment says otherwise the
// expected numbers come from SciPy 1.10.1 (Debian 12 python3-scipy), run once:
//   scipy.special.kolmogorov, scipy.stats.chi2.sf, scipy.special.gammaincc,
//   scipy.spatial.distance.jensenshannon(p, q, base=2), scipy.stats.chisquare,
//   scipy.stats.ks_2samp (the statistic) and kolmogorov(D * sqrt(n m / (n + m))) for its
//   asymptotic p-value (R's ks.test(exact = FALSE) computes the same).
#include "services/monitoring/stats.h"

#include <cmath>
#include <iostream>
#include <limits>
#include <random>

#include "tests/testing/testing.h"

namespace mlops::monitoring {
namespace {

TEST(StatsTest, KolmogorovSurvivalMatchesScipy) {
  EXPECT_NEAR(KolmogorovSurvival(0.1), 1.0, 1e-12);
  EXPECT_NEAR(KolmogorovSurvival(0.3), 0.9999906941986655, 1e-12);
  EXPECT_NEAR(KolmogorovSurvival(0.5), 0.9639452436648751, 1e-12);
  EXPECT_NEAR(KolmogorovSurvival(1.0), 0.26999967167735456, 1e-12);
  EXPECT_NEAR(KolmogorovSurvival(1.36), 0.049485876755377876, 1e-12);
  EXPECT_NEAR(KolmogorovSurvival(2.0), 0.0006709252557796953, 1e-14);
  EXPECT_EQ(KolmogorovSurvival(0), 1);
  EXPECT_EQ(KolmogorovSurvival(-1), 1);
}

TEST(StatsTest, ChiSquaredSurvivalAndGammaMatchScipy) {
  EXPECT_NEAR(ChiSquaredSurvival(3.84, 1), 0.05004352124870519, 1e-12);
  EXPECT_NEAR(ChiSquaredSurvival(10.0, 4), 0.04042768199451279, 1e-12);
  EXPECT_NEAR(ChiSquaredSurvival(0.5, 3), 0.9188914116546758, 1e-12);
  EXPECT_NEAR(ChiSquaredSurvival(50.0, 10), 2.669083424904495e-07, 1e-18);
  EXPECT_NEAR(ChiSquaredSurvival(1e-3, 2), 0.9995001249791693, 1e-12);
  EXPECT_NEAR(ChiSquaredSurvival(200.0, 150), 0.003973185970821635, 1e-12);
  EXPECT_NEAR(RegularizedGammaQ(2.5, 1.0), 0.8491450360846096, 1e-12);
  EXPECT_NEAR(RegularizedGammaQ(0.5, 30.0), 9.485737571073857e-15, 1e-24);
  EXPECT_EQ(ChiSquaredSurvival(0, 3), 1);
}

TEST(StatsTest, ChiSquaredHomogeneityMatchesScipyChi2Contingency) {
  // scipy.stats.chi2_contingency (SciPy 1.10.1) of [[reference], [current]]:
  ChiSquared six = ChiSquaredHomogeneity({30, 14, 34, 45, 57, 20}, {25, 20, 30, 40, 60, 25});
  EXPECT_NEAR(six.statistic, 2.689965263494675, 1e-9);
  EXPECT_EQ(six.dof, 5);
  EXPECT_NEAR(six.p_value, 0.7476527729450477, 1e-9);
  ChiSquared shifted = ChiSquaredHomogeneity({60, 30, 10}, {50, 0, 50});
  EXPECT_NEAR(shifted.statistic, 57.57575757575758, 1e-9);
  EXPECT_NEAR(shifted.p_value, 3.1447280664105496e-13, 1e-20);
  // Two bins: Yates' correction, as chi2_contingency applies by default.
  ChiSquared two = ChiSquaredHomogeneity({700, 300}, {65, 35});
  EXPECT_EQ(two.dof, 1);
  EXPECT_NEAR(two.statistic, 0.8499756121354018, 1e-9);
  EXPECT_NEAR(two.p_value, 0.3565592370665731, 1e-9);
  EXPECT_NEAR(ChiSquaredHomogeneity({5000, 5000}, {2600, 2400}).p_value, 0.021889241089732666,
              1e-9);
  // Nothing observed, or one bin with mass: no evidence either way.
  EXPECT_EQ(ChiSquaredHomogeneity({5, 5}, {0, 0}).p_value, 1);
  EXPECT_EQ(ChiSquaredHomogeneity({10}, {10}).p_value, 1);
  // Bins empty on both sides add nothing (the constant 7 against itself is not drift).
  ChiSquared constant = ChiSquaredHomogeneity({50000, 0, 0}, {50000, 0, 0});
  EXPECT_EQ(constant.statistic, 0);
  EXPECT_EQ(constant.p_value, 1);
  EXPECT_EQ(ChiSquaredHomogeneity({600, 300, 100, 0}, {60, 30, 10, 0}).statistic, 0);
  // A category only the current sample has is finite and significant.
  ChiSquared unseen = ChiSquaredHomogeneity({50, 50, 0}, {10, 10, 5});
  EXPECT_TRUE(std::isfinite(unseen.statistic));
  EXPECT_LT(unseen.p_value, 1e-3);
}

TEST(StatsTest, ChiSquaredFalseAlarmsStayNearAlphaAndARealShiftIsFound) {
  // Many pairs of samples from one categorical distribution (10,000 reference rows, 5,000
  // current): at alpha 0.05 about 5% are flagged. Then a shift of 3% of the mass: nearly all.
  std::mt19937_64 rng(20261201);
  std::discrete_distribution<int> same({40, 25, 15, 10, 6, 4});
  std::discrete_distribution<int> moved({37, 25, 15, 10, 6, 7});
  auto sample = [&](std::discrete_distribution<int>& d, int n) {
    std::vector<double> counts(6, 0);
    for (int i = 0; i < n; ++i) counts[static_cast<size_t>(d(rng))] += 1;
    return counts;
  };
  const int kTrials = 400;
  int false_alarms = 0, found = 0;
  for (int t = 0; t < kTrials; ++t) {
    std::vector<double> reference = sample(same, 10000);
    if (ChiSquaredHomogeneity(reference, sample(same, 5000)).p_value < 0.05) ++false_alarms;
    if (ChiSquaredHomogeneity(reference, sample(moved, 5000)).p_value < 0.05) ++found;
  }
  double rate = static_cast<double>(false_alarms) / kTrials;
  std::cout << "chi-squared at alpha 0.05: " << false_alarms << " of " << kTrials
            << " same-distribution pairs flagged, " << found << " of " << kTrials
            << " shifted ones\n";
  EXPECT_LE(rate, 0.06) << false_alarms << " of " << kTrials;
  EXPECT_GE(rate, 0.02) << false_alarms << " of " << kTrials;  // a test that never fires is no test
  EXPECT_GE(static_cast<double>(found) / kTrials, 0.9) << found << " of " << kTrials;
}

TEST(StatsTest, JensenShannonDistanceMatchesScipy) {
  EXPECT_NEAR(JensenShannonDistance({0.1, 0.4, 0.5}, {0.3, 0.3, 0.4}), 0.21663402449519675, 1e-12);
  EXPECT_NEAR(JensenShannonDistance({1, 0}, {0, 1}), 1.0, 1e-12);
  EXPECT_NEAR(JensenShannonDistance({2, 3, 5}, {20, 30, 50}), 0.0, 1e-12);  // counts normalise
}

TEST(StatsTest, PsiOfAWorkedExample) {
  // Quartiles shifting from 25/25/25/25 % to 10/20/30/40 %: by hand,
  // (0.1-0.25)ln(0.4) + (0.2-0.25)ln(0.8) + (0.3-0.25)ln(1.2) + (0.4-0.25)ln(1.6) = 0.228217...
  EXPECT_NEAR(Psi({0.25, 0.25, 0.25, 0.25}, {0.1, 0.2, 0.3, 0.4}), 0.22821740957339182, 1e-12);
  EXPECT_NEAR(Psi({5, 5}, {50, 50}), 0.0, 1e-15);
  // An empty bin on one side is smoothed to 1e-4: finite and large.
  double psi = Psi({0.5, 0.5}, {1.0, 0.0});
  EXPECT_TRUE(std::isfinite(psi));
  EXPECT_GT(psi, 2);
  // Only empty bins are smoothed: a bin at 5e-5 keeps its value (the documented formula).
  double small = Psi({0.5, 0.49995, 0.00005}, {0.5, 0.4, 0.1});
  double by_hand =
      (0.4 - 0.49995) * std::log(0.4 / 0.49995) + (0.1 - 0.00005) * std::log(0.1 / 0.00005);
  EXPECT_NEAR(small, by_hand, 1e-12);
}

TEST(StatsTest, KsPValueIsTheAsymptoticOne) {
  // ks_2samp of the two samples in profile_test.cc: D = 0.28 with n = 25, m = 24.
  EXPECT_NEAR(KsPValue(0.28, 25, 24), 0.2922900370409981, 1e-12);
  EXPECT_EQ(KsPValue(0.5, 0, 10), 1);
  EXPECT_EQ(KsPValue(0.5, 10, 0), 1);
}

}  // namespace
}  // namespace mlops::monitoring
