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
#include "gpede/record_builder.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"
#include "gpede/version.hpp"

struct gpede_steering {
  gpede::Steering steering;
};

struct gpede_records {
  gpede::RecordBuilder builder;
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
  if (records != nullptr) records->builder.kill_record();
}

gpede_status gpede_records_add_measurement(gpede_records* records, int n_local, const double* local_derivatives,
                                           int n_global, const double* global_derivatives, const int32_t* labels,
                                           double measurement, double sigma) {
  if (records == nullptr) return null_argument("gpede_records_add_measurement", "records");
  return guarded([&] {
    const auto refuse = [&](const std::string& what) {
      records->builder.kill_record();
      return fail(GPEDE_ERROR_INPUT, "gpede_records_add_measurement: record " +
                                         std::to_string(records->builder.records() + 1) + ": " + what +
                                         "; the record is discarded");
    };
    if (n_local < 0 || n_global < 0) return refuse("negative number of derivatives");
    if ((n_local > 0 && local_derivatives == nullptr) ||
        (n_global > 0 && (global_derivatives == nullptr || labels == nullptr))) {
      return refuse("derivatives or labels are NULL");
    }
    try {
      records->builder.add_measurement({local_derivatives, static_cast<std::size_t>(n_local)},
                                       {global_derivatives, static_cast<std::size_t>(n_global)},
                                       {labels, static_cast<std::size_t>(n_global)}, measurement, sigma);
    } catch (const gpede::InputError& e) {
      return fail(GPEDE_ERROR_INPUT, std::string("gpede_records_add_measurement: ") + e.what());
    }
    return GPEDE_OK;
  });
}

gpede_status gpede_records_end(gpede_records* records) {
  if (records == nullptr) return null_argument("gpede_records_end", "records");
  return guarded([&] {
    try {
      records->builder.end_record();
    } catch (const gpede::InputError& e) {
      return fail(GPEDE_ERROR_INPUT, std::string("gpede_records_end: ") + e.what());
    }
    return GPEDE_OK;
  });
}

size_t gpede_records_count(const gpede_records* records) { return records != nullptr ? records->builder.records() : 0; }

gpede_options gpede_options_default(void) {
  gpede_options o{};
  o.backend = GPEDE_BACKEND_CPU;
  o.threads = 0;
  o.deterministic = 0;
  o.cache_records = 1;
  o.log = nullptr;
  o.log_user = nullptr;
  o.covariance_labels = nullptr;
  o.n_covariance_labels = 0;
  o.covariance_all = 0;
  o.progress = nullptr;
  o.progress_user = nullptr;
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
    if (o.n_covariance_labels > 0 && o.covariance_labels == nullptr) {
      return fail(GPEDE_ERROR_INPUT, "gpede_solve: covariance_labels is NULL but n_covariance_labels is " +
                                         std::to_string(o.n_covariance_labels));
    }
    so.covariance_labels.assign(o.covariance_labels, o.covariance_labels + o.n_covariance_labels);
    so.covariance_all = o.covariance_all != 0;
    if (o.progress != nullptr) {
      so.progress = [&](const gpede::Progress& p) {
        gpede_progress c{};
        c.phase = static_cast<int>(p.phase);
        c.phase_name = gpede::phase_name(p.phase);
        c.iteration = p.iteration;
        c.records_done = p.records_done;
        c.records_total = p.records_total;
        c.seconds = p.seconds;
        c.records_per_second = p.records_per_second;
        c.seconds_left = p.seconds_left;
        c.finished = p.finished ? 1 : 0;
        return o.progress(&c, o.progress_user) != 0;
      };
    }
    so.record_printout.clear();
    std::atomic<bool> stop{false};
    so.stop = &stop;
    if (o.log != nullptr) {
      so.log = [&](const std::string& line) {
        if (o.log(line.c_str(), o.log_user) != 0) stop = true;
      };
    }
    std::unique_ptr<gpede::RecordSource> source;
    if (records != nullptr) source = records->builder.source();
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

size_t gpede_result_covariance_size(const gpede_result* result) {
  return result != nullptr ? result->result.covariance.labels.size() : 0;
}

gpede_status gpede_result_covariance(const gpede_result* result, int32_t* labels, double* matrix) {
  if (result == nullptr) return null_argument("gpede_result_covariance", "result");
  return guarded([&] {
    const gpede::CovarianceBlock& block = result->result.covariance;
    if (labels != nullptr) std::copy(block.labels.begin(), block.labels.end(), labels);
    if (matrix != nullptr) std::copy(block.matrix.begin(), block.matrix.end(), matrix);
    return GPEDE_OK;
  });
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
