// The CUDA plugin's entry: the table of its calls, handed to a core of the same ABI only.
#include "cuda_entry_points.hpp"
#include "gpede/detail/cuda_plugin.hpp"
#include "gpede/version.hpp"

namespace gpede::detail::cuda {
namespace {

CudaPluginTable make_table() {
  CudaPluginTable table;
  table.abi = kCudaPluginAbi;
  table.version = GPEDE_VERSION_STRING;
  table.table_size = sizeof(CudaPluginTable);
  table.options_size = sizeof(CudaBackendOptions);
  table.query_device = &query_device;
  table.query_workspace = &query_workspace;
  table.make_backend = &make_backend;
  table.make_engine = &make_engine;
  table.download_global_matrix = &download_global_matrix;
  table.fill_test_matrix = &fill_test_matrix;
  table.time_on_device = &time_on_device;
  return table;
}

}  // namespace
}  // namespace gpede::detail::cuda

extern "C" __attribute__((visibility("default"))) const gpede::detail::CudaPluginTable* gpede_cuda_plugin_entry(
    int abi) {
  static const gpede::detail::CudaPluginTable table = gpede::detail::cuda::make_table();
  // A core of another ABI still reads abi and version from the table to say what differs.
  (void)abi;
  return &table;
}
