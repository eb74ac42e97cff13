// pede's rules of a solution, each against an independent reference: the line search (analytic
// slope functions), the pivot sweeps of a singular matrix and the constrained step with a
// constraint residual (dense solves in long double), and whole runs of the command-line tool on
// straight-line tracks through four planes, whose global matrix and vector are computed here in
// long double: pre-sigmas damp the steps but leave the converged answer alone, regularisation
// pulls towards zero, and pede's end codes (1, 2, 3, 26) for bad measurements, too few entries, a
// singular matrix and too many rejects.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gpede/detail/dense_solver.hpp"
#include "gpede/detail/line_search.hpp"
#include "gpede/detail/pivoted_sweep.hpp"
#include "gpede/error.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using gpede::detail::LineSearch;
using Outcome = gpede::detail::LineSearch::Outcome;
using LongMatrix = std::vector<std::vector<long double>>;

// ===== line search ==================================================================================

// Runs a search on an objective given by its slope function f'(t) (f itself does not steer it).
struct SearchRun {
  Outcome outcome;
  double step;
  std::size_t samples;
};
template <class Slope>
SearchRun run_search(const LineSearch::Settings& settings, Slope slope) {
  LineSearch search;
  Outcome outcome = search.begin(settings, 0.0, slope(0.0));
  int guard = 0;
  while (outcome == Outcome::evaluate && ++guard < 100) outcome = search.next(0.0, slope(search.step()));
  return {outcome, search.step(), search.samples().size()};
}

LineSearch::Settings settings(double ratio, int min_samples, int max_samples) {
  return LineSearch::make_settings(ratio, 10.0, min_samples, max_samples);
}

TEST(LineSearchRules, ExactNewtonStepIsTakenWhole) {
  const SearchRun r = run_search(settings(0.5, 1, 10), [](double t) { return 2.0 * t - 2.0; });
  EXPECT_EQ(r.outcome, Outcome::converged);
  EXPECT_DOUBLE_EQ(r.step, 1.0);
  EXPECT_EQ(r.samples, 2u);
}

TEST(LineSearchRules, OvershootReturnsToTheZeroOfTheSecant) {
  // f'(t) = 2t - 1: slope -1 at 0, +1 at 1; the secant's zero is 0.5, where the slope vanishes.
  const SearchRun r = run_search(settings(0.5, 1, 10), [](double t) { return 2.0 * t - 1.0; });
  EXPECT_EQ(r.outcome, Outcome::converged);
  EXPECT_DOUBLE_EQ(r.step, 0.5);
  EXPECT_EQ(r.samples, 3u);
}

TEST(LineSearchRules, MinimumSamplesEndWithAStepTooSmall) {
  // With three samples required, an exact Newton step predicts no further move (< 1e-3).
  const SearchRun r = run_search(settings(0.5, 3, 10), [](double t) { return 2.0 * t - 2.0; });
  EXPECT_EQ(r.outcome, Outcome::step_too_small);
  EXPECT_DOUBLE_EQ(r.step, 1.0);
}

TEST(LineSearchRules, StepsAreCappedAtTheMaximum) {
  // The minimum lies at t = 100, beyond the maximum step of 10.
  const SearchRun r = run_search(settings(0.5, 1, 10), [](double t) { return -1.0 + 0.01 * t; });
  EXPECT_EQ(r.outcome, Outcome::max_step_reached);
  EXPECT_DOUBLE_EQ(r.step, 10.0);
}

TEST(LineSearchRules, NoImprovementReturnsToTheStart) {
  // Two samples at most; the slope at t = 1 is steeper than at the start.
  const SearchRun r = run_search(settings(0.5, 1, 2), [](double t) { return t > 0.5 ? 3.0 : -1.0; });
  EXPECT_EQ(r.outcome, Outcome::no_improvement);
  EXPECT_DOUBLE_EQ(r.step, 0.0);
}

TEST(LineSearchRules, TooManySamplesKeepsTheSmallestSlope) {
  // Slopes -1, -0.5 (t = 1), then the secant predicts t = 2 with slope +0.8: the search stops at
  // three samples and keeps t = 1, whose |slope| is the smallest.
  const SearchRun r = run_search(settings(0.1, 1, 3), [](double t) { return t < 0.5 ? -1.0 : (t < 1.5 ? -0.5 : 0.8); });
  EXPECT_EQ(r.outcome, Outcome::too_many_samples);
  EXPECT_DOUBLE_EQ(r.step, 1.0);
}

TEST(LineSearchRules, AnAscentDirectionIsNotSearched) {
  LineSearch search;
  EXPECT_EQ(search.begin(settings(0.5, 1, 10), 1.0, 0.0), Outcome::not_descending);
  EXPECT_EQ(search.step(), 0.0);
  EXPECT_EQ(search.begin(settings(0.5, 1, 10), 1.0, 2.0), Outcome::not_descending);
}

TEST(LineSearchRules, SettingsAreClampedAsPede) {
  const LineSearch::Settings d = LineSearch::make_settings(0.0, 0.0, 0, 0);
  EXPECT_EQ(d.slope_ratio, 0.9);
  EXPECT_EQ(d.max_step, 10.0);
  EXPECT_EQ(d.min_samples, 1);
  EXPECT_EQ(d.max_samples, 5);
  EXPECT_EQ(LineSearch::make_settings(2.0, 10.0, 50, 50).slope_ratio, static_cast<double>(0.9f));
  EXPECT_EQ(LineSearch::make_settings(1e-6, 10.0, 50, 50).slope_ratio, static_cast<double>(1.0e-4f));
  EXPECT_EQ(LineSearch::make_settings(0.5, 10.0, 50, 50).min_samples, 18);
  EXPECT_EQ(LineSearch::make_settings(0.5, 10.0, 50, 50).max_samples, 19);
}

// ===== long double references ========================================================================

// Gauss-Jordan inverse in long double with partial pivoting; throws on a singular matrix.
LongMatrix inverse(LongMatrix a) {
  const std::size_t n = a.size();
  LongMatrix inv(n, std::vector<long double>(n, 0.0L));
  for (std::size_t i = 0; i < n; ++i) inv[i][i] = 1.0L;
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t p = c;
    for (std::size_t r = c + 1; r < n; ++r) {
      if (std::fabs(a[r][c]) > std::fabs(a[p][c])) p = r;
    }
    if (a[p][c] == 0.0L) throw std::runtime_error("singular reference matrix");
    std::swap(a[p], a[c]);
    std::swap(inv[p], inv[c]);
    const long double d = a[c][c];
    for (std::size_t k = 0; k < n; ++k) {
      a[c][k] /= d;
      inv[c][k] /= d;
    }
    for (std::size_t r = 0; r < n; ++r) {
      if (r == c || a[r][c] == 0.0L) continue;
      const long double f = a[r][c];
      for (std::size_t k = 0; k < n; ++k) {
        a[r][k] -= f * a[c][k];
        inv[r][k] -= f * inv[c][k];
      }
    }
  }
  return inv;
}

std::vector<long double> multiply(const LongMatrix& a, const std::vector<long double>& x) {
  std::vector<long double> y(a.size(), 0.0L);
  for (std::size_t i = 0; i < a.size(); ++i) {
    for (std::size_t j = 0; j < x.size(); ++j) y[i] += a[i][j] * x[j];
  }
  return y;
}

std::vector<double> random_spd(std::int64_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> c(static_cast<std::size_t>(n * n), 0.0);
  for (int t = 0; t < 2 * n; ++t) {
    std::vector<double> g(static_cast<std::size_t>(n));
    for (double& x : g) x = u(rng);
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t i = 0; i < n; ++i) c[i + j * n] += g[i] * g[j];
    }
  }
  return c;
}

LongMatrix to_long(const std::vector<double>& c, std::int64_t n, const std::vector<std::int64_t>& keep) {
  LongMatrix a(keep.size(), std::vector<long double>(keep.size()));
  for (std::size_t i = 0; i < keep.size(); ++i) {
    for (std::size_t j = 0; j < keep.size(); ++j) a[i][j] = c[keep[i] + keep[j] * n];
  }
  return a;
}

// ===== pivot sweeps ====================================================================================

void expect_inverse_on(const std::vector<double>& swept, const std::vector<double>& original, std::int64_t n,
                       const std::vector<std::int64_t>& kept) {
  const LongMatrix ref = inverse(to_long(original, n, kept));
  long double scale = 0.0L;
  for (const auto& row : ref) {
    for (long double x : row) scale = std::max(scale, std::fabs(x));
  }
  std::vector<char> is_kept(static_cast<std::size_t>(n), 0);
  for (std::int64_t k : kept) is_kept[k] = 1;
  for (std::size_t i = 0; i < kept.size(); ++i) {
    for (std::size_t j = 0; j < kept.size(); ++j) {
      EXPECT_NEAR(swept[kept[i] + kept[j] * n], static_cast<double>(ref[i][j]), 1e-10 * static_cast<double>(scale));
    }
  }
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      if (!is_kept[i] || !is_kept[j]) EXPECT_EQ(swept[i + j * n], 0.0) << i << "," << j;
    }
  }
}

TEST(PivotedSweep, RegularMatrixGivesItsInverseInBothOrders) {
  const std::int64_t n = 25;
  const std::vector<double> c = random_spd(n, 3);
  std::vector<std::int64_t> all(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) all[i] = i;
  for (auto order : {gpede::detail::SweepOrder::largest_first, gpede::detail::SweepOrder::last_to_first}) {
    std::vector<double> a = c;
    const auto outcome = gpede::detail::sweep_inverse(a.data(), n, n, 1e-10, order);
    EXPECT_EQ(outcome.rank, n);
    EXPECT_TRUE(outcome.rejected.empty());
    expect_inverse_on(a, c, n, all);
  }
}

TEST(PivotedSweep, IndefiniteRegularMatrixIsInvertedLargestFirst) {
  const std::int64_t n = 12;
  std::vector<double> c = random_spd(n, 4);
  for (std::int64_t i = 0; i < n; ++i) c[i + i * n] -= 6.0;  // some eigenvalues negative
  std::vector<std::int64_t> all(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) all[i] = i;
  std::vector<double> a = c;
  const auto outcome = gpede::detail::sweep_inverse(a.data(), n, n, 1e-10, gpede::detail::SweepOrder::largest_first);
  EXPECT_EQ(outcome.rank, n);
  expect_inverse_on(a, c, n, all);
}

TEST(PivotedSweep, ParameterWithoutDataIsRejectedAndTheRestInverted) {
  const std::int64_t n = 15, k = 6;
  std::vector<double> c = random_spd(n, 5);
  for (std::int64_t i = 0; i < n; ++i) c[k + i * n] = c[i + k * n] = 0.0;
  std::vector<std::int64_t> kept;
  for (std::int64_t i = 0; i < n; ++i) {
    if (i != k) kept.push_back(i);
  }
  for (auto order : {gpede::detail::SweepOrder::largest_first, gpede::detail::SweepOrder::last_to_first}) {
    std::vector<double> a = c;
    const auto outcome = gpede::detail::sweep_inverse(a.data(), n, n, 1e-10, order);
    EXPECT_EQ(outcome.rank, n - 1);
    EXPECT_EQ(outcome.rejected, std::vector<std::int64_t>{k});
    expect_inverse_on(a, c, n, kept);
  }
}

TEST(PivotedSweep, LastToFirstListsTheClearlyNegativePivotsApart) {
  // Parameter 9 is negative on its own; parameter 4 has no data. In the order n-1 down to 0 both
  // are held fixed, but only 9 is negative (an indefinite matrix, whose step is not applied).
  const std::int64_t n = 10;
  std::vector<double> c = random_spd(n, 7);
  for (std::int64_t i = 0; i < n; ++i) {
    c[9 + i * n] = c[i + 9 * n] = 0.0;
    c[4 + i * n] = c[i + 4 * n] = 0.0;
  }
  c[9 + 9 * n] = -2.0;
  std::vector<double> a = c;
  const auto outcome = gpede::detail::sweep_inverse(a.data(), n, n, 1e-10, gpede::detail::SweepOrder::last_to_first);
  EXPECT_EQ(outcome.rank, n - 2);
  EXPECT_EQ(outcome.rejected, (std::vector<std::int64_t>{4, 9}));
  EXPECT_EQ(outcome.negative, std::vector<std::int64_t>{9});
  std::vector<std::int64_t> kept;
  for (std::int64_t i = 0; i < n; ++i) {
    if (i != 4 && i != 9) kept.push_back(i);
  }
  expect_inverse_on(a, c, n, kept);
}

TEST(PivotedSweep, NullDirectionEndsTheLargestFirstSweeps) {
  // C = G^T G with G orthogonal to (1, 1, ..., 1): one pivot falls to the rounding level and is
  // rejected; the others form the inverse of the remaining block.
  const std::int64_t n = 10;
  std::mt19937_64 rng(6);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> c(static_cast<std::size_t>(n * n), 0.0);
  for (int t = 0; t < 3 * n; ++t) {
    std::vector<double> g(static_cast<std::size_t>(n));
    double mean = 0.0;
    for (double& x : g) mean += (x = u(rng));
    mean /= static_cast<double>(n);
    for (double& x : g) x -= mean;
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t i = 0; i < n; ++i) c[i + j * n] += g[i] * g[j];
    }
  }
  std::vector<double> a = c;
  const auto outcome = gpede::detail::sweep_inverse(a.data(), n, n, 1e-10, gpede::detail::SweepOrder::largest_first);
  ASSERT_EQ(outcome.rank, n - 1);
  ASSERT_EQ(outcome.rejected.size(), 1u);
  std::vector<std::int64_t> kept;
  for (std::int64_t i = 0; i < n; ++i) {
    if (i != outcome.rejected[0]) kept.push_back(i);
  }
  expect_inverse_on(a, c, n, kept);
}

// ===== the constrained step with a constraint residual =================================================

using gpede::ConstraintMode;
using gpede::Method;

struct Constrained {
  std::int64_t n, m;
  std::vector<double> c, b, r;
  gpede::detail::ConstraintSystem cons;
};

Constrained constrained_problem(std::int64_t n, std::int64_t m, unsigned seed) {
  Constrained p{n, m, random_spd(n, seed), {}, {}, {}};
  std::mt19937_64 rng(seed + 100);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  p.b.resize(static_cast<std::size_t>(n));
  for (double& x : p.b) x = u(rng);
  p.r.resize(static_cast<std::size_t>(m));
  for (double& x : p.r) x = u(rng);
  p.cons.n = n;
  p.cons.m = m;
  p.cons.a.resize(static_cast<std::size_t>(m * n));
  for (double& x : p.cons.a) x = u(rng);
  p.cons.value.assign(static_cast<std::size_t>(m), 0.0);
  return p;
}

// The minimiser of dp.C.dp/2 - b.dp with A dp = r, from the bordered system in long double.
std::vector<long double> bordered_reference(const Constrained& p) {
  const std::int64_t nb = p.n + p.m;
  LongMatrix k(static_cast<std::size_t>(nb), std::vector<long double>(static_cast<std::size_t>(nb), 0.0L));
  for (std::int64_t i = 0; i < p.n; ++i) {
    for (std::int64_t j = 0; j < p.n; ++j) k[i][j] = p.c[i + j * p.n];
  }
  for (std::int64_t q = 0; q < p.m; ++q) {
    for (std::int64_t j = 0; j < p.n; ++j) k[p.n + q][j] = k[j][p.n + q] = p.cons.a[q * p.n + j];
  }
  std::vector<long double> rhs(static_cast<std::size_t>(nb));
  for (std::int64_t i = 0; i < p.n; ++i) rhs[i] = p.b[i];
  for (std::int64_t q = 0; q < p.m; ++q) rhs[p.n + q] = p.r[q];
  std::vector<long double> x = multiply(inverse(k), rhs);
  x.resize(static_cast<std::size_t>(p.n));
  return x;
}

class ConstrainedStep : public testing::TestWithParam<std::tuple<Method, ConstraintMode>> {};

TEST_P(ConstrainedStep, MeetsTheConstraintResidualAndMinimises) {
  const Constrained p = constrained_problem(40, 4, 11);
  gpede::detail::FactorOptions options;
  options.method = std::get<0>(GetParam());
  options.mode = std::get<1>(GetParam());
  options.want_covariance = options.method != Method::decomposition;
  gpede::detail::DenseSolver solver;
  const auto report = solver.factorize(p.c, p.n, p.cons, options);
  ASSERT_TRUE(report.ok) << report.message;
  const std::vector<double> dp = solver.solve(p.b, p.r);
  const std::vector<long double> ref = bordered_reference(p);
  long double scale = 0.0L;
  for (long double x : ref) scale = std::max(scale, std::fabs(x));
  for (std::int64_t i = 0; i < p.n; ++i) EXPECT_NEAR(dp[i], static_cast<double>(ref[i]), 1e-9 * static_cast<double>(scale));
  for (std::int64_t q = 0; q < p.m; ++q) {
    double s = 0.0;
    for (std::int64_t j = 0; j < p.n; ++j) s += p.cons.a[q * p.n + j] * dp[j];
    EXPECT_NEAR(s, p.r[q], 1e-10);
  }
}

INSTANTIATE_TEST_SUITE_P(AllMethods, ConstrainedStep,
                         testing::Combine(testing::Values(Method::inversion, Method::decomposition,
                                                          Method::diagonalization),
                                          testing::Values(ConstraintMode::elimination, ConstraintMode::multipliers)));

TEST(SingularAsPede, ParameterWithoutDataGetsNoStepAndNoError) {
  for (Method method : {Method::inversion, Method::decomposition}) {
    const std::int64_t n = 20, k = 9;
    std::vector<double> c = random_spd(n, 21);
    for (std::int64_t i = 0; i < n; ++i) c[k + i * n] = c[i + k * n] = 0.0;
    std::vector<double> b(static_cast<std::size_t>(n), 0.0);
    for (std::int64_t i = 0; i < n; ++i) b[i] = std::sin(1.0 + static_cast<double>(i));
    gpede::detail::FactorOptions options;
    options.method = method;
    options.want_covariance = method == Method::inversion;
    options.solve_singular = true;
    gpede::detail::DenseSolver solver;
    const auto report = solver.factorize(c, n, gpede::detail::ConstraintSystem{}, options);
    EXPECT_FALSE(report.ok);
    EXPECT_TRUE(report.solvable);
    EXPECT_EQ(report.rank_defect, 1);
    const std::vector<double> dp = solver.solve(b, {});
    std::vector<std::int64_t> kept;
    for (std::int64_t i = 0; i < n; ++i) {
      if (i != k) kept.push_back(i);
    }
    const LongMatrix inv = inverse(to_long(c, n, kept));
    std::vector<long double> bk;
    for (std::int64_t i : kept) bk.push_back(b[i]);
    const std::vector<long double> ref = multiply(inv, bk);
    EXPECT_EQ(dp[k], 0.0);
    for (std::size_t i = 0; i < kept.size(); ++i) EXPECT_NEAR(dp[kept[i]], static_cast<double>(ref[i]), 1e-9);
    if (method == Method::inversion) {
      const std::vector<double> cov = solver.covariance_diagonal();
      EXPECT_EQ(cov[k], 0.0);
      for (std::size_t i = 0; i < kept.size(); ++i) EXPECT_NEAR(cov[kept[i]], static_cast<double>(inv[i][i]), 1e-9);
    }
  }
}

// ===== whole runs on straight tracks through four planes ================================================

struct Pair {
  float value;
  std::int32_t index;
};

// Straight line y = a + b x through planes at x = 0..3 with offsets (labels 1..4) and sigma 0.01;
// the measured y holds the track, the plane's true offset and a deterministic scatter.
struct Track {
  double a, b;
  std::vector<float> y;
};

constexpr double kSigma = 0.01;
const double kOffset[4] = {0.02, -0.01, 0.015, -0.025};

std::vector<Track> tracks(int count, double scatter) {
  std::vector<Track> out;
  std::mt19937_64 rng(77);
  std::normal_distribution<double> g(0.0, 1.0);
  for (int i = 0; i < count; ++i) {
    Track t{0.1 * g(rng), 0.05 * g(rng), {}};
    for (int plane = 0; plane < 4; ++plane) {
      t.y.push_back(static_cast<float>(t.a + t.b * plane + kOffset[plane] + scatter * kSigma * g(rng)));
    }
    out.push_back(t);
  }
  return out;
}

std::string mille_bytes(const std::vector<Track>& ts) {
  std::string bytes;
  for (const Track& t : ts) {
    std::vector<Pair> r{{0.0f, 0}};
    for (int plane = 0; plane < 4; ++plane) {
      r.push_back({t.y[plane], 0});
      r.push_back({1.0f, 1});
      r.push_back({static_cast<float>(plane), 2});
      r.push_back({static_cast<float>(kSigma), 0});
      r.push_back({1.0f, plane + 1});
    }
    const std::int32_t n = static_cast<std::int32_t>(2 * r.size());
    bytes.append(reinterpret_cast<const char*>(&n), 4);
    for (const auto& p : r) bytes.append(reinterpret_cast<const char*>(&p.value), 4);
    for (const auto& p : r) bytes.append(reinterpret_cast<const char*>(&p.index), 4);
  }
  return bytes;
}

// The global matrix C and vector b of these tracks at p = 0 (Schur complement of the line
// parameters), in long double.
void global_system(const std::vector<Track>& ts, LongMatrix& c, std::vector<long double>& b) {
  c.assign(4, std::vector<long double>(4, 0.0L));
  b.assign(4, 0.0L);
  const long double w = 1.0L / (static_cast<long double>(static_cast<float>(kSigma)) *
                                static_cast<long double>(static_cast<float>(kSigma)));
  // Gamma = D^T W D for D rows (1, x); the projection P = I - D Gamma^-1 D^T W.
  LongMatrix gamma(2, std::vector<long double>(2, 0.0L));
  for (int x = 0; x < 4; ++x) {
    gamma[0][0] += w;
    gamma[0][1] += w * x;
    gamma[1][1] += w * x * x;
  }
  gamma[1][0] = gamma[0][1];
  const LongMatrix g_inv = inverse(gamma);
  LongMatrix p(4, std::vector<long double>(4, 0.0L));  // W P (symmetric)
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      const long double dgd = g_inv[0][0] + (g_inv[0][1] + g_inv[1][0]) * 0.5L * (i + j) + g_inv[1][1] * i * j;
      p[i][j] = (i == j ? w : 0.0L) - w * w * dgd;
    }
  }
  for (const Track& t : ts) {
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 4; ++j) {
        c[i][j] += p[i][j];
        b[i] += p[i][j] * static_cast<long double>(t.y[j]);
      }
    }
  }
}

// argmin p.(C + diag(prior)) p / 2 - b.p subject to A p = 0 (A: the two weak modes).
std::vector<long double> constrained_solution(const LongMatrix& c, const std::vector<long double>& b,
                                              const std::vector<long double>& prior) {
  LongMatrix k(6, std::vector<long double>(6, 0.0L));
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) k[i][j] = c[i][j];
    k[i][i] += prior[i];
  }
  const long double a[2][4] = {{1, 1, 1, 1}, {0, 1, 2, 3}};
  for (int q = 0; q < 2; ++q) {
    for (int j = 0; j < 4; ++j) k[4 + q][j] = k[j][4 + q] = a[q][j];
  }
  std::vector<long double> rhs = {b[0], b[1], b[2], b[3], 0.0L, 0.0L};
  std::vector<long double> x = multiply(inverse(k), rhs);
  x.resize(4);
  return x;
}

class Runs : public testing::Test {
 protected:
  gpede::test::TempDir dir{"pede-runs"};

  void write(const std::string& name, const std::string& content) {
    std::ofstream(dir.path() / name, std::ios::binary) << content;
  }
  // Runs gpede on steer.txt; returns the exit status; output into `output`.
  int run(const std::string& steering, std::string* output = nullptr) {
    write("steer.txt", steering);
    std::string text;
    const int status = gpede::test::run_command("cd '" + dir.path().string() + "' && '" +
                                                    gpede::test::gpede_binary().string() + "' --output-dir out steer.txt",
                                                &text);
    if (output) *output = text;
    return status;
  }
  int end_code() {
    std::ifstream in(dir.path() / "out" / "millepede.end");
    int code = -1;
    in >> code;
    return code;
  }
  std::string log() {
    std::ifstream in(dir.path() / "out" / "millepede.log");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::map<int, gpede::test::ResLine> res() { return gpede::test::read_res(dir.path() / "out" / "millepede.res"); }
};

const char* kConstraints = "Constraint 0.0\n1 1.0 2 1.0 3 1.0 4 1.0\nConstraint 0.0\n2 1.0 3 2.0 4 3.0\n";

TEST_F(Runs, PresigmasDampTheStepsButNotTheConvergedAnswer) {
  const auto ts = tracks(400, 1.0);
  write("data.bin", mille_bytes(ts));
  write("cons.txt", kConstraints);
  LongMatrix c;
  std::vector<long double> b;
  global_system(ts, c, b);
  const auto exact = constrained_solution(c, b, {0, 0, 0, 0});
  // A pre-sigma far below the offsets: one step moves little...
  ASSERT_EQ(run("Cfiles\ndata.bin\ncons.txt\nentries 1\npresigma 0.0001\nmethod inversion 1 0.0\nend\n"), 0);
  auto r = res();
  double moved = 0.0, size = 0.0;
  for (int l = 1; l <= 4; ++l) {
    moved = std::max(moved, std::fabs(r[l].columns[0]));
    size = std::max(size, std::fabs(static_cast<double>(exact[l - 1])));
  }
  EXPECT_LT(moved, 0.5 * size);
  // ... and many iterations reach the answer without pre-sigma (b has no prior term).
  ASSERT_EQ(run("Cfiles\ndata.bin\ncons.txt\nentries 1\npresigma 0.0001\nmethod inversion 300 0.0\nend\n"), 0);
  r = res();
  for (int l = 1; l <= 4; ++l) {
    EXPECT_NEAR(r[l].columns[0], static_cast<double>(exact[l - 1]), 2e-4 * size) << "label " << l;
  }
}

TEST_F(Runs, RegularisationPullsTowardsZero) {
  const auto ts = tracks(400, 1.0);
  write("data.bin", mille_bytes(ts));
  // Start values that meet the constraints: pede pulls towards zero, not towards them.
  write("cons.txt", std::string(kConstraints) + "Parameter\n1 0.01 0.0\n2 -0.03 0.0\n3 0.03 0.0\n4 -0.01 0.0\n");
  LongMatrix c;
  std::vector<long double> b;
  global_system(ts, c, b);
  const long double s = 0.001L;
  const auto expected = constrained_solution(c, b, {1 / (s * s), 1 / (s * s), 1 / (s * s), 1 / (s * s)});
  const auto free = constrained_solution(c, b, {0, 0, 0, 0});
  ASSERT_EQ(run("Cfiles\ndata.bin\ncons.txt\nentries 1\nregularisation 1.0 0.001\nmethod inversion 5 0.0\nend\n"), 0);
  auto r = res();
  for (int l = 1; l <= 4; ++l) {
    EXPECT_NEAR(r[l].columns[0], static_cast<double>(expected[l - 1]), 1e-4 * std::fabs(static_cast<double>(free[l - 1])))
        << "label " << l;
    // the pull is visible: the answer is well inside the unregularised one
    EXPECT_LT(std::fabs(r[l].columns[0]), 0.9 * std::fabs(static_cast<double>(free[l - 1]))) << "label " << l;
  }
}

TEST_F(Runs, TooManyRejectsAbortWith26) {
  // A scatter of 30 sigma: hugecut 1 (3 sigma) rejects nearly every track after the first step.
  write("data.bin", mille_bytes(tracks(300, 30.0)));
  write("cons.txt", kConstraints);
  std::string output;
  const int status = run("Cfiles\ndata.bin\ncons.txt\nentries 1\nhugecut 1\nchisqcut 1 1\nmethod inversion 3 0.001\nend\n", &output);
  EXPECT_EQ(status, 26) << output;
  EXPECT_EQ(end_code(), 26);
  EXPECT_FALSE(fs::exists(dir.path() / "out" / "millepede.res"));
  EXPECT_NE(log().find("Too many rejects"), std::string::npos);
}

TEST_F(Runs, SingularMatrixIsSolvedWithASevereWarning) {
  // Without constraints a common shift and tilt of the planes is free: the matrix has rank 2.
  write("data.bin", mille_bytes(tracks(200, 1.0)));
  std::string output;
  EXPECT_EQ(run("Cfiles\ndata.bin\nentries 1\nmethod inversion 3 0.001\nend\n", &output), 0) << output;
  EXPECT_EQ(end_code(), 3);
  const std::string text = log();
  EXPECT_NE(text.find("rank defect of the symmetric 4-by-4 matrix is 2"), std::string::npos) << text;
  EXPECT_NE(text.find("SUBITO"), std::string::npos) << text;
  const auto r = res();
  ASSERT_EQ(r.size(), 4u);
  int fixed = 0;
  for (const auto& [label, line] : r) fixed += line.columns.size() == 4 && line.columns[3] == 0.0 ? 1 : 0;
  EXPECT_EQ(fixed, 2);  // the two rejected pivots: zero step, zero error
}

TEST_F(Runs, ConstraintOnALabelAbsentFromTheDataFixesIt) {
  write("data.bin", mille_bytes(tracks(100, 1.0)));
  write("cons.txt", std::string(kConstraints) + "Constraint 0.0\n1 1.0\n77 1.0\n");
  std::string output;
  ASSERT_EQ(run("Cfiles\ndata.bin\ncons.txt\nentries 1\nmethod inversion 3 0.001\nend\n", &output), 0) << output;
  const auto r = res();
  ASSERT_TRUE(r.count(77));
  EXPECT_EQ(r.at(77).columns.size(), 2u);  // fixed: value and pre-sigma only
  EXPECT_NEAR(r.at(1).columns[0], 0.0, 1e-9);  // p1 + p77 = 0 with p77 fixed at 0
}

TEST_F(Runs, TooFewAcceptedEntriesEndWithCode2) {
  write("data.bin", mille_bytes(tracks(50, 1.0)));
  write("cons.txt", kConstraints);
  ASSERT_EQ(run("Cfiles\ndata.bin\ncons.txt\nentries 1 60\nmethod inversion 1 0.001\nend\n"), 0);
  EXPECT_EQ(end_code(), 2);
  EXPECT_NE(log().find("too few"), std::string::npos);
  ASSERT_EQ(run("Cfiles\ndata.bin\ncons.txt\nentries 1 40\nmethod inversion 1 0.001\nend\n"), 0);
  EXPECT_NE(end_code(), 2);
}

TEST_F(Runs, Chi2PerNdfOutsideTheBandEndsWithCode1) {
  // A scatter of 2 sigma: chi2/ndf near 4 (code 1); of 1 sigma: near 1 (code 0).
  write("cons.txt", kConstraints);
  write("data.bin", mille_bytes(tracks(2000, 2.0)));
  ASSERT_EQ(run("Cfiles\ndata.bin\ncons.txt\nentries 1\nmethod inversion 2 0.001\nend\n"), 0);
  EXPECT_EQ(end_code(), 1);
  write("data.bin", mille_bytes(tracks(2000, 1.0)));
  ASSERT_EQ(run("Cfiles\ndata.bin\ncons.txt\nentries 1\nmethod inversion 2 0.001\nend\n"), 0);
  EXPECT_EQ(end_code(), 0);
}

TEST_F(Runs, FileWeightsGiveTheWeightedSum) {
  write("cons.txt", kConstraints);
  write("data.bin", mille_bytes(tracks(500, 1.0)));
  ASSERT_EQ(run("Cfiles\ndata.bin\ncons.txt\nentries 1\nmethod inversion 2 0.001\nend\n"), 0);
  const std::string plain = log();
  ASSERT_EQ(run("Cfiles\ndata.bin -- 2.0\ncons.txt\nentries 1\nmethod inversion 2 0.001\nend\n"), 0);
  const std::string weighted = log();
  EXPECT_NE(plain.find("Sum(Chi^2)/Sum(Ndf) ="), std::string::npos);
  EXPECT_NE(weighted.find("Sum(W*Chi^2)/Sum(Ndf)/<W> ="), std::string::npos);
  // <W> = 2 and the weighted chi2 doubles: chi2/ndf is unchanged.
  auto ratio = [](const std::string& text) {
    const auto at = text.rfind("                    =");
    return std::stod(text.substr(text.find('=', at) + 1));
  };
  auto weighted_ratio = [](const std::string& text) {
    const auto at = text.rfind("                          =");
    return std::stod(text.substr(text.find('=', at) + 1));
  };
  EXPECT_NEAR(weighted_ratio(weighted), ratio(plain), 1e-9 * ratio(plain));
}

}  // namespace
