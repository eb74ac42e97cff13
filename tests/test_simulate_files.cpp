// Files of `gpede simulate`: deterministic per seed (byte for byte, whatever the thread count),
// different for another seed; the Mille files read back with MilleReader give exactly the records
// of the in-memory source; the constraint file holds for the truth; bad options are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include "gpede/mille.hpp"
#include "gpede/simulate.hpp"
#include "gpede/steering.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using gpede::RecordBatch;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::map<std::string, std::string> folder_contents(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files[e.path().filename().string()] = read_file(e.path());
  return files;
}

gpede::sim::SimulationConfig small_config(std::uint64_t seed, gpede::MillePrecision precision, int files) {
  auto cfg = gpede::sim::preset_config(gpede::sim::Preset::small);
  cfg.tracks = 1500;
  cfg.seed = seed;
  cfg.precision = precision;
  cfg.files = files;
  cfg.threads = 2;
  return cfg;
}

TEST(SimulateFiles, SameSeedSameBytesOtherSeedOtherBytes) {
  gpede::test::TempDir a("sim-a"), b("sim-b"), c("sim-c");
  auto cfg = small_config(11, gpede::MillePrecision::single, 2);
  gpede::sim::write_simulation(gpede::sim::Simulation(cfg), a.path());
  cfg.threads = 1;
  gpede::sim::write_simulation(gpede::sim::Simulation(cfg), b.path());
  cfg.seed = 12;
  gpede::sim::write_simulation(gpede::sim::Simulation(cfg), c.path());

  const auto fa = folder_contents(a.path()), fb = folder_contents(b.path()), fc = folder_contents(c.path());
  for (const char* name : {"mille_000.bin", "mille_001.bin", "steer.txt", "constraints.txt", "truth.res", "geometry.txt"}) {
    ASSERT_TRUE(fa.count(name)) << name;
    EXPECT_GT(fa.at(name).size(), 0u) << name;
  }
  ASSERT_EQ(fa.size(), fb.size());
  for (const auto& [name, bytes] : fa) {
    ASSERT_TRUE(fb.count(name)) << name;
    EXPECT_TRUE(bytes == fb.at(name)) << name << " differs between two runs with the same seed";
  }
  EXPECT_NE(fa.at("mille_000.bin"), fc.at("mille_000.bin"));
  EXPECT_NE(fa.at("mille_001.bin"), fc.at("mille_001.bin"));
  EXPECT_NE(fa.at("truth.res"), fc.at("truth.res"));
  // The geometry and hence the constraints do not depend on the seed.
  EXPECT_EQ(fa.at("constraints.txt"), fc.at("constraints.txt"));
}

class SimulateReadBack : public ::testing::TestWithParam<gpede::MillePrecision> {};

TEST_P(SimulateReadBack, FilesGiveTheRecordsOfTheSource) {
  gpede::test::TempDir dir("sim-read");
  const auto cfg = small_config(5, GetParam(), 3);
  const gpede::sim::Simulation sim(cfg);
  const auto summary = gpede::sim::write_simulation(sim, dir.path());
  ASSERT_EQ(summary.binary_files.size(), 3u);

  RecordBatch from_files;
  std::int64_t doubles = 0;
  for (std::size_t f = 0; f < summary.binary_files.size(); ++f) {
    gpede::MilleFileSpec spec;
    spec.path = summary.binary_files[f];
    gpede::MilleReader reader(spec, static_cast<std::int32_t>(f));
    while (reader.read(from_files, 1000) > 0) {
    }
    doubles += reader.double_records_read();
  }
  EXPECT_EQ(doubles, GetParam() == gpede::MillePrecision::double_ ? sim.n_records() : 0);

  gpede::sim::SimulationSource source(sim, 2);
  RecordBatch from_memory;
  while (source.next(from_memory, 777) > 0) {
  }
  // global_index is the solver's label map, which the simulation leaves empty
  gpede::test::expect_same_records(from_files, from_memory, false);
  EXPECT_EQ(static_cast<std::int64_t>(from_memory.n_records()), sim.n_records());
  EXPECT_EQ(source.stats().tracks, sim.n_tracks());

  // Rewound, the source gives the same records again.
  source.rewind();
  RecordBatch again;
  while (source.next(again, 4096) > 0) {
  }
  gpede::test::expect_same_records(again, from_memory, false);
}

INSTANTIATE_TEST_SUITE_P(Precisions, SimulateReadBack,
                         ::testing::Values(gpede::MillePrecision::single, gpede::MillePrecision::double_),
                         [](const auto& info) {
                           return std::string(info.param == gpede::MillePrecision::single ? "float" : "double");
                         });

TEST(SimulateFiles, ConstraintFileHoldsForTheTruth) {
  gpede::test::TempDir dir("sim-con");
  const gpede::sim::Simulation sim(small_config(3, gpede::MillePrecision::single, 1));
  gpede::sim::write_simulation(sim, dir.path());
  gpede::Steering steering;
  gpede::parse_text_file(dir.path() / "constraints.txt", steering);
  const auto& det = sim.detector();
  ASSERT_EQ(steering.constraints.size(), 6u + 6u * (det.half_shells().size() + det.cdc_layers().size()));
  for (const auto& c : steering.constraints) {
    EXPECT_EQ(c.value, 0.0);
    double sum = 0.0, scale = 0.0;
    for (const auto& [label, factor] : c.terms) {
      const std::int64_t i = det.parameter_index(label);
      ASSERT_GE(i, 0) << label;
      sum += factor * sim.truth()[i];
      scale += std::fabs(factor * sim.truth()[i]);
    }
    EXPECT_LT(std::fabs(sum), 1e-9 * scale) << c.where.line;
  }
}

int run_simulate(std::vector<std::string> args) {
  args.insert(args.begin(), "simulate");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return gpede::simulate_main(static_cast<int>(argv.size()), argv.data());
}

TEST(SimulateCommandLine, RefusesBadOptions) {
  gpede::test::TempDir dir("sim-cli");
  const std::string out = (dir.path() / "out").string();
  for (const auto& bad : std::vector<std::vector<std::string>>{{"--preset", "huge"},
                                                              {"--tracks", "-5"},
                                                              {"--tracks", "12x"},
                                                              {"--tracks"},
                                                              {"--seed", "abc"},
                                                              {"--field", "maybe"},
                                                              {"--scattering", "lots"},
                                                              {"--precision", "half"},
                                                              {"--cosmics-fraction", "1.5"},
                                                              {"--files", "0"},
                                                              {"--bogus"}}) {
    auto args = bad;
    args.insert(args.begin(), {"-o", out});
    EXPECT_NE(run_simulate(args), 0) << bad[0];
  }
  EXPECT_FALSE(fs::exists(dir.path() / "out" / "steer.txt"));
  EXPECT_EQ(run_simulate({"--help"}), 0);
}

TEST(SimulateCommandLine, WritesAFolder) {
  gpede::test::TempDir dir("sim-cli-ok");
  const std::string out = (dir.path() / "out").string();
  ASSERT_EQ(run_simulate({"-o", out, "--tracks", "600", "--seed", "4", "--files", "2", "--field", "off",
                          "--scattering", "none", "--precision", "double", "--cosmics-fraction", "0.5",
                          "--no-constraints", "--steer", "bandwidth 18", "--steer", "mrestol 1e-8"}),
            0);
  EXPECT_TRUE(fs::exists(dir.path() / "out" / "mille_000.bin"));
  EXPECT_TRUE(fs::exists(dir.path() / "out" / "mille_001.bin"));
  EXPECT_TRUE(fs::exists(dir.path() / "out" / "truth.res"));
  EXPECT_FALSE(fs::exists(dir.path() / "out" / "constraints.txt"));
  const std::string steer = read_file(dir.path() / "out" / "steer.txt");
  EXPECT_NE(steer.find("mille_001.bin"), std::string::npos);
  EXPECT_EQ(steer.find("constraints.txt"), std::string::npos);
  EXPECT_NE(steer.find("method inversion"), std::string::npos);
  // the extra lines, in order, before the method
  const auto band = steer.find("bandwidth 18\nmrestol 1e-8\n");
  ASSERT_NE(band, std::string::npos) << steer;
  EXPECT_LT(band, steer.find("method inversion"));
  EXPECT_NE(run_simulate({"-o", out, "--steer", "bandwidth 18\nend"}), 0);  // one line only
}

}  // namespace
