// Shared by the CUDA and CPU memory plans: sizes and constraint modes as the messages write them,
// and the list of the other methods and constraint modes that would fit.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "gpede/steering.hpp"

namespace gpede::detail {

/// "12.8 GB"; below 0.1 GB in megabytes ("5.8 MB"), which "0.0 GB" would hide.
inline std::string gigabytes(double bytes) {
  char text[32];
  if (bytes < 1e8) {
    std::snprintf(text, sizeof text, "%.1f MB", bytes / 1e6);
  } else {
    std::snprintf(text, sizeof text, "%.1f GB", bytes / 1e9);
  }
  return text;
}

inline const char* mode_name(ConstraintMode mode) {
  return mode == ConstraintMode::elimination ? "elimination" : "Lagrange multipliers";
}

/// "method decomposition (12.8 GB), method inversion with Lagrange multipliers (13.0 GB)": every
/// method and constraint mode but (method, mode) whose need(method, mode) in bytes is at most
/// `available`; the other mode only where there are constraints. Empty when none fits.
template <class Need>
std::string fitting_alternatives(Method method, ConstraintMode mode, std::int64_t n_constraints, double available,
                                 Need need) {
  std::string alternatives;
  const Method methods[] = {Method::decomposition, Method::inversion, Method::diagonalization};
  const ConstraintMode modes[] = {ConstraintMode::elimination, ConstraintMode::multipliers};
  for (Method other_method : methods) {
    for (ConstraintMode other_mode : modes) {
      if (other_method == method && other_mode == mode) continue;
      if (other_mode != mode && n_constraints == 0) continue;
      const double bytes = need(other_method, other_mode);
      if (bytes <= available) {
        alternatives += std::string(alternatives.empty() ? "" : ", ") + "method " + method_name(other_method) +
                        (other_mode != mode ? std::string(" with ") + mode_name(other_mode) : std::string()) + " (" +
                        gigabytes(bytes) + ")";
      }
    }
  }
  return alternatives;
}

}  // namespace gpede::detail
