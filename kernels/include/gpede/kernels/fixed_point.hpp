// Exact accumulation of the global matrix for the deterministic mode of the CUDA backend: every
// contribution to element (a, b) is rounded once to a 128-bit integer in units of 2^-shift(a, b),
// and integers add exactly, in any order. The sum is therefore the same bit for bit whatever the
// order in which the atomic adds of a GPU land.
//
// The unit of element (a, b) comes from bounds known before the pass (column_bounds.hpp): with
// B_a >= sum over the records of |C_r(a, a)| and 2^s_a >= B_a, every partial sum of C(a, b)
// stays below 2^max(s_a, s_b) (each C_r is positive semi-definite, so |C_r(a, b)| is at most
// sqrt(C_r(a, a) C_r(b, b)), and Cauchy-Schwarz bounds the sum). Scaled by 2^(kFixedBits -
// max(s_a, s_b)) the sums stay below 2^kFixedBits, 11 bits short of the 2^127 limit; the unit is
// 2^-116 of the bound, far below the rounding of a double.
#pragma once

#include <math.h>

#include <cstdint>

#include "gpede/kernels/host_device.hpp"

namespace gpede::kernels::fixed {

/// Magnitude, in bits, that the bound of an element is scaled to.
inline constexpr int kFixedBits = 116;

/// The shift of element (a, b) from the exponents of the bounds of a and b.
GPEDE_HOST_DEVICE GPEDE_INLINE int shift_of(std::int32_t exponent_a, std::int32_t exponent_b) {
  return kFixedBits - (exponent_a > exponent_b ? exponent_a : exponent_b);
}

/// round(value x 2^shift) (half away from zero) as a 128-bit integer. The caller keeps
/// |value| x 2^shift below 2^126; a non-finite value gives 0.
GPEDE_HOST_DEVICE GPEDE_INLINE __int128 to_fixed(double value, int shift) {
  if (value == 0.0 || !(value - value == 0.0)) return 0;
  int exponent = 0;
  const double mantissa = ::frexp(value, &exponent);  // value = mantissa 2^exponent, 1/2 <= |mantissa| < 1
  const double magnitude = ::ldexp(mantissa < 0.0 ? -mantissa : mantissa, 53);
  const auto m = static_cast<unsigned long long>(magnitude);  // exact, below 2^53
  const int k = exponent - 53 + shift;                       // value x 2^shift = +-m 2^k
  unsigned __int128 q = 0;
  if (k >= 0) {
    q = k < 74 ? static_cast<unsigned __int128>(m) << k : 0;  // k >= 74 breaks the bound: caller error
  } else if (-k <= 54) {
    const int r = -k;
    q = (static_cast<unsigned __int128>(m) + (static_cast<unsigned __int128>(1) << (r - 1))) >> r;
  }
  const auto signed_q = static_cast<__int128>(q);
  return mantissa < 0.0 ? -signed_q : signed_q;
}

/// The double nearest to x 2^-shift (x converted once, then scaled exactly).
GPEDE_HOST_DEVICE GPEDE_INLINE double from_fixed(__int128 x, int shift) {
  return ::ldexp(static_cast<double>(x), -shift);
}

/// The two 64-bit words of a 128-bit integer, as the matrix buffer stores them.
GPEDE_HOST_DEVICE GPEDE_INLINE unsigned long long low_word(__int128 x) { return static_cast<unsigned long long>(x); }
GPEDE_HOST_DEVICE GPEDE_INLINE unsigned long long high_word(__int128 x) {
  return static_cast<unsigned long long>(static_cast<unsigned __int128>(x) >> 64);
}
GPEDE_HOST_DEVICE GPEDE_INLINE __int128 from_words(unsigned long long low, unsigned long long high) {
  return static_cast<__int128>((static_cast<unsigned __int128>(high) << 64) | low);
}

}  // namespace gpede::kernels::fixed
