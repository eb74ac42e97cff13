// Tests of the Mille binary reader and writer: pede's reference data in every physical variant,
// writer -> reader round trips, records built byte by byte, and one test per kind of bad input.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpede/error.hpp"
#include "gpede/mille.hpp"
#include "test_support.hpp"

namespace gpede {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

// ---------------------------------------------------------------------------------------------
// Byte-level building blocks, written independently of the code under test (FORMATS.md 1.2).

struct Pair {
  double value;
  std::int32_t index;
};
using PairList = std::vector<Pair>;

void append_int(std::string& s, std::int32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }
void append_float(std::string& s, float v) { s.append(reinterpret_cast<const char*>(&v), 4); }
void append_double(std::string& s, double v) { s.append(reinterpret_cast<const char*>(&v), 8); }

std::string c_float_bytes(const PairList& pairs) {
  std::string s;
  append_int(s, static_cast<std::int32_t>(2 * pairs.size()));
  for (const auto& p : pairs) append_float(s, static_cast<float>(p.value));
  for (const auto& p : pairs) append_int(s, p.index);
  return s;
}

std::string c_double_bytes(const PairList& pairs) {
  std::string s;
  append_int(s, -static_cast<std::int32_t>(2 * pairs.size()));
  for (const auto& p : pairs) append_double(s, p.value);
  for (const auto& p : pairs) append_int(s, p.index);
  return s;
}

std::string fortran_bytes(const PairList& pairs) {
  const auto m = static_cast<std::int32_t>(pairs.size());
  std::string s;
  append_int(s, 4 + 8 * m);
  append_int(s, 2 * m);
  for (const auto& p : pairs) append_float(s, static_cast<float>(p.value));
  for (const auto& p : pairs) append_int(s, p.index);
  append_int(s, 4 + 8 * m);
  return s;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string gzip_bytes(const std::string& raw) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, raw.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// A short valid record: one measurement with one local and one global derivative.
PairList good_record() { return {{0.0, 0}, {1.5, 0}, {0.5, 1}, {0.25, 0}, {2.0, 7}}; }

/// Reads a whole file into one batch.
RecordBatch read_all(const MilleFileSpec& spec, std::int32_t file_index = 0,
                     std::int64_t* double_records = nullptr) {
  MilleReader reader(spec, file_index);
  RecordBatch batch;
  while (reader.read(batch, 1000) > 0) {
  }
  EXPECT_EQ(reader.records_read(), static_cast<std::int64_t>(batch.n_records()));
  if (double_records) *double_records = reader.double_records_read();
  return batch;
}

/// Reads the file expecting an InputError; returns its message ("" and a failure if none).
std::string read_error(const MilleFileSpec& spec, int expected_code = exit_code::bad_binary,
                       RecordBatch* keep = nullptr) {
  RecordBatch local;
  RecordBatch& batch = keep ? *keep : local;
  try {
    MilleReader reader(spec, 0);
    while (reader.read(batch, 1000) > 0) {
    }
  } catch (const InputError& e) {
    EXPECT_EQ(e.exit_code(), expected_code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no InputError for " << spec.path;
  return {};
}

#define EXPECT_CONTAINS(text, part)                          \
  EXPECT_NE(std::string(text).find(part), std::string::npos) \
      << "message: " << (text) << "\nexpected to contain: " << (part)

void expect_consistent(const RecordBatch& b) {
  const std::size_t n_meas = b.meas_value.size();
  EXPECT_EQ(b.record_weight.size(), b.n_records());
  EXPECT_EQ(b.record_file.size(), b.n_records());
  EXPECT_EQ(b.record_number.size(), b.n_records());
  EXPECT_EQ(static_cast<std::size_t>(b.record_begin.back()), n_meas);
  EXPECT_EQ(b.meas_sigma.size(), n_meas);
  EXPECT_EQ(b.local_begin.size(), n_meas + 1);
  EXPECT_EQ(b.global_begin.size(), n_meas + 1);
  EXPECT_EQ(static_cast<std::size_t>(b.local_begin.back()), b.local_index.size());
  EXPECT_EQ(static_cast<std::size_t>(b.global_begin.back()), b.global_label.size());
  EXPECT_EQ(b.local_deriv.size(), b.local_index.size());
  EXPECT_EQ(b.global_index.size(), b.global_label.size());
  EXPECT_EQ(b.global_deriv.size(), b.global_label.size());
}

// ---------------------------------------------------------------------------------------------
// pede's reference data

struct ReferenceProblem {
  const char* name;
  std::int64_t measurements;
  std::int32_t max_local;
  std::size_t labels;
};

// From /work/shared/reference/README.md (table of the reference problems).
constexpr ReferenceProblem k_problems[] = {
    {"wirechamber", 890422, 2, 200},
    {"sl0", 139992, 4, 700},
    {"bp", 399976, 30, 700},
};

TEST(MilleReference, CountsMatchThePedeTable) {
  GPEDE_REQUIRE_REFERENCE();
  for (const auto& problem : k_problems) {
    SCOPED_TRACE(problem.name);
    const MilleFileSpec spec{test::reference_dir() / problem.name / "mp2tst.bin.gz",
                             MilleFormat::fortran_binary, 2.5};
    MilleReader reader(spec, 3);
    RecordBatch batch;
    std::int64_t records = 0;
    std::int64_t measurements = 0;
    std::int32_t max_local = 0;
    std::set<std::int32_t> labels;
    std::size_t got = 0;
    while ((got = reader.read(batch, 777)) > 0) {
      expect_consistent(batch);
      EXPECT_LE(got, 777u);
      for (std::size_t r = 0; r < batch.n_records(); ++r) {
        ASSERT_EQ(batch.record_number[r], records + 1);
        EXPECT_EQ(batch.record_file[r], 3);
        EXPECT_EQ(batch.record_weight[r], 2.5);
        ++records;
        std::int32_t n_local = 0;
        for (auto m = batch.record_begin[r]; m < batch.record_begin[r + 1]; ++m) {
          ++measurements;
          EXPECT_GT(batch.meas_sigma[m], 0.0);
          for (auto k = batch.local_begin[m]; k < batch.local_begin[m + 1]; ++k) {
            n_local = std::max(n_local, batch.local_index[k] + 1);
          }
        }
        max_local = std::max(max_local, n_local);
      }
      labels.insert(batch.global_label.begin(), batch.global_label.end());
      for (auto i : batch.global_index) EXPECT_EQ(i, -1);
      batch.clear();
    }
    EXPECT_EQ(records, 10000);
    EXPECT_EQ(reader.records_read(), 10000);
    EXPECT_EQ(reader.double_records_read(), 0);
    EXPECT_EQ(measurements, problem.measurements);
    EXPECT_EQ(max_local, problem.max_local);
    EXPECT_EQ(labels.size(), problem.labels);
  }
}

TEST(MilleReference, Sl0VariantsGiveIdenticalBatches) {
  GPEDE_REQUIRE_REFERENCE();
  const fs::path dir = test::reference_dir() / "sl0";
  std::int64_t n_double = -1;
  const RecordBatch fortran =
      read_all({dir / "mp2tst.bin.gz", MilleFormat::fortran_binary, 1.0}, 0, &n_double);
  EXPECT_EQ(n_double, 0);
  ASSERT_EQ(fortran.n_records(), 10000u);
  ASSERT_EQ(fortran.n_measurements(), 139992u);

  const RecordBatch cfloat =
      read_all({dir / "mp2tst_cfloat.bin", MilleFormat::c_binary, 1.0}, 0, &n_double);
  EXPECT_EQ(n_double, 0);
  gpede::test::expect_same_records(fortran, cfloat);

  const RecordBatch cfloat_gz =
      read_all({dir / "mp2tst_cfloat.bin.gz", MilleFormat::c_binary, 1.0}, 0, &n_double);
  EXPECT_EQ(n_double, 0);
  gpede::test::expect_same_records(fortran, cfloat_gz);

  const RecordBatch cdouble =
      read_all({dir / "mp2tst_cdouble.bin.gz", MilleFormat::c_binary, 1.0}, 0, &n_double);
  EXPECT_EQ(n_double, 10000);
  gpede::test::expect_same_records(fortran, cdouble);
}

TEST(MilleReference, RewindAndChunkedReadsGiveTheSameRecords) {
  GPEDE_REQUIRE_REFERENCE();
  const MilleFileSpec spec{test::reference_dir() / "sl0" / "mp2tst_cfloat.bin",
                           MilleFormat::c_binary, 1.0};
  const RecordBatch whole = read_all(spec);
  MilleReader reader(spec, 0);
  for (int pass = 0; pass < 2; ++pass) {
    RecordBatch chunked;
    while (reader.read(chunked, 3) > 0) {
    }
    EXPECT_EQ(reader.records_read(), 10000);
    EXPECT_EQ(reader.read(chunked, 10), 0u);
    gpede::test::expect_same_records(whole, chunked);
    reader.rewind();
    EXPECT_EQ(reader.records_read(), 0);
  }
  MilleReader moved(std::move(reader));
  RecordBatch after_move;
  EXPECT_EQ(moved.read(after_move, 5), 5u);
  EXPECT_EQ(after_move.record_number.back(), 5);
  EXPECT_EQ(moved.spec().path, spec.path);
}

// ---------------------------------------------------------------------------------------------
// Writer -> reader round trips against an independently built expectation

struct Measurement {
  std::vector<double> locals;  // dense, index i -> local parameter i
  std::vector<double> globals;
  std::vector<std::int32_t> labels;
  double residual = 0.0;
  double sigma = 1.0;
};

struct Track {
  std::vector<Measurement> measurements;
  std::vector<double> special_floats;  // special block written before the measurement given below
  std::vector<std::int32_t> special_ints;
  std::size_t special_at = 0;
};

std::vector<Track> make_tracks(unsigned seed, int n) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> value(-3.0, 3.0);
  std::uniform_int_distribution<int> count(0, 6);
  std::uniform_int_distribution<std::int32_t> label(1, 5000);
  std::bernoulli_distribution zero(0.25);
  std::vector<Track> tracks(n);
  for (auto& t : tracks) {
    const int n_meas = count(gen);  // 0 measurements -> empty record, not written
    for (int i = 0; i < n_meas; ++i) {
      Measurement m;
      m.locals.resize(count(gen));
      for (auto& d : m.locals) d = zero(gen) ? 0.0 : value(gen);
      m.globals.resize(count(gen));
      m.labels.resize(m.globals.size());
      for (std::size_t g = 0; g < m.globals.size(); ++g) {
        m.globals[g] = zero(gen) ? 0.0 : value(gen);
        m.labels[g] = label(gen);
      }
      m.residual = value(gen);
      m.sigma = zero(gen) ? (zero(gen) ? 0.0 : -0.5) : 0.01 + std::fabs(value(gen));
      t.measurements.push_back(std::move(m));
    }
    if (n_meas > 0 && zero(gen)) {
      const int n_special = 1 + count(gen);
      for (int s = 0; s < n_special; ++s) {
        t.special_floats.push_back(value(gen));
        t.special_ints.push_back(label(gen) - 2500);
      }
      t.special_at = std::uniform_int_distribution<std::size_t>(0, t.measurements.size())(gen);
    }
  }
  return tracks;
}

void write_tracks(const fs::path& path, const std::vector<Track>& tracks,
                  MillePrecision precision) {
  MilleWriter writer(path, precision);
  for (const auto& t : tracks) {
    for (std::size_t i = 0; i <= t.measurements.size(); ++i) {
      if (!t.special_floats.empty() && i == t.special_at) {
        writer.add_special(static_cast<int>(t.special_floats.size()), t.special_floats.data(),
                           t.special_ints.data());
      }
      if (i == t.measurements.size()) break;
      const auto& m = t.measurements[i];
      writer.add_measurement(static_cast<int>(m.locals.size()), m.locals.data(),
                             static_cast<int>(m.globals.size()), m.globals.data(), m.labels.data(),
                             m.residual, m.sigma);
    }
    writer.end_record();
  }
  writer.close();
}

/// What a reader must return for the tracks: sigma <= 0 and zero derivatives dropped, values
/// rounded to float for single precision, records without measurement absent.
RecordBatch expected_batch(const std::vector<Track>& tracks, bool single, std::int32_t file,
                           double weight) {
  auto round = [single](double v) {
    return single ? static_cast<double>(static_cast<float>(v)) : v;
  };
  RecordBatch b;
  std::int64_t number = 0;
  for (const auto& t : tracks) {
    std::size_t n_meas = 0;
    for (const auto& m : t.measurements) {
      if (m.sigma <= 0.0) continue;
      ++n_meas;
      b.meas_value.push_back(round(m.residual));
      b.meas_sigma.push_back(round(m.sigma));
      for (std::size_t i = 0; i < m.locals.size(); ++i) {
        if (m.locals[i] == 0.0) continue;
        b.local_index.push_back(static_cast<std::int32_t>(i));
        b.local_deriv.push_back(round(m.locals[i]));
      }
      for (std::size_t g = 0; g < m.globals.size(); ++g) {
        if (m.globals[g] == 0.0) continue;
        b.global_label.push_back(m.labels[g]);
        b.global_index.push_back(-1);
        b.global_deriv.push_back(round(m.globals[g]));
      }
      b.local_begin.push_back(static_cast<std::int64_t>(b.local_index.size()));
      b.global_begin.push_back(static_cast<std::int64_t>(b.global_label.size()));
    }
    if (n_meas == 0) continue;
    b.record_begin.push_back(static_cast<std::int64_t>(b.meas_value.size()));
    b.record_weight.push_back(weight);
    b.record_file.push_back(file);
    b.record_number.push_back(++number);
  }
  return b;
}

void append_batch(RecordBatch& a, const RecordBatch& b) {
  const auto meas0 = static_cast<std::int64_t>(a.meas_value.size());
  const auto loc0 = static_cast<std::int64_t>(a.local_index.size());
  const auto glo0 = static_cast<std::int64_t>(a.global_label.size());
  for (std::size_t r = 1; r < b.record_begin.size(); ++r)
    a.record_begin.push_back(meas0 + b.record_begin[r]);
  for (std::size_t m = 1; m < b.local_begin.size(); ++m)
    a.local_begin.push_back(loc0 + b.local_begin[m]);
  for (std::size_t m = 1; m < b.global_begin.size(); ++m)
    a.global_begin.push_back(glo0 + b.global_begin[m]);
  auto cat = [](auto& x, const auto& y) { x.insert(x.end(), y.begin(), y.end()); };
  cat(a.record_weight, b.record_weight);
  cat(a.record_file, b.record_file);
  cat(a.record_number, b.record_number);
  cat(a.meas_value, b.meas_value);
  cat(a.meas_sigma, b.meas_sigma);
  cat(a.local_index, b.local_index);
  cat(a.local_deriv, b.local_deriv);
  cat(a.global_label, b.global_label);
  cat(a.global_index, b.global_index);
  cat(a.global_deriv, b.global_deriv);
}

TEST(MilleRoundTrip, SingleAndDoublePrecisionWithSpecialBlocks) {
  TempDir dir("mille-rt");
  const auto tracks = make_tracks(11, 400);
  std::size_t specials = 0;
  for (const auto& t : tracks) specials += t.special_floats.empty() ? 0 : 1;
  ASSERT_GT(specials, 20u);
  for (const bool single : {true, false}) {
    SCOPED_TRACE(single ? "single" : "double");
    const fs::path path = dir.path() / (single ? "f.bin" : "d.bin");
    write_tracks(path, tracks, single ? MillePrecision::single : MillePrecision::double_);
    std::int64_t n_double = -1;
    const RecordBatch got = read_all({path, MilleFormat::c_binary, 0.5}, 4, &n_double);
    const RecordBatch want = expected_batch(tracks, single, 4, 0.5);
    ASSERT_GT(want.n_records(), 200u);
    ASSERT_LT(want.n_records(), tracks.size());  // some tracks have no valid measurement
    EXPECT_EQ(n_double, single ? 0 : static_cast<std::int64_t>(want.n_records()));
    gpede::test::expect_same_records(want, got);
  }
}

TEST(MilleRoundTrip, MixedPrecisionInOneFile) {
  TempDir dir("mille-mixed");
  const auto first = make_tracks(21, 100);
  const auto second = make_tracks(22, 100);
  write_tracks(dir.path() / "a.bin", first, MillePrecision::single);
  write_tracks(dir.path() / "b.bin", second, MillePrecision::double_);
  write_bytes(dir.path() / "mixed.bin", read_bytes(dir.path() / "a.bin") +
                                            read_bytes(dir.path() / "b.bin") +
                                            read_bytes(dir.path() / "a.bin"));
  RecordBatch want = expected_batch(first, true, 1, 1.0);
  RecordBatch part2 = expected_batch(second, false, 1, 1.0);
  RecordBatch part3 = expected_batch(first, true, 1, 1.0);
  const auto n1 = static_cast<std::int64_t>(want.n_records());
  const auto n2 = static_cast<std::int64_t>(part2.n_records());
  for (auto& n : part2.record_number) n += n1;
  for (auto& n : part3.record_number) n += n1 + n2;
  append_batch(want, part2);
  append_batch(want, part3);
  std::int64_t n_double = -1;
  const RecordBatch got =
      read_all({dir.path() / "mixed.bin", MilleFormat::c_binary, 1.0}, 1, &n_double);
  EXPECT_EQ(n_double, n2);
  gpede::test::expect_same_records(want, got);
}

TEST(MilleRoundTrip, GzipIsDetectedByContentNotName) {
  TempDir dir("mille-gz");
  const auto tracks = make_tracks(31, 300);
  write_tracks(dir.path() / "plain.bin", tracks, MillePrecision::double_);
  // gzip data under a plain name, plain data under a .gz name
  write_bytes(dir.path() / "packed.bin", gzip_bytes(read_bytes(dir.path() / "plain.bin")));
  write_bytes(dir.path() / "plain.bin.gz", read_bytes(dir.path() / "plain.bin"));
  const RecordBatch want = expected_batch(tracks, false, 0, 1.0);
  gpede::test::expect_same_records(want, read_all({dir.path() / "packed.bin", MilleFormat::c_binary, 1.0}));
  gpede::test::expect_same_records(want, read_all({dir.path() / "plain.bin.gz", MilleFormat::c_binary, 1.0}));
  // two concatenated gzip members form one stream
  const std::string raw = read_bytes(dir.path() / "plain.bin");
  write_bytes(dir.path() / "two.gz", gzip_bytes(raw) + gzip_bytes(raw));
  EXPECT_EQ(read_all({dir.path() / "two.gz", MilleFormat::c_binary, 1.0}).n_records(),
            2 * want.n_records());
}

TEST(MilleRoundTrip, FortranRecordsBuiltByteByByte) {
  TempDir dir("mille-fortran");
  const std::vector<PairList> records = {
      good_record(),
      {{0.0, 0},
       {0.1, 0},
       {0.2, 0},
       {1.0, 3},
       {-1.0, 4},
       {0.7, 0},
       {0.5, 1},
       {-0.5, 2},
       {0.3, 0},
       {0.0, 0},
       {-2.0, 0},
       {9.0, 5},
       {8.0, -6}},  // local-only measurement, then a special block
      {{0.0, 0}, {0.0, 0}, {-1.0, 0}, {4.0, 4}, {2.0, 0}, {3.0, 2}, {0.125, 0}, {6.0, 100000}},
  };
  std::string fortran;
  std::string cfloat;
  for (const auto& r : records) {
    fortran += fortran_bytes(r);
    cfloat += c_float_bytes(r);
  }
  write_bytes(dir.path() / "f.bin", fortran);
  write_bytes(dir.path() / "f.gz", gzip_bytes(fortran));
  write_bytes(dir.path() / "c.bin", cfloat);
  const RecordBatch f = read_all({dir.path() / "f.bin", MilleFormat::fortran_binary, 1.0});
  gpede::test::expect_same_records(f, read_all({dir.path() / "f.gz", MilleFormat::fortran_binary, 1.0}));
  gpede::test::expect_same_records(f, read_all({dir.path() / "c.bin", MilleFormat::c_binary, 1.0}));

  // the expectation written out by hand
  ASSERT_EQ(f.n_records(), 3u);
  EXPECT_EQ(f.record_begin, (std::vector<std::int64_t>{0, 1, 3, 4}));
  auto fl = [](double v) { return static_cast<double>(static_cast<float>(v)); };
  EXPECT_EQ(f.meas_value, (std::vector<double>{1.5, fl(0.1), fl(0.7), 2.0}));
  EXPECT_EQ(f.meas_sigma, (std::vector<double>{0.25, fl(0.2), fl(0.3), 0.125}));
  EXPECT_EQ(f.local_begin, (std::vector<std::int64_t>{0, 1, 1, 3, 4}));
  EXPECT_EQ(f.local_index, (std::vector<std::int32_t>{0, 0, 1, 1}));
  EXPECT_EQ(f.local_deriv, (std::vector<double>{0.5, 0.5, -0.5, 3.0}));
  EXPECT_EQ(f.global_begin, (std::vector<std::int64_t>{0, 1, 3, 3, 4}));
  EXPECT_EQ(f.global_label, (std::vector<std::int32_t>{7, 3, 4, 100000}));
  EXPECT_EQ(f.global_deriv, (std::vector<double>{2.0, 1.0, -1.0, 6.0}));
}

TEST(MilleWriter, WritesTheMilleRecordLayout) {
  TempDir dir("mille-layout");
  const fs::path path = dir.path() / "w.bin";
  {
    MilleWriter writer(path, MillePrecision::single);
    const double loc[3] = {0.5, 0.0, -1.0};
    const double glo[3] = {2.0, 0.0, 3.0};
    const std::int32_t lab[3] = {11, 12, 13};
    const double spf[2] = {7.0, 8.0};
    const std::int32_t spi[2] = {-1, 5};
    writer.add_measurement(3, loc, 3, glo, lab, 0.75, 0.0);  // sigma 0: skipped
    writer.add_measurement(3, loc, 3, glo, lab, 0.75, 0.5);
    writer.add_special(2, spf, spi);
    EXPECT_THROW(writer.add_special(2, spf, spi), std::invalid_argument);
    writer.add_measurement(0, nullptr, 1, glo, lab, -0.25, 2.0);
    writer.end_record();
    writer.end_record();  // empty: nothing written
    writer.add_measurement(3, loc, 3, glo, lab, 1.0, 1.0);
    writer.kill_record();
    writer.end_record();
    writer.add_special(2, spf, spi);
    writer.end_record();  // special block only, no measurement: nothing written
    EXPECT_EQ(writer.records_written(), 1);
    writer.close();
  }
  const PairList want = {{0.0, 0},  {0.75, 0},  {0.5, 1}, {-1.0, 3}, {0.5, 0},
                         {2.0, 11}, {3.0, 13},  {0.0, 0}, {-2.0, 0}, {7.0, -1},
                         {8.0, 5},  {-0.25, 0}, {2.0, 0}, {2.0, 11}};
  EXPECT_EQ(read_bytes(path), c_float_bytes(want));

  MilleWriter dw(dir.path() / "d.bin", MillePrecision::double_);
  const double g = 0.1;
  const std::int32_t l = 5;
  dw.add_measurement(0, nullptr, 1, &g, &l, 0.3, 0.7);
  dw.end_record();
  dw.close();
  EXPECT_EQ(dw.bytes_written(), static_cast<std::int64_t>(
                                    c_double_bytes({{0, 0}, {0.3, 0}, {0.7, 0}, {0.1, 5}}).size()));
  EXPECT_EQ(read_bytes(dir.path() / "d.bin"),
            c_double_bytes({{0, 0}, {0.3, 0}, {0.7, 0}, {0.1, 5}}));
}

TEST(MilleWriter, FileAppearsOnlyWhenClosed) {
  TempDir dir("mille-tmp");
  const fs::path path = dir.path() / "out.bin";
  fs::path tmp = path;
  tmp += ".tmp";
  {
    MilleWriter writer(path);
    const double g = 1.0;
    const std::int32_t l = 1;
    writer.add_measurement(0, nullptr, 1, &g, &l, 0.0, 1.0);
    writer.end_record();
    EXPECT_TRUE(fs::exists(tmp));
    EXPECT_FALSE(fs::exists(path));
  }  // destructor closes
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_EQ(read_all({path, MilleFormat::c_binary, 1.0}).n_records(), 1u);

  {
    MilleWriter empty(dir.path() / "empty.bin");
    empty.close();
    EXPECT_EQ(empty.bytes_written(), 0);
  }
  EXPECT_EQ(fs::file_size(dir.path() / "empty.bin"), 0u);
  EXPECT_THROW(MilleWriter(dir.path() / "no" / "such" / "dir.bin"), Error);
}

TEST(MilleWriter, RejectsBadLabelsAndValues) {
  TempDir dir("mille-badw");
  MilleWriter writer(dir.path() / "w.bin");
  const double g[2] = {1.0, 2.0};
  const std::int32_t bad_label[2] = {3, 0};
  const std::int32_t neg_label[2] = {-4, 3};
  const std::int32_t labels[2] = {3, 4};
  const double nan_g[2] = {1.0, std::numeric_limits<double>::quiet_NaN()};
  const double huge[2] = {1.0, 1e300};
  EXPECT_THROW(writer.add_measurement(0, nullptr, 2, g, bad_label, 0.0, 1.0),
               std::invalid_argument);
  EXPECT_THROW(writer.add_measurement(0, nullptr, 2, g, neg_label, 0.0, 1.0),
               std::invalid_argument);
  EXPECT_THROW(writer.add_measurement(0, nullptr, 2, nan_g, labels, 0.0, 1.0),
               std::invalid_argument);
  EXPECT_THROW(writer.add_measurement(0, nullptr, 2, huge, labels, 0.0, 1.0),
               std::invalid_argument);
  EXPECT_THROW(writer.add_measurement(2, g, 0, nullptr, nullptr, INFINITY, 1.0),
               std::invalid_argument);
  EXPECT_THROW(writer.add_measurement(0, nullptr, 0, nullptr, nullptr, 0.0, NAN),
               std::invalid_argument);
  EXPECT_THROW(writer.add_measurement(-1, nullptr, 0, nullptr, nullptr, 0.0, 1.0),
               std::invalid_argument);
  writer.end_record();
  writer.close();
  EXPECT_EQ(writer.records_written(), 0);
}

// ---------------------------------------------------------------------------------------------
// Bad input: one test per fault; the record in error is record 2, after one good record.

class MilleBadInput : public ::testing::Test {
 protected:
  /// Writes good_record() + bad as a plain (and optionally gzip) file; returns the path.
  fs::path file(const std::string& name, const std::string& bad, bool gzip = false,
                bool fortran = false) {
    const std::string good = fortran ? fortran_bytes(good_record()) : c_float_bytes(good_record());
    m_offset = static_cast<std::int64_t>(good.size());
    const fs::path path = m_dir.path() / name;
    write_bytes(path, gzip ? gzip_bytes(good + bad) : good + bad);
    return path;
  }
  /// The message names the file, record 2 and its offset.
  void expect_located(const std::string& msg, const fs::path& path) {
    EXPECT_CONTAINS(msg, path.string());
    EXPECT_CONTAINS(msg, "record 2 ");
    EXPECT_CONTAINS(msg, "byte offset " + std::to_string(m_offset));
  }
  std::string error_c(const fs::path& path) {
    return read_error({path, MilleFormat::c_binary, 1.0});
  }
  std::string error_f(const fs::path& path) {
    return read_error({path, MilleFormat::fortran_binary, 1.0});
  }

  TempDir m_dir{"mille-bad"};
  std::int64_t m_offset = 0;
};

TEST_F(MilleBadInput, TruncatedRecordPlain) {
  const auto path = file("t.bin", c_float_bytes(good_record()).substr(0, 13));
  RecordBatch kept;
  const std::string msg =
      read_error({path, MilleFormat::c_binary, 1.0}, exit_code::bad_binary, &kept);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "truncated");
  // the good record before it was delivered, the bad one left no trace
  EXPECT_EQ(kept.n_records(), 1u);
  expect_consistent(kept);
}

TEST_F(MilleBadInput, TruncatedRecordGzip) {
  const auto path = file("t.gz", c_double_bytes(good_record()).substr(0, 30), true);
  const std::string msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "truncated");
  EXPECT_CONTAINS(msg, "uncompressed");
}

TEST_F(MilleBadInput, TruncatedGzipStream) {
  const std::string raw = c_float_bytes(good_record()) + c_float_bytes(good_record());
  const std::string gz = gzip_bytes(raw);
  const fs::path path = m_dir.path() / "cut.gz";
  write_bytes(path, gz.substr(0, gz.size() - 6));  // trailer lost, data complete
  std::string msg = error_c(path);
  EXPECT_CONTAINS(msg, path.string());
  EXPECT_CONTAINS(msg, "gzip");
  write_bytes(path, gz.substr(0, gz.size() / 2));
  msg = error_c(path);
  EXPECT_CONTAINS(msg, path.string());
}

TEST_F(MilleBadInput, LengthWordNotEvenOrZero) {
  for (const std::int32_t n : {5, 0, -7}) {
    std::string bad;
    append_int(bad, n);
    bad += std::string(64, '\0');
    const auto path = file("odd" + std::to_string(n) + ".bin", bad);
    const std::string msg = error_c(path);
    expect_located(msg, path);
    EXPECT_CONTAINS(msg, "N = " + std::to_string(n));
  }
}

TEST_F(MilleBadInput, LengthBeyondTheRestOfThePlainFile) {
  std::string bad;
  append_int(bad, 1000);
  bad += std::string(40, '\0');
  const auto path = file("long.bin", bad);
  const std::string msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "44 bytes left");
}

TEST_F(MilleBadInput, AbsurdLengthInGzipData) {
  std::string bad;
  append_int(bad, -2000000000);
  bad += std::string(40, '\0');
  const auto path = file("absurd.gz", bad, true);
  const std::string msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "limit");

  // large but below the limit: found truncated without reading (or allocating) that much
  std::string big;
  append_int(big, 100000000);
  big += std::string(40, '\0');
  const auto path2 = file("big.gz", big, true);
  const std::string msg2 = error_c(path2);
  expect_located(msg2, path2);
  EXPECT_CONTAINS(msg2, "truncated");
}

TEST_F(MilleBadInput, FortranMarkersDisagree) {
  std::string bad = fortran_bytes(good_record());
  const std::int32_t wrong = 999;
  std::memcpy(bad.data() + bad.size() - 4, &wrong, 4);
  const auto path = file("fm.bin", bad, false, true);
  const std::string msg = error_f(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "markers disagree");
}

TEST_F(MilleBadInput, FortranMarkerDoesNotFitN) {
  std::string bad = fortran_bytes(good_record());
  const std::int32_t n = 8;  // the record holds 5 pairs
  std::memcpy(bad.data() + 4, &n, 4);
  const auto path = file("fn.gz", bad, true, true);
  const std::string msg = error_f(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "does not fit");
  EXPECT_CONTAINS(msg, "uncompressed");
}

TEST_F(MilleBadInput, FortranNegativeN) {
  std::string bad = fortran_bytes(good_record());
  const std::int32_t n = -10;
  std::memcpy(bad.data() + 4, &n, 4);
  const auto path = file("fneg.bin", bad, false, true);
  const std::string msg = error_f(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "N = -10");
}

TEST_F(MilleBadInput, NaNValue) {
  PairList r = good_record();
  r[4].value = std::numeric_limits<double>::quiet_NaN();
  const auto path = file("nan.bin", c_float_bytes(r));
  const std::string msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "pair 5");
  EXPECT_CONTAINS(msg, "not a finite number");
}

TEST_F(MilleBadInput, InfiniteValueInDoubleRecord) {
  PairList r = good_record();
  r[2].value = -std::numeric_limits<double>::infinity();
  const auto path = file("inf.bin", c_double_bytes(r));
  const std::string msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "pair 3");
  EXPECT_CONTAINS(msg, "not a finite number");
}

TEST_F(MilleBadInput, GlobalLabelNotPositive) {
  PairList r = good_record();
  r.push_back({1.0, -3});
  const auto path = file("label.bin", c_float_bytes(r));
  const std::string msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "global label -3");
}

TEST_F(MilleBadInput, SigmaZero) {
  const auto path = file("s0.bin", c_float_bytes({{0, 0}, {1.0, 0}, {0.0, 0}, {1.0, 5}}));
  const std::string msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "sigma");
}

TEST_F(MilleBadInput, SigmaNegativeAfterLocals) {
  const auto path =
      file("sneg.bin", c_double_bytes({{0, 0}, {1.0, 0}, {2.0, 1}, {-0.5, 0}, {1.0, 5}}));
  const std::string msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "sigma");
  EXPECT_CONTAINS(msg, "pair 4");
}

TEST_F(MilleBadInput, RecordWithoutMeasurement) {
  auto path = file("none.bin", c_float_bytes({{0, 0}}));
  std::string msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "no measurement");

  path = file("special_only.bin", c_float_bytes({{0, 0}, {0, 0}, {-2, 0}, {1, 1}, {2, 2}}));
  msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "no measurement");
}

TEST_F(MilleBadInput, FirstEntryNotAMeasurement) {
  const auto path = file("first.bin", c_float_bytes({{0, 0}, {1.0, 3}, {1.0, 0}, {1.0, 0}}));
  const std::string msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "pair 2");
  EXPECT_CONTAINS(msg, "index 0");
}

TEST_F(MilleBadInput, NegativeLocalIndex) {
  const auto path = file("local.bin", c_float_bytes({{0, 0}, {1.0, 0}, {1.0, -2}, {1.0, 0}}));
  const std::string msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "negative index -2");
}

TEST_F(MilleBadInput, MeasurementWithoutSigma) {
  const auto path = file("nosigma.bin",
                         c_float_bytes({{0, 0}, {1.0, 0}, {1.0, 0}, {2.0, 4}, {3.0, 0}, {1.0, 1}}));
  const std::string msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "no sigma");
}

TEST_F(MilleBadInput, SpecialBlockPastTheEnd) {
  const auto path =
      file("sp.bin", c_float_bytes({{0, 0}, {1.0, 0}, {1.0, 0}, {0, 0}, {-5, 0}, {1, 1}}));
  const std::string msg = error_c(path);
  expect_located(msg, path);
  EXPECT_CONTAINS(msg, "special block");
}

TEST_F(MilleBadInput, MissingOrUnreadableFile) {
  const fs::path missing = m_dir.path() / "missing.bin";
  // pede: 15 for a binary file that cannot be opened, 18 for one that cannot be read
  std::string msg = read_error({missing, MilleFormat::c_binary, 1.0}, exit_code::binary_open);
  EXPECT_CONTAINS(msg, missing.string());
  const fs::path folder = m_dir.path() / "folder.bin";
  fs::create_directory(folder);
  msg = read_error({folder, MilleFormat::c_binary, 1.0}, exit_code::binary_read);
  EXPECT_CONTAINS(msg, folder.string());
}

TEST_F(MilleBadInput, HeaderThatEndsEarly) {
  const fs::path path = m_dir.path() / "head.bin";
  for (const bool gzip : {false, true}) {
    write_bytes(path, gzip ? gzip_bytes(std::string("\x0a\x00", 2)) : std::string("\x0a\x00", 2));
    std::string msg = error_c(path);
    EXPECT_CONTAINS(msg, path.string());
    EXPECT_CONTAINS(msg, "record 1 at byte offset 0");
    EXPECT_CONTAINS(msg, "truncated");
    // a complete header and nothing after it
    std::string head;
    append_int(head, 10);
    write_bytes(path, gzip ? gzip_bytes(head) : head);
    msg = error_c(path);
    EXPECT_CONTAINS(msg, "record 1 at byte offset 0");
    EXPECT_CONTAINS(msg, "truncated");
    // Fortran: marker and half of N
    write_bytes(path, gzip ? gzip_bytes(fortran_bytes(good_record()).substr(0, 6))
                           : fortran_bytes(good_record()).substr(0, 6));
    msg = error_f(path);
    EXPECT_CONTAINS(msg, "record 1 at byte offset 0");
    EXPECT_CONTAINS(msg, "truncated");
  }
}

TEST_F(MilleBadInput, EmptyFileHasNoRecords) {
  const fs::path path = m_dir.path() / "empty.bin";
  for (const bool gzip : {false, true}) {
    write_bytes(path, gzip ? gzip_bytes("") : std::string());
    for (const auto format : {MilleFormat::c_binary, MilleFormat::fortran_binary}) {
      MilleReader reader({path, format, 1.0}, 0);
      RecordBatch batch;
      EXPECT_EQ(reader.read(batch, 100), 0u);
      EXPECT_EQ(batch.n_records(), 0u);
      EXPECT_EQ(reader.records_read(), 0);
    }
  }
}

}  // namespace
}  // namespace gpede
