// Steering-file parser, following pede (filetc, filetx, intext; ratext, rltext and matint of
// mptext.f90): comment rules, case-insensitive approximate keyword matching, binary and text files
// named in the steering file, Parameter/Constraint/Measurement blocks, and the options gpede uses.
// Keywords pede knows but gpede does not implement are reported in Steering::warnings; anything
// pede would reject, and anything pede would silently misread, is an InputError naming the file
// and the line.
#include "gpede/steering.hpp"
#include "gpede/record_time.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <cerrno>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>
#include <system_error>

#include "gpede/error.hpp"

namespace gpede {
namespace fs = std::filesystem;

namespace {

constexpr int open_error = exit_code::open_error;
constexpr int unsupported_method = exit_code::unsupported_method;

constexpr std::size_t max_numbers_per_line = 100;  // pede's ratext reads at most 100 numbers
constexpr std::size_t pede_line_length = 1024;     // pede reads lines into a CHARACTER*1024

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

char to_upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (to_upper(a[i]) != to_upper(b[i])) return false;
  }
  return true;
}

// pede's matint: the number of characters of `pattern` matched in sequence somewhere in `text`,
// i.e. len(pattern) minus the smallest edit distance (case-insensitive) between `pattern` and any
// substring of `text` (Sellers' algorithm). Both strings are taken without surrounding blanks.
int matched_characters(std::string_view pattern, std::string_view text) {
  pattern = trim(pattern);
  text = trim(text);
  const std::size_t npat = pattern.size();
  if (npat == 0) return 0;
  std::vector<int> previous(npat + 1), current(npat + 1);
  for (std::size_t i = 0; i <= npat; ++i) previous[i] = static_cast<int>(i);
  int best = 0;
  for (char t : text) {
    const char tu = to_upper(t);
    current[0] = 0;  // a match may start anywhere in text
    for (std::size_t i = 1; i <= npat; ++i) {
      const int substitute = previous[i - 1] + (to_upper(pattern[i - 1]) != tu ? 1 : 0);
      current[i] = std::min({substitute, previous[i] + 1, current[i - 1] + 1});
    }
    best = std::max(best, static_cast<int>(npat) - current[npat]);
    std::swap(previous, current);
  }
  return best;
}

// Keywords pede compares exactly (case-insensitive), never approximately.
constexpr std::array<std::string_view, 4> exact_keywords = {"end", "fortranfiles", "Cfiles",
                                                            "closeandreopen"};

bool is_exact_keyword(std::string_view keyword) {
  return std::any_of(exact_keywords.begin(), exact_keywords.end(),
                     [&](std::string_view k) { return iequals(k, keyword); });
}

// What a keyword does. Keywords pede knows but gpede does not implement share `not_implemented`.
enum class Key {
  parameter,
  constraint,
  measurement,
  method,
  entries,
  printrecord,
  maxrecord,
  chisqcut,
  hugecut,
  regularisation,
  presigma,
  outlierdownweighting,
  dwfractioncut,
  subito,
  globalcorr,
  printcounts,
  skipemptycons,
  withelimination,
  withmultipliers,
  scaleerrors,
  threads,
  lapackwitherrors,
  linesearch,
  wolfe,
  matiter,
  iterateentries,
  countrecords,
  weightedcons,
  checkinput,
  force,
  nofeasiblestart,
  fortranfiles,
  cfiles,
  bandwidth,
  mrestol,
  mrestranscond,
  mresmode,
  not_implemented,
};

struct KeywordEntry {
  std::string_view name;
  Key key;
};

// pede V04-09's keywords (FORMATS.md section 3) in pede's order of comparison (the first match
// wins), plus the option keywords of later pede versions (outlierfracwarnthreshold, maxlocalcond,
// resolveredundancycons, postprocessing, withLAPACKelimination, checkparametergroups) so that
// their steering files are not rejected.
constexpr KeywordEntry keyword_table[] = {
    {"parameter", Key::parameter},
    {"constraint", Key::constraint},
    {"measurement", Key::measurement},
    {"method", Key::method},
    {"print", Key::not_implemented},
    {"debug", Key::not_implemented},
    {"entries", Key::entries},
    {"printrecord", Key::printrecord},
    {"maxrecord", Key::maxrecord},
    {"cache", Key::not_implemented},
    {"chisqcut", Key::chisqcut},
    {"hugecut", Key::hugecut},
    {"linesearch", Key::linesearch},
    {"localfit", Key::not_implemented},
    {"regularization", Key::regularisation},
    {"regularisation", Key::regularisation},
    {"presigma", Key::presigma},
    {"matiter", Key::matiter},
    {"matmoni", Key::not_implemented},
    {"bandwidth", Key::bandwidth},
    {"outlierdownweighting", Key::outlierdownweighting},
    {"outlierfracwarnthreshold", Key::not_implemented},
    {"dwfractioncut", Key::dwfractioncut},
    {"maxlocalcond", Key::not_implemented},
    {"pullrange", Key::not_implemented},
    {"subito", Key::subito},
    {"force", Key::force},
    {"memorydebug", Key::not_implemented},
    {"globalcorr", Key::globalcorr},
    {"printcounts", Key::printcounts},
    {"weightedcons", Key::weightedcons},
    {"skipemptycons", Key::skipemptycons},
    {"resolveredundancycons", Key::not_implemented},
    {"withelimination", Key::withelimination},
    {"postprocessing", Key::not_implemented},
    {"withLAPACKelimination", Key::withelimination},
    {"withmultipliers", Key::withmultipliers},
    {"checkinput", Key::checkinput},
    {"checkparametergroups", Key::not_implemented},
    {"monitorresiduals", Key::not_implemented},
    {"monitorpulls", Key::not_implemented},
    {"monitorprogress", Key::not_implemented},
    {"scaleerrors", Key::scaleerrors},
    {"iterateentries", Key::iterateentries},
    {"threads", Key::threads},
    {"compress", Key::not_implemented},
    {"countrecords", Key::countrecords},
    {"errlabels", Key::not_implemented},
    {"pairentries", Key::not_implemented},
    {"wolfe", Key::wolfe},
    {"mrestol", Key::mrestol},
    {"mrestranscond", Key::mrestranscond},
    {"mresmode", Key::mresmode},
    {"nofeasiblestart", Key::nofeasiblestart},
    {"histprint", Key::not_implemented},
    {"readerroraseof", Key::not_implemented},
    {"LAPACKwitherrors", Key::lapackwitherrors},
    {"fortranfiles", Key::fortranfiles},
    {"Cfiles", Key::cfiles},
    {"closeandreopen", Key::not_implemented},
};

// pede's solution methods; `method` compares the name with all of them and the last match wins.
enum class MethodChoice {
  diagonalization,
  inversion,
  full_minres,
  sparse_minres,
  full_minres_qlp,
  sparse_minres_qlp,
  decomposition,
  full_lapack,
  unpacked_lapack,
};

struct MethodEntry {
  std::string_view name;
  MethodChoice choice;
};

constexpr MethodEntry method_table[] = {
    {"diagonalization", MethodChoice::diagonalization},
    {"inversion", MethodChoice::inversion},
    {"fullMINRES", MethodChoice::full_minres},
    {"sparseMINRES", MethodChoice::sparse_minres},
    {"fullMINRES-QLP", MethodChoice::full_minres_qlp},
    {"sparseMINRES-QLP", MethodChoice::sparse_minres_qlp},
    {"decomposition", MethodChoice::decomposition},
    {"fullLAPACK", MethodChoice::full_lapack},
    {"unpackedLAPACK", MethodChoice::unpacked_lapack},
};

bool is_minres(MethodChoice c) {
  return c == MethodChoice::full_minres || c == MethodChoice::sparse_minres ||
         c == MethodChoice::full_minres_qlp || c == MethodChoice::sparse_minres_qlp;
}

bool is_lapack(MethodChoice c) {
  return c == MethodChoice::full_lapack || c == MethodChoice::unpacked_lapack;
}

// State that spans the steering file and the text files it names.
struct ParseContext {
  bool lapack_with_errors = false;  // `LAPACKwitherrors` seen
  int weighted_constraints = 0;     // `weightedcons n`: constraints read while > 0 are weighted
  std::optional<MethodChoice> method;
  SourceLocation method_where;
};

std::string location(const fs::path& file, int line) {
  return file.string() + ":" + std::to_string(line);
}

// A free-format number as pede's ratext reads it: [sign] digits [. digits] [exponent], or
// [sign] . digits [exponent]; the exponent letter is E, D, e or d (Fortran double precision).
std::optional<double> parse_number(std::string_view token) {
  std::string text(token);
  std::size_t i = 0;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
  auto skip_digits = [&] {
    const std::size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    return i - start;
  };
  std::size_t digits = skip_digits();
  if (i < text.size() && text[i] == '.') {
    ++i;
    digits += skip_digits();
  }
  if (digits == 0) return std::nullopt;
  if (i < text.size() && std::string_view("eEdD").find(text[i]) != std::string_view::npos) {
    text[i] = 'e';
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    if (skip_digits() == 0) return std::nullopt;
  }
  if (i != text.size()) return std::nullopt;
  const char* first = text.data() + (text[0] == '+' ? 1 : 0);
  double value = 0.0;
  const auto [end, ec] = std::from_chars(first, text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

// True if the token starts like a number (and so is not a keyword or a word).
bool looks_numeric(std::string_view t) {
  auto digit = [&](std::size_t i) {
    return i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]));
  };
  if (digit(0)) return true;
  if (!t.empty() && t[0] == '.') return digit(1);
  if (!t.empty() && (t[0] == '+' || t[0] == '-'))
    return digit(1) || (t.size() > 1 && t[1] == '.' && digit(2));
  return false;
}

std::vector<std::string_view> split_tokens(std::string_view text) {
  std::vector<std::string_view> tokens;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_blank(text[i])) ++i;
    const std::size_t start = i;
    while (i < text.size() && !is_blank(text[i])) ++i;
    if (i > start) tokens.push_back(text.substr(start, i - start));
  }
  return tokens;
}

/// A token or line as a message quotes it: printable and at most 80 bytes of it.
std::string quoted(std::string_view text) {
  std::string out(1, '\'');
  out += printable(text, 80);
  out += '\'';
  return out;
}

std::string join(const std::vector<std::string_view>& words) {
  std::string out;
  for (auto w : words) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

class Parser {
 public:
  Parser(Steering& steering, ParseContext& context, fs::path file, bool is_steering_file)
      : m_steering(steering),
        m_context(context),
        m_file(std::move(file)),
        m_is_steering_file(is_steering_file) {}

  void run() {
    // pede: 11 for the steering file, 16 for a text file that cannot be opened
    const int code = m_is_steering_file ? exit_code::steering_open : open_error;
    const std::string what = std::string(m_is_steering_file ? "steering" : "text") + " file " + m_file.string();
    std::error_code ec;
    if (fs::is_directory(m_file, ec)) throw InputError("cannot read " + what + ": it is a folder", code);
    std::ifstream in(m_file);
    if (!in) {
      throw InputError("cannot open " + what + " for reading: " + std::strerror(errno), code);
    }
    std::string raw;
    int number = 0;
    while (std::getline(in, raw)) {
      ++number;
      if (number == 1 && raw.rfind("\xEF\xBB\xBF", 0) == 0) raw.erase(0, 3);  // UTF-8 mark
      if (!process_line(raw, number)) break;
    }
    if (in.bad()) {
      throw InputError("read error in " + m_file.string() + " after line " + std::to_string(number), code);
    }
  }

  /// Text files found in a steering file, in the order named.
  const std::vector<fs::path>& text_files() const { return m_text_files; }
  /// The first unknown keyword of the steering file (empty if none).
  const std::string& unknown_keyword_error() const { return m_unknown; }

 private:
  enum class Block { none, parameter, constraint, measurement };

  struct Numbers {
    std::vector<double> values;
    std::vector<std::string_view> words;  // text before the first number (after the keyword)
  };

  [[noreturn]] void fail(int line, const std::string& what,
                         int code = exit_code::steering_error) const {
    throw InputError(location(m_file, line) + ": " + what, code);
  }

  void warn(int line, const std::string& what) {
    m_steering.warnings.push_back(location(m_file, line) + ": " + what);
  }

  // Returns false at an `end` line.
  bool process_line(std::string raw, int line) {
    if (!raw.empty() && raw.back() == '\r') raw.pop_back();
    if (!raw.empty() && raw.front() == '*') return true;  // comment line
    if (raw.size() > pede_line_length) {
      // pede reads the first 1024 characters of a line; a comment may run on, content may not.
      const std::size_t content_end = raw.substr(0, raw.find('!')).find_last_not_of(" \t\v\f");
      if (content_end != std::string::npos && content_end >= pede_line_length) {
        fail(line, "the line is " + std::to_string(raw.size()) + " characters long and its content goes on to character " +
                       std::to_string(content_end + 1) + "; pede reads only the first " +
                       std::to_string(pede_line_length) +
                       " characters of a line and would misread it: split it into shorter lines (it begins " +
                       quoted(std::string_view(raw)) + ")");
      }
    }
    const std::string_view before_bang = trim(std::string_view(raw).substr(0, raw.find('!')));
    if (before_bang.empty()) return true;
    if (iequals(before_bang, "end")) return false;
    if (iequals(before_bang, "fortranfiles") || iequals(before_bang, "Cfiles")) {
      if (m_is_steering_file) {
        m_format =
            iequals(before_bang, "Cfiles") ? MilleFormat::c_binary : MilleFormat::fortran_binary;
      } else {
        warn(line, quoted(before_bang) +
                       " has an effect only in the steering file; ignored in a text file");
      }
      return true;
    }
    if (m_is_steering_file && try_file(before_bang, line)) return true;

    // Keyword or numbers: pede's ratext also ends the text at '%'.
    std::string_view text(raw);
    text = text.substr(0, std::min(text.find('!'), text.find('%')));
    const auto tokens = split_tokens(text);
    if (tokens.empty()) return true;
    if (looks_numeric(tokens.front())) {
      data_line(numbers_of(tokens, 0, line, false).values, line);
    } else {
      keyword_line(tokens, trim(text), line);
    }
    return true;
  }

  // A steering-file line that names an existing file: `name [-- weight]`.
  bool try_file(std::string_view content, int line) {
    std::string_view name = content;
    std::string_view option;
    const auto dashes = content.find(" -- ");
    if (dashes != std::string_view::npos) {
      name = trim(content.substr(0, dashes));
      option = trim(content.substr(dashes + 4));
    }
    if (name.empty()) return false;
    const auto found = resolve(fs::path(std::string(name)));
    if (!found) return false;

    const std::string_view tail = name.substr(name.size() >= 4 ? name.size() - 4 : 0);
    const bool text_file =
        matched_characters("xt", tail) == 2 || matched_characters("tx", tail) == 2;
    if (text_file) {
      m_text_files.push_back(*found);
      return true;
    }
    MilleFileSpec spec;
    spec.path = *found;
    spec.format = m_format;
    if (!option.empty()) {
      const auto tokens = split_tokens(option);
      const auto values = numbers_of(tokens, 0, line, false).values;
      if (!values.empty()) {
        if (!(values.front() > 0.0)) {
          fail(line, "the weight of binary file " + std::string(name) + " must be > 0, found '" +
                         std::string(option) + "'");
        }
        spec.weight = values.front();
      }
    }
    m_steering.binary_files.push_back(std::move(spec));
    return true;
  }

  std::vector<fs::path> search_folders() const {
    std::vector<fs::path> folders;
    std::error_code ec;
    fs::path steering_folder = fs::absolute(m_file, ec).parent_path();
    folders.push_back(steering_folder);
    fs::path cwd = fs::current_path(ec);
    if (!ec && cwd.lexically_normal() != steering_folder.lexically_normal()) folders.push_back(cwd);
    return folders;
  }

  std::optional<fs::path> resolve(const fs::path& name) const {
    // As for pede, a folder is a file too: reading it fails later (text file: 16, binary: 18).
    auto usable = [](const fs::path& p) {
      std::error_code ec;
      return fs::exists(p, ec);
    };
    if (name.is_absolute()) {
      if (usable(name)) return name.lexically_normal();
      return std::nullopt;
    }
    for (const auto& folder : search_folders()) {
      const fs::path candidate = (folder / name).lexically_normal();
      if (usable(candidate)) return candidate;
    }
    return std::nullopt;
  }

  // Parses tokens[first..] as numbers. With allow_words, leading non-numeric tokens are returned
  // as words (the method name); any other non-number is an error.
  Numbers numbers_of(const std::vector<std::string_view>& tokens, std::size_t first, int line,
                     bool allow_words) const {
    Numbers out;
    std::size_t i = first;
    if (allow_words) {
      while (i < tokens.size() && !looks_numeric(tokens[i])) out.words.push_back(tokens[i++]);
    }
    for (; i < tokens.size(); ++i) {
      const auto value = parse_number(tokens[i]);
      if (!value) fail(line, "malformed number '" + std::string(tokens[i]) + "'");
      out.values.push_back(*value);
    }
    if (out.values.size() > max_numbers_per_line) {
      fail(line, std::to_string(out.values.size()) + " numbers on one line; pede reads at most " +
                     std::to_string(max_numbers_per_line) + " (split the line)");
    }
    return out;
  }

  std::int32_t to_label(double value, int line) const {
    if (!(value >= 1.0 && value <= std::numeric_limits<std::int32_t>::max()) ||
        value != std::nearbyint(value)) {
      std::ostringstream s;
      s << "label " << value << " is not a positive 32-bit integer";
      fail(line, s.str());
    }
    return static_cast<std::int32_t>(value);
  }

  // Fortran NINT for counts and record numbers.
  std::int64_t to_integer(double value, int line) const {
    if (!(std::fabs(value) < 9.0e15)) {
      std::ostringstream s;
      s << "number " << value << " is out of range for an integer argument";
      fail(line, s.str());
    }
    return static_cast<std::int64_t>(std::llround(value));
  }

  int to_int(double value, int line) const {
    const std::int64_t v = to_integer(value, line);
    if (v > std::numeric_limits<int>::max() || v < std::numeric_limits<int>::min()) {
      std::ostringstream s;
      s << "number " << value << " is out of range for an integer argument";
      fail(line, s.str());
    }
    return static_cast<int>(v);
  }

  void data_line(const std::vector<double>& values, int line) {
    switch (m_block) {
      case Block::none:
        fail(line, "numbers outside a Parameter, Constraint or Measurement block");
      case Block::parameter:
        if (values.size() != 3) {
          fail(line, "a Parameter line holds 'label value presigma' (3 numbers), found " +
                         std::to_string(values.size()));
        }
        add_parameter(values, line);
        return;
      case Block::constraint:
      case Block::measurement: {
        const char* block = m_block == Block::constraint ? "Constraint" : "Measurement";
        if (values.size() % 2 != 0) {
          fail(line, std::string("a ") + block + " line holds 'label factor' pairs, found " +
                         std::to_string(values.size()) + " numbers");
        }
        auto& spec = m_block == Block::constraint ? m_steering.constraints.back()
                                                  : m_steering.measurements.back();
        for (std::size_t i = 0; i < values.size(); i += 2) {
          const std::int32_t label = to_label(values[i], line);
          if (values[i + 1] == 0.0) continue;  // pede drops zero factors
          spec.terms.emplace_back(label, values[i + 1]);
        }
        return;
      }
    }
  }

  void add_parameter(const std::vector<double>& values, int line) {
    ParameterSpec p;
    p.label = to_label(values[0], line);
    p.value = values[1];
    p.presigma = values[2];
    p.where = {m_file, line};
    m_steering.parameters.push_back(std::move(p));
  }

  const KeywordEntry* find_keyword(std::string_view word, std::size_t token_count) const {
    for (const auto& entry : keyword_table) {
      if (is_exact_keyword(entry.name)) {
        // pede compares the whole line with these, so nothing may follow them.
        if (token_count == 1 && iequals(entry.name, word)) return &entry;
      } else if (keyword_matches(std::string(entry.name), std::string(word))) {
        return &entry;
      }
    }
    return nullptr;
  }

  // gpede's time-dependence keywords, matched whole (not by pede's approximate rule, so that
  // none can take the place of a pede keyword):
  //   timedependent LABELS...   labels and ranges (11 12 21-26) with one value per interval
  //   intervals TIMES...        interval starts, `run` or `experiment:run`, increasing
  //   timestride S              interval k of label L is L + k S
  //   filetime NAME TIME        the time of a listed binary file's records that carry none
  bool time_keyword(const std::vector<std::string_view>& tokens, std::string_view text, int line) {
    const std::string_view word = tokens.front();
    TimeDependenceSpec& td = m_steering.time_dependence;
    const std::string as_written = quoted(text);
    const auto time_of = [&](std::string_view token) {
      RecordTime t = 0;
      if (!parse_time(std::string(token), t)) {
        fail(line, as_written + ": '" + std::string(token) + "' is not a time (run, or experiment:run, whole numbers " +
                       "0 to 2147483647)");
      }
      return t;
    };
    if (iequals(word, "timedependent")) {
      if (tokens.size() < 2) fail(line, as_written + ": timedependent needs labels or ranges such as 11 12 21-26");
      if (!td.active()) td.where = {m_file, line};
      for (std::size_t k = 1; k < tokens.size(); ++k) {
        const std::string token(tokens[k]);
        const std::size_t dash = token.find('-', 1);
        std::int64_t first = 0, last = 0;
        const auto whole = [](const std::string& t, std::int64_t& v) {
          if (t.empty() || t.find_first_not_of("0123456789") != std::string::npos || t.size() > 10) return false;
          v = std::stoll(t);
          return v >= 1 && v <= INT32_MAX;
        };
        const bool ok = dash == std::string::npos ? whole(token, first) && whole(token, last)
                                                  : whole(token.substr(0, dash), first) &&
                                                        whole(token.substr(dash + 1), last) && first <= last;
        if (!ok) {
          fail(line, as_written + ": '" + token + "' is not a label (1 to 2147483647) or a range first-last");
        }
        td.labels.emplace_back(static_cast<std::int32_t>(first), static_cast<std::int32_t>(last));
      }
      return true;
    }
    if (iequals(word, "intervals")) {
      if (tokens.size() < 2) fail(line, as_written + ": intervals needs the times where intervals begin, or auto");
      if (iequals(tokens[1], "auto")) {
        td.automatic = true;
        const std::vector<double> d = numbers_of(tokens, 2, line, false).values;
        if (d.size() > 1 || (d.size() == 1 && !(d[0] > 0.0))) {
          fail(line, as_written + ": intervals auto takes at most one number, the penalty in chi2 per interval start (> 0)");
        }
        td.penalty = d.empty() ? 0.0 : d[0];
        return true;
      }
      for (std::size_t k = 1; k < tokens.size(); ++k) {
        const RecordTime t = time_of(tokens[k]);
        if (!td.boundaries.empty() && t <= td.boundaries.back()) {
          fail(line, as_written + ": interval starts must increase; " + time_text(t) + " follows " +
                         time_text(td.boundaries.back()));
        }
        td.boundaries.push_back(t);
      }
      return true;
    }
    if (iequals(word, "timestride")) {
      const std::vector<double> d = numbers_of(tokens, 1, line, false).values;
      if (d.size() != 1 || !(d[0] >= 10.0) || d[0] > 1.0e9 || d[0] != std::floor(d[0])) {
        fail(line, as_written + ": timestride needs one whole number from 10 to 10^9");
      }
      td.stride = static_cast<std::int64_t>(d[0]);
      return true;
    }
    if (iequals(word, "template")) {
      const std::vector<double> d = numbers_of(tokens, 1, line, false).values;
      if (d.size() < 3 || d.size() % 2 == 0) {
        fail(line, as_written + ": template needs an amplitude label and pairs of label and coefficient");
      }
      const auto label = [&](double v) {
        if (!(v >= 1.0 && v <= INT32_MAX && v == std::floor(v))) {
          fail(line, as_written + ": " + std::to_string(v) + " is not a label (1 to 2147483647)");
        }
        return static_cast<std::int32_t>(v);
      };
      TemplateSpec t;
      t.amplitude = label(d[0]);
      t.where = {m_file, line};
      for (std::size_t k = 1; k + 1 < d.size(); k += 2) {
        const std::int32_t l = label(d[k]);
        if (l == t.amplitude) fail(line, as_written + ": the amplitude label " + std::to_string(l) + " is in its own shape");
        for (const auto& [other, c] : t.shape) {
          if (other == l) fail(line, as_written + ": label " + std::to_string(l) + " twice in the shape");
        }
        t.shape.emplace_back(l, d[k + 1]);
      }
      for (const TemplateSpec& other : td.templates) {
        for (const auto& [l, c] : t.shape) {
          for (const auto& [o, oc] : other.shape) {
            if (o == l) {
              fail(line, as_written + ": label " + std::to_string(l) + " is already in the template of amplitude " +
                             std::to_string(other.amplitude) + " (" + other.where.file.string() + ":" +
                             std::to_string(other.where.line) + ")");
            }
          }
        }
      }
      td.templates.push_back(std::move(t));
      return true;
    }
    if (iequals(word, "filetime")) {
      if (tokens.size() != 3) fail(line, as_written + ": filetime needs a binary file's name and a time");
      const std::string name(tokens[1]);
      const RecordTime t = time_of(tokens[2]);
      MilleFileSpec* match = nullptr;
      const auto found = resolve(fs::path(name));
      for (MilleFileSpec& spec : m_steering.binary_files) {
        std::error_code ec;
        const bool same = (found && fs::equivalent(spec.path, *found, ec)) || spec.path.filename() == fs::path(name);
        if (!same) continue;
        if (match != nullptr) fail(line, as_written + ": '" + name + "' names more than one listed binary file");
        match = &spec;
      }
      if (match == nullptr) fail(line, as_written + ": '" + name + "' is not a binary file listed before this line");
      match->time = t;
      return true;
    }
    return false;
  }

  void keyword_line(const std::vector<std::string_view>& tokens, std::string_view text, int line) {
    const std::string_view word = tokens.front();
    if (time_keyword(tokens, text, line)) return;
    const KeywordEntry* entry = find_keyword(word, tokens.size());
    if (entry == nullptr) {
      unknown_keyword(text, line);
      return;
    }

    const std::string as_written = quoted(text);
    if (entry->key == Key::not_implemented) {
      std::string what = as_written + ": keyword " + std::string(entry->name) +
                         " is known to pede but not implemented by gpede; ignored";
      if (entry->name == "compress") what += " (pede too treats it as obsolete)";
      warn(line, what);
      return;
    }

    const Key key = entry->key;
    if (key == Key::method) {
      method_line(numbers_of(tokens, 1, line, true), line);
      return;
    }
    const std::vector<double> d = numbers_of(tokens, 1, line, false).values;
    const std::size_t n = d.size();
    auto at_most = [&](std::size_t count) {
      if (n > count) {
        warn(line, as_written + ": " + std::to_string(n - count) + " extra number(s) after " +
                       std::string(entry->name) + " ignored, as pede does");
      }
    };
    auto require = [&](std::size_t count) {
      if (n < count) {
        fail(line, as_written + ": " + std::string(entry->name) + " needs " +
                       std::to_string(count) + " number(s)");
      }
    };

    Steering& s = m_steering;
    switch (key) {
      case Key::parameter:
        m_block = Block::parameter;
        if (n == 3) {
          add_parameter(d, line);
        } else if (n != 0) {
          fail(line,
               as_written + ": Parameter takes no number or one 'label value presigma' triple");
        }
        return;
      case Key::constraint: {
        if (n < 1 || n > 2) fail(line, as_written + ": Constraint needs 'value [sigma]'");
        LinearSpec c;
        c.value = d[0];
        c.sigma = n == 2 ? d[1] : 0.0;
        c.where = {m_file, line};
        c.weighted = m_context.weighted_constraints > 0;
        s.constraints.push_back(std::move(c));
        m_block = Block::constraint;
        return;
      }
      case Key::measurement: {
        if (n != 2) fail(line, as_written + ": Measurement needs 'value sigma'");
        if (!(d[1] > 0.0)) fail(line, as_written + ": the sigma of a Measurement must be > 0");
        LinearSpec m;
        m.value = d[0];
        m.sigma = d[1];
        m.where = {m_file, line};
        s.measurements.push_back(std::move(m));
        m_block = Block::measurement;
        return;
      }
      case Key::entries:
        at_most(3);
        if (n > 0 && d[0] > 0.5) s.entries_files = to_int(d[0], line);
        if (n > 1 && d[1] > 0.5) s.entries_accepted = to_int(d[1], line);
        // pede: the iterated cut is the first number times the third
        if (n > 2 && d[2] > 0.5) s.entries_iterate = to_integer(d[0] * d[2], line);
        return;
      case Key::printrecord:
        at_most(2);
        if (n > 0) s.printrecord1 = to_integer(d[0], line);
        if (n > 1) s.printrecord2 = to_integer(d[1], line);
        return;
      case Key::maxrecord:
        at_most(1);
        if (n > 0 && d[0] > 0.0) s.maxrecord = to_integer(d[0], line);
        return;
      case Key::chisqcut:
        at_most(2);
        if (n == 0) {
          s.chisqcut1 = 1.0;
          s.chisqcut2 = 1.0;
        } else {
          s.chisqcut1 = d[0] < 1.0 ? -1.0 : d[0];
          if (n == 1) {
            s.chisqcut2 = 1.0;
          } else {
            s.chisqcut2 = std::max(d[1], 1.0);
            if (s.chisqcut1 >= 1.0) s.chisqcut2 = std::min(s.chisqcut2, s.chisqcut1);
          }
        }
        return;
      case Key::hugecut:
        at_most(1);
        if (n > 0) s.hugecut = d[0];
        s.hugecut = std::max(s.hugecut, 1.0);
        return;
      case Key::regularisation:
        at_most(2);
        s.regularisation = true;
        if (n > 0) s.regularisation_factor = d[0];
        if (n > 1) {
          s.regularisation_presigma = d[1];
          s.presigma = d[1];  // pede: the same variable as `presigma`
        }
        return;
      case Key::presigma:
        require(1);
        at_most(1);
        s.presigma = d[0];
        return;
      case Key::outlierdownweighting: {
        require(1);
        at_most(1);
        int iterations = to_int(d[0], line);
        if (iterations < 0) {
          fail(line, as_written + ": the number of down-weighting iterations must be >= 0");
        }
        if (iterations > 0 && iterations <= 2) iterations = 2;
        s.outlier_downweighting = iterations;
        return;
      }
      case Key::dwfractioncut:
        require(1);
        at_most(1);
        s.dwfractioncut = std::min(d[0], 0.5);
        return;
      case Key::subito:
        at_most(0);
        s.subito = true;
        return;
      case Key::globalcorr:
        at_most(0);
        s.globalcorr = true;
        return;
      case Key::printcounts:
        at_most(1);
        s.printcounts = n > 0 ? to_int(d[0], line) : 1;
        return;
      case Key::skipemptycons:
        at_most(0);
        s.skip_empty_constraints = true;
        return;
      case Key::withelimination:
        at_most(0);
        s.constraint_mode = ConstraintMode::elimination;
        return;
      case Key::withmultipliers:
        at_most(0);
        s.constraint_mode = ConstraintMode::multipliers;
        return;
      case Key::scaleerrors:
        at_most(2);
        if ((n > 0 && !(d[0] > 0.0)) || (n > 1 && !(d[1] > 0.0))) {
          fail(line, as_written + ": error scale factors must be > 0");
        }
        if (n > 0) s.scale_errors_global = s.scale_errors_local = d[0];
        if (n > 1) s.scale_errors_local = d[1];
        return;
      case Key::threads:
        at_most(2);
        if (n > 0 && d[0] > 0.0) s.threads = to_int(d[0], line);
        if (n > 1) {
          warn(line, as_written +
                         ": the second number of threads (threads for reading) is not "
                         "implemented by gpede; ignored");
        }
        return;
      case Key::linesearch:
        at_most(1);
        if (n > 0) s.line_search = to_int(d[0], line);
        return;
      case Key::wolfe:
        at_most(2);
        // pede reads c2 for the line search of its LAPACK methods (the exact methods set their own)
        s.wolfe_c2 = n > 1 ? d[1] : 0.0;
        return;
      case Key::bandwidth:
        at_most(2);
        if (n > 0) s.minres_bandwidth = std::max(-1, to_int(d[0], line));
        if (n > 1) s.minres_band_skyline = to_int(d[1], line) > 0;
        return;
      case Key::mrestol:
        at_most(1);
        if (n > 0) {
          if (d[0] < 1.0e-10 || d[0] > 1.0e-4) {
            warn(line, as_written + ": the MINRES tolerance must lie between 1e-10 and 1e-4; ignored, as pede does");
          } else {
            s.minres_tolerance = d[0];
          }
        }
        return;
      case Key::mrestranscond:
        at_most(1);
        if (n > 0) s.minres_transition_condition = d[0];
        return;
      case Key::mresmode:
        at_most(1);
        if (n > 0) s.minres_mode = to_int(d[0], line);
        return;
      case Key::matiter:
        require(1);
        at_most(1);
        s.matrix_iterations = to_int(d[0], line);
        return;
      case Key::iterateentries:
        at_most(1);
        s.entries_iterate = n > 0 ? to_integer(d[0], line) : std::numeric_limits<int>::max();
        return;
      case Key::countrecords:
        at_most(0);
        s.count_records = true;
        return;
      case Key::weightedcons:
        at_most(1);
        m_context.weighted_constraints = n > 0 ? to_int(d[0], line) : 1;
        return;
      case Key::checkinput:
        at_most(1);
        s.check_input = n > 0 ? to_int(d[0], line) : 1;
        return;
      case Key::force:
        at_most(0);
        s.force = true;
        return;
      case Key::nofeasiblestart:
        at_most(0);
        s.no_feasible_start = true;
        return;
      case Key::lapackwitherrors:
        at_most(0);
        m_context.lapack_with_errors = true;
        return;
      case Key::fortranfiles:
      case Key::cfiles:
        return;  // handled in process_line
      default:
        throw RuntimeError(location(m_file, line) + ": keyword " + std::string(entry->name) +
                           " has no handler in the steering parser");
    }
  }

  void method_line(const Numbers& args, int line) {
    m_block = Block::none;
    const std::string name = join(args.words);
    if (name.empty()) fail(line, "method needs a name (e.g. 'method inversion 3 0.001')");
    std::optional<MethodChoice> choice;
    for (const auto& entry : method_table) {
      if (keyword_matches(std::string(entry.name), name)) choice = entry.choice;
    }
    if (!choice) {
      std::string known;
      for (const auto& entry : method_table)
        known += std::string(known.empty() ? "" : ", ") + std::string(entry.name);
      fail(line, "unsupported solution method '" + name + "' (pede knows: " + known + ")",
           unsupported_method);
    }
    const auto& d = args.values;
    if (!d.empty()) {
      const int iterations = to_int(d[0], line);
      if (iterations >= 1) {
        m_steering.iterations = iterations;
      } else {
        warn(line, "method: " + std::to_string(iterations) +
                       " iterations is not >= 1; the number of iterations stays " +
                       std::to_string(m_steering.iterations) + ", as in pede");
      }
    }
    if (d.size() > 1) m_steering.dflim = d[1];
    if (d.size() > 2) {
      warn(line,
           "method: " + std::to_string(d.size() - 2) + " extra number(s) ignored, as pede does");
    }
    m_steering.method_name = name;
    m_context.method = choice;
    m_context.method_where = {m_file, line};
  }

  /// In the steering file the first unknown keyword is kept and reported after the whole file was
  /// read (pede reports a missing binary file first); in a text file it ends the parse at once.
  void unknown_keyword(std::string_view text, int line) {
    std::string what = quoted(text) + " is neither a keyword pede knows";
    if (m_is_steering_file) {
      what += " nor an existing file (looked for a file in";
      const auto folders = search_folders();
      for (std::size_t i = 0; i < folders.size(); ++i) {
        what += (i == 0 ? " " : " and ") + folders[i].string();
      }
      what += ")";
    } else {
      what +=
          " (a text file holds Parameter, Constraint and Measurement blocks and options; "
          "files can be named only in the steering file)";
    }
    if (!m_is_steering_file) fail(line, what, exit_code::unknown_keyword);
    if (m_unknown.empty()) m_unknown = location(m_file, line) + ": " + what;
  }

  Steering& m_steering;
  ParseContext& m_context;
  fs::path m_file;
  bool m_is_steering_file;
  Block m_block = Block::none;
  MilleFormat m_format = MilleFormat::c_binary;
  std::vector<fs::path> m_text_files;
  std::string m_unknown;
};

void parse_text_file_with(const fs::path& text_file, Steering& steering, ParseContext& context) {
  Parser parser(steering, context, text_file, false);
  parser.run();
  steering.text_files.push_back(text_file);
}

// Turns the last `method` line (and `LAPACKwitherrors`) into Steering::method.
void finish_method(Steering& steering, const ParseContext& context, bool default_applies) {
  if (!context.method) {
    if (default_applies) {
      steering.method = Method::minres;  // pede's default: sparseMINRES
    } else if (context.lapack_with_errors &&
               (keyword_matches("fullLAPACK", steering.method_name) ||
                keyword_matches("unpackedLAPACK", steering.method_name))) {
      // LAPACKwitherrors in a text file read on its own, after the method was chosen elsewhere.
      steering.method = Method::inversion;
    }
    return;
  }
  const MethodChoice choice = *context.method;
  if (choice == MethodChoice::inversion) {
    steering.method = Method::inversion;
  } else if (choice == MethodChoice::diagonalization) {
    steering.method = Method::diagonalization;
  } else if (is_lapack(choice)) {
    // fullLAPACK / unpackedLAPACK factorise; with LAPACKwitherrors pede also inverts for errors.
    steering.method = context.lapack_with_errors ? Method::inversion : Method::decomposition;
    steering.lapack_method = true;
  } else if (is_minres(choice)) {
    steering.method = Method::minres;
    steering.sparse_storage = choice == MethodChoice::sparse_minres || choice == MethodChoice::sparse_minres_qlp;
  } else {
    steering.method = Method::decomposition;
  }
  steering.minres_qlp = choice == MethodChoice::full_minres_qlp || choice == MethodChoice::sparse_minres_qlp;
}

}  // namespace

bool keyword_matches(const std::string& keyword, const std::string& text) {
  const std::string_view k = trim(keyword);
  const std::string_view t = trim(text);
  if (k.empty() || t.empty()) return false;
  if (is_exact_keyword(k)) return iequals(k, t);
  // At most the shorter length can match: a text much longer than the keyword fails at once
  // (and a huge token costs nothing).
  const std::size_t longer = std::max(k.size(), t.size());
  if (100 * std::min(k.size(), t.size()) < 80 * longer) return false;
  const int matched = matched_characters(t, k);
  return 100 * static_cast<std::size_t>(matched) >= 80 * longer;
}

const char* method_name(Method method) {
  switch (method) {
    case Method::inversion:
      return "inversion";
    case Method::diagonalization:
      return "diagonalization";
    case Method::decomposition:
      return "decomposition";
    case Method::minres:
      return "MINRES";
  }
  return "unknown";
}

void parse_text_file(const fs::path& text_file, Steering& steering) {
  ParseContext context;
  parse_text_file_with(text_file, steering, context);
  finish_method(steering, context, false);
}

Steering parse_steering(const fs::path& steering_file) {
  Steering steering;
  steering.steering_file = steering_file;
  std::error_code ec;
  if (!fs::exists(steering_file, ec)) {
    // pede: 16 for a file named on the command line that does not exist
    throw InputError("steering file " + steering_file.string() + " does not exist", open_error);
  }
  ParseContext context;
  Parser parser(steering, context, steering_file, true);
  parser.run();
  // pede checks the binary files before it reports unknown keywords: a misspelt or missing binary
  // file is "no binary files" (14) when it was the only one.
  if (!parser.unknown_keyword_error().empty() && steering.binary_files.empty()) {
    throw InputError("no binary files in " + steering_file.string() + " (" + parser.unknown_keyword_error() + ")",
                     exit_code::no_binary_files);
  }
  // pede reads the text files after the whole steering file, in the order they are named.
  for (const auto& text_file : parser.text_files()) {
    parse_text_file_with(text_file, steering, context);
  }
  if (!parser.unknown_keyword_error().empty()) {
    throw InputError(parser.unknown_keyword_error(), exit_code::unknown_keyword);
  }
  // pede numbers all Fortran files before all C files.
  std::stable_partition(
      steering.binary_files.begin(), steering.binary_files.end(),
      [](const MilleFileSpec& f) { return f.format == MilleFormat::fortran_binary; });
  finish_method(steering, context, true);
  return steering;
}

}  // namespace gpede
