// MINRES (Paige and Saunders, 1975): the iterative solution of a symmetric, possibly indefinite
// system A x = b with an optional preconditioner M (x := M^-1 y), starting from x = 0, with the
// stopping rules and stop codes that pede's MINRES prints (its log explains codes -1 to 7).
// MINRES-QLP (Choi, Paige and Saunders, 2011) runs the same Lanczos process; once the estimate of
// cond(A) passes a transition value it factorises the tridiagonal matrix as Q T = L P (a lower
// triangular L from right reflections), which gives the minimum-length solution of a singular or
// very ill-conditioned system, where MINRES's iterates grow without bound. It has its own stopping
// rules and stop codes (1 to 15, as pede's log explains them).
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

/// MINRES-QLP's stop codes (pede's log prints them with these meanings).
enum class MinresQlpStop : int {
  none = 0,
  lanczos_end = 1,          ///< beta_{k+1} < eps: the Krylov space is exhausted
  eigenvector_rhs = 2,      ///< beta2 = 0, or x has converged to an eigenvector
  zero_rhs = 3,             ///< beta1 = 0: x = 0 is exact
  solved_rtol = 4,          ///< a solution of A x = b (possibly singular), given rtol
  solved_eps = 5,           ///< a solution of A x = b, given eps
  least_squares_rtol = 6,   ///< the pseudo-inverse solution of a singular least-squares problem, given rtol
  least_squares_eps = 7,    ///< the same, given eps
  iteration_limit = 8,
  matrix_not_symmetric = 9,
  preconditioner_not_symmetric = 10,
  preconditioner_indefinite = 11,
  x_norm_limit = 12,        ///< ||x|| exceeded its limit (or would in the next iteration)
  ill_conditioned = 13,     ///< the estimate of cond(A) exceeded its limit or 0.1 / eps
  least_squares_unconverged = 14,  ///< a least-squares problem without a converged solution yet
  null_vector = 15,
};

/// The text for a MINRES-QLP stop code.
std::string minres_qlp_stop_text(MinresQlpStop stop);

struct MinresSettings {
  double rtol = 1.0e-6;
  std::int64_t iteration_limit = 2000;
  /// Run MINRES-QLP instead of MINRES.
  bool qlp = false;
  /// MINRES-QLP: the estimate of cond(A) at which the QLP phase takes over (1: from the start;
  /// capped at 1e7, the largest power of ten below 1/sqrt(eps), as in the published code).
  double transition_condition = 1.0e7;
  /// MINRES-QLP: the limit on ||x|| (0: 1e7); capped at 1/eps.
  double max_x_norm = 0.0;
};

struct MinresOutcome {
  std::vector<double> x;
  MinresStop stop = MinresStop::zero_rhs;
  std::int64_t iterations = 0;
  double a_norm = 0.0;   ///< estimate of ||A|| (Frobenius norm of the Lanczos tridiagonal matrix)
  double a_cond = 0.0;   ///< estimate of cond(A)
  double r_norm = 0.0;   ///< estimate of ||b - A x|| (in the preconditioner's norm)
  double y_norm = 0.0;   ///< estimate of ||x|| (in the preconditioner's norm)
  double ar_norm = 0.0;  ///< estimate of ||A r|| of the previous iterate (MINRES-QLP: ||A r|| itself)
  /// MINRES-QLP only: its own stop code (`stop` then holds the nearest MINRES code), the
  /// iterations of its QLP phase and ||x|| (y_norm holds it too).
  MinresQlpStop qlp_stop = MinresQlpStop::none;
  std::int64_t qlp_iterations = 0;
};

/// Solves A x = b. `precondition` may be empty (no preconditioner); it must apply a symmetric M^-1.
/// With settings.qlp, by MINRES-QLP.
MinresOutcome minres(const VectorMap& multiply, const VectorMap& precondition, const std::vector<double>& b,
                     const MinresSettings& settings);

/// MINRES-QLP (what minres() runs with settings.qlp).
MinresOutcome minres_qlp(const VectorMap& multiply, const VectorMap& precondition, const std::vector<double>& b,
                         const MinresSettings& settings);

}  // namespace gpede::detail
