// Records kept in memory between passes (host/src/solver/compact_batch.hpp): expanded, a batch is
// the one read, bit for bit, before and after its labels are mapped; values that a float holds
// exactly take 4 bytes, others keep 8.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "../host/src/solver/solver_internal.hpp"
#include "gpede/record_batch.hpp"

namespace {

using gpede::RecordBatch;

RecordBatch random_batch(std::mt19937_64& rng, bool single_precision) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::uniform_int_distribution<int> count(0, 5), label(1, 5000);
  RecordBatch b;
  auto value = [&] {
    const double v = u(rng) * std::pow(10.0, static_cast<int>(rng() % 7) - 3);
    return single_precision ? static_cast<double>(static_cast<float>(v)) : v;
  };
  for (int r = 0; r < 300; ++r) {
    const int m = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < m; ++i) {
      b.meas_value.push_back(value());
      b.meas_sigma.push_back(std::abs(value()) + 1e-3f);
      for (int k = count(rng); k > 0; --k) {
        b.local_index.push_back(static_cast<std::int32_t>(rng() % 40));
        b.local_deriv.push_back(value());
      }
      for (int k = count(rng); k > 0; --k) {
        b.global_label.push_back(label(rng));
        b.global_deriv.push_back(value());
      }
      b.local_begin.push_back(static_cast<std::int64_t>(b.local_index.size()));
      b.global_begin.push_back(static_cast<std::int64_t>(b.global_label.size()));
    }
    b.record_begin.push_back(static_cast<std::int64_t>(b.meas_value.size()));
    b.record_weight.push_back(r % 4 == 0 ? 0.5 : 1.0);
    b.record_file.push_back(r % 3);
    b.record_number.push_back(1000 + r);
  }
  return b;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

void expect_same(const RecordBatch& a, const RecordBatch& b) {
  EXPECT_EQ(a.record_begin, b.record_begin);
  EXPECT_EQ(a.record_weight, b.record_weight);
  EXPECT_EQ(a.record_file, b.record_file);
  EXPECT_EQ(a.record_number, b.record_number);
  EXPECT_TRUE(same_bits(a.meas_value, b.meas_value));
  EXPECT_TRUE(same_bits(a.meas_sigma, b.meas_sigma));
  EXPECT_EQ(a.local_begin, b.local_begin);
  EXPECT_EQ(a.global_begin, b.global_begin);
  EXPECT_EQ(a.local_index, b.local_index);
  EXPECT_TRUE(same_bits(a.local_deriv, b.local_deriv));
  EXPECT_EQ(a.global_label, b.global_label);
  EXPECT_EQ(a.global_index, b.global_index);
  EXPECT_TRUE(same_bits(a.global_deriv, b.global_deriv));
}

TEST(CompactBatch, ExpandsToTheBatchReadAndHalvesSinglePrecisionData) {
  for (const bool single : {true, false}) {
    std::mt19937_64 rng(single ? 1 : 2);
    RecordBatch original = random_batch(rng, single);
    if (!single) original.meas_value[7] = std::numeric_limits<double>::quiet_NaN();
    gpede::detail::CompactBatch compact(original, 0, original.n_records());
    RecordBatch out;
    compact.expand({}, out);
    expect_same(out, original);

    std::vector<std::int32_t> labels = original.global_label;
    gpede::detail::LabelMap map;
    map.build(labels);
    compact.map_labels(map);
    RecordBatch mapped = original;
    map.map_batch(mapped);
    compact.expand(map.labels(), out);
    expect_same(out, mapped);
    // a piece of the batch: records 100 to 199, offsets rebased
    gpede::detail::CompactBatch piece(original, 100, 200);
    piece.map_labels(map);
    RecordBatch part;
    piece.expand(map.labels(), part);
    ASSERT_EQ(part.n_records(), 100u);
    const std::int64_t m0 = mapped.record_begin[100], m1 = mapped.record_begin[200];
    EXPECT_EQ(part.n_measurements(), static_cast<std::size_t>(m1 - m0));
    EXPECT_EQ(part.record_number.front(), mapped.record_number[100]);
    for (std::int64_t m = m0; m < m1; ++m) {
      const auto i = static_cast<std::size_t>(m - m0);
      ASSERT_EQ(part.meas_value[i], mapped.meas_value[m]);
      const std::int64_t e = mapped.global_begin[m] - mapped.global_begin[m0];
      ASSERT_EQ(part.global_begin[i], e);
      for (std::int64_t k = mapped.global_begin[m]; k < mapped.global_begin[m + 1]; ++k) {
        ASSERT_EQ(part.global_index[static_cast<std::size_t>(k - mapped.global_begin[m0])], mapped.global_index[k]);
        ASSERT_EQ(part.global_label[static_cast<std::size_t>(k - mapped.global_begin[m0])], mapped.global_label[k]);
      }
      const std::int64_t l = mapped.local_begin[m] - mapped.local_begin[m0];
      ASSERT_EQ(part.local_begin[i], l);
    }
    // against the batch as it was kept before, labels mapped
    if (single) {
      EXPECT_LT(compact.bytes(), mapped.bytes() * 6 / 10) << compact.bytes() << " of " << mapped.bytes();
    } else {
      EXPECT_LT(compact.bytes(), mapped.bytes()) << "offsets and label indices are still narrower";
    }
  }
}

}  // namespace
