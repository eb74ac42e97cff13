// The cuSOLVER workspaces of a factorisation, asked from the library before the first pass: the
// bufferSize functions need only the dimensions (no matrix is allocated; the matrix arguments are
// null), so the memory plan counts the library's own sizes instead of LAPACK's.
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "cuda_entry_points.hpp"
#include "cuda_resources.hpp"
#include "gpede/detail/cuda_device.hpp"

namespace gpede::detail {
namespace {

// A failed query: what the plan reports instead of the library's size.
struct QueryFailed {
  std::string what;
};

void check(cusolverStatus_t status, const char* routine) {
  if (status != CUSOLVER_STATUS_SUCCESS) throw QueryFailed{std::string(routine) + " returned status " + std::to_string(status)};
}

}  // namespace

namespace cuda {

SolverWorkspace query_workspace(std::int64_t n, std::int64_t m, Method method, ConstraintMode mode) noexcept {
  SolverWorkspace out;
  try {
    cusolverDnHandle_t raw = nullptr;
    if (cusolverDnCreate(&raw) != CUSOLVER_STATUS_SUCCESS) {
      out.reason = "cuSOLVER could not be initialised";
      return out;
    }
    cuda::CusolverHandle handle(raw);
    cuda::CusolverParams params = cuda::make_cusolver_params();
    const bool bordered = mode == ConstraintMode::multipliers && m > 0;
    const std::int64_t nb = bordered ? n + m : n;
    std::size_t device_bytes = 0, host_bytes = 0, largest = 0;
    auto keep = [&] { largest = std::max(largest, device_bytes); };
    if (mode == ConstraintMode::elimination && m > 0 && n > 0) {
      check(cusolverDnXgeqrf_bufferSize(handle.get(), params.get(), n, m, CUDA_R_64F, nullptr, n, CUDA_R_64F, nullptr,
                                        CUDA_R_64F, &device_bytes, &host_bytes),
            "cusolverDnXgeqrf_bufferSize");
      keep();
      check(cusolverDnXlarft_bufferSize(handle.get(), params.get(), CUBLAS_DIRECT_FORWARD, CUBLAS_STOREV_COLUMNWISE, n,
                                        std::min(n, m), CUDA_R_64F, nullptr, n, CUDA_R_64F, nullptr, CUDA_R_64F,
                                        nullptr, std::max<std::int64_t>(m, 1), CUDA_R_64F, &device_bytes, &host_bytes),
            "cusolverDnXlarft_bufferSize");
      keep();
    }
    if (nb > 0 && method == Method::diagonalization) {
      check(cusolverDnXsyevd_bufferSize(handle.get(), params.get(), CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, nb,
                                        CUDA_R_64F, nullptr, nb, CUDA_R_64F, nullptr, CUDA_R_64F, &device_bytes,
                                        &host_bytes),
            "cusolverDnXsyevd_bufferSize");
      keep();
    } else if (nb > 0 && bordered) {
      if (nb * nb <= std::numeric_limits<int>::max()) {
        int lwork = 0;
        check(cusolverDnDsytrf_bufferSize(handle.get(), static_cast<int>(nb), nullptr, static_cast<int>(nb), &lwork),
              "cusolverDnDsytrf_bufferSize");
        device_bytes = static_cast<std::size_t>(std::max(lwork, 1)) * sizeof(double);
        keep();
      }
      check(cusolverDnXsytrs_bufferSize(handle.get(), CUBLAS_FILL_MODE_LOWER, nb, std::min<std::int64_t>(nb, 4096),
                                        CUDA_R_64F, nullptr, nb, nullptr, CUDA_R_64F, nullptr, nb, &device_bytes,
                                        &host_bytes),
            "cusolverDnXsytrs_bufferSize");
      keep();
    } else if (nb > 0) {
      check(cusolverDnXpotrf_bufferSize(handle.get(), params.get(), CUBLAS_FILL_MODE_LOWER, nb, CUDA_R_64F, nullptr, nb,
                                        CUDA_R_64F, &device_bytes, &host_bytes),
            "cusolverDnXpotrf_bufferSize");
      keep();
      if (method == Method::inversion) {
        check(cusolverDnXtrtri_bufferSize(handle.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, nb, CUDA_R_64F,
                                          nullptr, nb, &device_bytes, &host_bytes),
              "cusolverDnXtrtri_bufferSize");
        keep();
      }
    }
    out.queried = true;
    out.device_bytes = largest;
  } catch (const QueryFailed& failed) {
    out.reason = failed.what;
  } catch (...) {
    out.reason = "the workspace query failed";
  }
  return out;
}

}  // namespace cuda
}  // namespace gpede::detail
