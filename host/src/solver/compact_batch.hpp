// Records kept in memory between passes, in half the bytes of a RecordBatch: values that a float
// holds exactly (all of them for Mille files in single precision) as floats, offsets within the
// batch as 32-bit integers, and the label index in place of the label (the label comes back from
// the label map). Expanded into a RecordBatch, identical to the one read, for every pass.
#pragma once

#include <cstdint>
#include <vector>

#include "gpede/record_batch.hpp"

namespace gpede::detail {

/// An array of doubles kept as floats where every element converts exactly.
class CompactValues {
 public:
  void assign(const std::vector<double>& values);
  void expand(std::vector<double>& out) const;
  std::size_t bytes() const { return m_floats.size() * sizeof(float) + m_doubles.size() * sizeof(double); }

 private:
  std::vector<float> m_floats;
  std::vector<double> m_doubles;
  bool m_as_float = true;
};

class CompactBatch {
 public:
  /// Records [first, last) of a batch as read (labels, no label indices). Offsets beyond
  /// 2^32 - 1 within the piece (not met in practice) keep it as a plain batch.
  CompactBatch(const RecordBatch& batch, std::size_t first, std::size_t last);
  /// Replaces the labels by their indices in `labels_to_index` (LabelMap::index).
  template <class Map>
  void map_labels(const Map& map) {
    if (m_raw_kept) {
      map.map_batch(m_raw);
      return;
    }
    for (std::int32_t& v : m_label_or_index) v = map.index(v);
    m_mapped = true;
  }
  /// The batch as read, with global_index filled if mapped; `labels` (all labels, ascending) turns
  /// indices back into labels.
  void expand(const std::vector<std::int32_t>& labels, RecordBatch& out) const;
  std::size_t bytes() const;

 private:
  bool m_raw_kept = false;
  RecordBatch m_raw;  // only where the offsets do not fit
  std::vector<std::uint32_t> m_record_begin, m_local_begin, m_global_begin;
  std::vector<double> m_record_weight;
  std::vector<std::int32_t> m_record_file;
  std::vector<std::int64_t> m_record_number;
  CompactValues m_meas_value, m_meas_sigma, m_local_deriv, m_global_deriv;
  std::vector<std::int32_t> m_local_index;
  std::vector<std::int32_t> m_label_or_index;
  bool m_mapped = false;
};

}  // namespace gpede::detail
