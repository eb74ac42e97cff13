// Sparse storage of the global matrix (sparse_matrix.hpp).
#include "gpede/detail/sparse_matrix.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>

#include "gpede/error.hpp"

namespace gpede::detail {

void SparsePattern::reset(std::int64_t n_variable, const std::vector<std::int32_t>& variable_index, bool bitmap) {
  m_n = n_variable;
  m_variable_index = variable_index;
  const std::size_t n = static_cast<std::size_t>(n_variable);
  m_bits = std::vector<std::uint64_t>();
  m_bit_start = std::vector<std::int64_t>();
  m_rows = std::vector<std::vector<std::int32_t>>();
  m_sorted = std::vector<std::uint32_t>();
  if (bitmap && n * (n + 1) / 2 / 8 <= kBitmapBytes) {
    m_bit_start.resize(n + 1, 0);
    for (std::size_t j = 0; j < n; ++j) m_bit_start[j + 1] = m_bit_start[j] + static_cast<std::int64_t>(n - j);
    m_bits.assign(static_cast<std::size_t>((m_bit_start[n] + 63) / 64), 0);
    for (std::size_t j = 0; j < n; ++j) {  // the diagonal
      const std::int64_t bit = m_bit_start[j];
      m_bits[static_cast<std::size_t>(bit >> 6)] |= std::uint64_t{1} << (bit & 63);
    }
    return;
  }
  m_rows.assign(static_cast<std::size_t>(n_variable), {});
  m_sorted.assign(static_cast<std::size_t>(n_variable), 0);
  for (std::int64_t j = 0; j < n_variable; ++j) {
    m_rows[static_cast<std::size_t>(j)].push_back(static_cast<std::int32_t>(j));  // the diagonal
    m_sorted[static_cast<std::size_t>(j)] = 1;
  }
}

void SparsePattern::compact(std::int64_t column) {
  std::vector<std::int32_t>& rows = m_rows[static_cast<std::size_t>(column)];
  std::uint32_t& sorted = m_sorted[static_cast<std::size_t>(column)];
  std::sort(rows.begin() + sorted, rows.end());
  std::inplace_merge(rows.begin(), rows.begin() + sorted, rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  sorted = static_cast<std::uint32_t>(rows.size());
}

void SparsePattern::add_indices(std::vector<std::int32_t>& indices) {
  std::sort(indices.begin(), indices.end());
  indices.erase(std::unique(indices.begin(), indices.end()), indices.end());
  const std::size_t k = indices.size();
  if (!m_bits.empty()) {
    for (std::size_t b = 0; b < k; ++b) {
      const std::int64_t base = m_bit_start[static_cast<std::size_t>(indices[b])] - indices[b];
      for (std::size_t a = b + 1; a < k; ++a) {
        const std::int64_t bit = base + indices[a];
        m_bits[static_cast<std::size_t>(bit >> 6)] |= std::uint64_t{1} << (bit & 63);
      }
    }
    return;
  }
  for (std::size_t b = 0; b < k; ++b) {
    const std::int32_t column = indices[b];
    std::vector<std::int32_t>& rows = m_rows[static_cast<std::size_t>(column)];
    const std::uint32_t sorted = m_sorted[static_cast<std::size_t>(column)];
    // Rows already in the sorted head are skipped (the common case once the pattern has formed);
    // the record's rows ascend, so the search starts where the last one ended.
    std::size_t pos = 0;
    for (std::size_t a = b + 1; a < k; ++a) {
      const std::int32_t row = indices[a];
      pos = static_cast<std::size_t>(std::lower_bound(rows.begin() + static_cast<std::ptrdiff_t>(pos),
                                                      rows.begin() + sorted, row) - rows.begin());
      if (pos == sorted || rows[pos] != row) rows.push_back(row);
    }
    // Keep the unsorted tail short: at most as long as the head.
    if (rows.size() > 2 * static_cast<std::size_t>(sorted) + 16) compact(column);
  }
}

void SparsePattern::add(const RecordBatch& batch) {
  const std::int64_t n_records = static_cast<std::int64_t>(batch.record_begin.size()) - 1;
  for (std::int64_t r = 0; r < n_records; ++r) {
    m_scratch.clear();
    const std::int64_t e0 = batch.global_begin[static_cast<std::size_t>(batch.record_begin[r])];
    const std::int64_t e1 = batch.global_begin[static_cast<std::size_t>(batch.record_begin[r + 1])];
    for (std::int64_t e = e0; e < e1; ++e) {
      const std::int32_t label = batch.global_index[static_cast<std::size_t>(e)];
      if (label < 0 || static_cast<std::size_t>(label) >= m_variable_index.size()) continue;
      const std::int32_t v = m_variable_index[static_cast<std::size_t>(label)];
      if (v >= 0) m_scratch.push_back(v);
    }
    if (m_scratch.size() > 1) add_indices(m_scratch);
  }
}

SparseMatrix::SparseMatrix(SparsePattern&& pattern) : m_n(pattern.m_n) {
  m_start.assign(static_cast<std::size_t>(m_n) + 1, 0);
  if (!pattern.m_bits.empty()) {
    const auto bit_set = [&](std::int64_t bit) {
      return (pattern.m_bits[static_cast<std::size_t>(bit >> 6)] >> (bit & 63)) & 1u;
    };
    for (std::int64_t j = 0; j < m_n; ++j) {
      std::int64_t count = 0;
      for (std::int64_t bit = pattern.m_bit_start[j]; bit < pattern.m_bit_start[j + 1]; ++bit) count += bit_set(bit);
      m_start[static_cast<std::size_t>(j) + 1] = m_start[static_cast<std::size_t>(j)] + count;
    }
    m_row.resize(static_cast<std::size_t>(m_start.back()));
    std::int64_t p = 0;
    for (std::int64_t j = 0; j < m_n; ++j) {
      for (std::int64_t bit = pattern.m_bit_start[j]; bit < pattern.m_bit_start[j + 1]; ++bit) {
        if (bit_set(bit)) m_row[static_cast<std::size_t>(p++)] = static_cast<std::int32_t>(j + bit - pattern.m_bit_start[j]);
      }
    }
    pattern = SparsePattern();
    m_values.assign(m_row.size(), 0.0);
    return;
  }
  for (std::int64_t j = 0; j < m_n; ++j) {
    pattern.compact(j);
    m_start[static_cast<std::size_t>(j) + 1] =
        m_start[static_cast<std::size_t>(j)] + static_cast<std::int64_t>(pattern.m_rows[static_cast<std::size_t>(j)].size());
  }
  m_row.resize(static_cast<std::size_t>(m_start.back()));
  for (std::int64_t j = 0; j < m_n; ++j) {
    std::vector<std::int32_t>& rows = pattern.m_rows[static_cast<std::size_t>(j)];
    std::copy(rows.begin(), rows.end(), m_row.begin() + m_start[static_cast<std::size_t>(j)]);
    rows = std::vector<std::int32_t>();
  }
  pattern = SparsePattern();
  m_values.assign(m_row.size(), 0.0);
}

std::size_t SparseMatrix::bytes() const {
  return m_start.size() * sizeof(std::int64_t) + m_row.size() * (sizeof(std::int32_t) + sizeof(double)) +
         m_extra.size() * 64;
}

void SparseMatrix::zero() {
  std::fill(m_values.begin(), m_values.end(), 0.0);
  m_extra.clear();
}

void SparseMatrix::add(const kernels::GlobalContribution& c, double* target, bool atomic) const {
  const std::int32_t k = c.size;
  for (std::int32_t b = 0; b < k; ++b) {
    const std::int32_t column = c.index[b];
    const double* from = c.matrix + static_cast<std::int64_t>(b) * k;
    const std::int32_t* rows = m_row.data();
    std::int64_t p = m_start[static_cast<std::size_t>(column)];
    const std::int64_t end = m_start[static_cast<std::size_t>(column) + 1];
    // The record's rows are ascending, as are the column's: one merge walk.
    for (std::int32_t a = b; a < k; ++a) {
      const std::int32_t row = c.index[a];
      while (p < end && rows[p] < row) ++p;
      if (p == end || rows[p] != row) {
        throw RuntimeError("sparse global matrix: element (" + std::to_string(row) + ", " + std::to_string(column) +
                           ") of a record is outside the pattern");
      }
      if (atomic) {
        std::atomic_ref<double>(target[p]).fetch_add(from[a], std::memory_order_relaxed);
      } else {
        target[p] += from[a];
      }
    }
  }
}

std::int64_t SparseMatrix::find(std::int64_t row, std::int64_t col) const {
  const auto first = m_row.begin() + m_start[static_cast<std::size_t>(col)];
  const auto last = m_row.begin() + m_start[static_cast<std::size_t>(col) + 1];
  const auto at = std::lower_bound(first, last, static_cast<std::int32_t>(row));
  return at != last && *at == row ? static_cast<std::int64_t>(at - m_row.begin()) : -1;
}

void SparseMatrix::add_element(std::int64_t row, std::int64_t col, double value) {
  if (row < col) std::swap(row, col);
  if (row < 0 || row >= m_n || col < 0) {
    throw RuntimeError("sparse global matrix: element (" + std::to_string(row) + ", " + std::to_string(col) +
                       ") outside a matrix of " + std::to_string(m_n) + " rows");
  }
  const std::int64_t p = find(row, col);
  if (p >= 0) {
    m_values[static_cast<std::size_t>(p)] += value;
  } else {
    m_extra[{row, col}] += value;
  }
}

std::vector<double> SparseMatrix::diagonal() const {
  std::vector<double> d(static_cast<std::size_t>(m_n));
  for (std::int64_t j = 0; j < m_n; ++j) d[static_cast<std::size_t>(j)] = m_values[static_cast<std::size_t>(m_start[j])];
  return d;
}

void SparseMatrix::multiply(const std::vector<double>& x, std::vector<double>& y) const {
  std::fill(y.begin(), y.begin() + m_n, 0.0);
  for (std::int64_t j = 0; j < m_n; ++j) {
    const std::int64_t p0 = m_start[static_cast<std::size_t>(j)], p1 = m_start[static_cast<std::size_t>(j) + 1];
    const double xj = x[static_cast<std::size_t>(j)];
    double sum = m_values[static_cast<std::size_t>(p0)] * xj;  // the diagonal
    for (std::int64_t p = p0 + 1; p < p1; ++p) {
      const std::int32_t i = m_row[static_cast<std::size_t>(p)];
      const double v = m_values[static_cast<std::size_t>(p)];
      y[static_cast<std::size_t>(i)] += v * xj;
      sum += v * x[static_cast<std::size_t>(i)];
    }
    y[static_cast<std::size_t>(j)] += sum;
  }
  for (const auto& [at, v] : m_extra) {
    const auto [i, j] = at;
    y[static_cast<std::size_t>(i)] += v * x[static_cast<std::size_t>(j)];
    if (i != j) y[static_cast<std::size_t>(j)] += v * x[static_cast<std::size_t>(i)];
  }
}

std::vector<std::int64_t> SparseMatrix::nonfinite_rows() const {
  std::vector<char> bad(static_cast<std::size_t>(m_n), 0);
  for (std::int64_t j = 0; j < m_n; ++j) {
    for (std::int64_t p = m_start[static_cast<std::size_t>(j)]; p < m_start[static_cast<std::size_t>(j) + 1]; ++p) {
      if (!std::isfinite(m_values[static_cast<std::size_t>(p)])) {
        bad[static_cast<std::size_t>(j)] = 1;
        bad[static_cast<std::size_t>(m_row[static_cast<std::size_t>(p)])] = 1;
      }
    }
  }
  for (const auto& [at, v] : m_extra) {
    if (!std::isfinite(v)) bad[static_cast<std::size_t>(at.first)] = bad[static_cast<std::size_t>(at.second)] = 1;
  }
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < m_n; ++i) {
    if (bad[static_cast<std::size_t>(i)]) out.push_back(i);
  }
  return out;
}

}  // namespace gpede::detail
