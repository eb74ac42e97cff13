// Simulation of a misaligned Belle II-like tracking detector, with the truth: a pixel detector and
// a strip detector of planar sensors with 2D measurements, a drift chamber of wires with 1D
// drift-distance measurements, di-muon pairs from the interaction region (helices in the solenoid
// field) and cosmics (straight lines), optional multiple scattering as kink local parameters.
// It writes Mille binary files, a steering file, a constraint file and the true misalignment
// (truth.res), or feeds the records from memory to the solver (SimulationSource). Optionally the
// tracks are spread over runs, each record carries its run, and parts of the misalignment vary from
// run to run (TimeConfig): steer.txt then declares them time-dependent, and the truth is given per
// interval of runs and per run.
//
// Units: cm, GeV, tesla, rad. Global frame: z along the solenoid field and the electron beam,
// y up (cosmics come from +y), x outwards of the accelerator ring.
//
// Label scheme (every label > 0, all below 3,000,000, so that the solver's label table is small):
//
//   object                         label                                            parameters p
//   half-shell h (1..9)            10 h + p                                          1..6
//   VXD sensor (layer.ladder.n)    100000 layer + 1000 ladder + 100 n + p            1..6 + deformation
//                                  (layer 1..9, ladder 1..99, sensor n 1..9)         terms (7..18)
//   drift-chamber layer l (0..)    1000000 + 10 l + p                                1..6
//   wire w of layer l              2000000 + 10000 l + 10 w + p                      1..4
//                                  (layer 0..99, wire 0..999)
//
//   sensor p:  1 du, 2 dv, 3 dw (shifts along the sensor's u, v, w axes), 4 alpha, 5 beta, 6 gamma
//              (rotations about u, v, w), 7.. surface deformation w(u,v) = sum c_k L_i(u') L_j(v')
//              with Legendre polynomials of u' = 2u/width, v' = 2v/length, (i,j) in the order
//              (2,0) (1,1) (0,2) (3,0) (2,1) (1,2) (0,3) (4,0) (3,1) (2,2) (1,3) (0,4).
//   half-shell p: 1-3 shifts along global x, y, z, 4-6 rotations about global x, y, z (about the
//              origin); a half-shell moves all its sensors.
//   layer p:   1 dx, 2 dy, 3 dphi at the backward endplate, 4 dx, 5 dy, 6 dphi at the forward
//              endplate; a layer moves all its wires.
//   wire p:    1 dx, 2 dy at the backward endplate, 3 dx, 4 dy at the forward endplate.
//
// Half-shells (Belle II's Ying/Yang for the pixels, Pat/Mat for the strips): 1 pixel +x, 2 pixel
// -x, 3 strip +x, 4 strip -x.
#pragma once

#include <Eigen/Core>
#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gpede/mille.hpp"
#include "gpede/record_batch.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"

namespace gpede {

/// `gpede simulate ...` (argv[0] = "simulate"). Returns 0 on success, 2 for bad options, 1 for a
/// failure while writing.
int simulate_main(int argc, char** argv);

namespace sim {

// ---- labels --------------------------------------------------------------------------------------

/// Rigid-body parameters per object and the most deformation terms per sensor.
inline constexpr int k_rigid_parameters = 6;
inline constexpr int k_max_deformation_terms = 12;
inline constexpr int k_wire_parameters = 4;

inline constexpr std::int32_t half_shell_label(int shell, int p) { return 10 * shell + p; }
inline constexpr std::int32_t sensor_label(int layer, int ladder, int sensor, int p) {
  return 100000 * layer + 1000 * ladder + 100 * sensor + p;
}
inline constexpr std::int32_t cdc_layer_label(int layer, int p) { return 1000000 + 10 * layer + p; }
inline constexpr std::int32_t wire_label(int layer, int wire, int p) {
  return 2000000 + 10000 * layer + 10 * wire + p;
}
/// True for the labels of wire parameters (the highest block of the scheme).
inline constexpr bool is_wire_label(std::int32_t label) { return label >= wire_label(0, 0, 1); }

// ---- configuration -------------------------------------------------------------------------------

/// What varies with time over the runs of a simulation (TimeConfig::runs > 0), on top of the
/// static misalignment, for runs 1..N:
///   jumps:  the bow of every pixel sensor (bow_parameter()) drifts linearly over the runs and
///           steps by TimeConfig::bow_step at run ceil(N/2) + 1; the first half-shell's x shift
///           steps by TimeConfig::half_shell_step at run ceil(N/3) + 1;
///   drift:  the bow drifts, nothing steps;
///   steady: nothing varies (every run has the same truth).
enum class TimeScenario { jumps, drift, steady };

/// Runs and what varies with them. Without runs (runs = 0) the records carry no time and the
/// files are those of a static misalignment.
struct TimeConfig {
  int runs = 0;                      ///< tracks spread evenly over runs 1..runs of experiment 0
  TimeScenario scenario = TimeScenario::jumps;
  double bow_drift = 0.0010;         ///< drift, jumps: change of the pixel bow from the first run to the last
  double bow_step = 0.0010;          ///< jumps: step of the pixel bow
  double half_shell_step = 0.0010;   ///< jumps: step of the first half-shell's x shift (cm)
  /// drift, steady: steer.txt cuts the runs into this many intervals of (nearly) equal length
  /// (jumps: the intervals start at the true steps).
  int intervals = 4;
};

/// small: about 1,800 parameters; medium: Belle II's VXD (212 sensors x 18) and a 4-layer drift
/// chamber, about 5,000; belle2: about 60,000; cms: a CMS-sized strip barrel (8,019 modules x 18,
/// about 144,000), no drift chamber, 3.8 T.
enum class Preset { small, medium, belle2, cms };
enum class Scattering { none, broken_lines };

/// One layer of planar sensors (pixel or strip): ladders around the beam, sensors along z.
struct VxdLayerConfig {
  int ladders = 8;
  int sensors_per_ladder = 2;
  double radius = 1.42;        ///< distance of the even ladders' planes from the axis
  double radius_step = 0.1;    ///< odd ladders sit further out by this (overlaps without contact)
  double sensor_width = 1.25;  ///< along u (r-phi)
  double sensor_length = 4.48; ///< along v (z)
  double z_center = 0.0;       ///< centre of the ladder in z
  double phi0 = 0.0;           ///< azimuth of the normal of ladder 1
  double sigma_u = 0.0010;
  double sigma_v = 0.0012;
  double thickness_x0 = 0.002;  ///< sensor thickness in radiation lengths (normal incidence)
  double efficiency = 0.99;
};

/// A superlayer of the drift chamber: `layers` layers with `wires` wires each.
struct CdcSuperlayerConfig {
  int layers = 6;
  int wires = 160;
  double first_radius = 25.7;   ///< radius of the wires of its first layer at the endplates
  double layer_spacing = 1.8;
  double stereo_angle = 0.0;    ///< 0 for axial layers; signed (U > 0, V < 0)
};

/// The tracker and which alignment parameters it has.
struct DetectorConfig {
  std::vector<VxdLayerConfig> vxd;  ///< layer numbers 1, 2, ... in this order
  int pixel_layers = 2;             ///< the first pixel_layers of vxd are pixel layers
  std::vector<CdcSuperlayerConfig> cdc;
  double cdc_sigma = 0.0120;        ///< drift-distance resolution
  double cdc_efficiency = 0.97;
  double cdc_forward_angle = 0.2967;   ///< 17 degrees: forward acceptance of the endplates
  double cdc_backward_angle = 2.6180;  ///< 150 degrees
  double cdc_z_forward_max = 159.0;
  double cdc_z_backward_min = -83.0;
  double beam_pipe_radius = 1.0;
  double beam_pipe_x0 = 0.005;
  double cdc_wall_radius = 16.0;
  double cdc_wall_x0 = 0.003;
  int deformation_terms = 12;       ///< 0..12 surface-deformation parameters per sensor
  bool half_shells = true;          ///< half-shells as parents of the sensors
  bool cdc_layer_parameters = true;
  bool cdc_wire_parameters = true;
};

/// Standard deviations of the random misalignment at each level (cm, rad). The defaults are of
/// the size left after survey: a few times the resolutions, so that every record passes pede's
/// hugecut at the start (records rejected there are left out of the matrix built in the first pass).
struct MisalignmentConfig {
  double half_shell_shift = 0.0020;
  double half_shell_rotation = 0.00005;
  double sensor_shift_uv = 0.0010;
  double sensor_shift_w = 0.0010;
  /// Rotations alpha, beta, gamma: the shift they cause at the sensor's edge (the angles scale
  /// with 1/size, so that long and short sensors are misaligned alike).
  double sensor_rotation_edge = 0.0010;
  double sensor_deformation = 0.0002;  ///< each Legendre coefficient
  double layer_shift = 0.0050;
  double layer_rotation = 0.00002;
  double wire_shift = 0.0030;
};

struct SimulationConfig {
  DetectorConfig detector;
  MisalignmentConfig misalignment;
  std::uint64_t seed = 1;
  std::int64_t tracks = 20000;      ///< tracks in all (a di-muon pair is 2 tracks, a cosmic 1)
  double cosmics_fraction = 0.2;    ///< fraction of the tracks that are cosmics
  bool field = true;                ///< solenoid on for the collision tracks (helices)
  double field_tesla = 1.5;
  bool cosmics_in_field = false;    ///< cosmics as helices too (default: field-off cosmic runs)
  Scattering scattering = Scattering::broken_lines;
  MillePrecision precision = MillePrecision::single;
  int files = 1;
  bool constraints = true;          ///< write the constraint file and name it in steer.txt
  int threads = 0;                  ///< generation threads (0: all cores)
  int min_sensor_hits = 3;          ///< a track needs this many 2D hits, else it is generated again
  /// Fix the drift-chamber wires in the steering (presigma -1, fixed_wires.txt) and leave out the
  /// constraints on wires alone. The records keep their wire derivatives; the misalignment is not
  /// changed (set misalignment.wire_shift to 0 for wires that are known).
  bool fix_wires = false;
  int iterations = 3;               ///< `method METHOD N 0.1` in steer.txt
  std::string method = "inversion"; ///< the method of steer.txt (any of pede's names)
  std::vector<std::string> steering_lines;  ///< more lines of steer.txt, before `method` (e.g. `bandwidth 18`)
  /// presigmas.txt: every sensor parameter gets a pre-sigma of the size of its misalignment (what
  /// a survey or an earlier alignment gives): directions that the tracks hardly see stay near zero
  /// instead of going astray, and the fit's errors and pulls remain meaningful (the cms preset).
  bool presigmas = false;
  /// --solve with a method without errors (MINRES): the parameters of this many sensors, spread
  /// over the detector, get errors from the covariance block (one MINRES solution each) for pulls.
  int error_sample_sensors = 0;
  TimeConfig time;                  ///< runs and what varies with them (none by default)
};

/// The configuration of a preset: `small` (1,833 parameters), `medium`, `belle2` (61,520) or `cms`.
SimulationConfig preset_config(Preset preset);

// ---- geometry and parameters ---------------------------------------------------------------------

enum class ObjectKind { half_shell, sensor, cdc_layer, wire };

struct HalfShell {
  int number = 0;  ///< 1..
  Eigen::Vector3d origin = Eigen::Vector3d::Zero();
  Eigen::Matrix3d rotation = Eigen::Matrix3d::Identity();  ///< columns: its axes in the global frame
  std::int64_t first_parameter = -1;  ///< index of its p = 1 in the parameter vector (-1: none)
};

struct Sensor {
  int layer = 0, ladder = 0, number = 0;  ///< Belle II numbering, all 1-based
  bool pixel = false;
  Eigen::Vector3d center = Eigen::Vector3d::Zero();
  Eigen::Matrix3d rotation = Eigen::Matrix3d::Identity();  ///< columns: u, v, w (normal) axes
  double half_width = 0.0, half_length = 0.0;
  double sigma_u = 0.0, sigma_v = 0.0, thickness_x0 = 0.0, efficiency = 1.0;
  int half_shell = -1;  ///< index into Detector::half_shells(), -1 if none
  std::int64_t first_parameter = -1;
};

struct CdcLayer {
  int number = 0;  ///< 0-based like Belle II
  int superlayer = 0;
  int wires = 0;
  double radius = 0.0;      ///< radius of the wire ends at the endplates
  double z_backward = 0.0, z_forward = 0.0;
  double twist = 0.0;       ///< azimuth of the forward end minus that of the backward end
  double phi0 = 0.0;        ///< azimuth of the backward end of wire 0
  double sigma = 0.0, efficiency = 1.0;
  std::int64_t first_parameter = -1;       ///< its own 6 parameters
  std::int64_t first_wire_parameter = -1;  ///< wire w has first_wire_parameter + 4 w
};

/// The nominal detector, its alignment parameters (indexed 0..n-1 in ascending label order) and
/// the linear structure of the parameters: which motion of a child a parent's parameters cause,
/// which global motions the data cannot see, and the constraints that remove them.
class Detector {
 public:
  explicit Detector(const DetectorConfig& config);

  const DetectorConfig& config() const noexcept { return m_config; }
  const std::vector<HalfShell>& half_shells() const noexcept { return m_half_shells; }
  const std::vector<Sensor>& sensors() const noexcept { return m_sensors; }
  const std::vector<CdcLayer>& cdc_layers() const noexcept { return m_layers; }
  std::int64_t n_wires() const noexcept { return m_n_wires; }
  /// First sensor of each VXD layer (size layers + 1).
  const std::vector<int>& layer_first_sensor() const noexcept { return m_layer_first_sensor; }

  /// Parameters per sensor: 6 rigid + deformation terms.
  int sensor_parameters() const noexcept { return k_rigid_parameters + m_config.deformation_terms; }
  std::int64_t n_parameters() const noexcept { return static_cast<std::int64_t>(m_labels.size()); }
  /// Labels of all parameters, ascending.
  const std::vector<std::int32_t>& labels() const noexcept { return m_labels; }
  /// Index of a label in the parameter vector, -1 if the detector has no such parameter.
  std::int64_t parameter_index(std::int32_t label) const;

  /// Backward and forward end of a wire (nominal).
  std::array<Eigen::Vector3d, 2> wire_ends(int layer, int wire) const;

  /// d(child's 6 rigid parameters) / d(half-shell's 6 parameters).
  Eigen::Matrix<double, 6, 6> sensor_from_half_shell(int sensor) const;
  /// d(wire's 4 parameters) / d(layer's 6 parameters).
  Eigen::Matrix<double, 4, 6> wire_from_layer(int layer, int wire) const;
  /// d(sensor's 6 rigid parameters) / d(global motion: shifts x, y, z, rotations about x, y, z).
  Eigen::Matrix<double, 6, 6> sensor_global_motion(int sensor) const;
  /// d(wire's 4 parameters) / d(global motion), exact to first order.
  Eigen::Matrix<double, 4, 6> wire_global_motion(int layer, int wire) const;

  /// One sparse linear combination of parameters (index, factor).
  using SparseRow = std::vector<std::pair<std::int64_t, double>>;

  /// The constraints that remove what the data cannot fix: 6 global rows (no overall shift or
  /// rotation of the top-level objects) and 6 rows per parent (its children's mean motion in the
  /// parent's terms is zero). `names` receives a comment per row.
  std::vector<SparseRow> constraint_rows(std::vector<std::string>* names = nullptr) const;
  /// The directions of parameter space that leave every measurement unchanged to first order:
  /// per parent 6 (the parent moves, its children move back), and the 6 global motions (exact
  /// where the field is off; shifts and the rotation about z also with the field on).
  std::vector<SparseRow> null_modes() const;

 private:
  Eigen::Matrix<double, 6, 6> layer_global_motion(int layer) const;
  void build_vxd();
  void build_cdc();
  void build_labels();

  DetectorConfig m_config;
  std::vector<HalfShell> m_half_shells;
  std::vector<Sensor> m_sensors;
  std::vector<CdcLayer> m_layers;
  std::vector<int> m_layer_first_sensor;
  std::int64_t m_n_wires = 0;
  std::vector<std::int32_t> m_labels;
  std::int64_t m_first_shell_parameter = 0, m_first_sensor_parameter = 0, m_first_layer_parameter = 0,
               m_first_wire_parameter = 0;
};

// ---- the simulation ------------------------------------------------------------------------------

/// What a measurement of a record is.
enum class MeasurementKind : std::uint8_t { sensor_u, sensor_v, wire, kink_phi, kink_tan_lambda };

/// One record with its exact measurement model, for checks of the derivatives: predict() gives the
/// value of every measurement (same order as in the record) for offsets dq of the local
/// parameters from the reference track and alignment parameters p, by exact intersection of the
/// (kinked) helices with the displaced and deformed sensors and wires.
class RecordModel {
 public:
  RecordModel();
  ~RecordModel();
  RecordModel(RecordModel&&) noexcept;
  RecordModel& operator=(RecordModel&&) noexcept;

  int n_local() const;
  std::size_t n_measurements() const;
  MeasurementKind kind(std::size_t measurement) const;
  /// dq: size n_local(); p: size Detector::n_parameters() (empty: nominal detector).
  std::vector<double> predict(const std::vector<double>& dq, const std::vector<double>& p) const;
  /// The true offsets of the local parameters (zero except the kinks that were simulated).
  const std::vector<double>& true_local_offsets() const;

  struct Impl;

 private:
  explicit RecordModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> m_impl;
  friend class Simulation;
};

/// The sensor parameter p (1-based, as in sensor_label) that stands for a sensor's bow along its
/// length: the deformation term L_0(u') L_2(v') (p = 9), else L_2(u') L_0(v') (p = 7) where the
/// detector has fewer terms; 0 without deformation terms.
int bow_parameter(const Detector& detector);

/// The truth of a time-dependent label in one interval of runs.
struct IntervalTruth {
  std::int32_t label = 0;      ///< the label in the steering and the records
  std::int64_t interval = 0;   ///< 0-based, as in gpede_intervals.txt
  std::int32_t expanded = 0;   ///< label + interval * stride: its label in millepede.res
  double value = 0.0;          ///< the mean of the truth per run over the interval's tracks
};

/// Figures of a set of generated records.
struct GenerationStats {
  std::int64_t records = 0;
  std::int64_t tracks = 0;
  std::int64_t measurements = 0;         ///< all, pseudo-measurements of kinks included
  std::int64_t kink_measurements = 0;
  std::int64_t local_derivatives = 0;
  std::int64_t global_derivatives = 0;
  std::int64_t local_parameters = 0;     ///< summed over records
  int max_local_parameters = 0;
};

/// A simulated misaligned detector and its records. Record i depends only on the seed and i, so
/// records can be generated in any order, in parallel, and again.
class Simulation {
 public:
  explicit Simulation(const SimulationConfig& config);
  ~Simulation();

  const SimulationConfig& config() const noexcept { return m_config; }
  const Detector& detector() const noexcept { return *m_detector; }

  /// The true misalignment per parameter (index as in Detector::labels()). Random values per
  /// level, then moved along the null modes so that the constraints hold: the one solution the
  /// constrained fit can find. Without runs the records are simulated with exactly these values;
  /// with runs this is the static part, and truth_at_run() what a run's records see.
  const std::vector<double>& truth() const noexcept { return m_truth; }

  /// Runs (config().time.runs; 0: none). Record i is in run 1 + floor(i runs / n_records()).
  int runs() const noexcept { return m_config.time.runs; }
  /// The run of record i (1..runs()), 0 without runs.
  int run_of(std::int64_t record) const;
  /// The tracks of each run (index run - 1).
  const std::vector<std::int64_t>& tracks_per_run() const noexcept { return m_run_tracks; }
  /// What steer.txt declares: the time-dependent labels (the pixel sensors' bow parameters and the
  /// first half-shell's 6 parameters), the interval starts (record times of experiment 0) and the
  /// label stride. Inactive without runs.
  const TimeDependenceSpec& time_dependence() const noexcept { return m_time; }
  /// The true misalignment in run r (1..runs()): truth() plus the scenario's variation.
  std::vector<double> truth_at_run(int run) const;
  /// The first and last run of each interval of time_dependence().
  std::vector<std::pair<int, int>> interval_runs() const;
  /// The truth of every time-dependent label in every interval, by label, then interval.
  std::vector<IntervalTruth> interval_truth() const;

  std::int64_t n_records() const noexcept { return m_n_records; }
  std::int64_t n_tracks() const noexcept { return m_n_tracks; }
  /// True if record i is a cosmic (else a di-muon pair).
  bool is_cosmic(std::int64_t record) const;
  /// The file (0-based) that record i goes to, and its 1-based number there.
  int file_of(std::int64_t record) const;
  std::int64_t number_in_file(std::int64_t record) const;

  /// Appends records [first, first + count) to batch as MilleReader would read them back
  /// (values rounded to the precision written, zero derivatives dropped); single thread.
  GenerationStats generate(std::int64_t first, std::int64_t count, RecordBatch& batch) const;
  /// Same, on `threads` threads (0: all cores); the result does not depend on threads.
  GenerationStats generate_parallel(std::int64_t first, std::int64_t count, RecordBatch& batch,
                                    int threads) const;

  /// Record i with its exact measurement model.
  RecordModel record_model(std::int64_t record) const;

  struct Impl;

 private:
  void set_up_runs();

  SimulationConfig m_config;
  std::unique_ptr<Detector> m_detector;
  std::unique_ptr<Impl> m_impl;
  std::vector<double> m_truth;
  std::int64_t m_n_records = 0, m_n_tracks = 0, m_n_cosmics = 0;
  TimeDependenceSpec m_time;
  std::vector<std::int64_t> m_run_tracks;
};

/// The records of a Simulation, generated into memory on every pass (nothing is stored), the same
/// on every pass.
class SimulationSource final : public RecordSource {
 public:
  /// threads: generation threads (0: all cores). The simulation must outlive the source.
  explicit SimulationSource(const Simulation& simulation, int threads = 0);
  std::size_t next(RecordBatch& batch, std::size_t max_records) override;
  void rewind() override { m_next = 0; }
  /// Figures of the records generated since construction.
  const GenerationStats& stats() const noexcept { return m_stats; }

 private:
  const Simulation& m_simulation;
  int m_threads;
  std::int64_t m_next = 0;
  GenerationStats m_stats;
};

/// What write_simulation() wrote.
struct WriteSummary {
  std::vector<std::filesystem::path> binary_files;
  std::filesystem::path steering_file, constraint_file, truth_file;
  GenerationStats stats;
  std::int64_t bytes = 0;          ///< of the binary files
  double seconds = 0.0;            ///< generation and writing of the binary files
  /// Parameters with fewer than 25 entries (with runs: each interval of a time-dependent one counts).
  std::int64_t parameters_below_entries_cut = 0;
};

/// The steering files write_steering() wrote (empty paths for files not written).
struct SteeringFiles {
  std::filesystem::path steering, constraints, fixed_wires, presigmas;
};

/// The spread of the simulated misalignment per parameter (index as in Detector::labels()): the
/// sigmas that the truth is drawn with.
std::vector<double> misalignment_sigmas(const Detector& detector, const MisalignmentConfig& misalignment);

/// The labels of the parameters of `count` sensors spread evenly over the detector.
std::vector<std::int32_t> sample_sensor_labels(const Detector& detector, int count);

/// Writes steer.txt naming binary_files (none: records fed from memory), constraints.txt (unless
/// config.constraints is false), fixed_wires.txt (config.fix_wires) and presigmas.txt
/// (config.presigmas) into folder.
SteeringFiles write_steering(const Simulation& simulation, const std::filesystem::path& folder,
                             const std::vector<std::filesystem::path>& binary_files);

/// Writes the records (Mille C binary files mille_NNN.bin, config.files of them), steer.txt,
/// constraints.txt (unless config.constraints is false), fixed_wires.txt (config.fix_wires),
/// truth.res and geometry.txt into folder; with runs also truth_intervals.txt and truth_runs.txt.
WriteSummary write_simulation(const Simulation& simulation, const std::filesystem::path& folder);

/// geometry.txt: the nominal sensors and drift-chamber layers, for scripts/plot_simulation.py.
void write_geometry(const std::filesystem::path& file, const Detector& detector);

/// Pulls (fitted - true) / error of the fitted parameters that have an error.
struct PullSummary {
  std::int64_t count = 0;
  double mean = 0.0;
  double rms = 0.0;           ///< sqrt(mean of pull^2)
  double largest = 0.0;       ///< the pull of largest magnitude
  std::int32_t largest_label = 0;
  /// Per kind of parameter (sensor shifts, rotations, deformations; the rest), with or without
  /// errors: the RMS of fitted - true and of the true misalignment, in the kind's units.
  struct Kind {
    std::string name;
    std::int64_t count = 0;
    double residual_rms = 0.0;
    double truth_rms = 0.0;
  };
  std::vector<Kind> kinds;
};
/// Errors are those of millepede.res, or else the square roots of the covariance block's
/// diagonal (SolveResult::covariance) where it has the label. With runs, the labels of the
/// time-dependent parameters' intervals are compared with Simulation::interval_truth().
PullSummary compare_with_truth(const Simulation& simulation, const SolveResult& result);

/// The constraints in steering terms (label, factor), as written to constraints.txt; `names`
/// receives a comment per constraint (Detector::constraint_rows).
std::vector<LinearSpec> constraint_specs(const Detector& detector, std::vector<std::string>* names = nullptr);

/// The constraints of a simulation as written to constraints.txt: constraint_specs(detector), but
/// with runs the time-dependent parameters are left out of the constraints that also name static
/// ones (the overall shift and rotation): the solver repeats a constraint that names a
/// time-dependent label once per interval, and one that also named static labels would tie the
/// intervals together. The static objects alone fix the overall frame.
std::vector<LinearSpec> constraint_specs(const Simulation& simulation, std::vector<std::string>* names = nullptr);

/// truth.res: the true misalignment in millepede.res format (3 columns: label, value, 0). With runs
/// a time-dependent label L is listed once per interval k as L + k * stride (interval_truth()).
void write_truth(const std::filesystem::path& file, const Simulation& simulation);

/// With runs: truth_intervals.txt (label, interval, expanded label, truth per interval) and
/// truth_runs.txt (label, run, truth per run) of the time-dependent labels into folder; nothing
/// without runs.
void write_time_truth(const std::filesystem::path& folder, const Simulation& simulation);

}  // namespace sim
}  // namespace gpede
