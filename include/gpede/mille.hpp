// Mille binary files: reading (C float, C double, both mixed, Fortran unformatted; each plain or
// gzip-compressed, detected by content) into RecordBatch, and writing (the counterpart of
// Millepede II's Mille.cc).
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>

#include "gpede/record_batch.hpp"

namespace gpede {

/// Physical layout of a Mille binary file.
enum class MilleFormat {
  c_binary,        ///< int32 N (2M floats, -2M doubles), M values, M int32 indices; repeated
  fortran_binary,  ///< gfortran sequential unformatted: int32 reclen, int32 2M, M float32, M int32, int32 reclen
};

/// One binary file as declared in the steering file.
struct MilleFileSpec {
  std::filesystem::path path;
  MilleFormat format = MilleFormat::c_binary;
  double weight = 1.0;  ///< `name -- w`: weight of every record of the file
  /// `filetime NAME TIME`: the time of the file's records that carry none (gpede/record_time.hpp).
  std::int64_t time = std::numeric_limits<std::int64_t>::min();
};

/// Sequential reader of one Mille file. Throws InputError (exit code 20) naming the file, the
/// record number and the byte offset for: truncated records, a record length that does not fit
/// the file, NaN or infinite values, a global label <= 0, sigma <= 0, a record without any
/// measurement, a broken record structure, a time block (gpede/record_time.hpp) with a negative
/// number or a second one. Other special blocks are skipped. A file that changes while it is read (size, modification time, another file under its name, or another number of
/// records than in the first pass) is pede's "binary file modified", exit code 19, checked at
/// every rewind, at the end of the data and before any record fault is reported. A file that
/// cannot be opened is 15, a folder or a read error 18.
class MilleReader {
 public:
  /// Opens the file (gzip detected from the first bytes). Throws InputError if it cannot be opened.
  /// file_index is stored in RecordBatch::record_file for every record read.
  MilleReader(const MilleFileSpec& spec, std::int32_t file_index);
  ~MilleReader();
  MilleReader(MilleReader&&) noexcept;
  MilleReader& operator=(MilleReader&&) noexcept;
  MilleReader(const MilleReader&) = delete;
  MilleReader& operator=(const MilleReader&) = delete;

  /// Appends up to max_records records to batch; returns how many were appended (0 at end of file).
  std::size_t read(RecordBatch& batch, std::size_t max_records);

  /// Records read so far (1-based number of the last record returned).
  std::int64_t records_read() const noexcept;
  /// Records read so far that held double-precision values.
  std::int64_t double_records_read() const noexcept;
  /// Restarts at the beginning of the file (for another pass over the data).
  void rewind();
  /// From now on, read() returns only the records that start at a byte offset in [begin, end) of
  /// the (uncompressed) data; those before are checked and passed over, and the pass ends at the
  /// first one at or after `end`. Records keep their numbers within the file.
  void set_share(std::int64_t begin, std::int64_t end);
  /// The file's size in bytes (compressed size for gzip), and whether it is gzip-compressed.
  std::int64_t file_bytes() const noexcept;
  bool compressed() const noexcept;

  const MilleFileSpec& spec() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

/// Precision of the values that MilleWriter writes.
enum class MillePrecision { single, double_ };

/// Writes Mille C binary records, as Millepede II's Mille class does: one call of
/// add_measurement() per measurement, end_record() per track. Writes to `path` + ".tmp" and
/// renames on close(), so a file is either complete or absent. Measurements with sigma <= 0 are
/// skipped (as Mille.cc does); zero derivatives are dropped.
class MilleWriter {
 public:
  MilleWriter(const std::filesystem::path& path, MillePrecision precision = MillePrecision::single);
  ~MilleWriter();  ///< closes (renames) if close() was not called; never throws
  MilleWriter(const MilleWriter&) = delete;
  MilleWriter& operator=(const MilleWriter&) = delete;

  /// One measurement: n_local local derivatives (index k+1 for derivative k), n_global global
  /// derivatives with their labels (> 0), the measured residual and its error.
  void add_measurement(int n_local, const double* local_derivs, int n_global,
                       const double* global_derivs, const std::int32_t* labels, double residual,
                       double sigma);
  /// Special block of user data (skipped by readers).
  void add_special(int n_special, const double* floats, const std::int32_t* ints);
  /// The record's time as its special block (gpede/record_time.hpp): experiment and run, each 0
  /// to 2^31 - 1 (a time stamp may stand in the run). At most one special block per record.
  void add_time(std::int32_t experiment, std::int32_t run);
  /// Discards the record being built.
  void kill_record();
  /// Writes the record being built (nothing if it holds no measurement).
  void end_record();
  /// Flushes, closes and renames the temporary file to its final name. Throws on I/O failure.
  void close();

  std::int64_t records_written() const noexcept;
  std::int64_t bytes_written() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace gpede
