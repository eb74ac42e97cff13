// The phases of a solution, private to the solver (solver*.cpp): the records and their labels,
// the parameters (start values, pre-sigmas, entries cuts), the constraints and external
// measurements, and the iterations that minimise pede's objective over them.
#pragma once

#include "compact_batch.hpp"

#include <cstdint>
#include <climits>
#include <chrono>
#include <exception>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "gpede/detail/backend.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"

namespace gpede::detail {

/// Messages of a run: echoed to the caller's log as they come, kept for millepede.log.
class RunLog {
 public:
  explicit RunLog(std::function<void(const std::string&)> echo, std::vector<std::string>& lines)
      : m_echo(std::move(echo)), m_lines(lines) {}
  /// A line for the caller's log (standard output) and millepede.log.
  void operator()(const std::string& line) const {
    if (m_echo) m_echo(line);
    m_lines.push_back(line);
  }
  /// A line for the caller's log only (progress).
  void progress(const std::string& line) const {
    if (m_echo) m_echo(line);
  }

 private:
  std::function<void(const std::string&)> m_echo;
  std::vector<std::string>& m_lines;
};

/// Tables indexed by label value stay within this many entries per label present (plus
/// kDenseBase): a detector's labels are dense enough for them; a few huge labels go to a hash map.
inline constexpr std::int64_t kDensePerLabel = 64;
inline constexpr std::int64_t kDenseBase = std::int64_t{1} << 20;

/// Label -> index into the ascending list of all labels. A dense lookup table where the largest
/// label is below kDensePerLabel x (labels) + kDenseBase (the common case: 10 MB for belle2's
/// 61,520 labels up to 2,553,834), a hash map otherwise.
class LabelMap {
 public:
  void build(std::vector<std::int32_t> labels);
  std::int32_t index(std::int32_t label) const;
  void map_batch(RecordBatch& batch) const;
  const std::vector<std::int32_t>& labels() const { return m_labels; }
  std::int64_t size() const { return static_cast<std::int64_t>(m_labels.size()); }
  /// Bytes of the lookup table (dense table or hash entries, roughly).
  std::size_t table_bytes() const;

 private:
  std::vector<std::int32_t> m_labels;
  std::vector<std::int32_t> m_dense;
  std::unordered_map<std::int32_t, std::int32_t> m_hash;
  bool m_use_dense = true;
};

/// Entries per label in the binary files: global-derivative entries (pede's default) or records
/// that name the label (`countrecords`). Counted in a table indexed by label while it stays within
/// kDensePerLabel entries per distinct label seen (plus kDenseBase), in a hash map beyond.
class EntryCounter {
 public:
  explicit EntryCounter(bool per_record) : m_per_record(per_record) {}
  void add(const RecordBatch& batch);
  std::vector<std::int32_t> labels() const;
  /// Adds the counts of the other processes: afterwards every process holds the sums.
  void combine(ProcessGroup& processes);
  std::int64_t count(std::int32_t label) const;
  /// Bytes of the counting tables (dense table or hash entries, roughly).
  std::size_t table_bytes() const;

 private:
  void bump(std::int32_t label, std::int64_t amount = 1);
  bool m_per_record;
  std::int64_t m_distinct = 0;
  std::vector<std::int64_t> m_dense;
  std::unordered_map<std::int32_t, std::int64_t> m_hash;
  std::vector<std::int32_t> m_seen;  // labels of the current record (per-record counting)
};

/// The records of the run: kept in memory after the first read (compact, in pieces of
/// kCachePiece records, each expanded in turn for a pass), or read again per pass.
/// Feeds SolverOptions::progress: a phase begins, records advance, the phase ends. Calls the
/// callback at most every `interval` seconds within a phase; a callback that returns true stops
/// the run (Interrupted).
class ProgressMeter {
 public:
  ProgressMeter(std::function<bool(const Progress&)> callback, double interval)
      : m_callback(std::move(callback)), m_interval(interval) {}
  void begin(Progress::Phase phase, int iteration, std::int64_t total);
  /// `records` more of the phase's records are done (nothing outside a phase).
  void advance(std::int64_t records);
  /// Ends the phase with a last call (finished).
  void finish();

 private:
  void report(bool finished);

  std::function<bool(const Progress&)> m_callback;
  double m_interval;
  bool m_active = false;
  Progress m_now;
  std::chrono::steady_clock::time_point m_start, m_last;
};

class DataSet {
 public:
  static constexpr std::size_t kCachePiece = 4096;
  DataSet(RecordSource& source, bool cache, std::size_t batch_records, const std::atomic<bool>* stop = nullptr,
          std::size_t cache_budget = SIZE_MAX)
      : m_source(source), m_cache(cache), m_batch_records(batch_records), m_stop(stop), m_cache_budget(cache_budget) {}

  /// First read: every record, with a callback per batch (labels not yet mapped).
  void first_read(const std::function<void(const RecordBatch&)>& per_batch);
  void map_cached(const LabelMap& map);
  /// A pass: every batch, labels mapped, handed to per_batch.
  void pass(const LabelMap& map, const std::function<void(const RecordBatch&)>& per_batch);
  /// Throws Interrupted if the run was asked to stop.
  void check_stop() const;
  /// Where first_read and pass report the records they hand out (may be null).
  void set_progress(ProgressMeter* meter) { m_meter = meter; }
  /// The other processes that read their shares of the run's records: at the end of every read and
  /// pass, all learn whether one of them failed (a bad record, a changed file, a stop request) and
  /// then all throw that process's error, so that none waits for the others in a sum.
  void set_processes(ProcessGroup* processes) { m_processes = processes; }
  ProgressMeter* progress() const { return m_meter; }
  /// The kept records went over the budget during the first read and were dropped: passes read
  /// the source again. Their size when dropped, in bytes (0: not dropped).
  std::size_t cache_dropped_at() const { return m_cache_dropped_at; }
  /// Records of this process's source, as counted by the first read (with other processes, its
  /// share: a pass's progress counts these).
  std::int64_t records_here() const { return m_records_read; }

 private:
  RecordSource& m_source;
  bool m_cache;
  std::size_t m_batch_records;
  const std::atomic<bool>* m_stop;
  std::size_t m_cache_budget;
  std::size_t m_cached_bytes = 0;
  std::size_t m_cache_dropped_at = 0;
  std::vector<CompactBatch> m_batches;
  RecordBatch m_expanded;  // the batch of a pass over the cached records
  std::int64_t m_records_read = 0;  // by first_read, for record numbers a source leaves out
  ProgressMeter* m_meter = nullptr;
  ProcessGroup* m_processes = nullptr;
  /// Runs `loop`; with other processes, then agrees with them on whether any failed (see
  /// set_processes).
  void shared(const std::function<void()>& loop);
  void first_read_loop(const std::function<void(const RecordBatch&)>& per_batch);
  void pass_loop(const LabelMap& map, const std::function<void(const RecordBatch&)>& per_batch);
};

/// Throws Interrupted if `stop` is set (SolverOptions::stop).
void check_stop(const std::atomic<bool>* stop);

/// The process's peak resident memory so far (getrusage).
std::int64_t peak_rss_bytes();

/// Why a label is not fitted (pede's numbers).
enum class FixedBy : int { none = 0, presigma = -1, entries = -2, iterated_entries = -3 };

/// Every label of the run and what is known of it before the first solution.
struct ParameterTable {
  std::vector<std::int32_t> label;           ///< all labels, ascending
  std::vector<double> start;                 ///< start value per label
  std::vector<double> presigma;              ///< per label as given (0 if none)
  std::vector<std::int64_t> entries;         ///< per label, from the binary files
  std::vector<FixedBy> fixed_by;             ///< per label
  std::vector<std::int32_t> variable_index;  ///< per label; -1 if fixed
  std::vector<std::int64_t> variable_label;  ///< per variable parameter: its label index
  /// Per variable parameter: the weight that the pre-sigma adds to the diagonal of the global
  /// matrix, regularisation factor / presigma^2 (the default pre-sigma where none is given); 0 for
  /// none.
  std::vector<double> prior_weight;
  std::int64_t presigmas = 0;  ///< labels with a pre-sigma > 0 in Parameter lines (pede's count)
  std::int64_t size() const { return static_cast<std::int64_t>(label.size()); }
  std::int64_t variables() const { return static_cast<std::int64_t>(variable_label.size()); }
};

/// One linear equality constraint sum f_l p_l = value over labels.
struct ConstraintEquation {
  double value = 0.0;
  std::vector<std::pair<std::int64_t, double>> terms;  ///< (label index, factor), weighted with `weightedcons`
  SourceLocation where;
  bool empty = false;  ///< no variable parameter among its labels
};

/// The constraints as pede applies them.
struct ConstraintTable {
  std::vector<ConstraintEquation> equations;  ///< accepted (empty ones left out with skipemptycons)
  std::int64_t empty = 0;                     ///< empty equations seen (pede's count, before skipping)
  std::int64_t weighted = 0;                  ///< equations weighted by entries (`weightedcons`)
  std::int64_t rank = 0;                      ///< of the product matrix A A^T
  /// Equations that the solution applies (independent, not empty), indices into equations.
  std::vector<std::int64_t> applied;
  ConstraintSystem system;  ///< the applied equations' rows over the variable parameters
  /// A^T (A A^T)^+ over all equations, as a solve: the correction that makes values feasible.
  std::vector<double> product_inverse;  ///< (m x m) pseudo-inverse of A A^T (all equations)
  std::int64_t size() const { return static_cast<std::int64_t>(equations.size()); }
  /// c - A p for every equation, at `value` (per label).
  std::vector<double> residuals(const std::vector<double>& value) const;
  /// The residuals of the applied equations.
  std::vector<double> applied_residuals(const std::vector<double>& value) const;
};

/// An external measurement: value = sum f_l p_l, with sigma.
struct MeasurementEquation {
  double value = 0.0;
  double weight = 0.0;  ///< 1 / sigma^2
  std::vector<std::pair<std::int64_t, double>> terms;  ///< (label index, factor)
};

/// Everything the iterations work on.
struct Problem {
  const Steering& steering;
  DataSet& data;
  const LabelMap& labels;
  const ParameterTable& parameters;
  const ConstraintTable& constraints;
  const std::vector<MeasurementEquation>& measurements;
  std::int64_t records = 0;  ///< records read (pede's NREC)
  /// The covariance block to bring back (SolverOptions::covariance_labels, covariance_all).
  const std::vector<std::int32_t>* covariance_labels = nullptr;
  bool covariance_all = false;
};

/// Reads the data once: counts entries per label and builds the label map of all labels (binary
/// files, Parameter, Constraint and Measurement lines).
struct ReadOutcome {
  std::int64_t records = 0;
  std::int64_t measurements = 0;
  std::size_t max_batch_bytes = 0;
};
/// With processes, each reads its share and the counts, records and labels are those of all.
ReadOutcome read_records(const Steering& steering, DataSet& data, EntryCounter& counter, LabelMap& labels,
                         ProcessGroup* processes = nullptr);

/// Start values, pre-sigmas, the entries cut (iterated if asked), prior weights.
ParameterTable set_up_parameters(const Steering& steering, const LabelMap& labels, const EntryCounter& counter,
                                 DataSet& data, const RunLog& log, ProcessGroup* processes = nullptr);

/// Constraints: weighting, empty equations, rank of A A^T, the equations the solution applies.
ConstraintTable set_up_constraints(const Steering& steering, const LabelMap& labels,
                                   const ParameterTable& parameters, const RunLog& log);

/// External measurements over the labels.
std::vector<MeasurementEquation> set_up_measurements(const Steering& steering, const LabelMap& labels);

/// `checkinput`: which labels start a parameter group (per label) and, with appearance, where each
/// label appears in the files and how many parameters it is paired with.
struct InputStatistics {
  std::vector<char> group_start;        ///< per label
  std::vector<Appearance> appearance;   ///< per label, when asked for
};
InputStatistics input_statistics(const Steering& steering, DataSet& data, const LabelMap& labels, bool appearance);

/// pede's feasibility correction: if the rms of the constraint residuals is at least `cut`, two
/// rounds of p += A^T (A A^T)^+ (c - A p) over the variable parameters. Returns true if it
/// corrected; logs the discrepancies as pede does.
bool make_feasible(const ConstraintTable& constraints, const ParameterTable& parameters, std::vector<double>& value,
                   double cut, const RunLog& log);

/// The iterations: passes over the data, solutions, line searches, cut schedule, as pede runs
/// them. Fills the result's figures, values, exit code; returns the final values per label.
struct IterationOutcome {
  std::vector<double> value;                 ///< per label
  PassTotals last_pass;                      ///< sums of the last pass (host terms included)
  std::vector<std::int64_t> entries;         ///< per label: accepted entries of the last pass
  std::vector<double> covariance_diagonal;   ///< per variable parameter; empty without
  std::vector<double> matrix_diagonal;       ///< per variable parameter, of the last matrix (globalcorr)
  FactorReport factorization;                ///< of the last matrix
  bool solved = false;                       ///< a solution was computed
  bool downweighting_in_last_pass = false;
  // pede's warning counters
  std::int64_t rank_defect = 0;       ///< of the global matrix (or variables without any entry)
  std::int64_t low_entries = 0;       ///< variables with too few accepted entries, summed over passes
  bool not_decreasing = false;        ///< the objective did not decrease along a step
};
class RecordPrintout;
IterationOutcome iterate(const Problem& problem, Backend& backend, SolveResult& result, const RunLog& log,
                         RecordPrintout* printout);

/// pede's final code and message from the run's warnings.
void set_end_code(const Problem& problem, const IterationOutcome& outcome, SolveResult& result, const RunLog& log);

/// Every process's `mine` (with one process, just it), after work that may have failed on some:
/// the first failure of any process is rethrown on every process (another's named by its number,
/// "(process R of N) "), so that none is left waiting in a later collective call.
std::vector<std::vector<char>> gather_or_rethrow(ProcessGroup* processes, const std::exception_ptr& failure,
                                                 const std::vector<char>& mine);

/// The steering's binary files as a source (this process's share with processes); InputError
/// (code 14) where the steering names none.
std::unique_ptr<RecordSource> open_binary_files(const Steering& steering, ProcessGroup* processes);

}  // namespace gpede::detail
