// The interface between the backend-independent solver loop (host/src/solver.cpp) and a backend
// (CPU: threads + LAPACK; CUDA: kernels + cuSOLVER). Phase granularity: a pass over the data is
// begin_pass, accumulate per batch, end_pass; then factorize once and solve per iteration.
// Never a call per record.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gpede/kernels/local_fit.hpp"
#include "gpede/record_batch.hpp"
#include "gpede/steering.hpp"

namespace gpede {
class ProcessGroup;
namespace detail::linalg {
class DistributedEngine;
}
}

namespace gpede::detail {

/// What a pass over the data needs to know.
struct PassSetup {
  bool build_matrix = false;  ///< also accumulate the global matrix (else only F, chi2 and b)
  std::int64_t n_all = 0;
  std::int64_t n_variable = 0;
  std::vector<double> parameter_value;       ///< per label (size n_all)
  std::vector<std::int32_t> variable_index;  ///< per label, -1 if fixed (size n_all)
  kernels::LocalFitOptions fit;              ///< cuts, down-weighting, error scaling
};

/// Sums of a pass.
struct PassTotals {
  double chi2_sum = 0.0;        ///< sum of weighted chi2 of accepted local fits
  double function_value = 0.0;  ///< chi2_sum + cut values of rejected fits
  /// Sum of ndf of the local fits that reach the chi2 cuts: accepted, or rejected by hugecut, the
  /// chi2 cut or the down-weight fraction (pede sums them so).
  std::int64_t ndf_sum = 0;
  double weighted_ndf_sum = 0.0;  ///< the same sum with each record's file weight
  std::int64_t records = 0;
  std::int64_t accepted = 0;
  std::int64_t rejected_rank = 0;    ///< singular local matrix or NaN
  std::int64_t rejected_ndf = 0;     ///< ndf <= 0
  std::int64_t rejected_huge = 0;    ///< chi2 > hugecut x chi2_3sigma
  std::int64_t rejected_cut = 0;     ///< chi2 > cut factor x chi2_3sigma
  std::int64_t rejected_downweight = 0;  ///< down-weight fraction > dwfractioncut
  std::vector<double> rhs;                    ///< b (size n_variable)
  /// Per label (size n_all): global derivatives in accepted fits, counted for variable labels only
  /// (pede's counter); 0 for fixed labels.
  std::vector<std::int64_t> entries_accepted;
  std::int64_t rejected() const {
    return rejected_rank + rejected_ndf + rejected_huge + rejected_cut + rejected_downweight;
  }
};

/// Linear equality constraints A p = c over the variable parameters.
struct ConstraintSystem {
  std::int64_t m = 0;
  std::int64_t n = 0;
  std::vector<double> a;  ///< row-major m x n
  std::vector<double> value;
};

/// What factorize needs to know.
struct FactorOptions {
  Method method = Method::inversion;
  ConstraintMode mode = ConstraintMode::elimination;
  bool want_covariance = true;  ///< inversion, diagonalization
  /// Eigenvectors to return for millepede.eve, chosen as pede does: the 10 smallest positive
  /// eigenvalues (smallest first), then the 6 largest (largest first); at most 16.
  int eve_count = 0;
  /// Where the (reduced or bordered) matrix has no regular factorisation, still solve as pede
  /// does (inversion: pivots largest diagonal first, the elimination stopping at the first pivot
  /// below 1e-10 of its diagonal; decomposition: pivots from the last to the first, the
  /// non-positive or tiny ones skipped): the parameters of the rejected pivots keep a zero step
  /// and zero covariance. The report then says ok == false, solvable == true and rank_defect.
  /// Inversion also takes this route when a regular factorisation has a pivot that pede's
  /// elimination would reject.
  bool solve_singular = false;
  /// Method::minres: the relative tolerance, the iteration limit (pede's 2000) and the
  /// preconditioner (0: the diagonal, bordered by the constraints with multipliers; below 0: none;
  /// w > 0: the band of width w, with dependent rows kept as their diagonal if band_skyline).
  double minres_tolerance = 1.0e-6;
  std::int64_t minres_iteration_limit = 2000;
  int minres_bandwidth = 0;
  bool minres_band_skyline = false;
  /// MINRES-QLP instead of MINRES (the -QLP method names), its transition condition (1: the QLP
  /// phase from the start; 1e7 or more: MINRES's iterates throughout) and its limit on ||x||.
  bool minres_qlp = false;
  double minres_transition_condition = 1.0e7;
  double minres_max_x_norm = 0.0;
};

/// How the last solve went where it was iterative (Method::minres).
struct IterativeSolveInfo {
  bool iterative = false;
  std::int64_t iterations = 0;
  int stop = 0;  ///< MinresStop's code (MinresQlpStop's with MINRES-QLP)
  bool qlp = false;  ///< MINRES-QLP
  std::int64_t qlp_iterations = 0;  ///< of iterations, those of MINRES-QLP's QLP phase
  std::string stop_text;
  std::string note;  ///< how the solve departed from pede's, where it did
  double a_norm = 0.0, a_cond = 0.0, r_norm = 0.0, ar_norm = 0.0, y_norm = 0.0;

  /// Stopped short of a solution: MINRES's codes 3 and above, MINRES-QLP's 2 and 8 to 14.
  bool stopped_short() const { return qlp ? stop == 2 || (stop >= 8 && stop <= 14) : stop >= 3; }
};

/// Outcome of a factorisation. ok == false: the matrix is not positive definite (elimination) or
/// singular (multipliers), or the constraints are linearly dependent; message says so,
/// weak_indices lists the variable indices involved (ascending) and dependent_constraints the
/// constraints (0-based, in the order given) that depend on earlier ones.
struct FactorReport {
  bool ok = true;
  /// A step can be solved for: ok, or a singular matrix solved as FactorOptions::solve_singular
  /// asks, or a diagonalization with the weak eigen-directions left out.
  bool solvable = true;
  /// Pivots (or eigen-directions) left out of the solution.
  std::int64_t rank_defect = 0;
  /// Of those, a decomposition's clearly negative pivots (an indefinite matrix): pede's LDL^T
  /// keeps them in a form that turns the step against the gradient, so that its iterations stop
  /// with "function not decreasing" without applying the step; the solver does the same.
  std::int64_t negative_pivots = 0;
  std::string message;
  std::vector<std::int64_t> weak_indices;
  std::vector<std::int64_t> dependent_constraints;
  /// Ascending (diagonalization): of the reduced matrix with elimination (n - m values), of the
  /// bordered matrix with multipliers (n + m values, constraint rows scaled by powers of two).
  std::vector<double> eigenvalues;
  /// Selected eigenvectors: index into eigenvalues, components in variable space (size n); with
  /// multipliers n + m components, the last m those of the (scaled) multipliers.
  std::vector<std::pair<std::int64_t, std::vector<double>>> eigenvectors;
};

/// A backend owns the global matrix (n_variable^2 doubles, symmetric) and its factorisation.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  /// Host threads that run the local fits (0 where the device runs them).
  virtual int host_threads() const { return 0; }

  /// Sparse storage of the global matrix (pede's sparseMINRES): a backend that has it builds the
  /// pattern from a pass over the records (through begin_bounds and bound, below) before its first
  /// building pass; it can then only be solved by MINRES. Call before the first pass.
  virtual bool supports_sparse_matrix() const { return false; }
  virtual void use_sparse_matrix(bool /*sparse*/) {}
  /// Packed storage of the global matrix (the lower triangle, n(n+1)/2 doubles) for decomposition
  /// and inversion: a backend that has it adds the records into it and factorises it there.
  /// Call before the first pass.
  virtual bool supports_packed_matrix() const { return false; }
  virtual void use_packed_matrix(bool /*packed*/) {}
  /// How the global matrix is stored, for the log (empty: dense).
  virtual std::string matrix_description() const { return {}; }

  /// Looks at the records before a building pass: while wants_bounds() is true, the driver shows the
  /// backend every batch of the data (begin_bounds, then bound per batch) with the pass's setup.
  /// The CUDA backend's deterministic mode takes the bounds of the matrix's columns so before each
  /// building pass; sparse storage takes its parameter groups, then its pattern, before the first.
  virtual bool wants_bounds() const { return false; }
  virtual void begin_bounds(const PassSetup& /*setup*/) {}
  virtual void bound(const RecordBatch& /*batch*/) {}

  /// Starts a pass; if setup.build_matrix the global matrix is zeroed and accumulated in this pass.
  virtual void begin_pass(const PassSetup& setup) = 0;
  /// Local fits (and Schur complements if building) of every record of the batch. batch.global_index
  /// is filled. May return before the work is done; end_pass waits.
  virtual void accumulate(const RecordBatch& batch) = 0;
  /// Finishes the pass and returns its sums and b.
  virtual PassTotals end_pass() = 0;

  /// Adds values to the global matrix at (row, col) (either triangle; the backend symmetrises), for
  /// pre-sigmas, external measurements and regularisation. Call between end_pass and factorize.
  virtual void add_to_matrix(const std::vector<std::int64_t>& rows, const std::vector<std::int64_t>& cols,
                             const std::vector<double>& values) = 0;
  /// Diagonal of the global matrix as accumulated (before factorize).
  virtual std::vector<double> matrix_diagonal() const = 0;
  /// The global matrix as accumulated by the last building pass, as one array in host memory with
  /// the same layout for every process that shares the run (sparse storage: its values, in the
  /// pattern share_with made common), so that the processes can add theirs up; null, and count 0,
  /// where it has none such.
  virtual double* host_matrix(std::size_t* count) {
    *count = 0;
    return nullptr;
  }
  /// The processes that share the run (ProcessGroup): a backend whose looks at the records
  /// (wants_bounds) shape the matrix's storage combines them with theirs, so that every process
  /// stores the matrix alike (sparse storage: the pattern of all records). Before the first look.
  virtual void share_with(ProcessGroup* /*processes*/) {}
  /// The array of host_matrix() now holds the matrix to solve (the processes' sum): a backend whose
  /// matrix lives elsewhere (a device) takes it back there. Before add_to_matrix and factorize.
  virtual void host_matrix_changed() {}

  /// Applies the constraints and factorises by the method; the matrix is consumed.
  virtual FactorReport factorize(const ConstraintSystem& constraints, const FactorOptions& options) = 0;
  /// Newton step dp (size n) for gradient b: minimises dp.C.dp/2 - b.dp subject to
  /// A dp = residual (size m, the constraints' c - A p; empty means zero).
  virtual std::vector<double> solve(const std::vector<double>& b, const std::vector<double>& residual) = 0;
  /// How the last solve went, where it was iterative.
  virtual IterativeSolveInfo last_solve_info() const = 0;
  /// Frees the factorisation (before the global matrix is built again).
  virtual void release_factorization() = 0;
  /// Diagonal of the covariance (size n); empty without covariance.
  virtual std::vector<double> covariance_diagonal() = 0;
};

/// The backend of one process among several (ProcessGroup): passes run on `inner` over this
/// process's records, and their sums, the global matrix included, are added up over the
/// processes; process 0 factorises and solves, and every process receives its reports, steps and
/// covariance, so that all take the same decisions. Needs a matrix in host memory (host_matrix).
std::unique_ptr<Backend> make_distributed_backend(std::unique_ptr<Backend> inner, ProcessGroup& processes);
/// The same, with the global matrix summed into `engine`'s distributed matrix (reduce-scatter)
/// and factorised and solved there by every process together (SolverOptions::distributed_solve).
/// `inner` must keep a full n x n matrix in host memory.
std::unique_ptr<Backend> make_distributed_solve_backend(std::unique_ptr<Backend> inner, ProcessGroup& processes,
                                                        std::shared_ptr<linalg::DistributedEngine> engine);

/// CPU backend: `threads` worker threads (0: all cores) and LAPACK.
std::unique_ptr<Backend> make_cpu_backend(int threads);
/// CUDA backend; throws RuntimeError("built without CUDA") where it was not built.
std::unique_ptr<Backend> make_cuda_backend();

}  // namespace gpede::detail
