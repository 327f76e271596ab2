#include "services/monitoring/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace mlops::monitoring {
namespace {

// Proportions with empty bins (and only those) set to kEpsilon.
std::vector<double> Smoothed(const std::vector<double>& values) {
  std::vector<double> out = Proportions(values);
  for (double& v : out) {
    if (v == 0) v = kEpsilon;
  }
  return out;
}

}  // namespace

std::vector<double> Proportions(const std::vector<double>& counts) {
  double total = std::accumulate(counts.begin(), counts.end(), 0.0);
  std::vector<double> out(counts.size(), 0.0);
  if (total <= 0) return out;
  for (size_t i = 0; i < counts.size(); ++i) out[i] = counts[i] / total;
  return out;
}

double Psi(const std::vector<double>& reference, const std::vector<double>& current) {
  std::vector<double> ref = Smoothed(reference), cur = Smoothed(current);
  double psi = 0;
  for (size_t i = 0; i < ref.size() && i < cur.size(); ++i) {
    psi += (cur[i] - ref[i]) * std::log(cur[i] / ref[i]);
  }
  return psi;
}

double JensenShannonDistance(const std::vector<double>& reference,
                             const std::vector<double>& current) {
  std::vector<double> p = Proportions(reference), q = Proportions(current);
  double divergence = 0;
  for (size_t i = 0; i < p.size() && i < q.size(); ++i) {
    double m = (p[i] + q[i]) / 2;
    if (p[i] > 0) divergence += 0.5 * p[i] * std::log2(p[i] / m);
    if (q[i] > 0) divergence += 0.5 * q[i] * std::log2(q[i] / m);
  }
  return std::sqrt(std::max(0.0, divergence));
}

ChiSquared ChiSquaredHomogeneity(const std::vector<double>& reference_counts,
                                 const std::vector<double>& current_counts) {
  ChiSquared result;
  size_t bins = std::min(reference_counts.size(), current_counts.size());
  std::vector<size_t> used;  // bins with mass in either sample
  double ref_total = 0, cur_total = 0;
  for (size_t i = 0; i < bins; ++i) {
    ref_total += reference_counts[i];
    cur_total += current_counts[i];
    if (reference_counts[i] + current_counts[i] > 0) used.push_back(i);
  }
  if (ref_total <= 0 || cur_total <= 0 || used.size() < 2) return result;
  double total = ref_total + cur_total;
  result.dof = static_cast<int>(used.size()) - 1;
  for (size_t i : used) {
    double column = reference_counts[i] + current_counts[i];
    for (auto [observed, row] :
         {std::pair{reference_counts[i], ref_total}, std::pair{current_counts[i], cur_total}}) {
      double expected = row * column / total;
      double diff = observed - expected;
      // Yates' continuity correction for a 2 x 2 table, as chi2_contingency applies by default.
      if (result.dof == 1) diff = std::copysign(std::max(0.0, std::fabs(diff) - 0.5), diff);
      result.statistic += diff * diff / expected;
    }
  }
  result.p_value = ChiSquaredSurvival(result.statistic, result.dof);
  return result;
}

double KolmogorovSurvival(double x) {
  if (x <= 0) return 1;
  if (x < 0.2) {
    // The alternating series converges slowly here; use the Jacobi theta form of the CDF:
    // P(K <= x) = sqrt(2 pi) / x * sum_{k>=1} exp(-(2k-1)^2 pi^2 / (8 x^2)).
    double cdf = 0;
    for (int k = 1; k <= 20; ++k) {
      double term = std::exp(-(2.0 * k - 1) * (2.0 * k - 1) * M_PI * M_PI / (8 * x * x));
      cdf += term;
      if (term < 1e-300) break;
    }
    return 1 - std::sqrt(2 * M_PI) / x * cdf;
  }
  double sum = 0;
  for (int k = 1; k <= 100; ++k) {
    double term = std::exp(-2.0 * k * k * x * x);
    sum += (k % 2 == 1 ? term : -term);
    if (term < 1e-17) break;
  }
  return std::clamp(2 * sum, 0.0, 1.0);
}

double KsPValue(double d, double n, double m) {
  if (n <= 0 || m <= 0) return 1;
  return KolmogorovSurvival(d * std::sqrt(n * m / (n + m)));
}

double RegularizedGammaQ(double a, double x) {
  if (x <= 0) return 1;
  if (a <= 0) return 0;
  double log_prefix = -x + a * std::log(x) - std::lgamma(a);
  if (x < a + 1) {
    // P(a, x) by its series; Q = 1 - P.
    double term = 1 / a, sum = term;
    for (int n = 1; n < 10000; ++n) {
      term *= x / (a + n);
      sum += term;
      if (std::fabs(term) < std::fabs(sum) * 1e-16) break;
    }
    return std::clamp(1 - sum * std::exp(log_prefix), 0.0, 1.0);
  }
  // Q(a, x) by its continued fraction (modified Lentz).
  const double tiny = 1e-300;
  double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 10000; ++i) {
    double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::fabs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    double delta = d * c;
    h *= delta;
    if (std::fabs(delta - 1) < 1e-16) break;
  }
  return std::clamp(std::exp(log_prefix) * h, 0.0, 1.0);
}

double ChiSquaredSurvival(double x, double dof) {
  if (dof <= 0) return 1;
  return RegularizedGammaQ(dof / 2, x / 2);
}

}  // namespace mlops::monitoring
