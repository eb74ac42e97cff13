// Accumulation kernel of the CUDA backend. One group of threads (a warp, or a block for records
// with many globals) per record: the cooperative phases of gpede/kernels/cooperative_schur.hpp,
// separated by barriers. Rank 0 runs the local fit (fit_record, the CPU's code) and the slot map;
// the group then builds the merged global derivatives G and Y = L^-1 D^T W G panel by panel, and
// sums the tiles of C = rw (G^T W G - Y^T Y) in registers, adding each finished tile straight into
// the global matrix with atomicAdd on double (sm_60 and later). The CPU tests run the same phases
// as loops over the ranks (tests/test_cooperative_schur.cpp); only this launch is GPU-only.
// Per-group scratch (G and Y, (m + nl) x K8 doubles) lives in a global-memory pool, one slot per
// resident group; the pass totals are booked by rank 0 and reduced once per group.
#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "accumulate_launch.hpp"
#include "cuda_check.hpp"
#include "gpede/error.hpp"
#include "gpede/kernels/cooperative_schur.hpp"
#include "gpede/kernels/fixed_point.hpp"
#include "gpede/kernels/local_fit.hpp"

namespace gpede::detail::cuda {
namespace {

namespace coop = kernels::coop;
using kernels::LocalFitResult;
using kernels::LocalFitStatus;


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

/// The sink of the cooperative phases: atomic adds into the device-resident global system.
struct AtomicSink {
  double* matrix;
  std::int64_t n;
  double* rhs;
  unsigned long long* entries;

  __device__ void add_matrix(std::int32_t row, std::int32_t col, double value) const {
    atomicAdd(&matrix[static_cast<std::int64_t>(col) * n + row], value);
  }
  __device__ void add_vector(std::int32_t index, double value) const { atomicAdd(&rhs[index], value); }
  __device__ void add_entries(std::int32_t label, std::int32_t count) const {
    atomicAdd(&entries[label], static_cast<unsigned long long>(count));
  }
};

/// Deterministic mode's sink: exact 128-bit adds into the matrix (low words in the lower triangle,
/// high words in the upper one, the diagonal's in their own arrays) and plain adds into the
/// group's own b (a group's threads own distinct slots of a record, and its records follow one
/// another). A separate kernel instance, so that the atomic one keeps its registers.
struct ExactSink {
  double* matrix;
  std::int64_t n;
  unsigned long long* entries;
  const std::int32_t* exponent;  // null in a pass without the matrix
  unsigned long long* diagonal_low;
  unsigned long long* diagonal_high;
  double* group_rhs;  // this group's b

  __device__ void add_matrix(std::int32_t row, std::int32_t col, double value) const {
    const __int128 x = kernels::fixed::to_fixed(value, kernels::fixed::shift_of(exponent[row], exponent[col]));
    if (x == 0) return;
    unsigned long long* low = row == col ? &diagonal_low[row]
                                         : reinterpret_cast<unsigned long long*>(&matrix[static_cast<std::int64_t>(col) * n + row]);
    unsigned long long* high = row == col ? &diagonal_high[row]
                                          : reinterpret_cast<unsigned long long*>(&matrix[static_cast<std::int64_t>(row) * n + col]);
    const unsigned long long add_low = kernels::fixed::low_word(x);
    const unsigned long long old = atomicAdd(low, add_low);
    const unsigned long long carry = old + add_low < old ? 1ull : 0ull;  // the low word wrapped
    const unsigned long long add_high = kernels::fixed::high_word(x) + carry;
    if (add_high != 0) atomicAdd(high, add_high);
  }
  __device__ void add_vector(std::int32_t index, double value) const { group_rhs[index] += value; }
  __device__ void add_entries(std::int32_t label, std::int32_t count) const {
    atomicAdd(&entries[label], static_cast<unsigned long long>(count));
  }
};

/// Deterministic mode: a group's sums added to its own totals, in the order of its records.
__device__ void add_group_tally(const Tally& t, DeviceTotals* totals) {
  totals->chi2_sum += t.chi2_sum;
  totals->function_value += t.function_value;
  totals->ndf_sum += static_cast<unsigned long long>(t.ndf_sum);
  totals->weighted_ndf_sum += t.weighted_ndf_sum;
  totals->rejected_ndf += static_cast<unsigned long long>(t.rejected_ndf);
  totals->records += static_cast<unsigned long long>(t.records);
  totals->accepted += static_cast<unsigned long long>(t.accepted);
  totals->rejected_rank += static_cast<unsigned long long>(t.rejected_rank);
  totals->rejected_huge += static_cast<unsigned long long>(t.rejected_huge);
  totals->rejected_cut += static_cast<unsigned long long>(t.rejected_cut);
  totals->rejected_downweight += static_cast<unsigned long long>(t.rejected_downweight);
}

// At most 128 registers a thread (4 blocks of 128 threads, or 16 warps, per processor); ptxas for
// sm_90 (CUDA 13.0) fits both instances without spills, with stack frames of 120 bytes (atomic)
// and 384 bytes (deterministic: the 128-bit arithmetic).
constexpr int kMaxGroupThreads = 128;
template <bool Deterministic>
__global__ void __launch_bounds__(kMaxGroupThreads, 4) accumulate_cooperative(AccumulateLaunch a) {
  // RecordState has default member initialisers, which __shared__ variables may not run.
  __shared__ alignas(coop::RecordState) unsigned char state_bytes[sizeof(coop::RecordState)];
  auto& state = *reinterpret_cast<coop::RecordState*>(state_bytes);
  const int rank = static_cast<int>(threadIdx.x);
  const int size = static_cast<int>(blockDim.x);
  const coop::Scratch s =
      coop::make_scratch(static_cast<char*>(a.pool) + static_cast<std::size_t>(blockIdx.x) * a.slot_bytes, a.capacity);
  using Sink = std::conditional_t<Deterministic, ExactSink, AtomicSink>;
  Sink sink;
  if constexpr (Deterministic) {
    sink = ExactSink{a.matrix, a.n, a.entries, a.exponent, a.diagonal_low, a.diagonal_high,
                     a.group_rhs + static_cast<std::int64_t>(blockIdx.x) * a.n};
  } else {
    sink = AtomicSink{a.matrix, a.n, a.rhs, a.entries};
  }
  Tally t;
  for (std::int64_t i = blockIdx.x; i < a.n_records; i += gridDim.x) {
    const std::int64_t r = a.records[i];
    coop::phase_fit(rank, a.batch, a.state, r, a.options, s, state);
    __syncthreads();
    if (rank == 0 && book_fit(state.fit, t, a, r) && state.overflow != 0) report_failure(a, r);
    if (state.contributes != 0) {
      coop::phase_panels(rank, size, a.batch, r, s, state, a.build_matrix, sink);
      __syncthreads();
      if (a.build_matrix) coop::phase_tiles(rank, size, a.batch, r, s, state, sink);
    }
    __syncthreads();  // the scratch and the state are reused by the next record
  }
  if (rank == 0) {
    if constexpr (Deterministic) {
      add_group_tally(t, &a.group_totals[blockIdx.x]);
    } else {
      add_tally(t, a.totals);
    }
  }
}

// One thread per element (a, b), a > b, of the lower triangle: low word at (a, b), high word at
// (b, a); the diagonal from its own words.
__global__ void fixed_to_double(double* m, std::int64_t n, const std::int32_t* exponent,
                                const unsigned long long* diagonal_low, const unsigned long long* diagonal_high) {
  const std::int64_t total = n * n;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t row = k % n;
    const std::int64_t col = k / n;
    if (row < col) continue;
    const int shift = kernels::fixed::shift_of(exponent[row], exponent[col]);
    if (row == col) {
      m[col * n + row] = kernels::fixed::from_fixed(kernels::fixed::from_words(diagonal_low[row], diagonal_high[row]), shift);
      continue;
    }
    double* lower = &m[col * n + row];
    double* upper = &m[row * n + col];
    const unsigned long long low = *reinterpret_cast<const unsigned long long*>(lower);
    const unsigned long long high = *reinterpret_cast<const unsigned long long*>(upper);
    const double v = kernels::fixed::from_fixed(kernels::fixed::from_words(low, high), shift);
    *lower = v;
    *upper = v;
  }
}

// b[i] = sum over the groups g, in order, of group_rhs[g n + i].
__global__ void sum_group_vectors(const double* group_rhs, std::int64_t groups, std::int64_t n, double* rhs) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  double sum = 0.0;
  for (std::int64_t g = 0; g < groups; ++g) sum += group_rhs[g * n + i];
  rhs[i] = sum;
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

void launch_accumulate_cooperative(const AccumulateLaunch& launch, int group_threads, cudaStream_t stream) {
  const std::int64_t active = launch.n_records < launch.slots ? launch.n_records : launch.slots;
  if (active <= 0) return;
  if (group_threads <= 0 || group_threads > kMaxGroupThreads || group_threads % 32 != 0) {
    throw RuntimeError("CUDA accumulator: a group of " + std::to_string(group_threads) + " threads (32 to " +
                       std::to_string(kMaxGroupThreads) + ", a multiple of 32)");
  }
  if (launch.group_rhs != nullptr) {
    accumulate_cooperative<true><<<static_cast<unsigned>(active), group_threads, 0, stream>>>(launch);
  } else {
    accumulate_cooperative<false><<<static_cast<unsigned>(active), group_threads, 0, stream>>>(launch);
  }
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_fixed_to_double(double* matrix, std::int64_t n, const std::int32_t* exponent,
                            const unsigned long long* diagonal_low, const unsigned long long* diagonal_high,
                            cudaStream_t stream) {
  if (n <= 0) return;
  const std::int64_t blocks = std::min<std::int64_t>((n * n + 255) / 256, 65536);
  fixed_to_double<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(matrix, n, exponent, diagonal_low, diagonal_high);
  GPEDE_CUDA_CHECK(cudaGetLastError());
}

void launch_sum_group_vectors(const double* group_rhs, std::int64_t groups, std::int64_t n, double* rhs,
                              cudaStream_t stream) {
  if (n <= 0) return;
  sum_group_vectors<<<grid_for(n, 256), 256, 0, stream>>>(group_rhs, groups, n, rhs);
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

int accumulate_groups_per_multiprocessor(int group_threads) {
  int blocks = 0;
  GPEDE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, accumulate_cooperative<false>, group_threads, 0));
  return std::max(blocks, 1);
}

bool accumulate_kernels_loadable(std::string& why) {
  cudaFuncAttributes attributes{};
  const cudaError_t status = cudaFuncGetAttributes(&attributes, accumulate_cooperative<false>);
  if (status == cudaSuccess) return true;
  (void)cudaGetLastError();
  why = std::string("the kernels of this build cannot run on this device: ") + cudaGetErrorName(status) + " (" +
        cudaGetErrorString(status) + "); rebuild with -DCMAKE_CUDA_ARCHITECTURES set to the device's architecture";
  return false;
}

}  // namespace gpede::detail::cuda
