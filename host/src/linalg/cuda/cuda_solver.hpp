// Dense solution of the global system on the device, with the semantics of DenseSolver
// (host/include/gpede/detail/dense_solver.hpp): constraints by elimination (QR of A^T, Q^T C Q)
// or by Lagrange multipliers (bordered matrix), then Cholesky (decomposition), Cholesky and the
// covariance diagonal (inversion) or the eigen-decomposition (diagonalization). The matrix stays
// on the device; only vectors and scalars cross to the host. Private to the CUDA backend.
#pragma once

#include <cstdint>
#include <vector>

#include "cuda_resources.hpp"
#include "gpede/detail/backend.hpp"

namespace gpede::detail::cuda {

class CudaDenseSolver {
 public:
  /// All work is enqueued on `stream` (the backend's compute stream).
  explicit CudaDenseSolver(cudaStream_t stream);

  /// matrix: n x n column-major symmetric (both triangles valid) on the device; consumed.
  FactorReport factorize(DeviceBuffer<double> matrix, std::int64_t n, const ConstraintSystem& constraints,
                         const FactorOptions& options);
  /// Newton step dp (size n) for gradient b.
  std::vector<double> solve(const std::vector<double>& b);
  /// Diagonal of the covariance in the variable space; empty without covariance.
  std::vector<double> covariance_diagonal() const { return m_cov_diag; }
  /// Frees the factorisation (before a new global matrix is built).
  void release();

 private:
  enum class Kind {
    none,            // nothing factorised, or the factorisation failed
    trivial,         // no free direction left: dp = 0
    cholesky,        // m_factor: n x n, Cholesky factor of the reduced matrix in its trailing block
    eigen,           // m_factor: n x n, eigenvectors in variable space in columns mr.. n-1
    bordered_ldlt,   // m_factor: (n+m)^2 Bunch-Kaufman factor of the scaled bordered matrix
    bordered_eigen,  // m_factor: (n+m)^2 eigenvectors of the scaled bordered matrix
  };

  FactorReport factorize_bordered(DeviceBuffer<double> matrix, const ConstraintSystem& constraints,
                                  const std::vector<double>& diagonal, FactorReport report);
  FactorReport factorize_reduced(DeviceBuffer<double> matrix, FactorReport report);
  void weak_modes_of_failed_cholesky(const double* reduced, std::int64_t first_bad, FactorReport& report);

  // c := op(Q) c (side CUBLAS_SIDE_LEFT) or c op(Q) (CUBLAS_SIDE_RIGHT) with the m_eliminated
  // reflectors of the QR of A^T; c is rows x cols with leading dimension ldc.
  void apply_q(cublasSideMode_t side, cublasOperation_t trans, std::int64_t rows, std::int64_t cols, double* c,
               std::int64_t ldc);
  // Device-side info of the last cuSOLVER call (synchronises the stream); throws for info < 0.
  int read_info(const char* routine);
  void* device_workspace(std::size_t bytes);
  void* host_workspace(std::size_t bytes);
  // Throws RuntimeError if `bytes` more device memory are not free (before a large allocation).
  void require_free_memory(std::size_t bytes, const char* what) const;
  template <class T>
  std::vector<T> download(const T* device, std::size_t count);
  template <class T>
  void upload(T* device, const std::vector<T>& host);
  void reset();

  cudaStream_t m_stream;
  CublasHandle m_cublas;
  CusolverHandle m_cusolver;
  CusolverParams m_params;
  DeviceBuffer<int> m_info;
  PinnedBuffer<int> m_info_host;
  DeviceBuffer<std::byte> m_workspace;
  std::vector<std::byte> m_host_workspace;

  Kind m_kind = Kind::none;
  std::int64_t m_n = 0;
  std::int64_t m_m = 0;
  std::int64_t m_eliminated = 0;  // constraints applied by elimination (reflectors in m_q)
  FactorOptions m_options;
  DeviceBuffer<double> m_factor;
  std::int64_t m_vector_offset = 0;               // eigen: first eigenvector column (elements)
  DeviceBuffer<double> m_inverse_eigenvalues;     // eigen kinds: 1/lambda, 0 for left-out directions
  std::int64_t m_eigen_count = 0;
  DeviceBuffer<double> m_q;                       // elimination: Householder vectors of A^T (n x m)
  DeviceBuffer<double> m_tau;
  DeviceBuffer<std::int64_t> m_pivots;            // bordered_ldlt: Bunch-Kaufman pivots
  std::vector<double> m_scale;                    // bordered kinds: symmetric scaling (powers of two)
  std::vector<double> m_cov_diag;
};

}  // namespace gpede::detail::cuda
