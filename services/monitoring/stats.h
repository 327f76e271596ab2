// The drift statistics, as pure functions over distributions: Population Stability Index,
// Jensen-Shannon distance, Pearson's chi-squared test and the two-sample Kolmogorov-Smirnov test,
// with the special functions their p-values need (written here: no Debian package offers them to
// C++ short of a full numerics library).
//
// Distributions are given as proportions or counts over the same bins, in the same order. For
// PSI, empty bins (and only those) are set to kEpsilon (as Evidently and most PSI write-ups do) so
// that it stays finite when a bin is empty on one side.
#pragma once

#include <cstdint>
#include <vector>

namespace mlops::monitoring {

inline constexpr double kEpsilon = 1e-4;

// Counts -> proportions (all zero when the counts sum to zero).
std::vector<double> Proportions(const std::vector<double>& counts);

// PSI = sum over bins of (cur - ref) * ln(cur / ref), on proportions with empty bins (exactly 0)
// set to kEpsilon; a bin with a small proportion keeps it. 0 for identical distributions; > 0.2 is
// the customary "significant shift".
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
// Pearson's chi-squared test of homogeneity of two samples: are the reference counts and the
// current counts drawn from one distribution? (scipy.stats.chi2_contingency on the 2 x k table,
// with its default Yates correction when dof is 1.) Both are samples: a goodness-of-fit test that
// took the reference proportions as exact raised false alarms on same-distribution data (28-47%
// at alpha 0.05 where this gives about 5%). Bins empty in both samples are left out (no mass is
// invented for them); dof = bins left - 1; p_value 1 when either sample is empty or fewer than two
// bins are left.
ChiSquared ChiSquaredHomogeneity(const std::vector<double>& reference_counts,
                                 const std::vector<double>& current_counts);

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
