// Records built in memory (gpede/record_builder.hpp): every bad value refused with a message that
// names the record and the measurement, the record discarded whole and the others kept; and a
// solution from built records against the analytic answer of a two-plane telescope.
#include "gpede/record_builder.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>

#include "gpede/error.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"
#include "test_support.hpp"

namespace {

using gpede::InputError;
using gpede::RecordBuilder;

std::string refusal(RecordBuilder& records, double sigma, std::int32_t label, double local) {
  const double l[] = {local}, g[] = {1.0};
  const std::int32_t labels[] = {label};
  try {
    records.add_measurement(l, g, labels, 0.5, sigma);
  } catch (const InputError& e) {
    EXPECT_EQ(e.exit_code(), 20);
    return e.what();
  }
  return "";
}

TEST(RecordBuilder, BadValuesAreRefusedWithTheRecordAndMeasurement) {
  RecordBuilder records;
  const double l[] = {1.0}, g[] = {1.0};
  const std::int32_t labels[] = {3};
  records.add_measurement(l, g, labels, 0.1, 1.0);
  records.end_record();
  records.add_measurement(l, g, labels, 0.1, 1.0);
  EXPECT_EQ(refusal(records, 0.0, 3, 1.0),
            "record 2, measurement 2: sigma 0.000000 is not positive and finite; the record is discarded");
  EXPECT_EQ(records.open_measurements(), 0u);
  EXPECT_EQ(refusal(records, 1.0, 0, 1.0),
            "record 2, measurement 1: label 0 is not positive (1 to 2147483647); the record is discarded");
  EXPECT_EQ(refusal(records, 1.0, 3, std::numeric_limits<double>::quiet_NaN()),
            "record 2, measurement 1: local derivative 1 is not finite; the record is discarded");
  const double two[] = {1.0, 2.0};
  EXPECT_THROW(records.add_measurement(l, two, labels, 0.0, 1.0), InputError);
  try {
    records.end_record();
    FAIL() << "an empty record was accepted";
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(), "record 2 has no measurements");
  }
  EXPECT_EQ(records.records(), 1u);
  EXPECT_EQ(records.batch().n_measurements(), 1u);
}

TEST(RecordBuilder, ZeroDerivativesAreLeftOut) {
  RecordBuilder records;
  const double l[] = {0.0, 2.0}, g[] = {0.0, 1.5};
  const std::int32_t labels[] = {4, 5};
  records.add_measurement(l, g, labels, 0.1, 1.0);
  records.end_record();
  const gpede::RecordBatch& b = records.batch();
  ASSERT_EQ(b.local_index.size(), 1u);
  EXPECT_EQ(b.local_index[0], 1);
  ASSERT_EQ(b.global_label.size(), 1u);
  EXPECT_EQ(b.global_label[0], 5);
  EXPECT_EQ(b.record_number[0], 1);
}

// Two planes, a track offset t per record seen by both (y1 = t + s1, y2 = t + s2, sigma 1) and
// plane 1 fixed: the fit gives s2 = the mean difference y2 - y1, with error sqrt(2/N) (each track
// adds 1/2 to s2's information once t is fitted).
TEST(RecordBuilder, ATwoPlaneTelescopeGivesTheAnalyticAnswer) {
  gpede::test::TempDir dir("builder-telescope");
  {
    std::ofstream steer(dir.path() / "steer.txt");
    steer << "Parameter\n1 0.0 -1.0\n2 0.0 0.0\nmethod inversion 1 0.1\nend\n";
  }
  RecordBuilder records;
  const int n = 50;
  double sum = 0.0;
  const double one[] = {1.0};
  const std::int32_t plane1[] = {1}, plane2[] = {2};
  for (int r = 0; r < n; ++r) {
    const double t = 0.01 * r - 0.2, d = 0.3 + 0.002 * ((r * 7) % 11 - 5);
    records.add_measurement(one, one, plane1, t, 1.0);
    records.add_measurement(one, one, plane2, t + d, 1.0);
    records.end_record();
    sum += d;
  }
  const gpede::Steering steering = gpede::parse_steering(dir.path() / "steer.txt");
  auto source = records.source();
  gpede::SolverOptions options;
  options.threads = 1;
  const gpede::SolveResult result = gpede::solve(steering, options, source.get());
  ASSERT_LT(result.exit_code, 10) << result.message;  // 1 here: exact data give chi2/ndf 0
  ASSERT_EQ(result.parameters.size(), 2u);
  EXPECT_FALSE(result.parameters[0].variable);
  EXPECT_NEAR(result.parameters[1].value, sum / n, 1e-12);
  EXPECT_NEAR(result.parameters[1].error, std::sqrt(2.0 / n), 1e-12);
  EXPECT_EQ(result.records_used, n);
}

}  // namespace
