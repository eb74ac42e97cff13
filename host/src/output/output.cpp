// pede's result files (millepede.res, .eve, .end, .log) and gpede.json. The text files follow
// pede's Fortran formats character for character: the edit descriptors used by pede (Iw, Fw.d,
// Ew.d, Gw.d) and gfortran's list-directed output are reproduced here on top of C's correctly
// rounded printf conversions.
#include "gpede/output.hpp"
#include "gpede/record_time.hpp"

#include "gpede/detail/factor_report_text.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>
#include <nlohmann/json.hpp>

#include "gpede/error.hpp"
#include "gpede/version.hpp"

namespace gpede {

namespace {

// ----- Fortran edit descriptors ------------------------------------------------------------------

std::string right_justify(std::string text, std::size_t width) {
  if (text.size() < width) text.insert(0, width - text.size(), ' ');
  return text;
}

std::string stars(int width) { return std::string(static_cast<std::size_t>(width), '*'); }

// gfortran's text for NaN and infinities in a field of `width` characters.
std::string non_finite(double x, int width) {
  std::string text;
  if (std::isnan(x)) {
    text = width >= 3 ? "NaN" : "";
  } else if (x > 0) {
    text = width >= 8 ? "Infinity" : (width >= 3 ? "Inf" : "");
  } else {
    text = width >= 9 ? "-Infinity" : (width >= 4 ? "-Inf" : "");
  }
  if (text.empty()) return stars(width);
  return right_justify(text, static_cast<std::size_t>(width));
}

// Iw.m
std::string fortran_i(std::int64_t value, int width, int min_digits = 1) {
  const bool negative = value < 0;
  const std::uint64_t magnitude =
      negative ? static_cast<std::uint64_t>(-(value + 1)) + 1 : static_cast<std::uint64_t>(value);
  std::string digits = std::to_string(magnitude);
  if (static_cast<int>(digits.size()) < min_digits) digits.insert(0, min_digits - digits.size(), '0');
  if (negative) digits.insert(0, 1, '-');
  if (static_cast<int>(digits.size()) > width) return stars(width);
  return right_justify(digits, static_cast<std::size_t>(width));
}

// Shortens a field that is one character too wide by dropping the optional zero before the
// decimal point ("0.5" -> ".5", "-0.5" -> "-.5"), as gfortran does; stars if still too wide.
std::string fit_field(std::string text, int width) {
  if (static_cast<int>(text.size()) > width) {
    const std::size_t zero = (!text.empty() && text[0] == '-') ? 1 : 0;
    if (text.size() > zero + 1 && text[zero] == '0' && text[zero + 1] == '.') text.erase(zero, 1);
  }
  if (static_cast<int>(text.size()) > width) return stars(width);
  return right_justify(std::move(text), static_cast<std::size_t>(width));
}

// Fixed notation of |x| with `decimals` decimals, with the sign of x (negative zero included).
std::string fixed_text(double x, int decimals) {
  char buffer[400];
  std::snprintf(buffer, sizeof buffer, "%#.*f", decimals, std::fabs(x));  // Fortran keeps the point
  std::string text(buffer);
  if (std::signbit(x)) text.insert(0, 1, '-');
  return text;
}

// Fw.d
std::string fortran_f(double x, int width, int decimals) {
  if (!std::isfinite(x)) return non_finite(x, width);
  return fit_field(fixed_text(x, decimals), width);
}

// |x| rounded to `digits` significant digits: the digit string and the decimal exponent k with
// 0.1 <= rounded / 10^k < 1 (x != 0, finite).
void significant_digits(double x, int digits, std::string& mantissa, int& k) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*e", digits - 1, std::fabs(x));
  const char* e = std::strchr(buffer, 'e');
  mantissa.clear();
  for (const char* p = buffer; p != e; ++p) {
    if (*p != '.') mantissa.push_back(*p);
  }
  k = std::atoi(e + 1) + 1;
}

// Exponent part of Ew.d: E+dd for |k| <= 99, +ddd up to 999.
std::string exponent_text(int k) {
  const char sign = k < 0 ? '-' : '+';
  const int magnitude = std::abs(k);
  char buffer[16];
  if (magnitude <= 99) {
    std::snprintf(buffer, sizeof buffer, "E%c%02d", sign, magnitude);
  } else {
    std::snprintf(buffer, sizeof buffer, "%c%03d", sign, magnitude);
  }
  return buffer;
}

// Ew.d (0.ddddE+xx form).
std::string fortran_e(double x, int width, int decimals) {
  if (!std::isfinite(x)) return non_finite(x, width);
  std::string mantissa;
  int k = 0;
  if (x == 0.0) {
    mantissa.assign(static_cast<std::size_t>(decimals), '0');
  } else {
    significant_digits(x, decimals, mantissa, k);
  }
  std::string text = std::signbit(x) ? "-0." : "0.";
  text += mantissa + exponent_text(k);
  return fit_field(std::move(text), width);
}

// 10^n in REAL*4 arithmetic, as gfortran's runtime computes it.
float power_of_ten_real4(int n) {
  float r = 1.0f;
  for (int i = 0; i < std::abs(n); ++i) r *= 10.0f;
  return n >= 0 ? r : static_cast<float>(1.0 / r);
}

// Gw.d (no exponent width) of a REAL*4 value as gfortran writes it: Ew.d outside
// [0.1, 10^d) and otherwise Fw-4.d' followed by 4 blanks, where d' = d - k for a value in
// [10^(k-1), 10^k). The decade limits are 10^(k-1) * (1 - 0.5 * 10^-d) evaluated in REAL*4
// arithmetic (a value equal to a limit goes up), exactly as libgfortran decides; this can differ
// from rounding the exact value to d digits first (0.99999499 gives 1.0000, not 0.99999).
std::string fortran_g_real4(float x, int width, int digits) {
  if (!std::isfinite(x)) return non_finite(x, width);
  const int fixed_width = width - 4;
  if (x == 0.0f) return fit_field(fixed_text(x, digits - 1), fixed_width) + "    ";
  const float m = std::fabs(x);
  const volatile float exp_d = power_of_ten_real4(digits);
  const volatile float r_sc = 1.0f - 0.5f / exp_d;
  const volatile float lower = static_cast<float>(0.1 * static_cast<double>(r_sc));
  const volatile float headroom = exp_d - m;
  if (m < lower || 0.5f >= headroom) return fortran_e(x, width, digits);
  // libgfortran's bisection for the decade.
  int mid = 0;
  int low = 0;
  int high = digits + 1;
  int lbound = 0;
  int ubound = digits + 1;
  while (low <= high) {
    mid = (low + high) / 2;
    const volatile float limit = power_of_ten_real4(mid - 1) * r_sc;
    if (m < limit) {
      ubound = mid;
      if (ubound == lbound + 1) break;
      high = mid - 1;
    } else if (m > limit) {
      lbound = mid;
      if (ubound == lbound + 1) {
        ++mid;
        break;
      }
      low = mid + 1;
    } else {
      ++mid;
      break;
    }
  }
  return fit_field(fixed_text(x, digits + 1 - mid), fixed_width) + "    ";
}

// ----- gfortran list-directed output --------------------------------------------------------------

// A REAL(8) (REAL(4)) item: 25 (16) characters with 17 (9) significant digits; fixed with
// 5 (4) trailing blanks when 0.1 <= |x| < 1e17 (1e9), else d.ddddE+ddd (d.ddddE+dd).
std::string list_real_field(double x, int digits, std::size_t width, int exponent_digits) {
  if (!std::isfinite(x)) return non_finite(x, static_cast<int>(width));
  const std::size_t trailing = static_cast<std::size_t>(exponent_digits) + 2;
  const std::string blanks(trailing, ' ');
  if (x == 0.0) return right_justify(fixed_text(x, digits - 1), width - trailing) + blanks;
  std::string mantissa;
  int k = 0;
  significant_digits(x, digits, mantissa, k);
  if (k >= 0 && k <= digits) return right_justify(fixed_text(x, digits - k), width - trailing) + blanks;
  std::string text = std::signbit(x) ? "-" : "";
  text += mantissa.substr(0, 1) + "." + mantissa.substr(1);
  const int exponent = k - 1;
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "E%c%0*d", exponent < 0 ? '-' : '+', exponent_digits, std::abs(exponent));
  text += buffer;
  return right_justify(text, width);
}

// One record of list-directed output (WRITE(unit,*) a, b, ...): a leading blank, a blank before
// every numeric item after the first item and before a character item that follows a numeric one.
class ListLine {
 public:
  ListLine& text(std::string_view s) {
    if (m_last_numeric) m_line += ' ';
    m_line += s;
    m_last_numeric = false;
    m_items++;
    return *this;
  }
  // INTEGER(4) items take 11 characters, INTEGER(8) items 20.
  ListLine& integer(std::int64_t v) {
    const bool fits32 = v >= INT32_MIN && v <= INT32_MAX;
    return numeric(fortran_i(v, fits32 ? 11 : 20));
  }
  ListLine& real8(double v) { return numeric(list_real_field(v, 17, 25, 3)); }
  ListLine& real4(float v) { return numeric(list_real_field(v, 9, 16, 2)); }
  std::string str() const { return m_line + '\n'; }

 private:
  ListLine& numeric(const std::string& field) {
    if (m_items > 0) m_line += ' ';
    m_line += field;
    m_last_numeric = true;
    m_items++;
    return *this;
  }
  std::string m_line = " ";
  bool m_last_numeric = false;
  int m_items = 0;
};

// ----- helpers --------------------------------------------------------------------------------------

std::vector<const ParameterResult*> sorted_parameters(const SolveResult& result) {
  std::vector<const ParameterResult*> sorted;
  sorted.reserve(result.parameters.size());
  for (const auto& p : result.parameters) sorted.push_back(&p);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const ParameterResult* a, const ParameterResult* b) { return a->label < b->label; });
  return sorted;
}

// pede prints its REAL*4 values: round to float first.
double as_real4(double x) { return static_cast<double>(static_cast<float>(x)); }

const char* constraint_text(ConstraintMode mode) {
  return mode == ConstraintMode::multipliers ? "multipliers" : "elimination";
}

std::string one_line(const std::string& message) {
  std::string line = message;
  for (char& c : line) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  return line;
}

std::string date_text() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buffer[64];
  std::strftime(buffer, sizeof buffer, "%a %b %e %H:%M:%S %Y", &local);
  return buffer;
}

// pede's `(1X,a8,' =',i10,' = ',a)` summary line.
std::string count_line(const char* name, std::int64_t value, const char* what) {
  char name_field[16];
  std::snprintf(name_field, sizeof name_field, "%8.8s", name);
  return std::string(" ") + name_field + " =" + fortran_i(value, 10) + " = " + what + "\n";
}

std::string hhmmss(double seconds) {
  const auto total = static_cast<std::int64_t>(std::llround(std::max(seconds, 0.0)));
  const std::int64_t hours = total / 3600;
  const std::int64_t minutes = total / 60 - 60 * hours;
  const std::int64_t secs = std::llround(std::max(seconds, 0.0) - 60.0 * static_cast<double>(minutes + 60 * hours));
  return fortran_i(hours, 3) + fortran_i(minutes, 2, 2) + fortran_i(secs, 2, 2);
}

// ----- JSON -----------------------------------------------------------------------------------------

// Length of the valid UTF-8 sequence starting at s[i], 0 if the bytes there are not one.
std::size_t utf8_sequence_length(const std::string& s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  std::size_t n = 0;
  std::uint32_t min_code = 0;
  std::uint32_t code = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2, min_code = 0x80, code = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3, min_code = 0x800, code = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4, min_code = 0x10000, code = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  if (code < min_code || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return n;
}

// Text for a JSON string: bytes that are not valid UTF-8 are taken as the Latin-1 characters of
// the same code (nlohmann::json then escapes what JSON needs).
std::string valid_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c), ++i;
    } else if (const std::size_t n = utf8_sequence_length(s, i); n > 0) {
      out.append(s, i, n), i += n;
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
      ++i;
    }
  }
  return out;
}

// A JSON number: NaN and infinities become null (JSON has no literal for them).
nlohmann::ordered_json json_number(double x) {
  return std::isfinite(x) ? nlohmann::ordered_json(x) : nlohmann::ordered_json(nullptr);
}

// ----- temporary files ------------------------------------------------------------------------------

std::string errno_text(int error) { return std::strerror(error); }

std::filesystem::path temporary_sibling(const std::filesystem::path& file) {
  static std::atomic<unsigned> counter{0};
  static const unsigned seed = std::random_device{}();
  std::ostringstream name;
  name << '.' << file.filename().string() << ".tmp." << ::getpid() << '.' << std::hex << seed << '.'
       << counter++;
  return file.parent_path() / name.str();
}

}  // namespace

// ----- public API -------------------------------------------------------------------------------------

std::string format_g14_5(double x) { return fortran_g_real4(static_cast<float>(x), 14, 5); }

namespace {

/// Writes `content` to a new temporary file beside `file` and returns its path; on failure
/// removes it and throws OutputError (41) naming `file`.
std::filesystem::path write_temporary(const std::filesystem::path& file, const std::string& content) {
  if (file.filename().empty()) {
    throw OutputError("cannot write '" + file.string() + "': the path names no file", exit_code::output_error);
  }
  std::filesystem::path temporary;
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
    temporary = temporary_sibling(file);
    fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    const int error = errno;
    const std::filesystem::path folder = file.parent_path().empty() ? "." : file.parent_path();
    throw OutputError("cannot write '" + file.string() + "': cannot create a temporary file in '" +
                          folder.string() + "': " + errno_text(error),
                      exit_code::output_error);
  }
  const auto fail = [&](const std::string& what, int error) {
    if (fd >= 0) ::close(fd);
    ::unlink(temporary.c_str());
    throw OutputError("cannot write '" + file.string() + "': " + what + ": " + errno_text(error),
                      exit_code::output_error);
  };
  const char* data = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write failed", errno);
    }
    data += n;
    left -= static_cast<std::size_t>(n);
  }
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) fail("close failed", errno);
  return temporary;
}

/// Files written to temporary names and renamed together by commit(); those not committed are
/// removed.
class StagedFiles {
 public:
  StagedFiles() = default;
  StagedFiles(const StagedFiles&) = delete;
  StagedFiles& operator=(const StagedFiles&) = delete;
  ~StagedFiles() {
    for (const auto& [temporary, file] : m_files) ::unlink(temporary.c_str());
  }

  void stage(const std::filesystem::path& file, const std::string& content) {
    // The one way a rename in the same folder fails: a folder in the way. Found before any rename.
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec)) {
      throw OutputError("cannot write '" + file.string() + "': a folder of that name is in the way",
                        exit_code::output_error);
    }
    m_files.emplace_back(write_temporary(file, content), file);
  }

  /// Renames every staged file to its name, in the order staged.
  void commit() {
    for (std::size_t i = 0; i < m_files.size(); ++i) {
      const auto& [temporary, file] = m_files[i];
      if (::rename(temporary.c_str(), file.c_str()) != 0) {
        const int error = errno;
        m_files.erase(m_files.begin(), m_files.begin() + static_cast<std::ptrdiff_t>(i));
        throw OutputError("cannot write '" + file.string() + "': rename failed: " + errno_text(error),
                          exit_code::output_error);
      }
    }
    m_files.clear();
  }

 private:
  std::vector<std::pair<std::filesystem::path, std::filesystem::path>> m_files;  // temporary, final
};

}  // namespace

void write_file_atomically(const std::filesystem::path& file, const std::string& content) {
  const std::filesystem::path temporary = write_temporary(file, content);
  if (::rename(temporary.c_str(), file.c_str()) != 0) {
    const int error = errno;
    ::unlink(temporary.c_str());
    throw OutputError("cannot write '" + file.string() + "': rename failed: " + errno_text(error),
                          exit_code::output_error);
  }
}

namespace {

// millepede.res of `checkinput`: start values, pre-sigmas, entries, constraints and status of
// every label, in pede's layout; with `checkinput 2` where each label appears.
std::string input_statistics_text(const SolveResult& result) {
  std::string out;
  out += ListLine().text("*** Results of checking input only, no solution performed ***").str();
  out += ListLine().text("! fixed-1: by pre-sigma, -2: by entries cut, -3: by iterated entries cut").str();
  out += ListLine().text("!      Label       Value     Pre-sigma         Entries Constraints  Status ").str();
  const auto sorted = sorted_parameters(result);
  for (const ParameterResult* p : sorted) {
    out += " !";
    out += p->group_start ? '>' : ' ';
    out += fortran_i(p->label, 10);
    out += "  ";
    out += format_g14_5(p->value);
    out += format_g14_5(p->presigma);
    out += fortran_i(p->entries_files, 12);
    out += fortran_i(p->constraints, 12);
    if (p->variable) {
      out += "  variable";
    } else {
      out += "  fixed";
      out += fortran_i(p->fixed_by, 2);
    }
    out += '\n';
  }
  if (!result.appearance.empty()) {
    out += ListLine().text("! ").str();
    out += ListLine().text("! Appearance statistics ").str();
    out += ListLine().text("!      Label  First file and record  Last file and record   #files  #paired-par").str();
    for (const ParameterResult* p : sorted) {
      const Appearance& a = result.appearance[static_cast<std::size_t>(p - result.parameters.data())];
      out += " !." + fortran_i(p->label, 10) + fortran_i(a.first_file, 11) + fortran_i(a.first_record, 11) +
             fortran_i(a.last_file, 11) + fortran_i(a.last_record, 11) + fortran_i(a.files, 11) +
             fortran_i(a.paired, 11) + "\n";
    }
  }
  return out;
}

}  // namespace

std::string res_text(const SolveResult& result, const Steering& steering) {
  if (result.input_check) {
    return input_statistics_text(result);
  }
  std::string out = " Parameter   ! first 3 elements per line are significant (if used as input)\n";
  const bool counts = steering.printcounts != 0;
  for (const ParameterResult* p : sorted_parameters(result)) {
    out += fortran_i(p->label, 10) + "  " + format_g14_5(p->value) + format_g14_5(p->presigma);
    if (!p->variable) {
      // pede counts accepted entries for variable parameters only.
      if (counts) out += std::string(28, ' ') + fortran_i(steering.printcounts > 1 ? p->entries_files : 0, 12);
    } else {
      const std::int64_t count = steering.printcounts > 1 ? p->entries_files : p->entries_accepted;
      out += format_g14_5(p->difference);
      if (result.has_errors) {
        out += format_g14_5(p->error);
        if (counts) {
          out += fortran_i(count, 12);
        } else if (steering.globalcorr) {
          const double gcor = std::isnan(p->global_correlation) ? -1.0 : p->global_correlation;
          out += fortran_f(as_real4(gcor), 8, 3);
        }
      } else if (counts) {
        out += std::string(14, ' ') + fortran_i(count, 12);
      }
    }
    out += '\n';
  }
  return out;
}

std::vector<std::int64_t> eve_selection(const std::vector<double>& eigenvalues) {
  return detail::eve_selection(eigenvalues, 16);
}

std::string eve_text(const SolveResult& result) {
  const auto& eigen = result.eigen;
  const auto n = static_cast<std::int64_t>(eigen.eigenvalues.size());
  std::string out;
  for (const std::int64_t index : eve_selection(eigen.eigenvalues)) {
    const auto it = std::find_if(eigen.eigenvectors.begin(), eigen.eigenvectors.end(),
                                 [&](const auto& v) { return v.first == index; });
    if (it == eigen.eigenvectors.end()) {
      throw RuntimeError("millepede.eve: eigenvector " + std::to_string(n - index) +
                         " (eigenvalue index " + std::to_string(index) +
                         " ascending) is missing from the result; eve_selection() lists those needed");
    }
    out += ListLine()
               .text("Eigenvector ")
               .integer(n - index)
               .text(" with eigenvalue")
               .real8(eigen.eigenvalues[static_cast<std::size_t>(index)])
               .str();
    const std::vector<double>& components = it->second;
    const std::size_t n_variable = result.variable_labels.size();
    for (std::size_t j = 0; j < components.size(); ++j) {
      // Components beyond the variable parameters belong to Lagrange multipliers: labels -1, -2, ...
      const std::int64_t label = j < n_variable ? result.variable_labels[j]
                                                : -static_cast<std::int64_t>(j - n_variable + 1);
      if (j % 3 != 0) out += "  ";
      out += fortran_i(label, 11) + fortran_f(as_real4(components[j]), 11, 7);
      if (j % 3 == 2 || j + 1 == components.size()) out += '\n';
    }
    out += ListLine().text(" ").str();
  }
  return out;
}

std::string end_text(int exit_code, const std::string& message) {
  return " " + fortran_i(exit_code, 4) + "   " + one_line(message) + "\n";
}

std::string log_text(const SolveResult& result, const Steering& steering) {
  std::string out;
  const std::string blank = ListLine().text(" ").str();
  out += ListLine().text("Log-file gpede (Millepede II compatible)       ").text(date_text()).str();
  out += blank;
  out += ListLine().text("Steering file: ").text(steering.steering_file.string()).str();
  out += ListLine().text("Text and data files:").str();
  int number = 0;
  const auto file_line = [&](const char* kind, const std::filesystem::path& path) {
    char kind_field[16];
    std::snprintf(kind_field, sizeof kind_field, "%-14.14s", kind);
    out += fortran_i(++number, 3) + "  " + kind_field + "   " + path.string() + "\n";
  };
  for (const auto& path : steering.text_files) file_line("text", path);
  for (const auto& spec : steering.binary_files) {
    file_line(spec.format == MilleFormat::fortran_binary ? "Fortran_binary" : "C_binary", spec.path);
    if (spec.weight != 1.0) out += ListLine().text("     with weight").real8(spec.weight).str();
  }
  out += blank;

  std::int64_t n_variable = 0;
  for (const auto& p : result.parameters) n_variable += p.variable ? 1 : 0;
  out += count_line("NREC", result.records_read, "number of records");
  out += count_line("MREQENF", steering.entries_files,
                    steering.count_records ? "required number of entries (recs in binary files)"
                                           : "required number of entries (eqns in binary files)");
  if (steering.entries_iterate > steering.entries_files) {
    out += count_line("ITEREN", steering.entries_iterate, "iterate cut for parameters with less entries");
  }
  out += count_line("MREQENA", steering.entries_accepted, "required number of entries (from accepted fits)");
  out += blank;
  out += count_line("NTGB", static_cast<std::int64_t>(result.parameters.size()), "total number of parameters");
  out += count_line("NVGB", n_variable, "number of variable parameters");
  out += count_line("NFGB", result.nfgb, "number of fit parameters");
  out += count_line("NCGB", result.n_constraints, "number of constraints");
  out += blank;

  if (result.input_check) {
    out += ListLine().text("!!!   Checking input only, no calculation of a solution   !!!").str();
    out += blank;
  } else {
    out += ListLine().text("Solution method:").str();
    switch (result.method) {
      case Method::inversion:
        out += ListLine().text("     METSOL = 1:  matrix inversion").str();
        break;
      case Method::diagonalization:
        out += ListLine().text("     METSOL = 2:  diagonalization").str();
        break;
      case Method::decomposition:
        out += ListLine().text("     METSOL = 3:  decomposition").str();
        break;
      case Method::minres:
        out += ListLine()
                   .text(steering.minres_qlp ? "     METSOL = 5:  MINRES-QLP (rtol" : "     METSOL = 4:  MINRES (rtol")
                   .text(fortran_e(steering.minres_tolerance, 10, 2))
                   .text(")")
                   .str();
        break;
    }
    out += ListLine().text("                  with").integer(steering.iterations).text(" iterations").str();
    if (steering.method_name != method_name(result.method)) {
      out += ListLine().text("                  (steered as ").text(printable(steering.method_name, 80)).text(")").str();
    }
    if (result.method == Method::minres) {
      // pede's words for the preconditioner
      const int w = steering.minres_bandwidth;
      out += ListLine().text("                  pre-conditioning: ")
                 .text(w < 0 ? "none" : w == 0 ? "diagonal" : "band-matrix, width " + std::to_string(w) +
                                                                 (steering.minres_band_skyline ? ", dependent rows kept as their diagonal" : ""))
                 .str();
    }
    out += " Convergence assumed, if expected dF <" + fortran_e(steering.dflim, 12, 4) + "\n";
    out += ListLine()
               .text(result.constraint_mode == ConstraintMode::multipliers
                         ? "Constraints handled by Lagrange multipliers"
                         : "Constraints handled by elimination")
               .str();
    out += ListLine().text("Backend: ").text(result.backend).str();
    out += ListLine().text("Matrix storage: ").text(result.matrix_storage.empty() ? "full (dense)" : result.matrix_storage).str();
    if (steering.chisqcut1 != 0.0) {
      out += ListLine().text("Chi square cut equiv 3 st.dev applied ...").str();
      out += ListLine().text(" in  first iteration with factor").real4(static_cast<float>(steering.chisqcut1)).str();
      out += ListLine().text(" in second iteration with factor").real4(static_cast<float>(steering.chisqcut2)).str();
      out += ListLine().text(" (reduced by sqrt in next iterations)").str();
    }
    if (steering.outlier_downweighting != 0) {
      out += ListLine().text("Down-weighting of outliers in").integer(steering.outlier_downweighting).text(" iterations").str();
      out += ListLine().text("Cut on downweight fraction").real4(static_cast<float>(steering.dwfractioncut)).str();
    }
    out += blank;
  }

  // The run's account, in order: feasibility, rank checks, line searches, warnings.
  for (const auto& line : result.log) out += one_line(line) + "\n";
  out += blank;

  if (!result.iterations.empty()) {
    // pede's table (the columns that gpede fills), one line per pass; FMS: function, matrix.
    out += " it fc   fcn_value dfcn_exp  slpr costh  iit st ls  step cutf rejects hhmmss FMS\n";
    out += " -- -- ----------- --------  ---- -----  --- -- -- ----- ---- ------- ------ ---\n";
    for (const auto& it : result.iterations) {
      out += fortran_i(it.iteration, 3) + fortran_i(it.function_calls, 3) + fortran_e(it.function_value, 12, 5);
      if (it.function_calls == 1) {
        out += std::string(38, ' ');
      } else {
        out += " " + fortran_e(it.expected_decrease, 8, 2);
        if (it.minres_iterations >= 0) {
          out += std::string(12, ' ') + fortran_i(std::min<std::int64_t>(it.minres_iterations, 99999), 5) +
                 fortran_i(it.minres_stop, 3) + std::string(9, ' ');
        } else {
          out += std::string(29, ' ');
        }
      }
      out += fortran_f(it.cut_factor, 5, 1) + " " + fortran_i(std::min<std::int64_t>(it.rejects, 9999999), 7) +
             hhmmss(it.seconds) + (it.matrix ? " FM" : " F ") + "\n";
    }
    out += blank;
  }
  if (result.exit_code < 10 && !result.input_check) {
    out += chi2_summary(result);
    out += count_line("NREC", result.records_read, "number of records read");
    out += count_line("NRECUSED", result.records_used, "records accepted in the last pass");
    out += count_line("NRECREJ", result.records_rejected, "records rejected in the last pass");
    if (result.records_rejected > 0) {
      out += ListLine().text("Data rejected in last iteration:   ").str();
      out += ListLine()
                 .text("  ")
                 .integer(result.rejected_rank)
                 .text(" (rank deficit/NaN) ")
                 .integer(result.rejected_ndf)
                 .text(" (Ndf=0)   ")
                 .integer(result.rejected_huge)
                 .text(" (huge)   ")
                 .integer(result.rejected_large)
                 .text(" (large)")
                 .str();
    }
    out += blank;
    out += ListLine().text("In total 2 +").integer(result.passes).text(" loops through the data files").str();
    if (result.method == Method::minres) {
      out += ListLine().text("In total").integer(result.minres_iterations).text(" internal MINRES iterations").str();
    }
  }
  if (!steering.warnings.empty() || !result.warnings.empty()) {
    out += blank;
    out += ListLine().text("Warnings:").str();
    for (const auto& w : steering.warnings) out += ListLine().text(one_line(w)).str();
    for (const auto& w : result.warnings) out += ListLine().text(one_line(w)).str();
  }
  out += blank;
  const PhaseFigures& f = result.figures;
  out += " Times [in sec] for reading and label map" + fortran_f(f.reading_s, 12, 3) + "\n";
  out += "                    local fits only      " + fortran_f(f.local_fits_s, 12, 3) + "\n";
  out += "                    local fits and matrix" + fortran_f(f.matrix_s, 12, 3) + "\n";
  out += "                    solution             " + fortran_f(f.solving_s, 12, 3) + "\n";
  out += "                    result files         " + fortran_f(f.output_s, 12, 3) + "\n";
  out += "                    total                " + fortran_f(f.total_s, 12, 3) + "\n";
  out += blank;
  out += "      Peak resident memory:           " +
         fortran_f(static_cast<double>(f.peak_rss_bytes) * 1.0e-9, 11, 6) + " GB\n";
  out += blank;
  out += " Exit code " + std::to_string(result.exit_code) + ": " + one_line(result.message) + "\n";
  out += ListLine().text("end                                            ").text(date_text()).str();
  return out;
}

std::string chi2_summary(const SolveResult& result) {
  std::string out;
  const std::string blank = ListLine().text(" ").str();
  out += blank;
  // pede prints the counts as INTEGER(4).
  if (!result.weighted_files) {
    out += ListLine().text("Sum(Chi^2)/Sum(Ndf) =").real8(result.chi2_sum).str();
    out += ListLine().text("                    / (").integer(result.ndf_sum).text("-").integer(result.nfgb).text(")").str();
    out += ListLine().text("                    =").real8(result.chi2_ndf).str();
  } else {
    out += ListLine().text("Sum(W*Chi^2)/Sum(Ndf)/<W> =").real8(result.chi2_sum).str();
    out += ListLine().text("                          / (").integer(result.ndf_sum).text("-").integer(result.nfgb).text(")").str();
    out += ListLine().text("                          /").real8(result.mean_weight).str();
    out += ListLine().text("                          =").real8(result.chi2_ndf).str();
  }
  out += blank;
  if (result.chi2_ndf_downweighting != 0.0) {
    out += ListLine()
               .text("            with correction for down-weighting   ")
               .real4(static_cast<float>(result.chi2_ndf_downweighting))
               .str();
  }
  return out;
}

std::string ending_lines(const SolveResult& result) {
  std::string out;
  const std::string blank = ListLine().text(" ").str();
  out += blank;
  out += ListLine().text("  <  Millepede II-P ending   ... ").text(date_text()).str();
  out += blank;
  out += "      Peak dynamic memory allocation: " +
         fortran_f(static_cast<double>(result.figures.peak_rss_bytes) * 1.0e-9, 11, 6) + " GB\n";
  out += blank;
  return out;
}

namespace {

/// A time-dependent parameter: its label in the steering, its interval, its result.
struct IntervalParameter {
  std::int32_t label = 0;
  std::int64_t interval = 0;
  const ParameterResult* result = nullptr;
};

std::vector<IntervalParameter> interval_parameters(const SolveResult& result, const Steering& steering) {
  std::vector<IntervalParameter> rows;
  const TimeDependenceSpec& td = steering.time_dependence;
  const std::int64_t stride = result.time_stride;
  if (!td.active() || stride <= 0) return rows;
  for (const ParameterResult& p : result.parameters) {
    const auto base = static_cast<std::int32_t>(p.label % stride);
    if (!td.varies(base)) continue;
    rows.push_back({base, p.label / stride, &p});
  }
  std::sort(rows.begin(), rows.end(), [](const IntervalParameter& a, const IntervalParameter& b) {
    return a.label != b.label ? a.label < b.label : a.interval < b.interval;
  });
  return rows;
}

std::string time_or(std::int64_t t, const char* none) { return t == kNoTime ? std::string(none) : time_text(t); }

}  // namespace

std::string intervals_text(const SolveResult& result, const Steering& steering) {
  std::string out;
  char line[320];
  out += "* gpede: time-dependent parameters, one line per label and interval of record times.\n";
  out += "* Interval k of label L is label L + k * " + std::to_string(result.time_stride) +
         " in millepede.res. Times are run or experiment:run;\n";
  out += "* an interval runs from its start up to (not including) the next interval's start.\n";
  const IntervalSearchResult& search = result.interval_search;
  if (search.runs > 0) {
    std::snprintf(line, sizeof line,
                  "* intervals auto: %lld runs, %lld time-dependent parameters, penalty %.2f in chi2 per start%s%s\n",
                  static_cast<long long>(search.runs), static_cast<long long>(search.parameters), search.penalty,
                  search.penalty_default ? " (default)" : "",
                  search.full_blocks ? "" : ", each parameter alone");
    out += line;
    for (std::size_t s = 0; s < search.starts.size(); ++s) {
      std::snprintf(line, sizeof line, "*   start at %s: chi2 gain %.2f\n", time_text(search.starts[s]).c_str(),
                    search.gains[s]);
      out += line;
    }
  }
  out += "* interval   start     next   records   first_run   last_run\n";
  for (std::size_t k = 0; k < result.time_intervals.size(); ++k) {
    const TimeInterval& i = result.time_intervals[k];
    std::snprintf(line, sizeof line, "* %8zu %8s %8s %9lld %11s %10s\n", k, time_or(i.begin, "-").c_str(),
                  time_or(i.end, "-").c_str(), static_cast<long long>(i.records), time_or(i.first_seen, "-").c_str(),
                  time_or(i.last_seen, "-").c_str());
    out += line;
  }
  out += "*     label  interval  parameter   first_run    last_run                value                error\n";
  for (const IntervalParameter& row : interval_parameters(result, steering)) {
    const ParameterResult& p = *row.result;
    const TimeInterval* i = row.interval < static_cast<std::int64_t>(result.time_intervals.size())
                                ? &result.time_intervals[static_cast<std::size_t>(row.interval)]
                                : nullptr;
    std::snprintf(line, sizeof line, "%11d %9lld %10d %11s %11s %20.12e %20.12e\n", row.label,
                  static_cast<long long>(row.interval), p.label, i ? time_or(i->first_seen, "-").c_str() : "-",
                  i ? time_or(i->last_seen, "-").c_str() : "-", p.value, p.error);
    out += line;
  }
  return out;
}

std::string json_text(const SolveResult& result, const Steering& steering) {
  using json = nlohmann::ordered_json;  // keys in the order written
  const PhaseFigures& f = result.figures;
  // The values built with nlohmann::json; the layout (a line per key, per iteration and per
  // parameter) written here, so that a file of 200,000 parameters stays one line per parameter.
  std::vector<std::pair<std::string, json>> top;
  top.emplace_back("schema_version", kJsonSchemaVersion);
  top.emplace_back("gpede_version", version());
  top.emplace_back("steering_file", valid_utf8(steering.steering_file.string()));
  top.emplace_back("method", method_name(result.method));
  top.emplace_back("method_steered", valid_utf8(steering.method_name));
  top.emplace_back("constraint_mode", constraint_text(result.constraint_mode));
  top.emplace_back("backend", result.backend);
  top.emplace_back("threads", result.threads);
  top.emplace_back("cpu_model", result.cpu_model.empty() ? json(nullptr) : json(valid_utf8(result.cpu_model)));
  top.emplace_back("gpu_model", result.gpu_model.empty() ? json(nullptr) : json(valid_utf8(result.gpu_model)));
  top.emplace_back("exit_code", result.exit_code);
  top.emplace_back("message", valid_utf8(result.message));
  top.emplace_back("chi2_sum", json_number(result.chi2_sum));
  top.emplace_back("ndf_sum", result.ndf_sum);
  top.emplace_back("nfgb", result.nfgb);
  top.emplace_back("chi2_ndf", json_number(result.chi2_ndf));
  top.emplace_back("has_errors", result.has_errors);
  top.emplace_back("matrix_storage", result.matrix_storage.empty() ? "dense" : result.matrix_storage);
  top.emplace_back("constraints", result.n_constraints);
  top.emplace_back("records", json{{"read", result.records_read}, {"used", result.records_used},
                                   {"rejected", result.records_rejected}});
  json iterations = json::array();
  for (const auto& it : result.iterations) {
    iterations.push_back(json{{"iteration", it.iteration},
                              {"function_calls", it.function_calls},
                              {"function_value", json_number(it.function_value)},
                              {"expected_decrease", json_number(it.expected_decrease)},
                              {"cut_factor", json_number(it.cut_factor)},
                              {"rejects", it.rejects},
                              {"seconds", json_number(it.seconds)}});
  }
  top.emplace_back("iterations", std::move(iterations));
  top.emplace_back("phases", json{{"reading_s", json_number(f.reading_s)},
                                  {"local_fits_s", json_number(f.local_fits_s)},
                                  {"matrix_s", json_number(f.matrix_s)},
                                  {"solving_s", json_number(f.solving_s)},
                                  {"output_s", json_number(f.output_s)},
                                  {"total_s", json_number(f.total_s)},
                                  {"peak_rss_bytes", f.peak_rss_bytes},
                                  {"peak_after_reading_bytes", f.peak_after_reading_bytes},
                                  {"peak_after_passes_bytes", f.peak_after_passes_bytes},
                                  {"peak_after_solving_bytes", f.peak_after_solving_bytes}});
  json warnings = json::array();
  for (const auto* list : {&steering.warnings, &result.warnings}) {
    for (const auto& w : *list) warnings.push_back(valid_utf8(w));
  }
  top.emplace_back("warnings", std::move(warnings));
  if (!result.covariance.labels.empty()) {
    const CovarianceBlock& block = result.covariance;
    const std::size_t k = block.labels.size();
    json matrix = json::array();
    for (std::size_t i = 0; i < k; ++i) {
      json row = json::array();
      for (std::size_t j = 0; j < k; ++j) row.push_back(json_number(block.matrix[i * k + j]));
      matrix.push_back(std::move(row));
    }
    top.emplace_back("covariance", json{{"labels", block.labels}, {"matrix", std::move(matrix)}});
  }
  if (!result.time_intervals.empty()) {
    const auto time_json = [](std::int64_t t) { return t == kNoTime ? json(nullptr) : json(time_text(t)); };
    json intervals = json::array();
    for (const TimeInterval& i : result.time_intervals) {
      intervals.push_back(json{{"start", time_json(i.begin)}, {"next", time_json(i.end)}, {"records", i.records},
                               {"first_run", time_json(i.first_seen)}, {"last_run", time_json(i.last_seen)}});
    }
    json parameters = json::array();
    for (const IntervalParameter& row : interval_parameters(result, steering)) {
      parameters.push_back(json{{"label", row.label}, {"interval", row.interval}, {"parameter", row.result->label},
                                {"value", json_number(row.result->value)}, {"error", json_number(row.result->error)}});
    }
    top.emplace_back("time_stride", result.time_stride);
    const IntervalSearchResult& search = result.interval_search;
    if (search.runs > 0) {
      json starts = json::array();
      for (std::size_t s = 0; s < search.starts.size(); ++s) {
        starts.push_back(json{{"start", time_json(search.starts[s])}, {"chi2_gain", json_number(search.gains[s])}});
      }
      top.emplace_back("interval_search", json{{"runs", search.runs}, {"parameters", search.parameters},
                                               {"penalty", json_number(search.penalty)},
                                               {"penalty_default", search.penalty_default},
                                               {"covariance_blocks", search.full_blocks},
                                               {"chi2_one_interval", json_number(search.shared_chi2)},
                                               {"statistics_bytes", search.statistics_bytes},
                                               {"statistics_s", json_number(search.statistics_s)},
                                               {"search_s", json_number(search.search_s)},
                                               {"starts", std::move(starts)}});
    }
    top.emplace_back("time_intervals", std::move(intervals));
    top.emplace_back("time_dependent_parameters", std::move(parameters));
  }
  if (!result.eigen.eigenvalues.empty()) {
    json eigenvalues = json::array();
    for (const double w : result.eigen.eigenvalues) eigenvalues.push_back(json_number(w));
    top.emplace_back("eigenvalues", std::move(eigenvalues));
  }
  std::string out = "{\n";
  const auto dump = [](const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::strict); };
  for (const auto& [key, value] : top) {
    out += "  " + dump(json(key)) + ": ";
    if (value.is_array() && !value.empty() && value.front().is_object()) {
      out += "[";
      for (std::size_t i = 0; i < value.size(); ++i) out += (i ? ",\n    " : "\n    ") + dump(value[i]);
      out += "\n  ]";
    } else {
      out += dump(value);
    }
    out += ",\n";
  }
  // The parameters last, one per line, with their keys in the order above.
  out += "  \"parameters\": [";
  {
    std::size_t i = 0;
    for (const ParameterResult* p : sorted_parameters(result)) {
      json entry;
      entry["label"] = p->label;
      entry["value"] = json_number(p->value);
      entry["presigma"] = json_number(p->presigma);
      entry["variable"] = p->variable;
      entry["difference"] = json_number(p->difference);
      entry["error"] = json_number(p->error);
      entry["global_correlation"] = json_number(p->global_correlation);
      entry["entries_files"] = p->entries_files;
      entry["entries_accepted"] = p->entries_accepted;
      out += (i++ ? ",\n    " : "\n    ") + dump(entry);
    }
    out += i > 0 ? "\n  ]\n" : "]\n";
  }
  out += "}\n";
  return out;
}

void write_res(const std::filesystem::path& file, const SolveResult& result, const Steering& steering) {
  write_file_atomically(file, res_text(result, steering));
}

void write_eve(const std::filesystem::path& file, const SolveResult& result) {
  write_file_atomically(file, eve_text(result));
}

void write_end(const std::filesystem::path& file, int exit_code, const std::string& message) {
  write_file_atomically(file, end_text(exit_code, message));
}

void write_log(const std::filesystem::path& file, const SolveResult& result, const Steering& steering) {
  write_file_atomically(file, log_text(result, steering));
}

void write_json(const std::filesystem::path& file, const SolveResult& result, const Steering& steering) {
  write_file_atomically(file, json_text(result, steering));
}

void write_results(const std::filesystem::path& folder, SolveResult& result, const Steering& steering) {
  const auto t0 = std::chrono::steady_clock::now();
  // Every file is written to a temporary name first; only when all are whole are they renamed,
  // millepede.end last. A failure (a full disk) leaves the folder as it was.
  StagedFiles staged;
  if (result.exit_code < 10) {
    staged.stage(folder / "millepede.res", res_text(result, steering));
    if (steering.method == Method::diagonalization && !result.input_check) {
      staged.stage(folder / "millepede.eve", eve_text(result));
    }
    if (!result.time_intervals.empty() && !result.input_check) {
      staged.stage(folder / "gpede_intervals.txt", intervals_text(result, steering));
    }
  }
  result.figures.output_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  staged.stage(folder / "millepede.log", log_text(result, steering));
  staged.stage(folder / "gpede.json", json_text(result, steering));
  staged.stage(folder / "millepede.end", end_text(result.exit_code, result.message));
  staged.commit();
}

}  // namespace gpede
