// Tracks of the simulation: di-muon pairs and cosmics, their crossings with the detector's surfaces,
// multiple-scattering kinks, the exact measurement model (helix-plane intersection on displaced,
// rotated and bent sensors; distance of closest approach to displaced wires) and the analytic
// local and global derivatives written into the records.
#include <Eigen/Geometry>
#include <algorithm>
#include <cmath>
#include <numbers>
#include <system_error>
#include <thread>

#include "gpede/detail/worker_pool.hpp"
#include "gpede/error.hpp"
#include "gpede/record_time.hpp"
#include "simulate_internal.hpp"

namespace gpede::sim {
namespace detail {
namespace {

constexpr double k_two_pi = 2.0 * std::numbers::pi;
// Beam spot (Belle II nano-beam: 10 um x 0.2 um x 350 um, y rounded up) and di-muon kinematics.
constexpr double k_beam_spot[3] = {0.0010, 0.0001, 0.0350};
constexpr double k_cm_momentum = 5.29;   // GeV, half of the Upsilon(4S) mass
constexpr double k_boost_beta_gamma = 0.287;
// Cosmics: zenith angle up to 60 degrees with cos^2 density, momentum 1..20 GeV (log-uniform),
// closest approach to the beam line |d0| < 3 cm, -15 < z0 < 25 cm.
constexpr double k_cosmic_cos_zenith_min = 0.5;
constexpr double k_cosmic_p_min = 1.0, k_cosmic_p_max = 20.0;
constexpr double k_cosmic_d0_max = 3.0, k_cosmic_z0_min = -15.0, k_cosmic_z0_max = 25.0;

// Newton iterations stop once the step is below this (cm); the next step would be of order
// curvature x step^2, far below 1e-12 cm, and the outputs take the first-order update.
constexpr double k_newton_tolerance = 1e-6;

double highland(double momentum, double x0) {
  if (x0 <= 0.0) return 0.0;
  return 0.0136 / momentum * std::sqrt(x0) * (1.0 + 0.038 * std::log(x0));
}

/// First crossing of the helix with the cylinder of radius r in direction sign (s * sign > 0).
bool cylinder_crossing(const HelixState& h, int sign, double r, double& s_out) {
  const Vector3d& p = h.point;
  const Vector3d t0 = h.direction(h.s_base);
  const double dx = t0.x(), dy = t0.y();
  const double b = p.x() * dx + p.y() * dy;
  const double c = p.x() * p.x() + p.y() * p.y() - r * r;
  const double disc = b * b - c;
  if (disc < 0.0) return false;
  const double q = std::sqrt(disc);
  double s = 0.0;
  const double s1 = -b - q, s2 = -b + q;
  if (sign > 0) {
    if (s1 > 0.0) {
      s = s1;
    } else if (s2 > 0.0) {
      s = s2;
    } else {
      return false;
    }
  } else {
    if (s2 < 0.0) {
      s = s2;
    } else if (s1 < 0.0) {
      s = s1;
    } else {
      return false;
    }
  }
  s += h.s_base;
  if (h.rho != 0.0) {
    bool converged = false;
    Vector3d x, t;
    for (int it = 0; it < 20; ++it) {
      h.evaluate(s, x, t);
      const double g = x.x() * x.x() + x.y() * x.y() - r * r;
      const double dg = 2.0 * (x.x() * t.x() + x.y() * t.y());
      if (std::fabs(dg) < 1e-12) return false;
      const double step = g / dg;
      s -= step;
      if (std::fabs(step) < k_newton_tolerance) {
        converged = true;
        break;
      }
    }
    if (!converged) return false;
  }
  if ((s - h.s_base) * sign <= 0.0) return false;
  s_out = s;
  return true;
}

/// Crossing of the helix with a sensor's (possibly bent) surface near s; local (u, v) out.
bool sensor_crossing(const HelixState& h, double s_guess, const SensorPlacement& pl, double& s_out, double& u,
                     double& v) {
  double s = s_guess;
  const Matrix3d rt = pl.rotation.transpose();
  double terms[k_max_deformation_terms], dterm_u[k_max_deformation_terms], dterm_v[k_max_deformation_terms];
  Vector3d x, t;
  for (int it = 0; it < 30; ++it) {
    h.evaluate(s, x, t);
    const Vector3d y = rt * (x - pl.center);
    const Vector3d ty = rt * t;
    double g = 0.0, gu = 0.0, gv = 0.0;
    if (pl.n_deformation > 0) {
      deformation_terms(pl.n_deformation, y.x(), y.y(), pl.inv_half_width, pl.inv_half_length, terms, dterm_u,
                        dterm_v);
      for (int k = 0; k < pl.n_deformation; ++k) {
        g += pl.deformation[k] * terms[k];
        gu += pl.deformation[k] * dterm_u[k];
        gv += pl.deformation[k] * dterm_v[k];
      }
    }
    const double f = y.z() - g;
    const double df = ty.z() - gu * ty.x() - gv * ty.y();
    if (std::fabs(df) < 1e-9) return false;
    const double step = f / df;
    s -= step;
    if (std::fabs(step) < k_newton_tolerance) {
      // One more Newton step changes (u, v) by O(step^2): take the first-order update.
      u = y.x() - step * ty.x();
      v = y.y() - step * ty.y();
      s_out = s;
      return true;
    }
  }
  return false;
}

/// Closest approach of the helix to the line through ends a, b near s: signed distance along
/// normalize(t x w), path s, position of the closest point along the wire (0 at a, 1 at b).
bool wire_crossing(const HelixState& h, double s_guess, const Vector3d& a, const Vector3d& b, double& s_out,
                   double& distance, double& fraction) {
  const Vector3d ab = b - a;
  const Vector3d w = ab.normalized();
  double s = s_guess;
  Vector3d x, t;
  for (int it = 0; it < 30; ++it) {
    h.evaluate(s, x, t);
    const Vector3d d = x - a;
    const Vector3d dp = d - d.dot(w) * w;
    const Vector3d tp = t - t.dot(w) * w;
    const double g = dp.dot(t);
    const double dg = tp.dot(t) + h.rho * (dp.y() * t.x() - dp.x() * t.y());
    if (dg <= 1e-12) return false;
    const double step = g / dg;
    s -= step;
    if (std::fabs(step) < k_newton_tolerance) {
      // First-order update of the closest point (the error is O(step^2)).
      const Vector3d df = d - step * t;
      const Vector3d n = t.cross(w).normalized();
      distance = (df - df.dot(w) * w).dot(n);
      fraction = df.dot(ab) / ab.squaredNorm();
      s_out = s;
      return true;
    }
  }
  return false;
}

}  // namespace

SensorPlacement sensor_placement(const Detector& detector, int sensor, const std::vector<double>& p) {
  const Sensor& s = detector.sensors()[sensor];
  SensorPlacement pl;
  pl.inv_half_width = 1.0 / s.half_width;
  pl.inv_half_length = 1.0 / s.half_length;
  pl.center = s.center;
  pl.rotation = s.rotation;
  if (p.empty()) return pl;
  Eigen::Matrix<double, 6, 1> rigid;
  for (int i = 0; i < 6; ++i) rigid[i] = p[s.first_parameter + i];
  if (s.half_shell >= 0) {
    const std::int64_t f = detector.half_shells()[s.half_shell].first_parameter;
    Eigen::Matrix<double, 6, 1> parent;
    for (int i = 0; i < 6; ++i) parent[i] = p[f + i];
    rigid += detector.sensor_from_half_shell(sensor) * parent;
  }
  const Vector3d omega = rigid.tail<3>();
  const double angle = omega.norm();
  const Matrix3d rotation =
      angle > 0.0 ? Eigen::AngleAxisd(angle, omega / angle).toRotationMatrix() : Matrix3d::Identity();
  pl.center = s.center + s.rotation * rigid.head<3>();
  pl.rotation = s.rotation * rotation;
  const int n_def = detector.sensor_parameters() - k_rigid_parameters;
  for (int k = 0; k < n_def; ++k) {
    pl.deformation[k] = p[s.first_parameter + k_rigid_parameters + k];
    if (pl.deformation[k] != 0.0) pl.n_deformation = k + 1;
  }
  return pl;
}

WireShift wire_shift(const Detector& detector, int layer, int wire, const std::vector<double>& p) {
  WireShift shift{0.0, 0.0, 0.0, 0.0};
  if (p.empty()) return shift;
  const CdcLayer& l = detector.cdc_layers()[layer];
  if (l.first_wire_parameter >= 0) {
    for (int i = 0; i < 4; ++i) shift[i] = p[l.first_wire_parameter + k_wire_parameters * wire + i];
  }
  if (l.first_parameter >= 0) {
    Eigen::Matrix<double, 6, 1> parent;
    for (int i = 0; i < 6; ++i) parent[i] = p[l.first_parameter + i];
    const Eigen::Matrix<double, 4, 1> moved = detector.wire_from_layer(layer, wire) * parent;
    for (int i = 0; i < 4; ++i) shift[i] += moved[i];
  }
  return shift;
}

}  // namespace detail

using namespace detail;

namespace {

/// Finds the crossings of one direction of a track with every surface, in order of |s|.
class CrossingFinder {
 public:
  CrossingFinder(const Simulation::Impl& sim) : m_sim(sim), m_det(*sim.detector) {}

  void find(const HelixState& h, int sign, int chain_index, Rng& rng, RecordLayout& layout) {
    Chain& chain = layout.chains[chain_index];
    const DetectorConfig& cfg = m_det.config();
    auto add = [&](Crossing c) {
      c.chain = chain_index;
      chain.crossings.push_back(static_cast<int>(layout.crossings.size()));
      layout.crossings.push_back(c);
    };
    double s = 0.0;
    auto material = [&](double r, double x0) {
      if (x0 <= 0.0 || !cylinder_crossing(h, sign, r, s)) return;
      const Vector3d x = h.position(s);
      const Vector3d t = h.direction(s).normalized();
      const double cosine = std::fabs((x.x() * t.x() + x.y() * t.y()) / r);
      Crossing c;
      c.kind = Crossing::material;
      c.s = s;
      c.x0 = x0 / std::max(cosine, 0.05);
      add(c);
    };

    material(cfg.beam_pipe_radius, cfg.beam_pipe_x0);
    const auto& sensors = m_det.sensors();
    for (std::size_t li = 0; li < cfg.vxd.size(); ++li) {
      const VxdLayerConfig& lc = cfg.vxd[li];
      if (!cylinder_crossing(h, sign, lc.radius + 0.5 * lc.radius_step, s)) continue;
      const Vector3d x = h.position(s);
      const double half_z = 0.5 * lc.sensors_per_ladder * lc.sensor_length;
      if (x.z() < lc.z_center - half_z - 2.0 || x.z() > lc.z_center + half_z + 2.0) continue;
      const double phi = std::atan2(x.y(), x.x());
      const long k0 = std::lround((phi - lc.phi0) * lc.ladders / k_two_pi);
      for (long dk = -1; dk <= 1; ++dk) {
        const int ladder = static_cast<int>(((k0 + dk) % lc.ladders + lc.ladders) % lc.ladders);
        const int first = m_det.layer_first_sensor()[li] + ladder * lc.sensors_per_ladder;
        const SensorPlacement& plane = m_sim.nominal_sensors[first];
        double s_plane = 0.0, u = 0.0, v = 0.0;
        if (!sensor_crossing(h, s, plane, s_plane, u, v)) continue;
        if (s_plane * sign <= 0.0) continue;
        const Sensor& s1 = sensors[first];
        if (std::fabs(u) > s1.half_width) continue;
        const long n = std::lround(-v / lc.sensor_length);
        if (n < 0 || n >= lc.sensors_per_ladder) continue;
        v += n * lc.sensor_length;
        if (std::fabs(v) > s1.half_length) continue;
        const int sensor = first + static_cast<int>(n);
        const Vector3d t = h.direction(s_plane).normalized();
        const double cosine = std::fabs(t.dot(sensors[sensor].rotation.col(2)));
        if (cosine < 0.05) continue;
        Crossing c;
        c.kind = Crossing::sensor_hit;
        c.s = s_plane;
        c.object = sensor;
        c.measured = rng.uniform() < sensors[sensor].efficiency;
        c.x0 = sensors[sensor].thickness_x0 / cosine;
        c.value[0] = u;
        c.value[1] = v;
        add(c);
      }
    }
    material(cfg.cdc_wall_radius, cfg.cdc_wall_x0);
    const auto& layers = m_det.cdc_layers();
    // Where the previous layer was crossed: the next crossing is extrapolated from there (the
    // wire's closest approach is found by Newton anyway; the layer crossing only picks the wire).
    bool have_previous = false;
    double s_previous = 0.0, r_previous = 0.0, radial_rate = 0.0;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const CdcLayer& layer = layers[l];
      Vector3d x, t;
      if (have_previous && radial_rate > 0.3) {
        s = s_previous + sign * (layer.radius - r_previous) / radial_rate;
      } else if (!cylinder_crossing(h, sign, layer.radius, s)) {
        continue;
      }
      h.evaluate(s, x, t);
      const double r_xy = std::hypot(x.x(), x.y());
      have_previous = true;
      s_previous = s;
      r_previous = r_xy;
      radial_rate = std::fabs(x.x() * t.x() + x.y() * t.y()) / r_xy;
      if (x.z() < layer.z_backward || x.z() > layer.z_forward) continue;
      const double frac = (x.z() - layer.z_backward) / (layer.z_forward - layer.z_backward);
      const double phi = std::atan2(x.y(), x.x()) - layer.twist * frac - layer.phi0;
      long guess = std::lround(phi * layer.wires / k_two_pi);
      {
        // A stereo wire is a chord, not a helix on the cylinder: correct the guess with the
        // azimuth of the guessed wire at this z.
        const int wire = static_cast<int>((guess % layer.wires + layer.wires) % layer.wires);
        const auto& ends = m_sim.wire_ends[m_sim.layer_first_wire[l] + wire];
        const Vector3d w = ends[0] + frac * (ends[1] - ends[0]);
        // Sine of the azimuth from the wire to the crossing (small: a few cells at most).
        const double offset = (w.x() * x.y() - w.y() * x.x()) / (std::hypot(w.x(), w.y()) * std::hypot(x.x(), x.y()));
        guess += std::lround(offset * layer.wires / k_two_pi);
      }
      const double half_cell = std::numbers::pi * layer.radius * std::cos(0.5 * layer.twist) / layer.wires;
      int best_wire = -1;
      double best_s = 0.0, best_d = 0.0;
      auto try_wire = [&](long w) {
        const int wire = static_cast<int>((w % layer.wires + layer.wires) % layer.wires);
        const auto& ends = m_sim.wire_ends[m_sim.layer_first_wire[l] + wire];
        double sw = 0.0, d = 0.0, f = 0.0;
        if (!wire_crossing(h, s, ends[0], ends[1], sw, d, f)) return;
        if (f < 0.0 || f > 1.0 || sw * sign <= 0.0) return;
        if (best_wire < 0 || std::fabs(d) < std::fabs(best_d)) {
          best_wire = wire;
          best_s = sw;
          best_d = d;
        }
      };
      try_wire(guess);
      if (best_wire < 0 || std::fabs(best_d) > half_cell) {
        try_wire(guess - 1);
        try_wire(guess + 1);
      }
      if (best_wire < 0) continue;
      Crossing c;
      c.kind = Crossing::wire_hit;
      c.s = best_s;
      c.object = static_cast<int>(l);
      c.wire = best_wire;
      c.measured = rng.uniform() < layer.efficiency;
      c.value[0] = best_d;
      add(c);
    }
    std::sort(chain.crossings.begin(), chain.crossings.end(), [&](int a, int b) {
      return std::fabs(layout.crossings[a].s) < std::fabs(layout.crossings[b].s);
    });
  }

 private:
  const Simulation::Impl& m_sim;
  const Detector& m_det;
};

}  // namespace

void Simulation::Impl::layout_record(std::int64_t index, RecordLayout& layout) const {
  const SimulationConfig& cfg = *config;
  Rng rng(cfg.seed, 1, static_cast<std::uint64_t>(index));
  const bool cosmic = owner->is_cosmic(index);
  CrossingFinder finder(*this);

  bool accepted = false;
  for (int attempt = 0; attempt < 10000 && !accepted; ++attempt) {
    layout.clear();
    layout.index = index;
    layout.cosmic = cosmic;
    if (!cosmic) {
      const Vector3d vertex(k_beam_spot[0] * rng.normal(), k_beam_spot[1] * rng.normal(),
                            k_beam_spot[2] * rng.normal());
      double cos_theta = 0.0;
      do {
        cos_theta = 2.0 * rng.uniform() - 1.0;
      } while (2.0 * rng.uniform() > 1.0 + cos_theta * cos_theta);
      const double phi = k_two_pi * rng.uniform();
      const double sin_theta = std::sqrt(1.0 - cos_theta * cos_theta);
      const double gamma = std::sqrt(1.0 + k_boost_beta_gamma * k_boost_beta_gamma);
      for (int k = 0; k < 2; ++k) {
        const double sign = k == 0 ? 1.0 : -1.0;
        const double charge = k == 0 ? -1.0 : 1.0;
        const double pt = k_cm_momentum * sin_theta;
        const double pz = gamma * k_cm_momentum * sign * cos_theta + k_boost_beta_gamma * k_cm_momentum;
        TrackRef t;
        t.state.point = vertex;
        t.state.set_phi(k == 0 ? phi : phi + std::numbers::pi);
        t.state.tan_lambda = pz / std::max(pt, 1e-6);
        t.curved = cfg.field;
        t.rho_per_omega = rho_per_omega;
        t.state.rho = cfg.field ? rho_per_omega * charge / pt : 0.0;
        t.shared_vertex = true;
        t.momentum = std::sqrt(pt * pt + pz * pz);
        layout.tracks.push_back(t);
      }
    } else {
      double cos_zenith = 0.0;
      do {
        cos_zenith = k_cosmic_cos_zenith_min + (1.0 - k_cosmic_cos_zenith_min) * rng.uniform();
      } while (rng.uniform() > cos_zenith * cos_zenith);
      const double azimuth = k_two_pi * rng.uniform();
      const double sin_zenith = std::sqrt(1.0 - cos_zenith * cos_zenith);
      const Vector3d dir(sin_zenith * std::cos(azimuth), -cos_zenith, sin_zenith * std::sin(azimuth));
      const double p = k_cosmic_p_min * std::pow(k_cosmic_p_max / k_cosmic_p_min, rng.uniform());
      const double d0 = k_cosmic_d0_max * (2.0 * rng.uniform() - 1.0);
      const double z0 = k_cosmic_z0_min + (k_cosmic_z0_max - k_cosmic_z0_min) * rng.uniform();
      const double charge = rng.uniform() < 0.5 ? -1.0 : 1.0;
      const double dir_t = std::hypot(dir.x(), dir.y());
      TrackRef t;
      t.state.set_phi(std::atan2(dir.y(), dir.x()));
      t.state.point = Vector3d(-d0 * std::sin(t.state.phi()), d0 * std::cos(t.state.phi()), z0);
      t.state.tan_lambda = dir.z() / dir_t;
      t.curved = cfg.cosmics_in_field && cfg.field;
      t.rho_per_omega = cosmic_rho_per_omega;
      t.state.rho = t.curved ? cosmic_rho_per_omega * charge / (p * dir_t) : 0.0;
      t.shared_vertex = false;
      t.momentum = p;
      layout.tracks.push_back(t);
    }
    // Crossings, direction by direction; cosmics are followed both ways from their closest approach.
    accepted = true;
    for (std::size_t ti = 0; ti < layout.tracks.size(); ++ti) {
      TrackRef& t = layout.tracks[ti];
      for (int sign : {-1, 1}) {
        if (sign < 0 && !cosmic) continue;
        const int ci = static_cast<int>(layout.chains.size());
        layout.chains.emplace_back();
        layout.chains[ci].track = static_cast<int>(ti);
        layout.chains[ci].sign = sign;
        t.chains[sign < 0 ? 0 : 1] = ci;
        finder.find(t.state, sign, ci, rng, layout);
      }
      int hits = 0;
      for (const auto& c : layout.crossings) {
        if (c.kind == Crossing::sensor_hit && c.measured && layout.chains[c.chain].track == static_cast<int>(ti)) ++hits;
      }
      if (hits < cfg.min_sensor_hits) accepted = false;
    }
  }
  if (!accepted) {
    throw RuntimeError("simulation: record " + std::to_string(index) +
                       " has no track in the acceptance after 10000 attempts; check the detector configuration");
  }

  // Local parameters: point (vertex x, y, z or a, b), per track phi, tan-lambda (, q/pT), kinks.
  int n_local = cosmic ? 2 : 3;
  for (auto& t : layout.tracks) {
    t.local_phi = n_local;
    n_local += t.curved ? 3 : 2;
  }
  const bool scattering = config->scattering == Scattering::broken_lines;
  for (auto& t : layout.tracks) {
    for (int ci : t.chains) {
      if (ci < 0) continue;
      Chain& chain = layout.chains[ci];
      // A kink only matters if a measurement follows it.
      int last_measured = -1;
      for (int k = 0; k < static_cast<int>(chain.crossings.size()); ++k) {
        if (layout.crossings[chain.crossings[k]].measured) last_measured = k;
      }
      int segment = 0;
      for (int k = 0; k < static_cast<int>(chain.crossings.size()); ++k) {
        Crossing& c = layout.crossings[chain.crossings[k]];
        c.segment = segment;
        if (scattering && c.x0 > 0.0 && k < last_measured) {
          c.kink_local = n_local;
          n_local += 2;
          chain.kinks.push_back(chain.crossings[k]);
          ++segment;
        }
      }
    }
  }
  layout.n_local = n_local;
  layout.true_dq.assign(n_local, 0.0);

  // Measurements: per track the hits in order of s, then the kinks' pseudo-measurements.
  for (const auto& t : layout.tracks) {
    for (int side = 0; side < 2; ++side) {
      if (t.chains[side] < 0) continue;
      const Chain& chain = layout.chains[t.chains[side]];
      const int n = static_cast<int>(chain.crossings.size());
      for (int k = 0; k < n; ++k) {
        const int ci = chain.crossings[side == 0 ? n - 1 - k : k];
        const Crossing& c = layout.crossings[ci];
        if (!c.measured) continue;
        if (c.kind == Crossing::sensor_hit) {
          const Sensor& sensor = detector->sensors()[c.object];
          layout.measurements.push_back({MeasurementKind::sensor_u, ci, -1, sensor.sigma_u});
          layout.measurements.push_back({MeasurementKind::sensor_v, ci, -1, sensor.sigma_v});
        } else if (c.kind == Crossing::wire_hit) {
          layout.measurements.push_back({MeasurementKind::wire, ci, -1, detector->cdc_layers()[c.object].sigma});
        }
      }
    }
    for (int side = 0; side < 2; ++side) {
      if (t.chains[side] < 0) continue;
      for (int ci : layout.chains[t.chains[side]].kinks) {
        const Crossing& c = layout.crossings[ci];
        const double theta0 = highland(t.momentum, c.x0);
        const double sec2 = 1.0 + t.state.tan_lambda * t.state.tan_lambda;
        layout.measurements.push_back({MeasurementKind::kink_phi, ci, c.kink_local, theta0 * std::sqrt(sec2)});
        layout.measurements.push_back({MeasurementKind::kink_tan_lambda, ci, c.kink_local + 1, theta0 * sec2});
      }
    }
  }
  for (const auto& m : layout.measurements) {
    if (m.kind == MeasurementKind::kink_phi || m.kind == MeasurementKind::kink_tan_lambda) {
      layout.true_dq[m.local] = m.sigma * rng.normal();
    }
  }
  layout.noise.resize(layout.measurements.size());
  for (std::size_t m = 0; m < layout.measurements.size(); ++m) {
    const bool kink = layout.measurements[m].kind == MeasurementKind::kink_phi ||
                      layout.measurements[m].kind == MeasurementKind::kink_tan_lambda;
    layout.noise[m] = kink ? 0.0 : rng.normal();
  }
}

namespace {

/// Helix states of every segment of every chain for local offsets dq: segment 0 is the track's
/// state at s = 0, each kink starts a new segment. Returns the index of each chain's segment 0.
void build_segments(const RecordLayout& layout, const double* dq, std::vector<HelixState>& states,
                    std::vector<int>& first_segment) {
  states.clear();
  first_segment.assign(layout.chains.size(), 0);
  for (std::size_t ci = 0; ci < layout.chains.size(); ++ci) {
    const Chain& chain = layout.chains[ci];
    const TrackRef& t = layout.tracks[chain.track];
    HelixState h = t.state;
    if (dq) {
      if (t.shared_vertex) {
        h.point += Vector3d(dq[0], dq[1], dq[2]);
      } else {
        h.point += dq[0] * Vector3d(-std::sin(t.state.phi()), std::cos(t.state.phi()), 0.0) + dq[1] * Vector3d::UnitZ();
      }
      h.set_phi(h.phi() + dq[t.local_phi]);
      h.tan_lambda += dq[t.local_phi + 1];
      if (t.curved) h.rho += t.rho_per_omega * dq[t.local_phi + 2];
    }
    first_segment[ci] = static_cast<int>(states.size());
    states.push_back(h);
    for (int k : chain.kinks) {
      const Crossing& c = layout.crossings[k];
      HelixState next = states.back().at(c.s);
      if (dq) {
        next.set_phi(next.phi() + dq[c.kink_local]);
        next.tan_lambda += dq[c.kink_local + 1];
      }
      states.push_back(next);
    }
  }
}

}  // namespace

void Simulation::Impl::predict(const RecordLayout& layout, const double* dq, const GeometryView& geometry,
                               std::vector<double>& values, std::vector<HelixState>& states) const {
  thread_local std::vector<int> first_segment;
  build_segments(layout, dq, states, first_segment);
  values.assign(layout.measurements.size(), 0.0);
  for (std::size_t m = 0; m < layout.measurements.size(); ++m) {
    const MeasurementRef& mr = layout.measurements[m];
    if (mr.kind == MeasurementKind::kink_phi || mr.kind == MeasurementKind::kink_tan_lambda) {
      values[m] = dq ? dq[mr.local] : 0.0;
      continue;
    }
    const Crossing& c = layout.crossings[mr.crossing];
    const HelixState& h = states[first_segment[c.chain] + c.segment];
    if (mr.kind == MeasurementKind::sensor_u) {
      double s = 0.0, u = 0.0, v = 0.0;
      if (!sensor_crossing(h, c.s, geometry.sensor(c.object), s, u, v)) {
        throw RuntimeError("simulation: no crossing with sensor " + std::to_string(c.object) + " in record " +
                           std::to_string(layout.index));
      }
      values[m] = u;
      if (m + 1 < layout.measurements.size() && layout.measurements[m + 1].kind == MeasurementKind::sensor_v &&
          layout.measurements[m + 1].crossing == mr.crossing) {
        values[++m] = v;
      }
    } else if (mr.kind == MeasurementKind::sensor_v) {
      double s = 0.0, u = 0.0, v = 0.0;
      sensor_crossing(h, c.s, geometry.sensor(c.object), s, u, v);
      values[m] = v;
    } else {
      const std::int64_t gw = layer_first_wire[c.object] + c.wire;
      std::array<Vector3d, 2> ends = wire_ends[gw];
      if (geometry.wires) {
        const WireShift& sh = (*geometry.wires)[gw];
        ends[0] += Vector3d(sh[0], sh[1], 0.0);
        ends[1] += Vector3d(sh[2], sh[3], 0.0);
      }
      double s = 0.0, d = 0.0, f = 0.0;
      if (!wire_crossing(h, c.s, ends[0], ends[1], s, d, f)) {
        throw RuntimeError("simulation: no closest approach to wire " + std::to_string(c.wire) + " of layer " +
                           std::to_string(c.object) + " in record " + std::to_string(layout.index));
      }
      values[m] = d;
    }
  }
}

void Simulation::Impl::emit(const RecordLayout& layout, RecordBatch& batch, GenerationStats& stats,
                            std::vector<double>& values, std::vector<HelixState>& states) const {
  const bool single = config->precision == MillePrecision::single;
  auto round = [single](double v) { return single ? static_cast<double>(static_cast<float>(v)) : v; };
  auto nonzero = [single](double v) { return single ? static_cast<float>(v) != 0.0f : v != 0.0; };

  GeometryView truth{&true_sensors, &true_wires};
  const int run = owner->run_of(layout.index);
  if (n_varying > 0) {
    // The sensors that move with time where they were in the record's run.
    truth.varying_slot = &varying_slot;
    truth.run_sensors = run_sensors.data() + static_cast<std::size_t>((run - 1) * n_varying);
  }
  predict(layout, layout.true_dq.data(), truth, values, states);

  // Reference states at the kinks of every chain (for the kinks' local derivatives).
  thread_local std::vector<Vector3d> kink_points;
  thread_local std::vector<int> kink_first;
  kink_points.clear();
  kink_first.assign(layout.chains.size(), 0);
  for (std::size_t ci = 0; ci < layout.chains.size(); ++ci) {
    kink_first[ci] = static_cast<int>(kink_points.size());
    const TrackRef& t = layout.tracks[layout.chains[ci].track];
    for (int k : layout.chains[ci].kinks) kink_points.push_back(t.state.position(layout.crossings[k].s));
  }

  const int n_def = detector->sensor_parameters() - k_rigid_parameters;
  double terms[k_max_deformation_terms];
  std::int32_t labels[32];
  double derivs[32];
  for (std::size_t m = 0; m < layout.measurements.size(); ++m) {
    const MeasurementRef& mr = layout.measurements[m];
    const bool kink = mr.kind == MeasurementKind::kink_phi || mr.kind == MeasurementKind::kink_tan_lambda;
    double residual = 0.0;
    int n_global = 0;
    Vector3d a = Vector3d::Zero(), pos, dir;
    const Crossing& c = layout.crossings[mr.crossing];
    if (!kink) {
      const TrackRef& t = layout.tracks[layout.chains[c.chain].track];
      t.state.evaluate(c.s, pos, dir);
      if (mr.kind == MeasurementKind::wire) {
        residual = values[m] + mr.sigma * layout.noise[m] - c.value[0];
        const std::int64_t gw = layer_first_wire[c.object] + c.wire;
        const auto& ends = wire_ends[gw];
        const Vector3d ab = ends[1] - ends[0];
        const Vector3d w = ab.normalized();
        a = dir.cross(w).normalized();
        const double f = (pos - ends[0]).dot(ab) / ab.squaredNorm();
        const double g[4] = {-(1.0 - f) * a.x(), -(1.0 - f) * a.y(), -f * a.x(), -f * a.y()};
        const CdcLayer& layer = detector->cdc_layers()[c.object];
        if (layer.first_wire_parameter >= 0) {
          for (int i = 0; i < 4; ++i) {
            labels[n_global] = wire_label(layer.number, c.wire, i + 1);
            derivs[n_global++] = g[i];
          }
        }
        if (layer.first_parameter >= 0) {
          const double lg[6] = {g[0], g[1], -g[0] * ends[0].y() + g[1] * ends[0].x(),
                                g[2], g[3], -g[2] * ends[1].y() + g[3] * ends[1].x()};
          for (int i = 0; i < 6; ++i) {
            labels[n_global] = cdc_layer_label(layer.number, i + 1);
            derivs[n_global++] = lg[i];
          }
        }
      } else {
        const bool is_u = mr.kind == MeasurementKind::sensor_u;
        residual = values[m] + mr.sigma * layout.noise[m] - c.value[is_u ? 0 : 1];
        const Sensor& sensor = detector->sensors()[c.object];
        const Vector3d eu = sensor.rotation.col(0), ev = sensor.rotation.col(1), n = sensor.rotation.col(2);
        const double tn = dir.dot(n);
        const double tu = dir.dot(eu) / tn, tv = dir.dot(ev) / tn;
        const double u0 = c.value[0], v0 = c.value[1];
        double rigid[6];
        if (is_u) {
          a = eu - tu * n;
          const double r[6] = {-1.0, 0.0, tu, tu * v0, -tu * u0, v0};
          std::copy(r, r + 6, rigid);
        } else {
          a = ev - tv * n;
          const double r[6] = {0.0, -1.0, tv, tv * v0, -tv * u0, -u0};
          std::copy(r, r + 6, rigid);
        }
        const double slope = is_u ? tu : tv;
        for (int i = 0; i < 6; ++i) {
          labels[n_global] = sensor_label(sensor.layer, sensor.ladder, sensor.number, i + 1);
          derivs[n_global++] = rigid[i];
        }
        if (n_def > 0) {
          deformation_terms(n_def, u0, v0, 1.0 / sensor.half_width, 1.0 / sensor.half_length, terms);
          for (int k = 0; k < n_def; ++k) {
            labels[n_global] = sensor_label(sensor.layer, sensor.ladder, sensor.number, k_rigid_parameters + k + 1);
            derivs[n_global++] = slope * terms[k];
          }
        }
        if (sensor.half_shell >= 0) {
          const Eigen::Matrix<double, 6, 6>& j = half_shell_jacobians[c.object];
          const int number = detector->half_shells()[sensor.half_shell].number;
          for (int k = 0; k < 6; ++k) {
            double d = 0.0;
            for (int i = 0; i < 6; ++i) d += rigid[i] * j(i, k);
            labels[n_global] = half_shell_label(number, k + 1);
            derivs[n_global++] = d;
          }
        }
      }
    }

    // Record the measurement.
    batch.meas_value.push_back(round(residual));
    batch.meas_sigma.push_back(round(mr.sigma));
    if (kink) {
      batch.local_index.push_back(mr.local);
      batch.local_deriv.push_back(1.0);
      ++stats.kink_measurements;
    } else {
      const Chain& chain = layout.chains[c.chain];
      const TrackRef& t = layout.tracks[chain.track];
      auto push_local = [&](int index, double value) {
        if (!nonzero(value)) return;
        batch.local_index.push_back(index);
        batch.local_deriv.push_back(round(value));
      };
      if (t.shared_vertex) {
        push_local(0, a.x());
        push_local(1, a.y());
        push_local(2, a.z());
      } else {
        push_local(0, a.dot(Vector3d(-std::sin(t.state.phi()), std::cos(t.state.phi()), 0.0)));
        push_local(1, a.z());
      }
      // A change of direction at a point turns the rest of the helix about that point.
      auto turn = [&](const Vector3d& pivot) { return a.y() * (pos.x() - pivot.x()) - a.x() * (pos.y() - pivot.y()); };
      push_local(t.local_phi, turn(t.state.point));
      push_local(t.local_phi + 1, a.z() * c.s);
      if (t.curved) push_local(t.local_phi + 2, a.dot(t.state.d_rho(c.s)) * t.rho_per_omega);
      for (int k = 0; k < c.segment; ++k) {
        const Crossing& kc = layout.crossings[chain.kinks[k]];
        push_local(kc.kink_local, turn(kink_points[kink_first[c.chain] + k]));
        push_local(kc.kink_local + 1, a.z() * (c.s - kc.s));
      }
    }
    batch.local_begin.push_back(static_cast<std::int64_t>(batch.local_index.size()));
    for (int i = 0; i < n_global; ++i) {
      if (!nonzero(derivs[i])) continue;
      batch.global_label.push_back(labels[i]);
      batch.global_index.push_back(-1);
      batch.global_deriv.push_back(round(derivs[i]));
    }
    batch.global_begin.push_back(static_cast<std::int64_t>(batch.global_label.size()));
  }
  batch.record_begin.push_back(static_cast<std::int64_t>(batch.meas_value.size()));
  batch.record_weight.push_back(1.0);
  batch.record_file.push_back(owner->file_of(layout.index));
  batch.record_number.push_back(owner->number_in_file(layout.index));
  if (run > 0) {
    batch.record_time.resize(batch.record_number.size() - 1, kNoTime);
    batch.record_time.push_back(record_time(0, run));
  }

  ++stats.records;
  stats.tracks += static_cast<std::int64_t>(layout.tracks.size());
  stats.measurements += static_cast<std::int64_t>(layout.measurements.size());
  stats.local_parameters += layout.n_local;
  stats.max_local_parameters = std::max(stats.max_local_parameters, layout.n_local);
}

// ---- Simulation: records --------------------------------------------------------------------------

bool Simulation::is_cosmic(std::int64_t record) const {
  if (m_n_cosmics == 0) return false;
  const __int128 r = record, c = m_n_cosmics, n = m_n_records;
  return (r + 1) * c / n > r * c / n;
}

int Simulation::file_of(std::int64_t record) const {
  const __int128 f = m_config.files, n = m_n_records;
  return static_cast<int>(((record + 1) * f + n - 1) / n - 1);
}

std::int64_t Simulation::number_in_file(std::int64_t record) const {
  const __int128 f = file_of(record);
  const std::int64_t start = static_cast<std::int64_t>(f * m_n_records / m_config.files);
  return record - start + 1;
}

GenerationStats Simulation::generate(std::int64_t first, std::int64_t count, RecordBatch& batch) const {
  GenerationStats stats;
  RecordLayout layout;
  std::vector<double> values;
  std::vector<HelixState> states;
  for (std::int64_t i = first; i < first + count && i < m_n_records; ++i) {
    m_impl->layout_record(i, layout);
    const std::size_t locals = batch.local_index.size(), globals = batch.global_label.size();
    m_impl->emit(layout, batch, stats, values, states);
    stats.local_derivatives += static_cast<std::int64_t>(batch.local_index.size() - locals);
    stats.global_derivatives += static_cast<std::int64_t>(batch.global_label.size() - globals);
  }
  return stats;
}

namespace {

void append_batch(RecordBatch& dst, const RecordBatch& src) {
  if (!src.record_time.empty()) {
    dst.record_time.resize(dst.n_records(), kNoTime);
    dst.record_time.insert(dst.record_time.end(), src.record_time.begin(), src.record_time.end());
  } else if (!dst.record_time.empty()) {
    dst.record_time.resize(dst.n_records() + src.n_records(), kNoTime);
  }
  const std::int64_t meas0 = static_cast<std::int64_t>(dst.meas_value.size());
  const std::int64_t loc0 = static_cast<std::int64_t>(dst.local_index.size());
  const std::int64_t glob0 = static_cast<std::int64_t>(dst.global_label.size());
  for (std::size_t r = 1; r < src.record_begin.size(); ++r) dst.record_begin.push_back(src.record_begin[r] + meas0);
  dst.record_weight.insert(dst.record_weight.end(), src.record_weight.begin(), src.record_weight.end());
  dst.record_file.insert(dst.record_file.end(), src.record_file.begin(), src.record_file.end());
  dst.record_number.insert(dst.record_number.end(), src.record_number.begin(), src.record_number.end());
  dst.meas_value.insert(dst.meas_value.end(), src.meas_value.begin(), src.meas_value.end());
  dst.meas_sigma.insert(dst.meas_sigma.end(), src.meas_sigma.begin(), src.meas_sigma.end());
  for (std::size_t m = 1; m < src.local_begin.size(); ++m) dst.local_begin.push_back(src.local_begin[m] + loc0);
  for (std::size_t m = 1; m < src.global_begin.size(); ++m) dst.global_begin.push_back(src.global_begin[m] + glob0);
  dst.local_index.insert(dst.local_index.end(), src.local_index.begin(), src.local_index.end());
  dst.local_deriv.insert(dst.local_deriv.end(), src.local_deriv.begin(), src.local_deriv.end());
  dst.global_label.insert(dst.global_label.end(), src.global_label.begin(), src.global_label.end());
  dst.global_index.insert(dst.global_index.end(), src.global_index.begin(), src.global_index.end());
  dst.global_deriv.insert(dst.global_deriv.end(), src.global_deriv.begin(), src.global_deriv.end());
}

}  // namespace

GenerationStats Simulation::generate_parallel(std::int64_t first, std::int64_t count, RecordBatch& batch,
                                              int threads) const {
  count = std::max<std::int64_t>(0, std::min(count, m_n_records - first));
  std::string capped;
  threads = gpede::detail::capped_threads(threads, capped);
  const std::int64_t min_per_thread = 64;
  threads = static_cast<int>(std::min<std::int64_t>(threads, std::max<std::int64_t>(1, count / min_per_thread)));
  if (threads <= 1) return generate(first, count, batch);
  std::vector<RecordBatch> parts(threads);
  std::vector<GenerationStats> stats(threads);
  std::vector<std::exception_ptr> errors(threads);
  const auto part = [&](int k) {
    const std::int64_t b = first + count * k / threads, e = first + count * (k + 1) / threads;
    try {
      stats[k] = generate(b, e - b, parts[k]);
    } catch (...) {
      errors[k] = std::current_exception();
    }
  };
  // Parts 1.. on threads as far as the system gives them; the caller runs part 0 and the rest.
  std::vector<std::thread> workers;
  for (int k = 1; k < threads; ++k) {
    try {
      workers.emplace_back(part, k);
    } catch (const std::system_error&) {
      break;
    }
  }
  part(0);
  for (int k = static_cast<int>(workers.size()) + 1; k < threads; ++k) part(k);
  for (auto& w : workers) w.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  GenerationStats total;
  for (int k = 0; k < threads; ++k) {
    append_batch(batch, parts[k]);
    accumulate(total, stats[k]);
  }
  return total;
}

// ---- RecordModel -----------------------------------------------------------------------------------

struct RecordModel::Impl {
  const Simulation::Impl* sim = nullptr;
  RecordLayout layout;
};

RecordModel::RecordModel() = default;
RecordModel::~RecordModel() = default;
RecordModel::RecordModel(RecordModel&&) noexcept = default;
RecordModel& RecordModel::operator=(RecordModel&&) noexcept = default;
RecordModel::RecordModel(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}

int RecordModel::n_local() const { return m_impl->layout.n_local; }
std::size_t RecordModel::n_measurements() const { return m_impl->layout.measurements.size(); }
MeasurementKind RecordModel::kind(std::size_t m) const { return m_impl->layout.measurements.at(m).kind; }
const std::vector<double>& RecordModel::true_local_offsets() const { return m_impl->layout.true_dq; }

std::vector<double> RecordModel::predict(const std::vector<double>& dq, const std::vector<double>& p) const {
  const Simulation::Impl& sim = *m_impl->sim;
  const Detector& det = *sim.detector;
  if (static_cast<int>(dq.size()) != n_local()) throw std::invalid_argument("RecordModel::predict: dq has the wrong size");
  if (!p.empty() && static_cast<std::int64_t>(p.size()) != det.n_parameters()) {
    throw std::invalid_argument("RecordModel::predict: p has the wrong size");
  }
  std::vector<SensorPlacement> sensors(det.sensors().size());
  for (std::size_t s = 0; s < sensors.size(); ++s) sensors[s] = sensor_placement(det, static_cast<int>(s), p);
  std::vector<WireShift> wires(sim.wire_ends.size(), WireShift{0.0, 0.0, 0.0, 0.0});
  for (const auto& c : m_impl->layout.crossings) {
    if (c.kind == Crossing::wire_hit) wires[sim.layer_first_wire[c.object] + c.wire] = wire_shift(det, c.object, c.wire, p);
  }
  std::vector<double> values;
  std::vector<HelixState> states;
  sim.predict(m_impl->layout, dq.data(), GeometryView{&sensors, &wires}, values, states);
  return values;
}

RecordModel Simulation::record_model(std::int64_t record) const {
  if (record < 0 || record >= m_n_records) throw std::out_of_range("Simulation::record_model: no such record");
  auto impl = std::make_unique<RecordModel::Impl>();
  impl->sim = m_impl.get();
  m_impl->layout_record(record, impl->layout);
  return RecordModel(std::move(impl));
}

}  // namespace gpede::sim
