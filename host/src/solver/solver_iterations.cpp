// The iterations of a solution, with pede's rules: each pass over the data gives the objective
// F, its gradient b and (when asked) the global matrix; each solution gives a Newton step that
// is taken whole or searched along (line search); the chi2 cut factor follows its schedule from
// pass to pass; the iterations end when the expected decrease is below the limit, after the
// requested number of solutions once the cut factor has come down to 1, or on a warning that
// enforces a single step.
//
// The order of passes and solutions follows pede's solution loop so that the same steering gives
// the same sequence of steps: a pass, then a solution, then passes of the line search (or one pass
// at the full step), then the convergence test, then the next solution with the same matrix (or a
// new one in the first `matiter` iterations).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <sstream>

#include "gpede/detail/factor_report_text.hpp"
#include "gpede/detail/line_search.hpp"
#include "gpede/error.hpp"
#include "record_printout.hpp"
#include "solver_internal.hpp"

namespace gpede::detail {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// A condition on which pede aborts the iterations (no result files).
struct Abort {
  int code;
  std::string message;
};

// pede's codes for aborts inside the iterations
constexpr int result_has_nan = 25;
constexpr int too_many_rejects = 26;

// Accuracy of the constraints: before the first pass and from then on.
constexpr double initial_feasibility_cut = 1.0e-12;
constexpr double feasibility_cut = 1.0e-6;

std::string format(const char* pattern, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, pattern, value);
  return buffer;
}

class Iterations {
 public:
  Iterations(const Problem& problem, Backend& backend, SolveResult& result, const RunLog& log, RecordPrintout* printout)
      : m_problem(problem),
        m_steering(problem.steering),
        m_backend(backend),
        m_result(result),
        m_log(log),
        m_printout(printout) {
    const ParameterTable& p = problem.parameters;
    m_value = p.start;
    m_setup.n_all = p.size();
    m_setup.n_variable = p.variables();
    m_setup.variable_index = p.variable_index;
    m_setup.fit.hugecut = std::max(1.0, m_steering.hugecut);
    m_setup.fit.dwfractioncut = m_steering.dwfractioncut;
    m_setup.fit.scale_global = m_steering.scale_errors_global;
    m_setup.fit.scale_local = m_steering.scale_errors_local;
    // pede keeps the cut factors in single precision; a first factor below 1 is stored as -1.
    m_cut = static_cast<float>(m_steering.chisqcut1);
    m_cut_next = static_cast<float>(m_steering.chisqcut2);
    m_max_iterations = std::max(1, m_steering.iterations);
    m_matrix_iterations = std::min(m_steering.matrix_iterations, m_max_iterations);
    m_subito = m_steering.subito;
    set_search_settings();
  }

  /// Dependent or empty constraints: one step only, unless `force`.
  void check_constraint_rank() {
    const ConstraintTable& c = m_problem.constraints;
    if (c.rank < c.size() && !m_steering.force && !m_subito) {
      m_subito = true;
      m_log("          --> enforcing SUBITO mode");
    }
  }

  IterationOutcome run();

 private:
  enum class Flow { next, again, end };

  void set_search_settings();
  void data_pass(bool build_matrix);
  void add_host_terms(PassTotals& totals, bool build_matrix);
  Flow solve();
  Flow step_and_search();
  void covariance_block();
  void record_pass(bool build_matrix, Clock::time_point t0);
  bool final_evaluation_is_redundant() const;
  std::int64_t variables() const { return m_problem.parameters.variables(); }
  double variable_value(std::int64_t v) const { return m_value[m_problem.parameters.variable_label[v]]; }
  double dot(const std::vector<double>& a, const std::vector<double>& b) const {
    return std::inner_product(a.begin(), a.end(), b.begin(), 0.0);
  }

  const Problem& m_problem;
  const Steering& m_steering;
  Backend& m_backend;
  SolveResult& m_result;
  const RunLog& m_log;
  RecordPrintout* m_printout;
  IterationOutcome m_out;

  std::vector<double> m_value;  // current parameters, per label
  PassSetup m_setup;
  PassTotals m_pass;            // the last pass, host terms included
  double m_function = 0.0;      // F of the last pass
  bool m_have_pass = false;

  // pede's loop state
  float m_cut = 0.0f;           // chi2 cut factor of the passes of this iteration
  float m_cut_next = 0.0f;      // factor of iteration 1
  int m_iteration = -1;         // solutions so far, minus one (pede's iteration counter)
  int m_last_pass_iteration = -1;
  int m_passes = 0;             // passes over the data
  int m_solution_pass = -1;     // the pass after which the last solution was computed
  int m_matrix_mode = 1;        // 1: pass with matrix and new solution; 0: pass only; -1: solution only
  int m_again = 0;              // repeated "function not decreasing"
  int m_max_iterations = 1;
  int m_matrix_iterations = 0;
  bool m_subito = false;
  double m_feasibility_cut = initial_feasibility_cut;

  // the step of the current iteration
  std::vector<double> m_step;   // per variable
  std::vector<double> m_base;   // parameters (per label) where the step starts
  float m_expected = 0.0f;      // expected decrease b . step (pede's single precision)
  bool m_searching = false;
  bool m_insignificant_step = false;  // |b . step| at the rounding level
  bool m_search_begun = false;
  bool m_first_search = true;
  LineSearch m_search;
  LineSearch::Settings m_first_settings, m_later_settings;
  int m_search_code = -1;
  double m_step_factor = 0.0;
  IterativeSolveInfo m_inner;  // the last solution's MINRES account, until its first pass is recorded
};

void Iterations::set_search_settings() {
  // pede's slope ratio and minimum number of samples: 0.5 and 1 (inversion) or 2 (diagonalization,
  // decomposition) for the first search, 0.5 and 3 after it; the LAPACK methods keep the `wolfe`
  // ratio (0 means 0.9) and 1.
  double ratio_first = 0.5, ratio_later = 0.5;
  int min_first = m_steering.method == Method::inversion ? 1 : 2, min_later = 3;
  if (m_steering.method == Method::minres) {  // "accurate": 0.1, at least 3 and then 4 evaluations
    ratio_first = ratio_later = 0.1;
    min_first = 3;
    min_later = 4;
  }
  if (m_steering.lapack_method) {
    ratio_first = ratio_later = m_steering.wolfe_c2;
    min_first = min_later = 0;
  }
  m_first_settings = LineSearch::make_settings(ratio_first, 10.0, min_first, 10);
  m_later_settings = LineSearch::make_settings(ratio_later, 10.0, min_later, 10);
}

void Iterations::add_host_terms(PassTotals& totals, bool build_matrix) {
  const ParameterTable& p = m_problem.parameters;
  std::vector<std::int64_t> rows, cols;
  std::vector<double> values;
  // Regularisation pulls the parameters to zero with the pre-sigma weights; without it the
  // pre-sigmas only add to the matrix.
  if (m_steering.regularisation) {
    for (std::int64_t v = 0; v < variables(); ++v) {
      const double w = p.prior_weight[v];
      const double x = variable_value(v);
      totals.rhs[v] -= w * x;
      totals.function_value += w * x * x;
    }
  }
  if (build_matrix) {
    for (std::int64_t v = 0; v < variables(); ++v) {
      if (p.prior_weight[v] == 0.0) continue;
      rows.push_back(v);
      cols.push_back(v);
      values.push_back(p.prior_weight[v]);
    }
  }
  for (const MeasurementEquation& e : m_problem.measurements) {
    double residual = -e.value;
    for (const auto& [i, f] : e.terms) residual += f * m_value[i];
    totals.function_value += e.weight * residual * residual;
    for (std::size_t j = 0; j < e.terms.size(); ++j) {
      const auto [i, fj] = e.terms[j];
      const std::int32_t vj = p.variable_index[i];
      if (vj < 0) continue;
      totals.rhs[vj] -= e.weight * residual * fj;
      ++totals.entries_accepted[i];
      if (!build_matrix) continue;
      for (std::size_t k = 0; k <= j; ++k) {
        const auto [l, fk] = e.terms[k];
        const std::int32_t vk = p.variable_index[l];
        if (vk < 0) continue;
        // the same label twice: both cross terms land on its diagonal element
        const double twice = (k != j && vk == vj) ? 2.0 : 1.0;
        rows.push_back(vj);
        cols.push_back(vk);
        values.push_back(twice * e.weight * fj * fk);
      }
    }
  }
  if (build_matrix && !values.empty()) m_backend.add_to_matrix(rows, cols, values);
}

void Iterations::data_pass(bool build_matrix) {
  const auto t0 = Clock::now();
  ++m_passes;
  // A pass of a new iteration moves the cut factor on: the second factor in iteration 1, then its
  // square root, 1 below 1.5 or when nothing was rejected in the pass before.
  const bool new_iteration = m_iteration != m_last_pass_iteration;
  if (new_iteration && m_passes > 1) {
    const std::int64_t rejected_before = m_pass.rejected();
    if (m_iteration == 1) {
      m_cut = m_cut_next;
    } else if (m_iteration >= 1) {
      m_cut = std::sqrt(m_cut);
      if (m_cut != 0.0f && m_cut < 1.5f) m_cut = 1.0f;
      if (m_cut != 0.0f && rejected_before == 0) m_cut = 1.0f;
    }
  }
  m_last_pass_iteration = m_iteration;

  m_setup.build_matrix = build_matrix;
  m_setup.parameter_value = m_value;
  m_setup.fit.chi2_cut_factor = static_cast<double>(m_cut);
  // Down-weighting from the second pass on.
  m_setup.fit.downweight_iterations = m_passes != 1 ? m_steering.outlier_downweighting : 0;
  m_out.downweighting_in_last_pass = m_setup.fit.downweight_iterations > 0;
  if (build_matrix) m_backend.release_factorization();
  // The looks at the records that the backend asks for first (deterministic mode: the columns'
  // bounds; sparse storage: the parameter groups, then the pattern).
  for (int look = 0; build_matrix && m_backend.wants_bounds(); ++look) {
    if (look == 4) throw RuntimeError("the backend asks for more than 4 looks at the records before a pass");
    m_backend.begin_bounds(m_setup);
    m_problem.data.pass(m_problem.labels, [&](const RecordBatch& batch) { m_backend.bound(batch); });
  }
  m_backend.begin_pass(m_setup);
  ProgressMeter* meter = m_problem.data.progress();
  if (meter != nullptr) {
    meter->begin(build_matrix ? Progress::Phase::matrix : Progress::Phase::local_fits, std::max(0, m_iteration),
                 m_problem.data.records_here());
  }
  m_problem.data.pass(m_problem.labels, [&](const RecordBatch& batch) { m_backend.accumulate(batch); });
  PassTotals totals = m_backend.end_pass();
  if (meter != nullptr) meter->finish();
  add_host_terms(totals, build_matrix);
  m_pass = std::move(totals);
  m_function = m_pass.function_value;
  m_have_pass = true;
  if (m_printout != nullptr) {
    m_printout->after_pass(m_problem.data, m_problem.labels, m_problem.parameters, m_setup, m_iteration, new_iteration,
                           m_passes);
  }
  (build_matrix ? m_result.figures.matrix_s : m_result.figures.local_fits_s) += seconds_since(t0);
  m_result.figures.peak_after_passes_bytes = peak_rss_bytes();

  const std::int64_t rejected = m_pass.rejected();
  if (m_passes == 1 && rejected > 0) {
    std::ostringstream s;
    s << " Data rejected in initial loop: " << m_pass.rejected_rank << " (rank deficit/NaN) " << m_pass.rejected_ndf
      << " (Ndf=0) " << m_pass.rejected_huge << " (huge) " << m_pass.rejected_cut + m_pass.rejected_downweight
      << " (large)";
    m_log(s.str());
  }
  record_pass(build_matrix, t0);
  if (3 * rejected > m_problem.records) {
    std::ostringstream s;
    s << " Too many rejects (>33.3%): " << rejected << " of " << m_problem.records << " records in pass " << m_passes
      << ": " << m_pass.rejected_rank << " (rank deficit/NaN) " << m_pass.rejected_ndf << " (Ndf=0) "
      << m_pass.rejected_huge << " (huge) " << m_pass.rejected_cut + m_pass.rejected_downweight << " (large)";
    m_log(s.str());
    throw Abort{too_many_rejects, "Aborted, too many rejects"};
  }

  // Variable parameters with too few entries in accepted fits (pede's second `entries` number).
  const ParameterTable& p = m_problem.parameters;
  std::int64_t low = 0, zero = 0, lowest = -1;
  for (std::int64_t v = 0; v < variables(); ++v) {
    const std::int64_t count = m_pass.entries_accepted[p.variable_label[v]];
    if (count == 0) ++zero;
    if (count < m_steering.entries_accepted) {
      ++low;
      if (lowest < 0 || count < m_pass.entries_accepted[p.variable_label[lowest]]) lowest = v;
    }
  }
  if (low > 0) {
    m_out.low_entries += low;
    m_log(" ... warning ... global parameters with too few (< MREQENA = " + std::to_string(m_steering.entries_accepted) +
          ") accepted entries: " + std::to_string(low) + "; minimum entries: " +
          std::to_string(m_pass.entries_accepted[p.variable_label[lowest]]) + " for label " +
          std::to_string(p.label[p.variable_label[lowest]]));
  }
  if (build_matrix && zero > 0) {
    m_out.rank_defect = zero;
    m_log(" Warning: the rank defect of the symmetric " + std::to_string(variables()) + "-by-" +
          std::to_string(variables()) + " matrix is " + std::to_string(zero) +
          " (should be zero): variable parameters without any accepted entry");
    if (!m_steering.force) {
      m_subito = true;
      m_log("          --> enforcing SUBITO mode");
    }
  }
}

void Iterations::record_pass(bool build_matrix, Clock::time_point t0) {
  IterationRecord rec;
  rec.iteration = std::max(0, m_iteration);
  rec.function_calls = m_passes;
  rec.function_value = m_function;
  rec.expected_decrease = m_iteration >= 0 ? static_cast<double>(m_expected) : 0.0;
  rec.cut_factor = static_cast<double>(m_cut);
  rec.rejects = m_pass.rejected();
  rec.matrix = build_matrix;
  rec.step = m_iteration >= 0 ? m_step_factor : 0.0;
  rec.seconds = seconds_since(t0);
  if (m_inner.iterative) {
    rec.minres_iterations = m_inner.iterations;
    rec.minres_stop = m_inner.stop;
    m_inner = IterativeSolveInfo{};
  }
  m_result.iterations.push_back(rec);
  std::ostringstream line;
  line.precision(10);
  line << " it " << rec.iteration << "  fc " << rec.function_calls << "  F = " << rec.function_value;
  if (m_iteration >= 0) line << "  expected dF = " << rec.expected_decrease << "  step " << rec.step;
  line << "  cut factor = " << rec.cut_factor << "  rejects = " << rec.rejects << (build_matrix ? "  (matrix)" : "");
  m_log.progress(line.str());
}

Iterations::Flow Iterations::solve() {
  ++m_iteration;
  const ParameterTable& p = m_problem.parameters;
  if (m_matrix_mode == 1) {
    if (m_steering.globalcorr) m_out.matrix_diagonal = m_backend.matrix_diagonal();
    FactorOptions options;
    options.method = m_steering.method;
    options.mode = m_steering.constraint_mode;
    options.want_covariance = m_steering.method == Method::inversion || m_steering.method == Method::diagonalization;
    options.eve_count = m_steering.method == Method::diagonalization ? 16 : 0;
    options.solve_singular = true;
    options.minres_tolerance = m_steering.minres_tolerance;
    options.minres_bandwidth = m_steering.minres_bandwidth;
    options.minres_band_skyline = m_steering.minres_band_skyline;
    options.minres_qlp = m_steering.minres_qlp;
    // pede: mode 1 (QR only) transition 1/eps, mode 2 (QLP only) 1; both capped at 1e7 inside.
    options.minres_transition_condition = m_steering.minres_mode == 1   ? 1.0 / std::numeric_limits<double>::epsilon()
                                          : m_steering.minres_mode == 2 ? 1.0
                                                                        : m_steering.minres_transition_condition;
    // pede's limit on ||x||: the number of parameters and multipliers over sqrt(eps).
    options.minres_max_x_norm = static_cast<double>(variables() + m_problem.constraints.system.m) /
                                std::sqrt(std::numeric_limits<double>::epsilon());
    m_problem.data.check_stop();
    ProgressMeter* meter = m_problem.data.progress();
    if (meter != nullptr) meter->begin(Progress::Phase::solving, m_iteration, -1);
    const auto t0 = Clock::now();
    m_out.factorization = m_backend.factorize(m_problem.constraints.system, options);
    m_result.figures.solving_s += seconds_since(t0);
    m_result.figures.peak_after_solving_bytes = peak_rss_bytes();
    if (meter != nullptr) meter->finish();
    m_problem.data.check_stop();
    const FactorReport& report = m_out.factorization;
    if (!report.solvable) throw Abort{exit_code::factorisation_failed, report.message};
    const std::int64_t size = m_steering.constraint_mode == ConstraintMode::elimination
                                  ? variables() - m_problem.constraints.system.m
                                  : variables() + m_problem.constraints.system.m;
    if (report.rank_defect > 0) {
      m_log(" Warning: the rank defect of the symmetric " + std::to_string(size) + "-by-" + std::to_string(size) +
            " matrix is " + std::to_string(report.rank_defect) + " (should be zero).");
      std::string detail = report.message;
      if (!report.weak_indices.empty()) {
        detail += "; labels involved:";
        const std::size_t shown = std::min<std::size_t>(report.weak_indices.size(), 20);
        for (std::size_t k = 0; k < shown; ++k) {
          detail += ' ';
          detail += std::to_string(p.label[p.variable_label[report.weak_indices[k]]]);
        }
        if (shown < report.weak_indices.size()) detail += " ... (" + std::to_string(report.weak_indices.size()) + " in all)";
      }
      m_log("   " + detail);
      m_result.warnings.push_back(detail);
      if (!report.eigenvalues.empty()) {
        std::ostringstream smallest;
        smallest.precision(6);
        smallest << "diagonalization: smallest eigenvalues (ascending):";
        for (std::size_t k = 0; k < std::min<std::size_t>(12, report.eigenvalues.size()); ++k) {
          smallest << ' ' << report.eigenvalues[k];
        }
        smallest << "; largest: " << report.eigenvalues.back();
        m_log("   " + smallest.str());
        m_result.warnings.push_back(smallest.str());
      }
      m_out.rank_defect += report.rank_defect;
      if (!m_steering.force && !m_subito && m_steering.method != Method::diagonalization) {
        m_subito = true;
        m_log("          --> enforcing SUBITO mode");
      }
    } else {
      if (!report.ok) m_log(" Warning: " + report.message);
      if (m_out.rank_defect == 0) m_log(" No rank defect of the symmetric matrix");
    }
  }
  const auto t0 = Clock::now();
  const std::vector<double> residual = m_problem.constraints.applied_residuals(m_value);
  m_step = m_backend.solve(m_pass.rhs, residual);
  m_result.figures.solving_s += seconds_since(t0);
  m_inner = m_backend.last_solve_info();
  if (m_inner.iterative) {
    m_result.minres_iterations += m_inner.iterations;
    std::ostringstream line;
    line.precision(4);
    if (m_inner.qlp) {
      line << " MINRES-QLP: " << m_inner.iterations << " iterations (" << m_inner.qlp_iterations
           << " in the QLP phase), stop code " << m_inner.stop << " (" << m_inner.stop_text
           << "); Anorm = " << m_inner.a_norm << ", Acond = " << m_inner.a_cond << ", rnorm = " << m_inner.r_norm
           << ", Arnorm = " << m_inner.ar_norm << ", xnorm = " << m_inner.y_norm;
    } else {
      line << " MINRES: " << m_inner.iterations << " iterations, stop code " << m_inner.stop << " ("
           << m_inner.stop_text << "); Anorm = " << m_inner.a_norm << ", Acond = " << m_inner.a_cond
           << ", rnorm = " << m_inner.r_norm << ", ynorm = " << m_inner.y_norm;
    }
    m_log(line.str());
    if (!m_inner.note.empty()) {
      m_log(" MINRES: " + m_inner.note);
      m_result.warnings.push_back("MINRES in iteration " + std::to_string(m_iteration) + ": " + m_inner.note);
    }
    if (m_inner.stopped_short()) {
      m_result.warnings.push_back(std::string(m_inner.qlp ? "MINRES-QLP" : "MINRES") + " stopped with code " + std::to_string(m_inner.stop) + " (" +
                                  m_inner.stop_text + ") after " + std::to_string(m_inner.iterations) +
                                  " iterations in iteration " + std::to_string(m_iteration));
    }
  }
  m_out.solved = true;
  m_solution_pass = m_passes;

  // The step made to meet the constraints (to the accuracy of feasibility_cut).
  std::vector<double> trial = m_value;
  for (std::int64_t v = 0; v < variables(); ++v) trial[p.variable_label[v]] += m_step[v];
  make_feasible(m_problem.constraints, p, trial, m_feasibility_cut, m_log);
  m_feasibility_cut = feasibility_cut;
  for (std::int64_t v = 0; v < variables(); ++v) {
    const std::int64_t i = p.variable_label[v];
    m_step[v] = trial[i] - m_value[i];
  }

  const double db = dot(m_step, m_pass.rhs);
  const double db_step = dot(m_step, m_step);
  const double db_rhs = dot(m_pass.rhs, m_pass.rhs);
  m_expected = static_cast<float>(db);
  const double eps = std::numeric_limits<double>::epsilon();
  const double significant = 16.0 * std::sqrt(std::max(db_step, db_rhs)) * eps;
  // A decrease is called negative only beyond pede's bound and beyond 16 eps |F|: an expected
  // change below the rounding of the objective itself has no sign. At a converged point b is the
  // rounding noise of the accumulation, and pede's bound alone lets that noise choose between
  // convergence and "function not decreasing" (exit code 3).
  const double negative = std::max(significant, 16.0 * std::abs(m_function) * eps);
  const int mode = m_steering.line_search;
  const float dflim = static_cast<float>(m_steering.dflim);
  m_searching = mode > 2 || (mode == 2 && m_cut < 2.25f) ||
                (mode == 1 && m_cut < 2.25f && (m_expected <= dflim || m_iteration >= m_max_iterations));
  m_searching = m_searching && db > significant;
  m_insignificant_step = std::abs(db) <= significant;
  m_search_begun = false;
  if (m_out.factorization.negative_pivots > 0) {
    // An indefinite matrix: pede's LDL^T keeps each negative pivot d where 1/d belongs, which
    // turns its step against the gradient by orders of magnitude, so pede stops here on "function
    // not decreasing" and keeps the values it has. The step without those pivots is no better
    // founded; it is not applied either.
    m_log(" Function not decreasing: the matrix has " +
          count_text(m_out.factorization.negative_pivots, "negative pivot") + "; the step is not applied");
    m_out.not_decreasing = true;
    m_log(" ... stopping iterations");
    m_again = -1;
    return Flow::end;
  }
  if (db <= -negative) {
    m_log(" Function not decreasing: " + format("%.6G", db));
    m_out.not_decreasing = true;
    if (db > -1.0e-3) {
      ++m_again;
      if (m_again <= 1) {
        m_log(" ... again matrix calculation");
        m_matrix_mode = 1;
        return Flow::again;
      }
      m_log(" ... aborting iterations");
      return Flow::end;
    }
    m_log(" ... stopping iterations");
    m_again = -1;
    return Flow::end;
  }
  m_again = 0;
  m_matrix_mode = 0;
  return Flow::next;
}

Iterations::Flow Iterations::step_and_search() {
  const ParameterTable& p = m_problem.parameters;
  LineSearch::Outcome outcome = LineSearch::Outcome::evaluate;
  bool searched = false;
  bool skipped = false;  // the pass after the step is left out (final_evaluation_is_redundant)
  if (m_searching) {
    const double slope = -dot(m_pass.rhs, m_step);
    if (!m_search_begun) {
      m_base = m_value;
      outcome = m_search.begin(m_first_search ? m_first_settings : m_later_settings, 0.5 * m_function, slope);
      m_first_search = false;
      m_search_begun = true;
    } else {
      outcome = m_search.next(0.5 * m_function, slope);
    }
    m_step_factor = m_search.step();
    for (std::int64_t v = 0; v < variables(); ++v) {
      const std::int64_t i = p.variable_label[v];
      m_value[i] = m_base[i] + m_step_factor * m_step[v];
    }
    m_search_code = static_cast<int>(outcome);
    searched = true;
  } else {
    m_search_code = 10;
    if (m_passes == m_solution_pass) {
      for (std::int64_t v = 0; v < variables(); ++v) m_value[p.variable_label[v]] += m_step[v];
      m_step_factor = 1.0;
      skipped = final_evaluation_is_redundant();
    }
  }
  for (std::int64_t v = 0; v < variables(); ++v) {
    if (std::isnan(variable_value(v))) throw Abort{result_has_nan, "Aborted, result vector contains NaNs"};
  }
  if (m_subito) {
    m_log(" Subito!     Exit after first step.");
    return Flow::end;
  }
  if (searched && outcome == LineSearch::Outcome::not_descending && m_again <= 0) {
    m_matrix_mode = 1;
    return Flow::again;
  }
  if ((searched && outcome == LineSearch::Outcome::evaluate) || (m_passes == m_solution_pass && !skipped)) {
    return Flow::again;
  }

  // The step is done: log the search, check the constraints, test convergence.
  if (searched) {
    for (const std::string& line : m_search.report()) m_log(line);
  }
  const bool corrected = make_feasible(m_problem.constraints, p, m_value, m_feasibility_cut, m_log);
  const int next_mode = m_iteration < m_matrix_iterations ? 1 : -1;
  if (corrected || m_cut > 1.0f) {
    m_matrix_mode = next_mode;
    return Flow::next;
  }
  if (m_expected <= static_cast<float>(m_steering.dflim)) return Flow::end;
  if (m_iteration >= m_max_iterations) return Flow::end;
  m_matrix_mode = next_mode;
  return Flow::next;
}

// pede passes over the data once more after every step. After a last step whose expected
// decrease is at the rounding level, that pass gives the objective, the gradient, the rejects and
// the entries of the pass before to rounding, and the iterations end after it; gpede leaves it out
// where nothing else would change in it: no new matrix, the same cut factor and down-weighting, no
// record printout.
bool Iterations::final_evaluation_is_redundant() const {
  if (!m_insignificant_step || m_printout != nullptr || m_matrix_mode != 0 || m_passes < 2) return false;
  const int iteration = m_iteration == 0 ? 1 : m_iteration;
  float cut = m_cut;
  if (iteration != m_last_pass_iteration) {
    if (iteration == 1) {
      cut = m_cut_next;
    } else {
      cut = std::sqrt(cut);
      if (cut != 0.0f && cut < 1.5f) cut = 1.0f;
      if (cut != 0.0f && m_pass.rejected() == 0) cut = 1.0f;
    }
  }
  if (cut != m_cut || cut > 1.0f) return false;
  return m_expected <= static_cast<float>(m_steering.dflim) || iteration >= m_max_iterations;
}

IterationOutcome Iterations::run() {
  const ParameterTable& p = m_problem.parameters;
  check_constraint_rank();
  if (!m_steering.no_feasible_start && m_problem.constraints.size() > 0) {
    m_log(" Checking feasibility of parameters:");
    if (make_feasible(m_problem.constraints, p, m_value, initial_feasibility_cut, m_log)) {
      m_log(" Call FEASIB with cut= " + format("%.3G", initial_feasibility_cut) + "   parameters are made feasible");
    } else {
      m_log("    parameters are feasible  (i.e. satisfy constraints)");
    }
  }
  m_feasibility_cut = feasibility_cut;
  try {
    // A generous bound: pede iterates on while the cut factor is above 1 or the constraints need a
    // correction; this only guards against a loop that would never end.
    const int guard = 100 * (m_max_iterations + 10);
    while (true) {
      // pede counts the first solution as iteration 0 until the loop comes round, then as 1.
      if (m_iteration == 0) m_iteration = 1;
      if (m_matrix_mode >= 0) data_pass(m_matrix_mode == 1);
      if (m_matrix_mode == 1 || m_matrix_mode == -1) {
        const Flow flow = solve();
        if (flow == Flow::end) break;
        if (flow == Flow::again) continue;
      }
      const Flow flow = step_and_search();
      if (flow == Flow::end) break;
      if (m_iteration > guard) {
        m_log(" Iterations stopped after " + std::to_string(m_iteration) + " solutions (no convergence)");
        break;
      }
    }
  } catch (const Abort& abort) {
    m_result.exit_code = abort.code;
    m_result.message = abort.message;
    m_out.value = m_value;
    m_out.last_pass = m_pass;
    return m_out;
  }
  m_result.passes = m_passes;
  m_out.value = m_value;
  m_out.last_pass = m_pass;
  if (m_out.solved && (m_steering.method == Method::inversion || m_steering.method == Method::diagonalization)) {
    const auto t0 = Clock::now();
    m_out.covariance_diagonal = m_backend.covariance_diagonal();
    m_result.figures.solving_s += seconds_since(t0);
  }
  if (m_out.solved && (m_problem.covariance_all ||
                       (m_problem.covariance_labels != nullptr && !m_problem.covariance_labels->empty()))) {
    covariance_block();
  }
  return m_out;
}

/// SolverOptions::covariance_labels (or all variables) from the final factorisation: column j of
/// the covariance V is the step for b = e_j with the constraints' residual zero (dp = V b). With
/// MINRES each column is one more MINRES solution, to the run's tolerance.
void Iterations::covariance_block() {
  const ParameterTable& table = m_problem.parameters;
  std::vector<std::int64_t> variables;
  CovarianceBlock& block = m_result.covariance;
  if (m_problem.covariance_all) {
    for (std::int64_t v = 0; v < table.variables(); ++v) {
      variables.push_back(v);
      block.labels.push_back(table.label[table.variable_label[v]]);
    }
  } else {
    std::vector<std::int32_t> missing, fixed;
    for (const std::int32_t label : *m_problem.covariance_labels) {
      const auto it = std::lower_bound(table.label.begin(), table.label.end(), label);
      if (it == table.label.end() || *it != label) {
        missing.push_back(label);
        continue;
      }
      const std::int32_t v = table.variable_index[it - table.label.begin()];
      if (v < 0) {
        fixed.push_back(label);
        continue;
      }
      variables.push_back(v);
      block.labels.push_back(label);
    }
    const auto say = [&](const std::vector<std::int32_t>& labels, const char* why) {
      if (labels.empty()) return;
      std::string text = "covariance block: " + std::to_string(labels.size()) + " label(s) " + why + " left out:";
      for (std::size_t i = 0; i < labels.size() && i < 10; ++i) text += " " + std::to_string(labels[i]);
      if (labels.size() > 10) text += " ...";
      m_result.warnings.push_back(text);
      m_log("warning: " + text);
    };
    say(missing, "not in the run");
    say(fixed, "that are fixed");
  }
  const auto t0 = Clock::now();
  const std::size_t k = variables.size();
  block.matrix.assign(k * k, 0.0);
  std::vector<double> unit(static_cast<std::size_t>(table.variables()), 0.0);
  std::int64_t iterations = 0, unconverged = 0;
  for (std::size_t j = 0; j < k; ++j) {
    m_problem.data.check_stop();
    unit[variables[j]] = 1.0;
    const std::vector<double> column = m_backend.solve(unit, {});
    unit[variables[j]] = 0.0;
    for (std::size_t i = 0; i < k; ++i) block.matrix[i * k + j] = column[variables[i]];
    const IterativeSolveInfo info = m_backend.last_solve_info();
    if (info.iterative) {
      iterations += info.iterations;
      if (info.stopped_short()) ++unconverged;
    }
  }
  if (unconverged > 0) {
    m_result.warnings.push_back("covariance block: " + std::to_string(unconverged) + " of " + std::to_string(k) +
                                " MINRES solutions stopped short of the tolerance (iteration limit or "
                                "ill-conditioning); their columns are approximate");
    m_log("warning: " + m_result.warnings.back());
  }
  // Symmetric by construction; averaged so that rounding leaves it exactly symmetric.
  for (std::size_t i = 0; i < k; ++i) {
    for (std::size_t j = i + 1; j < k; ++j) {
      const double mean = 0.5 * (block.matrix[i * k + j] + block.matrix[j * k + i]);
      block.matrix[i * k + j] = block.matrix[j * k + i] = mean;
    }
  }
  m_result.figures.solving_s += seconds_since(t0);
  m_log("covariance block: " + std::to_string(k) + " x " + std::to_string(k) + " from " + std::to_string(k) +
        " solutions in " + std::to_string(seconds_since(t0)) + " s" +
        (iterations > 0 ? " (" + std::to_string(iterations) + " MINRES iterations)" : std::string()));
}

}  // namespace

IterationOutcome iterate(const Problem& problem, Backend& backend, SolveResult& result, const RunLog& log,
                         RecordPrintout* printout) {
  Iterations iterations(problem, backend, result, log, printout);
  return iterations.run();
}

void set_end_code(const Problem& problem, const IterationOutcome& outcome, SolveResult& result, const RunLog& log) {
  const Steering& s = problem.steering;
  const PassTotals& pass = outcome.last_pass;
  const ConstraintTable& constraints = problem.constraints;
  result.chi2_sum = pass.function_value;
  result.ndf_sum = pass.ndf_sum;
  result.mean_weight = pass.ndf_sum > 0 ? pass.weighted_ndf_sum / static_cast<double>(pass.ndf_sum) : 1.0;
  const double ndf = static_cast<double>(result.ndf_sum - result.nfgb);
  result.chi2_ndf = ndf > 0.0 ? result.chi2_sum / result.mean_weight / ndf : 0.0;
  result.records_used = pass.accepted;
  result.records_rejected = pass.rejected();
  result.rejected_rank = pass.rejected_rank;
  result.rejected_ndf = pass.rejected_ndf;
  result.rejected_huge = pass.rejected_huge;
  result.rejected_large = pass.rejected_cut + pass.rejected_downweight;
  if (result.exit_code >= 10) return;

  // pede's warnings: chi2/ndf (corrected for down-weighting) outside 0.90..1.10 in percent,
  // rejects above 1 % of the records, empty constraints (1); too few accepted entries (2); a rank
  // defect of the constraints or of the matrix, a function that did not decrease (3).
  float ratio = static_cast<float>(result.chi2_ndf);
  if (result.passes != 1 && s.outlier_downweighting != 0) {
    ratio = ratio / 0.9326f;
    result.chi2_ndf_downweighting = ratio;
  }
  const long ratio_percent = ndf > 0.0 ? std::lround(100.0f * ratio) : 0;
  const long reject_permyriad =
      std::lround(10000.0f * static_cast<float>(result.records_rejected) / static_cast<float>(problem.records));
  const bool warn_measurements = ratio_percent < 90 || ratio_percent > 110 || reject_permyriad > 100 || constraints.empty != 0;
  const bool warn_entries = outcome.low_entries != 0;
  const bool warn_matrix = constraints.rank < constraints.size() || outcome.not_decreasing || outcome.rank_defect != 0;

  auto note = [&](const std::string& line) { log(line); };
  char buffer[200];
  if (ratio_percent < 90 || ratio_percent > 110) {
    std::snprintf(buffer, sizeof buffer, "        Chi^2/Ndf = %7.2f  (should be close to 1)", 0.01 * ratio_percent);
    note(buffer);
    std::snprintf(buffer, sizeof buffer, "        => multiply all input standard deviations by factor %7.2f",
                  0.01 * std::lround(100.0f * std::sqrt(ratio)));
    note(buffer);
  }
  if (reject_permyriad > 100) {
    std::snprintf(buffer, sizeof buffer, "        Fraction of rejects = %7.2f %%  (should be far below 1 %%)",
                  0.01 * reject_permyriad);
    note(buffer);
  }
  if (outcome.not_decreasing) note("        Matrix not positiv definite (function not decreasing)");
  if (outcome.rank_defect != 0) note("        Rank defect = " + std::to_string(outcome.rank_defect) + "  for global matrix, should be 0");
  if (constraints.rank < constraints.size()) {
    note("        Rank defect = " + std::to_string(constraints.size() - constraints.rank) +
         "  for constraint equations, should be 0");
  }
  if (constraints.empty != 0) note("        Number of empty constraints = " + std::to_string(constraints.empty) + ", should be 0");
  if (outcome.low_entries != 0) {
    note("        Possible rank defects = " + std::to_string(outcome.low_entries) + "  for global vector (too few entries)");
  }
  if (warn_matrix) {
    result.exit_code = 3;
    result.message = "Ended with severe warnings (bad global matrix)";
  } else if (warn_entries) {
    result.exit_code = 2;
    result.message = "Ended with severe warnings (insufficient measurements)";
  } else if (warn_measurements) {
    result.exit_code = 1;
    result.message = "Ended with warnings (bad measurements)";
  } else {
    result.exit_code = 0;
    result.message = "Ended normally";
  }
}

}  // namespace gpede::detail
