// Records built in memory (gpede/record_builder.hpp).
#include "gpede/record_builder.hpp"
#include "gpede/record_time.hpp"

#include <algorithm>
#include <cmath>

#include "gpede/error.hpp"

namespace gpede {
namespace {

constexpr int kBadRecord = 20;  // pede's "bad binary data", as for a bad record in a file

/// Appends records [r0, r1) of `from` to `to`, renumbering nothing.
void append_records(const RecordBatch& from, std::size_t r0, std::size_t r1, RecordBatch& to) {
  for (std::size_t r = r0; r < r1; ++r) {
    const std::int64_t m0 = from.record_begin[r], m1 = from.record_begin[r + 1];
    for (std::int64_t m = m0; m < m1; ++m) {
      to.meas_value.push_back(from.meas_value[m]);
      to.meas_sigma.push_back(from.meas_sigma[m]);
      const auto l0 = from.local_begin[m], l1 = from.local_begin[m + 1];
      to.local_index.insert(to.local_index.end(), from.local_index.begin() + l0, from.local_index.begin() + l1);
      to.local_deriv.insert(to.local_deriv.end(), from.local_deriv.begin() + l0, from.local_deriv.begin() + l1);
      const auto g0 = from.global_begin[m], g1 = from.global_begin[m + 1];
      to.global_label.insert(to.global_label.end(), from.global_label.begin() + g0, from.global_label.begin() + g1);
      to.global_index.insert(to.global_index.end(), static_cast<std::size_t>(g1 - g0), -1);
      to.global_deriv.insert(to.global_deriv.end(), from.global_deriv.begin() + g0, from.global_deriv.begin() + g1);
      to.local_begin.push_back(static_cast<std::int64_t>(to.local_index.size()));
      to.global_begin.push_back(static_cast<std::int64_t>(to.global_label.size()));
    }
    to.record_begin.push_back(static_cast<std::int64_t>(to.meas_value.size()));
    to.record_weight.push_back(from.record_weight[r]);
    to.record_file.push_back(from.record_file[r]);
    to.record_number.push_back(from.record_number[r]);
    if (!from.record_time.empty()) {
      if (to.record_time.size() + 1 < to.record_number.size()) to.record_time.resize(to.record_number.size() - 1, kNoTime);
      to.record_time.push_back(from.record_time[r]);
    } else if (!to.record_time.empty()) {
      to.record_time.push_back(kNoTime);
    }
  }
}

class MemorySource final : public RecordSource {
 public:
  explicit MemorySource(const RecordBatch& records) : m_records(records) {}
  std::size_t next(RecordBatch& batch, std::size_t max_records) override {
    const std::size_t r1 = std::min(m_records.n_records(), m_next + max_records);
    const std::size_t count = r1 - m_next;
    append_records(m_records, m_next, r1, batch);
    m_next = r1;
    return count;
  }
  void rewind() override { m_next = 0; }

 private:
  const RecordBatch& m_records;
  std::size_t m_next = 0;
};

}  // namespace

void RecordBuilder::refuse(const std::string& what) {
  const std::size_t record = m_done.n_records() + 1, measurement = m_current.n_measurements() + 1;
  kill_record();
  throw InputError("record " + std::to_string(record) + ", measurement " + std::to_string(measurement) + ": " + what +
                       "; the record is discarded",
                   kBadRecord);
}

void RecordBuilder::add_measurement(std::span<const double> local_derivatives,
                                    std::span<const double> global_derivatives, std::span<const std::int32_t> labels,
                                    double measurement, double sigma) {
  if (global_derivatives.size() != labels.size()) {
    refuse(std::to_string(global_derivatives.size()) + " global derivatives but " + std::to_string(labels.size()) +
           " labels");
  }
  if (local_derivatives.size() > static_cast<std::size_t>(INT32_MAX)) refuse("too many local derivatives");
  if (!std::isfinite(measurement)) refuse("the measurement is not finite");
  if (!(sigma > 0.0) || !std::isfinite(sigma)) refuse("sigma " + std::to_string(sigma) + " is not positive and finite");
  for (std::size_t k = 0; k < local_derivatives.size(); ++k) {
    if (!std::isfinite(local_derivatives[k])) refuse("local derivative " + std::to_string(k + 1) + " is not finite");
  }
  for (std::size_t k = 0; k < global_derivatives.size(); ++k) {
    if (!std::isfinite(global_derivatives[k])) refuse("global derivative " + std::to_string(k + 1) + " is not finite");
    if (labels[k] <= 0) refuse("label " + std::to_string(labels[k]) + " is not positive (1 to 2147483647)");
  }
  RecordBatch& b = m_current;
  b.meas_value.push_back(measurement);
  b.meas_sigma.push_back(sigma);
  for (std::size_t k = 0; k < local_derivatives.size(); ++k) {
    if (local_derivatives[k] == 0.0) continue;
    b.local_index.push_back(static_cast<std::int32_t>(k));
    b.local_deriv.push_back(local_derivatives[k]);
  }
  for (std::size_t k = 0; k < global_derivatives.size(); ++k) {
    if (global_derivatives[k] == 0.0) continue;
    b.global_label.push_back(labels[k]);
    b.global_index.push_back(-1);
    b.global_deriv.push_back(global_derivatives[k]);
  }
  b.local_begin.push_back(static_cast<std::int64_t>(b.local_index.size()));
  b.global_begin.push_back(static_cast<std::int64_t>(b.global_label.size()));
}

void RecordBuilder::end_record() {
  if (m_current.n_measurements() == 0) {
    throw InputError("record " + std::to_string(m_done.n_records() + 1) + " has no measurements", kBadRecord);
  }
  m_current.record_begin.push_back(static_cast<std::int64_t>(m_current.meas_value.size()));
  m_current.record_weight.push_back(1.0);
  m_current.record_file.push_back(0);
  m_current.record_number.push_back(static_cast<std::int64_t>(m_done.n_records()) + 1);
  if (m_time != kNoTime) m_current.record_time.push_back(m_time);
  append_records(m_current, 0, 1, m_done);
  m_time = kNoTime;
  kill_record();
}

void RecordBuilder::set_time(std::int32_t experiment, std::int32_t run) {
  if (experiment < 0 || run < 0) {
    refuse("time: experiment " + std::to_string(experiment) + " and run " + std::to_string(run) +
           " (both must be 0 or more)");
  }
  m_time = record_time(experiment, run);
}

void RecordBuilder::kill_record() noexcept {
  m_current.clear();
  m_time = kNoTime;
}

void RecordBuilder::clear() noexcept {
  m_done.clear();
  m_current.clear();
}

std::unique_ptr<RecordSource> RecordBuilder::source() const { return make_memory_source(m_done); }

std::unique_ptr<RecordSource> make_memory_source(const RecordBatch& records) {
  return std::make_unique<MemorySource>(records);
}

}  // namespace gpede
