// Gauss-Jordan sweeps on diagonal pivots (see pivoted_sweep.hpp). Sweeping pivot k with value p
// turns a into: a_ij - a_ik a_kj / p off row and column k, a_ik / p on them, -1/p at (k, k). After
// the sweeps of a set S, the block (S, S) holds -(A_SS)^-1.
#include "gpede/detail/pivoted_sweep.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace gpede::detail {

SweepOutcome sweep_inverse(double* a, std::int64_t n, std::int64_t lda, double limit, SweepOrder order) {
  SweepOutcome outcome;
  const std::size_t ld = static_cast<std::size_t>(lda);
  auto at = [&](std::int64_t i, std::int64_t j) -> double& { return a[static_cast<std::size_t>(i) + static_cast<std::size_t>(j) * ld]; };
  std::vector<double> original(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) original[i] = std::abs(at(i, i));
  std::vector<char> swept(static_cast<std::size_t>(n), 0), rejected(static_cast<std::size_t>(n), 0);
  std::vector<double> column(static_cast<std::size_t>(n));

  auto sweep = [&](std::int64_t k) {
    const double inverse = 1.0 / at(k, k);
    for (std::int64_t i = 0; i < n; ++i) column[i] = i == k ? 0.0 : at(i, k);
    for (std::int64_t j = 0; j < n; ++j) {
      if (j == k) continue;
      const double factor = column[j] * inverse;
      if (factor == 0.0) continue;
      double* aj = &at(0, j);
      for (std::int64_t i = 0; i < n; ++i) aj[i] -= column[i] * factor;
    }
    for (std::int64_t i = 0; i < n; ++i) {
      if (i == k) continue;
      at(i, k) = column[i] * inverse;
      at(k, i) = column[i] * inverse;
    }
    at(k, k) = -inverse;
    swept[k] = 1;
    ++outcome.rank;
  };

  if (order == SweepOrder::largest_first) {
    for (std::int64_t step = 0; step < n; ++step) {
      std::int64_t best = -1;
      double best_value = 0.0;
      for (std::int64_t j = 0; j < n; ++j) {
        if (swept[j]) continue;
        const double v = std::abs(at(j, j));
        if (v > std::max(best_value, limit * original[j])) {
          best = j;
          best_value = v;
        }
      }
      if (best < 0) break;
      sweep(best);
    }
    for (std::int64_t j = 0; j < n; ++j) rejected[j] = !swept[j];
  } else {
    for (std::int64_t k = n - 1; k >= 0; --k) {
      const double p = at(k, k);
      if (p > limit * original[k]) {
        sweep(k);
      } else {
        if (p < -limit * original[k]) outcome.negative.push_back(k);
        rejected[k] = 1;
      }
    }
  }

  for (std::int64_t j = 0; j < n; ++j) {
    for (std::int64_t i = 0; i < n; ++i) {
      double& v = at(i, j);
      v = (rejected[i] || rejected[j]) ? 0.0 : -v;
    }
    if (rejected[j]) outcome.rejected.push_back(j);
  }
  std::reverse(outcome.negative.begin(), outcome.negative.end());
  return outcome;
}

}  // namespace gpede::detail
