// End to end: the simulated small detector solved by gpede::solve gives back the truth within its
// errors (pulls), with chi2/ndf near 1; without constraints the global matrix has exactly the
// expected null space (global translations and rotations, parent-child redundancies), found both
// by a dense eigen-decomposition of the accumulated matrix and by method diagonalization.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>

#include "gpede/detail/cpu_accumulator.hpp"
#include "gpede/error.hpp"
#include "gpede/simulate.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"
#include "test_support.hpp"

namespace {

using Eigen::Matrix3d;
using Eigen::MatrixXd;
using Eigen::Vector3d;
using Eigen::VectorXd;
using gpede::sim::Detector;

TEST(SimulateSolve, PullsOfTheSmallPresetWithInversion) {
  gpede::test::TempDir dir("sim-solve");
  auto cfg = gpede::sim::preset_config(gpede::sim::Preset::small);
  cfg.tracks = 10000;
  cfg.seed = 2024;
  cfg.threads = 2;
  const gpede::sim::Simulation sim(cfg);
  gpede::sim::write_simulation(sim, dir.path());
  const gpede::Steering steering = gpede::parse_steering(dir.path() / "steer.txt");
  ASSERT_EQ(steering.method, gpede::Method::inversion);
  ASSERT_EQ(steering.constraints.size(),
            6u + 6u * (sim.detector().half_shells().size() + sim.detector().cdc_layers().size()));
  gpede::SolverOptions options;
  options.threads = 2;
  const gpede::SolveResult result = gpede::solve(steering, options);
  ASSERT_EQ(result.exit_code, 0) << result.message;
  ASSERT_TRUE(result.has_errors);
  EXPECT_EQ(result.records_rejected, 0);

  const auto& det = sim.detector();
  ASSERT_EQ(result.parameters.size(), det.labels().size());
  double sum = 0.0, sum2 = 0.0;
  std::int64_t n = 0;
  for (const auto& p : result.parameters) {
    const std::int64_t i = det.parameter_index(p.label);
    ASSERT_GE(i, 0) << p.label;
    ASSERT_TRUE(p.variable) << "label " << p.label << " was fixed (entries " << p.entries_files << ")";
    ASSERT_GT(p.error, 0.0) << p.label;
    const double pull = (p.value - sim.truth()[i]) / p.error;
    sum += pull;
    sum2 += pull * pull;
    ++n;
  }
  const double mean = sum / n, rms = std::sqrt(sum2 / n);
  EXPECT_LT(std::fabs(mean), 0.1) << "pull mean over " << n << " parameters";
  EXPECT_GT(rms, 0.9) << "pull RMS";
  EXPECT_LT(rms, 1.1) << "pull RMS";
  EXPECT_NEAR(result.chi2_ndf, 1.0, 0.05);
}

TEST(SimulateSolve, PresigmasOfTheMisalignmentsSizeKeepThePullsAndMinresErrorsEqualInversions) {
  // presigmas.txt gives every sensor parameter a prior of the spread its truth is drawn with, so
  // the fit's errors (posterior) still describe fitted - true: pulls with mean 0 and RMS 1. The
  // errors of a sample of sensors from MINRES's covariance block equal inversion's errors.
  gpede::test::TempDir dir("sim-presigma");
  auto cfg = gpede::sim::preset_config(gpede::sim::Preset::small);
  cfg.tracks = 10000;
  cfg.seed = 77;
  cfg.threads = 2;
  cfg.presigmas = true;
  const gpede::sim::Simulation sim(cfg);
  gpede::sim::write_simulation(sim, dir.path());
  const auto& det = sim.detector();
  gpede::Steering steering = gpede::parse_steering(dir.path() / "steer.txt");
  // The pre-sigmas as read back, against the misalignment's own settings.
  const auto& mis = cfg.misalignment;
  const auto& sensor = det.sensors().front();
  std::map<std::int32_t, double> presigma;
  for (const auto& spec : steering.parameters) presigma[spec.label] = spec.presigma;
  const auto label = [&](int p) { return det.labels()[static_cast<std::size_t>(sensor.first_parameter + p)]; };
  EXPECT_EQ(presigma.size(), det.sensors().size() * static_cast<std::size_t>(det.sensor_parameters()));
  EXPECT_DOUBLE_EQ(presigma[label(0)], mis.sensor_shift_uv);
  EXPECT_DOUBLE_EQ(presigma[label(2)], mis.sensor_shift_w);
  EXPECT_NEAR(presigma[label(3)], mis.sensor_rotation_edge / sensor.half_length, 1e-15);
  EXPECT_NEAR(presigma[label(4)], mis.sensor_rotation_edge / sensor.half_width, 1e-15);
  EXPECT_DOUBLE_EQ(presigma[label(6)], mis.sensor_deformation);
  // A prior, not only a damping of the matrix: pede adds pre-sigmas to the objective function
  // only with `regularization`, and without it the iterations after the first undo the prior.
  EXPECT_TRUE(steering.regularisation);
  EXPECT_DOUBLE_EQ(steering.regularisation_factor, 1.0);

  gpede::SolverOptions options;
  options.threads = 2;
  const gpede::SolveResult exact = gpede::solve(steering, options);
  ASSERT_EQ(exact.exit_code, 0) << exact.message;
  const gpede::sim::PullSummary pulls = gpede::sim::compare_with_truth(sim, exact);
  EXPECT_GT(pulls.count, 1500);
  EXPECT_LT(std::fabs(pulls.mean), 0.1);
  EXPECT_GT(pulls.rms, 0.9);
  EXPECT_LT(pulls.rms, 1.1);
  // The posterior of each kind of sensor parameter is at least as close to the truth as the prior
  // (zero) is; with the pre-sigmas in the matrix alone the deformations ended 6% beyond it here.
  int sensor_kinds = 0;
  for (const auto& kind : pulls.kinds) {
    if (kind.name.rfind("sensor", 0) != 0) continue;
    ++sensor_kinds;
    EXPECT_LT(kind.residual_rms, kind.truth_rms) << kind.name;
  }
  EXPECT_EQ(sensor_kinds, 3);

  steering.method = gpede::Method::minres;
  steering.method_name = "sparseMINRES";
  steering.sparse_storage = true;
  steering.minres_tolerance = 1e-10;
  // One thread: thousands of small products, which threads beside another test's (ctest -j)
  // would spend waiting for each other.
  options.threads = 1;
  options.covariance_labels = gpede::sim::sample_sensor_labels(det, 1);
  ASSERT_EQ(options.covariance_labels.size(), 1u * static_cast<std::size_t>(det.sensor_parameters()));
  const gpede::SolveResult iterative = gpede::solve(steering, options);
  ASSERT_EQ(iterative.exit_code, 0) << iterative.message;
  EXPECT_FALSE(iterative.has_errors);
  const gpede::sim::PullSummary sampled = gpede::sim::compare_with_truth(sim, iterative);
  EXPECT_EQ(sampled.count, static_cast<std::int64_t>(options.covariance_labels.size()));
  const auto& block = iterative.covariance;
  const std::size_t k = block.labels.size();
  ASSERT_EQ(k, options.covariance_labels.size());
  for (std::size_t j = 0; j < k; ++j) {
    const auto it = std::find_if(exact.parameters.begin(), exact.parameters.end(),
                                 [&](const auto& p) { return p.label == block.labels[j]; });
    ASSERT_NE(it, exact.parameters.end());
    EXPECT_NEAR(std::sqrt(block.matrix[j * k + j]) / it->error, 1.0, 1e-3) << "label " << block.labels[j];
  }
}

TEST(SimulateSolve, InMemorySolveWithFixedWiresRecoversTheTruth) {
  // The command line with --solve: no binary files, the records fed from memory on every pass;
  // the pulls are computed here from millepede.res and truth.res, independently of the tool's own
  // summary, which must agree with them.
  gpede::test::TempDir dir("sim-solve-memory");
  const auto out = dir.path() / "run";
  std::string output;
  const std::string command = gpede::test::gpede_binary().string() +
                              " simulate --preset small --tracks 10000 --seed 2024 --threads 2 --fix-wires --solve -o " +
                              out.string();
  ASSERT_EQ(gpede::test::run_command(command, &output), 0) << output;
  for (const auto& entry : std::filesystem::directory_iterator(out)) {
    EXPECT_NE(entry.path().extension(), ".bin") << entry.path() << " written with --solve";
  }
  const gpede::Steering steering = gpede::parse_steering(out / "steer.txt");
  EXPECT_TRUE(steering.binary_files.empty());

  auto cfg = gpede::sim::preset_config(gpede::sim::Preset::small);
  const gpede::sim::Detector det(cfg.detector);
  const auto fitted = gpede::test::read_res(out / "millepede.res");
  const auto truth = gpede::test::read_res(out / "truth.res");
  ASSERT_EQ(fitted.size(), det.labels().size());
  double sum = 0.0, sum2 = 0.0;
  std::int64_t n = 0, fixed = 0;
  for (const std::int32_t label : det.labels()) {
    const auto f = fitted.find(label);
    const auto t = truth.find(label);
    ASSERT_NE(f, fitted.end()) << label;
    ASSERT_NE(t, truth.end()) << label;
    if (gpede::sim::is_wire_label(label)) {
      // fixed at the nominal position
      ASSERT_GE(f->second.columns.size(), 2u) << label;
      EXPECT_EQ(f->second.columns[1], -1.0) << "presigma of wire label " << label;
      EXPECT_EQ(f->second.columns[0], 0.0) << label;
      // Not misaligned, and the constraints are met without moving them (their spread is zero).
      EXPECT_EQ(t->second.columns[0], 0.0) << label;
      ++fixed;
      continue;
    }
    ASSERT_EQ(f->second.columns.size(), 4u) << "label " << label << " not fitted";
    const double error = f->second.columns[3];
    ASSERT_GT(error, 0.0) << label;
    const double pull = (f->second.columns[0] - t->second.columns[0]) / error;
    sum += pull;
    sum2 += pull * pull;
    ++n;
  }
  EXPECT_EQ(fixed, 4 * det.n_wires());
  const double mean = sum / static_cast<double>(n), rms = std::sqrt(sum2 / static_cast<double>(n));
  EXPECT_LT(std::fabs(mean), 0.1) << "pull mean over " << n << " parameters";
  EXPECT_GT(rms, 0.9) << "pull RMS";
  EXPECT_LT(rms, 1.1) << "pull RMS";

  // The tool's summary line: "pulls (fitted - true) / error of N parameters: mean M, RMS R, ..."
  const auto at = output.find("pulls (fitted - true) / error of ");
  ASSERT_NE(at, std::string::npos) << output;
  long long printed_n = 0;
  double printed_mean = 0.0, printed_rms = 0.0;
  ASSERT_EQ(std::sscanf(output.c_str() + at, "pulls (fitted - true) / error of %lld parameters: mean %lf, RMS %lf",
                        &printed_n, &printed_mean, &printed_rms),
            3)
      << output.substr(at, 120);
  EXPECT_EQ(printed_n, n);
  // res values are printed to 5 significant digits: agreement to a few 1e-3 in the pulls
  EXPECT_NEAR(printed_mean, mean, 5e-3);
  EXPECT_NEAR(printed_rms, rms, 5e-3);

  // chi2/ndf from the log (pede's three-line form is also in millepede.log; gpede.json holds it too)
  std::ifstream json(out / "gpede.json");
  const std::string text((std::istreambuf_iterator<char>(json)), std::istreambuf_iterator<char>());
  const auto key = text.find("\"chi2_ndf\":");
  ASSERT_NE(key, std::string::npos);
  EXPECT_NEAR(std::stod(text.substr(key + 11)), 1.0, 0.05);
}

// ---- null space --------------------------------------------------------------------------------

/// A detector without deformation terms and with a reduced drift chamber, straight tracks (field
/// off) with cosmics, so that the exact null space is the global motions plus the parent-child
/// redundancies.
gpede::sim::SimulationConfig null_space_config(bool hierarchy) {
  auto cfg = gpede::sim::preset_config(gpede::sim::Preset::small);
  cfg.detector.deformation_terms = 0;
  cfg.detector.cdc[0].wires = 30;
  cfg.detector.cdc[1].wires = 45;
  cfg.detector.half_shells = hierarchy;
  cfg.detector.cdc_layer_parameters = hierarchy;
  cfg.detector.cdc_wire_parameters = true;
  cfg.field = false;
  cfg.cosmics_fraction = 0.5;
  cfg.scattering = gpede::sim::Scattering::none;
  cfg.precision = gpede::MillePrecision::double_;
  cfg.tracks = 6000;
  cfg.seed = 99;
  cfg.constraints = false;
  return cfg;
}

Matrix3d cross(const Vector3d& a) {
  Matrix3d m;
  m << 0.0, -a.z(), a.y(), a.z(), 0.0, -a.x(), -a.y(), a.x(), 0.0;
  return m;
}

/// The expected null space, derived here from the nominal geometry: the 6 rigid motions of the whole
/// detector expressed in sensor and wire parameters, and per parent (half-shell, layer) its 6
/// parameters moving while its children move back.
MatrixXd expected_null_space(const Detector& det) {
  std::vector<VectorXd> vectors;
  const Eigen::Index n = det.n_parameters();
  for (int k = 0; k < 6; ++k) {
    VectorXd v = VectorXd::Zero(n);
    const Vector3d t = k < 3 ? Vector3d(Vector3d::Unit(k)) : Vector3d(Vector3d::Zero());
    const Vector3d w = k >= 3 ? Vector3d(Vector3d::Unit(k - 3)) : Vector3d(Vector3d::Zero());
    for (const auto& s : det.sensors()) {
      const Vector3d shift = s.rotation.transpose() * (t + w.cross(s.center));
      const Vector3d turn = s.rotation.transpose() * w;
      for (int i = 0; i < 3; ++i) {
        v[s.first_parameter + i] = shift[i];
        v[s.first_parameter + 3 + i] = turn[i];
      }
    }
    for (const auto& l : det.cdc_layers()) {
      for (int wire = 0; wire < l.wires; ++wire) {
        const auto ends = det.wire_ends(l.number, wire);
        const Vector3d axis = (ends[1] - ends[0]) / (ends[1].z() - ends[0].z());
        for (int e = 0; e < 2; ++e) {
          const Vector3d move = t + w.cross(ends[e]);
          // The moved wire, slid along itself back to the endplate plane.
          v[l.first_wire_parameter + 4 * wire + 2 * e] = move.x() - move.z() * axis.x();
          v[l.first_wire_parameter + 4 * wire + 2 * e + 1] = move.y() - move.z() * axis.y();
        }
      }
    }
    vectors.push_back(v);
  }
  for (std::size_t h = 0; h < det.half_shells().size(); ++h) {
    for (int k = 0; k < 6; ++k) {
      VectorXd v = VectorXd::Zero(n);
      v[det.half_shells()[h].first_parameter + k] = 1.0;
      const Vector3d t = k < 3 ? Vector3d(Vector3d::Unit(k)) : Vector3d(Vector3d::Zero());
      const Vector3d w = k >= 3 ? Vector3d(Vector3d::Unit(k - 3)) : Vector3d(Vector3d::Zero());
      for (const auto& s : det.sensors()) {
        if (s.half_shell != static_cast<int>(h)) continue;
        const Vector3d shift = s.rotation.transpose() * (t + w.cross(s.center));
        const Vector3d turn = s.rotation.transpose() * w;
        for (int i = 0; i < 3; ++i) {
          v[s.first_parameter + i] = -shift[i];
          v[s.first_parameter + 3 + i] = -turn[i];
        }
      }
      vectors.push_back(v);
    }
  }
  for (const auto& l : det.cdc_layers()) {
    if (l.first_parameter < 0) continue;
    for (int k = 0; k < 6; ++k) {
      VectorXd v = VectorXd::Zero(n);
      v[l.first_parameter + k] = 1.0;
      const int e = k / 3, c = k % 3;
      for (int wire = 0; wire < l.wires; ++wire) {
        const Vector3d end = det.wire_ends(l.number, wire)[e];
        const double dx = c == 0 ? 1.0 : (c == 2 ? -end.y() : 0.0);
        const double dy = c == 1 ? 1.0 : (c == 2 ? end.x() : 0.0);
        v[l.first_wire_parameter + 4 * wire + 2 * e] = -dx;
        v[l.first_wire_parameter + 4 * wire + 2 * e + 1] = -dy;
      }
      vectors.push_back(v);
    }
  }
  MatrixXd m(n, static_cast<Eigen::Index>(vectors.size()));
  for (std::size_t k = 0; k < vectors.size(); ++k) m.col(static_cast<Eigen::Index>(k)) = vectors[k];
  // Orthonormal basis of their span.
  Eigen::HouseholderQR<MatrixXd> qr(m);
  return qr.householderQ() * MatrixXd::Identity(n, m.cols());
}

/// The global matrix of all records (every parameter variable, start values zero), from the CPU
/// accumulator.
MatrixXd global_matrix(const gpede::sim::Simulation& sim) {
  const Detector& det = sim.detector();
  const std::int64_t n = det.n_parameters();
  gpede::detail::PassSetup setup;
  setup.build_matrix = true;
  setup.n_all = n;
  setup.n_variable = n;
  setup.parameter_value.assign(n, 0.0);
  setup.variable_index.resize(n);
  for (std::int64_t i = 0; i < n; ++i) setup.variable_index[i] = static_cast<std::int32_t>(i);
  gpede::detail::CpuAccumulator accumulator(2);
  accumulator.begin_pass(setup);
  gpede::sim::SimulationSource source(sim, 2);
  gpede::RecordBatch batch;
  while (source.next(batch, 2000) > 0) {
    for (std::size_t k = 0; k < batch.global_label.size(); ++k) {
      batch.global_index[k] = static_cast<std::int32_t>(det.parameter_index(batch.global_label[k]));
    }
    accumulator.accumulate(batch);
    batch.clear();
  }
  const auto totals = accumulator.end_pass();
  EXPECT_EQ(totals.rejected(), 0);
  return Eigen::Map<const MatrixXd>(accumulator.matrix().data(), n, n);
}

class SimulateNullSpace : public ::testing::TestWithParam<bool> {};

TEST_P(SimulateNullSpace, EigenvectorsOfTheZeroEigenvaluesAreTheExpectedMotions) {
  const bool hierarchy = GetParam();
  const gpede::sim::Simulation sim(null_space_config(hierarchy));
  const Detector& det = sim.detector();
  const MatrixXd basis = expected_null_space(det);
  const auto expected = static_cast<Eigen::Index>(6 + 6 * (det.half_shells().size() + (hierarchy ? det.cdc_layers().size() : 0)));
  ASSERT_EQ(basis.cols(), expected);

  const MatrixXd c = global_matrix(sim);
  // Scale to unit diagonal: parameters in cm and rad have very different scales.
  VectorXd d = c.diagonal().cwiseMax(1e-300).cwiseSqrt().cwiseInverse();
  const MatrixXd scaled = d.asDiagonal() * c * d.asDiagonal();
  Eigen::SelfAdjointEigenSolver<MatrixXd> eigen(scaled);
  ASSERT_EQ(eigen.info(), Eigen::Success);
  const VectorXd& lambda = eigen.eigenvalues();
  const double largest = lambda.cwiseAbs().maxCoeff();
  Eigen::Index below = 0;
  for (Eigen::Index k = 0; k < lambda.size(); ++k) {
    if (lambda[k] < 1e-10 * largest) ++below;
  }
  EXPECT_EQ(below, expected) << "smallest eigenvalues / largest: " << lambda[expected - 1] / largest << ", "
                             << lambda[expected] / largest;
  // A clear gap between the null space and the weakest mode the data fix.
  EXPECT_GT(lambda[expected], 1e4 * std::max(lambda[expected - 1], 1e-16 * largest));

  // Null eigenvectors (transformed back from the scaled problem) lie in the expected span, and
  // the expected vectors lie in the null space.
  const MatrixXd null_vectors = d.asDiagonal() * eigen.eigenvectors().leftCols(expected);
  for (Eigen::Index k = 0; k < expected; ++k) {
    const VectorXd v = null_vectors.col(k).normalized();
    const double overlap = (basis.transpose() * v).norm();
    EXPECT_GT(overlap, 0.9) << "null eigenvector " << k << " eigenvalue " << lambda[k] / largest;
  }
  for (Eigen::Index k = 0; k < basis.cols(); ++k) {
    EXPECT_LT((c * basis.col(k)).norm(), 1e-8 * c.norm()) << "expected null vector " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Levels, SimulateNullSpace, ::testing::Values(false, true),
                         [](const auto& info) { return std::string(info.param ? "hierarchy" : "flat"); });

TEST(SimulateSolve, DiagonalizationWithoutConstraintsReportsTheNullModes) {
  gpede::test::TempDir dir("sim-diag");
  const gpede::sim::Simulation sim(null_space_config(false));
  gpede::sim::write_simulation(sim, dir.path());
  gpede::Steering steering = gpede::parse_steering(dir.path() / "steer.txt");
  ASSERT_TRUE(steering.constraints.empty());
  steering.method = gpede::Method::diagonalization;
  steering.method_name = "diagonalization";
  steering.iterations = 1;
  gpede::SolverOptions options;
  options.threads = 2;
  const gpede::SolveResult result = gpede::solve(steering, options);
  const MatrixXd basis = expected_null_space(sim.detector());
  const std::int64_t n = sim.detector().n_parameters();
  ASSERT_EQ(static_cast<std::int64_t>(result.variable_labels.size()), n);
  // As pede: the solution goes on without the six weak modes, with a severe warning (exit code 3)
  // that the log carries, together with the smallest eigenvalues.
  EXPECT_EQ(result.exit_code, 3) << result.message;
  EXPECT_EQ(result.message, "Ended with severe warnings (bad global matrix)");
  bool counted = false, logged = false;
  for (const auto& w : result.warnings) {
    counted = counted || w.find("6 eigenvalues") != std::string::npos;
    logged = logged || w.find("smallest eigenvalues") != std::string::npos;
  }
  EXPECT_TRUE(counted);
  EXPECT_TRUE(logged);
  ASSERT_FALSE(result.eigen.eigenvalues.empty());
  const auto& lambda = result.eigen.eigenvalues;
  ASSERT_EQ(static_cast<std::int64_t>(lambda.size()), n);
  double largest = 0.0;
  for (double l : lambda) largest = std::max(largest, std::fabs(l));
  int below = 0;
  for (double l : lambda) below += l < 1e-12 * largest ? 1 : 0;
  EXPECT_EQ(below, 6);
  int checked = 0;
  for (const auto& [index, vector] : result.eigen.eigenvectors) {
    if (lambda[index] >= 1e-12 * largest) continue;
    VectorXd v(n);
    for (std::int64_t i = 0; i < n; ++i) v[i] = vector[i];
    EXPECT_GT((basis.transpose() * v.normalized()).norm(), 0.9) << "eigenvector " << index;
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no null eigenvector among those returned for millepede.eve";
}

}  // namespace
