// The records of a run and their labels: the label map, the entries per label, the records kept
// in memory (or read again per pass), and the first read that finds them all.
#include <sys/resource.h>

#include <algorithm>
#include <exception>
#include <string>

#include "gpede/detail/batch_layout.hpp"
#include "gpede/detail/byte_pack.hpp"
#include "gpede/error.hpp"
#include "solver_internal.hpp"

namespace gpede::detail {

namespace {

/// A batch from a record source, before anything else sees it: record numbers and files filled in
/// where the source left them out, then every array and offset checked, labels positive and local
/// indices at least 1 (the Mille reader checks its files the same way). InputError (code 20)
/// naming the record.
void check_source_batch(RecordBatch& batch, std::int64_t records_before) {
  const std::string who = "records handed to the solver";
  if (batch.record_begin.empty()) throw InputError(who + ": record_begin must start with 0", exit_code::bad_binary);
  const std::size_t n_records = batch.n_records();
  if (batch.record_file.empty()) batch.record_file.assign(n_records, 0);
  if (batch.record_number.empty()) {
    for (std::size_t r = 0; r < n_records; ++r) {
      batch.record_number.push_back(records_before + static_cast<std::int64_t>(r) + 1);
    }
  }
  try {
    check_batch_layout(batch, who, GlobalArray::label);
  } catch (const RuntimeError& e) {
    throw InputError(e.what(), exit_code::bad_binary);
  }
  if (batch.record_file.size() != n_records || batch.record_number.size() != n_records) {
    throw InputError(who + ": record_file and record_number do not have one entry per record", exit_code::bad_binary);
  }
  if (!batch.record_time.empty() && batch.record_time.size() != n_records) {
    throw InputError(who + ": record_time has " + std::to_string(batch.record_time.size()) + " entries for " +
                         std::to_string(n_records) + " records (none, or one per record)",
                     exit_code::bad_binary);
  }
  for (std::size_t r = 0; r < n_records; ++r) {
    const auto record = static_cast<std::int64_t>(r);
    std::string problem = record_offsets_problem(batch, record);
    const std::int64_t m0 = batch.record_begin[r], m1 = batch.record_begin[r + 1];
    for (std::int64_t e = batch.global_begin[m0]; e < batch.global_begin[m1] && problem.empty(); ++e) {
      if (batch.global_label[e] <= 0) {
        problem = "has global label " + std::to_string(batch.global_label[e]) + "; labels are positive (1 to 2147483647)";
      }
    }
    if (!problem.empty()) throw InputError(who + ": " + record_name(batch, record) + " " + problem, exit_code::bad_binary);
  }
}

}  // namespace

void LabelMap::build(std::vector<std::int32_t> labels) {
  std::sort(labels.begin(), labels.end());
  labels.erase(std::unique(labels.begin(), labels.end()), labels.end());
  m_labels = std::move(labels);
  m_dense.clear();
  m_hash.clear();
  const std::int64_t max_label = m_labels.empty() ? 0 : m_labels.back();
  m_use_dense = max_label < kDensePerLabel * static_cast<std::int64_t>(m_labels.size()) + kDenseBase;
  if (m_use_dense) {
    m_dense.assign(static_cast<std::size_t>(max_label) + 1, -1);
    for (std::size_t i = 0; i < m_labels.size(); ++i) m_dense[m_labels[i]] = static_cast<std::int32_t>(i);
  } else {
    m_hash.reserve(m_labels.size() * 2);
    for (std::size_t i = 0; i < m_labels.size(); ++i) m_hash[m_labels[i]] = static_cast<std::int32_t>(i);
  }
}

std::int32_t LabelMap::index(std::int32_t label) const {
  if (m_use_dense) {
    return (label >= 0 && static_cast<std::size_t>(label) < m_dense.size()) ? m_dense[label] : -1;
  }
  auto it = m_hash.find(label);
  return it == m_hash.end() ? -1 : it->second;
}

void LabelMap::map_batch(RecordBatch& batch) const {
  batch.global_index.resize(batch.global_label.size());
  for (std::size_t k = 0; k < batch.global_label.size(); ++k) batch.global_index[k] = index(batch.global_label[k]);
}

std::size_t LabelMap::table_bytes() const {
  // a hash node holds the pair, a next pointer and the cached hash; plus a bucket pointer
  return m_dense.size() * sizeof(std::int32_t) + m_hash.size() * 32 + m_hash.bucket_count() * sizeof(void*);
}

std::size_t EntryCounter::table_bytes() const {
  return m_dense.size() * sizeof(std::int64_t) + m_hash.size() * 32 + m_hash.bucket_count() * sizeof(void*);
}

void EntryCounter::bump(std::int32_t label, std::int64_t amount) {
  if (label >= 0 && static_cast<std::size_t>(label) < m_dense.size()) {
    if (m_dense[label] == 0) ++m_distinct;
    m_dense[label] += amount;
    return;
  }
  const std::int64_t allowance = kDensePerLabel * (m_distinct + 1) + kDenseBase;
  if (label >= 0 && label < allowance) {
    // Grow the table (at least doubling, within the allowance) and move the labels it now covers
    // out of the hash map.
    const std::size_t size = std::min<std::size_t>(
        static_cast<std::size_t>(allowance),
        std::max<std::size_t>(static_cast<std::size_t>(label) + 1, m_dense.size() * 2));
    m_dense.resize(size, 0);
    for (auto it = m_hash.begin(); it != m_hash.end();) {
      if (it->first >= 0 && static_cast<std::size_t>(it->first) < size) {
        m_dense[it->first] = it->second;
        it = m_hash.erase(it);
      } else {
        ++it;
      }
    }
    if (m_dense[label] == 0) ++m_distinct;
    m_dense[label] += amount;
    return;
  }
  std::int64_t& count = m_hash[label];
  if (count == 0) ++m_distinct;
  count += amount;
}

void EntryCounter::combine(ProcessGroup& processes) {
  // This process's (label, count) pairs; every process adds up everyone's.
  std::vector<std::int32_t> labels;
  std::vector<std::int64_t> counts;
  for (std::size_t l = 0; l < m_dense.size(); ++l) {
    if (m_dense[l] > 0) {
      labels.push_back(static_cast<std::int32_t>(l));
      counts.push_back(m_dense[l]);
    }
  }
  for (const auto& [label, count] : m_hash) {
    if (count > 0) {
      labels.push_back(label);
      counts.push_back(count);
    }
  }
  Packer mine;
  mine.put(labels);
  mine.put(counts);
  const std::vector<std::vector<char>> all = processes.gather(mine.bytes());
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    if (r == processes.rank()) continue;
    Unpacker u(all[static_cast<std::size_t>(r)]);
    const auto their_labels = u.get_vector<std::int32_t>();
    const auto their_counts = u.get_vector<std::int64_t>();
    for (std::size_t k = 0; k < their_labels.size() && k < their_counts.size(); ++k) {
      bump(their_labels[k], their_counts[k]);
    }
  }
}

void EntryCounter::add(const RecordBatch& batch) {
  if (!m_per_record) {
    for (std::int32_t label : batch.global_label) bump(label);
    return;
  }
  for (std::size_t r = 0; r < batch.n_records(); ++r) {
    const std::int64_t first = batch.global_begin[batch.record_begin[r]];
    const std::int64_t last = batch.global_begin[batch.record_begin[r + 1]];
    m_seen.assign(batch.global_label.begin() + first, batch.global_label.begin() + last);
    std::sort(m_seen.begin(), m_seen.end());
    m_seen.erase(std::unique(m_seen.begin(), m_seen.end()), m_seen.end());
    for (std::int32_t label : m_seen) bump(label);
  }
}

std::vector<std::int32_t> EntryCounter::labels() const {
  std::vector<std::int32_t> out;
  for (std::size_t l = 0; l < m_dense.size(); ++l) {
    if (m_dense[l] > 0) out.push_back(static_cast<std::int32_t>(l));
  }
  for (const auto& [label, count] : m_hash) out.push_back(label);
  return out;
}

std::int64_t EntryCounter::count(std::int32_t label) const {
  if (label >= 0 && static_cast<std::size_t>(label) < m_dense.size()) return m_dense[label];
  auto it = m_hash.find(label);
  return it == m_hash.end() ? 0 : it->second;
}

std::int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<std::int64_t>(usage.ru_maxrss) * 1024;
}

void check_stop(const std::atomic<bool>* stop) {
  if (stop != nullptr && stop->load(std::memory_order_relaxed)) {
    throw Interrupted("stopped on request before the solution was complete");
  }
}

void ProgressMeter::begin(Progress::Phase phase, int iteration, std::int64_t total) {
  m_active = true;
  m_now = Progress{};
  m_now.phase = phase;
  m_now.iteration = iteration;
  m_now.records_total = total;
  m_start = m_last = std::chrono::steady_clock::now();
}

void ProgressMeter::advance(std::int64_t records) {
  if (!m_active) return;
  m_now.records_done += records;
  if (!m_callback) return;
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - m_last).count() >= m_interval) report(false);
}

void ProgressMeter::finish() {
  if (!m_active) return;
  report(true);
  m_active = false;
}

void ProgressMeter::report(bool finished) {
  if (!m_callback) return;
  const auto now = std::chrono::steady_clock::now();
  m_last = now;
  m_now.seconds = std::chrono::duration<double>(now - m_start).count();
  m_now.finished = finished;
  m_now.records_per_second = m_now.seconds > 0.0 && m_now.records_done > 0
                                 ? static_cast<double>(m_now.records_done) / m_now.seconds
                                 : 0.0;
  m_now.seconds_left = -1.0;
  if (finished) {
    m_now.seconds_left = 0.0;
  } else if (m_now.records_total > 0 && m_now.records_per_second > 0.0) {
    m_now.seconds_left =
        static_cast<double>(std::max<std::int64_t>(0, m_now.records_total - m_now.records_done)) / m_now.records_per_second;
  }
  if (m_callback(m_now)) {
    m_active = false;
    throw Interrupted("stopped by the progress callback");
  }
}

void DataSet::shared(const std::function<void()>& loop) {
  if (m_processes == nullptr || m_processes->size() <= 1) {
    loop();
    return;
  }
  std::exception_ptr failure;
  try {
    loop();
  } catch (...) {
    failure = std::current_exception();
  }
  gather_or_rethrow(m_processes, failure, {});
}

std::vector<std::vector<char>> gather_or_rethrow(ProcessGroup* processes, const std::exception_ptr& failure,
                                                 const std::vector<char>& mine) {
  if (processes == nullptr || processes->size() <= 1) {
    if (failure) std::rethrow_exception(failure);
    return {mine};
  }
  Packer sent;
  pack_exception(sent, failure);
  sent.put(mine);
  const std::vector<std::vector<char>> all = processes->gather(sent.bytes());
  if (failure) std::rethrow_exception(failure);
  std::vector<std::vector<char>> out;
  for (std::size_t r = 0; r < all.size(); ++r) {
    // The first failing process's error, on every process; the prefix tells the command that
    // the error is another process's (it prints it on the first process only).
    Unpacker u(all[r]);
    rethrow_packed(u, "(process " + std::to_string(r + 1) + " of " + std::to_string(all.size()) + ") ");
    out.push_back(u.get_vector<char>());
  }
  return out;
}

void DataSet::first_read(const std::function<void(const RecordBatch&)>& per_batch) {
  shared([&] { first_read_loop(per_batch); });
}

void DataSet::first_read_loop(const std::function<void(const RecordBatch&)>& per_batch) {
  m_source.rewind();
  while (true) {
    check_stop();
    RecordBatch batch;
    if (m_source.next(batch, m_batch_records) == 0) break;
    check_source_batch(batch, m_records_read);
    m_records_read += static_cast<std::int64_t>(batch.n_records());
    per_batch(batch);
    if (m_meter != nullptr) m_meter->advance(static_cast<std::int64_t>(batch.n_records()));
    if (!m_cache) continue;
    // kept in pieces of kCachePiece records: a pass expands one piece at a time
    for (std::size_t first = 0; first < batch.n_records(); first += kCachePiece) {
      m_batches.emplace_back(batch, first, std::min(batch.n_records(), first + kCachePiece));
      m_cached_bytes += m_batches.back().bytes();
    }
    if (m_cached_bytes > m_cache_budget) {  // too many to keep: read them again in every pass
      m_cache_dropped_at = m_cached_bytes;
      m_cache = false;
      m_batches = std::vector<CompactBatch>();
    }
  }
}

void DataSet::check_stop() const { detail::check_stop(m_stop); }

void DataSet::map_cached(const LabelMap& map) {
  for (auto& b : m_batches) b.map_labels(map);
}

void DataSet::pass(const LabelMap& map, const std::function<void(const RecordBatch&)>& per_batch) {
  shared([&] { pass_loop(map, per_batch); });
}

void DataSet::pass_loop(const LabelMap& map, const std::function<void(const RecordBatch&)>& per_batch) {
  if (m_cache) {
    for (const auto& b : m_batches) {
      check_stop();
      b.expand(map.labels(), m_expanded);
      per_batch(m_expanded);
      if (m_meter != nullptr) m_meter->advance(static_cast<std::int64_t>(m_expanded.n_records()));
    }
    return;
  }
  m_source.rewind();
  RecordBatch batch;
  while (true) {
    check_stop();
    batch.clear();
    if (m_source.next(batch, m_batch_records) == 0) break;
    map.map_batch(batch);
    per_batch(batch);
    if (m_meter != nullptr) m_meter->advance(static_cast<std::int64_t>(batch.n_records()));
  }
}

ReadOutcome read_records(const Steering& steering, DataSet& data, EntryCounter& counter, LabelMap& labels,
                         ProcessGroup* processes) {
  ReadOutcome out;
  data.first_read([&](const RecordBatch& batch) {
    out.max_batch_bytes = std::max(out.max_batch_bytes, batch.bytes());
    counter.add(batch);
    out.records += static_cast<std::int64_t>(batch.n_records());
    out.measurements += static_cast<std::int64_t>(batch.n_measurements());
  });
  if (processes != nullptr && processes->size() > 1) {
    counter.combine(*processes);
    std::int64_t sums[2] = {out.records, out.measurements};
    processes->sum(sums, 2);
    out.records = sums[0];
    out.measurements = sums[1];
  }
  if (out.records == 0) {
    throw InputError("no records: the binary files named in " + steering.steering_file.string() +
                         " hold no Mille record (empty data set); nothing to align",
                     exit_code::no_data);
  }
  // All labels: from the binary files and from the text files. pede keeps a Parameter line's label
  // only if it gives a start value or a pre-sigma other than zero.
  std::vector<std::int32_t> all = counter.labels();
  for (const auto& p : steering.parameters) {
    if (p.value != 0.0 || p.presigma != 0.0) all.push_back(p.label);
  }
  for (const auto& c : steering.constraints) {
    for (const auto& t : c.terms) all.push_back(t.first);
  }
  for (const auto& m : steering.measurements) {
    for (const auto& t : m.terms) all.push_back(t.first);
  }
  labels.build(std::move(all));
  data.map_cached(labels);
  return out;
}

}  // namespace gpede::detail
