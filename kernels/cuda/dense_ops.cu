// Element-wise and reduction kernels of the CUDA dense solver (see dense_launch.hpp). The O(n^3)
// work is cuSOLVER's and cuBLAS's; these kernels are O(n^2) or less.
#include <cstdint>

#include "cuda_check.hpp"
#include "dense_launch.hpp"

namespace gpede::detail::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(std::int64_t items, int threads) {
  const std::int64_t blocks = (items + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

// Grid-stride loops keep grids small for n^2 elements.
unsigned grid_for_elements(std::int64_t items) {
  const std::int64_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks > 65536 ? 65536 : (blocks < 1 ? 1 : blocks));
}

__global__ void flag_nonfinite(const double* a, std::int64_t n, std::int64_t lda, unsigned char* flags) {
  const std::int64_t total = n * n;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = k % n;
    const std::int64_t j = k / n;
    if (!isfinite(a[j * lda + i])) {
      flags[i] = 1;
      flags[j] = 1;
    }
  }
}

__global__ void fill_block(double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda, double value) {
  const std::int64_t total = rows * cols;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    a[(k / rows) * lda + k % rows] = value;
  }
}

__global__ void scale_block(double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda, const double* r,
                            const double* c) {
  const std::int64_t total = rows * cols;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = k % rows;
    const std::int64_t j = k / rows;
    a[j * lda + i] *= r[i] * c[j];
  }
}

__global__ void find_small_pivots(const double* l, std::int64_t n, std::int64_t lda, const double* diagonal,
                                  double tol, unsigned long long* count, unsigned long long* first) {
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n) return;
  const double pivot = l[k * lda + k];
  if (!(pivot * pivot > tol * diagonal[k])) {
    atomicAdd(count, 1ull);
    atomicMin(first, static_cast<unsigned long long>(k));
  }
}

__global__ void copy_lower(const double* src, std::int64_t lds, double* dst, std::int64_t ldd, std::int64_t n) {
  const std::int64_t total = n * n;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = k % n;
    const std::int64_t j = k / n;
    if (i >= j) dst[j * ldd + i] = src[j * lds + i];
  }
}

__global__ void unit_lower(const double* q, std::int64_t ldq, std::int64_t rows, std::int64_t k, double* v) {
  const std::int64_t total = rows * k;
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = t % rows;
    const std::int64_t j = t / rows;
    v[j * rows + i] = i > j ? q[j * ldq + i] : (i == j ? 1.0 : 0.0);
  }
}

__global__ void zero_strict_upper(double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda) {
  const std::int64_t total = rows * cols;
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = t % rows;
    const std::int64_t j = t / rows;
    if (i < j) a[j * lda + i] = 0.0;
  }
}

// One block per column (lower_only: from the diagonal down).
__global__ void column_sum_squares(const double* a, std::int64_t rows, std::int64_t lda, double* out, bool lower_only) {
  __shared__ double partial[kThreads / 32];
  const std::int64_t j = blockIdx.x;
  const double* column = a + j * lda;
  double sum = 0.0;
  for (std::int64_t i = (lower_only ? j : 0) + threadIdx.x; i < rows; i += blockDim.x) sum += column[i] * column[i];
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_down_sync(0xffffffffu, sum, offset);
  if ((threadIdx.x & 31u) == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < kThreads / 32; ++w) total += partial[w];
    out[j] = total;
  }
}

// One thread per row; neighbouring threads read neighbouring elements of each column.
__global__ void weighted_row_sum_squares(const double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda,
                                         const double* weight, double* out) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  double sum = 0.0;
  for (std::int64_t k = 0; k < cols; ++k) {
    const double v = a[k * lda + i];
    sum += v * v * weight[k];
  }
  out[i] = sum;
}

__global__ void scale_elements(double* x, const double* w, std::int64_t count) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) x[i] *= w[i];
}

__global__ void build_bordered(const double* c, std::int64_t n, const double* s, const double* v, std::int64_t m,
                               double* b) {
  const std::int64_t nb = n + m;
  const std::int64_t total = nb * nb;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = k % nb;
    const std::int64_t j = k / nb;
    double value = 0.0;
    if (i < n && j < n) {
      value = s[i] * c[j * n + i] * s[j];
    } else if (i >= n && j < n) {
      value = v[(i - n) * n + j];
    } else if (i < n && j >= n) {
      value = v[(j - n) * n + i];
    }
    b[k] = value;
  }
}

__global__ void widen_pivots(const int* src, std::int64_t* dst, std::int64_t count) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) dst[i] = src[i];
}

__device__ std::uint64_t mix(std::uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__global__ void fill_test_matrix(double* a, std::int64_t n, std::uint64_t seed) {
  const std::int64_t total = n * n;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = k % n;
    const std::int64_t j = k / n;
    if (i == j) {
      a[k] = static_cast<double>(n);
      continue;
    }
    const std::uint64_t lo = static_cast<std::uint64_t>(i < j ? i : j);
    const std::uint64_t hi = static_cast<std::uint64_t>(i < j ? j : i);
    const std::uint64_t h = mix(mix(seed ^ lo) ^ (hi * 0x632be59bd9b4e019ull));
    a[k] = static_cast<double>(h >> 11) * 0x1.0p-53 - 0.5;
  }
}

}  // namespace

void launch_flag_nonfinite(const double* a, std::int64_t n, std::int64_t lda, unsigned char* flags,
                           cudaStream_t stream) {
  if (n <= 0) return;
  flag_nonfinite<<<grid_for_elements(n * n), kThreads, 0, stream>>>(a, n, lda, flags);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_fill_block(double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda, double value,
                       cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  fill_block<<<grid_for_elements(rows * cols), kThreads, 0, stream>>>(a, rows, cols, lda, value);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_scale_block(double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda, const double* r,
                        const double* c, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  scale_block<<<grid_for_elements(rows * cols), kThreads, 0, stream>>>(a, rows, cols, lda, r, c);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_find_small_pivots(const double* l, std::int64_t n, std::int64_t lda, const double* diagonal, double tol,
                              unsigned long long* count, unsigned long long* first, cudaStream_t stream) {
  if (n <= 0) return;
  find_small_pivots<<<grid_for(n, kThreads), kThreads, 0, stream>>>(l, n, lda, diagonal, tol, count, first);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_copy_lower(const double* src, std::int64_t lds, double* dst, std::int64_t ldd, std::int64_t n,
                       cudaStream_t stream) {
  if (n <= 0) return;
  copy_lower<<<grid_for_elements(n * n), kThreads, 0, stream>>>(src, lds, dst, ldd, n);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_unit_lower(const double* q, std::int64_t ldq, std::int64_t rows, std::int64_t k, double* v,
                       cudaStream_t stream) {
  if (rows <= 0 || k <= 0) return;
  unit_lower<<<grid_for_elements(rows * k), kThreads, 0, stream>>>(q, ldq, rows, k, v);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_column_sum_squares(const double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda, double* out,
                               cudaStream_t stream, bool lower_only) {
  if (cols <= 0) return;
  column_sum_squares<<<static_cast<unsigned>(cols), kThreads, 0, stream>>>(a, rows, lda, out, lower_only);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_zero_strict_upper(double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda, cudaStream_t stream) {
  if (rows <= 0 || cols <= 1) return;
  zero_strict_upper<<<grid_for_elements(rows * cols), kThreads, 0, stream>>>(a, rows, cols, lda);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_weighted_row_sum_squares(const double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda,
                                     const double* weight, double* out, cudaStream_t stream) {
  if (rows <= 0) return;
  weighted_row_sum_squares<<<grid_for(rows, kThreads), kThreads, 0, stream>>>(a, rows, cols, lda, weight, out);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_scale_elements(double* x, const double* w, std::int64_t count, cudaStream_t stream) {
  if (count <= 0) return;
  scale_elements<<<grid_for(count, kThreads), kThreads, 0, stream>>>(x, w, count);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_build_bordered(const double* c, std::int64_t n, const double* s, const double* v, std::int64_t m,
                           double* b, cudaStream_t stream) {
  const std::int64_t nb = n + m;
  if (nb <= 0) return;
  build_bordered<<<grid_for_elements(nb * nb), kThreads, 0, stream>>>(c, n, s, v, m, b);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_widen_pivots(const int* src, std::int64_t* dst, std::int64_t count, cudaStream_t stream) {
  if (count <= 0) return;
  widen_pivots<<<grid_for(count, kThreads), kThreads, 0, stream>>>(src, dst, count);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_fill_test_matrix(double* a, std::int64_t n, std::uint64_t seed, cudaStream_t stream) {
  if (n <= 0) return;
  fill_test_matrix<<<grid_for_elements(n * n), kThreads, 0, stream>>>(a, n, seed);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace gpede::detail::cuda
