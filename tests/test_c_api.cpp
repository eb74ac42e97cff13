// The C API (include/gpede/gpede.h, libgpede_c): pede's sl0 reference problem solved through it
// from the steering's files and from records built in memory with Mille's calls, both against
// pede's millepede.res; bad records refused with messages that name them; a run stopped from the
// log callback; bad arguments as statuses, never a crash.
#include "gpede/gpede.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "gpede/mille.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using gpede::test::TempDir;

// A steering file for sl0 with absolute paths; the binary file only if with_binary.
fs::path write_sl0_steering(const fs::path& folder, bool with_binary) {
  const fs::path sl0 = gpede::test::reference_dir() / "sl0";
  std::ofstream out(folder / "steer.txt");
  out << "Fortranfiles\n" << (sl0 / "mp2con.txt").string() << "\n";
  if (with_binary) out << (sl0 / "mp2tst.bin.gz").string() << "\n";
  out << "method inversion 3 0.001\nend\n";
  return folder / "steer.txt";
}

// Every parameter against pede's millepede.res: the value within 1 % of its error (or half a unit of
// the 5 printed digits), the error within 1e-3 relative.
void expect_pede_results(const gpede_result* result) {
  const auto pede = gpede::test::read_res(gpede::test::reference_dir() / "sl0" / "pede" / "inversion" / "millepede.res");
  ASSERT_EQ(gpede_result_parameter_count(result), pede.size());
  for (std::size_t i = 0; i < gpede_result_parameter_count(result); ++i) {
    gpede_parameter p;
    ASSERT_EQ(gpede_result_parameter(result, i, &p), GPEDE_OK) << gpede_last_error();
    const auto it = pede.find(p.label);
    ASSERT_NE(it, pede.end()) << "label " << p.label;
    const std::vector<double>& q = it->second.columns;
    ASSERT_GE(q.size(), 2u) << "label " << p.label;
    const double printed = 5e-5 * std::fabs(q[0]);
    if (q.size() < 4) {  // a parameter fixed by the entries cut: no error column
      EXPECT_FALSE(p.variable) << "label " << p.label;
      EXPECT_LE(std::fabs(p.value - q[0]), printed + 1e-12) << "label " << p.label;
      continue;
    }
    EXPECT_TRUE(p.variable) << "label " << p.label;
    EXPECT_LE(std::fabs(p.value - q[0]), std::max(0.01 * q[3], printed) + 1e-12) << "label " << p.label;
    EXPECT_LE(std::fabs(p.error - q[3]), 1e-3 * q[3] + 5e-5 * q[3]) << "label " << p.label;
  }
}

TEST(CApi, VersionAndErrorsOfNullArguments) {
  EXPECT_EQ(gpede_c_api_version(), GPEDE_C_API_VERSION);
  EXPECT_FALSE(std::string(gpede_version()).empty());
  gpede_steering* steering = reinterpret_cast<gpede_steering*>(1);
  EXPECT_EQ(gpede_steering_read(nullptr, &steering), GPEDE_ERROR_INPUT);
  EXPECT_EQ(steering, nullptr);
  EXPECT_NE(std::string(gpede_last_error()).find("path is NULL"), std::string::npos) << gpede_last_error();
  gpede_result* result = nullptr;
  EXPECT_EQ(gpede_solve(nullptr, nullptr, nullptr, &result), GPEDE_ERROR_INPUT);
  EXPECT_EQ(result, nullptr);
  EXPECT_EQ(gpede_result_parameter_count(nullptr), 0u);
  gpede_steering_free(nullptr);
  gpede_records_free(nullptr);
  gpede_result_free(nullptr);
}

TEST(CApi, AMissingSteeringFileIsAnInputErrorNamingIt) {
  TempDir dir("capi-missing");
  gpede_steering* steering = nullptr;
  const std::string path = (dir.path() / "no-such-steering.txt").string();
  EXPECT_EQ(gpede_steering_read(path.c_str(), &steering), GPEDE_ERROR_INPUT);
  EXPECT_EQ(steering, nullptr);
  EXPECT_NE(std::string(gpede_last_error()).find("no-such-steering.txt"), std::string::npos) << gpede_last_error();
}

TEST(CApi, SolvesSl0FromItsFilesAsPede) {
  GPEDE_REQUIRE_REFERENCE();
  TempDir dir("capi-sl0");
  gpede_steering* steering = nullptr;
  ASSERT_EQ(gpede_steering_read(write_sl0_steering(dir.path(), true).c_str(), &steering), GPEDE_OK)
      << gpede_last_error();
  gpede_options options = gpede_options_default();
  options.threads = 2;
  // The covariance of the first three fitted labels of pede's millepede.res.
  const auto pede = gpede::test::read_res(gpede::test::reference_dir() / "sl0" / "pede" / "inversion" / "millepede.res");
  std::vector<std::int32_t> asked;
  for (const auto& [label, line] : pede) {
    if (line.columns.size() >= 4 && asked.size() < 3) asked.push_back(label);
  }
  options.covariance_labels = asked.data();
  options.n_covariance_labels = asked.size();
  gpede_result* result = nullptr;
  ASSERT_EQ(gpede_solve(steering, &options, nullptr, &result), GPEDE_OK) << gpede_last_error();
  EXPECT_LE(gpede_result_exit_code(result), 4) << gpede_result_message(result);  // solved (sl0 warns of bad records)
  EXPECT_GT(gpede_result_records_used(result), 0);
  expect_pede_results(result);
  ASSERT_EQ(gpede_result_covariance_size(result), 3u);
  std::vector<std::int32_t> labels(3);
  std::vector<double> covariance(9);
  ASSERT_EQ(gpede_result_covariance(result, labels.data(), covariance.data()), GPEDE_OK);
  EXPECT_EQ(labels, asked);
  for (std::size_t i = 0; i < 3; ++i) {
    const double error = pede.at(labels[i]).columns[3];
    EXPECT_NEAR(std::sqrt(covariance[4 * i]), error, 1.05e-3 * error) << "label " << labels[i];
  }
  gpede_parameter p;
  EXPECT_EQ(gpede_result_find(result, 2147483647, &p), GPEDE_ERROR_INPUT);
  EXPECT_NE(std::string(gpede_last_error()).find("no label 2147483647"), std::string::npos);
  gpede_parameter first;
  ASSERT_EQ(gpede_result_parameter(result, 0, &first), GPEDE_OK);
  ASSERT_EQ(gpede_result_find(result, first.label, &p), GPEDE_OK);
  EXPECT_EQ(p.value, first.value);
  EXPECT_EQ(gpede_result_parameter(result, gpede_result_parameter_count(result), &p), GPEDE_ERROR_INPUT);
  // pede's result files, whole.
  const fs::path out = dir.path() / "out";
  fs::create_directory(out);
  ASSERT_EQ(gpede_result_write(result, steering, out.c_str()), GPEDE_OK) << gpede_last_error();
  for (const char* name : {"millepede.res", "millepede.log", "millepede.end", "gpede.json"}) {
    EXPECT_TRUE(fs::exists(out / name)) << name;
  }
  gpede_result_free(result);
  gpede_steering_free(steering);
}

TEST(CApi, RecordsBuiltWithMillesCallsSolveSl0AsPede) {
  // sl0's records read with gpede's own reader, handed over one measurement at a time as
  // Mille::mille would, with dense local derivatives and zeros among them.
  GPEDE_REQUIRE_REFERENCE();
  gpede::MilleFileSpec spec;
  spec.path = gpede::test::reference_dir() / "sl0" / "mp2tst.bin.gz";
  spec.format = gpede::MilleFormat::fortran_binary;
  gpede::MilleReader reader(spec, 0);
  gpede::RecordBatch batch;
  while (reader.read(batch, 100000) > 0) {
  }
  ASSERT_GT(batch.n_records(), 0u);
  gpede_records* records = nullptr;
  ASSERT_EQ(gpede_records_new(&records), GPEDE_OK);
  for (std::size_t r = 0; r < batch.n_records(); ++r) {
    for (std::int64_t m = batch.record_begin[r]; m < batch.record_begin[r + 1]; ++m) {
      std::vector<double> local;
      for (std::int64_t k = batch.local_begin[m]; k < batch.local_begin[m + 1]; ++k) {
        const auto index = static_cast<std::size_t>(batch.local_index[k]);
        if (local.size() <= index) local.resize(index + 1, 0.0);
        local[index] = batch.local_deriv[k];
      }
      const std::int64_t g0 = batch.global_begin[m], g1 = batch.global_begin[m + 1];
      ASSERT_EQ(gpede_records_add_measurement(records, static_cast<int>(local.size()), local.data(),
                                              static_cast<int>(g1 - g0), batch.global_deriv.data() + g0,
                                              batch.global_label.data() + g0, batch.meas_value[m], batch.meas_sigma[m]),
                GPEDE_OK)
          << gpede_last_error();
    }
    ASSERT_EQ(gpede_records_end(records), GPEDE_OK) << gpede_last_error();
  }
  EXPECT_EQ(gpede_records_count(records), batch.n_records());
  TempDir dir("capi-records");
  gpede_steering* steering = nullptr;
  ASSERT_EQ(gpede_steering_read(write_sl0_steering(dir.path(), false).c_str(), &steering), GPEDE_OK)
      << gpede_last_error();
  gpede_result* result = nullptr;
  ASSERT_EQ(gpede_solve(steering, nullptr, records, &result), GPEDE_OK) << gpede_last_error();
  EXPECT_LE(gpede_result_exit_code(result), 4) << gpede_result_message(result);
  EXPECT_EQ(gpede_result_records_used(result) + gpede_result_records_rejected(result),
            static_cast<std::int64_t>(batch.n_records()));
  expect_pede_results(result);
  gpede_result_free(result);
  gpede_steering_free(steering);
  gpede_records_free(records);
}

TEST(CApi, BadMeasurementsAreRefusedNamingTheRecord) {
  gpede_records* records = nullptr;
  ASSERT_EQ(gpede_records_new(&records), GPEDE_OK);
  const double local[2] = {1.0, 0.5};
  const double global[2] = {1.0, -1.0};
  const std::int32_t labels[2] = {10, 20};
  const std::int32_t bad_labels[2] = {10, 0};
  ASSERT_EQ(gpede_records_add_measurement(records, 2, local, 2, global, labels, 0.1, 0.01), GPEDE_OK);
  ASSERT_EQ(gpede_records_end(records), GPEDE_OK);
  struct Case {
    double value, sigma;
    const std::int32_t* labels;
    const char* says;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const Case& c : {Case{0.1, 0.0, labels, "sigma"}, Case{0.1, -1.0, labels, "sigma"},
                        Case{nan, 0.01, labels, "measurement is not finite"},
                        Case{0.1, 0.01, bad_labels, "label 0"}}) {
    // a good measurement first: the bad one discards the whole record
    ASSERT_EQ(gpede_records_add_measurement(records, 2, local, 2, global, labels, 0.1, 0.01), GPEDE_OK);
    EXPECT_EQ(gpede_records_add_measurement(records, 2, local, 2, global, c.labels, c.value, c.sigma),
              GPEDE_ERROR_INPUT);
    const std::string message = gpede_last_error();
    EXPECT_NE(message.find("record 2, measurement 2"), std::string::npos) << message;
    EXPECT_NE(message.find(c.says), std::string::npos) << message;
    EXPECT_EQ(gpede_records_end(records), GPEDE_ERROR_INPUT);  // nothing left to end
    EXPECT_NE(std::string(gpede_last_error()).find("record 2 has no measurements"), std::string::npos);
  }
  EXPECT_EQ(gpede_records_add_measurement(records, 1, nullptr, 0, nullptr, nullptr, 0.1, 0.01), GPEDE_ERROR_INPUT);
  EXPECT_EQ(gpede_records_add_measurement(records, -1, local, 0, nullptr, nullptr, 0.1, 0.01), GPEDE_ERROR_INPUT);
  EXPECT_EQ(gpede_records_count(records), 1u);
  gpede_records_free(records);
}

TEST(CApi, TheLogCallbackStopsARun) {
  GPEDE_REQUIRE_REFERENCE();
  TempDir dir("capi-stop");
  gpede_steering* steering = nullptr;
  ASSERT_EQ(gpede_steering_read(write_sl0_steering(dir.path(), true).c_str(), &steering), GPEDE_OK)
      << gpede_last_error();
  int lines = 0;
  gpede_options options = gpede_options_default();
  options.log = [](const char* line, void* user) -> int {
    EXPECT_NE(line, nullptr);
    return ++*static_cast<int*>(user) >= 3 ? 1 : 0;
  };
  options.log_user = &lines;
  gpede_result* result = nullptr;
  EXPECT_EQ(gpede_solve(steering, &options, nullptr, &result), GPEDE_ERROR_INTERRUPTED) << gpede_last_error();
  EXPECT_EQ(result, nullptr);
  EXPECT_GE(lines, 3);
  options.log = nullptr;
  options.backend = 7;
  EXPECT_EQ(gpede_solve(steering, &options, nullptr, &result), GPEDE_ERROR_INPUT);
  EXPECT_NE(std::string(gpede_last_error()).find("unknown backend 7"), std::string::npos);
  gpede_steering_free(steering);
}

}  // namespace
