// The drift statistics, as pure functions over distributions: Population Stability Index,
// Jensen-Shannon distance, Pearson's chi-squared test and the two-sample Kolmogorov-Smirnov test,
// with the special functions their p-values need (written here: no Debian package offers them to
// C++ short of a full numerics library).
//
// Distributions are given as proportions or counts over the same bins, in the same order. Empty
// bins are smoothed with kEpsilon (as Evidently and most PSI write-ups do) so that PSI and the
// chi-squared statistic stay finite when a bin is empty on one side.
#pragma once

#include <cstdint>
#include <vector>

namespace mlops::monitoring {

inline constexpr double kEpsilon = 1e-4;

// Counts -> proportions (all zero when the counts sum to zero).
std::vector<double> Proportions(const std::vector<double>& counts);

// PSI = sum over bins of (cur - ref) * ln(cur / ref), on proportions with empty bins set to
// kEpsilon. 0 for identical distributions; > 0.2 is the customary "significant shift".
double Psi(const std::vector<double>& reference, const std::vector<double>& current);

// sqrt of the Jensen-Shannon divergence with base-2 logarithms: in [0, 1], 0 for identical
// distributions (scipy.spatial.distance.jensenshannon(p, q, base=2)). Inputs are normalised.
double JensenShannonDistance(const std::vector<double>& reference,
                             const std::vector<double>& current);

struct ChiSquared {
  double statistic = 0;
  int dof = 0;
  double p_value = 1;
};
// Pearson's goodness-of-fit test of observed counts against the reference proportions
// (scipy.stats.chisquare(observed, expected) with expected = reference * sum(observed)). Bins with
// a zero reference proportion get kEpsilon (renormalised). dof = bins - 1; p_value 1 with no
// observations or a single bin.
ChiSquared ChiSquaredTest(const std::vector<double>& reference_proportions,
                          const std::vector<double>& observed);

// The Kolmogorov distribution's survival function Q(x) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2)
// (scipy.special.kolmogorov).
double KolmogorovSurvival(double x);

// The asymptotic p-value of a two-sample KS statistic d with sample sizes n and m:
// Q(d * sqrt(n m / (n + m))), as R's ks.test(exact = FALSE). 1 when either sample is empty.
double KsPValue(double d, double n, double m);

// The regularized upper incomplete gamma function Q(a, x) = Gamma(a, x) / Gamma(a)
// (scipy.special.gammaincc), by series for x < a + 1 and Lentz's continued fraction otherwise.
double RegularizedGammaQ(double a, double x);

// P(X > x) for X ~ chi-squared with `dof` degrees of freedom (scipy.stats.chi2.sf).
double ChiSquaredSurvival(double x, double dof);

}  // namespace mlops::monitoring
