// Throughput of the CPU accumulator (local fits + Schur complements into the dense global matrix)
// on records of the simulation's presets, generated once into memory before timing.
//
// Arguments: preset (0 small, 1 medium, 2 belle2), scattering (0 none, 1 broken lines), threads.
// belle2's 61,520 parameters do not fit a dense matrix in host memory; its drift-chamber wires are
// fixed here (the records keep their wire derivatives, the accumulator drops them), which leaves
// 4,176 variable parameters: the work per record is still that of the full detector's sensors and
// layers. Counters: records/s and the average distinct variable globals per record (K).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "gpede/detail/cpu_accumulator.hpp"
#include "gpede/record_batch.hpp"
#include "gpede/simulate.hpp"

namespace {

using gpede::sim::Preset;

struct Prepared {
  gpede::RecordBatch batch;
  gpede::detail::PassSetup setup;
  double average_k = 0.0;
};

Prepared prepare(Preset preset, bool scattering, std::int64_t records) {
  gpede::sim::SimulationConfig config = gpede::sim::preset_config(preset);
  config.scattering = scattering ? gpede::sim::Scattering::broken_lines : gpede::sim::Scattering::none;
  config.tracks = 2 * records;
  const gpede::sim::Simulation sim(config);
  const auto& det = sim.detector();
  Prepared p;
  sim.generate_parallel(0, records, p.batch, 0);
  const std::int64_t n = det.n_parameters();
  for (std::size_t k = 0; k < p.batch.global_label.size(); ++k) {
    p.batch.global_index[k] = static_cast<std::int32_t>(det.parameter_index(p.batch.global_label[k]));
  }
  p.setup.build_matrix = true;
  p.setup.n_all = n;
  p.setup.parameter_value.assign(static_cast<std::size_t>(n), 0.0);
  p.setup.variable_index.assign(static_cast<std::size_t>(n), -1);
  const bool fix_wires = preset == Preset::belle2;
  std::int32_t next = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (fix_wires && gpede::sim::is_wire_label(det.labels()[static_cast<std::size_t>(i)])) continue;
    p.setup.variable_index[static_cast<std::size_t>(i)] = next++;
  }
  p.setup.n_variable = next;
  // K per record: distinct variable labels.
  std::int64_t k_sum = 0;
  std::vector<std::int64_t> seen(static_cast<std::size_t>(n), -1);
  for (std::size_t r = 0; r + 1 < p.batch.record_begin.size(); ++r) {
    const std::int64_t e0 = p.batch.global_begin[static_cast<std::size_t>(p.batch.record_begin[r])];
    const std::int64_t e1 = p.batch.global_begin[static_cast<std::size_t>(p.batch.record_begin[r + 1])];
    for (std::int64_t e = e0; e < e1; ++e) {
      const auto label = static_cast<std::size_t>(p.batch.global_index[static_cast<std::size_t>(e)]);
      if (p.setup.variable_index[label] >= 0 && seen[label] != static_cast<std::int64_t>(r)) {
        seen[label] = static_cast<std::int64_t>(r);
        ++k_sum;
      }
    }
  }
  p.average_k = static_cast<double>(k_sum) / static_cast<double>(p.batch.n_records());
  return p;
}

void BM_AccumulateSimulated(benchmark::State& state) {
  const auto preset = static_cast<Preset>(state.range(0));
  const bool scattering = state.range(1) != 0;
  const int threads = static_cast<int>(state.range(2));
  const std::int64_t records = preset == Preset::small ? 20000 : 3000;
  const Prepared p = prepare(preset, scattering, records);
  gpede::detail::CpuAccumulator accumulator(threads);
  for (auto _ : state) {
    accumulator.begin_pass(p.setup);
    accumulator.accumulate(p.batch);
    const auto totals = accumulator.end_pass();
    benchmark::DoNotOptimize(totals.chi2_sum);
  }
  state.counters["records/s"] =
      benchmark::Counter(static_cast<double>(records) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["K"] = p.average_k;
  state.counters["n_variable"] = static_cast<double>(p.setup.n_variable);
}

}  // namespace

BENCHMARK(BM_AccumulateSimulated)
    ->ArgNames({"preset", "scattering", "threads"})
    ->Args({0, 1, 1})
    ->Args({1, 1, 1})
    ->Args({2, 0, 1})
    ->Args({2, 1, 1})
    ->Args({2, 1, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
