// Tests of the dense CPU solver of the global system against independent references computed
// here in long double: an orthonormal basis of the null space of the constraints (Gram-Schmidt),
// Cholesky of the reduced matrix, cyclic Jacobi for its eigenvalues, and Gaussian elimination
// with partial pivoting of the bordered system.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gpede/detail/dense_solver.hpp"
#include "gpede/error.hpp"

namespace {

using gpede::ConstraintMode;
using gpede::Method;
using gpede::detail::ConstraintSystem;
using gpede::detail::DenseSolver;
using gpede::detail::FactorOptions;
using gpede::detail::FactorReport;
using LD = long double;
using MatrixLD = std::vector<std::vector<LD>>;  // [row][col]

struct Problem {
  std::int64_t n = 0;
  std::vector<double> c;  // n x n column-major
  ConstraintSystem cons;
  std::vector<double> b;
  double at(std::int64_t i, std::int64_t j) const { return c[i + j * n]; }
};

// ---- long double reference ------------------------------------------------------------------

// Orthonormal basis of the null space of A (m x n row-major, full rank): Gram-Schmidt (twice) of
// the rows of A followed by the unit vectors; the vectors after the first m span the null space.
MatrixLD null_space_basis(const Problem& p) {
  const std::int64_t n = p.n, m = p.cons.m;
  std::vector<std::vector<LD>> basis;
  auto try_add = [&](std::vector<LD> v) {
    LD norm0 = 0;
    for (LD x : v) norm0 += x * x;
    norm0 = std::sqrt(norm0);
    for (int pass = 0; pass < 2; ++pass) {
      for (const auto& q : basis) {
        LD dot = 0;
        for (std::int64_t i = 0; i < n; ++i) dot += q[i] * v[i];
        for (std::int64_t i = 0; i < n; ++i) v[i] -= dot * q[i];
      }
    }
    LD norm = 0;
    for (LD x : v) norm += x * x;
    norm = std::sqrt(norm);
    if (norm <= 1e-6L * norm0) return false;
    for (LD& x : v) x /= norm;
    basis.push_back(std::move(v));
    return true;
  };
  for (std::int64_t k = 0; k < m; ++k) {
    std::vector<LD> row(n);
    for (std::int64_t j = 0; j < n; ++j) row[j] = p.cons.a[k * n + j];
    EXPECT_TRUE(try_add(row)) << "test constraints must have full rank";
  }
  for (std::int64_t j = 0; j < n && static_cast<std::int64_t>(basis.size()) < n; ++j) {
    std::vector<LD> e(n, 0);
    e[j] = 1;
    try_add(e);
  }
  return MatrixLD(basis.begin() + m, basis.end());  // each entry: one basis vector
}

// H = N^T C N for the basis vectors N (list of columns).
MatrixLD reduced_matrix(const Problem& p, const MatrixLD& basis) {
  const std::int64_t n = p.n, r = static_cast<std::int64_t>(basis.size());
  MatrixLD cn(r, std::vector<LD>(n, 0));  // (C N)^T
  for (std::int64_t k = 0; k < r; ++k) {
    for (std::int64_t j = 0; j < n; ++j) {
      if (basis[k][j] == 0) continue;
      for (std::int64_t i = 0; i < n; ++i) cn[k][i] += static_cast<LD>(p.at(i, j)) * basis[k][j];
    }
  }
  MatrixLD h(r, std::vector<LD>(r, 0));
  for (std::int64_t k = 0; k < r; ++k) {
    for (std::int64_t l = 0; l < r; ++l) {
      LD s = 0;
      for (std::int64_t i = 0; i < n; ++i) s += basis[k][i] * cn[l][i];
      h[k][l] = s;
    }
  }
  return h;
}

// Textbook Cholesky H = L L^T (lower); false if not positive definite.
bool cholesky(MatrixLD& h) {
  const std::size_t r = h.size();
  for (std::size_t j = 0; j < r; ++j) {
    LD d = h[j][j];
    for (std::size_t k = 0; k < j; ++k) d -= h[j][k] * h[j][k];
    if (d <= 0) return false;
    h[j][j] = std::sqrt(d);
    for (std::size_t i = j + 1; i < r; ++i) {
      LD s = h[i][j];
      for (std::size_t k = 0; k < j; ++k) s -= h[i][k] * h[j][k];
      h[i][j] = s / h[j][j];
    }
  }
  return true;
}

std::vector<LD> cholesky_solve(const MatrixLD& l, std::vector<LD> y) {
  const std::size_t r = l.size();
  for (std::size_t i = 0; i < r; ++i) {
    for (std::size_t k = 0; k < i; ++k) y[i] -= l[i][k] * y[k];
    y[i] /= l[i][i];
  }
  for (std::size_t i = r; i-- > 0;) {
    for (std::size_t k = i + 1; k < r; ++k) y[i] -= l[k][i] * y[k];
    y[i] /= l[i][i];
  }
  return y;
}

struct Reference {
  std::vector<double> dp;
  std::vector<double> cov_diag;
  std::vector<double> eigenvalues;  // of the reduced matrix, ascending
};

// Cyclic Jacobi eigenvalues of a symmetric matrix, ascending.
std::vector<double> jacobi_eigenvalues(MatrixLD a) {
  const std::size_t r = a.size();
  for (int sweep = 0; sweep < 100; ++sweep) {
    LD off = 0, total = 0;
    for (std::size_t i = 0; i < r; ++i) {
      for (std::size_t j = 0; j < r; ++j) {
        total += a[i][j] * a[i][j];
        if (i != j) off += a[i][j] * a[i][j];
      }
    }
    if (off <= 1e-40L * total) break;
    for (std::size_t p = 0; p < r; ++p) {
      for (std::size_t q = p + 1; q < r; ++q) {
        if (a[p][q] == 0) continue;
        const LD theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const LD t = (theta >= 0 ? 1 : -1) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const LD c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (std::size_t k = 0; k < r; ++k) {  // columns p, q
          const LD akp = a[k][p], akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (std::size_t k = 0; k < r; ++k) {  // rows p, q
          const LD apk = a[p][k], aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
      }
    }
  }
  std::vector<double> w(r);
  for (std::size_t i = 0; i < r; ++i) w[i] = static_cast<double>(a[i][i]);
  std::sort(w.begin(), w.end());
  return w;
}

Reference null_space_reference(const Problem& p, bool eigenvalues = false) {
  const MatrixLD basis = null_space_basis(p);
  const std::int64_t n = p.n, r = static_cast<std::int64_t>(basis.size());
  MatrixLD h = reduced_matrix(p, basis);
  Reference ref;
  if (eigenvalues) ref.eigenvalues = jacobi_eigenvalues(h);
  MatrixLD l = h;
  EXPECT_TRUE(cholesky(l)) << "reference: reduced matrix not positive definite";
  std::vector<LD> nb(r, 0);
  for (std::int64_t k = 0; k < r; ++k) {
    for (std::int64_t i = 0; i < n; ++i) nb[k] += basis[k][i] * p.b[i];
  }
  const std::vector<LD> y = cholesky_solve(l, nb);
  ref.dp.assign(n, 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    LD s = 0;
    for (std::int64_t k = 0; k < r; ++k) s += basis[k][i] * y[k];
    ref.dp[i] = static_cast<double>(s);
  }
  // diag(N H^-1 N^T)_i = |L^-1 N^T e_i|^2
  ref.cov_diag.assign(n, 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    std::vector<LD> g(r);
    for (std::int64_t k = 0; k < r; ++k) g[k] = basis[k][i];
    LD s = 0;
    for (std::int64_t k = 0; k < r; ++k) {
      for (std::int64_t q = 0; q < k; ++q) g[k] -= l[k][q] * g[q];
      g[k] /= l[k][k];
      s += g[k] * g[k];
    }
    ref.cov_diag[i] = static_cast<double>(s);
  }
  return ref;
}

// Gauss-Jordan with partial pivoting on the bordered system [[C, A^T], [A, 0]]: solution for
// [b; 0] and the diagonal of the top-left block of the inverse.
Reference bordered_reference(const Problem& p) {
  const std::int64_t n = p.n, m = p.cons.m, nb = n + m;
  MatrixLD aug(nb, std::vector<LD>(2 * nb + 1, 0));
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < n; ++j) aug[i][j] = p.at(i, j);
  }
  for (std::int64_t k = 0; k < m; ++k) {
    for (std::int64_t j = 0; j < n; ++j) {
      aug[n + k][j] = p.cons.a[k * n + j];
      aug[j][n + k] = p.cons.a[k * n + j];
    }
  }
  for (std::int64_t i = 0; i < nb; ++i) aug[i][nb + i] = 1;
  for (std::int64_t i = 0; i < n; ++i) aug[i][2 * nb] = p.b[i];
  for (std::int64_t col = 0; col < nb; ++col) {
    std::int64_t piv = col;
    for (std::int64_t i = col + 1; i < nb; ++i) {
      if (std::fabs(aug[i][col]) > std::fabs(aug[piv][col])) piv = i;
    }
    std::swap(aug[col], aug[piv]);
    const LD d = aug[col][col];
    EXPECT_NE(d, 0.0L);
    for (LD& x : aug[col]) x /= d;
    for (std::int64_t i = 0; i < nb; ++i) {
      if (i == col || aug[i][col] == 0) continue;
      const LD f = aug[i][col];
      for (std::int64_t j = col; j < 2 * nb + 1; ++j) aug[i][j] -= f * aug[col][j];
    }
  }
  Reference ref;
  ref.dp.resize(n);
  ref.cov_diag.resize(n);
  for (std::int64_t i = 0; i < n; ++i) {
    ref.dp[i] = static_cast<double>(aug[i][2 * nb]);
    ref.cov_diag[i] = static_cast<double>(aug[i][nb + i]);
  }
  return ref;
}

// ---- problems --------------------------------------------------------------------------------

// C = G G^T + small diagonal with G sparse-ish ("tracks" through a few parameters), b random;
// m random constraints over random subsets of the parameters.
Problem random_problem(std::int64_t n, std::int64_t m, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::uniform_int_distribution<std::int64_t> pick(0, n - 1);
  Problem p;
  p.n = n;
  p.c.assign(n * n, 0.0);
  for (std::int64_t t = 0; t < 6 * n; ++t) {
    std::vector<std::pair<std::int64_t, double>> g;
    for (int k = 0; k < 6; ++k) g.emplace_back(pick(rng), u(rng));
    for (auto [i, gi] : g) {
      for (auto [j, gj] : g) p.c[i + j * n] += gi * gj;
    }
  }
  for (std::int64_t i = 0; i < n; ++i) p.c[i + i * n] += 0.05;
  p.cons.m = m;
  p.cons.n = n;
  p.cons.a.assign(m * n, 0.0);
  p.cons.value.assign(m, 0.0);
  for (std::int64_t k = 0; k < m; ++k) {
    for (int t = 0; t < 8; ++t) p.cons.a[k * n + pick(rng)] = u(rng);
  }
  p.b.resize(n);
  for (double& x : p.b) x = u(rng);
  return p;
}

// Like pede's silicon tracker: a singular C (global weak modes: sums over groups of five
// parameters) with a wide spectrum (1e3 .. 1e8), the weak modes fixed by unit constraints.
Problem tracker_like_problem(std::int64_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const std::int64_t m = 4;
  Problem p;
  p.n = n;
  p.cons.m = m;
  p.cons.n = n;
  p.cons.a.assign(m * n, 0.0);
  p.cons.value.assign(m, 0.0);
  for (std::int64_t k = 0; k < m; ++k) {
    for (int t = 0; t < 5; ++t) p.cons.a[k * n + 10 * k + 2 * t + 1] = 1.0;
  }
  // Orthonormal basis of the complement of the constraint rows, in long double.
  const MatrixLD basis = null_space_basis(p);
  const std::int64_t r = static_cast<std::int64_t>(basis.size());
  // C = sum_k lambda_k w_k w_k^T, w_k random rotations within the complement.
  std::vector<std::vector<LD>> w;
  for (std::int64_t k = 0; k < r; ++k) {
    std::vector<LD> v(n, 0);
    for (std::int64_t q = 0; q < r; ++q) {
      const LD coef = u(rng);
      for (std::int64_t i = 0; i < n; ++i) v[i] += coef * basis[q][i];
    }
    for (const auto& prev : w) {
      LD dot = 0;
      for (std::int64_t i = 0; i < n; ++i) dot += prev[i] * v[i];
      for (std::int64_t i = 0; i < n; ++i) v[i] -= dot * prev[i];
    }
    LD norm = 0;
    for (LD x : v) norm += x * x;
    norm = std::sqrt(norm);
    for (LD& x : v) x /= norm;
    w.push_back(v);
  }
  p.c.assign(n * n, 0.0);
  for (std::int64_t k = 0; k < r; ++k) {
    const LD lambda = 1e3L * std::pow(1e5L, static_cast<LD>(k) / static_cast<LD>(r - 1));
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t i = 0; i < n; ++i) p.c[i + j * n] += static_cast<double>(lambda * w[k][i] * w[k][j]);
    }
  }
  for (std::int64_t j = 0; j < n; ++j) {  // exact symmetry
    for (std::int64_t i = j + 1; i < n; ++i) p.c[j + i * n] = p.c[i + j * n];
  }
  p.b.resize(n);
  for (double& x : p.b) x = 1e4 * u(rng);
  return p;
}

FactorOptions options_for(Method method, ConstraintMode mode, int eve_count = 0) {
  FactorOptions o;
  o.method = method;
  o.mode = mode;
  o.want_covariance = true;
  o.eve_count = eve_count;
  return o;
}

double max_abs(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s = std::max(s, std::abs(x));
  return s;
}

// max_k |a_k . dp| / (|a_k| |dp|)
double constraint_violation(const Problem& p, const std::vector<double>& dp) {
  double norm_dp = 0.0;
  for (double x : dp) norm_dp += x * x;
  norm_dp = std::sqrt(norm_dp);
  double worst = 0.0;
  for (std::int64_t k = 0; k < p.cons.m; ++k) {
    LD s = 0, na = 0;
    for (std::int64_t j = 0; j < p.n; ++j) {
      s += static_cast<LD>(p.cons.a[k * p.n + j]) * dp[j];
      na += static_cast<LD>(p.cons.a[k * p.n + j]) * p.cons.a[k * p.n + j];
    }
    worst = std::max(worst, static_cast<double>(std::fabs(s) / (std::sqrt(na) * norm_dp)));
  }
  return worst;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double rel, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double scale = max_abs(want);
  double worst = 0.0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double d = std::abs(got[i] - want[i]);
    if (d > worst) {
      worst = d;
      at = i;
    }
  }
  EXPECT_LE(worst, rel * scale) << what << ": largest difference at " << at << ": " << got[at] << " vs " << want[at];
}

std::string name_of(Method method) {
  switch (method) {
    case Method::inversion: return "inversion";
    case Method::diagonalization: return "diagonalization";
    case Method::decomposition: return "decomposition";
    case Method::minres: return "minres";
  }
  return "?";
}

using Combination = std::tuple<Method, ConstraintMode>;

class DenseSolverMethods : public ::testing::TestWithParam<Combination> {
 protected:
  Method method() const { return std::get<0>(GetParam()); }
  ConstraintMode mode() const { return std::get<1>(GetParam()); }
  bool has_covariance() const { return method() != Method::decomposition; }

  // Solution and covariance against the reference for one problem.
  void check_problem(const Problem& p, double rel) {
    const Reference ref = null_space_reference(p);
    DenseSolver solver;
    const FactorReport report = solver.factorize(p.c, p.n, p.cons, options_for(method(), mode()));
    ASSERT_TRUE(report.ok) << report.message;
    EXPECT_TRUE(report.message.empty());
    const std::vector<double> dp = solver.solve(p.b);
    if (p.cons.m > 0) EXPECT_LE(constraint_violation(p, dp), 1e-12);
    expect_close(dp, ref.dp, rel, "solution");
    const std::vector<double> cov = solver.covariance_diagonal();
    if (has_covariance()) {
      expect_close(cov, ref.cov_diag, rel, "covariance diagonal");
    } else {
      EXPECT_TRUE(cov.empty());
    }
    // A second right-hand side with the same factorisation.
    Problem q = p;
    for (double& x : q.b) x = -2.0 * x + 0.5;
    expect_close(solver.solve(q.b), null_space_reference(q).dp, rel, "second solution");
  }
};

TEST_P(DenseSolverMethods, RandomWithConstraints) { check_problem(random_problem(90, 5, 1), 1e-10); }

TEST_P(DenseSolverMethods, RandomWithoutConstraints) { check_problem(random_problem(70, 0, 2), 1e-10); }

TEST_P(DenseSolverMethods, WeakModesFixedByConstraintsWideSpectrum) {
  check_problem(tracker_like_problem(60, 3), 1e-9);
}

TEST_P(DenseSolverMethods, ParameterWithoutDataFixedByConstraint) {
  // Parameter 7 has no data but a constraint p7 = 0 alone: the system is regular.
  Problem p = random_problem(40, 2, 4);
  for (std::int64_t i = 0; i < p.n; ++i) p.c[7 + i * p.n] = p.c[i + 7 * p.n] = 0.0;
  std::fill(p.cons.a.begin() + p.n, p.cons.a.end(), 0.0);
  p.cons.a[p.n + 7] = 1.0;
  check_problem(p, 1e-10);
  DenseSolver solver;
  ASSERT_TRUE(solver.factorize(p.c, p.n, p.cons, options_for(method(), mode())).ok);
  EXPECT_LE(std::abs(solver.solve(p.b)[7]), 1e-13);
}

TEST_P(DenseSolverMethods, ParameterWithoutDataIsReported) {
  Problem p = random_problem(50, 3, 5);
  const std::int64_t k = 17;
  for (std::int64_t j = 0; j < p.cons.m; ++j) p.cons.a[j * p.n + k] = 0.0;
  for (std::int64_t i = 0; i < p.n; ++i) p.c[k + i * p.n] = p.c[i + k * p.n] = 0.0;
  DenseSolver solver;
  const FactorReport report = solver.factorize(p.c, p.n, p.cons, options_for(method(), mode()));
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.message.find("1 parameter"), std::string::npos) << report.message;
  EXPECT_EQ(report.weak_indices, std::vector<std::int64_t>{k});
  EXPECT_THROW(solver.solve(p.b), gpede::RuntimeError);
}

TEST_P(DenseSolverMethods, WeakModeNotFixedByConstraintsIsReported) {
  // C has the null vector e3 + e7 + e11, which the constraints leave free.
  Problem p = random_problem(50, 3, 6);
  const std::vector<std::int64_t> weak = {3, 7, 11};
  for (std::int64_t j = 0; j < p.cons.m; ++j) {
    for (std::int64_t k : weak) p.cons.a[j * p.n + k] = 0.0;
  }
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::fill(p.c.begin(), p.c.end(), 0.0);
  for (int t = 0; t < 3 * p.n; ++t) {
    std::vector<double> g(p.n);
    for (double& x : g) x = u(rng);
    const double mean = (g[3] + g[7] + g[11]) / 3.0;
    for (std::int64_t k : weak) g[k] -= mean;
    for (std::int64_t j = 0; j < p.n; ++j) {
      for (std::int64_t i = 0; i < p.n; ++i) p.c[i + j * p.n] += g[i] * g[j];
    }
  }
  DenseSolver solver;
  const FactorReport report = solver.factorize(p.c, p.n, p.cons, options_for(method(), mode()));
  EXPECT_FALSE(report.ok);
  EXPECT_FALSE(report.message.empty());
  EXPECT_NE(report.message.find("1 "), std::string::npos) << report.message;
  EXPECT_EQ(report.weak_indices, weak) << report.message;
  if (method() == Method::diagonalization) {
    // The weak direction is left out: the step is finite and orthogonal to it.
    const std::vector<double> dp = solver.solve(p.b);
    for (double x : dp) ASSERT_TRUE(std::isfinite(x));
    EXPECT_LE(std::abs(dp[3] + dp[7] + dp[11]), 1e-9 * max_abs(dp));
  } else {
    EXPECT_THROW(solver.solve(p.b), gpede::RuntimeError);
  }
}

TEST_P(DenseSolverMethods, DependentConstraintsAreReported) {
  Problem p = random_problem(30, 4, 8);
  for (std::int64_t j = 0; j < p.n; ++j) p.cons.a[2 * p.n + j] = p.cons.a[j] - 3.0 * p.cons.a[p.n + j];
  DenseSolver solver;
  FactorReport report = solver.factorize(p.c, p.n, p.cons, options_for(method(), mode()));
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.dependent_constraints, std::vector<std::int64_t>{2});
  EXPECT_NE(report.message.find("rank 3 for 4"), std::string::npos) << report.message;
  // An empty constraint is dependent too.
  p = random_problem(30, 3, 9);
  std::fill(p.cons.a.begin() + p.n, p.cons.a.begin() + 2 * p.n, 0.0);
  report = solver.factorize(p.c, p.n, p.cons, options_for(method(), mode()));
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.dependent_constraints, std::vector<std::int64_t>{1});
}

TEST_P(DenseSolverMethods, IndefiniteOnConstraintSurfaceIsReported) {
  Problem p = random_problem(30, 2, 10);
  // Parameters 5 and 6 (outside the constraints) get a correlation above 1: the diagonal stays
  // positive, the matrix is indefinite.
  for (std::int64_t j = 0; j < p.cons.m; ++j) p.cons.a[j * p.n + 5] = p.cons.a[j * p.n + 6] = 0.0;
  const double big = 3.0 * max_abs(p.c);
  p.c[5 + 5 * p.n] = p.c[6 + 6 * p.n] = big;
  p.c[5 + 6 * p.n] = p.c[6 + 5 * p.n] = 3.0 * big;
  DenseSolver solver;
  const FactorReport report = solver.factorize(p.c, p.n, p.cons, options_for(method(), mode()));
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.message.find("not positive definite"), std::string::npos) << report.message;
}

TEST_P(DenseSolverMethods, NonFiniteMatrixIsReported) {
  Problem p = random_problem(20, 1, 11);
  p.c[4 + 9 * p.n] = std::nan("");
  DenseSolver solver;
  const FactorReport report = solver.factorize(p.c, p.n, p.cons, options_for(method(), mode()));
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.weak_indices, (std::vector<std::int64_t>{4, 9}));
}

TEST_P(DenseSolverMethods, AllParametersFixedByConstraints) {
  Problem p = random_problem(6, 6, 12);
  for (std::int64_t k = 0; k < 6; ++k) {
    std::fill(p.cons.a.begin() + k * 6, p.cons.a.begin() + (k + 1) * 6, 0.0);
    p.cons.a[k * 6 + k] = 1.0 + k;
  }
  DenseSolver solver;
  const FactorReport report = solver.factorize(p.c, p.n, p.cons, options_for(method(), mode()));
  ASSERT_TRUE(report.ok) << report.message;
  EXPECT_LE(max_abs(solver.solve(p.b)), 1e-12);
}

INSTANTIATE_TEST_SUITE_P(AllMethods, DenseSolverMethods,
                         ::testing::Combine(::testing::Values(Method::inversion, Method::diagonalization,
                                                              Method::decomposition),
                                            ::testing::Values(ConstraintMode::elimination,
                                                              ConstraintMode::multipliers)),
                         [](const ::testing::TestParamInfo<Combination>& info) {
                           return name_of(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) == ConstraintMode::elimination ? "_elimination"
                                                                                          : "_multipliers");
                         });

// ---- references agree with each other -------------------------------------------------------

TEST(DenseSolverReference, NullSpaceAndBorderedReferencesAgree) {
  const Problem p = random_problem(40, 4, 13);
  const Reference a = null_space_reference(p), b = bordered_reference(p);
  expect_close(a.dp, b.dp, 1e-14, "reference solutions");
  expect_close(a.cov_diag, b.cov_diag, 1e-14, "reference covariances");
}

TEST(DenseSolverMultipliers, BorderedReferenceForRandomProblem) {
  const Problem p = random_problem(60, 3, 14);
  const Reference ref = bordered_reference(p);
  for (Method method : {Method::inversion, Method::diagonalization}) {
    DenseSolver solver;
    ASSERT_TRUE(solver.factorize(p.c, p.n, p.cons, options_for(method, ConstraintMode::multipliers)).ok);
    expect_close(solver.solve(p.b), ref.dp, 1e-10, "solution");
    expect_close(solver.covariance_diagonal(), ref.cov_diag, 1e-10, "covariance");
  }
}

// ---- eigenvalues and the eigenvectors for millepede.eve ----------------------------------------

TEST(DenseSolverEigen, ReducedEigenvaluesMatchJacobi) {
  for (std::int64_t m : {0, 3}) {
    const Problem p = random_problem(40, m, 15 + static_cast<unsigned>(m));
    const Reference ref = null_space_reference(p, true);
    DenseSolver solver;
    const FactorReport report =
        solver.factorize(p.c, p.n, p.cons, options_for(Method::diagonalization, ConstraintMode::elimination));
    ASSERT_TRUE(report.ok) << report.message;
    ASSERT_EQ(report.eigenvalues.size(), static_cast<std::size_t>(p.n - m));
    expect_close(report.eigenvalues, ref.eigenvalues, 1e-12, "eigenvalues");
  }
}

TEST(DenseSolverEigen, EigenvectorsChosenAsPedeAndInVariableSpace) {
  const Problem p = random_problem(40, 3, 17);
  const MatrixLD basis = null_space_basis(p);
  DenseSolver solver;
  const FactorReport report =
      solver.factorize(p.c, p.n, p.cons, options_for(Method::diagonalization, ConstraintMode::elimination, 20));
  ASSERT_TRUE(report.ok) << report.message;
  const std::int64_t nr = p.n - p.cons.m;
  // All eigenvalues positive: the 10 smallest (ascending), then the 6 largest (descending).
  std::vector<std::int64_t> expected;
  for (std::int64_t k = 0; k < 10; ++k) expected.push_back(k);
  for (std::int64_t k = 0; k < 6; ++k) expected.push_back(nr - 1 - k);
  ASSERT_EQ(report.eigenvectors.size(), expected.size());
  const double lmax = report.eigenvalues.back();
  for (std::size_t t = 0; t < expected.size(); ++t) {
    const auto& [index, v] = report.eigenvectors[t];
    EXPECT_EQ(index, expected[t]);
    ASSERT_EQ(v.size(), static_cast<std::size_t>(p.n));
    const double lambda = report.eigenvalues[index];
    EXPECT_LE(constraint_violation(p, v), 1e-12);
    LD norm = 0, rayleigh = 0;
    std::vector<LD> cv(p.n, 0);
    for (std::int64_t i = 0; i < p.n; ++i) {
      norm += static_cast<LD>(v[i]) * v[i];
      for (std::int64_t j = 0; j < p.n; ++j) cv[i] += static_cast<LD>(p.at(i, j)) * v[j];
    }
    for (std::int64_t i = 0; i < p.n; ++i) rayleigh += cv[i] * v[i];
    EXPECT_NEAR(static_cast<double>(norm), 1.0, 1e-13);
    EXPECT_NEAR(static_cast<double>(rayleigh), lambda, 1e-12 * lmax);
    // The residual C v - lambda v has no component in the null space of A.
    for (const auto& q : basis) {
      LD s = 0;
      for (std::int64_t i = 0; i < p.n; ++i) s += q[i] * (cv[i] - lambda * v[i]);
      EXPECT_LE(std::fabs(static_cast<double>(s)), 1e-11 * lmax);
    }
  }
  // Fewer requested: the same order, cut.
  const FactorReport few =
      solver.factorize(p.c, p.n, p.cons, options_for(Method::diagonalization, ConstraintMode::elimination, 3));
  ASSERT_EQ(few.eigenvectors.size(), 3u);
  EXPECT_EQ(few.eigenvectors[2].first, 2);
}

TEST(DenseSolverEigen, MultipliersEigenvectorsSkipTheNegativeEigenvalues) {
  const Problem p = random_problem(30, 2, 18);
  DenseSolver solver;
  const FactorReport report =
      solver.factorize(p.c, p.n, p.cons, options_for(Method::diagonalization, ConstraintMode::multipliers, 16));
  ASSERT_TRUE(report.ok) << report.message;
  const std::int64_t nb = p.n + p.cons.m;
  ASSERT_EQ(report.eigenvalues.size(), static_cast<std::size_t>(nb));
  EXPECT_LT(report.eigenvalues[1], 0.0);
  EXPECT_GT(report.eigenvalues[2], 0.0);
  ASSERT_EQ(report.eigenvectors.size(), 16u);
  EXPECT_EQ(report.eigenvectors.front().first, 2);       // smallest positive
  EXPECT_EQ(report.eigenvectors[10].first, nb - 1);      // largest
  EXPECT_EQ(report.eigenvectors.front().second.size(), static_cast<std::size_t>(nb));
}

TEST(DenseSolverEigen, DecompositionHasNoCovariance) {
  const Problem p = random_problem(20, 2, 19);
  DenseSolver solver;
  FactorOptions o = options_for(Method::decomposition, ConstraintMode::elimination);
  ASSERT_TRUE(solver.factorize(p.c, p.n, p.cons, o).ok);
  EXPECT_TRUE(solver.covariance_diagonal().empty());
  o = options_for(Method::inversion, ConstraintMode::elimination);
  o.want_covariance = false;
  ASSERT_TRUE(solver.factorize(p.c, p.n, p.cons, o).ok);
  EXPECT_TRUE(solver.covariance_diagonal().empty());
}

}  // namespace
