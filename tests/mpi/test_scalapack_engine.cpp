// The ScaLAPACK engine against the CPU engine (LAPACK in host memory), operation by operation, on
// the same random matrices: whole matrices and blocks that do not start on the 64 x 64 block grid
// (as the reduced matrix after m eliminated constraints does), on a 1 x N or 2 x 2 process grid.
// Run under mpirun (CTest: -np 3 and -np 4); every process checks what it gets back.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <random>

#include "gpede/detail/dense_solution.hpp"
#include "gpede/detail/linalg.hpp"
#include "mpi_processes.hpp"
#include "scalapack_engine.hpp"

namespace {

using gpede::detail::linalg::Engine;
using gpede::detail::linalg::Matrix;
using gpede::detail::linalg::Side;
using gpede::detail::linalg::View;

std::vector<double> random_values(std::int64_t count, unsigned seed) {
  std::mt19937_64 rng(seed);  // the same on every process
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> v(static_cast<std::size_t>(count));
  for (double& x : v) x = u(rng);
  return v;
}

/// A symmetric positive definite n x n matrix (column-major).
std::vector<double> spd(std::int64_t n, unsigned seed) {
  const std::vector<double> g = random_values(n * n, seed);
  std::vector<double> a(static_cast<std::size_t>(n * n), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (std::int64_t k = 0; k < n; ++k) s += g[i + k * n] * g[j + k * n];
      a[i + j * n] = s + (i == j ? n : 0.0);
    }
  }
  return a;
}

double largest_difference(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double scale = 0.0, worst = 0.0;
  for (std::size_t k = 0; k < a.size() && k < b.size(); ++k) {
    scale = std::max(scale, std::fabs(a[k]));
    worst = std::max(worst, std::fabs(a[k] - b[k]));
  }
  return scale > 0.0 ? worst / scale : worst;
}

class ScalapackEngine : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world = gpede::cli::mpi_world().release();
    engine = gpede::detail::linalg::make_scalapack_engine(*world).release();
  }
  static void TearDownTestSuite() {
    delete engine;
    engine = nullptr;
    delete world;
    world = nullptr;
  }
  static gpede::ProcessGroup* world;
  static gpede::detail::linalg::DistributedEngine* engine;
  std::unique_ptr<Engine> cpu = gpede::detail::linalg::make_cpu_engine();

  /// The same host values in a matrix of each engine, with the block of interest at (r0, r0).
  struct Pair {
    Matrix d, c;
    View dv, cv;
  };
  Pair both(const std::vector<double>& values, std::int64_t rows, std::int64_t cols, std::int64_t r0, std::int64_t c0) {
    Pair p;
    p.d = engine->allocate(rows + r0, cols + c0);
    p.c = cpu->allocate(rows + r0, cols + c0);
    p.dv = p.d.view().block(r0, c0, rows, cols);
    p.cv = p.c.view().block(r0, c0, rows, cols);
    engine->upload(values, p.dv);
    cpu->upload(values, p.cv);
    return p;
  }
};
gpede::detail::linalg::DistributedEngine* ScalapackEngine::engine = nullptr;
gpede::ProcessGroup* ScalapackEngine::world = nullptr;

TEST_F(ScalapackEngine, ElementwiseOperationsAndDownloadsAgree) {
  for (std::int64_t r0 : {0, 37}) {
    const std::int64_t n = 150;
    const auto values = random_values(n * n, 3);
    Pair p = both(values, n, n, r0, r0);
    EXPECT_EQ(engine->download(p.dv), values);
    EXPECT_EQ(engine->diagonal(p.dv), cpu->diagonal(p.cv));
    EXPECT_EQ(engine->column_sum_squares(p.dv).size(), static_cast<std::size_t>(n));
    EXPECT_LT(largest_difference(engine->column_sum_squares(p.dv), cpu->column_sum_squares(p.cv)), 1e-14);
    EXPECT_LT(largest_difference(engine->lower_column_sum_squares(p.dv), cpu->lower_column_sum_squares(p.cv)), 1e-14);
    const auto w = random_values(n, 4);
    EXPECT_LT(largest_difference(engine->weighted_row_sum_squares(p.dv, w), cpu->weighted_row_sum_squares(p.cv, w)),
              1e-14);
    const auto rs = random_values(n, 5), cs = random_values(n, 6);
    engine->scale(p.dv, rs, cs);
    cpu->scale(p.cv, rs, cs);
    EXPECT_EQ(engine->download(p.dv), cpu->download(p.cv));
    engine->set_diagonal(p.dv, w);
    cpu->set_diagonal(p.cv, w);
    Matrix dl = engine->allocate(n, n), cl = cpu->allocate(n, n);
    engine->copy_lower(p.dv, dl.view());
    cpu->copy_lower(p.cv, cl.view());
    EXPECT_EQ(engine->download(dl.view()), cpu->download(cl.view()));
    engine->zero_strict_upper(p.dv);
    cpu->zero_strict_upper(p.cv);
    EXPECT_EQ(engine->download(p.dv), cpu->download(p.cv));
    // non-finite rows: one element anywhere marks its row and its column
    auto bad = values;
    bad[5 + 120 * n] = std::nan("");
    engine->upload(bad, p.dv);
    EXPECT_EQ(engine->nonfinite_rows(p.dv), (std::vector<std::int64_t>{5, 120}));
    engine->fill(p.dv, 2.5);
    EXPECT_EQ(engine->download(p.dv), std::vector<double>(static_cast<std::size_t>(n * n), 2.5));
  }
}

TEST_F(ScalapackEngine, FactorisationsAgreeWithLapackOnAlignedAndShiftedBlocks) {
  for (std::int64_t r0 : {0, 37}) {
    SCOPED_TRACE("block at row and column " + std::to_string(r0));
    const std::int64_t n = 150;
    const auto a = spd(n, 11);
    Pair p = both(a, n, n, r0, r0);
    ASSERT_EQ(engine->cholesky(p.dv), cpu->cholesky(p.cv));
    EXPECT_LT(largest_difference(engine->download(p.dv), cpu->download(p.cv)), 1e-13);
    const auto bvals = random_values(n * 3, 12);
    Pair b = both(bvals, n, 3, r0, 1);
    engine->cholesky_solve(p.dv, b.dv);
    cpu->cholesky_solve(p.cv, b.cv);
    EXPECT_LT(largest_difference(engine->download(b.dv), cpu->download(b.cv)), 1e-12);
    Pair x = both(random_values(n, 13), n, 1, r0, 0);
    engine->lower_triangular_multiply(p.dv, true, x.dv);
    cpu->lower_triangular_multiply(p.cv, true, x.cv);
    EXPECT_LT(largest_difference(engine->download(x.dv), cpu->download(x.cv)), 1e-13);
    engine->lower_triangular_multiply(p.dv, false, x.dv);
    cpu->lower_triangular_multiply(p.cv, false, x.cv);
    EXPECT_LT(largest_difference(engine->download(x.dv), cpu->download(x.cv)), 1e-13);
    engine->triangular_inverse(p.dv);
    cpu->triangular_inverse(p.cv);
    EXPECT_LT(largest_difference(engine->download(p.dv), cpu->download(p.cv)), 1e-12);
    // an upper triangle solve on the transposed inverse
    Pair u = both(a, n, n, r0, r0);
    engine->upper_triangular_solve(u.dv, x.dv);
    cpu->upper_triangular_solve(u.cv, x.cv);
    EXPECT_LT(largest_difference(engine->download(x.dv), cpu->download(x.cv)), 1e-12);
  }
}

TEST_F(ScalapackEngine, CholeskyReportsTheFirstBadPivotAsLapack) {
  const std::int64_t n = 100;
  auto a = spd(n, 21);
  a[70 + 70 * n] = -1.0;  // not positive definite from pivot 71 at the latest
  Pair p = both(a, n, n, 0, 0);
  const std::int64_t lapack = cpu->cholesky(p.cv);
  EXPECT_GT(lapack, 0);
  EXPECT_EQ(engine->cholesky(p.dv), lapack);
}

TEST_F(ScalapackEngine, HouseholderQrAndItsProductsAgree) {
  // A^T of m = 5 constraints over n = 150 parameters, then Q^T C Q from both sides, and Q b.
  const std::int64_t n = 150, m = 5;
  const auto at = random_values(n * m, 31);
  Pair q = both(at, n, m, 0, 0);
  Matrix dtau = engine->allocate(m, 1), ctau = cpu->allocate(m, 1);
  engine->householder_qr(q.dv, dtau.view());
  cpu->householder_qr(q.cv, ctau.view());
  const auto dq = engine->download(q.dv), cq = cpu->download(q.cv);
  // R above the diagonal and the reflectors below it, as LAPACK stores them (the dense solution
  // reads both on the host).
  EXPECT_LT(largest_difference(dq, cq), 1e-12);
  EXPECT_LT(largest_difference(engine->download(dtau.view()), cpu->download(ctau.view())), 1e-12);
  Pair c = both(spd(n, 32), n, n, 0, 0);
  for (const bool transpose : {true, false}) {
    engine->apply_householder(Side::left, transpose, q.dv, dtau.view(), m, c.dv);
    cpu->apply_householder(Side::left, transpose, q.cv, ctau.view(), m, c.cv);
    engine->apply_householder(Side::right, !transpose, q.dv, dtau.view(), m, c.dv);
    cpu->apply_householder(Side::right, !transpose, q.cv, ctau.view(), m, c.cv);
    EXPECT_LT(largest_difference(engine->download(c.dv), cpu->download(c.cv)), 1e-12);
  }
  Pair b = both(random_values(n, 33), n, 1, 0, 0);
  engine->apply_householder(Side::left, true, q.dv, dtau.view(), m, b.dv);
  cpu->apply_householder(Side::left, true, q.cv, ctau.view(), m, b.cv);
  EXPECT_LT(largest_difference(engine->download(b.dv), cpu->download(b.cv)), 1e-12);
}

TEST_F(ScalapackEngine, EigenDecompositionAgrees) {
  for (std::int64_t r0 : {0, 37}) {
    const std::int64_t n = 130;
    auto a = spd(n, 41);
    Pair p = both(a, n, n, r0, r0);
    const auto dw = engine->eigen(p.dv);
    const auto cw = cpu->eigen(p.cv);
    EXPECT_LT(largest_difference(dw, cw), 1e-12);
    // eigenvectors up to sign: |<v_d, v_c>| = 1
    const auto dv = engine->download(p.dv), cv = cpu->download(p.cv);
    for (std::int64_t j = 0; j < n; ++j) {
      double dot = 0.0;
      for (std::int64_t i = 0; i < n; ++i) dot += dv[i + j * n] * cv[i + j * n];
      EXPECT_NEAR(std::fabs(dot), 1.0, 1e-9) << "eigenvector " << j;
    }
  }
}

TEST_F(ScalapackEngine, GemvAgreesOnBlocks) {
  const std::int64_t n = 150;
  const auto a = random_values(n * n, 51);
  for (std::int64_t r0 : {0, 37}) {
    Pair p = both(a, n - r0, n - r0, r0, r0);
    Pair x = both(random_values(n - r0, 52), n - r0, 1, r0, 0);
    Pair y = both(random_values(n - r0, 53), n - r0, 1, 0, 0);
    for (const bool transpose : {false, true}) {
      engine->gemv(transpose, 0.5, p.dv, x.dv, 2.0, y.dv);
      cpu->gemv(transpose, 0.5, p.cv, x.cv, 2.0, y.cv);
      EXPECT_LT(largest_difference(engine->download(y.dv), cpu->download(y.cv)), 1e-13);
    }
  }
}

TEST_F(ScalapackEngine, GatheredFallbacksGiveLapacksAnswers) {
  // Bunch-Kaufman, pivoted Cholesky and pede's sweeps run on the gathered block.
  const std::int64_t n = 90;
  auto a = spd(n, 61);
  for (std::int64_t k = 0; k < n; ++k) a[k + k * n] -= 40.0;  // indefinite
  Pair p = both(a, n, n, 5, 5);
  auto dp = engine->ldlt(p.dv);
  auto cp = cpu->ldlt(p.cv);
  EXPECT_EQ(dp.host, cp.host);
  Pair b = both(random_values(n, 62), n, 1, 5, 0);
  engine->ldlt_solve(p.dv, dp, b.dv);
  cpu->ldlt_solve(p.cv, cp, b.cv);
  EXPECT_EQ(engine->download(b.dv), cpu->download(b.cv));
  EXPECT_EQ(engine->ldlt_inverse_diagonal(p.dv, dp), cpu->ldlt_inverse_diagonal(p.cv, cp));
  Pair s = both(spd(n, 63), n, n, 0, 0);
  std::int64_t drank = 0, crank = 0;
  EXPECT_EQ(engine->pivoted_cholesky(s.dv, 1e-10, drank), cpu->pivoted_cholesky(s.cv, 1e-10, crank));
  EXPECT_EQ(drank, crank);
  EXPECT_EQ(engine->download(s.dv), cpu->download(s.cv));
}

TEST_F(ScalapackEngine, TheSumOfEveryProcesssFullMatrixIsTheirSum) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const std::int64_t n = 200;
  // process k holds (k + 1) x the base matrix: the sum is size (size + 1) / 2 x base, exactly
  const auto base = random_values(n * n, 71);
  std::vector<double> mine(base);
  for (double& x : mine) x *= rank + 1;
  Matrix d = engine->allocate(n, n);
  engine->sum_full_matrices(mine.data(), n, d.view());
  const auto got = engine->download(d.view());
  const double factor = size * (size + 1) / 2.0;
  double worst = 0.0;
  for (std::size_t k = 0; k < base.size(); ++k) worst = std::max(worst, std::fabs(got[k] - factor * base[k]));
  EXPECT_LT(worst, 1e-13 * factor);
  // add_elements: both triangles, the diagonal once
  engine->add_elements(d.view(), {3, 150}, {150, 150}, {1.0, 2.0});
  const auto after = engine->download(d.view());
  EXPECT_DOUBLE_EQ(after[3 + 150 * n] - got[3 + 150 * n], 1.0);
  EXPECT_DOUBLE_EQ(after[150 + 3 * n] - got[150 + 3 * n], 1.0);
  EXPECT_DOUBLE_EQ(after[150 + 150 * n] - got[150 + 150 * n], 2.0);
}

TEST_F(ScalapackEngine, TheDenseSolutionGivesTheCpusAnswers) {
  // The whole algorithm over each engine: constraints by elimination and by multipliers,
  // inversion's step and covariance.
  const std::int64_t n = 140, m = 3;
  const auto c = spd(n, 81);
  gpede::detail::ConstraintSystem constraints;
  constraints.m = m, constraints.n = n;
  constraints.a = random_values(m * n, 82);
  constraints.value.assign(static_cast<std::size_t>(m), 0.0);
  const auto b = random_values(n, 83);
  for (const auto method : {gpede::Method::inversion, gpede::Method::diagonalization, gpede::Method::minres})
  for (const auto mode : {gpede::ConstraintMode::elimination, gpede::ConstraintMode::multipliers}) {
    SCOPED_TRACE(std::string(gpede::method_name(method)) + (mode == gpede::ConstraintMode::elimination ? ", elimination" : ", multipliers"));
    gpede::detail::FactorOptions options;
    options.method = method;
    options.mode = mode;
    options.minres_tolerance = 1e-12;
    gpede::detail::DenseSolution on_cpu(*cpu), distributed(*engine);
    const auto cr = on_cpu.factorize(gpede::detail::linalg::upload_matrix(*cpu, c, n, n), n, constraints, options);
    const auto dr = distributed.factorize(gpede::detail::linalg::upload_matrix(*engine, c, n, n), n, constraints, options);
    ASSERT_TRUE(cr.ok) << cr.message;
    ASSERT_TRUE(dr.ok) << dr.message;
    EXPECT_LT(largest_difference(distributed.solve(b), on_cpu.solve(b)), 1e-10);
    EXPECT_EQ(distributed.last_solve_info().iterations, on_cpu.last_solve_info().iterations);
    EXPECT_LT(largest_difference(distributed.covariance_diagonal(), on_cpu.covariance_diagonal()), 1e-10);
    distributed.release();
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {  // one report; every process still checks and sets the exit status
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int status = RUN_ALL_TESTS();
  int worst = 0;
  MPI_Allreduce(&status, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
