// Test records written as measurements with (index, derivative) lists, and their conversion into
// a RecordBatch (labels are 0-based label indices here: global_label = index + 1), shared by the
// tests of the per-record math.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "gpede/record_batch.hpp"

namespace gpede::test {

struct Measurement {
  double value = 0.0;
  double sigma = 1.0;
  std::vector<std::pair<int, double>> locals;   // (0-based local index, derivative)
  std::vector<std::pair<int, double>> globals;  // (label index, derivative)
};

struct Record {
  double weight = 1.0;
  std::vector<Measurement> meas;
};

inline RecordBatch make_batch(const std::vector<Record>& records) {
  RecordBatch b;
  std::int64_t number = 0;
  for (const Record& rec : records) {
    for (const Measurement& m : rec.meas) {
      b.meas_value.push_back(m.value);
      b.meas_sigma.push_back(m.sigma);
      for (const auto& [index, d] : m.locals) {
        b.local_index.push_back(index);
        b.local_deriv.push_back(d);
      }
      for (const auto& [label, d] : m.globals) {
        b.global_label.push_back(label + 1);
        b.global_index.push_back(label);
        b.global_deriv.push_back(d);
      }
      b.local_begin.push_back(static_cast<std::int64_t>(b.local_index.size()));
      b.global_begin.push_back(static_cast<std::int64_t>(b.global_index.size()));
    }
    b.record_begin.push_back(static_cast<std::int64_t>(b.meas_value.size()));
    b.record_weight.push_back(rec.weight);
    b.record_file.push_back(0);
    b.record_number.push_back(++number);
  }
  return b;
}

}  // namespace gpede::test
