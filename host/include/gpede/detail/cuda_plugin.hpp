// The CUDA backend as a run-time plugin. The core library (libgpede) and the command line link no
// CUDA library: the backend, its kernels and cuBLAS/cuSOLVER live in libgpede_cuda, which the core
// loads with dlopen the first time a CUDA run is asked for or considered (--backend cuda or auto)
// and a CUDA driver is present. CPU runs never load it.
//
// The plugin exports one C function, gpede_cuda_plugin_entry, returning a table of the calls that
// gpede/detail/cuda_device.hpp declares. Both sides share C++ types (Backend, Engine, options), so
// the table is accepted only from a plugin of the same gpede version and table layout.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gpede/detail/backend.hpp"
#include "gpede/detail/cuda_device.hpp"
#include "gpede/detail/linalg.hpp"

namespace gpede::detail {

/// Raised whenever the table below or a type it passes changes.
inline constexpr int kCudaPluginAbi = 1;

struct CudaPluginTable {
  int abi = 0;                  ///< kCudaPluginAbi of the plugin's build
  const char* version = "";     ///< gpede version of the plugin's build
  std::size_t table_size = 0;   ///< sizeof(CudaPluginTable) there
  std::size_t options_size = 0; ///< sizeof(CudaBackendOptions) there
  CudaDeviceInfo (*query_device)() noexcept = nullptr;
  SolverWorkspace (*query_workspace)(std::int64_t, std::int64_t, Method, ConstraintMode) noexcept = nullptr;
  std::unique_ptr<Backend> (*make_backend)(const CudaBackendOptions&) = nullptr;
  std::unique_ptr<linalg::Engine> (*make_engine)() = nullptr;
  std::vector<double> (*download_global_matrix)(Backend&) = nullptr;
  void (*fill_test_matrix)(Backend&, std::uint64_t) = nullptr;
  double (*time_on_device)(Backend&, const std::function<void()>&) = nullptr;
};

/// The plugin's file name (with its soname's version), as built and installed beside libgpede.
inline constexpr const char* kCudaPluginFile = "libgpede_cuda.so.0";
/// The environment variable that names another plugin file (a path).
inline constexpr const char* kCudaPluginVariable = "GPEDE_CUDA_PLUGIN";

/// The outcome of loading the plugin, which happens once per process.
struct CudaPluginStatus {
  const CudaPluginTable* table = nullptr;  ///< null: not loaded, message says why
  std::string path;                        ///< the file loaded or tried last
  std::string message;                     ///< why it did not load; empty when it did
};

/// Loads the plugin on the first call (thread-safe) and returns the outcome of that call.
/// Looked for in $GPEDE_CUDA_PLUGIN when set, else beside libgpede, else on the loader's path.
const CudaPluginStatus& cuda_plugin();

/// Whether a CUDA driver library (libcuda.so.1) can be loaded: checked before the plugin is
/// loaded for a device query (unless $GPEDE_CUDA_PLUGIN names a plugin, which is then asked
/// itself), so that machines without a GPU never load it. `reason` says why not.
bool cuda_driver_present(std::string& reason);

}  // namespace gpede::detail

extern "C" {
/// The plugin's one exported function; the core calls it with its own kCudaPluginAbi.
using gpede_cuda_plugin_entry_fn = const gpede::detail::CudaPluginTable* (*)(int abi);
const gpede::detail::CudaPluginTable* gpede_cuda_plugin_entry(int abi);
}
