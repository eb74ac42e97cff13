// The global matrix in sparse storage (pede's sparseMINRES): the lower triangle, diagonal included,
// in compressed columns, on a pattern fixed before the first building pass from the pairs of
// variable parameters that share a record. Records add their Schur contributions into it (one
// value array per thread, summed at the end of the pass); pre-sigmas and Measurement terms that
// couple parameters outside the pattern go to a short list beside it. MINRES uses its product
// with a vector and its diagonal.
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "gpede/kernels/local_fit.hpp"
#include "gpede/record_batch.hpp"

namespace gpede {
class ProcessGroup;
}

namespace gpede::detail {

class WorkerPool;

/// Collects the pattern in two looks at the records. First the parameter groups: runs of
/// consecutive variable indices that records always hold together (a sensor's or a wire's
/// parameters; pede's parameter groups); then the pairs of groups that share a record. The matrix
/// stores every element of the blocks of those pairs: for alignment records, whose parameters come
/// in such groups, exactly the elements that records touch.
class SparsePattern {
 public:
  /// Starts the first look. `bitmap`: one bit per pair of groups where the lower triangle's bits
  /// fit kBitmapBytes (false: always the per-column lists, for tests).
  void reset(std::int64_t n_variable, const std::vector<std::int32_t>& variable_index, bool bitmap = true);
  /// First look: where the runs of each record's variable indices begin and end.
  void add_boundaries(const RecordBatch& batch);
  /// Ends the first look: the groups are fixed, the second look begins.
  void finish_groups();
  /// Second look: every record's pairs of groups (batch.global_index filled).
  void add(const RecordBatch& batch);
  /// Processes that looked at their own records: after the first look (before finish_groups) the
  /// union of their boundaries, after the second the union of their pairs, so that every process
  /// ends with the pattern of all records. Collective.
  void combine_boundaries(ProcessGroup& processes);
  void combine_pairs(ProcessGroup& processes);
  std::int64_t n() const { return m_n; }
  std::int64_t groups() const { return static_cast<std::int64_t>(m_group_start.size()) - 1; }

 private:
  friend class SparseMatrix;
  // The distinct groups of one record (ascending, unique afterwards) into the pattern.
  void add_groups(std::vector<std::int32_t>& groups);
  void compact(std::int64_t column);
  void record_indices(const RecordBatch& batch, std::int64_t r);  // into m_scratch, sorted, unique
  std::int64_t m_n = 0;
  bool m_bitmap_allowed = true;
  std::vector<std::int32_t> m_variable_index;  // per label
  std::vector<char> m_boundary;                // first look: a group starts at i
  std::vector<std::int64_t> m_group_start;     // groups + 1
  std::vector<std::int32_t> m_group_of;        // per variable index
  // Few groups (the lower triangle's bits within kBitmapBytes): one bit per pair, column by column.
  static constexpr std::size_t kBitmapBytes = std::size_t{64} << 20;
  std::vector<std::uint64_t> m_bits;
  std::vector<std::int64_t> m_bit_start;  // per group column: its first bit (rows g..G-1)
  // More groups: per column the rows (>= column), a sorted and unique head and an unsorted tail.
  std::vector<std::vector<std::int32_t>> m_rows;
  std::vector<std::uint32_t> m_sorted;  // per column: length of the sorted, unique head
  std::vector<std::int32_t> m_scratch;
};

class SparseMatrix {
 public:
  SparseMatrix() = default;
  /// Takes the pattern (after its second look; every diagonal element included) and frees it.
  explicit SparseMatrix(SparsePattern&& pattern);

  std::int64_t n() const { return m_n; }
  /// Stored elements (lower triangle, diagonal included).
  std::int64_t nonzeros() const { return static_cast<std::int64_t>(m_row.size()); }
  std::size_t bytes() const;

  /// A value array for this pattern (zeros): the matrix's own, or a thread's partial sums.
  std::vector<double>& values() { return m_values; }
  const std::vector<double>& values() const { return m_values; }
  void zero();
  /// Adds a record's contribution (lower triangle of its K x K block) into `target` (a value array
  /// of this pattern), with atomic adds if asked. Throws RuntimeError if an element lies outside
  /// the pattern (a bug).
  void add(const kernels::GlobalContribution& c, double* target, bool atomic = false) const;
  /// Adds `value` at (row, col) (either triangle): into the pattern where it has the element, else
  /// into the list beside it.
  void add_element(std::int64_t row, std::int64_t col, double value);

  std::vector<double> diagonal() const;
  /// The band of width w (diagonal included), row-major n x w: [i * w + k] = C(i, i - k).
  std::vector<double> band(std::int64_t w) const;
  /// y := C x (x and y of size n), on the pool's threads if given and the matrix has at least
  /// `threaded_from` elements (columns split by their elements, each thread's sums apart, then added).
  void multiply(const std::vector<double>& x, std::vector<double>& y, WorkerPool* pool = nullptr,
                std::int64_t threaded_from = 100000) const;
  /// Indices of the rows or columns that hold a non-finite value, ascending.
  std::vector<std::int64_t> nonfinite_rows() const;

 private:
  std::int64_t find(std::int64_t row, std::int64_t col) const;  // -1 if absent; row >= col
  std::int64_t m_n = 0;
  std::vector<std::int64_t> m_start;  // per column, n + 1
  std::vector<std::int32_t> m_row;    // ascending within a column; the diagonal first
  std::vector<double> m_values;
  std::map<std::pair<std::int64_t, std::int64_t>, double> m_extra;  // (row >= col) outside the pattern
  void multiply_columns(const std::vector<double>& x, double* y, std::int64_t j0, std::int64_t j1) const;
  mutable std::vector<std::vector<double>> m_partial;  // threaded products: the threads' sums
  mutable std::vector<std::int64_t> m_split;           // threaded products: first column per thread
};

}  // namespace gpede::detail
