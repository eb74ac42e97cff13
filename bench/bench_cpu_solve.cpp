// CPU baseline of the dense solution (DenseSolver, LAPACK through OpenBLAS on all cores) for
// n = 1k, 2k, 4k, to set beside bench_cuda_solve: Cholesky (decomposition), Cholesky plus the
// covariance diagonal (inversion) and the eigen-decomposition (diagonalization, one iteration each). The
// matrix is the same diagonally dominant test matrix as on the device; its generation
// is not timed.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "gpede/detail/dense_solver.hpp"

namespace {

using gpede::Method;
namespace detail = gpede::detail;

std::uint64_t mix(std::uint64_t x) {  // splitmix64 finaliser, as the device generator
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::vector<double> test_matrix(std::int64_t n, std::uint64_t seed) {
  std::vector<double> a(static_cast<std::size_t>(n * n));
  for (std::int64_t j = 0; j < n; ++j) {
    for (std::int64_t i = 0; i < n; ++i) {
      if (i == j) {
        a[i + j * n] = static_cast<double>(n);
        continue;
      }
      const auto lo = static_cast<std::uint64_t>(i < j ? i : j);
      const auto hi = static_cast<std::uint64_t>(i < j ? j : i);
      const std::uint64_t h = mix(mix(seed ^ lo) ^ (hi * 0x632be59bd9b4e019ull));
      a[i + j * n] = static_cast<double>(h >> 11) * 0x1.0p-53 - 0.5;
    }
  }
  return a;
}

// Nominal flops: potrf n^3/3, trtri n^3/3 (DenseSolver's covariance diagonal), syevr with vectors
// ~ (4/3 + 2) n^3; the same counts as bench_cuda_solve.
double nominal_flops(Method method, double n) {
  switch (method) {
    case Method::decomposition:
      return n * n * n / 3.0;
    case Method::inversion:
      return 2.0 * n * n * n / 3.0;
    case Method::diagonalization:
      return (4.0 / 3.0 + 2.0) * n * n * n;
  }
  return 0.0;
}

void solve(benchmark::State& state, Method method) {
  const std::int64_t n = state.range(0);
  const std::vector<double> matrix = test_matrix(n, 42);
  detail::FactorOptions options;
  options.method = method;
  options.want_covariance = method != Method::decomposition;
  double total = 0.0;
  std::int64_t iterations = 0;
  for (auto _ : state) {
    std::vector<double> copy = matrix;  // consumed by factorize
    detail::DenseSolver solver;
    const auto t0 = std::chrono::steady_clock::now();
    const detail::FactorReport report = solver.factorize(std::move(copy), n, detail::ConstraintSystem{}, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!report.ok) {
      state.SkipWithError(report.message.c_str());
      return;
    }
    state.SetIterationTime(seconds);
    total += seconds;
    ++iterations;
  }
  if (iterations == 0) return;
  const double mean = total / static_cast<double>(iterations);
  state.counters["seconds"] = mean;
  state.counters["GFLOP/s"] = nominal_flops(method, static_cast<double>(n)) / mean / 1e9;
}

void cholesky(benchmark::State& state) { solve(state, Method::decomposition); }
void cholesky_inverse(benchmark::State& state) { solve(state, Method::inversion); }
void eigen_decomposition(benchmark::State& state) { solve(state, Method::diagonalization); }

BENCHMARK(cholesky)->Arg(1000)->Arg(2000)->Arg(4000)->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(0.2);
BENCHMARK(cholesky_inverse)->Arg(1000)->Arg(2000)->Arg(4000)->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(0.2);
BENCHMARK(eigen_decomposition)->Arg(1000)->Arg(2000)->Arg(4000)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
