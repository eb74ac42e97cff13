// The dense solution on every engine of the linear-algebra layer that was built, against the CPU
// engine as the reference: every method and constraint mode, with and without a constraint
// residual; the reports of a matrix that is not positive definite; pede's sweeps of a singular one.
// Three engines: the CPU engine (LAPACK), the CUDA engine (skipped without a device), and a stub
// that only counts the calls it passes on to the CPU engine: a new backend plugs in by implementing
// the layer alone.
#include <gtest/gtest.h>

#include <algorithm>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gpede/detail/cuda_device.hpp"
#include "gpede/detail/dense_solution.hpp"
#include "gpede/detail/dense_solver.hpp"
#include "gpede/detail/linalg.hpp"
#include "gpede/error.hpp"

namespace {

using gpede::ConstraintMode;
using gpede::Method;
using gpede::detail::ConstraintSystem;
using gpede::detail::DenseSolution;
using gpede::detail::DenseSolver;
using gpede::detail::FactorOptions;
using gpede::detail::FactorReport;
namespace linalg = gpede::detail::linalg;
using linalg::Matrix;
using linalg::View;

// ---- an engine that only counts: every operation goes to the CPU engine -------------------------
class CountingEngine final : public linalg::Engine {
 public:
  std::map<std::string, int> calls;

  std::string name() const override { return "counting"; }
  std::vector<std::int64_t> allocations;  // elements of every matrix allocated
  Matrix allocate(std::int64_t r, std::int64_t c) override {
    allocations.push_back(r * c);
    return count("allocate"), m_cpu->allocate(r, c);
  }
  void fill(View a, double v) override { count("fill"), m_cpu->fill(a, v); }
  void copy(View f, View t) override { count("copy"), m_cpu->copy(f, t); }
  void upload(const std::vector<double>& h, View t) override { count("upload"), m_cpu->upload(h, t); }
  std::vector<double> download(View a) override { return count("download"), m_cpu->download(a); }
  std::vector<double> diagonal(View a) override { return count("diagonal"), m_cpu->diagonal(a); }
  void set_diagonal(View a, const std::vector<double>& v) override { count("set_diagonal"), m_cpu->set_diagonal(a, v); }
  std::vector<std::int64_t> nonfinite_rows(View a) override { return count("nonfinite_rows"), m_cpu->nonfinite_rows(a); }
  void scale(View a, const std::vector<double>& r, const std::vector<double>& c) override {
    count("scale"), m_cpu->scale(a, r, c);
  }
  void copy_lower(View f, View t) override { count("copy_lower"), m_cpu->copy_lower(f, t); }
  std::vector<double> column_sum_squares(View a) override { return count("column_sum_squares"), m_cpu->column_sum_squares(a); }
  std::vector<double> lower_column_sum_squares(View a) override {
    return count("lower_column_sum_squares"), m_cpu->lower_column_sum_squares(a);
  }
  void zero_strict_upper(View a) override { count("zero_strict_upper"), m_cpu->zero_strict_upper(a); }
  void lower_triangular_multiply(View l, bool t, View x) override {
    count("lower_triangular_multiply"), m_cpu->lower_triangular_multiply(l, t, x);
  }
  std::vector<double> weighted_row_sum_squares(View a, const std::vector<double>& w) override {
    return count("weighted_row_sum_squares"), m_cpu->weighted_row_sum_squares(a, w);
  }
  void householder_qr(View a, View tau) override { count("householder_qr"), m_cpu->householder_qr(a, tau); }
  void apply_householder(linalg::Side s, bool t, View q, View tau, std::int64_t k, View c) override {
    count("apply_householder"), m_cpu->apply_householder(s, t, q, tau, k, c);
  }
  std::int64_t cholesky(View a) override { return count("cholesky"), m_cpu->cholesky(a); }
  void cholesky_solve(View l, View b) override { count("cholesky_solve"), m_cpu->cholesky_solve(l, b); }
  void triangular_inverse(View l) override { count("triangular_inverse"), m_cpu->triangular_inverse(l); }
  void upper_triangular_solve(View u, View x) override { count("upper_triangular_solve"), m_cpu->upper_triangular_solve(u, x); }
  std::vector<std::int64_t> pivoted_cholesky(View a, double tol, std::int64_t& rank) override {
    return count("pivoted_cholesky"), m_cpu->pivoted_cholesky(a, tol, rank);
  }
  std::vector<double> eigen(View a) override { return count("eigen"), m_cpu->eigen(a); }
  linalg::Pivots ldlt(View a) override { return count("ldlt"), m_cpu->ldlt(a); }
  void ldlt_solve(View a, const linalg::Pivots& p, View b) override { count("ldlt_solve"), m_cpu->ldlt_solve(a, p, b); }
  std::vector<double> ldlt_inverse_diagonal(View a, const linalg::Pivots& p) override {
    return count("ldlt_inverse_diagonal"), m_cpu->ldlt_inverse_diagonal(a, p);
  }
  void gemv(bool t, double al, View a, View x, double be, View y) override { count("gemv"), m_cpu->gemv(t, al, a, x, be, y); }
  gpede::detail::SweepOutcome sweep(View a, double limit, gpede::detail::SweepOrder o) override {
    return count("sweep"), m_cpu->sweep(a, limit, o);
  }

 private:
  void count(const char* what) { ++calls[what]; }
  std::unique_ptr<linalg::Engine> m_cpu = linalg::make_cpu_engine();
};

enum class EngineKind { cpu, counting, cuda };

std::string engine_name(EngineKind k) {
  return k == EngineKind::cpu ? "Cpu" : k == EngineKind::counting ? "Counting" : "Cuda";
}

// ---- problems ------------------------------------------------------------------------------------
struct Problem {
  std::int64_t n = 0;
  std::vector<double> c, b, residual;
  ConstraintSystem cons;
};

Problem make_problem(std::int64_t n, std::int64_t m, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Problem p;
  p.n = n;
  p.c.assign(static_cast<std::size_t>(n * n), 0.0);
  for (int t = 0; t < 2 * n; ++t) {
    std::vector<double> g(static_cast<std::size_t>(n));
    for (double& x : g) x = u(rng);
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t i = 0; i < n; ++i) p.c[i + j * n] += g[i] * g[j];
    }
  }
  p.b.resize(static_cast<std::size_t>(n));
  for (double& x : p.b) x = u(rng);
  p.cons.n = n;
  p.cons.m = m;
  p.cons.a.resize(static_cast<std::size_t>(m * n));
  for (double& x : p.cons.a) x = u(rng);
  p.cons.value.assign(static_cast<std::size_t>(m), 0.0);
  p.residual.resize(static_cast<std::size_t>(m));
  for (double& x : p.residual) x = 0.1 * u(rng);
  return p;
}

FactorOptions options_of(Method method, ConstraintMode mode, bool singular = false) {
  FactorOptions o;
  o.method = method;
  o.mode = mode;
  o.want_covariance = method != Method::decomposition;
  o.eve_count = method == Method::diagonalization ? 16 : 0;
  o.solve_singular = singular;
  return o;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double rel, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0.0;
  for (double x : want) scale = std::max(scale, std::abs(x));
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], rel * std::max(scale, 1e-300)) << what << " [" << i << "]";
  }
}

void expect_same_report(const FactorReport& got, const FactorReport& want) {
  EXPECT_EQ(got.ok, want.ok) << got.message << " | " << want.message;
  EXPECT_EQ(got.solvable, want.solvable);
  EXPECT_EQ(got.rank_defect, want.rank_defect);
  EXPECT_EQ(got.weak_indices, want.weak_indices);
  EXPECT_EQ(got.dependent_constraints, want.dependent_constraints);
  expect_close(got.eigenvalues, want.eigenvalues, 1e-11, "eigenvalues");
  ASSERT_EQ(got.eigenvectors.size(), want.eigenvectors.size());
  for (std::size_t k = 0; k < got.eigenvectors.size(); ++k) {
    EXPECT_EQ(got.eigenvectors[k].first, want.eigenvectors[k].first);
    // An eigenvector's sign is free: compare |v . w|.
    double dot = 0.0, nv = 0.0, nw = 0.0;
    for (std::size_t i = 0; i < got.eigenvectors[k].second.size(); ++i) {
      dot += got.eigenvectors[k].second[i] * want.eigenvectors[k].second[i];
      nv += got.eigenvectors[k].second[i] * got.eigenvectors[k].second[i];
      nw += want.eigenvectors[k].second[i] * want.eigenvectors[k].second[i];
    }
    EXPECT_NEAR(std::abs(dot) / std::sqrt(nv * nw), 1.0, 1e-8) << "eigenvector " << k;
  }
}

class EngineSolution : public testing::TestWithParam<std::tuple<EngineKind, Method, ConstraintMode, int>> {
 protected:
  void SetUp() override {
    const EngineKind kind = std::get<0>(GetParam());
    if (kind == EngineKind::cuda) {
      const gpede::detail::CudaDeviceInfo device = gpede::detail::query_cuda_device();
      if (!device.present) GTEST_SKIP() << "no CUDA device: " << device.reason;
      engine = linalg::make_cuda_engine();
    } else if (kind == EngineKind::counting) {
      engine = std::make_unique<CountingEngine>();
    } else {
      engine = linalg::make_cpu_engine();
    }
  }
  Method method() const { return std::get<1>(GetParam()); }
  ConstraintMode mode() const { return std::get<2>(GetParam()); }
  std::int64_t constraints() const { return std::get<3>(GetParam()); }

  std::unique_ptr<linalg::Engine> engine;
};

TEST_P(EngineSolution, EqualsTheCpuReference) {
  const Problem p = make_problem(50, constraints(), 31);
  const FactorOptions options = options_of(method(), mode());
  DenseSolver reference;
  const FactorReport want = reference.factorize(p.c, p.n, p.cons, options);
  DenseSolution solution(*engine);
  const FactorReport got = solution.factorize(linalg::upload_matrix(*engine, p.c, p.n, p.n), p.n, p.cons, options);
  ASSERT_TRUE(want.ok) << want.message;
  expect_same_report(got, want);
  expect_close(solution.solve(p.b), reference.solve(p.b), 1e-10, "step");
  if (constraints() > 0) {
    expect_close(solution.solve(p.b, p.residual), reference.solve(p.b, p.residual), 1e-10, "step with a residual");
  }
  expect_close(solution.covariance_diagonal(), reference.covariance_diagonal(), 1e-10, "covariance diagonal");

  if (auto* counting = dynamic_cast<CountingEngine*>(engine.get())) {
    const bool bordered = mode() == ConstraintMode::multipliers && constraints() > 0;
    EXPECT_EQ(counting->calls["householder_qr"], constraints() > 0 ? 1 : 0);
    if (method() == Method::diagonalization) {
      EXPECT_EQ(counting->calls["eigen"], 1);
    } else if (bordered) {
      EXPECT_EQ(counting->calls["ldlt"], 1);
      EXPECT_EQ(counting->calls["ldlt_solve"], constraints() > 0 ? 2 : 1);
    } else {
      EXPECT_EQ(counting->calls["cholesky"], 1);
      EXPECT_EQ(counting->calls["triangular_inverse"], method() == Method::inversion ? 1 : 0);
      // Decomposition and inversion work in the one n x n matrix (the uploaded one): the inverse
      // of the factor is formed in place.
      const auto large = std::count_if(counting->allocations.begin(), counting->allocations.end(),
                                       [&](std::int64_t elements) { return elements >= p.n * p.n; });
      EXPECT_EQ(large, 1) << "matrices of n x n elements or more";
    }
  }
}

TEST_P(EngineSolution, NotPositiveDefiniteGivesTheReportOfTheCpu) {
  // A parameter without data (zero row and column) outside the constraints.
  Problem p = make_problem(40, constraints(), 32);
  const std::int64_t k = 13;
  for (std::int64_t j = 0; j < constraints(); ++j) p.cons.a[j * p.n + k] = 0.0;
  for (std::int64_t i = 0; i < p.n; ++i) p.c[k + i * p.n] = p.c[i + k * p.n] = 0.0;
  for (bool singular : {false, true}) {
    const FactorOptions options = options_of(method(), mode(), singular);
    DenseSolver reference;
    const FactorReport want = reference.factorize(p.c, p.n, p.cons, options);
    DenseSolution solution(*engine);
    const FactorReport got = solution.factorize(linalg::upload_matrix(*engine, p.c, p.n, p.n), p.n, p.cons, options);
    EXPECT_FALSE(want.ok);
    expect_same_report(got, want);
    if (want.solvable) {
      expect_close(solution.solve(p.b), reference.solve(p.b), 1e-9, "step without the weak parameter");
      expect_close(solution.covariance_diagonal(), reference.covariance_diagonal(), 1e-9, "covariance");
    } else {
      EXPECT_THROW(solution.solve(p.b), gpede::RuntimeError);
    }
  }
}

std::string case_name(const testing::TestParamInfo<EngineSolution::ParamType>& info) {
  const Method m = std::get<1>(info.param);
  const char* method = m == Method::decomposition   ? "Decomposition"
                       : m == Method::inversion     ? "Inversion"
                       : m == Method::minres        ? "Minres"
                                                    : "Diagonalization";
  const char* mode = std::get<2>(info.param) == ConstraintMode::elimination ? "Elimination" : "Multipliers";
  return engine_name(std::get<0>(info.param)) + method + mode + std::to_string(std::get<3>(info.param));
}

INSTANTIATE_TEST_SUITE_P(Engines, EngineSolution,
                         testing::Combine(testing::Values(EngineKind::cpu, EngineKind::counting, EngineKind::cuda),
                                          testing::Values(Method::decomposition, Method::inversion,
                                                          Method::diagonalization),
                                          testing::Values(ConstraintMode::elimination, ConstraintMode::multipliers),
                                          testing::Values(0, 3)),
                         case_name);

// MINRES over each engine's matrix-vector products: the same iterates as over the CPU engine (the
// same preconditioner, the same Krylov space), to the rounding of the products.
class EngineMinres : public EngineSolution {};

TEST_P(EngineMinres, EqualsTheCpuReference) {
  const Problem p = make_problem(50, constraints(), 33);
  for (int bandwidth : {0, 5}) {  // the diagonal and a band preconditioner (the band read in blocks)
    SCOPED_TRACE("bandwidth " + std::to_string(bandwidth));
    FactorOptions options = options_of(Method::minres, mode());
    options.want_covariance = false;
    options.minres_tolerance = 1e-12;
    options.minres_bandwidth = bandwidth;
    DenseSolver reference;
    ASSERT_TRUE(reference.factorize(p.c, p.n, p.cons, options).ok);
    DenseSolution solution(*engine);
    ASSERT_TRUE(solution.factorize(linalg::upload_matrix(*engine, p.c, p.n, p.n), p.n, p.cons, options).ok);
    expect_close(solution.solve(p.b), reference.solve(p.b), 1e-9, "step");
    EXPECT_EQ(solution.last_solve_info().iterations, reference.last_solve_info().iterations);
    if (constraints() > 0) {
      expect_close(solution.solve(p.b, p.residual), reference.solve(p.b, p.residual), 1e-9, "step with a residual");
    }
    EXPECT_TRUE(solution.covariance_diagonal().empty());
  }
  if (auto* counting = dynamic_cast<CountingEngine*>(engine.get())) {
    // No factorisation of the matrix: products with it, and the constraints' reflectors.
    EXPECT_EQ(counting->calls["cholesky"] + counting->calls["ldlt"] + counting->calls["eigen"], 0);
    EXPECT_GT(counting->calls["gemv"], 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, EngineMinres,
                         testing::Combine(testing::Values(EngineKind::cpu, EngineKind::counting, EngineKind::cuda),
                                          testing::Values(Method::minres),
                                          testing::Values(ConstraintMode::elimination, ConstraintMode::multipliers),
                                          testing::Values(0, 3)),
                         case_name);

TEST(EngineLayer, CudaEngineWithoutADeviceIsAClearError) {
  const gpede::detail::CudaDeviceInfo device = gpede::detail::query_cuda_device();
  if (device.present) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_THROW(linalg::make_cuda_engine(), gpede::RuntimeError);
}

}  // namespace
