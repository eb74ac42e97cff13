// Cholesky factorisation of a symmetric band matrix: MINRES's band preconditioner (pede's
// `bandwidth` keyword). The band holds the diagonal and the w - 1 elements left of it in each row.
// A pivot that the elimination reduces to 16 eps of its diagonal element or below counts as zero:
// the row is dropped from the factor (its component of a solve is zero) or, with `skyline`
// (pede's second number of `bandwidth`), replaced by its diagonal element alone, so that the rank
// is kept. This is pede's treatment of its band preconditioner.
#pragma once

#include <cstdint>
#include <vector>

namespace gpede::detail {

struct BandFactor {
  std::int64_t n = 0;
  std::int64_t w = 0;  ///< band width, diagonal included
  /// Row-major n x w: l[i * w + k] = L(i, i - k) for k >= 1, l[i * w] = 1 / L(i, i) (0 for a
  /// dropped row).
  std::vector<double> l;
  std::int64_t dropped = 0;     ///< rows dropped as dependent
  std::int64_t first_dropped = -1;  ///< the first of them, -1 if none
  std::int64_t replaced = 0;    ///< rows replaced by their diagonal (skyline)
};

/// Factorises the band (row-major n x w, band[i * w + k] = C(i, i - k); elements left of column
/// 0 are ignored) as L L^T.
BandFactor band_cholesky(std::vector<double> band, std::int64_t n, std::int64_t w, bool skyline);
/// x := L^-1 x (x of size n).
void band_forward(const BandFactor& f, double* x);
/// x := L^-T x.
void band_backward(const BandFactor& f, double* x);
/// x := (L L^T)^-1 x.
inline void band_solve(const BandFactor& f, double* x) {
  band_forward(f, x);
  band_backward(f, x);
}

}  // namespace gpede::detail
