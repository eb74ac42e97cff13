// Bounds of the columns of the global matrix before a pass, for its exact (fixed-point)
// accumulation in the CUDA backend's deterministic mode (gpede/kernels/fixed_point.hpp).
//
// A record's contribution C_r = rw G^T (W - W D Gamma^-1 D^T W) G has C_r(a, a) <= |rw| sum_i w_i
// G_ia^2, and w_i <= 1 / sigma_i^2 (scaled errors; down-weighting only lowers it). Per variable
// parameter a the bound B_a = count_a x largest_a, with count_a the (record, measurement) pairs whose
// global derivatives name a and largest_a the largest |rw| (sum of |derivatives| of a in the
// measurement)^2 / sigma^2 among them, covers every record whatever is accepted. Both are exact
// (an integer sum and a maximum), so the bound does not depend on the order or the threads.
#pragma once

#include <cstdint>
#include <vector>

#include "gpede/kernels/local_fit.hpp"
#include "gpede/record_batch.hpp"

namespace gpede::detail {

class ColumnBounds {
 public:
  /// Starts the bounds of a pass: n_variable parameters, the variable index of each label, the
  /// error scaling of the pass.
  void reset(std::int64_t n_variable, const std::vector<std::int32_t>& variable_index,
             const kernels::LocalFitOptions& options);
  /// Adds the records of a batch (global_index filled).
  void add(const RecordBatch& batch);
  /// Per variable parameter: s with count x largest <= 2^s; 0 for a parameter no record names,
  /// 1023 where the bound is not finite (a zero error).
  std::vector<std::int32_t> exponents() const;

  const std::vector<std::int64_t>& count() const { return m_count; }
  const std::vector<double>& largest() const { return m_largest; }

 private:
  std::vector<std::int64_t> m_count;
  std::vector<double> m_largest;
  std::vector<std::int32_t> m_variable_index;
  double m_scale_global = 1.0;
};

}  // namespace gpede::detail
