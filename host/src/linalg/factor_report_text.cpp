// Pieces of a FactorReport shared by the dense solvers of every backend.
#include "gpede/detail/factor_report_text.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace gpede::detail {

void add_large_components(const double* v, std::int64_t n, std::vector<std::int64_t>& out) {
  double vmax = 0.0;
  for (std::int64_t i = 0; i < n; ++i) vmax = std::max(vmax, std::abs(v[i]));
  if (!(vmax > 0.0)) return;
  for (std::int64_t i = 0; i < n; ++i) {
    if (std::abs(v[i]) >= kWeakComponentFraction * vmax) out.push_back(i);
  }
}

void sort_unique(std::vector<std::int64_t>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

std::vector<std::int64_t> eve_selection(const std::vector<double>& ascending, int count) {
  const auto n = static_cast<std::int64_t>(ascending.size());
  std::vector<std::int64_t> out;
  if (n == 0 || count <= 0) return out;
  std::int64_t imin = 1;
  for (std::int64_t k = 0; k < n; ++k) {
    if (ascending[k] > 0.0) {
      imin = n - k;
      break;
    }
  }
  const std::int64_t last = std::min<std::int64_t>({static_cast<std::int64_t>(count) - 1, 15, imin - 1});
  for (std::int64_t s = 0; s <= last; ++s) {
    const std::int64_t position = s < 10 ? imin - s : s - 9;
    out.push_back(n - position);
  }
  return out;
}

void lift_pivot_block(double& a, double& b, double& c, int which, double tol) {
  const double mean = 0.5 * (a + c), radius = std::hypot(0.5 * (a - c), b);
  const double lambda = which == 0 ? mean - radius : mean + radius;
  double vx = b, vy = lambda - a;  // eigenvector of [[a, b], [b, c]] for lambda
  if (std::hypot(vx, vy) == 0.0) {
    vx = lambda - c;
    vy = b;
  }
  const double norm = std::hypot(vx, vy);
  if (norm == 0.0) {
    vx = which == 0 ? 1.0 : 0.0;
    vy = which == 0 ? 0.0 : 1.0;
  } else {
    vx /= norm;
    vy /= norm;
  }
  const double shift = (lambda < 0.0 ? -tol : tol) - lambda;
  a += shift * vx * vx;
  b += shift * vx * vy;
  c += shift * vy * vy;
}

std::string format_number(double x) {
  std::ostringstream out;
  out.precision(4);
  out << x;
  return out.str();
}

std::string count_text(std::int64_t count, const char* what) {
  return std::to_string(count) + " " + what + (count == 1 ? "" : "s");
}

}  // namespace gpede::detail
