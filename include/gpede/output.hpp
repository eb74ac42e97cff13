// pede's result files: millepede.res, millepede.eve, millepede.end, millepede.log, plus gpede.json.
// Every file is written to a temporary name in the same folder and renamed, so it is whole or absent.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "gpede/error.hpp"
#include "gpede/solver.hpp"

namespace gpede {

/// pede's Fortran G14.5 edit of x as gfortran writes it, after rounding x to REAL*4 (14 characters).
std::string format_g14_5(double x);

/// millepede.res in pede's exact format (columns by method, fixed parameters with 3 columns,
/// printcounts, globalcorr).
void write_res(const std::filesystem::path& file, const SolveResult& result, const Steering& steering);
/// millepede.eve (diagonalization): the eigenvectors that eve_selection() names, in that order,
/// each numbered as pede does (1 = largest eigenvalue). Throws RuntimeError if one of them is
/// missing from result.eigen.eigenvectors; others there are not written.
void write_eve(const std::filesystem::path& file, const SolveResult& result);
/// The eigenvectors pede writes to millepede.eve, as indices into `eigenvalues` (ascending), in
/// pede's order: the 10 smallest positive eigenvalues (smallest first), then the 6 largest
/// (largest first); fewer when there are fewer than 16 positive eigenvalues.
std::vector<std::int64_t> eve_selection(const std::vector<double>& eigenvalues);
/// millepede.end: exit code and message.
void write_end(const std::filesystem::path& file, int exit_code, const std::string& message);
/// millepede.log: files, options, iteration table, Sum(Chi^2)/Sum(Ndf), timings.
void write_log(const std::filesystem::path& file, const SolveResult& result, const Steering& steering);
/// pede's lines `Sum(Chi^2)/Sum(Ndf) = ...` (or `Sum(W*Chi^2)/Sum(Ndf)/<W> = ...` with file
/// weights) and its chi2/ndf corrected for down-weighting, as millepede.log and standard output
/// show them (gfortran list-directed format).
std::string chi2_summary(const SolveResult& result);
/// The closing lines of a run on standard output, which workflows check: pede's "ending" line with
/// the date and its "Peak dynamic memory allocation" line (here the peak resident memory).
std::string ending_lines(const SolveResult& result);
/// gpede.json's schema_version: raised whenever a key changes meaning or goes away (new keys keep
/// it). The schema is in README.md ("gpede.json").
inline constexpr int kJsonSchemaVersion = 1;
/// gpede.json: the run's figures (chi2, ndf, parameters, records, time and memory per phase, backend).
void write_json(const std::filesystem::path& file, const SolveResult& result, const Steering& steering);

/// The contents of the files above, for callers that keep them elsewhere.
std::string res_text(const SolveResult& result, const Steering& steering);
std::string eve_text(const SolveResult& result);
std::string end_text(int exit_code, const std::string& message);
std::string log_text(const SolveResult& result, const Steering& steering);
std::string json_text(const SolveResult& result, const Steering& steering);
/// gpede_intervals.txt (time dependence): the intervals, then label, interval, the interval's
/// parameter label, first and last run seen, value and error, one line per label and interval.
std::string intervals_text(const SolveResult& result, const Steering& steering);

/// Every result file of a run into `folder`, as the command-line tool writes them: millepede.res
/// (and millepede.eve for diagonalization, gpede_intervals.txt with time dependence) unless the
/// run failed (exit code >= 10), then
/// millepede.log, gpede.json and millepede.end. The set is written whole or not at all: every file
/// goes to a temporary name first, and only when all are complete are they renamed, millepede.end
/// last; a failure (full disk, folder not writable) throws RuntimeError and leaves the folder's
/// files as they were. Sets result.figures.output_s.
void write_results(const std::filesystem::path& folder, SolveResult& result, const Steering& steering);

/// Writes `content` to file via a temporary file in the same folder and a rename.
void write_file_atomically(const std::filesystem::path& file, const std::string& content);

/// The output folder or a result file in it cannot be created or written (exit code 41), or
/// another run holds the folder (42).
class OutputError : public RuntimeError {
 public:
  OutputError(const std::string& message, int exit_code) : RuntimeError(message), m_exit_code(exit_code) {}
  int exit_code() const noexcept { return m_exit_code; }

 private:
  int m_exit_code;
};

/// The output folder of a run, made ready before any work, as the command-line tool does:
/// - created if it does not exist;
/// - locked: `.gpede.lock` in it holds an exclusive lock (flock) and the process id while the
///   object lives, so a second run into the same folder is refused (OutputError 42) instead of
///   mixing its files with this run's; the lock goes with the process, whatever ends it;
/// - cleared of an earlier run's result files (millepede.res, .eve, .log, gpede.json, mpdebug.txt);
/// - millepede.end set to pede's "-1   Still running or crashed" until the run writes its end.
/// A folder that cannot be created or written is OutputError 41, before any input is read.
class RunFolder {
 public:
  explicit RunFolder(const std::filesystem::path& folder);
  ~RunFolder();
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;

  const std::filesystem::path& path() const noexcept { return m_folder; }

 private:
  std::filesystem::path m_folder;
  int m_lock_fd = -1;
};

}  // namespace gpede
