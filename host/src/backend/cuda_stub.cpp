// Stand-in for the CUDA backend where gpede is built without CUDA (-DGPEDE_CUDA=OFF or no nvcc):
// the link line never changes, and asking for the backend gives a clear error.
#include "gpede/detail/backend.hpp"
#include "gpede/detail/cuda_device.hpp"
#include "gpede/detail/linalg.hpp"
#include "gpede/error.hpp"

namespace gpede::detail {
namespace {

const char* const kNotBuilt =
    "the CUDA backend is not available: gpede was built without CUDA "
    "(rebuild with nvcc on PATH and -DGPEDE_CUDA=ON, or use --backend cpu)";

}  // namespace

CudaDeviceInfo query_cuda_device() noexcept {
  CudaDeviceInfo info;
  info.present = false;
  info.reason = "built without CUDA";
  return info;
}

SolverWorkspace query_cuda_workspace(std::int64_t, std::int64_t, Method, ConstraintMode) noexcept {
  SolverWorkspace out;
  out.reason = "built without CUDA";
  return out;
}

std::unique_ptr<Backend> make_cuda_backend() { throw RuntimeError(kNotBuilt); }

std::unique_ptr<linalg::Engine> linalg::make_cuda_engine() { throw RuntimeError(kNotBuilt); }

std::unique_ptr<Backend> make_cuda_backend(const CudaBackendOptions&) { throw RuntimeError(kNotBuilt); }

std::vector<double> download_global_matrix(Backend&) { throw RuntimeError(kNotBuilt); }

void fill_test_matrix(Backend&, std::uint64_t) { throw RuntimeError(kNotBuilt); }

double time_on_device(Backend&, const std::function<void()>&) { throw RuntimeError(kNotBuilt); }

}  // namespace gpede::detail
