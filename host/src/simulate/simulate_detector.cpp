// The simulated detector: presets, nominal geometry of sensors, half-shells, drift-chamber layers
// and wires, the label scheme, and the linear structure of the alignment parameters (parent-child
// Jacobians, global motions, constraints, null modes).
#include <Eigen/Dense>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

#include "gpede/simulate.hpp"

namespace gpede::sim {
namespace {

using Eigen::Matrix3d;
using Eigen::Vector3d;
using Mat6 = Eigen::Matrix<double, 6, 6>;

Matrix3d cross_matrix(const Vector3d& a) {
  Matrix3d m;
  m << 0.0, -a.z(), a.y(), a.z(), 0.0, -a.x(), -a.y(), a.x(), 0.0;
  return m;
}

/// Rigid motion of a frame (origin o, axes r) caused by a rigid motion of another frame (origin
/// o_p, axes r_p), both in the local parameters (shifts, rotations) of the respective frame.
Mat6 rigid_jacobian(const Vector3d& o, const Matrix3d& r, const Vector3d& o_p, const Matrix3d& r_p) {
  Mat6 j = Mat6::Zero();
  j.block<3, 3>(0, 0) = r.transpose() * r_p;
  j.block<3, 3>(0, 3) = -r.transpose() * cross_matrix(o - o_p) * r_p;
  j.block<3, 3>(3, 3) = r.transpose() * r_p;
  return j;
}

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("simulation configuration: " + what);
}

VxdLayerConfig vxd_layer(int ladders, int sensors, double radius, double step, double width, double length,
                         double z_center, double sigma_u, double sigma_v, double x0) {
  VxdLayerConfig c;
  c.ladders = ladders;
  c.sensors_per_ladder = sensors;
  c.radius = radius;
  c.radius_step = step;
  c.sensor_width = width;
  c.sensor_length = length;
  c.z_center = z_center;
  c.phi0 = std::numbers::pi / ladders;
  c.sigma_u = sigma_u;
  c.sigma_v = sigma_v;
  c.thickness_x0 = x0;
  c.efficiency = 0.99;
  return c;
}

CdcSuperlayerConfig superlayer(int layers, int wires, double radius, double spacing, double stereo) {
  CdcSuperlayerConfig c;
  c.layers = layers;
  c.wires = wires;
  c.first_radius = radius;
  c.layer_spacing = spacing;
  c.stereo_angle = stereo;
  return c;
}

}  // namespace

SimulationConfig preset_config(Preset preset) {
  SimulationConfig c;
  DetectorConfig& d = c.detector;
  if (preset == Preset::belle2 || preset == Preset::medium) {
    // Belle II: PXD 2 layers (8, 12 ladders x 2 sensors), SVD 4 layers (7, 10, 12, 16 ladders x
    // 2, 3, 4, 5 sensors) = 212 sensors; CDC 9 superlayers, 56 layers, 14,336 wires.
    d.vxd = {vxd_layer(8, 2, 1.42, 0.08, 1.25, 4.48, 1.1, 0.0010, 0.0012, 0.002),
             vxd_layer(12, 2, 2.20, 0.08, 1.25, 6.14, 1.7, 0.0010, 0.0012, 0.002),
             vxd_layer(7, 2, 3.90, 0.15, 3.85, 12.3, 3.0, 0.0012, 0.0020, 0.007),
             vxd_layer(10, 3, 8.00, 0.15, 5.90, 12.3, 6.0, 0.0012, 0.0020, 0.007),
             vxd_layer(12, 4, 10.4, 0.15, 5.90, 12.3, 8.0, 0.0012, 0.0020, 0.007),
             vxd_layer(16, 5, 13.5, 0.15, 5.90, 12.3, 10.0, 0.0012, 0.0020, 0.007)};
    d.pixel_layers = 2;
    d.cdc = {superlayer(8, 160, 16.8, 1.0, 0.0),     superlayer(6, 160, 25.7, 1.8, 0.0454),
             superlayer(6, 192, 36.5, 1.8, 0.0),     superlayer(6, 224, 47.3, 1.8, -0.0550),
             superlayer(6, 256, 58.1, 1.8, 0.0),     superlayer(6, 288, 68.9, 1.8, 0.0634),
             superlayer(6, 320, 79.7, 1.8, 0.0),     superlayer(6, 352, 90.5, 1.8, -0.0700),
             superlayer(6, 384, 101.3, 1.8, 0.0)};
    d.deformation_terms = 12;
    c.tracks = 100000;
    if (preset == Preset::medium) {
      // Belle II's VXD in full, the drift chamber cut to its first two superlayers: about 5,000
      // parameters, a size where the dense solution takes seconds.
      d.cdc = {superlayer(2, 160, 16.8, 1.8, 0.0), superlayer(2, 160, 25.7, 1.8, 0.0454)};
      c.tracks = 200000;
    }
  } else if (preset == Preset::cms) {
    // A CMS-sized strip barrel: 9 layers of 99 ladders x 9 modules (8,019 modules; CMS's tracker
    // has 16,588), 18 parameters each (rigid body and 12 surface-deformation terms) under 2 half-
    // shells: 144,354 parameters. Ladders overlap by 8 % in r-phi; the barrel is 117 cm long.
    // No drift chamber; 3.8 T. A module is coupled only to the modules that tracks through it
    // reach, so the global matrix is sparse.
    const double radii[9] = {20.0, 28.0, 36.0, 44.0, 55.0, 65.0, 76.0, 87.0, 100.0};
    d.vxd.clear();
    for (double r : radii) {
      d.vxd.push_back(vxd_layer(99, 9, r, 0.6, 1.08 * 2.0 * std::numbers::pi * r / 99.0, 13.0, 0.0, 0.0025, 0.0040, 0.010));
    }
    d.pixel_layers = 0;
    d.cdc.clear();
    d.cdc_layer_parameters = false;
    d.cdc_wire_parameters = false;
    d.deformation_terms = 12;
    c.field_tesla = 3.8;
    c.tracks = 400000;
    c.presigmas = true;
  } else {
    // One long sensor per ladder, 3 deformation terms, a 4-layer drift chamber: about 1,800
    // parameters.
    d.vxd = {vxd_layer(8, 1, 1.42, 0.08, 1.25, 8.96, 1.1, 0.0010, 0.0012, 0.002),
             vxd_layer(12, 1, 2.20, 0.08, 1.25, 12.28, 1.7, 0.0010, 0.0012, 0.002),
             vxd_layer(7, 1, 3.90, 0.15, 3.85, 24.6, 3.0, 0.0012, 0.0020, 0.007),
             vxd_layer(10, 1, 8.00, 0.15, 5.90, 36.9, 6.0, 0.0012, 0.0020, 0.007),
             vxd_layer(12, 1, 10.4, 0.15, 5.90, 49.2, 8.0, 0.0012, 0.0020, 0.007),
             vxd_layer(16, 1, 13.5, 0.15, 5.90, 61.5, 10.0, 0.0012, 0.0020, 0.007)};
    d.pixel_layers = 2;
    d.cdc = {superlayer(2, 60, 16.8, 1.8, 0.0), superlayer(2, 90, 25.7, 1.8, 0.0454)};
    d.deformation_terms = 3;
    c.tracks = 20000;
  }
  return c;
}

Detector::Detector(const DetectorConfig& config) : m_config(config) {
  require(config.deformation_terms >= 0 && config.deformation_terms <= k_max_deformation_terms,
          "deformation_terms must be 0..12");
  require(config.vxd.size() <= 9, "at most 9 VXD layers (label scheme)");
  require(config.pixel_layers >= 0 && config.pixel_layers <= static_cast<int>(config.vxd.size()),
          "pixel_layers must be 0..number of VXD layers");
  int cdc_layers = 0;
  for (const auto& sl : config.cdc) cdc_layers += sl.layers;
  require(cdc_layers <= 100, "at most 100 drift-chamber layers (label scheme)");
  require(config.cdc_sigma > 0.0, "cdc_sigma must be positive");
  require(config.cdc_efficiency > 0.0 && config.cdc_efficiency <= 1.0, "cdc_efficiency must be in (0, 1]");
  build_vxd();
  build_cdc();
  build_labels();
}

void Detector::build_vxd() {
  const auto& cfg = m_config;
  const bool strips = static_cast<int>(cfg.vxd.size()) > cfg.pixel_layers;
  const bool pixels = cfg.pixel_layers > 0;
  // Half-shell index by number (1..4), -1 where absent.
  std::array<int, 5> shell_of_number{-1, -1, -1, -1, -1};
  if (cfg.half_shells) {
    for (int number = 1; number <= 4; ++number) {
      if ((number <= 2 && !pixels) || (number >= 3 && !strips)) continue;
      HalfShell h;
      h.number = number;
      shell_of_number[number] = static_cast<int>(m_half_shells.size());
      m_half_shells.push_back(h);
    }
  }
  m_layer_first_sensor.clear();
  for (std::size_t li = 0; li < cfg.vxd.size(); ++li) {
    const VxdLayerConfig& lc = cfg.vxd[li];
    const std::string where = "VXD layer " + std::to_string(li + 1) + ": ";
    require(lc.ladders >= 1 && lc.ladders <= 99, where + "ladders must be 1..99");
    require(lc.sensors_per_ladder >= 1 && lc.sensors_per_ladder <= 9, where + "sensors per ladder must be 1..9");
    require(lc.radius > 0.0 && lc.sensor_width > 0.0 && lc.sensor_length > 0.0, where + "sizes must be positive");
    require(lc.sigma_u > 0.0 && lc.sigma_v > 0.0, where + "resolutions must be positive");
    require(lc.efficiency > 0.0 && lc.efficiency <= 1.0, where + "efficiency must be in (0, 1]");
    require(lc.thickness_x0 >= 0.0, where + "thickness must not be negative");
    m_layer_first_sensor.push_back(static_cast<int>(m_sensors.size()));
    const bool pixel = static_cast<int>(li) < cfg.pixel_layers;
    for (int ladder = 1; ladder <= lc.ladders; ++ladder) {
      const double phi = lc.phi0 + 2.0 * std::numbers::pi * (ladder - 1) / lc.ladders;
      const double r = lc.radius + ((ladder - 1) % 2 == 1 ? lc.radius_step : 0.0);
      const Vector3d w(std::cos(phi), std::sin(phi), 0.0);
      const Vector3d v(0.0, 0.0, 1.0);
      const Vector3d u = v.cross(w);
      for (int n = 1; n <= lc.sensors_per_ladder; ++n) {
        Sensor s;
        s.layer = static_cast<int>(li) + 1;
        s.ladder = ladder;
        s.number = n;
        s.pixel = pixel;
        // Sensor 1 is the most forward one, as in Belle II.
        const double z = lc.z_center + (0.5 * (lc.sensors_per_ladder - 1) - (n - 1)) * lc.sensor_length;
        s.center = r * w + z * v;
        s.rotation.col(0) = u;
        s.rotation.col(1) = v;
        s.rotation.col(2) = w;
        s.half_width = 0.5 * lc.sensor_width;
        s.half_length = 0.5 * lc.sensor_length;
        s.sigma_u = lc.sigma_u;
        s.sigma_v = lc.sigma_v;
        s.thickness_x0 = lc.thickness_x0;
        s.efficiency = lc.efficiency;
        if (cfg.half_shells) {
          const int number = (pixel ? 1 : 3) + (std::cos(phi) > 0.0 ? 0 : 1);
          s.half_shell = shell_of_number[number];
        }
        m_sensors.push_back(s);
      }
    }
  }
  m_layer_first_sensor.push_back(static_cast<int>(m_sensors.size()));
}

void Detector::build_cdc() {
  const auto& cfg = m_config;
  int number = 0;
  for (std::size_t si = 0; si < cfg.cdc.size(); ++si) {
    const CdcSuperlayerConfig& sl = cfg.cdc[si];
    const std::string where = "drift-chamber superlayer " + std::to_string(si) + ": ";
    require(sl.layers >= 1, where + "needs at least one layer");
    require(sl.wires >= 3 && sl.wires <= 999, where + "wires per layer must be 3..999 (label scheme)");
    require(sl.first_radius > cfg.cdc_wall_radius, where + "must lie outside the inner wall");
    for (int j = 0; j < sl.layers; ++j) {
      CdcLayer l;
      l.number = number++;
      l.superlayer = static_cast<int>(si);
      l.wires = sl.wires;
      l.radius = sl.first_radius + j * sl.layer_spacing;
      l.z_forward = std::min(l.radius / std::tan(cfg.cdc_forward_angle), cfg.cdc_z_forward_max);
      l.z_backward = std::max(l.radius / std::tan(cfg.cdc_backward_angle), cfg.cdc_z_backward_min);
      const double chord = (l.z_forward - l.z_backward) * std::tan(std::fabs(sl.stereo_angle));
      require(chord < 2.0 * l.radius, where + "stereo angle too large for the wire length");
      l.twist = std::copysign(2.0 * std::asin(chord / (2.0 * l.radius)), sl.stereo_angle);
      l.phi0 = (j % 2 == 1 ? 0.5 : 0.0) * 2.0 * std::numbers::pi / sl.wires;
      l.sigma = cfg.cdc_sigma;
      l.efficiency = cfg.cdc_efficiency;
      m_layers.push_back(l);
      m_n_wires += sl.wires;
    }
  }
}

void Detector::build_labels() {
  m_labels.clear();
  m_first_shell_parameter = 0;
  for (auto& h : m_half_shells) {
    h.first_parameter = static_cast<std::int64_t>(m_labels.size());
    for (int p = 1; p <= k_rigid_parameters; ++p) m_labels.push_back(half_shell_label(h.number, p));
  }
  m_first_sensor_parameter = static_cast<std::int64_t>(m_labels.size());
  for (auto& s : m_sensors) {
    s.first_parameter = static_cast<std::int64_t>(m_labels.size());
    for (int p = 1; p <= sensor_parameters(); ++p) m_labels.push_back(sensor_label(s.layer, s.ladder, s.number, p));
  }
  m_first_layer_parameter = static_cast<std::int64_t>(m_labels.size());
  if (m_config.cdc_layer_parameters) {
    for (auto& l : m_layers) {
      l.first_parameter = static_cast<std::int64_t>(m_labels.size());
      for (int p = 1; p <= k_rigid_parameters; ++p) m_labels.push_back(cdc_layer_label(l.number, p));
    }
  }
  m_first_wire_parameter = static_cast<std::int64_t>(m_labels.size());
  if (m_config.cdc_wire_parameters) {
    for (auto& l : m_layers) {
      l.first_wire_parameter = static_cast<std::int64_t>(m_labels.size());
      for (int w = 0; w < l.wires; ++w) {
        for (int p = 1; p <= k_wire_parameters; ++p) m_labels.push_back(wire_label(l.number, w, p));
      }
    }
  }
}

std::int64_t Detector::parameter_index(std::int32_t label) const {
  if (label <= 0) return -1;
  if (label < 100) {
    const int number = label / 10, p = label % 10;
    if (p < 1 || p > k_rigid_parameters) return -1;
    for (const auto& h : m_half_shells) {
      if (h.number == number) return h.first_parameter + p - 1;
    }
    return -1;
  }
  if (label < 100000) return -1;
  if (label < 1000000) {
    const int layer = label / 100000, ladder = (label / 1000) % 100, n = (label / 100) % 10, p = label % 100;
    if (layer > static_cast<int>(m_config.vxd.size()) || p < 1 || p > sensor_parameters()) return -1;
    const VxdLayerConfig& lc = m_config.vxd[layer - 1];
    if (ladder < 1 || ladder > lc.ladders || n < 1 || n > lc.sensors_per_ladder) return -1;
    const int s = m_layer_first_sensor[layer - 1] + (ladder - 1) * lc.sensors_per_ladder + (n - 1);
    return m_sensors[s].first_parameter + p - 1;
  }
  if (label < 2000000) {
    const int layer = (label - 1000000) / 10, p = label % 10;
    if (!m_config.cdc_layer_parameters || layer >= static_cast<int>(m_layers.size()) || p < 1 ||
        p > k_rigid_parameters) {
      return -1;
    }
    return m_layers[layer].first_parameter + p - 1;
  }
  if (label < 3000000) {
    const int layer = (label - 2000000) / 10000, wire = (label / 10) % 1000, p = label % 10;
    if (!m_config.cdc_wire_parameters || layer >= static_cast<int>(m_layers.size()) ||
        wire >= m_layers[layer].wires || p < 1 || p > k_wire_parameters) {
      return -1;
    }
    return m_layers[layer].first_wire_parameter + k_wire_parameters * wire + p - 1;
  }
  return -1;
}

std::array<Vector3d, 2> Detector::wire_ends(int layer, int wire) const {
  const CdcLayer& l = m_layers[layer];
  const double phi_b = l.phi0 + 2.0 * std::numbers::pi * wire / l.wires;
  const double phi_f = phi_b + l.twist;
  return {Vector3d(l.radius * std::cos(phi_b), l.radius * std::sin(phi_b), l.z_backward),
          Vector3d(l.radius * std::cos(phi_f), l.radius * std::sin(phi_f), l.z_forward)};
}

Mat6 Detector::sensor_from_half_shell(int sensor) const {
  const Sensor& s = m_sensors[sensor];
  if (s.half_shell < 0) return Mat6::Zero();
  const HalfShell& h = m_half_shells[s.half_shell];
  return rigid_jacobian(s.center, s.rotation, h.origin, h.rotation);
}

Eigen::Matrix<double, 4, 6> Detector::wire_from_layer(int layer, int wire) const {
  const auto ends = wire_ends(layer, wire);
  Eigen::Matrix<double, 4, 6> j = Eigen::Matrix<double, 4, 6>::Zero();
  for (int e = 0; e < 2; ++e) {
    j(2 * e, 3 * e) = 1.0;
    j(2 * e, 3 * e + 2) = -ends[e].y();
    j(2 * e + 1, 3 * e + 1) = 1.0;
    j(2 * e + 1, 3 * e + 2) = ends[e].x();
  }
  return j;
}

Mat6 Detector::sensor_global_motion(int sensor) const {
  const Sensor& s = m_sensors[sensor];
  return rigid_jacobian(s.center, s.rotation, Vector3d::Zero(), Matrix3d::Identity());
}

Eigen::Matrix<double, 4, 6> Detector::wire_global_motion(int layer, int wire) const {
  // A rigid motion moves the wire line; its new crossings with the endplate planes z = z_e are
  // the moved ends slid back along the wire to z_e.
  const auto ends = wire_ends(layer, wire);
  const Vector3d d = (ends[1] - ends[0]) / (ends[1].z() - ends[0].z());
  Eigen::Matrix<double, 4, 6> k;
  for (int e = 0; e < 2; ++e) {
    Eigen::Matrix<double, 3, 6> motion;
    motion.block<3, 3>(0, 0) = Matrix3d::Identity();
    motion.block<3, 3>(0, 3) = -cross_matrix(ends[e]);
    Eigen::Matrix<double, 2, 3> slide;
    slide << 1.0, 0.0, -d.x(), 0.0, 1.0, -d.y();
    k.block<2, 6>(2 * e, 0) = slide * motion;
  }
  return k;
}

Mat6 Detector::layer_global_motion(int layer) const {
  // Least-squares rigid-layer representation of the exact motion of its wires.
  Mat6 jtj = Mat6::Zero(), jtk = Mat6::Zero();
  for (int w = 0; w < m_layers[layer].wires; ++w) {
    const auto j = wire_from_layer(layer, w);
    jtj += j.transpose() * j;
    jtk += j.transpose() * wire_global_motion(layer, w);
  }
  return jtj.ldlt().solve(jtk);
}

std::vector<Detector::SparseRow> Detector::constraint_rows(std::vector<std::string>* names) const {
  std::vector<SparseRow> rows;
  static const char* motion_names[6] = {"shift x", "shift y", "shift z", "rotation about x", "rotation about y",
                                        "rotation about z"};
  auto add_name = [&](const std::string& n) {
    if (names) names->push_back(n);
  };
  const bool shells = !m_half_shells.empty();
  const bool layers = m_config.cdc_layer_parameters && !m_layers.empty();
  const bool wires = m_config.cdc_wire_parameters && !m_layers.empty();

  // Global motions of the top-level objects.
  std::vector<SparseRow> global(6);
  auto add_block = [&](std::int64_t first, const auto& k) {
    for (int c = 0; c < 6; ++c) {
      for (int i = 0; i < k.rows(); ++i) {
        if (k(i, c) != 0.0) global[c].emplace_back(first + i, k(i, c));
      }
    }
  };
  if (shells) {
    for (std::size_t h = 0; h < m_half_shells.size(); ++h) {
      Mat6 jtj = Mat6::Zero(), jtk = Mat6::Zero();
      for (std::size_t s = 0; s < m_sensors.size(); ++s) {
        if (m_sensors[s].half_shell != static_cast<int>(h)) continue;
        const Mat6 j = sensor_from_half_shell(static_cast<int>(s));
        jtj += j.transpose() * j;
        jtk += j.transpose() * sensor_global_motion(static_cast<int>(s));
      }
      add_block(m_half_shells[h].first_parameter, Mat6(jtj.ldlt().solve(jtk)));
    }
  } else {
    for (std::size_t s = 0; s < m_sensors.size(); ++s) {
      add_block(m_sensors[s].first_parameter, sensor_global_motion(static_cast<int>(s)));
    }
  }
  if (layers) {
    for (std::size_t l = 0; l < m_layers.size(); ++l) {
      add_block(m_layers[l].first_parameter, layer_global_motion(static_cast<int>(l)));
    }
  } else if (wires) {
    for (std::size_t l = 0; l < m_layers.size(); ++l) {
      for (int w = 0; w < m_layers[l].wires; ++w) {
        add_block(m_layers[l].first_wire_parameter + k_wire_parameters * w,
                  wire_global_motion(static_cast<int>(l), w));
      }
    }
  }
  for (int c = 0; c < 6; ++c) {
    rows.push_back(std::move(global[c]));
    add_name(std::string("no overall ") + motion_names[c]);
  }

  // Children of each parent: no mean motion in the parent's terms.
  if (shells) {
    for (std::size_t h = 0; h < m_half_shells.size(); ++h) {
      std::vector<SparseRow> hier(6);
      for (std::size_t s = 0; s < m_sensors.size(); ++s) {
        if (m_sensors[s].half_shell != static_cast<int>(h)) continue;
        const Mat6 j = sensor_from_half_shell(static_cast<int>(s));
        for (int c = 0; c < 6; ++c) {
          for (int i = 0; i < 6; ++i) {
            if (j(i, c) != 0.0) hier[c].emplace_back(m_sensors[s].first_parameter + i, j(i, c));
          }
        }
      }
      for (int c = 0; c < 6; ++c) {
        rows.push_back(std::move(hier[c]));
        add_name("half-shell " + std::to_string(m_half_shells[h].number) + ": sensors without mean " +
                 motion_names[c]);
      }
    }
  }
  if (layers && wires) {
    static const char* layer_names[6] = {"dx backward", "dy backward", "dphi backward",
                                         "dx forward",  "dy forward",  "dphi forward"};
    for (std::size_t l = 0; l < m_layers.size(); ++l) {
      std::vector<SparseRow> hier(6);
      for (int w = 0; w < m_layers[l].wires; ++w) {
        const auto j = wire_from_layer(static_cast<int>(l), w);
        const std::int64_t first = m_layers[l].first_wire_parameter + k_wire_parameters * w;
        for (int c = 0; c < 6; ++c) {
          for (int i = 0; i < 4; ++i) {
            if (j(i, c) != 0.0) hier[c].emplace_back(first + i, j(i, c));
          }
        }
      }
      for (int c = 0; c < 6; ++c) {
        rows.push_back(std::move(hier[c]));
        add_name("drift-chamber layer " + std::to_string(m_layers[l].number) + ": wires without mean " +
                 layer_names[c]);
      }
    }
  }
  return rows;
}

std::vector<Detector::SparseRow> Detector::null_modes() const {
  std::vector<SparseRow> modes;
  const bool layers = m_config.cdc_layer_parameters && !m_layers.empty();
  const bool wires = m_config.cdc_wire_parameters && !m_layers.empty();
  // Parent moves by e_c, its children move back.
  for (std::size_t h = 0; h < m_half_shells.size(); ++h) {
    for (int c = 0; c < 6; ++c) {
      SparseRow mode{{m_half_shells[h].first_parameter + c, 1.0}};
      for (std::size_t s = 0; s < m_sensors.size(); ++s) {
        if (m_sensors[s].half_shell != static_cast<int>(h)) continue;
        const Mat6 j = sensor_from_half_shell(static_cast<int>(s));
        for (int i = 0; i < 6; ++i) {
          if (j(i, c) != 0.0) mode.emplace_back(m_sensors[s].first_parameter + i, -j(i, c));
        }
      }
      modes.push_back(std::move(mode));
    }
  }
  if (layers && wires) {
    for (std::size_t l = 0; l < m_layers.size(); ++l) {
      for (int c = 0; c < 6; ++c) {
        SparseRow mode{{m_layers[l].first_parameter + c, 1.0}};
        for (int w = 0; w < m_layers[l].wires; ++w) {
          const auto j = wire_from_layer(static_cast<int>(l), w);
          for (int i = 0; i < 4; ++i) {
            if (j(i, c) != 0.0) mode.emplace_back(m_layers[l].first_wire_parameter + k_wire_parameters * w + i, -j(i, c));
          }
        }
        modes.push_back(std::move(mode));
      }
    }
  }
  // Global motions at the lowest level.
  std::vector<SparseRow> global(6);
  auto add_block = [&](std::int64_t first, const auto& k) {
    for (int c = 0; c < 6; ++c) {
      for (int i = 0; i < k.rows(); ++i) {
        if (k(i, c) != 0.0) global[c].emplace_back(first + i, k(i, c));
      }
    }
  };
  for (std::size_t s = 0; s < m_sensors.size(); ++s) {
    add_block(m_sensors[s].first_parameter, sensor_global_motion(static_cast<int>(s)));
  }
  if (wires) {
    for (std::size_t l = 0; l < m_layers.size(); ++l) {
      for (int w = 0; w < m_layers[l].wires; ++w) {
        add_block(m_layers[l].first_wire_parameter + k_wire_parameters * w, wire_global_motion(static_cast<int>(l), w));
      }
    }
  } else if (layers) {
    for (std::size_t l = 0; l < m_layers.size(); ++l) {
      add_block(m_layers[l].first_parameter, layer_global_motion(static_cast<int>(l)));
    }
  }
  for (auto& g : global) modes.push_back(std::move(g));
  return modes;
}

}  // namespace gpede::sim
