#include "compact_batch.hpp"

#include <cmath>
#include <limits>

namespace gpede::detail {
namespace {

template <class To, class From>
void narrow(const std::vector<From>& in, std::vector<To>& out) {
  out.resize(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = static_cast<To>(in[i]);
}

template <class To, class From>
void widen(const std::vector<From>& in, std::vector<To>& out) {
  out.resize(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = static_cast<To>(in[i]);
}

}  // namespace

void CompactValues::assign(const std::vector<double>& values) {
  m_as_float = true;
  for (double v : values) {
    // NaN never compares equal: kept as a double, payload and all
    if (static_cast<double>(static_cast<float>(v)) != v) {
      m_as_float = false;
      break;
    }
  }
  if (m_as_float) {
    narrow(values, m_floats);
    m_doubles = std::vector<double>();
  } else {
    m_doubles = values;
    m_floats = std::vector<float>();
  }
}

void CompactValues::expand(std::vector<double>& out) const {
  if (m_as_float) {
    widen(m_floats, out);
  } else {
    out = m_doubles;
  }
}

CompactBatch::CompactBatch(RecordBatch&& batch) {
  const auto limit = static_cast<std::int64_t>(std::numeric_limits<std::uint32_t>::max());
  if (batch.global_begin.back() > limit || batch.local_begin.back() > limit || batch.record_begin.back() > limit) {
    m_raw_kept = true;
    m_raw = std::move(batch);
    return;
  }
  narrow(batch.record_begin, m_record_begin);
  narrow(batch.local_begin, m_local_begin);
  narrow(batch.global_begin, m_global_begin);
  m_record_weight = std::move(batch.record_weight);
  m_record_file = std::move(batch.record_file);
  m_record_number = std::move(batch.record_number);
  m_meas_value.assign(batch.meas_value);
  m_meas_sigma.assign(batch.meas_sigma);
  m_local_deriv.assign(batch.local_deriv);
  m_global_deriv.assign(batch.global_deriv);
  m_local_index = std::move(batch.local_index);
  m_label_or_index = std::move(batch.global_label);
}

void CompactBatch::expand(const std::vector<std::int32_t>& labels, RecordBatch& out) const {
  if (m_raw_kept) {
    out = m_raw;
    return;
  }
  widen(m_record_begin, out.record_begin);
  widen(m_local_begin, out.local_begin);
  widen(m_global_begin, out.global_begin);
  out.record_weight = m_record_weight;
  out.record_file = m_record_file;
  out.record_number = m_record_number;
  m_meas_value.expand(out.meas_value);
  m_meas_sigma.expand(out.meas_sigma);
  m_local_deriv.expand(out.local_deriv);
  m_global_deriv.expand(out.global_deriv);
  out.local_index = m_local_index;
  if (m_mapped) {
    out.global_index = m_label_or_index;
    out.global_label.resize(m_label_or_index.size());
    for (std::size_t k = 0; k < m_label_or_index.size(); ++k) {
      const std::int32_t index = m_label_or_index[k];
      out.global_label[k] = index >= 0 && static_cast<std::size_t>(index) < labels.size() ? labels[index] : 0;
    }
  } else {
    out.global_label = m_label_or_index;
    out.global_index.clear();
  }
}

std::size_t CompactBatch::bytes() const {
  if (m_raw_kept) return m_raw.bytes();
  return (m_record_begin.size() + m_local_begin.size() + m_global_begin.size()) * sizeof(std::uint32_t) +
         m_record_weight.size() * sizeof(double) + m_record_file.size() * sizeof(std::int32_t) +
         m_record_number.size() * sizeof(std::int64_t) + m_meas_value.bytes() + m_meas_sigma.bytes() +
         m_local_deriv.bytes() + m_global_deriv.bytes() +
         (m_local_index.size() + m_label_or_index.size()) * sizeof(std::int32_t);
}

}  // namespace gpede::detail
