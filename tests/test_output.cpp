// Tests of the result files: gfortran's G14.5 edit, millepede.res/.eve/.log rebuilt from pede's
// own reference files and compared byte for byte, millepede.end, gpede.json parsed back, and the
// atomic file replacement.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "gpede/error.hpp"
#include "gpede/output.hpp"
#include "gpede/version.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  EXPECT_TRUE(in) << "cannot read " << file;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> entries_in(const fs::path& folder) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(folder)) names.push_back(e.path().filename().string());
  return names;
}

// Every reference result file of a given name: <reference>/<problem>/pede/<method>/<name>.
std::vector<fs::path> reference_files(const std::string& name) {
  std::vector<fs::path> files;
  const fs::path root = gpede::test::reference_dir();
  if (root.empty()) return files;
  for (const auto& problem : fs::directory_iterator(root)) {
    const fs::path pede = problem.path() / "pede";
    if (!fs::is_directory(pede)) continue;
    for (const auto& method : fs::directory_iterator(pede)) {
      if (fs::exists(method.path() / name)) files.push_back(method.path() / name);
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

double parse_number(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  EXPECT_NE(end, text.c_str()) << "not a number: '" << text << "'";
  return v;
}

std::string printf_string(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string printf_string(const char* format, ...) {
  char buffer[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  return buffer;
}

// ----- millepede.res parsed back -------------------------------------------------------------------

struct ResLine {
  std::string text;
  std::int32_t label = 0;
  std::vector<std::string> fields;  // the 14-character G14.5 fields
};

std::vector<ResLine> parse_res(const std::string& content) {
  std::vector<ResLine> lines;
  const auto all = split_lines(content);
  for (std::size_t i = 1; i < all.size(); ++i) {
    ResLine r;
    r.text = all[i];
    r.label = static_cast<std::int32_t>(std::stol(r.text.substr(0, 10)));
    for (std::size_t pos = 12; pos + 14 <= r.text.size() && r.fields.size() < 4; pos += 14) {
      r.fields.push_back(r.text.substr(pos, 14));
    }
    lines.push_back(r);
  }
  return lines;
}

// A SolveResult holding the numbers of a reference millepede.res.
gpede::SolveResult result_from_res(const std::vector<ResLine>& lines) {
  gpede::SolveResult result;
  for (const auto& line : lines) {
    gpede::ParameterResult p;
    p.label = line.label;
    p.value = parse_number(line.fields.at(0));
    p.presigma = parse_number(line.fields.at(1));
    p.variable = line.fields.size() >= 3;
    if (p.variable) {
      p.difference = parse_number(line.fields.at(2));
      result.variable_labels.push_back(p.label);
    }
    if (line.fields.size() >= 4) {
      p.error = parse_number(line.fields.at(3));
      result.has_errors = true;
    }
    result.parameters.push_back(p);
  }
  return result;
}

// ----- a small strict JSON reader --------------------------------------------------------------------

struct Json {
  enum class Type { null, boolean, number, string, array, object } type = Type::null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Json> array;
  // An object's members: keys[i] names values[i] (a vector of pairs would need Json complete).
  std::vector<std::string> keys;
  std::vector<Json> values;

  const Json& operator[](const std::string& key) const {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == key) return values[i];
    }
    throw std::runtime_error("JSON key missing: " + key);
  }
};

class JsonReader {
 public:
  explicit JsonReader(std::string text) : m_text(std::move(text)) {}
  Json parse() {
    Json value = parse_value();
    skip_space();
    if (m_pos != m_text.size()) fail("trailing characters");
    return value;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error("invalid JSON at byte " + std::to_string(m_pos) + ": " + what);
  }
  void skip_space() {
    while (m_pos < m_text.size() && std::strchr(" \t\r\n", m_text[m_pos]) != nullptr) ++m_pos;
  }
  bool take(char c) {
    skip_space();
    if (m_pos < m_text.size() && m_text[m_pos] == c) {
      ++m_pos;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!take(c)) fail(std::string("expected '") + c + "'");
  }
  bool literal(const char* word) {
    const std::size_t n = std::strlen(word);
    if (m_text.compare(m_pos, n, word) == 0) {
      m_pos += n;
      return true;
    }
    return false;
  }
  Json parse_value() {
    skip_space();
    if (m_pos >= m_text.size()) fail("unexpected end");
    Json v;
    const char c = m_text[m_pos];
    if (c == '{') {
      v.type = Json::Type::object;
      ++m_pos;
      if (take('}')) return v;
      do {
        skip_space();
        std::string key = parse_string();
        expect(':');
        Json value = parse_value();
        v.keys.push_back(std::move(key));
        v.values.push_back(std::move(value));
      } while (take(','));
      expect('}');
    } else if (c == '[') {
      v.type = Json::Type::array;
      ++m_pos;
      if (take(']')) return v;
      do {
        v.array.push_back(parse_value());
      } while (take(','));
      expect(']');
    } else if (c == '"') {
      v.type = Json::Type::string;
      v.string = parse_string();
    } else if (literal("true")) {
      v.type = Json::Type::boolean, v.boolean = true;
    } else if (literal("false")) {
      v.type = Json::Type::boolean, v.boolean = false;
    } else if (literal("null")) {
      v.type = Json::Type::null;
    } else {
      v.type = Json::Type::number;
      v.number = parse_json_number();
    }
    return v;
  }
  double parse_json_number() {
    static const std::regex grammar(R"(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)");
    std::size_t end = m_pos;
    while (end < m_text.size() && std::strchr("+-0123456789.eE", m_text[end]) != nullptr) ++end;
    const std::string token = m_text.substr(m_pos, end - m_pos);
    if (token.empty() || !std::regex_match(token, grammar)) fail("bad number '" + token + "'");
    m_pos = end;
    return std::strtod(token.c_str(), nullptr);
  }
  std::string parse_string() {
    if (m_pos >= m_text.size() || m_text[m_pos] != '"') fail("expected string");
    ++m_pos;
    std::string out;
    while (true) {
      if (m_pos >= m_text.size()) fail("unterminated string");
      const auto c = static_cast<unsigned char>(m_text[m_pos++]);
      if (c == '"') break;
      if (c < 0x20) fail("raw control character in string");
      if (c == '\\') {
        if (m_pos >= m_text.size()) fail("bad escape");
        const char e = m_text[m_pos++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            if (m_pos + 4 > m_text.size()) fail("bad \\u escape");
            const unsigned code = static_cast<unsigned>(std::stoul(m_text.substr(m_pos, 4), nullptr, 16));
            m_pos += 4;
            if (code < 0x80) {
              out += static_cast<char>(code);
            } else {  // enough for the Latin-1 range used in these tests
              out += static_cast<char>(0xC0 | (code >> 6));
              out += static_cast<char>(0x80 | (code & 0x3F));
            }
            break;
          }
          default:
            fail("bad escape");
        }
      } else if (c >= 0x80) {
        // must be a valid UTF-8 sequence
        int n = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 ? 1 : -1;
        if (n < 0 || c > 0xF4) fail("invalid UTF-8");
        out += static_cast<char>(c);
        for (int k = 0; k < n; ++k) {
          if (m_pos >= m_text.size() || (static_cast<unsigned char>(m_text[m_pos]) & 0xC0) != 0x80) {
            fail("invalid UTF-8");
          }
          out += m_text[m_pos++];
        }
      } else {
        out += static_cast<char>(c);
      }
    }
    return out;
  }

  std::string m_text;
  std::size_t m_pos = 0;
};

}  // namespace

// ===== G14.5 =========================================================================================

// Expected texts written by gfortran 13 with FORMAT(G14.5) for REAL(x) (x read as REAL*8).
TEST(FormatG14_5, MatchesGfortranOnEdgeCases) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"0", "    0.0000    "},         {"-0.0", "   -0.0000    "},
      {"0.099999", "   0.99999E-01"},    {"0.0999995", "   0.10000    "},
      {"0.099999499", "   0.10000    "}, {"0.1", "   0.10000    "},
      {"0.999994993", "    1.0000    "}, {"0.99999499320983887", "    1.0000    "},
      {"1", "    1.0000    "},         {"9.99995", "    10.000    "},
      {"12345.5", "    12346.    "},   {"12346.5", "    12346.    "},
      {"1234.25", "    1234.2    "},   {"99994.5", "    99994.    "},
      {"99999.4", "    99999.    "},   {"99999.49", "    99999.    "},
      {"99999.5", "   0.10000E+06"},   {"-99999.5", "  -0.10000E+06"},
      {"100000", "   0.10000E+06"},    {"1e-10", "   0.10000E-09"},
      {"-0.013033", "  -0.13033E-01"}, {"3e38", "   0.30000E+39"},
      {"1.4e-45", "   0.14013E-44"},   {"-3e-42", "  -0.30002E-41"},
      {"123.456", "    123.46    "},   {"0.5", "   0.50000    "},
      {"0.12345678901234", "   0.12346    "}, {"-7.2860e-3", "  -0.72860E-02"},
      {"1e39", "      Infinity"},    {"-1e39", "     -Infinity"},
  };
  for (const auto& [input, expected] : cases) {
    EXPECT_EQ(gpede::format_g14_5(std::strtod(input.c_str(), nullptr)), expected) << "x = " << input;
  }
  EXPECT_EQ(gpede::format_g14_5(kNaN), "           NaN");
}

// Every number pede printed in every reference millepede.res, read back and formatted again.
TEST(FormatG14_5, ReformatsEveryReferenceNumber) {
  GPEDE_REQUIRE_REFERENCE();
  const auto files = reference_files("millepede.res");
  ASSERT_GE(files.size(), 10u);
  std::size_t checked = 0;
  for (const auto& file : files) {
    for (const auto& line : parse_res(read_file(file))) {
      ASSERT_GE(line.fields.size(), 2u) << file << ": " << line.text;
      for (const auto& field : line.fields) {
        ASSERT_EQ(gpede::format_g14_5(parse_number(field)), field) << file << ": " << line.text;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 25000u);
}

// Live comparison with gfortran over many random REAL*4 values, where gfortran is installed.
TEST(FormatG14_5, AgreesWithGfortranOnRandomValues) {
  if (gpede::test::run_command("command -v gfortran") != 0) GTEST_SKIP() << "gfortran not installed";
  gpede::test::TempDir dir("g14");
  std::ofstream(dir.path() / "g.f90") << "program g\n  real(8) :: d\n  do\n    read(*,*,end=9) d\n"
                                         "    write(*,'(G14.5)') real(d)\n  end do\n9 continue\nend program\n";
  ASSERT_EQ(gpede::test::run_command("cd " + dir.path().string() + " && gfortran -o g g.f90"), 0);
  std::mt19937 rng(12345);
  std::vector<float> values;
  for (int i = 0; i < 20000; ++i) {
    std::uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, sizeof f);
    if (std::isfinite(f)) values.push_back(f);
    // values near the decade limits, where the choice between F and E forms is made
    const float limit = std::pow(10.0f, static_cast<float>(static_cast<int>(rng() % 8) - 2));
    values.push_back(std::nextafter(limit * 0.999995f, 0.0f) + static_cast<float>(rng() % 5) * limit * 1e-7f);
  }
  {
    std::ofstream in(dir.path() / "in.txt");
    for (float f : values) in << printf_string("%.9g\n", static_cast<double>(f));
  }
  ASSERT_EQ(gpede::test::run_command("cd " + dir.path().string() + " && ./g < in.txt > out.txt"), 0);
  const auto lines = split_lines(read_file(dir.path() / "out.txt"));
  ASSERT_EQ(lines.size(), values.size());
  int mismatches = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (gpede::format_g14_5(values[i]) != lines[i] && ++mismatches <= 10) {
      ADD_FAILURE() << printf_string("%.9g", static_cast<double>(values[i])) << ": gfortran '" << lines[i]
                    << "', gpede '" << gpede::format_g14_5(values[i]) << "'";
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// ===== millepede.res ==================================================================================

TEST(WriteRes, ReproducesEveryReferenceFile) {
  GPEDE_REQUIRE_REFERENCE();
  gpede::test::TempDir dir("res");
  bool saw_errors = false, saw_no_errors = false, saw_fixed = false;
  for (const auto& file : reference_files("millepede.res")) {
    const std::string reference = read_file(file);
    const auto lines = parse_res(reference);
    gpede::SolveResult result = result_from_res(lines);
    saw_errors |= result.has_errors;
    saw_no_errors |= !result.has_errors;
    for (const auto& p : result.parameters) saw_fixed |= !p.variable;
    gpede::write_res(dir.path() / "millepede.res", result, gpede::Steering{});
    const std::string written = read_file(dir.path() / "millepede.res");
    EXPECT_EQ(written, reference) << file;
  }
  EXPECT_TRUE(saw_errors && saw_no_errors && saw_fixed);
}

TEST(WriteRes, SortsByLabelAndPrintsNegativeErrors) {
  gpede::SolveResult result;
  result.has_errors = true;
  gpede::ParameterResult a;
  a.label = 20, a.value = 1.5, a.variable = true, a.difference = 0.5, a.error = -0.25;
  gpede::ParameterResult b;
  b.label = 3, b.value = -2.0, b.presigma = -1.0, b.variable = false;
  result.parameters = {a, b};
  gpede::test::TempDir dir("res-sort");
  gpede::write_res(dir.path() / "r.res", result, gpede::Steering{});
  const auto lines = split_lines(read_file(dir.path() / "r.res"));
  ASSERT_EQ(lines.size(), 3u);
  // (i10,2X,4G14.5): G14.5 gives F10.4 + 4 blanks in [1, 10) and F10.5 + 4 blanks in [0.1, 1)
  EXPECT_EQ(lines[1], "         3" + std::string(2, ' ') + "   -2.0000    " + "   -1.0000    ");
  EXPECT_EQ(lines[2], "        20" + std::string(2, ' ') + "    1.5000    " + "    0.0000    " + "   0.50000    " +
                          "  -0.25000    ");
}

// printcounts and globalcorr lines composed here from pede's formats (102, 110, 111, 112) with the
// G14.5 fields that pede itself wrote.
TEST(WriteRes, PrintcountsAndGlobalcorrColumns) {
  GPEDE_REQUIRE_REFERENCE();
  const fs::path root = gpede::test::reference_dir();
  gpede::test::TempDir dir("res-counts");
  for (const std::string method : {"inversion", "decomposition"}) {
    const auto lines = parse_res(read_file(root / "sl0" / "pede" / method / "millepede.res"));
    gpede::SolveResult result = result_from_res(lines);
    for (std::size_t i = 0; i < result.parameters.size(); ++i) {
      auto& p = result.parameters[i];
      p.entries_files = 1000 + 7 * static_cast<std::int64_t>(i);
      p.entries_accepted = 900 + 3 * static_cast<std::int64_t>(i);
      p.global_correlation = (i % 5 == 0) ? kNaN : 0.001 * static_cast<double>(i % 1000);
    }
    for (int printcounts : {0, 1, 2}) {
      for (bool globalcorr : {false, true}) {
        gpede::Steering steering;
        steering.printcounts = printcounts;
        steering.globalcorr = globalcorr;
        gpede::write_res(dir.path() / "r.res", result, steering);
        const auto written = split_lines(read_file(dir.path() / "r.res"));
        ASSERT_EQ(written.size(), lines.size() + 1);
        for (std::size_t i = 0; i < lines.size(); ++i) {
          const auto& p = result.parameters[i];
          const std::string& base = lines[i].text;  // label, 2X and the G14.5 fields
          std::string expected = base;
          if (!p.variable) {
            if (printcounts == 1) expected += printf_string("%28s%12d", "", 0);
            if (printcounts > 1) expected += printf_string("%28s%12lld", "", static_cast<long long>(p.entries_files));
          } else {
            const long long count = printcounts > 1 ? p.entries_files : p.entries_accepted;
            if (result.has_errors) {
              if (printcounts > 0) {
                expected += printf_string("%12lld", count);
              } else if (globalcorr) {
                expected += printf_string("%8.3f", std::isnan(p.global_correlation) ? -1.0 : p.global_correlation);
              }
            } else if (printcounts > 0) {
              expected += printf_string("%14s%12lld", "", count);
            }
          }
          ASSERT_EQ(written[i + 1], expected) << method << " printcounts " << printcounts << " globalcorr "
                                              << globalcorr;
        }
      }
    }
  }
}

// ===== millepede.eve ==================================================================================

TEST(EveSelection, TenSmallestPositiveThenSixLargest) {
  // 30 eigenvalues, 3 of them negative (multipliers): pede's numbers 1..27 positive.
  std::vector<double> eigenvalues;
  for (int k = 0; k < 30; ++k) eigenvalues.push_back(static_cast<double>(k - 3) + 0.5);
  const auto selection = gpede::eve_selection(eigenvalues);
  // ascending index of pede's number i is 30 - i; smallest positive is pede's 27 (index 3)
  const std::vector<std::int64_t> expected = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 29, 28, 27, 26, 25, 24};
  EXPECT_EQ(selection, expected);

  const std::vector<double> few = {0.5, 1.0, 2.0, 4.0};  // 4 positive: numbers 4, 3, 2, 1
  EXPECT_EQ(gpede::eve_selection(few), (std::vector<std::int64_t>{0, 1, 2, 3}));
  const std::vector<double> none = {-2.0, -1.0};  // none positive: pede writes its number 1
  EXPECT_EQ(gpede::eve_selection(none), (std::vector<std::int64_t>{1}));
  EXPECT_TRUE(gpede::eve_selection({}).empty());
}

TEST(WriteEve, ReproducesEveryReferenceFile) {
  GPEDE_REQUIRE_REFERENCE();
  const auto files = reference_files("millepede.eve");
  ASSERT_GE(files.size(), 4u);
  gpede::test::TempDir dir("eve");
  static const std::regex header(R"( Eigenvector +(\d+) +with eigenvalue +(\S+) *)");
  for (const auto& file : files) {
    const std::string reference = read_file(file);
    // pede's number, eigenvalue, labels and components of each eigenvector
    struct Vector {
      std::int64_t number = 0;
      double eigenvalue = 0.0;
      std::vector<std::int64_t> labels;
      std::vector<double> components;
    };
    std::vector<Vector> vectors;
    for (const auto& line : split_lines(reference)) {
      std::smatch m;
      if (std::regex_match(line, m, header)) {
        vectors.push_back({std::stoll(m[1]), parse_number(m[2]), {}, {}});
      } else if (line.find_first_not_of(' ') != std::string::npos) {
        ASSERT_FALSE(vectors.empty()) << file;
        std::istringstream in(line);
        std::int64_t label;
        std::string value;
        while (in >> label >> value) {
          vectors.back().labels.push_back(label);
          vectors.back().components.push_back(parse_number(value));
        }
      }
    }
    ASSERT_EQ(vectors.size(), 16u) << file;
    gpede::SolveResult result;
    std::int64_t n_multipliers = 0;
    for (const std::int64_t label : vectors[0].labels) {
      if (label > 0) result.variable_labels.push_back(static_cast<std::int32_t>(label));
      if (label < 0) ++n_multipliers;
    }
    // All eigenvalues in pede's descending numbering: the written ones, geometric filling between
    // them, negative ones after the smallest positive (multipliers).
    const std::int64_t imin = vectors[0].number;
    const std::int64_t n = n_multipliers > 0 ? static_cast<std::int64_t>(vectors[0].labels.size()) : imin;
    std::map<std::int64_t, double> known;
    for (const auto& v : vectors) known[v.number] = v.eigenvalue;
    std::vector<double> descending(static_cast<std::size_t>(n + 1));
    const double top = known.at(6), bottom = known.at(imin - 9);
    for (std::int64_t i = 1; i <= n; ++i) {
      if (known.count(i)) {
        descending[i] = known[i];
      } else if (i > imin) {
        descending[i] = -static_cast<double>(i - imin);
      } else {
        const double t = static_cast<double>(i - 6) / static_cast<double>(imin - 9 - 6);
        descending[i] = top * std::pow(bottom / top, t);
      }
    }
    for (std::int64_t idx = 0; idx < n; ++idx) result.eigen.eigenvalues.push_back(descending[n - idx]);
    // hand the eigenvectors over in reverse order: the writer must order them as pede does
    for (auto v = vectors.rbegin(); v != vectors.rend(); ++v) {
      result.eigen.eigenvectors.emplace_back(n - v->number, v->components);
    }
    gpede::write_eve(dir.path() / "millepede.eve", result);
    EXPECT_EQ(read_file(dir.path() / "millepede.eve"), reference) << file;
  }
}

TEST(WriteEve, MissingEigenvectorIsAnError) {
  gpede::SolveResult result;
  result.variable_labels = {1, 2};
  result.eigen.eigenvalues = {1.0, 2.0};
  result.eigen.eigenvectors = {{1, {0.8, -0.6}}};  // pede also writes the one of eigenvalue 1.0
  gpede::test::TempDir dir("eve-missing");
  EXPECT_THROW(gpede::write_eve(dir.path() / "millepede.eve", result), gpede::RuntimeError);
  EXPECT_TRUE(entries_in(dir.path()).empty());
  result.eigen.eigenvectors.push_back({0, {0.6, 0.8}});
  gpede::write_eve(dir.path() / "millepede.eve", result);
  // smallest positive eigenvalue first (pede's number 2), then the largest (number 1)
  EXPECT_EQ(read_file(dir.path() / "millepede.eve"),
            " Eigenvector            2  with eigenvalue   1.0000000000000000     \n"
            "          1  0.6000000            2  0.8000000\n"
            "  \n"
            " Eigenvector            1  with eigenvalue   2.0000000000000000     \n"
            "          1  0.8000000            2 -0.6000000\n"
            "  \n");
}

// ===== millepede.log ==================================================================================

namespace {

struct LogChi2 {
  std::vector<std::string> lines;  // the three lines as pede wrote them
  double chi2 = 0.0;
  std::int64_t ndf = 0;
  std::int64_t nfgb = 0;
  double chi2_ndf = 0.0;
};

LogChi2 find_chi2_lines(const std::vector<std::string>& log) {
  LogChi2 out;
  for (std::size_t i = 0; i + 2 < log.size(); ++i) {
    if (log[i].rfind(" Sum(Chi^2)/Sum(Ndf) =", 0) != 0) continue;
    out.lines = {log[i], log[i + 1], log[i + 2]};
    static const std::regex first(R"( Sum\(Chi\^2\)/Sum\(Ndf\) = +(\S+) *)");
    static const std::regex second(R"( +/ \( +(\d+) - +(\d+) \))");
    static const std::regex third(R"( += +(\S+) *)");
    std::smatch m;
    if (std::regex_match(log[i], m, first)) out.chi2 = parse_number(m[1]);
    if (std::regex_match(log[i + 1], m, second)) out.ndf = std::stoll(m[1]), out.nfgb = std::stoll(m[2]);
    if (std::regex_match(log[i + 2], m, third)) out.chi2_ndf = parse_number(m[1]);
    break;
  }
  return out;
}

// Lines of pede's iteration table that start with an iteration number (format 103/104/105).
std::vector<std::string> iteration_lines(const std::vector<std::string>& log) {
  static const std::regex line(R"([ \d]{2}\d[ \d]{2}\d[ -]\d?\.\d{5}E[+-]\d\d.*)");
  std::vector<std::string> out;
  bool in_table = false;
  for (const auto& l : log) {
    if (l.rfind(" -- --", 0) == 0) in_table = true;
    if (l.rfind(" Sum(Chi^2)", 0) == 0) in_table = false;
    if (in_table && l.size() >= 76 && std::regex_match(l, line)) out.push_back(l);
  }
  return out;
}

}  // namespace

TEST(WriteLog, Chi2LinesAsPedeWritesThem) {
  GPEDE_REQUIRE_REFERENCE();
  const auto files = reference_files("millepede.log");
  ASSERT_GE(files.size(), 10u);
  gpede::test::TempDir dir("log");
  for (const auto& file : files) {
    const LogChi2 reference = find_chi2_lines(split_lines(read_file(file)));
    ASSERT_EQ(reference.lines.size(), 3u) << file;
    ASSERT_GT(reference.ndf, 0) << file;
    gpede::SolveResult result;
    result.chi2_sum = reference.chi2;
    result.ndf_sum = reference.ndf;
    result.nfgb = reference.nfgb;
    result.chi2_ndf = reference.chi2_ndf;
    gpede::write_log(dir.path() / "millepede.log", result, gpede::Steering{});
    const LogChi2 written = find_chi2_lines(split_lines(read_file(dir.path() / "millepede.log")));
    EXPECT_EQ(written.lines, reference.lines) << file;
  }
}

// gfortran's list-directed REAL(8) and REAL(4) items (texts written by gfortran 13 for
// WRITE(*,*) 'X=', x), in the chi2 line and in the down-weighting correction line.
TEST(WriteLog, ListDirectedNumbersAsGfortran) {
  const std::vector<std::pair<double, std::string>> cases = {
      {0.01, "   1.0000000000000000E-002"},       {0.1, "  0.10000000000000001     "},
      {0.09999999999999999, "   9.9999999999999992E-002"}, {1e16, "   10000000000000000.     "},
      {99999999999999984.0, "   99999999999999984.     "}, {1e17, "   1.0000000000000000E+017"},
      {-5.5, "  -5.5000000000000000     "},       {0.0, "   0.0000000000000000     "},
      {1e-300, "   1.0000000000000000E-300"},     {-2.5e-5, "  -2.5000000000000001E-005"},
      {5e-324, "   4.9406564584124654E-324"},     {1.7976931348623157e308, "   1.7976931348623157E+308"},
  };
  gpede::test::TempDir dir("log-list");
  for (const auto& [value, text] : cases) {
    gpede::SolveResult result;
    result.chi2_sum = value;
    gpede::write_log(dir.path() / "millepede.log", result, gpede::Steering{});
    const LogChi2 written = find_chi2_lines(split_lines(read_file(dir.path() / "millepede.log")));
    ASSERT_EQ(written.lines.size(), 3u);
    EXPECT_EQ(written.lines[0], " Sum(Chi^2)/Sum(Ndf) =" + text) << value;
  }
  // REAL*4 chi2/ndf / 0.9326 as pede prints it with outlier down-weighting
  gpede::SolveResult result;
  result.chi2_ndf = 1.7480144368473725;
  result.chi2_ndf_downweighting = static_cast<float>(result.chi2_ndf) / 0.9326f;
  gpede::Steering steering;
  steering.outlier_downweighting = 3;
  gpede::write_log(dir.path() / "millepede.log", result, steering);
  EXPECT_NE(read_file(dir.path() / "millepede.log")
                .find("\n             with correction for down-weighting      1.87434530    \n"),
            std::string::npos);
}

// The columns of pede's iteration table that gpede fills (it, fc, fcn_value, dfcn_exp, cutf,
// rejects, hhmmss) rebuilt from every reference log.
TEST(WriteLog, IterationTableColumnsAsPede) {
  GPEDE_REQUIRE_REFERENCE();
  gpede::test::TempDir dir("log-it");
  std::size_t compared = 0;
  for (const auto& file : reference_files("millepede.log")) {
    const auto reference = iteration_lines(split_lines(read_file(file)));
    ASSERT_GE(reference.size(), 2u) << file;
    gpede::SolveResult result;
    for (const auto& l : reference) {
      gpede::IterationRecord it;
      it.iteration = std::stoi(l.substr(0, 3));
      it.function_calls = std::stoi(l.substr(3, 3));
      it.function_value = parse_number(l.substr(6, 12));
      if (it.iteration > 0) it.expected_decrease = parse_number(l.substr(19, 8));
      it.cut_factor = parse_number(l.substr(56, 5));
      it.rejects = std::stoll(l.substr(62, 7));
      it.seconds = 3600.0 * std::stoi(l.substr(69, 3)) + 60.0 * std::stoi(l.substr(72, 2)) +
                   std::stoi(l.substr(74, 2));
      result.iterations.push_back(it);
    }
    gpede::write_log(dir.path() / "millepede.log", result, gpede::Steering{});
    const auto written = iteration_lines(split_lines(read_file(dir.path() / "millepede.log")));
    ASSERT_EQ(written.size(), reference.size()) << file;
    for (std::size_t i = 0; i < written.size(); ++i) {
      const std::size_t end_first = result.iterations[i].iteration == 0 ? 18 : 27;
      EXPECT_EQ(written[i].substr(0, end_first), reference[i].substr(0, end_first)) << file;
      EXPECT_EQ(written[i].substr(end_first, 56 - end_first).find_first_not_of(' '), std::string::npos);
      EXPECT_EQ(written[i].substr(56, 20), reference[i].substr(56, 20)) << file;
      ++compared;
    }
  }
  EXPECT_GT(compared, 30u);
}

TEST(WriteLog, FilesMethodWarningsTimesAndMemory) {
  gpede::Steering steering;
  steering.steering_file = "/data/steer.txt";
  steering.text_files = {"/data/mp2con.txt"};
  steering.binary_files = {{"/data/a.bin", gpede::MilleFormat::fortran_binary, 1.0},
                           {"/data/b.bin.gz", gpede::MilleFormat::c_binary, 1.0}};
  steering.method = gpede::Method::inversion;
  steering.method_name = "inversion";
  steering.iterations = 3;
  steering.dflim = 0.001;
  steering.warnings = {"steer.txt line 4: keyword 'bandwidth' ignored"};
  gpede::SolveResult result;
  result.method = gpede::Method::inversion;
  result.constraint_mode = gpede::ConstraintMode::multipliers;
  result.backend = "cpu (2 threads)";
  result.records_read = 10000;
  result.records_used = 9990;
  result.records_rejected = 10;
  result.warnings = {"global parameters with too few entries: 2"};
  result.figures.reading_s = 0.25;
  result.figures.solving_s = 1.5;
  result.figures.total_s = 2.0;
  result.figures.peak_rss_bytes = 102177000;
  result.exit_code = 1;
  result.message = "Ended with warnings (bad measurements)";
  gpede::test::TempDir dir("log-content");
  gpede::write_log(dir.path() / "millepede.log", result, steering);
  const std::string log = read_file(dir.path() / "millepede.log");
  const auto has = [&](const std::string& s) { return log.find(s) != std::string::npos; };
  // pede's file table format (i3,2X,a14,3X,a)
  EXPECT_TRUE(has(printf_string("%3d  %-14s   %s\n", 1, "text", "/data/mp2con.txt")));
  EXPECT_TRUE(has(printf_string("%3d  %-14s   %s\n", 2, "Fortran_binary", "/data/a.bin")));
  EXPECT_TRUE(has(printf_string("%3d  %-14s   %s\n", 3, "C_binary", "/data/b.bin.gz")));
  EXPECT_TRUE(has("METSOL = 1:  matrix inversion"));
  EXPECT_TRUE(has(" Convergence assumed, if expected dF <  0.1000E-02\n"));
  EXPECT_TRUE(has("Constraints handled by Lagrange multipliers"));
  EXPECT_TRUE(has("cpu (2 threads)"));
  EXPECT_TRUE(has("keyword 'bandwidth' ignored"));
  EXPECT_TRUE(has("global parameters with too few entries: 2"));
  EXPECT_TRUE(has(printf_string("%12.3f", 1.5)));
  EXPECT_TRUE(has(printf_string("%11.6f GB", 0.102177)));
  EXPECT_TRUE(has("10000"));
  EXPECT_TRUE(has("Ended with warnings (bad measurements)"));
  EXPECT_FALSE(has("pre-conditioning"));  // MINRES only
  // MINRES: the preconditioner named as pede names it
  for (const auto& [width, skyline, says] : {std::tuple<int, bool, const char*>{0, false, "pre-conditioning: diagonal\n"},
                                             {-1, false, "pre-conditioning: none\n"},
                                             {18, false, "pre-conditioning: band-matrix, width 18\n"},
                                             {6, true, "band-matrix, width 6, dependent rows kept as their diagonal\n"}}) {
    steering.method = result.method = gpede::Method::minres;
    steering.minres_bandwidth = width;
    steering.minres_band_skyline = skyline;
    EXPECT_NE(gpede::log_text(result, steering).find(says), std::string::npos) << says;
  }
}

// ===== millepede.end ==================================================================================

TEST(WriteEnd, PedeFormat) {
  gpede::test::TempDir dir("end");
  gpede::write_end(dir.path() / "millepede.end", 0, "Ended normally");
  EXPECT_EQ(read_file(dir.path() / "millepede.end"), printf_string(" %4d   %s\n", 0, "Ended normally"));
  gpede::write_end(dir.path() / "millepede.end", 20, "Aborted, bad binary records\nfile x, record 3");
  EXPECT_EQ(read_file(dir.path() / "millepede.end"),
            printf_string(" %4d   %s\n", 20, "Aborted, bad binary records file x, record 3"));
}

// ===== gpede.json ==================================================================================

TEST(WriteJson, ParsesBackWithAllFields) {
  gpede::Steering steering;
  steering.steering_file = "dir/st\"eer\\\n.txt";
  steering.method_name = "sparseMINRES";
  steering.warnings = {"tab\there", std::string("latin1 \xe9 and utf8 \xc3\xa9 and ctl \x01")};
  gpede::SolveResult result;
  result.method = gpede::Method::decomposition;
  result.constraint_mode = gpede::ConstraintMode::elimination;
  result.backend = "cpu";
  result.threads = 3;
  result.cpu_model = "Test CPU \xe9";
  result.chi2_sum = 173600.55776662310;
  result.ndf_sum = 99992;
  result.nfgb = 679;
  result.chi2_ndf = 1.7480144368473725;
  result.records_read = 10000, result.records_used = 9998, result.records_rejected = 2;
  result.exit_code = 0, result.message = "Ended normally";
  result.n_constraints = 4;
  gpede::IterationRecord first, second;
  first.iteration = 0, first.function_calls = 1, first.function_value = 2436700.0, first.seconds = 0.1;
  second.iteration = 1, second.function_calls = 2, second.function_value = 173600.5, second.expected_decrease = 2.3e6;
  second.rejects = 2, second.seconds = 0.4;
  result.iterations = {first, second};
  result.figures.total_s = 1.25;
  result.figures.peak_rss_bytes = 123456789;
  gpede::ParameterResult fixed;
  fixed.label = 7, fixed.value = 0.5, fixed.presigma = -1.0;
  gpede::ParameterResult variable;
  variable.label = 3, variable.value = 1e-300, variable.variable = true, variable.difference = -2.5e-5;
  variable.error = 0.125, variable.global_correlation = std::numeric_limits<double>::infinity();
  variable.entries_files = 40, variable.entries_accepted = 38;
  result.parameters = {fixed, variable};
  gpede::test::TempDir dir("json");
  const fs::path file = dir.path() / "gpede.json";
  gpede::write_json(file, result, steering);
  const std::string text = read_file(file);
  EXPECT_EQ(text.find("NaN"), std::string::npos);
  EXPECT_EQ(text.find("Inf"), std::string::npos);
  EXPECT_EQ(text.find("inf"), std::string::npos);

  const Json j = JsonReader(text).parse();
  EXPECT_EQ(j["schema_version"].number, gpede::kJsonSchemaVersion);
  EXPECT_EQ(j["gpede_version"].string, gpede::version());
  EXPECT_EQ(j["threads"].number, 3);
  EXPECT_EQ(j["cpu_model"].string, "Test CPU \xc3\xa9");  // Latin-1 taken as such
  EXPECT_EQ(j["steering_file"].string, "dir/st\"eer\\\n.txt");
  EXPECT_EQ(j["method"].string, "decomposition");
  EXPECT_EQ(j["method_steered"].string, "sparseMINRES");
  EXPECT_EQ(j["constraint_mode"].string, "elimination");
  EXPECT_EQ(j["backend"].string, "cpu");
  EXPECT_EQ(j["chi2_sum"].number, 173600.55776662310);
  EXPECT_EQ(j["ndf_sum"].number, 99992);
  EXPECT_EQ(j["nfgb"].number, 679);
  EXPECT_EQ(j["chi2_ndf"].number, 1.7480144368473725);
  EXPECT_EQ(j["records"]["read"].number, 10000);
  EXPECT_EQ(j["records"]["used"].number, 9998);
  EXPECT_EQ(j["records"]["rejected"].number, 2);
  EXPECT_EQ(j["exit_code"].number, 0);
  EXPECT_EQ(j["message"].string, "Ended normally");
  ASSERT_EQ(j["iterations"].array.size(), 2u);
  EXPECT_EQ(j["iterations"].array[1]["function_value"].number, 173600.5);
  EXPECT_EQ(j["iterations"].array[1]["rejects"].number, 2);
  EXPECT_EQ(j["phases"]["total_s"].number, 1.25);
  EXPECT_EQ(j["phases"]["peak_rss_bytes"].number, 123456789);
  ASSERT_EQ(j["warnings"].array.size(), 2u);
  EXPECT_EQ(j["warnings"].array[0].string, "tab\there");
  EXPECT_EQ(j["warnings"].array[1].string, "latin1 \xc3\xa9 and utf8 \xc3\xa9 and ctl \x01");
  const auto& params = j["parameters"].array;
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0]["label"].number, 3);  // ascending labels
  EXPECT_EQ(params[0]["value"].number, 1e-300);
  EXPECT_TRUE(params[0]["variable"].boolean);
  EXPECT_EQ(params[0]["difference"].number, -2.5e-5);
  EXPECT_EQ(params[0]["error"].number, 0.125);
  EXPECT_EQ(params[0]["global_correlation"].type, Json::Type::null);
  EXPECT_EQ(params[1]["label"].number, 7);
  EXPECT_EQ(params[1]["presigma"].number, -1.0);
  EXPECT_FALSE(params[1]["variable"].boolean);
  EXPECT_EQ(params[1]["error"].type, Json::Type::null);
  EXPECT_EQ(params[1]["global_correlation"].type, Json::Type::null);

  if (gpede::test::run_command("command -v python3") == 0) {
    std::string output;
    const int status = gpede::test::run_command(
        "python3 -c 'import json,sys; d=json.load(open(sys.argv[1],encoding=\"utf-8\")); "
        "print(d[\"parameters\"][1][\"label\"], d[\"ndf_sum\"])' " + file.string(), &output);
    EXPECT_EQ(status, 0) << output;
    EXPECT_EQ(output, "7 99992\n");
  }
}

// ===== write_file_atomically =========================================================================

TEST(WriteFileAtomically, MissingFolderGivesClearErrorAndLeavesNothing) {
  gpede::test::TempDir dir("atomic");
  const fs::path target = dir.path() / "no" / "such" / "millepede.res";
  try {
    gpede::write_file_atomically(target, "content\n");
    FAIL() << "expected a RuntimeError";
  } catch (const gpede::RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find(target.string()), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir.path() / "no"));
  EXPECT_TRUE(entries_in(dir.path()).empty());
}

TEST(WriteFileAtomically, ReplacesTargetWholeAndLeavesNoTemporary) {
  gpede::test::TempDir dir("atomic-replace");
  const fs::path target = dir.path() / "millepede.log";
  const std::string long_text(100000, 'x');
  gpede::write_file_atomically(target, long_text);
  EXPECT_EQ(read_file(target), long_text);
  gpede::write_file_atomically(target, "short\n");
  EXPECT_EQ(read_file(target), "short\n");
  EXPECT_EQ(entries_in(dir.path()), std::vector<std::string>{"millepede.log"});
}

TEST(WriteFileAtomically, TargetThatIsAFolderIsAnError) {
  gpede::test::TempDir dir("atomic-dir");
  const fs::path target = dir.path() / "millepede.res";
  fs::create_directory(target);
  fs::create_directory(target / "keep");
  EXPECT_THROW(gpede::write_file_atomically(target, "x"), gpede::RuntimeError);
  EXPECT_TRUE(fs::is_directory(target / "keep"));
  EXPECT_EQ(entries_in(dir.path()), std::vector<std::string>{"millepede.res"});
}

TEST(WriteFileAtomically, AllWritersReportTheFailingPath) {
  gpede::test::TempDir dir("atomic-writers");
  const fs::path folder = dir.path() / "missing";
  gpede::SolveResult result;
  const gpede::Steering steering;
  EXPECT_THROW(gpede::write_res(folder / "millepede.res", result, steering), gpede::RuntimeError);
  EXPECT_THROW(gpede::write_eve(folder / "millepede.eve", result), gpede::RuntimeError);
  EXPECT_THROW(gpede::write_end(folder / "millepede.end", 0, "x"), gpede::RuntimeError);
  EXPECT_THROW(gpede::write_log(folder / "millepede.log", result, steering), gpede::RuntimeError);
  EXPECT_THROW(gpede::write_json(folder / "gpede.json", result, steering), gpede::RuntimeError);
  EXPECT_TRUE(entries_in(dir.path()).empty());
}
