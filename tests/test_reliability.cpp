// What a run does when the world around it misbehaves: thread requests beyond the machine, a worker
// pool the system refuses threads to, binary files that change during the run, a stray large local
// index, input that would make error messages huge or unprintable, signals, a second run into the
// same folder, an output folder that cannot be written, a disk that fills while results are
// written, and pede's exit codes for files that are missing or unreadable.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "gpede/detail/worker_pool.hpp"
#include "gpede/error.hpp"
#include "gpede/mille.hpp"
#include "gpede/output.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using gpede::test::TempDir;
using Clock = std::chrono::steady_clock;

// ----- a small problem --------------------------------------------------------------------------------

// Straight tracks y = a + b x through five planes x = 0..4 whose offsets (labels 11..15) are
// misaligned; sigma 0.01. Written by the project's MilleWriter.
constexpr double kOffsets[5] = {0.03, -0.02, 0.01, 0.025, -0.015};

void write_tracks(const fs::path& file, int count, unsigned seed) {
  gpede::MilleWriter writer(file);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, 1.0);
  for (int t = 0; t < count; ++t) {
    const double a = 0.2 * gauss(rng), b = 0.05 * gauss(rng);
    for (int plane = 0; plane < 5; ++plane) {
      const double local[2] = {1.0, static_cast<double>(plane)};
      const double global[1] = {1.0};
      const std::int32_t label[1] = {11 + plane};
      const double y = a + b * plane + kOffsets[plane] + 0.01 * gauss(rng);
      writer.add_measurement(2, local, 1, global, label, y, 0.01);
    }
    writer.end_record();
  }
  writer.close();
}

// Two constraints fix the weak modes (shift and shear of all planes).
const char* kSteeringTail =
    "Constraint 0.0\n11 1.0 12 1.0 13 1.0 14 1.0 15 1.0\n"
    "Constraint 0.0\n12 1.0 13 2.0 14 3.0 15 4.0\n"
    "method inversion 3 0.0001\n";

void write_text(const fs::path& file, const std::string& text) { std::ofstream(file, std::ios::binary) << text; }

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int end_code(const fs::path& folder) {
  std::ifstream in(folder / "millepede.end");
  int code = -999;
  in >> code;
  return code;
}

// ----- threads ------------------------------------------------------------------------------------------

TEST(Threads, RequestsBeyondTheCpusAreCappedWithAWarning) {
  const int cpus = gpede::detail::usable_cpus();
  ASSERT_GE(cpus, 1);
  std::string note;
  EXPECT_EQ(gpede::detail::capped_threads(100000, note), cpus);
  EXPECT_NE(note.find("100000"), std::string::npos) << note;
  EXPECT_NE(note.find("capped"), std::string::npos) << note;
  EXPECT_EQ(gpede::detail::capped_threads(1, note), 1);
  EXPECT_TRUE(note.empty());
  EXPECT_EQ(gpede::detail::capped_threads(0, note), cpus);
  EXPECT_EQ(gpede::detail::capped_threads(-5, note), cpus);
}

// Records handed to the solver from memory (a framework's RecordSource) are checked as the Mille
// reader checks its files: a non-positive label ends the run with code 20 naming the record, not
// with a crash or a silent label; record numbers a source leaves out are filled in.
class LineSource final : public gpede::RecordSource {
 public:
  explicit LineSource(std::int32_t bad_label) : m_bad_label(bad_label) {}
  std::size_t next(gpede::RecordBatch& b, std::size_t max_records) override {
    std::size_t added = 0;
    for (; m_next < 200 && added < max_records; ++m_next, ++added) {
      for (int i = 0; i < 6; ++i) {
        b.meas_value.push_back(0.01 * ((m_next * 7 + i * 3) % 11 - 5));
        b.meas_sigma.push_back(0.1);
        b.local_index.insert(b.local_index.end(), {0, 1});
        b.local_deriv.insert(b.local_deriv.end(), {1.0, static_cast<double>(i)});
        const std::int32_t label = m_next == 77 && i == 2 ? m_bad_label : 1 + i % 3;
        b.global_label.push_back(label);
        b.global_deriv.push_back(1.0);
        b.local_begin.push_back(static_cast<std::int64_t>(b.local_index.size()));
        b.global_begin.push_back(static_cast<std::int64_t>(b.global_label.size()));
      }
      b.record_begin.push_back(static_cast<std::int64_t>(b.meas_value.size()));
      b.record_weight.push_back(1.0);
    }
    return added;
  }
  void rewind() override { m_next = 0; }

 private:
  std::int32_t m_bad_label;
  int m_next = 0;
};

TEST(RecordSource, RecordsFromMemoryAreCheckedLikeFiles) {
  TempDir dir("source-check");
  write_text(dir.path() / "steer.txt", std::string("method inversion 1 0.1\n"));
  const gpede::Steering steering = gpede::parse_steering(dir.path() / "steer.txt");
  gpede::SolverOptions options;
  options.record_printout.clear();
  options.batch_records = 50;
  for (const std::int32_t bad : {0, -4}) {
    LineSource source(bad);
    try {
      gpede::solve(steering, options, &source);
      FAIL() << "label " << bad << " accepted";
    } catch (const gpede::InputError& e) {
      EXPECT_EQ(e.exit_code(), gpede::exit_code::bad_binary);
      const std::string what = e.what();
      EXPECT_NE(what.find("record 78"), std::string::npos) << what;
      EXPECT_NE(what.find("global label " + std::to_string(bad)), std::string::npos) << what;
    }
  }
  LineSource good(2);
  const gpede::SolveResult result = gpede::solve(steering, options, &good);
  EXPECT_LT(result.exit_code, 10) << result.message;
  EXPECT_EQ(result.parameters.size(), 3u);
}

TEST(Threads, ARunAskingForAHundredThousandThreadsRunsOnTheCpus) {
  TempDir dir("threads-run");
  write_tracks(dir.path() / "data.bin", 300, 1);
  write_text(dir.path() / "steer.txt", std::string("data.bin\nthreads 100000\n") + kSteeringTail);
  const gpede::Steering steering = gpede::parse_steering(dir.path() / "steer.txt");
  for (const int option : {0, 100000}) {
    gpede::SolverOptions options;
    options.threads = option;
    options.record_printout.clear();
    const gpede::SolveResult result = gpede::solve(steering, options);
    EXPECT_LT(result.exit_code, 10) << result.message;
    bool warned = false;
    for (const auto& w : result.warnings) warned = warned || w.find("capped") != std::string::npos;
    EXPECT_TRUE(warned) << "no warning that 100000 threads were capped";
  }
}

// A spawner that lets the system "refuse" every thread after the first `allowed`.
gpede::detail::WorkerPool::Spawn refusing_after(int allowed) {
  auto started = std::make_shared<int>(0);
  return [started, allowed](std::function<void()> body) {
    if (*started >= allowed) throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
    ++*started;
    return std::thread(std::move(body));
  };
}

TEST(WorkerPool, KeepsTheThreadsTheSystemGaveWhenItRefusesMore) {
  gpede::detail::WorkerPool pool(64, refusing_after(2));
  EXPECT_EQ(pool.size(), 3);
  EXPECT_TRUE(pool.refused());
  std::vector<std::atomic<int>> runs(64);
  for (int round = 0; round < 5; ++round) pool.run([&](int t) { runs[static_cast<std::size_t>(t)].fetch_add(1); });
  for (int t = 0; t < 64; ++t) EXPECT_EQ(runs[static_cast<std::size_t>(t)].load(), t < 3 ? 5 : 0) << "thread " << t;
}

TEST(WorkerPool, RefusedEveryThreadItRunsOnTheCaller) {
  gpede::detail::WorkerPool pool(8, refusing_after(0));
  EXPECT_EQ(pool.size(), 1);
  int runs = 0;
  pool.run([&](int t) {
    EXPECT_EQ(t, 0);
    ++runs;
  });
  EXPECT_EQ(runs, 1);
}

TEST(WorkerPool, AllThreadsGivenNoRefusal) {
  gpede::detail::WorkerPool pool(4);
  EXPECT_EQ(pool.size(), 4);
  EXPECT_FALSE(pool.refused());
}

// ----- binary files that change during a run --------------------------------------------------------

// Runs the library on data.bin with records read again in every pass; after the first pass
// `change` alters the file. Returns the InputError's code (or 0 if there was none).
int code_after_change(const TempDir& dir, const std::function<void(const fs::path&)>& change, std::string* message) {
  const fs::path data = dir.path() / "data.bin";
  write_tracks(data, 400, 2);
  write_text(dir.path() / "steer.txt", std::string("data.bin\n") + kSteeringTail);
  const gpede::Steering steering = gpede::parse_steering(dir.path() / "steer.txt");
  gpede::SolverOptions options;
  options.cache_records = false;
  options.record_printout.clear();
  bool changed = false;
  options.log = [&](const std::string& line) {
    if (!changed && line.rfind(" it 0", 0) == 0) {
      changed = true;
      change(data);
    }
  };
  try {
    gpede::solve(steering, options);
  } catch (const gpede::InputError& e) {
    if (message) *message = e.what();
    return e.exit_code();
  }
  EXPECT_TRUE(changed) << "the first pass was never logged";
  return 0;
}

TEST(ChangedBinaryFile, TruncatedBetweenPassesIsPedesCode19) {
  TempDir dir("changed-truncated");
  std::string message;
  const int code = code_after_change(
      dir, [](const fs::path& f) { fs::resize_file(f, fs::file_size(f) - 200); }, &message);
  EXPECT_EQ(code, gpede::exit_code::file_changed) << message;
  EXPECT_NE(message.find("data.bin"), std::string::npos) << message;
  EXPECT_NE(message.find("size"), std::string::npos) << message;
}

TEST(ChangedBinaryFile, AppendedBetweenPassesIsPedesCode19NotABadRecord) {
  TempDir dir("changed-appended");
  std::string message;
  const int code = code_after_change(
      dir,
      [](const fs::path& f) {
        const std::string bytes = read_text(f);
        std::ofstream(f, std::ios::binary | std::ios::app) << bytes.substr(0, 30);  // half a record
      },
      &message);
  EXPECT_EQ(code, gpede::exit_code::file_changed) << message;
}

TEST(ChangedBinaryFile, RewrittenWithTheSameSizeIsPedesCode19) {
  TempDir dir("changed-rewritten");
  std::string message;
  const int code = code_after_change(
      dir,
      [&](const fs::path& f) {
        const fs::path other = dir.path() / "other.bin";
        write_tracks(other, 400, 3);  // same shape, other values: the same size
        ASSERT_EQ(fs::file_size(other), fs::file_size(f));
        std::ofstream(f, std::ios::binary | std::ios::trunc) << read_text(other);
        // a modification time that differs even on a file system with coarse times
        const timespec later[2] = {{0, UTIME_OMIT}, {time(nullptr) + 10, 0}};
        ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), later, 0), 0);
      },
      &message);
  EXPECT_EQ(code, gpede::exit_code::file_changed) << message;
  EXPECT_NE(message.find("modification time"), std::string::npos) << message;
}

TEST(ChangedBinaryFile, ReplacedUnderItsNameIsPedesCode19) {
  TempDir dir("changed-replaced");
  std::string message;
  const int code = code_after_change(
      dir,
      [&](const fs::path& f) {
        write_tracks(dir.path() / "other.bin", 400, 2);  // the same records, another file
        fs::rename(dir.path() / "other.bin", f);
      },
      &message);
  EXPECT_EQ(code, gpede::exit_code::file_changed) << message;
}

TEST(ChangedBinaryFile, UnchangedFilesReadInEveryPassGiveTheCachedAnswer) {
  TempDir dir("changed-none");
  write_tracks(dir.path() / "data.bin", 400, 2);
  write_text(dir.path() / "steer.txt", std::string("data.bin\n") + kSteeringTail);
  const gpede::Steering steering = gpede::parse_steering(dir.path() / "steer.txt");
  gpede::SolverOptions options;
  options.record_printout.clear();
  const gpede::SolveResult cached = gpede::solve(steering, options);
  options.cache_records = false;
  const gpede::SolveResult reread = gpede::solve(steering, options);
  ASSERT_EQ(cached.parameters.size(), reread.parameters.size());
  EXPECT_GT(reread.iterations.size(), 1u);
  for (std::size_t i = 0; i < cached.parameters.size(); ++i) {
    EXPECT_EQ(cached.parameters[i].value, reread.parameters[i].value);
  }
}

// The reader itself (the command line reads each file once): a file that grows while it is read
// is caught at its end.
TEST(ChangedBinaryFile, AFileThatGrowsWhileItIsReadIsCaughtAtItsEnd) {
  TempDir dir("changed-growing");
  const fs::path data = dir.path() / "data.bin";
  write_tracks(data, 50, 4);
  const std::string bytes = read_text(data);
  gpede::MilleReader reader({data, gpede::MilleFormat::c_binary, 1.0}, 0);
  gpede::RecordBatch batch;
  ASSERT_EQ(reader.read(batch, 10), 10u);
  std::ofstream(data, std::ios::binary | std::ios::app) << bytes;  // 50 more whole records
  try {
    while (reader.read(batch, 100) > 0) {
    }
    FAIL() << "the growing file was read without complaint";
  } catch (const gpede::InputError& e) {
    EXPECT_EQ(e.exit_code(), gpede::exit_code::file_changed) << e.what();
  }
}

// A pipe can be read once (no rewind before the first read).
TEST(ChangedBinaryFile, APipeIsReadOnce) {
  TempDir dir("pipe-once");
  const fs::path data = dir.path() / "data.bin";
  write_tracks(data, 20, 5);
  const fs::path fifo = dir.path() / "pipe.bin";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] { std::ofstream(fifo, std::ios::binary) << read_text(data); });
  gpede::MilleReader reader({fifo, gpede::MilleFormat::c_binary, 1.0}, 0);
  reader.rewind();
  gpede::RecordBatch batch;
  EXPECT_EQ(reader.read(batch, 100), 20u);
  writer.join();
}

// ----- a stray large local index ----------------------------------------------------------------------

// pede fits a record's local parameters up to its largest local index; a record with index 25000
// and four measurements has a rank deficit and is rejected, and the run goes on.
TEST(LargeLocalIndex, ARecordWithLocalIndex25000IsRejectedAsPedeDoes) {
  TempDir dir("local-25000");
  write_tracks(dir.path() / "data.bin", 300, 6);
  {
    gpede::MilleWriter writer(dir.path() / "odd.bin");
    for (int plane = 0; plane < 4; ++plane) {
      const double local[2] = {1.0, static_cast<double>(plane)};
      const double global[1] = {1.0};
      const std::int32_t label[1] = {11 + plane};
      // local derivatives at indices 1 and 25000: 25000 local parameters
      std::vector<double> locals(25000, 0.0);
      locals[0] = local[0];
      locals[24999] = local[1];
      writer.add_measurement(25000, locals.data(), 1, global, label, 0.01 * plane, 0.01);
    }
    writer.end_record();
    writer.close();
  }
  write_text(dir.path() / "plain.txt", std::string("data.bin\n") + kSteeringTail);
  write_text(dir.path() / "odd.txt", std::string("data.bin\nodd.bin\n") + kSteeringTail);
  gpede::SolverOptions options;
  options.record_printout.clear();
  options.threads = 1;
  const gpede::SolveResult plain = gpede::solve(gpede::parse_steering(dir.path() / "plain.txt"), options);
  const gpede::SolveResult odd = gpede::solve(gpede::parse_steering(dir.path() / "odd.txt"), options);
  EXPECT_EQ(odd.records_read, plain.records_read + 1);
  EXPECT_EQ(odd.rejected_rank, 1);
  ASSERT_EQ(odd.parameters.size(), plain.parameters.size());
  for (std::size_t i = 0; i < plain.parameters.size(); ++i) {
    EXPECT_NEAR(odd.parameters[i].value, plain.parameters[i].value, 1e-12) << "label " << plain.parameters[i].label;
  }
}

// ----- messages ---------------------------------------------------------------------------------------

TEST(Messages, PrintableEscapesControlBytesAndBadUtf8AndBoundsTheLength) {
  EXPECT_EQ(gpede::printable(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(gpede::printable("tab\there\nline"), "tab\\x09here\\x0aline");
  EXPECT_EQ(gpede::printable("\x1b[31mred"), "\\x1b[31mred");
  EXPECT_EQ(gpede::printable("caf\xc3\xa9"), "caf\xc3\xa9");  // UTF-8 kept
  EXPECT_EQ(gpede::printable("caf\xe9"), "caf\\xe9");          // Latin-1 byte escaped
  EXPECT_EQ(gpede::printable("\xc0\xaf"), "\\xc0\\xaf");       // overlong form escaped
  const std::string shown = gpede::printable(std::string(1000, 'x'), 10);
  EXPECT_EQ(shown, "xxxxxxxxxx...[990 more bytes]");
}

TEST(Messages, ErrorMessagesAreBoundedAndKeepTheirLines) {
  const gpede::InputError huge(std::string(10'000'000, 'y'), 20);
  EXPECT_LT(std::string(huge.what()).size(), 17000u);
  EXPECT_NE(std::string(huge.what()).find("more bytes"), std::string::npos);
  const gpede::RuntimeError lines("first line\nsecond\tline with \x01");
  EXPECT_STREQ(lines.what(), "first line\nsecond\tline with \\x01");
}

TEST(Messages, AMilleFileNameWithControlCharactersIsShownEscaped) {
  TempDir dir("messages-name");
  const fs::path file = dir.path() / "bad\x01name.bin";
  write_text(file, std::string("\x0a\x00", 2));
  try {
    gpede::MilleReader reader({file, gpede::MilleFormat::c_binary, 1.0}, 0);
    gpede::RecordBatch batch;
    reader.read(batch, 10);
    FAIL() << "a truncated header was read";
  } catch (const gpede::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("bad\\x01name.bin"), std::string::npos) << e.what();
  }
}

// ----- the command line ---------------------------------------------------------------------------------

// A gpede process started in `folder` with `args`, standard output and error into folder/out.txt.
class Process {
 public:
  Process(const fs::path& folder, const std::vector<std::string>& args, rlim_t file_size_limit = RLIM_INFINITY,
          rlim_t address_space_limit = RLIM_INFINITY) {
    const std::string binary = gpede::test::gpede_binary().string();
    const std::string out = (folder / "out.txt").string();
    m_pid = ::fork();
    if (m_pid == 0) {
      if (::chdir(folder.c_str()) != 0) ::_exit(127);
      const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0) ::_exit(127);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      if (file_size_limit != RLIM_INFINITY) {
        const rlimit limit{file_size_limit, file_size_limit};
        ::setrlimit(RLIMIT_FSIZE, &limit);
        ::signal(SIGXFSZ, SIG_IGN);  // writes beyond the limit fail with EFBIG, as on a full disk
      }
      if (address_space_limit != RLIM_INFINITY) {
        const rlimit limit{address_space_limit, address_space_limit};
        ::setrlimit(RLIMIT_AS, &limit);
      }
      std::vector<char*> argv{const_cast<char*>(binary.c_str())};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(binary.c_str(), argv.data());
      ::_exit(127);
    }
  }
  ~Process() {
    if (m_pid > 0 && !m_waited) {
      ::kill(m_pid, SIGKILL);
      ::waitpid(m_pid, nullptr, 0);
    }
  }
  void signal(int sig) { ::kill(m_pid, sig); }
  /// The exit status (128 + signal if killed); -1 if it did not end within `seconds`.
  int wait(double seconds = 60.0) {
    const auto t0 = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds) {
      int status = 0;
      const pid_t done = ::waitpid(m_pid, &status, WNOHANG);
      if (done == m_pid) {
        m_waited = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  pid_t m_pid = -1;
  bool m_waited = false;
};

// Waits until `file` holds `text` at its start.
bool wait_for_text(const fs::path& file, const std::string& text, double seconds = 30.0) {
  const auto t0 = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds) {
    if (read_text(file).rfind(text, 0) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

const char* kRunning = "   -1   Still running or crashed";

// A run waiting for its data says so in millepede.end, as pede does; SIGTERM then ends it with
// code 40 in millepede.end and as exit status, even though the solver is blocked in a read.
TEST(CommandLine, ARunSaysItIsRunningAndSigtermStopsItWithCode40) {
  TempDir dir("cli-sigterm");
  ASSERT_EQ(::mkfifo((dir.path() / "data.bin").c_str(), 0600), 0);  // no writer: the read blocks
  write_text(dir.path() / "steer.txt", std::string("data.bin\n") + kSteeringTail);
  write_text(dir.path() / "millepede.end", "    0   Ended normally\n");  // an earlier run's
  Process run(dir.path(), {"steer.txt"});
  ASSERT_TRUE(wait_for_text(dir.path() / "millepede.end", kRunning)) << read_text(dir.path() / "millepede.end");
  run.signal(SIGTERM);
  EXPECT_EQ(run.wait(), gpede::exit_code::interrupted) << read_text(dir.path() / "out.txt");
  EXPECT_EQ(end_code(dir.path()), gpede::exit_code::interrupted);
  EXPECT_NE(read_text(dir.path() / "millepede.end").find("SIGTERM"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir.path() / "millepede.res"));
}

// SIGINT while records arrive: the solver stops at the next batch, and says so.
TEST(CommandLine, SigintStopsTheSolverAtTheNextBatch) {
  std::signal(SIGPIPE, SIG_IGN);  // a tool that ends early must fail the test, not end it
  TempDir dir("cli-sigint");
  write_tracks(dir.path() / "tracks.bin", 200, 7);
  const std::string bytes = read_text(dir.path() / "tracks.bin");
  const fs::path fifo = dir.path() / "data.bin";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  write_text(dir.path() / "steer.txt", std::string("data.bin\n") + kSteeringTail);
  Process run(dir.path(), {"steer.txt"});
  {
    std::ofstream pipe(fifo, std::ios::binary);  // opens once gpede opens its end
    pipe << bytes.substr(0, bytes.size() / 2) << std::flush;
    ASSERT_TRUE(wait_for_text(dir.path() / "millepede.end", kRunning));
    run.signal(SIGINT);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    pipe << bytes.substr(bytes.size() / 2);
  }
  EXPECT_EQ(run.wait(), gpede::exit_code::interrupted) << read_text(dir.path() / "out.txt");
  const std::string end = read_text(dir.path() / "millepede.end");
  EXPECT_EQ(end_code(dir.path()), gpede::exit_code::interrupted) << end;
  EXPECT_NE(end.find("SIGINT"), std::string::npos) << end;
  EXPECT_NE(end.find("stopped on request"), std::string::npos) << end;
}

// A second run into a folder that a run is using is refused, and leaves the folder alone.
TEST(CommandLine, ASecondRunIntoTheSameFolderIsRefused) {
  TempDir dir("cli-lock");
  write_tracks(dir.path() / "data.bin", 100, 8);
  write_text(dir.path() / "steer.txt", std::string("data.bin\n") + kSteeringTail);
  const gpede::RunFolder first(dir.path() / "out");  // a run in progress (this process)
  Process second(dir.path(), {"--output-dir", "out", "steer.txt"});
  EXPECT_EQ(second.wait(), gpede::exit_code::folder_in_use);
  const std::string out = read_text(dir.path() / "out.txt");
  EXPECT_NE(out.find("another gpede run (process " + std::to_string(::getpid()) + ")"), std::string::npos) << out;
  EXPECT_TRUE(wait_for_text(dir.path() / "out" / "millepede.end", kRunning, 0.1));
}

// The output folder is checked before any input is read: with a binary file that would block
// the read, the run still ends at once.
TEST(CommandLine, AnOutputFolderThatCannotBeWrittenIsReportedBeforeAnyWork) {
  TempDir dir("cli-output-folder");
  ASSERT_EQ(::mkfifo((dir.path() / "data.bin").c_str(), 0600), 0);
  write_text(dir.path() / "steer.txt", std::string("data.bin\n") + kSteeringTail);
  write_text(dir.path() / "a-file", "");
  for (const std::string folder : {"/proc/self", "a-file/sub"}) {
    Process run(dir.path(), {"--output-dir", folder, "steer.txt"});
    EXPECT_EQ(run.wait(20.0), gpede::exit_code::output_error) << folder;
    const std::string out = read_text(dir.path() / "out.txt");
    EXPECT_NE(out.find(folder.substr(0, folder.find('/', 1))), std::string::npos) << out;
  }
}

// A new run removes the result files of an earlier one at its start: a run that fails does not
// leave them beside its own millepede.end.
TEST(CommandLine, AFailedRunLeavesNoResultsOfAnEarlierRun) {
  TempDir dir("cli-stale");
  write_tracks(dir.path() / "data.bin", 100, 9);
  write_text(dir.path() / "steer.txt", std::string("data.bin\nmetod inversion 3 0.1\n"));
  for (const char* name : {"millepede.res", "millepede.log", "gpede.json", "millepede.eve", "mpdebug.txt"}) {
    write_text(dir.path() / name, "an earlier run's\n");
  }
  Process run(dir.path(), {"steer.txt"});
  EXPECT_EQ(run.wait(), gpede::exit_code::unknown_keyword);
  EXPECT_EQ(end_code(dir.path()), gpede::exit_code::unknown_keyword);
  for (const char* name : {"millepede.res", "millepede.eve", "mpdebug.txt"}) {
    EXPECT_FALSE(fs::exists(dir.path() / name)) << name;
  }
  for (const char* name : {"millepede.log", "gpede.json"}) {
    EXPECT_FALSE(fs::exists(dir.path() / name) && read_text(dir.path() / name) == "an earlier run's\n") << name;
  }
}

// --deterministic on the CPU backend: accepted, and two runs (2 threads) give the same files as a
// run without it, byte for byte (the CPU backend is deterministic at a fixed thread count).
TEST(CommandLine, DeterministicRunsGiveTheSameResultFiles) {
  TempDir dir("cli-deterministic");
  write_tracks(dir.path() / "data.bin", 400, 11);
  write_text(dir.path() / "steer.txt", std::string("data.bin\nmethod inversion 3 0.1\noutlierdownweighting 3\n"));
  std::vector<std::string> results;
  for (const bool deterministic : {true, true, false}) {
    const std::string out = std::string("out") + std::to_string(results.size());
    std::vector<std::string> args = {"--threads", "2", "--output-dir", out, "steer.txt"};
    if (deterministic) args.insert(args.begin(), "--deterministic");
    Process run(dir.path(), args);
    ASSERT_EQ(run.wait(), 0) << out;
    results.push_back(read_text(dir.path() / out / "millepede.res"));
  }
  EXPECT_FALSE(results[0].empty());
  EXPECT_EQ(results[0], results[1]);
  EXPECT_EQ(results[0], results[2]);
}

// A problem whose dense matrix cannot fit (40,000 parameters: 12.8 GB) under an address-space
// limit of 6 GB is refused after reading and before the first pass, with code 30, the sizes and
// the limit named; not by a failed allocation.
TEST(CommandLine, AMatrixBeyondTheMemoryLimitIsRefusedBeforeTheFirstPass) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's shadow memory cannot start under an address-space limit";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  GTEST_SKIP() << "AddressSanitizer's shadow memory cannot start under an address-space limit";
#endif
#endif
  TempDir dir("cli-memory");
  {
    gpede::MilleWriter writer(dir.path() / "wide.bin");
    for (int r = 0; r < 4000; ++r) {
      for (int i = 0; i < 10; ++i) {
        const double local[1] = {1.0};
        const double global[1] = {1.0};
        const std::int32_t label[1] = {1 + r * 10 + i};
        writer.add_measurement(1, local, 1, global, label, 0.001 * i, 0.01);
      }
      writer.end_record();
    }
    writer.close();
  }
  write_text(dir.path() / "steer.txt", "wide.bin\nentries 1 1\nmethod diagonalization 1 0.1\n");
  Process run(dir.path(), {"--backend", "cpu", "--threads", "1", "steer.txt"}, RLIM_INFINITY, rlim_t{6} << 30);
  EXPECT_EQ(run.wait(), gpede::exit_code::memory);
  EXPECT_EQ(end_code(dir.path()), gpede::exit_code::memory);
  const std::string out = read_text(dir.path() / "out.txt");
  EXPECT_NE(out.find("not enough memory"), std::string::npos) << out;
  EXPECT_NE(out.find("40000 parameters"), std::string::npos) << out;
  EXPECT_NE(out.find("the dense global matrix alone is 12.8 GB"), std::string::npos) << out;
  EXPECT_NE(out.find("ulimit -v"), std::string::npos) << out;
  EXPECT_NE(out.find("method sparseMINRES"), std::string::npos) << "the sparse matrix proposed:\n" << out;
  EXPECT_EQ(out.find("it 0"), std::string::npos) << "a pass ran:\n" << out;
}

// A disk that fills while the results are written (here: a file size limit) leaves no partial
// result set: no millepede.res beside a missing gpede.json, and millepede.end says why.
TEST(CommandLine, ADiskThatFillsWhileResultsAreWrittenLeavesNoPartialSet) {
  TempDir dir("cli-full-disk");
  write_tracks(dir.path() / "data.bin", 200, 10);
  write_text(dir.path() / "steer.txt", std::string("data.bin\n") + kSteeringTail);
  {
    Process full(dir.path(), {"--output-dir", "full", "steer.txt"});
    ASSERT_EQ(full.wait(), 0) << read_text(dir.path() / "out.txt");
  }
  const auto res = fs::file_size(dir.path() / "full" / "millepede.res");
  const auto json = fs::file_size(dir.path() / "full" / "gpede.json");
  const auto log = fs::file_size(dir.path() / "full" / "millepede.log");
  // a limit that lets millepede.res (written first) through but not the larger of millepede.log
  // and gpede.json (written after it)
  const auto limit = std::max(log, json) - 1;
  ASSERT_LT(res, limit);
  Process run(dir.path(), {"--output-dir", "limited", "steer.txt"}, static_cast<rlim_t>(limit));
  EXPECT_EQ(run.wait(), gpede::exit_code::output_error) << read_text(dir.path() / "out.txt");
  EXPECT_EQ(end_code(dir.path() / "limited"), gpede::exit_code::output_error);
  for (const char* name : {"millepede.res", "millepede.log", "gpede.json"}) {
    EXPECT_FALSE(fs::exists(dir.path() / "limited" / name)) << name;
  }
  for (const auto& entry : fs::directory_iterator(dir.path() / "limited")) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos) << entry.path();
  }
}

// The library's write_results: a set that cannot be completed is not begun.
TEST(Output, AResultSetThatCannotBeCompletedIsNotBegun) {
  TempDir dir("output-whole");
  write_tracks(dir.path() / "data.bin", 100, 11);
  write_text(dir.path() / "steer.txt", std::string("data.bin\n") + kSteeringTail);
  const gpede::Steering steering = gpede::parse_steering(dir.path() / "steer.txt");
  gpede::SolverOptions options;
  options.record_printout.clear();
  gpede::SolveResult result = gpede::solve(steering, options);
  fs::create_directories(dir.path() / "out" / "gpede.json" / "in-the-way");
  EXPECT_THROW(gpede::write_results(dir.path() / "out", result, steering), gpede::OutputError);
  EXPECT_FALSE(fs::exists(dir.path() / "out" / "millepede.res"));
  EXPECT_FALSE(fs::exists(dir.path() / "out" / "millepede.end"));
}

// pede's codes for files that are missing or cannot be read, from the command line.
struct CodeCase {
  const char* name;
  const char* setup;  // shell commands run in the folder first
  const char* args;
  int code;
  const char* says;  // part of the message
};

void PrintTo(const CodeCase& c, std::ostream* os) { *os << c.name; }

class PedeCodes : public testing::TestWithParam<CodeCase> {};

TEST_P(PedeCodes, SameCodeAsPede) {
  const CodeCase& c = GetParam();
  TempDir dir(std::string("codes-") + c.name);
  write_tracks(dir.path() / "data.bin", 50, 12);
  write_text(dir.path() / "steerfile", std::string("data.bin\n") + kSteeringTail);
  std::string output;
  ASSERT_EQ(gpede::test::run_command("cd '" + dir.path().string() + "' && " + c.setup), 0);
  const int status = gpede::test::run_command(
      "cd '" + dir.path().string() + "' && '" + gpede::test::gpede_binary().string() + "' " + c.args, &output);
  EXPECT_EQ(status, c.code) << output;
  if (c.code >= 10) EXPECT_EQ(end_code(dir.path()), c.code) << read_text(dir.path() / "millepede.end");
  EXPECT_NE(output.find(c.says), std::string::npos) << output;
}

INSTANTIATE_TEST_SUITE_P(
    FilesAndCommandLine, PedeCodes,
    testing::Values(
        CodeCase{"no_steerfile", "rm steerfile", "", 10, "no steering file"},
        CodeCase{"steering_folder", "mkdir s.txt", "s.txt", 11, "folder"},
        CodeCase{"second_steering", "cp steerfile b.txt", "steerfile b.txt", 12, "second steering file 'b.txt'"},
        CodeCase{"no_binary_files", "printf 'method inversion 3 0.1\\n' > s.txt", "s.txt", 14, "no binary files"},
        CodeCase{"only_binary_missing", "printf 'nope.bin\\nmethod inversion 3 0.1\\n' > s.txt", "s.txt", 14,
                 "nope.bin"},
        CodeCase{"named_steering_missing", "true", "missing.txt", 16, "missing.txt"},
        CodeCase{"text_file_folder", "mkdir c.txt && printf 'data.bin\\nc.txt\\n' > s.txt", "s.txt", 16, "c.txt"},
        CodeCase{"binary_folder", "mkdir d.bin && printf 'd.bin\\nmethod inversion 3 0.1\\n' > s.txt", "s.txt", 18,
                 "d.bin"},
        CodeCase{"binary_missing_beside_another", "printf 'data.bin\\nnope.bin\\n' > s.txt", "s.txt", 13,
                 "nope.bin"},
        CodeCase{"threads_not_a_number", "true", "--threads abc steerfile", 2, "--threads needs a whole number"},
        CodeCase{"memory_not_positive", "true", "--memory -2 steerfile", 2, "--memory needs a number of gigabytes"},
        // a plan that cannot fit is refused before the first pass, with what is needed
        CodeCase{"memory_too_small", "true", "--memory 0.0000001 steerfile", 30, "limited by the limit asked for"}),
    [](const testing::TestParamInfo<CodeCase>& info) { return std::string(info.param.name); });

}  // namespace
