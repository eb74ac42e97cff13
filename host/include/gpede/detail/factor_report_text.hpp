// Pieces shared by the dense solvers of every backend: which parameters a weak mode involves,
// pede's choice of eigenvectors for millepede.eve, lifting singular pivot blocks, number formatting.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gpede::detail {

/// A parameter takes part in a weak mode if its component is at least this fraction of the largest.
inline constexpr double kWeakComponentFraction = 0.2;

/// Appends the indices i with |v_i| >= kWeakComponentFraction * max |v| (nothing for v = 0).
void add_large_components(const double* v, std::int64_t n, std::vector<std::int64_t>& out);

/// Sorts and removes repeated indices.
void sort_unique(std::vector<std::int64_t>& v);

/// pede's millepede.eve choice: with the eigenvalues in descending order and imin the 1-based
/// position of the smallest positive one, positions imin, imin-1, ..., imin-9, then 1, ..., 6; at
/// most imin of them and at most `count` (and 16). Returned as indices into the ascending list.
std::vector<std::int64_t> eve_selection(const std::vector<double>& ascending, int count);

/// Lifts one eigenvalue of the symmetric 2x2 pivot block [[a, b], [b, c]] of a Bunch-Kaufman
/// factor to +-tol (its sign kept): the smaller one for which == 0, the larger one otherwise. The
/// block is changed along that eigenvalue's eigenvector only.
void lift_pivot_block(double& a, double& b, double& c, int which, double tol);

/// x with 4 significant digits, for messages.
std::string format_number(double x);

/// "1 pivot", "3 pivots".
std::string count_text(std::int64_t count, const char* what);

}  // namespace gpede::detail
