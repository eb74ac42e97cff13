// Exception types of gpede. Bad user input (files, steering) is an InputError that names the file
// and the line, record or byte offset; a failed CUDA/LAPACK call or a broken invariant is a
// RuntimeError. Expected numerical outcomes (a matrix that is not positive definite) are returned
// in results, not thrown.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace gpede {

/// `text` as a message can show it, whatever the input held: control characters (NUL, newline and
/// tab included), DEL and bytes that are not UTF-8 become \xNN; after `max_bytes` bytes of the
/// input the rest is left out with a note of how many bytes that was.
std::string printable(std::string_view text, std::size_t max_bytes = 120);

/// A message bounded to `max_bytes` (16 KiB by default) and printable as printable() makes it, with
/// newlines and tabs kept. Error messages pass through it.
std::string bounded_message(std::string_view message, std::size_t max_bytes = 16384);

/// Base of all exceptions thrown by gpede. Its message is bounded and printable (bounded_message),
/// so that a file name or token copied from bad input cannot make it unreadable or huge.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(bounded_message(message)) {}
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

/// The run was asked to stop (SolverOptions::stop; the command line sets it on SIGINT and
/// SIGTERM). exit_code() is gpede's own code for it, 40.
class Interrupted : public Error {
 public:
  using Error::Error;
  int exit_code() const noexcept;
};

/// Infrastructure failure: a library call (LAPACK, CUDA, cuSOLVER) failed, memory ran out,
/// or a backend was requested that was not built.
class RuntimeError : public Error {
 public:
  using Error::Error;
};

/// The codes of millepede.end: pede's where pede has one for the same condition, gpede's own
/// (36 and from 40 on) where it has none. The README's table lists them all.
namespace exit_code {
inline constexpr int ok = 0;
inline constexpr int rejected_records = 1;        ///< warning: records were rejected
inline constexpr int usage = 2;                   ///< command-line usage (no file is written)
inline constexpr int steering_error = 10;         ///< a steering line pede would misread; the default steering file missing
inline constexpr int no_steering_file = 10;       ///< pede: no steering file (./steerfile missing)
inline constexpr int steering_open = 11;          ///< pede: open error for the steering file
inline constexpr int second_text_file = 12;       ///< pede: a second steering file on the command line
inline constexpr int unknown_keyword = 13;        ///< unknown keyword or missing file
inline constexpr int no_binary_files = 14;        ///< pede: no binary files
inline constexpr int binary_open = 15;            ///< pede: open error for a binary file
inline constexpr int open_error = 16;             ///< pede: open error for a named (text) file
inline constexpr int binary_read = 18;            ///< pede: read error for a binary file
inline constexpr int file_changed = 19;           ///< pede: binary file modified between passes
inline constexpr int bad_binary = 20;             ///< bad binary records
inline constexpr int no_data = 21;                ///< no (valid) records, empty data set
inline constexpr int too_many_rejects = 26;
inline constexpr int factorisation_failed = 29;   ///< matrix not positive definite
inline constexpr int memory = 30;                 ///< an internal failure (library call, memory)
inline constexpr int unsupported_method = 36;     ///< gpede: `method` names no method pede knows
inline constexpr int interrupted = 40;            ///< gpede: stopped by SIGINT or SIGTERM
inline constexpr int output_error = 41;           ///< gpede: the output folder or a result file cannot be written
inline constexpr int folder_in_use = 42;          ///< gpede: another run is writing into the output folder
}  // namespace exit_code

inline int Interrupted::exit_code() const noexcept { return exit_code::interrupted; }

}  // namespace gpede
