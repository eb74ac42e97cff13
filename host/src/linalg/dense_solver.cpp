// Dense solution of the global system on the CPU with LAPACK (OpenBLAS), blocked routines only.
//
// Elimination: Householder QR of A^T = Q R (dgeqrf); Q^T C Q (dormqr from both sides); the
// trailing (n-m) x (n-m) block is the reduced matrix Q2^T C Q2 on the null space of A. A step is
// dp = Q2 y with (Q2^T C Q2) y = Q2^T b, so A dp = 0; the covariance is Q2 (Q2^T C Q2)^-1 Q2^T.
// Multipliers: the bordered matrix [[C, A^T], [A, 0]], scaled symmetrically by powers of two (so
// that the scaling is exact): Bunch-Kaufman (dsytrf) for decomposition and inversion, dsyevr for
// diagonalization. The covariance is the top-left n x n block of the bordered inverse.
//
// Failures are results: zero (or negative) diagonal elements of parameters outside all
// constraints are found before any O(n^3) work; a failed or near-singular Cholesky factor is
// analysed with a pivoted Cholesky (dpstrf) whose near-null vectors name the weak parameters;
// near-zero Bunch-Kaufman pivots with a few steps of inverse iteration; eigenvalues at the
// rounding level by their eigenvectors.
#include "gpede/detail/dense_solver.hpp"
#include "gpede/detail/factor_report_text.hpp"
#include "gpede/detail/pivoted_sweep.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <utility>

#include "gpede/error.hpp"

extern "C" {
// LAPACK and BLAS (Fortran calling convention; trailing arguments are the hidden lengths of the
// character arguments).
void dgeqrf_(const int* m, const int* n, double* a, const int* lda, double* tau, double* work, const int* lwork,
             int* info);
void dormqr_(const char* side, const char* trans, const int* m, const int* n, const int* k, const double* a,
             const int* lda, const double* tau, double* c, const int* ldc, double* work, const int* lwork, int* info,
             std::size_t, std::size_t);
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, std::size_t);
void dpotrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* lda, double* b,
             const int* ldb, int* info, std::size_t);
void dtrtri_(const char* uplo, const char* diag, const int* n, double* a, const int* lda, int* info, std::size_t,
             std::size_t);
void dpstrf_(const char* uplo, const int* n, double* a, const int* lda, int* piv, int* rank, const double* tol,
             double* work, int* info, std::size_t);
void dsytrf_(const char* uplo, const int* n, double* a, const int* lda, int* ipiv, double* work, const int* lwork,
             int* info, std::size_t);
void dsytrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* lda, const int* ipiv,
             double* b, const int* ldb, int* info, std::size_t);
void dsytri2_(const char* uplo, const int* n, double* a, const int* lda, const int* ipiv, double* work,
              const int* lwork, int* info, std::size_t);
void dsyevr_(const char* jobz, const char* range, const char* uplo, const int* n, double* a, const int* lda,
             const double* vl, const double* vu, const int* il, const int* iu, const double* abstol, int* m,
             double* w, double* z, const int* ldz, int* isuppz, double* work, const int* lwork, int* iwork,
             const int* liwork, int* info, std::size_t, std::size_t, std::size_t);
void dgemv_(const char* trans, const int* m, const int* n, const double* alpha, const double* a, const int* lda,
            const double* x, const int* incx, const double* beta, double* y, const int* incy, std::size_t);
void dtrsv_(const char* uplo, const char* trans, const char* diag, const int* n, const double* a, const int* lda,
            double* x, const int* incx, std::size_t, std::size_t, std::size_t);
}

namespace gpede::detail {
namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();
// A constraint (rows normalised to 1) counts as dependent on the earlier ones when its component
// orthogonal to them is below 4 sqrt(eps): pede's pivot test on A A^T (16 eps relative) in terms of R.
const double kConstraintRankTolerance = 4.0 * std::sqrt(kEps);
// Null vectors analysed at most per failure (each costs O(n^2)).
constexpr std::int64_t kMaxWeakModes = 32;

// Relative pivot tolerance: a Cholesky pivot L_kk^2 below tol * C_kk (or a pivot block of the
// equilibrated bordered matrix below tol) counts as zero: pede's 16 eps relative pivot test of
// its inversion, widened by sqrt(n) for the rounding of long dot products.
double pivot_tolerance(std::int64_t n) {
  return 64.0 * kEps * std::sqrt(static_cast<double>(std::max<std::int64_t>(n, 1)));
}

int lapack_size(std::int64_t value) {
  if (value > INT_MAX) {
    throw RuntimeError("dense solver: dimension " + std::to_string(value) + " exceeds the LAPACK integer range");
  }
  return static_cast<int>(value);
}

void check_info(int info, const char* routine) {
  if (info < 0) throw RuntimeError(std::string("LAPACK ") + routine + ": argument " + std::to_string(-info) + " is illegal");
}

int workspace_size(double query) { return std::max(1, static_cast<int>(query) + 1); }

// c := op(Q) c (side 'L') or c op(Q) (side 'R'), Q from the k Householder vectors in q (ld ldq).
void apply_q(char side, char trans, std::int64_t rows, std::int64_t cols, std::int64_t k, const double* q,
             std::int64_t ldq, const double* tau, double* c, std::int64_t ldc) {
  if (rows == 0 || cols == 0 || k == 0) return;
  const int m = lapack_size(rows), n = lapack_size(cols), kk = lapack_size(k), lda = lapack_size(ldq),
            ld = lapack_size(ldc);
  int info = 0, lwork = -1;
  double query = 0.0;
  dormqr_(&side, &trans, &m, &n, &kk, q, &lda, tau, c, &ld, &query, &lwork, &info, 1, 1);
  check_info(info, "dormqr");
  lwork = workspace_size(query);
  std::vector<double> work(static_cast<std::size_t>(lwork));
  dormqr_(&side, &trans, &m, &n, &kk, q, &lda, tau, c, &ld, work.data(), &lwork, &info, 1, 1);
  check_info(info, "dormqr");
}

// Eigen-decomposition (all pairs, ascending) of the lower triangle of the n x n matrix a (ld lda),
// which is destroyed; eigenvectors into z (ld ldz).
std::vector<double> eigen_decomposition(std::int64_t n, double* a, std::int64_t lda, double* z, std::int64_t ldz) {
  const int nn = lapack_size(n), la = lapack_size(lda), lz = lapack_size(ldz);
  const char jobz = 'V', range = 'A', uplo = 'L';
  const double none = 0.0, abstol = std::numeric_limits<double>::min();
  const int inone = 0;
  int found = 0, info = 0, lwork = -1, liwork = -1, iquery = 0;
  double query = 0.0;
  std::vector<double> w(static_cast<std::size_t>(n));
  std::vector<int> isuppz(2 * static_cast<std::size_t>(n));
  dsyevr_(&jobz, &range, &uplo, &nn, a, &la, &none, &none, &inone, &inone, &abstol, &found, w.data(), z, &lz,
          isuppz.data(), &query, &lwork, &iquery, &liwork, &info, 1, 1, 1);
  check_info(info, "dsyevr");
  lwork = workspace_size(query);
  liwork = std::max(1, iquery);
  std::vector<double> work(static_cast<std::size_t>(lwork));
  std::vector<int> iwork(static_cast<std::size_t>(liwork));
  dsyevr_(&jobz, &range, &uplo, &nn, a, &la, &none, &none, &inone, &inone, &abstol, &found, w.data(), z, &lz,
          isuppz.data(), work.data(), &lwork, iwork.data(), &liwork, &info, 1, 1, 1);
  check_info(info, "dsyevr");
  if (info > 0) throw RuntimeError("LAPACK dsyevr: the eigen-decomposition did not converge (info " + std::to_string(info) + ")");
  return w;
}

// Power of two nearest to x > 0.
double nearest_power_of_two(double x) { return std::ldexp(1.0, static_cast<int>(std::lround(std::log2(x)))); }

}  // namespace

void DenseSolver::reset() {
  m_kind = Kind::none;
  m_n = 0;
  m_m = 0;
  m_eliminated = 0;
  m_options = FactorOptions{};
  m_factor.clear();
  m_factor.shrink_to_fit();
  m_inverse_eigenvalues.clear();
  m_q.clear();
  m_tau.clear();
  m_pivots.clear();
  m_scale.clear();
  m_row_norm.clear();
  m_cross.clear();
  m_swept.clear();
  m_swept.shrink_to_fit();
  m_cov_diag.clear();
}

FactorReport DenseSolver::factorize(std::vector<double> matrix, std::int64_t n, const ConstraintSystem& constraints,
                                    const FactorOptions& options) {
  reset();
  const std::int64_t m = constraints.m;
  if (n < 0 || m < 0 || matrix.size() != static_cast<std::size_t>(n) * static_cast<std::size_t>(n) ||
      (m > 0 && (constraints.n != n || constraints.a.size() != static_cast<std::size_t>(m * n)))) {
    throw RuntimeError("dense solver: inconsistent sizes (matrix " + std::to_string(matrix.size()) + " for n = " +
                       std::to_string(n) + ", constraints " + std::to_string(m) + " x " +
                       std::to_string(constraints.n) + " with " + std::to_string(constraints.a.size()) + " values)");
  }
  m_n = n;
  m_m = m;
  m_options = options;
  const bool eigen = options.method == Method::diagonalization;
  const bool covariance = options.want_covariance && options.method != Method::decomposition;
  const std::size_t nn = static_cast<std::size_t>(n);
  auto c_at = [&](std::int64_t i, std::int64_t j) -> double& { return matrix[i + j * nn]; };
  FactorReport report;

  // ---- cheap checks: non-finite elements; parameters without data outside all constraints -------
  {
    std::vector<char> bad_row(nn, 0);
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(c_at(i, j))) bad_row[i] = bad_row[j] = 1;
      }
    }
    std::vector<std::int64_t> bad;
    for (std::int64_t i = 0; i < n; ++i) {
      if (bad_row[i]) bad.push_back(i);
    }
    std::int64_t bad_constraint_values = 0;
    for (double v : constraints.a) bad_constraint_values += std::isfinite(v) ? 0 : 1;
    if (!bad.empty() || bad_constraint_values > 0) {
      report.ok = false;
      report.weak_indices = std::move(bad);
      report.message = bad_constraint_values > 0
                           ? "the constraint coefficients contain " + count_text(bad_constraint_values, "non-finite value")
                           : "the global matrix contains non-finite elements in " +
                                 count_text(static_cast<std::int64_t>(report.weak_indices.size()), "row");
      report.solvable = false;
      return report;
    }
  }
  std::vector<char> constrained(nn, 0);
  for (std::int64_t k = 0; k < m; ++k) {
    for (std::int64_t j = 0; j < n; ++j) {
      if (constraints.a[k * n + j] != 0.0) constrained[j] = 1;
    }
  }
  {
    std::vector<std::int64_t> empty;
    for (std::int64_t i = 0; i < n; ++i) {
      if (!constrained[i] && !(c_at(i, i) > 0.0)) empty.push_back(i);
    }
    if (!empty.empty()) {
      report.ok = false;
      report.message = count_text(static_cast<std::int64_t>(empty.size()), "parameter") +
                       " outside all constraints without a positive diagonal element in the global matrix "
                       "(no data and no pre-sigma): the matrix is not positive definite";
      report.weak_indices = std::move(empty);
      // With solve_singular the factorisation below fails and solves without them.
      if (!options.solve_singular) return report;
    }
  }

  // ---- constraints: QR of A^T (rows normalised), rank ------------------------------------------
  if (m > 0) {
    m_q.assign(nn * static_cast<std::size_t>(m), 0.0);
    m_row_norm.assign(static_cast<std::size_t>(m), 0.0);
    for (std::int64_t k = 0; k < m; ++k) {
      double norm2 = 0.0;
      for (std::int64_t j = 0; j < n; ++j) norm2 += constraints.a[k * n + j] * constraints.a[k * n + j];
      m_row_norm[k] = std::sqrt(norm2);
      const double inv = norm2 > 0.0 ? 1.0 / std::sqrt(norm2) : 0.0;
      for (std::int64_t j = 0; j < n; ++j) m_q[j + k * nn] = constraints.a[k * n + j] * inv;
    }
    const std::int64_t reflectors = std::min(n, m);
    m_tau.assign(static_cast<std::size_t>(reflectors), 0.0);
    if (n > 0) {
      const int rows = lapack_size(n), cols = lapack_size(m);
      int info = 0, lwork = -1;
      double query = 0.0;
      dgeqrf_(&rows, &cols, m_q.data(), &rows, m_tau.data(), &query, &lwork, &info);
      check_info(info, "dgeqrf");
      lwork = workspace_size(query);
      std::vector<double> work(static_cast<std::size_t>(lwork));
      dgeqrf_(&rows, &cols, m_q.data(), &rows, m_tau.data(), work.data(), &lwork, &info);
      check_info(info, "dgeqrf");
    }
    for (std::int64_t k = 0; k < m; ++k) {
      if (k >= n || !(std::abs(m_q[k + k * nn]) > kConstraintRankTolerance)) report.dependent_constraints.push_back(k);
    }
    if (!report.dependent_constraints.empty()) {
      report.ok = false;
      std::ostringstream msg;
      msg << "the constraints are linearly dependent: rank " << m - static_cast<std::int64_t>(report.dependent_constraints.size())
          << " for " << m << " constraint equations; dependent on earlier ones (or empty):";
      for (std::int64_t k : report.dependent_constraints) msg << " #" << k + 1;
      report.message = msg.str();
      report.solvable = false;
      m_q.clear();
      m_tau.clear();
      return report;
    }
  }

  // ---- Lagrange multipliers: the bordered system -----------------------------------------------
  if (options.mode == ConstraintMode::multipliers && m > 0) {
    m_q.clear();
    m_tau.clear();
    const std::int64_t nb = n + m;
    const std::size_t ldb = static_cast<std::size_t>(nb);
    // Scaling by powers of two. Bunch-Kaufman: unit diagonal for C and unit rows for A, so that
    // the pivot test is relative. Eigen-decomposition: C unscaled (its spectrum is what pede shows),
    // each constraint row scaled to the size of the diagonal elements it touches; unscaled, the
    // negative eigenvalues are ~ -|a|^2/C and their eigenvectors carry errors of eps |C| / lambda.
    m_scale.assign(ldb, 1.0);
    if (!eigen) {
      for (std::int64_t i = 0; i < n; ++i) {
        if (c_at(i, i) > 0.0) m_scale[i] = 1.0 / nearest_power_of_two(std::sqrt(c_at(i, i)));
      }
    }
    double max_diag = 0.0;
    for (std::int64_t i = 0; i < n; ++i) max_diag = std::max(max_diag, std::abs(c_at(i, i)));
    for (std::int64_t k = 0; k < m; ++k) {
      double norm2 = 0.0, touched = 0.0;
      for (std::int64_t j = 0; j < n; ++j) {
        const double v = constraints.a[k * n + j] * m_scale[j];
        norm2 += v * v;
        if (v != 0.0) touched = std::max(touched, std::abs(c_at(j, j)));
      }
      double target = 1.0;
      if (eigen) target = touched > 0.0 ? touched : (max_diag > 0.0 ? max_diag : 1.0);
      m_scale[n + k] = nearest_power_of_two(target / std::sqrt(norm2));
    }
    std::vector<double> bordered(ldb * ldb, 0.0);
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t i = 0; i < n; ++i) bordered[i + j * ldb] = m_scale[i] * c_at(i, j) * m_scale[j];
    }
    for (std::int64_t k = 0; k < m; ++k) {
      for (std::int64_t j = 0; j < n; ++j) {
        const double v = m_scale[n + k] * constraints.a[k * n + j] * m_scale[j];
        bordered[(n + k) + j * ldb] = v;
        bordered[j + (n + k) * ldb] = v;
      }
    }
    matrix.clear();
    matrix.shrink_to_fit();
    const int nbi = lapack_size(nb);

    if (eigen) {
      std::vector<double> z(ldb * ldb);
      std::vector<double> w = eigen_decomposition(nb, bordered.data(), nb, z.data(), nb);
      bordered.clear();
      bordered.shrink_to_fit();
      double wmax = 0.0;
      for (double v : w) wmax = std::max(wmax, std::abs(v));
      const double tau = static_cast<double>(nb) * kEps * wmax;
      m_inverse_eigenvalues.assign(w.size(), 0.0);
      std::vector<std::int64_t> zero_modes, negative_modes;
      for (std::int64_t k = 0; k < nb; ++k) {
        if (std::abs(w[k]) > tau) {
          m_inverse_eigenvalues[k] = 1.0 / w[k];
          if (w[k] < 0.0) negative_modes.push_back(k);
        } else {
          zero_modes.push_back(k);
        }
      }
      report.rank_defect = static_cast<std::int64_t>(zero_modes.size());
      if (!zero_modes.empty()) {
        report.ok = false;
        report.message = "the bordered matrix (multipliers) is singular: " +
                         count_text(static_cast<std::int64_t>(zero_modes.size()), "eigenvalue") +
                         " of " + std::to_string(nb) + " at the rounding level";
        for (std::int64_t k : zero_modes) add_large_components(&z[k * ldb], n, report.weak_indices);
      } else if (static_cast<std::int64_t>(negative_modes.size()) > m) {
        // A positive definite C on the null space of A gives exactly m negative eigenvalues; the
        // surplus ones are those whose eigenvectors lie most in the parameter space.
        const auto surplus = static_cast<std::int64_t>(negative_modes.size()) - m;
        report.ok = false;
        report.message = "the global matrix is not positive definite on the constraint surface: the bordered "
                         "matrix has " + std::to_string(negative_modes.size()) + " negative eigenvalues for " +
                         std::to_string(m) + " constraints (" + count_text(surplus, "non-positive direction") + ")";
        std::vector<std::pair<double, std::int64_t>> share;
        for (std::int64_t k : negative_modes) {
          double s = 0.0;
          for (std::int64_t i = 0; i < n; ++i) s += z[i + k * ldb] * z[i + k * ldb];
          share.emplace_back(-s, k);
        }
        std::sort(share.begin(), share.end());
        for (std::int64_t t = 0; t < std::min(surplus, kMaxWeakModes); ++t) {
          add_large_components(&z[share[t].second * ldb], n, report.weak_indices);
        }
      }
      sort_unique(report.weak_indices);
      for (std::int64_t k : eve_selection(w, options.eve_count)) {
        report.eigenvectors.emplace_back(k, std::vector<double>(z.begin() + k * ldb, z.begin() + (k + 1) * ldb));
      }
      if (covariance) {
        m_cov_diag.assign(nn, 0.0);
        for (std::int64_t k = 0; k < nb; ++k) {
          const double inv = m_inverse_eigenvalues[k];
          if (inv == 0.0) continue;
          const double* col = &z[k * ldb];
          for (std::int64_t i = 0; i < n; ++i) m_cov_diag[i] += col[i] * col[i] * inv;
        }
      }
      report.eigenvalues = std::move(w);
      m_factor = std::move(z);
      m_kind = Kind::bordered_eigen;
      return report;
    }

    // Bunch-Kaufman
    // dsytrf works on the lower triangle: the upper one and this diagonal restore the matrix for
    // the sweeps of solve_singular.
    std::vector<double> bordered_diag(ldb);
    for (std::int64_t k = 0; k < nb; ++k) bordered_diag[k] = bordered[k + k * ldb];
    std::vector<int> ipiv(ldb);
    {
      int info = 0, lwork = -1;
      double query = 0.0;
      dsytrf_("L", &nbi, bordered.data(), &nbi, ipiv.data(), &query, &lwork, &info, 1);
      check_info(info, "dsytrf");
      lwork = workspace_size(query);
      std::vector<double> work(static_cast<std::size_t>(lwork));
      dsytrf_("L", &nbi, bordered.data(), &nbi, ipiv.data(), work.data(), &lwork, &info, 1);
      check_info(info, "dsytrf");
    }
    // Inertia and near-zero pivots from the 1x1 and 2x2 blocks of D.
    const double tol = pivot_tolerance(nb);
    std::int64_t negative = 0;
    std::vector<std::pair<std::int64_t, int>> tiny;  // (block start, which eigenvalue: 0 lower, 1 upper, -1 1x1)
    for (std::int64_t k = 0; k < nb;) {
      const double a = bordered[k + k * ldb];
      if (ipiv[k] > 0) {
        if (std::abs(a) <= tol) tiny.emplace_back(k, -1);
        else if (a < 0.0) ++negative;
        k += 1;
      } else {
        const double b = bordered[(k + 1) + k * ldb], c = bordered[(k + 1) + (k + 1) * ldb];
        const double mean = 0.5 * (a + c), radius = std::hypot(0.5 * (a - c), b);
        const double lo = mean - radius, hi = mean + radius;
        if (std::abs(lo) <= tol) tiny.emplace_back(k, 0);
        else if (lo < 0.0) ++negative;
        if (std::abs(hi) <= tol) tiny.emplace_back(k, 1);
        else if (hi < 0.0) ++negative;
        k += 2;
      }
    }
    if (!tiny.empty()) {
      report.ok = false;
      report.message = "the bordered matrix (multipliers) is singular: " +
                       count_text(static_cast<std::int64_t>(tiny.size()), "zero pivot") + " of " + std::to_string(nb);
      // Lift the zero pivots to +-tol (rank-one change of the block along its near-null
      // direction) and run inverse iteration: its vectors converge to the near-null space.
      for (const auto& [k, which] : tiny) {
        double& a = bordered[k + k * ldb];
        if (which < 0) {
          a = a < 0.0 ? -tol : tol;
          continue;
        }
        double& b = bordered[(k + 1) + k * ldb];
        double& c = bordered[(k + 1) + (k + 1) * ldb];
        lift_pivot_block(a, b, c, which, tol);
      }
      const std::int64_t modes = std::min<std::int64_t>(static_cast<std::int64_t>(tiny.size()), kMaxWeakModes);
      const int nrhs = static_cast<int>(modes);
      std::vector<double> y(ldb * static_cast<std::size_t>(modes));
      std::mt19937_64 rng(12345);
      std::uniform_real_distribution<double> uniform(-1.0, 1.0);
      for (double& v : y) v = uniform(rng);
      for (int iteration = 0; iteration < 3; ++iteration) {
        int info = 0;
        dsytrs_("L", &nbi, &nrhs, bordered.data(), &nbi, ipiv.data(), y.data(), &nbi, &info, 1);
        check_info(info, "dsytrs");
        for (std::int64_t t = 0; t < modes; ++t) {  // modified Gram-Schmidt
          double* yt = &y[t * ldb];
          for (std::int64_t s = 0; s < t; ++s) {
            const double* ys = &y[s * ldb];
            double dot = 0.0;
            for (std::int64_t i = 0; i < nb; ++i) dot += ys[i] * yt[i];
            for (std::int64_t i = 0; i < nb; ++i) yt[i] -= dot * ys[i];
          }
          double norm = 0.0;
          for (std::int64_t i = 0; i < nb; ++i) norm += yt[i] * yt[i];
          norm = std::sqrt(norm);
          if (norm > 0.0 && std::isfinite(norm)) {
            for (std::int64_t i = 0; i < nb; ++i) yt[i] /= norm;
          } else {
            std::fill(yt, yt + nb, 0.0);
          }
        }
      }
      std::vector<double> x(nn);
      for (std::int64_t t = 0; t < modes; ++t) {
        for (std::int64_t i = 0; i < n; ++i) x[i] = m_scale[i] * y[i + t * ldb];
        add_large_components(x.data(), n, report.weak_indices);
      }
      sort_unique(report.weak_indices);
      if (options.solve_singular && options.method != Method::decomposition) {
        solve_bordered_by_sweeps(bordered, bordered_diag, report);
        return report;
      }
      report.solvable = false;
      m_scale.clear();
      return report;
    }
    if (negative > m) {
      report.ok = false;
      report.message = "the global matrix is not positive definite on the constraint surface: the bordered "
                       "matrix has " + std::to_string(negative) + " negative eigenvalues for " + std::to_string(m) +
                       " constraints (" + count_text(negative - m, "non-positive direction") +
                       "; elimination names the parameters involved)";
      if (!options.solve_singular) {
        report.solvable = false;
        m_scale.clear();
        return report;
      }
      // Regular but indefinite: pede's inversion solves it all the same.
    }
    if (covariance) {
      std::vector<double> inverse(bordered);
      int info = 0, lwork = -1;
      double query = 0.0;
      dsytri2_("L", &nbi, inverse.data(), &nbi, ipiv.data(), &query, &lwork, &info, 1);
      check_info(info, "dsytri2");
      lwork = std::max(workspace_size(query), (nbi + 64 + 1) * (64 + 3));
      std::vector<double> work(static_cast<std::size_t>(lwork));
      dsytri2_("L", &nbi, inverse.data(), &nbi, ipiv.data(), work.data(), &lwork, &info, 1);
      check_info(info, "dsytri2");
      if (info > 0) throw RuntimeError("LAPACK dsytri2: singular pivot " + std::to_string(info) + " after a regular factorisation");
      m_cov_diag.resize(nn);
      for (std::int64_t i = 0; i < n; ++i) m_cov_diag[i] = m_scale[i] * m_scale[i] * inverse[i + i * ldb];
    }
    m_factor = std::move(bordered);
    m_pivots.assign(ipiv.begin(), ipiv.end());
    m_kind = Kind::bordered_ldlt;
    return report;
  }

  // ---- elimination (or no constraints): the reduced matrix Q2^T C Q2 ---------------------------
  const std::int64_t mr = options.mode == ConstraintMode::elimination ? m : 0;
  if (mr == 0) {
    m_q.clear();
    m_tau.clear();
  } else {
    apply_q('L', 'T', n, n, m, m_q.data(), n, m_tau.data(), matrix.data(), n);
    apply_q('R', 'N', n, n, m, m_q.data(), n, m_tau.data(), matrix.data(), n);
  }
  const std::int64_t nr = n - mr;
  m_eliminated = mr;
  double* reduced = matrix.data() + mr + mr * nn;
  auto r_at = [&](std::int64_t i, std::int64_t j) -> double& { return reduced[i + j * nn]; };
  const std::string what = mr > 0 ? "the global matrix reduced by " + count_text(mr, "constraint") : "the global matrix";
  if (nr == 0) {
    m_kind = Kind::trivial;
    if (covariance) m_cov_diag.assign(nn, 0.0);
    return report;
  }
  const int nri = lapack_size(nr), ldi = lapack_size(n);
  // v := Q [0; z] (variable space) for a vector z of the reduced space.
  auto to_variable_space = [&](const double* z) {
    std::vector<double> v(nn, 0.0);
    std::copy(z, z + nr, v.begin() + mr);
    apply_q('L', 'N', n, 1, mr, m_q.data(), n, m_tau.data(), v.data(), n);
    return v;
  };

  if (eigen) {
    // The (nr x mr) block of Q^T C Q couples the constrained coordinates to the reduced ones
    // (solve() with a constraint residual needs it).
    m_cross.assign(static_cast<std::size_t>(nr) * static_cast<std::size_t>(mr), 0.0);
    for (std::int64_t j = 0; j < mr; ++j) {
      for (std::int64_t i = 0; i < nr; ++i) m_cross[i + j * nr] = matrix[(mr + i) + j * nn];
    }
    std::vector<double> w_vec(nn * static_cast<std::size_t>(nr), 0.0);  // n x nr, first mr rows zero
    std::vector<double> w = eigen_decomposition(nr, reduced, n, w_vec.data() + mr, n);
    matrix.clear();
    matrix.shrink_to_fit();
    apply_q('L', 'N', n, nr, mr, m_q.data(), n, m_tau.data(), w_vec.data(), n);
    double wmax = 0.0;
    for (double v : w) wmax = std::max(wmax, std::abs(v));
    const double tau = static_cast<double>(nr) * kEps * wmax;
    m_inverse_eigenvalues.assign(w.size(), 0.0);
    std::int64_t bad = 0;
    for (std::int64_t k = 0; k < nr; ++k) {
      if (w[k] > tau) {
        m_inverse_eigenvalues[k] = 1.0 / w[k];
      } else {
        ++bad;
        if (bad <= kMaxWeakModes) add_large_components(&w_vec[k * nn], n, report.weak_indices);
      }
    }
    report.rank_defect = bad;
    if (bad > 0) {
      report.ok = false;
      report.message = what + " is not positive definite: " + count_text(bad, "eigenvalue") + " of " +
                       std::to_string(nr) + " at or below the rounding level " + format_number(tau) +
                       " (left out of the solution)";
      sort_unique(report.weak_indices);
    }
    for (std::int64_t k : eve_selection(w, options.eve_count)) {
      report.eigenvectors.emplace_back(k, std::vector<double>(w_vec.begin() + k * nn, w_vec.begin() + (k + 1) * nn));
    }
    if (covariance) {
      m_cov_diag.assign(nn, 0.0);
      for (std::int64_t k = 0; k < nr; ++k) {
        const double inv = m_inverse_eigenvalues[k];
        if (inv == 0.0) continue;
        const double* col = &w_vec[k * nn];
        for (std::int64_t i = 0; i < n; ++i) m_cov_diag[i] += col[i] * col[i] * inv;
      }
    }
    report.eigenvalues = std::move(w);
    m_factor = std::move(w_vec);
    m_kind = Kind::eigen;
    return report;
  }

  // Cholesky of the lower triangle; the strict upper triangle keeps the matrix for the analysis.
  std::vector<double> diag(static_cast<std::size_t>(nr));
  for (std::int64_t k = 0; k < nr; ++k) diag[k] = r_at(k, k);
  int info = 0;
  dpotrf_("L", &nri, reduced, &ldi, &info, 1);
  check_info(info, "dpotrf");
  bool failed = info > 0;
  const double tol = pivot_tolerance(nr);
  for (std::int64_t k = 0; k < nr && !failed; ++k) {
    if (!(r_at(k, k) * r_at(k, k) > tol * diag[k])) failed = true;
  }
  const bool sweep_when_singular = options.solve_singular && options.method != Method::diagonalization;
  if (failed && sweep_when_singular) solve_reduced_by_sweeps(matrix, diag, report);
  if (failed) {
    // Pivoted Cholesky of the Jacobi-scaled matrix (upper triangle, diagonal restored): its rank
    // counts the non-positive pivots; [-U11^-1 U12 e_j; e_j] are near-null vectors.
    std::vector<double> scale(static_cast<std::size_t>(nr));
    for (std::int64_t k = 0; k < nr; ++k) scale[k] = diag[k] > 0.0 ? 1.0 / std::sqrt(diag[k]) : 1.0;
    for (std::int64_t j = 0; j < nr; ++j) {
      for (std::int64_t i = 0; i < j; ++i) r_at(i, j) *= scale[i] * scale[j];
      r_at(j, j) = diag[j] * scale[j] * scale[j];
    }
    std::vector<int> piv(static_cast<std::size_t>(nr));
    std::vector<double> work(2 * static_cast<std::size_t>(nr));
    int rank = 0;
    dpstrf_("U", &nri, reduced, &ldi, piv.data(), &rank, &tol, work.data(), &info, 1);
    check_info(info, "dpstrf");
    const std::int64_t deficient = std::max<std::int64_t>(1, nr - rank);
    const std::int64_t r = std::min<std::int64_t>(rank, nr - 1);
    report.ok = false;
    report.message = what + " is not positive definite: " + count_text(deficient, "non-positive pivot") + " of " +
                     std::to_string(nr) + " (numerical rank " + std::to_string(nr - deficient) + ")";
    if (m_kind == Kind::swept) {
      report.message += report.rank_defect > 0
                            ? "; solved without " + count_text(report.rank_defect, "pivot") + ", as pede does"
                            : "; solved with its negative pivots, as pede's inversion does";
    }
    const int ri = static_cast<int>(r), one = 1;
    std::vector<double> x(static_cast<std::size_t>(nr)), z(static_cast<std::size_t>(nr));
    for (std::int64_t j = r; j < std::min(nr, r + kMaxWeakModes); ++j) {
      for (std::int64_t i = 0; i < r; ++i) x[i] = -r_at(i, j);
      if (r > 0) dtrsv_("U", "N", "N", &ri, reduced, &ldi, x.data(), &one, 1, 1, 1);
      std::fill(x.begin() + r, x.end(), 0.0);
      x[j] = 1.0;
      for (std::int64_t k = 0; k < nr; ++k) {
        const std::int64_t original = piv[k] - 1;
        z[original] = x[k] * scale[original];
      }
      const std::vector<double> v = to_variable_space(z.data());
      add_large_components(v.data(), n, report.weak_indices);
    }
    sort_unique(report.weak_indices);
    if (m_kind == Kind::swept) {
      m_factor = std::move(matrix);
      return report;
    }
    report.solvable = false;
    m_q.clear();
    m_tau.clear();
    return report;
  }
  if (covariance) {
    // Cred^-1 = X^T X with X = L^-1, so diag(Q2 Cred^-1 Q2^T) holds the squared column norms of
    // W = X Q2^T = [0 X] Q^T (nr x n, a second buffer).
    const std::size_t ldw = static_cast<std::size_t>(nr);
    std::vector<double> w(ldw * nn, 0.0);
    double* x = w.data() + static_cast<std::size_t>(mr) * ldw;
    for (std::int64_t j = 0; j < nr; ++j) {
      for (std::int64_t i = j; i < nr; ++i) x[i + j * ldw] = r_at(i, j);
    }
    dtrtri_("L", "N", &nri, x, &nri, &info, 1, 1);
    check_info(info, "dtrtri");
    if (info > 0) throw RuntimeError("LAPACK dtrtri: zero diagonal element " + std::to_string(info) + " of a regular factor");
    if (sweep_when_singular && options.method == Method::inversion) {
      // pede's inversion rejects a pivot below 1e-10 of its diagonal element. Whatever the order
      // of elimination, the pivot of k is at least 1 / (Cred^-1)_kk: if Cred_kk (Cred^-1)_kk stays
      // below 1e10 for every k, no pivot is rejected; otherwise sweep as pede does.
      bool doubtful = false;
      for (std::int64_t k = 0; k < nr && !doubtful; ++k) {
        double s = 0.0;
        for (std::int64_t i = k; i < nr; ++i) s += x[i + k * ldw] * x[i + k * ldw];
        doubtful = diag[k] * s >= 1.0 / kGlobalPivotLimit;
      }
      if (doubtful) {
        solve_reduced_by_sweeps(matrix, diag, report);
        m_factor = std::move(matrix);
        if (report.rank_defect > 0) {
          report.ok = false;
          report.message = what + " is singular for pede's inversion: " + count_text(report.rank_defect, "pivot") +
                            " below 1e-10 of the diagonal element; solved without them, as pede does";
        }
        return report;
      }
    }
    apply_q('R', 'T', nr, n, mr, m_q.data(), n, m_tau.data(), w.data(), nr);
    m_cov_diag.assign(nn, 0.0);
    for (std::int64_t i = 0; i < n; ++i) {
      const double* col = &w[static_cast<std::size_t>(i) * ldw];
      double s = 0.0;
      for (std::int64_t k = 0; k < nr; ++k) s += col[k] * col[k];
      m_cov_diag[i] = s;
    }
  }
  m_factor = std::move(matrix);
  m_kind = Kind::cholesky;
  return report;
}

void DenseSolver::solve_reduced_by_sweeps(std::vector<double>& matrix, const std::vector<double>& diag,
                                          FactorReport& report) {
  const std::int64_t n = m_n, mr = m_eliminated, nr = n - mr;
  const std::size_t nn = static_cast<std::size_t>(n), ldr = static_cast<std::size_t>(nr);
  // The reduced matrix from the strict upper triangle of its block (untouched by dpotrf on the
  // lower one) and the saved diagonal.
  m_swept.assign(ldr * ldr, 0.0);
  for (std::int64_t j = 0; j < nr; ++j) {
    for (std::int64_t i = 0; i < nr; ++i) {
      const std::int64_t lo = std::min(i, j), hi = std::max(i, j);
      m_swept[i + j * ldr] = i == j ? diag[i] : matrix[(mr + lo) + (mr + hi) * nn];
    }
  }
  const bool inversion = m_options.method == Method::inversion;
  // A pivot below 1e-10 of its diagonal element is taken as zero in both orders (pede's inversion
  // does so; its decomposition skips only pivots <= 0, which leaves rounding-level pivots of a
  // singular matrix in the solution with arbitrary sizes).
  const SweepOutcome outcome = sweep_inverse(m_swept.data(), nr, nr, kGlobalPivotLimit,
                                             inversion ? SweepOrder::largest_first : SweepOrder::last_to_first);
  report.solvable = true;
  report.rank_defect = nr - outcome.rank;
  if (inversion && m_options.want_covariance) {
    // diag(Q2 Inv Q2^T): row sums of (Q [0; Inv]) .* (Q [0; I]).
    m_cov_diag.assign(nn, 0.0);
    if (mr == 0) {
      for (std::int64_t i = 0; i < n; ++i) m_cov_diag[i] = m_swept[i + i * ldr];
    } else {
      std::vector<double> w1(nn * ldr, 0.0), q2(nn * ldr, 0.0);
      for (std::int64_t k = 0; k < nr; ++k) {
        for (std::int64_t i = 0; i < nr; ++i) w1[(mr + i) + k * nn] = m_swept[i + k * ldr];
        q2[(mr + k) + k * nn] = 1.0;
      }
      apply_q('L', 'N', n, nr, mr, m_q.data(), n, m_tau.data(), w1.data(), n);
      apply_q('L', 'N', n, nr, mr, m_q.data(), n, m_tau.data(), q2.data(), n);
      for (std::int64_t k = 0; k < nr; ++k) {
        for (std::int64_t i = 0; i < n; ++i) m_cov_diag[i] += w1[i + k * nn] * q2[i + k * nn];
      }
    }
  }
  (void)matrix;
  m_kind = Kind::swept;
}

void DenseSolver::solve_bordered_by_sweeps(std::vector<double>& bordered, const std::vector<double>& diag,
                                           FactorReport& report) {
  const std::int64_t n = m_n, nb = m_n + m_m;
  const std::size_t ldb = static_cast<std::size_t>(nb);
  // The unscaled bordered matrix from the strict upper triangle (untouched by dsytrf on the lower
  // one) and the saved diagonal; pede pivots on the unscaled elements.
  m_swept.assign(ldb * ldb, 0.0);
  for (std::int64_t j = 0; j < nb; ++j) {
    for (std::int64_t i = 0; i < nb; ++i) {
      const std::int64_t lo = std::min(i, j), hi = std::max(i, j);
      const double v = i == j ? diag[i] : bordered[lo + hi * ldb];
      m_swept[i + j * ldb] = v / (m_scale[i] * m_scale[j]);
    }
  }
  bordered.clear();
  bordered.shrink_to_fit();
  const SweepOutcome outcome = sweep_inverse(m_swept.data(), nb, nb, kGlobalPivotLimit, SweepOrder::largest_first);
  report.solvable = true;
  report.rank_defect = nb - outcome.rank;
  report.message += "; solved without " + count_text(report.rank_defect, "pivot") + ", as pede does";
  if (m_options.want_covariance && m_options.method != Method::decomposition) {
    m_cov_diag.assign(static_cast<std::size_t>(n), 0.0);
    for (std::int64_t i = 0; i < n; ++i) m_cov_diag[i] = m_swept[i + i * ldb];
  }
  m_kind = Kind::bordered_swept;
}

std::vector<double> DenseSolver::constrained_coordinates(const std::vector<double>& residual) const {
  const std::int64_t mr = m_eliminated;
  std::vector<double> y(static_cast<std::size_t>(mr), 0.0);
  if (residual.empty() || mr == 0) return y;
  const std::size_t nn = static_cast<std::size_t>(m_n);
  // A_norm = R^T Q^T (rows of A normalised): R^T y1 = residual / |a_k|, forward substitution.
  for (std::int64_t k = 0; k < mr; ++k) {
    double v = m_row_norm[k] > 0.0 ? residual[k] / m_row_norm[k] : 0.0;
    for (std::int64_t j = 0; j < k; ++j) v -= m_q[j + k * nn] * y[j];
    y[k] = v / m_q[k + k * nn];
  }
  return y;
}

std::vector<double> DenseSolver::solve(const std::vector<double>& b, const std::vector<double>& residual) const {
  if (static_cast<std::int64_t>(b.size()) != m_n) {
    throw RuntimeError("dense solver: right-hand side of size " + std::to_string(b.size()) + " for " +
                       std::to_string(m_n) + " parameters");
  }
  if (!residual.empty() && static_cast<std::int64_t>(residual.size()) != m_m) {
    throw RuntimeError("dense solver: constraint residual of size " + std::to_string(residual.size()) + " for " +
                       std::to_string(m_m) + " constraints");
  }
  bool any_residual = false;
  for (double r : residual) any_residual = any_residual || r != 0.0;
  const std::size_t nn = static_cast<std::size_t>(m_n);
  const int one = 1;
  const double d_one = 1.0, d_zero = 0.0;
  const std::int64_t mr = m_eliminated;
  const std::int64_t nr = m_n - mr;
  switch (m_kind) {
    case Kind::none:
      throw RuntimeError("dense solver: no valid factorisation to solve with");
    case Kind::trivial: {
      std::vector<double> x(nn, 0.0);
      if (any_residual && mr > 0) {
        const std::vector<double> y1 = constrained_coordinates(residual);
        std::copy(y1.begin(), y1.end(), x.begin());
        apply_q('L', 'N', m_n, 1, mr, m_q.data(), m_n, m_tau.data(), x.data(), m_n);
      }
      return x;
    }
    case Kind::cholesky:
    case Kind::swept: {
      // x = Q [y1; y2]: y1 meets the constraints, y2 = Cred^-1 (Q2^T b - B21 y1).
      std::vector<double> x(b);
      apply_q('L', 'T', m_n, 1, mr, m_q.data(), m_n, m_tau.data(), x.data(), m_n);
      std::vector<double> y1(static_cast<std::size_t>(mr), 0.0);
      if (any_residual && mr > 0) {
        y1 = constrained_coordinates(residual);
        for (std::int64_t j = 0; j < mr; ++j) {
          const double* b21 = m_factor.data() + mr + j * nn;
          for (std::int64_t i = 0; i < nr; ++i) x[mr + i] -= b21[i] * y1[j];
        }
      }
      if (m_kind == Kind::cholesky) {
        const int nri = lapack_size(nr), ldi = lapack_size(m_n);
        int info = 0;
        dpotrs_("L", &nri, &one, m_factor.data() + mr + mr * nn, &ldi, x.data() + mr, &nri, &info, 1);
        check_info(info, "dpotrs");
      } else if (nr > 0) {
        const int nri = lapack_size(nr);
        std::vector<double> z(x.begin() + mr, x.end());
        dgemv_("N", &nri, &nri, &d_one, m_swept.data(), &nri, z.data(), &one, &d_zero, x.data() + mr, &one, 1);
      }
      std::copy(y1.begin(), y1.end(), x.begin());
      apply_q('L', 'N', m_n, 1, mr, m_q.data(), m_n, m_tau.data(), x.data(), m_n);
      return x;
    }
    case Kind::eigen:
    case Kind::bordered_eigen: {
      // x = V diag(1/lambda) V^T g over the eigenvectors V: for elimination g = b - C Q1 y1 in the
      // variable space (V = Q2 U) plus Q1 y1; with multipliers g = [b; scaled residual].
      const auto cols = static_cast<std::int64_t>(m_inverse_eigenvalues.size());
      const bool bordered = m_kind == Kind::bordered_eigen;
      const std::int64_t ld = bordered ? m_n + m_m : m_n;
      std::vector<double> g(static_cast<std::size_t>(ld), 0.0);
      std::copy(b.begin(), b.end(), g.begin());
      std::vector<double> shift(nn, 0.0);
      if (any_residual && bordered) {
        for (std::int64_t k = 0; k < m_m; ++k) g[m_n + k] = m_scale[m_n + k] * residual[k];
      } else if (any_residual && mr > 0) {
        const std::vector<double> y1 = constrained_coordinates(residual);
        std::vector<double> c(nn, 0.0);  // [0; B21 y1] in the Q basis
        for (std::int64_t j = 0; j < mr; ++j) {
          for (std::int64_t i = 0; i < nr; ++i) c[mr + i] += m_cross[i + j * nr] * y1[j];
        }
        apply_q('L', 'N', m_n, 1, mr, m_q.data(), m_n, m_tau.data(), c.data(), m_n);
        for (std::size_t i = 0; i < nn; ++i) g[i] -= c[i];
        std::copy(y1.begin(), y1.end(), shift.begin());
        apply_q('L', 'N', m_n, 1, mr, m_q.data(), m_n, m_tau.data(), shift.data(), m_n);
      }
      const int rows_t = lapack_size(bordered && any_residual ? ld : m_n), rows_i = lapack_size(m_n),
                cols_i = lapack_size(cols), ld_i = lapack_size(ld);
      std::vector<double> t(static_cast<std::size_t>(cols)), x(nn);
      dgemv_("T", &rows_t, &cols_i, &d_one, m_factor.data(), &ld_i, g.data(), &one, &d_zero, t.data(), &one, 1);
      for (std::int64_t k = 0; k < cols; ++k) t[k] *= m_inverse_eigenvalues[k];
      dgemv_("N", &rows_i, &cols_i, &d_one, m_factor.data(), &ld_i, t.data(), &one, &d_zero, x.data(), &one, 1);
      for (std::size_t i = 0; i < nn; ++i) x[i] += shift[i];
      return x;
    }
    case Kind::bordered_ldlt: {
      const std::int64_t nb = m_n + m_m;
      std::vector<double> y(static_cast<std::size_t>(nb), 0.0);
      for (std::int64_t i = 0; i < m_n; ++i) y[i] = m_scale[i] * b[i];
      if (any_residual) {
        for (std::int64_t k = 0; k < m_m; ++k) y[m_n + k] = m_scale[m_n + k] * residual[k];
      }
      const int nbi = lapack_size(nb);
      int info = 0;
      dsytrs_("L", &nbi, &one, m_factor.data(), &nbi, m_pivots.data(), y.data(), &nbi, &info, 1);
      check_info(info, "dsytrs");
      std::vector<double> x(nn);
      for (std::int64_t i = 0; i < m_n; ++i) x[i] = m_scale[i] * y[i];
      return x;
    }
    case Kind::bordered_swept: {
      const std::int64_t nb = m_n + m_m;
      std::vector<double> y(static_cast<std::size_t>(nb), 0.0), x(static_cast<std::size_t>(nb));
      std::copy(b.begin(), b.end(), y.begin());
      if (any_residual) std::copy(residual.begin(), residual.end(), y.begin() + m_n);
      const int nbi = lapack_size(nb);
      dgemv_("N", &nbi, &nbi, &d_one, m_swept.data(), &nbi, y.data(), &one, &d_zero, x.data(), &one, 1);
      x.resize(nn);
      return x;
    }
  }
  return {};
}

std::vector<double> DenseSolver::covariance_diagonal() const { return m_cov_diag; }

}  // namespace gpede::detail
