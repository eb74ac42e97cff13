// Launchers of the element-wise and reduction kernels that the CUDA engine of the linear-algebra
// layer needs beside its cuSOLVER/cuBLAS calls. Matrices are column-major with a leading dimension; every launcher
// enqueues on `stream` and checks the launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace gpede::detail::cuda {

/// flags[i] = flags[j] = 1 for every non-finite element (i, j) of the n x n matrix; flags must be
/// zeroed by the caller.
void launch_flag_nonfinite(const double* a, std::int64_t n, std::int64_t lda, unsigned char* flags,
                           cudaStream_t stream);

/// a(i, j) = value for the rows x cols block (leading dimension lda).
void launch_fill_block(double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda, double value,
                       cudaStream_t stream);

/// a(i, j) *= r[i] c[j] for the rows x cols block (r, c in device memory).
void launch_scale_block(double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda, const double* r,
                        const double* c, cudaStream_t stream);

/// For the Cholesky factor L (n x n, lower) and the diagonal `diagonal` of the factorised matrix:
/// counts the pivots k with !(L_kk^2 > tol * diagonal_k) into *count and the smallest such k into
/// *first (*count = 0 and *first = ~0 initially).
void launch_find_small_pivots(const double* l, std::int64_t n, std::int64_t lda, const double* diagonal,
                              double tol, unsigned long long* count, unsigned long long* first, cudaStream_t stream);

/// dst(i, j) = src(i, j) for i >= j (lower triangle and diagonal of an n x n block).
void launch_copy_lower(const double* src, std::int64_t lds, double* dst, std::int64_t ldd, std::int64_t n,
                       cudaStream_t stream);

/// v (rows x k, ld rows) := the unit lower trapezoid of q (ld ldq): q(i, j) below the diagonal,
/// 1 on it, 0 above (the Householder vectors of a QR factorisation, explicit for GEMMs).
void launch_unit_lower(const double* q, std::int64_t ldq, std::int64_t rows, std::int64_t k, double* v,
                       cudaStream_t stream);

/// out[j] = sum over i < rows of a(i, j)^2, for j < cols; with lower_only over j <= i < rows.
void launch_column_sum_squares(const double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda, double* out,
                               cudaStream_t stream, bool lower_only = false);

/// a(i, j) = 0 for i < j (rows x cols block).
void launch_zero_strict_upper(double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda, cudaStream_t stream);

/// out[i] = sum over k < cols of a(i, k)^2 weight[k], for i < rows.
void launch_weighted_row_sum_squares(const double* a, std::int64_t rows, std::int64_t cols, std::int64_t lda,
                                     const double* weight, double* out, cudaStream_t stream);

/// x[i] *= w[i].
void launch_scale_elements(double* x, const double* w, std::int64_t count, cudaStream_t stream);

/// The bordered matrix (nb = n + m, ld nb) from the n x n matrix c (ld n), the scale s[nb] and the
/// scaled constraint rows v (m x n, row-major, already multiplied by s[n+k] s[j]):
/// B(i, j) = s_i c(i, j) s_j, B(n+k, j) = B(j, n+k) = v(k, j), B(n+k, n+l) = 0.
void launch_build_bordered(const double* c, std::int64_t n, const double* s, const double* v, std::int64_t m,
                           double* b, cudaStream_t stream);

/// dst[i] = src[i] (32-bit to 64-bit pivot indices).
void launch_widen_pivots(const int* src, std::int64_t* dst, std::int64_t count, cudaStream_t stream);

/// Symmetric diagonally dominant test matrix: a(i, j) = a(j, i) in [-0.5, 0.5) from a hash of
/// (min(i, j), max(i, j), seed), a(i, i) = n.
void launch_fill_test_matrix(double* a, std::int64_t n, std::uint64_t seed, cudaStream_t stream);

}  // namespace gpede::detail::cuda
