// gpede's Python module (_gpede, wrapped by the package gpede): steering files, records from
// numpy arrays or Mille files, the solver, results as numpy arrays, pede's result files.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "gpede/error.hpp"
#include "gpede/mille.hpp"
#include "gpede/output.hpp"
#include "gpede/record_builder.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"
#include "gpede/version.hpp"

namespace py = pybind11;

namespace {

using Doubles = py::array_t<double, py::array::c_style | py::array::forcecast>;
using Labels = py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>;

std::span<const double> span_of(const Doubles& a, const char* what) {
  if (a.ndim() > 1) throw py::value_error(std::string(what) + " must be one-dimensional");
  return {a.data(), static_cast<std::size_t>(a.size())};
}

/// Records in memory: built with Mille's calls or whole from arrays, or read from a Mille file.
class Records {
 public:
  gpede::RecordBuilder builder;

  void add_measurement(const Doubles& local, const Doubles& global, const Labels& labels, double measurement,
                       double sigma) {
    if (labels.ndim() > 1) throw py::value_error("labels must be one-dimensional");
    builder.add_measurement(span_of(local, "local derivatives"), span_of(global, "global derivatives"),
                            {labels.data(), static_cast<std::size_t>(labels.size())}, measurement, sigma);
  }

  /// One whole record: M measurements, local (M x L), global (M x G) derivatives, labels (G) or
  /// (M x G). A bad value discards the record and raises.
  void add_record(const Doubles& measurements, const Doubles& sigmas, const Doubles& local, const Doubles& global,
                  const Labels& labels) {
    builder.kill_record();
    const auto m = measurements.size();
    if (measurements.ndim() != 1 || sigmas.ndim() != 1 || sigmas.size() != m) {
      throw py::value_error("measurements and sigmas must be one-dimensional and of one length");
    }
    const auto rows = [&](const Doubles& a, const char* what) -> py::ssize_t {
      if (a.size() == 0) return 0;
      if (a.ndim() != 2 || a.shape(0) != m) {
        throw py::value_error(std::string(what) + " must have shape (" + std::to_string(m) + ", n)");
      }
      return a.shape(1);
    };
    const py::ssize_t n_local = rows(local, "local"), n_global = rows(global, "global_derivatives");
    const bool per_row = labels.ndim() == 2;
    if (n_global > 0) {
      if (per_row ? (labels.shape(0) != m || labels.shape(1) != n_global) : labels.size() != n_global) {
        throw py::value_error("labels must have shape (" + std::to_string(n_global) + ",) or (" + std::to_string(m) +
                              ", " + std::to_string(n_global) + ")");
      }
    }
    for (py::ssize_t i = 0; i < m; ++i) {
      const double* l = n_local > 0 ? local.data() + i * n_local : nullptr;
      const double* g = n_global > 0 ? global.data() + i * n_global : nullptr;
      const std::int32_t* lab = n_global > 0 ? labels.data() + (per_row ? i * n_global : 0) : nullptr;
      builder.add_measurement({l, static_cast<std::size_t>(n_local)}, {g, static_cast<std::size_t>(n_global)},
                              {lab, static_cast<std::size_t>(n_global)}, measurements.data()[i], sigmas.data()[i]);
    }
    builder.end_record();
  }

  /// Record i as arrays: local derivatives dense over 1..max local index, global derivatives dense
  /// over the record's distinct labels (ascending).
  py::dict record(py::ssize_t index) const {
    const gpede::RecordBatch& b = builder.batch();
    const auto n = static_cast<py::ssize_t>(b.n_records());
    if (index < 0) index += n;
    if (index < 0 || index >= n) throw py::index_error("record index out of range");
    const std::int64_t m0 = b.record_begin[index], m1 = b.record_begin[index + 1];
    std::int32_t n_local = 0;
    std::vector<std::int32_t> labels;
    for (std::int64_t k = b.local_begin[m0]; k < b.local_begin[m1]; ++k) n_local = std::max(n_local, b.local_index[k] + 1);
    for (std::int64_t k = b.global_begin[m0]; k < b.global_begin[m1]; ++k) labels.push_back(b.global_label[k]);
    std::sort(labels.begin(), labels.end());
    labels.erase(std::unique(labels.begin(), labels.end()), labels.end());
    const py::ssize_t m = m1 - m0, g = static_cast<py::ssize_t>(labels.size());
    py::array_t<double> values(m), sigmas(m), local({m, static_cast<py::ssize_t>(n_local)}), global({m, g});
    std::fill_n(local.mutable_data(), local.size(), 0.0);
    std::fill_n(global.mutable_data(), global.size(), 0.0);
    for (py::ssize_t i = 0; i < m; ++i) {
      const std::int64_t meas = m0 + i;
      values.mutable_data()[i] = b.meas_value[meas];
      sigmas.mutable_data()[i] = b.meas_sigma[meas];
      for (std::int64_t k = b.local_begin[meas]; k < b.local_begin[meas + 1]; ++k) {
        local.mutable_data()[i * n_local + b.local_index[k]] += b.local_deriv[k];
      }
      for (std::int64_t k = b.global_begin[meas]; k < b.global_begin[meas + 1]; ++k) {
        const auto at = std::lower_bound(labels.begin(), labels.end(), b.global_label[k]) - labels.begin();
        global.mutable_data()[i * g + at] += b.global_deriv[k];
      }
    }
    py::dict out;
    out["measurements"] = values;
    out["sigmas"] = sigmas;
    out["local"] = local;
    out["global_derivatives"] = global;
    out["labels"] = py::array_t<std::int32_t>(g, labels.data());
    return out;
  }
};

/// The local derivatives of measurement `meas` as Mille's calls take them: entry k for local
/// parameter k + 1, up to the largest index present.
void dense_local(const gpede::RecordBatch& batch, std::int64_t meas, std::vector<double>& local) {
  local.clear();
  for (std::int64_t k = batch.local_begin[meas]; k < batch.local_begin[meas + 1]; ++k) {
    const auto index = static_cast<std::size_t>(batch.local_index[k]);
    if (index >= local.size()) local.resize(index + 1, 0.0);
    local[index] += batch.local_deriv[k];
  }
}

Records read_mille(const std::filesystem::path& path, bool fortran) {
  gpede::MilleFileSpec spec;
  spec.path = path;
  spec.format = fortran ? gpede::MilleFormat::fortran_binary : gpede::MilleFormat::c_binary;
  gpede::MilleReader reader(spec, 0);
  Records records;
  gpede::RecordBatch batch;
  std::vector<double> local;
  while (reader.read(batch, 4096) > 0) {
    for (std::size_t r = 0; r < batch.n_records(); ++r) {
      for (std::int64_t meas = batch.record_begin[r]; meas < batch.record_begin[r + 1]; ++meas) {
        dense_local(batch, meas, local);
        const auto g0 = batch.global_begin[meas], g1 = batch.global_begin[meas + 1];
        records.builder.add_measurement(local, {batch.global_deriv.data() + g0, static_cast<std::size_t>(g1 - g0)},
                                        {batch.global_label.data() + g0, static_cast<std::size_t>(g1 - g0)},
                                        batch.meas_value[meas], batch.meas_sigma[meas]);
      }
      records.builder.end_record();
    }
    batch.clear();
  }
  return records;
}

void write_mille(const std::filesystem::path& path, const Records& records, const std::string& precision) {
  if (precision != "single" && precision != "double") throw py::value_error("precision must be 'single' or 'double'");
  gpede::MilleWriter writer(path, precision == "double" ? gpede::MillePrecision::double_ : gpede::MillePrecision::single);
  const gpede::RecordBatch& b = records.builder.batch();
  std::vector<double> local;
  for (std::size_t r = 0; r < b.n_records(); ++r) {
    for (std::int64_t meas = b.record_begin[r]; meas < b.record_begin[r + 1]; ++meas) {
      dense_local(b, meas, local);
      const auto g0 = b.global_begin[meas], g1 = b.global_begin[meas + 1];
      writer.add_measurement(static_cast<int>(local.size()), local.data(), static_cast<int>(g1 - g0),
                             b.global_deriv.data() + g0, b.global_label.data() + g0, b.meas_value[meas],
                             b.meas_sigma[meas]);
    }
    writer.end_record();
  }
  writer.close();
}

struct Result {
  gpede::SolveResult result;

  template <class T, class F>
  py::array_t<T> column(F f) const {
    py::array_t<T> out(static_cast<py::ssize_t>(result.parameters.size()));
    T* data = out.mutable_data();
    for (std::size_t i = 0; i < result.parameters.size(); ++i) data[i] = f(result.parameters[i]);
    return out;
  }

  py::ssize_t index(std::int32_t label) const {
    const auto& p = result.parameters;
    const auto it = std::lower_bound(p.begin(), p.end(), label,
                                     [](const gpede::ParameterResult& a, std::int32_t l) { return a.label < l; });
    if (it == p.end() || it->label != label) throw py::key_error("label " + std::to_string(label) + " is not in this run");
    return it - p.begin();
  }

  py::dict parameter(std::int32_t label) const {
    const gpede::ParameterResult& p = result.parameters[index(label)];
    py::dict out;
    out["label"] = p.label;
    out["value"] = p.value;
    out["error"] = p.error;
    out["presigma"] = p.presigma;
    out["difference"] = p.difference;
    out["global_correlation"] = p.global_correlation;
    out["variable"] = p.variable;
    out["fixed_by"] = p.fixed_by;
    out["entries"] = p.entries_files;
    return out;
  }
};

Result solve(const gpede::Steering& steering, Records* records, const std::string& backend, int threads,
             bool deterministic, const std::function<py::object(const std::string&)>& log,
             const py::object& covariance, const std::function<py::object(py::dict)>& progress) {
  gpede::SolverOptions options;
  if (py::isinstance<py::bool_>(covariance)) {
    options.covariance_all = covariance.cast<bool>();
  } else if (!covariance.is_none()) {
    const Labels labels = covariance.cast<Labels>();
    if (labels.ndim() != 1) throw py::value_error("covariance must be True or a one-dimensional list of labels");
    options.covariance_labels.assign(labels.data(), labels.data() + labels.size());
  }
  const auto kind = gpede::backend_from_name(backend);
  if (!kind) throw py::value_error("backend must be 'cpu', 'cuda' or 'auto', not '" + backend + "'");
  if (threads < 0) throw py::value_error("threads must not be negative");
  options.backend = *kind;
  options.threads = threads;
  options.deterministic = deterministic;
  options.record_printout.clear();
  std::atomic<bool> stop{false};
  options.stop = &stop;
  // The callbacks run on the solver's thread with the interpreter held. A true answer asks the run
  // to stop; an exception stops it too and is raised again once the solver is out.
  std::unique_ptr<py::error_already_set> raised;
  const auto ask = [&](const auto& callback, auto&& argument) {
    py::gil_scoped_acquire hold;
    if (raised) return true;
    try {
      const py::object answer = callback(argument);
      return !answer.is_none() && static_cast<bool>(py::bool_(answer));
    } catch (py::error_already_set& e) {
      raised = std::make_unique<py::error_already_set>(std::move(e));
      return true;
    }
  };
  if (log) {
    options.log = [&](const std::string& line) {
      if (!stop && ask(log, line)) stop = true;
    };
  }
  if (progress) {
    options.progress = [&](const gpede::Progress& p) {
      py::gil_scoped_acquire hold;
      py::dict d;
      d["phase"] = gpede::phase_name(p.phase);
      d["iteration"] = p.iteration;
      d["records_done"] = p.records_done;
      d["records_total"] = p.records_total;
      d["seconds"] = p.seconds;
      d["records_per_second"] = p.records_per_second;
      d["seconds_left"] = p.seconds_left;
      d["finished"] = p.finished;
      return ask(progress, d);
    };
  }
  std::unique_ptr<gpede::RecordSource> source;
  if (records != nullptr) source = records->builder.source();
  Result out;
  try {
    py::gil_scoped_release release;
    out.result = gpede::solve(steering, options, source.get());
  } catch (const gpede::Interrupted&) {
    if (raised) throw *raised;
    throw;
  }
  if (raised) throw *raised;
  return out;
}

}  // namespace

PYBIND11_MODULE(_gpede, m) {
  m.doc() = "gpede's solver (the C++ library libgpede) for Python; use the package gpede.";
  m.def("version", [] { return std::string(gpede::version()); }, "gpede's version, 'MAJOR.MINOR.PATCH'.");

  // The exception types live in the module (which keeps them alive); the translator borrows them.
  static PyObject* error_type = py::exception<gpede::Error>(m, "Error", PyExc_RuntimeError).ptr();
  static PyObject* input_error_type = py::exception<gpede::InputError>(m, "InputError", error_type).ptr();
  static PyObject* interrupted_type = py::exception<gpede::Interrupted>(m, "Interrupted", error_type).ptr();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const gpede::InputError& e) {
      py::object instance = py::handle(input_error_type)(e.what());
      instance.attr("exit_code") = e.exit_code();  // pede's exit code class of the fault
      PyErr_SetObject(input_error_type, instance.ptr());
    } catch (const gpede::Interrupted& e) {
      PyErr_SetString(interrupted_type, e.what());
    } catch (const gpede::Error& e) {
      PyErr_SetString(error_type, e.what());
    }
  });

  py::class_<gpede::Steering>(m, "Steering", "A pede steering file, read with the text files it names.")
      .def(py::init([](const std::filesystem::path& path) { return gpede::parse_steering(path); }), py::arg("path"))
      .def_property_readonly("path", [](const gpede::Steering& s) { return s.steering_file; })
      .def_property_readonly("method", [](const gpede::Steering& s) { return s.method_name; })
      .def_property_readonly("iterations", [](const gpede::Steering& s) { return s.iterations; })
      .def_property_readonly("binary_files",
                             [](const gpede::Steering& s) {
                               std::vector<std::filesystem::path> out;
                               for (const auto& f : s.binary_files) out.push_back(f.path);
                               return out;
                             })
      .def_property_readonly("warnings", [](const gpede::Steering& s) { return s.warnings; })
      .def("text", [](const gpede::Steering& s) { return gpede::steering_text(s); },
           "The steering as a pede steering file (its text files' blocks written in it).")
      .def("write", [](const gpede::Steering& s, const std::filesystem::path& path) { gpede::write_steering(path, s); },
           py::arg("path"), "Writes the steering as a pede steering file, whole or not at all.");

  py::class_<Records>(m, "Records", "Records in memory, built with Mille's calls or read from a Mille file.")
      .def(py::init<>())
      .def("add_measurement", &Records::add_measurement, py::arg("local"), py::arg("global_derivatives"),
           py::arg("labels"), py::arg("measurement"), py::arg("sigma"),
           "Mille::mille: one measurement of the current record (zero derivatives are left out).")
      .def("end_record", [](Records& r) { r.builder.end_record(); }, "Mille::end: ends the current record.")
      .def("kill_record", [](Records& r) { r.builder.kill_record(); }, "Mille::kill: discards the current record.")
      .def("add_record", &Records::add_record, py::arg("measurements"), py::arg("sigmas"), py::arg("local"),
           py::arg("global_derivatives"), py::arg("labels"), "One whole record from arrays.")
      .def("record", &Records::record, py::arg("index"), "Record `index` as a dict of arrays.")
      .def("__len__", [](const Records& r) { return r.builder.records(); })
      .def_property_readonly("measurements", [](const Records& r) { return r.builder.batch().n_measurements(); });

  m.def("read_mille", &read_mille, py::arg("path"), py::arg("fortran") = false,
        "Reads every record of a Mille binary file (C or, with fortran=True, Fortran; gzip or plain).");
  m.def("write_mille", &write_mille, py::arg("path"), py::arg("records"), py::arg("precision") = "single",
        "Writes records as a Mille C binary file (whole or not at all).");

  py::class_<Result>(m, "Result", "What a run produced, in millepede.res terms.")
      .def_property_readonly("exit_code", [](const Result& r) { return r.result.exit_code; })
      .def_property_readonly("message", [](const Result& r) { return r.result.message; })
      .def_property_readonly("chi2_ndf", [](const Result& r) { return r.result.chi2_ndf; })
      .def_property_readonly("records_read", [](const Result& r) { return r.result.records_read; })
      .def_property_readonly("records_used", [](const Result& r) { return r.result.records_used; })
      .def_property_readonly("records_rejected", [](const Result& r) { return r.result.records_rejected; })
      .def_property_readonly("method", [](const Result& r) { return std::string(gpede::method_name(r.result.method)); })
      .def_property_readonly("backend", [](const Result& r) { return r.result.backend; })
      .def_property_readonly("log", [](const Result& r) { return r.result.log; })
      .def_property_readonly("warnings", [](const Result& r) { return r.result.warnings; })
      .def_property_readonly("labels", [](const Result& r) { return r.column<std::int32_t>([](const auto& p) { return p.label; }); })
      .def_property_readonly("values", [](const Result& r) { return r.column<double>([](const auto& p) { return p.value; }); })
      .def_property_readonly("errors", [](const Result& r) { return r.column<double>([](const auto& p) { return p.error; }); })
      .def_property_readonly("presigmas", [](const Result& r) { return r.column<double>([](const auto& p) { return p.presigma; }); })
      .def_property_readonly("differences", [](const Result& r) { return r.column<double>([](const auto& p) { return p.difference; }); })
      .def_property_readonly("global_correlations",
                             [](const Result& r) { return r.column<double>([](const auto& p) { return p.global_correlation; }); })
      .def_property_readonly("variable", [](const Result& r) { return r.column<bool>([](const auto& p) { return p.variable; }); })
      .def_property_readonly("fixed_by", [](const Result& r) { return r.column<std::int32_t>([](const auto& p) { return p.fixed_by; }); })
      .def_property_readonly("entries", [](const Result& r) { return r.column<std::int64_t>([](const auto& p) { return p.entries_files; }); })
      .def_property_readonly("eigenvalues", [](const Result& r) { return py::array_t<double>(static_cast<py::ssize_t>(r.result.eigen.eigenvalues.size()), r.result.eigen.eigenvalues.data()); })
      .def_property_readonly("covariance",
                             [](const Result& r) {
                               const gpede::CovarianceBlock& b = r.result.covariance;
                               const auto k = static_cast<py::ssize_t>(b.labels.size());
                               py::array_t<double> matrix({k, k});
                               std::copy(b.matrix.begin(), b.matrix.end(), matrix.mutable_data());
                               return py::make_tuple(py::array_t<std::int32_t>(k, b.labels.data()), matrix);
                             },
                             "(labels, matrix): the covariance block asked for with solve(covariance=...).")
      .def_property_readonly("correlations",
                             [](const Result& r) {
                               const gpede::CovarianceBlock& b = r.result.covariance;
                               const auto k = static_cast<py::ssize_t>(b.labels.size());
                               py::array_t<double> matrix({k, k});
                               for (py::ssize_t i = 0; i < k; ++i) {
                                 for (py::ssize_t j = 0; j < k; ++j) matrix.mutable_data()[i * k + j] = b.correlation(i, j);
                               }
                               return matrix;
                             },
                             "The correlation matrix of the covariance block.")
      .def_property_readonly("eigenvectors",
                             [](const Result& r) {
                               const auto& vectors = r.result.eigen.eigenvectors;
                               const auto count = static_cast<py::ssize_t>(vectors.size());
                               const auto n = static_cast<py::ssize_t>(r.result.variable_labels.size());
                               py::array_t<std::int64_t> which(count);
                               py::array_t<double> matrix({count, n});
                               for (py::ssize_t k = 0; k < count; ++k) {
                                 which.mutable_data()[k] = vectors[k].first;
                                 std::copy_n(vectors[k].second.begin(), std::min<py::ssize_t>(n, vectors[k].second.size()),
                                             matrix.mutable_data() + k * n);
                               }
                               return py::make_tuple(which, matrix);
                             },
                             "(indices into eigenvalues, vectors): diagonalization's listed eigenvectors, one "
                             "row each over variable_labels.")
      .def_property_readonly("variable_labels", [](const Result& r) {
        return py::array_t<std::int32_t>(static_cast<py::ssize_t>(r.result.variable_labels.size()),
                                         r.result.variable_labels.data());
      })
      .def("index", &Result::index, py::arg("label"), "The position of `label` in the arrays (KeyError if absent).")
      .def("parameter", &Result::parameter, py::arg("label"), "One label's result as a dict.")
      .def("write", [](Result& r, const gpede::Steering& steering, const std::filesystem::path& folder) {
             std::filesystem::create_directories(folder);
             gpede::write_results(folder, r.result, steering);
           }, py::arg("steering"), py::arg("folder"),
           "Writes pede's result files (millepede.res, .log, .end, gpede.json) into folder, whole or not at all.");

  // Shown as gpede.X, the package's names, rather than gpede._gpede.X.
  for (const char* name : {"Error", "InputError", "Interrupted", "Steering", "Records", "Result"}) {
    m.attr(name).attr("__module__") = "gpede";
  }

  m.def("solve", &solve, py::arg("steering"), py::arg("records") = nullptr, py::arg("backend") = "cpu",
        py::arg("threads") = 0, py::arg("deterministic") = false, py::arg("log") = nullptr,
        py::arg("covariance") = py::none(), py::arg("progress") = nullptr,
        "Solves; records from `records` if given, else from the steering's binary files. covariance: "
        "True for the whole covariance of the fitted parameters, or a list of labels for their block. "
        "progress: called with a dict (phase, iteration, records_done, records_total, seconds, "
        "records_per_second, seconds_left, finished) about once a second and at each phase's end; "
        "a true return stops the run (Interrupted).");
}
