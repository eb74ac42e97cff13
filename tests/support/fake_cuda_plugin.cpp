// A stand-in CUDA plugin for the tests of the plugin loader (tests/test_plugin_loader.cpp), built
// without CUDA: it reports a device named "gpede test plugin" with plenty of memory and hands out
// the CPU backend as its "device" backend, so that a CPU-only machine can follow a run through
// the loader, the table and the solver's choice of backend. Built once with this build's version
// and once (FAKE_PLUGIN_VERSION) as a plugin of another version, which the loader must refuse.
#include <stdexcept>

#include "gpede/detail/cuda_plugin.hpp"
#include "gpede/version.hpp"

#ifndef FAKE_PLUGIN_VERSION
#define FAKE_PLUGIN_VERSION GPEDE_VERSION_STRING
#endif

namespace fake {

using namespace gpede::detail;

CudaDeviceInfo query_device() noexcept {
  CudaDeviceInfo info;
  info.present = true;
  info.name = "gpede test plugin";
  info.compute_major = 9;
  info.multiprocessors = 1;
  info.free_bytes = std::size_t{64} << 30;
  info.total_bytes = std::size_t{64} << 30;
  return info;
}

SolverWorkspace query_workspace(std::int64_t, std::int64_t, gpede::Method, gpede::ConstraintMode) noexcept {
  SolverWorkspace out;
  out.reason = "test plugin";
  return out;
}

std::unique_ptr<Backend> make_backend(const CudaBackendOptions&) { return make_cpu_backend(1); }

std::unique_ptr<linalg::Engine> make_engine() { return linalg::make_cpu_engine(); }

std::vector<double> download_global_matrix(Backend&) { throw std::runtime_error("test plugin: no device matrix"); }
void fill_test_matrix(Backend&, std::uint64_t) { throw std::runtime_error("test plugin: no device matrix"); }
double time_on_device(Backend&, const std::function<void()>& work) {
  work();
  return 0.0;
}

}  // namespace fake

using gpede::detail::CudaPluginTable;

extern "C" __attribute__((visibility("default"))) const CudaPluginTable* gpede_cuda_plugin_entry(int) {
  static const CudaPluginTable table = [] {
    CudaPluginTable t;
    t.abi = gpede::detail::kCudaPluginAbi;
    t.version = FAKE_PLUGIN_VERSION;
    t.table_size = sizeof(CudaPluginTable);
    t.options_size = sizeof(gpede::detail::CudaBackendOptions);
    t.query_device = &fake::query_device;
    t.query_workspace = &fake::query_workspace;
    t.make_backend = &fake::make_backend;
    t.make_engine = &fake::make_engine;
    t.download_global_matrix = &fake::download_global_matrix;
    t.fill_test_matrix = &fake::fill_test_matrix;
    t.time_on_device = &fake::time_on_device;
    return t;
  }();
  return &table;
}
