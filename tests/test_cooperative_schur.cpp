// The cooperative per-record code of the CUDA accumulation kernel (gpede/kernels/cooperative_schur.hpp),
// run on the host phase by phase over the ranks of a group, against the CPU accumulator: the same
// records give the same global matrix, b, entry counts and pass sums (1e-12), whatever the group
// size. Record shapes at the edges: one measurement, no globals, 300 local parameters, 2,000
// distinct globals, duplicate and fixed labels, rejections and down-weighting.
#include <gtest/gtest.h>

#include "gpede/detail/batch_layout.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gpede/detail/cpu_accumulator.hpp"
#include "gpede/kernels/cooperative_schur.hpp"
#include "gpede/kernels/local_fit.hpp"
#include "gpede/record_batch.hpp"
#include "test_records.hpp"

namespace {

using gpede::test::make_batch;
using gpede::test::Measurement;
using gpede::test::Record;

namespace coop = gpede::kernels::coop;
using gpede::RecordBatch;
using gpede::kernels::LocalFitOptions;
using gpede::kernels::LocalFitStatus;


struct Problem {
  int n_all = 0;
  int n_variable = 0;
  std::vector<std::int32_t> variable_index;
  std::vector<double> value;
};

Problem make_problem(std::mt19937_64& rng, int n_all, int n_fixed) {
  Problem p;
  p.n_all = n_all;
  std::vector<int> order(n_all);
  for (int i = 0; i < n_all; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<bool> fixed(n_all, false);
  for (int i = 0; i < n_fixed && i < n_all; ++i) fixed[order[i]] = true;
  std::uniform_real_distribution<double> value(-0.05, 0.05);
  for (int i = 0; i < n_all; ++i) {
    p.variable_index.push_back(fixed[i] ? -1 : p.n_variable++);
    p.value.push_back(value(rng));
  }
  return p;
}


/// A track-like record: n_local local parameters, n_local + extra measurements, each with up to
/// `labels_per_meas` global labels out of [first_label, first_label + label_span) (duplicates and
/// repeated labels within one measurement included), some measurements without globals.
Record random_record(std::mt19937_64& rng, int n_local, int extra, int first_label, int label_span,
                     int labels_per_meas) {
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::uniform_real_distribution<double> sig(0.5, 2.0);
  std::uniform_int_distribution<int> label(first_label, first_label + label_span - 1);
  std::uniform_int_distribution<int> n_labels(0, labels_per_meas);
  std::bernoulli_distribution use(std::min(1.0, 4.0 / n_local + 0.05));
  std::bernoulli_distribution rare(0.2);
  Record rec;
  rec.weight = rare(rng) ? 2.5 : 1.0;
  for (int i = 0; i < n_local + extra; ++i) {
    Measurement m;
    m.sigma = sig(rng);
    m.value = uni(rng);
    for (int k = 0; k < n_local; ++k) {
      if (k == i % n_local || use(rng)) m.locals.emplace_back(k, uni(rng));
    }
    const int nl = n_labels(rng);
    for (int k = 0; k < nl; ++k) m.globals.emplace_back(label(rng), uni(rng));
    if (!m.globals.empty() && rare(rng)) m.globals.push_back(m.globals.front());
    rec.meas.push_back(std::move(m));
  }
  return rec;
}

gpede::kernels::RecordBatchView view_of(const RecordBatch& b) { return gpede::detail::host_view(b); }

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

/// The sink of the host runs: a dense global system, as the device's atomic adds build it.
struct DenseSink {
  std::int64_t n = 0;
  std::vector<double> matrix;  // n x n, lower triangle
  std::vector<double> rhs;
  std::vector<std::int64_t> entries;
  std::int64_t outside_lower = 0;  // adds at row < col: never expected
  void add_matrix(std::int32_t row, std::int32_t col, double value) {
    if (row < col) ++outside_lower;
    matrix[static_cast<std::size_t>(col) * static_cast<std::size_t>(n) + static_cast<std::size_t>(row)] += value;
  }
  void add_vector(std::int32_t index, double value) { rhs[static_cast<std::size_t>(index)] += value; }
  void add_entries(std::int32_t label, std::int32_t count) { entries[static_cast<std::size_t>(label)] += count; }
};

struct CoopPass {
  DenseSink sink;
  gpede::detail::PassTotals totals;
  std::int64_t overflows = 0;
};

/// Every record of the batch through the cooperative phases with groups of `group` threads, the
/// scratch sized for the batch's largest record (as the device does per size class), booked as
/// the device kernel books them.
CoopPass run_cooperative(const RecordBatch& batch, const Problem& p, const LocalFitOptions& options, bool build,
                         int group) {
  const auto view = view_of(batch);
  gpede::kernels::GlobalStateView state;
  state.n_all = p.n_all;
  state.n_variable = p.n_variable;
  state.parameter_value = p.value.data();
  state.variable_index = p.variable_index.data();
  gpede::kernels::RecordShape capacity;
  for (std::int64_t r = 0; r < view.n_records; ++r) {
    capacity = gpede::kernels::max_shape(capacity, gpede::kernels::record_shape(view, r));
  }
  std::vector<double> buffer(coop::cooperative_scratch_bytes(capacity) / sizeof(double) + 1);
  const coop::Scratch scratch = coop::make_scratch(buffer.data(), capacity);
  CoopPass pass;
  pass.sink.n = p.n_variable;
  pass.sink.matrix.assign(static_cast<std::size_t>(p.n_variable) * static_cast<std::size_t>(p.n_variable), 0.0);
  pass.sink.rhs.assign(static_cast<std::size_t>(p.n_variable), 0.0);
  pass.sink.entries.assign(static_cast<std::size_t>(p.n_all), 0);
  gpede::detail::PassTotals& t = pass.totals;
  for (std::int64_t r = 0; r < view.n_records; ++r) {
    const coop::RecordState rs = coop::run_record_on_host(group, view, state, r, options, scratch, build, pass.sink);
    const auto& fit = rs.fit;
    ++t.records;
    if (fit.counts_ndf()) t.ndf_sum += fit.ndf;
    t.function_value += fit.function_value;
    switch (fit.status) {
      case LocalFitStatus::accepted:
        ++t.accepted;
        t.chi2_sum += fit.function_value;
        break;
      case LocalFitStatus::rank_deficient:
        ++t.rejected_rank;
        break;
      case LocalFitStatus::no_degrees_of_freedom:
        ++t.rejected_ndf;
        break;
      case LocalFitStatus::huge_chi2:
        ++t.rejected_huge;
        break;
      case LocalFitStatus::chi2_cut:
        ++t.rejected_cut;
        break;
      case LocalFitStatus::downweight_fraction:
        ++t.rejected_downweight;
        break;
      default:
        break;
    }
    pass.overflows += rs.overflow;
  }
  return pass;
}

struct CpuPass {
  gpede::detail::PassTotals totals;
  std::vector<double> matrix;
};

CpuPass run_cpu(const RecordBatch& batch, const Problem& p, const LocalFitOptions& options, bool build) {
  gpede::detail::CpuAccumulator acc(1);
  acc.begin_pass(setup_of(p, options, build));
  acc.accumulate(batch);
  CpuPass out;
  out.totals = acc.end_pass();
  if (build) out.matrix = acc.matrix();
  return out;
}

double max_abs(const std::vector<double>& v) {
  double m = 0.0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

/// The cooperative pass agrees with the CPU accumulator: counts exactly, sums to 1e-12 of their
/// scale, the lower triangle of the matrix to 1e-12 of its largest element.
void expect_same(const CoopPass& coop_pass, const CpuPass& cpu, const Problem& p, bool build, const char* what) {
  SCOPED_TRACE(what);
  const auto& a = coop_pass.totals;
  const auto& b = cpu.totals;
  EXPECT_EQ(coop_pass.overflows, 0);
  EXPECT_EQ(coop_pass.sink.outside_lower, 0);
  EXPECT_EQ(a.records, b.records);
  EXPECT_EQ(a.accepted, b.accepted);
  EXPECT_EQ(a.rejected_rank, b.rejected_rank);
  EXPECT_EQ(a.rejected_ndf, b.rejected_ndf);
  EXPECT_EQ(a.rejected_huge, b.rejected_huge);
  EXPECT_EQ(a.rejected_cut, b.rejected_cut);
  EXPECT_EQ(a.rejected_downweight, b.rejected_downweight);
  EXPECT_EQ(a.ndf_sum, b.ndf_sum);
  EXPECT_NEAR(a.function_value, b.function_value, 1e-12 * std::fabs(b.function_value));
  EXPECT_NEAR(a.chi2_sum, b.chi2_sum, 1e-12 * std::fabs(b.chi2_sum));
  EXPECT_EQ(coop_pass.sink.entries, b.entries_accepted);
  const double b_scale = std::max(max_abs(b.rhs), 1e-300);
  ASSERT_EQ(coop_pass.sink.rhs.size(), b.rhs.size());
  for (std::size_t k = 0; k < b.rhs.size(); ++k) EXPECT_NEAR(coop_pass.sink.rhs[k], b.rhs[k], 1e-12 * b_scale) << "b " << k;
  if (!build) return;
  const double c_scale = std::max(max_abs(cpu.matrix), 1e-300);
  const std::int64_t n = p.n_variable;
  std::int64_t bad = 0;
  double worst = 0.0;
  for (std::int64_t col = 0; col < n; ++col) {
    for (std::int64_t row = col; row < n; ++row) {
      const std::size_t at = static_cast<std::size_t>(col * n + row);
      const double d = std::fabs(coop_pass.sink.matrix[at] - cpu.matrix[at]);
      worst = std::max(worst, d);
      if (d > 1e-12 * c_scale) ++bad;
    }
    for (std::int64_t row = 0; row < col; ++row) {
      if (coop_pass.sink.matrix[static_cast<std::size_t>(col * n + row)] != 0.0) ++bad;  // upper triangle untouched
    }
  }
  EXPECT_EQ(bad, 0) << "worst difference " << worst << " of scale " << c_scale;
}

void compare_all_groups(const std::vector<Record>& records, const Problem& p, const LocalFitOptions& options,
                        const char* what) {
  const RecordBatch batch = make_batch(records);
  for (const bool build : {true, false}) {
    const CpuPass cpu = run_cpu(batch, p, options, build);
    for (const int group : {1, 3, 32, 128}) {
      const CoopPass c = run_cooperative(batch, p, options, build, group);
      expect_same(c, cpu, p, build,
                  (std::string(what) + ", group of " + std::to_string(group) + (build ? ", matrix" : ", b only")).c_str());
    }
  }
}

TEST(CooperativeSchur, RandomTracksMatchCpuAccumulator) {
  std::mt19937_64 rng(2026);
  const Problem p = make_problem(rng, 90, 10);
  std::vector<Record> records;
  std::uniform_int_distribution<int> n_local(1, 12);
  std::uniform_int_distribution<int> extra(1, 20);
  for (int r = 0; r < 120; ++r) records.push_back(random_record(rng, n_local(rng), extra(rng), 0, p.n_all, 4));
  LocalFitOptions options;
  options.hugecut = 1e30;
  options.scale_global = 1.2;
  options.scale_local = 0.8;
  compare_all_groups(records, p, options, "random tracks");
}

TEST(CooperativeSchur, RejectionsAndDownweightingMatchCpuAccumulator) {
  std::mt19937_64 rng(7);
  const Problem p = make_problem(rng, 40, 4);
  std::vector<Record> records;
  std::uniform_int_distribution<int> n_local(2, 6);
  for (int r = 0; r < 200; ++r) {
    Record rec = random_record(rng, n_local(rng), 6, 0, p.n_all, 3);
    if (r % 7 == 0) rec.meas[0].value += 40.0;  // an outlier: down-weighted or cut
    records.push_back(std::move(rec));
  }
  LocalFitOptions options;
  options.chi2_cut_factor = 2.0;
  options.hugecut = 30.0;
  options.downweight_iterations = 4;
  options.dwfractioncut = 0.1;
  const CpuPass cpu = run_cpu(make_batch(records), p, options, true);
  ASSERT_GT(cpu.totals.rejected(), 0) << "the test needs rejected records";
  ASSERT_GT(cpu.totals.accepted, 0);
  compare_all_groups(records, p, options, "cuts and down-weighting");
}

TEST(CooperativeSchur, EdgeShapesMatchCpuAccumulator) {
  std::mt19937_64 rng(11);
  const Problem p = make_problem(rng, 30, 3);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::vector<Record> records;
  {  // one measurement, one local parameter: no degrees of freedom
    Record rec;
    Measurement m;
    m.value = 0.3;
    m.locals = {{0, 1.0}};
    m.globals = {{2, 0.5}};
    rec.meas.push_back(m);
    records.push_back(rec);
  }
  {  // one measurement without local parameters: skipped
    Record rec;
    Measurement m;
    m.value = 0.3;
    m.globals = {{2, 0.5}};
    rec.meas.push_back(m);
    records.push_back(rec);
  }
  // no global derivatives at all, and only fixed labels
  records.push_back(random_record(rng, 3, 5, 0, 1, 0));
  {
    Record rec = random_record(rng, 3, 5, 0, 1, 0);
    int fixed = 0;
    while (p.variable_index[fixed] >= 0) ++fixed;
    for (Measurement& m : rec.meas) m.globals = {{fixed, uni(rng)}};
    records.push_back(rec);
  }
  // exactly one distinct global, and 8, 9 and 13 (edges of the panels and tiles)
  for (int span : {1, 8, 9, 13}) {
    Record rec = random_record(rng, 4, 10, 0, span, 2);
    records.push_back(rec);
  }
  // two measurements, one local: one degree of freedom
  {
    Record rec;
    for (int i = 0; i < 2; ++i) {
      Measurement m;
      m.value = 0.1 * (i + 1);
      m.locals = {{0, 1.0}};
      m.globals = {{5, 1.0 + i}, {7, -0.5}};
      rec.meas.push_back(m);
    }
    records.push_back(rec);
  }
  LocalFitOptions options;
  options.hugecut = 1e30;
  compare_all_groups(records, p, options, "edge shapes");
}

TEST(CooperativeSchur, ThreeHundredLocalParameters) {
  // broken-lines-like: 4 track parameters on every measurement and a band of kinks, 300 locals
  std::mt19937_64 rng(300);
  const Problem p = make_problem(rng, 60, 5);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::uniform_int_distribution<int> label(0, p.n_all - 1);
  const int n_local = 300;
  std::vector<Record> records;
  for (int t = 0; t < 2; ++t) {
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
      if (i % 2 == 0) {
        m.globals.emplace_back(label(rng), uni(rng));
        m.globals.emplace_back(label(rng), uni(rng));
      }
      rec.meas.push_back(m);
    }
    records.push_back(rec);
  }
  LocalFitOptions options;
  options.hugecut = 1e30;
  const CpuPass cpu = run_cpu(make_batch(records), p, options, true);
  ASSERT_EQ(cpu.totals.accepted, 2);
  compare_all_groups(records, p, options, "300 locals");
}

TEST(CooperativeSchur, TwoThousandGlobals) {
  // one record reaching 2,000 distinct globals (and a smaller one sharing some of them)
  std::mt19937_64 rng(2000);
  const Problem p = make_problem(rng, 2010, 10);
  std::vector<Record> records;
  records.push_back(random_record(rng, 8, 1000, 0, p.n_all, 12));
  records.push_back(random_record(rng, 5, 40, 0, 100, 3));
  LocalFitOptions options;
  options.hugecut = 1e30;
  const RecordBatch batch = make_batch(records);
  const auto view = view_of(batch);
  std::vector<double> scratch(gpede::kernels::local_fit_scratch_bytes(gpede::kernels::record_shape(view, 0)) / 8 + 1);
  gpede::kernels::GlobalStateView state;
  state.n_all = p.n_all;
  state.n_variable = p.n_variable;
  state.parameter_value = p.value.data();
  state.variable_index = p.variable_index.data();
  const auto s = gpede::kernels::make_local_fit_scratch(scratch.data(), gpede::kernels::record_shape(view, 0));
  const auto fit = gpede::kernels::fit_record(view, state, 0, options, s);
  ASSERT_EQ(fit.status, LocalFitStatus::accepted);
  const auto c = gpede::kernels::global_contribution(view, state, 0, fit, s, false);
  ASSERT_TRUE(c.ok);
  ASSERT_GE(c.size, 1800) << "the record should reach about 2,000 distinct globals";
  const CpuPass cpu = run_cpu(batch, p, options, true);
  for (const int group : {32, 128}) {
    const CoopPass cp = run_cooperative(batch, p, options, true, group);
    expect_same(cp, cpu, p, true, group == 32 ? "2,000 globals, warp" : "2,000 globals, block");
  }
}

TEST(CooperativeSchur, ScratchHasNoSquareOfTheGlobals) {
  // the group's scratch grows with (measurements + locals) x globals, not globals^2
  gpede::kernels::RecordShape shape;
  shape.measurements = 100;
  shape.local_parameters = 36;
  shape.global_entries = 1200;
  shape.unique_globals = 530;
  const std::size_t coop_bytes = coop::cooperative_scratch_bytes(shape);
  const std::size_t sequential_bytes = gpede::kernels::local_fit_scratch_bytes(shape);
  // G and Y, (100 + 36) x 536 doubles, and less than 64 kB beside them (local fit, slot map, the
  // non-zero rows of the 67 panels of G)
  EXPECT_GE(coop_bytes, 8u * 136u * 536u);
  EXPECT_LT(coop_bytes, 8u * 136u * 536u + 65536u);
  EXPECT_GT(sequential_bytes, 8u * 530u * 530u);
  EXPECT_LT(coop_bytes, sequential_bytes / 2);
}

}  // namespace
