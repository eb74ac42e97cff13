// Error messages of the CUDA checking macros.
#include "cuda_check.hpp"

#include <string>

#include "gpede/error.hpp"

namespace gpede::detail::cuda {
namespace {

std::string where(const char* call, const char* file, int line) {
  return std::string(call) + " at " + file + ":" + std::to_string(line);
}

}  // namespace

void throw_cuda_error(const char* call, const char* file, int line, cudaError_t status) {
  std::string message = "CUDA error in " + where(call, file, line) + ": " + cudaGetErrorName(status) + " (" +
                        cudaGetErrorString(status) + ")";
  if (status == cudaErrorMemoryAllocation) {
    message += "; the problem does not fit the device memory: use another method or the CPU backend";
  }
  throw RuntimeError(message);
}

void throw_cublas_error(const char* call, const char* file, int line, cublasStatus_t status) {
  throw RuntimeError("cuBLAS error in " + where(call, file, line) + ": " + cublasGetStatusName(status) + " (" +
                     cublasGetStatusString(status) + ")");
}

void throw_cusolver_error(const char* call, const char* file, int line, cusolverStatus_t status) {
  throw RuntimeError("cuSOLVER error in " + where(call, file, line) + ": " + cusolver_status_name(status) + " (" +
                     std::to_string(static_cast<int>(status)) + ")");
}

const char* cusolver_status_name(cusolverStatus_t status) noexcept {
  switch (status) {
    case CUSOLVER_STATUS_SUCCESS:
      return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED:
      return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED:
      return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE:
      return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH:
      return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_MAPPING_ERROR:
      return "CUSOLVER_STATUS_MAPPING_ERROR";
    case CUSOLVER_STATUS_EXECUTION_FAILED:
      return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR:
      return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED";
    case CUSOLVER_STATUS_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_NOT_SUPPORTED";
    case CUSOLVER_STATUS_ZERO_PIVOT:
      return "CUSOLVER_STATUS_ZERO_PIVOT";
    case CUSOLVER_STATUS_INVALID_LICENSE:
      return "CUSOLVER_STATUS_INVALID_LICENSE";
    case CUSOLVER_STATUS_INVALID_WORKSPACE:
      return "CUSOLVER_STATUS_INVALID_WORKSPACE";
    default:
      return "unknown cuSOLVER status";
  }
}

}  // namespace gpede::detail::cuda
