// Tests of the per-record math (local fit, Schur contribution, chi2 cut values) and of the CPU
// accumulator, against independent references written here: dense textbook normal equations in
// long double solved by Gaussian elimination, the joint global+local system with the local
// parameters eliminated, closed-form straight-line fits, and pede's printed cut table.
#include <gtest/gtest.h>

#include "gpede/detail/batch_layout.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gpede/detail/cpu_accumulator.hpp"
#include "gpede/error.hpp"
#include "gpede/kernels/chi2_limits.hpp"
#include "gpede/kernels/local_fit.hpp"
#include "gpede/record_batch.hpp"
#include "test_records.hpp"
#include "test_support.hpp"

namespace {

using gpede::test::make_batch;
using gpede::test::Measurement;
using gpede::test::Record;

using gpede::RecordBatch;
using gpede::kernels::GlobalContribution;
using gpede::kernels::LocalFitOptions;
using gpede::kernels::LocalFitResult;
using gpede::kernels::LocalFitStatus;
using Real = long double;

// ---------------------------------------------------------------------------------------------
// Test records and their conversion into a batch


struct Problem {
  int n_all = 0;
  int n_variable = 0;
  std::vector<std::int32_t> variable_index;  // per label
  std::vector<double> value;                 // per label
};


gpede::kernels::RecordBatchView view_of(const RecordBatch& b) { return gpede::detail::host_view(b); }

gpede::kernels::GlobalStateView state_of(const Problem& p) {
  gpede::kernels::GlobalStateView s;
  s.n_all = p.n_all;
  s.n_variable = p.n_variable;
  s.parameter_value = p.value.data();
  s.variable_index = p.variable_index.data();
  return s;
}

/// Runs the kernels on one record of a batch with a scratch sized for it.
struct KernelRun {
  LocalFitResult fit;
  GlobalContribution contribution;
  std::vector<double> q;            // local solution
  std::vector<double> weight;       // weights of the global contribution
  std::vector<double> matrix;       // dense n_variable^2 (column-major, both triangles)
  std::vector<double> vector;       // dense n_variable
  std::vector<std::int64_t> entries;  // per label
  std::vector<double> scratch;        // the kernels' scratch, which `contribution` points into
};

KernelRun run_kernels(const RecordBatch& batch, std::int64_t r, const Problem& p, const LocalFitOptions& options) {
  const auto view = view_of(batch);
  const auto state = state_of(p);
  const auto shape = gpede::kernels::record_shape(view, r);
  KernelRun run;
  run.scratch.resize(gpede::kernels::local_fit_scratch_bytes(shape) / sizeof(double) + 1);
  const auto scratch = gpede::kernels::make_local_fit_scratch(run.scratch.data(), shape);
  run.fit = gpede::kernels::fit_record(view, state, r, options, scratch);
  if (run.fit.status != LocalFitStatus::accepted) return run;
  run.q.assign(scratch.solution, scratch.solution + run.fit.local_parameters);
  run.weight.assign(scratch.weight, scratch.weight + run.fit.measurements);
  run.contribution = gpede::kernels::global_contribution(view, state, r, run.fit, scratch, true);
  const int n = p.n_variable;
  run.matrix.assign(static_cast<std::size_t>(n) * n, 0.0);
  run.vector.assign(n, 0.0);
  run.entries.assign(p.n_all, 0);
  const auto& c = run.contribution;
  for (int b = 0; b < c.size; ++b) {
    run.vector[c.index[b]] += c.vector[b];
    run.entries[c.label[b]] += c.entries[b];
    for (int a = b; a < c.size; ++a) {
      const double v = c.matrix[static_cast<std::size_t>(b) * c.size + a];
      run.matrix[static_cast<std::size_t>(c.index[b]) * n + c.index[a]] += v;
      if (a != b) run.matrix[static_cast<std::size_t>(c.index[a]) * n + c.index[b]] += v;
    }
  }
  return run;
}

// ---------------------------------------------------------------------------------------------
// Long-double textbook reference

using Matrix = std::vector<std::vector<Real>>;

Matrix zeros(int rows, int cols) { return Matrix(rows, std::vector<Real>(cols, 0.0L)); }

/// Solves A X = B by Gaussian elimination with partial pivoting; A n x n, B n x k.
Matrix gauss_solve(Matrix a, Matrix b) {
  const int n = static_cast<int>(a.size());
  const int k = b.empty() ? 0 : static_cast<int>(b[0].size());
  for (int col = 0; col < n; ++col) {
    int pivot = col;
    for (int i = col + 1; i < n; ++i) {
      if (std::fabs(a[i][col]) > std::fabs(a[pivot][col])) pivot = i;
    }
    std::swap(a[col], a[pivot]);
    std::swap(b[col], b[pivot]);
    for (int i = col + 1; i < n; ++i) {
      const Real f = a[i][col] / a[col][col];
      for (int j = col; j < n; ++j) a[i][j] -= f * a[col][j];
      for (int j = 0; j < k; ++j) b[i][j] -= f * b[col][j];
    }
  }
  for (int col = n - 1; col >= 0; --col) {
    for (int j = 0; j < k; ++j) {
      Real s = b[col][j];
      for (int i = col + 1; i < n; ++i) s -= a[col][i] * b[i][j];
      b[col][j] = s / a[col][col];
    }
  }
  return b;
}

struct DenseRecord {
  int n_meas = 0;
  int n_local = 0;
  Matrix d;                 // n_meas x n_local
  Matrix g;                 // n_meas x n_variable
  std::vector<Real> z;      // corrected measurements
  std::vector<Real> sigma;  // scaled errors
};

DenseRecord dense_record(const Record& rec, const Problem& p, const LocalFitOptions& options) {
  DenseRecord dr;
  dr.n_meas = static_cast<int>(rec.meas.size());
  for (const Measurement& m : rec.meas) {
    for (const auto& [index, d] : m.locals) dr.n_local = std::max(dr.n_local, index + 1);
  }
  dr.d = zeros(dr.n_meas, dr.n_local);
  dr.g = zeros(dr.n_meas, p.n_variable);
  for (int i = 0; i < dr.n_meas; ++i) {
    const Measurement& m = rec.meas[i];
    Real z = m.value;
    for (const auto& [label, d] : m.globals) {
      z -= static_cast<Real>(d) * p.value[label];
      if (p.variable_index[label] >= 0) dr.g[i][p.variable_index[label]] += d;
    }
    for (const auto& [index, d] : m.locals) dr.d[i][index] += d;
    dr.z.push_back(z);
    dr.sigma.push_back(static_cast<Real>(m.sigma) * (m.globals.empty() ? options.scale_local : options.scale_global));
  }
  return dr;
}

struct ReferenceFit {
  std::vector<Real> q;
  std::vector<Real> residual;
  Real chi2 = 0.0L;
  int ndf = 0;
  Matrix c;  // n_variable x n_variable, record weight applied
  std::vector<Real> b;
};

/// Unweighted-by-outliers local fit and Schur complement with explicit inverse of Gamma.
ReferenceFit reference_fit(const Record& rec, const Problem& p, const LocalFitOptions& options) {
  const DenseRecord dr = dense_record(rec, p, options);
  const int n = dr.n_meas;
  const int nl = dr.n_local;
  const int nv = p.n_variable;
  Matrix gamma = zeros(nl, nl);
  Matrix beta = zeros(nl, 1);
  Matrix dwg = zeros(nl, nv);
  Matrix gwg = zeros(nv, nv);
  for (int i = 0; i < n; ++i) {
    const Real w = 1.0L / (dr.sigma[i] * dr.sigma[i]);
    for (int a = 0; a < nl; ++a) {
      beta[a][0] += w * dr.d[i][a] * dr.z[i];
      for (int b = 0; b < nl; ++b) gamma[a][b] += w * dr.d[i][a] * dr.d[i][b];
      for (int b = 0; b < nv; ++b) dwg[a][b] += w * dr.d[i][a] * dr.g[i][b];
    }
    for (int a = 0; a < nv; ++a) {
      for (int b = 0; b < nv; ++b) gwg[a][b] += w * dr.g[i][a] * dr.g[i][b];
    }
  }
  ReferenceFit ref;
  const Matrix q = gauss_solve(gamma, beta);
  const Matrix gi_dwg = gauss_solve(gamma, dwg);  // Gamma^-1 D^T W G
  for (int a = 0; a < nl; ++a) ref.q.push_back(q[a][0]);
  ref.b.assign(nv, 0.0L);
  for (int i = 0; i < n; ++i) {
    Real r = dr.z[i];
    for (int a = 0; a < nl; ++a) r -= dr.d[i][a] * ref.q[a];
    ref.residual.push_back(r);
    const Real w = 1.0L / (dr.sigma[i] * dr.sigma[i]);
    ref.chi2 += w * r * r;
    for (int a = 0; a < nv; ++a) ref.b[a] += rec.weight * w * dr.g[i][a] * r;
  }
  ref.ndf = n - nl;
  ref.c = zeros(nv, nv);
  for (int a = 0; a < nv; ++a) {
    for (int b = 0; b < nv; ++b) {
      Real s = gwg[a][b];
      for (int k = 0; k < nl; ++k) s -= dwg[k][a] * gi_dwg[k][b];
      ref.c[a][b] = rec.weight * s;
    }
  }
  return ref;
}

/// The joint normal equations of the variable global parameters and the local parameters of all
/// `records`, with every local parameter eliminated by Gaussian elimination (dense): the reduced
/// global matrix and vector (record weights applied).
std::pair<Matrix, std::vector<Real>> joint_reference(const std::vector<Record>& records, const Problem& p,
                                                     const LocalFitOptions& options) {
  const int nv = p.n_variable;
  std::vector<DenseRecord> dense;
  int size = nv;
  for (const Record& rec : records) {
    dense.push_back(dense_record(rec, p, options));
    size += dense.back().n_local;
  }
  Matrix m = zeros(size, size);
  std::vector<Real> rhs(size, 0.0L);
  int offset = nv;
  for (std::size_t r = 0; r < records.size(); ++r) {
    const DenseRecord& dr = dense[r];
    const Real rw = records[r].weight;
    for (int i = 0; i < dr.n_meas; ++i) {
      const Real w = rw / (dr.sigma[i] * dr.sigma[i]);
      std::vector<std::pair<int, Real>> row;  // joint derivative row of measurement i
      for (int a = 0; a < nv; ++a) {
        if (dr.g[i][a] != 0.0L) row.emplace_back(a, dr.g[i][a]);
      }
      for (int a = 0; a < dr.n_local; ++a) {
        if (dr.d[i][a] != 0.0L) row.emplace_back(offset + a, dr.d[i][a]);
      }
      for (const auto& [a, da] : row) {
        rhs[a] += w * da * dr.z[i];
        for (const auto& [b, db] : row) m[a][b] += w * da * db;
      }
    }
    offset += dr.n_local;
  }
  for (int k = nv; k < size; ++k) {  // eliminate local parameter k from all other rows
    for (int i = 0; i < size; ++i) {
      if (i == k || m[i][k] == 0.0L) continue;
      const Real f = m[i][k] / m[k][k];
      for (int j = 0; j < size; ++j) m[i][j] -= f * m[k][j];
      rhs[i] -= f * rhs[k];
    }
  }
  Matrix c = zeros(nv, nv);
  std::vector<Real> b(nv);
  for (int a = 0; a < nv; ++a) {
    b[a] = rhs[a];
    for (int j = 0; j < nv; ++j) c[a][j] = m[a][j];
  }
  return {c, b};
}

// ---------------------------------------------------------------------------------------------
// Random problems

Problem random_problem(std::mt19937_64& rng, int n_all, int n_fixed) {
  Problem p;
  p.n_all = n_all;
  std::vector<int> labels(n_all);
  for (int i = 0; i < n_all; ++i) labels[i] = i;
  std::shuffle(labels.begin(), labels.end(), rng);
  std::vector<bool> fixed(n_all, false);
  for (int i = 0; i < n_fixed; ++i) fixed[labels[i]] = true;
  std::uniform_real_distribution<double> value(-0.05, 0.05);
  for (int i = 0; i < n_all; ++i) {
    p.variable_index.push_back(fixed[i] ? -1 : p.n_variable++);
    p.value.push_back(value(rng));
  }
  return p;
}

/// A record with n_local local parameters (each used), more measurements than that, random
/// global labels with duplicates, some measurements without global derivatives.
Record random_record(std::mt19937_64& rng, int n_local, int n_all, int max_labels_per_meas) {
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::uniform_real_distribution<double> sig(0.5, 2.0);
  std::uniform_int_distribution<int> extra(2, 12);
  std::uniform_int_distribution<int> label(0, n_all - 1);
  std::uniform_int_distribution<int> n_labels(0, max_labels_per_meas);
  std::bernoulli_distribution use(std::min(1.0, 6.0 / n_local + 0.15));
  std::bernoulli_distribution heavy(0.25);
  Record rec;
  rec.weight = heavy(rng) ? 2.5 : 1.0;
  const int n_meas = n_local + extra(rng);
  for (int i = 0; i < n_meas; ++i) {
    Measurement m;
    m.sigma = sig(rng);
    m.value = uni(rng);
    for (int k = 0; k < n_local; ++k) {
      if (k == i % n_local || use(rng)) m.locals.emplace_back(k, uni(rng));
    }
    if (heavy(rng)) {  // one derivative split into two entries of the same local index
      const double half = 0.5 * m.locals.front().second;
      m.locals.front().second = half;
      m.locals.emplace_back(m.locals.front().first, half);
    }
    std::shuffle(m.locals.begin(), m.locals.end(), rng);
    const int nl = n_labels(rng);
    for (int k = 0; k < nl; ++k) m.globals.emplace_back(label(rng), uni(rng));
    if (!m.globals.empty() && heavy(rng)) m.globals.push_back(m.globals.front());  // repeated label
    rec.meas.push_back(std::move(m));
  }
  return rec;
}

Real max_abs(const Matrix& m) {
  Real x = 0.0L;
  for (const auto& row : m) {
    for (Real v : row) x = std::max(x, std::fabs(v));
  }
  return x;
}

Real max_abs(const std::vector<Real>& v) {
  Real x = 0.0L;
  for (Real e : v) x = std::max(x, std::fabs(e));
  return x;
}

// ---------------------------------------------------------------------------------------------
// Tests

TEST(Chi2Limits, MatchPedeCutTable) {
  GPEDE_REQUIRE_REFERENCE();
  // wirechamber's log lists ndf 1..100 (table and formula range); columns: ndf, chi2/ndf(2),
  // chi2(2), chi2/ndf(3), chi2(3)
  std::ifstream log(gpede::test::reference_dir() / "wirechamber" / "pede" / "inversion" / "millepede.log");
  ASSERT_TRUE(log.good());
  std::string line;
  bool in_table = false;
  int rows = 0;
  while (std::getline(log, line)) {
    if (line.find("Ndf  Chi^2/Ndf(2)") != std::string::npos) {
      in_table = true;
      continue;
    }
    if (!in_table) continue;
    std::istringstream in(line);
    int ndf = 0;
    double per2 = 0, c2 = 0, per3 = 0, c3 = 0;
    if (!(in >> ndf >> per2 >> c2 >> per3 >> c3)) break;
    ++rows;
    const float p2 = gpede::kernels::chi2_per_ndf_limit(2, ndf);
    const float p3 = gpede::kernels::chi2_per_ndf_limit(3, ndf);
    EXPECT_NEAR(p2, per2, 0.0005 + 1e-6) << "ndf " << ndf;
    EXPECT_NEAR(p2 * ndf, c2, 0.05 + 1e-6) << "ndf " << ndf;
    EXPECT_NEAR(p3, per3, 0.0005 + 1e-6) << "ndf " << ndf;
    EXPECT_NEAR(gpede::kernels::chi2_3sigma(ndf), c3, 0.05 + 1e-6) << "ndf " << ndf;
  }
  EXPECT_GE(rows, 30);
}

TEST(Chi2Limits, FormulaAboveTable) {
  // above ndf 30: (s + sqrt(2 ndf - 1))^2 / (2 ndf), s = 2.78217 for 3 sigma
  for (int ndf : {31, 50, 137, 1000}) {
    const double s = 2.78217;
    const double expected = (s + std::sqrt(2.0 * ndf - 1.0)) * (s + std::sqrt(2.0 * ndf - 1.0)) / (2.0 * ndf);
    EXPECT_NEAR(gpede::kernels::chi2_per_ndf_limit(3, ndf), expected, 1e-6 * expected);
  }
  EXPECT_EQ(gpede::kernels::chi2_3sigma(0), 0.0f);
  EXPECT_FLOAT_EQ(gpede::kernels::chi2_3sigma(1), 9.0f);
}

TEST(LocalFit, StraightLineClosedForm) {
  // points (-1, 1), (0, -2), (1, 1) with sigma s: the fitted line is y = 0 and chi2 = 6 / s^2.
  // A global offset p on the middle point (derivative 1) with current value 0.5 shifts its
  // corrected value to -2.5; then the line is y = -1/6 and chi2 = ((7/6)^2 * 2 + (7/3)^2) / s^2.
  // The Schur complement of the global is w (1 - h) with leverage h = 1/3 of the middle point;
  // b = w r_middle.
  const double s = 0.5;
  const double w = 1.0 / (s * s);
  Problem p;
  p.n_all = 1;
  p.n_variable = 1;
  p.variable_index = {0};
  p.value = {0.5};
  Record rec;
  const double x[3] = {-1.0, 0.0, 1.0};
  const double y[3] = {1.0, -2.0, 1.0};
  for (int i = 0; i < 3; ++i) {
    Measurement m;
    m.value = y[i];
    m.sigma = s;
    m.locals = {{0, 1.0}};
    if (x[i] != 0.0) m.locals.emplace_back(1, x[i]);
    if (i == 1) m.globals = {{0, 1.0}};
    rec.meas.push_back(m);
  }
  const RecordBatch batch = make_batch({rec});
  const KernelRun run = run_kernels(batch, 0, p, LocalFitOptions{});
  ASSERT_EQ(run.fit.status, LocalFitStatus::accepted);
  EXPECT_EQ(run.fit.ndf, 1);
  const double a = -2.5 / 3.0 + 2.0 / 3.0;  // mean of (1, -2.5, 1)
  EXPECT_NEAR(run.q[0], a, 1e-14);
  EXPECT_NEAR(run.q[1], 0.0, 1e-14);
  const double r_mid = -2.5 - a;
  const double chi2 = w * ((1.0 - a) * (1.0 - a) * 2.0 + r_mid * r_mid);
  EXPECT_NEAR(run.fit.chi2, chi2, 1e-13 * chi2);
  EXPECT_NEAR(run.fit.function_value, chi2, 1e-13 * chi2);
  ASSERT_EQ(run.contribution.size, 1);
  EXPECT_NEAR(run.matrix[0], w * (1.0 - 1.0 / 3.0), 1e-13 * w);
  EXPECT_NEAR(run.vector[0], w * r_mid, 1e-13 * w);
  EXPECT_EQ(run.entries[0], 1);
}

TEST(LocalFit, RandomRecordsMatchLongDoubleReference) {
  std::mt19937_64 rng(20240611);
  const Problem p = random_problem(rng, 40, 8);
  LocalFitOptions options;
  options.scale_global = 1.3;
  options.scale_local = 0.7;
  options.hugecut = 1e30;  // accept every record, whatever its chi2
  int checked = 0;
  for (int n_local : {2, 3, 5, 8, 13, 21, 30, 45, 60}) {
    for (int rep = 0; rep < 4; ++rep) {
      const Record rec = random_record(rng, n_local, p.n_all, 3);
      const RecordBatch batch = make_batch({rec});
      const KernelRun run = run_kernels(batch, 0, p, options);
      const ReferenceFit ref = reference_fit(rec, p, options);
      ASSERT_EQ(run.fit.status, LocalFitStatus::accepted) << "n_local " << n_local;
      ASSERT_TRUE(run.contribution.ok);
      EXPECT_EQ(run.fit.local_parameters, n_local);
      EXPECT_EQ(run.fit.ndf, ref.ndf);
      EXPECT_NEAR(run.fit.chi2, static_cast<double>(ref.chi2), 1e-12 * static_cast<double>(ref.chi2));
      EXPECT_NEAR(run.fit.function_value, static_cast<double>(rec.weight * ref.chi2),
                  1e-12 * static_cast<double>(rec.weight * ref.chi2));
      const double q_scale = static_cast<double>(max_abs(ref.q));
      for (int k = 0; k < n_local; ++k) EXPECT_NEAR(run.q[k], static_cast<double>(ref.q[k]), 1e-12 * q_scale);
      const double c_scale = static_cast<double>(max_abs(ref.c));
      const double b_scale = static_cast<double>(max_abs(ref.b));
      for (int a = 0; a < p.n_variable; ++a) {
        EXPECT_NEAR(run.vector[a], static_cast<double>(ref.b[a]), 1e-12 * b_scale) << "b " << a;
        for (int b = 0; b < p.n_variable; ++b) {
          EXPECT_NEAR(run.matrix[static_cast<std::size_t>(b) * p.n_variable + a], static_cast<double>(ref.c[a][b]),
                      1e-12 * c_scale)
              << "C " << a << "," << b << " n_local " << n_local;
        }
      }
      // entries: every global derivative of a variable label counts
      std::vector<std::int64_t> entries(p.n_all, 0);
      for (const Measurement& m : rec.meas) {
        for (const auto& [label, d] : m.globals) {
          if (p.variable_index[label] >= 0) ++entries[label];
        }
      }
      EXPECT_EQ(run.entries, entries);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 36);
}

TEST(LocalFit, GramUpdateOfPanelsMatchesLongDoubleReference) {
  // C -= Y^T Y on the lower triangle, Y in panels of 8 columns: every tile shape at the edges
  // (k not a multiple of 4 or 8), rows of Y that are zero in some columns (pair records), and the
  // upper triangle left alone.
  namespace kd = gpede::kernels::detail;
  std::mt19937_64 rng(4711);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  int checked = 0;
  for (int k : {1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 31, 37, 100}) {
    for (int n : {1, 2, 5, 11, 36}) {
      std::vector<double> y(kd::padded_columns(static_cast<std::size_t>(k)) * static_cast<std::size_t>(n), 0.0);
      std::vector<std::vector<Real>> dense(n, std::vector<Real>(k, 0.0L));
      for (int i = 0; i < n; ++i) {
        for (int a = 0; a < k; ++a) {
          // the first half of the rows reach only the first half of the columns
          if (i < n / 2 && a >= k / 2 && k > 1) continue;
          const double v = uni(rng);
          y[static_cast<std::size_t>(kd::panel_offset(i, a, n))] = v;
          dense[i][a] = v;
        }
      }
      std::vector<double> c(static_cast<std::size_t>(k) * k);
      for (double& v : c) v = uni(rng);
      const std::vector<double> before = c;
      kd::subtract_gram_lower(y.data(), n, k, c.data());
      for (int b = 0; b < k; ++b) {
        for (int a = 0; a < k; ++a) {
          const std::size_t at = static_cast<std::size_t>(b) * k + a;
          if (a < b) {
            EXPECT_EQ(c[at], before[at]) << "upper triangle touched at " << a << "," << b << " k " << k << " n " << n;
            continue;
          }
          Real expected = before[at];
          for (int i = 0; i < n; ++i) expected -= dense[i][a] * dense[i][b];
          EXPECT_NEAR(c[at], static_cast<double>(expected), 1e-13 * n) << a << "," << b << " k " << k << " n " << n;
        }
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 75);
}

TEST(LocalFit, BorderedBandRecordWithManyLocals) {
  // broken-lines-like: 4 track parameters on every measurement plus a band of 3 kinks, 240 locals
  std::mt19937_64 rng(31);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::uniform_int_distribution<int> label(0, 19);
  const Problem p = random_problem(rng, 20, 3);
  const int n_local = 240;
  Record rec;
  for (int i = 0; i < 2 * (n_local - 4) + 10; ++i) {
    Measurement m;
    m.value = uni(rng);
    m.sigma = 0.5;
    for (int k = 0; k < 4; ++k) m.locals.emplace_back(k, uni(rng));
    for (int k = 0; k < 3; ++k) {
      const int index = 4 + std::min(n_local - 5, i / 2) + k - 1;
      if (index >= 4 && index < n_local) m.locals.emplace_back(index, uni(rng));
    }
    if (i % 3 == 0) m.globals.emplace_back(label(rng), uni(rng));
    rec.meas.push_back(m);
  }
  LocalFitOptions options;
  options.hugecut = 1e30;
  const KernelRun run = run_kernels(make_batch({rec}), 0, p, options);
  const ReferenceFit ref = reference_fit(rec, p, options);
  ASSERT_EQ(run.fit.status, LocalFitStatus::accepted);
  EXPECT_EQ(run.fit.local_parameters, n_local);
  EXPECT_NEAR(run.fit.chi2, static_cast<double>(ref.chi2), 1e-12 * static_cast<double>(ref.chi2));
  const double q_scale = static_cast<double>(max_abs(ref.q));
  for (int k = 0; k < n_local; ++k) EXPECT_NEAR(run.q[k], static_cast<double>(ref.q[k]), 1e-11 * q_scale) << k;
  const double c_scale = static_cast<double>(max_abs(ref.c));
  for (int a = 0; a < p.n_variable; ++a) {
    EXPECT_NEAR(run.vector[a], static_cast<double>(ref.b[a]), 1e-12 * static_cast<double>(max_abs(ref.b)));
    for (int b = 0; b < p.n_variable; ++b) {
      EXPECT_NEAR(run.matrix[static_cast<std::size_t>(b) * p.n_variable + a], static_cast<double>(ref.c[a][b]),
                  1e-12 * c_scale);
    }
  }
}

TEST(LocalFit, FixedAndDuplicateLabelsMerged) {
  // three entries of label 2 (two in one measurement) and one of a fixed label: one slot
  Problem p;
  p.n_all = 4;
  p.n_variable = 3;
  p.variable_index = {0, -1, 1, 2};
  p.value = {0.1, 0.2, -0.3, 0.0};
  Record rec;
  for (int i = 0; i < 5; ++i) {
    Measurement m;
    m.value = 0.1 * i;
    m.sigma = 1.0;
    m.locals = {{0, 1.0}, {1, static_cast<double>(i)}};
    rec.meas.push_back(m);
  }
  rec.meas[1].globals = {{2, 0.5}, {1, 1.0}, {2, 0.25}};
  rec.meas[3].globals = {{2, -1.0}};
  const RecordBatch batch = make_batch({rec});
  const KernelRun run = run_kernels(batch, 0, p, LocalFitOptions{});
  ASSERT_EQ(run.fit.status, LocalFitStatus::accepted);
  ASSERT_EQ(run.contribution.size, 1);
  EXPECT_EQ(run.contribution.index[0], 1);
  EXPECT_EQ(run.contribution.label[0], 2);
  EXPECT_EQ(run.contribution.entries[0], 3);
  const ReferenceFit ref = reference_fit(rec, p, LocalFitOptions{});
  EXPECT_NEAR(run.matrix[1 * 3 + 1], static_cast<double>(ref.c[1][1]), 1e-14);
  EXPECT_NEAR(run.vector[1], static_cast<double>(ref.b[1]), 1e-14);
  EXPECT_NEAR(run.fit.chi2, static_cast<double>(ref.chi2), 1e-14);
}

Record line_record(const std::vector<double>& y, double sigma) {
  Record rec;
  for (std::size_t i = 0; i < y.size(); ++i) {
    Measurement m;
    m.value = y[i];
    m.sigma = sigma;
    m.locals = {{0, 1.0}, {1, static_cast<double>(i)}};
    m.globals = {{0, 1.0}};
    rec.meas.push_back(m);
  }
  return rec;
}

Problem one_label() {
  Problem p;
  p.n_all = 1;
  p.n_variable = 1;
  p.variable_index = {0};
  p.value = {0.0};
  return p;
}

TEST(LocalFit, Rejections) {
  const Problem p = one_label();
  LocalFitOptions options;
  {  // local index 1 unused: Gamma singular
    Record rec;
    for (int i = 0; i < 4; ++i) {
      Measurement m;
      m.value = i;
      m.locals = {{0, 1.0}, {2, static_cast<double>(i)}};
      rec.meas.push_back(m);
    }
    EXPECT_EQ(run_kernels(make_batch({rec}), 0, p, options).fit.status, LocalFitStatus::rank_deficient);
  }
  {  // proportional local derivatives
    Record rec;
    for (int i = 0; i < 4; ++i) {
      Measurement m;
      m.value = i;
      m.locals = {{0, 1.0 + i}, {1, 2.0 + 2.0 * i}};
      rec.meas.push_back(m);
    }
    EXPECT_EQ(run_kernels(make_batch({rec}), 0, p, options).fit.status, LocalFitStatus::rank_deficient);
  }
  {  // nearly proportional local derivatives: the second pivot drops to ~1e-12 of its diagonal
    Record rec;
    for (int i = 0; i < 4; ++i) {
      Measurement m;
      m.value = i;
      m.locals = {{0, 1.0}, {1, 1.0 + 1e-6 * i}};
      rec.meas.push_back(m);
    }
    EXPECT_EQ(run_kernels(make_batch({rec}), 0, p, options).fit.status, LocalFitStatus::rank_deficient);
  }
  {  // fewer measurements than local parameters
    Record rec = line_record({1.0}, 1.0);
    EXPECT_EQ(run_kernels(make_batch({rec}), 0, p, options).fit.status, LocalFitStatus::rank_deficient);
  }
  {  // ndf = 0
    const KernelRun run = run_kernels(make_batch({line_record({1.0, 3.0}, 1.0)}), 0, p, options);
    EXPECT_EQ(run.fit.status, LocalFitStatus::no_degrees_of_freedom);
    EXPECT_EQ(run.fit.function_value, 0.0);
  }
  {  // no local derivatives: skipped
    Record rec;
    Measurement m;
    m.globals = {{0, 1.0}};
    rec.meas = {m, m};
    EXPECT_EQ(run_kernels(make_batch({rec}), 0, p, options).fit.status, LocalFitStatus::no_local_parameters);
  }
  {  // NaN measurement
    Record rec = line_record({0.0, 1.0, std::nan(""), 3.0}, 1.0);
    EXPECT_EQ(run_kernels(make_batch({rec}), 0, p, options).fit.status, LocalFitStatus::rank_deficient);
  }
  // a line with one outlier: residuals of y = (0, 0, d, 0) fitted with a line, ndf = 2
  // chi2 = d^2 * (1 - h) with leverage h = 1/4 + (2 - 1.5)^2 / 5 = 0.3 for x = 0..3
  const double d = 20.0;
  Record outlier = line_record({0.0, 0.0, d, 0.0}, 1.0);
  outlier.weight = 2.0;
  const double chi2 = d * d * 0.7;
  const double limit = static_cast<double>(gpede::kernels::chi2_3sigma(2));
  ASSERT_GT(chi2, 10.0 * limit);
  ASSERT_LT(chi2, 50.0 * limit);
  {
    const KernelRun run = run_kernels(make_batch({outlier}), 0, p, options);
    EXPECT_EQ(run.fit.status, LocalFitStatus::accepted);
    EXPECT_NEAR(run.fit.chi2, chi2, 1e-12 * chi2);
    EXPECT_NEAR(run.fit.function_value, 2.0 * chi2, 1e-12 * chi2);
  }
  {  // hugecut 10: rejected, nothing added to F
    options.hugecut = 10.0;
    const KernelRun run = run_kernels(make_batch({outlier}), 0, p, options);
    EXPECT_EQ(run.fit.status, LocalFitStatus::huge_chi2);
    EXPECT_EQ(run.fit.function_value, 0.0);
    EXPECT_EQ(run.fit.ndf, 2);
    EXPECT_TRUE(run.fit.counts_ndf());
  }
  {  // a negative cut factor switches every chi2 cut off
    options.chi2_cut_factor = -1.0;
    EXPECT_EQ(run_kernels(make_batch({outlier}), 0, p, options).fit.status, LocalFitStatus::accepted);
  }
  {  // chi2 cut factor 3: rejected, the cut value (times the record weight) added to F
    options.hugecut = 50.0;
    options.chi2_cut_factor = 3.0;
    const KernelRun run = run_kernels(make_batch({outlier}), 0, p, options);
    EXPECT_EQ(run.fit.status, LocalFitStatus::chi2_cut);
    EXPECT_NEAR(run.fit.function_value, 2.0 * 3.0 * 11.8290, 2.0 * 3.0 * 1e-3);
  }
}

/// pede's down-weighting written out plainly for one record: returns chi2, down-weight fraction,
/// the final weights (Huber of the final residuals) and the Schur complement with them.
struct DownweightReference {
  Real chi2 = 0.0L;
  Real fraction = 0.0L;
  Real function_value = 0.0L;
  std::vector<Real> final_weight;
  Matrix c;
  std::vector<Real> b;
};

DownweightReference downweight_reference(const Record& rec, const Problem& p, int iterations) {
  const DenseRecord dr = dense_record(rec, p, LocalFitOptions{});
  const int n = dr.n_meas;
  const int nl = dr.n_local;
  const int nv = p.n_variable;
  const Real huber = 1.345L;
  const Real cauchy = 2.3849L;
  std::vector<Real> residual = dr.z;  // residuals of the previous iteration (none: z')
  Matrix gamma;
  DownweightReference ref;
  for (int it = 1; it <= iterations; ++it) {
    std::vector<Real> w(n);
    for (int i = 0; i < n; ++i) {
      const Real zeta = residual[i] / dr.sigma[i];
      Real omega = 1.0L;
      if (it >= 2 && it <= 3 && std::fabs(zeta) > huber) omega = huber / std::fabs(zeta);
      if (it >= 4) omega = 1.0L / (1.0L + (zeta / cauchy) * (zeta / cauchy));
      w[i] = omega / (dr.sigma[i] * dr.sigma[i]);
    }
    gamma = zeros(nl, nl);
    Matrix beta = zeros(nl, 1);
    for (int i = 0; i < n; ++i) {
      for (int a = 0; a < nl; ++a) {
        beta[a][0] += w[i] * dr.d[i][a] * dr.z[i];
        for (int b = 0; b < nl; ++b) gamma[a][b] += w[i] * dr.d[i][a] * dr.d[i][b];
      }
    }
    const Matrix q = gauss_solve(gamma, beta);
    ref.chi2 = 0.0L;
    Real root_sum = 0.0L;
    for (int i = 0; i < n; ++i) {
      Real r = dr.z[i];
      for (int a = 0; a < nl; ++a) r -= dr.d[i][a] * q[a][0];
      residual[i] = r;
      const Real zeta = r / dr.sigma[i];
      const Real t = zeta / cauchy;
      if (it == 1) {
        ref.chi2 += zeta * zeta;
        root_sum += 1.0L;
      } else if (it <= 3) {
        const bool down = std::fabs(zeta) > huber;
        ref.chi2 += down ? 2.0L * huber * (std::fabs(zeta) - 0.5L * huber) : zeta * zeta;
        root_sum += down ? std::sqrt(huber / std::fabs(zeta)) : 1.0L;
      } else {
        ref.chi2 += cauchy * cauchy * std::log(1.0L + t * t);
        root_sum += std::sqrt(1.0L / (1.0L + t * t));
      }
    }
    ref.fraction = (n - root_sum) / n;
  }
  // global contribution: Huber weights of the final residuals, Gamma of the last iteration
  Matrix dwg = zeros(nl, nv);
  Matrix gwg = zeros(nv, nv);
  ref.b.assign(nv, 0.0L);
  for (int i = 0; i < n; ++i) {
    const Real zeta = residual[i] / dr.sigma[i];
    const bool down = std::fabs(zeta) > huber;
    const Real w = (down ? huber / std::fabs(zeta) : 1.0L) / (dr.sigma[i] * dr.sigma[i]);
    ref.function_value += rec.weight * (down ? 2.0L * huber * (std::fabs(zeta) - 0.5L * huber) : zeta * zeta);
    ref.final_weight.push_back(w);
    for (int a = 0; a < nv; ++a) {
      ref.b[a] += rec.weight * w * dr.g[i][a] * residual[i];
      for (int b = 0; b < nv; ++b) gwg[a][b] += w * dr.g[i][a] * dr.g[i][b];
      for (int k = 0; k < nl; ++k) dwg[k][a] += w * dr.d[i][k] * dr.g[i][a];
    }
  }
  const Matrix gi = gauss_solve(gamma, dwg);
  ref.c = zeros(nv, nv);
  for (int a = 0; a < nv; ++a) {
    for (int b = 0; b < nv; ++b) {
      Real s = gwg[a][b];
      for (int k = 0; k < nl; ++k) s -= dwg[k][a] * gi[k][b];
      ref.c[a][b] = rec.weight * s;
    }
  }
  return ref;
}

TEST(LocalFit, DownweightingHuberAndCauchy) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> noise(0.0, 1.0);
  Problem p;
  p.n_all = 3;
  p.n_variable = 3;
  p.variable_index = {0, 1, 2};
  p.value = {0.0, 0.0, 0.0};
  Record rec;
  rec.weight = 1.5;
  const int n = 12;
  const int outlier = 5;
  for (int i = 0; i < n; ++i) {
    Measurement m;
    m.sigma = 0.1;
    m.value = 0.3 + 0.02 * i + 0.1 * noise(rng) + (i == outlier ? 1.0 : 0.0);  // 10 sigma outlier
    m.locals = {{0, 1.0}, {1, static_cast<double>(i)}};
    m.globals = {{i % 3, 1.0}};
    rec.meas.push_back(m);
  }
  const RecordBatch batch = make_batch({rec});
  for (int iterations : {2, 3, 4, 6}) {
    LocalFitOptions options;
    options.downweight_iterations = iterations;
    const KernelRun run = run_kernels(batch, 0, p, options);
    const DownweightReference ref = downweight_reference(rec, p, iterations);
    ASSERT_EQ(run.fit.status, LocalFitStatus::accepted) << iterations;
    EXPECT_NEAR(run.fit.chi2, static_cast<double>(ref.chi2), 1e-12 * static_cast<double>(ref.chi2)) << iterations;
    EXPECT_NEAR(run.fit.downweight_fraction, static_cast<double>(ref.fraction), 1e-12) << iterations;
    EXPECT_NEAR(run.fit.function_value, static_cast<double>(ref.function_value),
                1e-12 * static_cast<double>(ref.function_value));
    for (int i = 0; i < n; ++i) {
      EXPECT_NEAR(run.weight[i], static_cast<double>(ref.final_weight[i]), 1e-12 * 100.0) << i;
    }
    // the outlier's weight follows Huber: omega = c / |zeta| < 1
    EXPECT_LT(run.weight[outlier], 0.25 * 100.0);
    const double c_scale = static_cast<double>(max_abs(ref.c));
    for (int a = 0; a < 3; ++a) {
      EXPECT_NEAR(run.vector[a], static_cast<double>(ref.b[a]), 1e-12 * static_cast<double>(max_abs(ref.b)));
      for (int b = 0; b < 3; ++b) {
        EXPECT_NEAR(run.matrix[b * 3 + a], static_cast<double>(ref.c[a][b]), 1e-12 * c_scale);
      }
    }
    // down-weight fraction cut: with a cut just below the fraction the record is rejected and
    // its chi2 (times the record weight) goes into F
    options.dwfractioncut = run.fit.downweight_fraction * 0.999;
    const KernelRun cut = run_kernels(batch, 0, p, options);
    EXPECT_EQ(cut.fit.status, LocalFitStatus::downweight_fraction);
    EXPECT_NEAR(cut.fit.function_value, 1.5 * run.fit.chi2, 1e-12 * run.fit.chi2);
  }
  // the Huber weight of the outlier, checked against the formula on its own residual
  LocalFitOptions options;
  options.downweight_iterations = 3;
  const DownweightReference ref = downweight_reference(rec, p, 3);
  const KernelRun run = run_kernels(batch, 0, p, options);
  const Real w0 = 1.0L / (0.1L * 0.1L);
  EXPECT_LT(ref.final_weight[outlier], w0);
  EXPECT_NEAR(run.weight[outlier], static_cast<double>(ref.final_weight[outlier]), 1e-10);
}

// ---------------------------------------------------------------------------------------------
// CPU accumulator

// Records whose local system is a band (no border) or two bordered bands (a pair of broken-lines
// tracks, each with 3 track parameters in every one of its measurements): the fit takes its band
// order and envelope (border moved last) and still matches the long-double reference.
TEST(LocalFit, BandEnvelopesMatchLongDoubleReference) {
  std::mt19937_64 rng(57);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::uniform_int_distribution<int> label(0, 29);
  const Problem p = random_problem(rng, 30, 4);
  LocalFitOptions options;
  options.hugecut = 1e30;
  struct Case {
    int tracks;
    int border;  // track parameters per track
    int band;    // band parameters per track
    int expected_border_start;
  };
  for (const Case c : {Case{1, 0, 120, 120}, Case{2, 3, 90, 180}, Case{1, 2, 300, 300}}) {
    Record rec;
    const int per_track = c.border + c.band;
    for (int t = 0; t < c.tracks; ++t) {
      for (int i = 0; i < 2 * c.band + 6; ++i) {
        Measurement m;
        m.value = 0.1 * uni(rng);
        m.sigma = 0.05 + 0.01 * (i % 5);
        for (int k = 0; k < c.border; ++k) m.locals.emplace_back(t * per_track + k, uni(rng));
        for (int k = -1; k <= 1; ++k) {
          const int index = std::min(c.band - 1, std::max(0, i / 2 + k));
          m.locals.emplace_back(t * per_track + c.border + index, uni(rng));
        }
        if (i % 2 == 0) m.globals.emplace_back(label(rng), uni(rng));
        rec.meas.push_back(m);
      }
    }
    const int n_local = c.tracks * per_track;
    const KernelRun run = run_kernels(make_batch({rec}), 0, p, options);
    const ReferenceFit ref = reference_fit(rec, p, options);
    ASSERT_EQ(run.fit.status, LocalFitStatus::accepted) << n_local;
    EXPECT_EQ(run.fit.local_parameters, n_local);
    EXPECT_EQ(run.fit.banded, 1) << n_local << " local parameters";
    EXPECT_EQ(run.fit.border_start, c.expected_border_start) << n_local << " local parameters";
    EXPECT_NEAR(run.fit.chi2, static_cast<double>(ref.chi2), 1e-11 * static_cast<double>(ref.chi2));
    const double q_scale = static_cast<double>(max_abs(ref.q));
    for (int k = 0; k < n_local; ++k) EXPECT_NEAR(run.q[k], static_cast<double>(ref.q[k]), 1e-10 * q_scale) << k;
    const double c_scale = static_cast<double>(max_abs(ref.c));
    const double b_scale = static_cast<double>(max_abs(ref.b));
    for (int a = 0; a < p.n_variable; ++a) {
      EXPECT_NEAR(run.vector[a], static_cast<double>(ref.b[a]), 1e-11 * b_scale);
      for (int b = 0; b < p.n_variable; ++b) {
        EXPECT_NEAR(run.matrix[static_cast<std::size_t>(b) * p.n_variable + a], static_cast<double>(ref.c[a][b]),
                    1e-11 * c_scale)
            << n_local << " local parameters, C " << a << "," << b;
      }
    }
    // down-weighting iterates the banded fit with new weights
    LocalFitOptions weighted = options;
    weighted.downweight_iterations = 3;
    const KernelRun down = run_kernels(make_batch({rec}), 0, p, weighted);
    const DownweightReference dref = downweight_reference(rec, p, 3);
    ASSERT_EQ(down.fit.status, LocalFitStatus::accepted);
    EXPECT_EQ(down.fit.banded, 1);
    EXPECT_NEAR(down.fit.chi2, static_cast<double>(dref.chi2), 1e-10 * static_cast<double>(dref.chi2)) << n_local;
    EXPECT_NEAR(down.fit.downweight_fraction, static_cast<double>(dref.fraction), 1e-10) << n_local;
  }
}

gpede::detail::PassSetup setup_of(const Problem& p, const LocalFitOptions& options, bool build) {
  gpede::detail::PassSetup setup;
  setup.build_matrix = build;
  setup.n_all = p.n_all;
  setup.n_variable = p.n_variable;
  setup.parameter_value = p.value;
  setup.variable_index = p.variable_index;
  setup.fit = options;
  return setup;
}

TEST(CpuAccumulator, FullJointReferenceSmall) {
  // every local parameter of 60 records in one dense joint system, eliminated
  std::mt19937_64 rng(99);
  const Problem p = random_problem(rng, 25, 4);
  std::vector<Record> records;
  std::uniform_int_distribution<int> n_local(2, 6);
  for (int r = 0; r < 60; ++r) records.push_back(random_record(rng, n_local(rng), p.n_all, 3));
  LocalFitOptions options;
  options.hugecut = 1e30;
  const auto [c_ref, b_ref] = joint_reference(records, p, options);
  gpede::detail::CpuAccumulator acc(2);
  acc.begin_pass(setup_of(p, options, true));
  acc.accumulate(make_batch(records));
  const gpede::detail::PassTotals totals = acc.end_pass();
  EXPECT_EQ(totals.accepted, 60);
  const std::vector<double>& m = acc.matrix();
  const double c_scale = static_cast<double>(max_abs(c_ref));
  const double b_scale = static_cast<double>(max_abs(b_ref));
  for (int a = 0; a < p.n_variable; ++a) {
    EXPECT_NEAR(totals.rhs[a], static_cast<double>(b_ref[a]), 1e-12 * b_scale);
    for (int b = 0; b < p.n_variable; ++b) {
      EXPECT_NEAR(m[static_cast<std::size_t>(b) * p.n_variable + a], static_cast<double>(c_ref[a][b]), 1e-12 * c_scale)
          << a << "," << b;
    }
  }
}

TEST(CpuAccumulator, MatchesJointEliminationAndThreadCounts) {
  std::mt19937_64 rng(12345);
  const Problem p = random_problem(rng, 36, 6);  // 30 variable global parameters
  ASSERT_EQ(p.n_variable, 30);
  std::vector<Record> records;
  std::uniform_int_distribution<int> n_local(2, 8);
  for (int r = 0; r < 500; ++r) records.push_back(random_record(rng, n_local(rng), p.n_all, 3));
  LocalFitOptions options;
  options.hugecut = 1e30;
  options.scale_global = 1.2;
  options.scale_local = 0.9;

  // reference: the locals of different records do not couple, so the joint elimination is done
  // record by record and summed
  Matrix c_ref = zeros(p.n_variable, p.n_variable);
  std::vector<Real> b_ref(p.n_variable, 0.0L);
  Real f_ref = 0.0L;
  std::int64_t ndf_ref = 0;
  std::vector<std::int64_t> entries_ref(p.n_all, 0);
  for (const Record& rec : records) {
    const auto [c, b] = joint_reference({rec}, p, options);
    for (int a = 0; a < p.n_variable; ++a) {
      b_ref[a] += b[a];
      for (int k = 0; k < p.n_variable; ++k) c_ref[a][k] += c[a][k];
    }
    const ReferenceFit fit = reference_fit(rec, p, options);
    f_ref += rec.weight * fit.chi2;
    ndf_ref += fit.ndf;
    for (const Measurement& m : rec.meas) {
      for (const auto& [label, d] : m.globals) {
        if (p.variable_index[label] >= 0) ++entries_ref[label];
      }
    }
  }

  const RecordBatch all = make_batch(records);
  const RecordBatch first = make_batch(std::vector<Record>(records.begin(), records.begin() + 200));
  const RecordBatch second = make_batch(std::vector<Record>(records.begin() + 200, records.end()));
  std::vector<std::vector<double>> matrices;
  std::vector<std::vector<double>> vectors;
  for (int threads : {1, 2}) {
    gpede::detail::CpuAccumulator acc(threads);
    acc.begin_pass(setup_of(p, options, true));
    acc.accumulate(first);
    acc.accumulate(second);
    const gpede::detail::PassTotals totals = acc.end_pass();
    EXPECT_EQ(totals.records, 500);
    EXPECT_EQ(totals.accepted, 500);
    EXPECT_EQ(totals.rejected(), 0);
    EXPECT_EQ(totals.ndf_sum, ndf_ref);
    EXPECT_NEAR(totals.function_value, static_cast<double>(f_ref), 1e-12 * static_cast<double>(f_ref));
    EXPECT_NEAR(totals.chi2_sum, static_cast<double>(f_ref), 1e-12 * static_cast<double>(f_ref));
    EXPECT_EQ(totals.entries_accepted, entries_ref);
    const std::vector<double>& m = acc.matrix();
    ASSERT_EQ(m.size(), static_cast<std::size_t>(p.n_variable * p.n_variable));
    const double c_scale = static_cast<double>(max_abs(c_ref));
    const double b_scale = static_cast<double>(max_abs(b_ref));
    for (int a = 0; a < p.n_variable; ++a) {
      EXPECT_NEAR(totals.rhs[a], static_cast<double>(b_ref[a]), 1e-12 * b_scale);
      for (int b = 0; b < p.n_variable; ++b) {
        EXPECT_NEAR(m[static_cast<std::size_t>(b) * p.n_variable + a], static_cast<double>(c_ref[a][b]), 1e-12 * c_scale)
            << threads << " threads, " << a << "," << b;
      }
    }
    matrices.push_back(m);
    vectors.push_back(totals.rhs);

    // a pass without the matrix leaves it as it was and gives the same b and F
    acc.begin_pass(setup_of(p, options, false));
    acc.accumulate(all);
    const gpede::detail::PassTotals again = acc.end_pass();
    EXPECT_EQ(acc.matrix(), m);
    EXPECT_NEAR(again.function_value, totals.function_value, 1e-12 * totals.function_value);
    for (int a = 0; a < p.n_variable; ++a) EXPECT_NEAR(again.rhs[a], totals.rhs[a], 1e-12 * b_scale);
  }
  double scale = 0.0;
  for (double v : matrices[0]) scale = std::max(scale, std::fabs(v));
  for (std::size_t k = 0; k < matrices[0].size(); ++k) EXPECT_NEAR(matrices[0][k], matrices[1][k], 1e-12 * scale);
  for (std::size_t k = 0; k < vectors[0].size(); ++k) {
    EXPECT_NEAR(vectors[0][k], vectors[1][k], 1e-12 * std::max(1.0, std::fabs(vectors[0][k])));
  }
}

// Pass sums with several threads are the same bit for bit on every run: a result, or pede's
// "function not decreasing" decision at a converged point, must not depend on which thread came
// free first. Threads are made to finish their chunks at random speeds.
TEST(CpuAccumulator, SumsAreReproducibleRunToRun) {
  std::mt19937_64 rng(777);
  const Problem p = random_problem(rng, 24, 4);
  std::vector<Record> records;
  std::uniform_int_distribution<int> n_local(2, 6);
  for (int r = 0; r < 3000; ++r) records.push_back(random_record(rng, n_local(rng), p.n_all, 3));
  LocalFitOptions options;
  options.hugecut = 1e30;
  const RecordBatch batch = make_batch(records);
  gpede::detail::PassTotals first;
  std::vector<double> first_matrix;
  for (int run = 0; run < 6; ++run) {
    gpede::detail::CpuAccumulator acc(4);
    acc.begin_pass(setup_of(p, options, true));
    if (run % 2 == 1) {
      // a competing busy thread so that the workers are scheduled differently on each run
      std::atomic<bool> stop{false};
      std::thread noise([&] {
        volatile double x = 0.0;
        while (!stop.load()) x = x + 1.0;
      });
      acc.accumulate(batch);
      stop.store(true);
      noise.join();
    } else {
      acc.accumulate(batch);
    }
    const gpede::detail::PassTotals totals = acc.end_pass();
    if (run == 0) {
      first = totals;
      first_matrix = acc.matrix();
      continue;
    }
    EXPECT_EQ(totals.function_value, first.function_value) << "run " << run;
    EXPECT_EQ(totals.chi2_sum, first.chi2_sum) << "run " << run;
    EXPECT_EQ(totals.rhs, first.rhs) << "run " << run;
    EXPECT_EQ(acc.matrix(), first_matrix) << "run " << run;
  }
}

TEST(CpuAccumulator, CountsRejections) {
  const Problem p = one_label();
  std::vector<Record> records;
  records.push_back(line_record({0.0, 1.0, 2.0, 3.1}, 1.0));        // accepted
  records.push_back(line_record({0.0, 0.0, 20.0, 0.0}, 1.0));       // chi2 280: huge with hugecut 10
  records.push_back(line_record({1.0, 2.0}, 1.0));                  // ndf 0
  Record singular;
  for (int i = 0; i < 4; ++i) {
    Measurement m;
    m.value = i;
    m.locals = {{0, 1.0}, {1, 1.0}};
    singular.meas.push_back(m);
  }
  records.push_back(singular);                                      // rank deficient
  records.push_back(line_record({0.0, 0.0, 4.0, 0.0}, 1.0));        // chi2 11.2: cut with factor 0.5
  Record no_local;
  Measurement m;
  m.globals = {{0, 1.0}};
  no_local.meas = {m, m, m};
  records.push_back(no_local);                                      // skipped
  Record sparse_locals = line_record({0.0, 1.0, 2.0}, 1.0);
  sparse_locals.meas[1].locals.emplace_back(15000, 1.0);
  records.push_back(sparse_locals);                                 // 15001 locals, 3 measurements
  LocalFitOptions options;
  options.hugecut = 10.0;
  options.chi2_cut_factor = 0.5;
  gpede::detail::CpuAccumulator acc(2);
  acc.begin_pass(setup_of(p, options, true));
  acc.accumulate(make_batch(records));
  const gpede::detail::PassTotals totals = acc.end_pass();
  EXPECT_EQ(totals.records, 7);
  EXPECT_EQ(totals.accepted, 1);
  EXPECT_EQ(totals.rejected_rank, 2);  // singular; more local parameters than measurements
  EXPECT_EQ(totals.rejected_ndf, 1);   // 2 measurements, 2 local parameters
  EXPECT_EQ(totals.rejected_huge, 1);
  EXPECT_EQ(totals.rejected_cut, 1);
  EXPECT_EQ(totals.rejected_downweight, 0);
  EXPECT_EQ(totals.rejected(), 5);
  // ndf: accepted (2) + huge (2) + cut (2), as pede sums them
  EXPECT_EQ(totals.ndf_sum, 6);
  const ReferenceFit accepted = reference_fit(records[0], p, options);
  const double cut_value = 0.5 * static_cast<double>(gpede::kernels::chi2_3sigma(2));
  EXPECT_NEAR(totals.chi2_sum, static_cast<double>(accepted.chi2), 1e-13);
  EXPECT_NEAR(totals.function_value, static_cast<double>(accepted.chi2) + cut_value, 1e-6);
  EXPECT_EQ(totals.entries_accepted[0], 4);
}

TEST(CpuAccumulator, RejectsBadBatches) {
  const Problem p = one_label();
  gpede::detail::CpuAccumulator acc(2);
  RecordBatch batch = make_batch({line_record({0.0, 1.0, 2.0}, 1.0)});
  EXPECT_THROW(acc.accumulate(batch), gpede::RuntimeError);  // no pass
  acc.begin_pass(setup_of(p, LocalFitOptions{}, true));
  batch.global_index[1] = 5;  // outside the label map
  EXPECT_THROW(acc.accumulate(batch), gpede::RuntimeError);
  acc.begin_pass(setup_of(p, LocalFitOptions{}, true));
  batch.global_index[1] = 0;
  batch.local_index[0] = -1;
  EXPECT_THROW(acc.accumulate(batch), gpede::RuntimeError);
  acc.begin_pass(setup_of(p, LocalFitOptions{}, true));
  batch.local_index[0] = 0;
  batch.record_weight.clear();
  EXPECT_THROW(acc.accumulate(batch), gpede::RuntimeError);
}

}  // namespace
