// Record sources: the steering's binary files read in sequence (file weights, maxrecord).
#include <algorithm>

#include "gpede/error.hpp"
#include "gpede/mille.hpp"
#include "gpede/solver.hpp"

namespace gpede {
namespace {

class FileSource final : public RecordSource {
 public:
  explicit FileSource(const Steering& steering) : m_maxrecord(steering.maxrecord) {
    m_readers.reserve(steering.binary_files.size());
    for (std::size_t i = 0; i < steering.binary_files.size(); ++i) {
      m_readers.emplace_back(steering.binary_files[i], static_cast<std::int32_t>(i));
    }
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
  std::vector<MilleReader> m_readers;
  std::size_t m_current = 0;
  std::int64_t m_total = 0;
  std::int64_t m_maxrecord = -1;
};

}  // namespace

std::unique_ptr<RecordSource> make_file_source(const Steering& steering) {
  return std::make_unique<FileSource>(steering);
}

}  // namespace gpede
