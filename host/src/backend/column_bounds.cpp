#include "gpede/detail/column_bounds.hpp"

#include <algorithm>
#include <cmath>

namespace gpede::detail {

void ColumnBounds::reset(std::int64_t n_variable, const std::vector<std::int32_t>& variable_index,
                         const kernels::LocalFitOptions& options) {
  m_count.assign(static_cast<std::size_t>(std::max<std::int64_t>(n_variable, 0)), 0);
  m_largest.assign(m_count.size(), 0.0);
  m_variable_index = variable_index;
  m_scale_global = options.scale_global;
}

void ColumnBounds::add(const RecordBatch& batch) {
  const std::int64_t n_records = static_cast<std::int64_t>(batch.n_records());
  // (variable index, sum of |derivatives|) of one measurement, merged by index
  std::vector<std::pair<std::int32_t, double>> terms;
  for (std::int64_t r = 0; r < n_records; ++r) {
    const double rw = std::abs(batch.record_weight[static_cast<std::size_t>(r)]);
    for (std::int64_t m = batch.record_begin[r]; m < batch.record_begin[r + 1]; ++m) {
      const std::int64_t e0 = batch.global_begin[m];
      const std::int64_t e1 = batch.global_begin[m + 1];
      if (e1 == e0) continue;
      terms.clear();
      for (std::int64_t e = e0; e < e1; ++e) {
        const std::int32_t v = m_variable_index[static_cast<std::size_t>(batch.global_index[e])];
        if (v >= 0) terms.emplace_back(v, std::abs(batch.global_deriv[e]));
      }
      if (terms.empty()) continue;
      std::sort(terms.begin(), terms.end());
      const double sigma = batch.meas_sigma[m] * m_scale_global;
      const double inverse_variance = 1.0 / (sigma * sigma);
      for (std::size_t k = 0; k < terms.size();) {
        const std::int32_t v = terms[k].first;
        double sum = 0.0;
        for (; k < terms.size() && terms[k].first == v; ++k) sum += terms[k].second;
        const double term = rw * sum * sum * inverse_variance;
        ++m_count[static_cast<std::size_t>(v)];
        // A NaN term (an infinite error times a zero derivative) makes the bound unusable: infinity.
        double& largest = m_largest[static_cast<std::size_t>(v)];
        largest = term == term ? std::max(largest, term) : HUGE_VAL;
      }
    }
  }
}

std::vector<std::int32_t> ColumnBounds::exponents() const {
  std::vector<std::int32_t> out(m_count.size(), 0);
  for (std::size_t v = 0; v < m_count.size(); ++v) {
    if (m_count[v] == 0 || m_largest[v] == 0.0) continue;
    const double bound = static_cast<double>(m_count[v]) * m_largest[v];
    if (!std::isfinite(bound)) {
      out[v] = 1023;
      continue;
    }
    int exponent = 0;
    std::frexp(bound, &exponent);  // bound < 2^exponent
    out[v] = exponent;
  }
  return out;
}

}  // namespace gpede::detail
