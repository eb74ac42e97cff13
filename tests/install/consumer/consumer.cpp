// Solves a problem through an installed gpede and compares the values and errors with a
// millepede.res written by pede.
//   consumer STEERING PEDE_RES
// Exit status 0 when every parameter agrees (value within 1 % of its error or half a unit of pede's
// last printed digit; error within 1e-3 relative), 1 when not, 2 on a usage or gpede error.
#include <gpede/output.hpp>
#include <gpede/solver.hpp>
#include <gpede/steering.hpp>
#include <gpede/version.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace {

struct PedeLine {
  double value = 0.0;
  double error = 0.0;
  bool has_error = false;
};

std::map<int, PedeLine> read_res(const char* path) {
  std::map<int, PedeLine> lines;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // " Parameter   ! ..."
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    int label = 0;
    double value = 0.0, presigma = 0.0, difference = 0.0, error = 0.0;
    if (!(fields >> label >> value >> presigma)) continue;
    PedeLine p;
    p.value = value;
    if (fields >> difference >> error) {
      p.error = error;
      p.has_error = true;
    }
    lines[label] = p;
  }
  return lines;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: consumer STEERING PEDE_RES\n");
    return 2;
  }
  if (std::strcmp(gpede::version(), GPEDE_VERSION_STRING) != 0) {
    std::fprintf(stderr, "headers of %s, library of %s\n", GPEDE_VERSION_STRING, gpede::version());
    return 1;
  }
  gpede::SolveResult result;
  try {
    const gpede::Steering steering = gpede::parse_steering(argv[1]);
    gpede::SolverOptions options;
    options.backend = gpede::BackendKind::cpu;
    options.log = {};
    result = gpede::solve(steering, options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpede: %s\n", e.what());
    return 2;
  }
  const std::map<int, PedeLine> pede = read_res(argv[2]);
  int compared = 0, bad = 0;
  for (const gpede::ParameterResult& p : result.parameters) {
    const auto it = pede.find(static_cast<int>(p.label));
    if (it == pede.end()) {
      std::printf("label %lld: not in pede's file\n", static_cast<long long>(p.label));
      ++bad;
      continue;
    }
    const PedeLine& q = it->second;
    const double digit = 5e-5 * std::abs(q.value);  // pede prints 5 significant digits
    const double tolerance = std::max(0.01 * q.error, digit) + 1e-12;
    bool ok = std::abs(p.value - q.value) <= tolerance;
    if (q.has_error) ok = ok && std::abs(p.error - q.error) <= 1e-3 * q.error + 5e-5 * q.error;
    if (!ok) {
      std::printf("label %lld: gpede %.6g +- %.6g, pede %.6g +- %.6g\n", static_cast<long long>(p.label), p.value,
                  p.error, q.value, q.error);
      ++bad;
    }
    ++compared;
  }
  if (compared != static_cast<int>(pede.size())) {
    std::printf("gpede lists %d parameters, pede %zu\n", compared, pede.size());
    ++bad;
  }
  std::printf("gpede %s through the installed package: %d parameters compared with pede, %d differ; exit code %d\n",
              gpede::version(), compared, bad, result.exit_code);
  return bad == 0 ? 0 : 1;
}
