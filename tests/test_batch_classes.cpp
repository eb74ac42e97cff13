// The host's preparation of a batch for the CUDA kernels (gpede/detail/batch_classes.hpp), on the
// CPU: every record checked and sorted into the launch size classes on several threads gives what a
// plain sequential pass gives (record lists in batch order, capacities), the first bad record in
// batch order is named whatever the thread count, and the split copy is a copy.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpede/detail/batch_classes.hpp"
#include "gpede/detail/worker_pool.hpp"
#include "gpede/error.hpp"
#include "gpede/record_batch.hpp"

namespace {

using gpede::RecordBatch;
using gpede::detail::RecordClasses;
using gpede::detail::WorkerPool;

// Records with 1..40 measurements, 0..30 local indices (some beyond the measurement count) and
// 0..60 global derivatives, labels < n_all.
RecordBatch random_batch(std::mt19937_64& rng, int records, int n_all) {
  std::uniform_int_distribution<int> meas(1, 40), locals(0, 3), globals(0, 3), local_index(0, 29),
      label(0, n_all - 1);
  RecordBatch b;
  for (int r = 0; r < records; ++r) {
    const int m = meas(rng);
    const int scale = r % 5 == 0 ? 6 : 1;  // every fifth record wide
    for (int i = 0; i < m; ++i) {
      b.meas_value.push_back(0.1);
      b.meas_sigma.push_back(1.0);
      for (int k = locals(rng); k > 0; --k) {
        b.local_index.push_back(local_index(rng));
        b.local_deriv.push_back(1.0);
      }
      for (int k = globals(rng) * scale; k > 0; --k) {
        const int l = label(rng);
        b.global_label.push_back(l + 1);
        b.global_index.push_back(l);
        b.global_deriv.push_back(1.0);
      }
      b.local_begin.push_back(static_cast<std::int64_t>(b.local_index.size()));
      b.global_begin.push_back(static_cast<std::int64_t>(b.global_index.size()));
    }
    b.record_begin.push_back(static_cast<std::int64_t>(b.meas_value.size()));
    b.record_weight.push_back(1.0);
    b.record_file.push_back(0);
    b.record_number.push_back(r + 1);
  }
  return b;
}

// The sequential reference, written from the definitions.
RecordClasses reference(const RecordBatch& b, std::int32_t max_globals, std::int32_t max_locals) {
  RecordClasses out;
  for (std::size_t r = 0; r + 1 < b.record_begin.size(); ++r) {
    const std::int64_t m0 = b.record_begin[r], m1 = b.record_begin[r + 1];
    std::int32_t largest = -1;
    for (std::int64_t j = b.local_begin[m0]; j < b.local_begin[m1]; ++j) largest = std::max(largest, b.local_index[j]);
    gpede::kernels::RecordShape shape;
    shape.measurements = static_cast<std::int32_t>(m1 - m0);
    shape.local_parameters = std::min(largest + 1, shape.measurements);
    shape.global_entries = static_cast<std::int32_t>(b.global_begin[m1] - b.global_begin[m0]);
    shape.unique_globals = shape.global_entries;
    const bool small = shape.global_entries <= max_globals && shape.local_parameters <= max_locals;
    (small ? out.small : out.large).push_back(static_cast<std::int32_t>(r));
    auto& c = small ? out.small_capacity : out.large_capacity;
    c = gpede::kernels::max_shape(c, shape);
  }
  return out;
}

void expect_same_shape(const gpede::kernels::RecordShape& a, const gpede::kernels::RecordShape& b) {
  EXPECT_EQ(a.measurements, b.measurements);
  EXPECT_EQ(a.local_parameters, b.local_parameters);
  EXPECT_EQ(a.global_entries, b.global_entries);
  EXPECT_EQ(a.unique_globals, b.unique_globals);
}

TEST(BatchClasses, ThreadsGiveTheSequentialClasses) {
  std::mt19937_64 rng(5);
  const RecordBatch batch = random_batch(rng, 20000, 500);
  const RecordClasses want = reference(batch, 48, 16);
  ASSERT_FALSE(want.small.empty());
  ASSERT_FALSE(want.large.empty());
  for (int threads : {1, 3, 4}) {
    WorkerPool pool(threads);
    const RecordClasses got = gpede::detail::classify_batch(batch, 500, 48, 16, &pool, "test");
    EXPECT_EQ(got.small, want.small) << threads << " threads";
    EXPECT_EQ(got.large, want.large) << threads << " threads";
    expect_same_shape(got.small_capacity, want.small_capacity);
    expect_same_shape(got.large_capacity, want.large_capacity);
  }
  const RecordClasses alone = gpede::detail::classify_batch(batch, 500, 48, 16, nullptr, "test");
  EXPECT_EQ(alone.small, want.small);
}

TEST(BatchClasses, FirstBadRecordInBatchOrderIsNamed) {
  std::mt19937_64 rng(6);
  RecordBatch batch = random_batch(rng, 20000, 500);
  // a label outside the map in record 15,001 and a negative local index in record 12,001 (a later
  // chunk and an earlier one for 3 threads); the earlier record is the one named
  const std::int64_t late = batch.global_begin[batch.record_begin[15000]];
  ASSERT_LT(late, batch.global_begin[batch.record_begin[15001]]) << "record 15,001 needs a global derivative";
  batch.global_index[static_cast<std::size_t>(late)] = 500;
  std::int64_t early_record = 12000;
  while (batch.local_begin[batch.record_begin[early_record]] == batch.local_begin[batch.record_begin[early_record + 1]]) {
    ++early_record;
  }
  batch.local_index[static_cast<std::size_t>(batch.local_begin[batch.record_begin[early_record]])] = -3;
  for (int threads : {1, 3}) {
    WorkerPool pool(threads);
    try {
      gpede::detail::classify_batch(batch, 500, 48, 16, &pool, "CUDA accumulator");
      FAIL() << "no error";
    } catch (const gpede::RuntimeError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("CUDA accumulator: "), std::string::npos) << what;
      EXPECT_NE(what.find("record " + std::to_string(early_record + 1)), std::string::npos) << what;
      EXPECT_NE(what.find("local index -2 below 1"), std::string::npos) << what;
    }
  }
}

TEST(BatchClasses, SplitCopyCopies) {
  std::vector<unsigned char> from(40u << 20), to(from.size(), 0);
  for (std::size_t i = 0; i < from.size(); ++i) from[i] = static_cast<unsigned char>(i * 2654435761u >> 24);
  WorkerPool pool(3);
  gpede::detail::parallel_copy(to.data(), from.data(), from.size() - 5, &pool);
  EXPECT_EQ(std::memcmp(to.data(), from.data(), from.size() - 5), 0);
  EXPECT_EQ(to[from.size() - 1], 0);
}

}  // namespace
