// The drift statistics against values computed independently. Unless a comment says otherwise the
// expected numbers come from SciPy 1.10.1 (Debian 12 python3-scipy), run once:
//   scipy.special.kolmogorov, scipy.stats.chi2.sf, scipy.special.gammaincc,
//   scipy.spatial.distance.jensenshannon(p, q, base=2), scipy.stats.chisquare,
//   scipy.stats.ks_2samp (the statistic) and kolmogorov(D * sqrt(n m / (n + m))) for its
//   asymptotic p-value (R's ks.test(exact = FALSE) computes the same).
#include "services/monitoring/stats.h"

#include <cmath>
#include <limits>

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

TEST(StatsTest, ChiSquaredTestMatchesScipyChisquare) {
  ChiSquared result = ChiSquaredTest({0.2, 0.1, 0.2, 0.2, 0.2, 0.1}, {30, 14, 34, 45, 57, 20});
  EXPECT_NEAR(result.statistic, 13.05, 1e-9);
  EXPECT_EQ(result.dof, 5);
  EXPECT_NEAR(result.p_value, 0.022914692327237363, 1e-12);
  // Nothing observed, or one bin: no evidence either way.
  EXPECT_EQ(ChiSquaredTest({0.5, 0.5}, {0, 0}).p_value, 1);
  EXPECT_EQ(ChiSquaredTest({1.0}, {10}).p_value, 1);
  // An unseen category (reference proportion 0) is smoothed, not a division by zero.
  ChiSquared unseen = ChiSquaredTest({0.5, 0.5, 0.0}, {10, 10, 5});
  EXPECT_TRUE(std::isfinite(unseen.statistic));
  EXPECT_LT(unseen.p_value, 1e-6);
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
}

TEST(StatsTest, KsPValueIsTheAsymptoticOne) {
  // ks_2samp of the two samples in profile_test.cc: D = 0.28 with n = 25, m = 24.
  EXPECT_NEAR(KsPValue(0.28, 25, 24), 0.2922900370409981, 1e-12);
  EXPECT_EQ(KsPValue(0.5, 0, 10), 1);
  EXPECT_EQ(KsPValue(0.5, 10, 0), 1);
}

}  // namespace
}  // namespace mlops::monitoring
