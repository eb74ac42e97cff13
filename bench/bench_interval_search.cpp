// The interval search's dynamic programming (intervals auto) over R runs of p time-dependent
// parameters: with each run's covariance block (p x p) or each parameter alone. The statistics
// are random; the cost does not depend on them.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "../host/src/solver/interval_search.hpp"

namespace {

std::vector<gpede::detail::RunStatistics> make_runs(int runs, int p, bool full) {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> gauss;
  std::vector<gpede::detail::RunStatistics> out(static_cast<std::size_t>(runs));
  for (int r = 0; r < runs; ++r) {
    auto& s = out[static_cast<std::size_t>(r)];
    // weights 1 (0.3 between neighbours with blocks), values standard normal, a step at runs / 2
    std::vector<double> x(static_cast<std::size_t>(p));
    for (int i = 0; i < p; ++i) {
      s.index.push_back(i);
      x[static_cast<std::size_t>(i)] = gauss(rng) + (r >= runs / 2 ? 3.0 : 0.0);
    }
    if (full) {
      s.weight.assign(static_cast<std::size_t>(p) * p, 0.0);
      for (int i = 0; i < p; ++i) {
        s.weight[static_cast<std::size_t>(i) * p + i] = 1.0;
        if (i > 0) {
          s.weight[static_cast<std::size_t>(i) * p + i - 1] = 0.3;
          s.weight[static_cast<std::size_t>(i - 1) * p + i] = 0.3;
        }
      }
    } else {
      s.weight.assign(static_cast<std::size_t>(p), 1.0);
    }
    for (int i = 0; i < p; ++i) {
      double g = 0.0;
      for (int j = std::max(0, i - 1); j <= std::min(p - 1, i + 1); ++j) {
        const double w = full ? s.weight[static_cast<std::size_t>(i) * p + j] : (i == j ? 1.0 : 0.0);
        g += w * x[static_cast<std::size_t>(j)];
      }
      s.score.push_back(g);
      s.explained += g * x[static_cast<std::size_t>(i)];
    }
  }
  return out;
}

void BM_IntervalSearch(benchmark::State& state) {
  const int runs = static_cast<int>(state.range(0)), p = static_cast<int>(state.range(1));
  const bool full = state.range(2) != 0;
  const auto stats = make_runs(runs, p, full);
  const double penalty = gpede::detail::default_interval_penalty(p, runs);
  std::size_t starts = 0;
  for (auto _ : state) {
    const auto choice = gpede::detail::choose_interval_starts(stats, p, penalty, full);
    starts = choice.starts.size();
    benchmark::DoNotOptimize(starts);
  }
  // the prefix sums the search keeps: (runs + 1) x (p^2 or p) weights and (runs + 1) x p vectors
  const double kept = (runs + 1.0) * ((full ? double(p) * p : double(p)) + p + 1.0) * 8.0;
  state.counters["statistics_MB"] = kept / 1e6;
  state.counters["starts"] = static_cast<double>(starts);
}
BENCHMARK(BM_IntervalSearch)
    ->Args({100, 30, 1})
    ->Args({300, 10, 1})
    ->Args({100, 100, 1})
    ->Args({1000, 100, 0})
    ->Args({1000, 1000, 0})
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
