// pede's steering files: the options of a run, the binary files, and the Parameter, Constraint and
// Measurement blocks of text files. parse_steering() reads a steering file as pede does (comment
// rules, case-insensitive approximate keyword matching, text files named in it).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "gpede/mille.hpp"

namespace gpede {

/// Solution method (`method NAME n dflim`).
enum class Method {
  inversion,        ///< Cholesky plus full covariance (errors, global correlations)
  diagonalization,  ///< eigen-decomposition; errors; millepede.eve
  decomposition,    ///< Cholesky solution only, no errors
  minres,           ///< MINRES (sparseMINRES, fullMINRES and their -QLP names): iterative, no errors
};

/// How linear equality constraints are applied.
enum class ConstraintMode { elimination, multipliers };

/// Where a definition came from, for error messages.
struct SourceLocation {
  std::filesystem::path file;
  int line = 0;
};

/// `Parameter` block line: label, start value, pre-sigma (< 0 fixed, 0 free, > 0 Gaussian prior).
struct ParameterSpec {
  std::int32_t label = 0;
  double value = 0.0;
  double presigma = 0.0;
  SourceLocation where;
};

/// `Constraint value [sigma]` or `Measurement value sigma` with its `label factor` lines.
struct LinearSpec {
  double value = 0.0;
  double sigma = 0.0;
  std::vector<std::pair<std::int32_t, double>> terms;  ///< (label, factor)
  SourceLocation where;
  /// Constraint read while `weightedcons` was on: pede multiplies each factor by the label's
  /// entries in the binary files.
  bool weighted = false;
};

/// A deformation template (`template A L1 c1 L2 c2 ...`): the parameters L1, L2, ... of an element
/// move together as A * (c1, c2, ...); the records' derivatives on them become one derivative on
/// the amplitude A, sum_i c_i dr/dLi.
struct TemplateSpec {
  std::int32_t amplitude = 0;
  std::vector<std::pair<std::int32_t, double>> shape;  ///< (label, coefficient)
  SourceLocation where;
};

/// gpede's time dependence (steering keywords `timedependent`, `intervals`, `timestride`,
/// `filetime`; see the README's "Time-dependent alignment"): the labels that take one value per
/// interval of record times, and the intervals.
struct TimeDependenceSpec {
  /// Labels that vary in time, as inclusive ranges [first, last].
  std::vector<std::pair<std::int32_t, std::int32_t>> labels;
  /// Interval starts in increasing order (gpede/record_time.hpp): interval 0 holds the times
  /// before boundaries[0], interval k those from boundaries[k-1] on, up to boundaries[k].
  std::vector<std::int64_t> boundaries;
  /// Label of interval k of time-dependent label L: L + k * stride. 0: the smallest power of ten
  /// above every label in the steering's `timedependent` lines, at least 10^6.
  std::int64_t stride = 0;
  /// `intervals auto [penalty]`: the interval starts chosen from the data (a start at every run
  /// where the time-dependent parameters change by more than the penalty in chi2 says).
  bool automatic = false;
  double penalty = 0.0;  ///< chi2 per interval start; 0: the default (README)
  std::vector<TemplateSpec> templates;  ///< `template` lines (also without time dependence)
  SourceLocation where;  ///< the first `timedependent` line

  bool active() const noexcept { return !labels.empty(); }
  /// Anything to do on reading: time-dependent labels or templates.
  bool any() const noexcept { return active() || !templates.empty(); }
  bool varies(std::int32_t label) const noexcept {
    for (const auto& [first, last] : labels) {
      if (label >= first && label <= last) return true;
    }
    return false;
  }
  std::int64_t intervals() const noexcept { return static_cast<std::int64_t>(boundaries.size()) + 1; }
  /// The interval of a record time.
  std::int64_t interval_of(std::int64_t time) const noexcept;
  /// The stride in use (`stride`, or its default).
  std::int64_t label_stride() const noexcept;
};

/// Everything a steering file says.
struct Steering {
  std::filesystem::path steering_file;
  std::vector<MilleFileSpec> binary_files;
  std::vector<std::filesystem::path> text_files;
  std::vector<ParameterSpec> parameters;
  std::vector<LinearSpec> constraints;
  std::vector<LinearSpec> measurements;

  Method method = Method::minres;
  std::string method_name = "sparseMINRES";  ///< as written in the steering file (pede's default)
  int iterations = 1;                          ///< `method NAME n`
  double dflim = 0.1;                          ///< `method NAME n dflim`: convergence limit on dF
  ConstraintMode constraint_mode = ConstraintMode::elimination;

  int entries_files = 25;     ///< `entries n1`: min entries from binary files (mreqenf)
  int entries_accepted = 10;  ///< `entries n1 n2`: min entries from accepted local fits (mreqena)
  /// Iterated entries cut (pede's iteren): `entries n1 n2 n3` gives n1 x n3, `iterateentries n`
  /// gives n. Labels with fewer entries are counted again without the measurements that name a
  /// label below the cut. 0: off.
  std::int64_t entries_iterate = 0;
  bool count_records = false;  ///< `countrecords`: entries count records, not measurements
  /// `chisqcut c1 c2`: cut factor in iteration 1 (0 = off; -1 where c1 < 1 was given, as pede
  /// stores it)
  double chisqcut1 = 0.0;
  double chisqcut2 = 0.0;     ///< cut factor in iteration 2
  double hugecut = 50.0;      ///< `hugecut c`: cut factor for unreasonable data, all iterations
  int outlier_downweighting = 0;  ///< `outlierdownweighting n` (0 off; >0 at least 2)
  double dwfractioncut = 0.0;     ///< `dwfractioncut f` (0 off, at most 0.5)
  double presigma = 0.0;          ///< `presigma s`: default pre-sigma
  bool regularisation = false;    ///< `regularisation r [presigma]`
  double regularisation_factor = 1.0;
  double regularisation_presigma = 0.0;
  double scale_errors_global = 1.0;  ///< `scaleerrors f1 f2`: measurements with global derivatives
  double scale_errors_local = 1.0;   ///< measurements without global derivatives
  bool skip_empty_constraints = false;
  int printcounts = 0;  ///< `printcounts n` (0 off)
  bool globalcorr = false;
  int threads = 0;  ///< `threads n` (0: all cores)
  bool subito = false;
  bool force = false;             ///< `force` (-f): go on iterating despite rank defects
  int check_input = 0;            ///< `checkinput [n]` (-c: 1, -C: 2): statistics only, no solution
  bool no_feasible_start = false; ///< `nofeasiblestart`: start values not made to meet the constraints
  int line_search = 2;            ///< `linesearch n`: 0 none, 1 last, 2 once the cut factor < 2.25, 3 all
  double wolfe_c2 = 0.0;          ///< `wolfe c1 c2`: slope ratio of the LAPACK methods' line search
  int matrix_iterations = 0;      ///< `matiter n`: rebuild the matrix in iterations below n
  /// `method fullLAPACK|unpackedLAPACK`: solved as decomposition (inversion with
  /// LAPACKwitherrors); pede's line search settings differ for them.
  bool lapack_method = false;
  std::int64_t printrecord1 = 0, printrecord2 = 0;
  std::int64_t maxrecord = -1;  ///< `maxrecord n` (-1: all)
  /// MINRES controls. `mrestol t`: relative tolerance (pede accepts 1e-10 to 1e-4; its default is
  /// the single-precision 1e-6 that it stores).
  double minres_tolerance = static_cast<double>(1.0e-6f);
  /// `bandwidth n [s]`: MINRES preconditioner: 0 the diagonal (with multipliers, the diagonal
  /// bordered by the constraints), below 0 none, above 0 the band of width n (diagonal included)
  /// of the (reduced) matrix, factorised by Cholesky; s > 0 keeps a dependent row of the band as
  /// its diagonal element instead of dropping it (pede's `lprecm`).
  int minres_bandwidth = 0;
  bool minres_band_skyline = false;
  /// `method sparseMINRES-QLP|fullMINRES-QLP`: MINRES-QLP instead of MINRES.
  bool minres_qlp = false;
  /// `mrestranscond c` and `mresmode m`: MINRES-QLP's transition condition and mode (0 QR then
  /// QLP once the condition estimate reaches c, 1 QR only, 2 QLP only). As in pede, the
  /// transition condition is capped at 1e7, also for mode 1.
  double minres_transition_condition = 1.0e7;
  int minres_mode = 0;
  /// sparseMINRES (and pede's default): the global matrix in sparse storage, where the backend has
  /// it; fullMINRES keeps it dense.
  bool sparse_storage = true;
  /// gpede's extension: parameters with one value per interval of record times.
  TimeDependenceSpec time_dependence;

  /// Messages for keywords pede knows that gpede does not implement, MINRES run as an exact
  /// method, and similar: each names the file and line.
  std::vector<std::string> warnings;
};

/// Reads a steering file. Paths in it are resolved against the steering file's folder first, then
/// against the working directory. Throws InputError naming the file and line for an unknown
/// keyword, a missing file, malformed numbers, a block line outside a block.
Steering parse_steering(const std::filesystem::path& steering_file);

/// Reads a text file of Parameter/Constraint/Measurement blocks into `steering` (used by
/// parse_steering for every text file it names; public for frameworks that build a Steering in code).
void parse_text_file(const std::filesystem::path& text_file, Steering& steering);

/// pede's approximate keyword match (symmetric 80 %): true if `text` may stand for `keyword`.
bool keyword_matches(const std::string& keyword, const std::string& text);

const char* method_name(Method method);

/// The steering as a pede steering file that parse_steering (and pede) reads back into the same
/// Steering: the binary files by absolute path under the format keywords they need, the options
/// that differ from pede's defaults, and the Parameter, Constraint and Measurement blocks of its
/// text files written in the file itself. Throws InputError for a file name pede could not read
/// from a steering file.
std::string steering_text(const Steering& steering);
/// steering_text written to `file`, whole or not at all.
void write_steering(const std::filesystem::path& file, const Steering& steering);

}  // namespace gpede
