// The CUDA engine of the linear-algebra layer (cuda_engine.hpp): each operation is one cuSOLVER or
// cuBLAS call (with its workspace and its device-side info copied back and checked), one kernel of
// dense_ops.cu, or one copy. cuSOLVER has no 64-bit ormqr, sytrf or sytri: those use the legacy
// 32-bit API. The failure paths that LAPACK serves better (pivoted Cholesky, pede's sweeps) copy
// the block to the host, run the CPU engine, and copy it back.
#include "cuda_engine.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

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

// What a Bunch-Kaufman factorisation keeps on the device: the legacy 32-bit pivots (for sytri) and
// the 64-bit ones (for Xsytrs).
struct DevicePivots {
  DeviceBuffer<int> narrow;
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
    if (c.empty() || reflectors == 0) return;
    const cublasSideMode_t s = side == Side::left ? CUBLAS_SIDE_LEFT : CUBLAS_SIDE_RIGHT;
    const cublasOperation_t t = transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int mi = legacy_size(c.rows, "ormqr"), ni = legacy_size(c.cols, "ormqr"), ki = legacy_size(reflectors, "ormqr"),
              lda = legacy_size(q.ld, "ormqr"), ldc = legacy_size(c.ld, "ormqr");
    int lwork = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnDormqr_bufferSize(m_cusolver.get(), s, t, mi, ni, ki, q.ptr(), lda, tau.ptr(), c.ptr(),
                                                     ldc, &lwork));
    auto* work = static_cast<double*>(device_workspace(static_cast<std::size_t>(std::max(lwork, 1)) * sizeof(double)));
    GPEDE_CUSOLVER_CHECK(cusolverDnDormqr(m_cusolver.get(), s, t, mi, ni, ki, q.ptr(), lda, tau.ptr(), c.ptr(), ldc, work,
                                          lwork, m_info.data()));
    read_info("Dormqr");
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

  void upper_triangular_solve(View u, View x) override {
    if (u.empty()) return;
    GPEDE_CUBLAS_CHECK(cublasDtrsv(m_cublas.get(), CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT,
                                   legacy_size(u.rows, "trsv"), u.ptr(), legacy_size(u.ld, "trsv"), x.ptr(), 1));
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
    const int n = legacy_size(a.rows, "sytrf"), lda = legacy_size(a.ld, "sytrf");
    auto device = std::make_shared<DevicePivots>();
    device->narrow.allocate(static_cast<std::size_t>(std::max(n, 1)));
    device->wide.allocate(static_cast<std::size_t>(std::max(n, 1)));
    if (n > 0) {
      int lwork = 0;
      GPEDE_CUSOLVER_CHECK(cusolverDnDsytrf_bufferSize(m_cusolver.get(), n, a.ptr(), lda, &lwork));
      auto* work = static_cast<double*>(device_workspace(static_cast<std::size_t>(std::max(lwork, 1)) * sizeof(double)));
      GPEDE_CUSOLVER_CHECK(cusolverDnDsytrf(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, n, a.ptr(), lda,
                                            device->narrow.data(), work, lwork, m_info.data()));
      read_info("Dsytrf");  // info > 0 (an exactly zero pivot) is a result the solution examines
      launch_widen_pivots(device->narrow.data(), device->wide.data(), n, m_stream);
    }
    std::vector<int> host(static_cast<std::size_t>(n));
    if (n > 0) {
      GPEDE_CUDA_CHECK(cudaMemcpyAsync(host.data(), device->narrow.data(), host.size() * sizeof(int),
                                       cudaMemcpyDeviceToHost, m_stream));
    }
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
    Pivots pivots;
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
    // Dsytri on a copy of the factor (the factor itself stays for the solves).
    const auto* device = static_cast<const DevicePivots*>(pivots.engine.get());
    const int n = legacy_size(a.rows, "sytri");
    Matrix inverse = allocate(a.rows, a.rows);
    copy(a, inverse.view());
    int lwork = 0;
    GPEDE_CUSOLVER_CHECK(cusolverDnDsytri_bufferSize(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, n, inverse.view().ptr(), n,
                                                     device->narrow.data(), &lwork));
    auto* work = static_cast<double*>(device_workspace(static_cast<std::size_t>(std::max(lwork, 1)) * sizeof(double)));
    GPEDE_CUSOLVER_CHECK(cusolverDnDsytri(m_cusolver.get(), CUBLAS_FILL_MODE_LOWER, n, inverse.view().ptr(), n,
                                          device->narrow.data(), work, lwork, m_info.data()));
    if (const int info = read_info("Dsytri"); info > 0) {
      throw RuntimeError("cuSOLVER Dsytri: singular pivot " + std::to_string(info) + " after a regular factorisation");
    }
    return diagonal(inverse.view());
  }

  void gemv(bool transpose, double alpha, View a, View x, double beta, View y) override {
    if (a.empty()) {
      if (beta == 0.0) fill(y, 0.0);
      return;
    }
    GPEDE_CUBLAS_CHECK(cublasDgemv(m_cublas.get(), transpose ? CUBLAS_OP_T : CUBLAS_OP_N, legacy_size(a.rows, "gemv"),
                                   legacy_size(a.cols, "gemv"), &alpha, a.ptr(), legacy_size(a.ld, "gemv"), x.ptr(), 1,
                                   &beta, y.ptr(), 1));
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

}  // namespace gpede::detail::cuda

namespace gpede::detail::linalg {

std::unique_ptr<Engine> make_cuda_engine() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    (void)cudaGetLastError();
    throw RuntimeError("no CUDA device for the CUDA linear-algebra engine");
  }
  return std::make_unique<cuda::OwningCudaEngine>();
}

}  // namespace gpede::detail::linalg
