// Exact accumulation for the deterministic mode (gpede/kernels/fixed_point.hpp and the column
// bounds of gpede/detail/column_bounds.hpp), on the CPU: the conversions against exact powers of
// two; the cooperative per-record code of the CUDA kernel adding into 128-bit integers with the
// bounds of the records, in two record orders: the same integers, none near the 2^127 limit, the
// same sums as doubles to their rounding, and the CPU accumulator's matrix.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gpede/detail/batch_layout.hpp"
#include "gpede/detail/column_bounds.hpp"
#include "gpede/detail/cpu_accumulator.hpp"
#include "gpede/kernels/cooperative_schur.hpp"
#include "gpede/kernels/fixed_point.hpp"
#include "gpede/record_batch.hpp"
#include "test_records.hpp"

namespace {

using gpede::test::make_batch;
using gpede::test::Measurement;
using gpede::test::Record;

namespace fixed = gpede::kernels::fixed;
namespace coop = gpede::kernels::coop;
using gpede::RecordBatch;

TEST(FixedPoint, ConversionsAreExactWhereTheyCanBe) {
  EXPECT_EQ(fixed::to_fixed(0.0, 50), 0);
  EXPECT_EQ(fixed::to_fixed(1.0, 0), 1);
  EXPECT_EQ(fixed::to_fixed(1.0, 100), static_cast<__int128>(1) << 100);
  EXPECT_EQ(fixed::to_fixed(-3.0, 60), -(static_cast<__int128>(3) << 60));
  EXPECT_EQ(fixed::to_fixed(0.75, 1), 2);    // 1.5 rounds away from zero
  EXPECT_EQ(fixed::to_fixed(-0.75, 1), -2);
  EXPECT_EQ(fixed::to_fixed(0.7, 1), 1);     // 1.4
  EXPECT_EQ(fixed::to_fixed(1e-40, 10), 0);  // below the unit
  EXPECT_EQ(fixed::to_fixed(std::nan(""), 10), 0);
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int t = 0; t < 1000; ++t) {
    const double v = std::ldexp(u(rng), static_cast<int>(rng() % 200) - 100);
    int e = 0;
    std::frexp(v, &e);
    const int shift = 110 - e;  // |v| 2^shift < 2^110: every bit of v kept
    EXPECT_EQ(fixed::from_fixed(fixed::to_fixed(v, shift), shift), v) << v;
    const __int128 x = fixed::to_fixed(v, shift);
    EXPECT_EQ(fixed::from_words(fixed::low_word(x), fixed::high_word(x)), x);
  }
  EXPECT_EQ(fixed::shift_of(3, 7), fixed::kFixedBits - 7);
}



// Tracks with derivatives and errors over many orders of magnitude (errors from 1e-4 to 1e2,
// global derivatives from 1e-3 to 1e3), repeated labels, record weights of 0.5 and 2.
std::vector<Record> wide_range_records(std::mt19937_64& rng, int count, int n_all) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::uniform_int_distribution<int> label(0, n_all - 1), n_local(2, 8), extra(2, 15), per(0, 4);
  std::vector<Record> out;
  for (int r = 0; r < count; ++r) {
    Record rec;
    rec.weight = r % 3 == 0 ? 2.0 : (r % 3 == 1 ? 0.5 : 1.0);
    const int nl = n_local(rng);
    for (int i = 0; i < nl + extra(rng); ++i) {
      Measurement m;
      m.sigma = std::pow(10.0, -4.0 + 6.0 * (0.5 + 0.5 * u(rng)));
      m.value = m.sigma * u(rng);
      m.locals.emplace_back(i % nl, 1.0 + 0.1 * u(rng));
      m.locals.emplace_back((i + 1) % nl, u(rng));
      for (int k = per(rng); k > 0; --k) {
        m.globals.emplace_back(label(rng), u(rng) * std::pow(10.0, 3.0 * u(rng)));
      }
      if (!m.globals.empty() && r % 5 == 0) m.globals.push_back(m.globals.front());
      rec.meas.push_back(std::move(m));
    }
    out.push_back(std::move(rec));
  }
  return out;
}

struct FixedSink {
  std::int64_t n = 0;
  const std::vector<std::int32_t>* exponent = nullptr;
  std::vector<__int128> matrix;  // lower triangle, column-major
  std::vector<double> plain;     // the same adds in double, in the order they come
  void add_matrix(std::int32_t row, std::int32_t col, double value) {
    plain[static_cast<std::size_t>(col) * static_cast<std::size_t>(n) + static_cast<std::size_t>(row)] += value;
    const int shift = fixed::shift_of((*exponent)[row], (*exponent)[col]);
    matrix[static_cast<std::size_t>(col) * static_cast<std::size_t>(n) + static_cast<std::size_t>(row)] +=
        fixed::to_fixed(value, shift);
  }
  void add_vector(std::int32_t, double) {}
  void add_entries(std::int32_t, std::int32_t) {}
};

std::vector<__int128> run_fixed(const RecordBatch& batch, const std::vector<std::int32_t>& variable_index,
                                std::int64_t n_variable, const std::vector<double>& value,
                                const gpede::kernels::LocalFitOptions& options,
                                const std::vector<std::int32_t>& exponent, int group,
                                std::vector<double>* plain = nullptr) {
  const gpede::kernels::RecordBatchView view = gpede::detail::host_view(batch);
  gpede::kernels::GlobalStateView state;
  state.n_all = static_cast<std::int64_t>(variable_index.size());
  state.n_variable = n_variable;
  state.parameter_value = value.data();
  state.variable_index = variable_index.data();
  gpede::kernels::RecordShape capacity;
  for (std::int64_t r = 0; r < view.n_records; ++r) {
    capacity = gpede::kernels::max_shape(capacity, gpede::kernels::record_shape(view, r));
  }
  std::vector<double> buffer(coop::cooperative_scratch_bytes(capacity) / sizeof(double) + 1);
  const coop::Scratch scratch = coop::make_scratch(buffer.data(), capacity);
  FixedSink sink;
  sink.n = n_variable;
  sink.exponent = &exponent;
  sink.matrix.assign(static_cast<std::size_t>(n_variable * n_variable), 0);
  sink.plain.assign(static_cast<std::size_t>(n_variable * n_variable), 0.0);
  for (std::int64_t r = 0; r < view.n_records; ++r) {
    coop::run_record_on_host(group, view, state, r, options, scratch, true, sink);
  }
  if (plain != nullptr) *plain = sink.plain;
  return sink.matrix;
}

TEST(FixedPoint, DeterministicAccumulationMatchesTheCpuAccumulator) {
  std::mt19937_64 rng(77);
  const int n_all = 60;
  std::vector<std::int32_t> variable_index(n_all);
  std::int32_t n_variable = 0;
  for (int i = 0; i < n_all; ++i) variable_index[i] = i % 7 == 3 ? -1 : n_variable++;
  std::vector<double> value(n_all, 0.0);
  std::vector<Record> records = wide_range_records(rng, 300, n_all);
  gpede::kernels::LocalFitOptions options;
  options.hugecut = 1e30;
  options.scale_global = 1.5;
  options.downweight_iterations = 3;

  const RecordBatch forward = make_batch(records);
  std::reverse(records.begin(), records.end());
  const RecordBatch reverse = make_batch(records);

  // bounds from two halves of the data, as from two batches of a pass
  gpede::detail::ColumnBounds bounds;
  bounds.reset(n_variable, variable_index, options);
  const std::vector<Record> first(records.begin(), records.begin() + 100), second(records.begin() + 100, records.end());
  bounds.add(make_batch(first));
  bounds.add(make_batch(second));
  const std::vector<std::int32_t> exponent = bounds.exponents();

  std::vector<double> plain;
  const std::vector<__int128> a = run_fixed(forward, variable_index, n_variable, value, options, exponent, 32, &plain);
  const std::vector<__int128> b = run_fixed(reverse, variable_index, n_variable, value, options, exponent, 7);
  EXPECT_TRUE(a == b) << "the integer sums depend on the record order";

  gpede::detail::CpuAccumulator cpu(1);
  gpede::detail::PassSetup setup;
  setup.build_matrix = true;
  setup.n_all = n_all;
  setup.n_variable = n_variable;
  setup.parameter_value = value;
  setup.variable_index = variable_index;
  setup.fit = options;
  cpu.begin_pass(setup);
  cpu.accumulate(forward);
  cpu.end_pass();
  const std::vector<double>& reference = cpu.matrix();
  const __int128 limit = static_cast<__int128>(1) << 120;
  double worst = 0.0, worst_plain = 0.0, worst_fixed_vs_plain = 0.0;
  int used_high_bits = 0;
  for (std::int32_t col = 0; col < n_variable; ++col) {
    for (std::int32_t row = col; row < n_variable; ++row) {
      const std::size_t at = static_cast<std::size_t>(col) * n_variable + row;
      const __int128 x = a[at];
      EXPECT_LT(x < 0 ? -x : x, limit) << row << "," << col;
      if ((x < 0 ? -x : x) > (static_cast<__int128>(1) << 64)) ++used_high_bits;
      const double got = fixed::from_fixed(x, fixed::shift_of(exponent[row], exponent[col]));
      const double scale = std::sqrt(std::abs(reference[static_cast<std::size_t>(row) * n_variable + row] *
                                              reference[static_cast<std::size_t>(col) * n_variable + col]));
      worst = std::max(worst, std::abs(got - reference[at]) / std::max(scale, 1e-300));
      worst_plain = std::max(worst_plain, std::abs(plain[at] - reference[at]) / std::max(scale, 1e-300));
      worst_fixed_vs_plain = std::max(worst_fixed_vs_plain, std::abs(got - plain[at]) / std::max(scale, 1e-300));
    }
  }
  // The integers hold the same adds as a double sum, to its rounding; against the CPU accumulator
  // the records' own rounding differs (errors over six orders of magnitude cancel in G^T W G - Y^T Y).
  EXPECT_LT(worst_fixed_vs_plain, 1e-14) << "fixed-point sum against the same adds in double";
  EXPECT_LT(worst, 1e-10) << "against the CPU accumulator (the same adds in double: " << worst_plain << ")";
  EXPECT_GT(used_high_bits, 0) << "the sums should reach beyond 64 bits";
}

}  // namespace
