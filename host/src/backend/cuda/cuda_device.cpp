// Query of the CUDA device: present, usable by the kernels of this build, and its memory.
#include <string>

#include "accumulate_launch.hpp"
#include "cuda_entry_points.hpp"
#include "cuda_check.hpp"
#include "gpede/detail/cuda_device.hpp"

namespace gpede::detail {
namespace {

std::string describe(const char* call, cudaError_t status) {
  return std::string(call) + " failed: " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
}

}  // namespace

namespace cuda {

CudaDeviceInfo query_device() noexcept {
  CudaDeviceInfo info;
  try {
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      info.reason = describe("cudaGetDeviceCount", status);
      return info;
    }
    if (count == 0) {
      info.reason = "the CUDA driver reports no device";
      return info;
    }
    int device = 0;
    status = cudaGetDevice(&device);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      info.reason = describe("cudaGetDevice", status);
      return info;
    }
    cudaDeviceProp properties{};
    status = cudaGetDeviceProperties(&properties, device);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      info.reason = describe("cudaGetDeviceProperties", status);
      return info;
    }
    info.name = properties.name;
    info.compute_major = properties.major;
    info.multiprocessors = properties.multiProcessorCount;
    info.compute_minor = properties.minor;
    if (properties.major < 6) {
      info.reason = "device " + info.name + " has compute capability " + std::to_string(properties.major) + "." +
                    std::to_string(properties.minor) + "; the kernels need 6.0 or later (atomicAdd on double)";
      return info;
    }
    std::string why;
    if (!cuda::accumulate_kernels_loadable(why)) {
      info.reason = "device " + info.name + " (compute capability " + std::to_string(properties.major) + "." +
                    std::to_string(properties.minor) + "): " + why;
      return info;
    }
    status = cudaMemGetInfo(&info.free_bytes, &info.total_bytes);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      info.reason = describe("cudaMemGetInfo", status);
      return info;
    }
    info.present = true;
  } catch (const std::exception& e) {
    info.present = false;
    info.reason = e.what();
  } catch (...) {
    info.present = false;
    info.reason = "unknown error while querying the CUDA device";
  }
  return info;
}

}  // namespace cuda
}  // namespace gpede::detail
