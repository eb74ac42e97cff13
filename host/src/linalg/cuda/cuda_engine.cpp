// The CUDA engine of the linear-algebra layer (cuda_engine.hpp): each operation is one cuSOLVER or
// cuBLAS call (with its workspace and its device-side info copied back and checked), one kernel of
// dense_ops.cu, or one copy. Every call on the global matrix uses the 64-bit API: the constraint Q
// is applied in compact-WY form (Xlarft and three GEMMs), the diagonal of an LDL^T inverse comes
// from Xsytrs on blocks of the identity. cuSOLVER has no 64-bit Bunch-Kaufman: Dsytrf (32-bit)
// factorises bordered matrices of up to 2^31 - 1 elements on the device, larger ones are
// factorised by LAPACK on the host. The failure paths that LAPACK serves better (pivoted
// Cholesky, pede's sweeps) copy the block to the host, run the CPU engine, and copy it back.
#include "cuda_engine.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "cuda_entry_points.hpp"
#include "cuda_check.hpp"
#include "dense_launch.hpp"
#include "gpede/error.hpp"

namespace gpede::detail::cuda {
namespace {

using linalg::Matrix;
using linalg::Pivots;
using linalg::Side;
using linalg::View;

// Left free beside a large allocation (cuSOLVER/cuBLAS internals, fragmentation).
constexpr std::size_t kAllocationReserve = std::size_t{256} << 20;

int legacy_size(std::int64_t value, const char* routine) {
  if (value > std::numeric_limits<int>::max()) {
    throw RuntimeError(std::string("CUDA linear algebra: dimension ") + std::to_string(value) +
                       " exceeds the 32-bit range of " + routine);
  }
  return static_cast<int>(std::max<std::int64_t>(value, 0));
}

std::string gigabytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f GB", bytes / 1e9);
  return text;
}

std::size_t bytes_of(const View& a) { return static_cast<std::size_t>(a.rows) * sizeof(double); }

// The legacy 32-bit cuSOLVER API addresses at most 2^31 - 1 elements of a matrix.
bool fits_legacy_api(const View& a) {
  const std::int64_t limit = std::numeric_limits<int>::max();
  return a.ld <= limit && a.cols <= limit && a.ld * std::max<std::int64_t>(a.cols, 1) <= limit;
}

// What a Bunch-Kaufman factorisation keeps on the device: the 64-bit pivots of Xsytrs.
struct DevicePivots {
  DeviceBuffer<std::int64_t> wide;
};

class CudaEngine final : public linalg::Engine {
 public:
  explicit CudaEngine(cudaStream_t stream)
      : m_stream(stream),
        m_cublas(make_cublas(stream)),
        m_cusolver(make_cusolver(stream)),
        m_params(make_cusolver_params()),
        m_info(1),
        m_info_host(1),
        m_host(linalg::make_cpu_engine()) {}

  std::string name() const override { return "cuda"; }

  Matrix allocate(std::int64_t rows, std::int64_t cols) override {
    const std::size_t elements = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
    if (elements * sizeof(double) > (std::size_t{64} << 20)) require_free_memory(elements * sizeof(double));
    auto buffer = std::make_shared<DeviceBuffer<double>>(elements);
    if (elements > 0) GPEDE_CUDA_CHECK(cudaMemsetAsync(buffer->data(), 0, buffer->bytes(), m_stream));
    double* data = buffer->data();
    return Matrix(std::move(buffer), data, rows, cols);
  }

  void fill(View a, double value) override {
    if (a.empty()) return;
    if (value == 0.0) {
      GPEDE_CUDA_CHECK(cudaMemset2DAsync(a.ptr(), static_cast<std::size_t>(a.ld) * sizeof(double), 0, bytes_of(a),
                                         static_cast<std::size_t>(a.cols), m_stream));
    } else {
      launch_fill_block(a.ptr(), a.rows, a.cols, a.ld, value, m_stream);
    }
  }

  void copy(View from, View to) override {
    if (from.empty()) return;
    GPEDE_CUDA_CHECK(cudaMemcpy2DAsync(to.ptr(), static_cast<std::size_t>(to.ld) * sizeof(double), from.ptr(),
                                       static_cast<std::size_t>(from.ld) * sizeof(double), bytes_of(from),
                                       static_cast<std::size_t>(from.cols), cudaMemcpyDeviceToDevice, m_stream));
  }

  void upload(const std::vector<double>& host, View to) override {
    if (to.empty()) return;
    GPEDE_CUDA_CHECK(cudaMemcpy2DAsync(to.ptr(), static_cast<std::size_t>(to.ld) * sizeof(double), host.data(),
                                       bytes_of(to), bytes_of(to), static_cast<std::size_t>(to.cols),
                                       cudaMemcpyHostToDevice, m_stream));
    // The host vector may go away when this returns.
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
  }

  std::vector<double> download(View a) override {
    std::vector<double> host(static_cast<std::size_t>(a.rows) * static_cast<std::size_t>(a.cols));
    if (!a.empty()) {
      GPEDE_CUDA_CHECK(cudaMemcpy2DAsync(host.data(), bytes_of(a), a.ptr(), static_cast<std::size_t>(a.ld) * sizeof(double),
                                         bytes_of(a), static_cast<std::size_t>(a.cols), cudaMemcpyDeviceToHost, m_stream));
    }
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
    return host;
  }

  std::vector<double> diagonal(View a) override {
    const std::int64_t count = std::min(a.rows, a.cols);
    std::vector<double> host(static_cast<std::size_t>(std::max<std::int64_t>(count, 0)));
    if (count > 0) {
      GPEDE_CUDA_CHECK(cudaMemcpy2DAsync(host.data(), sizeof(double), a.ptr(),
                                         static_cast<std::size_t>(a.ld + 1) * sizeof(double), sizeof(double),
                                         static_cast<std::size_t>(count), cudaMemcpyDeviceToHost, m_stream));
    }
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
    return host;
  }

  void set_diagonal(View a, const std::vector<double>& values) override {
    if (values.empty()) return;
    GPEDE_CUDA_CHECK(cudaMemcpy2DAsync(a.ptr(), static_cast<std::size_t>(a.ld + 1) * sizeof(double), values.data(),
                                       sizeof(double), sizeof(double), values.size(), cudaMemcpyHostToDevice, m_stream));
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
  }

  std::vector<std::int64_t> nonfinite_rows(View a) override {
    std::vector<std::int64_t> out;
    if (a.empty()) return out;
    const std::size_t n = static_cast<std::size_t>(a.rows);
    DeviceBuffer<unsigned char> flags(n);
    GPEDE_CUDA_CHECK(cudaMemsetAsync(flags.data(), 0, n, m_stream));
    launch_flag_nonfinite(a.ptr(), a.rows, a.ld, flags.data(), m_stream);
    std::vector<unsigned char> host(n);
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(host.data(), flags.data(), n, cudaMemcpyDeviceToHost, m_stream));
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
    for (std::size_t i = 0; i < n; ++i) {
      if (host[i] != 0) out.push_back(static_cast<std::int64_t>(i));
    }
    return out;
  }

  void scale(View a, const std::vector<double>& row_scale, const std::vector<double>& col_scale) override {
    if (a.empty()) return;
    DeviceBuffer<double> r(row_scale.size()), c(col_scale.size());
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(r.data(), row_scale.data(), r.bytes(), cudaMemcpyHostToDevice, m_stream));
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(c.data(), col_scale.data(), c.bytes(), cudaMemcpyHostToDevice, m_stream));
    launch_scale_block(a.ptr(), a.rows, a.cols, a.ld, r.data(), c.data(), m_stream);
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
  }

  void copy_lower(View from, View to) override {
    if (from.empty()) return;
    fill(to, 0.0);
    launch_copy_lower(from.ptr(), from.ld, to.ptr(), to.ld, from.rows, m_stream);
  }

  std::vector<double> column_sum_squares(View a) override {
    DeviceBuffer<double> out(static_cast<std::size_t>(a.cols));
    launch_column_sum_squares(a.ptr(), a.rows, a.cols, a.ld, out.data(), m_stream);
    return download_vector(out);
  }

  std::vector<double> lower_column_sum_squares(View a) override {
    DeviceBuffer<double> out(static_cast<std::size_t>(a.cols));
    launch_column_sum_squares(a.ptr(), a.rows, a.cols, a.ld, out.data(), m_stream, /*lower_only=*/true);
    return download_vector(out);
  }

  void zero_strict_upper(View a) override {
    if (a.empty()) return;
    launch_zero_strict_upper(a.ptr(), a.rows, a.cols, a.ld, m_stream);
  }

  std::vector<double> weighted_row_sum_squares(View a, const std::vector<double>& w) override {
    DeviceBuffer<double> weights(w.size()), out(static_cast<std::size_t>(a.rows));
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(weights.data(), w.data(), weights.bytes(), cudaMemcpyHostToDevice, m_stream));
    launch_weighted_row_sum_squares(a.ptr(), a.rows, a.cols, a.ld, weights.data(), out.data(), m_stream);
    return download_vector(out);
  }

  void householder_qr(View a, View tau) override {
    if (a.empty()) return;
    std::size_t device_bytes = 0, host_bytes = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnXgeqrf_bufferSize(m_cusolver.get(), m_params.get(), a.rows, a.cols, CUDA_R_64F,
                                                     a.ptr(), a.ld, CUDA_R_64F, tau.ptr(), CUDA_R_64F, &device_bytes,
                                                     &host_bytes));
    void* work = device_workspace(device_bytes);
    GPEDE_CUSOLVER_CHECK(cusolverDnXgeqrf(m_cusolver.get(), m_params.get(), a.rows, a.cols, CUDA_R_64F, a.ptr(), a.ld,
                                          CUDA_R_64F, tau.ptr(), CUDA_R_64F, work, device_bytes,
                                          host_workspace(host_bytes), host_bytes, m_info.data()));
    read_info("Xgeqrf");
  }

  void apply_householder(Side side, bool transpose, View q, View tau, std::int64_t reflectors, View c) override {
    // Compact WY: Q = H_1 ... H_k = I - V T V^T with V the unit lower trapezoid of the reflectors
    // and T upper triangular (Xlarft), applied with three 64-bit GEMMs:
    //   left:  c -= V op(T) (V^T c)      right: c -= ((c V) op(T)) V^T,   op(T) = T^T for Q^T.
    if (c.empty() || reflectors == 0) return;
    const std::int64_t rows = q.rows, k = reflectors;
    const std::int64_t other = side == Side::left ? c.cols : c.rows;
    DeviceBuffer<double> v(static_cast<std::size_t>(rows * k)), t(static_cast<std::size_t>(k * k)),
        w1(static_cast<std::size_t>(k * other)), w2(static_cast<std::size_t>(k * other));
    launch_unit_lower(q.ptr(), q.ld, rows, k, v.data(), m_stream);
    GPEDE_CUDA_CHECK(cudaMemsetAsync(t.data(), 0, t.bytes(), m_stream));
    std::size_t device_bytes = 0, host_bytes = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnXlarft_bufferSize(m_cusolver.get(), m_params.get(), CUBLAS_DIRECT_FORWARD,
                                                     CUBLAS_STOREV_COLUMNWISE, rows, k, CUDA_R_64F, v.data(), rows,
                                                     CUDA_R_64F, tau.ptr(), CUDA_R_64F, t.data(), k, CUDA_R_64F,
                                                     &device_bytes, &host_bytes));
    GPEDE_CUSOLVER_CHECK(cusolverDnXlarft(m_cusolver.get(), m_params.get(), CUBLAS_DIRECT_FORWARD,
                                          CUBLAS_STOREV_COLUMNWISE, rows, k, CUDA_R_64F, v.data(), rows, CUDA_R_64F,
                                          tau.ptr(), CUDA_R_64F, t.data(), k, CUDA_R_64F,
                                          device_workspace(device_bytes), device_bytes, host_workspace(host_bytes),
                                          host_bytes));
    const double one = 1.0, zero = 0.0, minus = -1.0;
    const cublasOperation_t op_t = transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasHandle_t h = m_cublas.get();
    if (side == Side::left) {  // c is rows x other
      GPEDE_CUBLAS_CHECK(cublasDgemm_64(h, CUBLAS_OP_T, CUBLAS_OP_N, k, other, rows, &one, v.data(), rows, c.ptr(), c.ld,
                                        &zero, w1.data(), k));
      GPEDE_CUBLAS_CHECK(cublasDgemm_64(h, op_t, CUBLAS_OP_N, k, other, k, &one, t.data(), k, w1.data(), k, &zero,
                                        w2.data(), k));
      GPEDE_CUBLAS_CHECK(cublasDgemm_64(h, CUBLAS_OP_N, CUBLAS_OP_N, rows, other, k, &minus, v.data(), rows, w2.data(),
                                        k, &one, c.ptr(), c.ld));
    } else {  // c is other x rows
      GPEDE_CUBLAS_CHECK(cublasDgemm_64(h, CUBLAS_OP_N, CUBLAS_OP_N, other, k, rows, &one, c.ptr(), c.ld, v.data(), rows,
                                        &zero, w1.data(), other));
      GPEDE_CUBLAS_CHECK(cublasDgemm_64(h, CUBLAS_OP_N, op_t, other, k, k, &one, w1.data(), other, t.data(), k, &zero,
                                        w2.data(), other));
      GPEDE_CUBLAS_CHECK(cublasDgemm_64(h, CUBLAS_OP_N, CUBLAS_OP_T, other, rows, k, &minus, w2.data(), other, v.data(),
                                        rows, &one, c.ptr(), c.ld));
    }
  }

  std::int64_t cholesky(View a) override {
    if (a.empty()) return 0;
    std::size_t device_bytes = 0, host_bytes = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnXpotrf_bufferSize(m_cusolver.get(), m_params.get(), CUBLAS_FILL_MODE_LOWER, a.rows,
                                                     CUDA_R_64F, a.ptr(), a.ld, CUDA_R_64F, &device_bytes, &host_bytes));
    void* work = device_workspace(device_bytes);
    GPEDE_CUSOLVER_CHECK(cusolverDnXpotrf(m_cusolver.get(), m_params.get(), CUBLAS_FILL_MODE_LOWER, a.rows, CUDA_R_64F,
                                          a.ptr(), a.ld, CUDA_R_64F, work, device_bytes, host_workspace(host_bytes),
                                          host_bytes, m_info.data()));
    return read_info("Xpotrf");
  }

  void cholesky_solve(View l, View b) override {
    if (l.empty() || b.empty()) return;
    GPEDE_CUSOLVER_CHECK(cusolverDnXpotrs(m_cusolver.get(), m_params.get(), CUBLAS_FILL_MODE_LOWER, l.rows, b.cols,
                                          CUDA_R_64F, l.ptr(), l.ld, CUDA_R_64F, b.ptr(), b.ld, m_info.data()));
    read_info("Xpotrs");
  }

  void triangular_inverse(View l) override {
    if (l.empty()) return;
    std::size_t device_bytes = 0, host_bytes = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnXtrtri_bufferSize(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT,
                                                     l.rows, CUDA_R_64F, l.ptr(), l.ld, &device_bytes, &host_bytes));
    void* work = device_workspace(device_bytes);
    GPEDE_CUSOLVER_CHECK(cusolverDnXtrtri(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, l.rows,
                                          CUDA_R_64F, l.ptr(), l.ld, work, device_bytes, host_workspace(host_bytes),
                                          host_bytes, m_info.data()));
    if (const int info = read_info("Xtrtri"); info > 0) {
      throw RuntimeError("cuSOLVER Xtrtri: zero diagonal element " + std::to_string(info) + " of a regular factor");
    }
  }

  void lower_triangular_multiply(View l, bool transpose, View x) override {
    if (l.empty()) return;
    GPEDE_CUBLAS_CHECK(cublasDtrmv_64(m_cublas.get(), CUBLAS_FILL_MODE_LOWER, transpose ? CUBLAS_OP_T : CUBLAS_OP_N,
                                      CUBLAS_DIAG_NON_UNIT, l.rows, l.ptr(), l.ld, x.ptr(), 1));
  }

  void upper_triangular_solve(View u, View x) override {
    if (u.empty()) return;
    GPEDE_CUBLAS_CHECK(cublasDtrsv_64(m_cublas.get(), CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, u.rows,
                                      u.ptr(), u.ld, x.ptr(), 1));
  }

  std::vector<std::int64_t> pivoted_cholesky(View a, double tol, std::int64_t& rank) override {
    // cuSOLVER has no pivoted Cholesky: the failure analysis runs on the host.
    Matrix host = linalg::adopt_host_matrix(download(a), a.rows, a.cols);
    std::vector<std::int64_t> piv = m_host->pivoted_cholesky(host.view(), tol, rank);
    upload(m_host->download(host.view()), a);
    return piv;
  }

  std::vector<double> eigen(View a) override {
    if (a.empty()) return {};
    DeviceBuffer<double> w(static_cast<std::size_t>(a.rows));
    std::size_t device_bytes = 0, host_bytes = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnXsyevd_bufferSize(m_cusolver.get(), m_params.get(), CUSOLVER_EIG_MODE_VECTOR,
                                                     CUBLAS_FILL_MODE_LOWER, a.rows, CUDA_R_64F, a.ptr(), a.ld,
                                                     CUDA_R_64F, w.data(), CUDA_R_64F, &device_bytes, &host_bytes));
    void* work = device_workspace(device_bytes);
    GPEDE_CUSOLVER_CHECK(cusolverDnXsyevd(m_cusolver.get(), m_params.get(), CUSOLVER_EIG_MODE_VECTOR,
                                          CUBLAS_FILL_MODE_LOWER, a.rows, CUDA_R_64F, a.ptr(), a.ld, CUDA_R_64F,
                                          w.data(), CUDA_R_64F, work, device_bytes, host_workspace(host_bytes),
                                          host_bytes, m_info.data()));
    if (const int info = read_info("Xsyevd"); info > 0) {
      throw RuntimeError("cuSOLVER Xsyevd: the eigen-decomposition did not converge (info " + std::to_string(info) + ")");
    }
    m_workspace.reset();  // the eigensolver's workspace is as large as the matrix
    return download_vector(w);
  }

  Pivots ldlt(View a) override {
    // cuSOLVER's Bunch-Kaufman (Dsytrf) has only the 32-bit API, which addresses at most 2^31 - 1
    // elements: larger matrices are factorised on the host by LAPACK (its dsytrf addresses the
    // matrix with 64-bit offsets), then factor and pivots go back to the device for Xsytrs.
    auto device = std::make_shared<DevicePivots>();
    const std::int64_t n = a.rows;
    device->wide.allocate(static_cast<std::size_t>(std::max<std::int64_t>(n, 1)));
    Pivots pivots;
    if (!fits_legacy_api(a)) {
      Matrix host = linalg::adopt_host_matrix(download(a), a.rows, a.cols);
      pivots = m_host->ldlt(host.view());
      upload(m_host->download(host.view()), a);
      GPEDE_CUDA_CHECK(cudaMemcpyAsync(device->wide.data(), pivots.host.data(),
                                       pivots.host.size() * sizeof(std::int64_t), cudaMemcpyHostToDevice, m_stream));
      GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
      pivots.engine = device;
      return pivots;
    }
    const int ni = legacy_size(n, "sytrf"), lda = legacy_size(a.ld, "sytrf");
    DeviceBuffer<int> narrow(static_cast<std::size_t>(std::max(ni, 1)));
    if (ni > 0) {
      int lwork = 0;
      GPEDE_CUSOLVER_CHECK(cusolverDnDsytrf_bufferSize(m_cusolver.get(), ni, a.ptr(), lda, &lwork));
      auto* work = static_cast<double*>(device_workspace(static_cast<std::size_t>(std::max(lwork, 1)) * sizeof(double)));
      GPEDE_CUSOLVER_CHECK(cusolverDnDsytrf(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, ni, a.ptr(), lda, narrow.data(), work,
                                            lwork, m_info.data()));
      read_info("Dsytrf");  // info > 0 (an exactly zero pivot) is a result the solution examines
      launch_widen_pivots(narrow.data(), device->wide.data(), ni, m_stream);
    }
    std::vector<int> host(static_cast<std::size_t>(ni));
    if (ni > 0) {
      GPEDE_CUDA_CHECK(cudaMemcpyAsync(host.data(), narrow.data(), host.size() * sizeof(int), cudaMemcpyDeviceToHost,
                                       m_stream));
    }
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
    pivots.host.assign(host.begin(), host.end());
    pivots.engine = device;
    return pivots;
  }

  void ldlt_solve(View a, const Pivots& pivots, View b) override {
    if (a.empty() || b.empty()) return;
    const auto* device = static_cast<const DevicePivots*>(pivots.engine.get());
    std::size_t device_bytes = 0, host_bytes = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnXsytrs_bufferSize(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, a.rows, b.cols,
                                                     CUDA_R_64F, a.ptr(), a.ld, device->wide.data(), CUDA_R_64F, b.ptr(),
                                                     b.ld, &device_bytes, &host_bytes));
    void* work = device_workspace(device_bytes);
    GPEDE_CUSOLVER_CHECK(cusolverDnXsytrs(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, a.rows, b.cols, CUDA_R_64F, a.ptr(),
                                          a.ld, device->wide.data(), CUDA_R_64F, b.ptr(), b.ld, work, device_bytes,
                                          host_workspace(host_bytes), host_bytes, m_info.data()));
    read_info("Xsytrs");
  }

  std::vector<double> ldlt_inverse_diagonal(View a, const Pivots& pivots) override {
    // Column blocks of the identity solved with the factor (64-bit Xsytrs): (A^-1)_jj is element j
    // of the solution for e_j. No second n x n matrix (Dsytri would need one, in the 32-bit API);
    // 2 n^3 flops in level-3 solves.
    const std::int64_t n = a.rows;
    std::vector<double> out(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)));
    if (n == 0) return out;
    std::size_t free_bytes = 0, total_bytes = 0;
    GPEDE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const std::size_t room = free_bytes > 2 * kAllocationReserve ? (free_bytes - 2 * kAllocationReserve) / 2 : 0;
    const std::int64_t by_memory = static_cast<std::int64_t>(room / (static_cast<std::size_t>(n) * sizeof(double)));
    const std::int64_t chunk = std::max<std::int64_t>(1, std::min<std::int64_t>({n, 4096, by_memory}));
    Matrix block = allocate(n, chunk);
    const std::vector<double> ones(static_cast<std::size_t>(chunk), 1.0);
    for (std::int64_t j0 = 0; j0 < n; j0 += chunk) {
      const std::int64_t cols = std::min(chunk, n - j0);
      const View rhs = block.view().block(0, 0, n, cols);
      fill(rhs, 0.0);
      // rhs(j0 + c, c) = 1: stride n + 1 from element j0
      GPEDE_CUDA_CHECK(cudaMemcpy2DAsync(rhs.ptr() + j0, static_cast<std::size_t>(n + 1) * sizeof(double), ones.data(),
                                         sizeof(double), sizeof(double), static_cast<std::size_t>(cols),
                                         cudaMemcpyHostToDevice, m_stream));
      ldlt_solve(a, pivots, rhs);
      GPEDE_CUDA_CHECK(cudaMemcpy2DAsync(out.data() + j0, sizeof(double), rhs.ptr() + j0,
                                         static_cast<std::size_t>(n + 1) * sizeof(double), sizeof(double),
                                         static_cast<std::size_t>(cols), cudaMemcpyDeviceToHost, m_stream));
      GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
    }
    return out;
  }

  void gemv(bool transpose, double alpha, View a, View x, double beta, View y) override {
    if (a.empty()) {
      if (beta == 0.0) fill(y, 0.0);
      return;
    }
    GPEDE_CUBLAS_CHECK(cublasDgemv_64(m_cublas.get(), transpose ? CUBLAS_OP_T : CUBLAS_OP_N, a.rows, a.cols, &alpha,
                                      a.ptr(), a.ld, x.ptr(), 1, &beta, y.ptr(), 1));
  }

  SweepOutcome sweep(View a, double limit, SweepOrder order) override {
    // A failure path (a singular matrix solved as pede does): on the host.
    Matrix host = linalg::adopt_host_matrix(download(a), a.rows, a.cols);
    const SweepOutcome outcome = m_host->sweep(host.view(), limit, order);
    upload(m_host->download(host.view()), a);
    return outcome;
  }

 private:
  int read_info(const char* routine) {
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(m_info_host.data(), m_info.data(), sizeof(int), cudaMemcpyDeviceToHost, m_stream));
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
    const int info = m_info_host[0];
    if (info < 0) {
      throw RuntimeError(std::string("cuSOLVER ") + routine + ": argument " + std::to_string(-info) +
                         " is illegal (device info " + std::to_string(info) + ")");
    }
    return info;
  }

  std::vector<double> download_vector(const DeviceBuffer<double>& v) {
    std::vector<double> host(v.size());
    if (!host.empty()) {
      GPEDE_CUDA_CHECK(cudaMemcpyAsync(host.data(), v.data(), v.bytes(), cudaMemcpyDeviceToHost, m_stream));
    }
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
    return host;
  }

  void* device_workspace(std::size_t bytes) {
    if (bytes > m_workspace.size()) {
      GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
      m_workspace.reset();
      require_free_memory(bytes);
      m_workspace.allocate(bytes);
    }
    return m_workspace.data();
  }

  void* host_workspace(std::size_t bytes) {
    if (bytes > m_host_workspace.size()) m_host_workspace.resize(bytes);
    return m_host_workspace.empty() ? nullptr : m_host_workspace.data();
  }

  // Throws RuntimeError if `bytes` more device memory are not free (before a large allocation).
  void require_free_memory(std::size_t bytes) const {
    std::size_t free_bytes = 0, total_bytes = 0;
    GPEDE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (bytes + kAllocationReserve > free_bytes) {
      throw RuntimeError("CUDA backend: the dense solution needs " + gigabytes(static_cast<double>(bytes)) +
                         " more of device memory, but only " + gigabytes(static_cast<double>(free_bytes)) + " of " +
                         gigabytes(static_cast<double>(total_bytes)) +
                         " are free; use method decomposition (no second matrix, no eigenvector workspace), "
                         "constraints by elimination, or the CPU backend (--backend cpu)");
    }
  }

  cudaStream_t m_stream;
  CublasHandle m_cublas;
  CusolverHandle m_cusolver;
  CusolverParams m_params;
  DeviceBuffer<int> m_info;
  PinnedBuffer<int> m_info_host;
  DeviceBuffer<std::byte> m_workspace;
  std::vector<std::byte> m_host_workspace;
  std::unique_ptr<linalg::Engine> m_host;  // the failure paths that run on the host
};

// The engine with a stream of its own (tests, frameworks that solve without the backend).
class OwningCudaEngine final : public linalg::Engine {
 public:
  OwningCudaEngine() : m_stream(make_stream()), m_engine(m_stream.get()) {}
  std::string name() const override { return m_engine.name(); }
  Matrix allocate(std::int64_t rows, std::int64_t cols) override { return m_engine.allocate(rows, cols); }
  void fill(View a, double value) override { m_engine.fill(a, value); }
  void copy(View from, View to) override { m_engine.copy(from, to); }
  void upload(const std::vector<double>& host, View to) override { m_engine.upload(host, to); }
  std::vector<double> download(View a) override { return m_engine.download(a); }
  std::vector<double> diagonal(View a) override { return m_engine.diagonal(a); }
  void set_diagonal(View a, const std::vector<double>& v) override { m_engine.set_diagonal(a, v); }
  std::vector<std::int64_t> nonfinite_rows(View a) override { return m_engine.nonfinite_rows(a); }
  void scale(View a, const std::vector<double>& r, const std::vector<double>& c) override { m_engine.scale(a, r, c); }
  void copy_lower(View from, View to) override { m_engine.copy_lower(from, to); }
  std::vector<double> column_sum_squares(View a) override { return m_engine.column_sum_squares(a); }
  std::vector<double> lower_column_sum_squares(View a) override { return m_engine.lower_column_sum_squares(a); }
  void zero_strict_upper(View a) override { m_engine.zero_strict_upper(a); }
  void lower_triangular_multiply(View l, bool t, View x) override { m_engine.lower_triangular_multiply(l, t, x); }
  std::vector<double> weighted_row_sum_squares(View a, const std::vector<double>& w) override {
    return m_engine.weighted_row_sum_squares(a, w);
  }
  void householder_qr(View a, View tau) override { m_engine.householder_qr(a, tau); }
  void apply_householder(Side side, bool transpose, View q, View tau, std::int64_t k, View c) override {
    m_engine.apply_householder(side, transpose, q, tau, k, c);
  }
  std::int64_t cholesky(View a) override { return m_engine.cholesky(a); }
  void cholesky_solve(View l, View b) override { m_engine.cholesky_solve(l, b); }
  void triangular_inverse(View l) override { m_engine.triangular_inverse(l); }
  void upper_triangular_solve(View u, View x) override { m_engine.upper_triangular_solve(u, x); }
  std::vector<std::int64_t> pivoted_cholesky(View a, double tol, std::int64_t& rank) override {
    return m_engine.pivoted_cholesky(a, tol, rank);
  }
  std::vector<double> eigen(View a) override { return m_engine.eigen(a); }
  Pivots ldlt(View a) override { return m_engine.ldlt(a); }
  void ldlt_solve(View a, const Pivots& p, View b) override { m_engine.ldlt_solve(a, p, b); }
  std::vector<double> ldlt_inverse_diagonal(View a, const Pivots& p) override { return m_engine.ldlt_inverse_diagonal(a, p); }
  void gemv(bool t, double alpha, View a, View x, double beta, View y) override { m_engine.gemv(t, alpha, a, x, beta, y); }
  SweepOutcome sweep(View a, double limit, SweepOrder order) override { return m_engine.sweep(a, limit, order); }

 private:
  Stream m_stream;
  CudaEngine m_engine;
};

}  // namespace

std::unique_ptr<linalg::Engine> make_cuda_engine(cudaStream_t stream) { return std::make_unique<CudaEngine>(stream); }

linalg::Matrix adopt_device_matrix(DeviceBuffer<double>&& buffer, std::int64_t rows, std::int64_t cols) {
  if (buffer.size() < static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols)) {
    throw RuntimeError("CUDA linear algebra: a device buffer of " + std::to_string(buffer.size()) + " values for a " +
                       std::to_string(rows) + " x " + std::to_string(cols) + " matrix");
  }
  auto storage = std::make_shared<DeviceBuffer<double>>(std::move(buffer));
  double* data = storage->data();
  return linalg::Matrix(std::move(storage), data, rows, cols);
}

std::unique_ptr<linalg::Engine> make_engine() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    (void)cudaGetLastError();
    throw RuntimeError("no CUDA device for the CUDA linear-algebra engine");
  }
  return std::make_unique<OwningCudaEngine>();
}

}  // namespace gpede::detail::cuda
