// Launchers of the accumulation kernels: the local fits of a class of records of one batch and
// their Schur contributions added into the device-resident global matrix (lower triangle) and b,
// with the pass totals reduced on the device. Plain C++ declarations, used by the backend's host
// code; every launcher enqueues on `stream` and checks the launch.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "gpede/kernels/local_fit.hpp"
#include "gpede/kernels/record_view.hpp"

namespace gpede::detail::cuda {

/// Sums of a pass on the device. Signed counts are added as two's complement.
struct DeviceTotals {
  double chi2_sum;
  double function_value;
  unsigned long long ndf_sum;
  double weighted_ndf_sum;
  unsigned long long records;
  unsigned long long accepted;
  unsigned long long rejected_rank;
  unsigned long long rejected_ndf;
  unsigned long long rejected_huge;
  unsigned long long rejected_cut;
  unsigned long long rejected_downweight;
  unsigned long long failures;       ///< records whose scratch was too small (a broken invariant)
  unsigned long long first_failure;  ///< (batch ordinal << 32) | record of one failure; ~0 if none
};

/// One launch: the records of one size class of one batch.
struct AccumulateLaunch {
  kernels::RecordBatchView batch;  ///< device pointers
  kernels::GlobalStateView state;  ///< device pointers
  kernels::LocalFitOptions options;
  const std::int32_t* records = nullptr;  ///< record indices (into the batch) of this class
  std::int64_t n_records = 0;
  kernels::RecordShape capacity;  ///< of every record of the class
  void* pool = nullptr;           ///< scratch: `slots` areas of slot_bytes each
  std::size_t slot_bytes = 0;
  std::int64_t slots = 0;
  bool build_matrix = false;
  double* matrix = nullptr;  ///< n x n column-major; the lower triangle is accumulated
  std::int64_t n = 0;
  double* rhs = nullptr;                   ///< [n]
  unsigned long long* entries = nullptr;   ///< [n_all] measurements per label in accepted fits
  DeviceTotals* totals = nullptr;
  std::uint32_t batch_ordinal = 0;
  // Deterministic mode (all null otherwise): the matrix in 128-bit fixed point (low words in the
  // lower triangle, high words in the upper one, the diagonal's in diagonal_low/high) with the unit
  // of element (a, b) from exponent[a] and exponent[b]; b and the pass sums per group (blockIdx.x).
  const std::int32_t* exponent = nullptr;       ///< [n] per variable parameter
  unsigned long long* diagonal_low = nullptr;   ///< [n]
  unsigned long long* diagonal_high = nullptr;  ///< [n]
  double* group_rhs = nullptr;                  ///< [slots x n]
  DeviceTotals* group_totals = nullptr;         ///< [slots]
};

/// One group of `group_threads` threads (a multiple of 32) per record, the phases of
/// gpede/kernels/cooperative_schur.hpp between barriers; `slot_bytes` is at least
/// cooperative_scratch_bytes(capacity). Uses min(n_records, slots) scratch slots, one per group.
void launch_accumulate_cooperative(const AccumulateLaunch& launch, int group_threads, cudaStream_t stream);

/// Deterministic mode, after the pass: the fixed-point sums (see AccumulateLaunch) into doubles,
/// both triangles; then b as the sums over the groups' vectors in group order.
void launch_fixed_to_double(double* matrix, std::int64_t n, const std::int32_t* exponent,
                            const unsigned long long* diagonal_low, const unsigned long long* diagonal_high,
                            cudaStream_t stream);
void launch_sum_group_vectors(const double* group_rhs, std::int64_t groups, std::int64_t n, double* rhs,
                              cudaStream_t stream);

/// Copies the lower triangle of the n x n column-major matrix onto the upper one.
void launch_symmetrise_lower(double* matrix, std::int64_t n, cudaStream_t stream);

/// matrix(row, col) += value and, off the diagonal, matrix(col, row) += value, for `count` triples.
void launch_add_to_matrix(double* matrix, std::int64_t n, const std::int64_t* rows, const std::int64_t* cols,
                          const double* values, std::int64_t count, cudaStream_t stream);

/// Groups of `group_threads` threads of the accumulation kernel resident on one multiprocessor at
/// once (its registers and shared memory decide; at least 1).
int accumulate_groups_per_multiprocessor(int group_threads);

/// Whether the kernels of this build can run on the current device; why not otherwise.
bool accumulate_kernels_loadable(std::string& why);

}  // namespace gpede::detail::cuda
