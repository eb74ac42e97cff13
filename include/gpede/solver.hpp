// The public solver API: give it a Steering (parsed from a file or built in code) and optionally
// an in-memory source of records, and it runs pede's algorithm (label map, entries cut, local
// fits, Schur complements into the global matrix, constraints, method, iterations with cuts and
// down-weighting) on the chosen backend.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gpede/record_batch.hpp"
#include "gpede/steering.hpp"

namespace gpede {

namespace detail::linalg {
class DistributedEngine;
}

/// Which backend accumulates the global matrix and solves.
enum class BackendKind {
  cpu,    ///< threads + LAPACK (OpenBLAS)
  cuda,   ///< one GPU: kernels + cuSOLVER (throws RuntimeError if gpede was built without CUDA)
  automatic,  ///< CUDA when a device is present and the problem fits its memory, else CPU
};

/// The backend named "cpu", "cuda" or "auto" (as on the command line); nullopt for another name.
std::optional<BackendKind> backend_from_name(const std::string& name);

/// A source of records for the solver, read once per pass over the data. Frameworks and the
/// simulation implement it to feed records from memory; the solver's default reads the steering's
/// binary files.
class RecordSource {
 public:
  virtual ~RecordSource() = default;
  /// Appends up to max_records records to batch (global_index need not be filled); returns how many
  /// were appended, 0 when the pass is over.
  virtual std::size_t next(RecordBatch& batch, std::size_t max_records) = 0;
  /// Starts a new pass over the same records.
  virtual void rewind() = 0;
};

/// The processes of one run that share its records (MPI ranks, or a framework's own workers):
/// each reads its share of the binary files, the sums of every pass are added up over all of them,
/// and process 0 solves and hands every process the same step. Implemented by the command line
/// over MPI (`mpirun -np N gpede steer.txt`); every call is collective (all processes make it, in
/// the same order).
class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;  ///< 0 to size() - 1
  virtual int size() const = 0;
  /// Element-wise sum over the processes, the same on every process afterwards.
  virtual void sum(double* data, std::size_t count) = 0;
  virtual void sum(std::int64_t* data, std::size_t count) = 0;
  /// Element-wise bitwise or over the processes, the same on every process afterwards.
  virtual void bitwise_or(std::uint64_t* data, std::size_t count) = 0;
  /// Element-wise sum onto process 0; the others' data are left as they were.
  virtual void sum_to_first(double* data, std::size_t count) = 0;
  /// Process 0's bytes to every process (resized there).
  virtual void broadcast(std::vector<char>& bytes) = 0;
  /// Every process's bytes, in rank order, on every process.
  virtual std::vector<std::vector<char>> gather(const std::vector<char>& bytes) = 0;
  /// How many of the group's processes share this machine (and its memory); 1 where not known.
  virtual int processes_on_this_machine() const { return 1; }
  /// A linear-algebra engine whose matrices are spread over the processes (ScaLAPACK), for
  /// SolverOptions::distributed_solve; null where the group has none. Collective.
  virtual std::shared_ptr<detail::linalg::DistributedEngine> distributed_engine() { return nullptr; }
};

/// Where a run stands, for SolverOptions::progress.
struct Progress {
  enum class Phase {
    reading,     ///< the first read of the records (labels, entries, checks)
    local_fits,  ///< a pass of local fits only (chi2, the gradient)
    matrix,      ///< a pass that also builds the global matrix
    solving,     ///< the factorisation and solution of the global system
  };
  Phase phase = Phase::reading;
  int iteration = 0;                ///< the solution the pass belongs to (0: the first pass)
  std::int64_t records_done = 0;    ///< records of this phase so far
  std::int64_t records_total = -1;  ///< records of a pass; -1 where not known (reading, solving)
  double seconds = 0.0;             ///< since the phase began
  double records_per_second = 0.0;  ///< 0 until known
  double seconds_left = -1.0;       ///< estimated; -1 where not known
  bool finished = false;            ///< the phase's last call
};

/// The phase's name in words ("reading", "local fits", "matrix", "solving").
const char* phase_name(Progress::Phase phase) noexcept;

/// Options of a run that are not pede steering options.
/// How the CPU backend stores the global matrix of decomposition and inversion.
enum class MatrixStorage {
  automatic,  ///< full storage where it fits the memory, else packed
  full,       ///< n^2 doubles
  packed,     ///< the lower triangle, n(n+1)/2 doubles (LAPACK's rectangular full packed format)
};

struct SolverOptions {
  BackendKind backend = BackendKind::cpu;
  int threads = 0;                   ///< 0: steering `threads`, else all cores
  /// The same input gives the same results bit for bit, run after run. The CPU backend always
  /// does (at a fixed thread count); the CUDA backend then sums the matrix in exact fixed point,
  /// after an extra look at the records before each pass that builds it.
  bool deterministic = false;
  /// The CPU backend's storage of the global matrix for decomposition and inversion (other methods
  /// and the CUDA backend keep their own).
  MatrixStorage storage = MatrixStorage::automatic;
  std::size_t batch_records = 4096;  ///< records per batch handed to the backend (the cache's piece)
  /// Keep the records read in memory between passes (else re-read the files each pass).
  bool cache_records = true;
  /// The most the kept records may take; beyond it the run drops them and reads the files again in
  /// every pass, and says so. 0: half of what the process may allocate when the run starts.
  std::size_t cache_budget_bytes = 0;
  /// Receives each log line (also written to millepede.log); may be empty.
  std::function<void(const std::string&)> log;
  /// Where `printrecord` writes its printout (pede's mpdebug.txt); empty: nowhere.
  std::filesystem::path record_printout = "mpdebug.txt";
  /// When this flag becomes true (from any thread, or a signal handler), solve() throws Interrupted
  /// at the next batch of records or step of the solution. Null: never.
  const std::atomic<bool>* stop = nullptr;
  /// Receives the run's progress: during reading and every pass over the records about every
  /// progress_interval_s seconds, and at the end of every phase (finished). Returning true stops
  /// the run (Interrupted, as `stop`). Called on the thread that runs solve().
  std::function<bool(const Progress&)> progress;
  double progress_interval_s = 1.0;
  /// Labels whose covariance block SolveResult::covariance brings back, in this order (fixed
  /// labels and labels not in the run are left out and named in the warnings). From the final
  /// factorisation of inversion, diagonalization or decomposition, one solution per label
  /// (dp = V b, so column j of V solves with b = e_j): about n^2 operations each. With MINRES, one
  /// MINRES solution per label, to the run's tolerance.
  std::vector<std::int32_t> covariance_labels;
  /// The whole covariance of the variable parameters (n^2 doubles; n solutions).
  bool covariance_all = false;
  /// The processes that share the run (null: this process alone). Each reads its share of the
  /// binary files (make_file_source); the result is complete on every process.
  ProcessGroup* processes = nullptr;
  /// With processes: the global matrix is reduce-scattered over them into ScaLAPACK's 2D
  /// block-cyclic layout and solved there by all of them together (ProcessGroup::
  /// distributed_engine), instead of summed onto the first process, which solves alone. Without
  /// it the run takes the distributed solve by itself where the memory plan says one process
  /// cannot hold the solution but each can hold its share.
  bool distributed_solve = false;
  /// The most memory the run may plan with per process, in bytes (0: what the system allows:
  /// MemAvailable, cgroup and address-space limits, shared by the processes of one machine).
  /// For batch systems whose share per job the process cannot see.
  std::size_t memory_limit_bytes = 0;
};

/// A block of the covariance matrix of the fitted parameters.
struct CovarianceBlock {
  std::vector<std::int32_t> labels;  ///< its rows and columns
  std::vector<double> matrix;        ///< labels.size()^2 values, row-major (symmetric)
  /// The correlation of labels i and j, V_ij / sqrt(V_ii V_jj) (0 where a variance is not positive).
  double correlation(std::size_t i, std::size_t j) const;
};

/// The result for one label, in millepede.res terms.
struct ParameterResult {
  std::int32_t label = 0;
  double value = 0.0;     ///< start value + correction
  double presigma = 0.0;  ///< as given (0 if none; < 0 fixed by the user)
  bool variable = false;  ///< fitted (false: fixed by presigma < 0 or by the entries cut)
  double difference = 0.0;  ///< final value - start value
  double error = std::numeric_limits<double>::quiet_NaN();  ///< sqrt(|C_ii|), negative if C_ii < 0; NaN if no covariance
  double global_correlation = std::numeric_limits<double>::quiet_NaN();  ///< NaN if not computed
  std::int64_t entries_files = 0;     ///< measurements (records with `countrecords`) with this label in the binary files
  std::int64_t entries_accepted = 0;  ///< measurements with this label in accepted local fits (last pass)
  /// Why the label is not fitted, as pede numbers it: 0 fitted, -1 fixed by its pre-sigma, -2 by
  /// the `entries` cut, -3 by the iterated entries cut.
  int fixed_by = 0;
  std::int64_t constraints = 0;  ///< constraint equations that name the label
  /// The label starts a parameter group: a run of consecutive labels that every measurement names
  /// all together or not at all (`checkinput`).
  bool group_start = false;
};

/// Where a label appears in the binary files (`checkinput 2`).
struct Appearance {
  std::int32_t first_file = 0;     ///< 1-based, in pede's order of the binary files
  std::int64_t first_record = 0;   ///< record number within that file
  std::int32_t last_file = 0;
  std::int64_t last_record = 0;
  std::int64_t files = 0;          ///< changes of file between its appearances, the first included
  std::int64_t paired = 0;         ///< parameters it shares a measurement with (its group's, the others of its group counted)
};

/// One pass over the data: a line of pede's iteration table.
struct IterationRecord {
  int iteration = 0;               ///< the solution (iteration) the pass belongs to; 0 for the first pass
  int function_calls = 0;          ///< passes so far, this one included
  double function_value = 0.0;     ///< F: chi2 of accepted fits, cut values of rejected ones, priors, measurements
  double expected_decrease = 0.0;  ///< dF expected from the step of this iteration (b . dp)
  double cut_factor = 0.0;         ///< chi2 cut factor of the pass (0: no cut; -1: none, not even hugecut)
  std::int64_t rejects = 0;
  bool matrix = false;             ///< the pass built the global matrix
  double step = 0.0;               ///< step factor along the Newton step at this pass (1: full step)
  int line_search = -1;            ///< pede's line-search code after this pass (-1: still searching or none)
  /// MINRES: on the first pass after a solution, its internal iterations and stop code (pede's
  /// `iit` and `st`); -1 elsewhere.
  std::int64_t minres_iterations = -1;
  int minres_stop = 0;
  double seconds = 0.0;
};

/// Eigenvalues and selected eigenvectors (method diagonalization).
struct EigenResult {
  std::vector<double> eigenvalues;  ///< all, in ascending order
  /// For each listed eigenvector: its index into eigenvalues and its components per variable
  /// label (labels in ascending order, the same order as SolveResult::variable_labels).
  std::vector<std::pair<std::int64_t, std::vector<double>>> eigenvectors;
};

/// Time (wall seconds) and peak resident memory of each phase.
struct PhaseFigures {
  double reading_s = 0.0;        ///< reading and checking binary files, label map
  double local_fits_s = 0.0;     ///< passes that only compute local fits, F and b
  double matrix_s = 0.0;         ///< passes that also build the global matrix
  double solving_s = 0.0;        ///< factorisation, covariance, eigen-decomposition, solutions
  double output_s = 0.0;
  double total_s = 0.0;
  std::int64_t peak_rss_bytes = 0;
  /// The process's peak resident memory when each phase had ended (it only grows, so each shows
  /// what the phases up to it needed): reading, the passes over the data, the solution.
  std::int64_t peak_after_reading_bytes = 0;
  std::int64_t peak_after_passes_bytes = 0;
  std::int64_t peak_after_solving_bytes = 0;
};

/// Everything a run produced.
/// One interval of a time-dependent run (Steering::time_dependence).
struct TimeInterval {
  std::int64_t begin = 0;  ///< its first time (gpede/record_time.hpp); kNoTime for interval 0
  std::int64_t end = 0;    ///< the next interval's first time; kNoTime for the last
  std::int64_t records = 0;       ///< records read in it
  std::int64_t first_seen = 0;    ///< earliest and latest record time in it (kNoTime if none)
  std::int64_t last_seen = 0;
};

/// `intervals auto`: what the search found (runs 0 where there was none).
struct IntervalSearchResult {
  std::int64_t runs = 0;        ///< distinct record times
  std::int64_t parameters = 0;  ///< time-dependent parameters in the records
  double penalty = 0.0;         ///< chi2 per interval start
  bool penalty_default = true;
  bool full_blocks = true;      ///< each run's p x p block (else each parameter alone)
  double shared_chi2 = 0.0;     ///< chi2 of the solution with one interval, where the statistics were taken
  std::int64_t statistics_bytes = 0;  ///< memory of the per-run statistics
  double statistics_s = 0.0;    ///< the pass that gathered them
  double search_s = 0.0;        ///< the dynamic programming's time
  std::vector<std::int64_t> starts;  ///< the chosen interval starts (record times)
  std::vector<double> gains;         ///< per start: the chi2 that joining it with the interval before costs
};

struct SolveResult {
  std::vector<ParameterResult> parameters;  ///< every label, ascending
  IntervalSearchResult interval_search;
  /// Time dependence: the intervals, and the stride of the labels of their parameters (interval k
  /// of label L is L + k * stride). Empty and 0 without time dependence.
  std::vector<TimeInterval> time_intervals;
  std::int64_t time_stride = 0;
  std::vector<std::int32_t> variable_labels;
  Method method = Method::inversion;
  ConstraintMode constraint_mode = ConstraintMode::elimination;
  bool has_errors = false;  ///< covariance available (inversion, diagonalization)
  /// pede's objective F of the last pass, its `Sum(Chi^2)`: chi2 of the accepted local fits
  /// (down-weighted terms), cut values of the records rejected by the chi2 cut, chi2 of those
  /// rejected by the down-weight fraction, regularisation and Measurement terms; each record's
  /// terms times its file weight (`Sum(W*Chi^2)` then).
  double chi2_sum = 0.0;
  std::int64_t ndf_sum = 0;
  /// Mean file weight per degree of freedom, <W> (1 without file weights).
  double mean_weight = 1.0;
  bool weighted_files = false;  ///< a binary file has a weight other than 1
  std::int64_t nfgb = 0;  ///< variable - constraints (elimination) or variable + constraints (multipliers)
  double chi2_ndf = 0.0;  ///< chi2_sum / <W> / (ndf_sum - nfgb)
  /// chi2_ndf / 0.9326 where down-weighting was on in the last pass (pede's correction), else 0.
  double chi2_ndf_downweighting = 0.0;
  std::int64_t records_read = 0;
  std::int64_t records_used = 0;
  std::int64_t records_rejected = 0;
  /// Records rejected in the last pass: rank deficit or NaN, ndf <= 0, above hugecut, above the
  /// chi2 cut or the down-weight fraction cut (pede's four counts).
  std::int64_t rejected_rank = 0, rejected_ndf = 0, rejected_huge = 0, rejected_large = 0;
  std::int64_t n_constraints = 0;
  std::int64_t passes = 0;  ///< passes over the data in the iterations (pede's "2 + N loops")
  std::int64_t minres_iterations = 0;  ///< MINRES: internal iterations of all solutions
  /// `checkinput`: no solution; parameters hold the input statistics (millepede.res then lists
  /// entries, constraints and status per label).
  bool input_check = false;
  std::vector<Appearance> appearance;  ///< per parameter, same order (`checkinput 2` only)
  /// The run's account in pede's words, for millepede.log: constraint checks, rank defects,
  /// line searches, warnings; in order.
  std::vector<std::string> log;
  std::vector<IterationRecord> iterations;
  EigenResult eigen;
  /// The covariance block asked for in SolverOptions (empty otherwise).
  CovarianceBlock covariance;
  PhaseFigures figures;
  std::string backend;
  int threads = 0;          ///< host threads of the backend
  std::string cpu_model;    ///< the host's CPU ("model name" of /proc/cpuinfo; empty if unknown)
  std::string gpu_model;    ///< the CUDA device of a cuda run; empty otherwise
  /// How the global matrix was stored: empty for dense, else e.g. "sparse, 233509 elements ...".
  std::string matrix_storage;
  int exit_code = 0;    ///< pede's millepede.end code
  std::string message;  ///< pede's millepede.end message
  std::vector<std::string> warnings;  ///< the solver's own (the steering's are in Steering::warnings)
};

/// Runs the solution. Records come from `source` if given, else from the steering's binary files.
/// Throws InputError for bad input and RuntimeError for infrastructure failures; numerical
/// failures (matrix not positive definite) come back in exit_code and message.
SolveResult solve(const Steering& steering, const SolverOptions& options = {},
                  RecordSource* source = nullptr);

/// Record source that reads the steering's binary files (honours maxrecord and file weights).
/// With share_count > 1, only share `share` of them (0 to share_count - 1): the records that start
/// in that part of the files' bytes taken end to end (a gzip file whole, to the share where its
/// middle lies); records keep their numbers within their files. maxrecord needs a single share.
std::unique_ptr<RecordSource> make_file_source(const Steering& steering, int share = 0, int share_count = 1);

/// True if the CUDA backend (the plugin libgpede_cuda, loaded only when a CUDA run is asked for or
/// considered) was built with this library.
bool cuda_available_in_build() noexcept;

}  // namespace gpede
