// Packed (RFP) storage and its solution: the layout against LAPACK's own conversion of a full
// matrix (dtrttf), the triangular products against long-double products, and the constrained
// solutions and covariances of decomposition and inversion (elimination and multipliers, odd and
// even n, singular C made definite by the constraints, an infeasible start) against a long-double
// solve of the bordered system; the failures (not definite on the constraint surface, dependent
// constraints, non-finite elements) as reports.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "gpede/detail/backend.hpp"
#include "gpede/detail/packed_solution.hpp"
#include "gpede/error.hpp"
#include "gpede/kernels/local_fit.hpp"
#include "test_support.hpp"

extern "C" void dtrttf_(const char* transr, const char* uplo, const int* n, const double* a, const int* lda, double* arf,
                        int* info, std::size_t, std::size_t);

namespace {

using gpede::ConstraintMode;
using gpede::Method;
using gpede::detail::ConstraintSystem;
using gpede::detail::FactorOptions;
using gpede::detail::FactorReport;
using gpede::detail::PackedMatrix;
using gpede::detail::PackedSolution;
using gpede::detail::RfpLayout;

using Dense = std::vector<long double>;  // column-major n x n

PackedMatrix pack(const std::vector<double>& full, std::int64_t n) {
  PackedMatrix p(n);
  for (std::int64_t j = 0; j < n; ++j) {
    for (std::int64_t i = j; i < n; ++i) p.add_element(i, j, full[i + j * n]);
  }
  return p;
}

TEST(RfpLayout, MatchesLapacksConversionOfAFullMatrix) {
  for (int n = 1; n <= 12; ++n) {
    std::vector<double> full(static_cast<std::size_t>(n * n), 0.0);
    for (int j = 0; j < n; ++j) {
      for (int i = j; i < n; ++i) full[i + j * n] = 1000.0 * i + j + 1.0;  // every element distinct
    }
    std::vector<double> rfp(RfpLayout(n).size(), -1.0);
    int info = 0;
    dtrttf_("N", "L", &n, full.data(), &n, rfp.data(), &info, 1, 1);
    ASSERT_EQ(info, 0);
    const PackedMatrix ours = pack(full, n);
    EXPECT_EQ(ours.values(), rfp) << "n = " << n;
    // Both triangles address the same element; the diagonal comes back.
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(ours.diagonal()[i], full[i + i * n]);
      for (int j = 0; j < i; ++j) EXPECT_EQ(ours.at(j, i), full[i + j * n]);
    }
  }
}

TEST(RfpLayout, TriangularProductsMatchLongDouble) {
  std::mt19937 rng(4);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int n : {1, 2, 7, 10, 33}) {
    std::vector<double> l(static_cast<std::size_t>(n * n), 0.0);
    for (int j = 0; j < n; ++j) {
      for (int i = j; i < n; ++i) l[i + j * n] = u(rng);
    }
    const PackedMatrix p = pack(l, n);
    std::vector<double> x(static_cast<std::size_t>(n));
    for (double& v : x) v = u(rng);
    for (bool transpose : {false, true}) {
      std::vector<double> y = x;
      gpede::detail::rfp_lower_multiply(p.layout(), p.values().data(), transpose, y.data());
      for (int i = 0; i < n; ++i) {
        long double want = 0.0L;
        for (int k = 0; k < n; ++k) {
          const double lik = transpose ? (k >= i ? l[k + i * n] : 0.0) : (i >= k ? l[i + k * n] : 0.0);
          want += static_cast<long double>(lik) * x[k];
        }
        EXPECT_NEAR(y[i], static_cast<double>(want), 1e-14 * n) << "n " << n << " transpose " << transpose;
      }
    }
  }
}

// Records' contributions added by two threads at once into one shared target (the locked path of
// the accumulation beyond private copies): no add is lost. Integer values make every order of the
// sums exact, so the result must equal a sequential sum exactly.
TEST(PackedMatrix, ThreadsAddingIntoOneTargetLoseNothing) {
  for (int n : {37, 64}) {
    std::mt19937 rng(static_cast<unsigned>(n));
    struct Contribution {
      std::vector<std::int32_t> index;
      std::vector<double> matrix;
    };
    std::vector<Contribution> records(400);
    for (Contribution& r : records) {
      for (std::int32_t i = 0; i < n; ++i) {
        if (rng() % 3 == 0) r.index.push_back(i);
      }
      const std::size_t k = r.index.size();
      r.matrix.resize(k * k);
      for (double& v : r.matrix) v = static_cast<double>(static_cast<int>(rng() % 7) - 3);
    }
    auto view = [](const Contribution& r) {
      gpede::kernels::GlobalContribution c;
      c.ok = true;
      c.size = static_cast<std::int32_t>(r.index.size());
      c.index = r.index.data();
      c.matrix = r.matrix.data();
      return c;
    };
    PackedMatrix sequential(n), shared(n);
    for (const Contribution& r : records) sequential.add(view(r), sequential.values().data(), false);
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        for (int repeat = 0; repeat < 20; ++repeat) {
          for (std::size_t k = static_cast<std::size_t>(t); k < records.size(); k += 2) {
            shared.add(view(records[k]), shared.values().data(), true);
          }
        }
      });
    }
    for (std::thread& t : threads) t.join();
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t i = j; i < n; ++i) {
        ASSERT_EQ(shared.at(i, j), 20.0 * sequential.at(i, j)) << "n " << n << " (" << i << ", " << j << ")";
      }
    }
    // The sequential sum itself against a dense sum of the lower triangles.
    std::vector<double> dense(static_cast<std::size_t>(n * n), 0.0);
    for (const Contribution& r : records) {
      const std::size_t k = r.index.size();
      for (std::size_t b = 0; b < k; ++b) {
        for (std::size_t a = b; a < k; ++a) dense[r.index[a] + static_cast<std::size_t>(r.index[b]) * n] += r.matrix[a + b * k];
      }
    }
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t i = j; i < n; ++i) EXPECT_EQ(sequential.at(i, j), dense[i + j * n]);
    }
  }
}

// A problem like an alignment: C = J^T J from "tracks" that leave `weak` directions (global shifts
// of groups of parameters) unmeasured; the constraints fix those directions and a few more.
struct Problem {
  std::int64_t n = 0;
  std::vector<double> c;  // n x n
  ConstraintSystem constraints;
  std::vector<double> b, residual;
};

Problem make_problem(int n, int m, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Problem p;
  p.n = n;
  p.c.assign(static_cast<std::size_t>(n * n), 0.0);
  // Rows of J orthogonal to the all-ones vector over the first half and over the second half: the
  // two "shifts" are weak modes of C.
  const int half = n / 2;
  for (int r = 0; r < 3 * n; ++r) {
    std::vector<double> row(static_cast<std::size_t>(n));
    for (double& v : row) v = u(rng) * (1.0 + 9.0 * (r % 3 == 0));
    for (int part = 0; part < 2; ++part) {
      const int lo = part == 0 ? 0 : half, hi = part == 0 ? half : n;
      double mean = 0.0;
      for (int i = lo; i < hi; ++i) mean += row[i];
      mean /= hi - lo;
      for (int i = lo; i < hi; ++i) row[i] -= mean;
    }
    for (int j = 0; j < n; ++j) {
      for (int i = 0; i < n; ++i) p.c[i + j * n] += row[i] * row[j];
    }
  }
  p.constraints.m = m;
  p.constraints.n = n;
  p.constraints.a.assign(static_cast<std::size_t>(m * n), 0.0);
  p.constraints.value.assign(static_cast<std::size_t>(m), 0.0);
  for (int k = 0; k < m; ++k) {
    for (int j = 0; j < n; ++j) {
      // The first two constraints are the shifts (they remove the weak modes); the others random.
      const bool in = k == 0 ? j < half : k == 1 ? j >= half : (rng() % 3 == 0);
      p.constraints.a[k * n + j] = k < 2 ? (in ? 1.0 : 0.0) : (in ? u(rng) : 0.0);
    }
  }
  p.b.resize(static_cast<std::size_t>(n));
  for (double& v : p.b) v = u(rng);
  p.residual.resize(static_cast<std::size_t>(m));
  for (double& v : p.residual) v = 0.1 * u(rng);
  return p;
}

// The bordered matrix [[C, A^T], [A, 0]] in long double (symmetric: row- and column-major alike).
Dense bordered(const Problem& p) {
  const std::size_t n = static_cast<std::size_t>(p.n), m = static_cast<std::size_t>(p.constraints.m), s = n + m;
  Dense k(s * s, 0.0L);
  for (std::size_t j = 0; j < n; ++j) {
    for (std::size_t i = 0; i < n; ++i) k[i + j * s] = p.c[i + j * n];
  }
  for (std::size_t r = 0; r < m; ++r) {
    for (std::size_t j = 0; j < n; ++j) {
      k[(n + r) + j * s] = p.constraints.a[r * n + j];
      k[j + (n + r) * s] = p.constraints.a[r * n + j];
    }
  }
  return k;
}

FactorOptions options_for(Method method, ConstraintMode mode) {
  FactorOptions o;
  o.method = method;
  o.mode = mode;
  o.want_covariance = method == Method::inversion;
  return o;
}

TEST(PackedSolution, SolvesTheConstrainedSystemAsALongDoubleBorderedSolve) {
  for (int n : {24, 25}) {
    for (int m : {0, 2, 5}) {
      // Without constraints C must be definite: the weak modes then get a pre-sigma-like term.
      Problem p = make_problem(n, m, 10u + static_cast<unsigned>(n + m));
      if (m == 0) {
        for (int i = 0; i < n; ++i) p.c[i + i * n] += 0.5;
      }
      const Dense k = bordered(p);
      const std::size_t s = static_cast<std::size_t>(n + m);
      std::vector<long double> rhs(s, 0.0L);
      for (int i = 0; i < n; ++i) rhs[i] = p.b[i];
      for (int r = 0; r < m; ++r) rhs[n + r] = p.residual[r];
      const std::vector<long double> want = gpede::test::solve_long_double(k, rhs);
      // Covariance: the diagonal of the top-left block of the bordered inverse.
      std::vector<long double> cov(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i) {
        std::vector<long double> e(s, 0.0L);
        e[i] = 1.0L;
        cov[i] = gpede::test::solve_long_double(k, e)[i];
      }
      for (Method method : {Method::decomposition, Method::inversion}) {
        for (ConstraintMode mode : {ConstraintMode::elimination, ConstraintMode::multipliers}) {
          PackedSolution solution;
          const FactorReport report = solution.factorize(pack(p.c, n), p.constraints, options_for(method, mode));
          ASSERT_TRUE(report.ok) << report.message;
          const std::vector<double> dp = solution.solve(p.b, p.residual);
          const std::vector<double> dp0 = solution.solve(p.b);
          std::vector<long double> rhs0 = rhs;
          for (int r = 0; r < m; ++r) rhs0[n + r] = 0.0L;
          const std::vector<long double> want0 = gpede::test::solve_long_double(k, rhs0);
          double scale = 0.0;
          for (int i = 0; i < n; ++i) scale = std::max(scale, std::abs(static_cast<double>(want[i])));
          for (int i = 0; i < n; ++i) {
            EXPECT_NEAR(dp[i], static_cast<double>(want[i]), 1e-10 * scale) << "n " << n << " m " << m << " i " << i;
            EXPECT_NEAR(dp0[i], static_cast<double>(want0[i]), 1e-10 * scale) << "n " << n << " m " << m << " i " << i;
          }
          const std::vector<double> c = solution.covariance_diagonal();
          if (method == Method::inversion) {
            ASSERT_EQ(c.size(), static_cast<std::size_t>(n));
            for (int i = 0; i < n; ++i) {
              EXPECT_NEAR(c[i] / static_cast<double>(cov[i]), 1.0, 1e-10) << "n " << n << " m " << m << " i " << i;
            }
          } else {
            EXPECT_TRUE(c.empty());
          }
        }
      }
    }
  }
}

TEST(PackedSolution, ReportsAMatrixNotDefiniteOnTheConstraintSurface) {
  // Only the first constraint: the second half's shift stays a null direction of C.
  Problem p = make_problem(20, 2, 3);
  p.constraints.m = 1;
  p.constraints.a.resize(20);
  p.constraints.value.resize(1);
  PackedSolution solution;
  const FactorReport report =
      solution.factorize(pack(p.c, 20), p.constraints, options_for(Method::inversion, ConstraintMode::elimination));
  EXPECT_FALSE(report.ok);
  EXPECT_FALSE(report.solvable);
  EXPECT_FALSE(report.weak_indices.empty());
  for (std::int64_t i : report.weak_indices) EXPECT_GE(i, 10) << "the weak mode lies in the second half";
  EXPECT_NE(report.message.find("not positive definite on the constraint surface"), std::string::npos) << report.message;
  EXPECT_THROW(solution.solve(p.b), gpede::RuntimeError);
}

TEST(PackedSolution, ReportsDependentConstraintsAndNonFiniteElements) {
  Problem p = make_problem(16, 3, 5);
  for (int j = 0; j < 16; ++j) p.constraints.a[2 * 16 + j] = 2.0 * p.constraints.a[j] - p.constraints.a[16 + j];
  PackedSolution solution;
  FactorReport report =
      solution.factorize(pack(p.c, 16), p.constraints, options_for(Method::decomposition, ConstraintMode::multipliers));
  EXPECT_FALSE(report.solvable);
  EXPECT_EQ(report.dependent_constraints, std::vector<std::int64_t>{2}) << report.message;

  Problem q = make_problem(16, 2, 6);
  PackedMatrix matrix = pack(q.c, 16);
  matrix.add_element(9, 4, std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(matrix.nonfinite_rows(), (std::vector<std::int64_t>{4, 9}));
  report = solution.factorize(std::move(matrix), q.constraints, options_for(Method::inversion, ConstraintMode::elimination));
  EXPECT_FALSE(report.solvable);
  EXPECT_EQ(report.weak_indices, (std::vector<std::int64_t>{4, 9}));
}

TEST(PackedSolution, RefusesMethodsWithoutPackedStorage) {
  Problem p = make_problem(10, 2, 7);
  PackedSolution solution;
  EXPECT_THROW(solution.factorize(pack(p.c, 10), p.constraints,
                                  options_for(Method::diagonalization, ConstraintMode::elimination)),
               gpede::RuntimeError);
}

}  // namespace
