// The label tables of a run (the label map and the entry counter of host/src/solver): right for
// any label value, and sized by the labels present, not by the largest value: one label of 2^26
// or 2^30 costs kilobytes, a detector's dense labels (belle2's 61,520 up to 2,553,834) get a
// direct table.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "../host/src/solver/solver_internal.hpp"
#include "gpede/record_batch.hpp"

namespace {

using gpede::detail::EntryCounter;
using gpede::detail::LabelMap;

gpede::RecordBatch batch_of(const std::vector<std::int32_t>& labels) {
  gpede::RecordBatch b;
  for (std::int32_t label : labels) {
    b.meas_value.push_back(0.0);
    b.meas_sigma.push_back(1.0);
    b.global_label.push_back(label);
    b.global_deriv.push_back(1.0);
    b.local_begin.push_back(0);
    b.global_begin.push_back(static_cast<std::int64_t>(b.global_label.size()));
  }
  b.record_begin.push_back(static_cast<std::int64_t>(b.meas_value.size()));
  b.record_weight.push_back(1.0);
  b.record_file.push_back(0);
  b.record_number.push_back(1);
  return b;
}

TEST(LabelTables, AFewHugeLabelsCostKilobytes) {
  const std::vector<std::int32_t> labels = {7, 1 << 26, (1 << 30) + 3, 7, 1 << 26, 2147483647};
  EntryCounter counter(false);
  counter.add(batch_of(labels));
  EXPECT_EQ(counter.count(7), 2);
  EXPECT_EQ(counter.count(1 << 26), 2);
  EXPECT_EQ(counter.count((1 << 30) + 3), 1);
  EXPECT_EQ(counter.count(2147483647), 1);
  EXPECT_EQ(counter.count(8), 0);
  EXPECT_LT(counter.table_bytes(), std::size_t{16} << 20);
  std::vector<std::int32_t> seen = counter.labels();
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<std::int32_t>{7, 1 << 26, (1 << 30) + 3, 2147483647}));

  LabelMap map;
  map.build(seen);
  EXPECT_EQ(map.index(7), 0);
  EXPECT_EQ(map.index(1 << 26), 1);
  EXPECT_EQ(map.index((1 << 30) + 3), 2);
  EXPECT_EQ(map.index(2147483647), 3);
  EXPECT_EQ(map.index(8), -1);
  EXPECT_EQ(map.index(-5), -1);
  EXPECT_LT(map.table_bytes(), std::size_t{1} << 20);
}

TEST(LabelTables, DenseDetectorLabelsAndLateGrowthCountRight) {
  // A label beyond the table's allowance arrives first (hash map); then 61,520 labels spread up
  // to 2,553,834 grow the table past it, which moves it over. Counts against a std::map.
  std::mt19937_64 rng(3);
  std::vector<std::int32_t> labels = {2'500'000};
  std::uniform_int_distribution<std::int32_t> pick(11, 2'553'834);
  std::vector<std::int32_t> present;
  for (int i = 0; i < 61'520; ++i) present.push_back(pick(rng));
  for (int repeat = 0; repeat < 3; ++repeat) {
    for (std::int32_t l : present) labels.push_back(l);
  }
  labels.push_back(2'500'000);
  std::map<std::int32_t, std::int64_t> want;
  for (std::int32_t l : labels) ++want[l];
  EntryCounter counter(false);
  for (std::size_t start = 0; start < labels.size(); start += 10'000) {
    const std::size_t end = std::min(labels.size(), start + 10'000);
    counter.add(batch_of(std::vector<std::int32_t>(labels.begin() + start, labels.begin() + end)));
  }
  for (const auto& [label, count] : want) ASSERT_EQ(counter.count(label), count) << label;
  std::vector<std::int32_t> seen = counter.labels();
  std::sort(seen.begin(), seen.end());
  ASSERT_EQ(seen.size(), want.size());

  LabelMap map;
  map.build(seen);
  std::int32_t index = 0;
  for (const auto& [label, count] : want) ASSERT_EQ(map.index(label), index++) << label;
  // a direct table: an entry of 4 bytes per value up to the largest label
  EXPECT_GE(map.table_bytes(), static_cast<std::size_t>(want.rbegin()->first + 1) * 4);
  EXPECT_LT(map.table_bytes(), std::size_t{12} << 20);
}

}  // namespace
