// Packed (RFP) storage of the global matrix and its solution by decomposition or inversion
// (packed_solution.hpp).
#include "gpede/detail/packed_solution.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cmath>
#include <memory>
#include <string>
#include <utility>

#include "gpede/detail/dense_solution.hpp"
#include "gpede/detail/factor_report_text.hpp"
#include "gpede/detail/host_memory.hpp"
#include "gpede/detail/linalg.hpp"
#include "gpede/error.hpp"

extern "C" {
void dpftrf_(const char* transr, const char* uplo, const int* n, double* a, int* info, std::size_t, std::size_t);
void dpftrs_(const char* transr, const char* uplo, const int* n, const int* nrhs, const double* a, double* b,
             const int* ldb, int* info, std::size_t, std::size_t);
void dtftri_(const char* transr, const char* uplo, const char* diag, const int* n, double* a, int* info, std::size_t,
             std::size_t, std::size_t);
void dsfrk_(const char* transr, const char* uplo, const char* trans, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* beta, double* c, std::size_t, std::size_t, std::size_t);
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, std::size_t);
void dpotrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* lda, double* b,
             const int* ldb, int* info, std::size_t);
void dtrsm_(const char* side, const char* uplo, const char* transa, const char* diag, const int* m, const int* n,
            const double* alpha, const double* a, const int* lda, double* b, const int* ldb, std::size_t, std::size_t,
            std::size_t, std::size_t);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc, std::size_t, std::size_t);
void dgemv_(const char* trans, const int* m, const int* n, const double* alpha, const double* a, const int* lda,
            const double* x, const int* incx, const double* beta, double* y, const int* incy, std::size_t);
void dtrmv_(const char* uplo, const char* trans, const char* diag, const int* n, const double* a, const int* lda,
            double* x, const int* incx, std::size_t, std::size_t, std::size_t);
}

namespace gpede::detail {
namespace {

int blas_int(std::int64_t value, const char* what) {
  if (value > INT_MAX) {
    throw RuntimeError(std::string("packed storage: ") + what + " " + std::to_string(value) +
                       " exceeds the LAPACK integer range");
  }
  return static_cast<int>(std::max<std::int64_t>(value, 0));
}

// f(i, j, position) for every element i >= j of the lower triangle, in storage order.
template <class F>
void for_each_element(const RfpLayout& l, F&& f) {
  for (std::int64_t j = 0; j < l.k; ++j) {
    const std::int64_t column = l.t1 + j * l.ld;
    for (std::int64_t i = j; i < l.n; ++i) f(i, j, column + i);
  }
  for (std::int64_t i = l.k; i < l.n; ++i) {
    const std::int64_t row = l.t2 + (i - l.k) * l.ld - l.k;
    for (std::int64_t j = l.k; j <= i; ++j) f(i, j, row + j);
  }
}

}  // namespace

// ---- PackedMatrix ----------------------------------------------------------------------------------

void PackedMatrix::reset(std::int64_t n) {
  if (!m_locks) m_locks = std::make_unique<std::atomic<bool>[]>(kStripes);
  const RfpLayout layout(n);
  if (m_layout.n != n || m_values.size() != layout.size()) {
    m_values = std::vector<double>();
    m_layout = layout;
    m_values.reserve(layout.size());
    // Huge pages for the untouched memory, before the zeros touch it: the trailing triangle's
    // columns have a stride of n + 1 doubles, one small page per element otherwise.
    const std::uintptr_t page = 2u << 20;
    const auto begin = reinterpret_cast<std::uintptr_t>(m_values.data());
    const std::uintptr_t first = (begin + page - 1) / page * page;
    const std::uintptr_t last = (begin + layout.size() * sizeof(double)) / page * page;
    if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
    m_values.assign(layout.size(), 0.0);
    return;
  }
  std::fill(m_values.begin(), m_values.end(), 0.0);
}

void PackedMatrix::add(const kernels::GlobalContribution& c, double* target, bool shared) const {
  const RfpLayout& l = m_layout;
  const std::int32_t size = c.size;
  // The record's globals before and from k (indices ascending): columns j < k are contiguous in i
  // (T1 and S); the trailing triangle T2 is stored by rows, so that part goes row by row. Shared
  // targets take a column's (a row's) lock around its adds: plain adds, whose cache misses overlap,
  // where atomic ones would wait for each line in turn.
  std::int32_t split = 0;
  while (split < size && c.index[split] < l.k) ++split;
  for (std::int32_t b = 0; b < split; ++b) {
    const double* from = c.matrix + static_cast<std::int64_t>(b) * size;
    double* column = target + l.t1 + static_cast<std::int64_t>(c.index[b]) * l.ld;
    StripeLock lock(shared ? &m_locks[static_cast<std::size_t>(c.index[b]) % kStripes] : nullptr);
    for (std::int32_t a = b; a < size; ++a) column[c.index[a]] += from[a];
  }
  for (std::int32_t a = split; a < size; ++a) {
    double* row = target + l.t2 + (static_cast<std::int64_t>(c.index[a]) - l.k) * l.ld - l.k;
    StripeLock lock(shared ? &m_locks[static_cast<std::size_t>(c.index[a]) % kStripes] : nullptr);
    for (std::int32_t b = split; b <= a; ++b) row[c.index[b]] += c.matrix[static_cast<std::int64_t>(b) * size + a];
  }
}

void PackedMatrix::add_element(std::int64_t row, std::int64_t col, double value) {
  const std::int64_t i = std::max(row, col), j = std::min(row, col);
  if (j < 0 || i >= n()) {
    throw RuntimeError("packed storage: element (" + std::to_string(row) + ", " + std::to_string(col) +
                       ") outside the " + std::to_string(n()) + " x " + std::to_string(n()) + " matrix");
  }
  m_values[static_cast<std::size_t>(m_layout.offset(i, j))] += value;
}

double PackedMatrix::at(std::int64_t row, std::int64_t col) const {
  return m_values[static_cast<std::size_t>(m_layout.offset(std::max(row, col), std::min(row, col)))];
}

std::vector<double> PackedMatrix::diagonal() const {
  std::vector<double> d(static_cast<std::size_t>(n()));
  for (std::int64_t i = 0; i < n(); ++i) d[i] = m_values[static_cast<std::size_t>(m_layout.offset(i, i))];
  return d;
}

std::vector<std::int64_t> PackedMatrix::nonfinite_rows() const {
  std::vector<char> bad(static_cast<std::size_t>(n()), 0);
  bool any = false;
  for_each_element(m_layout, [&](std::int64_t i, std::int64_t j, std::int64_t p) {
    if (!std::isfinite(m_values[static_cast<std::size_t>(p)])) {
      bad[i] = bad[j] = 1;
      any = true;
    }
  });
  std::vector<std::int64_t> rows;
  if (!any) return rows;
  for (std::int64_t i = 0; i < n(); ++i) {
    if (bad[i]) rows.push_back(i);
  }
  return rows;
}

void rfp_lower_multiply(const RfpLayout& l, const double* a, bool transpose, double* x) {
  const int k = blas_int(l.k, "order"), n2 = blas_int(l.n - l.k, "order"), ld = blas_int(l.ld, "leading dimension");
  const int one = 1;
  const double unit = 1.0;
  const double* t1 = a + l.t1;
  const double* s = a + l.t1 + l.k;
  const double* t2 = a + l.t2;  // T2^T, upper
  double* x1 = x;
  double* x2 = x + l.k;
  if (l.n == 0) return;
  if (!transpose) {
    // [y1; y2] = [T1 0; S T2] [x1; x2]
    if (n2 > 0) {
      dtrmv_("U", "T", "N", &n2, t2, &ld, x2, &one, 1, 1, 1);
      dgemv_("N", &n2, &k, &unit, s, &ld, x1, &one, &unit, x2, &one, 1);
    }
    dtrmv_("L", "N", "N", &k, t1, &ld, x1, &one, 1, 1, 1);
  } else {
    // [y1; y2] = [T1^T S^T; 0 T2^T] [x1; x2]
    dtrmv_("L", "T", "N", &k, t1, &ld, x1, &one, 1, 1, 1);
    if (n2 > 0) {
      dgemv_("T", &n2, &k, &unit, s, &ld, x2, &one, &unit, x1, &one, 1);
      dtrmv_("U", "N", "N", &n2, t2, &ld, x2, &one, 1, 1, 1);
    }
  }
}

// ---- PackedSolution --------------------------------------------------------------------------------

FactorReport PackedSolution::factorize(PackedMatrix matrix, const ConstraintSystem& constraints,
                                       const FactorOptions& options) {
  release();
  const std::int64_t n = matrix.n();
  const std::int64_t m = constraints.m;
  if (m < 0 || (m > 0 && (constraints.n != n || constraints.a.size() != static_cast<std::size_t>(m * n)))) {
    throw RuntimeError("packed storage: inconsistent sizes (matrix of " + std::to_string(n) + ", constraints " +
                       std::to_string(m) + " x " + std::to_string(constraints.n) + ")");
  }
  if (!packed_storage_method(options.method)) {
    throw RuntimeError(std::string("packed storage: method ") + method_name(options.method) +
                       " needs the full or sparse matrix (packed storage has inversion and decomposition)");
  }
  const std::vector<double> diagonal = matrix.diagonal();
  FactorReport report;
  check_global_system(matrix.nonfinite_rows(), diagonal, constraints, options, report);
  if (!report.ok) {
    if (report.solvable) {
      report.message += "; pede's solution without them (its sweeps) needs full storage";
      report.solvable = false;
    }
    return report;
  }
  const std::size_t nn = static_cast<std::size_t>(n);
  const std::size_t mm = static_cast<std::size_t>(m);
  const int n_int = blas_int(n, "order");
  const int m_int = blas_int(m, "constraint count");
  m_layout = matrix.layout();
  m_factor = std::move(matrix.values());

  // ---- constraints: pede's rank test, then H = C + A^T W A ----------------------------------------
  std::vector<double> scaled;  // A^T W^1/2, n x m; then Z
  if (m > 0) {
    const std::unique_ptr<linalg::Engine> engine = linalg::make_cpu_engine();
    ConstraintQr qr = constraint_qr(*engine, constraints);
    if (!check_constraint_rank(qr.r, n, m, report)) {
      release();
      return report;
    }
    const std::vector<double> row_norm = std::move(qr.row_norm);
    qr = ConstraintQr();  // the reflectors (n x m) are not needed here
    m_m = m;
    m_a = constraints.a;
    m_weight.assign(mm, 0.0);
    scaled.assign(nn * mm, 0.0);
    for (std::int64_t r = 0; r < m; ++r) {
      const double norm2 = row_norm[r] * row_norm[r];
      double curvature = 0.0;
      for (std::int64_t j = 0; j < n; ++j) {
        const double a = constraints.a[r * n + j];
        curvature += a * a * std::max(diagonal[j], 0.0);
      }
      // The constrained direction a_r / |a_r| gets curvature w |a_r|^2 = mean C_jj over a_r.
      const double w = curvature > 0.0 ? curvature / (norm2 * norm2) : 1.0 / norm2;
      m_weight[r] = w;
      const double root = std::sqrt(w);
      for (std::int64_t j = 0; j < n; ++j) scaled[j + r * nn] = constraints.a[r * n + j] * root;
    }
    const double unit = 1.0;
    dsfrk_("N", "L", "N", &n_int, &m_int, &unit, scaled.data(), &n_int, &unit, m_factor.data(), 1, 1, 1);
  }
  const std::vector<double> augmented_diagonal = [&] {
    std::vector<double> d(nn);
    for (std::int64_t i = 0; i < n; ++i) d[i] = m_factor[static_cast<std::size_t>(m_layout.offset(i, i))];
    return d;
  }();

  // ---- Cholesky ------------------------------------------------------------------------------------
  int info = 0;
  if (n > 0) dpftrf_("N", "L", &n_int, m_factor.data(), &info, 1, 1);
  check_info(info);
  std::vector<std::int64_t> bad;
  if (info > 0) {
    bad.push_back(info - 1);
  } else {
    const double tolerance = pivot_tolerance(n);
    for (std::int64_t i = 0; i < n; ++i) {
      const double l = m_factor[static_cast<std::size_t>(m_layout.offset(i, i))];
      if (!(l * l > tolerance * augmented_diagonal[i])) bad.push_back(i);
    }
  }
  if (!bad.empty()) {
    report.ok = false;
    report.solvable = false;
    report.weak_indices = bad;
    report.message = std::string("the global matrix is not positive definite") + (m > 0 ? " on the constraint surface" : "") +
                     " (packed storage, its Cholesky factor): " +
                     (info > 0 ? "pivot " + std::to_string(info) + " of " + std::to_string(n) + " is not positive"
                               : count_text(static_cast<std::int64_t>(bad.size()), "pivot") + " below " +
                                     "the relative tolerance") +
                     "; pede's solution of a singular matrix (its sweeps) needs full storage";
    release();
    return report;
  }

  // ---- Z = H^-1 A^T, S = A Z -----------------------------------------------------------------------
  if (m > 0) {
    for (std::int64_t r = 0; r < m; ++r) {
      for (std::int64_t j = 0; j < n; ++j) scaled[j + r * nn] = constraints.a[r * n + j];
    }
    dpftrs_("N", "L", &n_int, &m_int, m_factor.data(), scaled.data(), &n_int, &info, 1, 1);
    check_info(info);
    m_z = std::move(scaled);
    m_s.assign(mm * mm, 0.0);
    const double unit = 1.0, zero = 0.0;
    // S = (A^T)^T Z, A^T being A's row-major values read column-major.
    dgemm_("T", "N", &m_int, &m_int, &n_int, &unit, m_a.data(), &n_int, m_z.data(), &n_int, &zero, m_s.data(), &m_int,
           1, 1);
    dpotrf_("L", &m_int, m_s.data(), &m_int, &info, 1);
    check_info(info);
    if (info > 0) {
      report.ok = false;
      report.solvable = false;
      report.dependent_constraints.push_back(info - 1);
      report.message = "the constraints are linearly dependent on the constraint surface of the global matrix: "
                       "constraint #" + std::to_string(info) + " (packed storage, A H^-1 A^T not positive definite)";
      release();
      return report;
    }
  }

  // ---- inversion: X = L^-1 in place; the covariance's diagonal -------------------------------------
  m_kind = Kind::cholesky;
  if (options.method == Method::inversion) {
    if (n > 0) dtftri_("N", "L", "N", &n_int, m_factor.data(), &info, 1, 1, 1);
    check_info(info);
    if (info > 0) throw RuntimeError("packed storage: zero diagonal element " + std::to_string(info) + " of the factor");
    m_kind = Kind::cholesky_inverse;
    if (options.want_covariance) {
      // diag(H^-1)_j = sum_i X_ij^2
      m_cov_diag.assign(nn, 0.0);
      for_each_element(m_layout, [&](std::int64_t, std::int64_t j, std::int64_t p) {
        const double x = m_factor[static_cast<std::size_t>(p)];
        m_cov_diag[j] += x * x;
      });
      if (m > 0) {
        // minus diag(Z S^-1 Z^T) = the rows' squares of Z L_S^-T, in blocks of rows
        constexpr std::int64_t block = 2048;
        std::vector<double> t;
        for (std::int64_t i0 = 0; i0 < n; i0 += block) {
          const std::int64_t rows = std::min(block, n - i0);
          t.assign(static_cast<std::size_t>(rows) * mm, 0.0);
          for (std::int64_t r = 0; r < m; ++r) {
            std::copy_n(m_z.data() + i0 + r * nn, rows, t.data() + r * rows);
          }
          const int rows_int = static_cast<int>(rows);
          const double unit = 1.0;
          dtrsm_("R", "L", "T", "N", &rows_int, &m_int, &unit, m_s.data(), &m_int, t.data(), &rows_int, 1, 1, 1, 1);
          for (std::int64_t r = 0; r < m; ++r) {
            for (std::int64_t i = 0; i < rows; ++i) m_cov_diag[i0 + i] -= t[i + r * rows] * t[i + r * rows];
          }
        }
      }
    }
  }
  return report;
}

void PackedSolution::check_info(int info) {
  if (info < 0) throw RuntimeError("packed storage: LAPACK argument " + std::to_string(-info) + " is illegal");
}

void PackedSolution::solve_augmented(std::vector<double>& y) const {
  const int n_int = static_cast<int>(m_layout.n);
  if (m_layout.n == 0) return;
  if (m_kind == Kind::cholesky_inverse) {
    rfp_lower_multiply(m_layout, m_factor.data(), false, y.data());  // X y
    rfp_lower_multiply(m_layout, m_factor.data(), true, y.data());   // X^T X y
    return;
  }
  const int one = 1;
  int info = 0;
  dpftrs_("N", "L", &n_int, &one, m_factor.data(), y.data(), &n_int, &info, 1, 1);
  check_info(info);
}

std::vector<double> PackedSolution::solve(const std::vector<double>& b, const std::vector<double>& residual) const {
  const std::int64_t n = m_layout.n;
  const std::int64_t m = m_m;
  if (m_kind == Kind::none) throw RuntimeError("packed storage: solve without a successful factorisation");
  if (static_cast<std::int64_t>(b.size()) != n || (!residual.empty() && static_cast<std::int64_t>(residual.size()) != m)) {
    throw RuntimeError("packed storage: solve with vectors of the wrong size");
  }
  // y = H^-1 (b + A^T W r)
  std::vector<double> y = b;
  if (!residual.empty()) {
    for (std::int64_t r = 0; r < m; ++r) {
      const double f = m_weight[r] * residual[r];
      if (f == 0.0) continue;
      for (std::int64_t j = 0; j < n; ++j) y[j] += m_a[r * n + j] * f;
    }
  }
  solve_augmented(y);
  if (m == 0) return y;
  // mu = S^-1 (A y - r); dp = y - Z mu
  std::vector<double> mu(static_cast<std::size_t>(m), 0.0);
  for (std::int64_t r = 0; r < m; ++r) {
    double s = 0.0;
    for (std::int64_t j = 0; j < n; ++j) s += m_a[r * n + j] * y[j];
    mu[r] = s - (residual.empty() ? 0.0 : residual[r]);
  }
  const int m_int = static_cast<int>(m), one = 1;
  int info = 0;
  dpotrs_("L", &m_int, &one, m_s.data(), &m_int, mu.data(), &m_int, &info, 1);
  check_info(info);
  const std::size_t nn = static_cast<std::size_t>(n);
  for (std::int64_t r = 0; r < m; ++r) {
    const double f = mu[r];
    const double* z = m_z.data() + r * nn;
    for (std::int64_t j = 0; j < n; ++j) y[j] -= z[j] * f;
  }
  return y;
}

}  // namespace gpede::detail
