// MINRES (Paige and Saunders, 1975): the iterative solution of a symmetric, possibly indefinite
// system A x = b with an optional preconditioner M (x := M^-1 y), starting from x = 0, with the
// stopping rules and stop codes that pede's MINRES prints (its log explains codes -1 to 7).
// The matrix and the preconditioner are functions on host vectors, so the same iteration runs over
// a dense matrix in any engine's memory, a sparse matrix or an implicit (reduced, bordered) operator.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace gpede::detail {

/// y := A x (or y := M^-1 x); x and y have the system's size and do not overlap.
using VectorMap = std::function<void(const std::vector<double>& x, std::vector<double>& y)>;

/// Stop codes, as pede's log explains them.
enum class MinresStop : int {
  special_rhs = -1,       ///< beta2 = 0: b is an eigenvector of (preconditioned) A; x is exact
  zero_rhs = 0,           ///< b = 0: x = 0 is exact
  converged = 1,          ///< requested accuracy reached (rtol)
  converged_eps = 2,      ///< accuracy at the rounding level reached
  eigenvector = 3,        ///< x has converged to an eigenvector
  ill_conditioned = 4,    ///< the estimate of cond(A) exceeds 0.1 / eps
  iteration_limit = 5,    ///< the iteration limit was reached
  matrix_not_symmetric = 6,  ///< A (or A with M) is not symmetric: a negative squared norm arose
  preconditioner_indefinite = 8,  ///< M is indefinite: b.M^-1 b < 0
};

/// The text for a stop code.
std::string minres_stop_text(MinresStop stop);

struct MinresSettings {
  double rtol = 1.0e-6;
  std::int64_t iteration_limit = 2000;
};

struct MinresOutcome {
  std::vector<double> x;
  MinresStop stop = MinresStop::zero_rhs;
  std::int64_t iterations = 0;
  double a_norm = 0.0;   ///< estimate of ||A|| (Frobenius norm of the Lanczos tridiagonal matrix)
  double a_cond = 0.0;   ///< estimate of cond(A)
  double r_norm = 0.0;   ///< estimate of ||b - A x|| (in the preconditioner's norm)
  double y_norm = 0.0;   ///< estimate of ||x|| (in the preconditioner's norm)
  double ar_norm = 0.0;  ///< estimate of ||A r|| of the previous iterate
};

/// Solves A x = b. `precondition` may be empty (no preconditioner); it must apply a symmetric M^-1.
MinresOutcome minres(const VectorMap& multiply, const VectorMap& precondition, const std::vector<double>& b,
                     const MinresSettings& settings);

}  // namespace gpede::detail
