// Accumulation on the CUDA backend (local fits, Schur complements into the device's global matrix
// and b, pass totals): records/s and GB/s of record data for record shapes with few (4) or many
// (30) local parameters and 20 or 600 global labels per record, 5,000 global parameters. One
// iteration is a building pass over a few batches: uploads, kernels and the final symmetrisation,
// timed with CUDA events on the backend's compute stream (UseManualTime). Skipped without a device.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gpede/detail/backend.hpp"
#include "gpede/detail/cuda_device.hpp"
#include "gpede/record_batch.hpp"

namespace {

namespace detail = gpede::detail;

constexpr std::int64_t kParameters = 5000;
constexpr int kBatches = 4;

// Records of `locals` local parameters (a cyclic band of two local derivatives per measurement,
// 2 locals + 4 measurements but at least 20) touching `labels` distinct global labels, the global
// derivatives spread evenly over the measurements. About 24 MB of record data per batch.
gpede::RecordBatch make_batch(int locals, int labels, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const int measurements = std::max(2 * locals + 4, 20);
  const int per_measurement = (labels + measurements - 1) / measurements;
  const std::size_t bytes_per_record =
      static_cast<std::size_t>(measurements) * (2 * 12 + 8 * 4) + static_cast<std::size_t>(labels) * 16;
  const int records = static_cast<int>(std::max<std::size_t>(256, (24u << 20) / bytes_per_record));
  gpede::RecordBatch b;
  std::vector<std::int32_t> record_labels(static_cast<std::size_t>(labels));
  for (int r = 0; r < records; ++r) {
    // A contiguous window of labels, as a track crosses neighbouring modules.
    const std::int32_t first = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(kParameters - labels));
    std::iota(record_labels.begin(), record_labels.end(), first);
    int next_label = 0;
    for (int i = 0; i < measurements; ++i) {
      for (int t = 0; t < 2; ++t) {
        b.local_index.push_back((i + t) % locals);
        b.local_deriv.push_back(0.5 + unit(rng));
      }
      for (int t = 0; t < per_measurement && next_label < labels; ++t) {
        const std::int32_t label = record_labels[next_label++];
        b.global_label.push_back(label + 1);
        b.global_index.push_back(label);
        b.global_deriv.push_back(2.0 * unit(rng) - 1.0);
      }
      b.meas_value.push_back(0.1 * (unit(rng) - 0.5));
      b.meas_sigma.push_back(0.05 + 0.1 * unit(rng));
      b.local_begin.push_back(static_cast<std::int64_t>(b.local_index.size()));
      b.global_begin.push_back(static_cast<std::int64_t>(b.global_index.size()));
    }
    b.record_begin.push_back(static_cast<std::int64_t>(b.meas_value.size()));
    b.record_weight.push_back(1.0);
    b.record_file.push_back(0);
    b.record_number.push_back(r + 1);
  }
  return b;
}

void accumulate(benchmark::State& state) {
  const int locals = static_cast<int>(state.range(0));
  const int labels = static_cast<int>(state.range(1));
  const detail::CudaDeviceInfo device = detail::query_cuda_device();
  if (!device.present) {
    state.SkipWithError(("no CUDA device: " + device.reason).c_str());
    return;
  }
  std::vector<gpede::RecordBatch> batches;
  for (int k = 0; k < kBatches; ++k) batches.push_back(make_batch(locals, labels, 1000 + k));
  std::int64_t records = 0;
  std::size_t bytes = 0;
  for (const auto& b : batches) {
    records += static_cast<std::int64_t>(b.n_records());
    bytes += b.bytes();
  }
  auto backend = detail::make_cuda_backend();
  detail::PassSetup setup;
  setup.build_matrix = true;
  setup.n_all = kParameters;
  setup.n_variable = kParameters;
  setup.parameter_value.assign(kParameters, 0.0);
  setup.variable_index.resize(kParameters);
  std::iota(setup.variable_index.begin(), setup.variable_index.end(), 0);
  setup.fit.hugecut = 1e30;  // accept every record: the benchmark measures the full work
  double total = 0.0;
  std::int64_t iterations = 0;
  std::int64_t accepted = 0;
  for (auto _ : state) {
    backend->begin_pass(setup);  // zeroes the matrix: not timed
    detail::PassTotals totals;
    const double seconds = detail::time_on_device(*backend, [&] {
      for (const auto& b : batches) backend->accumulate(b);
      totals = backend->end_pass();
    });
    accepted = totals.accepted;
    state.SetIterationTime(seconds);
    total += seconds;
    ++iterations;
  }
  if (iterations == 0) return;
  const double mean = total / static_cast<double>(iterations);
  state.counters["records/s"] = static_cast<double>(records) / mean;
  state.counters["GB/s"] = static_cast<double>(bytes) / mean / 1e9;
  state.counters["records"] = static_cast<double>(records);
  state.counters["accepted"] = static_cast<double>(accepted);
}

BENCHMARK(accumulate)
    ->ArgNames({"locals", "globals"})
    ->Args({4, 20})
    ->Args({30, 20})
    ->Args({4, 600})
    ->Args({30, 600})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.5);

}  // namespace

BENCHMARK_MAIN();
