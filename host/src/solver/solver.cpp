// The public solver: solve() runs the phases of a solution in order, as pede does:
// read the records and map the labels; set up the parameters (start values, pre-sigmas, entries
// cuts), the constraints and the external measurements; choose the backend; iterate (passes over
// the data, solutions, line searches, cuts); collect the results and pede's end code.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <thread>

#include "gpede/detail/backend.hpp"
#include "gpede/detail/byte_pack.hpp"
#include "gpede/detail/cuda_device.hpp"
#include "gpede/detail/host_memory.hpp"
#include "gpede/detail/worker_pool.hpp"
#include "gpede/error.hpp"
#include "gpede/solver.hpp"
#include "gpede/record_time.hpp"
#include "../backend/memory_plan_text.hpp"
#include "record_printout.hpp"
#include "solver_internal.hpp"
#include "time_dependence.hpp"
#include "interval_search.hpp"

namespace gpede {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }


/// The host CPU's model name, as /proc/cpuinfo gives it; empty where it does not.
std::string read_cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) break;
    const auto begin = line.find_first_not_of(" \t", colon + 1);
    return begin == std::string::npos ? std::string() : line.substr(begin);
  }
  return {};
}

/// The memory one process may plan with: what the system allows, shared by the processes of its
/// machine, at most SolverOptions::memory_limit_bytes; with processes, the smallest share of any
/// of them (so that all take the same decisions).
detail::HostMemory process_memory(const SolverOptions& options, ProcessGroup* processes) {
  detail::HostMemory memory = detail::query_host_memory();
  const std::size_t unlimited = std::numeric_limits<std::size_t>::max();
  const int here = processes != nullptr ? processes->processes_on_this_machine() : 1;
  if (here > 1 && memory.available_bytes != unlimited) {
    memory.available_bytes /= static_cast<std::size_t>(here);
    memory.limited_by += " shared by the " + std::to_string(here) + " processes of this machine";
  }
  if (options.memory_limit_bytes > 0 && options.memory_limit_bytes < memory.available_bytes) {
    memory.available_bytes = options.memory_limit_bytes;
    memory.limited_by = "the limit asked for (--memory)";
  }
  if (processes == nullptr || processes->size() < 2) return memory;
  detail::Packer mine;
  mine.put(static_cast<std::uint64_t>(memory.available_bytes));
  mine.put(memory.limited_by);
  const std::vector<std::vector<char>> all = processes->gather(mine.bytes());
  for (std::size_t k = 0; k < all.size(); ++k) {
    detail::Unpacker u(all[k]);
    const auto bytes = static_cast<std::size_t>(u.get<std::uint64_t>());
    std::string why = u.get_string();
    // the smallest; among equal ones the first process's, so that every process reads the same
    if (k == 0 || bytes < memory.available_bytes) {
      memory.available_bytes = bytes;
      memory.limited_by = k == 0 ? why : "process " + std::to_string(k) + "'s " + why;
    }
  }
  return memory;
}

}  // namespace

namespace detail {

std::unique_ptr<RecordSource> open_binary_files(const Steering& steering, ProcessGroup* processes) {
  if (steering.binary_files.empty()) {
    throw InputError("no binary files: " + steering.steering_file.string() +
                         " names no existing Mille file (a line that names one is the file's path, "
                         "relative to the working folder or to the steering file's folder)",
                     exit_code::no_binary_files);
  }
  return processes != nullptr ? make_file_source(steering, processes->rank(), processes->size())
                              : make_file_source(steering);
}

}  // namespace detail

namespace {

/// The backend for the size of the problem: CPU, or CUDA where asked and where the plan fits.
/// `memory` is this process's share; `processes` the run's process count (1: alone). `distribute`
/// is set where the matrix is to be solved over the processes: asked for, or needed because one
/// process cannot hold the solution while each can hold its share.
std::unique_ptr<detail::Backend> choose_backend(const Steering& steering, const SolverOptions& options,
                                                std::int64_t n_variable, std::int64_t n_constraints,
                                                std::size_t max_batch_bytes, const detail::HostMemory& memory,
                                                int processes, bool& distribute, const detail::RunLog& log,
                                                std::vector<std::string>& warnings) {
  distribute = options.distributed_solve && processes > 1;
  std::string note;
  const int threads = detail::capped_threads(options.threads > 0 ? options.threads : steering.threads, note);
  // LAPACK's own threads (OpenBLAS) within the same bound as the run's.
  detail::bound_blas_threads(threads);
  const bool packable = detail::packed_storage_method(steering.method);
  if (options.storage == MatrixStorage::packed && !packable) {
    throw InputError(std::string("--storage packed: method ") + method_name(steering.method) +
                         " needs full or sparse storage (packed storage has decomposition and inversion)",
                     exit_code::usage);
  }
  auto cpu_backend = [&] {
    // The dense matrices of the run, checked against what the process may allocate before the
    // first pass: a problem that cannot fit is refused now, with what would fit, and not by a
    // failed allocation after the first pass. Automatic storage packs the matrix of decomposition
    // and inversion where full storage does not fit.
    const bool sparse = steering.method == Method::minres && steering.sparse_storage;
    bool packed = options.storage == MatrixStorage::packed;
    const auto spread_plan = [&] {
      return detail::plan_distributed_memory(n_variable, n_constraints, steering.method, steering.constraint_mode,
                                             memory, processes);
    };
    detail::HostMemoryPlan plan = distribute ? spread_plan()
                                             : detail::plan_host_memory(n_variable, n_constraints, steering.method,
                                                                        steering.constraint_mode, memory, sparse,
                                                                        packed, steering.minres_bandwidth);
    if (!plan.fits && !distribute && processes > 1 && !sparse && options.storage != MatrixStorage::packed) {
      detail::HostMemoryPlan spread = spread_plan();
      if (spread.fits) {
        log.progress("memory: one process cannot hold the solution (at least " +
                     detail::gigabytes(static_cast<double>(plan.needed_bytes)) + ", " +
                     detail::gigabytes(static_cast<double>(memory.available_bytes)) +
                     " available to each); the matrix is solved over the " + std::to_string(processes) +
                     " processes (distributed solve)");
        plan = std::move(spread);
        distribute = true;
      } else {
        plan.message += "; solved over the " + std::to_string(processes) + " processes it would need at least " +
                        detail::gigabytes(static_cast<double>(spread.needed_bytes)) + " on each";
      }
    }
    if (!plan.fits && !distribute && options.storage == MatrixStorage::automatic && packable) {
      detail::HostMemoryPlan packed_plan = detail::plan_host_memory(n_variable, n_constraints, steering.method,
                                                                    steering.constraint_mode, memory, false, true);
      if (packed_plan.fits) {
        log.progress("memory: full storage does not fit (at least " +
                     detail::gigabytes(static_cast<double>(plan.needed_bytes)) + ", " +
                     detail::gigabytes(static_cast<double>(memory.available_bytes)) +
                     " available); the global matrix is packed");
        plan = std::move(packed_plan);
        packed = true;
      }
    }
    if (!plan.fits) throw RuntimeError("Aborted, not enough memory: " + plan.message);
    log.progress("memory: " + plan.message);
    if (!note.empty()) {
      warnings.push_back(note);
      log.progress("warning: " + note);
    }
    std::unique_ptr<detail::Backend> backend = detail::make_cpu_backend(threads);
    if (backend->host_threads() < threads) {
      const std::string refused = "the system started only " + std::to_string(backend->host_threads()) + " of " +
                                  std::to_string(threads) +
                                  " threads (process or memory limits); the run goes on with those";
      warnings.push_back(refused);
      log.progress("warning: " + refused);
    }
    if (packed) backend->use_packed_matrix(true);
    return backend;
  };
  if (options.backend == BackendKind::cpu) return cpu_backend();
  if (options.storage == MatrixStorage::packed) {
    log.progress("note: --storage packed applies to the cpu backend; the cuda backend keeps its matrix in full storage");
  }
  const detail::CudaDeviceInfo device = detail::query_cuda_device();
  std::string reason;
  if (!device.present) {
    reason = device.reason;
  } else {
    // cuSOLVER's own workspace sizes for this n and method, before anything is allocated.
    const detail::SolverWorkspace workspace =
        detail::query_cuda_workspace(n_variable, n_constraints, steering.method, steering.constraint_mode);
    if (!workspace.queried) log.progress("memory: cuSOLVER workspace estimated (" + workspace.reason + ")");
    const detail::MemoryPlan plan = detail::plan_cuda_memory(n_variable, n_constraints, steering.method,
                                                             steering.constraint_mode, max_batch_bytes, device,
                                                             workspace, options.deterministic);
    if (plan.fits) {
      log.progress("backend: cuda on " + device.name + " (" + plan.message + ")" +
                   (options.deterministic ? "; deterministic: the matrix summed in exact fixed point" : ""));
      detail::CudaBackendOptions cuda_options;
      cuda_options.deterministic = options.deterministic;
      return detail::make_cuda_backend(cuda_options);
    }
    reason = plan.message;
  }
  if (options.backend == BackendKind::cuda) throw RuntimeError("--backend cuda: " + reason);
  log.progress("backend: cpu (automatic choice: " + reason + ")");
  return cpu_backend();
}

/// The parameters as millepede.res lists them, from the setup and (if any) the iterations.
void collect_parameters(const detail::ParameterTable& table, const detail::ConstraintTable& constraints,
                        const detail::IterationOutcome* outcome, const Steering& steering, SolveResult& result) {
  const std::int64_t n = table.size();
  std::vector<std::int64_t> named(static_cast<std::size_t>(n), 0);
  for (const auto& eq : constraints.equations) {
    for (const auto& term : eq.terms) ++named[term.first];
  }
  const bool errors = outcome != nullptr && !outcome->covariance_diagonal.empty();
  result.has_errors = errors;
  result.parameters.clear();
  result.parameters.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    ParameterResult pr;
    pr.label = table.label[i];
    pr.value = outcome != nullptr ? outcome->value[i] : table.start[i];
    pr.presigma = table.presigma[i];
    const std::int32_t v = table.variable_index[i];
    pr.variable = v >= 0;
    pr.fixed_by = static_cast<int>(table.fixed_by[i]);
    pr.constraints = named[i];
    pr.difference = pr.value - table.start[i];
    pr.entries_files = table.entries[i];
    if (outcome != nullptr && v >= 0 && i < static_cast<std::int64_t>(outcome->last_pass.entries_accepted.size())) {
      pr.entries_accepted = outcome->last_pass.entries_accepted[i];
    }
    if (v >= 0 && errors) {
      const double c = outcome->covariance_diagonal[v];
      pr.error = c >= 0.0 ? std::sqrt(c) : -std::sqrt(-c);
      if (steering.globalcorr && !outcome->matrix_diagonal.empty()) {
        const double prod = c * outcome->matrix_diagonal[v];
        pr.global_correlation = prod > 0.0 && 1.0 / prod <= 1.0 ? std::sqrt(1.0 - 1.0 / prod) : -1.0;
      }
    }
    result.parameters.push_back(pr);
  }
  for (std::int64_t v = 0; v < table.variables(); ++v) result.variable_labels.push_back(table.label[table.variable_label[v]]);
}

}  // namespace

const char* phase_name(Progress::Phase phase) noexcept {
  switch (phase) {
    case Progress::Phase::reading: return "reading";
    case Progress::Phase::local_fits: return "local fits";
    case Progress::Phase::matrix: return "matrix";
    case Progress::Phase::solving: return "solving";
  }
  return "?";
}

double CovarianceBlock::correlation(std::size_t i, std::size_t j) const {
  const std::size_t k = labels.size();
  const double vi = matrix[i * k + i], vj = matrix[j * k + j];
  return vi > 0.0 && vj > 0.0 ? matrix[i * k + j] / std::sqrt(vi * vj) : 0.0;
}

bool cuda_available_in_build() noexcept {
#ifdef GPEDE_CUDA_PLUGIN_BUILT
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

SolveResult solve(const Steering& steered, const SolverOptions& options, RecordSource* source) {
  if (steered.time_dependence.automatic && steered.time_dependence.active()) {
    detail::check_time_dependence(steered);
    return detail::solve_with_interval_search(steered, options, source);
  }
  const auto t_start = Clock::now();
  SolveResult result;
  const detail::RunLog log(options.log, result.log);
  // pede solves by decomposition with constraints by elimination only (its LAPACK methods excepted).
  Steering steering_copy;
  const Steering* chosen = &steered;
  if (steered.method == Method::decomposition && !steered.lapack_method &&
      steered.constraint_mode == ConstraintMode::multipliers) {
    steering_copy = steered;
    steering_copy.constraint_mode = ConstraintMode::elimination;
    chosen = &steering_copy;
    log(" Elimination for constraints enforced for solution by decomposition!");
  }
  std::unique_ptr<RecordSource> owned_source;
  if (source == nullptr) {
    owned_source = detail::open_binary_files(*chosen, options.processes);
    source = owned_source.get();
  }
  if (chosen->time_dependence.any() || !chosen->time_dependence.boundaries.empty() ||
      chosen->time_dependence.stride > 0 || chosen->time_dependence.automatic) {
    // Time-dependent labels: the steering's lines repeated per interval; the records relabelled
    // as they are read (IntervalSource below).
    Steering resolved = *chosen;
    std::string note;
    detail::resolve_label_stride(
        resolved, [&] { return detail::largest_record_label(*source, options.processes); }, &note);
    if (!note.empty()) log(" Note: " + note);
    detail::check_time_dependence(resolved);
    Steering expanded = detail::expand_for_intervals(resolved);
    steering_copy = std::move(expanded);
    chosen = &steering_copy;
  }
  const Steering& steering = *chosen;
  result.method = steering.method;
  result.constraint_mode = steering.constraint_mode;
  for (const auto& w : steering.warnings) log.progress("warning: " + w);
  for (const auto& w : result.warnings) log.progress("warning: " + w);

  // ---- read the records and map the labels ----------------------------------------------------
  std::unique_ptr<detail::IntervalSource> interval_source;
  if (steering.time_dependence.any()) {
    interval_source = std::make_unique<detail::IntervalSource>(*source, steering);
    source = interval_source.get();
  }
  if (steering.time_dependence.active()) {
    const TimeDependenceSpec& td = steering.time_dependence;
    log(" Time dependence: " + std::to_string(td.intervals()) + " interval(s); interval k of a time-dependent label L is "
        "label L + k * " + std::to_string(td.label_stride()));
  }
  ProcessGroup* const processes =
      options.processes != nullptr && options.processes->size() > 1 ? options.processes : nullptr;
  if (processes != nullptr) {
    const auto refuse = [&](const std::string& what) {
      throw InputError(what + " (" + steering.steering_file.string() + ") needs all records in one process; it " +
                           "cannot be used with " + std::to_string(processes->size()) + " processes",
                       exit_code::steering_error);
    };
    if (steering.check_input > 0) refuse("checkinput");
    if (steering.printrecord1 != 0 || steering.printrecord2 != 0) refuse("printrecord");
    log.progress("processes: " + std::to_string(processes->size()) + ", each with its share of the records");
  }
  const auto t_read = Clock::now();
  const std::size_t cache_budget = options.cache_budget_bytes > 0
                                       ? options.cache_budget_bytes
                                       : detail::query_host_memory().available_bytes / 2;
  detail::DataSet data(*source, options.cache_records, std::max<std::size_t>(1, options.batch_records), options.stop,
                       cache_budget);
  detail::ProgressMeter meter(options.progress, options.progress_interval_s);
  data.set_progress(&meter);
  data.set_processes(processes);
  detail::EntryCounter counter(steering.count_records);
  detail::LabelMap labels;
  meter.begin(Progress::Phase::reading, 0, -1);
  const detail::ReadOutcome read = detail::read_records(steering, data, counter, labels, processes);
  meter.finish();
  result.records_read = read.records;
  if (interval_source && steering.time_dependence.active()) {
    result.time_intervals = interval_source->intervals();
    detail::combine_intervals(result.time_intervals, processes);
    result.time_stride = steering.time_dependence.label_stride();
    for (std::size_t k = 0; k < result.time_intervals.size(); ++k) {
      const TimeInterval& i = result.time_intervals[k];
      log(" Interval " + std::to_string(k) + ": from " + (i.begin == kNoTime ? "the start" : time_text(i.begin)) +
          " to " + (i.end == kNoTime ? "the end" : "before " + time_text(i.end)) + ", " +
          std::to_string(i.records) + " records" +
          (i.records > 0 ? " (runs " + time_text(i.first_seen) + " to " + time_text(i.last_seen) + ")" : ""));
    }
  }
  result.figures.reading_s = seconds_since(t_read);
  result.figures.peak_after_reading_bytes = detail::peak_rss_bytes();
  log.progress("read " + std::to_string(read.records) + " records, " + std::to_string(read.measurements) +
               " measurements, " + std::to_string(labels.size()) + " labels in " +
               std::to_string(result.figures.reading_s) + " s");
  for (const auto& f : steering.binary_files) result.weighted_files = result.weighted_files || f.weight != 1.0;
  if (data.cache_dropped_at() > 0) {
    const std::string note = "the records took more than " +
                             std::to_string((cache_budget + (1u << 19)) >> 20) +
                             " MB in memory (half of what the process may allocate): they are read again in every "
                             "pass instead of being kept (as with --no-cache)";
    log(" Note: " + note);
  }

  // ---- parameters, constraints, external measurements -------------------------------------------
  const detail::ParameterTable parameters = detail::set_up_parameters(steering, labels, counter, data, log, processes);
  const detail::ConstraintTable constraints = detail::set_up_constraints(steering, labels, parameters, log);
  const std::vector<detail::MeasurementEquation> measurements = detail::set_up_measurements(steering, labels);
  result.n_constraints = constraints.size();
  const std::int64_t n_var = parameters.variables();
  // With multipliers pede's count of fitted parameters adds the constraints, with elimination it
  // subtracts them; decomposition always eliminates.
  result.nfgb = steering.constraint_mode == ConstraintMode::elimination ? n_var - constraints.size()
                                                                        : n_var + constraints.size();

  if (steering.check_input > 0) {
    // `checkinput`: the statistics of the input, no solution.
    result.input_check = true;
    collect_parameters(parameters, constraints, nullptr, steering, result);
    const detail::InputStatistics statistics =
        detail::input_statistics(steering, data, labels, steering.check_input > 1);
    for (std::size_t i = 0; i < result.parameters.size(); ++i) {
      result.parameters[i].group_start = statistics.group_start[i] != 0;
    }
    result.appearance = statistics.appearance;
    result.exit_code = 0;
    result.message = "Ended normally";
    result.figures.total_s = seconds_since(t_start);
    result.figures.peak_rss_bytes = detail::peak_rss_bytes();
    return result;
  }

  // ---- backend, chosen now that the size of the system is known ---------------------------------
  bool distribute = false;
  std::unique_ptr<detail::Backend> backend =
      choose_backend(steering, options, n_var, constraints.system.m, read.max_batch_bytes,
                     process_memory(options, processes), processes != nullptr ? processes->size() : 1, distribute,
                     log, result.warnings);
  if (processes != nullptr) {
    if (distribute) {
      std::shared_ptr<detail::linalg::DistributedEngine> engine = processes->distributed_engine();
      if (!engine) {
        throw RuntimeError("a distributed solve was asked for, but these processes offer no distributed engine");
      }
      if (steering.method == Method::minres && steering.sparse_storage) {
        log.progress("note: the distributed solve keeps the global matrix dense for " + steering.method_name);
      }
      backend->use_packed_matrix(false);
      backend = detail::make_distributed_solve_backend(std::move(backend), *processes, std::move(engine));
    } else {
      backend = detail::make_distributed_backend(std::move(backend), *processes);
    }
  }
  result.backend = backend->name();
  result.threads = backend->host_threads();
  static const std::string cpu_model = read_cpu_model();  // once per process, not per run
  result.cpu_model = cpu_model;
  if (result.backend == "cuda") result.gpu_model = detail::query_cuda_device().name;
  if (steering.method == Method::minres && steering.sparse_storage) {
    if (backend->supports_sparse_matrix()) {
      backend->use_sparse_matrix(true);
    } else {
      log.progress("note: the " + backend->name() + " backend keeps the global matrix dense for " +
                   steering.method_name);
    }
  }

  // ---- iterations --------------------------------------------------------------------------------
  const detail::Problem problem{steering,    data,         labels,
                                parameters,  constraints,  measurements,
                                read.records, &options.covariance_labels, options.covariance_all};
  detail::RecordPrintout printout(steering, options.record_printout);
  const detail::IterationOutcome outcome =
      detail::iterate(problem, *backend, result, log, printout.active() ? &printout : nullptr);
  printout.finish(log);
  result.matrix_storage = backend->matrix_description();
  detail::set_end_code(problem, outcome, result, log);

  // ---- results -----------------------------------------------------------------------------------
  collect_parameters(parameters, constraints, &outcome, steering, result);
  if (steering.method == Method::diagonalization && outcome.solved) {
    result.eigen.eigenvalues = outcome.factorization.eigenvalues;
    result.eigen.eigenvectors = outcome.factorization.eigenvectors;
  }
  result.figures.total_s = seconds_since(t_start);
  result.figures.peak_rss_bytes = detail::peak_rss_bytes();
  return result;
}

}  // namespace gpede
