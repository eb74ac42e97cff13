// libFuzzer target: a whole run of a tiny problem, parse_steering + gpede::solve + write_results.
//
// Layout of an input:
//   byte 0      flags: bit 0: the binary file is Fortran (the steering names it after
//               `fortranfiles`, else after `Cfiles`); bit 1: the solver reads in batches of 3
//               records; bit 2: the records are read again from the file in every pass instead
//               of being kept in memory
//   bytes 1-2   L, the length of the steering text (little-endian; cut to what follows)
//   L bytes     steering text
//   the rest    the binary file, mp.bin
// The steering file written is `Cfiles` (or `fortranfiles`), `mp.bin`, then the fuzzed text, in
// the folder in/ of the process's private temporary folder, next to mp.bin and nothing else. The
// result files go to out/, emptied before every input so that no input sees another's files.
// tests/fuzz/make_seeds.py writes inputs in this layout.
//
// InputError and RuntimeError are the expected outcomes of bad input; any other exception, a
// crash, a sanitizer report, a leak or a hang is a finding, and so is a message (of an exception,
// a warning, or the end message) that is too long or holds control characters.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include "fuzz_support.hpp"
#include "gpede/error.hpp"
#include "gpede/output.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"

namespace {

namespace fs = std::filesystem;

// Clamps that keep every execution short; each changes only how long a run lasts, not which code
// it reaches.
/// `method NAME n`: pede's iterations (each one or more passes over the data and a solution).
constexpr int max_iterations = 3;
/// `outlierdownweighting n`: local-fit iterations per record and pass.
constexpr int max_downweighting = 4;
/// `matiter n`: passes that build the matrix again (never more than the iterations).
constexpr int max_matrix_iterations = max_iterations;

bool print_messages() {
  static const bool on = std::getenv("GPEDE_FUZZ_PRINT") != nullptr;
  return on;
}

void expected_error(const char* kind, const std::exception& e) {
  if (print_messages()) std::fprintf(stderr, "gpede fuzz: %s: %s\n", kind, e.what());
  gpede::fuzz::check_message(e.what());
}

/// True if the path is a file directly in `folder` (the inputs this target wrote).
bool inside(const fs::path& path, const fs::path& folder) {
  std::error_code ec;
  return fs::is_regular_file(path, ec) && path.lexically_normal().parent_path() == folder.lexically_normal();
}

void run(const std::uint8_t* data, std::size_t size) {
  const std::uint8_t flags = data[0];
  const std::size_t steering_size = std::min<std::size_t>(data[1] | (std::size_t{data[2]} << 8), size - 3);
  const fs::path in = gpede::fuzz::private_folder() / "in";
  const fs::path out = gpede::fuzz::private_folder() / "out";
  std::error_code ec;
  fs::remove_all(out, ec);
  fs::create_directories(in);
  fs::create_directories(out);

  std::string text = (flags & 1) != 0 ? "fortranfiles\nmp.bin\n" : "Cfiles\nmp.bin\n";
  text.append(reinterpret_cast<const char*>(data + 3), steering_size);
  gpede::fuzz::write_file("in/mp.bin", data + 3 + steering_size, size - 3 - steering_size);
  const fs::path steering_file = gpede::fuzz::write_file("in/steer.txt", text.data(), text.size());

  gpede::Steering steering;
  try {
    steering = gpede::parse_steering(steering_file);
  } catch (const gpede::InputError& e) {
    expected_error("steering", e);
    return;
  }
  // Only the files in in/: a name that the parser found in the working directory or by an
  // absolute path would make the outcome depend on where the target runs.
  for (const auto& f : steering.binary_files) {
    if (!inside(f.path, in)) return;
  }
  for (const auto& f : steering.text_files) {
    if (!inside(f, in)) return;
  }
  steering.iterations = std::min(steering.iterations, max_iterations);
  steering.outlier_downweighting = std::min(steering.outlier_downweighting, max_downweighting);
  steering.matrix_iterations = std::min(steering.matrix_iterations, max_matrix_iterations);
  for (const auto& w : steering.warnings) gpede::fuzz::check_message(w.c_str());

  gpede::SolverOptions options;
  options.threads = 1;
  options.log = {};
  options.record_printout = "";
  if ((flags & 2) != 0) options.batch_records = 3;
  if ((flags & 4) != 0) options.cache_records = false;
  gpede::SolveResult result;
  try {
    result = gpede::solve(steering, options);
  } catch (const gpede::InputError& e) {
    expected_error("solve", e);
    return;
  } catch (const gpede::RuntimeError& e) {
    expected_error("solve (runtime)", e);
    return;
  }
  gpede::fuzz::check_message(result.message.c_str());
  for (const auto& w : result.warnings) gpede::fuzz::check_message(w.c_str());
  for (std::size_t i = 1; i < result.parameters.size(); ++i) {
    if (result.parameters[i - 1].label >= result.parameters[i].label) __builtin_trap();
  }
  try {
    gpede::write_results(out, result, steering);
  } catch (const gpede::RuntimeError& e) {
    expected_error("write_results", e);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  run(data, size);
  return 0;
}
