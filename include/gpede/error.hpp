// Exception types of gpede. Bad user input (files, steering) is an InputError that names the file
// and the line, record or byte offset; a failed CUDA/LAPACK call or a broken invariant is a
// RuntimeError. Expected numerical outcomes (a matrix that is not positive definite) are returned
// in results, not thrown.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace gpede {

/// Base of all exceptions thrown by gpede.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Input that gpede cannot accept: a Mille file, a steering file or a text file.
/// what() is a complete user-facing message (file, location, what is wrong, what to do).
/// exit_code() is the code pede would write to millepede.end for the same fault.
class InputError : public Error {
 public:
  InputError(const std::string& message, int exit_code) : Error(message), m_exit_code(exit_code) {}
  int exit_code() const noexcept { return m_exit_code; }

 private:
  int m_exit_code;
};

/// Infrastructure failure: a library call (LAPACK, CUDA, cuSOLVER) failed, memory ran out,
/// or a backend was requested that was not built.
class RuntimeError : public Error {
 public:
  using Error::Error;
};

/// pede's exit codes (millepede.end) that gpede uses.
namespace exit_code {
inline constexpr int ok = 0;
inline constexpr int rejected_records = 1;        ///< warning: records were rejected
inline constexpr int steering_error = 10;         ///< bad steering (pede: 10..13)
inline constexpr int unknown_keyword = 13;        ///< unknown keyword or missing file
inline constexpr int file_changed = 19;
inline constexpr int bad_binary = 20;             ///< bad binary records
inline constexpr int no_data = 21;                ///< no (valid) records, empty data set
inline constexpr int too_many_rejects = 26;
inline constexpr int factorisation_failed = 29;   ///< matrix not positive definite
inline constexpr int memory = 30;
}  // namespace exit_code

}  // namespace gpede
