// Files of a simulation: Mille C binary files, steer.txt, constraints.txt, truth.res (millepede.res
// format) and geometry.txt (for plots).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "gpede/error.hpp"
#include "gpede/output.hpp"
#include "gpede/record_time.hpp"
#include "simulate_internal.hpp"

namespace gpede::sim {

using namespace detail;

namespace {

constexpr int k_entries_cut = 25;  // pede's default `entries`

std::string format_number(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.15g", x);
  return buf;
}

void write_text(const std::filesystem::path& file, const std::string& content) {
  const auto tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw RuntimeError("cannot write " + tmp);
    out << content;
    out.close();
    if (!out) throw RuntimeError("cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec) throw RuntimeError("cannot rename " + tmp + " to " + file.string() + ": " + ec.message());
}

std::string binary_name(int file) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "mille_%03d.bin", file);
  return buf;
}

std::string geometry_text(const Detector& det) {
  std::ostringstream out;
  out << "# gpede simulate: nominal geometry (cm)\n"
         "# sensor layer ladder number pixel half_shell cx cy cz ux uy uz vx vy vz wx wy wz half_width half_length\n";
  for (const auto& s : det.sensors()) {
    out << "sensor " << s.layer << ' ' << s.ladder << ' ' << s.number << ' ' << (s.pixel ? 1 : 0) << ' '
        << (s.half_shell >= 0 ? det.half_shells()[s.half_shell].number : 0);
    for (int i = 0; i < 3; ++i) out << ' ' << format_number(s.center[i]);
    for (int c = 0; c < 3; ++c) {
      for (int i = 0; i < 3; ++i) out << ' ' << format_number(s.rotation(i, c));
    }
    out << ' ' << format_number(s.half_width) << ' ' << format_number(s.half_length) << '\n';
  }
  out << "# layer number superlayer wires radius z_backward z_forward twist phi0\n";
  for (const auto& l : det.cdc_layers()) {
    out << "layer " << l.number << ' ' << l.superlayer << ' ' << l.wires << ' ' << format_number(l.radius) << ' '
        << format_number(l.z_backward) << ' ' << format_number(l.z_forward) << ' ' << format_number(l.twist) << ' '
        << format_number(l.phi0) << '\n';
  }
  return out.str();
}

}  // namespace

namespace {

std::vector<LinearSpec> specs_of_rows(const Detector& detector, const std::vector<Detector::SparseRow>& rows) {
  std::vector<LinearSpec> specs;
  for (const auto& row : rows) {
    double largest = 0.0;
    for (const auto& [i, f] : row) largest = std::max(largest, std::fabs(f));
    LinearSpec spec;
    for (const auto& [i, f] : row) {
      if (std::fabs(f) > 1e-12 * largest) spec.terms.emplace_back(detector.labels()[i], f);
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

/// By parameter index: time-dependent in the simulation's steering.
std::vector<bool> time_dependent_parameters(const Simulation& simulation) {
  const Detector& det = simulation.detector();
  std::vector<bool> varies(det.labels().size(), false);
  const TimeDependenceSpec& td = simulation.time_dependence();
  if (!td.active()) return varies;
  for (std::size_t i = 0; i < varies.size(); ++i) varies[i] = td.varies(det.labels()[i]);
  return varies;
}

/// The true value of every label of the fit: the static truth by label, and with runs the
/// intervals' labels of the time-dependent parameters.
std::map<std::int32_t, double> truth_by_label(const Simulation& simulation) {
  const Detector& det = simulation.detector();
  const TimeDependenceSpec& td = simulation.time_dependence();
  std::map<std::int32_t, double> truth;
  for (std::size_t i = 0; i < det.labels().size(); ++i) {
    if (!td.varies(det.labels()[i])) truth.emplace(det.labels()[i], simulation.truth()[i]);
  }
  for (const IntervalTruth& t : simulation.interval_truth()) truth.emplace(t.expanded, t.value);
  return truth;
}

std::string time_dependence_comment(const Simulation& simulation) {
  const TimeConfig& tc = simulation.config().time;
  std::ostringstream out;
  const char* scenario = tc.scenario == TimeScenario::jumps ? "jumps" : tc.scenario == TimeScenario::drift ? "drift" : "steady";
  const Detector& det = simulation.detector();
  const bool pixels = bow_parameter(det) > 0 && std::any_of(det.sensors().begin(), det.sensors().end(),
                                                             [](const Sensor& sensor) { return sensor.pixel; });
  const bool shell = !det.half_shells().empty();
  out << "* Time dependence: " << tc.runs << " runs (experiment 0), scenario " << scenario << ".\n"
      << "* Time-dependent: ";
  if (pixels) out << "the bow of every pixel sensor (parameter " << bow_parameter(det) << ")" << (shell ? " and " : "");
  if (shell) out << "all 6 parameters of the first half-shell (" << det.half_shells().front().number << ")";
  out << ".\n"
      << (shell ? "* A half-shell moves as a body: each of its parameters gets a value per interval.\n* " : "* ");
  switch (tc.scenario) {
    case TimeScenario::jumps:
      out << (pixels ? "The bow drifts over the runs and steps. " : "")
          << (shell ? "The half-shell's x shift steps." : "") << "\n* The intervals start at the true steps.\n";
      break;
    case TimeScenario::drift:
      out << (pixels ? "The bow drifts over the runs. " : "") << (shell ? "The half-shell does not move." : "") << "\n"
             "* The intervals cut the runs into " << simulation.time_dependence().intervals()
          << " (nearly) equal parts, not at any true change.\n";
      break;
    case TimeScenario::steady:
      out << "Nothing varies: every interval has the same truth.\n"
             "* The intervals cut the runs into " << simulation.time_dependence().intervals()
          << " (nearly) equal parts.\n";
      break;
  }
  out << "* Interval k of label L is L + k * timestride (truth per interval: truth_intervals.txt, per run:\n"
         "* truth_runs.txt); the stride is above every label of the records.\n";
  return out.str();
}

}  // namespace

std::vector<LinearSpec> constraint_specs(const Detector& detector, std::vector<std::string>* names) {
  return specs_of_rows(detector, detector.constraint_rows(names));
}

std::vector<LinearSpec> constraint_specs(const Simulation& simulation, std::vector<std::string>* names) {
  return specs_of_rows(simulation.detector(),
                       frame_rows(simulation.detector(), time_dependent_parameters(simulation), names));
}

void write_truth(const std::filesystem::path& file, const Simulation& simulation) {
  SolveResult result;
  const Detector& det = simulation.detector();
  result.parameters.reserve(det.labels().size());
  if (simulation.time_dependence().active()) {
    for (const auto& [label, value] : truth_by_label(simulation)) {
      ParameterResult pr;
      pr.label = label;
      pr.value = value;
      pr.variable = false;
      result.parameters.push_back(pr);
    }
  } else {
    for (std::size_t i = 0; i < det.labels().size(); ++i) {
      ParameterResult pr;
      pr.label = det.labels()[i];
      pr.value = simulation.truth()[i];
      pr.variable = false;
      result.parameters.push_back(pr);
    }
  }
  result.method = Method::inversion;
  Steering steering;
  steering.method = Method::inversion;
  steering.method_name = "inversion";
  write_res(file, result, steering);
}

void write_time_truth(const std::filesystem::path& folder, const Simulation& simulation) {
  const TimeDependenceSpec& td = simulation.time_dependence();
  if (!td.active()) return;
  const Detector& det = simulation.detector();
  const auto ranges = simulation.interval_runs();
  const std::int64_t stride = td.label_stride();
  std::ostringstream out;
  out << "# gpede simulate: truth of the time-dependent parameters per interval of runs: the mean of the\n"
         "# truth per run (truth_runs.txt) over the interval's tracks. expanded = label + interval * "
      << stride << ",\n"
         "# the label of the interval in millepede.res and gpede_intervals.txt.\n";
  for (std::size_t k = 0; k < ranges.size(); ++k) {
    std::int64_t tracks = 0;
    for (int run = ranges[k].first; run <= ranges[k].second; ++run) {
      tracks += simulation.tracks_per_run()[static_cast<std::size_t>(run - 1)];
    }
    out << "# interval " << k << ": runs " << ranges[k].first << " to " << ranges[k].second << ", " << tracks
        << " tracks\n";
  }
  out << "# label interval expanded truth\n";
  for (const IntervalTruth& t : simulation.interval_truth()) {
    out << t.label << ' ' << t.interval << ' ' << t.expanded << ' ' << format_number(t.value) << '\n';
  }
  write_text(folder / "truth_intervals.txt", out.str());

  std::ostringstream runs;
  runs << "# gpede simulate: truth of the time-dependent parameters per run (experiment 0); tracks per run\n"
          "# in the comment lines.\n";
  for (int run = 1; run <= simulation.runs(); ++run) {
    runs << "# run " << run << ": " << simulation.tracks_per_run()[static_cast<std::size_t>(run - 1)] << " tracks\n";
  }
  runs << "# label run truth\n";
  std::vector<std::vector<double>> per_run;
  for (int run = 1; run <= simulation.runs(); ++run) per_run.push_back(simulation.truth_at_run(run));
  for (std::size_t i = 0; i < det.labels().size(); ++i) {
    if (!td.varies(det.labels()[i])) continue;
    for (int run = 1; run <= simulation.runs(); ++run) {
      runs << det.labels()[i] << ' ' << run << ' ' << format_number(per_run[static_cast<std::size_t>(run - 1)][i])
           << '\n';
    }
  }
  write_text(folder / "truth_runs.txt", runs.str());
}

void write_geometry(const std::filesystem::path& file, const Detector& detector) {
  write_text(file, geometry_text(detector));
}

PullSummary compare_with_truth(const Simulation& simulation, const SolveResult& result) {
  const Detector& det = simulation.detector();
  PullSummary summary;
  summary.kinds = {{"sensor shifts (cm)"}, {"sensor rotations (rad)"}, {"sensor deformations"}, {"other parameters"}};
  std::vector<double> residual2(summary.kinds.size(), 0.0), truth2(summary.kinds.size(), 0.0);
  double sum = 0.0, sum2 = 0.0;
  const CovarianceBlock& block = result.covariance;
  const std::size_t k = block.labels.size();
  const bool runs = simulation.time_dependence().active();
  const std::map<std::int32_t, double> truths = runs ? truth_by_label(simulation) : std::map<std::int32_t, double>();
  const std::int64_t stride = runs ? simulation.time_dependence().label_stride() : 0;
  for (const ParameterResult& p : result.parameters) {
    if (!p.variable) continue;
    double truth = 0.0;
    if (runs) {
      const auto it = truths.find(p.label);
      if (it == truths.end()) continue;
      truth = it->second;
    } else {
      const std::int64_t index = det.parameter_index(p.label);
      if (index < 0) continue;
      truth = simulation.truth()[static_cast<std::size_t>(index)];
    }
    const std::int32_t base = runs ? static_cast<std::int32_t>(p.label % stride) : p.label;
    const bool sensor = base >= sensor_label(1, 0, 0, 0) && base < cdc_layer_label(0, 0);
    const int parameter = base % 100;
    const std::size_t kind = !sensor ? 3 : parameter <= 3 ? 0 : parameter <= 6 ? 1 : 2;
    ++summary.kinds[kind].count;
    residual2[kind] += (p.value - truth) * (p.value - truth);
    truth2[kind] += truth * truth;
    double error = p.error;
    if (!(error > 0.0) && k > 0) {
      const auto it = std::find(block.labels.begin(), block.labels.end(), p.label);
      if (it != block.labels.end()) {
        const std::size_t j = static_cast<std::size_t>(it - block.labels.begin());
        error = block.matrix[j * k + j] > 0.0 ? std::sqrt(block.matrix[j * k + j]) : 0.0;
      }
    }
    if (!(error > 0.0)) continue;
    const double pull = (p.value - truth) / error;
    sum += pull;
    sum2 += pull * pull;
    if (std::fabs(pull) > std::fabs(summary.largest)) {
      summary.largest = pull;
      summary.largest_label = p.label;
    }
    ++summary.count;
  }
  if (summary.count > 0) {
    const auto n = static_cast<double>(summary.count);
    summary.mean = sum / n;
    summary.rms = std::sqrt(sum2 / n);
  }
  for (std::size_t k = 0; k < summary.kinds.size(); ++k) {
    const auto n = static_cast<double>(std::max<std::int64_t>(summary.kinds[k].count, 1));
    summary.kinds[k].residual_rms = std::sqrt(residual2[k] / n);
    summary.kinds[k].truth_rms = std::sqrt(truth2[k] / n);
  }
  return summary;
}

SteeringFiles write_steering(const Simulation& simulation, const std::filesystem::path& folder,
                             const std::vector<std::filesystem::path>& binary_files) {
  const SimulationConfig& cfg = simulation.config();
  const Detector& det = simulation.detector();
  std::filesystem::create_directories(folder);
  SteeringFiles files;

  if (cfg.constraints) {
    std::vector<std::string> names;
    const auto specs = constraint_specs(simulation, &names);
    std::ostringstream out;
    out << "* Constraints written by gpede simulate: no overall shift or rotation of the top-level objects,\n"
           "* and no mean motion of the children of a half-shell or drift-chamber layer in its terms.\n";
    if (simulation.time_dependence().active()) {
      out << "* The first half-shell is time-dependent (steer.txt): it is left out of the overall shift and\n"
             "* rotation, which the static objects alone fix. The solver repeats a constraint that names a\n"
             "* time-dependent label once per interval; one that also named static labels would force the\n"
             "* intervals' values to be equal. Its sensors' constraints name only static labels.\n";
    }
    if (cfg.fix_wires) out << "* The wires are fixed (fixed_wires.txt): constraints on wires alone are left out.\n";
    for (std::size_t r = 0; r < specs.size(); ++r) {
      const auto& terms = specs[r].terms;
      if (cfg.fix_wires && std::all_of(terms.begin(), terms.end(), [](const auto& t) { return is_wire_label(t.first); })) {
        continue;
      }
      out << "Constraint 0.0   ! " << names[r] << '\n';
      for (const auto& [label, factor] : terms) out << label << ' ' << format_number(factor) << '\n';
    }
    files.constraints = folder / "constraints.txt";
    write_text(files.constraints, out.str());
  }
  if (cfg.fix_wires) {
    std::ostringstream out;
    out << "* Written by gpede simulate: the drift-chamber wires are fixed at their nominal positions.\n"
           "Parameter\n";
    for (const std::int32_t label : det.labels()) {
      if (is_wire_label(label)) out << label << " 0.0 -1.0\n";
    }
    files.fixed_wires = folder / "fixed_wires.txt";
    write_text(files.fixed_wires, out.str());
  }
  if (cfg.presigmas) {
    const std::vector<double> sigmas = misalignment_sigmas(det, cfg.misalignment);
    std::ostringstream out;
    out << "* Written by gpede simulate: each sensor parameter's pre-sigma is the spread of its simulated\n"
           "* misalignment (a Gaussian prior of that size, as a survey would give).\n"
           "Parameter\n";
    for (const auto& sensor : det.sensors()) {
      for (int p = 0; p < det.sensor_parameters(); ++p) {
        const std::size_t i = static_cast<std::size_t>(sensor.first_parameter + p);
        if (sigmas[i] > 0.0) out << det.labels()[i] << " 0.0 " << format_number(sigmas[i]) << '\n';
      }
    }
    files.presigmas = folder / "presigmas.txt";
    write_text(files.presigmas, out.str());
  }

  std::ostringstream out;
  out << "* Steering file written by gpede simulate: seed " << cfg.seed << ", " << simulation.n_tracks()
      << " tracks in " << simulation.n_records() << " records, " << det.n_parameters() << " parameters,\n"
      << "* field " << (cfg.field ? "on" : "off") << ", cosmics fraction " << cfg.cosmics_fraction
      << ", scattering " << (cfg.scattering == Scattering::broken_lines ? "broken-lines" : "none") << ".\n"
      << "* The true misalignment is in truth.res.\n";
  if (binary_files.empty()) {
    out << "* No binary files: the records are fed from memory (gpede simulate --solve).\n";
  } else {
    out << "Cfiles\n";
    for (const auto& p : binary_files) out << p.filename().string() << '\n';
  }
  if (!files.constraints.empty()) out << "constraints.txt\n";
  if (!files.fixed_wires.empty()) out << "fixed_wires.txt\n";
  if (!files.presigmas.empty()) {
    // Without `regularization` pede adds the pre-sigmas to the matrix only: a damping of each step,
    // not a prior, so iterations after the first walk back towards the fit without them.
    out << "presigmas.txt\n"
           "* The pre-sigmas as a Gaussian prior (in the objective function too, not only in the matrix):\n"
           "regularization 1.0\n";
  }
  const TimeDependenceSpec& td = simulation.time_dependence();
  if (td.active()) {
    out << time_dependence_comment(simulation);
    // One line per kind: the half-shell's range, then the bow labels of each pixel layer.
    std::string line;
    int line_layer = -1;
    const auto flush = [&]() {
      if (!line.empty()) out << "timedependent" << line << '\n';
      line.clear();
    };
    for (const auto& [first, last] : td.labels) {
      const int layer = first >= sensor_label(1, 0, 0, 0) ? first / 100000 : 0;
      if (layer != line_layer) flush();
      line_layer = layer;
      line += ' ' + std::to_string(first) + (last > first ? '-' + std::to_string(last) : std::string());
    }
    flush();
    out << "timestride " << td.label_stride() << '\n';
    if (!td.boundaries.empty()) {
      out << "intervals";
      for (const std::int64_t t : td.boundaries) out << ' ' << time_text(t);
      out << '\n';
    } else {
      out << "* One interval: the runs hold no step.\n";
    }
  }
  for (const std::string& line : cfg.steering_lines) out << line << '\n';
  out << "method " << cfg.method << " " << cfg.iterations << " 0.1\n"
      << "end\n";
  files.steering = folder / "steer.txt";
  write_text(files.steering, out.str());
  return files;
}

WriteSummary write_simulation(const Simulation& simulation, const std::filesystem::path& folder) {
  const SimulationConfig& cfg = simulation.config();
  const Detector& det = simulation.detector();
  std::filesystem::create_directories(folder);
  WriteSummary summary;
  const auto t0 = std::chrono::steady_clock::now();
  const int threads = cfg.threads > 0 ? cfg.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::int64_t chunk = 2048 * threads;
  // Entries per parameter and, for the time-dependent ones, per interval (entry i * intervals + k).
  const TimeDependenceSpec& td = simulation.time_dependence();
  const std::int64_t intervals = td.active() ? td.intervals() : 1;
  const std::vector<bool> varies = time_dependent_parameters(simulation);
  std::vector<std::int64_t> entries(static_cast<std::size_t>(det.n_parameters() * intervals), 0);
  std::vector<double> locals;
  RecordBatch batch;
  for (int f = 0; f < cfg.files; ++f) {
    const std::int64_t begin = static_cast<std::int64_t>(static_cast<__int128>(f) * simulation.n_records() / cfg.files);
    const std::int64_t end =
        static_cast<std::int64_t>(static_cast<__int128>(f + 1) * simulation.n_records() / cfg.files);
    const auto path = folder / binary_name(f);
    MilleWriter writer(path, cfg.precision);
    for (std::int64_t first = begin; first < end; first += chunk) {
      batch.clear();
      accumulate(summary.stats, simulation.generate_parallel(first, std::min(chunk, end - first), batch, threads));
      for (std::size_t r = 0; r < batch.n_records(); ++r) {
        for (std::int64_t m = batch.record_begin[r]; m < batch.record_begin[r + 1]; ++m) {
          const std::int64_t lb = batch.local_begin[m], le = batch.local_begin[m + 1];
          const int n_local = le > lb ? batch.local_index[le - 1] + 1 : 0;
          locals.assign(n_local, 0.0);
          for (std::int64_t k = lb; k < le; ++k) locals[batch.local_index[k]] = batch.local_deriv[k];
          const std::int64_t gb = batch.global_begin[m], ge = batch.global_begin[m + 1];
          for (std::int64_t k = gb; k < ge; ++k) {
            const std::int64_t index = det.parameter_index(batch.global_label[k]);
            if (index < 0) continue;
            const std::int64_t interval =
                varies[static_cast<std::size_t>(index)] ? td.interval_of(batch.record_time[r]) : 0;
            ++entries[static_cast<std::size_t>(index * intervals + interval)];
          }
          if (m == batch.record_begin[r] && !batch.record_time.empty() && batch.record_time[r] != kNoTime) {
            writer.add_time(experiment_of(batch.record_time[r]), run_of(batch.record_time[r]));
          }
          writer.add_measurement(n_local, locals.data(), static_cast<int>(ge - gb), batch.global_deriv.data() + gb,
                                 batch.global_label.data() + gb, batch.meas_value[m], batch.meas_sigma[m]);
        }
        writer.end_record();
      }
    }
    writer.close();
    summary.bytes += writer.bytes_written();
    summary.binary_files.push_back(path);
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (std::size_t e = 0; e < entries.size(); ++e) {
    const std::size_t index = e / static_cast<std::size_t>(intervals);
    if (e % static_cast<std::size_t>(intervals) != 0 && !varies[index]) continue;
    if (entries[e] < k_entries_cut) ++summary.parameters_below_entries_cut;
  }

  const SteeringFiles files = write_steering(simulation, folder, summary.binary_files);
  summary.steering_file = files.steering;
  summary.constraint_file = files.constraints;
  summary.truth_file = folder / "truth.res";
  write_truth(summary.truth_file, simulation);
  write_time_truth(folder, simulation);
  write_geometry(folder / "geometry.txt", det);
  return summary;
}

}  // namespace gpede::sim
