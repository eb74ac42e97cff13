// The CUDA backend as a run-time plugin (gpede/detail/cuda_plugin.hpp): where the loader looks,
// what it refuses (a missing file, a library that is not a plugin, a plugin of another version)
// and in which words; a run on the CPU backend never loads it; and a whole run through a stand-in
// plugin (tests/support/fake_cuda_plugin.cpp), so that the table and the solver's choice of the
// "device" backend are exercised without a GPU. The loader keeps its outcome for the process, so
// each case runs in a child process of its own (death-test style).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "gpede/detail/cuda_device.hpp"
#include "gpede/detail/cuda_plugin.hpp"
#include "gpede/record_builder.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"
#include "gpede/version.hpp"
#include "test_support.hpp"

namespace {

using gpede::detail::cuda_plugin;

/// The shared objects mapped into this process whose path contains `name`.
bool mapped(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(name) != std::string::npos) return true;
  }
  return false;
}

/// Loads the plugin named by $GPEDE_CUDA_PLUGIN in this (child) process; prints the message and
/// exits 0 when it was refused, 1 when it loaded.
[[noreturn]] void load_and_report(const char* path) {
  setenv(gpede::detail::kCudaPluginVariable, path, 1);
  const auto& status = cuda_plugin();
  std::cerr << "message: " << status.message << "\n";
  std::_Exit(status.table == nullptr ? 0 : 1);
}

TEST(PluginLoader, AMissingFileIsNamed) {
  EXPECT_EXIT(load_and_report("/nonexistent/libgpede_cuda.so.0"), testing::ExitedWithCode(0),
              "cannot load the CUDA plugin /nonexistent/libgpede_cuda.so.0: .*No such file.*GPEDE_CUDA_PLUGIN");
}

TEST(PluginLoader, ALibraryThatIsNotAPluginIsRefused) {
  // libgpede itself: a shared library without the plugin's entry.
  EXPECT_EXIT(load_and_report(GPEDE_CORE_LIBRARY), testing::ExitedWithCode(0),
              "is not a gpede CUDA plugin \\(no gpede_cuda_plugin_entry");
}

TEST(PluginLoader, APluginOfAnotherVersionIsRefused) {
  EXPECT_EXIT(load_and_report(GPEDE_FAKE_PLUGIN_OLD), testing::ExitedWithCode(0),
              "does not match this library: it was built for gpede 0.0.0-old .*this library is gpede " GPEDE_VERSION_STRING
              ".*install the two from one build");
}

TEST(PluginLoader, ThePluginOfThisBuildLoadsFromBesideTheLibrary) {
  EXPECT_EXIT(
      {
        unsetenv(gpede::detail::kCudaPluginVariable);
        const auto& status = cuda_plugin();
        std::cerr << "path: " << status.path << " message: " << status.message << "\n";
        if (GPEDE_TEST_PLUGIN_BUILT) {
          std::_Exit(status.table != nullptr && status.table->version == std::string(GPEDE_VERSION_STRING) &&
                             status.path.ends_with("/libgpede_cuda.so.0")
                         ? 0
                         : 1);
        }
        std::_Exit(status.table == nullptr && status.message.find("built without CUDA") != std::string::npos ? 0 : 1);
      },
      testing::ExitedWithCode(0), "path: ");
}

/// A small run from built records: y = t + s7 and y = t per record.
gpede::SolveResult small_run(gpede::BackendKind backend, std::string* log) {
  gpede::test::TempDir dir("plugin-run");
  {
    std::ofstream steer(dir.path() / "steer.txt");
    steer << "method inversion 1 0.1\nend\n";
  }
  gpede::RecordBuilder records;
  const double local[] = {1.0}, global[] = {1.0};
  const std::int32_t labels[] = {7};
  for (int r = 0; r < 40; ++r) {
    records.add_measurement(local, global, labels, 0.1 * r, 1.0);
    records.add_measurement(local, {}, {}, 0.0, 1.0);
    records.end_record();
  }
  const gpede::Steering steering = gpede::parse_steering(dir.path() / "steer.txt");
  gpede::SolverOptions options;
  options.backend = backend;
  options.threads = 1;
  if (log != nullptr) options.log = [log](const std::string& line) { *log += line + "\n"; };
  auto source = records.source();
  return gpede::solve(steering, options, source.get());
}

[[noreturn]] void cpu_run_and_report() {
  unsetenv(gpede::detail::kCudaPluginVariable);
  const gpede::SolveResult result = small_run(gpede::BackendKind::cpu, nullptr);
  const bool loaded = mapped("libgpede_cuda") || mapped("libcudart") || mapped("libcublas");
  std::cerr << "exit " << result.exit_code << " cuda mapped " << loaded << "\n";
  std::_Exit(result.exit_code < 10 && !loaded ? 0 : 1);
}

[[noreturn]] void plugin_run_and_report() {
  setenv(gpede::detail::kCudaPluginVariable, GPEDE_FAKE_PLUGIN, 1);
  std::string log;
  const gpede::SolveResult result = small_run(gpede::BackendKind::cuda, &log);
  std::cerr << log << "exit " << result.exit_code << "\n";
  std::_Exit(result.exit_code < 10 ? 0 : 1);
}

TEST(PluginLoader, ACpuRunLoadsNoCudaLibrary) {
  EXPECT_EXIT(cpu_run_and_report(), testing::ExitedWithCode(0), "exit [0-4] cuda mapped 0");
}

TEST(PluginLoader, WithoutADriverTheAutomaticChoiceLoadsNothing) {
  std::string reason;
  if (gpede::detail::cuda_driver_present(reason)) GTEST_SKIP() << "a CUDA driver is present here";
  EXPECT_EXIT(
      {
        unsetenv(gpede::detail::kCudaPluginVariable);
        const gpede::detail::CudaDeviceInfo info = gpede::detail::query_cuda_device();
        std::cerr << "reason: " << info.reason << "; plugin mapped " << mapped("libgpede_cuda") << "\n";
        std::_Exit(!info.present && !mapped("libgpede_cuda") ? 0 : 1);
      },
      testing::ExitedWithCode(0), "reason: no CUDA driver \\(libcuda.so.1: .*; plugin mapped 0");
}

TEST(PluginLoader, ARunGoesThroughAPluginsBackend) {
  EXPECT_EXIT(plugin_run_and_report(), testing::ExitedWithCode(0), "backend: cuda on gpede test plugin(.|\n)*exit [0-4]");
}

}  // namespace
