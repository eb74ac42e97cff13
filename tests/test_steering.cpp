// Tests of the steering-file parser: pede's reference steering files, the approximate keyword
// rule (against a brute-force reading of pede's matint), comments, numbers, files, blocks,
// options, warnings and every error case.
#include <chrono>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gpede/error.hpp"
#include "gpede/steering.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using gpede::ConstraintMode;
using gpede::InputError;
using gpede::Method;
using gpede::MilleFormat;
using gpede::parse_steering;
using gpede::Steering;
using gpede::test::TempDir;

namespace {

void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

// Runs a block with another working directory and restores the old one.
class WorkingDirectory {
 public:
  explicit WorkingDirectory(const fs::path& dir) : m_old(fs::current_path()) {
    fs::current_path(dir);
  }
  ~WorkingDirectory() { fs::current_path(m_old); }
  WorkingDirectory(const WorkingDirectory&) = delete;
  WorkingDirectory& operator=(const WorkingDirectory&) = delete;

 private:
  fs::path m_old;
};

// Parses `text` written to dir/name and returns the Steering.
Steering parse_text(const TempDir& dir, const std::string& text,
                    const std::string& name = "steer.txt") {
  const fs::path file = dir.path() / name;
  write_file(file, text);
  return parse_steering(file);
}

// Expects an InputError with `code` whose message holds every string in `parts`.
void expect_error(const fs::path& file, int code, const std::vector<std::string>& parts) {
  try {
    parse_steering(file);
    FAIL() << "no InputError for " << file;
  } catch (const InputError& e) {
    EXPECT_EQ(e.exit_code(), code) << e.what();
    for (const auto& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "message '" << e.what() << "' lacks '" << part << "'";
    }
  }
}

void expect_steering_error(const TempDir& dir, const std::string& text, int code,
                           const std::vector<std::string>& parts) {
  const fs::path file = dir.path() / "bad.txt";
  write_file(file, text);
  auto all = parts;
  all.push_back(file.string());
  expect_error(file, code, all);
}

bool has_warning(const Steering& s, const std::vector<std::string>& parts) {
  return std::any_of(s.warnings.begin(), s.warnings.end(), [&](const std::string& w) {
    return std::all_of(parts.begin(), parts.end(),
                       [&](const std::string& p) { return w.find(p) != std::string::npos; });
  });
}

std::string describe(const Steering& s) {
  std::string out;
  for (const auto& w : s.warnings) out += w + "\n";
  return out;
}

// --- independent reading of pede's matint -------------------------------------------------

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

int levenshtein(const std::string& a, const std::string& b) {
  std::vector<std::vector<int>> d(a.size() + 1, std::vector<int>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = static_cast<int>(i);
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = static_cast<int>(j);
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min(
          {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
  }
  return d[a.size()][b.size()];
}

// matint(text, keyword): characters of `text` matched in sequence in `keyword`, i.e. len(text)
// minus the smallest edit distance between text and any non-empty substring of keyword.
int brute_force_matint(const std::string& text, const std::string& keyword) {
  const std::string t = upper(text), k = upper(keyword);
  int best = 0;
  for (std::size_t a = 0; a < k.size(); ++a) {
    for (std::size_t len = 1; a + len <= k.size(); ++len) {
      best = std::max(best, static_cast<int>(t.size()) - levenshtein(t, k.substr(a, len)));
    }
  }
  return best;
}

bool brute_force_rule(const std::string& keyword, const std::string& text) {
  const int m = brute_force_matint(text, keyword);
  return 100 * m >= 80 * static_cast<int>(std::max(keyword.size(), text.size()));
}

}  // namespace

// --- keyword matching ------------------------------------------------------------------------

TEST(KeywordMatches, CaseInsensitiveExactWords) {
  EXPECT_TRUE(gpede::keyword_matches("method", "method"));
  EXPECT_TRUE(gpede::keyword_matches("method", "METHOD"));
  EXPECT_TRUE(gpede::keyword_matches("inversion", "inversion"));
  EXPECT_TRUE(gpede::keyword_matches("inversion", "INVERSION"));
  EXPECT_TRUE(gpede::keyword_matches("LAPACKwitherrors", "lapackwitherrors"));
  EXPECT_TRUE(gpede::keyword_matches("method", "  method  "));
}

TEST(KeywordMatches, EightyPercentSymmetricRule) {
  // One character missing from a 6-letter keyword in the middle costs two matched characters
  // (4 of 6 < 80 %), so pede rejects 'metod'; a truncated or extended word keeps more.
  EXPECT_EQ(brute_force_matint("metod", "method"), 4);
  EXPECT_FALSE(gpede::keyword_matches("method", "metod"));
  EXPECT_TRUE(gpede::keyword_matches("method", "metho"));    // 5 of 6
  EXPECT_TRUE(gpede::keyword_matches("method", "methods"));  // 6 of 7
  EXPECT_FALSE(gpede::keyword_matches("method", "meth"));    // 4 of 6
  // 'chiscut' lacks the q of 'chisqcut': 6 matched of 8 < 6.4.
  EXPECT_EQ(brute_force_matint("chiscut", "chisqcut"), 6);
  EXPECT_FALSE(gpede::keyword_matches("chisqcut", "chiscut"));
  EXPECT_TRUE(gpede::keyword_matches("chisqcut", "chisqcu"));
  EXPECT_TRUE(gpede::keyword_matches("chisqcut", "chisqcuts"));
  EXPECT_TRUE(gpede::keyword_matches("regularisation", "regularization"));
  EXPECT_TRUE(gpede::keyword_matches("outlierdownweighting", "outlierdownweight"));
  EXPECT_TRUE(gpede::keyword_matches("constraint", "Constraints"));
  EXPECT_TRUE(gpede::keyword_matches("memorydebug", "memorydebg"));  // 9 of 11
  EXPECT_TRUE(gpede::keyword_matches("inversion", "inversio"));
  EXPECT_FALSE(gpede::keyword_matches("inversion", "inverson"));  // 7 of 9
  // neighbours in pede's table stay apart
  EXPECT_FALSE(gpede::keyword_matches("print", "printcounts"));
  EXPECT_FALSE(gpede::keyword_matches("printcounts", "print"));
  EXPECT_FALSE(gpede::keyword_matches("sparseMINRES", "sparseMINRES-QLP"));
  EXPECT_FALSE(gpede::keyword_matches("sparseMINRES-QLP", "sparseMINRES"));
  EXPECT_FALSE(gpede::keyword_matches("fullMINRES", "sparseMINRES"));
  EXPECT_FALSE(gpede::keyword_matches("debug", "memorydebug"));
}

TEST(KeywordMatches, ShortGarbageDoesNotMatch) {
  for (const char* keyword :
       {"method", "entries", "print", "force", "cache", "wolfe", "parameter"}) {
    for (const char* text : {"", " ", "x", "e", "p", "xyz", "abc", "zzzzzz", "*", "12"}) {
      EXPECT_FALSE(gpede::keyword_matches(keyword, text)) << keyword << " vs '" << text << "'";
    }
  }
}

TEST(KeywordMatches, ExactKeywords) {
  EXPECT_TRUE(gpede::keyword_matches("end", "END"));
  EXPECT_FALSE(gpede::keyword_matches("end", "en"));
  EXPECT_FALSE(gpede::keyword_matches("end", "ends"));
  EXPECT_TRUE(gpede::keyword_matches("Cfiles", "cfiles"));
  EXPECT_FALSE(gpede::keyword_matches("Cfiles", "Cfile"));
  EXPECT_TRUE(gpede::keyword_matches("fortranfiles", "Fortranfiles"));
  EXPECT_FALSE(gpede::keyword_matches("fortranfiles", "fortranfile"));
  EXPECT_FALSE(gpede::keyword_matches("closeandreopen", "closeandreope"));
  EXPECT_TRUE(gpede::keyword_matches("closeandreopen", "CloseAndReopen"));
}

TEST(KeywordMatches, AgreesWithBruteForceReading) {
  const std::vector<std::string> keywords = {
      "method",           "chisqcut", "entries",         "printrecord", "outlierdownweighting",
      "sparseMINRES-QLP", "cache",    "withmultipliers", "presigma",    "wolfe"};
  std::mt19937 rng(12345);
  const std::string alphabet = "abcdeimnoprstuwyQLPRS-";
  int matches = 0;
  for (const auto& k : keywords) {
    std::vector<std::string> texts;
    // edits of the keyword (deletions, substitutions, insertions, truncations) and random words
    for (std::size_t i = 0; i < k.size(); ++i) {
      texts.push_back(k.substr(0, i) + k.substr(i + 1));
      texts.push_back(k.substr(0, i) + "x" + k.substr(i + 1));
      texts.push_back(k.substr(0, i) + "z" + k.substr(i));
      texts.push_back(k.substr(0, i + 1));
      texts.push_back(k.substr(i));
    }
    for (int r = 0; r < 40; ++r) {
      std::string t;
      const int len = 1 + static_cast<int>(rng() % (k.size() + 3));
      for (int c = 0; c < len; ++c) t += alphabet[rng() % alphabet.size()];
      texts.push_back(t);
    }
    for (const auto& t : texts) {
      const bool expected = brute_force_rule(k, t);
      matches += expected ? 1 : 0;
      EXPECT_EQ(gpede::keyword_matches(k, t), expected) << k << " vs '" << t << "'";
    }
  }
  EXPECT_GT(matches, 50);  // the sample holds both outcomes
}

// --- pede's reference steering files ---------------------------------------------------------

namespace {

struct IndependentConstraint {
  double value = 0.0;
  std::vector<std::pair<std::int32_t, double>> terms;
};

// Reads a constraints file written by pede's test generators: 'Constraint value' lines, then
// 'label factor' lines.
std::vector<IndependentConstraint> read_constraints(const fs::path& file) {
  std::vector<IndependentConstraint> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string first;
    if (!(words >> first)) continue;
    if (upper(first) == "CONSTRAINT") {
      out.emplace_back();
      words >> out.back().value;
    } else {
      const auto label = static_cast<std::int32_t>(std::stol(first));
      double factor = 0.0;
      words >> factor;
      if (factor != 0.0) out.back().terms.emplace_back(label, factor);  // pede drops zero factors
    }
  }
  return out;
}

struct MethodLine {
  std::string name;
  int iterations = 0;
  double dflim = 0.0;
};

MethodLine read_method_line(const fs::path& steer) {
  std::ifstream in(steer);
  std::string line;
  MethodLine m;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string first;
    if ((words >> first) && first == "method") words >> m.name >> m.iterations >> m.dflim;
  }
  return m;
}

bool file_contains_line(const fs::path& file, const std::string& wanted) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line == wanted) return true;
  }
  return false;
}

}  // namespace

TEST(ReferenceSteering, EveryFileParsesLikePede) {
  GPEDE_REQUIRE_REFERENCE();
  const fs::path ref = gpede::test::reference_dir();
  int files = 0;
  for (const char* problem : {"wirechamber", "sl0", "bp"}) {
    const fs::path problem_dir = ref / problem;
    const auto expected_constraints = read_constraints(problem_dir / "mp2con.txt");
    ASSERT_FALSE(expected_constraints.empty());
    for (const auto& run : fs::directory_iterator(problem_dir / "pede")) {
      const fs::path steer = run.path() / "steer.txt";
      if (!fs::exists(steer)) continue;
      ++files;
      const std::string folder = run.path().filename().string();
      SCOPED_TRACE(steer.string());

      // pede ran in the problem folder with the relative steering path: the files are found in
      // the working directory, not beside the steering file.
      Steering s;
      {
        WorkingDirectory cwd(problem_dir);
        s = parse_steering(fs::path("pede") / folder / "steer.txt");
      }

      const MethodLine m = read_method_line(steer);
      Method expected_method = Method::decomposition;
      if (m.name == "inversion") expected_method = Method::inversion;
      if (m.name == "diagonalization") expected_method = Method::diagonalization;
      if (m.name == "sparseMINRES") expected_method = Method::minres;
      EXPECT_EQ(folder.rfind(m.name, 0), 0u) << "folder name starts with the method";
      EXPECT_EQ(s.method, expected_method);
      EXPECT_EQ(s.method_name, m.name);
      EXPECT_EQ(s.iterations, m.iterations);
      EXPECT_DOUBLE_EQ(s.dflim, m.dflim);
      const bool multipliers = file_contains_line(steer, "withmultipliers");
      EXPECT_EQ(multipliers, folder.find("withmultipliers") != std::string::npos);
      EXPECT_EQ(s.constraint_mode,
                multipliers ? ConstraintMode::multipliers : ConstraintMode::elimination);
      EXPECT_TRUE(s.warnings.empty()) << describe(s);

      ASSERT_EQ(s.binary_files.size(), 1u);
      EXPECT_TRUE(fs::equivalent(s.binary_files[0].path, problem_dir / "mp2tst.bin.gz"));
      EXPECT_EQ(s.binary_files[0].format, MilleFormat::fortran_binary);
      EXPECT_EQ(s.binary_files[0].weight, 1.0);
      ASSERT_EQ(s.text_files.size(), 1u);
      EXPECT_TRUE(fs::equivalent(s.text_files[0], problem_dir / "mp2con.txt"));

      ASSERT_EQ(s.constraints.size(), expected_constraints.size());
      for (std::size_t c = 0; c < expected_constraints.size(); ++c) {
        EXPECT_EQ(s.constraints[c].value, expected_constraints[c].value);
        EXPECT_EQ(s.constraints[c].sigma, 0.0);
        EXPECT_EQ(s.constraints[c].terms, expected_constraints[c].terms) << "constraint " << c;
        EXPECT_TRUE(fs::equivalent(s.constraints[c].where.file, problem_dir / "mp2con.txt"));
      }
      EXPECT_EQ(s.constraints[0].where.line, 1);
      EXPECT_TRUE(s.parameters.empty());
      EXPECT_TRUE(s.measurements.empty());
    }
  }
  EXPECT_GE(files, 12);  // at least inversion, diagonalization, decomposition, sparseMINRES each
}

TEST(ReferenceSteering, CBinaryVariantsOfSl0) {
  GPEDE_REQUIRE_REFERENCE();
  const fs::path sl0 = gpede::test::reference_dir() / "sl0";
  TempDir dir("steer-cfiles");
  const fs::path steer = dir.path() / "steer.txt";
  write_file(steer, "Cfiles\n" + (sl0 / "mp2tst_cfloat.bin").string() + "\n" +
                        (sl0 / "mp2tst_cdouble.bin.gz").string() + " -- 0.5\nFortranfiles\n" +
                        (sl0 / "mp2tst.bin.gz").string() + "\n" + (sl0 / "mp2con.txt").string() +
                        "\nmethod inversion 3 0.001\n");
  const Steering s = parse_steering(steer);
  ASSERT_EQ(s.binary_files.size(), 3u);
  // pede numbers the Fortran files before the C files
  EXPECT_EQ(s.binary_files[0].format, MilleFormat::fortran_binary);
  EXPECT_TRUE(fs::equivalent(s.binary_files[0].path, sl0 / "mp2tst.bin.gz"));
  EXPECT_EQ(s.binary_files[1].format, MilleFormat::c_binary);
  EXPECT_TRUE(fs::equivalent(s.binary_files[1].path, sl0 / "mp2tst_cfloat.bin"));
  EXPECT_EQ(s.binary_files[1].weight, 1.0);
  EXPECT_EQ(s.binary_files[2].format, MilleFormat::c_binary);
  EXPECT_EQ(s.binary_files[2].weight, 0.5);
  EXPECT_EQ(s.constraints.size(), 4u);
}

// --- syntax ------------------------------------------------------------------------------------

TEST(SteeringSyntax, CommentsAndBlankLines) {
  TempDir dir("steer-comments");
  const Steering s = parse_text(dir,
                                "* a comment line\n"
                                "*method inversion\n"
                                "\n"
                                "   \t  \n"
                                "! only a comment\n"
                                "entries 30   ! trailing comment 99\n"
                                "hugecut 20 % pede's number parser stops at a percent sign\r\n"
                                "method diagonalization 4 0.5 ! 7 8 9\n");
  EXPECT_EQ(s.entries_files, 30);
  EXPECT_EQ(s.entries_accepted, 10);
  EXPECT_EQ(s.hugecut, 20.0);
  EXPECT_EQ(s.method, Method::diagonalization);
  EXPECT_EQ(s.iterations, 4);
  EXPECT_EQ(s.dflim, 0.5);
  EXPECT_TRUE(s.warnings.empty()) << describe(s);
}

TEST(SteeringSyntax, StarAfterColumnOneIsNoComment) {
  TempDir dir("steer-star");
  write_file(dir.path() / "data.bin", "");
  expect_steering_error(dir, "data.bin\nentries 30\n  * not a comment\n", gpede::exit_code::unknown_keyword,
                        {":3:", "* not a comment"});
}

TEST(SteeringSyntax, FortranNumbers) {
  TempDir dir("steer-numbers");
  const Steering s = parse_text(dir,
                                "presigma 1.0D-8\n"
                                "dwfractioncut .25\n"
                                "hugecut 1e3\n"
                                "scaleerrors 1.5d0 2.5E-1\n"
                                "Parameter\n"
                                "10 -.5 -1\n"
                                "11 +2 1.D2\n"
                                "12 1.25e+1 0\n"
                                "Constraint -3\n"
                                "10 -1.0D0 11 2.5\n");
  EXPECT_DOUBLE_EQ(s.presigma, 1e-8);
  EXPECT_DOUBLE_EQ(s.dwfractioncut, 0.25);
  EXPECT_DOUBLE_EQ(s.hugecut, 1000.0);
  EXPECT_DOUBLE_EQ(s.scale_errors_global, 1.5);
  EXPECT_DOUBLE_EQ(s.scale_errors_local, 0.25);
  ASSERT_EQ(s.parameters.size(), 3u);
  EXPECT_EQ(s.parameters[0].label, 10);
  EXPECT_DOUBLE_EQ(s.parameters[0].value, -0.5);
  EXPECT_DOUBLE_EQ(s.parameters[0].presigma, -1.0);
  EXPECT_DOUBLE_EQ(s.parameters[1].value, 2.0);
  EXPECT_DOUBLE_EQ(s.parameters[1].presigma, 100.0);
  EXPECT_DOUBLE_EQ(s.parameters[2].value, 12.5);
  ASSERT_EQ(s.constraints.size(), 1u);
  EXPECT_DOUBLE_EQ(s.constraints[0].value, -3.0);
  const std::vector<std::pair<std::int32_t, double>> terms = {{10, -1.0}, {11, 2.5}};
  EXPECT_EQ(s.constraints[0].terms, terms);
}

TEST(SteeringSyntax, BlocksAndSourceLocations) {
  TempDir dir("steer-blocks");
  write_file(dir.path() / "defs.txt",
             "Parameter 5 0.1 0.01\n"   // line 1: one triple on the keyword line
             "  6 0.0 -1.0\n"           // line 2
             "Constraint 1.5 0.25\n"    // line 3
             "  1 1.0 2 0.5\n"          // line 4: several pairs per line
             "  3 0.0\n"                // line 5: zero factor, dropped as in pede
             "entries 40\n"             // line 6: options do not end a block (pede)
             "  4 -2.0\n"               // line 7
             "Measurement 0.7 0.05\n"   // line 8
             "  7 1.0 8 -1.0\n"         // line 9
             "Measurements -0.1 0.2\n"  // line 10
             "  9 3.0\n");              // line 11
  const Steering s = parse_text(dir,
                                "Parameter\n"
                                "1 0.5 0.0\n"
                                "defs.txt\n"
                                "method inversion 2\n");
  ASSERT_EQ(s.text_files.size(), 1u);
  EXPECT_TRUE(fs::equivalent(s.text_files[0], dir.path() / "defs.txt"));
  // steering-file definitions first, then the text files (pede's order)
  ASSERT_EQ(s.parameters.size(), 3u);
  EXPECT_EQ(s.parameters[0].label, 1);
  EXPECT_EQ(s.parameters[0].where.line, 2);
  EXPECT_TRUE(fs::equivalent(s.parameters[0].where.file, dir.path() / "steer.txt"));
  EXPECT_EQ(s.parameters[1].label, 5);
  EXPECT_DOUBLE_EQ(s.parameters[1].value, 0.1);
  EXPECT_DOUBLE_EQ(s.parameters[1].presigma, 0.01);
  EXPECT_EQ(s.parameters[1].where.line, 1);
  EXPECT_TRUE(fs::equivalent(s.parameters[1].where.file, dir.path() / "defs.txt"));
  EXPECT_EQ(s.parameters[2].label, 6);
  EXPECT_EQ(s.parameters[2].where.line, 2);

  ASSERT_EQ(s.constraints.size(), 1u);
  EXPECT_DOUBLE_EQ(s.constraints[0].value, 1.5);
  EXPECT_DOUBLE_EQ(s.constraints[0].sigma, 0.25);
  EXPECT_EQ(s.constraints[0].where.line, 3);
  const std::vector<std::pair<std::int32_t, double>> cterms = {{1, 1.0}, {2, 0.5}, {4, -2.0}};
  EXPECT_EQ(s.constraints[0].terms, cterms);
  EXPECT_EQ(s.entries_files, 40);

  ASSERT_EQ(s.measurements.size(), 2u);
  EXPECT_DOUBLE_EQ(s.measurements[0].value, 0.7);
  EXPECT_DOUBLE_EQ(s.measurements[0].sigma, 0.05);
  EXPECT_EQ(s.measurements[0].where.line, 8);
  const std::vector<std::pair<std::int32_t, double>> mterms = {{7, 1.0}, {8, -1.0}};
  EXPECT_EQ(s.measurements[0].terms, mterms);
  EXPECT_DOUBLE_EQ(s.measurements[1].value, -0.1);
  EXPECT_EQ(s.measurements[1].terms.size(), 1u);
  EXPECT_EQ(s.method, Method::inversion);
  EXPECT_EQ(s.iterations, 2);
  EXPECT_DOUBLE_EQ(s.dflim, 0.1);  // pede's default when the method line gives none
}

TEST(SteeringSyntax, EndStopsReading) {
  TempDir dir("steer-end");
  write_file(dir.path() / "c.txt", "Constraint 0\n1 1\nEND\nnot read at all\n");
  const Steering s =
      parse_text(dir, "c.txt\nentries 7\n  end  ! stop\nentries 99\nbogus keyword\n");
  EXPECT_EQ(s.entries_files, 7);
  ASSERT_EQ(s.constraints.size(), 1u);
  EXPECT_EQ(s.constraints[0].terms.size(), 1u);
}

// --- files -------------------------------------------------------------------------------------

TEST(SteeringFiles, FormatsWeightsAndOrder) {
  TempDir dir("steer-files");
  for (const char* name : {"a.bin", "b.bin", "c.dat", "d.bin"}) write_file(dir.path() / name, "x");
  const Steering s = parse_text(dir,
                                "a.bin -- 2.5\n"
                                "FORTRANFILES\n"
                                "b.bin ! comment -- 7\n"
                                "c.dat  --  1.0D-1 ! weight in Fortran notation\n"
                                "cfiles\n"
                                "d.bin\n"
                                "method decomposition\n");
  ASSERT_EQ(s.binary_files.size(), 4u);
  // Fortran files first, each group in steering order
  EXPECT_TRUE(fs::equivalent(s.binary_files[0].path, dir.path() / "b.bin"));
  EXPECT_EQ(s.binary_files[0].format, MilleFormat::fortran_binary);
  EXPECT_EQ(s.binary_files[0].weight, 1.0);
  EXPECT_TRUE(fs::equivalent(s.binary_files[1].path, dir.path() / "c.dat"));
  EXPECT_EQ(s.binary_files[1].format, MilleFormat::fortran_binary);
  EXPECT_DOUBLE_EQ(s.binary_files[1].weight, 0.1);
  EXPECT_TRUE(fs::equivalent(s.binary_files[2].path, dir.path() / "a.bin"));
  EXPECT_EQ(s.binary_files[2].format, MilleFormat::c_binary);
  EXPECT_DOUBLE_EQ(s.binary_files[2].weight, 2.5);
  EXPECT_TRUE(fs::equivalent(s.binary_files[3].path, dir.path() / "d.bin"));
  EXPECT_EQ(s.binary_files[3].format, MilleFormat::c_binary);
  EXPECT_TRUE(s.text_files.empty());
}

TEST(SteeringFiles, TextFilesByTheirLastFourCharacters) {
  TempDir dir("steer-textnames");
  write_file(dir.path() / "cons.TXT", "Constraint 0\n1 1\n");
  write_file(dir.path() / "more.tx", "Constraint 0\n2 1\n");
  write_file(dir.path() / "text", "Constraint 0\n3 1\n");
  write_file(dir.path() / "txt.bin", "binary");  // 'txt' not in the last 4 characters
  const Steering s = parse_text(dir, "cons.TXT\nmore.tx\ntext\ntxt.bin\n");
  EXPECT_EQ(s.text_files.size(), 3u);
  EXPECT_EQ(s.constraints.size(), 3u);
  ASSERT_EQ(s.binary_files.size(), 1u);
  EXPECT_TRUE(fs::equivalent(s.binary_files[0].path, dir.path() / "txt.bin"));
}

TEST(SteeringFiles, SteeringFolderFirstThenWorkingDirectory) {
  TempDir dir("steer-resolve");
  const fs::path steer_dir = dir.path() / "run";
  const fs::path work = dir.path() / "work";
  write_file(steer_dir / "x.bin", "beside the steering file");
  write_file(work / "x.bin", "in the working directory");
  write_file(work / "y.bin", "only in the working directory");
  write_file(work / "sub" / "z.bin", "in a sub-folder of the working directory");
  write_file(steer_dir / "steer.txt",
             "x.bin\ny.bin\nsub/z.bin\n" + (work / "x.bin").string() + "\n");
  Steering s;
  {
    WorkingDirectory cwd(work);
    s = parse_steering(steer_dir / "steer.txt");
  }
  ASSERT_EQ(s.binary_files.size(), 4u);
  EXPECT_TRUE(fs::equivalent(s.binary_files[0].path, steer_dir / "x.bin"));
  EXPECT_TRUE(fs::equivalent(s.binary_files[1].path, work / "y.bin"));
  EXPECT_TRUE(fs::equivalent(s.binary_files[2].path, work / "sub" / "z.bin"));
  EXPECT_TRUE(fs::equivalent(s.binary_files[3].path, work / "x.bin"));
  for (const auto& f : s.binary_files) EXPECT_TRUE(f.path.is_absolute()) << f.path;
}

// As for pede, a folder is a file: a binary one fails when read (18, see MilleBadInput), a text one
// when parsed (16).
TEST(SteeringFiles, AFolderIsAFileAsForPede) {
  TempDir dir("steer-folder");
  fs::create_directories(dir.path() / "data");
  fs::create_directories(dir.path() / "cons.txt");
  const Steering s = parse_text(dir, "data\n");
  ASSERT_EQ(s.binary_files.size(), 1u);
  EXPECT_EQ(s.binary_files[0].path, dir.path() / "data");
  write_file(dir.path() / "steer.txt", "data\ncons.txt\n");
  expect_error(dir.path() / "steer.txt", gpede::exit_code::open_error, {"cons.txt", "folder"});
}

// --- options -----------------------------------------------------------------------------------

TEST(SteeringOptions, DefaultsFollowPede) {
  TempDir dir("steer-defaults");
  const Steering s = parse_text(dir, "* nothing but a comment\n");
  EXPECT_EQ(s.method, Method::minres);
  EXPECT_EQ(s.method_name, "sparseMINRES");
  EXPECT_EQ(s.iterations, 1);
  EXPECT_EQ(s.constraint_mode, ConstraintMode::elimination);
  EXPECT_EQ(s.entries_files, 25);
  EXPECT_EQ(s.hugecut, 50.0);
  EXPECT_EQ(s.maxrecord, -1);
  EXPECT_EQ(s.minres_tolerance, static_cast<double>(1.0e-6f));  // pede's single-precision default
  EXPECT_EQ(s.minres_bandwidth, 0);
  EXPECT_TRUE(s.warnings.empty()) << describe(s);
}

TEST(SteeringOptions, MinresControls) {
  TempDir dir("steer-minres");
  {
    const Steering s = parse_text(dir, "method fullMINRES 2\nmrestol 1e-8\nbandwidth -3\nmrestranscond 1e5\nmresmode 1\n");
    EXPECT_EQ(s.method, Method::minres);
    EXPECT_EQ(s.minres_tolerance, 1e-8);
    EXPECT_EQ(s.minres_bandwidth, -1);  // any negative width: no preconditioner, as pede stores it
    EXPECT_EQ(s.minres_transition_condition, 1e5);
    EXPECT_EQ(s.minres_mode, 1);
    EXPECT_TRUE(s.warnings.empty()) << describe(s);
  }
  {
    // out of pede's range: ignored with a warning naming the line, as pede does
    const Steering s = parse_text(dir, "method sparseMINRES 2\nmrestol 1e-3\n");
    EXPECT_EQ(s.minres_tolerance, static_cast<double>(1.0e-6f));
    EXPECT_TRUE(has_warning(s, {"steer.txt:2", "1e-10", "1e-4"})) << describe(s);
  }
  {
    // the band preconditioner, and pede's second number (rows kept as their diagonal)
    const Steering s = parse_text(dir, "bandwidth 5\n");
    EXPECT_EQ(s.minres_bandwidth, 5);
    EXPECT_FALSE(s.minres_band_skyline);
    EXPECT_TRUE(s.warnings.empty()) << describe(s);
    const Steering t = parse_text(dir, "bandwidth 7 1\n");
    EXPECT_EQ(t.minres_bandwidth, 7);
    EXPECT_TRUE(t.minres_band_skyline);
  }
}

TEST(SteeringOptions, Methods) {
  TempDir dir("steer-methods");
  {
    const Steering s = parse_text(dir, "method INVERSION 5 0.02\n");
    EXPECT_EQ(s.method, Method::inversion);
    EXPECT_EQ(s.method_name, "INVERSION");
    EXPECT_EQ(s.iterations, 5);
    EXPECT_DOUBLE_EQ(s.dflim, 0.02);
    EXPECT_TRUE(s.warnings.empty()) << describe(s);
  }
  {
    const Steering s = parse_text(dir, "method fullLAPACK 2\n");
    EXPECT_EQ(s.method, Method::decomposition);
    EXPECT_EQ(s.method_name, "fullLAPACK");
  }
  {
    const Steering s = parse_text(dir, "LAPACKwitherrors\nmethod unpackedLAPACK 2\n");
    EXPECT_EQ(s.method, Method::inversion);
  }
  {
    write_file(dir.path() / "late.txt", "LAPACKwitherrors\n");
    const Steering s = parse_text(dir, "method fullLAPACK 2\nlate.txt\n");
    EXPECT_EQ(s.method, Method::inversion);
  }
  {
    // the last method line wins: MINRES-QLP, dense, without a warning
    const Steering s = parse_text(dir,
                                  "method sparseMINRES-QLP 3 0.01\n"
                                  "method inversion 3 0.001\n"
                                  "method fullMINRES-QLP 4 0.01\n");
    EXPECT_EQ(s.method, Method::minres);
    EXPECT_EQ(s.method_name, "fullMINRES-QLP");
    EXPECT_TRUE(s.minres_qlp);
    EXPECT_FALSE(s.sparse_storage);
    EXPECT_EQ(s.iterations, 4);
    EXPECT_TRUE(s.warnings.empty()) << describe(s);
  }
  {
    const Steering s = parse_text(dir, "method sparseMINRES-QLP 3 0.01\nmethod sparseMINRES 2 0.01\n");
    EXPECT_FALSE(s.minres_qlp);
    EXPECT_TRUE(s.sparse_storage);
  }
  {
    const Steering s = parse_text(dir, "method diagonalization 3\nmethod inversion 0\n");
    EXPECT_EQ(s.method, Method::inversion);
    EXPECT_EQ(s.iterations, 3);  // pede keeps the iterations for n < 1
    EXPECT_TRUE(has_warning(s, {"steer.txt:2"})) << describe(s);
  }
  EXPECT_STREQ(gpede::method_name(Method::inversion), "inversion");
  EXPECT_STREQ(gpede::method_name(Method::diagonalization), "diagonalization");
  EXPECT_STREQ(gpede::method_name(Method::decomposition), "decomposition");
}

TEST(SteeringOptions, CutsAndFlags) {
  TempDir dir("steer-options");
  const Steering s = parse_text(dir,
                                "entries 30 5\n"
                                "chisqcut 30.0 6.0\n"
                                "hugecut 0.5\n"
                                "outlierdownweighting 1\n"
                                "dwfractioncut 0.8\n"
                                "regularisation 0.5 0.01\n"
                                "printcounts\n"
                                "globalcorr\n"
                                "threads 4\n"
                                "subito\n"
                                "skipemptycons\n"
                                "withmultipliers\n"
                                "printrecord 5 7\n"
                                "maxrecord 1000\n"
                                "scaleerrors 2\n"
                                "method inversion 1 0.1\n");
  EXPECT_EQ(s.entries_files, 30);
  EXPECT_EQ(s.entries_accepted, 5);
  EXPECT_EQ(s.chisqcut1, 30.0);
  EXPECT_EQ(s.chisqcut2, 6.0);
  EXPECT_EQ(s.hugecut, 1.0);
  EXPECT_EQ(s.outlier_downweighting, 2);
  EXPECT_EQ(s.dwfractioncut, 0.5);
  EXPECT_TRUE(s.regularisation);
  EXPECT_EQ(s.regularisation_factor, 0.5);
  EXPECT_EQ(s.regularisation_presigma, 0.01);
  EXPECT_EQ(s.presigma, 0.01);
  EXPECT_EQ(s.printcounts, 1);
  EXPECT_TRUE(s.globalcorr);
  EXPECT_EQ(s.threads, 4);
  EXPECT_TRUE(s.subito);
  EXPECT_TRUE(s.skip_empty_constraints);
  EXPECT_EQ(s.constraint_mode, ConstraintMode::multipliers);
  EXPECT_EQ(s.printrecord1, 5);
  EXPECT_EQ(s.printrecord2, 7);
  EXPECT_EQ(s.maxrecord, 1000);
  EXPECT_EQ(s.scale_errors_global, 2.0);
  EXPECT_EQ(s.scale_errors_local, 2.0);
  EXPECT_TRUE(s.warnings.empty()) << describe(s);
}

TEST(SteeringOptions, PedeArgumentRules) {
  TempDir dir("steer-rules");
  {
    const Steering s = parse_text(dir, "chisqcut\nmethod inversion\n");
    EXPECT_EQ(s.chisqcut1, 1.0);
    EXPECT_EQ(s.chisqcut2, 1.0);
  }
  {
    const Steering s = parse_text(dir, "chisqcut 5\nmethod inversion\n");
    EXPECT_EQ(s.chisqcut1, 5.0);
    EXPECT_EQ(s.chisqcut2, 1.0);
  }
  {
    const Steering s = parse_text(dir, "chisqcut 5 10\nmethod inversion\n");
    EXPECT_EQ(s.chisqcut1, 5.0);
    EXPECT_EQ(s.chisqcut2, 5.0);  // c2 is at most c1
  }
  {
    const Steering s = parse_text(dir, "chisqcut 0.5 0.5\nmethod inversion\n");
    EXPECT_EQ(s.chisqcut1, -1.0);  // pede's value for c1 < 1
    EXPECT_EQ(s.chisqcut2, 1.0);
  }
  {
    const Steering s = parse_text(dir,
                                  "outlierdownweighting 4\nprintcounts 2\nscaleerrors 2 3\n"
                                  "regularization 2\nentries 0.2\nmaxrecord 0\n"
                                  "withmultipliers\nwithelimination\nmethod inversion\n");
    EXPECT_EQ(s.outlier_downweighting, 4);
    EXPECT_EQ(s.printcounts, 2);
    EXPECT_EQ(s.scale_errors_global, 2.0);
    EXPECT_EQ(s.scale_errors_local, 3.0);
    EXPECT_TRUE(s.regularisation);
    EXPECT_EQ(s.regularisation_factor, 2.0);
    EXPECT_EQ(s.presigma, 0.0);
    EXPECT_EQ(s.entries_files, 25);  // pede ignores n1 <= 0.5
    EXPECT_EQ(s.maxrecord, -1);      // and maxrecord <= 0
    EXPECT_EQ(s.constraint_mode, ConstraintMode::elimination);
  }
  {
    // approximate keywords for the implemented options
    const Steering s = parse_text(dir, "ENTRIE 33\nMETHODS INVERSIO 2\nhugecu 7\n");
    EXPECT_EQ(s.entries_files, 33);
    EXPECT_EQ(s.method, Method::inversion);
    EXPECT_EQ(s.hugecut, 7.0);
  }
}

TEST(SteeringOptions, KnownButNotImplementedKeywordsWarn) {
  TempDir dir("steer-warn");
  const Steering s = parse_text(dir,
                                "cache 1000000\n"           // 1
                                "print 2\n"                 // 2
                                "matmoni 5\n"               // 3
                                "closeandreopen\n"          // 4
                                "compress\n"                // 5
                                "memorydebg 2\n"            // 6: approximate match
                                "monitorpulls\n"            // 7
                                "pullrange 5\n"             // 8
                                "method inversion 3 0.1\n"  // 9
                                "histprint\n");             // 10
  const fs::path file = dir.path() / "steer.txt";
  const std::vector<std::pair<int, std::string>> expected = {
      {1, "cache"},          {2, "print"},     {3, "matmoni"}, {4, "closeandreopen"}, {5, "compress"},
      {6, "memorydebug"},    {7, "monitorpulls"},   {8, "pullrange"}, {10, "histprint"}};
  for (const auto& [line, keyword] : expected) {
    EXPECT_TRUE(has_warning(s, {file.string() + ":" + std::to_string(line) + ":", keyword,
                                "not implemented", "ignored"}))
        << "line " << line << " " << keyword << "\n"
        << describe(s);
  }
  EXPECT_EQ(s.warnings.size(), expected.size()) << describe(s);
  EXPECT_EQ(s.method, Method::inversion);
  EXPECT_EQ(s.entries_files, 25);
}

// --- errors ------------------------------------------------------------------------------------

TEST(SteeringErrors, UnknownKeyword) {
  TempDir dir("steer-unknown");
  const fs::path file = dir.path() / "bad.txt";
  write_file(dir.path() / "data.bin", "");
  write_file(file, "data.bin\nentries 30\nmetod inversion 3\n");
  std::string cwd = fs::current_path().string();
  expect_error(
      file, gpede::exit_code::unknown_keyword,
      {file.string() + ":3:", "metod inversion 3", "neither", "file", dir.path().string(), cwd});
}

TEST(SteeringErrors, UnknownKeywordInTextFile) {
  TempDir dir("steer-unknown-text");
  write_file(dir.path() / "c.txt", "Constraint 0\n1 1\nshortgarbage\n");
  write_file(dir.path() / "steer.txt", "c.txt\n");
  expect_error(dir.path() / "steer.txt", gpede::exit_code::unknown_keyword,
               {(dir.path() / "c.txt").string() + ":3:", "shortgarbage"});
}

TEST(SteeringErrors, MissingFileNamedAsKeyword) {
  TempDir dir("steer-missing-bin");
  write_file(dir.path() / "data.bin", "");
  expect_steering_error(dir, "data.bin\nmissing.bin\n", gpede::exit_code::unknown_keyword,
                        {":2:", "missing.bin", "neither"});
}

// pede checks the binary files before it reports unknown keywords: without any binary file the
// code is 14 ("no binary files"), and the message still names the line.
TEST(SteeringErrors, UnknownKeywordWithoutBinaryFilesIsNoBinaryFiles) {
  TempDir dir("steer-no-binary");
  expect_steering_error(dir, "missing.bin\n", gpede::exit_code::no_binary_files,
                        {"no binary files", ":1:", "missing.bin"});
  expect_steering_error(dir, "entries 30\nmetod inversion 3\n", gpede::exit_code::no_binary_files,
                        {"no binary files", ":2:", "metod"});
}

// pede reads 1024 characters of a line: content beyond them is refused (pede would misread it),
// a comment beyond them is not. The message stays short whatever the line holds.
TEST(SteeringErrors, LinesBeyondPedesLengthAreRefusedWithAShortMessage) {
  TempDir dir("steer-long-line");
  write_file(dir.path() / "data.bin", "");
  const std::string token(10'000'000, 'x');
  const auto t0 = std::chrono::steady_clock::now();
  try {
    parse_text(dir, "data.bin\n" + token + "\n");
    FAIL() << "a 10 MB token was accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(e.exit_code(), gpede::exit_code::steering_error);
    EXPECT_LT(std::string(e.what()).size(), 1000u);
    EXPECT_NE(std::string(e.what()).find("1024"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(":2:"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  // the content ends before character 1024, a comment runs on
  const Steering s = parse_text(dir, "data.bin\nhugecut 7 ! " + std::string(5000, 'c') + "\n");
  EXPECT_EQ(s.hugecut, 7.0);
  // the keyword matcher is fast for a huge token of the allowed length too
  expect_steering_error(dir, "data.bin\n" + std::string(1000, 'y') + "\n", gpede::exit_code::unknown_keyword,
                        {":2:", "more bytes"});
}

// A NUL byte or other control characters in a token do not cut the message short.
TEST(SteeringErrors, ControlCharactersAreShownEscaped) {
  TempDir dir("steer-nul");
  write_file(dir.path() / "data.bin", "");
  expect_steering_error(dir, std::string("data.bin\nab\0cd\x1b[31m\n", 20), gpede::exit_code::unknown_keyword,
                        {":2:", "ab\\x00cd\\x1b[31m"});
}

TEST(SteeringErrors, NumbersOutsideABlock) {
  TempDir dir("steer-outside");
  expect_steering_error(dir, "entries 30\n1 2\n", gpede::exit_code::steering_error,
                        {":2:", "outside"});
  // a method line ends a block
  expect_steering_error(dir, "Constraint 0\n1 1\nmethod inversion\n2 1\n",
                        gpede::exit_code::steering_error, {":4:", "outside"});
}

TEST(SteeringErrors, MalformedNumbers) {
  TempDir dir("steer-malformed");
  expect_steering_error(dir, "entries 1x\n", gpede::exit_code::steering_error, {":1:", "'1x'"});
  expect_steering_error(dir, "* c\nhugecut high\n", gpede::exit_code::steering_error,
                        {":2:", "'high'"});
  expect_steering_error(dir, "Constraint 0\n1 1.0.0\n", gpede::exit_code::steering_error,
                        {":2:", "'1.0.0'"});
  expect_steering_error(dir, "presigma 1e\n", gpede::exit_code::steering_error, {":1:", "'1e'"});
  expect_steering_error(dir, "method inversion 3 x\n", gpede::exit_code::steering_error,
                        {":1:", "'x'"});
  expect_steering_error(dir, "method inversion 3 1D400\n", gpede::exit_code::steering_error,
                        {":1:", "1D400"});
  write_file(dir.path() / "d.bin", "x");
  expect_steering_error(dir, "d.bin -- heavy\n", gpede::exit_code::steering_error,
                        {":1:", "'heavy'"});
  expect_steering_error(dir, "d.bin -- -1\n", gpede::exit_code::steering_error, {":1:", "weight"});
  expect_steering_error(dir, "* c\n\nscaleerrors 2 0\n", gpede::exit_code::steering_error,
                        {":3:", "scale"});
}

TEST(SteeringErrors, MalformedBlocks) {
  TempDir dir("steer-blocks-bad");
  using gpede::exit_code::steering_error;
  expect_steering_error(dir, "Parameter\n1 0.0\n", steering_error, {":2:", "3 numbers"});
  expect_steering_error(dir, "Parameter\n1 0.0 0.0 2 0.0 0.0\n", steering_error,
                        {":2:", "3 numbers"});
  expect_steering_error(dir, "Parameter 1 2\n", steering_error, {":1:", "Parameter"});
  expect_steering_error(dir, "Parameter\n0 1 1\n", steering_error, {":2:", "label"});
  expect_steering_error(dir, "Constraint\n", steering_error, {":1:", "Constraint"});
  expect_steering_error(dir, "Constraint 0 1 2\n", steering_error, {":1:", "Constraint"});
  expect_steering_error(dir, "Constraint 0\n1 1 2\n", steering_error, {":2:", "pairs"});
  expect_steering_error(dir, "Constraint 0\n-4 1\n", steering_error, {":2:", "label"});
  expect_steering_error(dir, "Constraint 0\n4.5 1\n", steering_error, {":2:", "label"});
  expect_steering_error(dir, "Measurement 1\n", steering_error, {":1:", "Measurement"});
  expect_steering_error(dir, "Measurement 1 0\n", steering_error, {":1:", "sigma"});
  std::string many = "Constraint 0\n";
  for (int i = 1; i <= 51; ++i) many += std::to_string(i) + " 1 ";
  expect_steering_error(dir, many + "\n", steering_error, {":2:", "100"});
}

TEST(SteeringErrors, BadMethodLines) {
  TempDir dir("steer-method-bad");
  expect_steering_error(dir, "method invert 3\n", 36, {":1:", "invert", "inversion"});
  expect_steering_error(dir, "method 3 0.1\n", gpede::exit_code::steering_error, {":1:", "name"});
  expect_steering_error(dir, "outlierdownweighting\n", gpede::exit_code::steering_error, {":1:"});
  expect_steering_error(dir, "presigma\n", gpede::exit_code::steering_error, {":1:", "presigma"});
}

TEST(SteeringErrors, MissingSteeringFile) {
  TempDir dir("steer-missing");
  const fs::path file = dir.path() / "nowhere" / "steer.txt";
  try {
    parse_steering(file);
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
    EXPECT_NE(e.exit_code(), 0);
  }
  try {
    parse_steering(dir.path());
    FAIL() << "no InputError for a folder";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path().string()), std::string::npos) << e.what();
  }
}

TEST(SteeringErrors, ParseTextFileOnItsOwn) {
  TempDir dir("steer-textfile");
  Steering s;
  write_file(dir.path() / "p.txt", "Parameter\n3 1.0 -1\nmethod fullMINRES 2\n");
  gpede::parse_text_file(dir.path() / "p.txt", s);
  ASSERT_EQ(s.parameters.size(), 1u);
  EXPECT_EQ(s.parameters[0].where.line, 2);
  EXPECT_EQ(s.method, Method::minres);
  EXPECT_EQ(s.iterations, 2);
  ASSERT_EQ(s.text_files.size(), 1u);
  try {
    gpede::parse_text_file(dir.path() / "absent.txt", s);
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("absent.txt"), std::string::npos) << e.what();
  }
  // a text file cannot name other files
  write_file(dir.path() / "q.txt", "p.txt\n");
  try {
    gpede::parse_text_file(dir.path() / "q.txt", s);
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.exit_code(), gpede::exit_code::unknown_keyword);
    EXPECT_NE(std::string(e.what()).find("q.txt:1:"), std::string::npos) << e.what();
  }
}
