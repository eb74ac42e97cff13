// A batch of Mille records in a compact structure-of-arrays layout. The arrays are contiguous and
// index-based so that a backend can copy them to a device as they are (see RecordBatchView in
// kernels/include/gpede/kernels/record_view.hpp for the raw-pointer view).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace gpede {

/// Records in structure-of-arrays layout.
///
/// Record r owns measurements [record_begin[r], record_begin[r+1]).
/// Measurement m owns local derivatives [local_begin[m], local_begin[m+1]) and
/// global derivatives [global_begin[m], global_begin[m+1]).
/// Local indices are 0-based (the file's 1-based local index minus one).
/// global_label is the label as read (> 0); global_index is filled by the label map
/// (0-based index into the list of all labels, -1 until mapped).
struct RecordBatch {
  // per record, size n_records()+1 for record_begin, n_records() for the others
  std::vector<std::int64_t> record_begin{0};
  std::vector<double> record_weight;        ///< file weight of the record's file
  std::vector<std::int32_t> record_file;    ///< index of the record's file in the steering's file list
  std::vector<std::int64_t> record_number;  ///< 1-based record number within its file
  /// The record's time (gpede/record_time.hpp: its special block, else its file's `filetime`;
  /// kNoTime where it has none). Empty, or one per record.
  std::vector<std::int64_t> record_time;
  // per measurement
  std::vector<double> meas_value;           ///< measured residual rMeas
  std::vector<double> meas_sigma;           ///< measurement error (> 0)
  std::vector<std::int64_t> local_begin{0};
  std::vector<std::int64_t> global_begin{0};
  // local derivatives
  std::vector<std::int32_t> local_index;
  std::vector<double> local_deriv;
  // global derivatives
  std::vector<std::int32_t> global_label;
  std::vector<std::int32_t> global_index;
  std::vector<double> global_deriv;

  std::size_t n_records() const noexcept { return record_begin.size() - 1; }
  std::size_t n_measurements() const noexcept { return local_begin.size() - 1; }

  /// Empties the batch, keeping capacity.
  void clear() {
    record_begin.assign(1, 0);
    record_weight.clear();
    record_file.clear();
    record_number.clear();
    record_time.clear();
    meas_value.clear();
    meas_sigma.clear();
    local_begin.assign(1, 0);
    global_begin.assign(1, 0);
    local_index.clear();
    local_deriv.clear();
    global_label.clear();
    global_index.clear();
    global_deriv.clear();
  }

  /// Bytes held by the arrays (for memory planning and reports).
  std::size_t bytes() const noexcept {
    return record_begin.size() * 8 + record_weight.size() * 8 + record_file.size() * 4 +
           record_number.size() * 8 + record_time.size() * 8 + meas_value.size() * 8 + meas_sigma.size() * 8 +
           local_begin.size() * 8 + global_begin.size() * 8 + local_index.size() * 4 +
           local_deriv.size() * 8 + global_label.size() * 4 + global_index.size() * 4 +
           global_deriv.size() * 8;
  }
};

}  // namespace gpede
