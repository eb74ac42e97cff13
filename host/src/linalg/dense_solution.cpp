// The dense solution of the global system over the linear-algebra layer (dense_solution.hpp).
//
// Elimination: Householder QR of A^T = Q R; Q^T C Q (from both sides); the trailing (n-m) x (n-m)
// block is the reduced matrix Q2^T C Q2 on the null space of A. A step is dp = Q [y1; y2] with
// R^T y1 = the constraint residual and (Q2^T C Q2) y2 = Q2^T b - (Q2^T C Q1) y1; the covariance is
// Q2 (Q2^T C Q2)^-1 Q2^T.
// Multipliers: the bordered matrix [[C, A^T], [A, 0]], scaled symmetrically by powers of two (so
// that the scaling is exact): Bunch-Kaufman for decomposition and inversion, the eigen-decomposition
// for diagonalization. The covariance is the top-left n x n block of the bordered inverse.
//
// Failures are results: zero (or negative) diagonal elements of parameters outside all
// constraints are found before any O(n^3) work; a failed or near-singular Cholesky factor is
// analysed with a pivoted Cholesky whose near-null vectors name the weak parameters; near-zero
// Bunch-Kaufman pivots with a few steps of inverse iteration; eigenvalues at the rounding level by
// their eigenvectors. With FactorOptions::solve_singular, the matrix is then solved by pede's sweeps.
#include "gpede/detail/dense_solution.hpp"

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <utility>

#include "gpede/detail/factor_report_text.hpp"
#include "gpede/detail/minres.hpp"
#include "gpede/detail/pivoted_sweep.hpp"
#include "gpede/error.hpp"

namespace gpede::detail {
namespace {

using linalg::Matrix;
using linalg::Side;
using linalg::View;

constexpr double kEps = std::numeric_limits<double>::epsilon();
// A constraint (rows normalised to 1) counts as dependent on the earlier ones when its component
// orthogonal to them is below 4 sqrt(eps): pede's pivot test on A A^T (16 eps relative) in terms of R.
const double kConstraintRankTolerance = 4.0 * std::sqrt(kEps);
// Null vectors analysed at most per failure (each costs O(n^2)).
constexpr std::int64_t kMaxWeakModes = 32;

// Power of two nearest to x > 0.
double nearest_power_of_two(double x) { return std::ldexp(1.0, static_cast<int>(std::lround(std::log2(x)))); }

}  // namespace

double pivot_tolerance(std::int64_t n) {
  return 64.0 * kEps * std::sqrt(static_cast<double>(std::max<std::int64_t>(n, 1)));
}

void check_global_system(const std::vector<std::int64_t>& nonfinite, const std::vector<double>& diagonal,
                         const ConstraintSystem& constraints, const FactorOptions& options, FactorReport& report) {
  const std::int64_t n = static_cast<std::int64_t>(diagonal.size());
  const std::int64_t m = constraints.m;
  std::int64_t bad_constraint_values = 0;
  for (double v : constraints.a) bad_constraint_values += std::isfinite(v) ? 0 : 1;
  if (!nonfinite.empty() || bad_constraint_values > 0) {
    report.ok = false;
    report.weak_indices = nonfinite;
    report.message = bad_constraint_values > 0
                         ? "the constraint coefficients contain " + count_text(bad_constraint_values, "non-finite value")
                         : "the global matrix contains non-finite elements in " +
                               count_text(static_cast<std::int64_t>(report.weak_indices.size()), "row");
    report.solvable = false;
    return;
  }
  if (options.method == Method::minres) return;
  std::vector<char> constrained(static_cast<std::size_t>(n), 0);
  for (std::int64_t k = 0; k < m; ++k) {
    for (std::int64_t j = 0; j < n; ++j) {
      if (constraints.a[k * n + j] != 0.0) constrained[j] = 1;
    }
  }
  std::vector<std::int64_t> empty;
  for (std::int64_t i = 0; i < n; ++i) {
    if (!constrained[i] && !(diagonal[i] > 0.0)) empty.push_back(i);
  }
  if (!empty.empty()) {
    report.ok = false;
    report.message = count_text(static_cast<std::int64_t>(empty.size()), "parameter") +
                     " outside all constraints without a positive diagonal element in the global matrix "
                     "(no data and no pre-sigma): the matrix is not positive definite";
    report.weak_indices = std::move(empty);
    // With solve_singular the factorisation fails and solves without them.
    report.solvable = options.solve_singular;
  }
}

ConstraintQr constraint_qr(linalg::Engine& engine, const ConstraintSystem& constraints) {
  const std::int64_t n = constraints.n, m = constraints.m;
  const std::size_t nn = static_cast<std::size_t>(n);
  ConstraintQr qr;
  std::vector<double> q(nn * static_cast<std::size_t>(m), 0.0);
  qr.row_norm.assign(static_cast<std::size_t>(m), 0.0);
  for (std::int64_t k = 0; k < m; ++k) {
    double norm2 = 0.0;
    for (std::int64_t j = 0; j < n; ++j) norm2 += constraints.a[k * n + j] * constraints.a[k * n + j];
    qr.row_norm[k] = std::sqrt(norm2);
    const double inv = norm2 > 0.0 ? 1.0 / std::sqrt(norm2) : 0.0;
    for (std::int64_t j = 0; j < n; ++j) q[j + k * nn] = constraints.a[k * n + j] * inv;
  }
  const std::int64_t rr = std::min(n, m);
  qr.q = linalg::upload_matrix(engine, q, n, m);
  qr.tau = engine.allocate(std::max<std::int64_t>(rr, 1), 1);
  if (n > 0) engine.householder_qr(qr.q.view(), qr.tau.view());
  if (rr > 0) qr.r = engine.download(qr.q.view().block(0, 0, rr, m));
  return qr;
}

bool check_constraint_rank(const std::vector<double>& r, std::int64_t n, std::int64_t m, FactorReport& report) {
  const std::int64_t rr = std::min(n, m);
  for (std::int64_t k = 0; k < m; ++k) {
    if (k >= n || !(std::abs(r[k + k * rr]) > kConstraintRankTolerance)) report.dependent_constraints.push_back(k);
  }
  if (report.dependent_constraints.empty()) return true;
  report.ok = false;
  std::ostringstream msg;
  msg << "the constraints are linearly dependent: rank " << m - static_cast<std::int64_t>(report.dependent_constraints.size())
      << " for " << m << " constraint equations; dependent on earlier ones (or empty):";
  for (std::int64_t k : report.dependent_constraints) msg << " #" << k + 1;
  report.message = msg.str();
  report.solvable = false;
  return false;
}

void DenseSolution::reset() {
  m_kind = Kind::none;
  m_n = 0;
  m_m = 0;
  m_eliminated = 0;
  m_options = FactorOptions{};
  m_factor.reset();
  m_inverse_eigenvalues.clear();
  m_q.reset();
  m_tau.reset();
  m_r.clear();
  m_row_norm.clear();
  m_cross.clear();
  m_pivots = linalg::Pivots{};
  m_scale.clear();
  m_swept.reset();
  m_cov_diag.clear();
  m_inverse_diagonal.clear();
  m_constraints.clear();
  m_scaled_constraints.clear();
  m_constraint_product.clear();
  m_constraint_order.clear();
  m_precondition = true;
  m_band = BandFactor{};
  m_band_note.clear();
  m_fallback_constraints.clear();
  m_fallback_product.clear();
  m_vector_in.reset();
  m_vector_out.reset();
  m_product = VectorMap{};
  m_last_solve = IterativeSolveInfo{};
}

Matrix DenseSolution::to_engine(const std::vector<double>& v, std::int64_t rows, std::int64_t cols) const {
  Matrix m = m_engine.allocate(rows, cols);
  m_engine.upload(v, m.view());
  return m;
}

void DenseSolution::apply_q(Side side, bool transpose, View c) const {
  if (m_eliminated == 0 || m_q.empty()) return;
  m_engine.apply_householder(side, transpose, m_q.view(), m_tau.view(), m_eliminated, c);
}

FactorReport DenseSolution::factorize(Matrix matrix, std::int64_t n, const ConstraintSystem& constraints,
                                      const FactorOptions& options) {
  reset();
  check_sizes(matrix.rows(), matrix.cols(), n, constraints);
  std::vector<std::int64_t> bad = n > 0 ? m_engine.nonfinite_rows(matrix.view()) : std::vector<std::int64_t>{};
  std::vector<double> diagonal = n > 0 ? m_engine.diagonal(matrix.view()) : std::vector<double>{};
  std::vector<double> band;
  if (options.method == Method::minres) {
    if (options.minres_bandwidth > 0 && n > 0) band = band_of(matrix.view(), n, options.minres_bandwidth);
    m_factor = std::move(matrix);
    m_product = [this](const std::vector<double>& x, std::vector<double>& y) {
      m_engine.upload(x, m_vector_in.view());
      m_engine.gemv(false, 1.0, m_factor.view(), m_vector_in.view(), 0.0, m_vector_out.view());
      y = m_engine.download(m_vector_out.view());
    };
    if (n > 0) {
      m_vector_in = m_engine.allocate(n, 1);
      m_vector_out = m_engine.allocate(n, 1);
    }
  }
  return factorize_checked(std::move(matrix), std::move(bad), diagonal, n, constraints, options, band);
}

FactorReport DenseSolution::factorize_product(VectorMap product, std::vector<double> diagonal,
                                              std::vector<std::int64_t> nonfinite, std::int64_t n,
                                              const ConstraintSystem& constraints, const FactorOptions& options,
                                              std::vector<double> band) {
  reset();
  check_sizes(n, n, n, constraints);
  if (options.method != Method::minres || static_cast<std::int64_t>(diagonal.size()) != n) {
    throw RuntimeError("dense solution: a matrix given by its products is solved by MINRES only, with its diagonal");
  }
  if (options.minres_bandwidth > 0 && band.size() != static_cast<std::size_t>(n * options.minres_bandwidth)) {
    throw RuntimeError("dense solution: the band preconditioner needs the matrix's band (" + std::to_string(n) +
                       " x " + std::to_string(options.minres_bandwidth) + "), given " + std::to_string(band.size()) +
                       " values");
  }
  m_product = std::move(product);
  return factorize_checked(Matrix(), std::move(nonfinite), diagonal, n, constraints, options, band);
}

std::vector<double> DenseSolution::band_of(View c, std::int64_t n, std::int64_t w) const {
  // Blocks of w rows with the w - 1 columns left of them, one download each.
  std::vector<double> band(static_cast<std::size_t>(n * w), 0.0);
  for (std::int64_t r = 0; r < n; r += w) {
    const std::int64_t rows = std::min(w, n - r), c0 = std::max<std::int64_t>(0, r - w + 1), cols = r + rows - c0;
    const std::vector<double> block = m_engine.download(c.block(r, c0, rows, cols));
    for (std::int64_t i = 0; i < rows; ++i) {
      for (std::int64_t k = 0; k < w && r + i - k >= c0; ++k) {
        band[static_cast<std::size_t>((r + i) * w + k)] = block[static_cast<std::size_t>(i + (r + i - k - c0) * rows)];
      }
    }
  }
  return band;
}

void DenseSolution::check_sizes(std::int64_t rows, std::int64_t cols, std::int64_t n,
                                const ConstraintSystem& constraints) const {
  const std::int64_t m = constraints.m;
  if (n < 0 || m < 0 || rows != n || cols != n ||
      (m > 0 && (constraints.n != n || constraints.a.size() != static_cast<std::size_t>(m * n)))) {
    throw RuntimeError("dense solution: inconsistent sizes (matrix " + std::to_string(rows) + " x " +
                       std::to_string(cols) + " for n = " + std::to_string(n) + ", constraints " +
                       std::to_string(m) + " x " + std::to_string(constraints.n) + " with " +
                       std::to_string(constraints.a.size()) + " values)");
  }
}

FactorReport DenseSolution::factorize_checked(Matrix matrix, std::vector<std::int64_t> bad,
                                              const std::vector<double>& diagonal, std::int64_t n,
                                              const ConstraintSystem& constraints, const FactorOptions& options,
                                              const std::vector<double>& band) {
  const std::int64_t m = constraints.m;
  m_n = n;
  m_m = m;
  m_options = options;
  FactorReport report;

  check_global_system(bad, diagonal, constraints, options, report);
  if (!report.solvable) return report;

  // ---- constraints: QR of A^T (rows normalised), rank ------------------------------------------
  if (m > 0) {
    ConstraintQr qr = constraint_qr(m_engine, constraints);
    m_q = std::move(qr.q);
    m_tau = std::move(qr.tau);
    m_r = std::move(qr.r);
    m_row_norm = std::move(qr.row_norm);
    if (!check_constraint_rank(m_r, n, m, report)) {
      m_q.reset();
      m_tau.reset();
      return report;
    }
  }

  if (options.method == Method::minres) {
    m_eliminated = options.mode == ConstraintMode::elimination ? m : 0;
    return factorize_minres(constraints, diagonal, band, std::move(report));
  }
  if (options.mode == ConstraintMode::multipliers && m > 0) {
    return factorize_bordered(std::move(matrix), constraints, diagonal, std::move(report));
  }
  m_eliminated = options.mode == ConstraintMode::elimination ? m : 0;
  return factorize_reduced(std::move(matrix), std::move(report));
}

// ---- Lagrange multipliers: the bordered system ---------------------------------------------------
FactorReport DenseSolution::factorize_bordered(Matrix matrix, const ConstraintSystem& constraints,
                                               const std::vector<double>& diagonal, FactorReport report) {
  const std::int64_t n = m_n, m = m_m, nb = n + m;
  const std::size_t ldb = static_cast<std::size_t>(nb), nn = static_cast<std::size_t>(n);
  const bool eigen = m_options.method == Method::diagonalization;
  const bool covariance = m_options.want_covariance && m_options.method != Method::decomposition;
  m_q.reset();
  m_tau.reset();
  m_r.clear();
  // Scaling by powers of two. Bunch-Kaufman: unit diagonal for C and unit rows for A, so that
  // the pivot test is relative. Eigen-decomposition: C unscaled (its spectrum is what pede shows),
  // each constraint row scaled to the size of the diagonal elements it touches; unscaled, the
  // negative eigenvalues are ~ -|a|^2/C and their eigenvectors carry errors of eps |C| / lambda.
  m_scale.assign(ldb, 1.0);
  if (!eigen) {
    for (std::int64_t i = 0; i < n; ++i) {
      if (diagonal[i] > 0.0) m_scale[i] = 1.0 / nearest_power_of_two(std::sqrt(diagonal[i]));
    }
  }
  double max_diag = 0.0;
  for (std::int64_t i = 0; i < n; ++i) max_diag = std::max(max_diag, std::abs(diagonal[i]));
  for (std::int64_t k = 0; k < m; ++k) {
    double norm2 = 0.0, touched = 0.0;
    for (std::int64_t j = 0; j < n; ++j) {
      const double v = constraints.a[k * n + j] * m_scale[j];
      norm2 += v * v;
      if (v != 0.0) touched = std::max(touched, std::abs(diagonal[j]));
    }
    double target = 1.0;
    if (eigen) target = touched > 0.0 ? touched : (max_diag > 0.0 ? max_diag : 1.0);
    m_scale[n + k] = nearest_power_of_two(target / std::sqrt(norm2));
  }
  Matrix bordered_matrix = m_engine.allocate(nb, nb);
  const View bordered = bordered_matrix.view();
  {
    const View c_block = bordered.block(0, 0, n, n);
    m_engine.copy(matrix.view(), c_block);
    const std::vector<double> s(m_scale.begin(), m_scale.begin() + n);
    m_engine.scale(c_block, s, s);
    std::vector<double> rows(static_cast<std::size_t>(m) * nn), cols(nn * static_cast<std::size_t>(m));
    for (std::int64_t k = 0; k < m; ++k) {
      for (std::int64_t j = 0; j < n; ++j) {
        const double v = m_scale[n + k] * constraints.a[k * n + j] * m_scale[j];
        rows[k + j * m] = v;   // (n + k, j)
        cols[j + k * n] = v;   // (j, n + k)
      }
    }
    m_engine.upload(rows, bordered.block(n, 0, m, n));
    m_engine.upload(cols, bordered.block(0, n, n, m));
  }
  matrix.reset();

  if (eigen) {
    std::vector<double> w = m_engine.eigen(bordered);
    double wmax = 0.0;
    for (double v : w) wmax = std::max(wmax, std::abs(v));
    const double tau = static_cast<double>(nb) * kEps * wmax;
    m_inverse_eigenvalues.assign(w.size(), 0.0);
    std::vector<std::int64_t> zero_modes, negative_modes;
    for (std::int64_t k = 0; k < nb; ++k) {
      if (std::abs(w[k]) > tau) {
        m_inverse_eigenvalues[k] = 1.0 / w[k];
        if (w[k] < 0.0) negative_modes.push_back(k);
      } else {
        zero_modes.push_back(k);
      }
    }
    auto vector_of = [&](std::int64_t k) { return from_engine(bordered.column(k)); };
    report.rank_defect = static_cast<std::int64_t>(zero_modes.size());
    if (!zero_modes.empty()) {
      report.ok = false;
      report.message = "the bordered matrix (multipliers) is singular: " +
                       count_text(static_cast<std::int64_t>(zero_modes.size()), "eigenvalue") + " of " +
                       std::to_string(nb) + " at the rounding level";
      for (std::int64_t k : zero_modes) add_large_components(vector_of(k).data(), n, report.weak_indices);
    } else if (static_cast<std::int64_t>(negative_modes.size()) > m) {
      // A positive definite C on the null space of A gives exactly m negative eigenvalues; the
      // surplus ones are those whose eigenvectors lie most in the parameter space.
      const auto surplus = static_cast<std::int64_t>(negative_modes.size()) - m;
      report.ok = false;
      report.message = "the global matrix is not positive definite on the constraint surface: the bordered "
                       "matrix has " + std::to_string(negative_modes.size()) + " negative eigenvalues for " +
                       std::to_string(m) + " constraints (" + count_text(surplus, "non-positive direction") + ")";
      std::vector<std::pair<double, std::int64_t>> share;
      for (std::int64_t k : negative_modes) {
        const std::vector<double> z = vector_of(k);
        double s = 0.0;
        for (std::int64_t i = 0; i < n; ++i) s += z[i] * z[i];
        share.emplace_back(-s, k);
      }
      std::sort(share.begin(), share.end());
      for (std::int64_t t = 0; t < std::min(surplus, kMaxWeakModes); ++t) {
        add_large_components(vector_of(share[t].second).data(), n, report.weak_indices);
      }
    }
    sort_unique(report.weak_indices);
    for (std::int64_t k : eve_selection(w, m_options.eve_count)) report.eigenvectors.emplace_back(k, vector_of(k));
    if (covariance) {
      m_cov_diag = m_engine.weighted_row_sum_squares(bordered.block(0, 0, n, nb), m_inverse_eigenvalues);
    }
    report.eigenvalues = std::move(w);
    m_factor = std::move(bordered_matrix);
    m_kind = Kind::bordered_eigen;
    return report;
  }

  // Bunch-Kaufman. It works on the lower triangle: the upper one and this diagonal restore the
  // matrix for the sweeps of solve_singular.
  const std::vector<double> bordered_diag = m_engine.diagonal(bordered);
  linalg::Pivots pivots = m_engine.ldlt(bordered);
  // Inertia and near-zero pivots from the 1x1 and 2x2 blocks of D.
  const std::vector<double> d_main = m_engine.diagonal(bordered);
  const std::vector<double> d_sub = nb > 1 ? m_engine.diagonal(bordered.block(1, 0, nb - 1, nb - 1)) : std::vector<double>{};
  const double tol = pivot_tolerance(nb);
  std::int64_t negative = 0;
  std::vector<std::pair<std::int64_t, int>> tiny;  // (block start, which eigenvalue: 0 lower, 1 upper, -1 1x1)
  for (std::int64_t k = 0; k < nb;) {
    const double a = d_main[k];
    if (pivots.host[k] > 0) {
      if (std::abs(a) <= tol) tiny.emplace_back(k, -1);
      else if (a < 0.0) ++negative;
      k += 1;
    } else {
      const double b = d_sub[k], c = d_main[k + 1];
      const double mean = 0.5 * (a + c), radius = std::hypot(0.5 * (a - c), b);
      const double lo = mean - radius, hi = mean + radius;
      if (std::abs(lo) <= tol) tiny.emplace_back(k, 0);
      else if (lo < 0.0) ++negative;
      if (std::abs(hi) <= tol) tiny.emplace_back(k, 1);
      else if (hi < 0.0) ++negative;
      k += 2;
    }
  }
  if (!tiny.empty()) {
    report.ok = false;
    report.message = "the bordered matrix (multipliers) is singular: " +
                     count_text(static_cast<std::int64_t>(tiny.size()), "zero pivot") + " of " + std::to_string(nb);
    // Lift the zero pivots to +-tol (rank-one change of the block along its near-null direction)
    // and run inverse iteration: its vectors converge to the near-null space.
    std::vector<double> lifted_main = d_main, lifted_sub = d_sub;
    for (const auto& [k, which] : tiny) {
      if (which < 0) {
        lifted_main[k] = lifted_main[k] < 0.0 ? -tol : tol;
        continue;
      }
      lift_pivot_block(lifted_main[k], lifted_sub[k], lifted_main[k + 1], which, tol);
    }
    m_engine.set_diagonal(bordered, lifted_main);
    if (nb > 1) m_engine.set_diagonal(bordered.block(1, 0, nb - 1, nb - 1), lifted_sub);
    const std::int64_t modes = std::min<std::int64_t>(static_cast<std::int64_t>(tiny.size()), kMaxWeakModes);
    std::vector<double> y(ldb * static_cast<std::size_t>(modes));
    std::mt19937_64 rng(12345);
    std::uniform_real_distribution<double> uniform(-1.0, 1.0);
    for (double& v : y) v = uniform(rng);
    Matrix y_matrix = to_engine(y, nb, modes);
    for (int iteration = 0; iteration < 3; ++iteration) {
      m_engine.ldlt_solve(bordered, pivots, y_matrix.view());
      y = from_engine(y_matrix.view());
      for (std::int64_t t = 0; t < modes; ++t) {  // modified Gram-Schmidt
        double* yt = &y[t * ldb];
        for (std::int64_t s = 0; s < t; ++s) {
          const double* ys = &y[s * ldb];
          double dot = 0.0;
          for (std::int64_t i = 0; i < nb; ++i) dot += ys[i] * yt[i];
          for (std::int64_t i = 0; i < nb; ++i) yt[i] -= dot * ys[i];
        }
        double norm = 0.0;
        for (std::int64_t i = 0; i < nb; ++i) norm += yt[i] * yt[i];
        norm = std::sqrt(norm);
        if (norm > 0.0 && std::isfinite(norm)) {
          for (std::int64_t i = 0; i < nb; ++i) yt[i] /= norm;
        } else {
          std::fill(yt, yt + nb, 0.0);
        }
      }
      m_engine.upload(y, y_matrix.view());
    }
    std::vector<double> x(nn);
    for (std::int64_t t = 0; t < modes; ++t) {
      for (std::int64_t i = 0; i < n; ++i) x[i] = m_scale[i] * y[i + t * ldb];
      add_large_components(x.data(), n, report.weak_indices);
    }
    sort_unique(report.weak_indices);
    if (m_options.solve_singular && m_options.method != Method::decomposition) {
      solve_bordered_by_sweeps(bordered, bordered_diag, report);
      return report;
    }
    report.solvable = false;
    m_scale.clear();
    return report;
  }
  if (negative > m) {
    report.ok = false;
    report.message = "the global matrix is not positive definite on the constraint surface: the bordered matrix has " +
                     std::to_string(negative) + " negative eigenvalues for " + std::to_string(m) + " constraints (" +
                     count_text(negative - m, "non-positive direction") + "; elimination names the parameters involved)";
    if (!m_options.solve_singular) {
      report.solvable = false;
      m_scale.clear();
      return report;
    }
    // Regular but indefinite: pede's inversion solves it all the same.
  }
  if (covariance) {
    const std::vector<double> inverse_diagonal = m_engine.ldlt_inverse_diagonal(bordered, pivots);
    m_cov_diag.resize(nn);
    for (std::int64_t i = 0; i < n; ++i) m_cov_diag[i] = m_scale[i] * m_scale[i] * inverse_diagonal[i];
  }
  m_factor = std::move(bordered_matrix);
  m_pivots = std::move(pivots);
  m_kind = Kind::bordered_ldlt;
  return report;
}

// ---- elimination (or no constraints): the reduced matrix Q2^T C Q2 --------------------------------
FactorReport DenseSolution::factorize_reduced(Matrix matrix, FactorReport report) {
  const std::int64_t n = m_n, mr = m_eliminated;
  const std::size_t nn = static_cast<std::size_t>(n);
  const bool eigen = m_options.method == Method::diagonalization;
  const bool covariance = m_options.want_covariance && m_options.method != Method::decomposition;
  const View full = matrix.view();
  if (mr == 0) {
    m_q.reset();
    m_tau.reset();
  } else {
    apply_q(Side::left, true, full);
    apply_q(Side::right, false, full);
  }
  const std::int64_t nr = n - mr;
  const View reduced = full.block(mr, mr, nr, nr);
  const std::string what = mr > 0 ? "the global matrix reduced by " + count_text(mr, "constraint") : "the global matrix";
  if (nr == 0) {
    m_factor = std::move(matrix);
    m_kind = Kind::trivial;
    if (covariance) m_cov_diag.assign(nn, 0.0);
    return report;
  }
  // v := Q [0; z] (variable space) for a vector z of the reduced space.
  auto to_variable_space = [&](const std::vector<double>& z) {
    std::vector<double> v(nn, 0.0);
    std::copy(z.begin(), z.begin() + nr, v.begin() + mr);
    if (mr > 0) {
      Matrix vm = to_engine(v, n, 1);
      apply_q(Side::left, false, vm.view());
      v = from_engine(vm.view());
    }
    return v;
  };

  if (eigen) {
    // The (nr x mr) block of Q^T C Q couples the constrained coordinates to the reduced ones
    // (solve() with a constraint residual needs it).
    if (mr > 0) m_cross = from_engine(full.block(mr, 0, nr, mr));
    std::vector<double> w = m_engine.eigen(reduced);
    // Eigenvectors in variable space: W = Q [0; V] in columns mr..n-1.
    const View vectors = full.block(0, mr, n, nr);
    if (mr > 0) {
      m_engine.fill(full.block(0, mr, mr, nr), 0.0);
      apply_q(Side::left, false, vectors);
    }
    double wmax = 0.0;
    for (double v : w) wmax = std::max(wmax, std::abs(v));
    const double tau = static_cast<double>(nr) * kEps * wmax;
    m_inverse_eigenvalues.assign(w.size(), 0.0);
    std::int64_t bad = 0;
    for (std::int64_t k = 0; k < nr; ++k) {
      if (w[k] > tau) {
        m_inverse_eigenvalues[k] = 1.0 / w[k];
      } else {
        ++bad;
        if (bad <= kMaxWeakModes) add_large_components(from_engine(vectors.column(k)).data(), n, report.weak_indices);
      }
    }
    report.rank_defect = bad;
    if (bad > 0) {
      report.ok = false;
      report.message = what + " is not positive definite: " + count_text(bad, "eigenvalue") + " of " +
                       std::to_string(nr) + " at or below the rounding level " + format_number(tau) +
                       " (left out of the solution)";
      sort_unique(report.weak_indices);
    }
    for (std::int64_t k : eve_selection(w, m_options.eve_count)) {
      report.eigenvectors.emplace_back(k, from_engine(vectors.column(k)));
    }
    if (covariance) m_cov_diag = m_engine.weighted_row_sum_squares(vectors, m_inverse_eigenvalues);
    report.eigenvalues = std::move(w);
    m_factor = std::move(matrix);
    m_kind = Kind::eigen;
    return report;
  }

  // Cholesky of the lower triangle; the strict upper triangle keeps the matrix for the analysis.
  const std::vector<double> diag = m_engine.diagonal(reduced);
  const std::int64_t info = m_engine.cholesky(reduced);
  bool failed = info > 0;
  const double tol = pivot_tolerance(nr);
  if (!failed) {
    const std::vector<double> l = m_engine.diagonal(reduced);
    for (std::int64_t k = 0; k < nr && !failed; ++k) {
      if (!(l[k] * l[k] > tol * diag[k])) failed = true;
    }
  }
  const bool sweep_when_singular = m_options.solve_singular && m_options.method != Method::diagonalization;
  if (failed && sweep_when_singular) solve_reduced_by_sweeps(reduced, diag, report);
  if (failed) {
    // Pivoted Cholesky of the Jacobi-scaled matrix (upper triangle, diagonal restored): its rank
    // counts the non-positive pivots; [-U11^-1 U12 e_j; e_j] are near-null vectors.
    std::vector<double> scale(static_cast<std::size_t>(nr));
    for (std::int64_t k = 0; k < nr; ++k) scale[k] = diag[k] > 0.0 ? 1.0 / std::sqrt(diag[k]) : 1.0;
    m_engine.scale(reduced, scale, scale);
    std::vector<double> scaled_diag(static_cast<std::size_t>(nr));
    for (std::int64_t k = 0; k < nr; ++k) scaled_diag[k] = diag[k] * scale[k] * scale[k];
    m_engine.set_diagonal(reduced, scaled_diag);
    std::int64_t rank = 0;
    const std::vector<std::int64_t> piv = m_engine.pivoted_cholesky(reduced, tol, rank);
    const std::int64_t deficient = std::max<std::int64_t>(1, nr - rank);
    const std::int64_t r = std::min<std::int64_t>(rank, nr - 1);
    report.ok = false;
    report.message = what + " is not positive definite: " + count_text(deficient, "non-positive pivot") + " of " +
                     std::to_string(nr) + " (numerical rank " + std::to_string(nr - deficient) + ")";
    if (m_kind == Kind::swept) {
      if (report.negative_pivots > 0) {
        report.message += "; in the order of pede's decomposition " + count_text(report.rank_defect, "pivot") +
                          " are not positive, " + std::to_string(report.negative_pivots) +
                          " of them clearly negative (an indefinite matrix)";
      } else {
        report.message += report.rank_defect > 0
                              ? "; solved without " + count_text(report.rank_defect, "pivot") + ", as pede does"
                              : "; solved with its negative pivots, as pede's inversion does";
      }
    }
    const std::vector<double> u = r > 0 ? from_engine(reduced.block(0, 0, r, nr)) : std::vector<double>{};
    const std::size_t ldu = static_cast<std::size_t>(std::max<std::int64_t>(r, 1));
    Matrix x_matrix = m_engine.allocate(std::max<std::int64_t>(r, 1), 1);
    std::vector<double> z(static_cast<std::size_t>(nr));
    for (std::int64_t j = r; j < std::min(nr, r + kMaxWeakModes); ++j) {
      std::vector<double> x(static_cast<std::size_t>(nr), 0.0);
      for (std::int64_t i = 0; i < r; ++i) x[i] = -u[i + j * ldu];
      if (r > 0) {
        const std::vector<double> head(x.begin(), x.begin() + r);
        m_engine.upload(head, x_matrix.view());
        m_engine.upper_triangular_solve(reduced.block(0, 0, r, r), x_matrix.view());
        const std::vector<double> solved = from_engine(x_matrix.view());
        std::copy(solved.begin(), solved.end(), x.begin());
      }
      x[j] = 1.0;
      for (std::int64_t k = 0; k < nr; ++k) {
        const std::int64_t original = piv[k];
        z[original] = x[k] * scale[original];
      }
      const std::vector<double> v = to_variable_space(z);
      add_large_components(v.data(), n, report.weak_indices);
    }
    sort_unique(report.weak_indices);
    if (m_kind == Kind::swept) {
      m_factor = std::move(matrix);
      return report;
    }
    report.solvable = false;
    m_q.reset();
    m_tau.reset();
    return report;
  }
  if (covariance) {
    // Inversion in place, in the one n x n matrix: X = L^-1 replaces L in the lower triangle of the
    // reduced block (the strict upper triangle keeps the matrix for the sweeps). Cred^-1 = X^T X,
    // so diag(Q2 Cred^-1 Q2^T) holds the squared column norms of W = X Q2^T = [0 X] Q^T.
    m_engine.triangular_inverse(reduced);
    const std::vector<double> inverse_diagonal = m_engine.lower_column_sum_squares(reduced);
    if (sweep_when_singular && m_options.method == Method::inversion) {
      // pede's inversion rejects a pivot below 1e-10 of its diagonal element. Whatever the order
      // of elimination, the pivot of k is at least 1 / (Cred^-1)_kk: if Cred_kk (Cred^-1)_kk stays
      // below 1e10 for every k, no pivot is rejected; otherwise sweep as pede does.
      bool doubtful = false;
      for (std::int64_t k = 0; k < nr && !doubtful; ++k) doubtful = diag[k] * inverse_diagonal[k] >= 1.0 / kGlobalPivotLimit;
      if (doubtful) {
        solve_reduced_by_sweeps(reduced, diag, report);
        m_factor = std::move(matrix);
        if (report.rank_defect > 0) {
          report.ok = false;
          report.message = what + " is singular for pede's inversion: " + count_text(report.rank_defect, "pivot") +
                           " below 1e-10 of the diagonal element; solved without them, as pede does";
        }
        return report;
      }
    }
    if (mr == 0) {
      m_cov_diag = inverse_diagonal;
    } else {
      // The rows mr..n-1 of the matrix become [0 X], then W by the reflectors, whose column norms
      // are taken; the reverse application restores [0 X] and the (nr x mr) block B21 of Q^T C Q,
      // which solve() needs, is put back.
      const View rows = full.block(mr, 0, nr, n);
      const View cross = full.block(mr, 0, nr, mr);
      Matrix saved = m_engine.allocate(nr, mr);
      m_engine.copy(cross, saved.view());
      m_engine.fill(cross, 0.0);
      m_engine.zero_strict_upper(reduced);
      m_engine.apply_householder(Side::right, true, m_q.view(), m_tau.view(), mr, rows);
      m_cov_diag = m_engine.column_sum_squares(rows);
      m_engine.apply_householder(Side::right, false, m_q.view(), m_tau.view(), mr, rows);
      m_engine.copy(saved.view(), cross);
    }
    m_factor = std::move(matrix);
    m_kind = Kind::cholesky_inverse;
    return report;
  }
  m_factor = std::move(matrix);
  m_kind = Kind::cholesky;
  return report;
}

void DenseSolution::solve_reduced_by_sweeps(View reduced, const std::vector<double>& diag, FactorReport& report) {
  const std::int64_t n = m_n, mr = m_eliminated, nr = n - mr;
  const std::size_t nn = static_cast<std::size_t>(n), ldr = static_cast<std::size_t>(nr);
  // The reduced matrix from the strict upper triangle of its block (untouched by the Cholesky of
  // the lower one) and the saved diagonal.
  const std::vector<double> block = from_engine(reduced);
  std::vector<double> restored(ldr * ldr, 0.0);
  for (std::int64_t j = 0; j < nr; ++j) {
    for (std::int64_t i = 0; i < nr; ++i) {
      const std::int64_t lo = std::min(i, j), hi = std::max(i, j);
      restored[i + j * ldr] = i == j ? diag[i] : block[lo + hi * ldr];
    }
  }
  m_swept = to_engine(restored, nr, nr);
  const bool inversion = m_options.method == Method::inversion;
  // A pivot below 1e-10 of its diagonal element is taken as zero in both orders (pede's inversion
  // does so; its decomposition skips only pivots <= 0, which leaves rounding-level pivots of a
  // singular matrix in the solution with arbitrary sizes). Clearly negative pivots of a
  // decomposition (an indefinite matrix, as down-weighting can make) are counted: the solver then
  // does not apply the step (FactorReport::negative_pivots).
  const SweepOutcome outcome = m_engine.sweep(m_swept.view(), kGlobalPivotLimit,
                                              inversion ? SweepOrder::largest_first : SweepOrder::last_to_first);
  report.solvable = true;
  report.rank_defect = nr - outcome.rank;
  report.negative_pivots = static_cast<std::int64_t>(outcome.negative.size());
  if (inversion && m_options.want_covariance) {
    // diag(Q2 Inv Q2^T): row sums of (Q [0; Inv]) .* (Q [0; I]).
    const std::vector<double> inverse = from_engine(m_swept.view());
    m_cov_diag.assign(nn, 0.0);
    if (mr == 0) {
      for (std::int64_t i = 0; i < n; ++i) m_cov_diag[i] = inverse[i + i * ldr];
    } else {
      std::vector<double> w1(nn * ldr, 0.0), q2(nn * ldr, 0.0);
      for (std::int64_t k = 0; k < nr; ++k) {
        for (std::int64_t i = 0; i < nr; ++i) w1[(mr + i) + k * nn] = inverse[i + k * ldr];
        q2[(mr + k) + k * nn] = 1.0;
      }
      Matrix w1_matrix = to_engine(w1, n, nr), q2_matrix = to_engine(q2, n, nr);
      apply_q(Side::left, false, w1_matrix.view());
      apply_q(Side::left, false, q2_matrix.view());
      w1 = from_engine(w1_matrix.view());
      q2 = from_engine(q2_matrix.view());
      for (std::int64_t k = 0; k < nr; ++k) {
        for (std::int64_t i = 0; i < n; ++i) m_cov_diag[i] += w1[i + k * nn] * q2[i + k * nn];
      }
    }
  }
  m_kind = Kind::swept;
}

void DenseSolution::solve_bordered_by_sweeps(View bordered, const std::vector<double>& diag, FactorReport& report) {
  const std::int64_t n = m_n, nb = m_n + m_m;
  const std::size_t ldb = static_cast<std::size_t>(nb);
  // The unscaled bordered matrix from the strict upper triangle (untouched by the factorisation of
  // the lower one) and the saved diagonal; pede pivots on the unscaled elements.
  const std::vector<double> block = from_engine(bordered);
  std::vector<double> restored(ldb * ldb, 0.0);
  for (std::int64_t j = 0; j < nb; ++j) {
    for (std::int64_t i = 0; i < nb; ++i) {
      const std::int64_t lo = std::min(i, j), hi = std::max(i, j);
      const double v = i == j ? diag[i] : block[lo + hi * ldb];
      restored[i + j * ldb] = v / (m_scale[i] * m_scale[j]);
    }
  }
  m_swept = to_engine(restored, nb, nb);
  const SweepOutcome outcome = m_engine.sweep(m_swept.view(), kGlobalPivotLimit, SweepOrder::largest_first);
  report.solvable = true;
  report.rank_defect = nb - outcome.rank;
  report.message += "; solved without " + count_text(report.rank_defect, "pivot") + ", as pede does";
  if (m_options.want_covariance && m_options.method != Method::decomposition) {
    const std::vector<double> d = m_engine.diagonal(m_swept.view());
    m_cov_diag.assign(d.begin(), d.begin() + n);
  }
  m_kind = Kind::bordered_swept;
}

std::vector<double> DenseSolution::constrained_coordinates(const std::vector<double>& residual) const {
  const std::int64_t mr = m_eliminated;
  std::vector<double> y(static_cast<std::size_t>(mr), 0.0);
  if (residual.empty() || mr == 0) return y;
  const std::size_t ld = static_cast<std::size_t>(std::min(m_n, m_m));
  // A_norm = R^T Q^T (rows of A normalised): R^T y1 = residual / |a_k|, forward substitution. The
  // MINRES kind decomposed the constraints in pede's order, reversed (m_constraint_order).
  for (std::int64_t k = 0; k < mr; ++k) {
    const std::int64_t row = m_constraint_order.empty() ? k : m_constraint_order[m_m - 1 - k];
    double v = m_row_norm[row] > 0.0 ? residual[row] / m_row_norm[row] : 0.0;
    for (std::int64_t j = 0; j < k; ++j) v -= m_r[j + k * ld] * y[j];
    y[k] = v / m_r[k + k * ld];
  }
  return y;
}

std::vector<double> DenseSolution::solve(const std::vector<double>& b, const std::vector<double>& residual) const {
  if (static_cast<std::int64_t>(b.size()) != m_n) {
    throw RuntimeError("dense solution: right-hand side of size " + std::to_string(b.size()) + " for " +
                       std::to_string(m_n) + " parameters");
  }
  if (!residual.empty() && static_cast<std::int64_t>(residual.size()) != m_m) {
    throw RuntimeError("dense solution: constraint residual of size " + std::to_string(residual.size()) + " for " +
                       std::to_string(m_m) + " constraints");
  }
  bool any_residual = false;
  for (double r : residual) any_residual = any_residual || r != 0.0;
  const std::size_t nn = static_cast<std::size_t>(m_n);
  const std::int64_t mr = m_eliminated;
  const std::int64_t nr = m_n - mr;
  switch (m_kind) {
    case Kind::none:
      throw RuntimeError("dense solution: no valid factorisation to solve with");
    case Kind::minres:
      return solve_minres(b, residual);
    case Kind::trivial: {
      std::vector<double> x(nn, 0.0);
      if (any_residual && mr > 0) {
        const std::vector<double> y1 = constrained_coordinates(residual);
        std::copy(y1.begin(), y1.end(), x.begin());
        Matrix xm = to_engine(x, m_n, 1);
        apply_q(Side::left, false, xm.view());
        x = from_engine(xm.view());
      }
      return x;
    }
    case Kind::cholesky:
    case Kind::cholesky_inverse:
    case Kind::swept: {
      // x = Q [y1; y2]: y1 meets the constraints, y2 = Cred^-1 (Q2^T b - B21 y1).
      Matrix xm = to_engine(b, m_n, 1);
      const View x = xm.view();
      apply_q(Side::left, true, x);
      std::vector<double> y1(static_cast<std::size_t>(mr), 0.0);
      if (any_residual && mr > 0) {
        y1 = constrained_coordinates(residual);
        Matrix ym = to_engine(y1, mr, 1);
        m_engine.gemv(false, -1.0, m_factor.view().block(mr, 0, nr, mr), ym.view(), 1.0, x.block(mr, 0, nr, 1));
      }
      if (m_kind == Kind::cholesky) {
        m_engine.cholesky_solve(m_factor.view().block(mr, mr, nr, nr), x.block(mr, 0, nr, 1));
      } else if (m_kind == Kind::cholesky_inverse) {  // Cred^-1 z = X^T (X z)
        m_engine.lower_triangular_multiply(m_factor.view().block(mr, mr, nr, nr), false, x.block(mr, 0, nr, 1));
        m_engine.lower_triangular_multiply(m_factor.view().block(mr, mr, nr, nr), true, x.block(mr, 0, nr, 1));
      } else if (nr > 0) {
        Matrix zm = m_engine.allocate(nr, 1);
        m_engine.copy(x.block(mr, 0, nr, 1), zm.view());
        m_engine.gemv(false, 1.0, m_swept.view(), zm.view(), 0.0, x.block(mr, 0, nr, 1));
      }
      if (mr > 0) m_engine.upload(y1, x.block(0, 0, mr, 1));
      apply_q(Side::left, false, x);
      return from_engine(x);
    }
    case Kind::eigen:
    case Kind::bordered_eigen: {
      // x = V diag(1/lambda) V^T g over the eigenvectors V: for elimination g = b - C Q1 y1 in the
      // variable space (V = Q2 U) plus Q1 y1; with multipliers g = [b; scaled residual].
      const auto cols = static_cast<std::int64_t>(m_inverse_eigenvalues.size());
      const bool bordered = m_kind == Kind::bordered_eigen;
      const std::int64_t rows = bordered ? m_n + m_m : m_n;
      const View vectors = bordered ? m_factor.view() : m_factor.view().block(0, mr, m_n, nr);
      std::vector<double> g(static_cast<std::size_t>(rows), 0.0);
      std::copy(b.begin(), b.end(), g.begin());
      std::vector<double> shift(nn, 0.0);
      if (any_residual && bordered) {
        for (std::int64_t k = 0; k < m_m; ++k) g[m_n + k] = m_scale[m_n + k] * residual[k];
      } else if (any_residual && mr > 0) {
        const std::vector<double> y1 = constrained_coordinates(residual);
        std::vector<double> c(nn, 0.0);  // [0; B21 y1] in the Q basis
        for (std::int64_t j = 0; j < mr; ++j) {
          for (std::int64_t i = 0; i < nr; ++i) c[mr + i] += m_cross[i + j * nr] * y1[j];
        }
        Matrix cm = to_engine(c, m_n, 1);
        apply_q(Side::left, false, cm.view());
        c = from_engine(cm.view());
        for (std::size_t i = 0; i < nn; ++i) g[i] -= c[i];
        std::copy(y1.begin(), y1.end(), shift.begin());
        Matrix sm = to_engine(shift, m_n, 1);
        apply_q(Side::left, false, sm.view());
        shift = from_engine(sm.view());
      }
      const std::int64_t rows_t = bordered && any_residual ? rows : m_n;
      Matrix gm = to_engine(std::vector<double>(g.begin(), g.begin() + rows_t), rows_t, 1);
      Matrix tm = m_engine.allocate(cols, 1), xm = m_engine.allocate(m_n, 1);
      m_engine.gemv(true, 1.0, vectors.block(0, 0, rows_t, cols), gm.view(), 0.0, tm.view());
      std::vector<double> t = from_engine(tm.view());
      for (std::int64_t k = 0; k < cols; ++k) t[k] *= m_inverse_eigenvalues[k];
      m_engine.upload(t, tm.view());
      m_engine.gemv(false, 1.0, vectors.block(0, 0, m_n, cols), tm.view(), 0.0, xm.view());
      std::vector<double> x = from_engine(xm.view());
      for (std::size_t i = 0; i < nn; ++i) x[i] += shift[i];
      return x;
    }
    case Kind::bordered_ldlt: {
      const std::int64_t nb = m_n + m_m;
      std::vector<double> y(static_cast<std::size_t>(nb), 0.0);
      for (std::int64_t i = 0; i < m_n; ++i) y[i] = m_scale[i] * b[i];
      if (any_residual) {
        for (std::int64_t k = 0; k < m_m; ++k) y[m_n + k] = m_scale[m_n + k] * residual[k];
      }
      Matrix ym = to_engine(y, nb, 1);
      m_engine.ldlt_solve(m_factor.view(), m_pivots, ym.view());
      y = from_engine(ym.view());
      std::vector<double> x(nn);
      for (std::int64_t i = 0; i < m_n; ++i) x[i] = m_scale[i] * y[i];
      return x;
    }
    case Kind::bordered_swept: {
      const std::int64_t nb = m_n + m_m;
      std::vector<double> y(static_cast<std::size_t>(nb), 0.0);
      std::copy(b.begin(), b.end(), y.begin());
      if (any_residual) std::copy(residual.begin(), residual.end(), y.begin() + m_n);
      Matrix ym = to_engine(y, nb, 1), xm = m_engine.allocate(nb, 1);
      m_engine.gemv(false, 1.0, m_swept.view(), ym.view(), 0.0, xm.view());
      std::vector<double> x = from_engine(xm.view());
      x.resize(nn);
      return x;
    }
  }
  return {};
}

// ---- MINRES ----------------------------------------------------------------------------------------
// The matrix stays as accumulated; each solve runs MINRES from zero on the system of the constraint
// mode, with pede's preconditioners. Elimination: the operator z -> Q2^T C Q2 z applies Q to vectors
// only, and the preconditioner is the diagonal of Q^T C Q, from C V, V^T C V and the compact-WY form
// Q = I - V T V^T of the reflectors (O(n^2 m) work, as pede's transformation of its diagonal).
// Multipliers: the bordered operator [[C, A^T], [A, 0]] with the diagonal of C bordered by A, solved
// exactly through the Schur complement of the diagonal (pede's constrained preconditioner).
// `bandwidth` w > 0 puts the band of width w in place of the diagonal (pede's band preconditioner):
// the band of Q^T C Q from the same products, or C's band, factorised by band_cholesky.
FactorReport DenseSolution::factorize_minres(const ConstraintSystem& constraints, const std::vector<double>& diagonal,
                                             const std::vector<double>& band, FactorReport report) {
  const std::int64_t n = m_n, m = m_m, mr = m_eliminated;
  const std::size_t nn = static_cast<std::size_t>(n);
  m_kind = Kind::minres;
  m_precondition = m_options.minres_bandwidth >= 0;
  if (n > 0 && m_vector_in.empty()) m_vector_in = m_engine.allocate(n, 1);  // for the reflectors
  const bool bordered = m_options.mode == ConstraintMode::multipliers && m > 0;
  if (bordered) {
    m_q.reset();
    m_tau.reset();
    m_r.clear();
  }
  const std::int64_t band_width = m_precondition ? std::max(0, m_options.minres_bandwidth) : 0;  // > 0: band
  if (bordered) {
    m_constraints = constraints.a;
    m_inverse_diagonal.assign(nn, 0.0);  // 1/sqrt(C_ii), 0 where C_ii <= 0
    for (std::int64_t i = 0; i < n; ++i) m_inverse_diagonal[i] = diagonal[i] > 0.0 ? 1.0 / std::sqrt(diagonal[i]) : 0.0;
    if (band_width > 0) factorize_band(band, n, band_width);
    constrained_factors([this](double* x) { precondition_forward(x, false); }, m_scaled_constraints,
                        m_constraint_product);
    if (band_width > 0) {
      // The diagonal preconditioner beside the band, for a band that fails (see solve_minres).
      constrained_factors([this](double* x) { precondition_forward(x, true); }, m_fallback_constraints,
                          m_fallback_product);
    }
    return report;
  }
  // pede's basis of the null space: its QL decomposition of A^T, which is the QR decomposition of
  // A^T with the parameters and the constraints in reverse order (read back-to-front). MINRES's
  // iterates depend on the basis through the diagonal preconditioner; in this one they are pede's.
  // Below, primed quantities live in the reversed parameter order: C' = P C P, x' = P x.
  std::vector<double> d(nn);
  for (std::int64_t i = 0; i < n; ++i) d[i] = diagonal[n - 1 - i];
  m_q.reset();
  m_tau.reset();
  m_r.clear();
  if (mr > 0) {
    // pede orders the constraints by their first, then their last parameter (ties keep the order
    // given) before the decomposition.
    std::vector<std::int64_t> first(static_cast<std::size_t>(m), n), last(static_cast<std::size_t>(m), -1);
    for (std::int64_t k = 0; k < m; ++k) {
      for (std::int64_t j = 0; j < n; ++j) {
        if (constraints.a[k * n + j] != 0.0) {
          first[k] = std::min(first[k], j);
          last[k] = j;
        }
      }
    }
    m_constraint_order.resize(static_cast<std::size_t>(m));
    for (std::int64_t k = 0; k < m; ++k) m_constraint_order[k] = k;
    std::stable_sort(m_constraint_order.begin(), m_constraint_order.end(), [&](std::int64_t a, std::int64_t b) {
      return first[a] != first[b] ? first[a] < first[b] : last[a] < last[b];
    });
    const std::size_t mrs = static_cast<std::size_t>(mr);
    std::vector<double> at(nn * mrs, 0.0);
    for (std::int64_t k = 0; k < mr; ++k) {
      const std::int64_t row = m_constraint_order[m - 1 - k];
      const double inv = m_row_norm[row] > 0.0 ? 1.0 / m_row_norm[row] : 0.0;
      for (std::int64_t i = 0; i < n; ++i) at[i + k * nn] = constraints.a[row * n + (n - 1 - i)] * inv;
    }
    m_q = to_engine(at, n, mr);
    m_tau = m_engine.allocate(mr, 1);
    m_engine.householder_qr(m_q.view(), m_tau.view());
    m_r = from_engine(m_q.view().block(0, 0, mr, mr));
  }
  // The band preconditioner: C's band in the reversed order, rows and columns from mr on (the
  // reduced matrix's, before the corrections below).
  std::vector<double> reduced_band;
  if (band_width > 0) {
    reduced_band.assign(static_cast<std::size_t>((n - mr) * band_width), 0.0);
    for (std::int64_t i = mr; i < n; ++i) {
      for (std::int64_t k = 0; k < band_width && i - k >= mr; ++k) {
        // C'(i, i - k) = C(n - 1 - i + k, n - 1 - i): row n - 1 - (i - k) of the band, k left.
        reduced_band[(i - mr) * band_width + k] = band[static_cast<std::size_t>((n - 1 - (i - k)) * band_width + k)];
      }
    }
  }
  if (mr > 0 && m_precondition) {
    // Reflectors with their unit diagonal, on the host.
    const std::size_t mrs = static_cast<std::size_t>(mr);
    std::vector<double> v = from_engine(m_q.view().block(0, 0, n, mr));
    for (std::int64_t j = 0; j < mr; ++j) {
      for (std::int64_t i = 0; i < j; ++i) v[i + j * nn] = 0.0;
      v[j + j * nn] = 1.0;
    }
    const std::vector<double> tau = from_engine(m_tau.view().block(0, 0, mr, 1));
    // T (upper, column-major mr x mr): T(0:i, i) = -tau_i T(0:i, 0:i) V(:, 0:i)^T v_i.
    std::vector<double> t(mrs * mrs, 0.0), inner(mrs, 0.0);
    for (std::int64_t i = 0; i < mr; ++i) {
      for (std::int64_t l = 0; l < i; ++l) {
        double sum = 0.0;
        for (std::int64_t r = i; r < n; ++r) sum += v[r + l * nn] * v[r + i * nn];
        inner[l] = sum;
      }
      for (std::int64_t j = 0; j < i; ++j) {
        double sum = 0.0;
        for (std::int64_t l = j; l < i; ++l) sum += t[j + l * mrs] * inner[l];
        t[j + i * mrs] = -tau[i] * sum;
      }
      t[i + i * mrs] = tau[i];
    }
    // C' V = P C (P V) through the matrix's products, G = V^T C' V, W = V T^T (row i of W is w_i,
    // with Q e_i = e_i - V w_i).
    std::vector<double> cv(nn * mrs), column(nn), product(nn);
    for (std::int64_t j = 0; j < mr; ++j) {
      for (std::int64_t i = 0; i < n; ++i) column[i] = v[(n - 1 - i) + j * nn];
      m_product(column, product);
      for (std::int64_t i = 0; i < n; ++i) cv[i + j * nn] = product[n - 1 - i];
    }
    std::vector<double> g(mrs * mrs, 0.0), w(nn * mrs, 0.0);
    for (std::int64_t a = 0; a < mr; ++a) {
      for (std::int64_t c = 0; c < mr; ++c) {
        double sum = 0.0;
        for (std::int64_t r = 0; r < n; ++r) sum += v[r + a * nn] * cv[r + c * nn];
        g[a + c * mrs] = sum;
      }
    }
    for (std::int64_t k = 0; k < mr; ++k) {
      for (std::int64_t j = k; j < mr; ++j) {
        const double tkj = t[k + j * mrs];
        for (std::int64_t r = 0; r < n; ++r) w[r + k * nn] += v[r + j * nn] * tkj;
      }
    }
    // GW = W G (row i: G w_i). Element (i, j) of Q^T C' Q is
    // C'_ij - cv_i.w_j - w_i.cv_j + (G w_i).w_j.
    std::vector<double> gw(nn * mrs, 0.0);
    for (std::int64_t i = mr; i < n; ++i) {
      for (std::int64_t a = 0; a < mr; ++a) {
        double sum = 0.0;
        for (std::int64_t c = 0; c < mr; ++c) sum += g[a + c * mrs] * w[i + c * nn];
        gw[i + a * nn] = sum;
      }
    }
    const auto correction = [&](std::int64_t i, std::int64_t j) {
      double sum = 0.0;
      for (std::int64_t a = 0; a < mr; ++a) {
        sum += gw[i + a * nn] * w[j + a * nn] - cv[i + a * nn] * w[j + a * nn] - w[i + a * nn] * cv[j + a * nn];
      }
      return sum;
    };
    if (band_width > 0) {
      for (std::int64_t i = mr; i < n; ++i) {
        for (std::int64_t k = 0; k < band_width && i - k >= mr; ++k) reduced_band[(i - mr) * band_width + k] += correction(i, i - k);
      }
    } else {
      for (std::int64_t i = mr; i < n; ++i) d[i] += correction(i, i);
    }
  }
  if (band_width > 0) {
    // The reduced diagonal is the band's first column: the diagonal preconditioner, kept for a
    // band that fails (see solve_minres).
    for (std::int64_t i = mr; i < n; ++i) d[i] = reduced_band[(i - mr) * band_width];
    factorize_band(std::move(reduced_band), n - mr, band_width);
  }
  m_inverse_diagonal.assign(nn - static_cast<std::size_t>(mr), 0.0);
  for (std::int64_t i = mr; i < n; ++i) m_inverse_diagonal[i - mr] = d[i] > 0.0 ? 1.0 / d[i] : 0.0;
  return report;
}

void DenseSolution::constrained_factors(const std::function<void(double*)>& forward, std::vector<double>& k,
                                        std::vector<double>& s) const {
  const std::int64_t n = m_n, m = m_m;
  // K = M1^-1 A^T, row by row.
  k = m_constraints;
  for (std::int64_t r = 0; r < m; ++r) forward(k.data() + r * n);
  // S = K K^T, then S = L D L^T in place (no pivoting; a zero pivot gives 1/D = 0, as pede does).
  const std::size_t mm = static_cast<std::size_t>(m);
  s.assign(mm * mm, 0.0);
  for (std::int64_t a = 0; a < m; ++a) {
    for (std::int64_t c = 0; c <= a; ++c) {
      double sum = 0.0;
      for (std::int64_t i = 0; i < n; ++i) sum += k[a * n + i] * k[c * n + i];
      s[a * mm + c] = sum;
    }
  }
  for (std::int64_t j = 0; j < m; ++j) {
    double& pivot = s[j * mm + j];
    const double inv = pivot != 0.0 ? 1.0 / pivot : 0.0;
    for (std::int64_t i = j + 1; i < m; ++i) {
      const double ratio = s[i * mm + j] * inv;
      for (std::int64_t c = j + 1; c <= i; ++c) s[i * mm + c] -= ratio * s[c * mm + j];
    }
    for (std::int64_t i = j + 1; i < m; ++i) s[i * mm + j] *= inv;
    pivot = inv;
  }
}

void DenseSolution::factorize_band(std::vector<double> band, std::int64_t n, std::int64_t w) {
  // A band of a positive definite matrix need not be positive definite. pede drops the rows whose
  // pivots vanish, and MINRES then cannot reach the solution's components along them: keep those
  // rows as their diagonal element instead (pede's own option, `bandwidth w 1`), and say so.
  m_band_note.clear();
  if (!m_options.minres_band_skyline) {
    BandFactor f = band_cholesky(band, n, w, false);
    if (f.dropped == 0) {
      m_band = std::move(f);
      return;
    }
    m_band_note = "the band preconditioner of width " + std::to_string(w) + " is not positive definite (" +
                  std::to_string(f.dropped) + " dependent row" + (f.dropped == 1 ? "" : "s") + ", the first " +
                  std::to_string(f.first_dropped + 1) + " of " + std::to_string(n) +
                  "); kept as their diagonal elements, as `bandwidth " + std::to_string(w) +
                  " 1` asks (pede drops them and misses those components of the solution)";
  }
  m_band = band_cholesky(std::move(band), n, w, true);
}

void DenseSolution::add_note(const std::string& note) const {
  m_last_solve.note = m_last_solve.note.empty() ? note : m_last_solve.note + "; " + note;
}

bool DenseSolution::band_solve_failed(const VectorMap& multiply, const std::vector<double>& rhs,
                                      const MinresOutcome& out) const {
  // MINRES stops on residual estimates in the preconditioner's norm. A band preconditioner that is
  // nearly singular (its rows close to dependent, with pivots just above the dependence test)
  // makes those estimates meaningless: MINRES then "converges" in a few iterations with almost
  // nothing solved. The true residual shows it; a good solution leaves far less than 1 %.
  std::vector<double> ax(rhs.size());
  multiply(out.x, ax);
  double r2 = 0.0, b2 = 0.0;
  for (std::size_t i = 0; i < rhs.size(); ++i) {
    r2 += (rhs[i] - ax[i]) * (rhs[i] - ax[i]);
    b2 += rhs[i] * rhs[i];
  }
  const double relative = b2 > 0.0 ? std::sqrt(r2 / b2) : 0.0;
  if (!(relative > kBandResidualLimit)) return false;
  char text[64];
  std::snprintf(text, sizeof text, "%.3g", relative);
  add_note("the band preconditioner of width " + std::to_string(m_band.w) + " left a relative residual of " + text +
           " after " + std::to_string(out.iterations) +
           " iterations (its rows are close to dependent); solved again with the diagonal preconditioner");
  return true;
}

void DenseSolution::precondition_forward(double* x, bool diagonal_only) const {
  if (m_band.w > 0 && !diagonal_only) {
    band_forward(m_band, x);
  } else {
    for (std::int64_t i = 0; i < m_n; ++i) x[i] *= m_inverse_diagonal[static_cast<std::size_t>(i)];
  }
}

void DenseSolution::precondition_backward(double* x, bool diagonal_only) const {
  if (m_band.w > 0 && !diagonal_only) {
    band_backward(m_band, x);
  } else {
    for (std::int64_t i = 0; i < m_n; ++i) x[i] *= m_inverse_diagonal[static_cast<std::size_t>(i)];
  }
}

void DenseSolution::multiply_matrix(const std::vector<double>& x, std::vector<double>& y) const { m_product(x, y); }

void DenseSolution::solve_constraint_product(const std::vector<double>& f, std::vector<double>& t) const {
  const std::int64_t m = m_m;
  const std::size_t mm = static_cast<std::size_t>(m);
  for (std::int64_t i = 0; i < m; ++i) {  // L z = t
    for (std::int64_t k = 0; k < i; ++k) t[i] -= f[i * mm + k] * t[k];
  }
  for (std::int64_t i = 0; i < m; ++i) t[i] *= f[i * mm + i];  // D^-1 (0 for a zero pivot)
  for (std::int64_t i = m - 1; i >= 0; --i) {  // L^T lambda = z
    for (std::int64_t k = i + 1; k < m; ++k) t[i] -= f[k * mm + i] * t[k];
  }
}

std::vector<double> DenseSolution::solve_minres(const std::vector<double>& b, const std::vector<double>& residual) const {
  const std::int64_t n = m_n, m = m_m, mr = m_eliminated, nr = n - mr;
  const std::size_t nn = static_cast<std::size_t>(n);
  MinresSettings settings;
  settings.rtol = m_options.minres_tolerance;
  settings.iteration_limit = m_options.minres_iteration_limit;
  settings.qlp = m_options.minres_qlp;
  settings.transition_condition = m_options.minres_transition_condition;
  settings.max_x_norm = m_options.minres_max_x_norm;
  const bool bordered = !m_constraints.empty();
  MinresOutcome out;
  std::vector<double> dp(nn, 0.0);
  m_last_solve = IterativeSolveInfo{};
  if (bordered) {
    const std::size_t nb = nn + static_cast<std::size_t>(m);
    std::vector<double> rhs(nb, 0.0), xs(nn), ys(nn);
    std::copy(b.begin(), b.end(), rhs.begin());
    for (std::int64_t k = 0; k < m && !residual.empty(); ++k) rhs[nn + k] = residual[k];
    const VectorMap multiply = [&](const std::vector<double>& x, std::vector<double>& y) {
      std::copy(x.begin(), x.begin() + n, xs.begin());
      multiply_matrix(xs, ys);
      for (std::int64_t k = 0; k < m; ++k) {
        const double* a = m_constraints.data() + k * n;
        const double lambda = x[nn + k];
        double sum = 0.0;
        for (std::int64_t i = 0; i < n; ++i) {
          ys[i] += a[i] * lambda;
          sum += a[i] * x[i];
        }
        y[nn + k] = sum;
      }
      std::copy(ys.begin(), ys.end(), y.begin());
    };
    const std::size_t mm = static_cast<std::size_t>(m);
    // diagonal_only: the diagonal preconditioner kept beside a band.
    const auto constrained = [&](bool diagonal_only) -> VectorMap {
      const std::vector<double>& kf = diagonal_only ? m_fallback_constraints : m_scaled_constraints;
      const std::vector<double>& sf = diagonal_only ? m_fallback_product : m_constraint_product;
      return [&, diagonal_only](const std::vector<double>& x, std::vector<double>& y) {
        // With M = M1 M1^T the diagonal or band of C and K = M1^-1 A^T: u = M1^-1 x1;
        // lambda = S^-1 (K u - x2); y1 = M1^-T (u - K^T lambda); y2 = lambda.
        std::copy(x.begin(), x.begin() + n, y.begin());
        precondition_forward(y.data(), diagonal_only);
        std::vector<double> t(mm);
        for (std::int64_t k = 0; k < m; ++k) {
          const double* kk = kf.data() + k * n;
          double sum = 0.0;
          for (std::int64_t i = 0; i < n; ++i) sum += kk[i] * y[i];
          t[k] = sum - x[nn + k];
        }
        solve_constraint_product(sf, t);
        for (std::int64_t k = 0; k < m; ++k) {
          const double* kk = kf.data() + k * n;
          for (std::int64_t i = 0; i < n; ++i) y[i] -= kk[i] * t[k];
          y[nn + k] = t[k];
        }
        precondition_backward(y.data(), diagonal_only);
      };
    };
    const auto block_diagonal = [&](bool diagonal_only) -> VectorMap {
      const std::vector<double>& sf = diagonal_only ? m_fallback_product : m_constraint_product;
      return [&, diagonal_only](const std::vector<double>& x, std::vector<double>& y) {
        std::copy(x.begin(), x.begin() + n, y.begin());
        precondition_forward(y.data(), diagonal_only);
        precondition_backward(y.data(), diagonal_only);
        std::vector<double> t(x.begin() + n, x.end());
        solve_constraint_product(sf, t);
        std::copy(t.begin(), t.end(), y.begin() + n);
      };
    };
    const auto solve_with = [&](bool diagonal_only) {
      MinresOutcome o = minres(multiply, m_precondition ? constrained(diagonal_only) : VectorMap{}, rhs, settings);
      if (m_precondition && (o.stop == MinresStop::preconditioner_indefinite ||
                             o.stop == MinresStop::matrix_not_symmetric)) {
        // pede's constrained preconditioner is indefinite, and MINRES needs a definite one: pede
        // stops here with a zero or partial step. Solve again with the definite block-diagonal
        // preconditioner M (+) A M^-1 A^T from the same factors.
        const std::int64_t first_iterations = o.iterations;
        const MinresStop first_stop = o.stop;
        o = minres(multiply, block_diagonal(diagonal_only), rhs, settings);
        add_note("pede's constrained preconditioner is indefinite for this right-hand side (stop code " +
                 std::to_string(static_cast<int>(first_stop)) + " after " + std::to_string(first_iterations) +
                 " iterations); solved again with the block-diagonal preconditioner");
        o.iterations += first_iterations;
      }
      return o;
    };
    out = solve_with(false);
    if (m_band.w > 0 && band_solve_failed(multiply, rhs, out)) {
      const std::int64_t band_iterations = out.iterations;
      out = solve_with(true);
      out.iterations += band_iterations;
    }
    std::copy(out.x.begin(), out.x.begin() + n, dp.begin());
  } else {
    // Elimination (mr > 0) or no constraints, in the reversed order of factorize_minres:
    // x' = Q [y1; z] with R^T y1 = the residual (reversed, rows normalised) and
    // (Q2^T C' Q2) z = Q2^T (b' - C' Q1 y1).
    const std::size_t mrs = static_cast<std::size_t>(mr);
    std::vector<double> y1(mrs, 0.0);
    bool any_residual = false;
    for (double r : residual) any_residual = any_residual || r != 0.0;
    std::vector<double> full(nn, 0.0), product(nn), g(nn);
    auto reverse = [](std::vector<double>& v) { std::reverse(v.begin(), v.end()); };
    auto q_times = [&](std::vector<double>& v, bool transpose) {
      if (mr == 0) return;
      m_engine.upload(v, m_vector_in.view());
      m_engine.apply_householder(Side::left, transpose, m_q.view(), m_tau.view(), mr, m_vector_in.view());
      v = m_engine.download(m_vector_in.view());
    };
    auto c_prime_times = [&](std::vector<double>& v, std::vector<double>& out_v) {  // out = P C P v
      reverse(v);
      multiply_matrix(v, out_v);
      reverse(out_v);
    };
    for (std::int64_t i = 0; i < n; ++i) g[i] = b[n - 1 - i];
    if (any_residual && mr > 0) {
      y1 = constrained_coordinates(residual);
      std::copy(y1.begin(), y1.end(), full.begin());
      q_times(full, false);
      c_prime_times(full, product);
      for (std::size_t i = 0; i < nn; ++i) g[i] -= product[i];
    }
    q_times(g, true);
    const std::vector<double> rhs(g.begin() + mr, g.end());
    const VectorMap multiply = [&](const std::vector<double>& z, std::vector<double>& y) {
      std::fill(full.begin(), full.begin() + mr, 0.0);
      std::copy(z.begin(), z.end(), full.begin() + mr);
      q_times(full, false);
      c_prime_times(full, product);
      q_times(product, true);
      std::copy(product.begin() + mr, product.end(), y.begin());
    };
    const VectorMap diagonal = [&](const std::vector<double>& x, std::vector<double>& y) {
      for (std::int64_t i = 0; i < nr; ++i) y[i] = x[i] * m_inverse_diagonal[i];
    };
    const VectorMap band = [&](const std::vector<double>& x, std::vector<double>& y) {
      std::copy(x.begin(), x.begin() + nr, y.begin());
      band_solve(m_band, y.data());
    };
    out = minres(multiply, !m_precondition ? VectorMap{} : m_band.w > 0 ? band : diagonal, rhs, settings);
    if (m_band.w > 0 && band_solve_failed(multiply, rhs, out)) {
      const std::int64_t band_iterations = out.iterations;
      out = minres(multiply, diagonal, rhs, settings);
      out.iterations += band_iterations;
    }
    std::copy(y1.begin(), y1.end(), dp.begin());
    std::copy(out.x.begin(), out.x.end(), dp.begin() + mr);
    q_times(dp, false);
    reverse(dp);
  }
  if (!m_band_note.empty()) {
    m_last_solve.note = m_last_solve.note.empty() ? m_band_note : m_band_note + "; " + m_last_solve.note;
  }
  m_last_solve.iterative = true;
  m_last_solve.iterations = out.iterations;
  m_last_solve.qlp = settings.qlp;
  m_last_solve.qlp_iterations = out.qlp_iterations;
  m_last_solve.stop = settings.qlp ? static_cast<int>(out.qlp_stop) : static_cast<int>(out.stop);
  m_last_solve.stop_text = settings.qlp ? minres_qlp_stop_text(out.qlp_stop) : minres_stop_text(out.stop);
  m_last_solve.a_norm = out.a_norm;
  m_last_solve.a_cond = out.a_cond;
  m_last_solve.r_norm = out.r_norm;
  m_last_solve.ar_norm = out.ar_norm;
  m_last_solve.y_norm = out.y_norm;
  return dp;
}

}  // namespace gpede::detail
