// Bad input through the command-line tool: each case gets a non-zero exit status, an error message
// that names the file and the line, record or byte offset, and a millepede.end with pede's code;
// no millepede.res is left behind.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "gpede/mille.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using gpede::test::run_command;
using gpede::test::TempDir;

struct Pair {
  float value;
  std::int32_t index;
};

// One C single-precision record as raw bytes.
void append_record(std::string& bytes, const std::vector<Pair>& pairs) {
  const std::int32_t n = static_cast<std::int32_t>(2 * pairs.size());
  bytes.append(reinterpret_cast<const char*>(&n), 4);
  for (const auto& p : pairs) bytes.append(reinterpret_cast<const char*>(&p.value), 4);
  for (const auto& p : pairs) bytes.append(reinterpret_cast<const char*>(&p.index), 4);
}

// A good record: straight line y = a + b x through 4 planes, global offsets labelled 1..4.
std::vector<Pair> good_record(float shift) {
  std::vector<Pair> r{{0.0f, 0}};
  for (int plane = 0; plane < 4; ++plane) {
    const float x = static_cast<float>(plane);
    r.push_back({shift + 0.01f * plane, 0});
    r.push_back({1.0f, 1});
    r.push_back({x, 2});
    r.push_back({0.01f, 0});
    r.push_back({1.0f, plane + 1});
  }
  return r;
}

class BadInput : public testing::Test {
 protected:
  TempDir dir{"bad"};

  fs::path write(const std::string& name, const std::string& content) {
    const fs::path p = dir.path() / name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  std::string good_data(int records) {
    std::string bytes;
    for (int i = 0; i < records; ++i) append_record(bytes, good_record(0.001f * (i % 7)));
    return bytes;
  }
  fs::path steering(const std::string& data_file, const std::string& extra = "") {
    return write("steer.txt", "Cfiles\n" + data_file + "\n" + extra + "method inversion 2 0.01\nend\n");
  }
  // Runs gpede; expects failure; returns the output.
  std::string run_fails(const fs::path& steer, int* status_out = nullptr) {
    std::string output;
    const fs::path out = dir.path() / "out";
    const int status = run_command("cd '" + dir.path().string() + "' && '" + gpede::test::gpede_binary().string() +
                                       "' -q --output-dir '" + out.string() + "' '" + steer.string() + "'",
                                   &output);
    EXPECT_NE(status, 0) << output;
    if (status_out) *status_out = status;
    EXPECT_FALSE(fs::exists(out / "millepede.res")) << "a result file was written despite the error";
    std::ifstream end(out / "millepede.end");
    EXPECT_TRUE(end) << "no millepede.end";
    int code = 0;
    end >> code;
    EXPECT_EQ(code, status) << "millepede.end code differs from the exit status";
    return output;
  }
};

TEST_F(BadInput, GoodDataRuns) {
  // The baseline of the cases below: the same set-up with good data succeeds.
  // The two weak modes (common shift and tilt of the planes) fixed by constraints.
  write("cons.txt", "Constraint 0.0\n1 1.0 2 1.0 3 1.0 4 1.0\nConstraint 0.0\n2 1.0 3 2.0 4 3.0\n");
  steering("data.bin\ncons.txt", "entries 1\n");
  write("data.bin", good_data(50));
  std::string output;
  const int status = run_command("cd '" + dir.path().string() + "' && '" + gpede::test::gpede_binary().string() +
                                     "' -q --output-dir out steer.txt",
                                 &output);
  EXPECT_EQ(status, 0) << output;
  EXPECT_TRUE(fs::exists(dir.path() / "out" / "millepede.res"));
}

TEST_F(BadInput, MissingSteeringFile) {
  const std::string out = run_fails(dir.path() / "nope.txt");
  EXPECT_NE(out.find("nope.txt"), std::string::npos) << out;
}

TEST_F(BadInput, MissingBinaryFile) {
  const auto steer = steering("missing.bin");
  const std::string out = run_fails(steer);
  EXPECT_NE(out.find("missing.bin"), std::string::npos) << out;
  EXPECT_NE(out.find("steer.txt"), std::string::npos) << out;
}

TEST_F(BadInput, TruncatedRecord) {
  std::string bytes = good_data(5);
  bytes.resize(bytes.size() - 6);
  write("data.bin", bytes);
  const std::string out = run_fails(steering("data.bin"));
  EXPECT_NE(out.find("data.bin"), std::string::npos) << out;
  EXPECT_NE(out.find("record 5"), std::string::npos) << out;
}

TEST_F(BadInput, RecordLengthDoesNotFitFile) {
  std::string bytes = good_data(3);
  const std::int32_t huge = 2'000'000;
  bytes.append(reinterpret_cast<const char*>(&huge), 4);
  bytes.append(64, '\0');
  write("data.bin", bytes);
  const std::string out = run_fails(steering("data.bin"));
  EXPECT_NE(out.find("record 4"), std::string::npos) << out;
}

TEST_F(BadInput, NaNValue) {
  std::string bytes = good_data(2);
  auto rec = good_record(0.0f);
  rec[3].value = std::numeric_limits<float>::quiet_NaN();
  append_record(bytes, rec);
  write("data.bin", bytes);
  const std::string out = run_fails(steering("data.bin"));
  EXPECT_NE(out.find("record 3"), std::string::npos) << out;
}

TEST_F(BadInput, InfiniteValue) {
  std::string bytes = good_data(2);
  auto rec = good_record(0.0f);
  rec[1].value = std::numeric_limits<float>::infinity();
  append_record(bytes, rec);
  write("data.bin", bytes);
  const std::string out = run_fails(steering("data.bin"));
  EXPECT_NE(out.find("record 3"), std::string::npos) << out;
}

TEST_F(BadInput, NegativeLabel) {
  std::string bytes = good_data(1);
  auto rec = good_record(0.0f);
  rec[5].index = -4;  // first measurement's global label
  append_record(bytes, rec);
  write("data.bin", bytes);
  const std::string out = run_fails(steering("data.bin"));
  EXPECT_NE(out.find("record 2"), std::string::npos) << out;
}

TEST_F(BadInput, SigmaNotPositive) {
  std::string bytes = good_data(1);
  auto rec = good_record(0.0f);
  rec[4].value = 0.0f;  // first measurement's sigma
  append_record(bytes, rec);
  write("data.bin", bytes);
  const std::string out = run_fails(steering("data.bin"));
  EXPECT_NE(out.find("record 2"), std::string::npos) << out;
}

TEST_F(BadInput, RecordWithoutMeasurement) {
  std::string bytes = good_data(1);
  append_record(bytes, {{0.0f, 0}});
  write("data.bin", bytes);
  const std::string out = run_fails(steering("data.bin"));
  EXPECT_NE(out.find("record 2"), std::string::npos) << out;
}

TEST_F(BadInput, UnknownKeyword) {
  write("data.bin", good_data(10));
  const auto steer = steering("data.bin", "frobnicate 3\n");
  int status = 0;
  const std::string out = run_fails(steer, &status);
  EXPECT_EQ(status, 13);
  EXPECT_NE(out.find("frobnicate"), std::string::npos) << out;
  EXPECT_NE(out.find("steer.txt:3"), std::string::npos) << out;
}

TEST_F(BadInput, EmptyDataSet) {
  write("data.bin", "");
  const std::string out = run_fails(steering("data.bin"));
  EXPECT_NE(out.find("no records"), std::string::npos) << out;
}

}  // namespace
