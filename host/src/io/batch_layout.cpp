// Checks and views of a RecordBatch shared by the accumulators of every backend.
#include "gpede/detail/batch_layout.hpp"

#include "gpede/error.hpp"

namespace gpede::detail {

kernels::RecordBatchView host_view(const RecordBatch& batch) {
  kernels::RecordBatchView view;
  view.n_records = static_cast<std::int64_t>(batch.n_records());
  view.record_begin = batch.record_begin.data();
  view.record_weight = batch.record_weight.data();
  view.meas_value = batch.meas_value.data();
  view.meas_sigma = batch.meas_sigma.data();
  view.local_begin = batch.local_begin.data();
  view.global_begin = batch.global_begin.data();
  view.local_index = batch.local_index.data();
  view.local_deriv = batch.local_deriv.data();
  view.global_index = batch.global_index.data();
  view.global_deriv = batch.global_deriv.data();
  return view;
}

std::string record_name(const RecordBatch& batch, std::int64_t r) {
  std::string name = "record " + std::to_string(r) + " of the batch";
  if (static_cast<std::size_t>(r) < batch.record_number.size()) {
    name = "record " + std::to_string(batch.record_number[r]);
    if (static_cast<std::size_t>(r) < batch.record_file.size()) {
      name += " of binary file #" + std::to_string(batch.record_file[r] + 1);
    }
  }
  return name;
}

void check_batch_layout(const RecordBatch& batch, const std::string& who, GlobalArray globals) {
  const std::size_t n_records = batch.n_records();
  const std::size_t n_meas = batch.n_measurements();
  auto fail = [&](const std::string& what) { throw RuntimeError(who + ": inconsistent record batch: " + what); };
  if (batch.record_begin.empty() || batch.record_begin.front() != 0) fail("record_begin must start with 0");
  if (batch.record_weight.size() != n_records) fail("record_weight size differs from the number of records");
  if (static_cast<std::size_t>(batch.record_begin.back()) != n_meas) {
    fail("record_begin does not end at the measurement count");
  }
  if (batch.meas_value.size() != n_meas || batch.meas_sigma.size() != n_meas) fail("measurement array sizes differ");
  if (batch.global_begin.size() != n_meas + 1) fail("global_begin size differs from measurements + 1");
  if (batch.local_begin.front() != 0 || static_cast<std::size_t>(batch.local_begin.back()) != batch.local_index.size() ||
      batch.local_deriv.size() != batch.local_index.size()) {
    fail("local derivative arrays do not match local_begin");
  }
  const std::size_t n_globals =
      globals == GlobalArray::index ? batch.global_index.size() : batch.global_label.size();
  if (batch.global_begin.front() != 0 || static_cast<std::size_t>(batch.global_begin.back()) != n_globals ||
      batch.global_deriv.size() != n_globals) {
    fail(globals == GlobalArray::index ? "global derivative arrays do not match global_begin (is global_index filled?)"
                                       : "global derivative arrays do not match global_begin");
  }
}

std::string record_offsets_problem(const RecordBatch& batch, std::int64_t r) {
  const std::int64_t m0 = batch.record_begin[r];
  const std::int64_t m1 = batch.record_begin[r + 1];
  if (m1 < m0) return "has decreasing offsets";
  for (std::int64_t m = m0; m < m1; ++m) {
    if (batch.local_begin[m + 1] < batch.local_begin[m] || batch.global_begin[m + 1] < batch.global_begin[m]) {
      return "has decreasing offsets";
    }
  }
  for (std::int64_t j = batch.local_begin[m0]; j < batch.local_begin[m1]; ++j) {
    if (batch.local_index[j] < 0) return "has local index " + std::to_string(batch.local_index[j] + 1) + " below 1";
  }
  return {};
}

std::string record_problem(const RecordBatch& batch, std::int64_t r, std::int64_t n_all) {
  std::string problem = record_offsets_problem(batch, r);
  if (!problem.empty()) return problem;
  const std::int64_t m0 = batch.record_begin[r];
  const std::int64_t m1 = batch.record_begin[r + 1];
  for (std::int64_t e = batch.global_begin[m0]; e < batch.global_begin[m1]; ++e) {
    const std::int32_t v = batch.global_index[e];
    if (v < 0 || v >= n_all) {
      return "has a global derivative with label index " + std::to_string(v) + " outside the label map (label " +
             std::to_string(e < static_cast<std::int64_t>(batch.global_label.size()) ? batch.global_label[e] : 0) + ")";
    }
  }
  return {};
}

}  // namespace gpede::detail
