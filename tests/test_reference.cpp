// End to end against pede: for every reference problem in ../shared/reference and every method pede
// ran there, the gpede command-line tool given the same steering file agrees with pede's
// millepede.res (values to 1% of the error, errors to 1e-3 relative, column layout) and with
// pede's chi2/ndf from millepede.log (1e-7 relative). Where pede is documented to be wrong
// (diagonalization errors with elimination; diagonalization with multipliers), gpede is compared
// with pede's exact inversion of the same problem instead.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gpede/solver.hpp"
#include "gpede/steering.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using gpede::test::reference_dir;
using gpede::test::run_command;
using gpede::test::TempDir;

using gpede::test::read_res;
using gpede::test::ResLine;

// chi2/ndf as printed in pede's three lines `Sum(Chi^2)/Sum(Ndf) = ...` / `/ (...)` / `= value`.
double read_chi2ndf(const fs::path& log) {
  std::ifstream in(log);
  EXPECT_TRUE(in) << "cannot open " << log;
  std::string line;
  bool seen = false;
  double value = std::nan("");
  while (std::getline(in, line)) {
    if (line.find("Sum(Chi^2)/Sum(Ndf)") != std::string::npos) {
      seen = true;
      continue;
    }
    if (seen) {
      const auto eq = line.find('=');
      if (eq != std::string::npos && line.find("/ (") == std::string::npos) {
        value = std::stod(line.substr(eq + 1));
        seen = false;
      }
    }
  }
  return value;
}

struct Case {
  std::string problem;
  std::string method;  // folder under pede/
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  return info.param.problem + "_" + info.param.method;
}

class ReferenceProblem : public testing::TestWithParam<Case> {};

// Runs gpede on pede/<method>/steer.txt from the problem folder; returns the output folder.
void run_gpede(const fs::path& problem_dir, const std::string& steering, const fs::path& out,
               const std::string& options = "") {
  std::string output;
  const std::string cmd = "cd '" + problem_dir.string() + "' && '" + gpede::test::gpede_binary().string() +
                          "' -q " + options + " --output-dir '" + out.string() + "' '" + steering + "'";
  const int status = run_command(cmd, &output);
  ASSERT_EQ(status, 0) << cmd << "\n" << output;
}

void compare(const std::map<int, ResLine>& ours, const std::map<int, ResLine>& pede_layout,
             const std::map<int, ResLine>& pede_values, const std::map<int, ResLine>& pede_errors,
             bool compare_errors) {
  ASSERT_EQ(ours.size(), pede_layout.size());
  int compared_errors = 0;
  int pede_errors_present = 0;
  for (const auto& [label, want] : pede_layout) {
    auto it = ours.find(label);
    ASSERT_NE(it, ours.end()) << "label " << label << " missing";
    const auto& got = it->second.columns;
    ASSERT_EQ(got.size(), want.columns.size()) << "label " << label << ": column count";
    const auto& ref_value = pede_values.at(label).columns;
    const auto& ref_error = pede_errors.at(label).columns;
    // Tolerance: 1% of pede's error, or the rounding of pede's 5 printed digits.
    const double printed = 0.5e-4 * std::abs(ref_value[0]) + 1e-30;
    const double tol = ref_error.size() >= 4 ? std::max(0.01 * std::abs(ref_error[3]), printed) : printed;
    EXPECT_NEAR(got[0], ref_value[0], tol) << "label " << label << " value";
    EXPECT_EQ(got[1], want.columns[1]) << "label " << label << " presigma";
    if (got.size() >= 3) EXPECT_NEAR(got[2], ref_value[2], tol) << "label " << label << " difference";
    if (want.columns.size() >= 4) ++pede_errors_present;
    if (compare_errors && got.size() >= 4) {
      EXPECT_NEAR(got[3] / ref_error[3], 1.0, 1e-3) << "label " << label << " error";
      ++compared_errors;
    }
  }
  if (compare_errors) EXPECT_EQ(compared_errors, pede_errors_present);
}

TEST_P(ReferenceProblem, AgreesWithPede) {
  GPEDE_REQUIRE_REFERENCE();
  const auto& c = GetParam();
  const fs::path problem = reference_dir() / c.problem;
  const fs::path pede_dir = problem / "pede" / c.method;
  if (!fs::exists(pede_dir)) GTEST_SKIP() << "pede did not run " << c.method << " on " << c.problem;
  TempDir out("ref");
  run_gpede(problem, "pede/" + c.method + "/steer.txt", out.path());

  const bool multipliers = c.method.find("withmultipliers") != std::string::npos;
  const fs::path exact = problem / "pede" / (multipliers ? "inversion_withmultipliers" : "inversion");
  const auto ours = read_res(out.path() / "millepede.res");
  const auto pede_layout = read_res(pede_dir / "millepede.res");
  const auto pede_exact = read_res(exact / "millepede.res");
  const bool diagonalization = c.method.rfind("diagonalization", 0) == 0;
  // pede's diagonalization errors are wrong with elimination; its diagonalization with
  // multipliers is inaccurate: gpede is compared with pede's exact inversion there.
  const auto& values = diagonalization && multipliers ? pede_exact : pede_layout;
  compare(ours, pede_layout, values, pede_exact, true);

  const double want = read_chi2ndf((diagonalization && multipliers ? exact : pede_dir) / "millepede.log");
  const double got = read_chi2ndf(out.path() / "millepede.log");
  EXPECT_NEAR(got / want, 1.0, 1e-7) << "chi2/ndf: gpede " << got << ", pede " << want;
  EXPECT_TRUE(fs::exists(out.path() / "millepede.end"));
  EXPECT_TRUE(fs::exists(out.path() / "gpede.json"));
  if (diagonalization) EXPECT_TRUE(fs::exists(out.path() / "millepede.eve"));
}

INSTANTIATE_TEST_SUITE_P(
    Pede, ReferenceProblem,
    testing::Values(Case{"wirechamber", "inversion"}, Case{"wirechamber", "decomposition"},
                    Case{"wirechamber", "diagonalization"}, Case{"wirechamber", "diagonalization_withmultipliers"},
                    Case{"wirechamber", "inversion_withmultipliers"}, Case{"wirechamber", "sparseMINRES"},
                    Case{"sl0", "inversion"}, Case{"sl0", "decomposition"}, Case{"sl0", "diagonalization"},
                    Case{"sl0", "diagonalization_withmultipliers"}, Case{"sl0", "inversion_withmultipliers"},
                    Case{"sl0", "sparseMINRES"}, Case{"bp", "inversion"}, Case{"bp", "decomposition"},
                    Case{"bp", "diagonalization"}, Case{"bp", "sparseMINRES"}),
    case_name);

// Packed storage (--storage packed: the lower triangle in RFP, constraints in range-space form)
// gives pede's answers for decomposition and inversion, with elimination and multipliers.
class ReferencePacked : public testing::TestWithParam<Case> {};

TEST_P(ReferencePacked, AgreesWithPede) {
  GPEDE_REQUIRE_REFERENCE();
  const auto& c = GetParam();
  const fs::path problem = reference_dir() / c.problem;
  const fs::path pede_dir = problem / "pede" / c.method;
  if (!fs::exists(pede_dir)) GTEST_SKIP() << "pede did not run " << c.method << " on " << c.problem;
  TempDir out("packed");
  run_gpede(problem, "pede/" + c.method + "/steer.txt", out.path(), "--storage packed");
  const auto pede = read_res(pede_dir / "millepede.res");
  const bool multipliers = c.method.find("withmultipliers") != std::string::npos;
  const auto exact = read_res(problem / "pede" / (multipliers ? "inversion_withmultipliers" : "inversion") / "millepede.res");
  compare(read_res(out.path() / "millepede.res"), pede, pede, exact, true);
  const double want = read_chi2ndf(pede_dir / "millepede.log");
  EXPECT_NEAR(read_chi2ndf(out.path() / "millepede.log") / want, 1.0, 1e-7);
  std::ifstream log(out.path() / "millepede.log");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("Matrix storage: packed"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Pede, ReferencePacked,
                         testing::Values(Case{"wirechamber", "inversion"}, Case{"wirechamber", "decomposition"},
                                         Case{"wirechamber", "inversion_withmultipliers"}, Case{"sl0", "inversion"},
                                         Case{"sl0", "decomposition"}, Case{"sl0", "inversion_withmultipliers"},
                                         Case{"bp", "inversion"}, Case{"bp", "decomposition"}),
                         case_name);

// The C binary variants of sl0 (float, gzip float, gzip double) give pede's answers too.
class CFileVariant : public testing::TestWithParam<std::string> {};

TEST_P(CFileVariant, GivesSl0Answer) {
  GPEDE_REQUIRE_REFERENCE();
  const fs::path problem = reference_dir() / "sl0";
  TempDir dir("cfile");
  const fs::path steer = dir.path() / "steer.txt";
  {
    std::ofstream s(steer);
    s << "* sl0 as C binary: " << GetParam() << "\nCfiles\n"
      << (problem / "mp2con.txt").string() << "   ! constraints\n"
      << (problem / GetParam()).string() << "\nmethod inversion 3 0.001\nend\n";
  }
  const fs::path out = dir.path() / "out";
  run_gpede(dir.path(), steer.string(), out);
  const auto pede = read_res(problem / "pede" / "inversion" / "millepede.res");
  compare(read_res(out / "millepede.res"), pede, pede, pede, true);
  const double want = read_chi2ndf(problem / "pede" / "inversion" / "millepede.log");
  EXPECT_NEAR(read_chi2ndf(out / "millepede.log") / want, 1.0, 1e-7);
}

INSTANTIATE_TEST_SUITE_P(Sl0, CFileVariant,
                         testing::Values("mp2tst_cfloat.bin", "mp2tst_cfloat.bin.gz", "mp2tst_cdouble.bin.gz"),
                         [](const testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           for (auto& ch : n) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

// sparseMINRES keeps the matrix sparse, fullMINRES dense; re-reading the file in every pass
// (--no-cache) gives the cached run's results bit for bit; all three give pede's sparseMINRES answer.
TEST(ReferenceMinres, SparseDenseAndUncachedRunsAgree) {
  GPEDE_REQUIRE_REFERENCE();
  const fs::path problem = reference_dir() / "bp";
  TempDir dir("minres-storage");
  const fs::path steer_full = dir.path() / "full.txt";
  {
    std::ifstream in(problem / "pede" / "sparseMINRES" / "steer.txt");
    std::ofstream out(steer_full);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("method", 0) == 0) line = "method fullMINRES 3 0.01";
      out << line << "\n";
    }
  }
  const fs::path sparse = dir.path() / "sparse", uncached = dir.path() / "uncached", full = dir.path() / "full";
  run_gpede(problem, "pede/sparseMINRES/steer.txt", sparse);
  run_gpede(problem, "pede/sparseMINRES/steer.txt", uncached, "--no-cache");
  run_gpede(problem, steer_full.string(), full);
  auto text = [](const fs::path& f) {
    std::ifstream in(f);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  EXPECT_EQ(text(sparse / "millepede.res"), text(uncached / "millepede.res"));
  EXPECT_EQ(read_chi2ndf(sparse / "millepede.log"), read_chi2ndf(uncached / "millepede.log"));
  EXPECT_NE(text(sparse / "millepede.log").find("Matrix storage: sparse"), std::string::npos);
  EXPECT_NE(text(full / "millepede.log").find("Matrix storage: full (dense)"), std::string::npos);
  const auto pede = read_res(problem / "pede" / "sparseMINRES" / "millepede.res");
  const auto errors = read_res(problem / "pede" / "inversion" / "millepede.res");
  for (const fs::path& out : {sparse, full}) {
    compare(read_res(out / "millepede.res"), pede, pede, errors, false);
    EXPECT_NEAR(read_chi2ndf(out / "millepede.log") / read_chi2ndf(problem / "pede" / "sparseMINRES" / "millepede.log"),
                1.0, 1e-9)
        << out;
  }
}

// Records that would take more than the cache budget are read again in every pass: the same
// results bit for bit, and the log says so.
TEST(ReferenceMinres, RecordsOverTheCacheBudgetAreReadAgain) {
  GPEDE_REQUIRE_REFERENCE();
  // The steering's paths are relative to the problem's folder, as pede runs it.
  struct Cwd {
    fs::path saved = fs::current_path();
    ~Cwd() { fs::current_path(saved); }
  } cwd;
  fs::current_path(reference_dir() / "bp");
  const gpede::Steering steering = gpede::parse_steering("pede/sparseMINRES/steer.txt");
  gpede::SolverOptions kept;
  kept.threads = 1;
  gpede::SolverOptions tight = kept;
  tight.cache_budget_bytes = 1 << 20;  // 1 MB: the bp records take about 14
  const gpede::SolveResult a = gpede::solve(steering, kept);
  const gpede::SolveResult b = gpede::solve(steering, tight);
  EXPECT_EQ(a.chi2_sum, b.chi2_sum);
  ASSERT_EQ(a.parameters.size(), b.parameters.size());
  for (std::size_t i = 0; i < a.parameters.size(); ++i) EXPECT_EQ(a.parameters[i].value, b.parameters[i].value);
  auto says = [](const gpede::SolveResult& r) {
    for (const auto& line : r.log) {
      if (line.find("read again in every pass") != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_FALSE(says(a));
  EXPECT_TRUE(says(b));
}

}  // namespace
