// Per-record math: the local (track) fit of one Mille record and its Schur-complement contribution
// to the global matrix and vector. Host/device inline functions on raw views; no allocation, no
// exceptions. The CPU backend calls them in a loop; the CUDA kernels call them per record.
//
// The rules are pede's (loopbf in pede.f90):
// - residuals corrected for the current values of all global parameters (fixed ones included);
//   measurement errors multiplied by scale_global (measurement with global derivatives) or
//   scale_local (without); weight w = 1 / sigma^2;
// - local normal equations Gamma q = beta, solved by Cholesky; a pivot that drops to 1e-10 of its
//   diagonal element (or a NaN) means a rank-deficient local fit;
// - down-weighting (downweight_iterations = n > 0): n local iterations, the first unweighted,
//   the 2nd and 3rd Huber (c = 1.345), from the 4th Cauchy (c = 2.3849); the weights of an
//   iteration come from the residuals of the previous one, the chi2 terms from the residuals after
//   the fit (Huber: 2c(|zeta| - c/2), Cauchy: c^2 ln(1 + (zeta/c)^2)); down-weight fraction
//   (n_meas - sum sqrt(omega)) / n_meas from the last iteration;
// - rejection order: no full rank or NaN, ndf <= 0 (in every iteration); then, unless the chi2
//   cut factor is negative, chi2 > hugecut x chi2_3sigma(ndf) and, with a cut factor > 0,
//   chi2 > factor x chi2_3sigma(ndf); then the down-weight fraction (only with n > 1);
// - F contribution: accepted: record weight x sum of w r^2 over the final residuals (with
//   down-weighting: Huber terms of the final residuals); rejected by the chi2 cut: record weight x
//   factor x chi2_3sigma; rejected by the down-weight fraction: record weight x chi2; otherwise 0;
// - global contribution of an accepted record, with the weights W of the final residuals (Huber
//   with down-weighting) and Gamma of the last local iteration:
//   C = rw (G^T W G - (G^T W D) Gamma^-1 (D^T W G)),  b = rw G^T W r  (rw: record weight).
#pragma once

#include <math.h>

#include <cstddef>
#include <cstdint>

#include "gpede/kernels/chi2_limits.hpp"
#include "gpede/kernels/host_device.hpp"
#include "gpede/kernels/record_view.hpp"

namespace gpede::kernels {

/// Options of the local fits of one pass.
struct LocalFitOptions {
  /// Chi2 cut factor: reject if chi2 > factor x chi2_3sigma(ndf). 0: no such cut (hugecut still
  /// applies); < 0: no chi2 cut at all, not even hugecut.
  double chi2_cut_factor = 0.0;
  double hugecut = 50.0;          ///< reject if chi2 > hugecut x chi2_3sigma(ndf)
  /// Outlier down-weighting iterations (0: off). pede down-weights from the second pass over the
  /// data on: the caller passes 0 in the first pass.
  int downweight_iterations = 0;
  double dwfractioncut = 0.0;     ///< reject if down-weight fraction > this (0: off)
  double scale_global = 1.0;      ///< error scale for measurements with global derivatives
  double scale_local = 1.0;       ///< error scale for measurements without global derivatives
};

/// Sizes of a record, or capacities of a scratch area (then each is a maximum).
struct RecordShape {
  std::int32_t measurements = 0;
  std::int32_t local_parameters = 0;  ///< largest local index + 1
  std::int32_t global_entries = 0;    ///< global derivatives, duplicates and fixed labels included
  std::int32_t unique_globals = 0;    ///< distinct variable global parameters (bound: global_entries)
};

/// Why a local fit was accepted or rejected.
enum class LocalFitStatus : std::int32_t {
  accepted = 0,
  no_local_parameters,    ///< record without local derivatives: skipped, neither accepted nor rejected
  rank_deficient,         ///< Gamma not of full rank, or NaN
  no_degrees_of_freedom,  ///< ndf <= 0
  huge_chi2,              ///< chi2 > hugecut x chi2_3sigma(ndf)
  chi2_cut,               ///< chi2 > cut factor x chi2_3sigma(ndf)
  downweight_fraction,    ///< down-weight fraction > dwfractioncut
  scratch_too_small,      ///< the record exceeds the scratch capacities (a caller error)
};

/// Outcome of the local fit of one record.
struct LocalFitResult {
  LocalFitStatus status = LocalFitStatus::no_local_parameters;
  std::int32_t measurements = 0;
  std::int32_t local_parameters = 0;
  std::int32_t ndf = 0;   ///< measurements - local parameters (set once the rank is full)
  double chi2 = 0.0;      ///< chi2 of the last local iteration (down-weighted terms), no record weight
  double chi2_limit = 0.0;           ///< chi2_3sigma(ndf)
  double downweight_fraction = 0.0;  ///< of the last local iteration
  double function_value = 0.0;       ///< contribution to F, record weight applied
  double record_weight = 1.0;
  /// Rows of the local factor from here on are the border (local parameters that couple to most
  /// others, moved last); rows before it form a band. local_parameters where there is no border.
  std::int32_t border_start = 0;
  /// 1 where the factor has a band envelope (scratch first/band_end), 0 where it is dense.
  std::int32_t banded = 0;

  /// pede sums ndf over the fits that reach the chi2 cuts: accepted or rejected by a cut.
  GPEDE_HOST_DEVICE bool counts_ndf() const {
    return status == LocalFitStatus::accepted || status == LocalFitStatus::huge_chi2 ||
           status == LocalFitStatus::chi2_cut || status == LocalFitStatus::downweight_fraction;
  }
};

/// Scratch memory of one record's fit and contribution, carved from one caller-owned buffer.
struct LocalFitScratch {
  RecordShape capacity;
  double* corrected = nullptr;   ///< [measurements] z' = z - G p
  double* sigma = nullptr;       ///< [measurements] scaled errors
  double* correction = nullptr;  ///< [measurements] D q of the last iteration
  double* weight = nullptr;      ///< [measurements] weights of the global contribution
  double* gamma = nullptr;       ///< [nl(nl+1)/2] Gamma, then its Cholesky factor (lower, packed by columns)
  double* pivot_inverse = nullptr;  ///< [nl] 1 / diagonal of the Cholesky factor
  double* solution = nullptr;    ///< [nl] beta, then q (after the fit: by local index)
  double* work = nullptr;        ///< [nl] q reordered from factor order to local-index order
  /// The local fit's order and envelope (see detail::Envelope): position[k] is the row of local
  /// parameter k in Gamma and its factor; first[p] the first non-zero column of row p;
  /// band_end[p] the last band row that column p reaches.
  std::int32_t* position = nullptr;  ///< [nl]
  std::int32_t* first = nullptr;     ///< [nl]
  std::int32_t* band_end = nullptr;  ///< [nl]
  /// [nl x K8] D^T W G, then L^-1 D^T W G, in panels of 8 columns (K8: K rounded up to a
  /// multiple of 8): column a of row i at (a / 8) nl 8 + 8 i + a % 8; see detail::panel_offset.
  double* cross = nullptr;
  double* global_matrix = nullptr;  ///< [K x K] column-major
  double* global_vector = nullptr;  ///< [K]
  std::int32_t* slot_index = nullptr;    ///< [K] variable index per slot, ascending
  std::int32_t* slot_label = nullptr;    ///< [K] label index per slot
  std::int32_t* slot_entries = nullptr;  ///< [K] global-derivative entries per slot
  std::int32_t* entry_slot = nullptr;    ///< [global_entries] slot per entry, -1 for fixed labels
};

/// The contribution of an accepted record to the global system, pointing into the scratch.
struct GlobalContribution {
  /// false: the record has more global entries or distinct globals than the scratch holds; then
  /// size is a lower bound of the distinct globals needed (0 if the entries overflowed).
  bool ok = false;
  std::int32_t size = 0;    ///< K: distinct variable global parameters of the record
  const std::int32_t* index = nullptr;    ///< [K] variable indices, ascending
  const std::int32_t* label = nullptr;    ///< [K] label indices (into all labels)
  const std::int32_t* entries = nullptr;  ///< [K] global-derivative entries of each (for entries counts)
  /// [K x K] column-major; element (a, b) at b*K + a is valid for a >= b, i.e. the lower triangle
  /// of the global matrix at (index[a], index[b]). Null unless requested.
  const double* matrix = nullptr;
  const double* vector = nullptr;  ///< [K] contribution to b
};

namespace detail {

GPEDE_HOST_DEVICE GPEDE_INLINE std::size_t align_up(std::size_t bytes, std::size_t alignment) {
  return (bytes + alignment - 1) / alignment * alignment;
}

GPEDE_HOST_DEVICE GPEDE_INLINE std::size_t packed_size(std::int64_t n) {
  return static_cast<std::size_t>(n) * static_cast<std::size_t>(n + 1) / 2;
}

/// Offset of the diagonal element (j, j) in a packed lower-triangular n x n matrix stored column
/// by column; element (i, j), i >= j, follows at offset + (i - j).
GPEDE_HOST_DEVICE GPEDE_INLINE std::size_t packed_column(std::int64_t j, std::int64_t n) {
  return static_cast<std::size_t>(j * n - j * (j - 1) / 2);
}

/// Columns of the cross matrix are stored in panels of this many (see LocalFitScratch::cross).
inline constexpr std::int32_t panel_width = 8;

GPEDE_HOST_DEVICE GPEDE_INLINE std::size_t padded_columns(std::size_t k) {
  return (k + panel_width - 1) / panel_width * panel_width;
}

/// Offset of element (row i, column a) of an n-row matrix stored in panels of panel_width columns.
GPEDE_HOST_DEVICE GPEDE_INLINE std::int64_t panel_offset(std::int32_t i, std::int32_t a, std::int32_t n) {
  return static_cast<std::int64_t>(a / panel_width) * n * panel_width + static_cast<std::int64_t>(i) * panel_width +
         a % panel_width;
}

/// The extents of a scratch capacity (negative ones as 0).
struct Extents {
  std::size_t m, nl, e, k;
};
GPEDE_HOST_DEVICE GPEDE_INLINE Extents extents(const RecordShape& c) {
  auto size = [](std::int32_t v) { return v > 0 ? static_cast<std::size_t>(v) : std::size_t{0}; };
  return {size(c.measurements), size(c.local_parameters), size(c.global_entries), size(c.unique_globals)};
}

/// The arrays of the local fit and the slot map that every scratch layout has, in doubles and in
/// 32-bit integers; carve_fit_doubles and carve_fit_ints lay them out in this order.
GPEDE_HOST_DEVICE GPEDE_INLINE std::size_t fit_doubles(const Extents& x) {
  return 4 * x.m + packed_size(static_cast<std::int64_t>(x.nl)) + 3 * x.nl;
}
GPEDE_HOST_DEVICE GPEDE_INLINE std::size_t fit_ints(const Extents& x) { return x.e + 3 * x.k + 3 * x.nl; }

struct ScratchCounts {
  std::size_t doubles;
  std::size_t ints;
};

GPEDE_HOST_DEVICE GPEDE_INLINE ScratchCounts scratch_counts(const RecordShape& c) {
  const Extents x = extents(c);
  return {fit_doubles(x) + x.nl * padded_columns(x.k) + x.k * x.k + x.k, fit_ints(x)};
}

/// Weight factor omega and chi2 term of a normalised residual zeta in down-weighting iteration
/// `iteration` (2, 3: Huber; >= 4: Cauchy).
struct Downweight {
  double omega;
  double chi2;
};

GPEDE_HOST_DEVICE GPEDE_INLINE Downweight downweight(double zeta, int iteration) {
  const double huber = 1.345;
  const double cauchy = 2.3849;
  const double a = ::fabs(zeta);
  if (iteration <= 3) {
    if (a > huber) return {huber / a, 2.0 * huber * (a - 0.5 * huber)};
    return {1.0, zeta * zeta};
  }
  const double t = zeta / cauchy;
  return {1.0 / (1.0 + t * t), ::log(1.0 + t * t) * cauchy * cauchy};
}

/// Dot product with four partial sums (short dependency chains).
GPEDE_HOST_DEVICE GPEDE_INLINE double dot(const double* a, const double* b, std::int32_t n) {
  double s0 = 0.0;
  double s1 = 0.0;
  double s2 = 0.0;
  double s3 = 0.0;
  std::int32_t k = 0;
  for (; k + 4 <= n; k += 4) {
    s0 += a[k] * b[k];
    s1 += a[k + 1] * b[k + 1];
    s2 += a[k + 2] * b[k + 2];
    s3 += a[k + 3] * b[k + 3];
  }
  for (; k < n; ++k) s0 += a[k] * b[k];
  return (s0 + s1) + (s2 + s3);
}

/// Adds a packed symmetric term v at (a, b) (either order) of an n x n column-packed lower matrix.
GPEDE_HOST_DEVICE GPEDE_INLINE void add_packed(double* m, std::int32_t n, std::int32_t a, std::int32_t b, double v) {
  if (a >= b) {
    m[packed_column(b, n) + (a - b)] += v;
  } else {
    m[packed_column(a, n) + (b - a)] += v;
  }
}

/// The non-zero pattern of a local factor (the envelope, which Cholesky preserves): rows
/// [0, border) form a band, row p starting at column first[p]; the rows [border, n) (the border)
/// are dense. Column k < border of the factor is non-zero only in rows [k, band_end[k]] and in the
/// border; a border column in all rows below its diagonal. A null `first` means a dense matrix.
struct Envelope {
  const std::int32_t* first = nullptr;
  const std::int32_t* band_end = nullptr;
  std::int32_t border = 0;

  GPEDE_HOST_DEVICE std::int32_t first_column(std::int32_t row) const {
    return first != nullptr && row < border ? first[row] : 0;
  }
  /// Rows below the diagonal of column k that may be non-zero: (k, end1] and [begin2, n).
  GPEDE_HOST_DEVICE std::int32_t band_last(std::int32_t k, std::int32_t n) const {
    return first != nullptr && k < border ? band_end[k] : n - 1;
  }
  GPEDE_HOST_DEVICE std::int32_t border_first(std::int32_t k, std::int32_t n) const {
    if (first == nullptr || k >= border) return n;
    const std::int32_t after = band_end[k] + 1;
    return after > border ? after : border;
  }
};

/// Cholesky factorisation L L^T in place of a symmetric matrix stored as its packed lower triangle
/// by columns (left-looking, column updates), with the inverse pivots in `inverse`, visiting only
/// the envelope: the zeros outside it stay exact zeros, so the result is the dense algorithm's
/// bit for bit, in time linear in n for a bordered band. False if a pivot drops to 1e-10 of its
/// diagonal element or below, or is NaN.
GPEDE_HOST_DEVICE GPEDE_INLINE bool cholesky_packed(double* a, double* inverse, std::int32_t n, const Envelope& env) {
  if (env.first == nullptr) {  // dense
    for (std::int32_t j = 0; j < n; ++j) {
      double* cj = a + packed_column(j, n);
      const std::int32_t len = n - j;
      const double diagonal = cj[0];
      for (std::int32_t k = 0; k < j; ++k) {
        const double* ck = a + packed_column(k, n) + (j - k);  // L[j.., k]
        const double f = ck[0];
        if (f == 0.0) continue;
        for (std::int32_t t = 0; t < len; ++t) cj[t] -= f * ck[t];
      }
      const double d = cj[0];
      if (!(d > 1e-10 * diagonal)) return false;
      const double root = ::sqrt(d);
      const double inv = 1.0 / root;
      cj[0] = root;
      inverse[j] = inv;
      for (std::int32_t t = 1; t < len; ++t) cj[t] *= inv;
    }
    return true;
  }
  for (std::int32_t j = 0; j < n; ++j) {
    double* cj = a + packed_column(j, n);
    const double diagonal = cj[0];
    for (std::int32_t k = env.first_column(j); k < j; ++k) {
      const double* ck = a + packed_column(k, n) + (j - k);  // L[j.., k]
      const double f = ck[0];
      if (f == 0.0) continue;
      // rows j..end1 and begin2..n-1 of column k (begin2 > end1)
      const std::int32_t end1 = env.band_last(k, n);
      for (std::int32_t t = 0; t <= end1 - j; ++t) cj[t] -= f * ck[t];
      const std::int32_t begin2 = env.border_first(k, n);
      for (std::int32_t t = (begin2 > j ? begin2 : j) - j; t < n - j; ++t) cj[t] -= f * ck[t];
    }
    const double d = cj[0];
    if (!(d > 1e-10 * diagonal)) return false;
    const double root = ::sqrt(d);
    const double inv = 1.0 / root;
    cj[0] = root;
    inverse[j] = inv;
    const std::int32_t end1 = env.band_last(j, n);
    for (std::int32_t t = 1; t <= end1 - j; ++t) cj[t] *= inv;
    for (std::int32_t t = env.border_first(j, n) - j; t < n - j; ++t) cj[t] *= inv;
  }
  return true;
}

/// Solves L y = x in place.
GPEDE_HOST_DEVICE GPEDE_INLINE void forward_packed(const double* l, const double* inverse, std::int32_t n,
                                                   const Envelope& env, double* x) {
  for (std::int32_t j = 0; j < n; ++j) {
    const double xj = x[j] * inverse[j];
    x[j] = xj;
    if (xj == 0.0) continue;
    const double* cj = l + packed_column(j, n);
    const std::int32_t end1 = env.band_last(j, n);
    for (std::int32_t i = j + 1; i <= end1; ++i) x[i] -= cj[i - j] * xj;
    for (std::int32_t i = env.border_first(j, n); i < n; ++i) x[i] -= cj[i - j] * xj;
  }
}

/// Solves L^T y = x in place.
GPEDE_HOST_DEVICE GPEDE_INLINE void backward_packed(const double* l, const double* inverse, std::int32_t n,
                                                    const Envelope& env, double* x) {
  for (std::int32_t i = n - 1; i >= 0; --i) {
    const double* ci = l + packed_column(i, n);
    double s = dot(ci + 1, x + i + 1, env.band_last(i, n) - i);
    const std::int32_t begin2 = env.border_first(i, n);
    if (begin2 < n) s += dot(ci + (begin2 - i), x + begin2, n - begin2);
    x[i] = (x[i] - s) * inverse[i];
  }
}

/// Solves L Y = X in place for one panel of panel_width columns of X (n x panel_width, row-major).
GPEDE_HOST_DEVICE GPEDE_INLINE void forward_packed_panel(const double* l, const double* inverse, std::int32_t n,
                                                         const Envelope& env, double* x) {
  constexpr std::int32_t w = panel_width;
  if (env.first == nullptr) {  // dense
    for (std::int32_t j = 0; j < n; ++j) {
      double* xj = x + static_cast<std::int64_t>(j) * w;
      const double inv = inverse[j];
      bool zero = true;
      for (std::int32_t c = 0; c < w; ++c) {
        xj[c] *= inv;
        zero = zero && xj[c] == 0.0;
      }
      if (zero) continue;
      const double* cj = l + packed_column(j, n);
      for (std::int32_t i = j + 1; i < n; ++i) {
        const double f = cj[i - j];
        double* xi = x + static_cast<std::int64_t>(i) * w;
        for (std::int32_t c = 0; c < w; ++c) xi[c] -= f * xj[c];
      }
    }
    return;
  }
  for (std::int32_t j = 0; j < n; ++j) {
    double* xj = x + static_cast<std::int64_t>(j) * w;
    const double inv = inverse[j];
    bool zero = true;
    for (std::int32_t c = 0; c < w; ++c) {
      xj[c] *= inv;
      zero = zero && xj[c] == 0.0;
    }
    if (zero) continue;
    const double* cj = l + packed_column(j, n);
    const std::int32_t end1 = env.band_last(j, n);
    for (std::int32_t i = j + 1; i <= end1; ++i) {
      const double f = cj[i - j];
      double* xi = x + static_cast<std::int64_t>(i) * w;
      for (std::int32_t c = 0; c < w; ++c) xi[c] -= f * xj[c];
    }
    for (std::int32_t i = env.border_first(j, n); i < n; ++i) {
      const double f = cj[i - j];
      double* xi = x + static_cast<std::int64_t>(i) * w;
      for (std::int32_t c = 0; c < w; ++c) xi[c] -= f * xj[c];
    }
  }
}

/// Local parameters with at most this many get the dense order (no border moved last).
inline constexpr std::int32_t band_minimum = 16;

/// The order and envelope of a record's local fit: local parameters that appear in more than a
/// quarter of the measurements (a track's offset, slope and curvature in a broken-lines fit) are
/// moved last, in their order, as the border, if they are at most a quarter of the parameters; the
/// others keep their order. Then the first column of every band row and how far down each band
/// column reaches (a band without border keeps its order and gets its envelope). Records with few
/// local parameters, or with a border of more than a quarter of them, keep the dense order and
/// envelope; the envelope of any order is exact, so the order only decides the speed. Returns the
/// envelope over s.position/first/band_end; *border receives the border's first row.
GPEDE_HOST_DEVICE GPEDE_INLINE Envelope local_order(const RecordBatchView& batch, std::int64_t m0, std::int64_t m1,
                                                    std::int32_t nl, std::int32_t* position, std::int32_t* first,
                                                    std::int32_t* band_end, std::int32_t* border) {
  for (std::int32_t k = 0; k < nl; ++k) position[k] = k;
  *border = nl;
  Envelope dense;
  dense.border = nl;
  if (nl <= band_minimum) return dense;
  // measurements per local parameter (in band_end); the border: those in more than a quarter of them
  for (std::int32_t k = 0; k < nl; ++k) band_end[k] = 0;
  for (std::int64_t m = m0; m < m1; ++m) {
    for (std::int64_t j = batch.local_begin[m]; j < batch.local_begin[m + 1]; ++j) ++band_end[batch.local_index[j]];
  }
  const std::int64_t wide = (m1 - m0) / 4;
  std::int32_t n_border = 0;
  for (std::int32_t k = 0; k < nl; ++k) n_border += band_end[k] > wide ? 1 : 0;
  if (n_border > nl / 4) return dense;
  std::int32_t band_row = 0, border_row = nl - n_border;
  for (std::int32_t k = 0; k < nl; ++k) position[k] = band_end[k] > wide ? border_row++ : band_row++;
  // first column of each row in the new order (band rows only matter)
  for (std::int32_t p = 0; p < nl; ++p) first[p] = p;
  for (std::int64_t m = m0; m < m1; ++m) {
    std::int32_t lo = nl;
    for (std::int64_t j = batch.local_begin[m]; j < batch.local_begin[m + 1]; ++j) {
      const std::int32_t p = position[batch.local_index[j]];
      lo = p < lo ? p : lo;
    }
    for (std::int64_t j = batch.local_begin[m]; j < batch.local_begin[m + 1]; ++j) {
      const std::int32_t p = position[batch.local_index[j]];
      first[p] = lo < first[p] ? lo : first[p];
    }
  }
  // band_end[k] = the last band row whose first column is at most k (at least k)
  const std::int32_t b = nl - n_border;
  for (std::int32_t k = 0; k < nl; ++k) band_end[k] = k;
  for (std::int32_t p = 0; p < b; ++p) {
    const std::int32_t f = first[p];
    band_end[f] = p > band_end[f] ? p : band_end[f];
  }
  for (std::int32_t k = 1; k < b; ++k) band_end[k] = band_end[k - 1] > band_end[k] ? band_end[k - 1] : band_end[k];
  for (std::int32_t k = 0; k < b; ++k) band_end[k] = band_end[k] < b ? band_end[k] : b - 1;
  *border = b;
  Envelope env;
  env.first = first;
  env.band_end = band_end;
  env.border = b;
  return env;
}

/// Points the local fit's doubles (fit_doubles) of s at d onwards; returns the end.
GPEDE_HOST_DEVICE GPEDE_INLINE double* carve_fit_doubles(double* d, const Extents& x, LocalFitScratch& s) {
  s.corrected = d;
  d += x.m;
  s.sigma = d;
  d += x.m;
  s.correction = d;
  d += x.m;
  s.weight = d;
  d += x.m;
  s.gamma = d;
  d += packed_size(static_cast<std::int64_t>(x.nl));
  s.pivot_inverse = d;
  d += x.nl;
  s.solution = d;
  d += x.nl;
  s.work = d;
  return d + x.nl;
}

/// Points the local fit's and the slot map's integers (fit_ints) of s at i onwards; returns the end.
GPEDE_HOST_DEVICE GPEDE_INLINE std::int32_t* carve_fit_ints(std::int32_t* i, const Extents& x, LocalFitScratch& s) {
  s.slot_index = i;
  i += x.k;
  s.slot_label = i;
  i += x.k;
  s.slot_entries = i;
  i += x.k;
  s.entry_slot = i;
  i += x.e;
  s.position = i;
  i += x.nl;
  s.first = i;
  i += x.nl;
  s.band_end = i;
  return i + x.nl;
}

/// The envelope of the fit whose factor the scratch holds (local_order's, kept in the scratch).
GPEDE_HOST_DEVICE GPEDE_INLINE Envelope fit_envelope(const LocalFitScratch& s, const LocalFitResult& fit) {
  Envelope env;
  env.border = fit.border_start;
  if (fit.banded != 0) {
    env.first = s.first;
    env.band_end = s.band_end;
  }
  return env;
}

}  // namespace detail

/// The scratch capacity record r needs. unique_globals is set to its bound global_entries. A
/// record with fewer measurements than local parameters (its largest local index + 1) is rejected
/// (rank deficit, as pede does) before the scratch is touched, so local_parameters is at most the
/// number of measurements: a stray large local index costs no memory.
GPEDE_HOST_DEVICE GPEDE_INLINE RecordShape record_shape(const RecordBatchView& batch, std::int64_t r) {
  RecordShape shape;
  const std::int64_t m0 = batch.record_begin[r];
  const std::int64_t m1 = batch.record_begin[r + 1];
  shape.measurements = static_cast<std::int32_t>(m1 - m0);
  std::int32_t max_local = -1;
  for (std::int64_t j = batch.local_begin[m0]; j < batch.local_begin[m1]; ++j) {
    if (batch.local_index[j] > max_local) max_local = batch.local_index[j];
  }
  shape.local_parameters = max_local + 1 < shape.measurements ? max_local + 1 : shape.measurements;
  shape.global_entries = static_cast<std::int32_t>(batch.global_begin[m1] - batch.global_begin[m0]);
  shape.unique_globals = shape.global_entries;
  return shape;
}

/// Element-wise maximum of two shapes (capacity for both).
GPEDE_HOST_DEVICE GPEDE_INLINE RecordShape max_shape(const RecordShape& a, const RecordShape& b) {
  RecordShape c;
  c.measurements = a.measurements > b.measurements ? a.measurements : b.measurements;
  c.local_parameters = a.local_parameters > b.local_parameters ? a.local_parameters : b.local_parameters;
  c.global_entries = a.global_entries > b.global_entries ? a.global_entries : b.global_entries;
  c.unique_globals = a.unique_globals > b.unique_globals ? a.unique_globals : b.unique_globals;
  return c;
}

/// Bytes of scratch that records up to `capacity` need (a multiple of 8).
GPEDE_HOST_DEVICE GPEDE_INLINE std::size_t local_fit_scratch_bytes(const RecordShape& capacity) {
  const detail::ScratchCounts n = detail::scratch_counts(capacity);
  return detail::align_up(n.doubles * sizeof(double) + n.ints * sizeof(std::int32_t), sizeof(double));
}

/// Carves the scratch arrays out of `buffer` (8-byte aligned, local_fit_scratch_bytes(capacity)).
GPEDE_HOST_DEVICE GPEDE_INLINE LocalFitScratch make_local_fit_scratch(void* buffer, const RecordShape& capacity) {
  LocalFitScratch s;
  s.capacity = capacity;
  const detail::Extents x = detail::extents(capacity);
  double* d = detail::carve_fit_doubles(static_cast<double*>(buffer), x, s);
  s.cross = d;
  d += x.nl * detail::padded_columns(x.k);
  s.global_matrix = d;
  d += x.k * x.k;
  s.global_vector = d;
  d += x.k;
  detail::carve_fit_ints(reinterpret_cast<std::int32_t*>(d), x, s);
  return s;
}

/// Local fit of record r with the current global parameter values. The scratch keeps what
/// global_contribution needs (residuals, weights, Cholesky factor) until the next fit. A record
/// with fewer measurements than local parameters is rejected before the scratch is touched, so the
/// capacity needs to cover only min(local parameters, measurements).
GPEDE_HOST_DEVICE GPEDE_INLINE LocalFitResult fit_record(const RecordBatchView& batch, const GlobalStateView& state,
                                                         std::int64_t r, const LocalFitOptions& options,
                                                         const LocalFitScratch& s) {
  LocalFitResult result;
  const std::int64_t m0 = batch.record_begin[r];
  const std::int64_t m1 = batch.record_begin[r + 1];
  const std::int32_t n_meas = static_cast<std::int32_t>(m1 - m0);
  const double rw = batch.record_weight[r];
  result.record_weight = rw;
  result.measurements = n_meas;

  std::int32_t max_local = -1;
  for (std::int64_t j = batch.local_begin[m0]; j < batch.local_begin[m1]; ++j) {
    if (batch.local_index[j] > max_local) max_local = batch.local_index[j];
  }
  const std::int32_t nl = max_local + 1;
  result.local_parameters = nl;
  if (nl <= 0) {
    result.status = LocalFitStatus::no_local_parameters;
    return result;
  }
  if (n_meas < nl) {  // Gamma cannot have full rank
    result.status = LocalFitStatus::rank_deficient;
    return result;
  }
  if (n_meas > s.capacity.measurements || nl > s.capacity.local_parameters) {
    result.status = LocalFitStatus::scratch_too_small;
    return result;
  }

  // corrected measurements and scaled errors
  for (std::int32_t i = 0; i < n_meas; ++i) {
    const std::int64_t m = m0 + i;
    double z = batch.meas_value[m];
    const std::int64_t g0 = batch.global_begin[m];
    const std::int64_t g1 = batch.global_begin[m + 1];
    for (std::int64_t e = g0; e < g1; ++e) z -= batch.global_deriv[e] * state.parameter_value[batch.global_index[e]];
    s.corrected[i] = z;
    s.sigma[i] = batch.meas_sigma[m] * (g1 > g0 ? options.scale_global : options.scale_local);
    s.correction[i] = 0.0;
  }

  // The order of the local parameters in Gamma (a border moved last) and its envelope.
  std::int32_t border = nl;
  const detail::Envelope env = detail::local_order(batch, m0, m1, nl, s.position, s.first, s.band_end, &border);
  result.border_start = border;
  result.banded = env.first != nullptr ? 1 : 0;
  const std::int32_t* order = border < nl ? s.position : nullptr;  // null: the identity

  const bool downweighting = options.downweight_iterations > 0;
  const int iterations = downweighting ? options.downweight_iterations : 1;
  const std::size_t n_gamma = detail::packed_size(nl);
  double chi2 = 0.0;
  double sum_root_omega = 0.0;
  for (int iteration = 1; iteration <= iterations; ++iteration) {
    const bool weighted = downweighting && iteration > 1;
    for (std::size_t k = 0; k < n_gamma; ++k) s.gamma[k] = 0.0;
    for (std::int32_t k = 0; k < nl; ++k) s.solution[k] = 0.0;
    for (std::int32_t i = 0; i < n_meas; ++i) {
      const std::int64_t m = m0 + i;
      const double sigma = s.sigma[i];
      double w = 1.0 / (sigma * sigma);
      if (weighted) w *= detail::downweight((s.corrected[i] - s.correction[i]) / sigma, iteration).omega;
      const double wz = w * s.corrected[i];
      const std::int64_t l0 = batch.local_begin[m];
      const std::int64_t l1 = batch.local_begin[m + 1];
      for (std::int64_t k = l0; k < l1; ++k) {
        const std::int32_t b = order != nullptr ? order[batch.local_index[k]] : batch.local_index[k];
        const double wd = w * batch.local_deriv[k];
        s.solution[b] += wz * batch.local_deriv[k];
        double* column = s.gamma + detail::packed_column(b, nl) - b;  // column[a] = (a, b) for a >= b
        column[b] += wd * batch.local_deriv[k];
        for (std::int64_t j = k + 1; j < l1; ++j) {
          const std::int32_t a = order != nullptr ? order[batch.local_index[j]] : batch.local_index[j];
          const double v = wd * batch.local_deriv[j];
          if (a > b) {
            column[a] += v;
          } else if (a < b) {
            detail::add_packed(s.gamma, nl, a, b, v);
          } else {
            column[a] += 2.0 * v;  // repeated local index in one measurement
          }
        }
      }
    }
    if (!detail::cholesky_packed(s.gamma, s.pivot_inverse, nl, env)) {
      result.status = LocalFitStatus::rank_deficient;
      return result;
    }
    detail::forward_packed(s.gamma, s.pivot_inverse, nl, env, s.solution);
    detail::backward_packed(s.gamma, s.pivot_inverse, nl, env, s.solution);

    chi2 = 0.0;
    sum_root_omega = 0.0;
    for (std::int32_t i = 0; i < n_meas; ++i) {
      const std::int64_t m = m0 + i;
      double dq = 0.0;
      for (std::int64_t j = batch.local_begin[m]; j < batch.local_begin[m + 1]; ++j) {
        dq += batch.local_deriv[j] *
              s.solution[order != nullptr ? order[batch.local_index[j]] : batch.local_index[j]];
      }
      s.correction[i] = dq;
      const double zeta = (s.corrected[i] - dq) / s.sigma[i];
      if (weighted) {
        const detail::Downweight dw = detail::downweight(zeta, iteration);
        chi2 += dw.chi2;
        sum_root_omega += ::sqrt(dw.omega);
      } else {
        chi2 += zeta * zeta;
        sum_root_omega += 1.0;
      }
    }
    if (!(chi2 == chi2)) {  // NaN in the data or the solution
      result.status = LocalFitStatus::rank_deficient;
      return result;
    }
    result.ndf = n_meas - nl;
    if (result.ndf <= 0) {
      result.status = LocalFitStatus::no_degrees_of_freedom;
      return result;
    }
  }
  if (border < nl) {  // q by local index
    for (std::int32_t k = 0; k < nl; ++k) s.work[k] = s.solution[s.position[k]];
    for (std::int32_t k = 0; k < nl; ++k) s.solution[k] = s.work[k];
  }
  result.chi2 = chi2;
  result.downweight_fraction = (static_cast<double>(n_meas) - sum_root_omega) / static_cast<double>(n_meas);
  const float limit = chi2_3sigma(result.ndf);
  result.chi2_limit = limit;

  if (options.chi2_cut_factor >= 0.0) {
    if (chi2 > static_cast<double>(static_cast<float>(options.hugecut) * limit)) {
      result.status = LocalFitStatus::huge_chi2;
      return result;
    }
    if (options.chi2_cut_factor > 0.0) {
      const float cut = static_cast<float>(options.chi2_cut_factor) * limit;
      if (chi2 > static_cast<double>(cut)) {
        result.status = LocalFitStatus::chi2_cut;
        result.function_value = rw * static_cast<double>(cut);
        return result;
      }
    }
  }
  if (options.downweight_iterations > 1 && options.dwfractioncut != 0.0 &&
      result.downweight_fraction > options.dwfractioncut) {
    result.status = LocalFitStatus::downweight_fraction;
    result.function_value = rw * chi2;
    return result;
  }

  // accepted: weights and chi2 terms of the final residuals
  double f = 0.0;
  for (std::int32_t i = 0; i < n_meas; ++i) {
    const double sigma = s.sigma[i];
    const double zeta = (s.corrected[i] - s.correction[i]) / sigma;
    double w = 1.0 / (sigma * sigma);
    if (downweighting) {
      const detail::Downweight dw = detail::downweight(zeta, 2);
      w *= dw.omega;
      f += dw.chi2;
    } else {
      f += zeta * zeta;
    }
    s.weight[i] = w;
  }
  result.function_value = rw * f;
  result.status = LocalFitStatus::accepted;
  return result;
}

namespace detail {
/// First position in sorted[0, count) whose value is not below `value`.
GPEDE_HOST_DEVICE GPEDE_INLINE std::int32_t lower_bound(const std::int32_t* sorted, std::int32_t count,
                                                        std::int32_t value) {
  std::int32_t lo = 0;
  std::int32_t hi = count;
  while (lo < hi) {
    const std::int32_t mid = (lo + hi) / 2;
    if (sorted[mid] < value) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

/// The distinct variable globals of the n_entries global-derivative entries from e0: their
/// variable indices ascending in slot_index, their labels in slot_label, their entry counts in
/// slot_entries, and per entry its slot (-1 for a fixed label) in entry_slot. Returns the number
/// of slots K, or -(at least the number needed) when more than `capacity` are distinct.
GPEDE_HOST_DEVICE GPEDE_INLINE std::int32_t build_slot_map(const RecordBatchView& batch, const GlobalStateView& state,
                                                           std::int64_t e0, std::int64_t n_entries,
                                                           std::int32_t capacity, std::int32_t* slot_index,
                                                           std::int32_t* slot_label, std::int32_t* slot_entries,
                                                           std::int32_t* entry_slot) {
  // insertion into a sorted list
  std::int32_t k_count = 0;
  for (std::int64_t e = 0; e < n_entries; ++e) {
    const std::int32_t label = batch.global_index[e0 + e];
    const std::int32_t v = state.variable_index[label];
    if (v < 0) continue;
    const std::int32_t lo = lower_bound(slot_index, k_count, v);
    if (lo < k_count && slot_index[lo] == v) continue;
    if (k_count >= capacity) return -(k_count + 1);
    for (std::int32_t k = k_count; k > lo; --k) {
      slot_index[k] = slot_index[k - 1];
      slot_label[k] = slot_label[k - 1];
    }
    slot_index[lo] = v;
    slot_label[lo] = label;
    ++k_count;
  }
  for (std::int32_t k = 0; k < k_count; ++k) slot_entries[k] = 0;
  for (std::int64_t e = 0; e < n_entries; ++e) {
    const std::int32_t v = state.variable_index[batch.global_index[e0 + e]];
    std::int32_t slot = -1;
    if (v >= 0) {
      slot = lower_bound(slot_index, k_count, v);
      ++slot_entries[slot];
    }
    entry_slot[e] = slot;
  }
  return k_count;
}

/// C -= Y^T Y on the lower triangle of the k x k column-major C, for Y with n rows of k columns
/// stored in panels of 8 columns (zero beyond column k; see LocalFitScratch::cross). Tiles of 8
/// rows x 4 columns of C are summed over the n rows of Y in registers, reading both panels in
/// order, then subtracted once: a record with 500 globals has a 2 MB C, which rank-one updates
/// row by row would read and write n times. Rows of Y that are zero in a tile's four columns (as
/// for the tracks of a pair that share no local parameter) are skipped.
GPEDE_HOST_DEVICE GPEDE_INLINE void subtract_gram_lower(const double* y_panels, std::int32_t n, std::int32_t k,
                                                        double* c) {
  constexpr std::int32_t w = panel_width;
  const std::int64_t panel_size = static_cast<std::int64_t>(n) * w;
  for (std::int32_t b0 = 0; b0 < k; b0 += 4) {
    const double* yb_panel = y_panels + (b0 / w) * panel_size + b0 % w;
    const std::int32_t columns = k - b0 < 4 ? k - b0 : 4;
    for (std::int32_t a0 = b0 / w * w; a0 < k; a0 += w) {
      const double* ya_panel = y_panels + (a0 / w) * panel_size;
      double s0[w] = {};
      double s1[w] = {};
      double s2[w] = {};
      double s3[w] = {};
      for (std::int32_t i = 0; i < n; ++i) {
        const double* yb = yb_panel + static_cast<std::int64_t>(i) * w;
        const double y0 = yb[0];
        const double y1 = yb[1];
        const double y2 = yb[2];
        const double y3 = yb[3];
        if (y0 == 0.0 && y1 == 0.0 && y2 == 0.0 && y3 == 0.0) continue;
        const double* ya = ya_panel + static_cast<std::int64_t>(i) * w;
        for (std::int32_t r = 0; r < w; ++r) s0[r] += y0 * ya[r];
        for (std::int32_t r = 0; r < w; ++r) s1[r] += y1 * ya[r];
        for (std::int32_t r = 0; r < w; ++r) s2[r] += y2 * ya[r];
        for (std::int32_t r = 0; r < w; ++r) s3[r] += y3 * ya[r];
      }
      double* c0 = c + static_cast<std::int64_t>(b0) * k;
      if (a0 >= b0 + 4 && a0 + w <= k) {  // wholly below the diagonal and inside C
        for (std::int32_t r = 0; r < w; ++r) c0[a0 + r] -= s0[r];
        for (std::int32_t r = 0; r < w; ++r) c0[k + a0 + r] -= s1[r];
        for (std::int32_t r = 0; r < w; ++r) c0[2 * k + a0 + r] -= s2[r];
        for (std::int32_t r = 0; r < w; ++r) c0[3 * k + a0 + r] -= s3[r];
        continue;
      }
      const double* sums[4] = {s0, s1, s2, s3};
      for (std::int32_t q = 0; q < columns; ++q) {
        const std::int32_t b = b0 + q;
        double* column = c + static_cast<std::int64_t>(b) * k;
        for (std::int32_t r = 0; r < w; ++r) {
          const std::int32_t a = a0 + r;
          if (a >= b && a < k) column[a] -= sums[q][r];
        }
      }
    }
  }
}

}  // namespace detail

/// Contribution of record r, just accepted by fit_record on the same scratch, to the global
/// vector b and (with_matrix) to the global matrix. Duplicate labels are merged, fixed labels
/// (variable_index < 0) dropped.
GPEDE_HOST_DEVICE GPEDE_INLINE GlobalContribution global_contribution(const RecordBatchView& batch,
                                                                      const GlobalStateView& state, std::int64_t r,
                                                                      const LocalFitResult& fit,
                                                                      const LocalFitScratch& s, bool with_matrix) {
  GlobalContribution out;
  const std::int64_t m0 = batch.record_begin[r];
  const std::int64_t m1 = batch.record_begin[r + 1];
  const std::int64_t e0 = batch.global_begin[m0];
  const std::int64_t n_entries = batch.global_begin[m1] - e0;
  if (n_entries > s.capacity.global_entries) return out;

  const std::int32_t kk = detail::build_slot_map(batch, state, e0, n_entries, s.capacity.unique_globals, s.slot_index,
                                                 s.slot_label, s.slot_entries, s.entry_slot);
  if (kk < 0) {
    out.size = -kk;  // at least this many
    return out;
  }
  for (std::int32_t k = 0; k < kk; ++k) s.global_vector[k] = 0.0;

  const std::int32_t nl = fit.local_parameters;
  const double rw = fit.record_weight;
  if (with_matrix) {
    for (std::int64_t k = 0; k < static_cast<std::int64_t>(kk) * kk; ++k) s.global_matrix[k] = 0.0;
    const auto n_cross = static_cast<std::int64_t>(detail::padded_columns(static_cast<std::size_t>(kk))) * nl;
    for (std::int64_t k = 0; k < n_cross; ++k) s.cross[k] = 0.0;
  }
  for (std::int64_t m = m0; m < m1; ++m) {
    const std::int32_t i = static_cast<std::int32_t>(m - m0);
    const double w = s.weight[i];
    const double wr = w * (s.corrected[i] - s.correction[i]);
    const std::int64_t g0 = batch.global_begin[m];
    const std::int64_t g1 = batch.global_begin[m + 1];
    for (std::int64_t e = g0; e < g1; ++e) {
      const std::int32_t a = s.entry_slot[e - e0];
      if (a < 0) continue;
      const double g = batch.global_deriv[e];
      s.global_vector[a] += wr * g;
      if (!with_matrix) continue;
      const double wg = w * g;
      for (std::int64_t f = g0; f < e; ++f) {
        const std::int32_t b = s.entry_slot[f - e0];
        if (b < 0) continue;
        const double v = wg * batch.global_deriv[f];
        if (a > b) {
          s.global_matrix[static_cast<std::int64_t>(b) * kk + a] += v;
        } else if (a < b) {
          s.global_matrix[static_cast<std::int64_t>(a) * kk + b] += v;
        } else {
          s.global_matrix[static_cast<std::int64_t>(a) * kk + a] += 2.0 * v;  // repeated label in one measurement
        }
      }
      s.global_matrix[static_cast<std::int64_t>(a) * kk + a] += wg * g;
      for (std::int64_t j = batch.local_begin[m]; j < batch.local_begin[m + 1]; ++j) {
        const std::int32_t row = fit.border_start < nl ? s.position[batch.local_index[j]] : batch.local_index[j];
        s.cross[detail::panel_offset(row, a, nl)] += wg * batch.local_deriv[j];
      }
    }
  }
  for (std::int32_t k = 0; k < kk; ++k) s.global_vector[k] *= rw;

  if (with_matrix) {
    // Y = L^-1 D^T W G; C = G^T W G - Y^T Y
    const auto panels = static_cast<std::int32_t>(detail::padded_columns(static_cast<std::size_t>(kk))) / detail::panel_width;
    for (std::int32_t p = 0; p < panels; ++p) {
      detail::forward_packed_panel(s.gamma, s.pivot_inverse, nl, detail::fit_envelope(s, fit),
                                   s.cross + static_cast<std::int64_t>(p) * nl * detail::panel_width);
    }
    detail::subtract_gram_lower(s.cross, nl, kk, s.global_matrix);
    for (std::int32_t b = 0; b < kk; ++b) {
      double* column = s.global_matrix + static_cast<std::int64_t>(b) * kk;
      for (std::int32_t a = b; a < kk; ++a) column[a] *= rw;
    }
    out.matrix = s.global_matrix;
  }
  out.ok = true;
  out.size = kk;
  out.index = s.slot_index;
  out.label = s.slot_label;
  out.entries = s.slot_entries;
  out.vector = s.global_vector;
  return out;
}

}  // namespace gpede::kernels
