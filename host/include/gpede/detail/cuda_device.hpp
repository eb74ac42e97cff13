// What the CUDA backend can tell without CUDA types: the device present (or why none is usable),
// a memory plan for a problem size and method, the backend's tuning options, and hooks for tests
// and benchmarks (read the device's global matrix, fill it with a test matrix, time work with CUDA
// events). Every function here exists in every build: without CUDA they report "built without
// CUDA" (host/src/cuda_stub.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gpede/detail/backend.hpp"
#include "gpede/steering.hpp"

namespace gpede::detail {

/// The CUDA device the backend would use (the current device, 0 unless the caller changed it).
struct CudaDeviceInfo {
  bool present = false;        ///< a device is there and the kernels of this build run on it
  std::string name;            ///< e.g. "NVIDIA H100 80GB HBM3"
  int compute_major = 0;       ///< compute capability
  int compute_minor = 0;
  int multiprocessors = 0;     ///< streaming multiprocessors
  std::size_t free_bytes = 0;  ///< device memory free now
  std::size_t total_bytes = 0;
  std::string reason;          ///< why present is false ("built without CUDA", "no CUDA device", ...)
};

/// Looks for a usable device. Never throws; without a device (or driver) present is false and
/// reason says why.
CudaDeviceInfo query_cuda_device() noexcept;

/// Device memory a problem needs on the CUDA backend, and whether it fits.
struct MemoryPlan {
  bool fits = false;
  std::size_t needed_bytes = 0;     ///< peak of the run: accumulation or factorisation, whichever is larger
  std::size_t available_bytes = 0;  ///< free device memory less a reserve for the CUDA context and libraries
  std::size_t matrix_bytes = 0;     ///< the global matrix alone (n_variable^2 doubles)
  std::size_t accumulate_bytes = 0; ///< peak while passes over the data run
  std::size_t factorize_bytes = 0;  ///< peak while the method factorises
  /// One or two sentences for a user: what is needed, what is free, and what would fit (another
  /// method, the other constraint mode, the CPU backend) when this does not.
  std::string message;
};

/// The largest cuSOLVER device workspace of the factorisation of an n-parameter problem with m
/// constraints, asked from the library itself (bufferSize functions, no matrix allocated).
struct SolverWorkspace {
  bool queried = false;        ///< false: the library could not be asked (reason says why)
  std::size_t device_bytes = 0;
  std::string reason;
};
SolverWorkspace query_cuda_workspace(std::int64_t n, std::int64_t m, Method method, ConstraintMode mode) noexcept;

/// Plans the device memory of a run: n_variable parameters, n_constraints constraints, the method
/// and constraint mode, record batches of up to max_batch_bytes (RecordBatch::bytes()), on the
/// device described by `device` (free_bytes is what counts). Workspace sizes of cuSOLVER are
/// estimated from LAPACK's sizes unless `workspace` holds the library's own (query_cuda_workspace),
/// which then replaces the estimate of the factorisation's workspace. `deterministic` adds the
/// deterministic mode's vector b per resident warp and the diagonal's 128-bit words. Pure arithmetic: usable
/// without a device with a made-up CudaDeviceInfo.
MemoryPlan plan_cuda_memory(std::int64_t n_variable, std::int64_t n_constraints, Method method, ConstraintMode mode,
                            std::size_t max_batch_bytes, const CudaDeviceInfo& device,
                            const SolverWorkspace& workspace = {}, bool deterministic = false);

/// Tuning of the CUDA backend. The defaults suit large devices; tests lower them to reach every
/// launch shape.
struct CudaBackendOptions {
  /// Records with at most this many global derivatives (and at most max_thread_local_parameters
  /// local parameters) form the small size class, fitted by one warp each; larger records by one
  /// warp (up to 256 global derivatives) or one block of 128 threads each. Each class has its own
  /// scratch size, so a group never waits on a record much larger than its own.
  std::int32_t thread_class_max_globals = 48;
  std::int32_t max_thread_local_parameters = 16;
  /// Upper bound of the per-group scratch pool in device memory (bytes); the pool is also bounded
  /// by the groups that can be resident at once and by the free device memory.
  std::size_t scratch_pool_bytes = std::size_t{1} << 30;
  /// Deterministic mode: the same input gives the same results bit for bit, run after run. The
  /// matrix is summed exactly in 128-bit fixed point (per-column units from bounds taken in an
  /// extra look at the records before each building pass: gpede/kernels/fixed_point.hpp), b and
  /// the pass sums per group of threads in a fixed order. Costs that extra look, two atomic adds
  /// per matrix element instead of one, and one vector of n per resident group.
  bool deterministic = false;
};

/// CUDA backend with explicit options; make_cuda_backend() uses the defaults. Throws
/// RuntimeError naming the reason when no usable device is present or gpede was built without CUDA.
std::unique_ptr<Backend> make_cuda_backend(const CudaBackendOptions& options);

/// Copies the global matrix of a CUDA backend to the host, between end_pass of a building pass and
/// factorize: n_variable x n_variable, column-major, both triangles. Throws RuntimeError for other
/// backends or when there is no matrix.
std::vector<double> download_global_matrix(Backend& backend);

/// Overwrites the global matrix of a CUDA backend (allocated by a building pass) with a symmetric,
/// diagonally dominant test matrix generated on the device from `seed`: off-diagonal elements in
/// [-0.5, 0.5), diagonal n. For benchmarks of the solution at sizes where a host copy would be slow.
void fill_test_matrix(Backend& backend, std::uint64_t seed);

/// Runs `work` (calls on a CUDA backend) and returns the seconds between two CUDA events recorded
/// on the backend's compute stream before and after it; all device work of the backend runs on
/// that stream or is ordered before it, so this is the device time of `work` including waits.
double time_on_device(Backend& backend, const std::function<void()>& work);

}  // namespace gpede::detail
