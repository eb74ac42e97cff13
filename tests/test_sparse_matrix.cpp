// Sparse storage of the global matrix: the pattern against the pairs of variable parameters that
// share a record (computed here with a set), the sparse accumulation against the dense one (every
// element, 1 and 2 threads), products against a long-double product of the dense matrix, elements
// outside the pattern, non-finite values. Packed storage: its accumulation against the dense one.
#include <gtest/gtest.h>

#include <barrier>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "gpede/detail/backend.hpp"
#include "gpede/detail/cpu_accumulator.hpp"
#include "gpede/detail/packed_solution.hpp"
#include "gpede/detail/sparse_matrix.hpp"
#include "gpede/detail/worker_pool.hpp"
#include "gpede/error.hpp"
#include "gpede/solver.hpp"
#include "support/test_records.hpp"

namespace {

using gpede::RecordBatch;
using gpede::detail::CpuAccumulator;
using gpede::detail::PassSetup;
using gpede::detail::SparseMatrix;
using gpede::detail::SparsePattern;
using gpede::test::Measurement;
using gpede::test::Record;

constexpr int kLabels = 240;

// Tracks over a few "layers" of labels: each record touches 3 to 10 labels near a random centre,
// so that the matrix is sparse but not block diagonal; some labels are fixed. Labels come in
// threes (3 g, 3 g + 1, 3 g + 2), every measurement naming all three, like a module's parameters,
// and some measurements also name a single other label.
struct Fixture {
  RecordBatch batch;
  PassSetup setup;
  std::set<std::pair<std::int32_t, std::int32_t>> pairs;  // (row >= col) of variable indices
};

Fixture make_fixture(unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Fixture f;
  f.setup.n_all = kLabels;
  f.setup.variable_index.assign(kLabels, -1);
  std::int32_t n_variable = 0;
  for (int l = 0; l < kLabels; ++l) {
    if (l % 17 != 5) f.setup.variable_index[l] = n_variable++;  // every 17th label fixed
  }
  f.setup.n_variable = n_variable;
  f.setup.parameter_value.assign(kLabels, 0.0);
  f.setup.build_matrix = true;
  std::vector<Record> records;
  for (int r = 0; r < 400; ++r) {
    Record rec;
    const int centre = static_cast<int>(rng() % kLabels);
    const int hits = 3 + static_cast<int>(rng() % 8);
    std::vector<std::int32_t> variables;
    for (int h = 0; h < hits; ++h) {
      Measurement m;
      m.value = 0.01 * u(rng);
      m.sigma = 0.01;
      m.locals = {{0, 1.0}, {1, 0.1 * h}, {2, h > 1 ? 0.01 * (h - 1) : 0.0}};
      const int module = ((centre + 3 * h + static_cast<int>(rng() % 3)) % kLabels) / 3;
      m.globals = {{3 * module, 1.0}, {3 * module + 1, 0.3 * u(rng)}, {3 * module + 2, 0.2 * u(rng)}};
      if (h % 4 == 1) m.globals.push_back({static_cast<int>(rng() % kLabels), 0.5});
      for (const auto& [l, d] : m.globals) {
        if (f.setup.variable_index[l] >= 0) variables.push_back(f.setup.variable_index[l]);
      }
      rec.meas.push_back(m);
    }
    for (std::int32_t a : variables) {
      for (std::int32_t b : variables) {
        if (a >= b) f.pairs.insert({a, b});
      }
    }
    records.push_back(rec);
  }
  for (std::int32_t v = 0; v < n_variable; ++v) f.pairs.insert({v, v});
  f.batch = gpede::test::make_batch(records);
  return f;
}

std::set<std::pair<std::int32_t, std::int32_t>> elements_of(const SparseMatrix& s) {
  // Recover the pattern through products with unit vectors: column j of C is C e_j.
  std::set<std::pair<std::int32_t, std::int32_t>> out;
  const std::int64_t n = s.n();
  SparseMatrix probe = s;
  std::fill(probe.values().begin(), probe.values().end(), 1.0);
  std::vector<double> x(static_cast<std::size_t>(n)), y(static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j) {
    std::fill(x.begin(), x.end(), 0.0);
    x[static_cast<std::size_t>(j)] = 1.0;
    probe.multiply(x, y);
    for (std::int64_t i = j; i < n; ++i) {
      if (y[static_cast<std::size_t>(i)] != 0.0) out.insert({static_cast<std::int32_t>(i), static_cast<std::int32_t>(j)});
    }
  }
  return out;
}

TEST(SparsePattern, HoldsExactlyThePairsThatShareARecord) {
  const Fixture f = make_fixture(1);
  for (bool bitmap : {true, false}) {
    SparsePattern pattern;
    pattern.reset(f.setup.n_variable, f.setup.variable_index, bitmap);
    pattern.add_boundaries(f.batch);
    pattern.finish_groups();
    EXPECT_LT(pattern.groups(), f.setup.n_variable) << "labels that always come together form groups";
    pattern.add(f.batch);
    const SparseMatrix s(std::move(pattern));
    EXPECT_EQ(s.nonzeros(), static_cast<std::int64_t>(f.pairs.size())) << "bitmap " << bitmap;
    EXPECT_EQ(elements_of(s), f.pairs) << "bitmap " << bitmap;
  }
}

// Two "processes" as two threads of this test: each call is collective (both threads make it),
// each contribution is posted, both wait, then each combines both.
class ThreadPair final : public gpede::ProcessGroup {
 public:
  struct Shared {
    std::barrier<> meet{2};
    std::vector<char> posted[2];
  };
  ThreadPair(Shared& shared, int rank) : m_shared(shared), m_rank(rank) {}
  int rank() const override { return m_rank; }
  int size() const override { return 2; }
  void sum(double* data, std::size_t count) override { combine(data, count, [](double a, double b) { return a + b; }); }
  void sum(std::int64_t* data, std::size_t count) override {
    combine(data, count, [](std::int64_t a, std::int64_t b) { return a + b; });
  }
  void bitwise_or(std::uint64_t* data, std::size_t count) override {
    combine(data, count, [](std::uint64_t a, std::uint64_t b) { return a | b; });
  }
  void sum_to_first(double* data, std::size_t count) override { sum(data, count); }
  void broadcast(std::vector<char>& bytes) override {
    const auto all = gather(bytes);
    bytes = all[0];
  }
  std::vector<std::vector<char>> gather(const std::vector<char>& bytes) override {
    m_shared.posted[m_rank] = bytes;
    m_shared.meet.arrive_and_wait();
    std::vector<std::vector<char>> all{m_shared.posted[0], m_shared.posted[1]};
    m_shared.meet.arrive_and_wait();
    return all;
  }

 private:
  template <class T, class Op>
  void combine(T* data, std::size_t count, Op op) {
    const auto all = gather(std::vector<char>(reinterpret_cast<char*>(data), reinterpret_cast<char*>(data + count)));
    for (std::size_t k = 0; k < count; ++k) {
      T a, b;
      std::memcpy(&a, all[0].data() + k * sizeof(T), sizeof(T));
      std::memcpy(&b, all[1].data() + k * sizeof(T), sizeof(T));
      data[k] = op(a, b);
    }
  }
  Shared& m_shared;
  int m_rank;
};

TEST(SparsePattern, ProcessesWithTheirOwnRecordsEndWithThePatternOfAll) {
  // Two processes, each with its records: after combining, each holds the pattern of all records
  // (the pairs of either), with the bitmap and with the per-column lists.
  const Fixture a = make_fixture(1), b = make_fixture(2);
  ASSERT_EQ(a.setup.variable_index, b.setup.variable_index);
  auto all_pairs = a.pairs;
  all_pairs.insert(b.pairs.begin(), b.pairs.end());
  ASSERT_GT(all_pairs.size(), a.pairs.size());
  for (bool bitmap : {true, false}) {
    ThreadPair::Shared shared;
    std::set<std::pair<std::int32_t, std::int32_t>> seen[2];
    std::int64_t groups[2] = {0, 0};
    auto process = [&](int rank) {
      const Fixture& f = rank == 0 ? a : b;
      ThreadPair group(shared, rank);
      SparsePattern pattern;
      pattern.reset(f.setup.n_variable, f.setup.variable_index, bitmap);
      pattern.add_boundaries(f.batch);
      pattern.combine_boundaries(group);
      pattern.finish_groups();
      pattern.add(f.batch);
      pattern.combine_pairs(group);
      groups[rank] = pattern.groups();
      const SparseMatrix s(std::move(pattern));
      seen[rank] = elements_of(s);
    };
    std::thread other(process, 1);
    process(0);
    other.join();
    EXPECT_EQ(groups[0], groups[1]) << "bitmap " << bitmap;
    EXPECT_EQ(seen[0], all_pairs) << "bitmap " << bitmap;
    EXPECT_EQ(seen[1], all_pairs) << "bitmap " << bitmap;
  }
}

// The dense matrix of a pass and the sparse one of the same pass, with `threads` threads.
std::pair<std::vector<double>, SparseMatrix> accumulate_both(const Fixture& f, int threads) {
  CpuAccumulator dense(threads);
  dense.begin_pass(f.setup);
  dense.accumulate(f.batch);
  dense.end_pass();
  std::vector<double> d = dense.matrix();

  SparsePattern pattern;
  pattern.reset(f.setup.n_variable, f.setup.variable_index);
  pattern.add_boundaries(f.batch);
  pattern.finish_groups();
  pattern.add(f.batch);
  SparseMatrix s(std::move(pattern));
  CpuAccumulator sparse(threads);
  sparse.set_sparse_target(&s);
  sparse.begin_pass(f.setup);
  sparse.accumulate(f.batch);
  const auto totals = sparse.end_pass();
  EXPECT_GT(totals.accepted, 300);
  EXPECT_TRUE(sparse.matrix().empty()) << "no dense matrix beside the sparse one";
  return {std::move(d), std::move(s)};
}

TEST(SparseMatrix, AccumulatesTheDenseMatrixElementForElement) {
  const Fixture f = make_fixture(2);
  const std::int64_t n = f.setup.n_variable;
  for (int threads : {1, 2}) {
    auto [dense, sparse] = accumulate_both(f, threads);
    // Every element through products with unit vectors.
    std::vector<double> x(static_cast<std::size_t>(n)), y(static_cast<std::size_t>(n));
    double worst = 0.0, scale = 0.0;
    for (std::int64_t j = 0; j < n; ++j) {
      std::fill(x.begin(), x.end(), 0.0);
      x[static_cast<std::size_t>(j)] = 1.0;
      sparse.multiply(x, y);
      for (std::int64_t i = 0; i < n; ++i) {
        const double want = dense[static_cast<std::size_t>(i + j * n)];
        scale = std::max(scale, std::abs(want));
        worst = std::max(worst, std::abs(y[static_cast<std::size_t>(i)] - want));
        if (!f.pairs.count({static_cast<std::int32_t>(std::max(i, j)), static_cast<std::int32_t>(std::min(i, j))})) {
          EXPECT_EQ(want, 0.0) << "a dense element outside the pattern at (" << i << ", " << j << ")";
        }
      }
    }
    EXPECT_GT(scale, 0.0);
    EXPECT_LE(worst, 1e-13 * scale) << threads << " thread(s)";
    const std::vector<double> diagonal = sparse.diagonal();
    for (std::int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(diagonal[static_cast<std::size_t>(i)], dense[static_cast<std::size_t>(i + i * n)], 1e-13 * scale);
    }
  }
}

TEST(SparseMatrix, ProductsMatchALongDoubleProductAndTakeElementsOutsideThePattern) {
  const Fixture f = make_fixture(3);
  const std::int64_t n = f.setup.n_variable;
  auto [dense, sparse] = accumulate_both(f, 2);
  // One element inside the pattern (a diagonal), one pair that shares no record, both triangles.
  std::int64_t a = -1, b = -1;
  for (std::int64_t i = 1; i < n && a < 0; ++i) {
    for (std::int64_t j = 0; j < i; ++j) {
      if (!f.pairs.count({static_cast<std::int32_t>(i), static_cast<std::int32_t>(j)})) {
        a = i;
        b = j;
        break;
      }
    }
  }
  ASSERT_GE(a, 0);
  sparse.add_element(3, 3, 2.5);
  sparse.add_element(b, a, -0.75);  // upper triangle, outside the pattern
  dense[static_cast<std::size_t>(3 + 3 * n)] += 2.5;
  dense[static_cast<std::size_t>(a + b * n)] += -0.75;
  dense[static_cast<std::size_t>(b + a * n)] += -0.75;
  std::mt19937 rng(9);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> x(static_cast<std::size_t>(n)), y(static_cast<std::size_t>(n));
  for (double& v : x) v = u(rng);
  sparse.multiply(x, y);
  // The band (the band preconditioner's input), elements outside the pattern included.
  for (std::int64_t w : {std::int64_t{1}, std::int64_t{4}, n + 2}) {
    const std::vector<double> band = sparse.band(w);
    ASSERT_EQ(band.size(), static_cast<std::size_t>(n * w));
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t k = 0; k < w; ++k) {
        const double want = i - k >= 0 ? dense[static_cast<std::size_t>(i + (i - k) * n)] : 0.0;
        EXPECT_NEAR(band[static_cast<std::size_t>(i * w + k)], want, 1e-13 * (1.0 + std::fabs(want)))
            << "width " << w << " at (" << i << ", " << i - k << ")";
      }
    }
  }
  std::vector<double> y2(static_cast<std::size_t>(n)), y3(static_cast<std::size_t>(n));
  gpede::detail::WorkerPool pool(3);
  sparse.multiply(x, y2, &pool, 0);  // threaded: columns split over 3 threads
  sparse.multiply(x, y3, &pool, 0);  // again, with the split kept
  for (std::int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(y2[static_cast<std::size_t>(i)], y[static_cast<std::size_t>(i)], 1e-12 * (1.0 + std::fabs(y[static_cast<std::size_t>(i)])));
    EXPECT_EQ(y3[static_cast<std::size_t>(i)], y2[static_cast<std::size_t>(i)]);
  }
  for (std::int64_t i = 0; i < n; ++i) {
    long double want = 0;
    for (std::int64_t j = 0; j < n; ++j) want += static_cast<long double>(dense[static_cast<std::size_t>(i + j * n)]) * x[static_cast<std::size_t>(j)];
    EXPECT_NEAR(y[static_cast<std::size_t>(i)], static_cast<double>(want), 1e-9 * (1.0 + std::fabs(static_cast<double>(want))))
        << "row " << i;
  }
  EXPECT_TRUE(sparse.nonfinite_rows().empty());
  sparse.add_element(a, b, std::numeric_limits<double>::quiet_NaN());
  sparse.add_element(7, 7, std::numeric_limits<double>::infinity());
  const std::vector<std::int64_t> bad = sparse.nonfinite_rows();
  std::set<std::int64_t> want_bad{a, b, 7};
  EXPECT_EQ(std::set<std::int64_t>(bad.begin(), bad.end()), want_bad);
}

TEST(SparseMatrix, ARecordOutsideThePatternIsAnError) {
  const Fixture f = make_fixture(4);
  SparsePattern pattern;
  pattern.reset(f.setup.n_variable, f.setup.variable_index);  // no records: the diagonal only
  SparseMatrix s(std::move(pattern));
  EXPECT_EQ(s.nonzeros(), f.setup.n_variable);
  CpuAccumulator accumulator(1);
  accumulator.set_sparse_target(&s);
  accumulator.begin_pass(f.setup);
  EXPECT_THROW(accumulator.accumulate(f.batch), gpede::RuntimeError);
}

// Packed storage takes the same sums as the dense matrix, with private copies (2 threads) or alone,
// and a second pass starts from zeros.
TEST(PackedMatrix, AccumulatesTheDenseMatrixElementForElement) {
  const Fixture f = make_fixture(4);
  const std::int64_t n = f.setup.n_variable;
  for (int threads : {1, 2}) {
    CpuAccumulator dense(threads);
    dense.begin_pass(f.setup);
    dense.accumulate(f.batch);
    dense.end_pass();
    const std::vector<double> d = dense.matrix();

    gpede::detail::PackedMatrix packed;
    CpuAccumulator accumulator(threads);
    accumulator.set_packed_target(&packed);
    for (int pass = 0; pass < 2; ++pass) {
      accumulator.begin_pass(f.setup);
      accumulator.accumulate(f.batch);
      EXPECT_GT(accumulator.end_pass().accepted, 300);
    }
    EXPECT_TRUE(accumulator.matrix().empty()) << "no dense matrix beside the packed one";
    ASSERT_EQ(packed.n(), n);
    EXPECT_EQ(packed.values().size(), static_cast<std::size_t>(n * (n + 1) / 2));
    double scale = 0.0, worst = 0.0;
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t i = 0; i < n; ++i) {
        const double want = d[static_cast<std::size_t>(i + j * n)];
        scale = std::max(scale, std::abs(want));
        worst = std::max(worst, std::abs(packed.at(i, j) - want));
      }
    }
    EXPECT_GT(scale, 0.0);
    EXPECT_LE(worst, 1e-13 * scale) << threads << " thread(s)";
  }
}

}  // namespace
