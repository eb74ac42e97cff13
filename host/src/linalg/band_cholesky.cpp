#include "gpede/detail/band_cholesky.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace gpede::detail {

BandFactor band_cholesky(std::vector<double> band, std::int64_t n, std::int64_t w, bool skyline) {
  BandFactor f;
  f.n = n;
  f.w = w;
  const double eps = 16.0 * std::numeric_limits<double>::epsilon();
  for (std::int64_t i = 0; i < n; ++i) {
    double* row = band.data() + i * w;  // row[k] = C(i, i - k), becoming L(i, i - k)
    const std::int64_t lo = std::max<std::int64_t>(0, i - w + 1);
    for (std::int64_t j = lo; j < i; ++j) {
      const double* other = band.data() + j * w;
      const std::int64_t from = std::max(lo, j - w + 1);
      double s = row[i - j];
      for (std::int64_t l = from; l < j; ++l) s -= row[i - l] * other[j - l];
      row[i - j] = s * other[0];  // other[0] = 1 / L(j, j), 0 for a dropped row
    }
    const double diagonal = row[0];
    double s = diagonal;
    for (std::int64_t l = lo; l < i; ++l) s -= row[i - l] * row[i - l];
    if (s > eps * diagonal) {
      row[0] = 1.0 / std::sqrt(s);
      continue;
    }
    for (std::int64_t k = 1; k < w; ++k) row[k] = 0.0;
    if (skyline && diagonal > 0.0) {
      row[0] = 1.0 / std::sqrt(diagonal);
      ++f.replaced;
    } else {
      row[0] = 0.0;
      if (f.dropped++ == 0) f.first_dropped = i;
    }
  }
  f.l = std::move(band);
  return f;
}

void band_forward(const BandFactor& f, double* x) {
  const std::int64_t n = f.n, w = f.w;
  for (std::int64_t i = 0; i < n; ++i) {
    const double* row = f.l.data() + i * w;
    double s = x[i];
    for (std::int64_t l = std::max<std::int64_t>(0, i - w + 1); l < i; ++l) s -= row[i - l] * x[l];
    x[i] = s * row[0];
  }
}

void band_backward(const BandFactor& f, double* x) {
  const std::int64_t n = f.n, w = f.w;
  for (std::int64_t i = n - 1; i >= 0; --i) {
    const double* row = f.l.data() + i * w;
    const double xi = x[i] * row[0];
    x[i] = xi;
    for (std::int64_t l = std::max<std::int64_t>(0, i - w + 1); l < i; ++l) x[l] -= row[i - l] * xi;
  }
}

}  // namespace gpede::detail
