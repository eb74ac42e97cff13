// The steering writer (steering_text): a Steering written and read back equals the one read from
// the original file, field by field, for a steering file that sets every option gpede reads to a
// value other than its default and for pede's reference steering files; file names pede cannot read
// from a steering file are refused.
#include <gtest/gtest.h>

#include <fstream>

#include "gpede/error.hpp"
#include "gpede/steering.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using gpede::test::TempDir;

void expect_same_linear(const std::vector<gpede::LinearSpec>& a, const std::vector<gpede::LinearSpec>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].value, b[i].value) << i;
    EXPECT_EQ(a[i].sigma, b[i].sigma) << i;
    EXPECT_EQ(a[i].terms, b[i].terms) << i;
    EXPECT_EQ(a[i].weighted, b[i].weighted) << i;
  }
}

// Every field that steers a run (not where things were read, the text files' names or warnings).
void expect_same(const gpede::Steering& a, const gpede::Steering& b) {
  ASSERT_EQ(a.binary_files.size(), b.binary_files.size());
  for (std::size_t i = 0; i < a.binary_files.size(); ++i) {
    EXPECT_EQ(fs::absolute(a.binary_files[i].path).lexically_normal(), b.binary_files[i].path);
    EXPECT_EQ(a.binary_files[i].format, b.binary_files[i].format);
    EXPECT_EQ(a.binary_files[i].weight, b.binary_files[i].weight);
  }
  ASSERT_EQ(a.parameters.size(), b.parameters.size());
  for (std::size_t i = 0; i < a.parameters.size(); ++i) {
    EXPECT_EQ(a.parameters[i].label, b.parameters[i].label);
    EXPECT_EQ(a.parameters[i].value, b.parameters[i].value);
    EXPECT_EQ(a.parameters[i].presigma, b.parameters[i].presigma);
  }
  expect_same_linear(a.constraints, b.constraints);
  expect_same_linear(a.measurements, b.measurements);
  EXPECT_EQ(a.method, b.method);
  EXPECT_EQ(a.method_name, b.method_name);
  EXPECT_EQ(a.iterations, b.iterations);
  EXPECT_EQ(a.dflim, b.dflim);
  EXPECT_EQ(a.constraint_mode, b.constraint_mode);
  EXPECT_EQ(a.entries_files, b.entries_files);
  EXPECT_EQ(a.entries_accepted, b.entries_accepted);
  EXPECT_EQ(a.entries_iterate, b.entries_iterate);
  EXPECT_EQ(a.count_records, b.count_records);
  EXPECT_EQ(a.chisqcut1, b.chisqcut1);
  EXPECT_EQ(a.chisqcut2, b.chisqcut2);
  EXPECT_EQ(a.hugecut, b.hugecut);
  EXPECT_EQ(a.outlier_downweighting, b.outlier_downweighting);
  EXPECT_EQ(a.dwfractioncut, b.dwfractioncut);
  EXPECT_EQ(a.presigma, b.presigma);
  EXPECT_EQ(a.regularisation, b.regularisation);
  EXPECT_EQ(a.regularisation_factor, b.regularisation_factor);
  EXPECT_EQ(a.regularisation_presigma, b.regularisation_presigma);
  EXPECT_EQ(a.scale_errors_global, b.scale_errors_global);
  EXPECT_EQ(a.scale_errors_local, b.scale_errors_local);
  EXPECT_EQ(a.skip_empty_constraints, b.skip_empty_constraints);
  EXPECT_EQ(a.printcounts, b.printcounts);
  EXPECT_EQ(a.globalcorr, b.globalcorr);
  EXPECT_EQ(a.threads, b.threads);
  EXPECT_EQ(a.subito, b.subito);
  EXPECT_EQ(a.force, b.force);
  EXPECT_EQ(a.check_input, b.check_input);
  EXPECT_EQ(a.no_feasible_start, b.no_feasible_start);
  EXPECT_EQ(a.line_search, b.line_search);
  EXPECT_EQ(a.wolfe_c2, b.wolfe_c2);
  EXPECT_EQ(a.matrix_iterations, b.matrix_iterations);
  EXPECT_EQ(a.lapack_method, b.lapack_method);
  EXPECT_EQ(a.printrecord1, b.printrecord1);
  EXPECT_EQ(a.printrecord2, b.printrecord2);
  EXPECT_EQ(a.maxrecord, b.maxrecord);
  EXPECT_EQ(a.minres_tolerance, b.minres_tolerance);
  EXPECT_EQ(a.minres_bandwidth, b.minres_bandwidth);
  EXPECT_EQ(a.minres_band_skyline, b.minres_band_skyline);
  EXPECT_EQ(a.minres_transition_condition, b.minres_transition_condition);
  EXPECT_EQ(a.minres_mode, b.minres_mode);
  EXPECT_EQ(a.sparse_storage, b.sparse_storage);
}

gpede::Steering round_trip(const gpede::Steering& original, const fs::path& folder) {
  const fs::path written = folder / "written" / "steer.txt";
  fs::create_directories(written.parent_path());
  gpede::write_steering(written, original);
  return gpede::parse_steering(written);
}

TEST(SteeringWriter, EveryOptionReadsBackTheSame) {
  TempDir dir("steering-writer");
  std::ofstream(dir.path() / "a.bin") << "x";
  std::ofstream(dir.path() / "b.bin") << "x";
  std::ofstream(dir.path() / "c.bin") << "x";
  std::ofstream(dir.path() / "blocks.txt") << "Parameter\n11 0.5 -1\n12 1e-3 0.25\n"
                                              "weightedcons\nConstraint 0.0\n11 1.0\n12 -0.333333333333333314829616256247\n"
                                              "weightedcons 0\nConstraint 1.5 0.01\n12 2\n"
                                              "Measurement 0.125 0.002\n11 1\n12 1\n";
  std::ofstream(dir.path() / "steer.txt")
      << "a.bin\nFortranfiles\nb.bin -- 2.5\nCfiles\nc.bin -- 0.1\nblocks.txt\n"
         "method fullLAPACK 7 0.0123\nLAPACKwitherrors\nwithmultipliers\nentries 30 12\niterateentries 40\n"
         "countrecords\nchisqcut 30.0 6.0\nhugecut 80\noutlierdownweighting 4\ndwfractioncut 0.2\n"
         "regularisation 2.0 0.05\npresigma 0.02\nscaleerrors 1.5 2.5\nskipemptycons\nprintcounts 2\n"
         "globalcorr\nthreads 3\nsubito\nforce\ncheckinput 2\nnofeasiblestart\nlinesearch 3\nwolfe 1e-4 0.7\n"
         "matiter 2\nprintrecord 5 9\nmaxrecord 1000\nmrestol 1e-8\nbandwidth 6 1\nmrestranscond 1e5\n"
         "mresmode 2\nend\n";
  const gpede::Steering original = gpede::parse_steering(dir.path() / "steer.txt");
  ASSERT_EQ(original.binary_files.size(), 3u);
  ASSERT_EQ(original.constraints.size(), 2u);
  EXPECT_TRUE(original.constraints[0].weighted);
  EXPECT_TRUE(original.lapack_method);
  EXPECT_EQ(original.method, gpede::Method::inversion);
  expect_same(original, round_trip(original, dir.path()));
}

TEST(SteeringWriter, ChisqcutBelowOneAndMinresNamesReadBackTheSame) {
  TempDir dir("steering-writer-2");
  std::ofstream(dir.path() / "a.bin") << "x";
  std::ofstream(dir.path() / "steer.txt") << "a.bin\nmethod sparseMINRES-QLP 2 0.5\nchisqcut 0.3\n"
                                             "regularisation 1.5\niterateentries\nbandwidth -1\nend\n";
  const gpede::Steering original = gpede::parse_steering(dir.path() / "steer.txt");
  EXPECT_EQ(original.chisqcut1, -1.0);
  expect_same(original, round_trip(original, dir.path()));
}

TEST(SteeringWriter, PedesReferenceSteeringReadsBackTheSame) {
  GPEDE_REQUIRE_REFERENCE();
  for (const char* problem : {"sl0", "bp", "wirechamber"}) {
    const fs::path folder = gpede::test::reference_dir() / problem;
    for (const auto& variant : fs::directory_iterator(folder / "pede")) {
      SCOPED_TRACE(variant.path().string());
      TempDir dir("steering-writer-reference");
      for (const char* name : {"mp2con.txt", "mp2tst.bin.gz"}) fs::create_symlink(folder / name, dir.path() / name);
      fs::copy_file(variant.path() / "steer.txt", dir.path() / "steer.txt");
      const gpede::Steering original = gpede::parse_steering(dir.path() / "steer.txt");
      EXPECT_FALSE(original.constraints.empty());
      expect_same(original, round_trip(original, dir.path()));
    }
  }
}

TEST(SteeringWriter, AFileNamePedeCannotReadIsRefused) {
  gpede::Steering steering;
  steering.method_name = "inversion";
  steering.binary_files.push_back({"/data/run!1.bin", gpede::MilleFormat::c_binary, 1.0});
  try {
    gpede::steering_text(steering);
    FAIL() << "written";
  } catch (const gpede::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("pede cannot read the file name '/data/run!1.bin'"), std::string::npos);
  }
}

}  // namespace
