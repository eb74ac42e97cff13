// `gpede simulate`: the command line of the simulation (options, summary, timing).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>

#include "gpede/error.hpp"
#include "gpede/simulate.hpp"

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
         "  --preset small|medium|belle2  detector size (default small: about 1,800 parameters;\n"
         "                              medium: 212 sensors x 18, 4 layers, 640 wires: about 5,000;\n"
         "                              belle2: 212 sensors x 18, 56 layers x 6, 14,336 wires x 4)\n"
         "  -o DIR                      output folder (default: gpede-simulation)\n"
         "  --seed N                    random seed (default 1)\n"
         "  --tracks N                  number of tracks (default: small 20000, medium 200000,\n"
         "                              belle2 100000)\n"
         "  --cosmics-fraction F        fraction of the tracks that are cosmics (default 0.2)\n"
         "  --field on|off              solenoid (1.5 T) for the di-muon tracks (default on);\n"
         "                              cosmics are straight (field-off runs)\n"
         "  --scattering none|broken-lines\n"
         "                              multiple scattering as kink local parameters (default broken-lines)\n"
         "  --precision float|double    precision of the binary files (default float)\n"
         "  --files N                   number of binary files (default 1)\n"
         "  --threads N                 generation threads (default: all cores)\n"
         "  --no-constraints            write no constraint file\n"
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
    bool no_constraints = false;
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
        if (preset != "small" && preset != "medium" && preset != "belle2") {
          throw std::invalid_argument("--preset must be small, medium or belle2, not '" + preset + "'");
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
      } else if (arg == "--no-constraints") {
        o.no_constraints = true;
      } else {
        throw std::invalid_argument("unknown option '" + arg + "'");
      }
    }
    if (preset == "belle2") config = sim::preset_config(sim::Preset::belle2);
    if (preset == "medium") config = sim::preset_config(sim::Preset::medium);
    if (o.seed >= 0) config.seed = static_cast<std::uint64_t>(o.seed);
    if (o.tracks >= 0) config.tracks = o.tracks;
    if (o.files >= 0) config.files = static_cast<int>(std::min<std::int64_t>(o.files, 100000));
    if (o.threads >= 0) config.threads = static_cast<int>(std::min<std::int64_t>(o.threads, 1024));
    if (o.cosmics >= 0.0) config.cosmics_fraction = o.cosmics;
    if (o.field >= 0) config.field = o.field == 1;
    if (o.scattering >= 0) config.scattering = o.scattering == 1 ? sim::Scattering::broken_lines : sim::Scattering::none;
    if (o.precision >= 0) config.precision = o.precision == 1 ? MillePrecision::double_ : MillePrecision::single;
    if (o.no_constraints) config.constraints = false;
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
    if (!config.field && config.cosmics_fraction == 0.0) {
      std::cout << "  warning: straight tracks from the interaction point only: the radial positions of the wires\n"
                   "           are nearly undetermined; add cosmics or switch the field on\n";
    }
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
              << summary.truth_file.string() << ", " << (out / "geometry.txt").string() << "\n";
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
