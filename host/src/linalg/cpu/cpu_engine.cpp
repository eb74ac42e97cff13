// The CPU engine of the linear-algebra layer: host memory and LAPACK/BLAS (OpenBLAS), blocked
// routines only. Each operation is one library call or one loop.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>

#include "gpede/detail/linalg.hpp"
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
void dtrmv_(const char* uplo, const char* trans, const char* diag, const int* n, const double* a, const int* lda,
            double* x, const int* incx, std::size_t, std::size_t, std::size_t);
void dtrsv_(const char* uplo, const char* trans, const char* diag, const int* n, const double* a, const int* lda,
            double* x, const int* incx, std::size_t, std::size_t, std::size_t);
}

namespace gpede::detail::linalg {
namespace {

int lapack_size(std::int64_t value) {
  if (value > INT_MAX) {
    throw RuntimeError("CPU linear algebra: dimension " + std::to_string(value) + " exceeds the LAPACK integer range");
  }
  return static_cast<int>(std::max<std::int64_t>(value, 0));
}

int leading(const View& a) { return lapack_size(std::max<std::int64_t>(a.ld, 1)); }

void check_info(int info, const char* routine) {
  if (info < 0) throw RuntimeError(std::string("LAPACK ") + routine + ": argument " + std::to_string(-info) + " is illegal");
}

int workspace_size(double query) { return std::max(1, static_cast<int>(query) + 1); }

double& at(const View& a, std::int64_t i, std::int64_t j) {
  return a.ptr()[static_cast<std::size_t>(i) + static_cast<std::size_t>(j) * static_cast<std::size_t>(a.ld)];
}

std::vector<int> lapack_pivots(const Pivots& pivots) {
  std::vector<int> ipiv(pivots.host.size());
  for (std::size_t k = 0; k < ipiv.size(); ++k) ipiv[k] = static_cast<int>(pivots.host[k]);
  return ipiv;
}

class CpuEngine final : public Engine {
 public:
  std::string name() const override { return "cpu"; }

  Matrix allocate(std::int64_t rows, std::int64_t cols) override {
    auto storage = std::make_shared<std::vector<double>>(static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols), 0.0);
    double* data = storage->data();
    return Matrix(std::move(storage), data, rows, cols);
  }

  void fill(View a, double value) override {
    for (std::int64_t j = 0; j < a.cols; ++j) std::fill(&at(a, 0, j), &at(a, 0, j) + a.rows, value);
  }

  void copy(View from, View to) override {
    for (std::int64_t j = 0; j < from.cols; ++j) std::copy(&at(from, 0, j), &at(from, 0, j) + from.rows, &at(to, 0, j));
  }

  void upload(const std::vector<double>& host, View to) override {
    for (std::int64_t j = 0; j < to.cols; ++j) {
      std::copy(host.begin() + j * to.rows, host.begin() + (j + 1) * to.rows, &at(to, 0, j));
    }
  }

  std::vector<double> download(View a) override {
    std::vector<double> host(static_cast<std::size_t>(a.rows) * static_cast<std::size_t>(a.cols));
    for (std::int64_t j = 0; j < a.cols; ++j) std::copy(&at(a, 0, j), &at(a, 0, j) + a.rows, host.begin() + j * a.rows);
    return host;
  }

  std::vector<double> diagonal(View a) override {
    std::vector<double> d(static_cast<std::size_t>(std::min(a.rows, a.cols)));
    for (std::size_t k = 0; k < d.size(); ++k) d[k] = at(a, static_cast<std::int64_t>(k), static_cast<std::int64_t>(k));
    return d;
  }

  void set_diagonal(View a, const std::vector<double>& values) override {
    for (std::size_t k = 0; k < values.size(); ++k) at(a, static_cast<std::int64_t>(k), static_cast<std::int64_t>(k)) = values[k];
  }

  std::vector<std::int64_t> nonfinite_rows(View a) override {
    std::vector<char> bad(static_cast<std::size_t>(a.rows), 0);
    for (std::int64_t j = 0; j < a.cols; ++j) {
      for (std::int64_t i = 0; i < a.rows; ++i) {
        if (!std::isfinite(at(a, i, j))) bad[i] = bad[j] = 1;
      }
    }
    std::vector<std::int64_t> out;
    for (std::int64_t i = 0; i < a.rows; ++i) {
      if (bad[i]) out.push_back(i);
    }
    return out;
  }

  void scale(View a, const std::vector<double>& row_scale, const std::vector<double>& col_scale) override {
    for (std::int64_t j = 0; j < a.cols; ++j) {
      for (std::int64_t i = 0; i < a.rows; ++i) at(a, i, j) *= row_scale[i] * col_scale[j];
    }
  }

  void copy_lower(View from, View to) override {
    for (std::int64_t j = 0; j < from.cols; ++j) {
      for (std::int64_t i = 0; i < from.rows; ++i) at(to, i, j) = i >= j ? at(from, i, j) : 0.0;
    }
  }

  std::vector<double> column_sum_squares(View a) override {
    std::vector<double> out(static_cast<std::size_t>(a.cols), 0.0);
    for (std::int64_t j = 0; j < a.cols; ++j) {
      const double* col = &at(a, 0, j);
      double s = 0.0;
      for (std::int64_t i = 0; i < a.rows; ++i) s += col[i] * col[i];
      out[j] = s;
    }
    return out;
  }

  std::vector<double> lower_column_sum_squares(View a) override {
    std::vector<double> out(static_cast<std::size_t>(a.cols), 0.0);
    for (std::int64_t j = 0; j < a.cols; ++j) {
      const double* col = &at(a, 0, j);
      double s = 0.0;
      for (std::int64_t i = j; i < a.rows; ++i) s += col[i] * col[i];
      out[j] = s;
    }
    return out;
  }

  void zero_strict_upper(View a) override {
    for (std::int64_t j = 1; j < a.cols; ++j) {
      double* col = &at(a, 0, j);
      std::fill(col, col + std::min(j, a.rows), 0.0);
    }
  }

  std::vector<double> weighted_row_sum_squares(View a, const std::vector<double>& w) override {
    std::vector<double> out(static_cast<std::size_t>(a.rows), 0.0);
    for (std::int64_t j = 0; j < a.cols; ++j) {
      if (w[j] == 0.0) continue;
      const double* col = &at(a, 0, j);
      for (std::int64_t i = 0; i < a.rows; ++i) out[i] += col[i] * col[i] * w[j];
    }
    return out;
  }

  void householder_qr(View a, View tau) override {
    if (a.rows == 0 || a.cols == 0) return;
    const int m = lapack_size(a.rows), n = lapack_size(a.cols), lda = leading(a);
    int info = 0, lwork = -1;
    double query = 0.0;
    dgeqrf_(&m, &n, a.ptr(), &lda, tau.ptr(), &query, &lwork, &info);
    check_info(info, "dgeqrf");
    lwork = workspace_size(query);
    std::vector<double> work(static_cast<std::size_t>(lwork));
    dgeqrf_(&m, &n, a.ptr(), &lda, tau.ptr(), work.data(), &lwork, &info);
    check_info(info, "dgeqrf");
  }

  void apply_householder(Side side, bool transpose, View q, View tau, std::int64_t reflectors, View c) override {
    if (c.rows == 0 || c.cols == 0 || reflectors == 0) return;
    const char s = side == Side::left ? 'L' : 'R', t = transpose ? 'T' : 'N';
    const int m = lapack_size(c.rows), n = lapack_size(c.cols), k = lapack_size(reflectors), lda = leading(q),
              ldc = leading(c);
    int info = 0, lwork = -1;
    double query = 0.0;
    dormqr_(&s, &t, &m, &n, &k, q.ptr(), &lda, tau.ptr(), c.ptr(), &ldc, &query, &lwork, &info, 1, 1);
    check_info(info, "dormqr");
    lwork = workspace_size(query);
    std::vector<double> work(static_cast<std::size_t>(lwork));
    dormqr_(&s, &t, &m, &n, &k, q.ptr(), &lda, tau.ptr(), c.ptr(), &ldc, work.data(), &lwork, &info, 1, 1);
    check_info(info, "dormqr");
  }

  std::int64_t cholesky(View a) override {
    const int n = lapack_size(a.rows), lda = leading(a);
    int info = 0;
    dpotrf_("L", &n, a.ptr(), &lda, &info, 1);
    check_info(info, "dpotrf");
    return info;
  }

  void cholesky_solve(View l, View b) override {
    const int n = lapack_size(l.rows), lda = leading(l), nrhs = lapack_size(b.cols), ldb = leading(b);
    int info = 0;
    dpotrs_("L", &n, &nrhs, l.ptr(), &lda, b.ptr(), &ldb, &info, 1);
    check_info(info, "dpotrs");
  }

  void triangular_inverse(View l) override {
    const int n = lapack_size(l.rows), lda = leading(l);
    int info = 0;
    dtrtri_("L", "N", &n, l.ptr(), &lda, &info, 1, 1);
    check_info(info, "dtrtri");
    if (info > 0) throw RuntimeError("LAPACK dtrtri: zero diagonal element " + std::to_string(info) + " of a regular factor");
  }

  void lower_triangular_multiply(View l, bool transpose, View x) override {
    const int n = lapack_size(l.rows), lda = leading(l), one = 1;
    if (n == 0) return;
    dtrmv_("L", transpose ? "T" : "N", "N", &n, l.ptr(), &lda, x.ptr(), &one, 1, 1, 1);
  }

  void upper_triangular_solve(View u, View x) override {
    const int n = lapack_size(u.rows), lda = leading(u), one = 1;
    if (n == 0) return;
    dtrsv_("U", "N", "N", &n, u.ptr(), &lda, x.ptr(), &one, 1, 1, 1);
  }

  std::vector<std::int64_t> pivoted_cholesky(View a, double tol, std::int64_t& rank) override {
    const int n = lapack_size(a.rows), lda = leading(a);
    std::vector<int> piv(static_cast<std::size_t>(n));
    std::vector<double> work(2 * static_cast<std::size_t>(n));
    int r = 0, info = 0;
    dpstrf_("U", &n, a.ptr(), &lda, piv.data(), &r, &tol, work.data(), &info, 1);
    check_info(info, "dpstrf");
    rank = r;
    std::vector<std::int64_t> out(piv.size());
    for (std::size_t k = 0; k < piv.size(); ++k) out[k] = piv[k] - 1;
    return out;
  }

  std::vector<double> eigen(View a) override {
    const int n = lapack_size(a.rows), lda = leading(a);
    const char jobz = 'V', range = 'A', uplo = 'L';
    const double none = 0.0, abstol = std::numeric_limits<double>::min();
    const int inone = 0;
    int found = 0, info = 0, lwork = -1, liwork = -1, iquery = 0;
    double query = 0.0;
    std::vector<double> w(static_cast<std::size_t>(n));
    std::vector<double> z(static_cast<std::size_t>(n) * static_cast<std::size_t>(n));
    std::vector<int> isuppz(2 * static_cast<std::size_t>(n));
    const int ldz = std::max(n, 1);
    dsyevr_(&jobz, &range, &uplo, &n, a.ptr(), &lda, &none, &none, &inone, &inone, &abstol, &found, w.data(), z.data(),
            &ldz, isuppz.data(), &query, &lwork, &iquery, &liwork, &info, 1, 1, 1);
    check_info(info, "dsyevr");
    lwork = workspace_size(query);
    liwork = std::max(1, iquery);
    std::vector<double> work(static_cast<std::size_t>(lwork));
    std::vector<int> iwork(static_cast<std::size_t>(liwork));
    dsyevr_(&jobz, &range, &uplo, &n, a.ptr(), &lda, &none, &none, &inone, &inone, &abstol, &found, w.data(), z.data(),
            &ldz, isuppz.data(), work.data(), &lwork, iwork.data(), &liwork, &info, 1, 1, 1);
    check_info(info, "dsyevr");
    if (info > 0) throw RuntimeError("LAPACK dsyevr: the eigen-decomposition did not converge (info " + std::to_string(info) + ")");
    for (std::int64_t j = 0; j < a.cols; ++j) std::copy(z.begin() + j * n, z.begin() + (j + 1) * n, &at(a, 0, j));
    return w;
  }

  Pivots ldlt(View a) override {
    const int n = lapack_size(a.rows), lda = leading(a);
    std::vector<int> ipiv(static_cast<std::size_t>(std::max(n, 1)));
    int info = 0, lwork = -1;
    double query = 0.0;
    dsytrf_("L", &n, a.ptr(), &lda, ipiv.data(), &query, &lwork, &info, 1);
    check_info(info, "dsytrf");
    lwork = workspace_size(query);
    std::vector<double> work(static_cast<std::size_t>(lwork));
    dsytrf_("L", &n, a.ptr(), &lda, ipiv.data(), work.data(), &lwork, &info, 1);
    check_info(info, "dsytrf");
    Pivots pivots;
    pivots.host.assign(ipiv.begin(), ipiv.begin() + n);
    return pivots;
  }

  void ldlt_solve(View a, const Pivots& pivots, View b) override {
    const int n = lapack_size(a.rows), lda = leading(a), nrhs = lapack_size(b.cols), ldb = leading(b);
    const std::vector<int> ipiv = lapack_pivots(pivots);
    int info = 0;
    dsytrs_("L", &n, &nrhs, a.ptr(), &lda, ipiv.data(), b.ptr(), &ldb, &info, 1);
    check_info(info, "dsytrs");
  }

  std::vector<double> ldlt_inverse_diagonal(View a, const Pivots& pivots) override {
    const int n = lapack_size(a.rows);
    std::vector<double> inverse = download(a);
    const std::vector<int> ipiv = lapack_pivots(pivots);
    int info = 0, lwork = -1;
    double query = 0.0;
    const int ld = std::max(n, 1);
    dsytri2_("L", &n, inverse.data(), &ld, ipiv.data(), &query, &lwork, &info, 1);
    check_info(info, "dsytri2");
    lwork = std::max(workspace_size(query), (n + 64 + 1) * (64 + 3));
    std::vector<double> work(static_cast<std::size_t>(lwork));
    dsytri2_("L", &n, inverse.data(), &ld, ipiv.data(), work.data(), &lwork, &info, 1);
    check_info(info, "dsytri2");
    if (info > 0) throw RuntimeError("LAPACK dsytri2: singular pivot " + std::to_string(info) + " after a regular factorisation");
    std::vector<double> d(static_cast<std::size_t>(n));
    for (int k = 0; k < n; ++k) d[k] = inverse[static_cast<std::size_t>(k) * (static_cast<std::size_t>(n) + 1)];
    return d;
  }

  void gemv(bool transpose, double alpha, View a, View x, double beta, View y) override {
    if (a.rows == 0 || a.cols == 0) {
      if (beta == 0.0) fill(y, 0.0);
      return;
    }
    const int m = lapack_size(a.rows), n = lapack_size(a.cols), lda = leading(a), one = 1;
    dgemv_(transpose ? "T" : "N", &m, &n, &alpha, a.ptr(), &lda, x.ptr(), &one, &beta, y.ptr(), &one, 1);
  }

  SweepOutcome sweep(View a, double limit, SweepOrder order) override {
    return sweep_inverse(a.ptr(), a.rows, a.ld, limit, order);
  }
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine() { return std::make_unique<CpuEngine>(); }

Matrix adopt_host_matrix(std::vector<double>&& values, std::int64_t rows, std::int64_t cols) {
  if (values.size() != static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols)) {
    throw RuntimeError("CPU linear algebra: " + std::to_string(values.size()) + " values for a " + std::to_string(rows) +
                       " x " + std::to_string(cols) + " matrix");
  }
  auto storage = std::make_shared<std::vector<double>>(std::move(values));
  double* data = storage->data();
  return Matrix(std::move(storage), data, rows, cols);
}

}  // namespace gpede::detail::linalg
