// One record's local fit and Schur contribution, computed by a group of threads together and added
// straight into the global system, with no K x K scratch (K: distinct variable globals).
//
// The work is written as three phases. Every thread of a group of `size` threads calls a phase
// with its rank; the phases of one record are separated by barriers (__syncthreads on the GPU).
// Within a phase no thread reads what another writes, so a CPU runs a phase as a plain loop over
// the ranks (run_record_on_host) and executes the very code, tiling and indexing of the GPU.
//
//   1. fit     rank 0: the local fit (fit_record, as on the CPU) and, for an accepted record, the
//              slot map of its distinct variable globals (ascending variable indices).
//   2. panels  per panel of 8 slots (panel p to rank p mod size): the merged global derivatives
//              G (m x 8) with the list of its non-zero rows, and the cross matrix X = D^T W G
//              (nl x 8), then Y = L^-1 X with the local Cholesky factor; b_a = rw sum_i w_i r_i G_ia
//              and the entry counts of the panel's slots go to the sink.
//   3. tiles   per tile of 8 x 4 elements of the lower triangle of C (tile t to rank t mod size):
//              C_ab = rw (sum_i w_i G_ia G_ib - sum_j Y_ja Y_jb), summed in registers over the rows
//              of G that are non-zero in the column panel (a measurement touches few globals) and
//              the rows of Y (rows zero in the tile's 4 columns skipped), then handed to the sink
//              element by element (atomically on the GPU).
//
// Scratch per group: (m + nl) x K8 doubles for G and Y (K8: K rounded up to 8) beside the local
// fit's O(m + nl^2), instead of the K x K block of the sequential path.
//
// A Sink receives the contribution:
//   add_matrix(row, col, value)   row >= col, variable indices (lower triangle of the global matrix)
//   add_vector(index, value)      b at a variable index
//   add_entries(label, count)     measurements per label
#pragma once

#include <cstddef>
#include <cstdint>

#include "gpede/kernels/host_device.hpp"
#include "gpede/kernels/local_fit.hpp"
#include "gpede/kernels/record_view.hpp"

namespace gpede::kernels::coop {

/// Rows of a C tile (one panel of G and Y) and its columns.
inline constexpr std::int32_t tile_rows = detail::panel_width;
inline constexpr std::int32_t tile_cols = 4;

/// What the first phase tells the others (shared memory on the GPU).
struct RecordState {
  LocalFitResult fit;
  std::int32_t size;       ///< K, distinct variable globals (0 unless contributes)
  std::int32_t contributes;  ///< 1: accepted and the slot map built
  std::int32_t overflow;     ///< 1: accepted, but the record exceeds the scratch capacity
};

/// Scratch of one group, carved from one buffer (cooperative_scratch_bytes(capacity)).
struct Scratch {
  RecordShape capacity;
  LocalFitScratch fit;   ///< the local fit's arrays (no cross matrix, no K x K block)
  double* g = nullptr;   ///< [m x K8] merged global derivatives, panels of 8 columns
  double* y = nullptr;   ///< [nl x K8] X = D^T W G, then Y = L^-1 X, panels of 8 columns
  /// Per panel p of G: its rows (measurements) with a non-zero element, ascending, at
  /// panel_rows[p * m ...], and how many, panel_row_count[p]. The tiles of a column panel sum over
  /// these rows only: a measurement touches a few of a record's K globals.
  std::int32_t* panel_rows = nullptr;       ///< [K8 / 8 x m]
  std::int32_t* panel_row_count = nullptr;  ///< [K8 / 8]
};

namespace detail_coop {
struct Counts {
  std::size_t doubles;
  std::size_t ints;
};
GPEDE_HOST_DEVICE GPEDE_INLINE Counts counts(const RecordShape& c) {
  const detail::Extents x = detail::extents(c);
  const std::size_t k8 = detail::padded_columns(x.k);
  const std::size_t panels = k8 / static_cast<std::size_t>(detail::panel_width);
  return {detail::fit_doubles(x) + (x.m + x.nl) * k8, detail::fit_ints(x) + panels * (x.m + 1)};
}
}  // namespace detail_coop

/// Bytes of scratch a group needs for records up to `capacity` (a multiple of 8).
GPEDE_HOST_DEVICE GPEDE_INLINE std::size_t cooperative_scratch_bytes(const RecordShape& capacity) {
  const detail_coop::Counts n = detail_coop::counts(capacity);
  return detail::align_up(n.doubles * sizeof(double) + n.ints * sizeof(std::int32_t), sizeof(double));
}

/// Carves the scratch out of `buffer` (8-byte aligned, cooperative_scratch_bytes(capacity)).
GPEDE_HOST_DEVICE GPEDE_INLINE Scratch make_scratch(void* buffer, const RecordShape& capacity) {
  Scratch s;
  s.capacity = capacity;
  s.fit.capacity = capacity;
  const detail::Extents x = detail::extents(capacity);
  const std::size_t k8 = detail::padded_columns(x.k);
  double* d = detail::carve_fit_doubles(static_cast<double*>(buffer), x, s.fit);
  s.g = d;
  d += x.m * k8;
  s.y = d;
  d += x.nl * k8;
  std::int32_t* i = detail::carve_fit_ints(reinterpret_cast<std::int32_t*>(d), x, s.fit);
  s.panel_rows = i;
  i += (k8 / static_cast<std::size_t>(detail::panel_width)) * x.m;
  s.panel_row_count = i;
  return s;
}

/// Phase 1 (rank 0 works, the others return at once): local fit and slot map into `state`.
GPEDE_HOST_DEVICE GPEDE_INLINE void phase_fit(int rank, const RecordBatchView& batch, const GlobalStateView& globals,
                                              std::int64_t r, const LocalFitOptions& options, const Scratch& s,
                                              RecordState& state) {
  if (rank != 0) return;
  state.fit = fit_record(batch, globals, r, options, s.fit);
  state.size = 0;
  state.contributes = 0;
  state.overflow = 0;
  if (state.fit.status != LocalFitStatus::accepted) return;
  const std::int64_t m0 = batch.record_begin[r];
  const std::int64_t e0 = batch.global_begin[m0];
  const std::int64_t n_entries = batch.global_begin[batch.record_begin[r + 1]] - e0;
  if (n_entries > s.capacity.global_entries) {
    state.overflow = 1;
    return;
  }
  const std::int32_t k = detail::build_slot_map(batch, globals, e0, n_entries, s.capacity.unique_globals,
                                                s.fit.slot_index, s.fit.slot_label, s.fit.slot_entries,
                                                s.fit.entry_slot);
  if (k < 0) {
    state.overflow = 1;
    return;
  }
  state.size = k;
  state.contributes = 1;
}

/// Phase 2: the panels of rank, rank + size, ...: G, b and entries; with the matrix also Y.
template <class Sink>
GPEDE_HOST_DEVICE GPEDE_INLINE void phase_panels(int rank, int size, const RecordBatchView& batch, std::int64_t r,
                                                 const Scratch& s, const RecordState& state, bool with_matrix,
                                                 Sink& sink) {
  constexpr std::int32_t w = detail::panel_width;
  const std::int32_t k = state.size;
  const std::int32_t nl = state.fit.local_parameters;
  const double rw = state.fit.record_weight;
  const std::int64_t m0 = batch.record_begin[r];
  const std::int64_t m1 = batch.record_begin[r + 1];
  const auto n_meas = static_cast<std::int32_t>(m1 - m0);
  const std::int64_t e0 = batch.global_begin[m0];
  const std::int32_t panels = (k + w - 1) / w;
  for (std::int32_t p = rank; p < panels; p += size) {
    const std::int32_t a0 = p * w;
    double* g = s.g + static_cast<std::int64_t>(p) * n_meas * w;
    for (std::int64_t t = 0; t < static_cast<std::int64_t>(n_meas) * w; ++t) g[t] = 0.0;
    for (std::int32_t i = 0; i < n_meas; ++i) {
      const std::int64_t m = m0 + i;
      for (std::int64_t e = batch.global_begin[m]; e < batch.global_begin[m + 1]; ++e) {
        const std::int32_t a = s.fit.entry_slot[e - e0];
        if (a >= a0 && a < a0 + w) g[static_cast<std::int64_t>(i) * w + (a - a0)] += batch.global_deriv[e];
      }
    }
    std::int32_t* rows = s.panel_rows + static_cast<std::int64_t>(p) * n_meas;
    std::int32_t count = 0;
    for (std::int32_t i = 0; i < n_meas; ++i) {
      const double* gi = g + static_cast<std::int64_t>(i) * w;
      bool any = false;
      for (std::int32_t c = 0; c < w; ++c) any = any || gi[c] != 0.0;
      if (any) rows[count++] = i;
    }
    s.panel_row_count[p] = count;
    double bsum[w] = {};
    for (std::int32_t i = 0; i < n_meas; ++i) {
      const double wr = s.fit.weight[i] * (s.fit.corrected[i] - s.fit.correction[i]);
      const double* gi = g + static_cast<std::int64_t>(i) * w;
      for (std::int32_t c = 0; c < w; ++c) bsum[c] += wr * gi[c];
    }
    for (std::int32_t c = 0; c < w && a0 + c < k; ++c) {
      sink.add_vector(s.fit.slot_index[a0 + c], rw * bsum[c]);
      sink.add_entries(s.fit.slot_label[a0 + c], s.fit.slot_entries[a0 + c]);
    }
    if (!with_matrix) continue;
    double* y = s.y + static_cast<std::int64_t>(p) * nl * w;
    for (std::int64_t t = 0; t < static_cast<std::int64_t>(nl) * w; ++t) y[t] = 0.0;
    for (std::int32_t i = 0; i < n_meas; ++i) {
      const std::int64_t m = m0 + i;
      const double* gi = g + static_cast<std::int64_t>(i) * w;
      const double wi = s.fit.weight[i];
      for (std::int64_t j = batch.local_begin[m]; j < batch.local_begin[m + 1]; ++j) {
        const double wd = wi * batch.local_deriv[j];
        double* yj = y + static_cast<std::int64_t>(s.fit.position[batch.local_index[j]]) * w;
        for (std::int32_t c = 0; c < w; ++c) yj[c] += wd * gi[c];
      }
    }
    detail::forward_packed_panel(s.fit.gamma, s.fit.pivot_inverse, nl, detail::fit_envelope(s.fit, state.fit), y);
  }
}

namespace detail_coop {
/// acc[q][row] += sum over the rows i of weight_i * B_i[q] * A_i[row], where A_i and B_i are row i
/// of the a-panel and b-panel; rows whose 4 b-values are all zero are skipped.
/// With `row_list`, only the rows it names (rows of them, ascending) are visited.
GPEDE_HOST_DEVICE GPEDE_INLINE void tile_sum(const double* a_panel, const double* b_panel, std::int32_t b_offset,
                                             std::int32_t rows, const std::int32_t* row_list, const double* weight,
                                             double sign, double (&acc)[tile_cols][tile_rows]) {
  constexpr std::int32_t w = detail::panel_width;
  for (std::int32_t t = 0; t < rows; ++t) {
    const std::int32_t i = row_list != nullptr ? row_list[t] : t;
    const double* yb = b_panel + static_cast<std::int64_t>(i) * w + b_offset;
    if (yb[0] == 0.0 && yb[1] == 0.0 && yb[2] == 0.0 && yb[3] == 0.0) continue;
    const double f = weight != nullptr ? sign * weight[i] : sign;
    const double* ya = a_panel + static_cast<std::int64_t>(i) * w;
    for (std::int32_t q = 0; q < tile_cols; ++q) {
      const double bq = f * yb[q];
      for (std::int32_t row = 0; row < tile_rows; ++row) acc[q][row] += bq * ya[row];
    }
  }
}
}  // namespace detail_coop

/// Phase 3 (with the matrix only): the C tiles of rank, rank + size, ... handed to the sink.
template <class Sink>
GPEDE_HOST_DEVICE GPEDE_INLINE void phase_tiles(int rank, int size, const RecordBatchView& batch, std::int64_t r,
                                                const Scratch& s, const RecordState& state, Sink& sink) {
  constexpr std::int32_t w = detail::panel_width;
  const std::int32_t k = state.size;
  const std::int32_t nl = state.fit.local_parameters;
  const double rw = state.fit.record_weight;
  const auto n_meas = static_cast<std::int32_t>(batch.record_begin[r + 1] - batch.record_begin[r]);
  std::int64_t tile = 0;
  for (std::int32_t b0 = 0; b0 < k; b0 += tile_cols) {
    const std::int32_t b_panel = b0 / w;
    const std::int32_t b_offset = b0 % w;
    for (std::int32_t a0 = b_panel * w; a0 < k; a0 += w, ++tile) {
      if (tile % size != rank) continue;
      const std::int32_t a_panel = a0 / w;
      double acc[tile_cols][tile_rows] = {};
      detail_coop::tile_sum(s.g + static_cast<std::int64_t>(a_panel) * n_meas * w,
                            s.g + static_cast<std::int64_t>(b_panel) * n_meas * w, b_offset,
                            s.panel_row_count[b_panel], s.panel_rows + static_cast<std::int64_t>(b_panel) * n_meas,
                            s.fit.weight, 1.0, acc);
      detail_coop::tile_sum(s.y + static_cast<std::int64_t>(a_panel) * nl * w,
                            s.y + static_cast<std::int64_t>(b_panel) * nl * w, b_offset, nl, nullptr, nullptr, -1.0,
                            acc);
      for (std::int32_t q = 0; q < tile_cols && b0 + q < k; ++q) {
        const std::int32_t b = b0 + q;
        for (std::int32_t row = 0; row < tile_rows; ++row) {
          const std::int32_t a = a0 + row;
          if (a < b || a >= k) continue;
          sink.add_matrix(s.fit.slot_index[a], s.fit.slot_index[b], rw * acc[q][row]);
        }
      }
    }
  }
}

#if !defined(__CUDA_ARCH__)
/// The phases of one record for a group of `size` threads, run on the host as loops over the
/// ranks in phase order (the barriers of the GPU are the ends of the loops).
template <class Sink>
inline RecordState run_record_on_host(int size, const RecordBatchView& batch, const GlobalStateView& globals,
                                      std::int64_t r, const LocalFitOptions& options, const Scratch& s,
                                      bool with_matrix, Sink& sink) {
  RecordState state{};
  for (int rank = 0; rank < size; ++rank) phase_fit(rank, batch, globals, r, options, s, state);
  if (state.contributes == 0) return state;
  for (int rank = 0; rank < size; ++rank) phase_panels(rank, size, batch, r, s, state, with_matrix, sink);
  if (!with_matrix) return state;
  for (int rank = 0; rank < size; ++rank) phase_tiles(rank, size, batch, r, s, state, sink);
  return state;
}
#endif

}  // namespace gpede::kernels::coop
