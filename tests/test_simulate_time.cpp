// The simulation over runs (gpede simulate --runs): records carry their runs and are simulated
// with their run's geometry, steer.txt declares what varies, and the solver's values per interval
// agree with the truth per interval within their errors. The reference is the truth per run of the
// simulation, averaged over each interval's tracks here, independently of the files and the solver.
//
// The pulls of the time-dependent parameters are correlated (the bows of neighbouring pixel sensors
// share the tracks that cross them, the intervals of one label share every static parameter): over
// the 20 pixel bows of one simulation the mean pull varies by about +-0.5 from seed to seed, not by
// 1/sqrt(20). The bounds on the mean and RMS of the pulls therefore come from their correlation
// matrix (the covariance block of the fit), and the chi2 of the residuals with the full covariance
// is tested against the chi-square distribution of as many degrees of freedom.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "gpede/record_time.hpp"
#include "gpede/simulate.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"
#include "test_support.hpp"

namespace {

using gpede::sim::Simulation;
using gpede::sim::SimulationConfig;
using gpede::sim::TimeScenario;

SimulationConfig time_config(TimeScenario scenario, int runs, std::int64_t tracks, std::uint64_t seed) {
  auto cfg = gpede::sim::preset_config(gpede::sim::Preset::small);
  cfg.tracks = tracks;
  cfg.seed = seed;
  cfg.threads = 2;
  // As --fix-wires: the wires known and fixed, so that the solution is small and well conditioned.
  cfg.fix_wires = true;
  cfg.misalignment.wire_shift = 0.0;
  cfg.time.runs = runs;
  cfg.time.scenario = scenario;
  return cfg;
}

/// Chi-square quantile for n degrees of freedom at z standard deviations (Wilson-Hilferty).
double chi2_quantile(double n, double z) {
  const double a = 2.0 / (9.0 * n);
  const double c = 1.0 - a + z * std::sqrt(a);
  return n * c * c * c;
}

/// The truth of every time-dependent label per interval, computed here from the truth per run and
/// the tracks of every record: the expanded label (label + interval * stride) -> value.
std::map<std::int32_t, double> reference_interval_truth(const Simulation& sim, const gpede::TimeDependenceSpec& td) {
  const std::int64_t intervals = td.intervals(), stride = td.label_stride();
  std::vector<std::vector<double>> sum(static_cast<std::size_t>(intervals));
  std::vector<double> weight(static_cast<std::size_t>(intervals), 0.0);
  std::map<int, std::vector<double>> per_run;
  const auto& det = sim.detector();
  for (std::int64_t i = 0; i < sim.n_records(); ++i) {
    const int run = sim.run_of(i);
    const auto k = static_cast<std::size_t>(td.interval_of(gpede::record_time(0, run)));
    auto it = per_run.find(run);
    if (it == per_run.end()) it = per_run.emplace(run, sim.truth_at_run(run)).first;
    const double tracks = sim.is_cosmic(i) ? 1.0 : 2.0;
    if (sum[k].empty()) sum[k].assign(det.labels().size(), 0.0);
    for (std::size_t p = 0; p < det.labels().size(); ++p) sum[k][p] += tracks * it->second[p];
    weight[k] += tracks;
  }
  std::map<std::int32_t, double> truth;
  for (std::size_t p = 0; p < det.labels().size(); ++p) {
    const std::int32_t label = det.labels()[p];
    if (!td.varies(label)) continue;
    for (std::int64_t k = 0; k < intervals; ++k) {
      const auto kk = static_cast<std::size_t>(k);
      if (weight[kk] > 0.0) truth[static_cast<std::int32_t>(label + k * stride)] = sum[kk][p] / weight[kk];
    }
  }
  return truth;
}

/// Pulls of fitted values against a reference, with the fit's covariance of the same labels.
struct PullStatistics {
  std::size_t n = 0;
  double mean = 0.0, rms = 0.0;  ///< of (fit - truth) / error
  double mean_sd = 0.0;          ///< standard deviation of `mean` for these correlations
  double rms2_sd = 0.0;          ///< standard deviation of rms^2
  double chi2 = 0.0;             ///< r^T C^-1 r
  double whitened_mean = 0.0;    ///< mean of L^-1 r (C = L L^T): independent standard normals
  double largest = 0.0;
  std::int32_t largest_label = 0;
};

PullStatistics pull_statistics(const gpede::SolveResult& result, const std::map<std::int32_t, double>& truth) {
  const gpede::CovarianceBlock& block = result.covariance;
  const std::size_t n = block.labels.size();
  PullStatistics s;
  s.n = n;
  if (n == 0) return s;
  std::map<std::int32_t, const gpede::ParameterResult*> fitted;
  for (const auto& p : result.parameters) fitted[p.label] = &p;
  Eigen::VectorXd r(static_cast<Eigen::Index>(n)), sigma(static_cast<Eigen::Index>(n));
  Eigen::MatrixXd c(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
  for (std::size_t i = 0; i < n; ++i) {
    const std::int32_t label = block.labels[i];
    const auto f = fitted.find(label);
    const auto t = truth.find(label);
    EXPECT_NE(f, fitted.end()) << "label " << label << " not in the result";
    EXPECT_NE(t, truth.end()) << "label " << label << " has no truth";
    if (f == fitted.end() || t == truth.end()) return PullStatistics{};
    for (std::size_t j = 0; j < n; ++j) c(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = block.matrix[i * n + j];
    const auto ii = static_cast<Eigen::Index>(i);
    sigma[ii] = std::sqrt(c(ii, ii));
    r[ii] = f->second->value - t->second;
    EXPECT_NEAR(sigma[ii] / f->second->error, 1.0, 1e-6) << "covariance block and error of label " << label;
  }
  const Eigen::VectorXd z = r.cwiseQuotient(sigma);
  const Eigen::MatrixXd corr = sigma.cwiseInverse().asDiagonal() * c * sigma.cwiseInverse().asDiagonal();
  const double dn = static_cast<double>(n);
  s.mean = z.mean();
  s.rms = std::sqrt(z.squaredNorm() / dn);
  s.mean_sd = std::sqrt(corr.sum()) / dn;
  s.rms2_sd = std::sqrt(2.0 * corr.cwiseAbs2().sum()) / dn;
  const Eigen::LLT<Eigen::MatrixXd> llt(c);
  EXPECT_EQ(llt.info(), Eigen::Success) << "covariance block not positive definite";
  const Eigen::VectorXd w = llt.matrixL().solve(r);
  s.chi2 = w.squaredNorm();
  s.whitened_mean = w.mean();
  for (std::size_t i = 0; i < n; ++i) {
    if (std::fabs(z[static_cast<Eigen::Index>(i)]) > std::fabs(s.largest)) {
      s.largest = z[static_cast<Eigen::Index>(i)];
      s.largest_label = block.labels[i];
    }
  }
  return s;
}

/// The bounds a correct fit meets but with a probability of about 1e-4 or less.
void expect_pulls_consistent(const PullStatistics& s, const std::string& what) {
  const double n = static_cast<double>(s.n);
  std::printf("  %s: %zu pulls, mean %+.3f (sd %.3f for their correlations), RMS %.3f (sd of RMS^2 %.3f), "
              "chi2/ndf with the covariance %.1f/%zu, whitened mean %+.3f, largest %+.2f (label %d)\n",
              what.c_str(), s.n, s.mean, s.mean_sd, s.rms, s.rms2_sd, s.chi2, s.n, s.whitened_mean, s.largest,
              s.largest_label);
  ASSERT_GT(s.n, 0u) << what;
  EXPECT_LT(std::fabs(s.mean), 4.0 * s.mean_sd) << what << ": pull mean";
  EXPECT_LT(std::fabs(s.rms * s.rms - 1.0), 5.0 * s.rms2_sd) << what << ": pull RMS";
  EXPECT_GT(s.chi2, chi2_quantile(n, -4.5)) << what << ": chi2 with the full covariance";
  EXPECT_LT(s.chi2, chi2_quantile(n, 4.5)) << what << ": chi2 with the full covariance";
  EXPECT_LT(std::fabs(s.whitened_mean), 4.0 / std::sqrt(n)) << what << ": mean of the whitened residuals";
}

/// Expanded labels of every time-dependent label and interval, ascending.
std::vector<std::int32_t> interval_labels(const Simulation& sim) {
  std::vector<std::int32_t> labels;
  for (const auto& t : sim.interval_truth()) labels.push_back(t.expanded);
  std::sort(labels.begin(), labels.end());
  return labels;
}

double elapsed(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(SimulateTime, RecordsCarryTheirRunAndAreSimulatedWithItsGeometry) {
  // Same seed: the same static truth, tracks and noise; jumps and steady differ only by what
  // varies with the run, so the difference of their measured values is the difference of the
  // exact predictions with the two runs' geometries.
  auto cfg_jumps = time_config(TimeScenario::jumps, 6, 1200, 31);
  cfg_jumps.precision = gpede::MillePrecision::double_;
  auto cfg_steady = cfg_jumps;
  cfg_steady.time.scenario = TimeScenario::steady;
  const Simulation jumps(cfg_jumps), steady(cfg_steady);
  ASSERT_EQ(jumps.truth(), steady.truth());

  // Runs evenly spread and in order, every record with its time.
  gpede::RecordBatch batch;
  jumps.generate_parallel(0, jumps.n_records(), batch, 2);
  ASSERT_EQ(batch.record_time.size(), static_cast<std::size_t>(jumps.n_records()));
  std::vector<std::int64_t> per_run(7, 0), tracks(7, 0);
  for (std::int64_t i = 0; i < jumps.n_records(); ++i) {
    const int run = jumps.run_of(i);
    ASSERT_GE(run, 1);
    ASSERT_LE(run, 6);
    if (i > 0) ASSERT_GE(run, jumps.run_of(i - 1));
    EXPECT_EQ(batch.record_time[static_cast<std::size_t>(i)], gpede::record_time(0, run)) << "record " << i;
    ++per_run[static_cast<std::size_t>(run)];
    tracks[static_cast<std::size_t>(run)] += jumps.is_cosmic(i) ? 1 : 2;
  }
  for (int run = 1; run <= 6; ++run) {
    EXPECT_LE(std::abs(per_run[static_cast<std::size_t>(run)] - jumps.n_records() / 6), 1) << "run " << run;
    EXPECT_EQ(jumps.tracks_per_run()[static_cast<std::size_t>(run - 1)], tracks[static_cast<std::size_t>(run)]);
  }

  // What varies: the first half-shell's x shift steps at run ceil(6/3) + 1 = 3, the pixel bow
  // drifts linearly and steps at run ceil(6/2) + 1 = 4; the interval starts are the steps.
  const auto& det = jumps.detector();
  const std::int64_t shell_x = det.parameter_index(gpede::sim::half_shell_label(1, 1));
  const int bow = gpede::sim::bow_parameter(det);
  ASSERT_EQ(bow, 9);  // L_0(u') L_2(v'): along the ladder
  const std::int64_t bow_index = det.parameter_index(gpede::sim::sensor_label(1, 1, 1, bow));
  ASSERT_GE(shell_x, 0);
  ASSERT_GE(bow_index, 0);
  const auto& tc = cfg_jumps.time;
  for (int run = 1; run <= 6; ++run) {
    const auto p = jumps.truth_at_run(run);
    EXPECT_DOUBLE_EQ(p[static_cast<std::size_t>(shell_x)] - jumps.truth()[static_cast<std::size_t>(shell_x)],
                     run >= 3 ? tc.half_shell_step : 0.0);
    EXPECT_NEAR(p[static_cast<std::size_t>(bow_index)] - jumps.truth()[static_cast<std::size_t>(bow_index)],
                tc.bow_drift * (run - 1) / 5.0 + (run >= 4 ? tc.bow_step : 0.0), 1e-15);
    EXPECT_EQ(steady.truth_at_run(run), steady.truth());
  }
  EXPECT_EQ(jumps.time_dependence().boundaries,
            (std::vector<std::int64_t>{gpede::record_time(0, 3), gpede::record_time(0, 4)}));
  EXPECT_EQ(steady.time_dependence().boundaries.size(), 3u);  // 4 equal intervals of 6 runs

  // The last record (run 6): measured values minus the exact predictions with its run's geometry
  // are the same noise in both scenarios.
  const std::int64_t record = jumps.n_records() - 1;
  ASSERT_EQ(jumps.run_of(record), 6);
  gpede::RecordBatch a, b;
  jumps.generate(record, 1, a);
  steady.generate(record, 1, b);
  ASSERT_EQ(a.n_measurements(), b.n_measurements());
  const gpede::sim::RecordModel model = jumps.record_model(record);
  ASSERT_EQ(model.n_measurements(), a.n_measurements());
  const auto moved = model.predict(model.true_local_offsets(), jumps.truth_at_run(6));
  const auto still = model.predict(model.true_local_offsets(), steady.truth());
  double largest_change = 0.0;
  for (std::size_t m = 0; m < a.n_measurements(); ++m) {
    EXPECT_NEAR(a.meas_value[m] - b.meas_value[m], moved[m] - still[m], 1e-9) << "measurement " << m;
    largest_change = std::max(largest_change, std::fabs(moved[m] - still[m]));
  }
  EXPECT_GT(largest_change, 1e-4) << "the record's hits do not see the moved half-shell or bow";
}

TEST(SimulateTime, FilesDeclareWhatVariesAndKeepIntervalsApart) {
  gpede::test::TempDir dir("sim-time-files");
  const Simulation sim(time_config(TimeScenario::jumps, 9, 600, 5));
  gpede::sim::write_simulation(sim, dir.path() / "runs");
  const gpede::Steering steering = gpede::parse_steering(dir.path() / "runs" / "steer.txt");
  const gpede::TimeDependenceSpec& td = steering.time_dependence;
  ASSERT_TRUE(td.active());
  EXPECT_EQ(td.labels, sim.time_dependence().labels);
  EXPECT_EQ(td.boundaries, (std::vector<std::int64_t>{gpede::record_time(0, 4), gpede::record_time(0, 6)}));
  const auto& det = sim.detector();
  EXPECT_GT(td.label_stride(), det.labels().back()) << "a static label would be taken for an interval's";
  // The time-dependent labels: the 6 of half-shell 1 and the bow of every pixel sensor.
  std::size_t pixels = 0;
  for (const auto& s : det.sensors()) {
    if (!s.pixel) continue;
    ++pixels;
    EXPECT_TRUE(td.varies(gpede::sim::sensor_label(s.layer, s.ladder, s.number, 9)));
    for (int p = 1; p <= 8; ++p) EXPECT_FALSE(td.varies(gpede::sim::sensor_label(s.layer, s.ladder, s.number, p)));
  }
  for (int p = 1; p <= 6; ++p) {
    EXPECT_TRUE(td.varies(gpede::sim::half_shell_label(1, p)));
    EXPECT_FALSE(td.varies(gpede::sim::half_shell_label(2, p)));
  }
  EXPECT_EQ(sim.interval_truth().size(), 3 * (pixels + 6));

  // Every constraint names static labels only or time-dependent ones only (the solver repeats the
  // latter per interval), and the static truth meets them.
  ASSERT_FALSE(steering.constraints.empty());
  for (const auto& c : steering.constraints) {
    const auto varying = std::count_if(c.terms.begin(), c.terms.end(), [&](const auto& t) { return td.varies(t.first); });
    EXPECT_TRUE(varying == 0 || varying == static_cast<std::ptrdiff_t>(c.terms.size())) << "line " << c.where.line;
    double sum = 0.0, scale = 0.0;
    for (const auto& [label, factor] : c.terms) {
      const double v = sim.truth()[static_cast<std::size_t>(det.parameter_index(label))];
      sum += factor * v;
      scale = std::max(scale, std::fabs(factor * v));
    }
    EXPECT_LE(std::fabs(sum), 1e-9 * scale) << "line " << c.where.line;
  }

  // truth_intervals.txt and truth.res against the truth per run averaged over the intervals' tracks.
  const auto reference = reference_interval_truth(sim, td);
  ASSERT_EQ(reference.size(), sim.interval_truth().size());
  std::ifstream in(dir.path() / "runs" / "truth_intervals.txt");
  ASSERT_TRUE(in) << "truth_intervals.txt";
  std::string line;
  std::size_t rows = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::int32_t label = 0, expanded = 0;
    std::int64_t interval = 0;
    double value = 0.0;
    ASSERT_TRUE(fields >> label >> interval >> expanded >> value) << line;
    EXPECT_EQ(expanded, label + interval * td.label_stride()) << line;
    ASSERT_TRUE(reference.count(expanded)) << line;
    EXPECT_NEAR(value, reference.at(expanded), 1e-14) << line;
    ++rows;
  }
  EXPECT_EQ(rows, reference.size());
  const auto truth_res = gpede::test::read_res(dir.path() / "runs" / "truth.res");
  EXPECT_EQ(truth_res.size(), det.labels().size() + 2 * reference.size() / 3);
  for (const auto& [label, value] : reference) {
    ASSERT_TRUE(truth_res.count(label)) << label;
    EXPECT_NEAR(truth_res.at(label).columns[0], value, 1e-4 * std::fabs(value) + 1e-12) << label;  // 5 digits, as pede
  }
  std::ifstream runs(dir.path() / "runs" / "truth_runs.txt");
  ASSERT_TRUE(runs) << "truth_runs.txt";
  rows = 0;
  while (std::getline(runs, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::int32_t label = 0;
    int run = 0;
    double value = 0.0;
    ASSERT_TRUE(fields >> label >> run >> value) << line;
    EXPECT_TRUE(td.varies(label)) << line;
    EXPECT_NEAR(value, sim.truth_at_run(run)[static_cast<std::size_t>(det.parameter_index(label))], 1e-14) << line;
    ++rows;
  }
  EXPECT_EQ(rows, 9 * (pixels + 6));

  // Without runs: no times, no time lines, no truth per interval.
  auto cfg = time_config(TimeScenario::jumps, 0, 600, 5);
  const Simulation still(cfg);
  gpede::RecordBatch batch;
  still.generate(0, 10, batch);
  EXPECT_TRUE(batch.record_time.empty());
  gpede::sim::write_simulation(still, dir.path() / "static");
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "static" / "truth_intervals.txt"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "static" / "truth_runs.txt"));
  EXPECT_FALSE(gpede::parse_steering(dir.path() / "static" / "steer.txt").time_dependence.active());
}

TEST(SimulateTime, JumpsAreRecoveredPerIntervalWithinTheirErrors) {
  // 9 runs: the half-shell steps at run 4, the bow at run 6 and drifts throughout; the records
  // go through a binary file with their times and are solved with the steering written beside.
  const auto t0 = std::chrono::steady_clock::now();
  gpede::test::TempDir dir("sim-time-jumps");
  const Simulation sim(time_config(TimeScenario::jumps, 9, 24000, 2024));
  gpede::sim::write_simulation(sim, dir.path());
  const gpede::Steering steering = gpede::parse_steering(dir.path() / "steer.txt");
  const gpede::TimeDependenceSpec& td = steering.time_dependence;
  ASSERT_EQ(td.intervals(), 3);
  const auto truth = reference_interval_truth(sim, td);

  gpede::SolverOptions options;
  options.threads = 2;
  options.covariance_labels = interval_labels(sim);
  const gpede::SolveResult result = gpede::solve(steering, options);
  ASSERT_EQ(result.exit_code, 0) << result.message;
  ASSERT_TRUE(result.has_errors);
  EXPECT_EQ(result.records_rejected, 0);
  ASSERT_EQ(result.covariance.labels.size(), options.covariance_labels.size());

  // The records of each interval, as the simulation placed them.
  ASSERT_EQ(result.time_intervals.size(), 3u);
  std::vector<std::int64_t> records(3, 0);
  for (std::int64_t i = 0; i < sim.n_records(); ++i) {
    ++records[static_cast<std::size_t>(td.interval_of(gpede::record_time(0, sim.run_of(i))))];
  }
  for (std::size_t k = 0; k < 3; ++k) EXPECT_EQ(result.time_intervals[k].records, records[k]) << "interval " << k;

  // Time-dependent parameters against the truth per interval.
  const PullStatistics pulls = pull_statistics(result, truth);
  EXPECT_EQ(pulls.n, truth.size());
  expect_pulls_consistent(pulls, "time-dependent parameters (jumps)");

  // The half-shell's step is seen, and its size is right: interval 1 - interval 0 of label 11.
  const auto& block = result.covariance;
  const std::size_t n = block.labels.size();
  const auto at = [&](std::int32_t label) {
    return static_cast<std::size_t>(std::find(block.labels.begin(), block.labels.end(), label) - block.labels.begin());
  };
  const std::int32_t x0 = gpede::sim::half_shell_label(1, 1), x1 = static_cast<std::int32_t>(x0 + td.label_stride());
  const std::size_t i0 = at(x0), i1 = at(x1);
  ASSERT_LT(i0, n);
  ASSERT_LT(i1, n);
  std::map<std::int32_t, double> fitted;
  for (const auto& p : result.parameters) fitted[p.label] = p.value;
  const double step = fitted[x1] - fitted[x0];
  const double step_error = std::sqrt(block.matrix[i0 * n + i0] + block.matrix[i1 * n + i1] - 2.0 * block.matrix[i0 * n + i1]);
  const double true_step = truth.at(x1) - truth.at(x0);
  std::printf("  half-shell 1 x shift step: fitted %.6f +- %.6f cm, true %.6f cm\n", step, step_error, true_step);
  EXPECT_NEAR(true_step, sim.config().time.half_shell_step, 1e-12);
  EXPECT_GT(std::fabs(step) / step_error, 5.0) << "the step is not seen";
  EXPECT_LT(std::fabs(step - true_step) / step_error, 4.0);

  // The static parameters stay as well determined as without time dependence.
  const auto& det = sim.detector();
  double sum = 0.0, sum2 = 0.0;
  std::int64_t count = 0;
  for (const auto& p : result.parameters) {
    if (p.label >= td.label_stride() || td.varies(p.label) || !p.variable) continue;
    ASSERT_GT(p.error, 0.0) << p.label;
    const double pull = (p.value - sim.truth()[static_cast<std::size_t>(det.parameter_index(p.label))]) / p.error;
    sum += pull;
    sum2 += pull * pull;
    ++count;
  }
  ASSERT_GT(count, 500);
  const double mean = sum / static_cast<double>(count), rms = std::sqrt(sum2 / static_cast<double>(count));
  std::printf("  static parameters: %lld pulls, mean %+.3f, RMS %.3f\n", static_cast<long long>(count), mean, rms);
  EXPECT_LT(std::fabs(mean), 0.25);
  EXPECT_GT(rms, 0.85);
  EXPECT_LT(rms, 1.15);

  // The tool's own summary agrees.
  const gpede::sim::PullSummary summary = gpede::sim::compare_with_truth(sim, result);
  EXPECT_EQ(summary.count, count + static_cast<std::int64_t>(pulls.n));
  std::printf("  (%.1f s)\n", elapsed(t0));
}

TEST(SimulateTime, SteadyIntervalsAgreeWithEachOther) {
  // Nothing varies; 8 runs cut into 4 intervals. The records come from memory (SimulationSource)
  // with their times. The differences of each label's intervals from its interval 0 are zero
  // within their covariance, and the values agree with the (static) truth.
  const auto t0 = std::chrono::steady_clock::now();
  gpede::test::TempDir dir("sim-time-steady");
  const Simulation sim(time_config(TimeScenario::steady, 8, 24000, 99));
  gpede::sim::write_steering(sim, dir.path(), {});
  const gpede::Steering steering = gpede::parse_steering(dir.path() / "steer.txt");
  const gpede::TimeDependenceSpec& td = steering.time_dependence;
  ASSERT_EQ(td.intervals(), 4);
  for (const auto& t : sim.interval_truth()) {
    EXPECT_EQ(t.value, sim.truth()[static_cast<std::size_t>(sim.detector().parameter_index(t.label))]) << t.expanded;
  }

  gpede::SolverOptions options;
  options.threads = 2;
  options.covariance_labels = interval_labels(sim);
  gpede::sim::SimulationSource source(sim, 2);
  const gpede::SolveResult result = gpede::solve(steering, options, &source);
  ASSERT_EQ(result.exit_code, 0) << result.message;
  ASSERT_TRUE(result.has_errors);
  const auto& block = result.covariance;
  const std::size_t n = block.labels.size();
  ASSERT_EQ(n, options.covariance_labels.size());

  std::map<std::int32_t, double> fitted;
  for (const auto& p : result.parameters) fitted[p.label] = p.value;
  std::map<std::int32_t, std::size_t> index;
  for (std::size_t i = 0; i < n; ++i) index[block.labels[i]] = i;
  // d = A x: for each label and interval k > 0, x_k - x_0; covariance A C A^T.
  std::vector<std::pair<std::size_t, std::size_t>> pairs;
  for (const auto& [label, i] : index) {
    if (label >= td.label_stride()) {
      pairs.emplace_back(i, index.at(static_cast<std::int32_t>(label % td.label_stride())));
    }
  }
  ASSERT_EQ(pairs.size(), 3 * n / 4);
  const auto m = static_cast<Eigen::Index>(pairs.size());
  Eigen::MatrixXd c(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) c(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = block.matrix[i * n + j];
  }
  Eigen::MatrixXd a = Eigen::MatrixXd::Zero(m, static_cast<Eigen::Index>(n));
  Eigen::VectorXd d(m);
  double naive = 0.0;
  for (Eigen::Index r = 0; r < m; ++r) {
    const auto [k, zero] = pairs[static_cast<std::size_t>(r)];
    a(r, static_cast<Eigen::Index>(k)) = 1.0;
    a(r, static_cast<Eigen::Index>(zero)) = -1.0;
    d[r] = fitted.at(block.labels[k]) - fitted.at(block.labels[zero]);
    const double var = c(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(k)) +
                       c(static_cast<Eigen::Index>(zero), static_cast<Eigen::Index>(zero)) -
                       2.0 * c(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(zero));
    naive += d[r] * d[r] / var;
  }
  const Eigen::MatrixXd cd = a * c * a.transpose();
  const Eigen::LLT<Eigen::MatrixXd> llt(cd);
  ASSERT_EQ(llt.info(), Eigen::Success);
  const double chi2 = llt.matrixL().solve(d).squaredNorm();
  std::printf("  steady: %lld differences between intervals, chi2/ndf %.1f/%lld with their covariance "
              "(%.1f each alone)\n",
              static_cast<long long>(m), chi2, static_cast<long long>(m), naive);
  EXPECT_GT(chi2, chi2_quantile(static_cast<double>(m), -4.5));
  EXPECT_LT(chi2, chi2_quantile(static_cast<double>(m), 4.5));

  std::map<std::int32_t, double> truth;
  for (const auto& t : sim.interval_truth()) truth[t.expanded] = t.value;
  expect_pulls_consistent(pull_statistics(result, truth), "time-dependent parameters (steady)");
  std::printf("  (%.1f s)\n", elapsed(t0));
}

}  // namespace

namespace {

// `intervals auto` on the simulated runs: with jumps the search finds the true starts (the
// half-shell's at run 4, the bow's at run 6, within one run), and with nothing moving no start,
// at the default penalty. The steering is the one the simulation writes, its `intervals` line
// replaced.
TEST(SimulateTime, IntervalSearchFindsTheTrueStartsAndNoneWhereNothingMoves) {
  gpede::test::TempDir dir("sim-time-auto");
  gpede::SolverOptions options;
  options.threads = 2;
  for (const TimeScenario scenario : {TimeScenario::jumps, TimeScenario::steady}) {
    const Simulation sim(time_config(scenario, 9, 24000, 31));
    gpede::sim::write_steering(sim, dir.path(), {});
    gpede::Steering steering = gpede::parse_steering(dir.path() / "steer.txt");
    steering.time_dependence.boundaries.clear();
    steering.time_dependence.automatic = true;
    gpede::sim::SimulationSource source(sim, 2);
    const gpede::SolveResult result = gpede::solve(steering, options, &source);
    ASSERT_EQ(result.exit_code, 0) << result.message;
    const gpede::IntervalSearchResult& search = result.interval_search;
    EXPECT_EQ(search.runs, 9);
    std::vector<int> starts;
    for (const std::int64_t t : search.starts) starts.push_back(gpede::run_of(t));
    std::printf("%s: %zu starts, penalty %.1f\n", scenario == TimeScenario::jumps ? "jumps" : "steady", starts.size(),
                search.penalty);
    if (scenario == TimeScenario::steady) {
      EXPECT_TRUE(starts.empty()) << "a start at run " << starts.front();
      continue;
    }
    ASSERT_EQ(starts.size(), 2u);
    EXPECT_LE(std::abs(starts[0] - 4), 1) << starts[0];
    EXPECT_LE(std::abs(starts[1] - 6), 1) << starts[1];
    for (const double gain : search.gains) EXPECT_GT(gain, search.penalty);
  }
}

}  // namespace
