// gpede command-line tool: `gpede [options] steering-file` runs pede's job and writes pede's result
// files; `gpede simulate ...` generates a misaligned detector (see `gpede simulate --help`).
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "gpede/error.hpp"
#include "gpede/output.hpp"
#include "gpede/simulate.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"
#include "gpede/version.hpp"
#include "mpi_processes.hpp"

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
         "  --deterministic          the same results bit for bit, run after run (the CPU backend\n"
         "                           always is; the CUDA backend then sums the matrix exactly)\n"
         "  --no-cache               read the binary files again in every pass instead of keeping\n"
         "                           the records in memory (less memory, as pede does)\n"
         "  --storage auto|full|packed  the CPU backend's global matrix for decomposition and\n"
         "                           inversion: n^2 doubles (full), or the lower triangle alone,\n"
         "                           n(n+1)/2 (packed); auto packs it where full does not fit\n"
         "  --covariance LABELS      the covariance block of these labels into gpede.json: 'all',\n"
         "                           or labels and ranges such as 11-16,21-26 (with MINRES: a\n"
         "                           MINRES solution per label)\n"
         "  --distributed-solve      under mpirun: spread the global matrix over the processes\n"
         "                           (ScaLAPACK, 2D block-cyclic) and solve it there together,\n"
         "                           instead of on the first process alone (taken without it\n"
         "                           where one process cannot hold the solution)\n"
         "  --memory GB              plan with at most this much memory per process (default:\n"
         "                           what the system allows, shared by a machine's processes)\n"
         "  -s                       subito: one solution step, no further iterations\n"
         "  -f                       force: iterate on despite rank defects (pede's -f)\n"
         "  -c, -C                   check the input only, no solution (pede's checkinput 1, 2)\n"
         "  -q, --quiet              print only errors and the final chi2/ndf line\n"
         "  -h, --help               this text\n"
         "  --version                version\n";
}

struct CommandLine {
  std::filesystem::path steering_file;
  bool steering_named = false;  ///< named on the command line (else ./steerfile)
  std::filesystem::path output_dir = ".";
  gpede::BackendKind backend = gpede::BackendKind::cpu;
  int threads = 0;
  bool deterministic = false;
  bool distributed_solve = false;
  std::size_t memory_limit_bytes = 0;  ///< --memory
  bool no_cache = false;
  gpede::MatrixStorage storage = gpede::MatrixStorage::automatic;
  bool subito = false;
  bool force = false;
  int check_input = 0;
  bool quiet = false;
  /// An error pede reports with a code of its own (a second steering file: 12); it is written to
  /// millepede.end once the output folder is known.
  std::string deferred_error;
  int deferred_code = 0;
  std::vector<std::int32_t> covariance_labels;  ///< --covariance
  bool covariance_all = false;
};

/// A usage error: exit status 2, no file written.
struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// `--memory GB`: a positive number of gigabytes (10^9 bytes), as the memory plan prints them.
std::size_t parse_memory(const std::string& text) {
  double value = 0.0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || !(value > 0.0) || value > 1.0e9) {
    throw UsageError("--memory needs a number of gigabytes above 0, such as 20 or 0.5, not '" +
                     gpede::printable(text, 40) + "'");
  }
  return static_cast<std::size_t>(value * 1.0e9);
}

int parse_threads(const std::string& text) {
  int value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || value < 1) {
    throw UsageError("--threads needs a whole number of at least 1, not '" + gpede::printable(text, 40) + "'");
  }
  return value;
}

/// `--covariance`: "all", or labels and ranges separated by commas ("11-16,21-26,1011").
void parse_covariance(const std::string& text, CommandLine& cl) {
  if (text == "all") {
    cl.covariance_all = true;
    return;
  }
  const auto bad = [&](const std::string& why) {
    return UsageError("--covariance takes 'all' or labels and ranges such as 11-16,21-26 (" + why + "), not '" +
                      gpede::printable(text, 60) + "'");
  };
  const auto label = [&](std::string_view token) {
    std::int32_t value = 0;
    const auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
    if (ec != std::errc() || ptr != token.data() + token.size() || value < 1) throw bad("labels are 1 to 2147483647");
    return value;
  };
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view item(text.data() + start, comma - start);
    const std::size_t dash = item.find('-');
    if (dash == std::string_view::npos) {
      cl.covariance_labels.push_back(label(item));
    } else {
      const std::int32_t first = label(item.substr(0, dash)), last = label(item.substr(dash + 1));
      if (last < first || last - first >= 1000000) throw bad("a range is first-last, at most a million labels");
      for (std::int32_t l = first; l <= last; ++l) cl.covariance_labels.push_back(l);
    }
    if (cl.covariance_labels.size() > 1000000) throw bad("at most a million labels");
    start = comma + 1;
  }
}

// Returns -1 to go on, else the exit status. CLI11 reads the command line; the values are checked
// here, with messages that name the option and the value.
int parse_command_line(int argc, char** argv, CommandLine& cl) {
  CLI::App app{"gpede", "gpede"};
  app.set_help_flag();  // gpede's own text (print_usage)
  app.allow_extras(false);
  bool help = false, version = false, subito = false, force = false, check = false, check_all = false;
  std::optional<std::string> backend, output_dir, threads, storage, covariance, memory;
  std::vector<std::string> files;
  app.add_flag("-h,--help", help);
  app.add_flag("--version", version);
  app.add_option("--backend", backend);
  app.add_option("-o,--output-dir", output_dir);
  app.add_option("--threads", threads);
  app.add_flag("--deterministic", cl.deterministic);
  app.add_flag("--distributed-solve", cl.distributed_solve);
  app.add_option("--storage", storage);
  app.add_option("--memory", memory);
  app.add_flag("--no-cache", cl.no_cache);
  app.add_option("--covariance", covariance);
  app.add_flag("-q,--quiet", cl.quiet);
  // pede's single-letter flags, alone or together (-s, -f, -c, -C, -sf)
  app.add_flag("-s", subito);
  app.add_flag("-f", force);
  app.add_flag("-c", check);
  app.add_flag("-C", check_all);
  app.add_option("steering-file", files);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    if (what.find("not expected") != std::string::npos || what.find("requires") != std::string::npos ||
        what.find("INVALID") != std::string::npos) {
      what = "unknown option or missing value: " + what;
    }
    throw UsageError(gpede::printable(what, 200) + " (see gpede --help)");
  }
  if (help) {
    print_usage(std::cout);
    return 0;
  }
  if (version) {
    std::cout << "gpede " << gpede::version() << " (CUDA backend " << (gpede::cuda_available_in_build() ? "built" : "not built")
              << ")\n";
    return 0;
  }
  if (backend) {
    const auto kind = gpede::backend_from_name(*backend);
    if (!kind) throw UsageError("--backend must be cpu, cuda or auto, not '" + gpede::printable(*backend, 40) + "'");
    cl.backend = *kind;
  }
  if (output_dir) {
    if (output_dir->empty()) throw UsageError("--output-dir needs a folder name");
    cl.output_dir = *output_dir;
  }
  if (threads) cl.threads = parse_threads(*threads);
  if (memory) cl.memory_limit_bytes = parse_memory(*memory);
  if (storage) {
    if (*storage == "auto") {
      cl.storage = gpede::MatrixStorage::automatic;
    } else if (*storage == "full") {
      cl.storage = gpede::MatrixStorage::full;
    } else if (*storage == "packed") {
      cl.storage = gpede::MatrixStorage::packed;
    } else {
      throw UsageError("--storage must be auto, full or packed, not '" + gpede::printable(*storage, 40) + "'");
    }
  }
  if (covariance) parse_covariance(*covariance, cl);
  cl.subito = subito;
  cl.force = force;
  cl.check_input = check_all ? 2 : (check ? 1 : 0);
  if (!files.empty()) {
    cl.steering_file = files[0];
    cl.steering_named = true;
  }
  if (files.size() > 1) {
    cl.deferred_error = "a second steering file '" + files[1] + "' on the command line (the first is '" +
                        cl.steering_file.string() + "')";
    cl.deferred_code = gpede::exit_code::second_text_file;
  }
  if (!cl.steering_named) cl.steering_file = "steerfile";
  return -1;
}

// ----- SIGINT and SIGTERM -------------------------------------------------------------------------
//
// The handler (on whichever thread the signal lands, library threads included) sets the stop flag
// and wakes a watcher thread through a pipe. The solver stops at the next batch of records or step
// of the solution (SolverOptions::stop), and main() writes millepede.end with code 40. Where the
// solver cannot get there within the grace time (a factorisation inside a library call, a read
// that blocks), or at a second signal, the watcher writes millepede.end itself and ends the
// process with 40. Result files are written under the same mutex, so the watcher never cuts a
// result set in two.

std::atomic<bool> g_stop{false};
volatile std::sig_atomic_t g_signal = 0;
int g_wake[2] = {-1, -1};  // the handler writes one byte per signal into g_wake[1]
std::mutex g_output_mutex;
std::filesystem::path g_end_file;  // set once the run folder is ready (under g_output_mutex)
bool g_failed = false;             // the run ended in an error (not a result's own exit code)
constexpr int k_grace_milliseconds = 3000;

extern "C" void on_stop_signal(int signal) {
  const int saved = errno;
  g_stop.store(true);
  g_signal = signal;
  const char byte = 1;
  [[maybe_unused]] const ssize_t n = ::write(g_wake[1], &byte, 1);
  errno = saved;
}

void watch_signals() {
  char byte = 0;
  while (::read(g_wake[0], &byte, 1) != 1) {
    if (errno != EINTR) return;
  }
  pollfd fd{g_wake[0], POLLIN, 0};
  int ready = -1;
  do {
    ready = ::poll(&fd, 1, k_grace_milliseconds);
  } while (ready < 0 && errno == EINTR);
  std::lock_guard<std::mutex> lock(g_output_mutex);
  const char* name = g_signal == SIGINT ? "SIGINT" : "SIGTERM";
  const std::string message = std::string("Aborted, interrupted by ") + name +
                              (ready > 0 ? " (a second time)"
                                         : " (the solver did not reach a point to stop within " +
                                               std::to_string(k_grace_milliseconds / 1000) + " s)") +
                              "; no result was written";
  if (!g_end_file.empty()) {
    try {
      gpede::write_end(g_end_file, gpede::exit_code::interrupted, message);
    } catch (...) {
    }
  }
  const std::string line = "gpede: error: " + message + "\n";
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
  std::_Exit(gpede::exit_code::interrupted);
}

void start_signal_watcher() {
  if (::pipe2(g_wake, O_CLOEXEC) != 0) return;  // no clean stop then: the signals keep their default
  std::thread(watch_signals).detach();
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

/// "1,234,567"
std::string grouped(std::int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

std::string seconds_text(double s) {
  char buffer[32];
  if (s < 100.0) {
    std::snprintf(buffer, sizeof buffer, "%.1f s", s);
  } else if (s < 6000.0) {
    std::snprintf(buffer, sizeof buffer, "%d min %02d s", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  } else {
    std::snprintf(buffer, sizeof buffer, "%d h %02d min", static_cast<int>(s) / 3600, static_cast<int>(s) / 60 % 60);
  }
  return buffer;
}

/// The progress of phases that last longer than a few seconds, on standard error: on a terminal
/// one line rewritten in place, else a plain line every 10 s and one when the phase ends.
class ProgressDisplay {
 public:
  explicit ProgressDisplay(bool terminal) : m_terminal(terminal) {}

  bool operator()(const gpede::Progress& p) {
    if (p.phase != m_phase || p.iteration != m_iteration) {  // a new phase
      m_phase = p.phase;
      m_iteration = p.iteration;
      m_shown = false;
      m_next_plain = kFirst;
    }
    if (p.seconds < kFirst && !m_shown) return false;
    if (!m_terminal && !p.finished && p.seconds < m_next_plain) return false;
    const std::string text = describe(p);
    if (m_terminal) {
      std::string line = "\r" + text;
      if (text.size() < m_width) line.append(m_width - text.size(), ' ');
      m_width = text.size();
      std::cerr << line << (p.finished ? "\n" : "") << std::flush;
      if (p.finished) m_width = 0;
    } else {
      std::cerr << text << "\n";
      while (m_next_plain <= p.seconds) m_next_plain += kEvery;
    }
    m_shown = !p.finished;
    return false;
  }

 private:
  static constexpr double kFirst = 3.0;   // phases shorter than this stay silent
  static constexpr double kEvery = 10.0;  // between plain lines

  static std::string describe(const gpede::Progress& p) {
    std::string text = std::string("gpede: ") + gpede::phase_name(p.phase);
    if (p.phase == gpede::Progress::Phase::local_fits || p.phase == gpede::Progress::Phase::matrix) {
      text += " pass, iteration " + std::to_string(p.iteration);
    }
    text += ": ";
    if (p.phase != gpede::Progress::Phase::solving) {
      text += grouped(p.records_done);
      if (p.records_total > 0) text += " of " + grouped(p.records_total);
      text += " records";
      if (p.records_per_second > 0.0) text += ", " + grouped(std::llround(p.records_per_second)) + "/s";
      text += ", ";
    }
    text += p.finished ? "done in " + seconds_text(p.seconds) : seconds_text(p.seconds);
    if (!p.finished && p.seconds_left >= 0.0) text += ", about " + seconds_text(p.seconds_left) + " left";
    return text;
  }

  bool m_terminal;
  gpede::Progress::Phase m_phase = gpede::Progress::Phase::reading;
  int m_iteration = -1;
  bool m_shown = false;
  double m_next_plain = kFirst;
  std::size_t m_width = 0;
};

/// The run in a few lines, after pede's own: records, chi2/ndf, time and memory per phase, files.
void print_summary(const gpede::SolveResult& result, const gpede::Steering& steering,
                   const std::filesystem::path& folder) {
  const gpede::PhaseFigures& f = result.figures;
  char line[512];
  std::cout << " gpede: " << result.message << " (exit code " << result.exit_code << "); method "
            << steering.method_name << " on the " << result.backend << " backend\n";
  std::snprintf(line, sizeof line, " gpede: records %s read, %s used, %s rejected; chi2/ndf %.4g\n",
                grouped(result.records_read).c_str(), grouped(result.records_used).c_str(),
                grouped(result.records_rejected).c_str(), result.chi2_ndf);
  std::cout << line;
  std::snprintf(line, sizeof line,
                " gpede: time %.2f s (reading %.2f, local fits %.2f, matrix %.2f, solving %.2f, output %.2f); "
                "peak memory %.3f GB (after reading %.3f, the passes %.3f, solving %.3f)\n",
                f.total_s + f.output_s, f.reading_s, f.local_fits_s, f.matrix_s, f.solving_s, f.output_s,
                static_cast<double>(f.peak_rss_bytes) * 1e-9, static_cast<double>(f.peak_after_reading_bytes) * 1e-9,
                static_cast<double>(f.peak_after_passes_bytes) * 1e-9,
                static_cast<double>(f.peak_after_solving_bytes) * 1e-9);
  std::cout << line;
  std::string files;
  for (const char* name : {"millepede.res", "millepede.eve", "millepede.log", "millepede.end", "gpede.json"}) {
    std::error_code ec;
    if (std::filesystem::exists(folder / name, ec)) files += std::string(files.empty() ? "" : ", ") + name;
  }
  std::cout << " gpede: wrote " << files << " in " << folder.string() << "\n";
}

/// Writes millepede.end unless the watcher is ending the process.
void write_end_file(int code, const std::string& message) {
  std::lock_guard<std::mutex> lock(g_output_mutex);
  if (g_end_file.empty()) return;
  try {
    gpede::write_end(g_end_file, code, message);
  } catch (const std::exception& e) {
    std::cerr << "gpede: error: " << e.what() << "\n";
  }
}

}  // namespace

/// The run proper; main() around it starts and ends MPI where a launcher started several processes.
int run(int argc, char** argv, gpede::ProcessGroup* processes) {
  const bool first = processes == nullptr || processes->rank() == 0;
  CommandLine cl;
  try {
    const int status = parse_command_line(argc, argv, cl);
    if (status >= 0) return status;
  } catch (const std::exception& e) {
    if (first) std::cerr << "gpede: " << e.what() << "\n";
    return gpede::exit_code::usage;
  }
  start_signal_watcher();
  // The other processes of an MPI run read their share of the records and say nothing; the first
  // writes the output folder.
  if (!first) cl.quiet = true;

  // The output folder first, as pede writes millepede.end first: a folder that cannot be written,
  // or one another run is using, is reported before any work.
  std::optional<gpede::RunFolder> folder;
  std::filesystem::path out;
  if (first) {
    try {
      folder.emplace(cl.output_dir);
    } catch (const gpede::OutputError& e) {
      std::cerr << "gpede: error: " << e.what() << "\n";
      return e.exit_code();
    }
    out = folder->path();
    std::lock_guard<std::mutex> lock(g_output_mutex);
    g_end_file = out / "millepede.end";
  }
  const auto fail = [&](int code, const std::string& message) {
    // Another process's failure, which the library hands every process ("(process K of N) ..."),
    // is printed by the first; a process's own failure by that process.
    if (first) {
      std::cerr << "gpede: error: " << gpede::bounded_message(message) << "\n";
    } else if (message.rfind("(process ", 0) != 0) {
      std::cerr << "gpede: error (process " << processes->rank() + 1 << " of " << processes->size()
                << "): " << gpede::bounded_message(message) << "\n";
    }
    write_end_file(code, message);
    g_failed = true;
    return code;
  };
  if (cl.deferred_code != 0) return fail(cl.deferred_code, cl.deferred_error);

  try {
    std::error_code ec;
    if (!cl.steering_named && !std::filesystem::exists(cl.steering_file, ec)) {
      return fail(gpede::exit_code::no_steering_file,
                  "no steering file: none was named on the command line and ./steerfile does not exist");
    }
    gpede::Steering steering = gpede::parse_steering(cl.steering_file);
    if (cl.subito) steering.subito = true;
    if (cl.force) steering.force = true;
    if (cl.check_input > 0) steering.check_input = cl.check_input;
    gpede::SolverOptions options;
    options.backend = cl.backend;
    options.threads = cl.threads;
    options.processes = processes;
    if (processes != nullptr && cl.threads == 0 && steering.threads == 0) {
      // The node's cores shared among its processes.
      const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
      options.threads = std::max(1, cores / gpede::cli::local_processes());
    }
    options.deterministic = cl.deterministic;
    options.distributed_solve = cl.distributed_solve;
    options.memory_limit_bytes = cl.memory_limit_bytes;
    if (cl.distributed_solve && processes == nullptr) {
      return fail(gpede::exit_code::usage, "--distributed-solve needs several processes (mpirun -np N gpede ...)");
    }
    options.cache_records = !cl.no_cache;
    options.storage = cl.storage;
    options.covariance_labels = cl.covariance_labels;
    options.covariance_all = cl.covariance_all;
    options.record_printout = out / "mpdebug.txt";
    options.stop = &g_stop;
    options.log = [&](const std::string& line) {
      if (!cl.quiet) std::cout << line << "\n";
    };
    ProgressDisplay display(isatty(STDERR_FILENO) != 0);
    if (!cl.quiet) {
      options.progress = [&](const gpede::Progress& p) {
        std::cout << std::flush;  // the log's lines first
        return display(p);
      };
    }
    gpede::SolveResult result = gpede::solve(steering, options);
    if (!first) return result.exit_code >= 10 ? result.exit_code : 0;
    {
      std::lock_guard<std::mutex> lock(g_output_mutex);
      gpede::write_results(out, result, steering);
    }
    // Warnings on standard error, -q or not.
    for (const auto* list : {&steering.warnings, &result.warnings}) {
      for (const auto& w : *list) std::cerr << "gpede: warning: " << gpede::bounded_message(w) << "\n";
    }
    if (result.exit_code >= 10) {
      std::cerr << "gpede: " << result.message << "\n";
      return result.exit_code;
    }
    // pede's closing lines, which workflows read: chi2/ndf, the end, the peak memory; gpede's
    // summary before the last two.
    if (!result.input_check) std::cout << gpede::chi2_summary(result);
    std::cout << " Exit code " << result.exit_code << ": " << result.message << "\n";
    if (!cl.quiet) print_summary(result, steering, out);
    std::cout << gpede::ending_lines(result);
    return 0;
  } catch (const gpede::InputError& e) {
    // The exit status is the code in millepede.end (an abort code, at least 10).
    return fail(e.exit_code() >= 10 ? e.exit_code() : gpede::exit_code::steering_error, e.what());
  } catch (const gpede::Interrupted& e) {
    return fail(e.exit_code(), std::string("Aborted, interrupted by ") + (g_signal == SIGINT ? "SIGINT" : "SIGTERM") +
                                   ": " + e.what() + "; no result was written");
  } catch (const gpede::OutputError& e) {
    return fail(e.exit_code(), e.what());
  } catch (const std::bad_alloc&) {
    return fail(gpede::exit_code::memory, "Aborted, memory allocation failed");
  } catch (const std::exception& e) {
    return fail(gpede::exit_code::memory, e.what());
  }
}

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "simulate") == 0) return gpede::simulate_main(argc - 1, argv + 1);
  int world = 0;
  if (!gpede::cli::launched_by_mpi(&world) || world <= 1) return run(argc, argv, nullptr);
  // Several processes: a failure on any of them ends all (MPI_Abort), since the others would wait
  // for it in the next sum; the first process has written millepede.end by then.
  std::unique_ptr<gpede::ProcessGroup> processes;
  try {
    processes = gpede::cli::start_mpi(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "gpede: error: started by an MPI launcher with " << world << " processes: " << e.what() << "\n";
    return gpede::exit_code::usage;
  }
  const int code = run(argc, argv, processes.get());
  // A failure that every process shares (the library's agreement after each pass and step) ends
  // all normally; one that left others waiting ends them by MPI_Abort.
  if (g_failed && !gpede::cli::all_failed_together(10.0)) gpede::cli::abort_mpi(code);
  gpede::cli::finish_mpi();
  return code;
}
