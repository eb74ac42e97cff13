// The host's work on a record batch before the CUDA kernels see it, on several threads: every
// record checked (a kernel cannot throw) and sorted into the launch size classes, and the batch's
// arrays copied into the staging buffer. CPU code, tested without a device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "gpede/detail/worker_pool.hpp"
#include "gpede/kernels/local_fit.hpp"
#include "gpede/record_batch.hpp"

namespace gpede::detail {

/// The records of a batch by launch shape, in batch order, and the scratch capacity of each class.
struct RecordClasses {
  std::vector<std::int32_t> small;  ///< at most small_max_globals global entries and small_max_locals locals
  std::vector<std::int32_t> large;
  kernels::RecordShape small_capacity;
  kernels::RecordShape large_capacity;
};

/// Checks the records of a batch whose layout is valid (check_batch_layout): offsets that do not
/// decrease, local indices >= 0, global indices in [0, n_all). Throws RuntimeError with `who`'s
/// message for the first bad record in batch order. Then sorts the records into the classes. The
/// records are split into contiguous chunks over the pool's threads (nullptr: the caller's thread
/// only); the outcome does not depend on the thread count.
RecordClasses classify_batch(const RecordBatch& batch, std::int64_t n_all, std::int32_t small_max_globals,
                             std::int32_t small_max_locals, WorkerPool* pool, const std::string& who);

/// memcpy of `bytes` split over the pool's threads (nullptr: one thread).
void parallel_copy(void* destination, const void* source, std::size_t bytes, WorkerPool* pool);

}  // namespace gpede::detail
