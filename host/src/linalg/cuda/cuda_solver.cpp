// Dense solution of the global system on the device with cuSOLVER (64-bit API where it exists) and
// cuBLAS, mirroring DenseSolver step by step so that both backends give the same answers:
//
// - checks first, before any O(n^3) work: non-finite elements, parameters outside all constraints
//   without a positive diagonal element, linearly dependent constraints (|R_kk| of the QR of the
//   row-normalised A^T, Xgeqrf);
// - elimination: Q^T C Q with the reflectors of that QR (legacy ormqr from both sides: there is no
//   64-bit ormqr); the trailing (n-m) x (n-m) block is the reduced matrix on the null space of A;
// - decomposition: Xpotrf; a pivot L_kk^2 <= 64 eps sqrt(n) C_kk counts as non-positive as on the
//   CPU; solve with Xpotrs;
// - inversion: Xpotrf, then Xtrtri on a copy of the factor and the covariance diagonal as column
//   norms (see factorize_reduced for why no explicit n x n inverse is formed);
// - diagonalization: Xsyevd; eigenvalues at or below n eps max|lambda| are left out;
// - multipliers: the bordered matrix scaled by powers of two as on the CPU; Bunch-Kaufman with the
//   legacy Dsytrf (no 64-bit sytrf exists) and Xsytrs, the covariance from the legacy Dsytri; or
//   Xsyevd of the bordered matrix for diagonalization.
// Every device-side info is copied back and checked: info < 0 throws (a wrong argument), a
// non-positive pivot is a result (FactorReport::ok == false), not an exception.
#include "cuda_solver.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <utility>

#include "dense_launch.hpp"
#include "gpede/detail/factor_report_text.hpp"
#include "gpede/error.hpp"

namespace gpede::detail::cuda {
namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();
// A constraint (rows normalised to 1) depends on the earlier ones when its component orthogonal to
// them is below 4 sqrt(eps) (the CPU solver's rule).
const double kConstraintRankTolerance = 4.0 * std::sqrt(kEps);
// Fraction of a near-null vector's largest component from which a parameter is named as weak.
// Near-null vectors analysed at most per failure.
constexpr std::int64_t kMaxWeakModes = 32;
// Left free beside a large allocation (cuSOLVER/cuBLAS internals, fragmentation).
constexpr std::size_t kAllocationReserve = std::size_t{256} << 20;

double pivot_tolerance(std::int64_t n) {
  return 64.0 * kEps * std::sqrt(static_cast<double>(std::max<std::int64_t>(n, 1)));
}

int legacy_size(std::int64_t value, const char* routine) {
  if (value > std::numeric_limits<int>::max()) {
    throw RuntimeError(std::string("CUDA dense solver: dimension ") + std::to_string(value) +
                       " exceeds the 32-bit range of cuSOLVER's " + routine);
  }
  return static_cast<int>(value);
}

std::string gigabytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f GB", bytes / 1e9);
  return text;
}

double nearest_power_of_two(double x) { return std::ldexp(1.0, static_cast<int>(std::lround(std::log2(x)))); }

}  // namespace

CudaDenseSolver::CudaDenseSolver(cudaStream_t stream)
    : m_stream(stream),
      m_cublas(make_cublas(stream)),
      m_cusolver(make_cusolver(stream)),
      m_params(make_cusolver_params()),
      m_info(1),
      m_info_host(1) {}

void CudaDenseSolver::reset() {
  m_kind = Kind::none;
  m_n = 0;
  m_m = 0;
  m_eliminated = 0;
  m_options = FactorOptions{};
  m_factor.reset();
  m_vector_offset = 0;
  m_inverse_eigenvalues.reset();
  m_eigen_count = 0;
  m_q.reset();
  m_tau.reset();
  m_pivots.reset();
  m_scale.clear();
  m_cov_diag.clear();
}

void CudaDenseSolver::release() {
  GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
  reset();
  m_workspace.reset();
}

int CudaDenseSolver::read_info(const char* routine) {
  GPEDE_CUDA_CHECK(cudaMemcpyAsync(m_info_host.data(), m_info.data(), sizeof(int), cudaMemcpyDeviceToHost, m_stream));
  GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
  const int info = m_info_host[0];
  if (info < 0) {
    throw RuntimeError(std::string("cuSOLVER ") + routine + ": argument " + std::to_string(-info) +
                       " is illegal (device info " + std::to_string(info) + ")");
  }
  return info;
}

void* CudaDenseSolver::device_workspace(std::size_t bytes) {
  if (bytes > m_workspace.size()) {
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
    require_free_memory(bytes, "the cuSOLVER workspace");
    m_workspace.allocate(bytes);
  }
  return m_workspace.data();
}

void* CudaDenseSolver::host_workspace(std::size_t bytes) {
  if (bytes > m_host_workspace.size()) m_host_workspace.resize(bytes);
  return m_host_workspace.empty() ? nullptr : m_host_workspace.data();
}

void CudaDenseSolver::require_free_memory(std::size_t bytes, const char* what) const {
  std::size_t free_bytes = 0, total_bytes = 0;
  GPEDE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (bytes + kAllocationReserve > free_bytes) {
    throw RuntimeError(std::string("CUDA backend: ") + what + " needs " + gigabytes(static_cast<double>(bytes)) +
                       " of device memory, but only " + gigabytes(static_cast<double>(free_bytes)) + " of " +
                       gigabytes(static_cast<double>(total_bytes)) +
                       " are free; use method decomposition (no second matrix, no eigenvector workspace), "
                       "constraints by elimination, or the CPU backend (--backend cpu)");
  }
}

template <class T>
std::vector<T> CudaDenseSolver::download(const T* device, std::size_t count) {
  std::vector<T> host(count);
  if (count > 0) {
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost, m_stream));
  }
  GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
  return host;
}

template <class T>
void CudaDenseSolver::upload(T* device, const std::vector<T>& host) {
  if (host.empty()) return;
  GPEDE_CUDA_CHECK(cudaMemcpyAsync(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, m_stream));
}

namespace {

// Elements first, first + stride, ... (count of them) of a device array, to the host.
std::vector<double> download_strided(const double* first, std::int64_t stride, std::int64_t count,
                                     cudaStream_t stream) {
  std::vector<double> host(static_cast<std::size_t>(std::max<std::int64_t>(count, 0)));
  if (count > 0) {
    GPEDE_CUDA_CHECK(cudaMemcpy2DAsync(host.data(), sizeof(double), first, static_cast<std::size_t>(stride) * sizeof(double),
                                       sizeof(double), static_cast<std::size_t>(count), cudaMemcpyDeviceToHost, stream));
  }
  GPEDE_CUDA_CHECK(cudaStreamSynchronize(stream));
  return host;
}

}  // namespace

void CudaDenseSolver::apply_q(cublasSideMode_t side, cublasOperation_t trans, std::int64_t rows, std::int64_t cols,
                              double* c, std::int64_t ldc) {
  if (rows == 0 || cols == 0 || m_eliminated == 0) return;
  const int mi = legacy_size(rows, "ormqr"), ni = legacy_size(cols, "ormqr"), ki = legacy_size(m_eliminated, "ormqr"),
            lda = legacy_size(m_n, "ormqr"), ld = legacy_size(ldc, "ormqr");
  int lwork = 0;
  GPEDE_CUSOLVER_CHECK(cusolverDnDormqr_bufferSize(m_cusolver.get(), side, trans, mi, ni, ki, m_q.data(), lda,
                                                   m_tau.data(), c, ld, &lwork));
  auto* work = static_cast<double*>(device_workspace(static_cast<std::size_t>(std::max(lwork, 1)) * sizeof(double)));
  GPEDE_CUSOLVER_CHECK(cusolverDnDormqr(m_cusolver.get(), side, trans, mi, ni, ki, m_q.data(), lda, m_tau.data(), c,
                                        ld, work, lwork, m_info.data()));
  read_info("Dormqr");
}

FactorReport CudaDenseSolver::factorize(DeviceBuffer<double> matrix, std::int64_t n,
                                        const ConstraintSystem& constraints, const FactorOptions& options) {
  reset();
  const std::int64_t m = constraints.m;
  const std::size_t nn = static_cast<std::size_t>(std::max<std::int64_t>(n, 0));
  if (n < 0 || m < 0 || matrix.size() < nn * nn ||
      (m > 0 && (constraints.n != n || constraints.a.size() != static_cast<std::size_t>(m * n)))) {
    throw RuntimeError("CUDA dense solver: inconsistent sizes (matrix " + std::to_string(matrix.size()) +
                       " for n = " + std::to_string(n) + ", constraints " + std::to_string(m) + " x " +
                       std::to_string(constraints.n) + " with " + std::to_string(constraints.a.size()) + " values)");
  }
  m_n = n;
  m_m = m;
  m_options = options;
  FactorReport report;

  // ---- cheap checks: non-finite elements; parameters without data outside all constraints ------
  {
    std::vector<std::int64_t> bad;
    if (n > 0) {
      DeviceBuffer<unsigned char> flags(nn);
      GPEDE_CUDA_CHECK(cudaMemsetAsync(flags.data(), 0, nn, m_stream));
      launch_flag_nonfinite(matrix.data(), n, n, flags.data(), m_stream);
      const std::vector<unsigned char> host = download(flags.data(), nn);
      for (std::int64_t i = 0; i < n; ++i) {
        if (host[i] != 0) bad.push_back(i);
      }
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
      return report;
    }
  }
  const std::vector<double> diagonal = download_strided(matrix.data(), n + 1, n, m_stream);
  {
    std::vector<char> constrained(nn, 0);
    for (std::int64_t k = 0; k < m; ++k) {
      for (std::int64_t j = 0; j < n; ++j) {
        if (constraints.a[k * n + j] != 0.0) constrained[j] = 1;
      }
    }
    std::vector<std::int64_t> empty;
    for (std::int64_t i = 0; i < n; ++i) {
      if (!constrained[i] && !(diagonal[i] > 0.0)) empty.push_back(i);
    }
    if (!empty.empty()) {
      report.ok = false;
      report.message = count_text(static_cast<std::int64_t>(empty.size()), "parameter") +
                       " outside all constraints without a positive diagonal element in the global matrix "
                       "(no data and no pre-sigma): the matrix is not positive definite";
      report.weak_indices = std::move(empty);
      return report;
    }
  }

  // ---- constraints: QR of A^T (rows normalised), rank --------------------------------------------
  if (m > 0) {
    std::vector<double> q(nn * static_cast<std::size_t>(m), 0.0);
    for (std::int64_t k = 0; k < m; ++k) {
      double norm2 = 0.0;
      for (std::int64_t j = 0; j < n; ++j) norm2 += constraints.a[k * n + j] * constraints.a[k * n + j];
      const double inv = norm2 > 0.0 ? 1.0 / std::sqrt(norm2) : 0.0;
      for (std::int64_t j = 0; j < n; ++j) q[j + k * nn] = constraints.a[k * n + j] * inv;
    }
    const std::int64_t reflectors = std::min(n, m);
    m_q.allocate(q.size());
    m_tau.allocate(static_cast<std::size_t>(std::max<std::int64_t>(reflectors, 1)));
    upload(m_q.data(), q);
    std::vector<double> r_diagonal;
    if (n > 0) {
      std::size_t device_bytes = 0, host_bytes = 0;
      GPEDE_CUSOLVER_CHECK(cusolverDnXgeqrf_bufferSize(m_cusolver.get(), m_params.get(), n, m, CUDA_R_64F, m_q.data(),
                                                       n, CUDA_R_64F, m_tau.data(), CUDA_R_64F, &device_bytes,
                                                       &host_bytes));
      void* work = device_workspace(device_bytes);
      GPEDE_CUSOLVER_CHECK(cusolverDnXgeqrf(m_cusolver.get(), m_params.get(), n, m, CUDA_R_64F, m_q.data(), n,
                                            CUDA_R_64F, m_tau.data(), CUDA_R_64F, work, device_bytes,
                                            host_workspace(host_bytes), host_bytes, m_info.data()));
      read_info("Xgeqrf");
      r_diagonal = download_strided(m_q.data(), n + 1, reflectors, m_stream);
    }
    for (std::int64_t k = 0; k < m; ++k) {
      if (k >= n || !(std::abs(r_diagonal[k]) > kConstraintRankTolerance)) report.dependent_constraints.push_back(k);
    }
    if (!report.dependent_constraints.empty()) {
      report.ok = false;
      std::ostringstream msg;
      msg << "the constraints are linearly dependent: rank "
          << m - static_cast<std::int64_t>(report.dependent_constraints.size()) << " for " << m
          << " constraint equations; dependent on earlier ones (or empty):";
      for (std::int64_t k : report.dependent_constraints) msg << " #" << k + 1;
      report.message = msg.str();
      m_q.reset();
      m_tau.reset();
      return report;
    }
  }

  if (options.mode == ConstraintMode::multipliers && m > 0) {
    return factorize_bordered(std::move(matrix), constraints, diagonal, std::move(report));
  }
  m_eliminated = m;
  return factorize_reduced(std::move(matrix), std::move(report));
}

FactorReport CudaDenseSolver::factorize_reduced(DeviceBuffer<double> matrix, FactorReport report) {
  const std::int64_t n = m_n;
  const std::int64_t mr = m_eliminated;
  const std::size_t nn = static_cast<std::size_t>(n);
  const bool eigen = m_options.method == Method::diagonalization;
  const bool covariance = m_options.want_covariance && m_options.method != Method::decomposition;
  if (mr == 0) {
    m_q.reset();
    m_tau.reset();
  } else {
    apply_q(CUBLAS_SIDE_LEFT, CUBLAS_OP_T, n, n, matrix.data(), n);
    apply_q(CUBLAS_SIDE_RIGHT, CUBLAS_OP_N, n, n, matrix.data(), n);
  }
  const std::int64_t nr = n - mr;
  double* reduced = matrix.data() + mr + mr * n;
  const std::string what =
      mr > 0 ? "the global matrix reduced by " + count_text(mr, "constraint") : std::string("the global matrix");
  if (nr == 0) {
    m_kind = Kind::trivial;
    if (covariance) m_cov_diag.assign(nn, 0.0);
    return report;
  }

  if (eigen) {
    DeviceBuffer<double> w(static_cast<std::size_t>(nr));
    std::size_t device_bytes = 0, host_bytes = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnXsyevd_bufferSize(m_cusolver.get(), m_params.get(), CUSOLVER_EIG_MODE_VECTOR,
                                                     CUBLAS_FILL_MODE_LOWER, nr, CUDA_R_64F, reduced, n, CUDA_R_64F,
                                                     w.data(), CUDA_R_64F, &device_bytes, &host_bytes));
    void* work = device_workspace(device_bytes);
    GPEDE_CUSOLVER_CHECK(cusolverDnXsyevd(m_cusolver.get(), m_params.get(), CUSOLVER_EIG_MODE_VECTOR,
                                          CUBLAS_FILL_MODE_LOWER, nr, CUDA_R_64F, reduced, n, CUDA_R_64F, w.data(),
                                          CUDA_R_64F, work, device_bytes, host_workspace(host_bytes), host_bytes,
                                          m_info.data()));
    if (const int info = read_info("Xsyevd"); info > 0) {
      throw RuntimeError("cuSOLVER Xsyevd: the eigen-decomposition did not converge (info " + std::to_string(info) + ")");
    }
    m_workspace.reset();  // the eigensolver's workspace is as large as the matrix
    // Eigenvectors in variable space: W = Q [0; V], in place in columns mr..n-1.
    double* vectors = matrix.data() + mr * n;
    if (mr > 0) {
      GPEDE_CUDA_CHECK(cudaMemset2DAsync(vectors, nn * sizeof(double), 0, static_cast<std::size_t>(mr) * sizeof(double),
                                         static_cast<std::size_t>(nr), m_stream));
      apply_q(CUBLAS_SIDE_LEFT, CUBLAS_OP_N, n, nr, vectors, n);
    }
    std::vector<double> values = download(w.data(), static_cast<std::size_t>(nr));
    auto column = [&](std::int64_t k) { return download(vectors + k * n, nn); };
    double wmax = 0.0;
    for (double v : values) wmax = std::max(wmax, std::abs(v));
    const double tau = static_cast<double>(nr) * kEps * wmax;
    std::vector<double> inverse(values.size(), 0.0);
    std::int64_t bad = 0;
    for (std::int64_t k = 0; k < nr; ++k) {
      if (values[k] > tau) {
        inverse[k] = 1.0 / values[k];
      } else {
        ++bad;
        if (bad <= kMaxWeakModes) add_large_components(column(k).data(), n, report.weak_indices);
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
    for (std::int64_t k : eve_selection(values, m_options.eve_count)) report.eigenvectors.emplace_back(k, column(k));
    m_inverse_eigenvalues.allocate(inverse.size());
    upload(m_inverse_eigenvalues.data(), inverse);
    if (covariance) {
      DeviceBuffer<double> cov(nn);
      launch_weighted_row_sum_squares(vectors, n, nr, n, m_inverse_eigenvalues.data(), cov.data(), m_stream);
      m_cov_diag = download(cov.data(), nn);
    }
    report.eigenvalues = std::move(values);
    m_factor = std::move(matrix);
    m_vector_offset = mr * n;
    m_eigen_count = nr;
    m_kind = Kind::eigen;
    return report;
  }

  // Cholesky of the lower triangle; the strict upper triangle keeps the matrix for the analysis.
  DeviceBuffer<double> diagonal(static_cast<std::size_t>(nr));
  GPEDE_CUDA_CHECK(cudaMemcpy2DAsync(diagonal.data(), sizeof(double), reduced, (nn + 1) * sizeof(double),
                                     sizeof(double), static_cast<std::size_t>(nr), cudaMemcpyDeviceToDevice, m_stream));
  {
    std::size_t device_bytes = 0, host_bytes = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnXpotrf_bufferSize(m_cusolver.get(), m_params.get(), CUBLAS_FILL_MODE_LOWER, nr,
                                                     CUDA_R_64F, reduced, n, CUDA_R_64F, &device_bytes, &host_bytes));
    void* work = device_workspace(device_bytes);
    GPEDE_CUSOLVER_CHECK(cusolverDnXpotrf(m_cusolver.get(), m_params.get(), CUBLAS_FILL_MODE_LOWER, nr, CUDA_R_64F,
                                          reduced, n, CUDA_R_64F, work, device_bytes, host_workspace(host_bytes),
                                          host_bytes, m_info.data()));
  }
  const int info = read_info("Xpotrf");
  std::int64_t first_bad = info > 0 ? info - 1 : -1;
  std::int64_t bad_count = info > 0 ? 1 : 0;
  if (info == 0) {
    DeviceBuffer<unsigned long long> found(2);
    const unsigned long long init[2] = {0ull, ~0ull};
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(found.data(), init, sizeof init, cudaMemcpyHostToDevice, m_stream));
    launch_find_small_pivots(reduced, nr, n, diagonal.data(), pivot_tolerance(nr), found.data(), found.data() + 1,
                             m_stream);
    const std::vector<unsigned long long> host = download(found.data(), 2);
    if (host[0] > 0) {
      bad_count = static_cast<std::int64_t>(host[0]);
      first_bad = static_cast<std::int64_t>(host[1]);
    }
  }
  if (first_bad >= 0) {
    report.ok = false;
    report.message = what + " is not positive definite: " +
                     (info > 0 ? "the Cholesky factorisation stopped at a non-positive pivot (" +
                                     std::to_string(first_bad + 1) + " of " + std::to_string(nr) + ")"
                               : count_text(bad_count, "non-positive pivot") + " of " + std::to_string(nr) +
                                     " (first: " + std::to_string(first_bad + 1) + ")");
    weak_modes_of_failed_cholesky(reduced, first_bad, report);
    m_q.reset();
    m_tau.reset();
    return report;
  }
  if (covariance) {
    // Why Xtrtri and column norms, not an explicit inverse: the backend has to deliver the
    // diagonal of C^-1 (errors, global correlations), nothing else. With C = L L^T,
    // C^-1 = L^-T L^-1, so diag(C^-1)_i = sum_k (L^-1)_ki^2: one Xtrtri (n^3/3 flops, in a copy of
    // the factor because solve keeps using L) and an O(n^2) reduction. Forming C^-1 itself would
    // add lauum's n^3/3 (not in cuSOLVER; syrk or trmm on the full triangle cost n^3) or, by
    // Xpotrs against the identity, 2 n^3 in all, for values nobody reads. With elimination the
    // covariance is Q [0 0; 0 Cr^-1] Q^T = (M Q^T)^T (M Q^T) with M = [0 0; 0 L^-1]: its diagonal
    // is the column norms of M Q^T, one more ormqr from the right.
    require_free_memory(nn * nn * sizeof(double), "the inverse of the Cholesky factor (inversion)");
    DeviceBuffer<double> inverse(nn * nn);
    GPEDE_CUDA_CHECK(cudaMemsetAsync(inverse.data(), 0, inverse.bytes(), m_stream));
    double* inv_reduced = inverse.data() + mr + mr * n;
    launch_copy_lower(reduced, n, inv_reduced, n, nr, m_stream);
    std::size_t device_bytes = 0, host_bytes = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnXtrtri_bufferSize(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT,
                                                     nr, CUDA_R_64F, inv_reduced, n, &device_bytes, &host_bytes));
    void* work = device_workspace(device_bytes);
    GPEDE_CUSOLVER_CHECK(cusolverDnXtrtri(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, nr,
                                          CUDA_R_64F, inv_reduced, n, work, device_bytes, host_workspace(host_bytes),
                                          host_bytes, m_info.data()));
    if (const int trtri_info = read_info("Xtrtri"); trtri_info > 0) {
      throw RuntimeError("cuSOLVER Xtrtri: zero diagonal element " + std::to_string(trtri_info) +
                         " of a regular Cholesky factor");
    }
    if (mr > 0) apply_q(CUBLAS_SIDE_RIGHT, CUBLAS_OP_T, n, n, inverse.data(), n);
    DeviceBuffer<double> cov(nn);
    launch_column_sum_squares(inverse.data(), n, n, n, cov.data(), m_stream);
    m_cov_diag = download(cov.data(), nn);
  }
  m_factor = std::move(matrix);
  m_kind = Kind::cholesky;
  return report;
}

void CudaDenseSolver::weak_modes_of_failed_cholesky(const double* reduced, std::int64_t first_bad,
                                                    FactorReport& report) {
  // The leading first_bad columns of the factor are valid and the strict upper triangle still holds
  // the matrix: x = [-C11^-1 c; 1; 0] with c = C(0:k-1, k) has x^T C x = the failed pivot, a
  // near-null direction; in variable space Q [0; x] names the parameters involved.
  const std::int64_t n = m_n;
  const std::int64_t mr = m_eliminated;
  const std::int64_t k = first_bad;
  DeviceBuffer<double> x(static_cast<std::size_t>(n));
  GPEDE_CUDA_CHECK(cudaMemsetAsync(x.data(), 0, x.bytes(), m_stream));
  double* xr = x.data() + mr;
  if (k > 0) {
    const int ki = legacy_size(k, "trsv"), ld = legacy_size(n, "trsv");
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(xr, reduced + k * n, static_cast<std::size_t>(k) * sizeof(double),
                                     cudaMemcpyDeviceToDevice, m_stream));
    const double minus_one = -1.0;
    GPEDE_CUBLAS_CHECK(cublasDscal(m_cublas.get(), ki, &minus_one, xr, 1));
    GPEDE_CUBLAS_CHECK(cublasDtrsv(m_cublas.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, ki,
                                   reduced, ld, xr, 1));
    GPEDE_CUBLAS_CHECK(cublasDtrsv(m_cublas.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, CUBLAS_DIAG_NON_UNIT, ki,
                                   reduced, ld, xr, 1));
  }
  const std::vector<double> one{1.0};
  upload(xr + k, one);
  apply_q(CUBLAS_SIDE_LEFT, CUBLAS_OP_N, n, 1, x.data(), n);
  std::vector<double> v = download(x.data(), static_cast<std::size_t>(n));
  for (double& value : v) {
    if (!std::isfinite(value)) value = 0.0;
  }
  add_large_components(v.data(), n, report.weak_indices);
  if (report.weak_indices.empty() && mr == 0) report.weak_indices.push_back(k);
  sort_unique(report.weak_indices);
}

FactorReport CudaDenseSolver::factorize_bordered(DeviceBuffer<double> matrix, const ConstraintSystem& constraints,
                                                 const std::vector<double>& diagonal, FactorReport report) {
  const std::int64_t n = m_n;
  const std::int64_t m = m_m;
  const std::int64_t nb = n + m;
  const std::size_t ldb = static_cast<std::size_t>(nb);
  const bool eigen = m_options.method == Method::diagonalization;
  const bool covariance = m_options.want_covariance && m_options.method != Method::decomposition;
  m_q.reset();
  m_tau.reset();
  m_eliminated = 0;

  // Scaling by powers of two, as on the CPU. Bunch-Kaufman: unit diagonal for C and unit rows for
  // A, so that the pivot test is relative. Eigen-decomposition: C unscaled, each constraint row
  // scaled to the size of the diagonal elements it touches.
  m_scale.assign(ldb, 1.0);
  if (!eigen) {
    for (std::int64_t i = 0; i < n; ++i) {
      if (diagonal[i] > 0.0) m_scale[i] = 1.0 / nearest_power_of_two(std::sqrt(diagonal[i]));
    }
  }
  double max_diag = 0.0;
  for (std::int64_t i = 0; i < n; ++i) max_diag = std::max(max_diag, std::abs(diagonal[i]));
  for (std::int64_t k = 0; k < m; ++k) {
    double norm2 = 0.0, touched = 0.0;
    for (std::int64_t j = 0; j < n; ++j) {
      const double v = constraints.a[k * n + j] * m_scale[j];
      norm2 += v * v;
      if (v != 0.0) touched = std::max(touched, std::abs(diagonal[j]));
    }
    double target = 1.0;
    if (eigen) target = touched > 0.0 ? touched : (max_diag > 0.0 ? max_diag : 1.0);
    m_scale[n + k] = nearest_power_of_two(target / std::sqrt(norm2));
  }
  std::vector<double> scaled_rows(static_cast<std::size_t>(m * n));
  for (std::int64_t k = 0; k < m; ++k) {
    for (std::int64_t j = 0; j < n; ++j) {
      scaled_rows[k * n + j] = m_scale[n + k] * constraints.a[k * n + j] * m_scale[j];
    }
  }
  require_free_memory(ldb * ldb * sizeof(double), "the bordered matrix (Lagrange multipliers)");
  DeviceBuffer<double> bordered(ldb * ldb);
  {
    DeviceBuffer<double> scale(ldb);
    DeviceBuffer<double> rows(std::max<std::size_t>(scaled_rows.size(), 1));
    upload(scale.data(), m_scale);
    upload(rows.data(), scaled_rows);
    launch_build_bordered(matrix.data(), n, scale.data(), rows.data(), m, bordered.data(), m_stream);
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
  }
  matrix.reset();

  if (eigen) {
    DeviceBuffer<double> w(ldb);
    std::size_t device_bytes = 0, host_bytes = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnXsyevd_bufferSize(m_cusolver.get(), m_params.get(), CUSOLVER_EIG_MODE_VECTOR,
                                                     CUBLAS_FILL_MODE_LOWER, nb, CUDA_R_64F, bordered.data(), nb,
                                                     CUDA_R_64F, w.data(), CUDA_R_64F, &device_bytes, &host_bytes));
    void* work = device_workspace(device_bytes);
    GPEDE_CUSOLVER_CHECK(cusolverDnXsyevd(m_cusolver.get(), m_params.get(), CUSOLVER_EIG_MODE_VECTOR,
                                          CUBLAS_FILL_MODE_LOWER, nb, CUDA_R_64F, bordered.data(), nb, CUDA_R_64F,
                                          w.data(), CUDA_R_64F, work, device_bytes, host_workspace(host_bytes),
                                          host_bytes, m_info.data()));
    if (const int info = read_info("Xsyevd"); info > 0) {
      throw RuntimeError("cuSOLVER Xsyevd: the eigen-decomposition did not converge (info " + std::to_string(info) + ")");
    }
    m_workspace.reset();
    std::vector<double> values = download(w.data(), ldb);
    auto column = [&](std::int64_t k, std::size_t length) { return download(bordered.data() + k * nb, length); };
    double wmax = 0.0;
    for (double v : values) wmax = std::max(wmax, std::abs(v));
    const double tau = static_cast<double>(nb) * kEps * wmax;
    std::vector<double> inverse(values.size(), 0.0);
    std::vector<std::int64_t> zero_modes, negative_modes;
    for (std::int64_t k = 0; k < nb; ++k) {
      if (std::abs(values[k]) > tau) {
        inverse[k] = 1.0 / values[k];
        if (values[k] < 0.0) negative_modes.push_back(k);
      } else {
        zero_modes.push_back(k);
      }
    }
    report.rank_defect = static_cast<std::int64_t>(zero_modes.size());
    if (!zero_modes.empty()) {
      report.ok = false;
      report.message = "the bordered matrix (multipliers) is singular: " +
                       count_text(static_cast<std::int64_t>(zero_modes.size()), "eigenvalue") + " of " +
                       std::to_string(nb) + " at the rounding level";
      const std::size_t shown = std::min<std::size_t>(zero_modes.size(), kMaxWeakModes);
      for (std::size_t t = 0; t < shown; ++t) {
        add_large_components(column(zero_modes[t], static_cast<std::size_t>(n)).data(), n, report.weak_indices);
      }
    } else if (static_cast<std::int64_t>(negative_modes.size()) > m) {
      // A positive definite C on the null space of A gives exactly m negative eigenvalues; the
      // surplus ones are those whose eigenvectors lie most in the parameter space.
      const auto surplus = static_cast<std::int64_t>(negative_modes.size()) - m;
      report.ok = false;
      report.message = "the global matrix is not positive definite on the constraint surface: the bordered "
                       "matrix has " + std::to_string(negative_modes.size()) + " negative eigenvalues for " +
                       std::to_string(m) + " constraints (" + count_text(surplus, "non-positive direction") + ")";
      DeviceBuffer<double> share(ldb);
      launch_column_sum_squares(bordered.data(), n, nb, nb, share.data(), m_stream);
      const std::vector<double> shares = download(share.data(), ldb);
      std::vector<std::pair<double, std::int64_t>> ranked;
      for (std::int64_t k : negative_modes) ranked.emplace_back(-shares[k], k);
      std::sort(ranked.begin(), ranked.end());
      for (std::int64_t t = 0; t < std::min(surplus, kMaxWeakModes); ++t) {
        add_large_components(column(ranked[t].second, static_cast<std::size_t>(n)).data(), n, report.weak_indices);
      }
    }
    sort_unique(report.weak_indices);
    for (std::int64_t k : eve_selection(values, m_options.eve_count)) report.eigenvectors.emplace_back(k, column(k, ldb));
    m_inverse_eigenvalues.allocate(inverse.size());
    upload(m_inverse_eigenvalues.data(), inverse);
    if (covariance) {
      DeviceBuffer<double> cov(static_cast<std::size_t>(n));
      launch_weighted_row_sum_squares(bordered.data(), n, nb, nb, m_inverse_eigenvalues.data(), cov.data(), m_stream);
      m_cov_diag = download(cov.data(), static_cast<std::size_t>(n));
    }
    report.eigenvalues = std::move(values);
    m_factor = std::move(bordered);
    m_vector_offset = 0;
    m_eigen_count = nb;
    m_kind = Kind::bordered_eigen;
    return report;
  }

  // Bunch-Kaufman (legacy 32-bit API: cuSOLVER has no 64-bit sytrf).
  const int nbi = legacy_size(nb, "sytrf");
  DeviceBuffer<int> ipiv(ldb);
  {
    int lwork = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnDsytrf_bufferSize(m_cusolver.get(), nbi, bordered.data(), nbi, &lwork));
    auto* work = static_cast<double*>(device_workspace(static_cast<std::size_t>(std::max(lwork, 1)) * sizeof(double)));
    GPEDE_CUSOLVER_CHECK(cusolverDnDsytrf(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, nbi, bordered.data(), nbi,
                                          ipiv.data(), work, lwork, m_info.data()));
    read_info("Dsytrf");  // info > 0 (an exactly zero pivot) is found below with the near-zero ones
  }
  std::vector<double> d = download_strided(bordered.data(), nb + 1, nb, m_stream);
  std::vector<double> sub = download_strided(bordered.data() + 1, nb + 1, nb - 1, m_stream);
  const std::vector<int> pivots = download(ipiv.data(), ldb);
  // Inertia and near-zero pivots from the 1x1 and 2x2 blocks of D.
  const double tol = pivot_tolerance(nb);
  std::int64_t negative = 0;
  std::vector<std::pair<std::int64_t, int>> tiny;  // (block start, which eigenvalue: 0 lower, 1 upper, -1 1x1)
  for (std::int64_t k = 0; k < nb;) {
    const double a = d[k];
    if (pivots[k] > 0) {
      if (std::abs(a) <= tol) {
        tiny.emplace_back(k, -1);
      } else if (a < 0.0) {
        ++negative;
      }
      k += 1;
    } else {
      const double b = sub[k], c = d[k + 1];
      const double mean = 0.5 * (a + c), radius = std::hypot(0.5 * (a - c), b);
      const double lo = mean - radius, hi = mean + radius;
      if (std::abs(lo) <= tol) {
        tiny.emplace_back(k, 0);
      } else if (lo < 0.0) {
        ++negative;
      }
      if (std::abs(hi) <= tol) {
        tiny.emplace_back(k, 1);
      } else if (hi < 0.0) {
        ++negative;
      }
      k += 2;
    }
  }
  DeviceBuffer<std::int64_t> wide_pivots(ldb);
  launch_widen_pivots(ipiv.data(), wide_pivots.data(), nb, m_stream);
  auto sytrs = [&](double* rhs, std::int64_t nrhs) {
    std::size_t device_bytes = 0, host_bytes = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnXsytrs_bufferSize(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, nb, nrhs, CUDA_R_64F,
                                                     bordered.data(), nb, wide_pivots.data(), CUDA_R_64F, rhs, nb,
                                                     &device_bytes, &host_bytes));
    void* work = device_workspace(device_bytes);
    GPEDE_CUSOLVER_CHECK(cusolverDnXsytrs(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, nb, nrhs, CUDA_R_64F,
                                          bordered.data(), nb, wide_pivots.data(), CUDA_R_64F, rhs, nb, work,
                                          device_bytes, host_workspace(host_bytes), host_bytes, m_info.data()));
    read_info("Xsytrs");
  };
  if (!tiny.empty()) {
    report.ok = false;
    report.message = "the bordered matrix (multipliers) is singular: " +
                     count_text(static_cast<std::int64_t>(tiny.size()), "zero pivot") + " of " + std::to_string(nb);
    // Lift the zero pivots to +-tol (rank-one change of the block along its near-null direction)
    // and run inverse iteration: its vectors converge to the near-null space.
    for (const auto& [k, which] : tiny) {
      double& a = d[k];
      if (which < 0) {
        a = a < 0.0 ? -tol : tol;
        upload(bordered.data() + k * nb + k, std::vector<double>{a});
        continue;
      }
      double& b = sub[k];
      double& c = d[k + 1];
      lift_pivot_block(a, b, c, which, tol);
      upload(bordered.data() + k * nb + k, std::vector<double>{a, b});
      upload(bordered.data() + (k + 1) * nb + k + 1, std::vector<double>{c});
    }
    const std::int64_t modes = std::min<std::int64_t>(static_cast<std::int64_t>(tiny.size()), kMaxWeakModes);
    std::vector<double> y(ldb * static_cast<std::size_t>(modes));
    std::mt19937_64 rng(12345);
    std::uniform_real_distribution<double> uniform(-1.0, 1.0);
    for (double& v : y) v = uniform(rng);
    DeviceBuffer<double> y_device(y.size());
    for (int iteration = 0; iteration < 3; ++iteration) {
      upload(y_device.data(), y);
      sytrs(y_device.data(), modes);
      y = download(y_device.data(), y.size());
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
    std::vector<double> x(static_cast<std::size_t>(n));
    for (std::int64_t t = 0; t < modes; ++t) {
      for (std::int64_t i = 0; i < n; ++i) x[i] = m_scale[i] * y[i + t * ldb];
      add_large_components(x.data(), n, report.weak_indices);
    }
    sort_unique(report.weak_indices);
    m_scale.clear();
    return report;
  }
  if (negative > m) {
    report.ok = false;
    report.message = "the global matrix is not positive definite on the constraint surface: the bordered matrix has " +
                     std::to_string(negative) + " negative eigenvalues for " + std::to_string(m) + " constraints (" +
                     count_text(negative - m, "non-positive direction") + "; elimination names the parameters involved)";
    m_scale.clear();
    return report;
  }
  if (covariance) {
    // The top-left n x n block of the inverse of the bordered matrix, from Dsytri on a copy of the
    // factor (the factor itself stays for solve).
    require_free_memory(ldb * ldb * sizeof(double), "the inverse of the bordered matrix (inversion with multipliers)");
    DeviceBuffer<double> inverse(ldb * ldb);
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(inverse.data(), bordered.data(), inverse.bytes(), cudaMemcpyDeviceToDevice, m_stream));
    int lwork = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnDsytri_bufferSize(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, nbi, inverse.data(), nbi,
                                                     ipiv.data(), &lwork));
    auto* work = static_cast<double*>(device_workspace(static_cast<std::size_t>(std::max(lwork, 1)) * sizeof(double)));
    GPEDE_CUSOLVER_CHECK(cusolverDnDsytri(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, nbi, inverse.data(), nbi,
                                          ipiv.data(), work, lwork, m_info.data()));
    if (const int info = read_info("Dsytri"); info > 0) {
      throw RuntimeError("cuSOLVER Dsytri: singular pivot " + std::to_string(info) + " after a regular factorisation");
    }
    const std::vector<double> inverse_diagonal = download_strided(inverse.data(), nb + 1, n, m_stream);
    m_cov_diag.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) m_cov_diag[i] = m_scale[i] * m_scale[i] * inverse_diagonal[i];
  }
  m_pivots = std::move(wide_pivots);
  m_factor = std::move(bordered);
  m_kind = Kind::bordered_ldlt;
  return report;
}

std::vector<double> CudaDenseSolver::solve(const std::vector<double>& b) {
  if (static_cast<std::int64_t>(b.size()) != m_n) {
    throw RuntimeError("CUDA dense solver: right-hand side of size " + std::to_string(b.size()) + " for " +
                       std::to_string(m_n) + " parameters");
  }
  const std::size_t nn = static_cast<std::size_t>(m_n);
  switch (m_kind) {
    case Kind::none:
      throw RuntimeError("CUDA dense solver: no valid factorisation to solve with");
    case Kind::trivial:
      return std::vector<double>(nn, 0.0);
    case Kind::cholesky: {
      const std::int64_t mr = m_eliminated;
      const std::int64_t nr = m_n - mr;
      DeviceBuffer<double> x(nn);
      upload(x.data(), b);
      apply_q(CUBLAS_SIDE_LEFT, CUBLAS_OP_T, m_n, 1, x.data(), m_n);
      GPEDE_CUSOLVER_CHECK(cusolverDnXpotrs(m_cusolver.get(), m_params.get(), CUBLAS_FILL_MODE_LOWER, nr, 1, CUDA_R_64F,
                                            m_factor.data() + mr + mr * m_n, m_n, CUDA_R_64F, x.data() + mr,
                                            std::max<std::int64_t>(nr, 1), m_info.data()));
      read_info("Xpotrs");
      if (mr > 0) {
        GPEDE_CUDA_CHECK(cudaMemsetAsync(x.data(), 0, static_cast<std::size_t>(mr) * sizeof(double), m_stream));
        apply_q(CUBLAS_SIDE_LEFT, CUBLAS_OP_N, m_n, 1, x.data(), m_n);
      }
      return download(x.data(), nn);
    }
    case Kind::eigen:
    case Kind::bordered_eigen: {
      // x = V diag(1/lambda) V^T b over the parameter rows of the eigenvectors V.
      const std::int64_t ld = m_kind == Kind::eigen ? m_n : m_n + m_m;
      const int rows = legacy_size(m_n, "gemv"), cols = legacy_size(m_eigen_count, "gemv"), ldi = legacy_size(ld, "gemv");
      const double one = 1.0, zero = 0.0;
      const double* v = m_factor.data() + m_vector_offset;
      DeviceBuffer<double> rhs(nn), t(static_cast<std::size_t>(m_eigen_count)), x(nn);
      upload(rhs.data(), b);
      GPEDE_CUBLAS_CHECK(cublasDgemv(m_cublas.get(), CUBLAS_OP_T, rows, cols, &one, v, ldi, rhs.data(), 1, &zero,
                                     t.data(), 1));
      launch_scale_elements(t.data(), m_inverse_eigenvalues.data(), m_eigen_count, m_stream);
      GPEDE_CUBLAS_CHECK(cublasDgemv(m_cublas.get(), CUBLAS_OP_N, rows, cols, &one, v, ldi, t.data(), 1, &zero,
                                     x.data(), 1));
      return download(x.data(), nn);
    }
    case Kind::bordered_ldlt: {
      const std::int64_t nb = m_n + m_m;
      std::vector<double> y(static_cast<std::size_t>(nb), 0.0);
      for (std::int64_t i = 0; i < m_n; ++i) y[i] = m_scale[i] * b[i];
      DeviceBuffer<double> y_device(y.size());
      upload(y_device.data(), y);
      std::size_t device_bytes = 0, host_bytes = 0;
      GPEDE_CUSOLVER_CHECK(cusolverDnXsytrs_bufferSize(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, nb, 1, CUDA_R_64F,
                                                       m_factor.data(), nb, m_pivots.data(), CUDA_R_64F,
                                                       y_device.data(), nb, &device_bytes, &host_bytes));
      void* work = device_workspace(device_bytes);
      GPEDE_CUSOLVER_CHECK(cusolverDnXsytrs(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, nb, 1, CUDA_R_64F,
                                            m_factor.data(), nb, m_pivots.data(), CUDA_R_64F, y_device.data(), nb,
                                            work, device_bytes, host_workspace(host_bytes), host_bytes,
                                            m_info.data()));
      read_info("Xsytrs");
      y = download(y_device.data(), y.size());
      std::vector<double> x(nn);
      for (std::int64_t i = 0; i < m_n; ++i) x[i] = m_scale[i] * y[i];
      return x;
    }
  }
  return {};
}

}  // namespace gpede::detail::cuda
