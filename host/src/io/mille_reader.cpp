// Reader of Mille binary files: C records (single and double precision, mixed record by record)
// and Fortran sequential unformatted records, each plain or gzip-compressed (detected from the
// first two bytes). Records are validated and appended to a RecordBatch.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "gpede/error.hpp"
#include "gpede/mille.hpp"
#include "gpede/record_time.hpp"

namespace gpede {

namespace {

constexpr std::size_t k_chunk_bytes = std::size_t{4} << 20;
/// Records longer than this many (value, index) pairs are taken as a corrupt length word.
constexpr std::int64_t k_max_record_pairs = std::int64_t{1} << 26;

std::string errno_text(int err) { return std::strerror(err); }

/// Sequential bytes of a plain or gzip-compressed file.
class ByteSource {
 public:
  explicit ByteSource(const std::filesystem::path& path) : m_path(path) { open(); }
  ~ByteSource() { close(); }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  bool is_gzip() const noexcept { return m_gzip; }
  /// Size of the file on disk (for plain files: the size of the data).
  std::int64_t file_size() const noexcept { return m_file_size; }

  /// Reads up to n bytes; fewer only at the end of the data. Throws InputError on read errors.
  std::size_t read(char* dst, std::size_t n) {
    m_started = true;
    std::size_t total = 0;
    while (total < n) {
      if (m_gzip) {
        const unsigned int want =
            static_cast<unsigned int>(std::min<std::size_t>(n - total, std::size_t{1} << 30));
        const int got = gzread(m_gz, dst + total, want);
        if (got < 0) {
          int zerr = 0;
          const char* msg = gzerror(m_gz, &zerr);
          throw InputError("Mille file '" + m_path.string() +
                               "': gzip data cannot be decompressed (" +
                               (msg ? msg : "zlib error") + ")",
                           exit_code::bad_binary);
        }
        if (got == 0) {
          // gzread returns 0 both at the end and for a stream cut short; tell them apart.
          int zerr = 0;
          const char* msg = gzerror(m_gz, &zerr);
          if (zerr != Z_OK && zerr != Z_BUF_ERROR) {
            throw InputError("Mille file '" + m_path.string() +
                                 "': gzip data cannot be decompressed (" +
                                 (msg ? msg : "zlib error") + ")",
                             exit_code::bad_binary);
          }
          if (zerr == Z_BUF_ERROR) m_gzip_cut = true;
          break;
        }
        total += static_cast<std::size_t>(got);
      } else if (!m_prefix.empty()) {
        const std::size_t k = std::min(m_prefix.size(), n - total);
        std::memcpy(dst + total, m_prefix.data(), k);
        m_prefix.erase(0, k);
        total += k;
      } else {
        const ssize_t got = ::read(m_fd, dst + total, n - total);
        if (got < 0) {
          if (errno == EINTR) continue;
          throw InputError(
              "Mille file '" + m_path.string() + "': read error (" + errno_text(errno) + ")",
              exit_code::binary_read);
        }
        if (got == 0) break;
        total += static_cast<std::size_t>(got);
      }
    }
    return total;
  }

  /// True if the gzip stream ended without its trailer (file cut short).
  bool gzip_cut_short() const noexcept { return m_gzip_cut; }

  /// How the file on disk differs from the one opened (size, modification time, or another file
  /// now under its name); empty if it does not. Only regular files are compared.
  std::string change() const {
    if (!m_identity.regular) return {};
    struct stat st {};
    if (::stat(m_path.c_str(), &st) != 0) return "it cannot be found any more (" + errno_text(errno) + ")";
    if (st.st_dev != m_identity.device || st.st_ino != m_identity.inode) {
      return "another file has taken its name";
    }
    if (static_cast<std::int64_t>(st.st_size) != m_identity.size) {
      return "its size changed from " + std::to_string(m_identity.size) + " to " + std::to_string(st.st_size) +
             " bytes";
    }
    if (st.st_mtim.tv_sec != m_identity.mtime_s || st.st_mtim.tv_nsec != m_identity.mtime_ns) {
      return "its modification time changed";
    }
    return {};
  }

  /// Back to the first byte. A source not yet read is there already, so a pipe can be read once.
  void rewind() {
    if (!m_started) return;
    m_started = false;
    m_gzip_cut = false;
    if (m_gzip) {
      if (gzrewind(m_gz) != 0) {
        throw InputError("Mille file '" + m_path.string() + "': cannot rewind the gzip stream",
                         exit_code::bad_binary);
      }
    } else if (::lseek(m_fd, 0, SEEK_SET) != 0) {
      throw InputError(
          "Mille file '" + m_path.string() + "': cannot rewind (" + errno_text(errno) + ")",
          exit_code::bad_binary);
    }
  }

 private:
  void open() {
    m_fd = ::open(m_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (m_fd < 0) {
      const int err = errno;
      throw InputError("Mille file '" + m_path.string() + "' cannot be opened: " + errno_text(err),
                       exit_code::binary_open);
    }
    struct stat st {};
    if (::fstat(m_fd, &st) != 0 || S_ISDIR(st.st_mode)) {
      ::close(m_fd);
      m_fd = -1;
      throw InputError("Mille file '" + m_path.string() + "' cannot be read: it is a folder",
                       exit_code::binary_read);
    }
    m_file_size = S_ISREG(st.st_mode) ? static_cast<std::int64_t>(st.st_size) : -1;
    m_identity.regular = S_ISREG(st.st_mode);
    m_identity.device = st.st_dev;
    m_identity.inode = st.st_ino;
    m_identity.size = static_cast<std::int64_t>(st.st_size);
    m_identity.mtime_s = st.st_mtim.tv_sec;
    m_identity.mtime_ns = st.st_mtim.tv_nsec;
#ifdef POSIX_FADV_SEQUENTIAL
    ::posix_fadvise(m_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    unsigned char magic[2] = {0, 0};
    ssize_t got = 0;
    if (m_identity.regular) {
      do {
        got = ::pread(m_fd, magic, 2, 0);
      } while (got < 0 && errno == EINTR);
    } else {
      // A pipe cannot be read twice: its first bytes are kept and handed out first.
      while (got >= 0 && got < 2) {
        const ssize_t n = ::read(m_fd, magic + got, static_cast<std::size_t>(2 - got));
        if (n == 0) break;
        if (n < 0) {
          if (errno == EINTR) continue;
          got = -1;
          break;
        }
        got += n;
      }
      if (got > 0) m_prefix.assign(reinterpret_cast<const char*>(magic), static_cast<std::size_t>(got));
    }
    if (got < 0) {
      const int err = errno;
      ::close(m_fd);
      m_fd = -1;
      throw InputError("Mille file '" + m_path.string() + "' cannot be read: " + errno_text(err),
                       exit_code::binary_read);
    }
    m_gzip = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (m_gzip && !m_identity.regular) {
      ::close(m_fd);
      m_fd = -1;
      throw InputError("Mille file '" + m_path.string() +
                           "' is a gzip stream in a pipe, which gpede reads only from a file: decompress it into "
                           "the pipe",
                       exit_code::binary_read);
    }
    if (m_gzip) {
      m_gz = gzdopen(m_fd, "rb");
      if (m_gz == nullptr) {
        ::close(m_fd);
        m_fd = -1;
        throw InputError("Mille file '" + m_path.string() + "': cannot start gzip decompression",
                         exit_code::binary_read);
      }
      m_fd = -1;  // owned by m_gz now
      gzbuffer(m_gz, 1u << 20);
    }
  }

  void close() noexcept {
    if (m_gz != nullptr) gzclose(m_gz);
    if (m_fd >= 0) ::close(m_fd);
    m_gz = nullptr;
    m_fd = -1;
  }

  struct Identity {
    bool regular = false;
    dev_t device = 0;
    ino_t inode = 0;
    std::int64_t size = 0;
    std::int64_t mtime_s = 0;
    std::int64_t mtime_ns = 0;
  };

  std::filesystem::path m_path;
  Identity m_identity;  ///< the file as opened
  int m_fd = -1;
  gzFile m_gz = nullptr;
  bool m_gzip = false;
  bool m_gzip_cut = false;
  bool m_started = false;  ///< bytes were read since the open or the last rewind
  std::string m_prefix;    ///< the first bytes of a pipe, read to look for the gzip mark
  std::int64_t m_file_size = -1;
};

inline std::int32_t load_int(const char* p) {
  std::int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/// Sizes of the batch arrays before a record, to take a rejected record back out.
struct BatchMark {
  std::size_t meas, local, global;
};

void truncate_batch(RecordBatch& b, const BatchMark& m) {
  b.meas_value.resize(m.meas);
  b.meas_sigma.resize(m.meas);
  b.local_begin.resize(m.meas + 1);
  b.global_begin.resize(m.meas + 1);
  b.local_index.resize(m.local);
  b.local_deriv.resize(m.local);
  b.global_label.resize(m.global);
  b.global_index.resize(m.global);
  b.global_deriv.resize(m.global);
}

/// Problem found in a record: the 1-based pair where it is and what is wrong.
struct RecordFault {
  std::int64_t pair = 0;  ///< 1-based, 0 if it concerns the whole record
  std::string what;
};

/// Checks and appends the measurements of one record (values as T, M pairs); returns false and
/// fills fault (leaving the batch unchanged) if the record is bad.
template <typename T>
bool parse_record(const char* values, const char* indices, std::int64_t m, RecordBatch& b,
                  RecordFault& fault, RecordTime& time) {
  time = kNoTime;
  // NaN/inf check over all values first: a cheap branch-free scan.
  bool any_bad = false;
  for (std::int64_t k = 0; k < m; ++k) {
    T v;
    std::memcpy(&v, values + k * sizeof(T), sizeof(T));
    any_bad |= !std::isfinite(v);
  }
  auto val = [&](std::int64_t k) {
    T v;
    std::memcpy(&v, values + k * sizeof(T), sizeof(T));
    return static_cast<double>(v);
  };
  auto idx = [&](std::int64_t k) { return load_int(indices + k * 4); };
  if (any_bad) {
    for (std::int64_t k = 0; k < m; ++k) {
      if (!std::isfinite(val(k))) {
        fault = {k + 1, "value " + std::to_string(val(k)) + " (index " + std::to_string(idx(k)) +
                            ") is not a finite number"};
        return false;
      }
    }
  }

  const BatchMark mark{b.meas_value.size(), b.local_index.size(), b.global_label.size()};
  auto fail = [&](std::int64_t k, std::string what) {
    truncate_batch(b, mark);
    fault = {k + 1, std::move(what)};
    return false;
  };

  std::int64_t n_meas = 0;
  std::int64_t j = 1;  // pair 0 holds the writer's error counter
  while (j < m) {
    if (idx(j) != 0) {
      return fail(j, "expected the start of a measurement (index 0) but found index " +
                         std::to_string(idx(j)));
    }
    const std::int64_t ja = j;
    if (ja + 1 < m && idx(ja + 1) == 0 && val(ja + 1) < 0.0) {
      const double count = -val(ja + 1);
      if (count > static_cast<double>(m)) {
        return fail(ja + 1, "special block of " + std::to_string(count) +
                                " pairs is longer than the record");
      }
      const std::int64_t n_special = std::llround(count);
      if (ja + 2 + n_special > m) {
        return fail(ja + 1, "special block of " + std::to_string(n_special) +
                                " pairs runs past the end of the record");
      }
      if (n_special == kTimeBlockPairs && idx(ja + 2) == kTimeBlockTag && val(ja + 2) == 1.0) {
        const std::int32_t experiment = idx(ja + 3), run = idx(ja + 4);
        if (time != kNoTime) return fail(ja + 2, "a second time block in the record");
        if (experiment < 0 || run < 0) {
          return fail(ja + 2, "time block with experiment " + std::to_string(experiment) + " and run " +
                                  std::to_string(run) + " (both must be 0 or more)");
        }
        time = record_time(experiment, run);
      }
      j = ja + 2 + n_special;
      continue;
    }
    std::int64_t k = ja + 1;
    for (; k < m; ++k) {
      const std::int32_t i = idx(k);
      if (i == 0) break;
      if (i < 0) return fail(k, "local derivative with negative index " + std::to_string(i));
      b.local_index.push_back(i - 1);
      b.local_deriv.push_back(val(k));
    }
    if (k >= m)
      return fail(ja, "measurement has no sigma (the record ends before its second index-0 entry)");
    const double sigma = val(k);
    if (!(sigma > 0.0)) {
      return fail(k, "measurement error sigma = " + std::to_string(sigma) + " is not positive");
    }
    b.meas_value.push_back(val(ja));
    b.meas_sigma.push_back(sigma);
    for (++k; k < m; ++k) {
      const std::int32_t label = idx(k);
      if (label == 0) break;
      if (label < 0) return fail(k, "global label " + std::to_string(label) + " is not positive");
      b.global_label.push_back(label);
      b.global_deriv.push_back(val(k));
    }
    b.local_begin.push_back(static_cast<std::int64_t>(b.local_index.size()));
    b.global_begin.push_back(static_cast<std::int64_t>(b.global_label.size()));
    ++n_meas;
    j = k;
  }
  if (n_meas == 0) return fail(-1, "record holds no measurement");
  b.global_index.resize(b.global_label.size(), -1);
  return true;
}

}  // namespace

struct MilleReader::Impl {
  MilleFileSpec spec;
  std::int32_t file_index = 0;
  ByteSource source;
  std::vector<char> buf;
  std::size_t begin = 0;  ///< first unread byte in buf
  std::size_t end = 0;    ///< one past the last valid byte in buf
  bool at_eof = false;
  std::int64_t consumed = 0;  ///< stream offset of buf[begin]
  std::int64_t records = 0;
  std::int64_t double_records = 0;
  std::int64_t first_pass_records = -1;  ///< records of the first complete pass (pede's length check)
  std::int64_t share_begin = 0;          ///< MilleReader::set_share
  std::int64_t share_end = INT64_MAX;

  Impl(const MilleFileSpec& s, std::int32_t index) : spec(s), file_index(index), source(s.path) {
    buf.resize(k_chunk_bytes);
  }

  std::size_t available() const noexcept { return end - begin; }

  /// Makes n bytes available at buf[begin]; false if the data end first. The buffer grows only
  /// as data arrive, so a corrupt length word cannot make it allocate more than the file holds.
  bool ensure(std::size_t n) {
    while (available() < n) {
      if (at_eof) return false;
      if (begin > 0) {
        std::memmove(buf.data(), buf.data() + begin, available());
        end -= begin;
        begin = 0;
      }
      if (end == buf.size()) buf.resize(buf.size() * 2);
      const std::size_t want = buf.size() - end;
      const std::size_t got = source.read(buf.data() + end, want);
      end += got;
      if (got < want) at_eof = true;
    }
    return true;
  }

  void consume(std::size_t n) {
    begin += n;
    consumed += static_cast<std::int64_t>(n);
  }

  /// pede's "binary file modified" (19): the file changed since it was opened.
  [[noreturn]] void fail_changed(const std::string& how) const {
    throw InputError("Mille file '" + spec.path.string() + "' was modified during the run (" + how +
                         "): its records would differ from one pass over the data to the next. Write "
                         "binary files before the run, not during it",
                     exit_code::file_changed);
  }

  /// Before a pass and at the end of one: the file must be the one read before.
  void check_unchanged() const {
    const std::string how = source.change();
    if (!how.empty()) fail_changed(how);
  }

  [[noreturn]] void fail(std::int64_t record, std::int64_t offset, const std::string& what) const {
    // A record that breaks because the file is being written is a changed file, not a bad one.
    check_unchanged();
    std::ostringstream os;
    os << "Mille file '" << spec.path.string() << "': record " << record << " at byte offset "
       << offset;
    if (source.is_gzip()) os << " of the uncompressed data";
    os << ": " << what;
    throw InputError(os.str(), exit_code::bad_binary);
  }

  /// At the clean end of the data: the file is unchanged and, after the first pass, holds as many
  /// records as in the first.
  void end_of_pass() {
    check_unchanged();
    if (first_pass_records < 0) {
      first_pass_records = records;
    } else if (records != first_pass_records) {
      fail_changed("it now holds " + std::to_string(records) + " records, " + std::to_string(first_pass_records) +
                   " in the first pass");
    }
  }

  std::string where_eof() const {
    return source.is_gzip() && source.gzip_cut_short() ? " (the gzip stream is cut short)" : "";
  }

  /// Reads one record; false at the clean end of the data (or of the share).
  bool read_record(RecordBatch& b) {
    while (true) {
      if (consumed >= share_end) {
        end_of_pass();
        return false;
      }
      const bool skip = consumed < share_begin;
      if (!read_one(b, skip)) return false;
      if (!skip) return true;
    }
  }

  /// Reads one record, checked; with `skip` its values are not parsed nor appended. False at the
  /// clean end of the data.
  bool read_one(RecordBatch& b, bool skip) {
    const std::int64_t record = records + 1;
    const std::int64_t offset = consumed;
    const bool fortran = spec.format == MilleFormat::fortran_binary;
    const std::size_t head = fortran ? 8 : 4;
    if (!ensure(head)) {
      if (available() == 0) {
        if (source.is_gzip() && source.gzip_cut_short()) {
          fail(record, offset, "the gzip stream is cut short (the compressed file is truncated)");
        }
        end_of_pass();
        return false;
      }
      fail(record, offset,
           "truncated record: the data end " + std::to_string(available()) + " bytes into the " +
               std::to_string(head) + "-byte record header" + where_eof());
    }
    const char* p = buf.data() + begin;
    std::int32_t marker = 0;
    if (fortran) {
      marker = load_int(p);
      p += 4;
    }
    const std::int32_t n_words = load_int(p);
    if (n_words == 0 || n_words % 2 != 0) {
      fail(record, offset,
           "record length word N = " + std::to_string(n_words) +
               " is not a valid length (must be a non-zero even number)");
    }
    const bool is_double = n_words < 0;
    if (fortran && is_double) {
      fail(record, offset,
           "record length word N = " + std::to_string(n_words) +
               " is negative (Fortran records hold single precision only)");
    }
    const std::int64_t m = std::abs(static_cast<std::int64_t>(n_words)) / 2;
    if (m > k_max_record_pairs) {
      fail(record, offset,
           "record length word N = " + std::to_string(n_words) + " (" + std::to_string(m) +
               " pairs) exceeds the limit of " + std::to_string(k_max_record_pairs) +
               " pairs: corrupt length");
    }
    const std::int64_t value_bytes = m * (is_double ? 8 : 4);
    const std::int64_t payload = value_bytes + m * 4;
    if (fortran && marker != 4 + payload) {
      fail(record, offset,
           "Fortran record marker " + std::to_string(marker) + " does not fit N = " +
               std::to_string(n_words) + " (expected " + std::to_string(4 + payload) + " bytes)");
    }
    const std::int64_t total = static_cast<std::int64_t>(head) + payload + (fortran ? 4 : 0);
    if (!source.is_gzip() && source.file_size() >= 0 && total > source.file_size() - offset) {
      fail(record, offset,
           "truncated record: its length (N = " + std::to_string(n_words) + ", " +
               std::to_string(total) + " bytes) exceeds the " +
               std::to_string(source.file_size() - offset) + " bytes left in the file");
    }
    if (!ensure(static_cast<std::size_t>(total))) {
      fail(record, offset,
           "truncated record: the data end " + std::to_string(available()) +
               " bytes into a record of " + std::to_string(total) + " bytes" + where_eof());
    }
    p = buf.data() + begin + head;
    if (fortran) {
      const std::int32_t trailer = load_int(p + payload);
      if (trailer != marker) {
        fail(record, offset,
             "Fortran record markers disagree: leading " + std::to_string(marker) + ", trailing " +
                 std::to_string(trailer));
      }
    }

    if (skip) {
      consume(static_cast<std::size_t>(total));
      ++records;
      if (is_double) ++double_records;
      return true;
    }
    RecordFault fault;
    RecordTime time = kNoTime;
    const bool ok = is_double ? parse_record<double>(p, p + value_bytes, m, b, fault, time)
                              : parse_record<float>(p, p + value_bytes, m, b, fault, time);
    if (!ok) {
      fail(
          record, offset,
          (fault.pair > 0 ? "pair " + std::to_string(fault.pair) + " of " + std::to_string(m) + ": "
                          : std::string()) +
              fault.what);
    }
    b.record_begin.push_back(static_cast<std::int64_t>(b.meas_value.size()));
    b.record_weight.push_back(spec.weight);
    b.record_file.push_back(file_index);
    b.record_number.push_back(record);
    // one time per record, or none in the whole batch
    if (b.record_time.size() + 1 < b.record_number.size()) b.record_time.resize(b.record_number.size() - 1, kNoTime);
    b.record_time.push_back(time != kNoTime ? time : spec.time);
    consume(static_cast<std::size_t>(total));
    ++records;
    if (is_double) ++double_records;
    return true;
  }
};

MilleReader::MilleReader(const MilleFileSpec& spec, std::int32_t file_index)
    : m_impl(std::make_unique<Impl>(spec, file_index)) {}
MilleReader::~MilleReader() = default;
MilleReader::MilleReader(MilleReader&&) noexcept = default;
MilleReader& MilleReader::operator=(MilleReader&&) noexcept = default;

std::size_t MilleReader::read(RecordBatch& batch, std::size_t max_records) {
  std::size_t n = 0;
  while (n < max_records && m_impl->read_record(batch)) ++n;
  return n;
}

std::int64_t MilleReader::records_read() const noexcept { return m_impl->records; }
std::int64_t MilleReader::double_records_read() const noexcept { return m_impl->double_records; }

void MilleReader::rewind() {
  m_impl->check_unchanged();
  m_impl->source.rewind();
  m_impl->begin = m_impl->end = 0;
  m_impl->at_eof = false;
  m_impl->consumed = 0;
  m_impl->records = 0;
  m_impl->double_records = 0;
}

const MilleFileSpec& MilleReader::spec() const noexcept { return m_impl->spec; }

void MilleReader::set_share(std::int64_t begin, std::int64_t end) {
  m_impl->share_begin = begin;
  m_impl->share_end = end;
}

std::int64_t MilleReader::file_bytes() const noexcept { return m_impl->source.file_size(); }
bool MilleReader::compressed() const noexcept { return m_impl->source.is_gzip(); }

}  // namespace gpede
