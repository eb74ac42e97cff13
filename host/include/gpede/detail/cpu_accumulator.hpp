// CPU accumulation of a pass over the data: local fits of every record, their Schur complements
// added into a dense symmetric global matrix and vector, on worker threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gpede/detail/backend.hpp"
#include "gpede/kernels/local_fit.hpp"

namespace gpede::detail {

class PackedMatrix;
class SparseMatrix;

/// A thread's scratch for local fits (kernels::fit_record, global_contribution), grown to the
/// largest record met.
class LocalFitWorkspace {
 public:
  /// Scratch for record r of the batch, whose shape is `shape`. A record whose local fit needs
  /// more than `limit` bytes (thousands of local parameters fitted at once) is a RuntimeError that
  /// names it, after "<who>: ".
  const kernels::LocalFitScratch& ensure(const kernels::RecordShape& shape, const RecordBatch& batch, std::int64_t r,
                                         std::size_t limit, const std::string& who);

 private:
  std::vector<double> m_buffer;
  kernels::RecordShape m_capacity;
  kernels::LocalFitScratch m_scratch;
};

class CpuAccumulator {
 public:
  /// `threads` (0: every usable CPU) threads, or fewer if the system refuses some (threads()).
  explicit CpuAccumulator(int threads);
  ~CpuAccumulator();
  CpuAccumulator(const CpuAccumulator&) = delete;
  CpuAccumulator& operator=(const CpuAccumulator&) = delete;

  /// Where building passes add the matrix: into `target` (sparse storage, its pattern fixed; the
  /// accumulator does not own it), or, with nullptr, into the dense matrix (the default).
  void set_sparse_target(SparseMatrix* target);
  /// Building passes add the matrix into `target` (packed storage; reset to zeros of the pass's
  /// size at begin_pass; not owned), or, with nullptr, into the dense matrix.
  void set_packed_target(PackedMatrix* target);
  /// Starts a pass; with setup.build_matrix the matrix is (re)allocated as n_variable^2 zeros (or
  /// the sparse or packed target's values zeroed).
  void begin_pass(const PassSetup& setup);
  /// Processes every record of the batch (global_index filled). Returns when done.
  void accumulate(const RecordBatch& batch);
  /// Sums of the pass, b, entries per label.
  PassTotals end_pass();
  /// The global matrix of the last building pass: n x n, column-major, both triangles valid.
  std::vector<double>& matrix();
  /// The threads that run the local fits, the caller's included.
  int threads() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace gpede::detail
