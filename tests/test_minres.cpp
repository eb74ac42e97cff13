// MINRES against references computed here in long double: the exact solution of the (bordered)
// system by Gaussian elimination with partial pivoting, and, for the iterates, the minimiser of the
// residual over the Krylov space (an orthonormal basis by Gram-Schmidt, then the normal equations
// of the small least-squares problem). Then the dense solution's MINRES method (elimination,
// multipliers, no constraints; with and without its preconditioner) against the exact solution of
// the constrained problem; the band preconditioner's Cholesky factor against a long-double solve of
// the band matrix, and the band preconditioner of the full width, which is exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gpede/detail/band_cholesky.hpp"
#include "gpede/detail/dense_solver.hpp"
#include "gpede/detail/minres.hpp"
#include "test_support.hpp"

namespace {

using gpede::ConstraintMode;
using gpede::Method;
using gpede::detail::ConstraintSystem;
using gpede::detail::DenseSolver;
using gpede::detail::FactorOptions;
using gpede::detail::MinresOutcome;
using gpede::detail::MinresSettings;
using gpede::detail::MinresStop;
using gpede::detail::VectorMap;
using LD = long double;
using MatrixLD = std::vector<std::vector<LD>>;

// v made orthogonal to the (orthonormal) basis, Gram-Schmidt twice, and normalised.
std::vector<LD> orthonormalised(std::vector<LD> v, const MatrixLD& basis) {
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& q : basis) {
      LD d = 0;
      for (std::size_t i = 0; i < v.size(); ++i) d += q[i] * v[i];
      for (std::size_t i = 0; i < v.size(); ++i) v[i] -= d * q[i];
    }
  }
  LD norm = 0;
  for (LD x : v) norm += x * x;
  norm = std::sqrt(norm);
  for (LD& x : v) x /= norm;
  return v;
}

// A random orthonormal basis of n vectors.
MatrixLD random_basis(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<double> g(0.0, 1.0);
  MatrixLD q;
  for (std::size_t k = 0; k < n; ++k) {
    std::vector<LD> v(n);
    for (auto& x : v) x = g(rng);
    q.push_back(orthonormalised(std::move(v), q));
  }
  return q;
}

// The symmetric matrix (row-major n x n) with the given eigenvalues and eigenvectors q.
std::vector<double> matrix_of(const std::vector<double>& eigenvalues, const MatrixLD& q) {
  const std::size_t n = eigenvalues.size();
  std::vector<double> a(n * n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      LD s = 0;
      for (std::size_t k = 0; k < n; ++k) s += q[k][i] * eigenvalues[k] * q[k][j];
      a[i * n + j] = static_cast<double>(s);
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < i; ++j) a[j * n + i] = a[i * n + j];  // exactly symmetric
  }
  return a;
}

// A symmetric matrix (row-major n x n) with the given eigenvalues in a random orthonormal basis.
std::vector<double> matrix_with_spectrum(const std::vector<double>& eigenvalues, std::mt19937& rng) {
  return matrix_of(eigenvalues, random_basis(eigenvalues.size(), rng));
}

// The pseudo-inverse solution A^+ b = sum over the non-zero eigenvalues of q_k (q_k . b) / lambda_k.
std::vector<LD> pseudoinverse_solution(const std::vector<double>& eigenvalues, const MatrixLD& q,
                                       const std::vector<double>& b) {
  const std::size_t n = b.size();
  std::vector<LD> x(n, 0);
  for (std::size_t k = 0; k < n; ++k) {
    if (eigenvalues[k] == 0.0) continue;
    LD d = 0;
    for (std::size_t i = 0; i < n; ++i) d += q[k][i] * b[i];
    for (std::size_t i = 0; i < n; ++i) x[i] += q[k][i] * d / eigenvalues[k];
  }
  return x;
}

VectorMap dense_map(const std::vector<double>& a, std::size_t n) {
  return [&a, n](const std::vector<double>& x, std::vector<double>& y) {
    for (std::size_t i = 0; i < n; ++i) {
      double s = 0.0;
      for (std::size_t j = 0; j < n; ++j) s += a[i * n + j] * x[j];
      y[i] = s;
    }
  };
}

VectorMap diagonal_inverse_map(const std::vector<double>& d) {
  return [&d](const std::vector<double>& x, std::vector<double>& y) {
    for (std::size_t i = 0; i < d.size(); ++i) y[i] = x[i] / d[i];
  };
}

// The minimiser of (b - A x)^T W (b - A x) over span{u, (P A) u, ..., (P A)^(k-1) u}, u = P b,
// W = P = diag(p) (p = 1: the plain residual norm).
std::vector<LD> krylov_minimiser(const std::vector<double>& a, const std::vector<double>& b,
                                 const std::vector<double>& p, std::size_t k) {
  const std::size_t n = b.size();
  MatrixLD basis;
  std::vector<LD> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<LD>(p[i]) * b[i];
  for (std::size_t j = 0; j < k; ++j) {
    const std::vector<LD> w = orthonormalised(v, basis);
    basis.push_back(w);
    std::vector<LD> next(n);  // P A w
    for (std::size_t i = 0; i < n; ++i) {
      LD s = 0;
      for (std::size_t l = 0; l < n; ++l) s += static_cast<LD>(a[i * n + l]) * w[l];
      next[i] = static_cast<LD>(p[i]) * s;
    }
    v = next;
  }
  // A K (n x k), then the normal equations (A K)^T W (A K) y = (A K)^T W b.
  MatrixLD ak(k, std::vector<LD>(n));
  for (std::size_t j = 0; j < k; ++j) {
    for (std::size_t i = 0; i < n; ++i) {
      LD s = 0;
      for (std::size_t l = 0; l < n; ++l) s += static_cast<LD>(a[i * n + l]) * basis[j][l];
      ak[j][i] = s;
    }
  }
  std::vector<LD> normal(k * k), rhs(k);
  for (std::size_t r = 0; r < k; ++r) {
    for (std::size_t c = 0; c < k; ++c) {
      LD s = 0;
      for (std::size_t i = 0; i < n; ++i) s += ak[r][i] * p[i] * ak[c][i];
      normal[r * k + c] = s;
    }
    LD s = 0;
    for (std::size_t i = 0; i < n; ++i) s += ak[r][i] * p[i] * b[i];
    rhs[r] = s;
  }
  const std::vector<LD> y = gpede::test::solve_long_double(normal, rhs);
  std::vector<LD> x(n, 0);
  for (std::size_t j = 0; j < k; ++j) {
    for (std::size_t i = 0; i < n; ++i) x[i] += y[j] * basis[j][i];
  }
  return x;
}

double relative_difference(const std::vector<double>& got, const std::vector<LD>& want) {
  LD diff = 0, norm = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<LD>(got[i]) - want[i]));
    norm = std::max(norm, std::fabs(want[i]));
  }
  return static_cast<double>(diff / norm);
}

std::vector<double> random_vector(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

std::vector<LD> exact_solution(const std::vector<double>& a, const std::vector<double>& b) {
  return gpede::test::solve_long_double(std::vector<LD>(a.begin(), a.end()), std::vector<LD>(b.begin(), b.end()));
}

TEST(Minres, ConvergesToTheExactSolution) {
  std::mt19937 rng(3);
  const std::size_t n = 50;
  std::vector<double> spectrum(n);
  for (std::size_t k = 0; k < n; ++k) spectrum[k] = std::pow(10.0, 3.0 * k / (n - 1));  // cond 1e3
  const std::vector<double> a = matrix_with_spectrum(spectrum, rng);
  const std::vector<double> b = random_vector(n, rng);
  const std::vector<LD> want = exact_solution(a, b);
  MinresSettings settings;
  settings.rtol = 1e-13;
  std::vector<double> d(n);
  for (std::size_t i = 0; i < n; ++i) d[i] = a[i * n + i];
  for (bool precondition : {false, true}) {
    const MinresOutcome out = minres(dense_map(a, n), precondition ? diagonal_inverse_map(d) : VectorMap{}, b, settings);
    EXPECT_TRUE(out.stop == MinresStop::converged || out.stop == MinresStop::converged_eps) << static_cast<int>(out.stop);
    EXPECT_LT(out.iterations, 200);
    EXPECT_LT(relative_difference(out.x, want), 1e-9) << "preconditioned " << precondition;
  }
}

TEST(Minres, SolvesAnIndefiniteSystem) {
  std::mt19937 rng(4);
  const std::size_t n = 40;
  std::vector<double> spectrum(n);
  for (std::size_t k = 0; k < n; ++k) spectrum[k] = (k % 3 == 0 ? -1.0 : 1.0) * (1.0 + k);
  const std::vector<double> a = matrix_with_spectrum(spectrum, rng);
  const std::vector<double> b = random_vector(n, rng);
  MinresSettings settings;
  settings.rtol = 1e-13;
  const MinresOutcome out = minres(dense_map(a, n), {}, b, settings);
  EXPECT_EQ(out.stop, MinresStop::converged);
  EXPECT_LT(relative_difference(out.x, exact_solution(a, b)), 1e-9);
  EXPECT_GT(out.a_cond, 1.0);
}

TEST(Minres, EveryIterateMinimisesTheResidualOverItsKrylovSpace) {
  std::mt19937 rng(5);
  const std::size_t n = 30;
  std::vector<double> spectrum(n);
  for (std::size_t k = 0; k < n; ++k) spectrum[k] = (k == 4 ? -2.0 : 0.5 + k);  // one negative eigenvalue
  const std::vector<double> a = matrix_with_spectrum(spectrum, rng);
  const std::vector<double> b = random_vector(n, rng);
  std::vector<double> d(n), inverse_d(n), ones(n, 1.0);
  for (std::size_t i = 0; i < n; ++i) {
    d[i] = 1.0 + 0.1 * static_cast<double>(i);  // a positive definite preconditioner M = diag(d)
    inverse_d[i] = 1.0 / d[i];
  }
  for (std::size_t k = 1; k <= 8; ++k) {
    MinresSettings settings;
    settings.rtol = 1e-15;
    settings.iteration_limit = static_cast<std::int64_t>(k);
    const MinresOutcome plain = minres(dense_map(a, n), {}, b, settings);
    EXPECT_EQ(plain.stop, MinresStop::iteration_limit);
    EXPECT_EQ(plain.iterations, static_cast<std::int64_t>(k));
    EXPECT_LT(relative_difference(plain.x, krylov_minimiser(a, b, ones, k)), 1e-10) << "k = " << k;
    const MinresOutcome pre = minres(dense_map(a, n), diagonal_inverse_map(d), b, settings);
    EXPECT_LT(relative_difference(pre.x, krylov_minimiser(a, b, inverse_d, k)), 1e-10) << "preconditioned, k = " << k;
  }
}

TEST(Minres, SpecialRightHandSides) {
  const std::size_t n = 6;
  std::vector<double> a(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i) a[i * n + i] = 1.0 + static_cast<double>(i);
  {
    const MinresOutcome out = minres(dense_map(a, n), {}, std::vector<double>(n, 0.0), MinresSettings{});
    EXPECT_EQ(out.stop, MinresStop::zero_rhs);
    EXPECT_EQ(out.iterations, 0);
    EXPECT_EQ(out.x, std::vector<double>(n, 0.0));
  }
  {
    std::vector<double> b(n, 0.0);
    b[2] = 6.0;  // an eigenvector: exact after one step
    const MinresOutcome out = minres(dense_map(a, n), {}, b, MinresSettings{});
    EXPECT_EQ(out.stop, MinresStop::special_rhs);
    EXPECT_EQ(out.iterations, 1);
    EXPECT_NEAR(out.x[2], 2.0, 1e-15);
  }
  {
    const VectorMap negative = [](const std::vector<double>& x, std::vector<double>& y) {
      for (std::size_t i = 0; i < x.size(); ++i) y[i] = -x[i];
    };
    const MinresOutcome out = minres(dense_map(a, n), negative, std::vector<double>(n, 1.0), MinresSettings{});
    EXPECT_EQ(out.stop, MinresStop::preconditioner_indefinite);
  }
}

// ---- MINRES-QLP -----------------------------------------------------------------------------------

using gpede::detail::MinresQlpStop;

MinresSettings qlp_settings(double transition, double rtol, std::int64_t limit = 2000) {
  MinresSettings settings;
  settings.qlp = true;
  settings.transition_condition = transition;
  settings.rtol = rtol;
  settings.iteration_limit = limit;
  return settings;
}

bool solved(MinresQlpStop stop) {
  return stop == MinresQlpStop::solved_rtol || stop == MinresQlpStop::solved_eps ||
         stop == MinresQlpStop::least_squares_rtol || stop == MinresQlpStop::least_squares_eps;
}

// Transition conditions: the QLP phase from the start, MINRES's updates throughout (the cap of
// 1e7 is not reached), and a switch after a few iterations.
constexpr double kTransitions[] = {1.0, 1.0e7, 3.0};

TEST(MinresQlp, EveryIterateMinimisesTheResidualInEitherPhase) {
  // In exact arithmetic MINRES-QLP's iterates are MINRES's while T_k is regular: the minimisers of
  // the residual over the Krylov spaces, before, at and after the transition.
  std::mt19937 rng(5);
  const std::size_t n = 30;
  std::vector<double> spectrum(n);
  for (std::size_t k = 0; k < n; ++k) spectrum[k] = (k == 4 ? -2.0 : 0.5 + k);
  const std::vector<double> a = matrix_with_spectrum(spectrum, rng);
  const std::vector<double> b = random_vector(n, rng);
  std::vector<double> d(n), inverse_d(n), ones(n, 1.0);
  for (std::size_t i = 0; i < n; ++i) {
    d[i] = 1.0 + 0.1 * static_cast<double>(i);
    inverse_d[i] = 1.0 / d[i];
  }
  bool switched_midway = false;
  for (double transition : kTransitions) {
    for (std::size_t k = 1; k <= 8; ++k) {
      const MinresSettings settings = qlp_settings(transition, 1e-15, static_cast<std::int64_t>(k));
      const MinresOutcome plain = minres(dense_map(a, n), {}, b, settings);
      EXPECT_EQ(plain.qlp_stop, MinresQlpStop::iteration_limit);
      EXPECT_EQ(plain.iterations, static_cast<std::int64_t>(k));
      EXPECT_LT(relative_difference(plain.x, krylov_minimiser(a, b, ones, k)), 1e-10)
          << "transition " << transition << ", k = " << k << ", QLP iterations " << plain.qlp_iterations;
      if (transition == 1.0) EXPECT_EQ(plain.qlp_iterations, static_cast<std::int64_t>(k));
      if (transition == 1.0e7) EXPECT_EQ(plain.qlp_iterations, 0);
      if (transition == 3.0 && plain.qlp_iterations > 0 && plain.qlp_iterations < plain.iterations - 1) {
        switched_midway = true;
      }
      const MinresOutcome pre = minres(dense_map(a, n), diagonal_inverse_map(d), b, settings);
      EXPECT_LT(relative_difference(pre.x, krylov_minimiser(a, b, inverse_d, k)), 1e-10)
          << "preconditioned, transition " << transition << ", k = " << k;
    }
  }
  EXPECT_TRUE(switched_midway) << "the transition at cond 3 was not met after the second iteration";
}

TEST(MinresQlp, ConvergesToTheExactSolution) {
  std::mt19937 rng(3);
  const std::size_t n = 50;
  std::vector<double> spectrum(n);
  for (std::size_t k = 0; k < n; ++k) spectrum[k] = std::pow(10.0, 3.0 * k / (n - 1));
  const std::vector<double> a = matrix_with_spectrum(spectrum, rng);
  const std::vector<double> b = random_vector(n, rng);
  const std::vector<LD> want = exact_solution(a, b);
  std::vector<double> d(n);
  for (std::size_t i = 0; i < n; ++i) d[i] = a[i * n + i];
  for (double transition : kTransitions) {
    for (bool precondition : {false, true}) {
      const MinresOutcome out = minres(dense_map(a, n), precondition ? diagonal_inverse_map(d) : VectorMap{}, b,
                                       qlp_settings(transition, 1e-13));
      EXPECT_TRUE(solved(out.qlp_stop)) << static_cast<int>(out.qlp_stop);
      EXPECT_LT(out.iterations, 200);
      EXPECT_LT(relative_difference(out.x, want), 1e-9)
          << "transition " << transition << ", preconditioned " << precondition;
    }
  }
}

TEST(MinresQlp, SingularSystemsGiveTheMinimumLengthSolution) {
  // Three zero eigenvalues among positive and negative ones. Compatible (b = A z): the solution of
  // least length, A^+ b. Incompatible (b with a null-space part): MINRES's iterates grow along the
  // null space without bound; MINRES-QLP's reach the least-squares solution of least length, A^+ b
  // again, to the accuracy that the rounding of the Lanczos vectors leaves, and stop where the
  // next step would take ||x|| past its limit (the default, 1e7).
  std::mt19937 rng(8);
  const std::size_t n = 40;
  std::vector<double> spectrum(n);
  for (std::size_t k = 0; k < n; ++k) spectrum[k] = (k % 13 == 5) ? 0.0 : (k % 4 == 0 ? -1.0 : 1.0) * (1.0 + 0.5 * k);
  const MatrixLD q = random_basis(n, rng);
  const std::vector<double> a = matrix_of(spectrum, q);
  const std::vector<double> z = random_vector(n, rng);
  std::vector<double> compatible(n);
  dense_map(a, n)(z, compatible);
  const std::vector<double> incompatible = random_vector(n, rng);
  for (const bool is_compatible : {true, false}) {
    const std::vector<double>& b = is_compatible ? compatible : incompatible;
    const std::vector<LD> want = pseudoinverse_solution(spectrum, q, b);
    for (double transition : kTransitions) {
      const MinresOutcome out = minres(dense_map(a, n), {}, b, qlp_settings(transition, 1e-12));
      const double difference = relative_difference(out.x, want);
      if (is_compatible) {
        EXPECT_TRUE(solved(out.qlp_stop)) << static_cast<int>(out.qlp_stop);
        EXPECT_LT(difference, 1e-10) << "compatible, transition " << transition;
      } else {
        EXPECT_TRUE(out.qlp_stop == MinresQlpStop::x_norm_limit || out.qlp_stop == MinresQlpStop::least_squares_rtol ||
                    out.qlp_stop == MinresQlpStop::least_squares_eps)
            << static_cast<int>(out.qlp_stop);
        EXPECT_GT(out.qlp_iterations, 0);
        EXPECT_LT(difference, 1e-4) << "incompatible, transition " << transition << ", iterations " << out.iterations
                                    << ", QLP iterations " << out.qlp_iterations;
      }
    }
    if (!is_compatible) {
      MinresSettings plain;
      plain.rtol = 1e-12;
      const MinresOutcome minres_out = minres(dense_map(a, n), {}, b, plain);
      EXPECT_GT(relative_difference(minres_out.x, want), 1.0) << "MINRES found the pseudo-inverse solution itself";
    }
  }
}

// ---- the dense solution's MINRES method ------------------------------------------------------------

struct Constrained {
  std::size_t n = 0, m = 0;
  std::vector<double> c;  // n x n (symmetric: row- and column-major alike)
  ConstraintSystem cons;
  std::vector<double> b, residual;
};

Constrained random_constrained(std::size_t n, std::size_t m, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<double> spectrum(n);
  for (std::size_t k = 0; k < n; ++k) spectrum[k] = std::pow(10.0, 2.0 * k / (n - 1)) * (1.0 + 0.01 * k);
  Constrained p;
  p.n = n;
  p.m = m;
  p.c = matrix_with_spectrum(spectrum, rng);
  p.cons.m = static_cast<std::int64_t>(m);
  p.cons.n = static_cast<std::int64_t>(n);
  p.cons.a.assign(m * n, 0.0);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (std::size_t k = 0; k < m; ++k) {  // sparse rows over overlapping ranges, in no particular order
    const std::size_t first = (7 * (m - k)) % (n / 2), last = std::min(n - 1, first + n / 3);
    for (std::size_t j = first; j <= last; j += 1 + k % 3) p.cons.a[k * n + j] = u(rng);
  }
  p.cons.value.assign(m, 0.0);
  p.b = random_vector(n, rng);
  p.residual = random_vector(m, rng);
  return p;
}

// [[C, A^T], [A, 0]] [dp; mu] = [b; residual] in long double.
std::vector<LD> constrained_solution(const Constrained& p) {
  const std::size_t n = p.n, m = p.m, nb = n + m;
  std::vector<LD> a(nb * nb, 0), rhs(nb, 0);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) a[i * nb + j] = p.c[i * n + j];
    rhs[i] = p.b[i];
  }
  for (std::size_t k = 0; k < m; ++k) {
    for (std::size_t j = 0; j < n; ++j) {
      a[(n + k) * nb + j] = p.cons.a[k * n + j];
      a[j * nb + n + k] = p.cons.a[k * n + j];
    }
    rhs[n + k] = p.residual[k];
  }
  std::vector<LD> x = gpede::test::solve_long_double(a, rhs);
  x.resize(n);
  return x;
}

// The dense solver's MINRES options: no covariance, the given mode, tolerance and bandwidth.
FactorOptions minres_options(ConstraintMode mode, double tolerance, int bandwidth) {
  FactorOptions options;
  options.method = Method::minres;
  options.mode = mode;
  options.want_covariance = false;
  options.minres_tolerance = tolerance;
  options.minres_bandwidth = bandwidth;
  return options;
}

TEST(DenseSolverMinres, MatchesTheExactConstrainedSolution) {
  for (const auto& [n, m] : {std::pair<std::size_t, std::size_t>{60, 0}, {60, 4}, {45, 7}}) {
    const Constrained p = random_constrained(n, m, static_cast<unsigned>(11 * n + m));
    const std::vector<LD> want = constrained_solution(p);
    for (ConstraintMode mode : {ConstraintMode::elimination, ConstraintMode::multipliers}) {
      for (int bandwidth : {0, -1, 1, 4, 9}) {
        for (double qlp_transition : {0.0, 1.0, 20.0}) {  // 0: MINRES; MINRES-QLP from the start or later
          FactorOptions options = minres_options(mode, 1e-14, bandwidth);
          options.minres_qlp = qlp_transition > 0.0;
          options.minres_transition_condition = qlp_transition;
          DenseSolver solver;
          const auto report = solver.factorize(p.c, static_cast<std::int64_t>(n), p.cons, options);
          ASSERT_TRUE(report.ok && report.solvable) << report.message;
          const std::vector<double> dp = solver.solve(p.b, p.residual);
          const auto info = solver.last_solve_info();
          EXPECT_TRUE(info.iterative);
          EXPECT_EQ(info.qlp, options.minres_qlp);
          EXPECT_GT(info.iterations, 0);
          if (options.minres_qlp) {
            EXPECT_TRUE(info.stop >= 4 && info.stop <= 7) << info.stop << " " << info.stop_text;
            if (qlp_transition == 1.0) EXPECT_EQ(info.qlp_iterations, info.iterations + (info.stop == 6 || info.stop == 7));
          } else {
            EXPECT_LE(info.stop, 2) << info.stop_text;
          }
          EXPECT_LT(relative_difference(dp, want), 1e-8)
              << "n " << n << " m " << m << " multipliers " << (mode == ConstraintMode::multipliers)
              << " bandwidth " << bandwidth << " QLP transition " << qlp_transition << " iterations " << info.iterations;
          EXPECT_TRUE(solver.covariance_diagonal().empty());
        }
      }
    }
  }
}

TEST(DenseSolverMinres, PreconditionerLowersTheIterationsOnABadlyScaledMatrix) {
  // Rows and columns scaled over four orders of magnitude: the diagonal preconditioner undoes it.
  Constrained p = random_constrained(80, 0, 77);
  std::vector<double> s(p.n);
  for (std::size_t i = 0; i < p.n; ++i) s[i] = std::pow(10.0, 2.0 * std::sin(static_cast<double>(i)));
  for (std::size_t i = 0; i < p.n; ++i) {
    for (std::size_t j = 0; j < p.n; ++j) p.c[i * p.n + j] *= s[i] * s[j];
  }
  std::int64_t iterations[2] = {0, 0};
  for (int bandwidth : {0, -1}) {
    FactorOptions options;
    options.method = Method::minres;
    options.minres_tolerance = 1e-10;
    options.minres_bandwidth = bandwidth;
    DenseSolver solver;
    ASSERT_TRUE(solver.factorize(p.c, static_cast<std::int64_t>(p.n), p.cons, options).ok);
    solver.solve(p.b, p.residual);
    iterations[bandwidth == 0 ? 0 : 1] = solver.last_solve_info().iterations;
  }
  EXPECT_LT(2 * iterations[0], iterations[1]) << "with " << iterations[0] << ", without " << iterations[1];
}

// A symmetric positive definite band matrix (row-major n x w band, [i * w + k] = C(i, i - k)) as
// B B^T with B lower triangular of bandwidth (w + 1) / 2, and its dense long-double copy.
struct Band {
  std::int64_t n = 0, w = 0;
  std::vector<double> band;
  std::vector<LD> dense;  // row-major n x n
};

Band band_from_factor(const std::vector<double>& b_lower, std::int64_t n, std::int64_t half) {
  // C = B B^T, B(i, j) = b_lower[i * half + (i - j)] for 0 <= i - j < half: C has width 2 half - 1.
  Band c;
  c.n = n;
  c.w = 2 * half - 1;
  c.band.assign(static_cast<std::size_t>(n * c.w), 0.0);
  c.dense.assign(static_cast<std::size_t>(n * n), 0);
  auto b = [&](std::int64_t i, std::int64_t j) -> LD {
    return (i >= j && i - j < half) ? b_lower[static_cast<std::size_t>(i * half + (i - j))] : 0.0;
  };
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      LD sum = 0;
      for (std::int64_t l = 0; l < n; ++l) sum += b(i, l) * b(j, l);
      c.dense[static_cast<std::size_t>(i * n + j)] = sum;
      if (i >= j && i - j < c.w) c.band[static_cast<std::size_t>(i * c.w + (i - j))] = static_cast<double>(sum);
    }
  }
  return c;
}

TEST(BandCholesky, SolvesTheBandMatrixAsALongDoubleSolve) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (const auto& [n, half] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {30, 1}, {30, 3}, {41, 6}, {5, 9}}) {
    std::vector<double> b(static_cast<std::size_t>(n * half));
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t k = 0; k < half; ++k) b[static_cast<std::size_t>(i * half + k)] = k == 0 ? 3.0 + u(rng) : 0.5 * u(rng);
    }
    const Band c = band_from_factor(b, n, half);
    const auto f = gpede::detail::band_cholesky(c.band, n, c.w, false);
    EXPECT_EQ(f.dropped, 0);
    std::vector<double> x = random_vector(static_cast<std::size_t>(n), rng);
    const std::vector<LD> want = gpede::test::solve_long_double(c.dense, std::vector<LD>(x.begin(), x.end()));
    gpede::detail::band_solve(f, x.data());
    EXPECT_LT(relative_difference(x, want), 1e-11) << "n " << n << " width " << c.w;
  }
}

TEST(BandCholesky, DependentRowsAreDroppedOrKeptAsTheirDiagonal) {
  // Rows 3 and 4 of B equal: C is singular, and the elimination reduces row 4's pivot to rounding.
  const std::int64_t n = 8, half = 3;
  std::vector<double> b(static_cast<std::size_t>(n * half), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    b[static_cast<std::size_t>(i * half)] = 2.0 + 0.1 * static_cast<double>(i);
    if (i > 0) b[static_cast<std::size_t>(i * half + 1)] = 0.5;
  }
  // B(4, .) = B(3, .): B(4,4) = 0, B(4,3) = B(3,3), B(4,2) = B(3,2).
  b[4 * half + 0] = 0.0;
  b[4 * half + 1] = b[3 * half + 0];
  b[4 * half + 2] = b[3 * half + 1];
  const Band c = band_from_factor(b, n, half);
  const auto dropped = gpede::detail::band_cholesky(c.band, n, c.w, false);
  EXPECT_EQ(dropped.dropped, 1);
  EXPECT_EQ(dropped.first_dropped, 4);
  EXPECT_EQ(dropped.replaced, 0);
  std::vector<double> x(static_cast<std::size_t>(n), 1.0);
  gpede::detail::band_forward(dropped, x.data());
  EXPECT_EQ(x[4], 0.0);  // the dropped row's component
  const auto kept = gpede::detail::band_cholesky(c.band, n, c.w, true);
  EXPECT_EQ(kept.dropped, 0);
  EXPECT_EQ(kept.replaced, 1);
  EXPECT_DOUBLE_EQ(kept.l[4 * static_cast<std::size_t>(c.w)], 1.0 / std::sqrt(c.band[4 * static_cast<std::size_t>(c.w)]));
}

TEST(DenseSolverMinres, ABandPreconditionerOfTheFullWidthIsExact) {
  // The band of the whole (reduced) matrix is the matrix: MINRES converges in one iteration, which
  // needs the band of Q^T C Q to be right to the last element.
  for (const auto& [n, m] : {std::pair<std::size_t, std::size_t>{40, 0}, {40, 3}, {33, 6}}) {
    const Constrained p = random_constrained(n, m, static_cast<unsigned>(3 * n + m));
    const std::vector<LD> want = constrained_solution(p);
    const FactorOptions options = minres_options(ConstraintMode::elimination, 1e-12, static_cast<int>(n));
    DenseSolver solver;
    ASSERT_TRUE(solver.factorize(p.c, static_cast<std::int64_t>(n), p.cons, options).ok);
    const std::vector<double> dp = solver.solve(p.b, p.residual);
    EXPECT_LE(solver.last_solve_info().iterations, 2) << "n " << n << " m " << m;
    EXPECT_LT(relative_difference(dp, want), 1e-9) << "n " << n << " m " << m;
  }
}

TEST(DenseSolverMinres, ABandPreconditionerFollowsNeighbourCouplings) {
  // Pairs of neighbouring parameters correlated by 0.999 (a shift and a rotation of one module,
  // say): the diagonal preconditioner leaves the pairs' spread of eigenvalues, a band of width 2
  // takes the pairs in whole. Two constraints as an alignment has them, on the sums of the shifts
  // and of the rotations. With multipliers the band is C's own and the constraints are solved
  // exactly beside it: far fewer iterations. With elimination the reduced matrix Q^T C Q adds a
  // dense part of low rank as large as the pairs' small eigenvalues, which no band holds: there
  // the band preconditioner (pede's too) only has to give the solution.
  const std::size_t n = 120, m = 2;
  Constrained p = random_constrained(n, m, 99);
  std::fill(p.cons.a.begin(), p.cons.a.end(), 0.0);
  for (std::size_t i = 0; i < n; ++i) p.cons.a[(i % 2) * n + i] = 1.0 + 0.001 * static_cast<double>(i);
  std::fill(p.c.begin(), p.c.end(), 0.0);
  for (std::size_t i = 0; i < n; ++i) p.c[i * n + i] = 1.0 + static_cast<double>(i % 7);
  for (std::size_t i = 0; i + 1 < n; i += 2) {
    const double r = 0.999 * std::sqrt(p.c[i * n + i] * p.c[(i + 1) * n + i + 1]);
    p.c[i * n + i + 1] = p.c[(i + 1) * n + i] = r;
  }
  for (std::size_t i = 0; i + 3 < n; ++i) {  // a weak coupling beyond the pairs
    p.c[i * n + i + 3] += 1e-6;
    p.c[(i + 3) * n + i] += 1e-6;
  }
  const std::vector<LD> want = constrained_solution(p);
  for (ConstraintMode mode : {ConstraintMode::elimination, ConstraintMode::multipliers}) {
    std::int64_t iterations[2] = {0, 0};  // diagonal, band
    for (int bandwidth : {0, 2}) {
      const FactorOptions options = minres_options(mode, 1e-10, bandwidth);
      DenseSolver solver;
      ASSERT_TRUE(solver.factorize(p.c, static_cast<std::int64_t>(n), p.cons, options).ok);
      const std::vector<double> dp = solver.solve(p.b, p.residual);
      EXPECT_LT(relative_difference(dp, want), 1e-6) << "bandwidth " << bandwidth;
      iterations[bandwidth == 0 ? 0 : 1] = solver.last_solve_info().iterations;
    }
    if (mode == ConstraintMode::multipliers) {
      EXPECT_LT(3 * iterations[1], iterations[0]) << "band " << iterations[1] << ", diagonal " << iterations[0];
    }
  }
}

TEST(DenseSolverMinres, ANearlySingularBandGivesWayToTheDiagonal) {
  // Blocks of three parameters, well determined, whose tridiagonal band (width 2) is nearly
  // singular: 1 - a^2 - c^2 = 1e-13 once the coupling of the block's first and last parameter is
  // left out. The band's pivots pass the dependence test, its inverse is huge along one direction
  // per block, and MINRES's residual estimates then stop it with almost nothing solved. The true
  // residual shows it, and the solve runs again with the diagonal preconditioner.
  const std::size_t blocks = 40, n = 3 * blocks;
  const double a = std::sqrt(0.5 - 0.5e-13), b = 0.9;
  Constrained p = random_constrained(n, 0, 5);
  std::fill(p.c.begin(), p.c.end(), 0.0);
  for (std::size_t k = 0; k < blocks; ++k) {
    const std::size_t o = 3 * k;
    const double s = 1.0 + 0.1 * static_cast<double>(k % 5);  // blocks of different scales
    const double block[3][3] = {{1.0, a, b}, {a, 1.0, a}, {b, a, 1.0}};
    for (std::size_t i = 0; i < 3; ++i) {
      for (std::size_t j = 0; j < 3; ++j) p.c[(o + i) * n + o + j] = s * block[i][j];
    }
  }
  const std::vector<LD> want = constrained_solution(p);
  const FactorOptions options = minres_options(ConstraintMode::elimination, 1e-10, 2);
  DenseSolver solver;
  ASSERT_TRUE(solver.factorize(p.c, static_cast<std::int64_t>(n), p.cons, options).ok);
  const std::vector<double> dp = solver.solve(p.b, p.residual);
  const auto info = solver.last_solve_info();
  EXPECT_LT(relative_difference(dp, want), 1e-6) << info.note;
  EXPECT_NE(info.note.find("solved again with the diagonal preconditioner"), std::string::npos) << info.note;
}

}  // namespace
