// libFuzzer target: the input is the text of a steering file. It is written as steer.txt into the
// process's private temporary folder, which holds only one other file, an empty mp.bin, and read
// with gpede::parse_steering. The parser looks up whether a line names an existing file, first in
// the steering file's folder, then in the working directory (scripts/fuzz.sh runs the target in
// an empty one): the files it can find are mp.bin, a binary file (the parser does not open it),
// and steer.txt itself, which it then also reads as a text file of Parameter, Constraint and
// Measurement blocks.
//
// An InputError is the expected outcome for bad text; any other exception, a crash, a sanitizer
// report, a leak or a hang is a finding, and so is an InputError message that is too long or
// holds control characters (fuzz_support.hpp). The target also traps where a parsed Steering
// breaks what parse_steering promises (labels > 0, Measurement sigmas > 0).
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "gpede/error.hpp"
#include "gpede/steering.hpp"

namespace {

void check_steering(const gpede::Steering& s) {
  for (const auto& p : s.parameters) {
    if (p.label <= 0) __builtin_trap();
  }
  for (const auto* list : {&s.constraints, &s.measurements}) {
    for (const auto& c : *list) {
      for (const auto& [label, factor] : c.terms) {
        if (label <= 0 || factor == 0.0) __builtin_trap();
      }
    }
  }
  for (const auto& m : s.measurements) {
    if (!(m.sigma > 0.0)) __builtin_trap();
  }
  for (const auto& f : s.binary_files) {
    if (!(f.weight > 0.0)) __builtin_trap();
  }
  if (s.iterations < 1 || s.outlier_downweighting < 0 || s.dwfractioncut > 0.5 || s.hugecut < 1.0) __builtin_trap();
  for (const auto& w : s.warnings) gpede::fuzz::check_message(w.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool binary_file = (gpede::fuzz::write_file("mp.bin", nullptr, 0), true);
  (void)binary_file;
  const std::filesystem::path path = gpede::fuzz::write_file("steer.txt", data, size);
  try {
    const gpede::Steering steering = gpede::parse_steering(path);
    check_steering(steering);
  } catch (const gpede::InputError& e) {
    gpede::fuzz::check_message(e.what());
  }
  return 0;
}
