// Files of a simulation: Mille C binary files, steer.txt, constraints.txt, truth.res (millepede.res
// format) and geometry.txt (for plots).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "gpede/error.hpp"
#include "gpede/output.hpp"
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

std::vector<LinearSpec> constraint_specs(const Detector& detector, std::vector<std::string>* names) {
  const auto rows = detector.constraint_rows(names);
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

void write_truth(const std::filesystem::path& file, const Simulation& simulation) {
  SolveResult result;
  const Detector& det = simulation.detector();
  result.parameters.reserve(det.labels().size());
  for (std::size_t i = 0; i < det.labels().size(); ++i) {
    ParameterResult pr;
    pr.label = det.labels()[i];
    pr.value = simulation.truth()[i];
    pr.variable = false;
    result.parameters.push_back(pr);
  }
  result.method = Method::inversion;
  Steering steering;
  steering.method = Method::inversion;
  steering.method_name = "inversion";
  write_res(file, result, steering);
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
  for (const ParameterResult& p : result.parameters) {
    if (!p.variable) continue;
    const std::int64_t index = det.parameter_index(p.label);
    if (index < 0) continue;
    const double truth = simulation.truth()[static_cast<std::size_t>(index)];
    const bool sensor = p.label >= sensor_label(1, 0, 0, 0) && p.label < cdc_layer_label(0, 0);
    const int parameter = p.label % 100;
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
    const double pull = (p.value - simulation.truth()[static_cast<std::size_t>(index)]) / error;
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
    const auto specs = constraint_specs(det, &names);
    std::ostringstream out;
    out << "* Constraints written by gpede simulate: no overall shift or rotation of the top-level objects,\n"
           "* and no mean motion of the children of a half-shell or drift-chamber layer in its terms.\n";
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
  std::vector<std::int64_t> entries(det.n_parameters(), 0);
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
            if (index >= 0) ++entries[index];
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
  for (std::int64_t e : entries) {
    if (e < k_entries_cut) ++summary.parameters_below_entries_cut;
  }

  const SteeringFiles files = write_steering(simulation, folder, summary.binary_files);
  summary.steering_file = files.steering;
  summary.constraint_file = files.constraints;
  summary.truth_file = folder / "truth.res";
  write_truth(summary.truth_file, simulation);
  write_geometry(folder / "geometry.txt", det);
  return summary;
}

}  // namespace gpede::sim
