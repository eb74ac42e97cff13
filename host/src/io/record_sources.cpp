// Record sources: the steering's binary files read in sequence (file weights, maxrecord).
#include <algorithm>
#include <climits>
#include <string>

#include "gpede/error.hpp"
#include "gpede/mille.hpp"
#include "gpede/solver.hpp"

namespace gpede {
namespace {

class FileSource final : public RecordSource {
 public:
  FileSource(const Steering& steering, int share, int share_count) : m_maxrecord(steering.maxrecord) {
    m_readers.reserve(steering.binary_files.size());
    for (std::size_t i = 0; i < steering.binary_files.size(); ++i) {
      m_readers.emplace_back(steering.binary_files[i], static_cast<std::int32_t>(i));
    }
    if (share_count > 1) split(share, share_count);
  }

  std::size_t next(RecordBatch& batch, std::size_t max_records) override {
    while (m_current < m_readers.size()) {
      std::size_t want = max_records;
      if (m_maxrecord >= 0) {
        if (m_total >= m_maxrecord) return 0;
        want = std::min<std::size_t>(want, static_cast<std::size_t>(m_maxrecord - m_total));
      }
      const std::size_t n = m_readers[m_current].read(batch, want);
      if (n > 0) {
        m_total += static_cast<std::int64_t>(n);
        return n;
      }
      ++m_current;
    }
    return 0;
  }

  void rewind() override {
    for (auto& r : m_readers) r.rewind();
    m_current = 0;
    m_total = 0;
  }

 private:
  /// The files' bytes end to end, cut into share_count equal parts: each reader gets the part of
  /// share `share` that falls in its file; a gzip file (no offsets known before it is read) goes
  /// whole to the share that holds its middle byte. Readers outside the share are dropped.
  void split(int share, int share_count) {
    std::int64_t total = 0;
    for (const auto& r : m_readers) total += std::max<std::int64_t>(0, r.file_bytes());
    const auto cut = [&](int k) {
      return static_cast<std::int64_t>(static_cast<__int128>(total) * k / share_count);
    };
    const std::int64_t lo = cut(share), hi = cut(share + 1);
    std::vector<MilleReader> kept;
    std::int64_t start = 0;
    for (auto& r : m_readers) {
      const std::int64_t size = std::max<std::int64_t>(0, r.file_bytes());
      const std::int64_t first = start;
      start += size;
      if (r.compressed()) {
        const std::int64_t middle = first + size / 2;
        if (middle >= lo && (middle < hi || share == share_count - 1)) kept.push_back(std::move(r));
        continue;
      }
      const std::int64_t begin = std::max(lo, first) - first;
      // The last share runs to the end of every file (a file that grew is caught by the reader).
      const std::int64_t end = share == share_count - 1 ? INT64_MAX : std::min(hi, first + size) - first;
      if (begin >= size || begin >= end) continue;
      r.set_share(begin, end);
      kept.push_back(std::move(r));
    }
    m_readers = std::move(kept);
  }

  std::vector<MilleReader> m_readers;
  std::size_t m_current = 0;
  std::int64_t m_total = 0;
  std::int64_t m_maxrecord = -1;
};

}  // namespace

std::unique_ptr<RecordSource> make_file_source(const Steering& steering, int share, int share_count) {
  if (share_count < 1 || share < 0 || share >= share_count) {
    throw RuntimeError("make_file_source: share " + std::to_string(share) + " of " + std::to_string(share_count));
  }
  if (share_count > 1 && steering.maxrecord >= 0) {
    throw InputError("maxrecord (" + steering.steering_file.string() + ") needs the records in one process; it " +
                         "cannot be used with " + std::to_string(share_count) + " processes",
                     exit_code::steering_error);
  }
  return std::make_unique<FileSource>(steering, share, share_count);
}

}  // namespace gpede
