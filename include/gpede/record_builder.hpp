// Records built in memory with Mille's calls, checked as they come: the way a framework hands
// its tracks to the solver without writing a binary file (C++, the C API and Python use it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>

#include "gpede/record_batch.hpp"
#include "gpede/solver.hpp"

namespace gpede {

/// Builds records measurement by measurement, as Mille::mille and Mille::end do. Every value is
/// checked when it is added: a bad one throws InputError (exit code 20) naming the record and the
/// measurement, and the record being built is discarded whole (the ended ones are kept).
class RecordBuilder {
 public:
  /// Adds a measurement to the current record: local_derivatives[k] belongs to local parameter
  /// k + 1, global_derivatives[k] to labels[k] (1 to 2^31 - 1); the measured residual and its
  /// error sigma (> 0). Zero derivatives are left out. The two global spans have one size.
  void add_measurement(std::span<const double> local_derivatives, std::span<const double> global_derivatives,
                       std::span<const std::int32_t> labels, double measurement, double sigma);
  /// The current record's time (gpede/record_time.hpp), as MilleWriter::add_time writes it.
  void set_time(std::int32_t experiment, std::int32_t run);
  /// Ends the current record; a record without measurements is refused.
  void end_record();
  /// Discards the current record.
  void kill_record() noexcept;

  /// Records ended so far.
  std::size_t records() const noexcept { return m_done.n_records(); }
  /// Measurements of the record being built.
  std::size_t open_measurements() const noexcept { return m_current.n_measurements(); }
  /// The ended records (record_file 0, weight 1, record_number 1, 2, ...).
  const RecordBatch& batch() const noexcept { return m_done; }
  /// A source over the ended records for solve(); the builder must outlive it and stay unchanged
  /// while it is used.
  std::unique_ptr<RecordSource> source() const;
  /// Empties the builder.
  void clear() noexcept;

 private:
  [[noreturn]] void refuse(const std::string& what);

  RecordBatch m_done;
  RecordBatch m_current;  // the open record's measurements
  std::int64_t m_time = std::numeric_limits<std::int64_t>::min();  // the open record's time (kNoTime)
};

/// A source over records [0, n) of a batch held elsewhere (which must outlive it), pass after pass.
std::unique_ptr<RecordSource> make_memory_source(const RecordBatch& records);

}  // namespace gpede
