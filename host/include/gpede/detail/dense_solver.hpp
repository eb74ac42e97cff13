// The dense solution of the global system on the CPU: DenseSolution (dense_solution.hpp) over the
// LAPACK engine, for a matrix in host memory.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "gpede/detail/dense_solution.hpp"
#include "gpede/detail/linalg.hpp"

namespace gpede::detail {

class DenseSolver {
 public:
  DenseSolver() : m_engine(linalg::make_cpu_engine()), m_solution(*m_engine) {}

  /// matrix: n x n column-major symmetric (both triangles valid); consumed. See DenseSolution.
  FactorReport factorize(std::vector<double> matrix, std::int64_t n, const ConstraintSystem& constraints,
                         const FactorOptions& options) {
    const std::size_t size = matrix.size();
    if (n < 0 || size != static_cast<std::size_t>(n) * static_cast<std::size_t>(n)) {
      return m_solution.factorize(linalg::Matrix(), n, constraints, options);  // throws: inconsistent sizes
    }
    return m_solution.factorize(linalg::adopt_host_matrix(std::move(matrix), n, n), n, constraints, options);
  }
  /// See DenseSolution::factorize_product.
  FactorReport factorize_product(VectorMap product, std::vector<double> diagonal, std::vector<std::int64_t> nonfinite,
                                 std::int64_t n, const ConstraintSystem& constraints, const FactorOptions& options,
                                 std::vector<double> band = {}) {
    return m_solution.factorize_product(std::move(product), std::move(diagonal), std::move(nonfinite), n, constraints,
                                        options, std::move(band));
  }
  /// See DenseSolution::solve.
  std::vector<double> solve(const std::vector<double>& b, const std::vector<double>& residual = {}) const {
    return m_solution.solve(b, residual);
  }
  std::vector<double> covariance_diagonal() const { return m_solution.covariance_diagonal(); }
  IterativeSolveInfo last_solve_info() const { return m_solution.last_solve_info(); }
  void release() { m_solution.release(); }

 private:
  std::unique_ptr<linalg::Engine> m_engine;
  DenseSolution m_solution;
};

}  // namespace gpede::detail
