// The core's side of the CUDA plugin (gpede/detail/cuda_plugin.hpp): finds and loads
// libgpede_cuda once, checks that it was built with this core, and forwards the calls of
// gpede/detail/cuda_device.hpp to it. Where the plugin is missing (a build without CUDA, a plugin
// file removed, a toolkit library not found) every call says so in words.
#include "gpede/detail/cuda_plugin.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "gpede/error.hpp"
#include "gpede/version.hpp"

namespace gpede::detail {
namespace {

std::string loader_error() {
  const char* text = dlerror();
  return text != nullptr ? text : "unknown error";
}

/// The folder of the library this function lives in (libgpede, or the executable that links the
/// core statically); empty if the loader cannot tell.
std::filesystem::path core_folder() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<const void*>(&core_folder), &info) == 0 || info.dli_fname == nullptr) return {};
  std::error_code ec;
  const std::filesystem::path file = std::filesystem::canonical(info.dli_fname, ec);
  return ec ? std::filesystem::path{} : file.parent_path();
}

/// The plugin file $GPEDE_CUDA_PLUGIN names; null when it is unset or empty.
const char* named_plugin() {
  const char* named = std::getenv(kCudaPluginVariable);
  return named != nullptr && *named != '\0' ? named : nullptr;
}

/// Why a table from a plugin cannot be used with this core; empty when it can.
std::string mismatch(const CudaPluginTable* table) {
  if (table == nullptr) return "its entry returned no table";
  const std::string theirs = table->version != nullptr ? table->version : "?";
  if (table->abi != kCudaPluginAbi || theirs != GPEDE_VERSION_STRING ||
      table->table_size != sizeof(CudaPluginTable) || table->options_size != sizeof(CudaBackendOptions)) {
    return "it was built for gpede " + theirs + " (plugin interface " + std::to_string(table->abi) +
           "), this library is gpede " + GPEDE_VERSION_STRING + " (plugin interface " +
           std::to_string(kCudaPluginAbi) + "); install the two from one build";
  }
  return {};
}

/// Tries one file: sets status.table, or status.message to what went wrong.
bool try_load(const std::string& file, bool by_path, CudaPluginStatus& status) {
  status.path = file;
  void* handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    status.message = "cannot load the CUDA plugin " + file + ": " + loader_error();
    if (!by_path) status.message += " (looked for on the loader's path)";
    return false;
  }
  dlerror();
  auto entry = reinterpret_cast<gpede_cuda_plugin_entry_fn>(dlsym(handle, "gpede_cuda_plugin_entry"));
  if (entry == nullptr) {
    status.message = file + " is not a gpede CUDA plugin (no gpede_cuda_plugin_entry: " + loader_error() + ")";
    dlclose(handle);
    return false;
  }
  const CudaPluginTable* table = entry(kCudaPluginAbi);
  const std::string wrong = mismatch(table);
  if (!wrong.empty()) {
    status.message = "the CUDA plugin " + file + " does not match this library: " + wrong;
    dlclose(handle);
    return false;
  }
  // Never closed: the backend's objects and CUDA's own handlers live in it until the process ends.
  status.table = table;
  status.message.clear();
  return true;
}

CudaPluginStatus load_plugin() {
  CudaPluginStatus status;
  if (const char* named = named_plugin()) {
    try_load(named, true, status);
    if (status.table == nullptr) status.message += " (from $" + std::string(kCudaPluginVariable) + ")";
    return status;
  }
  const std::filesystem::path folder = core_folder();
  if (!folder.empty()) {
    const std::filesystem::path beside = folder / kCudaPluginFile;
    std::error_code ec;
    if (std::filesystem::exists(beside, ec)) {
      try_load(beside.string(), true, status);
      return status;
    }
  }
  if (try_load(kCudaPluginFile, false, status)) return status;
#ifndef GPEDE_CUDA_PLUGIN_BUILT
  status.message = "the CUDA backend is not available: gpede was built without CUDA (rebuild with nvcc on PATH "
                   "and -DGPEDE_CUDA=ON, or use --backend cpu); " + status.message;
#else
  status.message += "; it is built and installed beside libgpede (" +
                    (folder.empty() ? std::string("folder unknown") : folder.string()) + ")";
#endif
  return status;
}

const CudaPluginTable& require_plugin() {
  const CudaPluginStatus& status = cuda_plugin();
  if (status.table == nullptr) throw RuntimeError(status.message);
  return *status.table;
}

}  // namespace

const CudaPluginStatus& cuda_plugin() {
  static std::once_flag once;
  static CudaPluginStatus status;
  std::call_once(once, [] { status = load_plugin(); });
  return status;
}

bool cuda_driver_present(std::string& reason) {
  static std::once_flag once;
  static bool present = false;
  static std::string why;
  std::call_once(once, [] {
    // Loaded as CUDA's runtime would load it, and kept: the runtime loads it again anyway.
    present = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL) != nullptr;
    if (!present) why = "no CUDA driver (" + loader_error() + ")";
  });
  reason = why;
  return present;
}

CudaDeviceInfo query_cuda_device() noexcept {
  CudaDeviceInfo info;
  try {
    // A plugin named explicitly is asked itself; otherwise machines without a driver stop here.
    if (named_plugin() == nullptr && !cuda_driver_present(info.reason)) return info;
    const CudaPluginStatus& status = cuda_plugin();
    if (status.table == nullptr) {
      info.reason = status.message;
      return info;
    }
    return status.table->query_device();
  } catch (const std::exception& e) {
    info.present = false;
    info.reason = e.what();
  }
  return info;
}

SolverWorkspace query_cuda_workspace(std::int64_t n, std::int64_t m, Method method, ConstraintMode mode) noexcept {
  SolverWorkspace out;
  try {
    const CudaPluginStatus& status = cuda_plugin();
    if (status.table == nullptr) {
      out.reason = status.message;
      return out;
    }
    return status.table->query_workspace(n, m, method, mode);
  } catch (const std::exception& e) {
    out.queried = false;
    out.reason = e.what();
  }
  return out;
}

std::unique_ptr<Backend> make_cuda_backend() { return require_plugin().make_backend(CudaBackendOptions{}); }

std::unique_ptr<Backend> make_cuda_backend(const CudaBackendOptions& options) {
  return require_plugin().make_backend(options);
}

std::unique_ptr<linalg::Engine> linalg::make_cuda_engine() { return require_plugin().make_engine(); }

std::vector<double> download_global_matrix(Backend& backend) { return require_plugin().download_global_matrix(backend); }

void fill_test_matrix(Backend& backend, std::uint64_t seed) { require_plugin().fill_test_matrix(backend, seed); }

double time_on_device(Backend& backend, const std::function<void()>& work) {
  return require_plugin().time_on_device(backend, work);
}

}  // namespace gpede::detail
