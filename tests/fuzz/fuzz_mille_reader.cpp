// libFuzzer target: the input is a Mille binary file. It is read with gpede::MilleReader as a C
// file and as a Fortran file, all records in small batches, then again after a rewind. An
// InputError is the expected outcome for bad data; any other exception, a crash, a sanitizer
// report, a leak or a hang is a finding. The target also traps where
// - an InputError's message is too long or holds control characters (fuzz_support.hpp);
// - a batch breaks the layout that RecordBatch documents or holds values the reader promises to
//   reject (non-finite numbers, sigma <= 0, labels <= 0, negative local indices);
// - the second pass after rewind() gives other records or another outcome than the first.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "fuzz_support.hpp"
#include "gpede/error.hpp"
#include "gpede/mille.hpp"
#include "gpede/record_batch.hpp"

namespace {

/// Records per call of MilleReader::read: small, so that the reader resumes often.
constexpr std::size_t records_per_read = 3;

void check_batch(const gpede::RecordBatch& b) {
  const std::size_t n_rec = b.n_records();
  const std::size_t n_meas = b.n_measurements();
  if (b.record_weight.size() != n_rec || b.record_file.size() != n_rec || b.record_number.size() != n_rec) {
    __builtin_trap();
  }
  if (b.meas_value.size() != n_meas || b.meas_sigma.size() != n_meas || b.global_begin.size() != n_meas + 1) {
    __builtin_trap();
  }
  if (b.local_deriv.size() != b.local_index.size() || b.global_deriv.size() != b.global_label.size() ||
      b.global_index.size() != b.global_label.size()) {
    __builtin_trap();
  }
  if (b.record_begin.front() != 0 || b.local_begin.front() != 0 || b.global_begin.front() != 0) __builtin_trap();
  if (static_cast<std::size_t>(b.record_begin.back()) != n_meas) __builtin_trap();
  if (static_cast<std::size_t>(b.local_begin.back()) != b.local_index.size()) __builtin_trap();
  if (static_cast<std::size_t>(b.global_begin.back()) != b.global_label.size()) __builtin_trap();
  for (std::size_t r = 0; r < n_rec; ++r) {
    // every record holds at least one measurement
    if (b.record_begin[r + 1] <= b.record_begin[r]) __builtin_trap();
  }
  for (std::size_t m = 0; m < n_meas; ++m) {
    if (b.local_begin[m + 1] < b.local_begin[m] || b.global_begin[m + 1] < b.global_begin[m]) __builtin_trap();
    if (!std::isfinite(b.meas_value[m]) || !(b.meas_sigma[m] > 0.0) || !std::isfinite(b.meas_sigma[m])) {
      __builtin_trap();
    }
  }
  for (std::size_t k = 0; k < b.local_index.size(); ++k) {
    if (b.local_index[k] < 0 || !std::isfinite(b.local_deriv[k])) __builtin_trap();
  }
  for (std::size_t k = 0; k < b.global_label.size(); ++k) {
    if (b.global_label[k] <= 0 || !std::isfinite(b.global_deriv[k])) __builtin_trap();
  }
}

/// What one pass over the file gave: the records (all in one batch) and the error, if any.
struct Pass {
  gpede::RecordBatch batch;
  std::int64_t records = 0;
  std::optional<std::string> error;
};

Pass read_all(gpede::MilleReader& reader) {
  Pass pass;
  try {
    while (reader.read(pass.batch, records_per_read) > 0) {
    }
  } catch (const gpede::InputError& e) {
    gpede::fuzz::check_message(e.what());
    pass.error = e.what();
  }
  pass.records = reader.records_read();
  check_batch(pass.batch);
  if (pass.records < 0 || static_cast<std::size_t>(pass.records) != pass.batch.n_records()) __builtin_trap();
  return pass;
}

bool same(const Pass& a, const Pass& b) {
  const auto& x = a.batch;
  const auto& y = b.batch;
  return a.records == b.records && a.error == b.error && x.record_begin == y.record_begin &&
         x.record_number == y.record_number && x.meas_value == y.meas_value && x.meas_sigma == y.meas_sigma &&
         x.local_begin == y.local_begin && x.global_begin == y.global_begin && x.local_index == y.local_index &&
         x.local_deriv == y.local_deriv && x.global_label == y.global_label && x.global_deriv == y.global_deriv;
}

void read_as(const std::filesystem::path& path, gpede::MilleFormat format) {
  gpede::MilleFileSpec spec;
  spec.path = path;
  spec.format = format;
  std::optional<gpede::MilleReader> reader;
  try {
    reader.emplace(spec, 0);
  } catch (const gpede::InputError& e) {
    gpede::fuzz::check_message(e.what());
    return;
  }
  const Pass first = read_all(*reader);
  try {
    reader->rewind();
  } catch (const gpede::InputError& e) {
    gpede::fuzz::check_message(e.what());
    return;
  }
  const Pass second = read_all(*reader);
  if (!same(first, second)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::filesystem::path path = gpede::fuzz::write_file("mille.bin", data, size);
  read_as(path, gpede::MilleFormat::c_binary);
  read_as(path, gpede::MilleFormat::fortran_binary);
  return 0;
}
