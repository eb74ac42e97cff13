// Dense solution of the global system on the CPU (LAPACK through OpenBLAS): constraints by
// elimination or Lagrange multipliers, then Cholesky (decomposition), Cholesky plus inverse
// (inversion) or eigen-decomposition (diagonalization).
#pragma once

#include <cstdint>
#include <vector>

#include "gpede/detail/backend.hpp"

namespace gpede::detail {

class DenseSolver {
 public:
  /// matrix: n x n column-major symmetric (both triangles valid); consumed.
  /// Returns ok == false (with a message naming the number of bad pivots or non-positive
  /// eigenvalues, and their variable indices) where the (reduced) matrix is not positive definite
  /// or the bordered matrix is singular.
  FactorReport factorize(std::vector<double> matrix, std::int64_t n, const ConstraintSystem& constraints,
                         const FactorOptions& options);
  /// Newton step dp (size n): minimises 1/2 dp.C.dp - b.dp subject to A dp = 0.
  std::vector<double> solve(const std::vector<double>& b) const;
  /// Diagonal of the covariance C^-1 in the variable space, transformed back from the reduced space
  /// (elimination) or the top-left block of the bordered inverse (multipliers). Empty unless
  /// options.want_covariance.
  std::vector<double> covariance_diagonal() const;

 private:
  std::int64_t m_n = 0;
  std::int64_t m_m = 0;
  FactorOptions m_options;
  std::vector<double> m_factor;       // factor, inverse or eigenvectors (by method)
  std::vector<double> m_eigenvalues;  // diagonalization
  std::vector<double> m_q;            // elimination: Householder vectors of A^T (n x m) ...
  std::vector<double> m_tau;          // ... and their scalars
  std::vector<std::int32_t> m_pivots; // multipliers: Bunch-Kaufman pivots
  std::vector<double> m_cov_diag;
};

}  // namespace gpede::detail
