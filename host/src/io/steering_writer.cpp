// A Steering written back as a pede steering file (gpede/steering.hpp: steering_text).
#include <charconv>
#include <cmath>
#include <limits>
#include <string>

#include "gpede/error.hpp"
#include "gpede/output.hpp"
#include "gpede/steering.hpp"
#include "gpede/record_time.hpp"
#include "gpede/version.hpp"

namespace gpede {
namespace {

/// The shortest text that pede's reader (and gpede's) reads back as the same double.
std::string number(double x) {
  if (!std::isfinite(x)) throw InputError("steering writer: a value is not finite", exit_code::steering_error);
  char buffer[40];
  const auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, x);  // shortest exact text
  if (error != std::errc()) throw RuntimeError("steering writer: cannot format a number");
  return std::string(buffer, end);
}

/// A file name as a steering line: absolute, and refused where pede would read it otherwise.
std::string file_line(const std::filesystem::path& path) {
  const std::string name = std::filesystem::absolute(path).lexically_normal().string();
  const bool unreadable = name.find('!') != std::string::npos || name.find(" -- ") != std::string::npos ||
                          name.find('\n') != std::string::npos || name.find('\r') != std::string::npos ||
                          name.front() == ' ' || name.back() == ' ';
  if (unreadable) {
    throw InputError("steering writer: pede cannot read the file name '" + printable(name, 200) +
                         "' from a steering file (it holds '!', ' -- ', a line break or edge blanks)",
                     exit_code::steering_error);
  }
  return name;
}

void linear_block(std::string& out, const char* keyword, const LinearSpec& spec, bool with_sigma) {
  out += std::string(keyword) + " " + number(spec.value);
  if (with_sigma) out += " " + number(spec.sigma);
  out += "\n";
  for (const auto& [label, factor] : spec.terms) out += std::to_string(label) + " " + number(factor) + "\n";
}

}  // namespace

std::string steering_text(const Steering& s) {
  std::string out;
  out += "* pede steering file written by gpede " + std::string(version());
  if (!s.steering_file.empty()) out += " from " + printable(s.steering_file.string(), 200);
  out += "\n";
  // Binary files, under the format keyword each needs (C is a steering file's first format).
  MilleFormat format = MilleFormat::c_binary;
  for (const MilleFileSpec& file : s.binary_files) {
    if (file.format != format) {
      out += file.format == MilleFormat::fortran_binary ? "Fortranfiles\n" : "Cfiles\n";
      format = file.format;
    }
    out += file_line(file.path);
    if (file.weight != 1.0) out += " -- " + number(file.weight);
    out += "\n";
  }
  // Options that differ from pede's defaults.
  out += "method " + s.method_name + " " + std::to_string(s.iterations) + " " + number(s.dflim) + "\n";
  if (s.lapack_method && s.method == Method::inversion) out += "LAPACKwitherrors\n";
  if (s.constraint_mode == ConstraintMode::multipliers) out += "withmultipliers\n";
  if (s.entries_files != 25 || s.entries_accepted != 10) {
    out += "entries " + std::to_string(s.entries_files) + " " + std::to_string(s.entries_accepted) + "\n";
  }
  if (s.entries_iterate == std::numeric_limits<int>::max()) {
    out += "iterateentries\n";
  } else if (s.entries_iterate != 0) {
    out += "iterateentries " + std::to_string(s.entries_iterate) + "\n";
  }
  if (s.count_records) out += "countrecords\n";
  if (s.chisqcut1 != 0.0) {
    // A first factor below 1 is kept as -1 (pede's way); any value below 1 gives it again.
    out += "chisqcut " + number(s.chisqcut1 < 0.0 ? 0.5 : s.chisqcut1) + " " + number(s.chisqcut2) + "\n";
  }
  if (s.hugecut != 50.0) out += "hugecut " + number(s.hugecut) + "\n";
  if (s.outlier_downweighting != 0) out += "outlierdownweighting " + std::to_string(s.outlier_downweighting) + "\n";
  if (s.dwfractioncut != 0.0) out += "dwfractioncut " + number(s.dwfractioncut) + "\n";
  if (s.regularisation) {
    out += "regularisation " + number(s.regularisation_factor);
    if (s.regularisation_presigma != 0.0) out += " " + number(s.regularisation_presigma);
    out += "\n";
  }
  // After regularisation, whose second number sets the same default pre-sigma.
  if (s.presigma != (s.regularisation ? s.regularisation_presigma : 0.0)) out += "presigma " + number(s.presigma) + "\n";
  if (s.scale_errors_global != 1.0 || s.scale_errors_local != 1.0) {
    out += "scaleerrors " + number(s.scale_errors_global) + " " + number(s.scale_errors_local) + "\n";
  }
  if (s.skip_empty_constraints) out += "skipemptycons\n";
  if (s.printcounts != 0) out += "printcounts " + std::to_string(s.printcounts) + "\n";
  if (s.globalcorr) out += "globalcorr\n";
  if (s.threads > 0) out += "threads " + std::to_string(s.threads) + "\n";
  if (s.subito) out += "subito\n";
  if (s.force) out += "force\n";
  if (s.check_input != 0) out += "checkinput " + std::to_string(s.check_input) + "\n";
  if (s.no_feasible_start) out += "nofeasiblestart\n";
  if (s.line_search != 2) out += "linesearch " + std::to_string(s.line_search) + "\n";
  if (s.wolfe_c2 != 0.0) out += "wolfe 0.0001 " + number(s.wolfe_c2) + "\n";  // pede keeps c2 only
  if (s.matrix_iterations != 0) out += "matiter " + std::to_string(s.matrix_iterations) + "\n";
  if (s.printrecord1 != 0 || s.printrecord2 != 0) {
    out += "printrecord " + std::to_string(s.printrecord1) + " " + std::to_string(s.printrecord2) + "\n";
  }
  if (s.maxrecord > 0) out += "maxrecord " + std::to_string(s.maxrecord) + "\n";
  if (s.minres_tolerance != static_cast<double>(1.0e-6f)) out += "mrestol " + number(s.minres_tolerance) + "\n";
  if (s.minres_bandwidth != 0 || s.minres_band_skyline) {
    out += "bandwidth " + std::to_string(s.minres_bandwidth) + (s.minres_band_skyline ? " 1" : "") + "\n";
  }
  if (s.minres_transition_condition != 1.0e7) out += "mrestranscond " + number(s.minres_transition_condition) + "\n";
  if (s.minres_mode != 0) out += "mresmode " + std::to_string(s.minres_mode) + "\n";
  // gpede's time dependence (not pede's: a steering file with these lines is gpede's alone).
  const TimeDependenceSpec& td = s.time_dependence;
  for (const MilleFileSpec& file : s.binary_files) {
    if (file.time != kNoTime) out += "filetime " + file_line(file.path) + " " + time_text(file.time) + "\n";
  }
  if (td.active()) {
    out += "timedependent";
    for (const auto& [first, last] : td.labels) {
      out += " " + std::to_string(first) + (last != first ? "-" + std::to_string(last) : std::string());
    }
    out += "\n";
  }
  if (!td.boundaries.empty()) {
    out += "intervals";
    for (const std::int64_t t : td.boundaries) out += " " + time_text(t);
    out += "\n";
  }
  if (td.automatic) out += "intervals auto" + (td.penalty > 0.0 ? " " + number(td.penalty) : std::string()) + "\n";
  if (td.stride > 0) out += "timestride " + std::to_string(td.stride) + "\n";
  for (const TemplateSpec& t : td.templates) {
    out += "template " + std::to_string(t.amplitude);
    for (const auto& [label, c] : t.shape) out += " " + std::to_string(label) + " " + number(c);
    out += "\n";
  }
  // The blocks of the text files, here in the steering file itself.
  if (!s.parameters.empty()) {
    out += "Parameter\n";
    for (const ParameterSpec& p : s.parameters) {
      out += std::to_string(p.label) + " " + number(p.value) + " " + number(p.presigma) + "\n";
    }
  }
  bool weighted = false;
  for (const LinearSpec& c : s.constraints) {
    if (c.weighted != weighted) {
      out += c.weighted ? "weightedcons\n" : "weightedcons 0\n";
      weighted = c.weighted;
    }
    linear_block(out, "Constraint", c, c.sigma != 0.0);
  }
  if (weighted) out += "weightedcons 0\n";
  for (const LinearSpec& m : s.measurements) linear_block(out, "Measurement", m, true);
  out += "end\n";
  return out;
}

void write_steering(const std::filesystem::path& file, const Steering& steering) {
  write_file_atomically(file, steering_text(steering));
}

}  // namespace gpede
