// The simulation's analytic local and global derivatives against central finite differences of its
// exact measurement model (helix intersections with displaced, rotated, bent sensors and shifted
// wires), for pixel, strip and wire measurements, with the field on and off, with kinks.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include <Eigen/Dense>

#include "gpede/simulate.hpp"

namespace {

using gpede::RecordBatch;
using gpede::sim::MeasurementKind;

struct Case {
  const char* name;
  bool field;
  bool cosmics_in_field;
};

class SimulateDerivatives : public ::testing::TestWithParam<Case> {};

gpede::sim::SimulationConfig make_config(const Case& c) {
  auto cfg = gpede::sim::preset_config(gpede::sim::Preset::small);
  cfg.detector.deformation_terms = 12;
  cfg.tracks = 400;
  cfg.cosmics_fraction = 0.5;
  cfg.field = c.field;
  cfg.cosmics_in_field = c.cosmics_in_field;
  cfg.precision = gpede::MillePrecision::double_;
  cfg.scattering = gpede::sim::Scattering::broken_lines;
  cfg.seed = 7;
  return cfg;
}

// Step sizes: small enough for the curvature of the model, large enough for the rounding of the
// Newton iterations (converged to 1e-12 cm).
constexpr double k_step = 1e-5;

TEST_P(SimulateDerivatives, MatchFiniteDifferences) {
  const Case c = GetParam();
  const gpede::sim::Simulation sim(make_config(c));
  const auto& det = sim.detector();
  const std::int64_t n_par = det.n_parameters();
  int checked_pixel = 0, checked_strip = 0, checked_wire = 0, checked_kink = 0, checked_local = 0;
  int cosmics = 0, pairs = 0;
  for (std::int64_t record : {0, 1, 2, 3, 5, 8, 13, 21}) {
    RecordBatch batch;
    sim.generate(record, 1, batch);
    ASSERT_EQ(batch.n_records(), 1u);
    const auto model = sim.record_model(record);
    const std::size_t n_meas = model.n_measurements();
    ASSERT_EQ(n_meas, batch.n_measurements());
    const int n_local = model.n_local();
    (sim.is_cosmic(record) ? cosmics : pairs)++;

    // Local derivatives, dense.
    std::vector<std::vector<double>> local(n_meas, std::vector<double>(n_local, 0.0));
    for (std::size_t m = 0; m < n_meas; ++m) {
      for (auto k = batch.local_begin[m]; k < batch.local_begin[m + 1]; ++k) {
        ASSERT_GE(batch.local_index[k], 0);
        ASSERT_LT(batch.local_index[k], n_local);
        local[m][batch.local_index[k]] = batch.local_deriv[k];
      }
    }
    std::vector<double> dq(n_local, 0.0);
    const std::vector<double> nominal;
    for (int j = 0; j < n_local; ++j) {
      dq[j] = k_step;
      const auto plus = model.predict(dq, nominal);
      dq[j] = -k_step;
      const auto minus = model.predict(dq, nominal);
      dq[j] = 0.0;
      for (std::size_t m = 0; m < n_meas; ++m) {
        const double fd = (plus[m] - minus[m]) / (2.0 * k_step);
        const double tol = 2e-6 + 2e-5 * std::fabs(fd);
        EXPECT_NEAR(local[m][j], fd, tol) << c.name << " record " << record << " measurement " << m << " local " << j;
        ++checked_local;
      }
    }

    // Global derivatives: every label of the record, and labels of other objects (must be zero).
    std::map<std::int32_t, std::vector<double>> global;
    for (std::size_t m = 0; m < n_meas; ++m) {
      for (auto k = batch.global_begin[m]; k < batch.global_begin[m + 1]; ++k) {
        auto& column = global[batch.global_label[k]];
        column.resize(n_meas, 0.0);
        column[m] = batch.global_deriv[k];
      }
    }
    std::set<std::int32_t> labels;
    for (const auto& [label, column] : global) labels.insert(label);
    for (std::int64_t i = 0; i < n_par; i += 97) labels.insert(det.labels()[i]);
    std::vector<double> p(n_par, 0.0);
    for (std::int32_t label : labels) {
      const std::int64_t i = det.parameter_index(label);
      ASSERT_GE(i, 0) << label;
      p[i] = k_step;
      const auto plus = model.predict(dq, p);
      p[i] = -k_step;
      const auto minus = model.predict(dq, p);
      p[i] = 0.0;
      const auto it = global.find(label);
      for (std::size_t m = 0; m < n_meas; ++m) {
        const double analytic = it == global.end() ? 0.0 : it->second[m];
        const double fd = (plus[m] - minus[m]) / (2.0 * k_step);
        const double tol = 2e-6 + 2e-5 * std::fabs(fd);
        EXPECT_NEAR(analytic, fd, tol) << c.name << " record " << record << " measurement " << m << " label "
                                       << label;
      }
    }
    for (std::size_t m = 0; m < n_meas; ++m) {
      switch (model.kind(m)) {
        case MeasurementKind::sensor_u:
        case MeasurementKind::sensor_v: {
          const std::int32_t first = batch.global_label[batch.global_begin[m]];
          (first / 100000 % 10 <= 2 ? checked_pixel : checked_strip)++;
          break;
        }
        case MeasurementKind::wire: ++checked_wire; break;
        default: ++checked_kink; break;
      }
    }
  }
  EXPECT_GT(checked_pixel, 10);
  EXPECT_GT(checked_strip, 20);
  EXPECT_GT(checked_wire, 10);
  EXPECT_GT(checked_kink, 10);
  EXPECT_GT(checked_local, 100);
  EXPECT_GT(cosmics, 0);
  EXPECT_GT(pairs, 0);
}

INSTANTIATE_TEST_SUITE_P(Fields, SimulateDerivatives,
                         ::testing::Values(Case{"field_on", true, false}, Case{"field_off", false, false},
                                           Case{"cosmics_in_field", true, true}),
                         [](const auto& info) { return std::string(info.param.name); });

// The true misalignment satisfies the constraints. Moving the parameters along a parent-child
// null mode changes no measurement of a record; along a global motion (field off) the change is
// absorbed by the track's local parameters.
TEST(SimulateTruth, SatisfiesConstraintsAndNullModesAreInvisible) {
  auto cfg = gpede::sim::preset_config(gpede::sim::Preset::small);
  cfg.tracks = 200;
  cfg.field = false;
  cfg.cosmics_fraction = 0.5;
  cfg.precision = gpede::MillePrecision::double_;
  const gpede::sim::Simulation sim(cfg);
  const auto& det = sim.detector();
  const auto& truth = sim.truth();
  const auto rows = det.constraint_rows();
  const std::size_t parents = det.half_shells().size() + det.cdc_layers().size();
  EXPECT_EQ(rows.size(), 6u + 6u * parents);
  for (const auto& row : rows) {
    double sum = 0.0, scale = 0.0;
    for (const auto& [i, f] : row) {
      sum += f * truth[i];
      scale += std::fabs(f * truth[i]);
    }
    EXPECT_LT(std::fabs(sum), 1e-12 * scale + 1e-15);
  }
  double rms = 0.0;
  for (double t : truth) rms += t * t;
  EXPECT_GT(rms, 0.0);

  const auto modes = det.null_modes();
  ASSERT_EQ(modes.size(), rows.size());
  for (std::int64_t record : {0, 1, 2, 3}) {
    const auto model = sim.record_model(record);
    RecordBatch batch;
    sim.generate(record, 1, batch);
    const int n_local = model.n_local();
    const auto n_meas = static_cast<Eigen::Index>(model.n_measurements());
    Eigen::MatrixXd d = Eigen::MatrixXd::Zero(n_meas, n_local);
    for (Eigen::Index m = 0; m < n_meas; ++m) {
      for (auto k = batch.local_begin[m]; k < batch.local_begin[m + 1]; ++k) d(m, batch.local_index[k]) = batch.local_deriv[k];
    }
    const std::vector<double> dq(n_local, 0.0);
    const auto base = model.predict(dq, {});
    for (std::size_t k = 0; k < modes.size(); ++k) {
      std::vector<double> p(det.n_parameters(), 0.0);
      double largest = 0.0;
      for (const auto& [i, f] : modes[k]) largest = std::max(largest, std::fabs(f));
      for (const auto& [i, f] : modes[k]) p[i] = 1e-6 * f / largest;
      const auto moved = model.predict(dq, p);
      Eigen::VectorXd delta(n_meas);
      for (Eigen::Index m = 0; m < n_meas; ++m) delta[m] = moved[m] - base[m];
      if (k < 6 * parents) {
        EXPECT_LT(delta.norm(), 1e-10) << "record " << record << " parent mode " << k;
      } else {
        const Eigen::VectorXd q = d.colPivHouseholderQr().solve(delta);
        const double left = (delta - d * q).norm();
        EXPECT_GT(delta.norm(), 1e-8) << "record " << record << " global mode " << k;
        EXPECT_LT(left, 1e-4 * delta.norm()) << "record " << record << " global mode " << k;
      }
    }
  }
}

}  // namespace
