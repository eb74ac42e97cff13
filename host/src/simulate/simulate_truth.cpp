// The simulated misalignment: random values per level (half-shells, sensors with their bowing,
// drift-chamber layers, wires) conditioned on the constraints, the true placements of sensors and
// wires that follow, what varies from run to run (the pixel sensors' bow, a half-shell's x shift)
// with the truth per run and per interval, and the in-memory record source.
#include <Eigen/Dense>
#include <algorithm>
#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>

#include "gpede/error.hpp"
#include "gpede/record_time.hpp"
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
std::vector<double> satisfy_constraints(const std::vector<Detector::SparseRow>& rows, std::vector<double> p,
                                        const std::vector<double>& sigmas) {
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

  impl.varies.assign(static_cast<std::size_t>(det.n_parameters()), false);
  if (config.time.runs > 0) set_up_runs();

  m_truth = satisfy_constraints(frame_rows(det, impl.varies),
                                random_misalignment(det, config.misalignment, config.seed),
                                misalignment_sigmas(det, config.misalignment));
  for (std::size_t s = 0; s < det.sensors().size(); ++s) {
    impl.true_sensors.push_back(sensor_placement(det, static_cast<int>(s), m_truth));
  }
  for (const auto& l : det.cdc_layers()) {
    for (int w = 0; w < l.wires; ++w) impl.true_wires.push_back(wire_shift(det, l.number, w, m_truth));
  }
  if (impl.n_varying > 0) {
    // The placements of the sensors that move with time, run by run (their wires do not move).
    impl.run_sensors.resize(static_cast<std::size_t>(impl.n_varying * config.time.runs));
    for (int run = 1; run <= config.time.runs; ++run) {
      const std::vector<double> p = truth_at_run(run);
      for (std::size_t s = 0; s < det.sensors().size(); ++s) {
        const int slot = impl.varying_slot[s];
        if (slot >= 0) {
          impl.run_sensors[static_cast<std::size_t>((run - 1) * impl.n_varying + slot)] =
              sensor_placement(det, static_cast<int>(s), p);
        }
      }
    }
  }
}

void Simulation::set_up_runs() {
  const TimeConfig& tc = m_config.time;
  const Detector& det = *m_detector;
  Impl& impl = *m_impl;
  const int n = tc.runs;
  require(n <= m_n_records, "more runs (" + std::to_string(n) + ") than records (" + std::to_string(m_n_records) + ")");
  require(tc.intervals >= 1, "time.intervals must be at least 1");
  require(std::isfinite(tc.bow_drift) && std::isfinite(tc.bow_step) && std::isfinite(tc.half_shell_step),
          "time variations must be finite");

  // What the steering declares time-dependent: every pixel sensor's bow and the first
  // half-shell's 6 parameters (a half-shell moves as a body: all its parameters get a value per
  // interval, so that a step in one of them is not forced into the others).
  std::vector<std::int32_t> labels;
  const int bow = bow_parameter(det);
  if (bow > 0) {
    for (const Sensor& s : det.sensors()) {
      if (!s.pixel) continue;
      impl.bow_indices.push_back(s.first_parameter + bow - 1);
    }
  }
  const bool shell = !det.half_shells().empty();
  if (shell) impl.shell_x_index = det.half_shells().front().first_parameter;
  require(bow > 0 || shell, "time dependence needs pixel sensors with deformation terms or half-shells");
  for (const std::int64_t i : impl.bow_indices) impl.varies[static_cast<std::size_t>(i)] = true;
  if (shell) {
    for (int p = 0; p < k_rigid_parameters; ++p) impl.varies[static_cast<std::size_t>(impl.shell_x_index + p)] = true;
  }
  std::int32_t largest = 0;
  for (std::size_t i = 0; i < impl.varies.size(); ++i) {
    const std::int32_t label = det.labels()[i];
    largest = std::max(largest, label);
    if (!impl.varies[i]) continue;
    if (!m_time.labels.empty() && m_time.labels.back().second + 1 == label) {
      m_time.labels.back().second = label;  // ranges where labels follow each other (a half-shell)
    } else {
      m_time.labels.emplace_back(label, label);
    }
  }

  // The steps, and the interval starts steer.txt gives: the true steps (jumps), else equal cuts.
  if (tc.scenario == TimeScenario::jumps) {
    const int shell_run = (n + 2) / 3 + 1, bow_run = (n + 1) / 2 + 1;
    impl.shell_step_run = shell && shell_run <= n ? shell_run : 0;
    impl.bow_step_run = bow > 0 && bow_run <= n ? bow_run : 0;
    for (const int run : {impl.shell_step_run, impl.bow_step_run}) {
      if (run > 0) m_time.boundaries.push_back(record_time(0, run));
    }
  } else {
    for (int k = 1; k < tc.intervals; ++k) {
      const int run = 1 + static_cast<int>(static_cast<std::int64_t>(k) * n / tc.intervals);
      if (run > 1 && run <= n) m_time.boundaries.push_back(record_time(0, run));
    }
  }
  std::sort(m_time.boundaries.begin(), m_time.boundaries.end());
  m_time.boundaries.erase(std::unique(m_time.boundaries.begin(), m_time.boundaries.end()), m_time.boundaries.end());

  // The label stride: above every label of the records (not only the time-dependent ones, which
  // the solver's default would take), so that no static label is taken for an interval's.
  std::int64_t stride = 1000000;
  while (stride <= largest) stride *= 10;
  m_time.stride = stride;
  std::int32_t largest_varying = 0;
  for (const auto& range : m_time.labels) largest_varying = std::max(largest_varying, range.second);
  require(largest_varying + (m_time.intervals() - 1) * stride <= INT32_MAX,
          std::to_string(m_time.intervals()) + " intervals with label stride " + std::to_string(stride) +
              " go beyond the largest Mille label");

  m_run_tracks.assign(static_cast<std::size_t>(n), 0);
  for (std::int64_t r = 0; r < m_n_records; ++r) m_run_tracks[static_cast<std::size_t>(run_of(r) - 1)] += is_cosmic(r) ? 1 : 2;

  // Sensors whose placement changes from run to run get a slot.
  const bool bow_moves = tc.scenario != TimeScenario::steady && !impl.bow_indices.empty();
  const bool shell_moves = impl.shell_step_run > 0;
  impl.varying_slot.assign(det.sensors().size(), -1);
  for (std::size_t s = 0; s < det.sensors().size(); ++s) {
    const Sensor& sensor = det.sensors()[s];
    if ((bow_moves && sensor.pixel) || (shell_moves && sensor.half_shell == 0)) {
      impl.varying_slot[s] = static_cast<int>(impl.n_varying++);
    }
  }
}

double Simulation::Impl::bow_offset(int run) const {
  const TimeConfig& tc = config->time;
  if (tc.scenario == TimeScenario::steady || tc.runs < 1) return 0.0;
  double offset = tc.runs > 1 ? tc.bow_drift * (run - 1) / (tc.runs - 1) : 0.0;
  if (bow_step_run > 0 && run >= bow_step_run) offset += tc.bow_step;
  return offset;
}

double Simulation::Impl::shell_offset(int run) const {
  return shell_step_run > 0 && run >= shell_step_run ? config->time.half_shell_step : 0.0;
}

int Simulation::run_of(std::int64_t record) const {
  if (m_config.time.runs <= 0) return 0;
  return 1 + static_cast<int>(static_cast<__int128>(record) * m_config.time.runs / m_n_records);
}

std::vector<double> Simulation::truth_at_run(int run) const {
  if (run < 1 || run > m_config.time.runs) {
    throw std::out_of_range("Simulation::truth_at_run: no run " + std::to_string(run));
  }
  std::vector<double> p = m_truth;
  const double bow = m_impl->bow_offset(run);
  for (const std::int64_t i : m_impl->bow_indices) p[static_cast<std::size_t>(i)] += bow;
  if (m_impl->shell_x_index >= 0) p[static_cast<std::size_t>(m_impl->shell_x_index)] += m_impl->shell_offset(run);
  return p;
}

std::vector<std::pair<int, int>> Simulation::interval_runs() const {
  std::vector<std::pair<int, int>> ranges;
  if (!m_time.active()) return ranges;
  const auto& b = m_time.boundaries;
  for (std::size_t k = 0; k <= b.size(); ++k) {
    const int first = k == 0 ? 1 : gpede::run_of(b[k - 1]);
    const int last = k < b.size() ? gpede::run_of(b[k]) - 1 : m_config.time.runs;
    ranges.emplace_back(first, last);
  }
  return ranges;
}

std::vector<IntervalTruth> Simulation::interval_truth() const {
  std::vector<IntervalTruth> rows;
  if (!m_time.active()) return rows;
  const Detector& det = *m_detector;
  const std::int64_t stride = m_time.label_stride();
  const auto ranges = interval_runs();
  // Per interval: the track-weighted mean of the variations (the static part is the same in every run).
  std::vector<double> bow(ranges.size(), 0.0), shell(ranges.size(), 0.0);
  for (std::size_t k = 0; k < ranges.size(); ++k) {
    double tracks = 0.0;
    for (int run = ranges[k].first; run <= ranges[k].second; ++run) {
      const auto t = static_cast<double>(m_run_tracks[static_cast<std::size_t>(run - 1)]);
      bow[k] += t * m_impl->bow_offset(run);
      shell[k] += t * m_impl->shell_offset(run);
      tracks += t;
    }
    if (tracks > 0.0) {
      bow[k] /= tracks;
      shell[k] /= tracks;
    }
  }
  const auto& bows = m_impl->bow_indices;
  for (std::size_t i = 0; i < m_impl->varies.size(); ++i) {
    if (!m_impl->varies[i]) continue;
    const bool is_bow = std::find(bows.begin(), bows.end(), static_cast<std::int64_t>(i)) != bows.end();
    const bool is_shell_x = static_cast<std::int64_t>(i) == m_impl->shell_x_index;
    for (std::size_t k = 0; k < ranges.size(); ++k) {
      IntervalTruth t;
      t.label = det.labels()[i];
      t.interval = static_cast<std::int64_t>(k);
      t.expanded = static_cast<std::int32_t>(t.label + t.interval * stride);
      t.value = m_truth[i] + (is_bow ? bow[k] : 0.0) + (is_shell_x ? shell[k] : 0.0);
      rows.push_back(t);
    }
  }
  return rows;
}

Simulation::~Simulation() = default;

int bow_parameter(const Detector& detector) {
  // Deformation terms in the order of k_deformation_orders: (2,0) is p = 7, (0,2) is p = 9.
  const int terms = detector.sensor_parameters() - k_rigid_parameters;
  return terms >= 3 ? k_rigid_parameters + 3 : terms >= 1 ? k_rigid_parameters + 1 : 0;
}

namespace detail {

std::vector<Detector::SparseRow> frame_rows(const Detector& detector, const std::vector<bool>& varies,
                                            std::vector<std::string>* names) {
  std::vector<Detector::SparseRow> rows = detector.constraint_rows(names);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    auto& row = rows[r];
    const auto time_dependent = [&](const std::pair<std::int64_t, double>& term) {
      return static_cast<std::size_t>(term.first) < varies.size() && varies[static_cast<std::size_t>(term.first)];
    };
    const auto n_varying = std::count_if(row.begin(), row.end(), time_dependent);
    if (n_varying == 0 || n_varying == static_cast<std::ptrdiff_t>(row.size())) continue;
    row.erase(std::remove_if(row.begin(), row.end(), time_dependent), row.end());
    if (names != nullptr && r < names->size()) (*names)[r] += " of the static objects";
  }
  return rows;
}

}  // namespace detail

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
