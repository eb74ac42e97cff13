// Dense solution on the CUDA backend for n = 5k ... 60k parameters, timed with CUDA events on the
// backend's compute stream (UseManualTime): Cholesky (method decomposition), Cholesky plus the
// covariance diagonal (method inversion: Xpotrf + Xtrtri + column norms), the explicit full
// inverse for comparison (Xpotrf + Xtrtri + Dsyrk, raw cuSOLVER/cuBLAS), and the
// eigen-decomposition (method diagonalization, Xsyevd). The matrix is a diagonally dominant test
// matrix generated on the device. Sizes the memory plan rejects, and every size without a device,
// are skipped with the reason.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>

#include "cuda_resources.hpp"
#include "dense_launch.hpp"
#include "gpede/detail/backend.hpp"
#include "gpede/detail/cuda_device.hpp"

namespace {

using gpede::ConstraintMode;
using gpede::Method;
namespace detail = gpede::detail;
namespace cuda = gpede::detail::cuda;

bool skip_without_device(benchmark::State& state, const detail::MemoryPlan* plan = nullptr) {
  const detail::CudaDeviceInfo device = detail::query_cuda_device();
  if (!device.present) {
    state.SkipWithError(("no CUDA device: " + device.reason).c_str());
    return true;
  }
  if (plan != nullptr && !plan->fits) {
    state.SkipWithError(("does not fit: " + plan->message).c_str());
    return true;
  }
  return false;
}

void report(benchmark::State& state, double seconds, double flops, std::int64_t iterations) {
  if (iterations == 0) return;
  const double mean = seconds / static_cast<double>(iterations);
  state.counters["seconds"] = mean;
  state.counters["TFLOP/s"] = flops / mean / 1e12;
}

// Nominal flop counts: potrf n^3/3, trtri n^3/3, syrk n^3 (full n x n operand), syevd with
// vectors 4n^3/3 (tridiagonal reduction) + 2n^3 (back transformation), the divide and conquer
// step not counted.
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

void backend_method(benchmark::State& state, Method method) {
  const std::int64_t n = state.range(0);
  const detail::MemoryPlan plan =
      plan_cuda_memory(n, 0, method, ConstraintMode::elimination, 0, detail::query_cuda_device());
  if (skip_without_device(state, &plan)) return;
  auto backend = detail::make_cuda_backend();
  detail::PassSetup setup;
  setup.build_matrix = true;
  setup.n_all = n;
  setup.n_variable = n;
  setup.parameter_value.assign(static_cast<std::size_t>(n), 0.0);
  setup.variable_index.resize(static_cast<std::size_t>(n));
  std::iota(setup.variable_index.begin(), setup.variable_index.end(), 0);
  detail::FactorOptions options;
  options.method = method;
  options.want_covariance = method != Method::decomposition;
  double total = 0.0;
  std::int64_t iterations = 0;
  for (auto _ : state) {
    backend->begin_pass(setup);
    backend->end_pass();
    detail::fill_test_matrix(*backend, 42);
    detail::FactorReport factor_report;
    const double seconds = detail::time_on_device(
        *backend, [&] { factor_report = backend->factorize(detail::ConstraintSystem{}, options); });
    if (!factor_report.ok) {
      state.SkipWithError(factor_report.message.c_str());
      return;
    }
    state.SetIterationTime(seconds);
    total += seconds;
    ++iterations;
  }
  report(state, total, nominal_flops(method, static_cast<double>(n)), iterations);
}

void cholesky(benchmark::State& state) { backend_method(state, Method::decomposition); }
void cholesky_covariance_diagonal(benchmark::State& state) { backend_method(state, Method::inversion); }
void eigen_decomposition(benchmark::State& state) { backend_method(state, Method::diagonalization); }

// C^-1 = L^-T L^-1 formed explicitly: Xpotrf, Xtrtri in place, Dsyrk into a second matrix.
void full_inverse(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const detail::MemoryPlan plan =
      plan_cuda_memory(n, 0, Method::inversion, ConstraintMode::elimination, 0, detail::query_cuda_device());
  if (skip_without_device(state, &plan)) return;
  const std::size_t elements = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
  cuda::Stream stream = cuda::make_stream();
  cuda::CusolverHandle solver = cuda::make_cusolver(stream.get());
  cuda::CublasHandle blas = cuda::make_cublas(stream.get());
  cuda::CusolverParams params = cuda::make_cusolver_params();
  cuda::DeviceBuffer<double> a(elements), inverse(elements);
  cuda::DeviceBuffer<int> info(2);  // potrf, trtri
  std::size_t potrf_device = 0, potrf_host = 0, trtri_device = 0, trtri_host = 0;
  GPEDE_CUSOLVER_CHECK(cusolverDnXpotrf_bufferSize(solver.get(), params.get(), CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F,
                                                   a.data(), n, CUDA_R_64F, &potrf_device, &potrf_host));
  GPEDE_CUSOLVER_CHECK(cusolverDnXtrtri_bufferSize(solver.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n,
                                                   CUDA_R_64F, a.data(), n, &trtri_device, &trtri_host));
  cuda::DeviceBuffer<std::byte> work(std::max<std::size_t>({potrf_device, trtri_device, 1}));
  std::vector<std::byte> host_work(std::max<std::size_t>({potrf_host, trtri_host, 1}));
  cuda::Event start = cuda::make_event(true), stop = cuda::make_event(true);
  const double one = 1.0, zero = 0.0;
  double total = 0.0;
  std::int64_t iterations = 0;
  for (auto _ : state) {
    cuda::launch_fill_test_matrix(a.data(), n, 42, stream.get());
    GPEDE_CUDA_CHECK(cudaEventRecord(start.get(), stream.get()));
    GPEDE_CUSOLVER_CHECK(cusolverDnXpotrf(solver.get(), params.get(), CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, a.data(),
                                          n, CUDA_R_64F, work.data(), potrf_device, host_work.data(), potrf_host,
                                          info.data()));
    // The strict upper triangle still holds the matrix: L alone goes into a zeroed second matrix,
    // is inverted there, and syrk writes L^-T L^-1 over the first.
    GPEDE_CUDA_CHECK(cudaMemsetAsync(inverse.data(), 0, inverse.bytes(), stream.get()));
    cuda::launch_copy_lower(a.data(), n, inverse.data(), n, n, stream.get());
    GPEDE_CUSOLVER_CHECK(cusolverDnXtrtri(solver.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F,
                                          inverse.data(), n, work.data(), trtri_device, host_work.data(), trtri_host,
                                          info.data() + 1));
    GPEDE_CUBLAS_CHECK(cublasDsyrk_64(blas.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, n, n, &one, inverse.data(), n,
                                      &zero, a.data(), n));
    GPEDE_CUDA_CHECK(cudaEventRecord(stop.get(), stream.get()));
    GPEDE_CUDA_CHECK(cudaEventSynchronize(stop.get()));
    int host_info[2] = {0, 0};
    GPEDE_CUDA_CHECK(cudaMemcpy(host_info, info.data(), sizeof host_info, cudaMemcpyDeviceToHost));
    if (host_info[0] != 0 || host_info[1] != 0) {
      state.SkipWithError(("cuSOLVER info: potrf " + std::to_string(host_info[0]) + ", trtri " +
                           std::to_string(host_info[1]))
                              .c_str());
      return;
    }
    float ms = 0.0f;
    GPEDE_CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), stop.get()));
    state.SetIterationTime(ms * 1e-3);
    total += ms * 1e-3;
    ++iterations;
  }
  const double nd = static_cast<double>(n);
  report(state, total, nd * nd * nd / 3.0 * 2.0 + nd * nd * nd, iterations);
}

void sizes(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {5000, 10000, 20000, 40000, 60000}) b->Arg(n);
  b->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);
}

BENCHMARK(cholesky)->Apply(sizes);
BENCHMARK(cholesky_covariance_diagonal)->Apply(sizes);
BENCHMARK(full_inverse)->Apply(sizes);
BENCHMARK(eigen_decomposition)->Apply(sizes);

}  // namespace

BENCHMARK_MAIN();
