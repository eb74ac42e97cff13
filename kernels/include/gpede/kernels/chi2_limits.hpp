// Chi2 cut values of the local fits: the chi2/ndf value that a fit with ndf degrees of freedom
// exceeds with the probability of a 1, 2 or 3 standard-deviation Gaussian tail. pede tabulates it
// for ndf <= 30 and uses the Wilson-Hilferty-like approximation (s + sqrt(2 ndf - 1))^2 / (2 ndf)
// above; both in single precision, as pede compares with them.
#pragma once

#include <math.h>

#include "gpede/kernels/host_device.hpp"

namespace gpede::kernels {

/// chi2/ndf limit for n_sigma standard deviations (clamped to 1..3) and ndf degrees of freedom;
/// 0 for ndf < 1. Same values as pede's chindl(n, ndf), in single precision.
GPEDE_HOST_DEVICE GPEDE_INLINE float chi2_per_ndf_limit(int n_sigma, int ndf) {
  if (ndf < 1) return 0.0f;
  const int m = n_sigma < 1 ? 1 : (n_sigma > 3 ? 3 : n_sigma);
  if (ndf <= 30) {
    const float one_sigma[30] = {1.0000f, 1.1479f, 1.1753f, 1.1798f, 1.1775f, 1.1730f, 1.1680f, 1.1630f,
                                 1.1581f, 1.1536f, 1.1493f, 1.1454f, 1.1417f, 1.1383f, 1.1351f, 1.1321f,
                                 1.1293f, 1.1266f, 1.1242f, 1.1218f, 1.1196f, 1.1175f, 1.1155f, 1.1136f,
                                 1.1119f, 1.1101f, 1.1085f, 1.1070f, 1.1055f, 1.1040f};
    const float two_sigma[30] = {4.0000f, 3.0900f, 2.6750f, 2.4290f, 2.2628f, 2.1415f, 2.0481f, 1.9736f,
                                 1.9124f, 1.8610f, 1.8171f, 1.7791f, 1.7457f, 1.7161f, 1.6897f, 1.6658f,
                                 1.6442f, 1.6246f, 1.6065f, 1.5899f, 1.5745f, 1.5603f, 1.5470f, 1.5346f,
                                 1.5230f, 1.5120f, 1.5017f, 1.4920f, 1.4829f, 1.4742f};
    const float three_sigma[30] = {9.0000f, 5.9146f, 4.7184f, 4.0628f, 3.6410f, 3.3436f, 3.1209f, 2.9468f,
                                   2.8063f, 2.6902f, 2.5922f, 2.5082f, 2.4352f, 2.3711f, 2.3143f, 2.2635f,
                                   2.2178f, 2.1764f, 2.1386f, 2.1040f, 2.0722f, 2.0428f, 2.0155f, 1.9901f,
                                   1.9665f, 1.9443f, 1.9235f, 1.9040f, 1.8855f, 1.8681f};
    if (m == 1) return one_sigma[ndf - 1];
    if (m == 2) return two_sigma[ndf - 1];
    return three_sigma[ndf - 1];
  }
  const float offset = m == 1 ? 0.47523f : (m == 2 ? 1.690140f : 2.782170f);
  const float root = offset + ::sqrtf(static_cast<float>(ndf + ndf - 1));
  return root * root / static_cast<float>(ndf + ndf);
}

/// The chi2 value at 3 standard deviations for ndf degrees of freedom, chindl(3, ndf) * ndf in
/// pede's single precision; 0 for ndf < 1.
GPEDE_HOST_DEVICE GPEDE_INLINE float chi2_3sigma(int ndf) {
  return chi2_per_ndf_limit(3, ndf) * static_cast<float>(ndf);
}

}  // namespace gpede::kernels
