// A backend shared by the processes of one run (gpede::ProcessGroup, MPI ranks under mpirun): each
// process runs the passes over its own records on its own backend; the pass's sums (chi2, counts,
// b, entries) are added up on every process and the global matrix onto process 0, which factorises
// and solves. What process 0 finds (the factorisation's report, each step, the covariance) is sent
// to every process, failures included, so that every process takes the same decisions and none
// waits for a message that does not come. With the distributed solve, the matrix is reduce-scattered
// into a distributed engine instead and all processes solve it together.
#include <string>
#include <type_traits>
#include <utility>

#include "gpede/detail/backend.hpp"
#include "gpede/detail/byte_pack.hpp"
#include "gpede/detail/dense_solution.hpp"
#include "gpede/detail/linalg.hpp"
#include "gpede/error.hpp"
#include "gpede/solver.hpp"

namespace gpede::detail {
namespace {

void pack(Packer& p, const FactorReport& r) {
  p.put(r.ok);
  p.put(r.solvable);
  p.put(r.rank_defect);
  p.put(r.negative_pivots);
  p.put(r.message);
  p.put(r.weak_indices);
  p.put(r.dependent_constraints);
  p.put(r.eigenvalues);
  p.put(static_cast<std::uint64_t>(r.eigenvectors.size()));
  for (const auto& [index, vector] : r.eigenvectors) {
    p.put(index);
    p.put(vector);
  }
}

FactorReport unpack_report(Unpacker& u) {
  FactorReport r;
  r.ok = u.get<bool>();
  r.solvable = u.get<bool>();
  r.rank_defect = u.get<std::int64_t>();
  r.negative_pivots = u.get<std::int64_t>();
  r.message = u.get_string();
  r.weak_indices = u.get_vector<std::int64_t>();
  r.dependent_constraints = u.get_vector<std::int64_t>();
  r.eigenvalues = u.get_vector<double>();
  const auto count = u.get<std::uint64_t>();
  for (std::uint64_t k = 0; k < count; ++k) {
    const auto index = u.get<std::int64_t>();
    r.eigenvectors.emplace_back(index, u.get_vector<double>());
  }
  return r;
}

void pack(Packer& p, const IterativeSolveInfo& s) {
  p.put(s.iterative);
  p.put(s.iterations);
  p.put(s.stop);
  p.put(s.qlp);
  p.put(s.qlp_iterations);
  p.put(s.stop_text);
  p.put(s.note);
  for (double v : {s.a_norm, s.a_cond, s.r_norm, s.ar_norm, s.y_norm}) p.put(v);
}

IterativeSolveInfo unpack_info(Unpacker& u) {
  IterativeSolveInfo s;
  s.iterative = u.get<bool>();
  s.iterations = u.get<std::int64_t>();
  s.stop = u.get<int>();
  s.qlp = u.get<bool>();
  s.qlp_iterations = u.get<std::int64_t>();
  s.stop_text = u.get_string();
  s.note = u.get_string();
  for (double* v : {&s.a_norm, &s.a_cond, &s.r_norm, &s.ar_norm, &s.y_norm}) *v = u.get<double>();
  return s;
}

/// A pass's sums, added up over the processes (the same on every one).
void sum_totals(ProcessGroup& processes, PassTotals& t) {
  double reals[3] = {t.chi2_sum, t.function_value, t.weighted_ndf_sum};
  std::int64_t counts[8] = {t.ndf_sum,      t.records,       t.accepted,     t.rejected_rank,
                            t.rejected_ndf, t.rejected_huge, t.rejected_cut, t.rejected_downweight};
  processes.sum(reals, 3);
  processes.sum(counts, 8);
  t.chi2_sum = reals[0], t.function_value = reals[1], t.weighted_ndf_sum = reals[2];
  t.ndf_sum = counts[0], t.records = counts[1], t.accepted = counts[2], t.rejected_rank = counts[3];
  t.rejected_ndf = counts[4], t.rejected_huge = counts[5], t.rejected_cut = counts[6];
  t.rejected_downweight = counts[7];
  processes.sum(t.rhs.data(), t.rhs.size());
  processes.sum(t.entries_accepted.data(), t.entries_accepted.size());
}

/// What both backends below share: every pass runs on `inner` over this process's records, and
/// its sums are added up over the processes; the matrix of a building pass goes to sum_matrix.
class SharedPasses : public Backend {
 public:
  SharedPasses(std::unique_ptr<Backend> inner, ProcessGroup& processes)
      : m_inner(std::move(inner)), m_processes(processes) {}

  std::string name() const override { return m_inner->name(); }
  int host_threads() const override { return m_inner->host_threads(); }
  bool wants_bounds() const override { return m_inner->wants_bounds(); }
  void begin_bounds(const PassSetup& setup) override { m_inner->begin_bounds(setup); }
  void bound(const RecordBatch& batch) override { m_inner->bound(batch); }
  void begin_pass(const PassSetup& setup) override {
    m_building = setup.build_matrix;
    m_inner->begin_pass(setup);
  }
  void accumulate(const RecordBatch& batch) override { m_inner->accumulate(batch); }
  PassTotals end_pass() override {
    PassTotals t = m_inner->end_pass();
    sum_totals(m_processes, t);
    if (m_building) sum_matrix(static_cast<std::int64_t>(t.rhs.size()));
    return t;
  }

 protected:
  /// Adds up the processes' matrices of the building pass just ended (n x n).
  virtual void sum_matrix(std::int64_t n) = 0;

  std::unique_ptr<Backend> m_inner;
  ProcessGroup& m_processes;
  bool m_building = false;
};

class DistributedBackend final : public SharedPasses {
 public:
  DistributedBackend(std::unique_ptr<Backend> inner, ProcessGroup& processes)
      : SharedPasses(std::move(inner), processes), m_first(processes.rank() == 0) {
    m_inner->share_with(&processes);
  }

  // Sparse storage: the inner backend combines its pattern with the other processes' (share_with).
  bool supports_sparse_matrix() const override { return m_inner->supports_sparse_matrix(); }
  void use_sparse_matrix(bool sparse) override { m_inner->use_sparse_matrix(sparse); }
  bool supports_packed_matrix() const override { return m_inner->supports_packed_matrix(); }
  void use_packed_matrix(bool packed) override { m_inner->use_packed_matrix(packed); }
  std::string matrix_description() const override { return m_inner->matrix_description(); }

  void add_to_matrix(const std::vector<std::int64_t>& rows, const std::vector<std::int64_t>& cols,
                     const std::vector<double>& values) override {
    if (m_first) m_inner->add_to_matrix(rows, cols, values);
  }

  std::vector<double> matrix_diagonal() const override {
    return from_first([&](Packer& p) { p.put(m_inner->matrix_diagonal()); },
                      [](Unpacker& u) { return u.get_vector<double>(); });
  }

  FactorReport factorize(const ConstraintSystem& constraints, const FactorOptions& options) override {
    return from_first([&](Packer& p) { pack(p, m_inner->factorize(constraints, options)); },
                      [](Unpacker& u) { return unpack_report(u); });
  }

  std::vector<double> solve(const std::vector<double>& b, const std::vector<double>& residual) override {
    return from_first(
        [&](Packer& p) {
          p.put(m_inner->solve(b, residual));
          pack(p, m_inner->last_solve_info());
        },
        [&](Unpacker& u) {
          auto step = u.get_vector<double>();
          m_info = unpack_info(u);
          return step;
        });
  }
  IterativeSolveInfo last_solve_info() const override { return m_info; }
  void release_factorization() override { m_inner->release_factorization(); }
  std::vector<double> covariance_diagonal() override {
    return from_first([&](Packer& p) { p.put(m_inner->covariance_diagonal()); },
                      [](Unpacker& u) { return u.get_vector<double>(); });
  }

 private:
  void sum_matrix(std::int64_t) override {
    std::size_t count = 0;
    double* matrix = m_inner->host_matrix(&count);
    // Every process must take part, with the same size, or none may: agree on it first.
    std::int64_t sizes[2] = {static_cast<std::int64_t>(matrix != nullptr ? count : 0), 1};
    m_processes.sum(sizes, 2);
    if (matrix == nullptr || sizes[0] != static_cast<std::int64_t>(count) * sizes[1]) {
      throw RuntimeError("the " + m_inner->name() + " backend's global matrix (" +
                         (matrix == nullptr ? std::string("not in host memory")
                                            : std::to_string(count) + " elements here") +
                         ") cannot be added up over " + std::to_string(m_processes.size()) + " processes");
    }
    m_processes.sum_to_first(matrix, count);
    if (m_first) m_inner->host_matrix_changed();
  }

  /// Process 0 runs `work`, which packs its result after "no exception"; every process gets the
  /// bytes and unpacks them with `read`. An exception on process 0 reaches every process as the
  /// same kind of error.
  template <class Work, class Read>
  auto from_first(Work work, Read read) const -> std::invoke_result_t<Read, Unpacker&> {
    Packer p;
    pack_exception(p, nullptr);
    if (m_first) {
      try {
        work(p);
      } catch (...) {
        Packer failure;
        pack_exception(failure, std::current_exception());
        m_processes.broadcast(failure.bytes());
        throw;
      }
    }
    m_processes.broadcast(p.bytes());
    Unpacker u(p.bytes());
    rethrow_packed(u);
    return read(u);
  }

  bool m_first;
  IterativeSolveInfo m_info;
};

/// The passes as in DistributedBackend; the matrix reduce-scattered into the engine's 2D
/// block-cyclic layout and solved there by all processes (SPMD: DenseSolution runs on every
/// process over the distributed engine, whose host results are the same everywhere).
class DistributedSolveBackend final : public SharedPasses {
 public:
  DistributedSolveBackend(std::unique_ptr<Backend> inner, ProcessGroup& processes,
                          std::shared_ptr<linalg::DistributedEngine> engine)
      : SharedPasses(std::move(inner), processes), m_engine(std::move(engine)), m_solution(*m_engine) {}
  ~DistributedSolveBackend() override {
    // The solution's and the matrix's storage belong to the engine: free them first.
    m_solution.release();
    m_matrix.reset();
  }

  std::string matrix_description() const override {
    return "distributed over " + std::to_string(m_processes.size()) + " processes, " + m_engine->name();
  }
  void add_to_matrix(const std::vector<std::int64_t>& rows, const std::vector<std::int64_t>& cols,
                     const std::vector<double>& values) override {
    if (m_matrix.empty()) throw RuntimeError("distributed solve: add_to_matrix called without a global matrix");
    m_engine->add_elements(m_matrix.view(), rows, cols, values);
  }
  std::vector<double> matrix_diagonal() const override {
    if (m_matrix.empty()) throw RuntimeError("distributed solve: matrix_diagonal called without a global matrix");
    return m_engine->diagonal(m_matrix.view());
  }
  FactorReport factorize(const ConstraintSystem& constraints, const FactorOptions& options) override {
    return m_solution.factorize(std::exchange(m_matrix, linalg::Matrix()), m_n, constraints, options);
  }
  std::vector<double> solve(const std::vector<double>& b, const std::vector<double>& residual) override {
    return m_solution.solve(b, residual);
  }
  IterativeSolveInfo last_solve_info() const override { return m_solution.last_solve_info(); }
  void release_factorization() override {
    m_solution.release();
    m_inner->release_factorization();
  }
  std::vector<double> covariance_diagonal() override { return m_solution.covariance_diagonal(); }

 private:
  void sum_matrix(std::int64_t n) override {
    std::size_t count = 0;
    const double* full = m_inner->host_matrix(&count);
    if (full == nullptr || count != static_cast<std::size_t>(n) * static_cast<std::size_t>(n)) {
      throw RuntimeError("the distributed solve needs the " + m_inner->name() +
                         " backend's global matrix in full storage in host memory");
    }
    m_solution.release();
    m_matrix.reset();
    m_matrix = m_engine->allocate(n, n);
    m_engine->sum_full_matrices(full, n, m_matrix.view());
    m_n = n;
  }

  std::shared_ptr<linalg::DistributedEngine> m_engine;
  DenseSolution m_solution;
  linalg::Matrix m_matrix;
  std::int64_t m_n = 0;
};

}  // namespace

std::unique_ptr<Backend> make_distributed_solve_backend(std::unique_ptr<Backend> inner, ProcessGroup& processes,
                                                        std::shared_ptr<linalg::DistributedEngine> engine) {
  if (!engine) throw RuntimeError("the distributed solve needs a distributed engine (ScaLAPACK) from the processes");
  return std::make_unique<DistributedSolveBackend>(std::move(inner), processes, std::move(engine));
}

std::unique_ptr<Backend> make_distributed_backend(std::unique_ptr<Backend> inner, ProcessGroup& processes) {
  return std::make_unique<DistributedBackend>(std::move(inner), processes);
}

}  // namespace gpede::detail
