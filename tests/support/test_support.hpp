// Shared helpers of the test suites: where the reference data is, temporary folders.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gpede/record_batch.hpp"

namespace gpede::test {

/// ../shared/reference beside the project (or $GPEDE_REFERENCE_DIR). Empty path if absent.
std::filesystem::path reference_dir();

/// Skips the current test (or fails it when CI=true) if the reference folder is missing.
/// Use as: GPEDE_REQUIRE_REFERENCE(); at the top of a test.
#define GPEDE_REQUIRE_REFERENCE()                                                                     \
  do {                                                                                                \
    if (::gpede::test::reference_dir().empty()) {                                                     \
      if (::gpede::test::running_in_ci()) {                                                           \
        FAIL() << "reference data folder " << ::gpede::test::expected_reference_dir()                 \
               << " is missing (CI=true)";                                                            \
      }                                                                                               \
      GTEST_SKIP() << "reference data folder " << ::gpede::test::expected_reference_dir()             \
                   << " not found";                                                                   \
    }                                                                                                 \
  } while (0)

bool running_in_ci();
std::filesystem::path expected_reference_dir();

/// Solves the dense square system a x = b (a row-major, size b.size()) in long double by
/// Gaussian elimination with partial pivoting: the independent reference of the solver tests.
std::vector<long double> solve_long_double(std::vector<long double> a, std::vector<long double> b);

/// A fresh empty folder under the system temp dir, removed by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return m_path; }

 private:
  std::filesystem::path m_path;
};

/// Path of the built gpede command-line tool ($GPEDE_TEST_BINARY if set).
std::filesystem::path gpede_binary();

/// Runs a shell command, returns its exit status; stdout+stderr go to `output` if non-null.
int run_command(const std::string& command, std::string* output = nullptr);

/// Expects two batches to hold the same records, field by field (global_index too, unless
/// with_global_index is false).
void expect_same_records(const RecordBatch& a, const RecordBatch& b, bool with_global_index = true);

/// One line of a millepede.res file: the numbers after the label.
struct ResLine {
  std::vector<double> columns;  ///< value, presigma, [difference, [error]]
};

/// millepede.res by label. Adds a test failure if the file cannot be opened or lacks the header.
std::map<int, ResLine> read_res(const std::filesystem::path& file);

}  // namespace gpede::test
