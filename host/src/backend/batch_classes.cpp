#include "gpede/detail/batch_classes.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "gpede/detail/batch_layout.hpp"
#include "gpede/error.hpp"

namespace gpede::detail {
namespace {

// Records per chunk below which one thread does the whole batch.
constexpr std::int64_t kMinimumChunk = 2048;

struct Chunk {
  RecordClasses classes;
  std::int64_t bad_record = -1;
  std::string problem;
  std::exception_ptr error;  // out of memory in a worker: rethrown by the caller
};

}  // namespace

RecordClasses classify_batch(const RecordBatch& batch, std::int64_t n_all, std::int32_t small_max_globals,
                             std::int32_t small_max_locals, WorkerPool* pool, const std::string& who) {
  const std::int64_t n_records = static_cast<std::int64_t>(batch.n_records());
  const int threads = pool != nullptr && n_records >= 2 * kMinimumChunk ? pool->size() : 1;
  std::vector<Chunk> chunks(static_cast<std::size_t>(threads));
  const kernels::RecordBatchView view = host_view(batch);
  auto work = [&](int t) {
    Chunk& chunk = chunks[static_cast<std::size_t>(t)];
    const std::int64_t begin = n_records * t / threads;
    const std::int64_t end = n_records * (t + 1) / threads;
    for (std::int64_t r = begin; r < end; ++r) {
      std::string problem = record_problem(batch, r, n_all);
      if (!problem.empty()) {
        chunk.bad_record = r;
        chunk.problem = std::move(problem);
        return;
      }
      const kernels::RecordShape shape = kernels::record_shape(view, r);
      const bool small = shape.global_entries <= small_max_globals && shape.local_parameters <= small_max_locals;
      auto& list = small ? chunk.classes.small : chunk.classes.large;
      auto& capacity = small ? chunk.classes.small_capacity : chunk.classes.large_capacity;
      list.push_back(static_cast<std::int32_t>(r));
      capacity = kernels::max_shape(capacity, shape);
    }
  };
  auto job = [&](int t) {  // WorkerPool jobs must not throw
    try {
      work(t);
    } catch (...) {
      chunks[static_cast<std::size_t>(t)].error = std::current_exception();
    }
  };
  if (threads > 1) {
    pool->run([&](int t) {
      if (t < threads) job(t);
    });
  } else {
    job(0);
  }
  RecordClasses out;
  for (Chunk& chunk : chunks) {  // in batch order: the first bad record is the first chunk's
    if (chunk.error) std::rethrow_exception(chunk.error);
    if (chunk.bad_record >= 0) throw RuntimeError(who + ": " + record_name(batch, chunk.bad_record) + " " + chunk.problem);
    out.small.insert(out.small.end(), chunk.classes.small.begin(), chunk.classes.small.end());
    out.large.insert(out.large.end(), chunk.classes.large.begin(), chunk.classes.large.end());
    out.small_capacity = kernels::max_shape(out.small_capacity, chunk.classes.small_capacity);
    out.large_capacity = kernels::max_shape(out.large_capacity, chunk.classes.large_capacity);
  }
  return out;
}

void parallel_copy(void* destination, const void* source, std::size_t bytes, WorkerPool* pool) {
  constexpr std::size_t kMinimumBytes = std::size_t{4} << 20;
  const int threads = pool != nullptr && bytes >= 2 * kMinimumBytes ? pool->size() : 1;
  auto* to = static_cast<unsigned char*>(destination);
  const auto* from = static_cast<const unsigned char*>(source);
  auto job = [&](int t) {
    if (t >= threads) return;
    const std::size_t begin = bytes * static_cast<std::size_t>(t) / static_cast<std::size_t>(threads);
    const std::size_t end = bytes * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(threads);
    if (end > begin) std::memcpy(to + begin, from + begin, end - begin);
  };
  if (threads > 1) {
    pool->run(job);
  } else {
    job(0);
  }
}

}  // namespace gpede::detail
