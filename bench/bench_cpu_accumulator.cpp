// Throughput of the CPU accumulator (local fits + Schur contributions into the dense global matrix)
// on synthetic records shaped like the bp reference problem (pede -t=BP): 10 layers with one
// measurement each plus 4 stereo measurements, 30 local parameters (2 offsets, 2 slopes, 13
// scatterers with 2 kinks each, a pseudo-measurement per kink), 40 measurements, 18 global
// derivatives (14 distinct labels) per record, 700 labels; and broken-lines records with a band of
// local parameters (50 to 400) beside a border of 4.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "gpede/detail/cpu_accumulator.hpp"
#include "gpede/record_batch.hpp"

namespace {

constexpr int n_labels = 700;

gpede::RecordBatch make_bp_like_batch(int n_records, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::uniform_int_distribution<int> module(0, 49);
  gpede::RecordBatch b;
  auto end_measurement = [&b] {
    b.local_begin.push_back(static_cast<std::int64_t>(b.local_index.size()));
    b.global_begin.push_back(static_cast<std::int64_t>(b.global_index.size()));
  };
  auto add_local = [&b](int index, double derivative) {
    b.local_index.push_back(index);
    b.local_deriv.push_back(derivative);
  };
  auto add_global = [&b](int label_index, double derivative) {
    b.global_index.push_back(label_index);
    b.global_label.push_back(label_index + 1);
    b.global_deriv.push_back(derivative);
  };
  for (int r = 0; r < n_records; ++r) {
    for (int layer = 0; layer < 10; ++layer) {
      const double x = 10.0 * (layer + 1);
      const bool stereo = layer == 1 || layer == 4 || layer == 7 || layer == 9;
      const int label = layer * 50 + module(rng);
      for (int view = 0; view < (stereo ? 2 : 1); ++view) {
        const double c = view == 0 ? 1.0 : 0.996;
        const double s = view == 0 ? 0.0 : (layer % 2 == 0 ? 0.087 : -0.087);
        b.meas_value.push_back(0.01 * noise(rng));
        b.meas_sigma.push_back(0.002);
        add_local(0, c);
        if (s != 0.0) add_local(1, s);
        add_local(2, c * x);
        if (s != 0.0) add_local(3, s * x);
        for (int k = 0; k < 13; ++k) {  // scatterers before the layer
          const double xs = 7.5 * k + 0.5;
          if (xs >= x) break;
          add_local(4 + 2 * k, c * (x - xs));
          if (s != 0.0) add_local(5 + 2 * k, s * (x - xs));
        }
        add_global(label, c);
        if (view == 1) add_global(500 + layer * 20 + module(rng) % 20, s);
        end_measurement();
      }
    }
    for (int k = 0; k < 26; ++k) {  // kink pseudo-measurements
      b.meas_value.push_back(0.0);
      b.meas_sigma.push_back(3.53e-5);
      add_local(4 + k, 1.0);
      end_measurement();
    }
    b.record_begin.push_back(static_cast<std::int64_t>(b.meas_value.size()));
    b.record_weight.push_back(1.0);
    b.record_file.push_back(0);
    b.record_number.push_back(r + 1);
  }
  return b;
}

// Passes of the CPU accumulator over `batch` with every one of the n_labels labels variable;
// records/s, and an error if a record was rejected.
void run_passes(benchmark::State& state, const gpede::RecordBatch& batch, int threads, bool build) {
  gpede::detail::PassSetup setup;
  setup.build_matrix = build;
  setup.n_all = n_labels;
  setup.n_variable = n_labels;
  setup.parameter_value.assign(n_labels, 0.0);
  for (int i = 0; i < n_labels; ++i) setup.variable_index.push_back(i);
  setup.fit.hugecut = 1e30;
  gpede::detail::CpuAccumulator accumulator(threads);
  std::int64_t accepted = 0;
  for (auto _ : state) {
    accumulator.begin_pass(setup);
    accumulator.accumulate(batch);
    accepted = accumulator.end_pass().accepted;
    benchmark::DoNotOptimize(accepted);
  }
  if (accepted != static_cast<std::int64_t>(batch.n_records())) state.SkipWithError("records rejected");
  state.counters["records/s"] = benchmark::Counter(static_cast<double>(batch.n_records()) * state.iterations(),
                                                   benchmark::Counter::kIsRate);
}

void accumulate_bp_like(benchmark::State& state) {
  run_passes(state, make_bp_like_batch(20000, 1), static_cast<int>(state.range(0)), state.range(1) != 0);
}

BENCHMARK(accumulate_bp_like)->ArgsProduct({{1, 2}, {1, 0}})->ArgNames({"threads", "matrix"})->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Broken-lines records with many local parameters: 4 track parameters on every measurement (the
// border) and a band of 3 consecutive scatterer offsets, `locals` local parameters in all,
// 2 (locals - 4) + 10 measurements, one global derivative on every third, 700 labels.
gpede::RecordBatch make_band_batch(int n_records, int locals, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  std::uniform_int_distribution<int> label(0, n_labels - 1);
  gpede::RecordBatch b;
  for (int r = 0; r < n_records; ++r) {
    for (int i = 0; i < 2 * (locals - 4) + 10; ++i) {
      b.meas_value.push_back(0.01 * unit(rng));
      b.meas_sigma.push_back(0.01);
      for (int k = 0; k < 4; ++k) {
        b.local_index.push_back(k);
        b.local_deriv.push_back(unit(rng));
      }
      for (int k = 0; k < 3; ++k) {
        const int index = 4 + std::min(locals - 5, i / 2) + k - 1;
        if (index >= 4 && index < locals) {
          b.local_index.push_back(index);
          b.local_deriv.push_back(unit(rng));
        }
      }
      if (i % 3 == 0) {
        const int l = label(rng);
        b.global_index.push_back(l);
        b.global_label.push_back(l + 1);
        b.global_deriv.push_back(unit(rng));
      }
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

void accumulate_broken_lines(benchmark::State& state) {
  run_passes(state, make_band_batch(400, static_cast<int>(state.range(0)), 2), 1, true);
}

BENCHMARK(accumulate_broken_lines)->ArgName("locals")->Arg(50)->Arg(100)->Arg(200)->Arg(400)->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
