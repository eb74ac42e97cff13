// Checking of CUDA runtime, cuBLAS and cuSOLVER calls: each macro names the call, the file, the line
// and the status, and throws gpede::RuntimeError. Private to the CUDA backend (host code and kernel
// launchers).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

namespace gpede::detail::cuda {

[[noreturn]] void throw_cuda_error(const char* call, const char* file, int line, cudaError_t status);
[[noreturn]] void throw_cublas_error(const char* call, const char* file, int line, cublasStatus_t status);
[[noreturn]] void throw_cusolver_error(const char* call, const char* file, int line, cusolverStatus_t status);

/// Name of a cuSOLVER status ("CUSOLVER_STATUS_INVALID_VALUE", ...).
const char* cusolver_status_name(cusolverStatus_t status) noexcept;

}  // namespace gpede::detail::cuda

#define GPEDE_CUDA_CHECK(call)                                                          \
  do {                                                                                  \
    const cudaError_t gpede_status_ = (call);                                           \
    if (gpede_status_ != cudaSuccess) {                                                 \
      ::gpede::detail::cuda::throw_cuda_error(#call, __FILE__, __LINE__, gpede_status_); \
    }                                                                                   \
  } while (0)

#define GPEDE_CUBLAS_CHECK(call)                                                          \
  do {                                                                                    \
    const cublasStatus_t gpede_status_ = (call);                                          \
    if (gpede_status_ != CUBLAS_STATUS_SUCCESS) {                                         \
      ::gpede::detail::cuda::throw_cublas_error(#call, __FILE__, __LINE__, gpede_status_); \
    }                                                                                     \
  } while (0)

#define GPEDE_CUSOLVER_CHECK(call)                                                          \
  do {                                                                                      \
    const cusolverStatus_t gpede_status_ = (call);                                          \
    if (gpede_status_ != CUSOLVER_STATUS_SUCCESS) {                                         \
      ::gpede::detail::cuda::throw_cusolver_error(#call, __FILE__, __LINE__, gpede_status_); \
    }                                                                                       \
  } while (0)

