// `intervals auto`: the interval starts chosen from the data. A first solution gives every
// time-dependent parameter one value for all runs (x0). One more pass over the records at x0 keeps,
// per run r, the time-dependent block of the records' Schur complements H_r and their b, g_r: with
// the other parameters held at x0, the chi2 that one common correction for runs i..j-1 gains is
//   explained(i, j) = (sum_r g_r)^T (sum_r H_r)^+ (sum_r g_r),
// and the chi2 that joining them into one interval costs against each run alone is
//   cost(i, j) = sum_r g_r^T H_r^+ g_r - explained(i, j),
// from prefix sums over the runs in time order. Dynamic programming over the runs then finds the
// starts that minimise the sum of the intervals' costs plus a penalty per start, exactly; the run
// is solved again with those starts. The statistics take runs x p^2 doubles with blocks (up to
// kIntervalFullBlockLimit run-parameter pairs) and runs x 2p without, whatever the runs and the
// method: no solution with a parameter per run and interval is needed.
#include "interval_search.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <set>
#include <string>
#include <unordered_map>

#include "gpede/detail/batch_layout.hpp"
#include "gpede/detail/byte_pack.hpp"
#include "gpede/detail/cpu_accumulator.hpp"
#include "gpede/detail/host_memory.hpp"
#include "gpede/detail/worker_pool.hpp"
#include "gpede/kernels/local_fit.hpp"
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

}  // namespace

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

IntervalChoice choose_interval_starts(const std::vector<RunStatistics>& runs, std::int64_t parameters, double penalty,
                                      bool full_blocks) {
  const std::size_t n_runs = runs.size();
  const int p = static_cast<int>(parameters);
  const std::size_t pp = static_cast<std::size_t>(p), block = full_blocks ? pp * pp : pp;
  // Prefix sums over the runs: S_H (p x p, or its diagonal), S_g and S_q = sum g^T H^+ g.
  std::vector<double> sum_w((n_runs + 1) * block, 0.0), sum_b((n_runs + 1) * pp, 0.0), sum_q(n_runs + 1, 0.0);
  for (std::size_t r = 0; r < n_runs; ++r) {
    const RunStatistics& s = runs[r];
    const std::size_t k = s.index.size();
    double* sw = sum_w.data() + (r + 1) * block;
    double* sb = sum_b.data() + (r + 1) * pp;
    std::copy(sum_w.begin() + r * block, sum_w.begin() + (r + 1) * block, sw);
    std::copy(sum_b.begin() + r * pp, sum_b.begin() + (r + 1) * pp, sb);
    for (std::size_t i = 0; i < k; ++i) {
      const auto row = static_cast<std::size_t>(s.index[i]);
      sb[row] += s.score[i];
      if (!full_blocks) {
        sw[row] += s.weight[i];
        continue;
      }
      for (std::size_t j = 0; j < k; ++j) sw[static_cast<std::size_t>(s.index[j]) * pp + row] += s.weight[i * k + j];
    }
    sum_q[r + 1] = sum_q[r] + s.explained;
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

TimeScan scan_times(const Steering& steering, RecordSource& source, ProcessGroup* processes) {
  const Steering plain = templates_only(steering);
  IntervalSource folded(source, plain);
  const TimeDependenceSpec& td = steering.time_dependence;
  std::set<std::int64_t> times;
  std::set<std::int32_t> labels;
  std::int64_t largest = 0;
  std::string missing;
  std::exception_ptr failure;
  try {
    RecordBatch batch;
    folded.rewind();
    while (true) {
      batch.clear();
      if (folded.next(batch, 4096) == 0) break;
      for (std::size_t r = 0; r < batch.n_records(); ++r) {
        const std::int64_t t = r < batch.record_time.size() ? batch.record_time[r] : kNoTime;
        if (t == kNoTime && missing.empty()) missing = record_in_files(batch, r, steering);
        times.insert(t);
      }
      for (const std::int32_t label : batch.global_label) {
        largest = std::max<std::int64_t>(largest, label);
        if (td.varies(label)) labels.insert(label);
      }
    }
  } catch (...) {
    failure = std::current_exception();
  }
  Packer mine;
  mine.put(std::vector<std::int64_t>(times.begin(), times.end()));
  mine.put(std::vector<std::int32_t>(labels.begin(), labels.end()));
  mine.put(missing);
  mine.put(largest);
  for (const std::vector<char>& bytes : gather_or_rethrow(processes, failure, mine.bytes())) {
    Unpacker u(bytes);
    for (const auto t : u.get_vector<std::int64_t>()) times.insert(t);
    for (const auto l : u.get_vector<std::int32_t>()) labels.insert(l);
    const std::string other = u.get_string();
    if (missing.empty()) missing = other;
    largest = std::max(largest, u.get<std::int64_t>());
  }
  if (times.count(kNoTime) > 0) {
    throw_without_time(missing.empty() ? std::string("a record") : missing,
                       "`intervals auto` chooses intervals from the records' times");
  }
  return {std::vector<std::int64_t>(times.begin(), times.end()), std::vector<std::int32_t>(labels.begin(), labels.end()),
          largest};
}

namespace {

/// The local-fit options of the last pass of a solution: its chi2 cut and down-weighting.
kernels::LocalFitOptions last_pass_options(const Steering& steering, const SolveResult& solution) {
  kernels::LocalFitOptions fit;
  fit.hugecut = std::max(1.0, steering.hugecut);
  fit.dwfractioncut = steering.dwfractioncut;
  fit.scale_global = steering.scale_errors_global;
  fit.scale_local = steering.scale_errors_local;
  if (!solution.iterations.empty()) {
    const IterationRecord& last = solution.iterations.back();
    fit.chi2_cut_factor = last.cut_factor;
    fit.downweight_iterations = last.function_calls != 1 ? steering.outlier_downweighting : 0;
  }
  return fit;
}

/// One thread's share of the statistics pass.
struct StatisticsWorker {
  std::vector<double> weight;  // runs x (p x p, or p)
  std::vector<double> score;   // runs x p
  LocalFitWorkspace workspace;
  std::exception_ptr error;
};

/// Bytes of the per-run statistics: runs x (p^2 + p) doubles with blocks, runs x 2p without.
std::size_t statistics_bytes(std::size_t runs, std::size_t p, bool full_blocks) {
  return runs * ((full_blocks ? p * p : p) + p) * sizeof(double);
}

}  // namespace

std::vector<RunStatistics> run_statistics(const Steering& steering, RecordSource& source, const SolveResult& shared,
                                          const TimeScan& scan, bool full_blocks, int threads,
                                          ProcessGroup* processes, const std::atomic<bool>* stop) {
  const std::size_t n_all = shared.parameters.size();
  std::unordered_map<std::int32_t, std::int32_t> label_index;
  label_index.reserve(n_all);
  std::vector<double> value(n_all);
  for (std::size_t i = 0; i < n_all; ++i) {
    label_index.emplace(shared.parameters[i].label, static_cast<std::int32_t>(i));
    value[i] = shared.parameters[i].value;
  }
  // Only the time-dependent parameters count as variable here (index: their place in scan.labels):
  // the local fits still subtract every label's value, and the Schur complement on the variable
  // ones is the time-dependent block of the whole one, at the cost of that block alone.
  std::vector<std::int32_t> variable(n_all, -1);
  for (std::size_t t = 0; t < scan.labels.size(); ++t) {
    const auto it = label_index.find(scan.labels[t]);
    if (it != label_index.end() && shared.parameters[static_cast<std::size_t>(it->second)].variable) {
      variable[static_cast<std::size_t>(it->second)] = static_cast<std::int32_t>(t);
    }
  }
  const auto n_variable = static_cast<std::int64_t>(scan.labels.size());
  const std::size_t p = scan.labels.size(), n_runs = scan.times.size(), block = full_blocks ? p * p : p;
  const std::size_t bytes = statistics_bytes(n_runs, p, full_blocks);
  const std::size_t available = query_host_memory().available_bytes;
  if (bytes > available / 4) {
    throw RuntimeError("`intervals auto` over " + std::to_string(n_runs) + " runs of " + std::to_string(p) +
                       " time-dependent parameters needs " + std::to_string((bytes + (1u << 19)) >> 20) +
                       " MB for its per-run statistics, more than a quarter of the " +
                       std::to_string(available >> 20) + " MB available; give the intervals instead");
  }
  std::string note;
  int n_threads = capped_threads(threads, note);
  n_threads = static_cast<int>(std::clamp<std::size_t>(available / 4 / std::max<std::size_t>(bytes, 1), 1,
                                                       static_cast<std::size_t>(n_threads)));
  WorkerPool pool(n_threads);
  std::vector<StatisticsWorker> workers(static_cast<std::size_t>(pool.size()));
  for (StatisticsWorker& w : workers) {
    w.weight.assign(n_runs * block, 0.0);
    w.score.assign(n_runs * p, 0.0);
  }
  const std::size_t scratch_limit = available / 4 / workers.size();
  const kernels::GlobalStateView state{static_cast<std::int64_t>(n_all), n_variable, value.data(), variable.data()};
  const kernels::LocalFitOptions options = last_pass_options(steering, shared);

  const Steering plain = templates_only(steering);  // the time-dependent labels as the records name them
  IntervalSource folded(source, plain);
  folded.rewind();
  RecordBatch batch;
  std::vector<std::size_t> run_of;
  std::exception_ptr failure;
  try {
    while (true) {
      check_stop(stop);
      batch.clear();
      if (folded.next(batch, 4096) == 0) break;
      batch.global_index.resize(batch.global_label.size());
      for (std::size_t k = 0; k < batch.global_label.size(); ++k) {
        const auto it = label_index.find(batch.global_label[k]);
        // every label of the records is one of the first solution's (same records)
        if (it == label_index.end()) {
          throw RuntimeError("interval search: label " + std::to_string(batch.global_label[k]) +
                             " of the records is not among the first solution's labels");
        }
        batch.global_index[k] = it->second;
      }
      check_batch_layout(batch, "interval search");
      const kernels::RecordBatchView view = host_view(batch);
      const auto n_records = static_cast<std::int64_t>(batch.n_records());
      run_of.resize(static_cast<std::size_t>(n_records));
      for (std::int64_t r = 0; r < n_records; ++r) {
        const std::int64_t t = batch.record_time[static_cast<std::size_t>(r)];
        run_of[static_cast<std::size_t>(r)] =
            static_cast<std::size_t>(std::lower_bound(scan.times.begin(), scan.times.end(), t) - scan.times.begin());
      }
      pool.run([&](int thread) {
        StatisticsWorker& w = workers[static_cast<std::size_t>(thread)];
        try {
          for (std::int64_t r = thread; r < n_records; r += pool.size()) {
            if (const std::string problem = record_problem(batch, r, state.n_all); !problem.empty()) {
              throw RuntimeError("interval search: " + record_name(batch, r) + " " + problem);
            }
            // a record without time-dependent parameters adds nothing
            bool seen = false;
            const std::int64_t m0 = view.record_begin[r], m1 = view.record_begin[r + 1];
            for (std::int64_t j = view.global_begin[m0]; j < view.global_begin[m1] && !seen; ++j) {
              seen = variable[static_cast<std::size_t>(view.global_index[j])] >= 0;
            }
            if (!seen) continue;
            const kernels::LocalFitScratch& scratch =
                w.workspace.ensure(kernels::record_shape(view, r), batch, r, scratch_limit, "interval search");
            const kernels::LocalFitResult fit = kernels::fit_record(view, state, r, options, scratch);
            if (fit.status != kernels::LocalFitStatus::accepted) continue;
            const kernels::GlobalContribution c = kernels::global_contribution(view, state, r, fit, scratch, true);
            if (!c.ok) {
              throw RuntimeError("interval search: scratch too small for the globals of " + record_name(batch, r));
            }
            const std::size_t run = run_of[static_cast<std::size_t>(r)];
            double* weight = w.weight.data() + run * block;
            double* score = w.score.data() + run * p;
            const std::int64_t k = c.size;
            for (std::int64_t a = 0; a < k; ++a) {
              const auto ta = static_cast<std::size_t>(c.index[a]);
              score[ta] += c.vector[a];
              if (!full_blocks) {
                weight[ta] += c.matrix[a * k + a];
                continue;
              }
              for (std::int64_t b = 0; b <= a; ++b) {  // the lower triangle: (a, b) at b * k + a
                const auto tb = static_cast<std::size_t>(c.index[b]);
                const double m = c.matrix[b * k + a];
                weight[ta * p + tb] += m;
                if (a != b) weight[tb * p + ta] += m;
              }
            }
          }
        } catch (...) {
          w.error = std::current_exception();
        }
      });
      for (StatisticsWorker& w : workers) {
        if (w.error) std::rethrow_exception(w.error);
      }
    }
  } catch (...) {
    failure = std::current_exception();
  }
  gather_or_rethrow(processes, failure, {});  // every process fails where one does
  StatisticsWorker& total = workers.front();
  for (std::size_t t = 1; t < workers.size(); ++t) {
    for (std::size_t e = 0; e < total.weight.size(); ++e) total.weight[e] += workers[t].weight[e];
    for (std::size_t e = 0; e < total.score.size(); ++e) total.score[e] += workers[t].score[e];
    workers[t] = StatisticsWorker();
  }
  if (processes != nullptr) {
    processes->sum(total.weight.data(), total.weight.size());
    processes->sum(total.score.data(), total.score.size());
  }

  // Per run: the parameters it saw (a positive diagonal), their block or diagonal, g and g^T H^+ g.
  std::vector<RunStatistics> runs(n_runs);
  for (std::size_t r = 0; r < n_runs; ++r) {
    const double* weight = total.weight.data() + r * block;
    const double* score = total.score.data() + r * p;
    RunStatistics& s = runs[r];
    for (std::size_t i = 0; i < p; ++i) {
      if (weight[full_blocks ? i * p + i : i] > 0.0) s.index.push_back(static_cast<std::int64_t>(i));
    }
    const std::size_t k = s.index.size();
    for (std::size_t i = 0; i < k; ++i) s.score.push_back(score[s.index[i]]);
    if (!full_blocks) {
      for (std::size_t i = 0; i < k; ++i) {
        const double h = weight[s.index[i]];
        s.weight.push_back(h);
        s.explained += s.score[i] * s.score[i] / h;
      }
      continue;
    }
    s.weight.resize(k * k);
    for (std::size_t i = 0; i < k; ++i) {
      const double* row = weight + static_cast<std::size_t>(s.index[i]) * p;
      for (std::size_t j = 0; j < k; ++j) s.weight[i * k + j] = row[s.index[j]];
    }
    s.explained = inverse_form(s.weight, s.score, static_cast<int>(k));
  }
  return runs;
}

SolveResult solve_with_interval_search(const Steering& steered, const SolverOptions& options, RecordSource* source) {
  Steering steering = steered;  // one stride for both solutions
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
  std::string stride_note;
  resolve_label_stride(steering, [&] { return scan.largest_label; }, &stride_note);
  if (!stride_note.empty()) say(" Note: " + stride_note);
  const std::int64_t n_runs = static_cast<std::int64_t>(scan.times.size());
  const std::int64_t n_labels = static_cast<std::int64_t>(scan.labels.size());
  const bool full_blocks = n_runs * n_labels <= kIntervalFullBlockLimit;

  // One interval for all runs: the shared solution x0.
  Steering shared = steering;
  shared.time_dependence.automatic = false;
  shared.time_dependence.boundaries.clear();
  SolverOptions shared_options = options;
  shared_options.log = nullptr;
  shared_options.progress = nullptr;
  const bool reusable = options.covariance_labels.empty() && !options.covariance_all;
  if (!reusable) {
    shared_options.covariance_all = false;
    shared_options.covariance_labels.clear();
  }
  say(" Interval search: " + std::to_string(n_runs) + " runs, " + std::to_string(n_labels) +
      " time-dependent parameters; first a solution with one interval for all runs");
  SolveResult shared_result = solve(shared, shared_options, source);
  if (shared_result.exit_code >= 10) {
    shared_result.log.insert(shared_result.log.begin(), log_lines.begin(), log_lines.end());
    return shared_result;
  }

  // Per run, at that solution: the time-dependent block of the Schur complements and b.
  const auto t_statistics = Clock::now();
  const std::vector<RunStatistics> runs =
      run_statistics(steering, *source, shared_result, scan, full_blocks, options.threads, processes, options.stop);
  const double statistics_s = std::chrono::duration<double>(Clock::now() - t_statistics).count();

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
  report.shared_chi2 = shared_result.chi2_sum;
  report.statistics_bytes =
      statistics_bytes(static_cast<std::size_t>(n_runs), static_cast<std::size_t>(n_labels), full_blocks);
  report.statistics_s = statistics_s;
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
  char figures[160];
  std::snprintf(figures, sizeof figures, "penalty %.1f in chi2 per start%s; per-run statistics %.1f MB in %.2f s%s",
                penalty, default_penalty ? " (default)" : "", static_cast<double>(report.statistics_bytes) / 1e6,
                statistics_s, full_blocks ? "" : ", each parameter alone (no blocks)");
  say(" Interval search: " + std::string(figures) + "; " +
      (report.starts.empty() ? std::string("no start: one interval") : "starts at" + starts_text) + " (search " +
      std::to_string(search_s) + " s)");

  SolveResult result;
  if (report.starts.empty() && reusable) {
    // the solution with one interval is the answer: its log follows the search's lines
    result = std::move(shared_result);
    if (options.log) {
      for (const std::string& line : result.log) options.log(line);
    }
  } else {
    Steering chosen = steering;
    chosen.time_dependence.automatic = false;
    chosen.time_dependence.boundaries = report.starts;
    result = solve(chosen, options, source);
  }
  result.interval_search = std::move(report);
  result.log.insert(result.log.begin(), log_lines.begin(), log_lines.end());
  result.figures.total_s = std::chrono::duration<double>(Clock::now() - t0).count();
  return result;
}

}  // namespace gpede::detail
