// Per-record math: the local (track) fit of one Mille record and its Schur-complement contribution
// to the global matrix and vector. Host/device inline functions on raw views; no allocation, no
// exceptions. The CPU backend calls them in a loop; the CUDA kernels call them per record.
#pragma once

#include <cstdint>

#include "gpede/kernels/host_device.hpp"
#include "gpede/kernels/record_view.hpp"

namespace gpede::kernels {

/// Options of the local fits of one pass.
struct LocalFitOptions {
  double chi2_cut_factor = 0.0;  ///< reject if chi2 > factor x chi2_3sigma(ndf); 0: no cut
  double hugecut = 50.0;         ///< reject if chi2 > hugecut x chi2_3sigma(ndf)
  int downweight_iterations = 0; ///< outlier down-weighting iterations (0: off)
  double dwfractioncut = 0.0;    ///< reject if down-weight fraction > this (0: off)
  double scale_global = 1.0;     ///< error scale for measurements with global derivatives
  double scale_local = 1.0;      ///< error scale for measurements without global derivatives
};

}  // namespace gpede::kernels
