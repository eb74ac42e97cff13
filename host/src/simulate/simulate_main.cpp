// `gpede simulate`: the command line of the simulation (options, summary, timing).
#include <algorithm>
#include <chrono>
#include <iterator>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>

#include "gpede/error.hpp"
#include "gpede/output.hpp"
#include "gpede/simulate.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"

namespace gpede {
namespace {

void print_usage(std::ostream& out) {
  out << "usage: gpede simulate [options]\n"
         "\n"
         "Simulates a misaligned Belle II-like tracker (pixel and strip sensors, drift chamber) with\n"
         "di-muon pairs and cosmics, and writes Mille binary files, steer.txt, constraints.txt,\n"
         "truth.res (the true misalignment in millepede.res format) and geometry.txt.\n"
         "Then: gpede DIR/steer.txt, and compare millepede.res with DIR/truth.res\n"
         "(scripts/plot_simulation.py DIR).\n"
         "\n"
         "options:\n"
         "  --preset small|medium|belle2|cms  detector size (default small: about 1,800 parameters;\n"
         "                              medium: 212 sensors x 18, 4 layers, 640 wires: about 5,000;\n"
         "                              belle2: 212 sensors x 18, 56 layers x 6, 14,336 wires x 4;\n"
         "                              cms: 8,019 strip modules x 18, about 144,000, 3.8 T)\n"
         "  -o DIR                      output folder (default: gpede-simulation)\n"
         "  --seed N                    random seed (default 1)\n"
         "  --tracks N                  number of tracks (default: small 20000, medium 200000,\n"
         "                              belle2 100000, cms 400000)\n"
         "  --cosmics-fraction F        fraction of the tracks that are cosmics (default 0.2)\n"
         "  --field on|off              solenoid (1.5 T) for the di-muon tracks (default on);\n"
         "                              cosmics are straight (field-off runs)\n"
         "  --scattering none|broken-lines\n"
         "                              multiple scattering as kink local parameters (default broken-lines)\n"
         "  --precision float|double    precision of the binary files (default float)\n"
         "  --files N                   number of binary files (default 1)\n"
         "  --runs N                    spread the tracks evenly over runs 1..N (experiment 0), write each\n"
         "                              record's run into it (a time block) and let parts of the\n"
         "                              misalignment vary from run to run (default 0: no runs, static)\n"
         "  --time-scenario jumps|drift|steady\n"
         "                              with --runs, what varies (default jumps): jumps: the pixel sensors'\n"
         "                              bow (their L2(v) deformation term) drifts over the runs and steps\n"
         "                              at run ceil(N/2)+1, the first half-shell's x shift steps at run\n"
         "                              ceil(N/3)+1; drift: the bow drifts only; steady: nothing varies.\n"
         "                              steer.txt declares the bow parameters and the half-shell's 6\n"
         "                              parameters time-dependent, with interval starts at the true\n"
         "                              steps (jumps) or cutting the runs into 4 equal parts (drift,\n"
         "                              steady); truth.res lists each interval's label (L + k * stride),\n"
         "                              truth_intervals.txt and truth_runs.txt the truth per interval and\n"
         "                              per run (scripts/plot_intervals.py DIR plots them with the fit)\n"
         "  --threads N                 generation threads (default: all cores)\n"
         "  --no-constraints            write no constraint file\n"
         "  --fix-wires                 fix the drift-chamber wires in the steering (fixed_wires.txt) and\n"
         "                              do not misalign them (the wires are taken as known and stay at\n"
         "                              their nominal positions in the truth). The records\n"
         "                              keep their wire derivatives; belle2 goes from 61,520 to 4,176\n"
         "                              fitted parameters\n"
         "  --iterations N              `method METHOD N 0.1` in steer.txt (default 3)\n"
         "  --steer LINE                one more line of steer.txt, before `method` (repeatable),\n"
         "                              e.g. --steer 'bandwidth 18'\n"
         "  --method NAME               the method of steer.txt (default inversion; sparseMINRES for\n"
         "                              the large presets: no errors then, so no pulls, and the\n"
         "                              misalignment left over per kind of parameter instead)\n"
         "  --solve                     write no binary files: solve at once with the records fed from\n"
         "                              memory (generated again on each pass over the data, so any number\n"
         "                              of tracks fits), write pede's result files into DIR and print the\n"
         "                              pulls against the truth\n"
         "  --backend cpu|cuda|auto     with --solve: where the matrix is built and solved (default cpu)\n"
         "  --presigmas on|off          presigmas.txt: each sensor parameter's pre-sigma is the spread of\n"
         "                              its misalignment, and `regularization 1.0` in steer.txt so that\n"
         "                              they act as a prior (default: on for cms, off otherwise)\n"
         "  --error-sample N            with --solve and a method without errors (MINRES): errors, and so\n"
         "                              pulls, for the parameters of N sensors spread over the detector,\n"
         "                              from their covariance block (a MINRES solution per parameter)\n"
         "  -h, --help                  this text\n";
}

std::int64_t parse_integer(const std::string& option, const std::string& text, std::int64_t min) {
  std::size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty()) throw std::invalid_argument(option + " needs an integer, not '" + text + "'");
  if (value < min) throw std::invalid_argument(option + " must be at least " + std::to_string(min) + ", not " + text);
  return value;
}

double parse_fraction(const std::string& option, const std::string& text) {
  std::size_t used = 0;
  double value = 0.0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || !(value >= 0.0 && value <= 1.0)) {
    throw std::invalid_argument(option + " needs a number in [0, 1], not '" + text + "'");
  }
  return value;
}

std::string megabytes(std::int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

/// --solve: steering files and truth into `out`, then the solver with the records from memory.
int solve_in_memory(const sim::Simulation& simulation, const std::filesystem::path& out, BackendKind backend) {
  const sim::SimulationConfig& config = simulation.config();
  const sim::SteeringFiles files = sim::write_steering(simulation, out, {});
  sim::write_truth(out / "truth.res", simulation);
  sim::write_time_truth(out, simulation);
  sim::write_geometry(out / "geometry.txt", simulation.detector());
  std::cout << "  wrote " << files.steering.string() << (files.constraints.empty() ? "" : ", " + files.constraints.string())
            << (files.fixed_wires.empty() ? "" : ", " + files.fixed_wires.string()) << ", "
            << (out / "truth.res").string() << ", " << (out / "geometry.txt").string() << "\n"
            << "  solving with the records fed from memory (no binary files)\n";
  std::cout.flush();
  Steering steering;
  try {
    steering = parse_steering(files.steering);
    SolverOptions options;
    options.backend = backend;
    options.threads = config.threads;
    options.cache_records = false;  // generated again on each pass: memory does not grow with the tracks
    options.log = [](const std::string& line) { std::cout << "  " << line << std::endl; };
    if (config.error_sample_sensors > 0 && steering.method == Method::minres) {
      options.covariance_labels = sim::sample_sensor_labels(simulation.detector(), config.error_sample_sensors);
    }
    sim::SimulationSource source(simulation, config.threads);
    SolveResult result = solve(steering, options, &source);
    write_results(out, result, steering);
    std::printf("  records: %lld used, %lld rejected\n",
                static_cast<long long>(result.records_used), static_cast<long long>(result.records_rejected));
    const auto& f = result.figures;
    std::printf("  time: %.1f s (first pass over the records %.1f s, matrix %.1f s, other passes %.1f s, solution %.1f s),"
                " peak memory %.2f GB\n",
                f.total_s, f.reading_s, f.matrix_s, f.local_fits_s, f.solving_s, static_cast<double>(f.peak_rss_bytes) / 1e9);
    if (result.exit_code >= 10) {
      std::cerr << "gpede simulate: " << result.message << "\n";
      return result.exit_code;
    }
    const sim::PullSummary pulls = sim::compare_with_truth(simulation, result);
    if (pulls.count > 0) {
      std::printf("  pulls (fitted - true) / error of %lld parameters%s: mean %.3f, RMS %.3f, largest %.2f (label %d)\n",
                  static_cast<long long>(pulls.count),
                  result.covariance.labels.empty() ? "" : " (errors from the covariance block of a sample of sensors)",
                  pulls.mean, pulls.rms, pulls.largest, pulls.largest_label);
    } else {
      std::printf("  no errors from method %s: no pulls\n", steering.method_name.c_str());
    }
    for (const auto& kind : pulls.kinds) {
      if (kind.count == 0) continue;
      std::printf("  %s: %lld parameters, misalignment RMS %.3g, left after the fit (fitted - true) RMS %.3g\n",
                  kind.name.c_str(), static_cast<long long>(kind.count), kind.truth_rms, kind.residual_rms);
    }
    std::cout << "  wrote " << (out / "millepede.res").string() << ", millepede.log, millepede.end, gpede.json\n";
    return 0;
  } catch (const InputError& e) {
    std::cerr << "gpede simulate: error: " << e.what() << "\n";
    write_end(out / "millepede.end", e.exit_code(), e.what());
    return e.exit_code() != 0 ? e.exit_code() : 1;
  }
}

}  // namespace

int simulate_main(int argc, char** argv) {
  sim::SimulationConfig config = sim::preset_config(sim::Preset::small);
  std::string preset = "small";
  std::filesystem::path out = "gpede-simulation";
  // Options are applied after the preset, whatever their order.
  struct Overrides {
    std::int64_t seed = -1, tracks = -1, files = -1, threads = -1;
    double cosmics = -1.0;
    int field = -1, scattering = -1, precision = -1;
    bool no_constraints = false, fix_wires = false, solve = false;
    int presigmas = -1;
    std::int64_t error_sample = -1;
    std::int64_t iterations = -1;
    std::int64_t runs = -1;
    int time_scenario = -1;
    std::string method;
    std::vector<std::string> steering_lines;
    BackendKind backend = BackendKind::cpu;
  } o;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
        return argv[++i];
      };
      if (arg == "-h" || arg == "--help") {
        print_usage(std::cout);
        return 0;
      } else if (arg == "--preset") {
        preset = value();
        if (preset != "small" && preset != "medium" && preset != "belle2" && preset != "cms") {
          throw std::invalid_argument("--preset must be small, medium, belle2 or cms, not '" + preset + "'");
        }
      } else if (arg == "-o" || arg == "--output") {
        out = value();
      } else if (arg == "--seed") {
        o.seed = parse_integer(arg, value(), 0);
      } else if (arg == "--tracks") {
        o.tracks = parse_integer(arg, value(), 1);
      } else if (arg == "--files") {
        o.files = parse_integer(arg, value(), 1);
      } else if (arg == "--threads") {
        o.threads = parse_integer(arg, value(), 1);
      } else if (arg == "--cosmics-fraction") {
        o.cosmics = parse_fraction(arg, value());
      } else if (arg == "--field") {
        const std::string v = value();
        if (v != "on" && v != "off") throw std::invalid_argument("--field must be on or off, not '" + v + "'");
        o.field = v == "on" ? 1 : 0;
      } else if (arg == "--scattering") {
        const std::string v = value();
        if (v != "none" && v != "broken-lines") {
          throw std::invalid_argument("--scattering must be none or broken-lines, not '" + v + "'");
        }
        o.scattering = v == "broken-lines" ? 1 : 0;
      } else if (arg == "--precision") {
        const std::string v = value();
        if (v != "float" && v != "double") {
          throw std::invalid_argument("--precision must be float or double, not '" + v + "'");
        }
        o.precision = v == "double" ? 1 : 0;
      } else if (arg == "--runs") {
        o.runs = parse_integer(arg, value(), 0);
        if (o.runs > 1000000) throw std::invalid_argument("--runs must be at most 1000000, not " + std::to_string(o.runs));
      } else if (arg == "--time-scenario") {
        const std::string v = value();
        if (v == "jumps") {
          o.time_scenario = static_cast<int>(sim::TimeScenario::jumps);
        } else if (v == "drift") {
          o.time_scenario = static_cast<int>(sim::TimeScenario::drift);
        } else if (v == "steady") {
          o.time_scenario = static_cast<int>(sim::TimeScenario::steady);
        } else {
          throw std::invalid_argument("--time-scenario must be jumps, drift or steady, not '" + v + "'");
        }
      } else if (arg == "--no-constraints") {
        o.no_constraints = true;
      } else if (arg == "--fix-wires") {
        o.fix_wires = true;
      } else if (arg == "--solve") {
        o.solve = true;
      } else if (arg == "--presigmas") {
        const std::string v = value();
        if (v != "on" && v != "off") throw std::invalid_argument("--presigmas must be on or off, not '" + v + "'");
        o.presigmas = v == "on" ? 1 : 0;
      } else if (arg == "--error-sample") {
        o.error_sample = parse_integer(arg, value(), 0);
      } else if (arg == "--steer") {
        const std::string line = value();
        if (line.find_first_of("\n\r") != std::string::npos) {
          throw std::invalid_argument("--steer takes one steering line, without line breaks");
        }
        o.steering_lines.push_back(line);
      } else if (arg == "--iterations") {
        o.iterations = parse_integer(arg, value(), 1);
      } else if (arg == "--method") {
        o.method = value();
        static const char* const known[] = {"inversion", "diagonalization", "decomposition", "fullLAPACK",
                                            "sparseMINRES", "fullMINRES", "sparseMINRES-QLP", "fullMINRES-QLP"};
        if (std::find(std::begin(known), std::end(known), o.method) == std::end(known)) {
          throw std::invalid_argument("--method must be one of pede's methods (inversion, diagonalization, "
                                      "decomposition, fullLAPACK, sparseMINRES, fullMINRES, and the -QLP names), not '" +
                                      o.method + "'");
        }
      } else if (arg == "--backend") {
        const std::string v = value();
        const auto kind = backend_from_name(v);
        if (!kind) throw std::invalid_argument("--backend must be cpu, cuda or auto, not '" + v + "'");
        o.backend = *kind;
      } else {
        throw std::invalid_argument("unknown option '" + arg + "'");
      }
    }
    if (preset == "belle2") config = sim::preset_config(sim::Preset::belle2);
    if (preset == "medium") config = sim::preset_config(sim::Preset::medium);
    if (preset == "cms") config = sim::preset_config(sim::Preset::cms);
    if (o.seed >= 0) config.seed = static_cast<std::uint64_t>(o.seed);
    if (o.tracks >= 0) config.tracks = o.tracks;
    if (o.files >= 0) config.files = static_cast<int>(std::min<std::int64_t>(o.files, 100000));
    if (o.threads >= 0) config.threads = static_cast<int>(std::min<std::int64_t>(o.threads, 1024));
    if (o.cosmics >= 0.0) config.cosmics_fraction = o.cosmics;
    if (o.field >= 0) config.field = o.field == 1;
    if (o.scattering >= 0) config.scattering = o.scattering == 1 ? sim::Scattering::broken_lines : sim::Scattering::none;
    if (o.precision >= 0) config.precision = o.precision == 1 ? MillePrecision::double_ : MillePrecision::single;
    if (o.no_constraints) config.constraints = false;
    if (o.fix_wires) {
      config.fix_wires = true;
      config.misalignment.wire_shift = 0.0;
    }
    if (o.iterations > 0) config.iterations = static_cast<int>(std::min<std::int64_t>(o.iterations, 1000));
    if (!o.method.empty()) config.method = o.method;
    config.steering_lines = o.steering_lines;
    if (o.presigmas >= 0) config.presigmas = o.presigmas == 1;
    if (o.runs > 0) config.time.runs = static_cast<int>(o.runs);
    if (o.time_scenario >= 0) {
      if (o.runs <= 0) throw std::invalid_argument("--time-scenario needs --runs N with N > 0");
      config.time.scenario = static_cast<sim::TimeScenario>(o.time_scenario);
    }
    if (o.error_sample >= 0) config.error_sample_sensors = static_cast<int>(std::min<std::int64_t>(o.error_sample, 1000000));
  } catch (const std::exception& e) {
    std::cerr << "gpede simulate: " << e.what() << " (see gpede simulate --help)\n";
    return 2;
  }

  try {
    const auto t0 = std::chrono::steady_clock::now();
    const sim::Simulation simulation(config);
    const double setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const sim::Detector& det = simulation.detector();
    std::cout << "gpede simulate: preset " << preset << ", seed " << config.seed << ", output " << out.string() << "\n"
              << "  detector: " << det.sensors().size() << " sensors, " << det.half_shells().size() << " half-shells, "
              << det.cdc_layers().size() << " drift-chamber layers, " << det.n_wires() << " wires\n"
              << "  parameters: " << det.n_parameters() << " (labels " << det.labels().front() << " .. "
              << det.labels().back() << ")\n"
              << "  records: " << simulation.n_records() << ", tracks: " << simulation.n_tracks() << " (cosmics fraction "
              << config.cosmics_fraction << ", field " << (config.field ? "on" : "off") << ", scattering "
              << (config.scattering == sim::Scattering::broken_lines ? "broken-lines" : "none") << ")\n";
    if (simulation.time_dependence().active()) {
      const TimeDependenceSpec& td = simulation.time_dependence();
      std::size_t labels = 0;
      for (const auto& [first, last] : td.labels) labels += static_cast<std::size_t>(last - first + 1);
      std::cout << "  runs: " << simulation.runs() << ", " << labels << " time-dependent parameters in " << td.intervals()
                << " interval(s), runs";
      for (const auto& [first, last] : simulation.interval_runs()) {
        std::cout << ' ' << first << (last > first ? "-" + std::to_string(last) : std::string());
      }
      std::cout << " (label stride " << td.label_stride() << ")\n";
    }
    if (!config.field && config.cosmics_fraction == 0.0) {
      std::cout << "  warning: straight tracks from the interaction point only: the radial positions of the wires\n"
                   "           are nearly undetermined; add cosmics or switch the field on\n";
    }
    if (o.solve) return solve_in_memory(simulation, out, o.backend);
    const sim::WriteSummary summary = sim::write_simulation(simulation, out);
    const auto& st = summary.stats;
    const double tracks = static_cast<double>(st.tracks);
    std::printf("  measurements per track: %.1f (%.1f of them kink pseudo-measurements)\n",
                static_cast<double>(st.measurements) / tracks, static_cast<double>(st.kink_measurements) / tracks);
    std::printf("  local parameters per record: %.1f on average, %d at most\n",
                static_cast<double>(st.local_parameters) / static_cast<double>(st.records), st.max_local_parameters);
    std::printf("  wrote %zu binary file(s), %s (%.0f bytes per track), in %.2f s: %.0f tracks/s (setup %.2f s)\n",
                summary.binary_files.size(), megabytes(summary.bytes).c_str(),
                static_cast<double>(summary.bytes) / tracks, summary.seconds, tracks / summary.seconds, setup_s);
    std::cout << "  wrote " << summary.steering_file.string()
              << (config.constraints ? ", " + summary.constraint_file.string() : std::string()) << ", "
              << summary.truth_file.string()
              << (simulation.runs() > 0
                      ? ", " + (out / "truth_intervals.txt").string() + ", " + (out / "truth_runs.txt").string()
                      : std::string())
              << ", "
              << (out / "geometry.txt").string() << "\n";
    if (summary.parameters_below_entries_cut > 0) {
      std::cout << "  warning: " << summary.parameters_below_entries_cut
                << " parameters have fewer than 25 entries and will be fixed by pede's default entries cut;\n"
                   "           simulate more tracks\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "gpede simulate: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace gpede
