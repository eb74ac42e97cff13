// pede's result files: millepede.res, millepede.eve, millepede.end, millepede.log, plus gpede.json.
// Every file is written to a temporary name in the same folder and renamed, so it is whole or absent.
#pragma once

#include <filesystem>
#include <string>

#include "gpede/solver.hpp"

namespace gpede {

/// pede's Fortran G14.5 edit of x (14 characters).
std::string format_g14_5(double x);

/// millepede.res in pede's exact format (columns by method, fixed parameters with 3 columns,
/// printcounts, globalcorr).
void write_res(const std::filesystem::path& file, const SolveResult& result, const Steering& steering);
/// millepede.eve (diagonalization): eigenvalues and eigenvectors.
void write_eve(const std::filesystem::path& file, const SolveResult& result);
/// millepede.end: exit code and message.
void write_end(const std::filesystem::path& file, int exit_code, const std::string& message);
/// millepede.log: files, options, iteration table, Sum(Chi^2)/Sum(Ndf), timings.
void write_log(const std::filesystem::path& file, const SolveResult& result, const Steering& steering);
/// gpede.json: the run's figures (chi2, ndf, parameters, records, time and memory per phase, backend).
void write_json(const std::filesystem::path& file, const SolveResult& result, const Steering& steering);

/// Writes `content` to file via a temporary file in the same folder and a rename.
void write_file_atomically(const std::filesystem::path& file, const std::string& content);

}  // namespace gpede
