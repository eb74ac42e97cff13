// The CUDA backend against the CPU backend's parts, which are tested against independent references
// in their own suites: the device's global matrix, b and pass totals against CpuAccumulator on
// synthetic batches (every launch shape, two batches to go through both halves of the double
// buffer, a building pass and a pass with cuts and down-weighting), and factorize / solve /
// covariance against DenseSolver for every method and constraint mode. Every test skips with
// "no CUDA device: ..." where query_cuda_device() finds none.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gpede/detail/backend.hpp"
#include "gpede/detail/cpu_accumulator.hpp"
#include "gpede/detail/cuda_device.hpp"
#include "gpede/detail/dense_solver.hpp"
#include "gpede/error.hpp"
#include "gpede/record_batch.hpp"

namespace {

using gpede::ConstraintMode;
using gpede::Method;
using gpede::RecordBatch;
using gpede::detail::Backend;
using gpede::detail::ConstraintSystem;
using gpede::detail::CpuAccumulator;
using gpede::detail::CudaBackendOptions;
using gpede::detail::DenseSolver;
using gpede::detail::FactorOptions;
using gpede::detail::FactorReport;
using gpede::detail::PassSetup;
using gpede::detail::PassTotals;

#define GPEDE_REQUIRE_CUDA_DEVICE()                                                \
  do {                                                                             \
    const gpede::detail::CudaDeviceInfo device_ = gpede::detail::query_cuda_device(); \
    if (!device_.present) GTEST_SKIP() << "no CUDA device: " << device_.reason;    \
  } while (0)

// ---- synthetic records ------------------------------------------------------------------------

struct Problem {
  std::int64_t n_all = 0;
  std::vector<double> truth;  // per label
  std::vector<std::int32_t> variable_index;
  std::int64_t n_variable = 0;
  std::vector<RecordBatch> batches;
};

// A track of `locals` local parameters through 2 locals + 4 measurements; local derivatives on a
// cyclic band (well conditioned), two global derivatives per measurement from the record's
// `labels` labels, every seventh measurement without globals.
void add_record(RecordBatch& b, std::mt19937_64& rng, const Problem& p, int locals, int labels, double weight,
                double noise_scale) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::normal_distribution<double> normal(0.0, 1.0);
  const int measurements = 2 * locals + 4;
  std::vector<std::int32_t> record_labels(static_cast<std::size_t>(labels));
  for (auto& l : record_labels) l = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(p.n_all));
  std::vector<double> q(static_cast<std::size_t>(locals));
  for (auto& v : q) v = normal(rng);
  for (int i = 0; i < measurements; ++i) {
    double z = 0.0;
    for (int t = 0; t < std::min(locals, 2); ++t) {
      const int a = (i + t) % locals;
      const double d = 0.5 + unit(rng);
      b.local_index.push_back(a);
      b.local_deriv.push_back(d);
      z += d * q[a];
    }
    if (i % 7 != 6 && labels > 0) {
      for (int t = 0; t < 2; ++t) {
        const std::int32_t label = record_labels[(2 * i + t) % labels];
        const double g = 2.0 * unit(rng) - 1.0;
        b.global_label.push_back(label + 1);
        b.global_index.push_back(label);
        b.global_deriv.push_back(g);
        z += g * p.truth[label];
      }
    }
    const double sigma = 0.5 + 1.5 * unit(rng);
    b.meas_value.push_back(z + noise_scale * sigma * normal(rng));
    b.meas_sigma.push_back(sigma);
    b.local_begin.push_back(static_cast<std::int64_t>(b.local_index.size()));
    b.global_begin.push_back(static_cast<std::int64_t>(b.global_index.size()));
  }
  b.record_begin.push_back(static_cast<std::int64_t>(b.meas_value.size()));
  b.record_weight.push_back(weight);
  b.record_file.push_back(0);
  b.record_number.push_back(static_cast<std::int64_t>(b.record_weight.size()));
}

// Records the local fit must reject or skip: fewer measurements than local parameters, and no
// local derivative at all.
void add_degenerate_records(RecordBatch& b) {
  for (int i = 0; i < 2; ++i) {  // 2 measurements, local indices 0..2: rank deficient
    b.local_index.insert(b.local_index.end(), {0, 1, 2});
    b.local_deriv.insert(b.local_deriv.end(), {1.0, 0.5 + i, 0.25});
    b.global_label.push_back(1);
    b.global_index.push_back(0);
    b.global_deriv.push_back(1.0);
    b.meas_value.push_back(0.1 * i);
    b.meas_sigma.push_back(1.0);
    b.local_begin.push_back(static_cast<std::int64_t>(b.local_index.size()));
    b.global_begin.push_back(static_cast<std::int64_t>(b.global_index.size()));
  }
  b.record_begin.push_back(static_cast<std::int64_t>(b.meas_value.size()));
  b.record_weight.push_back(1.0);
  b.record_file.push_back(0);
  b.record_number.push_back(static_cast<std::int64_t>(b.record_weight.size()));
  for (int i = 0; i < 3; ++i) {  // no local derivatives
    b.global_label.push_back(2);
    b.global_index.push_back(1);
    b.global_deriv.push_back(1.0);
    b.meas_value.push_back(0.2);
    b.meas_sigma.push_back(1.0);
    b.local_begin.push_back(static_cast<std::int64_t>(b.local_index.size()));
    b.global_begin.push_back(static_cast<std::int64_t>(b.global_index.size()));
  }
  b.record_begin.push_back(static_cast<std::int64_t>(b.meas_value.size()));
  b.record_weight.push_back(1.0);
  b.record_file.push_back(0);
  b.record_number.push_back(static_cast<std::int64_t>(b.record_weight.size()));
}

// Two batches mixing small records (3 locals, 6 labels: one thread each) and large ones (14
// locals, 40 labels: a warp each), file weights 1 and 0.5, outliers, degenerate records and
// fixed labels.
Problem make_problem(std::uint64_t seed) {
  Problem p;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  p.n_all = 160;
  p.truth.resize(static_cast<std::size_t>(p.n_all));
  for (auto& v : p.truth) v = 0.1 * normal(rng);
  p.variable_index.assign(static_cast<std::size_t>(p.n_all), -1);
  for (std::int64_t i = 0; i < p.n_all; ++i) {
    if (i % 11 != 5) p.variable_index[i] = static_cast<std::int32_t>(p.n_variable++);
  }
  for (int batch = 0; batch < 2; ++batch) {
    RecordBatch b;
    for (int r = 0; r < 300; ++r) {
      const bool large = r % 5 == 0;
      const double noise = r % 37 == 3 ? 300.0 : 1.0;  // outliers beyond hugecut
      add_record(b, rng, p, large ? 14 : 3, large ? 40 : 6, r % 2 == 0 ? 1.0 : 0.5, noise);
    }
    add_degenerate_records(b);
    p.batches.push_back(std::move(b));
  }
  return p;
}

PassSetup make_setup(const Problem& p, bool build_matrix) {
  PassSetup setup;
  setup.build_matrix = build_matrix;
  setup.n_all = p.n_all;
  setup.n_variable = p.n_variable;
  setup.variable_index = p.variable_index;
  setup.parameter_value.resize(static_cast<std::size_t>(p.n_all));
  for (std::int64_t i = 0; i < p.n_all; ++i) setup.parameter_value[i] = p.truth[i] + 0.01 * std::sin(1.0 + i);
  return setup;
}

// The CUDA sums are the CPU's terms added in another order (atomics, block reductions) and, in
// the per-record functions, with fused multiply-adds where nvcc contracts them: each term differs
// by a few ulp of its own size and each sum by a few ulp of the partial sums. For a matrix element
// the partial sums are bounded by sqrt(C_ii C_jj) (a positive semi-definite sum); with a few
// hundred terms per element the differences stay below 1e-14 of that scale, so 1e-12 leaves a
// factor 100 of margin while a wrong term (an error of order 1 in that scale) cannot pass. b has
// no such bound per element; its scale is max |b|, the size of the largest partial sums.
void expect_same_totals(const PassTotals& gpu, const PassTotals& cpu) {
  EXPECT_EQ(gpu.records, cpu.records);
  EXPECT_EQ(gpu.accepted, cpu.accepted);
  EXPECT_EQ(gpu.rejected_rank, cpu.rejected_rank);
  EXPECT_EQ(gpu.rejected_huge, cpu.rejected_huge);
  EXPECT_EQ(gpu.rejected_cut, cpu.rejected_cut);
  EXPECT_EQ(gpu.rejected_downweight, cpu.rejected_downweight);
  EXPECT_EQ(gpu.ndf_sum, cpu.ndf_sum);
  EXPECT_NEAR(gpu.chi2_sum, cpu.chi2_sum, 1e-12 * std::abs(cpu.chi2_sum));
  EXPECT_NEAR(gpu.function_value, cpu.function_value, 1e-12 * std::abs(cpu.function_value));
  EXPECT_EQ(gpu.entries_accepted, cpu.entries_accepted);
  ASSERT_EQ(gpu.rhs.size(), cpu.rhs.size());
  double scale = 0.0;
  for (double v : cpu.rhs) scale = std::max(scale, std::abs(v));
  ASSERT_GT(scale, 0.0);
  for (std::size_t i = 0; i < cpu.rhs.size(); ++i) {
    EXPECT_NEAR(gpu.rhs[i], cpu.rhs[i], 1e-12 * scale) << "b[" << i << "]";
  }
}

class CudaAccumulation : public ::testing::TestWithParam<int> {};

// 0: default launch shapes (both classes); 1: every record one per thread; 2: every record one
// per group.
CudaBackendOptions options_for(int shape) {
  CudaBackendOptions options;
  if (shape == 1) {
    options.thread_class_max_globals = 1 << 30;
    options.max_thread_local_parameters = 1 << 30;
  } else if (shape == 2) {
    options.thread_class_max_globals = -1;
  }
  options.scratch_pool_bytes = std::size_t{64} << 20;
  return options;
}

TEST_P(CudaAccumulation, MatrixAndVectorEqualTheCpuAccumulator) {
  GPEDE_REQUIRE_CUDA_DEVICE();
  const Problem p = make_problem(20240611);
  const PassSetup setup = make_setup(p, true);

  CpuAccumulator cpu(2);
  cpu.begin_pass(setup);
  for (const auto& b : p.batches) cpu.accumulate(b);
  const PassTotals cpu_totals = cpu.end_pass();
  const std::vector<double> cpu_matrix = cpu.matrix();

  auto gpu = gpede::detail::make_cuda_backend(options_for(GetParam()));
  gpu->begin_pass(setup);
  for (const auto& b : p.batches) gpu->accumulate(b);
  const PassTotals gpu_totals = gpu->end_pass();
  const std::vector<double> gpu_matrix = gpede::detail::download_global_matrix(*gpu);

  // The data exercise every kind of outcome.
  EXPECT_GT(cpu_totals.rejected_rank, 0);
  EXPECT_GT(cpu_totals.rejected_huge, 0);
  EXPECT_GT(cpu_totals.accepted, 500);
  expect_same_totals(gpu_totals, cpu_totals);

  const std::int64_t n = p.n_variable;
  ASSERT_EQ(gpu_matrix.size(), static_cast<std::size_t>(n * n));
  ASSERT_EQ(cpu_matrix.size(), gpu_matrix.size());
  std::int64_t nonzero = 0;
  for (std::int64_t j = 0; j < n; ++j) {
    for (std::int64_t i = 0; i < n; ++i) {
      const double scale = std::sqrt(std::abs(cpu_matrix[i + i * n] * cpu_matrix[j + j * n]));
      const double c = cpu_matrix[i + j * n];
      nonzero += c != 0.0 ? 1 : 0;
      ASSERT_NEAR(gpu_matrix[i + j * n], c, 1e-12 * scale) << "C(" << i << ", " << j << ")";
    }
  }
  EXPECT_GT(nonzero, n * 4);
  const std::vector<double> diagonal = gpu->matrix_diagonal();
  for (std::int64_t i = 0; i < n; ++i) EXPECT_EQ(diagonal[i], gpu_matrix[i + i * n]);
}

TEST_P(CudaAccumulation, PassWithCutsAndDownweightingEqualsTheCpuAccumulator) {
  GPEDE_REQUIRE_CUDA_DEVICE();
  const Problem p = make_problem(99);
  PassSetup setup = make_setup(p, false);
  setup.fit.chi2_cut_factor = 2.0;
  setup.fit.downweight_iterations = 4;
  setup.fit.dwfractioncut = 0.1;
  setup.fit.scale_global = 1.5;
  setup.fit.scale_local = 0.8;

  CpuAccumulator cpu(2);
  auto gpu = gpede::detail::make_cuda_backend(options_for(GetParam()));
  for (int pass = 0; pass < 2; ++pass) {  // the second pass reuses the device buffers
    cpu.begin_pass(setup);
    gpu->begin_pass(setup);
    for (const auto& b : p.batches) {
      cpu.accumulate(b);
      gpu->accumulate(b);
    }
    const PassTotals cpu_totals = cpu.end_pass();
    const PassTotals gpu_totals = gpu->end_pass();
    EXPECT_GT(cpu_totals.rejected_cut + cpu_totals.rejected_downweight, 0);
    expect_same_totals(gpu_totals, cpu_totals);
  }
}

std::string shape_name(const ::testing::TestParamInfo<int>& info) {
  switch (info.param) {
    case 1:
      return "ThreadPerRecord";
    case 2:
      return "GroupPerRecord";
    default:
      return "Mixed";
  }
}

INSTANTIATE_TEST_SUITE_P(LaunchShapes, CudaAccumulation, ::testing::Values(0, 1, 2), shape_name);

// Deterministic mode: the bounds of the columns first (as the driver shows them), then the pass;
// twice over the same batches. The two runs agree bit for bit (matrix, b, sums), and with the CPU
// accumulator to the same tolerance as the atomic mode.
TEST(CudaDeterministic, TwoRunsAgreeBitForBitAndWithTheCpu) {
  GPEDE_REQUIRE_CUDA_DEVICE();
  const Problem p = make_problem(4242);
  const PassSetup setup = make_setup(p, true);
  CpuAccumulator cpu(2);
  cpu.begin_pass(setup);
  for (const auto& b : p.batches) cpu.accumulate(b);
  const PassTotals cpu_totals = cpu.end_pass();
  const std::vector<double> cpu_matrix = cpu.matrix();

  CudaBackendOptions options = options_for(0);
  options.deterministic = true;
  std::vector<std::vector<double>> matrices;
  std::vector<PassTotals> totals;
  for (int run = 0; run < 2; ++run) {
    auto gpu = gpede::detail::make_cuda_backend(options);
    ASSERT_TRUE(gpu->wants_bounds());
    gpu->begin_bounds(setup);
    for (const auto& b : p.batches) gpu->bound(b);
    gpu->begin_pass(setup);
    for (const auto& b : p.batches) gpu->accumulate(b);
    totals.push_back(gpu->end_pass());
    matrices.push_back(gpede::detail::download_global_matrix(*gpu));
    // a pass without the matrix needs no bounds, and is deterministic as well
    gpu->begin_pass(make_setup(p, false));
    for (const auto& b : p.batches) gpu->accumulate(b);
    const PassTotals light = gpu->end_pass();
    EXPECT_EQ(light.function_value, totals.back().function_value);
    EXPECT_EQ(light.rhs, totals.back().rhs);
  }
  EXPECT_TRUE(matrices[0] == matrices[1]) << "the matrices of two runs differ";
  EXPECT_EQ(totals[0].rhs, totals[1].rhs);
  EXPECT_EQ(totals[0].function_value, totals[1].function_value);
  EXPECT_EQ(totals[0].chi2_sum, totals[1].chi2_sum);
  expect_same_totals(totals[0], cpu_totals);
  const std::int64_t n = p.n_variable;
  for (std::int64_t j = 0; j < n; ++j) {
    for (std::int64_t i = 0; i < n; ++i) {
      const double scale = std::sqrt(std::abs(cpu_matrix[i + i * n] * cpu_matrix[j + j * n]));
      ASSERT_NEAR(matrices[0][i + j * n], cpu_matrix[i + j * n], 1e-12 * scale) << "C(" << i << ", " << j << ")";
      ASSERT_EQ(matrices[0][i + j * n], matrices[0][j + i * n]) << "not symmetric at (" << i << ", " << j << ")";
    }
  }
}

TEST(CudaBackend, RejectsBadRecordsLikeTheCpu) {
  GPEDE_REQUIRE_CUDA_DEVICE();
  Problem p = make_problem(7);
  RecordBatch bad = p.batches[0];
  bad.global_index[3] = static_cast<std::int32_t>(p.n_all);  // outside the label map
  auto gpu = gpede::detail::make_cuda_backend();
  gpu->begin_pass(make_setup(p, true));
  try {
    gpu->accumulate(bad);
    FAIL() << "a label index outside the map was accepted";
  } catch (const gpede::RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("record 1"), std::string::npos) << e.what();
  }
}

// ---- solution ------------------------------------------------------------------------------------

struct System {
  std::int64_t n = 0;
  std::vector<double> c;  // n x n column-major
  ConstraintSystem constraints;
  std::vector<double> b;
};

// C = B^T B / n + shift I with B n x n standard normal (positive definite for shift > 0, a
// rank-deficient-by-`deficit` matrix for shift = 0 with B of n - deficit rows).
System make_system(std::int64_t n, std::int64_t m, double shift, std::int64_t deficit, std::uint64_t seed) {
  System s;
  s.n = n;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  const std::int64_t rows = n - deficit;
  std::vector<double> b(static_cast<std::size_t>(rows * n));
  for (auto& v : b) v = normal(rng);
  s.c.assign(static_cast<std::size_t>(n * n), 0.0);
  for (std::int64_t j = 0; j < n; ++j) {
    for (std::int64_t i = 0; i <= j; ++i) {
      double sum = 0.0;
      for (std::int64_t k = 0; k < rows; ++k) sum += b[k + i * rows] * b[k + j * rows];
      sum /= static_cast<double>(n);
      if (i == j) sum += shift;
      s.c[i + j * n] = sum;
      s.c[j + i * n] = sum;
    }
  }
  s.constraints.m = m;
  s.constraints.n = n;
  s.constraints.a.resize(static_cast<std::size_t>(m * n));
  for (auto& v : s.constraints.a) v = normal(rng);
  s.constraints.value.assign(static_cast<std::size_t>(m), 0.0);
  s.b.resize(static_cast<std::size_t>(n));
  for (auto& v : s.b) v = normal(rng);
  return s;
}

// The global matrix of a CUDA backend set to s.c through the Backend interface: an empty building
// pass, then add_to_matrix with the lower triangle.
std::unique_ptr<Backend> cuda_backend_with(const System& s) {
  auto gpu = gpede::detail::make_cuda_backend();
  PassSetup setup;
  setup.build_matrix = true;
  setup.n_all = s.n;
  setup.n_variable = s.n;
  setup.parameter_value.assign(static_cast<std::size_t>(s.n), 0.0);
  setup.variable_index.resize(static_cast<std::size_t>(s.n));
  std::iota(setup.variable_index.begin(), setup.variable_index.end(), 0);
  gpu->begin_pass(setup);
  gpu->end_pass();
  std::vector<std::int64_t> rows, cols;
  std::vector<double> values;
  for (std::int64_t j = 0; j < s.n; ++j) {
    for (std::int64_t i = j; i < s.n; ++i) {
      rows.push_back(i);
      cols.push_back(j);
      values.push_back(s.c[i + j * s.n]);
    }
  }
  gpu->add_to_matrix(rows, cols, values);
  return gpu;
}

double max_abs(const std::vector<double>& v) {
  double m = 0.0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

using SolveCase = std::tuple<Method, ConstraintMode, int>;  // method, mode, constraints

class CudaSolution : public ::testing::TestWithParam<SolveCase> {};

TEST_P(CudaSolution, EqualsTheDenseCpuSolver) {
  GPEDE_REQUIRE_CUDA_DEVICE();
  const auto [method, mode, m] = GetParam();
  const System s = make_system(150, m, 0.5, 0, 1234 + static_cast<std::uint64_t>(m));
  FactorOptions options;
  options.method = method;
  options.mode = mode;
  options.want_covariance = method != Method::decomposition;
  options.eve_count = method == Method::diagonalization ? 16 : 0;

  DenseSolver cpu;
  const FactorReport cpu_report = cpu.factorize(s.c, s.n, s.constraints, options);
  auto gpu = cuda_backend_with(s);
  const FactorReport gpu_report = gpu->factorize(s.constraints, options);
  ASSERT_TRUE(cpu_report.ok) << cpu_report.message;
  ASSERT_TRUE(gpu_report.ok) << gpu_report.message;

  // Backward-stable factorisations of a matrix with condition ~10: both solutions are within
  // ~1e-14 of the exact one, so 1e-10 separates rounding from a wrong step by far.
  for (int k = 0; k < 2; ++k) {  // solve twice: the factor must survive a solve
    const std::vector<double> x_cpu = cpu.solve(s.b);
    const std::vector<double> x_gpu = gpu->solve(s.b, {});
    ASSERT_EQ(x_gpu.size(), x_cpu.size());
    const double scale = max_abs(x_cpu);
    ASSERT_GT(scale, 0.0);
    for (std::size_t i = 0; i < x_cpu.size(); ++i) EXPECT_NEAR(x_gpu[i], x_cpu[i], 1e-10 * scale) << "dp[" << i << "]";
  }
  const std::vector<double> cov_cpu = cpu.covariance_diagonal();
  const std::vector<double> cov_gpu = gpu->covariance_diagonal();
  ASSERT_EQ(cov_gpu.size(), cov_cpu.size());
  EXPECT_EQ(cov_gpu.empty(), method == Method::decomposition);
  for (std::size_t i = 0; i < cov_cpu.size(); ++i) {
    EXPECT_NEAR(cov_gpu[i], cov_cpu[i], 1e-10 * std::abs(cov_cpu[i])) << "C^-1(" << i << ", " << i << ")";
  }
  if (method == Method::diagonalization) {
    ASSERT_EQ(gpu_report.eigenvalues.size(), cpu_report.eigenvalues.size());
    const double scale = max_abs(cpu_report.eigenvalues);
    for (std::size_t k = 0; k < cpu_report.eigenvalues.size(); ++k) {
      EXPECT_NEAR(gpu_report.eigenvalues[k], cpu_report.eigenvalues[k], 1e-10 * scale) << "eigenvalue " << k;
    }
    // Eigenvectors are defined up to their sign; the spectrum of this matrix is not degenerate.
    ASSERT_EQ(gpu_report.eigenvectors.size(), cpu_report.eigenvectors.size());
    for (std::size_t t = 0; t < cpu_report.eigenvectors.size(); ++t) {
      const auto& [k_cpu, v_cpu] = cpu_report.eigenvectors[t];
      const auto& [k_gpu, v_gpu] = gpu_report.eigenvectors[t];
      EXPECT_EQ(k_gpu, k_cpu);
      const std::size_t len = std::min(v_cpu.size(), v_gpu.size());
      double dot = 0.0;
      for (std::size_t i = 0; i < len; ++i) dot += v_cpu[i] * v_gpu[i];
      const double sign = dot < 0.0 ? -1.0 : 1.0;
      for (std::size_t i = 0; i < len; ++i) EXPECT_NEAR(sign * v_gpu[i], v_cpu[i], 1e-8) << "eigenvector " << k_cpu;
    }
  }
}

std::string solve_case_name(const ::testing::TestParamInfo<SolveCase>& info) {
  const Method method = std::get<0>(info.param);
  const char* m = method == Method::decomposition ? "Decomposition"
                  : method == Method::inversion   ? "Inversion"
                                                  : "Diagonalization";
  const char* mode = std::get<1>(info.param) == ConstraintMode::elimination ? "Elimination" : "Multipliers";
  return std::string(m) + mode + std::to_string(std::get<2>(info.param)) + "Constraints";
}

INSTANTIATE_TEST_SUITE_P(
    MethodsAndModes, CudaSolution,
    ::testing::Combine(::testing::Values(Method::decomposition, Method::inversion, Method::diagonalization),
                       ::testing::Values(ConstraintMode::elimination, ConstraintMode::multipliers),
                       ::testing::Values(0, 3)),
    solve_case_name);

TEST(CudaSolutionFailure, NotPositiveDefiniteIsAResultLikeOnTheCpu) {
  GPEDE_REQUIRE_CUDA_DEVICE();
  // Two exact null directions of C and no constraint to remove them.
  const System s = make_system(80, 0, 0.0, 2, 77);
  for (Method method : {Method::decomposition, Method::inversion}) {
    FactorOptions options;
    options.method = method;
    options.want_covariance = method != Method::decomposition;
    DenseSolver cpu;
    const FactorReport cpu_report = cpu.factorize(s.c, s.n, s.constraints, options);
    auto gpu = cuda_backend_with(s);
    const FactorReport gpu_report = gpu->factorize(s.constraints, options);
    EXPECT_FALSE(cpu_report.ok);
    EXPECT_FALSE(gpu_report.ok);
    EXPECT_NE(gpu_report.message.find("not positive definite"), std::string::npos) << gpu_report.message;
    EXPECT_FALSE(gpu_report.weak_indices.empty());
    EXPECT_THROW(gpu->solve(s.b, {}), gpede::RuntimeError);
  }
}

TEST(CudaSolutionFailure, DependentConstraintsAreReported) {
  GPEDE_REQUIRE_CUDA_DEVICE();
  System s = make_system(40, 3, 0.5, 0, 5);
  for (std::int64_t j = 0; j < s.n; ++j) s.constraints.a[2 * s.n + j] = 2.0 * s.constraints.a[j];  // #3 = 2 x #1
  FactorOptions options;
  options.method = Method::inversion;
  auto gpu = cuda_backend_with(s);
  const FactorReport report = gpu->factorize(s.constraints, options);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.dependent_constraints, std::vector<std::int64_t>{2});
  EXPECT_NE(report.message.find("#3"), std::string::npos) << report.message;
}

TEST(CudaDevice, QueryExplainsAMissingDevice) {
  const gpede::detail::CudaDeviceInfo info = gpede::detail::query_cuda_device();
  if (info.present) {
    EXPECT_FALSE(info.name.empty());
    EXPECT_GT(info.total_bytes, 0u);
    EXPECT_LE(info.free_bytes, info.total_bytes);
    EXPECT_GE(info.compute_major, 6);
  } else {
    EXPECT_FALSE(info.reason.empty());
    EXPECT_THROW(gpede::detail::make_cuda_backend(), gpede::RuntimeError);
  }
}

}  // namespace
