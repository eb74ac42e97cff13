// Shared parts of the libFuzzer targets: a private temporary folder per process (created on first
// use, removed at exit), writing an input into a file there, and the checks on the messages of the
// exceptions that gpede throws for bad input.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

namespace gpede::fuzz {

/// Longest message accepted from an InputError or RuntimeError.
inline constexpr std::size_t max_message_bytes = 4096;

/// The process's private temporary folder ($TMPDIR, else /tmp), empty apart from the files that
/// the target writes into it. Removed when the process exits normally.
inline const std::filesystem::path& private_folder() {
  static const std::filesystem::path folder = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/gpede-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("gpede fuzz: cannot create a temporary folder");
      std::abort();
    }
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(private_folder(), ec);
    });
    return std::filesystem::path(pattern);
  }();
  return folder;
}

/// Writes size bytes into `name` in the private folder (replacing it) and returns its path.
inline std::filesystem::path write_file(const std::string& name, const void* data, std::size_t size) {
  const std::filesystem::path path = private_folder() / name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror("gpede fuzz: cannot write the input file");
    std::abort();
  }
  return path;
}

/// False where GPEDE_FUZZ_IGNORE_MESSAGES=1: the message checks are then skipped, to look for
/// other faults while a message finding is open.
inline bool message_checks_on() {
  static const bool on = [] {
    const char* v = std::getenv("GPEDE_FUZZ_IGNORE_MESSAGES");
    return v == nullptr || std::strcmp(v, "1") != 0;
  }();
  return on;
}

/// Traps (a finding for libFuzzer) unless the message is at most max_message_bytes long and holds
/// no control character other than newline and tab. what() is a C string: a message built from
/// text with a NUL byte in it ends at that byte, so the check sees the characters before it.
inline void check_message(const char* what) {
  if (!message_checks_on()) return;
  if (what == nullptr) __builtin_trap();
  const std::size_t n = ::strnlen(what, max_message_bytes + 1);
  if (n > max_message_bytes) {
    std::fprintf(stderr, "gpede fuzz: message longer than %zu bytes: %.200s...\n", max_message_bytes, what);
    __builtin_trap();
  }
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(what[i]);
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
      std::fprintf(stderr, "gpede fuzz: control character 0x%02x at byte %zu of the message: %.*s\n", c, i,
                   static_cast<int>(n), what);
      __builtin_trap();
    }
  }
}

}  // namespace gpede::fuzz
