// Non-owning raw-pointer view of a RecordBatch (host or device memory), the form in which the
// per-record functions and the kernels see records.
#pragma once

#include <cstdint>

#include "gpede/kernels/host_device.hpp"

namespace gpede::kernels {

/// Raw pointers into the arrays of a RecordBatch (same meaning, same layout).
/// global_index holds the index into all labels (0-based).
struct RecordBatchView {
  std::int64_t n_records = 0;
  const std::int64_t* record_begin = nullptr;
  const double* record_weight = nullptr;
  const double* meas_value = nullptr;
  const double* meas_sigma = nullptr;
  const std::int64_t* local_begin = nullptr;
  const std::int64_t* global_begin = nullptr;
  const std::int32_t* local_index = nullptr;
  const double* local_deriv = nullptr;
  const std::int32_t* global_index = nullptr;
  const double* global_deriv = nullptr;
};

/// The global state that a pass over the data reads: parameter values and the variable map.
struct GlobalStateView {
  std::int64_t n_all = 0;       ///< number of labels
  std::int64_t n_variable = 0;  ///< size of the global system
  const double* parameter_value = nullptr;  ///< per label: current value (start + corrections)
  const std::int32_t* variable_index = nullptr;  ///< per label: index in the global system, -1 if fixed
};

}  // namespace gpede::kernels
