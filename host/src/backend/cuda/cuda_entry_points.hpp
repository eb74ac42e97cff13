// What the CUDA plugin (libgpede_cuda) implements for the core: the functions that
// gpede/detail/cuda_device.hpp and the engine factory declare, under the plugin's own names so
// that they never collide with the core's forwarders (host/src/backend/cuda_plugin.cpp). The
// table of them that the core loads is gpede_cuda_plugin_entry (cuda_plugin_entry.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "gpede/detail/backend.hpp"
#include "gpede/detail/cuda_device.hpp"
#include "gpede/detail/linalg.hpp"

namespace gpede::detail::cuda {

CudaDeviceInfo query_device() noexcept;
SolverWorkspace query_workspace(std::int64_t n, std::int64_t m, Method method, ConstraintMode mode) noexcept;
std::unique_ptr<Backend> make_backend(const CudaBackendOptions& options);
/// The cuSOLVER engine on a stream of its own, on the current device.
std::unique_ptr<linalg::Engine> make_engine();
std::vector<double> download_global_matrix(Backend& backend);
void fill_test_matrix(Backend& backend, std::uint64_t seed);
double time_on_device(Backend& backend, const std::function<void()>& work);

}  // namespace gpede::detail::cuda
