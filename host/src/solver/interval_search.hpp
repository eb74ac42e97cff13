// `intervals auto`: interval starts chosen from the data by dynamic programming over the runs
// (interval_search.cpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "gpede/solver.hpp"
#include "gpede/steering.hpp"

namespace gpede::detail {

/// Default penalty per interval start: the chi2 that a start where nothing changes exceeds with
/// probability kIntervalFalseStartProbability / (runs - 1), i.e. the chi2 quantile of `parameters`
/// degrees of freedom at 1 - 0.01 / (runs - 1) (Wilson-Hilferty): at most about one spurious start
/// in a hundred searches over runs where nothing moves.
inline constexpr double kIntervalFalseStartProbability = 0.01;
double default_interval_penalty(std::int64_t parameters, std::int64_t runs);

/// Blocks per run (p x p) up to this many run-parameter pairs; beyond, each parameter alone.
inline constexpr std::int64_t kIntervalFullBlockLimit = 3000;

/// One run's statistics of the time-dependent parameters, in information form: with the other
/// parameters held at a shared solution x0, the run's data move its time-dependent parameters by
/// d = H^+ g at a chi2 gain of g^T H^+ g. index: the parameters the run saw (0 to parameters - 1);
/// weight: H, index.size()^2 (row-major) with full blocks, else its diagonal (index.size());
/// score: g; explained: g^T H^+ g (with each parameter alone, sum g_i^2 / H_ii).
struct RunStatistics {
  std::vector<std::int64_t> index;
  std::vector<double> weight;
  std::vector<double> score;
  double explained = 0.0;
};

/// g^T A^+ g of a symmetric k x k matrix A (row-major): by Cholesky where A is clearly positive
/// definite, else over its eigenvectors with eigenvalues above 1e-12 of the largest.
double inverse_form(std::vector<double> a, const std::vector<double>& g, int k);

struct IntervalChoice {
  std::vector<std::size_t> starts;  ///< runs (0-based, in time order) where an interval starts
  std::vector<double> gains;        ///< per start: chi2 that joining its interval with the one before would cost
  double objective = 0.0;           ///< sum of the intervals' costs plus the penalties
};

/// The starts that minimise the sum over intervals of cost(interval) + penalty per start (exact,
/// O(runs^2) costs); full_blocks: each run's weight is a p x p block, else its diagonal.
IntervalChoice choose_interval_starts(const std::vector<RunStatistics>& runs, std::int64_t parameters, double penalty,
                                      bool full_blocks);

/// The distinct record times of a source (ascending), the time-dependent labels its records name
/// and the largest label they carry (templates folded); with processes, of all of them. A record
/// without a time is an InputError naming it.
struct TimeScan {
  std::vector<std::int64_t> times;
  std::vector<std::int32_t> labels;
  std::int64_t largest_label = 0;
};
TimeScan scan_times(const Steering& steering, RecordSource& source, ProcessGroup* processes);

/// One pass over the source at the values of `shared` (a solution with one interval): per run of
/// `scan` (in its order), the block of scan.labels in the accepted records' Schur complements, H_r,
/// and their b, g_r (the fit options of shared's last pass; summed over processes). Up to
/// `threads` workers with a copy of the statistics each, fewer where the copies would take more
/// than a quarter of the available memory; more than that for one copy is a RuntimeError. `stop`
/// (may be null) ends it with Interrupted between batches.
std::vector<RunStatistics> run_statistics(const Steering& steering, RecordSource& source, const SolveResult& shared,
                                          const TimeScan& scan, bool full_blocks, int threads,
                                          ProcessGroup* processes, const std::atomic<bool>* stop = nullptr);

/// solve() for a steering with `intervals auto`: the search, then the solution with its starts.
SolveResult solve_with_interval_search(const Steering& steering, const SolverOptions& options, RecordSource* source);

}  // namespace gpede::detail
