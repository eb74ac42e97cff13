// The output folder of a run: created, locked against a second run, cleared of an earlier run's
// result files, and marked as running (output.hpp, RunFolder).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "gpede/output.hpp"

namespace gpede {
namespace {

constexpr const char* lock_name = ".gpede.lock";
/// The result files of a run; those of an earlier run are removed when a new one starts, so that
/// the folder never shows files of two runs.
constexpr const char* result_names[] = {"millepede.res", "millepede.eve", "millepede.log", "gpede.json",
                                        "mpdebug.txt"};

std::string errno_text(int error) { return std::strerror(error); }

/// The process id written into the lock file by the run that holds it ("" if none can be read).
std::string holder_of(int fd) {
  char text[32] = {};
  const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
  if (n <= 0) return {};
  std::string pid(text, static_cast<std::size_t>(n));
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid.find_first_not_of("0123456789") == std::string::npos ? pid : std::string();
}

}  // namespace

RunFolder::RunFolder(const std::filesystem::path& folder) : m_folder(folder.empty() ? "." : folder) {
  std::error_code ec;
  std::filesystem::create_directories(m_folder, ec);
  if (ec || !std::filesystem::is_directory(m_folder)) {
    throw OutputError("cannot create the output folder '" + m_folder.string() + "'" +
                          (ec ? ": " + ec.message() : std::string(": a file of that name is in the way")),
                      exit_code::output_error);
  }
  const std::filesystem::path lock = m_folder / lock_name;
  m_lock_fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (m_lock_fd < 0) {
    throw OutputError("the output folder '" + m_folder.string() + "' cannot be written (creating " + lock_name +
                          " failed: " + errno_text(errno) + ")",
                      exit_code::output_error);
  }
  int locked = -1;
  do {
    locked = ::flock(m_lock_fd, LOCK_EX | LOCK_NB);
  } while (locked != 0 && errno == EINTR);
  if (locked != 0) {
    const int error = errno;
    const std::string holder = holder_of(m_lock_fd);
    ::close(m_lock_fd);
    m_lock_fd = -1;
    if (error == EWOULDBLOCK) {
      throw OutputError("another gpede run" + (holder.empty() ? std::string() : " (process " + holder + ")") +
                            " is writing into the output folder '" + m_folder.string() +
                            "'; wait for it to end or choose another folder (--output-dir)",
                        exit_code::folder_in_use);
    }
    throw OutputError("cannot lock the output folder '" + m_folder.string() + "': " + errno_text(error),
                      exit_code::output_error);
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(m_lock_fd, 0) != 0 || ::pwrite(m_lock_fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int error = errno;
    ::close(m_lock_fd);
    m_lock_fd = -1;
    throw OutputError("the output folder '" + m_folder.string() + "' cannot be written (" + lock_name + ": " +
                          errno_text(error) + ")",
                      exit_code::output_error);
  }
  try {
    for (const char* name : result_names) {
      const std::filesystem::path file = m_folder / name;
      if (::unlink(file.c_str()) != 0 && errno != ENOENT) {
        throw OutputError("cannot remove the earlier run's '" + file.string() + "': " + errno_text(errno),
                          exit_code::output_error);
      }
    }
    try {
      write_end(m_folder / "millepede.end", -1, "Still running or crashed");
    } catch (const Error& e) {
      throw OutputError(e.what(), exit_code::output_error);
    }
  } catch (...) {
    ::close(m_lock_fd);
    m_lock_fd = -1;
    throw;
  }
}

RunFolder::~RunFolder() {
  if (m_lock_fd >= 0) ::close(m_lock_fd);
}

}  // namespace gpede
