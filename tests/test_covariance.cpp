// The covariance block (SolverOptions::covariance_labels, covariance_all) against independent
// answers: a three-plane telescope's analytic covariance, without and with a constraint (both
// constraint modes), for inversion, diagonalization, decomposition, MINRES and MINRES-QLP (a
// MINRES solution per column); and its diagonal against the
// errors in pede's millepede.res for sl0.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>

#include "gpede/mille.hpp"
#include "gpede/record_builder.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"
#include "test_support.hpp"

namespace {

using gpede::test::TempDir;

// Three planes (labels 1, 2, 3) seen by every track, y_p = t + s_p with sigma 1, plane 1 fixed.
// Each track adds [[2, -1], [-1, 2]] / 3 to the information of (s2, s3) once t is fitted, so N
// tracks give the covariance [[2, 1], [1, 2]] / N. The constraint s2 + s3 = 0 projects it onto
// [[1, -1], [-1, 1]] / (2N).
gpede::RecordBuilder telescope(int n) {
  gpede::RecordBuilder records;
  const double one[] = {1.0};
  for (int r = 0; r < n; ++r) {
    const double t = 0.01 * r;
    for (std::int32_t plane = 1; plane <= 3; ++plane) {
      const std::int32_t label[] = {plane};
      const double misalignment = plane == 1 ? 0.0 : (plane == 2 ? 0.1 : -0.1);
      records.add_measurement(one, one, label, t + misalignment + 0.001 * ((r * plane) % 5 - 2), 1.0);
    }
    records.end_record();
  }
  return records;
}

gpede::SolveResult solve_telescope(const std::string& method_line, bool constrained, const std::string& mode,
                                   const std::vector<std::int32_t>& labels, bool all = false) {
  TempDir dir("covariance");
  {
    std::ofstream steer(dir.path() / "steer.txt");
    steer << "Parameter\n1 0.0 -1.0\n";
    if (constrained) steer << "Constraint 0.0\n2 1.0\n3 1.0\n";
    steer << method_line << "\n" << mode << "\nend\n";
  }
  const gpede::RecordBuilder records = telescope(40);
  auto source = records.source();
  gpede::SolverOptions options;
  options.threads = 1;
  options.covariance_labels = labels;
  options.covariance_all = all;
  return gpede::solve(gpede::parse_steering(dir.path() / "steer.txt"), options, source.get());
}

struct Case {
  const char* method;
  const char* mode;
};

class TelescopeCovariance : public testing::TestWithParam<Case> {};

TEST_P(TelescopeCovariance, EqualsTheAnalyticBlock) {
  const double n = 40.0;
  const auto unconstrained = solve_telescope(GetParam().method, false, GetParam().mode, {3, 2, 99, 1});
  ASSERT_LT(unconstrained.exit_code, 10) << unconstrained.message;
  const gpede::CovarianceBlock& v = unconstrained.covariance;
  ASSERT_EQ(v.labels, (std::vector<std::int32_t>{3, 2}));  // in the order asked; 99 and 1 left out
  EXPECT_NEAR(v.matrix[0], 2.0 / n, 1e-12);
  EXPECT_NEAR(v.matrix[1], 1.0 / n, 1e-12);
  EXPECT_NEAR(v.matrix[2], 1.0 / n, 1e-12);
  EXPECT_NEAR(v.matrix[3], 2.0 / n, 1e-12);
  EXPECT_NEAR(v.correlation(0, 1), 0.5, 1e-12);
  ASSERT_EQ(unconstrained.warnings.size(), 2u);
  EXPECT_NE(unconstrained.warnings[0].find("1 label(s) not in the run left out: 99"), std::string::npos);
  EXPECT_NE(unconstrained.warnings[1].find("1 label(s) that are fixed left out: 1"), std::string::npos);

  const auto constrained = solve_telescope(GetParam().method, true, GetParam().mode, {}, true);
  ASSERT_LT(constrained.exit_code, 10) << constrained.message;
  const gpede::CovarianceBlock& c = constrained.covariance;
  ASSERT_EQ(c.labels, (std::vector<std::int32_t>{2, 3}));
  EXPECT_NEAR(c.matrix[0], 0.5 / n, 1e-12);
  EXPECT_NEAR(c.matrix[1], -0.5 / n, 1e-12);
  EXPECT_NEAR(c.matrix[3], 0.5 / n, 1e-12);
  EXPECT_NEAR(c.correlation(0, 1), -1.0, 1e-9);
}

INSTANTIATE_TEST_SUITE_P(Methods, TelescopeCovariance,
                         testing::Values(Case{"method inversion 1 0.1", ""},
                                         Case{"method inversion 1 0.1", "withmultipliers"},
                                         Case{"method diagonalization 1 0.1", ""},
                                         Case{"method diagonalization 1 0.1", "withmultipliers"},
                                         Case{"method decomposition 1 0.1", ""},
                                         Case{"method decomposition 1 0.1", "withmultipliers"},
                                         Case{"method sparseMINRES 1 0.1\nmrestol 1e-10", ""},
                                         Case{"method sparseMINRES 1 0.1\nmrestol 1e-10", "withmultipliers"},
                                         Case{"method fullMINRES-QLP 1 0.1\nmrestol 1e-10", ""},
                                         Case{"method fullMINRES-QLP 1 0.1\nmrestol 1e-10", "withmultipliers"}));

TEST(Covariance, DiagonalEqualsPedesErrorsOnSl0) {
  GPEDE_REQUIRE_REFERENCE();
  const auto sl0 = gpede::test::reference_dir() / "sl0";
  TempDir dir("covariance-sl0");
  {
    std::ofstream steer(dir.path() / "steer.txt");
    steer << "Fortranfiles\n" << (sl0 / "mp2con.txt").string() << "\n" << (sl0 / "mp2tst.bin.gz").string()
          << "\nmethod inversion 3 0.001\nend\n";
  }
  const auto pede = gpede::test::read_res(sl0 / "pede" / "inversion" / "millepede.res");
  std::vector<std::int32_t> labels;
  for (const auto& [label, line] : pede) {
    if (line.columns.size() >= 4) labels.push_back(label);
  }
  gpede::SolverOptions options;
  options.threads = 1;
  options.covariance_labels = labels;
  const auto result = gpede::solve(gpede::parse_steering(dir.path() / "steer.txt"), options);
  const gpede::CovarianceBlock& v = result.covariance;
  ASSERT_EQ(v.labels, labels);
  const std::size_t k = labels.size();
  for (std::size_t i = 0; i < k; ++i) {
    const double error = pede.at(labels[i]).columns[3];
    EXPECT_NEAR(std::sqrt(v.matrix[i * k + i]), error, 1.05e-3 * error) << "label " << labels[i];
    for (std::size_t j = 0; j < i; ++j) {
      ASSERT_EQ(v.matrix[i * k + j], v.matrix[j * k + i]);
      ASSERT_LE(std::fabs(v.correlation(i, j)), 1.0 + 1e-12);
    }
  }
}

}  // namespace

namespace {

// The command line: --covariance writes the block into gpede.json; a bad list is a usage error.
TEST(Covariance, CommandLineWritesTheBlockIntoGpedeJson) {
  TempDir dir("covariance-cli");
  {
    gpede::MilleWriter writer(dir.path() / "data.bin");
    const double one[] = {1.0};
    for (int r = 0; r < 40; ++r) {
      for (std::int32_t plane = 1; plane <= 3; ++plane) {
        const std::int32_t label[] = {plane};
        writer.add_measurement(1, one, 1, one, label, 0.01 * r + 0.1 * (plane - 2) + 0.001 * ((r * plane) % 5 - 2), 1.0);
      }
      writer.end_record();
    }
    writer.close();
    std::ofstream(dir.path() / "steer.txt") << "data.bin\nParameter\n1 0.0 -1.0\nmethod inversion 1 0.1\nend\n";
  }
  std::string output;
  const std::string gpede = gpede::test::gpede_binary().string();
  ASSERT_EQ(gpede::test::run_command("cd " + dir.path().string() + " && " + gpede + " -q --covariance 3,1-2 steer.txt",
                                     &output),
            0)
      << output;
  std::ifstream in(dir.path() / "gpede.json");
  const std::string json((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Labels 3 and 2 (1 is fixed); the analytic [[2, 1], [1, 2]] / 40 in that order.
  EXPECT_NE(json.find("\"covariance\": {\"labels\":[3,2],\"matrix\":[[0.05"), std::string::npos) << json.substr(0, 2000);
  EXPECT_NE(output.find("1 label(s) that are fixed left out: 1"), std::string::npos) << output;  // a warning, -q or not
  EXPECT_EQ(gpede::test::run_command("cd " + dir.path().string() + " && " + gpede + " --covariance 2-x steer.txt", &output),
            2);
  EXPECT_NE(output.find("--covariance takes 'all' or labels and ranges"), std::string::npos) << output;
}

}  // namespace
