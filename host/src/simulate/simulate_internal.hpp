// Internals of the simulation shared by its source files: random numbers, the helix, sensor
// placements, the layout of one record (tracks, surface crossings, kinks, measurements) and the
// state of a Simulation.
#pragma once

#include <Eigen/Core>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gpede/simulate.hpp"

namespace gpede::sim::detail {

using Eigen::Matrix3d;
using Eigen::Vector3d;

/// Curvature per tesla per (q/pT): rho [1/cm] = -k B [T] q/pT [1/GeV].
inline constexpr double k_curvature_per_tesla = 0.00299792458;

/// xoshiro256** seeded with splitmix64 from (seed, stream, index): independent streams per record.
class Rng {
 public:
  Rng(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull ^ (stream + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull ^
                      (index + 0x1234567ull) * 0x94D049BB133111EBull;
    for (auto& s : m_s) s = splitmix(x);
  }
  std::uint64_t next() {
    const std::uint64_t result = rotl(m_s[1] * 5, 7) * 9;
    const std::uint64_t t = m_s[1] << 17;
    m_s[2] ^= m_s[0];
    m_s[3] ^= m_s[1];
    m_s[1] ^= m_s[2];
    m_s[0] ^= m_s[3];
    m_s[2] ^= t;
    m_s[3] = rotl(m_s[3], 45);
    return result;
  }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Standard normal (Box-Muller, both values used).
  double normal() {
    if (m_has_spare) {
      m_has_spare = false;
      return m_spare;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double a = 6.283185307179586 * u2;
    m_spare = r * std::sin(a);
    m_has_spare = true;
    return r * std::cos(a);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::array<std::uint64_t, 4> m_s{};
  double m_spare = 0.0;
  bool m_has_spare = false;
};

/// sin(d)/d, (1-cos d)/d, cos d, sin d and, on request, d/dd of the first two. Power series up to
/// |d| = 0.25 (accurate to 1e-19; most tracks turn less than that between two surfaces), sin and cos
/// beyond.
struct HelixFunctions {
  double f1, f2, cos_d, sin_d, df1 = 0.0, df2 = 0.0;
  HelixFunctions(double d, bool with_derivatives) {
    if (std::fabs(d) < 0.25) {
      const double x = d * d;
      // f1 = sum (-x)^k / (2k+1)!, f2 = d sum (-x)^k / (2k+2)!, k = 0..6 (Horner, reciprocal
      // constants: no division).
      constexpr double a1 = 1.0 / 6, a2 = 1.0 / 20, a3 = 1.0 / 42, a4 = 1.0 / 72, a5 = 1.0 / 110, a6 = 1.0 / 156;
      constexpr double b1 = 1.0 / 12, b2 = 1.0 / 30, b3 = 1.0 / 56, b4 = 1.0 / 90, b5 = 1.0 / 132, b6 = 1.0 / 182;
      f1 = 1.0 - x * a1 * (1.0 - x * a2 * (1.0 - x * a3 * (1.0 - x * a4 * (1.0 - x * a5 * (1.0 - x * a6)))));
      f2 = 0.5 * d * (1.0 - x * b1 * (1.0 - x * b2 * (1.0 - x * b3 * (1.0 - x * b4 * (1.0 - x * b5 * (1.0 - x * b6))))));
      cos_d = 1.0 - d * f2;
      sin_d = d * f1;
      if (with_derivatives) {
        // df1 = sum (-1)^k 2k d^(2k-1) / (2k+1)!, df2 = sum (-1)^k (2k+1) d^(2k) / (2k+2)!
        constexpr double c1 = 1.0 / 10, c2 = 1.0 / 28, c3 = 1.0 / 54, c4 = 1.0 / 88, c5 = 1.0 / 130;
        constexpr double e1 = 1.0 / 4, e2 = 1.0 / 18, e3 = 1.0 / 40, e4 = 1.0 / 70, e5 = 1.0 / 108, e6 = 1.0 / 154;
        df1 = -d * (1.0 / 3) * (1.0 - x * c1 * (1.0 - x * c2 * (1.0 - x * c3 * (1.0 - x * c4 * (1.0 - x * c5)))));
        df2 = 0.5 * (1.0 - x * e1 * (1.0 - x * e2 * (1.0 - x * e3 * (1.0 - x * e4 * (1.0 - x * e5 * (1.0 - x * e6))))));
      }
    } else {
      sin_d = std::sin(d);
      cos_d = std::cos(d);
      f1 = sin_d / d;
      f2 = (1.0 - cos_d) / d;
      if (with_derivatives) {
        df1 = (d * cos_d - sin_d) / (d * d);
        df2 = (d * sin_d - 1.0 + cos_d) / (d * d);
      }
    }
  }
};

/// A helix (straight line if rho = 0) by its state at path length s_base: point, azimuth phi of
/// the direction, tan(lambda) = dz/ds and curvature rho = dphi/ds, s being the transverse arc length.
/// Change phi only with set_phi() (cos and sin are kept).
struct HelixState {
  Vector3d point = Vector3d::Zero();
  double tan_lambda = 0.0, rho = 0.0;
  double s_base = 0.0;

  double phi() const { return m_phi; }
  void set_phi(double phi) {
    m_phi = phi;
    m_cos = std::cos(phi);
    m_sin = std::sin(phi);
  }

  /// Position and direction dX/ds (not a unit vector) at s.
  void evaluate(double s, Vector3d& x, Vector3d& t) const {
    const double ds = s - s_base;
    const HelixFunctions f(rho * ds, false);
    x = point + Vector3d(ds * (m_cos * f.f1 - m_sin * f.f2), ds * (m_sin * f.f1 + m_cos * f.f2), ds * tan_lambda);
    t = Vector3d(m_cos * f.cos_d - m_sin * f.sin_d, m_sin * f.cos_d + m_cos * f.sin_d, tan_lambda);
  }
  Vector3d position(double s) const {
    Vector3d x, t;
    evaluate(s, x, t);
    return x;
  }
  Vector3d direction(double s) const {
    Vector3d x, t;
    evaluate(s, x, t);
    return t;
  }
  /// The state at s (same helix).
  HelixState at(double s) const {
    HelixState h = *this;
    Vector3d t;
    evaluate(s, h.point, t);
    h.m_phi = m_phi + rho * (s - s_base);
    const double norm = std::hypot(t.x(), t.y());
    h.m_cos = t.x() / norm;
    h.m_sin = t.y() / norm;
    h.s_base = s;
    return h;
  }
  /// dX(s)/drho at fixed s. (dX/dphi at fixed s is z x (X(s) - point): the helix turns about its
  /// start point; dX/dtan-lambda is (0, 0, s - s_base).)
  Vector3d d_rho(double s) const {
    const double ds = s - s_base;
    const HelixFunctions f(rho * ds, true);
    return Vector3d(ds * ds * (m_cos * f.df1 - m_sin * f.df2), ds * ds * (m_sin * f.df1 + m_cos * f.df2), 0.0);
  }

 private:
  double m_phi = 0.0, m_cos = 1.0, m_sin = 0.0;
};

/// Legendre polynomial L_n(x) and its derivative, n <= 4.
inline void legendre(int n, double x, double& value, double& derivative) {
  switch (n) {
    case 0: value = 1.0; derivative = 0.0; break;
    case 1: value = x; derivative = 1.0; break;
    case 2: value = 0.5 * (3.0 * x * x - 1.0); derivative = 3.0 * x; break;
    case 3: value = 0.5 * (5.0 * x * x * x - 3.0 * x); derivative = 0.5 * (15.0 * x * x - 3.0); break;
    default:
      value = 0.125 * (35.0 * x * x * x * x - 30.0 * x * x + 3.0);
      derivative = 0.125 * (140.0 * x * x * x - 60.0 * x);
      break;
  }
}

/// Orders (i, j) of the deformation terms L_i(u') L_j(v').
inline constexpr std::array<std::array<int, 2>, k_max_deformation_terms> k_deformation_orders{
    {{2, 0}, {1, 1}, {0, 2}, {3, 0}, {2, 1}, {1, 2}, {0, 3}, {4, 0}, {3, 1}, {2, 2}, {1, 3}, {0, 4}}};

/// Deformation basis functions at local (u, v); values[k] and, if asked, d/du, d/dv.
inline void deformation_terms(int n, double u, double v, double inv_half_width, double inv_half_length,
                              double* values, double* d_du = nullptr, double* d_dv = nullptr) {
  double lu[5], dlu[5], lv[5], dlv[5];
  const double x = u * inv_half_width, y = v * inv_half_length;
  for (int k = 0; k <= 4; ++k) {
    legendre(k, x, lu[k], dlu[k]);
    legendre(k, y, lv[k], dlv[k]);
  }
  for (int k = 0; k < n; ++k) {
    const int i = k_deformation_orders[k][0], j = k_deformation_orders[k][1];
    values[k] = lu[i] * lv[j];
    if (d_du) d_du[k] = dlu[i] * inv_half_width * lv[j];
    if (d_dv) d_dv[k] = lu[i] * dlv[j] * inv_half_length;
  }
}

/// Where a sensor is: centre, axes (columns u, v, w) and surface w = sum c_k term_k(u, v).
struct SensorPlacement {
  Vector3d center = Vector3d::Zero();
  Matrix3d rotation = Matrix3d::Identity();
  std::array<double, k_max_deformation_terms> deformation{};
  int n_deformation = 0;  ///< terms with non-zero coefficients to evaluate
  double inv_half_width = 1.0, inv_half_length = 1.0;
};

/// Where a wire is: shifts (dx, dy) of its backward and forward ends from nominal.
using WireShift = std::array<double, 4>;

/// One crossing of a reference track with a surface.
struct Crossing {
  enum Kind : std::int8_t { sensor_hit, wire_hit, material };
  double s = 0.0;
  Kind kind = material;
  bool measured = false;
  int object = -1;  ///< sensor index or drift-chamber layer
  int wire = -1;
  int chain = -1;
  int segment = 0;      ///< helix segment (kinks before it in its chain)
  double x0 = 0.0;      ///< radiation lengths along the path (0: does not scatter)
  int kink_local = -1;  ///< local index of its kink in phi (tan-lambda at +1), -1: none
  double value[2] = {0.0, 0.0};  ///< reference prediction: (u, v) or the signed drift distance
};

struct TrackRef {
  HelixState state;         ///< reference helix at s = 0 (the vertex, or closest approach to z)
  bool curved = false;      ///< q/pT is a local parameter
  bool shared_vertex = false;  ///< point parameters are the pair's vertex (local 0..2), else (a, b) at 0..1
  double momentum = 1.0;
  double rho_per_omega = 0.0;  ///< d(rho)/d(q/pT)
  int local_phi = 0;        ///< phi, tan-lambda at +1, q/pT at +2
  int chains[2] = {-1, -1};
};

struct Chain {
  int track = 0;
  int sign = 1;                ///< +1 forward (s > 0), -1 backward
  std::vector<int> crossings;  ///< by increasing |s|
  std::vector<int> kinks;      ///< crossings with a kink, by increasing |s|
};

struct MeasurementRef {
  MeasurementKind kind = MeasurementKind::sensor_u;
  int crossing = -1;  ///< for kinks: the scattering crossing
  int local = -1;     ///< for kinks: the local parameter
  double sigma = 0.0;
};

/// Everything about one record except the measured values: tracks, crossings, kinks.
struct RecordLayout {
  std::int64_t index = 0;
  bool cosmic = false;
  int n_local = 0;
  std::vector<TrackRef> tracks;
  std::vector<Chain> chains;
  std::vector<Crossing> crossings;
  std::vector<MeasurementRef> measurements;
  std::vector<double> true_dq;  ///< true offsets of the local parameters (the kinks)
  std::vector<double> noise;    ///< per measurement, in units of sigma
  void clear() {
    tracks.clear();
    for (auto& c : chains) {
      c.crossings.clear();
      c.kinks.clear();
    }
    chains.clear();
    crossings.clear();
    measurements.clear();
    true_dq.clear();
    noise.clear();
    n_local = 0;
  }
};

/// Placement of a sensor for alignment parameters p (size n_parameters, empty: nominal).
SensorPlacement sensor_placement(const Detector& detector, int sensor, const std::vector<double>& p);
/// Shifts of a wire's ends for alignment parameters p.
WireShift wire_shift(const Detector& detector, int layer, int wire, const std::vector<double>& p);

/// Geometry lookups for the exact measurement model: placements by sensor, shifts by wire.
struct GeometryView {
  const std::vector<SensorPlacement>* sensors = nullptr;
  const std::vector<WireShift>* wires = nullptr;  ///< by global wire index; null: nominal wires
  /// Sensors whose placement varies with the run: slot by sensor (-1: as in `sensors`) and the
  /// placements of one run by slot. Null: every sensor as in `sensors`.
  const std::vector<int>* varying_slot = nullptr;
  const SensorPlacement* run_sensors = nullptr;

  const SensorPlacement& sensor(int s) const {
    if (varying_slot != nullptr) {
      const int slot = (*varying_slot)[static_cast<std::size_t>(s)];
      if (slot >= 0) return run_sensors[slot];
    }
    return (*sensors)[static_cast<std::size_t>(s)];
  }
};

/// The constraint rows of a detector (Detector::constraint_rows) for a simulation whose parameters
/// `varies` (index as in Detector::labels()) vary with time: rows that name both static and
/// time-dependent parameters lose the time-dependent ones (see constraint_specs(Simulation)).
std::vector<Detector::SparseRow> frame_rows(const Detector& detector, const std::vector<bool>& varies,
                                            std::vector<std::string>* names = nullptr);

inline void accumulate(GenerationStats& total, const GenerationStats& part) {
  total.records += part.records;
  total.tracks += part.tracks;
  total.measurements += part.measurements;
  total.kink_measurements += part.kink_measurements;
  total.local_derivatives += part.local_derivatives;
  total.global_derivatives += part.global_derivatives;
  total.local_parameters += part.local_parameters;
  if (part.max_local_parameters > total.max_local_parameters) total.max_local_parameters = part.max_local_parameters;
}

}  // namespace gpede::sim::detail

namespace gpede::sim {

struct Simulation::Impl {
  const Simulation* owner = nullptr;
  const SimulationConfig* config = nullptr;
  const Detector* detector = nullptr;
  std::vector<detail::SensorPlacement> nominal_sensors, true_sensors;
  std::vector<detail::WireShift> true_wires;
  std::vector<std::int64_t> layer_first_wire;  ///< global index of wire 0 of each layer
  std::vector<std::array<Eigen::Vector3d, 2>> wire_ends;  ///< by global wire index
  std::vector<Eigen::Matrix<double, 6, 6>> half_shell_jacobians;  ///< by sensor
  double rho_per_omega = 0.0;  ///< collision tracks: rho = rho_per_omega * q/pT
  double cosmic_rho_per_omega = 0.0;

  // Time dependence (config->time.runs > 0).
  std::vector<bool> varies;                 ///< by parameter: time-dependent in the steering
  std::vector<std::int64_t> bow_indices;    ///< the pixel sensors' bow parameters
  std::int64_t shell_x_index = -1;          ///< the x shift of the half-shell that steps (-1: none)
  int bow_step_run = 0, shell_step_run = 0; ///< first run after each step (0: no step)
  std::vector<int> varying_slot;            ///< by sensor: slot in run_sensors, -1 if it does not vary
  std::int64_t n_varying = 0;
  std::vector<detail::SensorPlacement> run_sensors;  ///< run r, slot k at (r - 1) n_varying + k
  /// The variation of the bow and of the half-shell's x shift in a run.
  double bow_offset(int run) const;
  double shell_offset(int run) const;

  /// Lays out record `index` (tracks, crossings, kinks, true kinks, noise).
  void layout_record(std::int64_t index, detail::RecordLayout& layout) const;
  /// Exact value of every measurement of the layout for local offsets dq and a geometry.
  void predict(const detail::RecordLayout& layout, const double* dq, const detail::GeometryView& geometry,
               std::vector<double>& values, std::vector<detail::HelixState>& scratch) const;
  /// Appends the record to batch with its measured values and derivatives.
  void emit(const detail::RecordLayout& layout, RecordBatch& batch, GenerationStats& stats,
            std::vector<double>& scratch_values, std::vector<detail::HelixState>& scratch_states) const;
};

}  // namespace gpede::sim
