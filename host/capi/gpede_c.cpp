// The C API (include/gpede/gpede.h) over the C++ one: handles that own C++ objects, and a guard
// around every call that turns exceptions into a status and the thread's last error message.
#include "gpede/gpede.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "gpede/error.hpp"
#include "gpede/output.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"
#include "gpede/version.hpp"

struct gpede_steering {
  gpede::Steering steering;
};

struct gpede_records {
  gpede::RecordBatch done;     // the ended records
  gpede::RecordBatch current;  // the measurements of the record being built (one record, open)
  std::size_t measurement = 0; // measurements added to the current record
};

struct gpede_result {
  gpede::SolveResult result;
};

namespace {

thread_local std::string last_error;

gpede_status fail(gpede_status status, std::string message) {
  last_error = std::move(message);
  return status;
}

// Runs f, returning its status; exceptions become statuses with their message.
template <class F>
gpede_status guarded(F&& f) noexcept {
  try {
    last_error.clear();
    return f();
  } catch (const gpede::InputError& e) {
    return fail(GPEDE_ERROR_INPUT, e.what());
  } catch (const gpede::Interrupted& e) {
    return fail(GPEDE_ERROR_INTERRUPTED, e.what());
  } catch (const gpede::Error& e) {
    return fail(GPEDE_ERROR_RUNTIME, e.what());
  } catch (const std::bad_alloc&) {
    return fail(GPEDE_ERROR_RUNTIME, "out of memory");
  } catch (const std::exception& e) {
    return fail(GPEDE_ERROR_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return fail(GPEDE_ERROR_INTERNAL, "internal error: an unknown exception");
  }
}

gpede_status null_argument(const char* call, const char* name) {
  return fail(GPEDE_ERROR_INPUT, std::string(call) + ": " + name + " is NULL");
}

// Records [r0, r1) of `from` appended to `to`.
void append_records(const gpede::RecordBatch& from, std::size_t r0, std::size_t r1, gpede::RecordBatch& to) {
  for (std::size_t r = r0; r < r1; ++r) {
    const std::int64_t m0 = from.record_begin[r], m1 = from.record_begin[r + 1];
    for (std::int64_t m = m0; m < m1; ++m) {
      to.meas_value.push_back(from.meas_value[m]);
      to.meas_sigma.push_back(from.meas_sigma[m]);
      for (std::int64_t k = from.local_begin[m]; k < from.local_begin[m + 1]; ++k) {
        to.local_index.push_back(from.local_index[k]);
        to.local_deriv.push_back(from.local_deriv[k]);
      }
      for (std::int64_t k = from.global_begin[m]; k < from.global_begin[m + 1]; ++k) {
        to.global_label.push_back(from.global_label[k]);
        to.global_index.push_back(-1);
        to.global_deriv.push_back(from.global_deriv[k]);
      }
      to.local_begin.push_back(static_cast<std::int64_t>(to.local_index.size()));
      to.global_begin.push_back(static_cast<std::int64_t>(to.global_label.size()));
    }
    to.record_begin.push_back(static_cast<std::int64_t>(to.meas_value.size()));
    to.record_weight.push_back(1.0);
    to.record_file.push_back(0);
    to.record_number.push_back(from.record_number[r]);
  }
}

// The ended records of a gpede_records, pass after pass.
class MemorySource final : public gpede::RecordSource {
 public:
  explicit MemorySource(const gpede::RecordBatch& records) : m_records(records) {}
  std::size_t next(gpede::RecordBatch& batch, std::size_t max_records) override {
    const std::size_t r1 = std::min(m_records.n_records(), m_next + max_records);
    const std::size_t count = r1 - m_next;
    append_records(m_records, m_next, r1, batch);
    m_next = r1;
    return count;
  }
  void rewind() override { m_next = 0; }

 private:
  const gpede::RecordBatch& m_records;
  std::size_t m_next = 0;
};

gpede_parameter to_c(const gpede::ParameterResult& p) {
  gpede_parameter c{};
  c.label = p.label;
  c.variable = p.variable ? 1 : 0;
  c.fixed_by = p.fixed_by;
  c.value = p.value;
  c.presigma = p.presigma;
  c.difference = p.difference;
  c.error = p.error;
  c.global_correlation = p.global_correlation;
  c.entries = p.entries_files;
  return c;
}

}  // namespace

extern "C" {

const char* gpede_version(void) { return gpede::version(); }

int gpede_c_api_version(void) { return GPEDE_C_API_VERSION; }

const char* gpede_last_error(void) { return last_error.c_str(); }

gpede_status gpede_steering_read(const char* path, gpede_steering** steering) {
  if (steering == nullptr) return null_argument("gpede_steering_read", "steering");
  *steering = nullptr;
  if (path == nullptr) return null_argument("gpede_steering_read", "path");
  return guarded([&] {
    auto owned = std::make_unique<gpede_steering>();
    owned->steering = gpede::parse_steering(path);
    *steering = owned.release();
    return GPEDE_OK;
  });
}

void gpede_steering_free(gpede_steering* steering) { delete steering; }

size_t gpede_steering_warning_count(const gpede_steering* steering) {
  return steering != nullptr ? steering->steering.warnings.size() : 0;
}

const char* gpede_steering_warning(const gpede_steering* steering, size_t index) {
  if (steering == nullptr || index >= steering->steering.warnings.size()) return "";
  return steering->steering.warnings[index].c_str();
}

gpede_status gpede_records_new(gpede_records** records) {
  if (records == nullptr) return null_argument("gpede_records_new", "records");
  *records = nullptr;
  return guarded([&] {
    *records = new gpede_records();
    return GPEDE_OK;
  });
}

void gpede_records_free(gpede_records* records) { delete records; }

void gpede_records_kill(gpede_records* records) {
  if (records == nullptr) return;
  records->current.clear();
  records->measurement = 0;
}

gpede_status gpede_records_add_measurement(gpede_records* records, int n_local, const double* local_derivatives,
                                           int n_global, const double* global_derivatives, const int32_t* labels,
                                           double measurement, double sigma) {
  if (records == nullptr) return null_argument("gpede_records_add_measurement", "records");
  return guarded([&] {
    const std::size_t record = records->done.n_records() + 1, index = records->measurement + 1;
    const auto refuse = [&](const std::string& what) {
      gpede_records_kill(records);
      return fail(GPEDE_ERROR_INPUT, "gpede_records_add_measurement: record " + std::to_string(record) +
                                         ", measurement " + std::to_string(index) + ": " + what +
                                         "; the record is discarded");
    };
    if (n_local < 0 || n_global < 0) return refuse("negative number of derivatives");
    if ((n_local > 0 && local_derivatives == nullptr) ||
        (n_global > 0 && (global_derivatives == nullptr || labels == nullptr))) {
      return refuse("derivatives or labels are NULL");
    }
    if (!std::isfinite(measurement)) return refuse("the measurement is not finite");
    if (!(sigma > 0.0) || !std::isfinite(sigma)) return refuse("sigma " + std::to_string(sigma) + " is not positive and finite");
    for (int k = 0; k < n_local; ++k) {
      if (!std::isfinite(local_derivatives[k])) return refuse("local derivative " + std::to_string(k + 1) + " is not finite");
    }
    for (int k = 0; k < n_global; ++k) {
      if (!std::isfinite(global_derivatives[k])) return refuse("global derivative " + std::to_string(k + 1) + " is not finite");
      if (labels[k] <= 0) return refuse("label " + std::to_string(labels[k]) + " is not positive (1 to 2147483647)");
    }
    gpede::RecordBatch& b = records->current;
    b.meas_value.push_back(measurement);
    b.meas_sigma.push_back(sigma);
    for (int k = 0; k < n_local; ++k) {
      if (local_derivatives[k] == 0.0) continue;
      b.local_index.push_back(k);
      b.local_deriv.push_back(local_derivatives[k]);
    }
    for (int k = 0; k < n_global; ++k) {
      if (global_derivatives[k] == 0.0) continue;
      b.global_label.push_back(labels[k]);
      b.global_index.push_back(-1);
      b.global_deriv.push_back(global_derivatives[k]);
    }
    b.local_begin.push_back(static_cast<std::int64_t>(b.local_index.size()));
    b.global_begin.push_back(static_cast<std::int64_t>(b.global_label.size()));
    ++records->measurement;
    return GPEDE_OK;
  });
}

gpede_status gpede_records_end(gpede_records* records) {
  if (records == nullptr) return null_argument("gpede_records_end", "records");
  return guarded([&] {
    if (records->measurement == 0) {
      return fail(GPEDE_ERROR_INPUT, "gpede_records_end: record " + std::to_string(records->done.n_records() + 1) +
                                         " has no measurements");
    }
    gpede::RecordBatch& b = records->current;
    b.record_begin.push_back(static_cast<std::int64_t>(b.meas_value.size()));
    b.record_number.push_back(static_cast<std::int64_t>(records->done.n_records()) + 1);
    append_records(b, 0, 1, records->done);
    gpede_records_kill(records);
    return GPEDE_OK;
  });
}

size_t gpede_records_count(const gpede_records* records) { return records != nullptr ? records->done.n_records() : 0; }

gpede_options gpede_options_default(void) {
  gpede_options o{};
  o.backend = GPEDE_BACKEND_CPU;
  o.threads = 0;
  o.deterministic = 0;
  o.cache_records = 1;
  o.log = nullptr;
  o.log_user = nullptr;
  return o;
}

gpede_status gpede_solve(const gpede_steering* steering, const gpede_options* options, const gpede_records* records,
                         gpede_result** result) {
  if (result == nullptr) return null_argument("gpede_solve", "result");
  *result = nullptr;
  if (steering == nullptr) return null_argument("gpede_solve", "steering");
  const gpede_options o = options != nullptr ? *options : gpede_options_default();
  return guarded([&] {
    gpede::SolverOptions so;
    switch (o.backend) {
      case GPEDE_BACKEND_CPU: so.backend = gpede::BackendKind::cpu; break;
      case GPEDE_BACKEND_CUDA: so.backend = gpede::BackendKind::cuda; break;
      case GPEDE_BACKEND_AUTO: so.backend = gpede::BackendKind::automatic; break;
      default: return fail(GPEDE_ERROR_INPUT, "gpede_solve: unknown backend " + std::to_string(o.backend));
    }
    if (o.threads < 0) return fail(GPEDE_ERROR_INPUT, "gpede_solve: threads " + std::to_string(o.threads) + " is negative");
    so.threads = o.threads;
    so.deterministic = o.deterministic != 0;
    so.cache_records = o.cache_records != 0;
    so.record_printout.clear();
    std::atomic<bool> stop{false};
    so.stop = &stop;
    if (o.log != nullptr) {
      so.log = [&](const std::string& line) {
        if (o.log(line.c_str(), o.log_user) != 0) stop = true;
      };
    }
    std::unique_ptr<MemorySource> source;
    if (records != nullptr) source = std::make_unique<MemorySource>(records->done);
    auto owned = std::make_unique<gpede_result>();
    owned->result = gpede::solve(steering->steering, so, source.get());
    *result = owned.release();
    return GPEDE_OK;
  });
}

void gpede_result_free(gpede_result* result) { delete result; }

int gpede_result_exit_code(const gpede_result* result) { return result != nullptr ? result->result.exit_code : -1; }

const char* gpede_result_message(const gpede_result* result) {
  return result != nullptr ? result->result.message.c_str() : "";
}

double gpede_result_chi2_ndf(const gpede_result* result) {
  return result != nullptr ? result->result.chi2_ndf : std::numeric_limits<double>::quiet_NaN();
}

int64_t gpede_result_records_used(const gpede_result* result) { return result != nullptr ? result->result.records_used : 0; }

int64_t gpede_result_records_rejected(const gpede_result* result) {
  return result != nullptr ? result->result.records_rejected : 0;
}

size_t gpede_result_parameter_count(const gpede_result* result) {
  return result != nullptr ? result->result.parameters.size() : 0;
}

gpede_status gpede_result_parameter(const gpede_result* result, size_t index, gpede_parameter* parameter) {
  if (result == nullptr) return null_argument("gpede_result_parameter", "result");
  if (parameter == nullptr) return null_argument("gpede_result_parameter", "parameter");
  if (index >= result->result.parameters.size()) {
    return fail(GPEDE_ERROR_INPUT, "gpede_result_parameter: index " + std::to_string(index) + " beyond the " +
                                       std::to_string(result->result.parameters.size()) + " parameters");
  }
  last_error.clear();
  *parameter = to_c(result->result.parameters[index]);
  return GPEDE_OK;
}

gpede_status gpede_result_find(const gpede_result* result, int32_t label, gpede_parameter* parameter) {
  if (result == nullptr) return null_argument("gpede_result_find", "result");
  if (parameter == nullptr) return null_argument("gpede_result_find", "parameter");
  const auto& ps = result->result.parameters;  // ascending labels
  const auto it = std::lower_bound(ps.begin(), ps.end(), label,
                                   [](const gpede::ParameterResult& p, std::int32_t l) { return p.label < l; });
  if (it == ps.end() || it->label != label) {
    return fail(GPEDE_ERROR_INPUT, "gpede_result_find: no label " + std::to_string(label) + " in the run");
  }
  last_error.clear();
  *parameter = to_c(*it);
  return GPEDE_OK;
}

gpede_status gpede_result_write(gpede_result* result, const gpede_steering* steering, const char* folder) {
  if (result == nullptr) return null_argument("gpede_result_write", "result");
  if (steering == nullptr) return null_argument("gpede_result_write", "steering");
  if (folder == nullptr) return null_argument("gpede_result_write", "folder");
  return guarded([&] {
    gpede::write_results(folder, result->result, steering->steering);
    return GPEDE_OK;
  });
}

}  // extern "C"
