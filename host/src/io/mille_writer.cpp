// Writer of Mille C binary records (single or double precision), with the record layout of
// Millepede II's Mille class. The file appears under its final name only when it is complete.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpede/error.hpp"
#include "gpede/mille.hpp"
#include "gpede/record_time.hpp"

namespace gpede {

struct MilleWriter::Impl {
  std::filesystem::path path;
  std::filesystem::path tmp_path;
  MillePrecision precision = MillePrecision::single;
  std::FILE* file = nullptr;
  bool failed = false;
  // record being built: pair 0 is the error counter (always 0 here)
  std::vector<double> values;
  std::vector<std::int32_t> indices;
  std::int64_t n_measurements = 0;
  bool has_special = false;
  std::vector<char> out;
  std::int64_t records = 0;
  std::int64_t bytes = 0;

  void start_record_if_needed() {
    if (values.empty()) {
      values.push_back(0.0);
      indices.push_back(0);
      n_measurements = 0;
      has_special = false;
    }
  }

  void reset_record() {
    values.clear();
    indices.clear();
    n_measurements = 0;
    has_special = false;
  }

  void push(double v, std::int32_t i) {
    values.push_back(v);
    indices.push_back(i);
  }

  [[noreturn]] void io_error(const std::string& what) {
    failed = true;
    throw RuntimeError("Mille file '" + tmp_path.string() + "': " + what + " (" +
                       std::strerror(errno) + ")");
  }

  void close_file(bool keep) {
    if (file == nullptr) return;
    const bool flushed = std::fflush(file) == 0;
    const bool closed = std::fclose(file) == 0;
    file = nullptr;
    if (!keep) {
      std::error_code ec;
      std::filesystem::remove(tmp_path, ec);
      return;
    }
    if (!flushed || !closed) {
      failed = true;
      std::error_code ec;
      std::filesystem::remove(tmp_path, ec);
      throw RuntimeError("Mille file '" + tmp_path.string() + "': write failed on close (" +
                         std::strerror(errno) + ")");
    }
    std::error_code ec;
    std::filesystem::rename(tmp_path, path, ec);
    if (ec) {
      failed = true;
      throw RuntimeError("Mille file '" + tmp_path.string() + "' cannot be renamed to '" +
                         path.string() + "': " + ec.message());
    }
  }
};

namespace {

void require_finite(double v, const char* what) {
  if (!std::isfinite(v)) {
    throw std::invalid_argument(std::string("MilleWriter: ") + what + " " + std::to_string(v) +
                                " is not a finite number");
  }
}

}  // namespace

MilleWriter::MilleWriter(const std::filesystem::path& path, MillePrecision precision)
    : m_impl(std::make_unique<Impl>()) {
  m_impl->path = path;
  m_impl->tmp_path = path;
  m_impl->tmp_path += ".tmp";
  m_impl->precision = precision;
  m_impl->file = std::fopen(m_impl->tmp_path.c_str(), "wb");
  if (m_impl->file == nullptr) {
    throw RuntimeError("Mille file '" + m_impl->tmp_path.string() +
                       "' cannot be created: " + std::strerror(errno));
  }
  std::setvbuf(m_impl->file, nullptr, _IOFBF, std::size_t{1} << 20);
}

MilleWriter::~MilleWriter() {
  try {
    m_impl->close_file(!m_impl->failed);
  } catch (...) {
    // a destructor must not throw; the temporary file was removed by close_file
  }
}

void MilleWriter::add_measurement(int n_local, const double* local_derivs, int n_global,
                                  const double* global_derivs, const std::int32_t* labels,
                                  double residual, double sigma) {
  if (n_local < 0 || n_global < 0 || (n_local > 0 && local_derivs == nullptr) ||
      (n_global > 0 && (global_derivs == nullptr || labels == nullptr))) {
    throw std::invalid_argument("MilleWriter::add_measurement: negative count or missing array");
  }
  require_finite(sigma, "measurement error sigma");
  if (sigma <= 0.0) return;
  require_finite(residual, "measured residual");
  for (int i = 0; i < n_local; ++i) require_finite(local_derivs[i], "local derivative");
  for (int i = 0; i < n_global; ++i) {
    require_finite(global_derivs[i], "global derivative");
    if (global_derivs[i] != 0.0 && labels[i] <= 0) {
      throw std::invalid_argument("MilleWriter::add_measurement: global label " +
                                  std::to_string(labels[i]) + " is not positive");
    }
  }
  if (m_impl->precision == MillePrecision::single) {
    const double fmax = std::numeric_limits<float>::max();
    auto fits = [&](double v) { return std::fabs(v) <= fmax; };
    bool ok = fits(residual) && fits(sigma) && static_cast<float>(sigma) > 0.0f;
    for (int i = 0; i < n_local; ++i) ok = ok && fits(local_derivs[i]);
    for (int i = 0; i < n_global; ++i) ok = ok && fits(global_derivs[i]);
    if (!ok) {
      throw std::invalid_argument(
          "MilleWriter::add_measurement: a value does not fit in single precision");
    }
  }

  Impl& w = *m_impl;
  const bool single = w.precision == MillePrecision::single;
  // a derivative is dropped if it is zero in the precision written
  auto nonzero = [single](double v) { return single ? static_cast<float>(v) != 0.0f : v != 0.0; };
  w.start_record_if_needed();
  w.push(residual, 0);
  for (int i = 0; i < n_local; ++i) {
    if (nonzero(local_derivs[i])) w.push(local_derivs[i], i + 1);
  }
  w.push(sigma, 0);
  for (int i = 0; i < n_global; ++i) {
    if (nonzero(global_derivs[i])) w.push(global_derivs[i], labels[i]);
  }
  ++w.n_measurements;
}

void MilleWriter::add_special(int n_special, const double* floats, const std::int32_t* ints) {
  if (n_special < 0 || (n_special > 0 && (floats == nullptr || ints == nullptr))) {
    throw std::invalid_argument("MilleWriter::add_special: negative count or missing array");
  }
  if (n_special == 0) return;
  if (n_special > (1 << 24)) {
    throw std::invalid_argument("MilleWriter::add_special: more than 2^24 special values");
  }
  Impl& w = *m_impl;
  if (!w.values.empty() && w.has_special) {
    throw std::invalid_argument(
        "MilleWriter::add_special: the record already holds a special block");
  }
  for (int i = 0; i < n_special; ++i) require_finite(floats[i], "special value");
  w.start_record_if_needed();
  w.has_special = true;
  w.push(0.0, 0);
  w.push(-static_cast<double>(n_special), 0);
  for (int i = 0; i < n_special; ++i) w.push(floats[i], ints[i]);
}

void MilleWriter::add_time(std::int32_t experiment, std::int32_t run) {
  if (experiment < 0 || run < 0) {
    throw std::invalid_argument("MilleWriter::add_time: experiment and run must be 0 or more");
  }
  const double floats[kTimeBlockPairs] = {1.0, 0.0, 0.0};
  const std::int32_t ints[kTimeBlockPairs] = {kTimeBlockTag, experiment, run};
  add_special(kTimeBlockPairs, floats, ints);
}

void MilleWriter::kill_record() { m_impl->reset_record(); }

void MilleWriter::end_record() {
  Impl& w = *m_impl;
  if (w.file == nullptr) throw std::logic_error("MilleWriter::end_record: the file is closed");
  if (w.n_measurements == 0) {
    w.reset_record();
    return;
  }
  const std::size_t m = w.values.size();
  if (m > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max() / 2)) {
    throw std::invalid_argument("MilleWriter::end_record: record too long");
  }
  const bool single = w.precision == MillePrecision::single;
  const std::int32_t n_words = static_cast<std::int32_t>(2 * m) * (single ? 1 : -1);
  const std::size_t value_size = single ? 4 : 8;
  w.out.resize(4 + m * (value_size + 4));
  char* p = w.out.data();
  std::memcpy(p, &n_words, 4);
  p += 4;
  if (single) {
    for (std::size_t k = 0; k < m; ++k, p += 4) {
      const float v = static_cast<float>(w.values[k]);
      std::memcpy(p, &v, 4);
    }
  } else {
    std::memcpy(p, w.values.data(), m * 8);
    p += m * 8;
  }
  std::memcpy(p, w.indices.data(), m * 4);
  w.reset_record();
  if (std::fwrite(w.out.data(), 1, w.out.size(), w.file) != w.out.size())
    w.io_error("write failed");
  w.bytes += static_cast<std::int64_t>(w.out.size());
  ++w.records;
}

void MilleWriter::close() {
  m_impl->reset_record();
  if (m_impl->failed) {
    m_impl->close_file(false);
    throw RuntimeError("Mille file '" + m_impl->path.string() +
                       "' was not written completely (an earlier write failed)");
  }
  m_impl->close_file(true);
}

std::int64_t MilleWriter::records_written() const noexcept { return m_impl->records; }
std::int64_t MilleWriter::bytes_written() const noexcept { return m_impl->bytes; }

}  // namespace gpede
