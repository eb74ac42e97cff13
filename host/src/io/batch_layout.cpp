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

void check_batch_layout(const RecordBatch& batch, const std::string& who) {
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
  if (batch.global_begin.front() != 0 ||
      static_cast<std::size_t>(batch.global_begin.back()) != batch.global_index.size() ||
      batch.global_deriv.size() != batch.global_index.size()) {
    fail("global derivative arrays do not match global_begin (is global_index filled?)");
  }
}

}  // namespace gpede::detail
