// The linear-algebra layer under the dense solution of the global system: a few dense operations
// on column-major double matrices that live in an engine's memory (host memory for the CPU engine,
// device memory for the CUDA engine). The algorithm (constraints by elimination or multipliers,
// inversion, decomposition, diagonalization, weak-mode reports, pede's sweeps of a singular
// matrix) is written once, in DenseSolution (dense_solution.hpp), over this interface; an engine
// implements the operations and nothing else. Numerical outcomes (a failed pivot) are returned;
// bugs and library failures throw RuntimeError.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gpede/detail/pivoted_sweep.hpp"

namespace gpede::detail::linalg {

/// A block of a matrix in an engine's memory: rows x cols from (row0, col0) of the matrix whose
/// handle is `base`. Views do not own their memory; only the engine that made the matrix looks
/// through them (a dense engine by ptr(), another engine by its own reading of base and offsets).
struct View {
  double* base = nullptr;
  std::int64_t row0 = 0;
  std::int64_t col0 = 0;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t ld = 0;  ///< leading dimension of the whole matrix (column-major engines)

  View block(std::int64_t row, std::int64_t col, std::int64_t n_rows, std::int64_t n_cols) const {
    return View{base, row0 + row, col0 + col, n_rows, n_cols, ld};
  }
  View column(std::int64_t col) const { return block(0, col, rows, 1); }
  bool empty() const { return rows == 0 || cols == 0; }
  /// For engines with dense column-major storage: the address of element (0, 0) of the block.
  double* ptr() const { return base + row0 + col0 * ld; }
};

/// An owning matrix (rows x cols, leading dimension rows) in an engine's memory.
class Matrix {
 public:
  Matrix() = default;
  Matrix(std::shared_ptr<void> storage, double* data, std::int64_t rows, std::int64_t cols)
      : m_storage(std::move(storage)), m_view{data, 0, 0, rows, cols, rows} {}
  View view() const { return m_view; }
  std::int64_t rows() const { return m_view.rows; }
  std::int64_t cols() const { return m_view.cols; }
  bool empty() const { return m_storage == nullptr; }
  void reset() { *this = Matrix(); }

 private:
  std::shared_ptr<void> m_storage;
  View m_view;
};

/// A Bunch-Kaufman factorisation's pivots: LAPACK's convention (1-based; a negative pair marks a 2x2
/// block) on the host, and whatever the engine keeps for its solves.
struct Pivots {
  std::vector<std::int64_t> host;
  std::shared_ptr<void> engine;
};

/// Which side a Householder product is applied from.
enum class Side { left, right };

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string name() const = 0;

  // ---- memory --------------------------------------------------------------------------------
  /// A rows x cols matrix of zeros. Throws RuntimeError (naming what is missing) without memory.
  virtual Matrix allocate(std::int64_t rows, std::int64_t cols) = 0;
  virtual void fill(View a, double value) = 0;
  /// to := from (same shape).
  virtual void copy(View from, View to) = 0;
  /// to := the host values (column-major, leading dimension to.rows).
  virtual void upload(const std::vector<double>& host, View to) = 0;
  /// The block's values, column-major, leading dimension rows.
  virtual std::vector<double> download(View a) = 0;
  /// a(k, k) for k < min(rows, cols).
  virtual std::vector<double> diagonal(View a) = 0;
  virtual void set_diagonal(View a, const std::vector<double>& values) = 0;

  // ---- element-wise --------------------------------------------------------------------------
  /// Indices i of the square matrix whose row i or column i holds a non-finite element, ascending.
  virtual std::vector<std::int64_t> nonfinite_rows(View a) = 0;
  /// a(i, j) *= row_scale[i] * col_scale[j].
  virtual void scale(View a, const std::vector<double>& row_scale, const std::vector<double>& col_scale) = 0;
  /// The lower triangle (diagonal included) of the square `from` into `to`, zeros above it.
  virtual void copy_lower(View from, View to) = 0;
  /// sum_i a(i, j)^2 for every column j.
  virtual std::vector<double> column_sum_squares(View a) = 0;
  /// sum over i >= j of a(i, j)^2 for every column j of a square block (its lower triangle).
  virtual std::vector<double> lower_column_sum_squares(View a) = 0;
  /// Zeros above the diagonal of a square block.
  virtual void zero_strict_upper(View a) = 0;
  /// sum_j a(i, j)^2 w[j] for every row i.
  virtual std::vector<double> weighted_row_sum_squares(View a, const std::vector<double>& w) = 0;

  // ---- factorisations (LAPACK semantics) -------------------------------------------------------
  /// Householder QR of a (rows >= cols): R in the upper triangle, the reflectors below, tau their
  /// scalars (min(rows, cols) x 1).
  virtual void householder_qr(View a, View tau) = 0;
  /// c := op(Q) c (left) or c op(Q) (right), Q the product of the first `reflectors` reflectors of
  /// householder_qr(q, tau); op(Q) = Q^T if transpose.
  virtual void apply_householder(Side side, bool transpose, View q, View tau, std::int64_t reflectors, View c) = 0;
  /// Cholesky factor of the lower triangle in place (the strict upper triangle untouched): 0, or
  /// the 1-based pivot where it stopped.
  virtual std::int64_t cholesky(View a) = 0;
  /// b := A^-1 b with the factor of cholesky().
  virtual void cholesky_solve(View l, View b) = 0;
  /// The lower triangle's inverse in place; throws on a zero diagonal element.
  virtual void triangular_inverse(View l) = 0;
  /// x := op(L) x, L the lower triangle of l (non-unit, the strict upper triangle not read),
  /// op(L) = L^T if transpose.
  virtual void lower_triangular_multiply(View l, bool transpose, View x) = 0;
  /// x := U^-1 x, U the upper triangle of u (non-unit).
  virtual void upper_triangular_solve(View u, View x) = 0;
  /// Cholesky with complete pivoting of the upper triangle (LAPACK dpstrf): the permutation
  /// (0-based) and the rank at relative tolerance tol.
  virtual std::vector<std::int64_t> pivoted_cholesky(View a, double tol, std::int64_t& rank) = 0;
  /// Eigenvalues (ascending) and eigenvectors of the lower triangle; a is replaced by the
  /// eigenvectors (columns).
  virtual std::vector<double> eigen(View a) = 0;
  /// Bunch-Kaufman factorisation of the lower triangle in place (the strict upper triangle untouched).
  virtual Pivots ldlt(View a) = 0;
  /// b := A^-1 b (b may hold several columns) with the factor of ldlt().
  virtual void ldlt_solve(View a, const Pivots& pivots, View b) = 0;
  /// The diagonal of A^-1 from the factor of ldlt() (the factor is left as it is).
  virtual std::vector<double> ldlt_inverse_diagonal(View a, const Pivots& pivots) = 0;
  /// y := alpha op(a) x + beta y.
  virtual void gemv(bool transpose, double alpha, View a, View x, double beta, View y) = 0;
  /// pede's Gauss-Jordan sweeps (pivoted_sweep.hpp) in place.
  virtual SweepOutcome sweep(View a, double limit, SweepOrder order) = 0;
};

/// An engine whose matrices are spread over several processes (each call collective: every
/// process makes it, with the same arguments, and gets the same host results), with what the
/// solver needs beyond Engine to build the global matrix there.
class DistributedEngine : public Engine {
 public:
  /// The process grid.
  virtual int grid_rows() const = 0;
  virtual int grid_cols() const = 0;
  /// to (a whole n x n matrix of this engine) := the sum over the processes of each one's full
  /// n x n matrix `full` (column-major, in its host memory).
  virtual void sum_full_matrices(const double* full, std::int64_t n, View to) = 0;
  /// a(r, c) += v and a(c, r) += v (once where r == c) for each (r, c, v).
  virtual void add_elements(View a, const std::vector<std::int64_t>& rows, const std::vector<std::int64_t>& cols,
                            const std::vector<double>& values) = 0;
};

/// The LAPACK engine in host memory.
std::unique_ptr<Engine> make_cpu_engine();
/// The cuSOLVER engine on a stream of its own, on the current CUDA device. Throws RuntimeError
/// where gpede was built without CUDA or no device can be used.
std::unique_ptr<Engine> make_cuda_engine();
/// A matrix of `engine` holding the host values (rows x cols, column-major).
inline Matrix upload_matrix(Engine& engine, const std::vector<double>& values, std::int64_t rows, std::int64_t cols) {
  Matrix m = engine.allocate(rows, cols);
  engine.upload(values, m.view());
  return m;
}
/// A matrix of the CPU engine that takes over `values` (rows x cols, column-major) without a copy.
Matrix adopt_host_matrix(std::vector<double>&& values, std::int64_t rows, std::int64_t cols);

}  // namespace gpede::detail::linalg
