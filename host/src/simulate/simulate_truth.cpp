// The simulated misalignment: random values per level (half-shells, sensors with their bowing,
// drift-chamber layers, wires) conditioned on the constraints, the true placements of sensors and
// wires that follow, and the in-memory record source.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "gpede/error.hpp"
#include "simulate_internal.hpp"

namespace gpede::sim {

using namespace detail;

namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("simulation configuration: " + what);
}

std::vector<double> random_misalignment(const Detector& det, const MisalignmentConfig& mis, std::uint64_t seed) {
  Rng rng(seed, 2, 0);
  std::vector<double> p(det.n_parameters(), 0.0);
  for (const auto& h : det.half_shells()) {
    for (int i = 0; i < 3; ++i) p[h.first_parameter + i] = mis.half_shell_shift * rng.normal();
    for (int i = 3; i < 6; ++i) p[h.first_parameter + i] = mis.half_shell_rotation * rng.normal();
  }
  const int n_def = det.sensor_parameters() - k_rigid_parameters;
  for (const auto& s : det.sensors()) {
    const std::int64_t f = s.first_parameter;
    p[f + 0] = mis.sensor_shift_uv * rng.normal();
    p[f + 1] = mis.sensor_shift_uv * rng.normal();
    p[f + 2] = mis.sensor_shift_w * rng.normal();
    p[f + 3] = mis.sensor_rotation_edge / s.half_length * rng.normal();
    p[f + 4] = mis.sensor_rotation_edge / s.half_width * rng.normal();
    p[f + 5] = mis.sensor_rotation_edge / std::max(s.half_width, s.half_length) * rng.normal();
    for (int k = 0; k < n_def; ++k) p[f + k_rigid_parameters + k] = mis.sensor_deformation * rng.normal();
  }
  for (const auto& l : det.cdc_layers()) {
    if (l.first_parameter >= 0) {
      for (int e = 0; e < 2; ++e) {
        p[l.first_parameter + 3 * e + 0] = mis.layer_shift * rng.normal();
        p[l.first_parameter + 3 * e + 1] = mis.layer_shift * rng.normal();
        p[l.first_parameter + 3 * e + 2] = mis.layer_rotation * rng.normal();
      }
    }
    if (l.first_wire_parameter >= 0) {
      for (int i = 0; i < k_wire_parameters * l.wires; ++i) p[l.first_wire_parameter + i] = mis.wire_shift * rng.normal();
    }
  }
  return p;
}

}  // namespace

std::vector<double> misalignment_sigmas(const Detector& det, const MisalignmentConfig& mis) {
  std::vector<double> s(det.n_parameters(), 0.0);
  for (const auto& h : det.half_shells()) {
    for (int i = 0; i < 3; ++i) s[h.first_parameter + i] = mis.half_shell_shift;
    for (int i = 3; i < 6; ++i) s[h.first_parameter + i] = mis.half_shell_rotation;
  }
  const int n_def = det.sensor_parameters() - k_rigid_parameters;
  for (const auto& sensor : det.sensors()) {
    const std::int64_t f = sensor.first_parameter;
    s[f + 0] = s[f + 1] = mis.sensor_shift_uv;
    s[f + 2] = mis.sensor_shift_w;
    s[f + 3] = mis.sensor_rotation_edge / sensor.half_length;
    s[f + 4] = mis.sensor_rotation_edge / sensor.half_width;
    s[f + 5] = mis.sensor_rotation_edge / std::max(sensor.half_width, sensor.half_length);
    for (int k = 0; k < n_def; ++k) s[f + k_rigid_parameters + k] = mis.sensor_deformation;
  }
  for (const auto& l : det.cdc_layers()) {
    if (l.first_parameter >= 0) {
      for (int e = 0; e < 2; ++e) {
        s[l.first_parameter + 3 * e + 0] = s[l.first_parameter + 3 * e + 1] = mis.layer_shift;
        s[l.first_parameter + 3 * e + 2] = mis.layer_rotation;
      }
    }
    if (l.first_wire_parameter >= 0) {
      for (int i = 0; i < k_wire_parameters * l.wires; ++i) s[l.first_wire_parameter + i] = mis.wire_shift;
    }
  }
  return s;
}

std::vector<std::int32_t> sample_sensor_labels(const Detector& det, int count) {
  std::vector<std::int32_t> labels;
  const auto& sensors = det.sensors();
  if (count <= 0 || sensors.empty()) return labels;
  const std::size_t n = sensors.size(), k = std::min<std::size_t>(static_cast<std::size_t>(count), n);
  for (std::size_t j = 0; j < k; ++j) {
    // Evenly spaced, starting half a step in: every layer once count reaches the layers.
    const std::size_t i = (2 * j + 1) * n / (2 * k);
    const std::int64_t first = sensors[i].first_parameter;
    for (int p = 0; p < det.sensor_parameters(); ++p) labels.push_back(det.labels()[static_cast<std::size_t>(first + p)]);
  }
  return labels;
}

namespace {

/// p - W A^T (A W A^T)^+ A p with W the misalignment variances: the draw conditioned on the
/// constraints A p = 0, so the truth stays a sample of the Gaussian that pre-sigmas of the
/// misalignment's size describe. (A shift along the null modes instead keeps the measurements
/// but moves every sensor with the top-level objects' mean motion, far outside that Gaussian.)
std::vector<double> satisfy_constraints(const Detector& det, std::vector<double> p, const std::vector<double>& sigmas) {
  const auto rows = det.constraint_rows();
  if (rows.empty()) return p;
  const Eigen::Index m = static_cast<Eigen::Index>(rows.size());
  auto apply = [&](const std::vector<double>& x, Eigen::Index r) {
    double sum = 0.0;
    for (const auto& [i, f] : rows[r]) sum += f * x[i];
    return sum;
  };
  Eigen::MatrixXd awa(m, m);
  std::vector<double> x(p.size(), 0.0);
  for (Eigen::Index k = 0; k < m; ++k) {
    for (const auto& [i, f] : rows[k]) x[i] += f * sigmas[i] * sigmas[i];
    for (Eigen::Index r = 0; r < m; ++r) awa(r, k) = apply(x, r);
    for (const auto& [i, f] : rows[k]) x[i] = 0.0;
  }
  Eigen::VectorXd ap(m);
  double scale = 0.0;
  for (Eigen::Index r = 0; r < m; ++r) {
    ap[r] = apply(p, r);
    for (const auto& [i, f] : rows[r]) scale = std::max(scale, std::fabs(f * p[i]));
  }
  // Pseudo-inverse: a row whose parameters are all unmisaligned (fixed wires) is held already.
  const Eigen::VectorXd y = awa.completeOrthogonalDecomposition().solve(ap);
  for (Eigen::Index k = 0; k < m; ++k) {
    for (const auto& [i, f] : rows[k]) p[i] -= sigmas[i] * sigmas[i] * f * y[k];
  }
  for (Eigen::Index r = 0; r < m; ++r) {
    if (std::fabs(apply(p, r)) > 1e-9 * std::max(scale, 1e-300)) {
      throw RuntimeError("simulation: constraint " + std::to_string(r + 1) +
                         " cannot be met by the misaligned parameters (residual " + std::to_string(apply(p, r)) + ")");
    }
  }
  return p;
}

}  // namespace

Simulation::Simulation(const SimulationConfig& config) : m_config(config) {
  require(config.tracks >= 1, "tracks must be at least 1");
  require(config.cosmics_fraction >= 0.0 && config.cosmics_fraction <= 1.0, "cosmics_fraction must be in [0, 1]");
  require(config.files >= 1, "files must be at least 1");
  require(config.field_tesla > 0.0, "field_tesla must be positive");
  require(config.min_sensor_hits >= 0, "min_sensor_hits must not be negative");
  m_detector = std::make_unique<Detector>(config.detector);

  m_n_cosmics = std::llround(config.cosmics_fraction * static_cast<double>(config.tracks));
  const std::int64_t pairs = (config.tracks - m_n_cosmics) / 2;
  m_n_records = pairs + m_n_cosmics;
  m_n_tracks = 2 * pairs + m_n_cosmics;
  require(m_n_records >= 1, "no record to simulate (a di-muon pair needs 2 tracks)");
  require(config.files <= m_n_records, "more files than records");

  m_impl = std::make_unique<Impl>();
  Impl& impl = *m_impl;
  impl.owner = this;
  impl.config = &m_config;
  impl.detector = m_detector.get();
  impl.rho_per_omega = -k_curvature_per_tesla * config.field_tesla;
  impl.cosmic_rho_per_omega = impl.rho_per_omega;
  const Detector& det = *m_detector;
  const std::vector<double> nominal;
  for (std::size_t s = 0; s < det.sensors().size(); ++s) {
    impl.nominal_sensors.push_back(sensor_placement(det, static_cast<int>(s), nominal));
    impl.half_shell_jacobians.push_back(det.sensor_from_half_shell(static_cast<int>(s)));
  }
  std::int64_t wires = 0;
  for (const auto& l : det.cdc_layers()) {
    impl.layer_first_wire.push_back(wires);
    for (int w = 0; w < l.wires; ++w) impl.wire_ends.push_back(det.wire_ends(l.number, w));
    wires += l.wires;
  }

  m_truth = satisfy_constraints(det, random_misalignment(det, config.misalignment, config.seed),
                                misalignment_sigmas(det, config.misalignment));
  for (std::size_t s = 0; s < det.sensors().size(); ++s) {
    impl.true_sensors.push_back(sensor_placement(det, static_cast<int>(s), m_truth));
  }
  for (const auto& l : det.cdc_layers()) {
    for (int w = 0; w < l.wires; ++w) impl.true_wires.push_back(wire_shift(det, l.number, w, m_truth));
  }
}

Simulation::~Simulation() = default;

SimulationSource::SimulationSource(const Simulation& simulation, int threads)
    : m_simulation(simulation), m_threads(threads) {}

std::size_t SimulationSource::next(RecordBatch& batch, std::size_t max_records) {
  const std::int64_t count =
      std::min<std::int64_t>(static_cast<std::int64_t>(max_records), m_simulation.n_records() - m_next);
  if (count <= 0) return 0;
  accumulate(m_stats, m_simulation.generate_parallel(m_next, count, batch, m_threads));
  m_next += count;
  return static_cast<std::size_t>(count);
}

}  // namespace gpede::sim
