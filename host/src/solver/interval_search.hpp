// `intervals auto`: interval starts chosen from the data by dynamic programming over the runs
// (interval_search.cpp).
#pragma once

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

/// Covariance blocks per run up to this many run-parameter pairs; beyond, each parameter alone.
inline constexpr std::int64_t kIntervalFullBlockLimit = 3000;

/// One run's time-dependent parameters from the solution with every run its own interval: their
/// indices (0 to parameters - 1), values, labels and covariance (row-major, index.size()^2).
struct RunStatistics {
  std::vector<std::int64_t> index;
  std::vector<double> value;
  std::vector<std::int32_t> label;
  std::vector<double> covariance;
};

struct IntervalChoice {
  std::vector<std::size_t> starts;  ///< runs (0-based, in time order) where an interval starts
  std::vector<double> gains;        ///< per start: chi2 that joining its interval with the one before would cost
  double objective = 0.0;           ///< sum of the intervals' costs plus the penalties
};

/// The starts that minimise the sum over intervals of cost(interval) + penalty per start (exact,
/// O(runs^2) costs); full_blocks: each run's covariance block, else its diagonal alone.
IntervalChoice choose_interval_starts(const std::vector<RunStatistics>& runs, std::int64_t parameters, double penalty,
                                      bool full_blocks);

/// solve() for a steering with `intervals auto`: the search, then the solution with its starts.
SolveResult solve_with_interval_search(const Steering& steering, const SolverOptions& options, RecordSource* source);

}  // namespace gpede::detail
