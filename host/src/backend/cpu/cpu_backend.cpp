// CPU backend: CpuAccumulator (threads) builds the global matrix and vector, DenseSolver (LAPACK)
// applies the constraints and solves.
#include <algorithm>

#include "gpede/detail/backend.hpp"
#include "gpede/detail/cpu_accumulator.hpp"
#include "gpede/detail/dense_solver.hpp"
#include "gpede/error.hpp"

namespace gpede::detail {
namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : m_accumulator(threads) {}

  std::string name() const override { return "cpu"; }
  int host_threads() const override { return m_accumulator.threads(); }

  void begin_pass(const PassSetup& setup) override {
    if (setup.build_matrix) m_n = setup.n_variable;
    m_accumulator.begin_pass(setup);
  }
  void accumulate(const RecordBatch& batch) override { m_accumulator.accumulate(batch); }
  PassTotals end_pass() override { return m_accumulator.end_pass(); }

  void add_to_matrix(const std::vector<std::int64_t>& rows, const std::vector<std::int64_t>& cols,
                     const std::vector<double>& values) override {
    auto& c = m_accumulator.matrix();
    if (c.size() != static_cast<std::size_t>(m_n * m_n)) {
      throw RuntimeError("cpu backend: add_to_matrix called without a global matrix");
    }
    for (std::size_t k = 0; k < values.size(); ++k) {
      const std::int64_t i = rows[k], j = cols[k];
      c[i + j * m_n] += values[k];
      if (i != j) c[j + i * m_n] += values[k];
    }
  }

  std::vector<double> matrix_diagonal() const override {
    auto& c = const_cast<CpuAccumulator&>(m_accumulator).matrix();
    std::vector<double> d(m_n);
    for (std::int64_t i = 0; i < m_n; ++i) d[i] = c[i + i * m_n];
    return d;
  }

  FactorReport factorize(const ConstraintSystem& constraints, const FactorOptions& options) override {
    return m_solver.factorize(std::move(m_accumulator.matrix()), m_n, constraints, options);
  }
  std::vector<double> solve(const std::vector<double>& b, const std::vector<double>& residual) override {
    return m_solver.solve(b, residual);
  }
  IterativeSolveInfo last_solve_info() const override { return m_solver.last_solve_info(); }
  void release_factorization() override { m_solver.release(); }
  std::vector<double> covariance_diagonal() override { return m_solver.covariance_diagonal(); }

 private:
  CpuAccumulator m_accumulator;
  DenseSolver m_solver;
  std::int64_t m_n = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace gpede::detail
