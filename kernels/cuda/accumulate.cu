// Accumulation kernels of the CUDA backend. The per-record math is the shared host/device code of
// gpede/kernels/local_fit.hpp (fit_record, global_contribution), exactly what the CPU backend
// runs; these kernels only distribute records over threads, book the outcome as the CPU
// accumulator does, and add the contributions with atomicAdd on double (sm_60 and later).
//
// Launch shapes by record size class (chosen on the host per record):
// - small records (few globals, few local parameters): one thread per record. The shared
//   functions are sequential, so this keeps every thread busy with its own record and adds its
//   K(K+1)/2 matrix elements itself.
// - large records: one warp or block per record. Its first thread runs the same sequential
//   functions; the group then spreads the K(K+1)/2 atomic adds (180,000 for K = 600) over its
//   threads, where one thread alone would serialise them.
// Per-record scratch lives in a global-memory pool with one slot per resident thread (per group).
#include <cstdint>

#include "accumulate_launch.hpp"
#include "cuda_check.hpp"
#include "gpede/kernels/local_fit.hpp"

namespace gpede::detail::cuda {
namespace {

using kernels::GlobalContribution;
using kernels::LocalFitResult;
using kernels::LocalFitScratch;
using kernels::LocalFitStatus;

constexpr int kThreadsPerBlock = 128;
constexpr unsigned kFullMask = 0xffffffffu;

/// Per-thread sums of a pass.
struct Tally {
  double chi2_sum = 0.0;
  double function_value = 0.0;
  long long ndf_sum = 0;
  double weighted_ndf_sum = 0.0;
  long long records = 0;
  long long accepted = 0;
  long long rejected_rank = 0;
  long long rejected_ndf = 0;
  long long rejected_huge = 0;
  long long rejected_cut = 0;
  long long rejected_downweight = 0;
};

__device__ void report_failure(const AccumulateLaunch& a, std::int64_t record) {
  atomicAdd(&a.totals->failures, 1ull);
  const unsigned long long code =
      (static_cast<unsigned long long>(a.batch_ordinal) << 32) | static_cast<unsigned long long>(record);
  atomicCAS(&a.totals->first_failure, ~0ull, code);
}

/// Books one fit as the CPU accumulator does; true if the record is accepted and contributes.
__device__ bool book_fit(const LocalFitResult& fit, Tally& t, const AccumulateLaunch& a, std::int64_t record) {
  ++t.records;
  if (fit.counts_ndf()) {
    t.ndf_sum += fit.ndf;
    t.weighted_ndf_sum += fit.record_weight * fit.ndf;
  }
  t.function_value += fit.function_value;
  switch (fit.status) {
    case LocalFitStatus::accepted:
      ++t.accepted;
      t.chi2_sum += fit.function_value;
      return true;
    case LocalFitStatus::no_local_parameters:
      return false;
    case LocalFitStatus::rank_deficient:
      ++t.rejected_rank;
      return false;
    case LocalFitStatus::no_degrees_of_freedom:
      ++t.rejected_ndf;
      return false;
    case LocalFitStatus::huge_chi2:
      ++t.rejected_huge;
      return false;
    case LocalFitStatus::chi2_cut:
      ++t.rejected_cut;
      return false;
    case LocalFitStatus::downweight_fraction:
      ++t.rejected_downweight;
      return false;
    case LocalFitStatus::scratch_too_small:
      report_failure(a, record);
      return false;
  }
  return false;
}

/// Adds a contribution: b and entries, and with the matrix its lower triangle at (index[r], index[c])
/// for r >= c (index is ascending, so these are lower-triangle elements of the global matrix).
/// Thread `rank` of `size` takes every size-th element.
__device__ void add_contribution(const AccumulateLaunch& a, std::int32_t k, const std::int32_t* index,
                                 const std::int32_t* label, const std::int32_t* entries, const double* vector,
                                 const double* matrix, int rank, int size) {
  for (std::int32_t s = rank; s < k; s += size) {
    atomicAdd(&a.rhs[index[s]], vector[s]);
    atomicAdd(&a.entries[label[s]], static_cast<unsigned long long>(entries[s]));
  }
  if (matrix == nullptr) return;
  for (std::int32_t col = 0; col < k; ++col) {
    const double* column = matrix + static_cast<std::int64_t>(col) * k;
    double* target = a.matrix + static_cast<std::int64_t>(index[col]) * a.n;
    for (std::int32_t row = col + rank; row < k; row += size) atomicAdd(&target[index[row]], column[row]);
  }
}

__device__ void add_tally(const Tally& t, DeviceTotals* totals) {
  if (t.records == 0) return;
  atomicAdd(&totals->chi2_sum, t.chi2_sum);
  atomicAdd(&totals->function_value, t.function_value);
  atomicAdd(&totals->ndf_sum, static_cast<unsigned long long>(t.ndf_sum));
  atomicAdd(&totals->weighted_ndf_sum, t.weighted_ndf_sum);
  atomicAdd(&totals->rejected_ndf, static_cast<unsigned long long>(t.rejected_ndf));
  atomicAdd(&totals->records, static_cast<unsigned long long>(t.records));
  atomicAdd(&totals->accepted, static_cast<unsigned long long>(t.accepted));
  atomicAdd(&totals->rejected_rank, static_cast<unsigned long long>(t.rejected_rank));
  atomicAdd(&totals->rejected_huge, static_cast<unsigned long long>(t.rejected_huge));
  atomicAdd(&totals->rejected_cut, static_cast<unsigned long long>(t.rejected_cut));
  atomicAdd(&totals->rejected_downweight, static_cast<unsigned long long>(t.rejected_downweight));
}

template <class T>
__device__ T warp_sum(T value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(kFullMask, value, offset);
  return value;
}

/// Sums the tallies of a warp; its first lane adds them to the totals. All lanes must call.
__device__ void add_tally_per_warp(Tally t, DeviceTotals* totals) {
  t.chi2_sum = warp_sum(t.chi2_sum);
  t.function_value = warp_sum(t.function_value);
  t.ndf_sum = warp_sum(t.ndf_sum);
  t.weighted_ndf_sum = warp_sum(t.weighted_ndf_sum);
  t.rejected_ndf = warp_sum(t.rejected_ndf);
  t.records = warp_sum(t.records);
  t.accepted = warp_sum(t.accepted);
  t.rejected_rank = warp_sum(t.rejected_rank);
  t.rejected_huge = warp_sum(t.rejected_huge);
  t.rejected_cut = warp_sum(t.rejected_cut);
  t.rejected_downweight = warp_sum(t.rejected_downweight);
  if ((threadIdx.x & 31u) == 0) add_tally(t, totals);
}

__global__ void __launch_bounds__(kThreadsPerBlock) accumulate_per_thread(AccumulateLaunch a) {
  const std::int64_t slot = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t active = a.n_records < a.slots ? a.n_records : a.slots;
  Tally t;
  if (slot < active) {
    const LocalFitScratch s =
        kernels::make_local_fit_scratch(static_cast<char*>(a.pool) + slot * a.slot_bytes, a.capacity);
    for (std::int64_t i = slot; i < a.n_records; i += active) {
      const std::int64_t r = a.records[i];
      const LocalFitResult fit = kernels::fit_record(a.batch, a.state, r, a.options, s);
      if (!book_fit(fit, t, a, r)) continue;
      const GlobalContribution c = kernels::global_contribution(a.batch, a.state, r, fit, s, a.build_matrix);
      if (!c.ok) {
        report_failure(a, r);
        continue;
      }
      add_contribution(a, c.size, c.index, c.label, c.entries, c.vector, a.build_matrix ? c.matrix : nullptr, 0, 1);
    }
  }
  add_tally_per_warp(t, a.totals);
}

__global__ void accumulate_per_group(AccumulateLaunch a) {
  // The contribution of the group's current record, published by its first thread.
  __shared__ int shared_add;
  __shared__ std::int32_t shared_k;
  __shared__ const std::int32_t* shared_index;
  __shared__ const std::int32_t* shared_label;
  __shared__ const std::int32_t* shared_entries;
  __shared__ const double* shared_vector;
  __shared__ const double* shared_matrix;

  const bool leader = threadIdx.x == 0;
  const LocalFitScratch s =
      kernels::make_local_fit_scratch(static_cast<char*>(a.pool) + blockIdx.x * a.slot_bytes, a.capacity);
  Tally t;
  for (std::int64_t i = blockIdx.x; i < a.n_records; i += gridDim.x) {
    if (leader) {
      shared_add = 0;
      const std::int64_t r = a.records[i];
      const LocalFitResult fit = kernels::fit_record(a.batch, a.state, r, a.options, s);
      if (book_fit(fit, t, a, r)) {
        const GlobalContribution c = kernels::global_contribution(a.batch, a.state, r, fit, s, a.build_matrix);
        if (c.ok) {
          shared_add = 1;
          shared_k = c.size;
          shared_index = c.index;
          shared_label = c.label;
          shared_entries = c.entries;
          shared_vector = c.vector;
          shared_matrix = a.build_matrix ? c.matrix : nullptr;
        } else {
          report_failure(a, r);
        }
      }
    }
    __syncthreads();
    if (shared_add != 0) {
      add_contribution(a, shared_k, shared_index, shared_label, shared_entries, shared_vector, shared_matrix,
                       static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x));
    }
    __syncthreads();
  }
  if (leader) add_tally(t, a.totals);
}

constexpr int kTile = 32;

// Tile (bx, by) of the lower triangle (bx <= by) is copied transposed onto tile (by, bx).
__global__ void symmetrise_lower(double* m, std::int64_t n) {
  __shared__ double tile[kTile][kTile + 1];
  const std::int64_t col_block = blockIdx.x;
  const std::int64_t row_block = blockIdx.y;
  if (col_block > row_block) return;
  const std::int64_t col0 = col_block * kTile;
  const std::int64_t row0 = row_block * kTile;
  for (int c = threadIdx.y; c < kTile; c += blockDim.y) {
    const std::int64_t col = col0 + c;
    const std::int64_t row = row0 + threadIdx.x;
    if (row < n && col < n) tile[c][threadIdx.x] = m[col * n + row];
  }
  __syncthreads();
  // Element (row, col) of the lower triangle goes to (col, row): column `row`, row `col`.
  for (int r = threadIdx.y; r < kTile; r += blockDim.y) {
    const std::int64_t row = row0 + r;        // column of the target
    const std::int64_t col = col0 + threadIdx.x;  // row of the target
    if (row < n && col < n && row > col) m[row * n + col] = tile[threadIdx.x][r];
  }
}

__global__ void add_to_matrix(double* m, std::int64_t n, const std::int64_t* rows, const std::int64_t* cols,
                              const double* values, std::int64_t count) {
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= count) return;
  const std::int64_t i = rows[k];
  const std::int64_t j = cols[k];
  atomicAdd(&m[j * n + i], values[k]);
  if (i != j) atomicAdd(&m[i * n + j], values[k]);
}

unsigned grid_for(std::int64_t items, int threads) {
  return static_cast<unsigned>((items + threads - 1) / threads);
}

}  // namespace

void launch_accumulate_per_thread(const AccumulateLaunch& launch, cudaStream_t stream) {
  const std::int64_t active = launch.n_records < launch.slots ? launch.n_records : launch.slots;
  if (active <= 0) return;
  accumulate_per_thread<<<grid_for(active, kThreadsPerBlock), kThreadsPerBlock, 0, stream>>>(launch);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_accumulate_per_group(const AccumulateLaunch& launch, int group_threads, cudaStream_t stream) {
  const std::int64_t active = launch.n_records < launch.slots ? launch.n_records : launch.slots;
  if (active <= 0) return;
  accumulate_per_group<<<static_cast<unsigned>(active), group_threads, 0, stream>>>(launch);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_symmetrise_lower(double* matrix, std::int64_t n, cudaStream_t stream) {
  if (n <= 1) return;
  const unsigned blocks = grid_for(n, kTile);
  symmetrise_lower<<<dim3(blocks, blocks), dim3(kTile, 8), 0, stream>>>(matrix, n);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_add_to_matrix(double* matrix, std::int64_t n, const std::int64_t* rows, const std::int64_t* cols,
                          const double* values, std::int64_t count, cudaStream_t stream) {
  if (count <= 0) return;
  add_to_matrix<<<grid_for(count, 256), 256, 0, stream>>>(matrix, n, rows, cols, values, count);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

bool accumulate_kernels_loadable(std::string& why) {
  cudaFuncAttributes attributes{};
  const cudaError_t status = cudaFuncGetAttributes(&attributes, accumulate_per_thread);
  if (status == cudaSuccess) return true;
  (void)cudaGetLastError();
  why = std::string("the kernels of this build cannot run on this device: ") + cudaGetErrorName(status) + " (" +
        cudaGetErrorString(status) + "); rebuild with -DCMAKE_CUDA_ARCHITECTURES set to the device's architecture";
  return false;
}

}  // namespace gpede::detail::cuda
