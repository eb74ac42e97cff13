// Packed storage of the global matrix for the exact methods on the CPU: the lower triangle in
// LAPACK's rectangular full packed format (RFP; n(n+1)/2 doubles, half of full storage), which
// LAPACK factorises and inverts at level-3 speed (dpftrf, dtftri). PackedMatrix is where a
// building pass adds the records; PackedSolution solves with it by decomposition or inversion.
//
// Constraints (elimination or multipliers: the same solution and covariance) are applied in
// range-space form on an augmented matrix, so that nothing of size n^2 is needed beside it:
//   H = C + A^T W A   (W diagonal, w_k = sum_i a_ki^2 C_ii / |a_k|^4: the constrained direction
//                      of constraint k gets the mean curvature of its parameters),
// which is positive definite wherever C is positive definite on the constraint surface. The step
// that minimises dp.C.dp/2 - b.dp subject to A dp = r is then
//   y = H^-1 (b + A^T W r),  S = A H^-1 A^T,  mu = S^-1 (A y - r),  dp = y - H^-1 A^T mu,
// and the covariance (the top-left block of the bordered inverse, equal to the reduced inverse
// mapped back) is H^-1 - Z S^-1 Z^T with Z = H^-1 A^T.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gpede/detail/backend.hpp"
#include "gpede/kernels/local_fit.hpp"

namespace gpede::detail {

/// Where element (i, j), i >= j, of a symmetric n x n matrix lies in the RFP array of its lower
/// triangle (TRANSR = 'N', UPLO = 'L'). With k = ceil(n/2): columns j < k (the triangle T1 and the
/// rectangle S below it) are stored as they are; the trailing triangle T2 = A(k:n, k:n) is stored
/// transposed above T1.
struct RfpLayout {
  std::int64_t n = 0;
  std::int64_t k = 0;    ///< columns of the first part: (n + 1) / 2
  std::int64_t ld = 0;   ///< leading dimension of the RFP array: n + 1 for even n, n for odd n
  std::int64_t t1 = 0;   ///< offset of T1(0, 0) (S(0, 0) at t1 + k)
  std::int64_t t2 = 0;   ///< offset of T2(0, 0), stored as the upper triangle of T2^T

  explicit RfpLayout(std::int64_t size = 0)
      : n(size), k((size + 1) / 2), ld(size % 2 == 0 ? size + 1 : size), t1(size % 2 == 0 ? 1 : 0),
        t2(size % 2 == 0 ? 0 : size) {}
  std::size_t size() const { return static_cast<std::size_t>(n) * static_cast<std::size_t>(n + 1) / 2; }
  /// i >= j.
  std::int64_t offset(std::int64_t i, std::int64_t j) const {
    return j < k ? t1 + i + j * ld : t2 + (j - k) + (i - k) * ld;
  }
};

class PackedMatrix {
 public:
  PackedMatrix() = default;
  /// n x n zeros.
  explicit PackedMatrix(std::int64_t n) { reset(n); }

  std::int64_t n() const { return m_layout.n; }
  const RfpLayout& layout() const { return m_layout; }
  std::size_t bytes() const { return m_values.size() * sizeof(double); }
  std::vector<double>& values() { return m_values; }
  const std::vector<double>& values() const { return m_values; }
  /// Zeros for n x n (allocated where the size changed or the values were taken).
  void reset(std::int64_t n);

  /// Adds a record's contribution (the lower triangle of its K x K block) into `target`, an RFP
  /// array of this size (the matrix's own or a thread's partial sums). `shared`: other threads add
  /// into the same target at the same time (each column or row of T2 is then added under a lock).
  void add(const kernels::GlobalContribution& c, double* target, bool shared) const;
  /// Adds `value` at (row, col), either triangle.
  void add_element(std::int64_t row, std::int64_t col, double value);
  double at(std::int64_t row, std::int64_t col) const;
  std::vector<double> diagonal() const;
  /// Indices of the rows or columns that hold a non-finite value, ascending.
  std::vector<std::int64_t> nonfinite_rows() const;

 private:
  static constexpr std::size_t kStripes = 4096;
  // A spin lock held for one column's (or row's) adds.
  class StripeLock {
   public:
    explicit StripeLock(std::atomic<bool>* flag) : m_flag(flag) {
      if (m_flag == nullptr) return;
      while (m_flag->exchange(true, std::memory_order_acquire)) {
        while (m_flag->load(std::memory_order_relaxed)) {
        }
      }
    }
    ~StripeLock() {
      if (m_flag != nullptr) m_flag->store(false, std::memory_order_release);
    }
    StripeLock(const StripeLock&) = delete;
    StripeLock& operator=(const StripeLock&) = delete;

   private:
    std::atomic<bool>* m_flag;
  };

  RfpLayout m_layout;
  std::vector<double> m_values;
  // Column j < k (and row i >= k of T2) is guarded by lock j (i) modulo kStripes.
  // Made by reset() and the sized constructor.
  mutable std::unique_ptr<std::atomic<bool>[]> m_locks;
};

/// x := op(L) x for the lower triangle L held in RFP (op(L) = L^T if transpose): two triangular
/// products and one rectangular one (BLAS).
void rfp_lower_multiply(const RfpLayout& layout, const double* a, bool transpose, double* x);

class PackedSolution {
 public:
  /// Factorises the matrix (consumed) by options.method, inversion or decomposition; throws
  /// RuntimeError for another method. The report follows DenseSolution's: ok == false, solvable ==
  /// false, with the pivots (variable indices) or the dependent constraints, where the matrix is not
  /// positive definite on the constraint surface or the constraints are dependent. pede's solution
  /// of a singular matrix (FactorOptions::solve_singular) needs full storage: the report says so.
  /// Memory beside the matrix: 2 n x m (A^T W^1/2, then Z) and m x m.
  FactorReport factorize(PackedMatrix matrix, const ConstraintSystem& constraints, const FactorOptions& options);
  /// As DenseSolution::solve.
  std::vector<double> solve(const std::vector<double>& b, const std::vector<double>& residual = {}) const;
  /// Diagonal of the covariance (inversion with want_covariance), else empty.
  std::vector<double> covariance_diagonal() const { return m_cov_diag; }
  void release() { *this = PackedSolution(); }

 private:
  enum class Kind { none, cholesky, cholesky_inverse };
  static void check_info(int info);
  // y := H^-1 y (one right-hand side).
  void solve_augmented(std::vector<double>& y) const;

  Kind m_kind = Kind::none;
  RfpLayout m_layout;
  std::vector<double> m_factor;        // RFP: L (cholesky) or X = L^-1 (cholesky_inverse)
  std::int64_t m_m = 0;
  std::vector<double> m_a;             // A, row-major m x n (the columns of A^T)
  std::vector<double> m_weight;        // W
  std::vector<double> m_z;             // Z = H^-1 A^T, n x m column-major
  std::vector<double> m_s;             // Cholesky factor of S = A Z (lower, m x m)
  std::vector<double> m_cov_diag;
};

}  // namespace gpede::detail
