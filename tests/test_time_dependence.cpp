// Time-dependent alignment: record times through the writer and the reader, the steering keywords,
// parameters per interval against the same records with the interval labels written by hand (the
// plain solver as the independent reference), templates against derivatives folded by hand, the
// interval search's dynamic programming against every partition tried, and the search on data with
// a known jump and on data where nothing moves.
#include <gtest/gtest.h>

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../host/src/solver/interval_search.hpp"
#include "gpede/error.hpp"
#include "gpede/mille.hpp"
#include "gpede/record_builder.hpp"
#include "gpede/record_time.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using gpede::kNoTime;
using gpede::record_time;

void write_text(const fs::path& file, const std::string& text) {
  std::ofstream out(file);
  out << text;
}

// ---- record times ---------------------------------------------------------------------------------

TEST(RecordTime, TextAndParseAgree) {
  gpede::RecordTime t = 0;
  ASSERT_TRUE(gpede::parse_time("12", t));
  EXPECT_EQ(t, record_time(0, 12));
  EXPECT_EQ(gpede::time_text(t), "12");
  ASSERT_TRUE(gpede::parse_time("3:2147483647", t));
  EXPECT_EQ(gpede::experiment_of(t), 3);
  EXPECT_EQ(gpede::run_of(t), 2147483647);
  EXPECT_EQ(gpede::time_text(t), "3:2147483647");
  EXPECT_LT(record_time(1, 0), record_time(2, 0));
  EXPECT_LT(record_time(1, 2147483647), record_time(2, 0));
  for (const char* bad : {"", "-1", "1:", ":4", "1:2:3", "x", "2147483648", "1.5"}) {
    EXPECT_FALSE(gpede::parse_time(bad, t)) << bad;
  }
}

TEST(RecordTime, WriterAndReaderAgree) {
  gpede::test::TempDir dir("time-io");
  const fs::path file = dir.path() / "t.bin";
  const double local[2] = {1.0, 0.5};
  const double global[2] = {0.3, -0.2};
  const std::int32_t labels[2] = {11, 12};
  {
    gpede::MilleWriter w(file);
    w.add_measurement(2, local, 2, global, labels, 0.01, 0.1);
    w.add_time(0, 7);
    w.end_record();
    w.add_measurement(2, local, 2, global, labels, 0.02, 0.1);
    w.add_time(2, 5);
    w.end_record();
    // user data in a special block of the same size as a time block, but not one
    const double floats[3] = {2.0, 0.0, 0.0};
    const std::int32_t ints[3] = {gpede::kTimeBlockTag, 1, 1};
    w.add_measurement(2, local, 2, global, labels, 0.03, 0.1);
    w.add_special(3, floats, ints);
    w.end_record();
    w.close();
  }
  gpede::MilleFileSpec spec;
  spec.path = file;
  gpede::RecordBatch batch;
  gpede::MilleReader reader(spec, 0);
  ASSERT_EQ(reader.read(batch, 10), 3u);
  ASSERT_EQ(batch.record_time.size(), 3u);
  EXPECT_EQ(batch.record_time[0], record_time(0, 7));
  EXPECT_EQ(batch.record_time[1], record_time(2, 5));
  EXPECT_EQ(batch.record_time[2], kNoTime);
  // the measurements are those written, the blocks left out
  ASSERT_EQ(batch.n_measurements(), 3u);
  EXPECT_EQ(batch.global_label, (std::vector<std::int32_t>{11, 12, 11, 12, 11, 12}));
  EXPECT_FLOAT_EQ(static_cast<float>(batch.meas_value[1]), 0.02f);
  // a file's time stands for the records without one
  spec.time = record_time(0, 9);
  gpede::MilleReader with_file_time(spec, 0);
  batch.clear();
  ASSERT_EQ(with_file_time.read(batch, 10), 3u);
  EXPECT_EQ(batch.record_time[0], record_time(0, 7));
  EXPECT_EQ(batch.record_time[2], record_time(0, 9));
}

/// A C binary record of (value, index) pairs.
void write_raw_record(std::ofstream& out, const std::vector<std::pair<float, std::int32_t>>& pairs) {
  const auto m = static_cast<std::int32_t>(pairs.size());
  const std::int32_t n = 2 * m;
  out.write(reinterpret_cast<const char*>(&n), 4);
  for (const auto& p : pairs) out.write(reinterpret_cast<const char*>(&p.first), 4);
  for (const auto& p : pairs) out.write(reinterpret_cast<const char*>(&p.second), 4);
}

TEST(RecordTime, BadTimeBlocksNameTheRecord) {
  gpede::test::TempDir dir("time-bad");
  const std::vector<std::pair<float, std::int32_t>> measurement = {{0.01f, 0}, {1.0f, 1}, {0.1f, 0}, {0.5f, 11}};
  const auto block = [](std::int32_t experiment, std::int32_t run) {
    return std::vector<std::pair<float, std::int32_t>>{
        {0.0f, 0}, {-3.0f, 0}, {1.0f, gpede::kTimeBlockTag}, {0.0f, experiment}, {0.0f, run}};
  };
  struct Case {
    const char* name;
    std::vector<std::vector<std::pair<float, std::int32_t>>> parts;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"negative", {block(0, -4)}, "time block with experiment 0 and run -4"},
      {"twice", {block(0, 1), block(0, 2)}, "a second time block"},
  };
  for (const Case& c : cases) {
    const fs::path file = dir.path() / (std::string(c.name) + ".bin");
    {
      std::ofstream out(file, std::ios::binary);
      std::vector<std::pair<float, std::int32_t>> good = {{0.0f, 0}};
      good.insert(good.end(), measurement.begin(), measurement.end());
      write_raw_record(out, good);
      std::vector<std::pair<float, std::int32_t>> bad = {{0.0f, 0}};
      bad.insert(bad.end(), measurement.begin(), measurement.end());
      for (const auto& part : c.parts) bad.insert(bad.end(), part.begin(), part.end());
      write_raw_record(out, bad);
    }
    gpede::MilleFileSpec spec;
    spec.path = file;
    gpede::MilleReader reader(spec, 0);
    gpede::RecordBatch batch;
    try {
      reader.read(batch, 10);
      ADD_FAILURE() << c.name << ": no error";
    } catch (const gpede::InputError& e) {
      const std::string what = e.what();
      EXPECT_EQ(e.exit_code(), 20) << what;
      EXPECT_NE(what.find("record 2"), std::string::npos) << what;
      EXPECT_NE(what.find(file.filename().string()), std::string::npos) << what;
      EXPECT_NE(what.find(c.says), std::string::npos) << what;
    }
  }
}

// ---- steering ---------------------------------------------------------------------------------------

TEST(TimeSteering, KeywordsAndTheirErrors) {
  gpede::test::TempDir dir("time-steer");
  write_text(dir.path() / "a.bin", "");
  write_text(dir.path() / "b.bin", "");
  write_text(dir.path() / "steer.txt",
             "Cfiles\na.bin\nb.bin\nfiletime b.bin 4:17\ntimedependent 11 21-26\ntimedependent 40\n"
             "intervals 5 2:3\nintervals 3:1\ntimestride 100000\ntemplate 900 31 1.0 32 -0.5\n"
             "method inversion 2 0.1\nend\n");
  const gpede::Steering s = gpede::parse_steering(dir.path() / "steer.txt");
  const gpede::TimeDependenceSpec& td = s.time_dependence;
  ASSERT_EQ(td.labels.size(), 3u);
  EXPECT_TRUE(td.varies(11));
  EXPECT_TRUE(td.varies(23));
  EXPECT_TRUE(td.varies(40));
  EXPECT_FALSE(td.varies(12));
  EXPECT_FALSE(td.varies(27));
  EXPECT_EQ(td.boundaries, (std::vector<std::int64_t>{record_time(0, 5), record_time(2, 3), record_time(3, 1)}));
  EXPECT_EQ(td.intervals(), 4);
  EXPECT_EQ(td.interval_of(record_time(0, 4)), 0);
  EXPECT_EQ(td.interval_of(record_time(0, 5)), 1);
  EXPECT_EQ(td.interval_of(record_time(2, 2)), 1);
  EXPECT_EQ(td.interval_of(record_time(3, 1)), 3);
  EXPECT_EQ(td.label_stride(), 100000);
  ASSERT_EQ(td.templates.size(), 1u);
  EXPECT_EQ(td.templates[0].amplitude, 900);
  EXPECT_EQ(td.templates[0].shape, (std::vector<std::pair<std::int32_t, double>>{{31, 1.0}, {32, -0.5}}));
  ASSERT_EQ(s.binary_files.size(), 2u);
  EXPECT_EQ(s.binary_files[0].time, kNoTime);
  EXPECT_EQ(s.binary_files[1].time, record_time(4, 17));

  // written back and read again: the same
  gpede::write_steering(dir.path() / "again.txt", s);
  const gpede::Steering again = gpede::parse_steering(dir.path() / "again.txt");
  EXPECT_EQ(again.time_dependence.labels, td.labels);
  EXPECT_EQ(again.time_dependence.boundaries, td.boundaries);
  EXPECT_EQ(again.time_dependence.stride, td.stride);
  EXPECT_EQ(again.time_dependence.templates[0].shape, td.templates[0].shape);
  EXPECT_EQ(again.binary_files[1].time, record_time(4, 17));

  // the default stride: a power of ten, at least 10^6, above every time-dependent label
  gpede::TimeDependenceSpec plain;
  plain.labels = {{5, 5}};
  EXPECT_EQ(plain.label_stride(), 1000000);
  plain.labels = {{5, 5}, {1000000, 1000000}};
  EXPECT_EQ(plain.label_stride(), 10000000);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"intervals 5 4", "must increase"},
      {"intervals 1:x", "is not a time"},
      {"timedependent 0", "is not a label"},
      {"timedependent 9-3", "is not a label"},
      {"timedependent", "needs labels"},
      {"filetime c.bin 3", "not a binary file listed"},
      {"template 900 31", "pairs of label and coefficient"},
      {"template 900 900 1.0", "in its own shape"},
      {"timestride 5", "from 10 to 10^9"},
      {"intervals auto -3", "penalty"},
  };
  for (const auto& [line, says] : bad) {
    write_text(dir.path() / "bad.txt", "Cfiles\na.bin\n" + line + "\nend\n");
    try {
      gpede::parse_steering(dir.path() / "bad.txt");
      ADD_FAILURE() << line << ": no error";
    } catch (const gpede::InputError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(says), std::string::npos) << line << ": " << what;
      EXPECT_NE(what.find("bad.txt"), std::string::npos) << what;
    }
  }
}

// ---- a toy telescope --------------------------------------------------------------------------------
//
// Six planes at z = 1..6 measure x of straight tracks x = a + b z (two local parameters); plane i
// is shifted by o_i (label i, derivative 1). Planes 1 and 6 are fixed (presigma -1): no null modes.

constexpr double kSigma = 0.01;

struct Toy {
  int runs = 9;
  int tracks_per_run = 1500;
  unsigned seed = 1;
  /// true shift of plane i (1..6) in run r
  std::function<double(int, int)> shift;
};

/// The toy's records; `label_of(i, run)` gives the label plane i's derivative goes to, `time`
/// whether records carry their run.
gpede::RecordBuilder build(const Toy& toy, const std::function<std::vector<std::pair<std::int32_t, double>>(int, int)>& derivatives,
                           bool time) {
  std::mt19937_64 rng(toy.seed);
  std::normal_distribution<double> gauss;
  gpede::RecordBuilder builder;
  for (int run = 1; run <= toy.runs; ++run) {
    for (int t = 0; t < toy.tracks_per_run; ++t) {
      const double a = gauss(rng), b = 0.1 * gauss(rng);
      for (int i = 1; i <= 6; ++i) {
        const double z = i;
        const double measured = a + b * z + toy.shift(i, run) + kSigma * gauss(rng);
        const double local[2] = {1.0, z};
        std::vector<double> d;
        std::vector<std::int32_t> l;
        for (const auto& [label, value] : derivatives(i, run)) {
          l.push_back(label);
          d.push_back(value);
        }
        builder.add_measurement(local, d, l, measured, kSigma);
      }
      if (time) builder.set_time(0, run);
      builder.end_record();
    }
  }
  return builder;
}

/// Plane i's derivative on label i.
std::vector<std::pair<std::int32_t, double>> plane_derivative(int i, int) { return {{i, 1.0}}; }

gpede::Steering toy_steering(const std::string& extra_lines, gpede::test::TempDir& dir, const std::string& name) {
  write_text(dir.path() / "dummy.bin", "");
  write_text(dir.path() / name,
             "Cfiles\ndummy.bin\nParameter\n1 0.0 -1.0\n6 0.0 -1.0\n" + extra_lines + "method inversion 3 0.001\nend\n");
  return gpede::parse_steering(dir.path() / name);
}

/// solve() on the records, with one thread.
gpede::SolveResult solve_records(const gpede::Steering& steering, const gpede::RecordBuilder& records) {
  gpede::SolverOptions options;
  options.threads = 1;
  auto source = records.source();
  return gpede::solve(steering, options, source.get());
}

/// The InputError that solving `steering` on `records` raises: its exit code and message; a test
/// failure naming `what` (and code -1) where the solve raises none.
std::pair<int, std::string> input_error(const gpede::Steering& steering, const gpede::RecordBuilder& records,
                                        const std::string& what) {
  try {
    solve_records(steering, records);
  } catch (const gpede::InputError& e) {
    return {e.exit_code(), e.what()};
  }
  ADD_FAILURE() << "no error for " << what;
  return {-1, ""};
}

const gpede::ParameterResult* find(const gpede::SolveResult& r, std::int32_t label) {
  for (const auto& p : r.parameters) {
    if (p.label == label) return &p;
  }
  return nullptr;
}

/// Every parameter of `a` in `b` with the same value and error to 1e-9 relative (of the error for
/// values), and the same chi2.
void expect_same_solution(const gpede::SolveResult& a, const gpede::SolveResult& b) {
  ASSERT_EQ(a.exit_code, 0) << a.message;
  ASSERT_EQ(b.exit_code, 0) << b.message;
  ASSERT_EQ(a.parameters.size(), b.parameters.size());
  for (const auto& p : a.parameters) {
    const gpede::ParameterResult* q = find(b, p.label);
    ASSERT_NE(q, nullptr) << p.label;
    EXPECT_EQ(p.variable, q->variable) << p.label;
    if (!p.variable) continue;
    EXPECT_NEAR(p.value, q->value, 1e-9 * p.error) << p.label;
    EXPECT_NEAR(p.error, q->error, 1e-9 * p.error) << p.label;
  }
  EXPECT_NEAR(a.chi2_sum, b.chi2_sum, 1e-9 * a.chi2_sum);
  EXPECT_EQ(a.ndf_sum, b.ndf_sum);
}

TEST(TimeDependence, ValuesPerIntervalAreThoseOfLabelsWrittenPerInterval) {
  gpede::test::TempDir dir("time-toy");
  Toy toy;
  toy.shift = [](int i, int run) {
    const double shifts[7] = {0.0, 0.0, 0.03, 0.1, -0.04, 0.02, 0.0};
    return i == 3 ? (run < 5 ? 0.1 : 0.25) : shifts[i];
  };
  // gpede's time dependence: plane 3 per interval, the interval starting at run 5
  const gpede::RecordBuilder timed = build(toy, plane_derivative, true);
  const gpede::Steering steering = toy_steering("timedependent 3\nintervals 5\n", dir, "timed.txt");
  const gpede::SolveResult result = solve_records(steering, timed);
  // the reference: the same records with plane 3's label of the second interval written in them
  const gpede::RecordBuilder by_hand = build(toy, [](int i, int run) {
    return std::vector<std::pair<std::int32_t, double>>{{i == 3 && run >= 5 ? 1000003 : i, 1.0}};
  }, false);
  const gpede::Steering plain = toy_steering("", dir, "plain.txt");
  const gpede::SolveResult reference = solve_records(plain, by_hand);
  expect_same_solution(result, reference);
  // and the truth, within 5 errors
  ASSERT_NE(find(result, 1000003), nullptr);
  EXPECT_NEAR(find(result, 3)->value, 0.1, 5.0 * find(result, 3)->error);
  EXPECT_NEAR(find(result, 1000003)->value, 0.25, 5.0 * find(result, 1000003)->error);
  EXPECT_NEAR(find(result, 4)->value, -0.04, 5.0 * find(result, 4)->error);
  ASSERT_EQ(result.time_intervals.size(), 2u);
  EXPECT_EQ(result.time_intervals[0].records, 4 * toy.tracks_per_run);
  EXPECT_EQ(result.time_intervals[1].records, 5 * toy.tracks_per_run);
  EXPECT_EQ(result.time_intervals[1].first_seen, record_time(0, 5));
  EXPECT_EQ(result.time_intervals[1].last_seen, record_time(0, 9));
  EXPECT_EQ(result.time_stride, 1000000);

  // A static label of 5,000,000 named in the steering (here a Parameter line) moves the default
  // stride above it: the second interval's label of plane 3 is then 10,000,003.
  const gpede::Steering high = toy_steering("timedependent 3\nintervals 5\nParameter\n5000000 0.0 -1.0\n", dir, "high.txt");
  const gpede::SolveResult moved = solve_records(high, timed);
  ASSERT_EQ(moved.exit_code, 0) << moved.message;
  EXPECT_EQ(moved.time_stride, 10000000);
  ASSERT_NE(find(moved, 10000003), nullptr);
  EXPECT_NEAR(find(moved, 10000003)->value, find(result, 1000003)->value, 1e-9 * find(result, 1000003)->error);
}

TEST(TimeDependence, ConstraintsApplyInEveryInterval) {
  // Every plane time-dependent and free; the two constraints (no overall shift or shear) hold in
  // each interval: the same as both written per interval by hand.
  gpede::test::TempDir dir("time-cons");
  Toy toy;
  toy.runs = 4;
  toy.shift = [](int i, int run) {
    const double first[7] = {0.0, -0.03, 0.02, 0.04, -0.01, -0.05, 0.03};
    return run < 3 ? first[i] : first[i] + (i == 4 ? 0.05 : 0.0);
  };
  const gpede::RecordBuilder timed = build(toy, plane_derivative, true);
  const std::string constraints = "Constraint 0.0\n1 1.0\n2 1.0\n3 1.0\n4 1.0\n5 1.0\n6 1.0\n"
                                  "Constraint 0.0\n1 1.0\n2 2.0\n3 3.0\n4 4.0\n5 5.0\n6 6.0\n";
  write_text(dir.path() / "dummy.bin", "");
  write_text(dir.path() / "timed.txt", "Cfiles\ndummy.bin\ntimedependent 1-6\nintervals 3\n" + constraints +
                                           "method inversion 2 0.001\nend\n");
  const gpede::Steering steering = gpede::parse_steering(dir.path() / "timed.txt");
  std::string by_hand_constraints = constraints;
  by_hand_constraints += "Constraint 0.0\n1000001 1.0\n1000002 1.0\n1000003 1.0\n1000004 1.0\n1000005 1.0\n1000006 1.0\n"
                         "Constraint 0.0\n1000001 1.0\n1000002 2.0\n1000003 3.0\n1000004 4.0\n1000005 5.0\n1000006 6.0\n";
  write_text(dir.path() / "plain.txt", "Cfiles\ndummy.bin\n" + by_hand_constraints + "method inversion 2 0.001\nend\n");
  const gpede::Steering plain = gpede::parse_steering(dir.path() / "plain.txt");
  const gpede::RecordBuilder by_hand = build(toy, [](int i, int run) {
    return std::vector<std::pair<std::int32_t, double>>{{run >= 3 ? 1000000 + i : i, 1.0}};
  }, false);
  const gpede::SolveResult result = solve_records(steering, timed);
  const gpede::SolveResult reference = solve_records(plain, by_hand);
  EXPECT_EQ(result.n_constraints, 4);
  expect_same_solution(result, reference);
  // plane 4 moved by 0.05 relative to the others' frame: the difference of the intervals' values
  // of plane 4 less the mean frame change is near 0.05 (the constraints spread it)
  const double d4 = find(result, 1000004)->value - find(result, 4)->value;
  EXPECT_GT(d4, 0.02);
}

TEST(TimeDependence, TemplatesAreDerivativesFoldedIntoTheAmplitude) {
  gpede::test::TempDir dir("time-template");
  Toy toy;
  toy.shift = [](int i, int run) {
    const double amplitude = run < 5 ? 0.08 : 0.2;
    const double rest[7] = {0.0, 0.0, 0.0, 0.0, 0.0, -0.02, 0.0};
    return i == 3 ? amplitude : i == 4 ? 0.5 * amplitude : i == 2 ? 0.03 : rest[i];
  };
  const gpede::RecordBuilder timed = build(toy, plane_derivative, true);
  const gpede::Steering steering =
      toy_steering("template 100 3 1.0 4 0.5\ntimedependent 100\nintervals 5\n", dir, "timed.txt");
  const gpede::RecordBuilder by_hand = build(toy, [](int i, int run) {
    const std::int32_t amplitude = run >= 5 ? 1000100 : 100;
    if (i == 3) return std::vector<std::pair<std::int32_t, double>>{{amplitude, 1.0}};
    if (i == 4) return std::vector<std::pair<std::int32_t, double>>{{amplitude, 0.5}};
    return std::vector<std::pair<std::int32_t, double>>{{i, 1.0}};
  }, false);
  const gpede::Steering plain = toy_steering("", dir, "plain.txt");
  const gpede::SolveResult result = solve_records(steering, timed);
  const gpede::SolveResult reference = solve_records(plain, by_hand);
  expect_same_solution(result, reference);
  EXPECT_EQ(find(result, 3), nullptr) << "the template's labels are replaced by the amplitude";
  EXPECT_NEAR(find(result, 100)->value, 0.08, 5.0 * find(result, 100)->error);
  EXPECT_NEAR(find(result, 1000100)->value, 0.2, 5.0 * find(result, 1000100)->error);
}

TEST(TimeDependence, TemplateAmplitudesHaveTheirErrors) {
  // 24 simulations of the toy with a template (plane 4 moves 0.5 of plane 3) whose amplitude
  // steps at run 5: the 48 amplitude pulls (fit - truth) / error are standard normal.
  gpede::test::TempDir dir("time-template-pulls");
  const gpede::Steering steering =
      toy_steering("template 100 3 1.0 4 0.5\ntimedependent 100\nintervals 5\n", dir, "timed.txt");
  std::vector<double> pulls;
  for (unsigned seed = 1; seed <= 24; ++seed) {
    Toy toy;
    toy.seed = 1000 + seed;
    toy.tracks_per_run = 300;
    toy.shift = [](int i, int run) {
      const double amplitude = run < 5 ? 0.08 : 0.2;
      return i == 3 ? amplitude : i == 4 ? 0.5 * amplitude : i == 2 ? 0.03 : i == 5 ? -0.02 : 0.0;
    };
    const gpede::SolveResult result = solve_records(steering, build(toy, plane_derivative, true));
    ASSERT_EQ(result.exit_code, 0) << result.message;
    pulls.push_back((find(result, 100)->value - 0.08) / find(result, 100)->error);
    pulls.push_back((find(result, 1000100)->value - 0.2) / find(result, 1000100)->error);
  }
  double mean = 0.0, square = 0.0;
  for (const double x : pulls) {
    mean += x;
    square += x * x;
  }
  const double n = static_cast<double>(pulls.size());
  mean /= n;
  const double rms = std::sqrt(square / n);
  std::printf("template amplitudes: %zu pulls, mean %.3f, RMS %.3f\n", pulls.size(), mean, rms);
  EXPECT_LT(std::abs(mean), 4.0 / std::sqrt(n));
  EXPECT_LT(std::abs(rms * rms - 1.0), 4.5 * std::sqrt(2.0 / n));
}

TEST(TimeDependence, RecordsWithoutTimeOrWithLabelsAboveAGivenStrideAreRefused) {
  gpede::test::TempDir dir("time-refused");
  Toy toy;
  toy.runs = 1;
  toy.tracks_per_run = 50;
  toy.shift = [](int, int) { return 0.0; };
  const gpede::RecordBuilder untimed = build(toy, plane_derivative, false);
  const gpede::Steering steering = toy_steering("timedependent 3\nintervals 5\n", dir, "timed.txt");
  const auto [untimed_code, untimed_error] = input_error(steering, untimed, "records without a time");
  EXPECT_EQ(untimed_code, 20);
  EXPECT_NE(untimed_error.find("record 1"), std::string::npos) << untimed_error;
  EXPECT_NE(untimed_error.find("has no time"), std::string::npos) << untimed_error;
  EXPECT_NE(untimed_error.find("filetime"), std::string::npos) << untimed_error;
  const gpede::RecordBuilder high = build(toy, [](int i, int) {
    return std::vector<std::pair<std::int32_t, double>>{{i == 2 ? 1000002 : i, 1.0}};
  }, true);
  // a stride given that a record's label reaches: refused, naming the label
  const gpede::Steering strided = toy_steering("timedependent 3\nintervals 5\ntimestride 1000000\n", dir, "strided.txt");
  const std::string above = input_error(strided, high, "a label above the stride").second;
  EXPECT_NE(above.find("label 1000002"), std::string::npos) << above;
  EXPECT_NE(above.find("timestride"), std::string::npos) << above;
  // without `timestride` the default stride reaches above the records' labels too
  const gpede::SolveResult result = solve_records(steering, high);
  ASSERT_LT(result.exit_code, 10) << result.message;  // one run: interval 1 holds no record
  EXPECT_EQ(result.time_stride, 10000000);
  ASSERT_NE(find(result, 1000002), nullptr);
  EXPECT_TRUE(find(result, 1000002)->variable);
  bool noted = false;
  for (const std::string& line : result.log) noted = noted || line.find("labels up to 1000002") != std::string::npos;
  EXPECT_TRUE(noted) << "the log says why the stride is 10^7";
  // the same as with that stride written in the steering
  const gpede::Steering written = toy_steering("timedependent 3\nintervals 5\ntimestride 10000000\n", dir, "written.txt");
  const gpede::SolveResult same = solve_records(written, high);
  EXPECT_EQ(same.exit_code, result.exit_code) << same.message;
  ASSERT_EQ(same.parameters.size(), result.parameters.size());
  for (std::size_t i = 0; i < same.parameters.size(); ++i) {
    EXPECT_EQ(same.parameters[i].label, result.parameters[i].label);
    EXPECT_EQ(same.parameters[i].value, result.parameters[i].value) << same.parameters[i].label;
  }
  const gpede::Steering no_labels = toy_steering("intervals 5\n", dir, "nolabels.txt");
  EXPECT_THROW(solve_records(no_labels, high), gpede::InputError);
}

// ---- the interval search ------------------------------------------------------------------------------

/// The cost of one interval computed directly: each run's values x_r = W_r^-1 g_r, their
/// W-weighted mean, and the chi2 of the runs about it, in long double.
long double direct_cost(const std::vector<gpede::detail::RunStatistics>& runs, std::size_t first, std::size_t last,
                        int p, bool full) {
  using MatrixL = Eigen::Matrix<long double, Eigen::Dynamic, Eigen::Dynamic>;
  using VectorL = Eigen::Matrix<long double, Eigen::Dynamic, 1>;
  MatrixL w_sum = MatrixL::Zero(p, p);
  VectorL b_sum = VectorL::Zero(p);
  std::vector<MatrixL> ws;
  std::vector<VectorL> xs;
  for (std::size_t r = first; r < last; ++r) {
    MatrixL w = MatrixL::Zero(p, p);
    VectorL g(p);
    for (int i = 0; i < p; ++i) {
      g(i) = runs[r].score[i];
      for (int j = 0; j < p; ++j) {
        if (full) w(i, j) = runs[r].weight[i * p + j];
      }
      if (!full) w(i, i) = runs[r].weight[i];
    }
    const VectorL x = w.inverse() * g;
    ws.push_back(w);
    xs.push_back(x);
    w_sum += w;
    b_sum += g;
  }
  const VectorL mean = w_sum.inverse() * b_sum;
  long double cost = 0.0L;
  for (std::size_t k = 0; k < ws.size(); ++k) cost += (xs[k] - mean).dot(ws[k] * (xs[k] - mean));
  return cost;
}

TEST(IntervalSearch, DynamicProgrammingFindsTheBestOfAllPartitions) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> gauss;
  const int p = 3;
  const std::size_t n_runs = 10;
  for (const bool full : {true, false}) {
    for (int trial = 0; trial < 6; ++trial) {
      std::vector<gpede::detail::RunStatistics> runs(n_runs);
      for (std::size_t r = 0; r < n_runs; ++r) {
        Eigen::MatrixXd a(p, p);
        for (int i = 0; i < p; ++i) {
          for (int j = 0; j < p; ++j) a(i, j) = gauss(rng);
        }
        Eigen::MatrixXd c = a * a.transpose() + 0.5 * Eigen::MatrixXd::Identity(p, p);
        if (!full) c = Eigen::MatrixXd(c.diagonal().asDiagonal());
        Eigen::VectorXd x(p);
        // steps at runs 3 and 7 of a few errors, and noise
        for (int i = 0; i < p; ++i) {
          x(i) = (r >= 3 ? 2.0 : 0.0) + (r >= 7 ? -1.5 * i : 0.0) + gauss(rng) * std::sqrt(c(i, i));
        }
        const Eigen::MatrixXd w = c.inverse();
        const Eigen::VectorXd g = w * x;
        auto& s = runs[r];
        for (int i = 0; i < p; ++i) {
          s.index.push_back(i);
          s.score.push_back(g(i));
          if (!full) s.weight.push_back(w(i, i));
          for (int j = 0; j < p && full; ++j) s.weight.push_back(w(i, j));
        }
        s.explained = x.dot(g);
      }
      const double penalty = 2.0 + trial;
      const gpede::detail::IntervalChoice choice = gpede::detail::choose_interval_starts(runs, p, penalty, full);
      // every partition: bit k set = an interval starts at run k + 1
      long double best = INFINITY;
      std::vector<std::size_t> best_starts;
      for (unsigned mask = 0; mask < (1u << (n_runs - 1)); ++mask) {
        std::vector<std::size_t> starts;
        for (std::size_t k = 0; k + 1 < n_runs; ++k) {
          if (mask & (1u << k)) starts.push_back(k + 1);
        }
        long double objective = static_cast<long double>(penalty) * starts.size();
        std::size_t first = 0;
        for (std::size_t s = 0; s <= starts.size(); ++s) {
          const std::size_t last = s < starts.size() ? starts[s] : n_runs;
          objective += direct_cost(runs, first, last, p, full);
          first = last;
        }
        if (objective < best) {
          best = objective;
          best_starts = starts;
        }
      }
      EXPECT_NEAR(choice.objective, static_cast<double>(best), 1e-9 * static_cast<double>(best)) << full << trial;
      EXPECT_EQ(choice.starts, best_starts) << "full " << full << ", trial " << trial;
      ASSERT_EQ(choice.gains.size(), choice.starts.size());
      for (const double gain : choice.gains) EXPECT_GT(gain, penalty) << "a start is worth more than its penalty";
    }
  }
}

TEST(IntervalSearch, DefaultPenaltyIsTheChiSquareQuantile) {
  // chi2 with 1 degree of freedom exceeds 6.63 with probability 0.01 (one candidate start), and
  // with 10 degrees of freedom exceeds 23.2 with 0.01.
  EXPECT_NEAR(gpede::detail::default_interval_penalty(1, 2), 6.63, 0.2);
  EXPECT_NEAR(gpede::detail::default_interval_penalty(10, 2), 23.2, 0.2);
  // more candidates, a higher bar
  EXPECT_GT(gpede::detail::default_interval_penalty(10, 100), gpede::detail::default_interval_penalty(10, 2));
}

/// 12 runs of the toy in which plane `plane` steps by `step` at run 8, the others at fixed shifts.
Toy step_at_run_8(int plane, double step, int tracks_per_run) {
  Toy toy;
  toy.runs = 12;
  toy.tracks_per_run = tracks_per_run;
  toy.shift = [plane, step](int i, int run) {
    const double shifts[7] = {0.0, 0.03, 0.1, -0.04, 0.02, 0.05, 0.0};
    return i == plane && run >= 8 ? shifts[i] + step : shifts[i];
  };
  return toy;
}

/// g^T H^-1 g of the runs first..last-1 summed (full blocks), in long double.
long double explained_by(const std::vector<gpede::detail::RunStatistics>& runs, std::size_t first, std::size_t last,
                         int p) {
  using MatrixL = Eigen::Matrix<long double, Eigen::Dynamic, Eigen::Dynamic>;
  using VectorL = Eigen::Matrix<long double, Eigen::Dynamic, 1>;
  MatrixL h = MatrixL::Zero(p, p);
  VectorL g = VectorL::Zero(p);
  for (std::size_t r = first; r < last; ++r) {
    const auto& s = runs[r];
    const std::size_t k = s.index.size();
    for (std::size_t i = 0; i < k; ++i) {
      g(s.index[i]) += s.score[i];
      for (std::size_t j = 0; j < k; ++j) h(s.index[i], s.index[j]) += s.weight[i * k + j];
    }
  }
  return g.dot(h.inverse() * g);
}

TEST(IntervalSearch, RunStatisticsGiveTheChiSquareOfOneValuePerIntervalWithTheOthersHeld) {
  // Planes 2 and 3 vary in time (3 jumps at run 8), 4 and 5 are static. The statistics of one
  // pass at the solution with one interval must predict the chi2 that a solution with intervals
  // from run 8 gains when 4 and 5 are fixed at that solution's values: a linear problem, so
  // exactly (to rounding).
  gpede::test::TempDir dir("time-statistics");
  gpede::SolverOptions options;
  options.threads = 2;
  const gpede::RecordBuilder records = build(step_at_run_8(3, 0.004, 300), plane_derivative, true);
  const gpede::Steering steering = toy_steering("timedependent 2-3\n", dir, "shared.txt");
  auto source = records.source();
  const gpede::SolveResult shared = gpede::solve(steering, options, source.get());
  ASSERT_EQ(shared.exit_code, 0) << shared.message;
  const gpede::detail::TimeScan scan = gpede::detail::scan_times(steering, *source, nullptr);
  ASSERT_EQ(scan.times.size(), 12u);
  ASSERT_EQ(scan.labels, (std::vector<std::int32_t>{2, 3}));
  const auto runs = gpede::detail::run_statistics(steering, *source, shared, scan, true, 2, nullptr);
  const auto alone = gpede::detail::run_statistics(steering, *source, shared, scan, false, 1, nullptr);
  ASSERT_EQ(runs.size(), 12u);
  // at the solution with one interval b vanishes over all runs
  for (int i = 0; i < 2; ++i) {
    long double g = 0.0L, h = 0.0L;
    for (const auto& s : runs) {
      g += s.score[i];
      h += s.weight[static_cast<std::size_t>(i) * 3];
    }
    EXPECT_LT(std::abs(static_cast<double>(g)), 1e-6 * std::sqrt(static_cast<double>(h))) << i;
  }
  for (std::size_t r = 0; r < runs.size(); ++r) {
    ASSERT_EQ(runs[r].index.size(), 2u);
    // each parameter alone: the blocks' diagonals, the same b
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_NEAR(alone[r].weight[i], runs[r].weight[i * 3], 1e-12 * alone[r].weight[i]);
      EXPECT_NEAR(alone[r].score[i], runs[r].score[i], 1e-9 * std::sqrt(alone[r].weight[i]));
    }
    EXPECT_NEAR(runs[r].explained, static_cast<double>(explained_by(runs, r, r + 1, 2)), 1e-9 * (1.0 + runs[r].explained));
  }
  const double predicted = static_cast<double>(explained_by(runs, 0, 7, 2) + explained_by(runs, 7, 12, 2));
  // the reference: intervals from run 8, the static planes fixed at the shared solution and every
  // interval starting from it
  char lines[512];
  std::snprintf(lines, sizeof lines, "timedependent 2-3\nintervals 8\nParameter\n2 %.17g 0.0\n3 %.17g 0.0\n4 %.17g -1.0\n5 %.17g -1.0\n",
                find(shared, 2)->value, find(shared, 3)->value, find(shared, 4)->value, find(shared, 5)->value);
  const gpede::Steering held = toy_steering(lines, dir, "held.txt");
  const gpede::SolveResult reference = gpede::solve(held, options, source.get());
  ASSERT_EQ(reference.exit_code, 0) << reference.message;
  const double gained = shared.chi2_sum - reference.chi2_sum;
  EXPECT_GT(gained, 10.0) << "the jump is seen";
  EXPECT_NEAR(predicted, gained, 1e-6 * gained);
}

TEST(IntervalSearch, FindsTheJumpAndNoStartWhereNothingMoves) {
  gpede::test::TempDir dir("time-search");
  const Toy jump = step_at_run_8(4, 0.01, 400);
  const gpede::Steering steering = toy_steering("timedependent 2-5\nintervals auto\n", dir, "auto.txt");
  {
    const gpede::SolveResult result = solve_records(steering, build(jump, plane_derivative, true));
    ASSERT_EQ(result.exit_code, 0) << result.message;
    EXPECT_EQ(result.interval_search.runs, 12);
    EXPECT_EQ(result.interval_search.parameters, 4);
    ASSERT_EQ(result.interval_search.starts, (std::vector<std::int64_t>{record_time(0, 8)}));
    EXPECT_GT(result.interval_search.gains[0], result.interval_search.penalty);
    ASSERT_EQ(result.time_intervals.size(), 2u);
    EXPECT_NEAR(find(result, 1000004)->value - find(result, 4)->value, 0.01,
                5.0 * std::hypot(find(result, 1000004)->error, find(result, 4)->error));
  }
  int spurious = 0;
  for (unsigned seed = 1; seed <= 5; ++seed) {
    Toy steady = jump;
    steady.seed = seed;
    steady.shift = [](int i, int) {
      const double shifts[7] = {0.0, 0.03, 0.1, -0.04, 0.02, 0.05, 0.0};
      return shifts[i];
    };
    const gpede::SolveResult result = solve_records(steering, build(steady, plane_derivative, true));
    ASSERT_EQ(result.exit_code, 0) << result.message;
    spurious += static_cast<int>(result.interval_search.starts.size());
  }
  // the default penalty lets a start through in about one search in a hundred where nothing moves
  EXPECT_EQ(spurious, 0);
}

}  // namespace
