// `intervals auto`: the interval starts chosen from the data. One solution with every run its own
// interval gives each run's time-dependent values x_r and their covariance C_r; the chi2 that
// joining runs i..j-1 into one interval costs, with the other parameters held, is
//   cost(i, j) = sum_r x_r^T W_r x_r - (sum_r W_r x_r)^T (sum_r W_r)^-1 (sum_r W_r x_r),  W_r = C_r^-1,
// from prefix sums over the runs in time order. Dynamic programming over the runs then finds the
// starts that minimise the sum of the intervals' costs plus a penalty per start, exactly; the run
// is solved again with those starts.
#include "interval_search.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <string>

#include "gpede/detail/byte_pack.hpp"
#include "gpede/error.hpp"
#include "gpede/record_time.hpp"
#include "solver_internal.hpp"
#include "time_dependence.hpp"

namespace gpede::detail {
namespace {

using Clock = std::chrono::steady_clock;

/// The upper quantile of the standard normal distribution: z with P(Z > z) = q (bisection on erfc).
double normal_upper_quantile(double q) {
  double lo = -40.0, hi = 40.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (0.5 * std::erfc(mid / std::sqrt(2.0)) > q) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return 0.5 * (lo + hi);
}

}  // namespace

double default_interval_penalty(std::int64_t parameters, std::int64_t runs) {
  const double p = static_cast<double>(std::max<std::int64_t>(parameters, 1));
  const double candidates = static_cast<double>(std::max<std::int64_t>(runs - 1, 1));
  const double z = normal_upper_quantile(kIntervalFalseStartProbability / candidates);
  // Wilson-Hilferty: chi2_p quantile from the normal one.
  const double a = 2.0 / (9.0 * p);
  return p * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

namespace {

extern "C" void dsyev_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                       double* work, const int* lwork, int* info);

/// A symmetric n x n matrix (column-major, overwritten by its eigenvectors) and its eigenvalues.
std::vector<double> symmetric_eigen(std::vector<double>& a, int n) {
  std::vector<double> w(static_cast<std::size_t>(n));
  if (n == 0) return w;
  const char jobz = 'V', uplo = 'L';
  int lwork = -1, info = 0;
  double query = 0.0;
  dsyev_(&jobz, &uplo, &n, a.data(), &n, w.data(), &query, &lwork, &info);
  lwork = std::max(1, static_cast<int>(query));
  std::vector<double> work(static_cast<std::size_t>(lwork));
  dsyev_(&jobz, &uplo, &n, a.data(), &n, w.data(), work.data(), &lwork, &info);
  if (info != 0) throw RuntimeError("interval search: dsyev failed (info " + std::to_string(info) + ")");
  return w;
}

extern "C" void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);

/// The quadratic form b^T A^-1 b of a symmetric A: by Cholesky where A is clearly positive
/// definite, else over its eigenvectors (eigenvalues below 1e-12 of the largest left out).
double inverse_form(std::vector<double> a, const std::vector<double>& b, int n) {
  if (n == 0) return 0.0;
  {
    std::vector<double> l(a);
    const char uplo = 'L';
    int info = 0;
    dpotrf_(&uplo, &n, l.data(), &n, &info);
    double smallest = INFINITY, largest = 0.0;
    for (int i = 0; i < n && info == 0; ++i) {
      const double d = l[static_cast<std::size_t>(i) * n + i];
      smallest = std::min(smallest, d);
      largest = std::max(largest, d);
    }
    if (info == 0 && smallest * smallest > 1e-10 * largest * largest) {
      // y = L^-1 b; the form is |y|^2
      std::vector<double> y(b.begin(), b.begin() + n);
      double form = 0.0;
      for (int i = 0; i < n; ++i) {
        double v = y[i];
        for (int k = 0; k < i; ++k) v -= l[static_cast<std::size_t>(k) * n + i] * y[k];
        y[i] = v / l[static_cast<std::size_t>(i) * n + i];
        form += y[i] * y[i];
      }
      return form;
    }
  }
  const std::vector<double> w = symmetric_eigen(a, n);
  double top = 0.0;
  for (const double x : w) top = std::max(top, std::abs(x));
  double form = 0.0;
  for (int k = 0; k < n; ++k) {
    if (!(w[k] > 1e-12 * top)) continue;
    double projected = 0.0;
    for (int i = 0; i < n; ++i) projected += a[static_cast<std::size_t>(k) * n + i] * b[i];
    form += projected * projected / w[k];
  }
  return form;
}

}  // namespace

IntervalChoice choose_interval_starts(const std::vector<RunStatistics>& runs, std::int64_t parameters, double penalty,
                                      bool full_blocks) {
  const std::size_t n_runs = runs.size();
  const int p = static_cast<int>(parameters);
  const std::size_t pp = static_cast<std::size_t>(p), block = full_blocks ? pp * pp : pp;
  // Prefix sums over the runs: S_W (p x p column-major, or its diagonal), S_b = sum W x,
  // S_q = sum x^T W x.
  std::vector<double> sum_w((n_runs + 1) * block, 0.0), sum_b((n_runs + 1) * pp, 0.0), sum_q(n_runs + 1, 0.0);
  for (std::size_t r = 0; r < n_runs; ++r) {
    const RunStatistics& s = runs[r];
    const int k = static_cast<int>(s.index.size());
    // W = C^-1 over the eigenvectors with positive eigenvalues (a run whose parameters are not all
    // determined contributes where they are).
    // each parameter alone: W = diag(1 / C_ii), kept as its diagonal (w[i])
    std::vector<double> w(full_blocks ? static_cast<std::size_t>(k) * k : static_cast<std::size_t>(k), 0.0);
    if (!full_blocks) {
      for (int i = 0; i < k; ++i) {
        const double c = s.covariance[static_cast<std::size_t>(i) * k + i];
        if (c > 0.0) w[i] = 1.0 / c;
      }
    } else {
      std::vector<double> vectors(s.covariance);
      const std::vector<double> lambda = symmetric_eigen(vectors, k);
      double top = 0.0;
      for (const double x : lambda) top = std::max(top, std::abs(x));
      for (int e = 0; e < k; ++e) {
        if (!(lambda[e] > 1e-12 * top)) continue;
        const double* v = vectors.data() + static_cast<std::size_t>(e) * k;
        for (int j = 0; j < k; ++j) {
          for (int i = 0; i < k; ++i) w[static_cast<std::size_t>(j) * k + i] += v[i] * v[j] / lambda[e];
        }
      }
    }
    double* sw = sum_w.data() + (r + 1) * block;
    double* sb = sum_b.data() + (r + 1) * pp;
    std::copy(sum_w.begin() + r * block, sum_w.begin() + (r + 1) * block, sw);
    std::copy(sum_b.begin() + r * pp, sum_b.begin() + (r + 1) * pp, sb);
    double q = 0.0;
    for (int i = 0; i < k; ++i) {
      double wx = 0.0;
      if (full_blocks) {
        for (int j = 0; j < k; ++j) wx += w[static_cast<std::size_t>(j) * k + i] * s.value[j];
      } else {
        wx = w[i] * s.value[i];
      }
      sb[s.index[i]] += wx;
      q += s.value[i] * wx;
      if (!full_blocks) {
        sw[s.index[i]] += w[i];
        continue;
      }
      for (int j = 0; j < k; ++j) {
        sw[static_cast<std::size_t>(s.index[j]) * pp + s.index[i]] += w[static_cast<std::size_t>(j) * k + i];
      }
    }
    sum_q[r + 1] = sum_q[r] + q;
  }
  // cost(i, j): runs i..j-1 as one interval.
  std::vector<double> w(block), b(pp);
  const auto cost = [&](std::size_t i, std::size_t j) {
    for (std::size_t e = 0; e < pp; ++e) b[e] = sum_b[j * pp + e] - sum_b[i * pp + e];
    for (std::size_t e = 0; e < block; ++e) w[e] = sum_w[j * block + e] - sum_w[i * block + e];
    const double q = sum_q[j] - sum_q[i];
    double explained = 0.0;
    if (full_blocks) {
      explained = inverse_form(w, b, p);
    } else {
      for (std::size_t e = 0; e < pp; ++e) {
        if (w[e] > 0.0) explained += b[e] * b[e] / w[e];
      }
    }
    return std::max(q - explained, 0.0);
  };
  std::vector<double> best(n_runs + 1, 0.0);
  std::vector<std::size_t> from(n_runs + 1, 0);
  for (std::size_t j = 1; j <= n_runs; ++j) {
    best[j] = cost(0, j);
    from[j] = 0;
    for (std::size_t i = 1; i < j; ++i) {
      const double c = best[i] + cost(i, j) + penalty;
      if (c < best[j]) {
        best[j] = c;
        from[j] = i;
      }
    }
  }
  IntervalChoice choice;
  std::vector<std::size_t> starts;
  for (std::size_t j = n_runs; from[j] > 0; j = from[j]) starts.push_back(from[j]);
  std::reverse(starts.begin(), starts.end());
  // Each start's gain: what joining its interval with the one before would cost.
  for (std::size_t s = 0; s < starts.size(); ++s) {
    const std::size_t before = s == 0 ? 0 : starts[s - 1];
    const std::size_t after = s + 1 < starts.size() ? starts[s + 1] : n_runs;
    choice.starts.push_back(starts[s]);
    choice.gains.push_back(cost(before, after) - cost(before, starts[s]) - cost(starts[s], after));
  }
  choice.objective = best[n_runs];
  return choice;
}

namespace {

/// The distinct record times of the source (after templates) and the time-dependent labels the
/// records name; with processes, of all of them.
struct TimeScan {
  std::vector<std::int64_t> times;
  std::vector<std::int32_t> labels;
};

TimeScan scan_times(const Steering& steering, RecordSource& source, ProcessGroup* processes) {
  Steering plain = steering;  // templates only: the labels as the records name them
  plain.time_dependence.labels.clear();
  plain.time_dependence.boundaries.clear();
  plain.time_dependence.automatic = false;
  IntervalSource folded(source, plain);
  const TimeDependenceSpec& td = steering.time_dependence;
  std::set<std::int64_t> times;
  std::set<std::int32_t> labels;
  RecordBatch batch;
  folded.rewind();
  std::string missing;
  while (true) {
    batch.clear();
    if (folded.next(batch, 4096) == 0) break;
    for (std::size_t r = 0; r < batch.n_records(); ++r) {
      const std::int64_t t = r < batch.record_time.size() ? batch.record_time[r] : kNoTime;
      if (t == kNoTime && missing.empty()) missing = record_in_files(batch, r, steering);
      times.insert(t);
    }
    for (const std::int32_t label : batch.global_label) {
      if (td.varies(label)) labels.insert(label);
    }
  }
  if (processes != nullptr && processes->size() > 1) {
    Packer mine;
    mine.put(std::vector<std::int64_t>(times.begin(), times.end()));
    mine.put(std::vector<std::int32_t>(labels.begin(), labels.end()));
    mine.put(missing);
    for (const auto& bytes : processes->gather(mine.bytes())) {
      Unpacker u(bytes);
      for (const auto t : u.get_vector<std::int64_t>()) times.insert(t);
      for (const auto l : u.get_vector<std::int32_t>()) labels.insert(l);
      const std::string other = u.get_string();
      if (missing.empty()) missing = other;
    }
  }
  if (times.count(kNoTime) > 0) {
    throw_without_time(missing.empty() ? std::string("a record") : missing,
                       "`intervals auto` chooses intervals from the records' times");
  }
  return {std::vector<std::int64_t>(times.begin(), times.end()), std::vector<std::int32_t>(labels.begin(), labels.end())};
}

}  // namespace

SolveResult solve_with_interval_search(const Steering& steered, const SolverOptions& options, RecordSource* source) {
  Steering steering = steered;  // one stride for both solutions
  resolve_label_stride(steering);
  const auto solve_fixed = [](const Steering& s, const SolverOptions& o, RecordSource* r) { return solve(s, o, r); };
  const auto t0 = Clock::now();
  const TimeDependenceSpec& td = steering.time_dependence;
  std::vector<std::string> log_lines;
  const auto say = [&](const std::string& line) {
    log_lines.push_back(line);
    if (options.log) options.log(line);
  };
  ProcessGroup* const processes = options.processes != nullptr && options.processes->size() > 1 ? options.processes : nullptr;
  std::unique_ptr<RecordSource> owned;
  if (source == nullptr) {
    owned = open_binary_files(steering, options.processes);
    source = owned.get();
  }
  const TimeScan scan = scan_times(steering, *source, processes);
  const std::int64_t n_runs = static_cast<std::int64_t>(scan.times.size());
  const std::int64_t n_labels = static_cast<std::int64_t>(scan.labels.size());

  // Every run its own interval.
  Steering fine = steering;
  fine.time_dependence.automatic = false;
  fine.time_dependence.boundaries.assign(scan.times.begin() + std::min<std::int64_t>(1, n_runs), scan.times.end());
  check_time_dependence(fine);
  const std::int64_t stride = fine.time_dependence.label_stride();
  const bool full_blocks = n_runs * n_labels <= kIntervalFullBlockLimit;
  SolverOptions fine_options = options;
  fine_options.log = nullptr;
  fine_options.progress = nullptr;
  fine_options.covariance_all = false;
  fine_options.covariance_labels.clear();
  if (full_blocks) {
    for (std::int64_t r = 0; r < n_runs; ++r) {
      for (const std::int32_t label : scan.labels) {
        fine_options.covariance_labels.push_back(static_cast<std::int32_t>(label + r * stride));
      }
    }
  }
  say(" Interval search: " + std::to_string(n_runs) + " runs, " + std::to_string(n_labels) +
      " time-dependent parameters; first a solution with every run its own interval");
  const SolveResult fine_result = solve_fixed(fine, fine_options, source);
  if (fine_result.exit_code >= 10) {
    SolveResult failed = fine_result;
    failed.log.insert(failed.log.begin(), log_lines.begin(), log_lines.end());
    return failed;
  }

  // Per run: the values and covariance of its time-dependent parameters.
  std::map<std::int32_t, std::int64_t> index_of;
  for (std::size_t i = 0; i < scan.labels.size(); ++i) index_of[scan.labels[i]] = static_cast<std::int64_t>(i);
  std::map<std::int32_t, std::size_t> block_row;
  for (std::size_t i = 0; i < fine_result.covariance.labels.size(); ++i) block_row[fine_result.covariance.labels[i]] = i;
  const std::size_t block_n = fine_result.covariance.labels.size();
  std::vector<RunStatistics> runs(static_cast<std::size_t>(n_runs));
  for (const ParameterResult& p : fine_result.parameters) {
    if (!p.variable) continue;
    const std::int64_t r = p.label / stride;
    const auto base = static_cast<std::int32_t>(p.label % stride);
    const auto found = index_of.find(base);
    if (found == index_of.end() || r >= n_runs) continue;
    RunStatistics& s = runs[static_cast<std::size_t>(r)];
    s.index.push_back(found->second);
    s.value.push_back(p.value);
    s.label.push_back(p.label);
  }
  bool have_errors = true;
  for (RunStatistics& s : runs) {
    const std::size_t k = s.index.size();
    s.covariance.assign(k * k, 0.0);
    for (std::size_t i = 0; i < k; ++i) {
      for (std::size_t j = 0; j < k; ++j) {
        const auto ri = block_row.find(s.label[i]), rj = block_row.find(s.label[j]);
        if (ri != block_row.end() && rj != block_row.end()) {
          s.covariance[i * k + j] = fine_result.covariance.matrix[ri->second * block_n + rj->second];
        } else if (i == j) {
          const ParameterResult* p = nullptr;
          const auto it = std::lower_bound(fine_result.parameters.begin(), fine_result.parameters.end(), s.label[i],
                                           [](const ParameterResult& a, std::int32_t l) { return a.label < l; });
          if (it != fine_result.parameters.end() && it->label == s.label[i]) p = &*it;
          if (p == nullptr || !(p->error > 0.0)) {
            have_errors = false;
          } else {
            s.covariance[i * k + j] = p->error * p->error;
          }
        }
      }
    }
  }
  if (!full_blocks && !have_errors) {
    throw InputError(steering.steering_file.string() + ": `intervals auto` with " + std::to_string(n_runs) + " runs of " +
                         std::to_string(n_labels) + " time-dependent parameters needs the parameters' errors per run "
                         "(method inversion or diagonalization)",
                     exit_code::steering_error);
  }
  const bool default_penalty = !(td.penalty > 0.0);
  const double penalty = default_penalty ? default_interval_penalty(n_labels, n_runs) : td.penalty;
  const auto t_search = Clock::now();
  const IntervalChoice choice = choose_interval_starts(runs, n_labels, penalty, full_blocks);
  const double search_s = std::chrono::duration<double>(Clock::now() - t_search).count();
  IntervalSearchResult report;
  report.runs = n_runs;
  report.parameters = n_labels;
  report.penalty = penalty;
  report.penalty_default = default_penalty;
  report.full_blocks = full_blocks;
  report.fine_chi2 = fine_result.chi2_sum;
  report.search_s = search_s;
  for (std::size_t s = 0; s < choice.starts.size(); ++s) {
    report.starts.push_back(scan.times[choice.starts[s]]);
    report.gains.push_back(choice.gains[s]);
  }
  std::string starts_text;
  for (std::size_t s = 0; s < report.starts.size(); ++s) {
    char gain[64];
    std::snprintf(gain, sizeof gain, "%.1f", report.gains[s]);
    starts_text += " " + time_text(report.starts[s]) + " (chi2 gain " + gain + ")";
  }
  char penalty_text[64];
  std::snprintf(penalty_text, sizeof penalty_text, "%.1f", penalty);
  say(" Interval search: penalty " + std::string(penalty_text) + " in chi2 per start" +
      (default_penalty ? " (default)" : "") + (full_blocks ? "" : ", each parameter alone (no covariance blocks)") +
      "; " + (report.starts.empty() ? std::string("no start: one interval") : "starts at" + starts_text) + " (" +
      std::to_string(search_s) + " s)");

  Steering chosen = steering;
  chosen.time_dependence.automatic = false;
  chosen.time_dependence.boundaries = report.starts;
  SolveResult result = solve_fixed(chosen, options, source);
  result.interval_search = std::move(report);
  result.log.insert(result.log.begin(), log_lines.begin(), log_lines.end());
  result.figures.total_s = std::chrono::duration<double>(Clock::now() - t0).count();
  return result;
}

}  // namespace gpede::detail
