// CPU backend: CpuAccumulator (threads) builds the global matrix and vector, DenseSolver (LAPACK)
// applies the constraints and solves. With sparse storage (sparseMINRES) the matrix is a
// SparseMatrix whose pattern comes from a pass over the records before the first building pass,
// and MINRES solves with its products. With packed storage the matrix is a PackedMatrix (RFP) and
// PackedSolution solves it by decomposition or inversion.
#include <algorithm>
#include <utility>

#include "gpede/detail/backend.hpp"
#include "gpede/detail/cpu_accumulator.hpp"
#include "gpede/detail/dense_solver.hpp"
#include "gpede/detail/packed_solution.hpp"
#include "gpede/detail/sparse_matrix.hpp"
#include "gpede/detail/worker_pool.hpp"
#include "gpede/error.hpp"
#include "gpede/solver.hpp"

namespace gpede::detail {
namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : m_accumulator(threads), m_pool(m_accumulator.threads()) {}

  std::string name() const override { return "cpu"; }
  int host_threads() const override { return m_accumulator.threads(); }

  bool supports_sparse_matrix() const override { return true; }
  void use_sparse_matrix(bool sparse) override { m_sparse = sparse; }
  bool supports_packed_matrix() const override { return true; }
  void use_packed_matrix(bool packed) override { m_packed = packed; }
  std::string matrix_description() const override {
    if (m_packed) {
      const double bytes = static_cast<double>(RfpLayout(m_n).size()) * sizeof(double);
      return "packed, the lower triangle in rectangular full packed format (" + std::to_string(RfpLayout(m_n).size()) +
             " elements, " + std::to_string(static_cast<std::int64_t>(bytes / 1048576.0 + 0.5)) + " MB)";
    }
    if (!m_sparse) return {};
    if (!m_pattern_ready) return "sparse (pattern not built yet)";
    const double n = static_cast<double>(m_n), stored = static_cast<double>(m_matrix.nonzeros());
    const double fraction = n > 0 ? (2.0 * stored - n) / (n * n) : 0.0;
    return "sparse, " + std::to_string(m_matrix.nonzeros()) + " elements of the lower triangle (" +
           std::to_string(static_cast<int>(100.0 * fraction + 0.5)) + " % of the full matrix) in " +
           std::to_string(m_groups) + " parameter groups, " +
           std::to_string((m_matrix.bytes() + (1 << 19)) >> 20) + " MB";
  }
  // Two looks at the records before the first building pass: the parameter groups, the pattern.
  bool wants_bounds() const override { return m_sparse && !m_pattern_ready && m_looks < 2; }
  void share_with(ProcessGroup* processes) override { m_processes = processes; }
  void begin_bounds(const PassSetup& setup) override {
    if (m_looks++ == 0) {
      m_pattern.reset(setup.n_variable, setup.variable_index);
    } else {
      if (m_processes != nullptr) m_pattern.combine_boundaries(*m_processes);
      m_pattern.finish_groups();
    }
  }
  void bound(const RecordBatch& batch) override {
    if (m_looks == 1) {
      m_pattern.add_boundaries(batch);
    } else {
      m_pattern.add(batch);
    }
  }

  void begin_pass(const PassSetup& setup) override {
    if (setup.build_matrix) {
      m_n = setup.n_variable;
      if (m_sparse) {
        if (!m_pattern_ready) {
          if (m_pattern.n() != m_n || m_looks != 2) {
            throw RuntimeError("cpu backend: sparse matrix without the looks at the records for its pattern");
          }
          if (m_processes != nullptr) m_pattern.combine_pairs(*m_processes);
          m_groups = m_pattern.groups();
          m_matrix = SparseMatrix(std::move(m_pattern));
          m_pattern_ready = true;
        }
        m_accumulator.set_sparse_target(&m_matrix);
      } else if (m_packed) {
        m_accumulator.set_packed_target(&m_packed_matrix);
      }
    }
    m_accumulator.begin_pass(setup);
  }
  void accumulate(const RecordBatch& batch) override { m_accumulator.accumulate(batch); }
  PassTotals end_pass() override { return m_accumulator.end_pass(); }

  void add_to_matrix(const std::vector<std::int64_t>& rows, const std::vector<std::int64_t>& cols,
                     const std::vector<double>& values) override {
    if (m_sparse) {
      if (!m_pattern_ready) throw RuntimeError("cpu backend: add_to_matrix called without a global matrix");
      for (std::size_t k = 0; k < values.size(); ++k) m_matrix.add_element(rows[k], cols[k], values[k]);
      return;
    }
    if (m_packed) {
      if (m_packed_matrix.n() != m_n || m_packed_matrix.values().empty()) {
        throw RuntimeError("cpu backend: add_to_matrix called without a global matrix");
      }
      for (std::size_t k = 0; k < values.size(); ++k) m_packed_matrix.add_element(rows[k], cols[k], values[k]);
      return;
    }
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
    if (m_sparse) return m_matrix.diagonal();
    if (m_packed) return m_packed_matrix.diagonal();
    auto& c = const_cast<CpuAccumulator&>(m_accumulator).matrix();
    std::vector<double> d(m_n);
    for (std::int64_t i = 0; i < m_n; ++i) d[i] = c[i + i * m_n];
    return d;
  }

  double* host_matrix(std::size_t* count) override {
    *count = 0;
    if (m_sparse && !m_pattern_ready) return nullptr;
    std::vector<double>& values =
        m_sparse ? m_matrix.values() : m_packed ? m_packed_matrix.values() : m_accumulator.matrix();
    *count = values.size();
    return values.data();
  }

  FactorReport factorize(const ConstraintSystem& constraints, const FactorOptions& options) override {
    if (m_sparse) {
      if (options.method != Method::minres) {
        throw RuntimeError("cpu backend: the sparse global matrix is solved by MINRES only");
      }
      return m_solver.factorize_product(
          [this](const std::vector<double>& x, std::vector<double>& y) { m_matrix.multiply(x, y, &m_pool); },
          m_matrix.diagonal(), m_matrix.nonfinite_rows(), m_n, constraints, options,
          options.minres_bandwidth > 0 ? m_matrix.band(options.minres_bandwidth) : std::vector<double>{});
    }
    if (m_packed) {
      return m_packed_solution.factorize(std::exchange(m_packed_matrix, PackedMatrix()), constraints, options);
    }
    return m_solver.factorize(std::move(m_accumulator.matrix()), m_n, constraints, options);
  }
  std::vector<double> solve(const std::vector<double>& b, const std::vector<double>& residual) override {
    return m_packed ? m_packed_solution.solve(b, residual) : m_solver.solve(b, residual);
  }
  IterativeSolveInfo last_solve_info() const override { return m_solver.last_solve_info(); }
  void release_factorization() override {
    m_solver.release();
    m_packed_solution.release();
  }
  std::vector<double> covariance_diagonal() override {
    return m_packed ? m_packed_solution.covariance_diagonal() : m_solver.covariance_diagonal();
  }

 private:
  CpuAccumulator m_accumulator;
  WorkerPool m_pool;  // the sparse matrix's products
  DenseSolver m_solver;
  std::int64_t m_n = 0;
  bool m_sparse = false;
  bool m_packed = false;
  PackedMatrix m_packed_matrix;
  PackedSolution m_packed_solution;
  bool m_pattern_ready = false;
  int m_looks = 0;
  std::int64_t m_groups = 0;
  SparsePattern m_pattern;
  SparseMatrix m_matrix;
  ProcessGroup* m_processes = nullptr;  // share_with
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace gpede::detail
