// The backend-independent solver loop, as pede runs it: read the data once (label map, entries
// per label, checks), set up parameters, constraints and external measurements, then iterate:
// a pass over the data (local fits, Schur complements into the global matrix in the first pass,
// F and b in every pass), factorisation by the method, Newton step, chi2 cut schedule, until the
// expected decrease dF is below dflim or the iterations are used up.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <sstream>
#include <thread>
#include <unordered_map>

#include <Eigen/Dense>

#include "gpede/detail/backend.hpp"
#include "gpede/detail/cuda_device.hpp"
#include "gpede/error.hpp"
#include "gpede/solver.hpp"

namespace gpede {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<std::int64_t>(usage.ru_maxrss) * 1024;
}

/// Label -> index into the sorted list of all labels. Dense lookup table for labels up to
/// kDenseLimit (the common case: fast), hash map above.
class LabelMap {
 public:
  static constexpr std::int64_t kDenseLimit = 1 << 26;

  void build(std::vector<std::int32_t> labels) {
    std::sort(labels.begin(), labels.end());
    labels.erase(std::unique(labels.begin(), labels.end()), labels.end());
    m_labels = std::move(labels);
    m_dense.clear();
    m_hash.clear();
    const std::int64_t max_label = m_labels.empty() ? 0 : m_labels.back();
    m_use_dense = max_label < kDenseLimit;
    if (m_use_dense) {
      m_dense.assign(static_cast<std::size_t>(max_label) + 1, -1);
      for (std::size_t i = 0; i < m_labels.size(); ++i) m_dense[m_labels[i]] = static_cast<std::int32_t>(i);
    } else {
      m_hash.reserve(m_labels.size() * 2);
      for (std::size_t i = 0; i < m_labels.size(); ++i) m_hash[m_labels[i]] = static_cast<std::int32_t>(i);
    }
  }

  std::int32_t index(std::int32_t label) const {
    if (m_use_dense) {
      return (label >= 0 && static_cast<std::size_t>(label) < m_dense.size()) ? m_dense[label] : -1;
    }
    auto it = m_hash.find(label);
    return it == m_hash.end() ? -1 : it->second;
  }

  void map_batch(RecordBatch& batch) const {
    batch.global_index.resize(batch.global_label.size());
    for (std::size_t k = 0; k < batch.global_label.size(); ++k) {
      batch.global_index[k] = index(batch.global_label[k]);
    }
  }

  const std::vector<std::int32_t>& labels() const { return m_labels; }
  std::int64_t size() const { return static_cast<std::int64_t>(m_labels.size()); }

 private:
  std::vector<std::int32_t> m_labels;
  std::vector<std::int32_t> m_dense;
  std::unordered_map<std::int32_t, std::int32_t> m_hash;
  bool m_use_dense = true;
};

/// Counts global-derivative entries per label while the data is read the first time.
class EntryCounter {
 public:
  void add(const RecordBatch& batch) {
    for (std::int32_t label : batch.global_label) {
      if (label < LabelMap::kDenseLimit) {
        if (static_cast<std::size_t>(label) >= m_dense.size()) {
          m_dense.resize(std::max<std::size_t>(static_cast<std::size_t>(label) + 1, m_dense.size() * 2), 0);
        }
        ++m_dense[label];
      } else {
        ++m_hash[label];
      }
    }
  }
  std::vector<std::int32_t> labels() const {
    std::vector<std::int32_t> out;
    for (std::size_t l = 0; l < m_dense.size(); ++l) {
      if (m_dense[l] > 0) out.push_back(static_cast<std::int32_t>(l));
    }
    for (const auto& [label, count] : m_hash) out.push_back(label);
    return out;
  }
  std::int64_t count(std::int32_t label) const {
    if (label < LabelMap::kDenseLimit) {
      return static_cast<std::size_t>(label) < m_dense.size() ? m_dense[label] : 0;
    }
    auto it = m_hash.find(label);
    return it == m_hash.end() ? 0 : it->second;
  }

 private:
  std::vector<std::int64_t> m_dense;
  std::unordered_map<std::int32_t, std::int64_t> m_hash;
};

std::string where(const SourceLocation& loc) {
  return loc.file.string() + ":" + std::to_string(loc.line);
}

/// The records of the run: kept in memory after the first read, or re-read per pass.
class DataSet {
 public:
  DataSet(RecordSource& source, bool cache, std::size_t batch_records)
      : m_source(source), m_cache(cache), m_batch_records(batch_records) {}

  /// First read: every record, with a callback per batch (labels not yet mapped).
  template <class F>
  void first_read(F&& per_batch) {
    m_source.rewind();
    while (true) {
      RecordBatch batch;
      if (m_source.next(batch, m_batch_records) == 0) break;
      per_batch(batch);
      if (m_cache) m_batches.push_back(std::move(batch));
    }
  }

  void map_cached(const LabelMap& map) {
    for (auto& b : m_batches) map.map_batch(b);
  }

  /// A pass: every batch, labels mapped, handed to `per_batch`.
  template <class F>
  void pass(const LabelMap& map, F&& per_batch) {
    if (m_cache) {
      for (auto& b : m_batches) per_batch(b);
      return;
    }
    m_source.rewind();
    RecordBatch batch;
    while (true) {
      batch.clear();
      if (m_source.next(batch, m_batch_records) == 0) break;
      map.map_batch(batch);
      per_batch(batch);
    }
  }

 private:
  RecordSource& m_source;
  bool m_cache;
  std::size_t m_batch_records;
  std::vector<RecordBatch> m_batches;
};

/// pede's chi2 cut factor schedule: c1 in the first pass, c2 in the second, then the square
/// root of the previous factor; below 1.5 it is 1; 1 at once when nothing was rejected.
class CutSchedule {
 public:
  CutSchedule(double c1, double c2) : m_factor(c1), m_next(c2) {}
  double factor() const { return m_factor; }
  void advance(std::int64_t rejected_by_cut) {
    if (m_factor <= 0.0) return;
    if (rejected_by_cut == 0) {
      m_factor = 1.0;
      return;
    }
    if (m_next > 0.0) {
      m_factor = m_next;
      m_next = 0.0;
    } else {
      m_factor = std::sqrt(m_factor);
    }
    if (m_factor < 1.5) m_factor = 1.0;
  }
  bool final() const { return m_factor <= 1.0; }

 private:
  double m_factor;
  double m_next;
};

}  // namespace

bool cuda_available_in_build() noexcept {
#ifdef GPEDE_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::optional<BackendKind> backend_from_name(const std::string& name) {
  if (name == "cpu") return BackendKind::cpu;
  if (name == "cuda") return BackendKind::cuda;
  if (name == "auto") return BackendKind::automatic;
  return std::nullopt;
}

SolveResult solve(const Steering& steering, const SolverOptions& options, RecordSource* source) {
  const auto t_start = Clock::now();
  SolveResult result;
  result.method = steering.method;
  result.constraint_mode = steering.constraint_mode;
  auto log = [&](const std::string& line) {
    if (options.log) options.log(line);
  };
  if (steering.printrecord1 != 0 || steering.printrecord2 != 0) {
    result.warnings.push_back("printrecord: the record printout (mpdebug.txt) is not implemented; ignored");
  }
  if (steering.entries_accepted != 10) {
    result.warnings.push_back("entries: the second number (minimum entries from accepted local fits, " +
                              std::to_string(steering.entries_accepted) + ") is not implemented; ignored");
  }
  for (const auto& w : steering.warnings) log("warning: " + w);
  for (const auto& w : result.warnings) log("warning: " + w);

  // ---- loop 1: read the data once -------------------------------------------------------------
  std::unique_ptr<RecordSource> owned_source;
  if (source == nullptr) {
    owned_source = make_file_source(steering);
    source = owned_source.get();
  }
  const auto t_read = Clock::now();
  DataSet data(*source, options.cache_records, std::max<std::size_t>(1, options.batch_records));
  EntryCounter counter;
  std::int64_t n_records = 0;
  std::int64_t n_measurements = 0;
  std::size_t max_batch_bytes = 0;
  data.first_read([&](const RecordBatch& batch) {
    max_batch_bytes = std::max(max_batch_bytes, batch.bytes());
    counter.add(batch);
    n_records += static_cast<std::int64_t>(batch.n_records());
    n_measurements += static_cast<std::int64_t>(batch.n_measurements());
  });
  result.records_read = n_records;
  if (n_records == 0) {
    throw InputError("no records: the binary files named in " + steering.steering_file.string() +
                         " hold no Mille record (empty data set); nothing to align",
                     exit_code::no_data);
  }

  // All labels: from the binary files and from the text files.
  std::vector<std::int32_t> all_labels = counter.labels();
  for (const auto& p : steering.parameters) all_labels.push_back(p.label);
  for (const auto& m : steering.measurements) {
    for (const auto& t : m.terms) all_labels.push_back(t.first);
  }
  // A constraint on a label that appears nowhere else is a mistake in the constraint file.
  {
    LabelMap known;
    known.build(all_labels);
    for (const auto& c : steering.constraints) {
      for (const auto& [label, factor] : c.terms) {
        if (known.index(label) < 0) {
          throw InputError("constraint at " + where(c.where) + " uses label " + std::to_string(label) +
                               ", which appears in no binary file and no Parameter or Measurement line",
                           exit_code::steering_error);
        }
      }
    }
  }
  LabelMap labels;
  labels.build(std::move(all_labels));
  data.map_cached(labels);
  const std::int64_t n_all = labels.size();
  result.figures.reading_s = seconds_since(t_read);
  log("read " + std::to_string(n_records) + " records, " + std::to_string(n_measurements) +
      " measurements, " + std::to_string(n_all) + " labels in " +
      std::to_string(result.figures.reading_s) + " s");

  // ---- parameters ------------------------------------------------------------------------------
  std::vector<double> start_value(n_all, 0.0);
  std::vector<double> presigma(n_all, 0.0);
  std::vector<char> has_presigma(n_all, 0);
  for (const auto& p : steering.parameters) {
    const std::int32_t i = labels.index(p.label);
    start_value[i] = p.value;
    presigma[i] = p.presigma;
    has_presigma[i] = 1;
  }
  std::vector<std::int32_t> variable_index(n_all, -1);
  std::vector<std::int32_t> variable_label;
  for (std::int64_t i = 0; i < n_all; ++i) {
    const std::int32_t label = labels.labels()[i];
    const bool fixed_by_user = presigma[i] < 0.0;
    const bool enough_entries = counter.count(label) >= steering.entries_files;
    if (!fixed_by_user && enough_entries) {
      variable_index[i] = static_cast<std::int32_t>(variable_label.size());
      variable_label.push_back(label);
    }
  }
  const std::int64_t n_var = static_cast<std::int64_t>(variable_label.size());
  if (n_var == 0) {
    throw InputError("no variable parameter: every label is fixed (pre-sigma < 0) or has fewer than " +
                         std::to_string(steering.entries_files) + " entries (`entries` cut) in " +
                         steering.steering_file.string(),
                     exit_code::no_data);
  }
  log(std::to_string(n_all) + " labels, " + std::to_string(n_var) + " variable parameters");

  // ---- constraints -----------------------------------------------------------------------------
  detail::ConstraintSystem constraints;
  constraints.n = n_var;
  for (const auto& c : steering.constraints) {
    std::vector<double> row(n_var, 0.0);
    double value = c.value;
    bool any_variable = false;
    for (const auto& [label, factor] : c.terms) {
      const std::int32_t i = labels.index(label);
      const std::int32_t v = variable_index[i];
      if (v >= 0) {
        row[v] += factor;
        any_variable = any_variable || factor != 0.0;
      } else {
        value -= factor * start_value[i];
      }
    }
    if (!any_variable) {
      if (steering.skip_empty_constraints) continue;
      throw InputError("constraint at " + where(c.where) +
                           " has no variable parameter (all its labels are fixed); remove it or add "
                           "`skipemptycons` to the steering file",
                       exit_code::steering_error);
    }
    constraints.a.insert(constraints.a.end(), row.begin(), row.end());
    constraints.value.push_back(value);
    ++constraints.m;
  }
  result.n_constraints = constraints.m;
  const std::int64_t m = constraints.m;

  // ---- backend: chosen now that the size of the system is known ---------------------------------
  int threads = options.threads > 0 ? options.threads : steering.threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::unique_ptr<detail::Backend> backend;
  if (options.backend == BackendKind::cpu) {
    backend = detail::make_cpu_backend(threads);
  } else {
    const detail::CudaDeviceInfo device = detail::query_cuda_device();
    std::string reason;
    if (!device.present) {
      reason = device.reason;
    } else {
      const detail::MemoryPlan plan = detail::plan_cuda_memory(n_var, constraints.m, steering.method,
                                                               steering.constraint_mode, max_batch_bytes, device);
      if (plan.fits) {
        backend = detail::make_cuda_backend();
        log("backend: cuda on " + device.name + " (" + plan.message + ")");
      } else {
        reason = plan.message;
      }
    }
    if (!backend) {
      if (options.backend == BackendKind::cuda) throw RuntimeError("--backend cuda: " + reason);
      backend = detail::make_cpu_backend(threads);
      log("backend: cpu (automatic choice: " + reason + ")");
    }
  }
  result.backend = backend->name();

  // Current values of the variable parameters; made feasible: p += A^T (A A^T)^-1 (c - A p).
  std::vector<double> value = start_value;
  if (m > 0) {
    Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> a(
        constraints.a.data(), m, n_var);
    Eigen::VectorXd p(n_var);
    for (std::int64_t i = 0; i < n_all; ++i) {
      if (variable_index[i] >= 0) p[variable_index[i]] = value[i];
    }
    Eigen::VectorXd c = Eigen::Map<const Eigen::VectorXd>(constraints.value.data(), m);
    Eigen::VectorXd r = c - a * p;
    if (r.norm() > 0.0) {
      Eigen::MatrixXd aat = a * a.transpose();
      Eigen::VectorXd y = aat.ldlt().solve(r);
      p += a.transpose() * y;
      for (std::int64_t i = 0; i < n_all; ++i) {
        if (variable_index[i] >= 0) value[i] = p[variable_index[i]];
      }
      log("start values made feasible (constraint residual norm " + std::to_string(r.norm()) + ")");
    }
  }

  // ---- priors and external measurements (host side, small) ------------------------------------
  struct Prior {
    std::int64_t var;
    std::int64_t all;
    double weight;
  };
  std::vector<Prior> priors;
  for (std::int64_t i = 0; i < n_all; ++i) {
    if (variable_index[i] < 0) continue;
    double s = presigma[i];
    if (!(s > 0.0) && steering.presigma > 0.0) s = steering.presigma;
    if (s > 0.0) {
      double w = 1.0 / (s * s);
      if (steering.regularisation) w *= steering.regularisation_factor;
      priors.push_back({variable_index[i], i, w});
    }
  }
  struct ExternalMeasurement {
    double value;
    double weight;
    std::vector<std::pair<std::int64_t, double>> terms;  // (all-label index, factor)
  };
  std::vector<ExternalMeasurement> measurements;
  for (const auto& ms : steering.measurements) {
    if (!(ms.sigma > 0.0)) {
      throw InputError("measurement at " + where(ms.where) + " has sigma <= 0", exit_code::steering_error);
    }
    ExternalMeasurement em{ms.value, 1.0 / (ms.sigma * ms.sigma), {}};
    for (const auto& [label, factor] : ms.terms) em.terms.emplace_back(labels.index(label), factor);
    measurements.push_back(std::move(em));
  }
  // Adds priors' and measurements' F and b at the current values; returns F.
  auto add_host_terms = [&](std::vector<double>& b) {
    double f = 0.0;
    for (const auto& pr : priors) {
      const double d = value[pr.all] - start_value[pr.all];
      f += pr.weight * d * d;
      b[pr.var] -= pr.weight * d;
    }
    for (const auto& em : measurements) {
      double r = em.value;
      for (const auto& [i, factor] : em.terms) r -= factor * value[i];
      f += em.weight * r * r;
      for (const auto& [i, factor] : em.terms) {
        if (variable_index[i] >= 0) b[variable_index[i]] += em.weight * factor * r;
      }
    }
    return f;
  };

  // ---- iterations ------------------------------------------------------------------------------
  detail::PassSetup setup;
  setup.n_all = n_all;
  setup.n_variable = n_var;
  setup.variable_index = variable_index;
  setup.fit.hugecut = std::max(1.0, steering.hugecut);
  setup.fit.dwfractioncut = steering.dwfractioncut;
  setup.fit.scale_global = steering.scale_errors_global;
  setup.fit.scale_local = steering.scale_errors_local;
  // pede stores -1 for a first cut factor below 1: no chi2 cut at all (hugecut still applies).
  const double c1 = steering.chisqcut1 < 0.0 ? 0.0 : steering.chisqcut1;
  const double c2 = steering.chisqcut2 < 0.0 ? 0.0 : steering.chisqcut2;
  CutSchedule cuts(c1, c2);

  auto run_pass = [&](bool build_matrix, int pass_number) {
    setup.build_matrix = build_matrix;
    setup.parameter_value = value;
    setup.fit.chi2_cut_factor = cuts.factor();
    // Down-weighting starts with the second pass over the data.
    setup.fit.downweight_iterations = pass_number >= 1 ? steering.outlier_downweighting : 0;
    const auto t0 = Clock::now();
    backend->begin_pass(setup);
    data.pass(labels, [&](const RecordBatch& batch) { backend->accumulate(batch); });
    detail::PassTotals totals = backend->end_pass();
    (build_matrix ? result.figures.matrix_s : result.figures.local_fits_s) += seconds_since(t0);
    return totals;
  };

  const int max_iterations = steering.subito ? 1 : std::max(1, steering.iterations);
  detail::PassTotals totals = run_pass(true, 0);
  double f_value = totals.function_value + add_host_terms(totals.rhs);
  if (totals.accepted == 0) {
    throw InputError("all " + std::to_string(totals.records) +
                         " records were rejected in the first local fits (rank-deficient local fits, "
                         "ndf <= 0 or chi2 above hugecut); check the data",
                     exit_code::too_many_rejects);
  }

  // Priors and measurements into the matrix.
  {
    std::vector<std::int64_t> rows, cols;
    std::vector<double> vals;
    for (const auto& pr : priors) {
      rows.push_back(pr.var);
      cols.push_back(pr.var);
      vals.push_back(pr.weight);
    }
    for (const auto& em : measurements) {
      for (const auto& [i, fi] : em.terms) {
        for (const auto& [j, fj] : em.terms) {
          const std::int64_t vi = variable_index[i], vj = variable_index[j];
          if (vi < 0 || vj < 0 || vi < vj) continue;
          rows.push_back(vi);
          cols.push_back(vj);
          vals.push_back(em.weight * fi * fj);
        }
      }
    }
    if (!vals.empty()) backend->add_to_matrix(rows, cols, vals);
  }
  const std::vector<double> matrix_diagonal =
      steering.globalcorr ? backend->matrix_diagonal() : std::vector<double>{};

  detail::FactorOptions factor_options;
  factor_options.method = steering.method;
  factor_options.mode = steering.constraint_mode;
  factor_options.want_covariance =
      steering.method == Method::inversion || steering.method == Method::diagonalization;
  factor_options.eve_count = steering.method == Method::diagonalization ? 16 : 0;
  auto t_solve = Clock::now();
  detail::FactorReport report = backend->factorize(constraints, factor_options);
  result.figures.solving_s += seconds_since(t_solve);
  // "; labels involved: 11 12 ... (N in all)" for the parameters of the weak modes.
  auto weak_labels_text = [&]() {
    std::ostringstream text;
    if (!report.weak_indices.empty()) {
      text << "; labels involved:";
      const std::size_t shown = std::min<std::size_t>(report.weak_indices.size(), 20);
      for (std::size_t k = 0; k < shown; ++k) text << ' ' << variable_label[report.weak_indices[k]];
      if (shown < report.weak_indices.size()) text << " ... (" << report.weak_indices.size() << " in all)";
    }
    return text.str();
  };
  // Diagonalization goes on without the directions of the non-positive eigenvalues, as pede does:
  // the weak modes are reported (with the smallest eigenvalues) and the rest is solved.
  const bool weak_modes_left_out =
      !report.ok && steering.method == Method::diagonalization && !report.eigenvalues.empty();
  if (weak_modes_left_out) {
    std::ostringstream msg;
    msg << "Ended with severe warnings (bad global matrix): " << report.message;
    msg << weak_labels_text();
    result.exit_code = 3;
    result.message = msg.str();
    std::ostringstream smallest;
    smallest.precision(6);
    smallest << "diagonalization: smallest eigenvalues (ascending):";
    for (std::size_t k = 0; k < std::min<std::size_t>(12, report.eigenvalues.size()); ++k) {
      smallest << ' ' << report.eigenvalues[k];
    }
    smallest << "; largest: " << report.eigenvalues.back();
    result.warnings.push_back(result.message);
    result.warnings.push_back(smallest.str());
    log("warning: " + result.message);
    log("warning: " + smallest.str());
  } else if (!report.ok) {
    std::ostringstream msg;
    msg << report.message;
    msg << weak_labels_text();
    msg << ". Add constraints or pre-sigmas for the weak modes";
    result.exit_code = exit_code::factorisation_failed;
    result.message = msg.str();
    log("error: " + result.message);
  }

  auto record_iteration = [&](int it, int fc, double f, double dfe, double cutf, std::int64_t rej,
                              Clock::time_point t0) {
    IterationRecord rec;
    rec.iteration = it;
    rec.function_calls = fc;
    rec.function_value = f;
    rec.expected_decrease = dfe;
    rec.cut_factor = cutf;
    rec.rejects = rej;
    rec.seconds = seconds_since(t0);
    result.iterations.push_back(rec);
    std::ostringstream line;
    line << "it " << it << "  F = " << f << "  expected dF = " << dfe << "  cut factor = " << cutf
         << "  rejects = " << rej;
    log(line.str());
  };

  auto t_it = Clock::now();
  record_iteration(0, 1, f_value, 0.0, cuts.factor(), totals.rejected(), t_it);
  const bool solved = report.ok || weak_modes_left_out;
  if (solved) {
    int fc = 1;
    for (int it = 1;; ++it) {
      t_solve = Clock::now();
      const std::vector<double> dp = backend->solve(totals.rhs);
      result.figures.solving_s += seconds_since(t_solve);
      const double expected = std::inner_product(dp.begin(), dp.end(), totals.rhs.begin(), 0.0);
      const bool converged = it > 1 && expected < steering.dflim && cuts.final();
      // pede goes on past the iteration count while the chi2 cut factor is above 1.
      if (converged || (it > max_iterations && cuts.final()) || it > max_iterations + 20) break;
      for (std::int64_t i = 0; i < n_all; ++i) {
        if (variable_index[i] >= 0) value[i] += dp[variable_index[i]];
      }
      if (steering.subito) break;
      cuts.advance(totals.rejected_cut);
      t_it = Clock::now();
      totals = run_pass(false, it);
      ++fc;
      f_value = totals.function_value + add_host_terms(totals.rhs);
      record_iteration(it, fc, f_value, expected, cuts.factor(), totals.rejected(), t_it);
      if (it >= max_iterations && cuts.final()) break;
    }
  }

  // ---- results ---------------------------------------------------------------------------------
  std::vector<double> cov_diag;
  if (solved && factor_options.want_covariance) {
    t_solve = Clock::now();
    cov_diag = backend->covariance_diagonal();
    result.figures.solving_s += seconds_since(t_solve);
    result.has_errors = !cov_diag.empty();
  }
  result.chi2_sum = totals.chi2_sum;
  result.ndf_sum = totals.ndf_sum;
  result.nfgb = steering.constraint_mode == ConstraintMode::elimination ? n_var - m : n_var + m;
  const double ndf = static_cast<double>(result.ndf_sum - result.nfgb);
  result.chi2_ndf = ndf > 0.0 ? result.chi2_sum / ndf : 0.0;
  result.records_used = totals.accepted;
  result.records_rejected = totals.rejected();
  result.variable_labels = variable_label;
  result.parameters.reserve(n_all);
  for (std::int64_t i = 0; i < n_all; ++i) {
    ParameterResult pr;
    pr.label = labels.labels()[i];
    pr.value = value[i];
    pr.presigma = has_presigma[i] ? presigma[i] : 0.0;
    const std::int32_t v = variable_index[i];
    pr.variable = v >= 0;
    pr.difference = value[i] - start_value[i];
    pr.entries_files = counter.count(pr.label);
    pr.entries_accepted = i < static_cast<std::int64_t>(totals.entries_accepted.size()) ? totals.entries_accepted[i] : 0;
    if (v >= 0 && result.has_errors) {
      const double c = cov_diag[v];
      pr.error = c >= 0.0 ? std::sqrt(c) : -std::sqrt(-c);
      if (steering.globalcorr && !matrix_diagonal.empty()) {
        const double prod = c * matrix_diagonal[v];
        pr.global_correlation = prod > 0.0 && 1.0 / prod <= 1.0 ? std::sqrt(1.0 - 1.0 / prod) : -1.0;
      }
    }
    result.parameters.push_back(pr);
  }
  if (steering.method == Method::diagonalization && solved) {
    result.eigen.eigenvalues = report.eigenvalues;
    result.eigen.eigenvectors = report.eigenvectors;
  }
  if (result.exit_code == 0) {
    if (result.records_rejected > 0) {
      result.exit_code = exit_code::rejected_records;
      result.message = "Ended with warnings (" + std::to_string(result.records_rejected) + " rejected records)";
    } else {
      result.message = "Ended normally";
    }
  }
  result.figures.total_s = seconds_since(t_start);
  result.figures.peak_rss_bytes = peak_rss_bytes();
  std::ostringstream summary;
  summary.precision(17);
  summary << "Sum(Chi^2)/Sum(Ndf) = " << result.chi2_sum << " / (" << result.ndf_sum << " - " << result.nfgb
          << ") = " << result.chi2_ndf;
  log(summary.str());
  return result;
}

}  // namespace gpede
