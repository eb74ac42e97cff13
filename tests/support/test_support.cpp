#include "test_support.hpp"

#include <array>
#include <cmath>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <utility>
#include <sys/wait.h>

#include <gtest/gtest.h>

namespace gpede::test {

std::filesystem::path expected_reference_dir() {
  if (const char* env = std::getenv("GPEDE_REFERENCE_DIR")) return env;
  return std::filesystem::path(GPEDE_SOURCE_DIR) / ".." / "shared" / "reference";
}

std::filesystem::path reference_dir() {
  auto dir = expected_reference_dir();
  if (std::filesystem::exists(dir / "sl0")) return std::filesystem::canonical(dir);
  return {};
}

bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

TempDir::TempDir(const std::string& tag) {
  static std::atomic<int> counter{0};
  std::random_device rd;
  m_path = std::filesystem::temp_directory_path() /
           ("gpede-test-" + tag + "-" + std::to_string(rd()) + "-" + std::to_string(counter++));
  std::filesystem::create_directories(m_path);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(m_path, ec);
}

std::filesystem::path gpede_binary() {
  // $GPEDE_TEST_BINARY runs the command-line tests against another build of the tool.
  const char* other = std::getenv("GPEDE_TEST_BINARY");
  return other != nullptr && *other != '\0' ? std::filesystem::path(other) : std::filesystem::path(GPEDE_BINARY);
}

int run_command(const std::string& command, std::string* output) {
  std::string full = command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) return -1;
  std::array<char, 4096> buf{};
  std::string out;
  while (std::fgets(buf.data(), buf.size(), pipe)) out += buf.data();
  int status = pclose(pipe);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void expect_same_records(const RecordBatch& a, const RecordBatch& b, bool with_global_index) {
  ASSERT_EQ(a.n_records(), b.n_records());
  EXPECT_EQ(a.record_begin, b.record_begin);
  EXPECT_EQ(a.record_weight, b.record_weight);
  EXPECT_EQ(a.record_file, b.record_file);
  EXPECT_EQ(a.record_number, b.record_number);
  EXPECT_EQ(a.meas_value, b.meas_value);
  EXPECT_EQ(a.meas_sigma, b.meas_sigma);
  EXPECT_EQ(a.local_begin, b.local_begin);
  EXPECT_EQ(a.global_begin, b.global_begin);
  EXPECT_EQ(a.local_index, b.local_index);
  EXPECT_EQ(a.local_deriv, b.local_deriv);
  EXPECT_EQ(a.global_label, b.global_label);
  if (with_global_index) EXPECT_EQ(a.global_index, b.global_index);
  EXPECT_EQ(a.global_deriv, b.global_deriv);
}

std::map<int, ResLine> read_res(const std::filesystem::path& file) {
  std::ifstream in(file);
  EXPECT_TRUE(in) << "cannot open " << file;
  std::map<int, ResLine> out;
  std::string line;
  std::getline(in, line);  // header
  EXPECT_NE(line.find("Parameter"), std::string::npos) << file << ": bad header '" << line << "'";
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    int label = 0;
    ls >> label;
    ResLine r;
    double x;
    while (ls >> x) r.columns.push_back(x);
    out[label] = r;
  }
  return out;
}

std::vector<long double> solve_long_double(std::vector<long double> a, std::vector<long double> b) {
  const std::size_t n = b.size();
  for (std::size_t k = 0; k < n; ++k) {
    std::size_t p = k;
    for (std::size_t i = k + 1; i < n; ++i) {
      if (std::fabs(a[i * n + k]) > std::fabs(a[p * n + k])) p = i;
    }
    if (p != k) {
      for (std::size_t j = 0; j < n; ++j) std::swap(a[k * n + j], a[p * n + j]);
      std::swap(b[k], b[p]);
    }
    for (std::size_t i = k + 1; i < n; ++i) {
      const long double f = a[i * n + k] / a[k * n + k];
      for (std::size_t j = k; j < n; ++j) a[i * n + j] -= f * a[k * n + j];
      b[i] -= f * b[k];
    }
  }
  std::vector<long double> x(n);
  for (std::size_t i = n; i-- > 0;) {
    long double s = b[i];
    for (std::size_t j = i + 1; j < n; ++j) s -= a[i * n + j] * x[j];
    x[i] = s / a[i * n + i];
  }
  return x;
}

}  // namespace gpede::test
