// gpede command-line tool: `gpede [options] steering-file` runs pede's job and writes pede's result
// files; `gpede simulate ...` generates a misaligned detector (see `gpede simulate --help`).
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>

#include "gpede/error.hpp"
#include "gpede/output.hpp"
#include "gpede/simulate.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"

namespace {

void print_usage(std::ostream& out) {
  out << "usage: gpede [options] [steering-file]\n"
         "       gpede simulate [options]   (gpede simulate --help)\n"
         "\n"
         "Reads pede's steering file (default: ./steerfile) and the Mille binary files it names,\n"
         "solves the alignment problem and writes millepede.res, millepede.log, millepede.end,\n"
         "millepede.eve (diagonalization) and gpede.json.\n"
         "\n"
         "options:\n"
         "  --backend cpu|cuda|auto  where the matrix is built and solved (default: cpu)\n"
         "  --output-dir DIR         folder for the result files (default: working directory)\n"
         "  --threads N              CPU threads (default: steering `threads`, else all cores)\n"
         "  -s                       subito: one solution step, no further iterations\n"
         "  -f                       force: iterate on despite rank defects (pede's -f)\n"
         "  -c, -C                   check the input only, no solution (pede's checkinput 1, 2)\n"
         "  -q, --quiet              print only errors and the final chi2/ndf line\n"
         "  -h, --help               this text\n"
         "  --version                version\n";
}

struct CommandLine {
  std::filesystem::path steering_file;
  std::filesystem::path output_dir = ".";
  gpede::BackendKind backend = gpede::BackendKind::cpu;
  int threads = 0;
  bool subito = false;
  bool force = false;
  int check_input = 0;
  bool quiet = false;
};

// Returns -1 to go on, else the exit status.
int parse_command_line(int argc, char** argv, CommandLine& cl) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(name) + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      print_usage(std::cout);
      return 0;
    } else if (arg == "--version") {
      std::cout << "gpede 0.1.0 (CUDA backend " << (gpede::cuda_available_in_build() ? "built" : "not built")
                << ")\n";
      return 0;
    } else if (arg == "--backend") {
      const std::string b = value("--backend");
      const auto kind = gpede::backend_from_name(b);
      if (!kind) throw std::invalid_argument("--backend must be cpu, cuda or auto, not '" + b + "'");
      cl.backend = *kind;
    } else if (arg == "--output-dir" || arg == "-o") {
      cl.output_dir = value("--output-dir");
    } else if (arg == "--threads") {
      cl.threads = std::stoi(value("--threads"));
    } else if (arg == "-q" || arg == "--quiet") {
      cl.quiet = true;
    } else if (arg.size() > 1 && arg[0] == '-' && arg.find_first_not_of("sfcC", 1) == std::string::npos) {
      // pede's single-letter flags, alone or together (-s, -f, -c, -C, -sf)
      for (char c : arg.substr(1)) {
        if (c == 's') cl.subito = true;
        if (c == 'f') cl.force = true;
        if (c == 'c') cl.check_input = std::max(cl.check_input, 1);
        if (c == 'C') cl.check_input = 2;
      }
    } else if (!arg.empty() && arg[0] == '-') {
      throw std::invalid_argument("unknown option '" + arg + "' (see gpede --help)");
    } else if (cl.steering_file.empty()) {
      cl.steering_file = arg;
    } else {
      throw std::invalid_argument("a second steering file '" + arg + "' on the command line");
    }
  }
  if (cl.steering_file.empty()) cl.steering_file = "steerfile";
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "simulate") == 0) return gpede::simulate_main(argc - 1, argv + 1);
  CommandLine cl;
  try {
    const int status = parse_command_line(argc, argv, cl);
    if (status >= 0) return status;
  } catch (const std::exception& e) {
    std::cerr << "gpede: " << e.what() << "\n";
    return 2;
  }

  const auto out = cl.output_dir;
  try {
    std::filesystem::create_directories(out);
  } catch (const std::exception& e) {
    std::cerr << "gpede: cannot create output folder " << out << ": " << e.what() << "\n";
    return 2;
  }
  gpede::Steering steering;
  try {
    if (!std::filesystem::exists(cl.steering_file)) {
      throw gpede::InputError("steering file " + cl.steering_file.string() + " not found", 11);
    }
    steering = gpede::parse_steering(cl.steering_file);
    if (cl.subito) steering.subito = true;
    if (cl.force) steering.force = true;
    if (cl.check_input > 0) steering.check_input = cl.check_input;
    gpede::SolverOptions options;
    options.backend = cl.backend;
    options.threads = cl.threads;
    options.record_printout = out / "mpdebug.txt";
    options.log = [&](const std::string& line) {
      if (!cl.quiet) std::cout << line << "\n";
    };
    gpede::SolveResult result = gpede::solve(steering, options);
    gpede::write_results(out, result, steering);
    if (result.exit_code >= 10) {
      std::cerr << "gpede: " << result.message << "\n";
      return result.exit_code;
    }
    // pede's closing lines, which workflows read: chi2/ndf, the end, the peak memory.
    if (!result.input_check) std::cout << gpede::chi2_summary(result);
    std::cout << " Exit code " << result.exit_code << ": " << result.message << "\n";
    std::cout << gpede::ending_lines(result);
    return 0;
  } catch (const gpede::InputError& e) {
    // The exit status is the code in millepede.end (an abort code, at least 10).
    const int code = e.exit_code() >= 10 ? e.exit_code() : gpede::exit_code::steering_error;
    std::cerr << "gpede: error: " << e.what() << "\n";
    try {
      gpede::write_end(out / "millepede.end", code, e.what());
    } catch (...) {
    }
    return code;
  } catch (const std::exception& e) {
    std::cerr << "gpede: error: " << e.what() << "\n";
    try {
      gpede::write_end(out / "millepede.end", gpede::exit_code::memory, e.what());
    } catch (...) {
    }
    return gpede::exit_code::memory;
  }
}
