// The large-n probe of bench/gpu_check.sh: the dense solution on the CUDA engine at a size whose
// matrix has more than 2^31 elements (default n = 50,000), where any 32-bit call on the global
// matrix would fail or corrupt memory. A diagonally dominant test matrix generated on the device
// and m random constraints (200 parameters each) are solved three ways:
//   inversion with elimination (compact-WY Q, in-place inverse), inversion with multipliers (the
//   bordered LDL^T: factorised on the host beyond 2^31 elements, the inverse diagonal from Xsytrs)
//   and decomposition with elimination;
// each step is checked by residuals against the matrix generated again: A x = c (the constraint
// residual) and C x - b orthogonal to the rows of A, to 1e-8 of |b|; the steps and the covariance
// diagonals of the two inversions agree to 1e-8. Prints one line per check and the seconds of
// each factorisation; exits 1 if a check fails, 77 without a device.
//   bench_cuda_large_probe [n] [m]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "dense_launch.hpp"
#include "gpede/detail/backend.hpp"
#include "gpede/detail/cuda_device.hpp"
#include "gpede/detail/dense_solution.hpp"
#include "gpede/detail/linalg.hpp"
#include "gpede/error.hpp"

namespace {

namespace detail = gpede::detail;
namespace linalg = gpede::detail::linalg;
using gpede::ConstraintMode;
using gpede::Method;

constexpr std::uint64_t kSeed = 7;

linalg::Matrix test_matrix(linalg::Engine& engine, std::int64_t n) {
  linalg::Matrix m = engine.allocate(n, n);
  cudaDeviceSynchronize();  // the engine's stream is done with the allocation's memset
  detail::cuda::launch_fill_test_matrix(m.view().ptr(), n, kSeed, nullptr);
  if (cudaDeviceSynchronize() != cudaSuccess) throw gpede::RuntimeError("test matrix generation failed");
  return m;
}

double norm(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

struct Run {
  std::vector<double> x;
  std::vector<double> cov;
  double seconds = 0.0;
  bool ok = false;
  std::string message;
};

Run solve(linalg::Engine& engine, std::int64_t n, const detail::ConstraintSystem& cons, Method method,
          ConstraintMode mode, const std::vector<double>& b, const std::vector<double>& residual) {
  Run run;
  detail::DenseSolution solution(engine);
  detail::FactorOptions options;
  options.method = method;
  options.mode = mode;
  options.want_covariance = method != Method::decomposition;
  linalg::Matrix matrix = test_matrix(engine, n);
  const auto start = std::chrono::steady_clock::now();
  const detail::FactorReport report = solution.factorize(std::move(matrix), n, cons, options);
  run.x = solution.solve(b, residual);
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  run.cov = solution.covariance_diagonal();
  run.ok = report.ok;
  run.message = report.message;
  return run;
}

int failures = 0;

void check(const std::string& what, double value, double limit) {
  const bool pass = value <= limit && std::isfinite(value);
  failures += pass ? 0 : 1;
  std::printf("%-4s %-58s %.3g (limit %.0e)\n", pass ? "PASS" : "FAIL", what.c_str(), value, limit);
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t n = argc > 1 ? std::atoll(argv[1]) : 50000;
  const std::int64_t m = argc > 2 ? std::atoll(argv[2]) : 20;
  const detail::CudaDeviceInfo device = detail::query_cuda_device();
  if (!device.present) {
    std::printf("SKIP large-n probe: no CUDA device (%s)\n", device.reason.c_str());
    return 77;
  }
  std::printf("large-n probe on %s: n = %lld (%.3g elements per matrix), %lld constraints\n", device.name.c_str(),
              static_cast<long long>(n), static_cast<double>(n) * static_cast<double>(n), static_cast<long long>(m));
  try {
    std::mt19937_64 rng(2026);
    std::uniform_real_distribution<double> unit(-1.0, 1.0);
    std::uniform_int_distribution<std::int64_t> column(0, n - 1);
    detail::ConstraintSystem cons;
    cons.n = n;
    cons.m = m;
    cons.a.assign(static_cast<std::size_t>(m * n), 0.0);
    for (std::int64_t k = 0; k < m; ++k) {
      for (int t = 0; t < 200; ++t) cons.a[static_cast<std::size_t>(k * n + column(rng))] = unit(rng);
    }
    cons.value.assign(static_cast<std::size_t>(m), 0.0);
    std::vector<double> b(static_cast<std::size_t>(n)), residual(static_cast<std::size_t>(m));
    for (double& v : b) v = unit(rng);
    for (double& v : residual) v = 1e-3 * unit(rng);

    std::unique_ptr<linalg::Engine> engine = linalg::make_cuda_engine();
    const Run elimination = solve(*engine, n, cons, Method::inversion, ConstraintMode::elimination, b, residual);
    std::printf("inversion, elimination:      %.2f s%s\n", elimination.seconds,
                elimination.ok ? "" : (" (" + elimination.message + ")").c_str());
    const Run multipliers = solve(*engine, n, cons, Method::inversion, ConstraintMode::multipliers, b, residual);
    std::printf("inversion, multipliers:      %.2f s%s\n", multipliers.seconds,
                multipliers.ok ? "" : (" (" + multipliers.message + ")").c_str());
    const Run decomposition = solve(*engine, n, cons, Method::decomposition, ConstraintMode::elimination, b, residual);
    std::printf("decomposition, elimination:  %.2f s%s\n", decomposition.seconds,
                decomposition.ok ? "" : (" (" + decomposition.message + ")").c_str());

    // The rows of A, orthonormalised on the host (modified Gram-Schmidt), for the projections.
    std::vector<std::vector<double>> basis;
    for (std::int64_t k = 0; k < m; ++k) {
      std::vector<double> row(cons.a.begin() + k * n, cons.a.begin() + (k + 1) * n);
      for (const auto& q : basis) {
        double d = 0.0;
        for (std::int64_t j = 0; j < n; ++j) d += q[j] * row[j];
        for (std::int64_t j = 0; j < n; ++j) row[j] -= d * q[j];
      }
      const double r = norm(row);
      for (double& v : row) v /= r;
      basis.push_back(std::move(row));
    }
    linalg::Matrix c = test_matrix(*engine, n);
    linalg::Matrix xm = engine->allocate(n, 1), ym = engine->allocate(n, 1);
    const double b_norm = norm(b);
    for (const auto* run : {&elimination, &multipliers, &decomposition}) {
      const std::string name = run == &elimination     ? "inversion/elimination"
                               : run == &multipliers ? "inversion/multipliers"
                                                     : "decomposition/elimination";
      failures += run->ok ? 0 : 1;
      std::printf("%-4s %-58s\n", run->ok ? "PASS" : "FAIL", (name + ": factorisation regular").c_str());
      double constraint_error = 0.0;
      for (std::int64_t k = 0; k < m; ++k) {
        double s = 0.0;
        for (std::int64_t j = 0; j < n; ++j) s += cons.a[static_cast<std::size_t>(k * n + j)] * run->x[j];
        constraint_error = std::max(constraint_error, std::abs(s - residual[k]));
      }
      check(name + ": |A x - c| / |c|", constraint_error / std::max(norm(residual), 1e-300), 1e-8);
      engine->upload(run->x, xm.view());
      engine->gemv(false, 1.0, c.view(), xm.view(), 0.0, ym.view());
      std::vector<double> r = engine->download(ym.view());
      for (std::int64_t j = 0; j < n; ++j) r[j] -= b[j];
      for (const auto& q : basis) {
        double d = 0.0;
        for (std::int64_t j = 0; j < n; ++j) d += q[j] * r[j];
        for (std::int64_t j = 0; j < n; ++j) r[j] -= d * q[j];
      }
      check(name + ": |(C x - b) off the rows of A| / |b|", norm(r) / b_norm, 1e-8);
    }
    double step = 0.0, cov = 0.0;
    for (std::int64_t j = 0; j < n; ++j) {
      step = std::max(step, std::abs(elimination.x[j] - multipliers.x[j]));
      cov = std::max(cov, std::abs(elimination.cov[j] - multipliers.cov[j]) / std::abs(elimination.cov[j]));
    }
    check("steps of elimination and multipliers, max |dx| / |x|", step / norm(elimination.x), 1e-8);
    check("covariance diagonals of both inversions, max relative", cov, 1e-8);
  } catch (const std::exception& e) {
    std::printf("FAIL large-n probe: %s\n", e.what());
    return 1;
  }
  std::printf("large-n probe: %s\n", failures == 0 ? "all checks passed" : "FAILED");
  return failures == 0 ? 0 : 1;
}
