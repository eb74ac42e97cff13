// Sparse storage of the global matrix (sparse_matrix.hpp).
#include "gpede/detail/sparse_matrix.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>

#include "gpede/detail/byte_pack.hpp"
#include "gpede/detail/worker_pool.hpp"
#include "gpede/error.hpp"
#include "gpede/solver.hpp"

namespace gpede::detail {

void SparsePattern::reset(std::int64_t n_variable, const std::vector<std::int32_t>& variable_index, bool bitmap) {
  *this = SparsePattern();
  m_n = n_variable;
  m_bitmap_allowed = bitmap;
  m_variable_index = variable_index;
  m_boundary.assign(static_cast<std::size_t>(n_variable) + 1, 0);
  m_boundary[0] = 1;
  m_boundary[static_cast<std::size_t>(n_variable)] = 1;
}

void SparsePattern::record_indices(const RecordBatch& batch, std::int64_t r) {
  m_scratch.clear();
  const std::int64_t e0 = batch.global_begin[static_cast<std::size_t>(batch.record_begin[r])];
  const std::int64_t e1 = batch.global_begin[static_cast<std::size_t>(batch.record_begin[r + 1])];
  for (std::int64_t e = e0; e < e1; ++e) {
    const std::int32_t label = batch.global_index[static_cast<std::size_t>(e)];
    if (label < 0 || static_cast<std::size_t>(label) >= m_variable_index.size()) continue;
    const std::int32_t v = m_variable_index[static_cast<std::size_t>(label)];
    if (v >= 0) m_scratch.push_back(v);
  }
  std::sort(m_scratch.begin(), m_scratch.end());
  m_scratch.erase(std::unique(m_scratch.begin(), m_scratch.end()), m_scratch.end());
}

void SparsePattern::add_boundaries(const RecordBatch& batch) {
  const std::int64_t n_records = static_cast<std::int64_t>(batch.record_begin.size()) - 1;
  for (std::int64_t r = 0; r < n_records; ++r) {
    record_indices(batch, r);
    for (std::size_t k = 0; k < m_scratch.size(); ++k) {
      const std::int32_t v = m_scratch[k];
      if (k == 0 || m_scratch[k - 1] != v - 1) m_boundary[static_cast<std::size_t>(v)] = 1;  // a run begins
      if (k + 1 == m_scratch.size() || m_scratch[k + 1] != v + 1) m_boundary[static_cast<std::size_t>(v) + 1] = 1;
    }
  }
}

void SparsePattern::finish_groups() {
  const std::size_t n = static_cast<std::size_t>(m_n);
  m_group_start.clear();
  m_group_of.assign(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    if (m_boundary[i]) m_group_start.push_back(static_cast<std::int64_t>(i));
    m_group_of[i] = static_cast<std::int32_t>(m_group_start.size()) - 1;
  }
  m_group_start.push_back(m_n);
  m_boundary = std::vector<char>();
  const std::size_t g = m_group_start.size() - 1;
  if (m_bitmap_allowed && g * (g + 1) / 2 / 8 <= kBitmapBytes) {
    m_bit_start.resize(g + 1, 0);
    for (std::size_t j = 0; j < g; ++j) m_bit_start[j + 1] = m_bit_start[j] + static_cast<std::int64_t>(g - j);
    m_bits.assign(static_cast<std::size_t>((m_bit_start[g] + 63) / 64), 0);
    for (std::size_t j = 0; j < g; ++j) {  // the diagonal blocks
      const std::int64_t bit = m_bit_start[j];
      m_bits[static_cast<std::size_t>(bit >> 6)] |= std::uint64_t{1} << (bit & 63);
    }
    return;
  }
  m_rows.assign(g, {});
  m_sorted.assign(g, 1);
  for (std::size_t j = 0; j < g; ++j) m_rows[j].push_back(static_cast<std::int32_t>(j));
}

void SparsePattern::compact(std::int64_t column) {
  std::vector<std::int32_t>& rows = m_rows[static_cast<std::size_t>(column)];
  std::uint32_t& sorted = m_sorted[static_cast<std::size_t>(column)];
  std::sort(rows.begin() + sorted, rows.end());
  std::inplace_merge(rows.begin(), rows.begin() + sorted, rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  sorted = static_cast<std::uint32_t>(rows.size());
}

void SparsePattern::add_groups(std::vector<std::int32_t>& groups) {
  groups.erase(std::unique(groups.begin(), groups.end()), groups.end());  // ascending already
  const std::size_t k = groups.size();
  if (!m_bits.empty()) {
    for (std::size_t b = 0; b < k; ++b) {
      const std::int64_t base = m_bit_start[static_cast<std::size_t>(groups[b])] - groups[b];
      for (std::size_t a = b + 1; a < k; ++a) {
        const std::int64_t bit = base + groups[a];
        m_bits[static_cast<std::size_t>(bit >> 6)] |= std::uint64_t{1} << (bit & 63);
      }
    }
    return;
  }
  for (std::size_t b = 0; b < k; ++b) {
    const std::int32_t column = groups[b];
    std::vector<std::int32_t>& rows = m_rows[static_cast<std::size_t>(column)];
    const std::uint32_t sorted = m_sorted[static_cast<std::size_t>(column)];
    // Rows already in the sorted head are skipped (the common case once the pattern has formed);
    // the record's rows ascend, so the search starts where the last one ended.
    std::size_t pos = 0;
    for (std::size_t a = b + 1; a < k; ++a) {
      const std::int32_t row = groups[a];
      pos = static_cast<std::size_t>(std::lower_bound(rows.begin() + static_cast<std::ptrdiff_t>(pos),
                                                      rows.begin() + sorted, row) - rows.begin());
      if (pos == sorted || rows[pos] != row) rows.push_back(row);
    }
    // Keep the unsorted tail short: at most as long as the head.
    if (rows.size() > 2 * static_cast<std::size_t>(sorted) + 16) compact(column);
  }
}

void SparsePattern::add(const RecordBatch& batch) {
  if (m_group_start.empty()) throw RuntimeError("sparse pattern: the pairs looked at before the groups");
  const std::int64_t n_records = static_cast<std::int64_t>(batch.record_begin.size()) - 1;
  std::vector<std::int32_t> groups;
  for (std::int64_t r = 0; r < n_records; ++r) {
    record_indices(batch, r);
    groups.clear();
    for (const std::int32_t v : m_scratch) groups.push_back(m_group_of[static_cast<std::size_t>(v)]);
    if (groups.size() > 1) add_groups(groups);
  }
}

void SparsePattern::combine_boundaries(ProcessGroup& processes) {
  std::vector<std::int64_t> marks(m_boundary.begin(), m_boundary.end());
  processes.sum(marks.data(), marks.size());
  for (std::size_t i = 0; i < marks.size(); ++i) m_boundary[i] = marks[i] > 0 ? 1 : 0;
}

void SparsePattern::combine_pairs(ProcessGroup& processes) {
  if (!m_bits.empty()) {
    processes.bitwise_or(m_bits.data(), m_bits.size());
    return;
  }
  // Per-column lists: every process's rows, column by column, added to each column.
  Packer mine;
  for (std::size_t j = 0; j < m_rows.size(); ++j) {
    compact(static_cast<std::int64_t>(j));
    mine.put(m_rows[j]);
  }
  const std::vector<std::vector<char>> all = processes.gather(mine.bytes());
  for (std::size_t r = 0; r < all.size(); ++r) {
    if (static_cast<int>(r) == processes.rank()) continue;
    Unpacker u(all[r]);
    for (std::size_t j = 0; j < m_rows.size(); ++j) u.append_vector(m_rows[j]);
  }
  for (std::size_t j = 0; j < m_rows.size(); ++j) compact(static_cast<std::int64_t>(j));
}

SparseMatrix::SparseMatrix(SparsePattern&& pattern) : m_n(pattern.m_n) {
  if (pattern.m_group_start.empty()) {  // no look at the records: every parameter alone, the diagonal
    std::fill(pattern.m_boundary.begin(), pattern.m_boundary.end(), 1);
    pattern.finish_groups();
  }
  const std::int64_t g = pattern.groups();
  // The paired groups of each group column (ascending, the group itself first).
  std::vector<std::vector<std::int32_t>> paired(static_cast<std::size_t>(g));
  for (std::int64_t j = 0; j < g; ++j) {
    std::vector<std::int32_t>& out = paired[static_cast<std::size_t>(j)];
    if (!pattern.m_bits.empty()) {
      for (std::int64_t bit = pattern.m_bit_start[j]; bit < pattern.m_bit_start[j + 1]; ++bit) {
        if ((pattern.m_bits[static_cast<std::size_t>(bit >> 6)] >> (bit & 63)) & 1u) {
          out.push_back(static_cast<std::int32_t>(j + bit - pattern.m_bit_start[j]));
        }
      }
    } else {
      pattern.compact(j);
      out = std::move(pattern.m_rows[static_cast<std::size_t>(j)]);
    }
  }
  const auto& start = pattern.m_group_start;
  m_start.assign(static_cast<std::size_t>(m_n) + 1, 0);
  for (std::int64_t j = 0; j < g; ++j) {
    std::int64_t others = 0;  // elements per column in the paired groups below this one
    for (std::size_t h = 1; h < paired[static_cast<std::size_t>(j)].size(); ++h) {
      const std::int32_t group = paired[static_cast<std::size_t>(j)][h];
      others += start[group + 1] - start[group];
    }
    for (std::int64_t c = start[j]; c < start[j + 1]; ++c) {
      m_start[static_cast<std::size_t>(c) + 1] = m_start[static_cast<std::size_t>(c)] + (start[j + 1] - c) + others;
    }
  }
  m_row.resize(static_cast<std::size_t>(m_start.back()));
  for (std::int64_t j = 0; j < g; ++j) {
    for (std::int64_t c = start[j]; c < start[j + 1]; ++c) {
      std::int64_t p = m_start[static_cast<std::size_t>(c)];
      for (std::int64_t r = c; r < start[j + 1]; ++r) m_row[static_cast<std::size_t>(p++)] = static_cast<std::int32_t>(r);
      for (std::size_t h = 1; h < paired[static_cast<std::size_t>(j)].size(); ++h) {
        const std::int32_t group = paired[static_cast<std::size_t>(j)][h];
        for (std::int64_t r = start[group]; r < start[group + 1]; ++r) m_row[static_cast<std::size_t>(p++)] = static_cast<std::int32_t>(r);
      }
    }
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
    // The record's rows are ascending, as are the column's: each search starts where the last
    // ended; a step past the next few elements gallops (columns may hold thousands of rows, a
    // record a few hundred).
    for (std::int32_t a = b; a < k; ++a) {
      const std::int32_t row = c.index[a];
      if (p + 8 < end && rows[p + 8] < row) {
        std::int64_t step = 16;
        std::int64_t low = p + 8;
        while (low + step < end && rows[low + step] < row) {
          low += step;
          step *= 2;
        }
        p = std::lower_bound(rows + low, rows + std::min(end, low + step + 1), row) - rows;
      } else {
        while (p < end && rows[p] < row) ++p;
      }
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

void SparseMatrix::multiply_columns(const std::vector<double>& x, double* y, std::int64_t j0, std::int64_t j1) const {
  for (std::int64_t j = j0; j < j1; ++j) {
    const std::int64_t p0 = m_start[static_cast<std::size_t>(j)], p1 = m_start[static_cast<std::size_t>(j) + 1];
    const double xj = x[static_cast<std::size_t>(j)];
    double sum = m_values[static_cast<std::size_t>(p0)] * xj;  // the diagonal
    for (std::int64_t p = p0 + 1; p < p1; ++p) {
      const std::int32_t i = m_row[static_cast<std::size_t>(p)];
      const double v = m_values[static_cast<std::size_t>(p)];
      y[i] += v * xj;
      sum += v * x[static_cast<std::size_t>(i)];
    }
    y[j] += sum;
  }
}

void SparseMatrix::multiply(const std::vector<double>& x, std::vector<double>& y, WorkerPool* pool,
                            std::int64_t threaded_from) const {
  const int threads = pool != nullptr ? pool->size() : 1;
  const std::size_t n = static_cast<std::size_t>(m_n);
  if (threads <= 1 || nonzeros() < threaded_from) {
    std::fill(y.begin(), y.begin() + m_n, 0.0);
    multiply_columns(x, y.data(), 0, m_n);
  } else {
    if (m_split.size() != static_cast<std::size_t>(threads) + 1) {  // columns split by their elements
      m_split.assign(static_cast<std::size_t>(threads) + 1, m_n);
      m_split[0] = 0;
      std::int64_t j = 0;
      for (int t = 1; t < threads; ++t) {
        const std::int64_t target = nonzeros() * t / threads;
        while (j < m_n && m_start[static_cast<std::size_t>(j)] < target) ++j;
        m_split[static_cast<std::size_t>(t)] = j;
      }
      m_partial.assign(static_cast<std::size_t>(threads) - 1, std::vector<double>(n));
    }
    pool->run([&](int t) {
      double* out = t == 0 ? y.data() : m_partial[static_cast<std::size_t>(t) - 1].data();
      std::fill(out, out + n, 0.0);
      multiply_columns(x, out, m_split[static_cast<std::size_t>(t)], m_split[static_cast<std::size_t>(t) + 1]);
    });
    pool->run([&](int t) {
      const std::size_t i0 = n * static_cast<std::size_t>(t) / static_cast<std::size_t>(threads);
      const std::size_t i1 = n * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(threads);
      for (const auto& partial : m_partial) {
        for (std::size_t i = i0; i < i1; ++i) y[i] += partial[i];
      }
    });
  }
  for (const auto& [at, v] : m_extra) {
    const auto [i, j] = at;
    y[static_cast<std::size_t>(i)] += v * x[static_cast<std::size_t>(j)];
    if (i != j) y[static_cast<std::size_t>(j)] += v * x[static_cast<std::size_t>(i)];
  }
}

std::vector<double> SparseMatrix::band(std::int64_t w) const {
  std::vector<double> out(static_cast<std::size_t>(m_n * w), 0.0);
  for (std::int64_t j = 0; j < m_n; ++j) {
    for (std::int64_t p = m_start[static_cast<std::size_t>(j)]; p < m_start[static_cast<std::size_t>(j) + 1]; ++p) {
      const std::int64_t i = m_row[static_cast<std::size_t>(p)];
      if (i - j >= w) break;  // rows ascend within a column
      out[static_cast<std::size_t>(i * w + (i - j))] += m_values[static_cast<std::size_t>(p)];
    }
  }
  for (const auto& [at, v] : m_extra) {
    if (at.first - at.second < w) out[static_cast<std::size_t>(at.first * w + (at.first - at.second))] += v;
  }
  return out;
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
