#include "compact_batch.hpp"

#include <cmath>
#include <type_traits>
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

CompactBatch::CompactBatch(const RecordBatch& batch, std::size_t first, std::size_t last) {
  const std::int64_t m0 = batch.record_begin[first], m1 = batch.record_begin[last];
  const std::int64_t l0 = batch.local_begin[m0], l1 = batch.local_begin[m1];
  const std::int64_t g0 = batch.global_begin[m0], g1 = batch.global_begin[m1];
  auto slice = [](const auto& v, std::int64_t from, std::int64_t to) {
    return std::vector<typename std::decay_t<decltype(v)>::value_type>(v.begin() + from, v.begin() + to);
  };
  auto rebase = [](const std::vector<std::int64_t>& v, std::int64_t from, std::int64_t to, std::int64_t base,
                   std::vector<std::uint32_t>& out) {
    out.resize(static_cast<std::size_t>(to - from));
    for (std::int64_t i = from; i < to; ++i) out[static_cast<std::size_t>(i - from)] = static_cast<std::uint32_t>(v[i] - base);
  };
  const auto limit = static_cast<std::int64_t>(std::numeric_limits<std::uint32_t>::max());
  const auto f = static_cast<std::int64_t>(first), l = static_cast<std::int64_t>(last);
  if (m1 - m0 > limit || l1 - l0 > limit || g1 - g0 > limit) {
    m_raw_kept = true;
    RecordBatch& r = m_raw;
    r.record_begin.clear();
    for (std::int64_t i = f; i <= l; ++i) r.record_begin.push_back(batch.record_begin[i] - m0);
    r.record_weight = slice(batch.record_weight, f, l);
    r.record_file = slice(batch.record_file, f, l);
    r.record_number = slice(batch.record_number, f, l);
    r.meas_value = slice(batch.meas_value, m0, m1);
    r.meas_sigma = slice(batch.meas_sigma, m0, m1);
    r.local_begin.clear();
    for (std::int64_t i = m0; i <= m1; ++i) r.local_begin.push_back(batch.local_begin[i] - l0);
    r.global_begin.clear();
    for (std::int64_t i = m0; i <= m1; ++i) r.global_begin.push_back(batch.global_begin[i] - g0);
    r.local_index = slice(batch.local_index, l0, l1);
    r.local_deriv = slice(batch.local_deriv, l0, l1);
    r.global_label = slice(batch.global_label, g0, g1);
    r.global_deriv = slice(batch.global_deriv, g0, g1);
    return;
  }
  rebase(batch.record_begin, f, l + 1, m0, m_record_begin);
  rebase(batch.local_begin, m0, m1 + 1, l0, m_local_begin);
  rebase(batch.global_begin, m0, m1 + 1, g0, m_global_begin);
  m_record_weight = slice(batch.record_weight, f, l);
  m_record_file = slice(batch.record_file, f, l);
  m_record_number = slice(batch.record_number, f, l);
  m_meas_value.assign(slice(batch.meas_value, m0, m1));
  m_meas_sigma.assign(slice(batch.meas_sigma, m0, m1));
  m_local_deriv.assign(slice(batch.local_deriv, l0, l1));
  m_global_deriv.assign(slice(batch.global_deriv, g0, g1));
  m_local_index = slice(batch.local_index, l0, l1);
  m_label_or_index = slice(batch.global_label, g0, g1);
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
