// The preconditioned Lanczos step that MINRES and MINRES-QLP share (internal to host/src/linalg).
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "gpede/detail/minres.hpp"

namespace gpede::detail {

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

/// The Lanczos vectors: r_prev and r_cur unpreconditioned, y = M^-1 r_cur, v the current one.
struct Lanczos {
  std::vector<double> r_prev, r_cur, y, v;

  /// Starts from b; y must already hold M^-1 b (b itself without a preconditioner).
  Lanczos(const std::vector<double>& b, std::vector<double> y0) : r_prev(b), r_cur(b), y(std::move(y0)), v(b.size()) {}

  /// Step k: v_k = y / beta_k, then y = A v_k - (beta_k / beta_{k-1}) r_{k-1} - alpha_k r_k, which
  /// becomes r_cur (r_prev the one before). Returns alpha_k; y is left for the caller's
  /// preconditioner and beta_{k+1}. `first`: no r_{k-1} term.
  double step(const VectorMap& multiply, double beta, double beta_prev, bool first) {
    const std::size_t n = v.size();
    const double s = 1.0 / beta;
    for (std::size_t i = 0; i < n; ++i) v[i] = s * y[i];
    multiply(v, y);
    if (!first) {
      const double f = beta / beta_prev;
      for (std::size_t i = 0; i < n; ++i) y[i] -= f * r_prev[i];
    }
    const double alpha = dot(v, y);
    const double g = alpha / beta;
    for (std::size_t i = 0; i < n; ++i) y[i] -= g * r_cur[i];
    std::swap(r_prev, r_cur);
    r_cur = y;
    return alpha;
  }
};

}  // namespace gpede::detail
