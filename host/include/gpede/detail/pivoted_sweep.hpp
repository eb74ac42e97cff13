// Inversion of a symmetric matrix that may be singular or indefinite, by Gauss-Jordan sweeps on
// its diagonal pivots, with pede's rules for which pivots it takes: the parameters of the pivots
// it rejects are held fixed (zero step, zero rows and columns in the inverse). Used where the
// global matrix (or the product matrix of the constraints) has no regular factorisation.
#pragma once

#include <cstdint>
#include <vector>

namespace gpede::detail {

/// The order in which pivots are taken.
enum class SweepOrder {
  /// The largest |diagonal element| left, the first of equals (pede's inversion): a pivot is
  /// accepted if |p| > limit x |original diagonal|; the first pivot that fails ends the sweeps and
  /// rejects every pivot left.
  largest_first,
  /// Indices n-1 down to 0 (pede's decomposition): a pivot is accepted if p > limit x |original
  /// diagonal|; a pivot that fails is skipped (held fixed) and the sweeps go on. The skipped
  /// pivots below -limit x |original diagonal| are listed in `negative`: the matrix is indefinite.
  last_to_first,
};

struct SweepOutcome {
  std::int64_t rank = 0;                ///< pivots accepted
  std::vector<std::int64_t> rejected;   ///< indices of the rejected pivots, ascending
  std::vector<std::int64_t> negative;   ///< last_to_first: the rejected ones clearly negative, ascending
};

/// Replaces the symmetric n x n matrix `a` (column-major, leading dimension lda, both triangles)
/// by the inverse of its principal submatrix on the accepted pivots, with zero rows and columns
/// for the rejected ones. O(n^3).
SweepOutcome sweep_inverse(double* a, std::int64_t n, std::int64_t lda, double limit, SweepOrder order);

/// pede's relative pivot limit of its inversion of the global matrix.
inline constexpr double kGlobalPivotLimit = 1.0e-10;

}  // namespace gpede::detail
