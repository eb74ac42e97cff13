// Writes a break-point alignment problem of the size of pede's scaled test (4,032 parameters,
// 28 local parameters, 38 measurements per record), for timing gpede against pede on the same
// files:
//   14 planes at z = 10, 20, ..., 140, each a grid of 16 x 18 modules over 20 x 20; even planes
//   measure x, odd planes y (resolution 0.002), each module has one parameter, its shift along the
//   measured direction (label 1 + plane * 288 + module; true shifts 0.01 rms);
//   straight tracks with multiple scattering: x0, tx, y0, ty and a kink in x and y at each of the
//   12 inner planes (0.001 rms) as local parameters; the kinks are also measured as 0 +- 0.001
//   (measurements without global derivatives);
//   4 constraints remove the weak modes (per direction: no common shift, no shear along z).
// Usage: make_breakpoint_problem OUTDIR [RECORDS (200000)] [METHOD (sparseMINRES)] [NX NY (16 18)]
//   NX x NY modules per plane: 14 NX NY parameters (the defaults give 4,032).
// Writes OUTDIR/data.bin (Mille C binary, single precision), constraints.txt, steer.txt (3
// iterations, 2 threads) and truth.txt (label, true shift).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gpede/mille.hpp"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 6 || argc == 5) {
    std::fprintf(stderr, "usage: %s OUTDIR [RECORDS] [METHOD] [NX NY]\n", argv[0]);
    return 2;
  }
  const std::filesystem::path out = argv[1];
  const long records = argc > 2 ? std::stol(argv[2]) : 200000;
  const std::string method = argc > 3 ? argv[3] : "sparseMINRES";
  std::filesystem::create_directories(out);

  const int nx = argc > 5 ? std::stoi(argv[4]) : 16, ny = argc > 5 ? std::stoi(argv[5]) : 18;
  if (nx < 1 || ny < 1 || nx * ny > 1000000) {
    std::fprintf(stderr, "NX and NY must be positive, NX NY at most 1,000,000\n");
    return 2;
  }
  constexpr int planes = 14, inner = planes - 2;
  const int modules = nx * ny;
  constexpr int locals = 4 + 2 * inner;
  constexpr double size = 20.0, sigma = 0.002, theta0 = 0.001;
  auto z_of = [](int plane) { return 10.0 * (plane + 1); };
  std::mt19937_64 rng(20261202);
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(-0.475 * size, 0.475 * size);

  std::vector<double> shift(static_cast<std::size_t>(planes * modules));
  for (double& s : shift) s = 0.01 * gauss(rng);
  {
    std::ofstream truth(out / "truth.txt");
    for (std::size_t i = 0; i < shift.size(); ++i) truth << i + 1 << ' ' << shift[i] << '\n';
  }
  {
    std::ofstream con(out / "constraints.txt");
    for (int direction = 0; direction < 2; ++direction) {
      for (int moment = 0; moment < 2; ++moment) {
        con << "Constraint 0.0\n";
        for (int plane = direction; plane < planes; plane += 2) {
          const double factor = moment == 0 ? 1.0 : (z_of(plane) - 75.0) / 65.0;
          for (int m = 0; m < modules; ++m) con << plane * modules + m + 1 << ' ' << factor << '\n';
        }
      }
    }
  }
  {
    std::ofstream steer(out / "steer.txt");
    steer << "Cfiles\ndata.bin\nconstraints.txt\nmethod " << method << " 3 0.001\nthreads 2\nend\n";
  }

  gpede::MilleWriter writer(out / "data.bin");
  std::vector<double> dlocal(locals), kinks(2 * inner);
  for (long r = 0; r < records; ++r) {
    const double x0 = uniform(rng), y0 = uniform(rng);
    const double tx = 0.005 * gauss(rng), ty = 0.005 * gauss(rng);
    for (double& k : kinks) k = theta0 * gauss(rng);
    for (int plane = 0; plane < planes; ++plane) {
      const int direction = plane % 2;  // 0: x, 1: y
      const double z = z_of(plane) - z_of(0);
      // The true track at this plane, and which module it crosses.
      double x = x0 + tx * z, y = y0 + ty * z;
      for (int j = 1; j <= inner && j < plane; ++j) {
        const double lever = z_of(plane) - z_of(j);
        x += kinks[2 * (j - 1)] * lever;
        y += kinks[2 * (j - 1) + 1] * lever;
      }
      const int ix = static_cast<int>(std::floor((x + 0.5 * size) / size * nx));
      const int iy = static_cast<int>(std::floor((y + 0.5 * size) / size * ny));
      if (ix < 0 || ix >= nx || iy < 0 || iy >= ny) continue;
      const int label = plane * modules + iy * nx + ix + 1;
      const double measured = (direction == 0 ? x : y) + shift[label - 1] + sigma * gauss(rng);
      // Prediction at zero local parameters and zero shifts: 0; derivatives of the prediction.
      std::fill(dlocal.begin(), dlocal.end(), 0.0);
      dlocal[2 * direction] = 1.0;
      dlocal[2 * direction + 1] = z;
      for (int j = 1; j <= inner && j < plane; ++j) dlocal[4 + 2 * (j - 1) + direction] = z_of(plane) - z_of(j);
      const double dglobal = 1.0;
      const std::int32_t labels[1] = {label};
      writer.add_measurement(locals, dlocal.data(), 1, &dglobal, labels, measured, sigma);
    }
    for (int k = 0; k < 2 * inner; ++k) {  // the kinks, measured as 0 +- theta0
      std::fill(dlocal.begin(), dlocal.end(), 0.0);
      dlocal[4 + k] = 1.0;
      writer.add_measurement(locals, dlocal.data(), 0, nullptr, nullptr, 0.0, theta0);
    }
    writer.end_record();
  }
  writer.close();
  std::printf("%s: %ld records, %lld bytes, %d parameters\n", (out / "data.bin").c_str(), records,
              static_cast<long long>(writer.bytes_written()), planes * modules);
  return 0;
}
