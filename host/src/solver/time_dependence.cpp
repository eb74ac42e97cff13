// Time-dependent parameters: interval labels, records relabelled on reading, the steering
// repeated per interval.
#include "time_dependence.hpp"

#include <algorithm>
#include <climits>
#include <exception>
#include <functional>
#include <string>
#include <unordered_map>

#include "gpede/detail/byte_pack.hpp"
#include "gpede/error.hpp"
#include "gpede/record_time.hpp"
#include "solver_internal.hpp"

namespace gpede {

std::int64_t TimeDependenceSpec::interval_of(std::int64_t time) const noexcept {
  return std::upper_bound(boundaries.begin(), boundaries.end(), time) - boundaries.begin();
}

std::int64_t TimeDependenceSpec::label_stride() const noexcept {
  if (stride > 0) return stride;
  std::int64_t largest = 0;
  for (const auto& range : labels) largest = std::max<std::int64_t>(largest, range.second);
  std::int64_t s = 1000000;
  while (s <= largest) s *= 10;
  return s;
}

namespace detail {
namespace {

std::string where_text(const SourceLocation& where) {
  return where.file.string() + ":" + std::to_string(where.line);
}

}  // namespace

std::string record_in_files(const RecordBatch& batch, std::size_t r, const Steering& steering) {
  std::string text = "record " + std::to_string(r < batch.record_number.size() ? batch.record_number[r]
                                                                               : static_cast<std::int64_t>(r + 1));
  if (r < batch.record_file.size()) {
    const auto f = static_cast<std::size_t>(batch.record_file[r]);
    text += f < steering.binary_files.size() ? " of Mille file '" + steering.binary_files[f].path.string() + "'"
                                             : " of binary file #" + std::to_string(f + 1);
  }
  return text;
}

void throw_without_time(const std::string& record, const std::string& why) {
  throw InputError(record + " has no time, but " + why + ": write each record's run with MilleWriter::add_time " +
                       "(a time block), or give the file's run with `filetime NAME RUN` in the steering file",
                   exit_code::bad_binary);
}

std::int64_t largest_record_label(RecordSource& source, ProcessGroup* processes) {
  std::int64_t largest = 0;
  std::exception_ptr failure;
  try {
    source.rewind();
    RecordBatch batch;
    while (true) {
      batch.clear();
      if (source.next(batch, 4096) == 0) break;
      for (const std::int32_t label : batch.global_label) largest = std::max<std::int64_t>(largest, label);
    }
    source.rewind();
  } catch (...) {
    failure = std::current_exception();
  }
  Packer mine;
  mine.put(largest);
  for (const std::vector<char>& bytes : gather_or_rethrow(processes, failure, mine.bytes())) {
    Unpacker u(bytes);
    largest = std::max(largest, u.get<std::int64_t>());
  }
  return largest;
}

void resolve_label_stride(Steering& steering, const std::function<std::int64_t()>& largest_in_records,
                          std::string* note) {
  TimeDependenceSpec& td = steering.time_dependence;
  if (td.stride > 0 || !td.active()) return;
  std::int64_t largest = 0;
  for (const auto& range : td.labels) largest = std::max<std::int64_t>(largest, range.second);
  for (const ParameterSpec& p : steering.parameters) largest = std::max<std::int64_t>(largest, p.label);
  for (const auto* lines : {&steering.constraints, &steering.measurements}) {
    for (const LinearSpec& line : *lines) {
      for (const auto& term : line.terms) largest = std::max<std::int64_t>(largest, term.first);
    }
  }
  for (const TemplateSpec& t : td.templates) {
    largest = std::max<std::int64_t>(largest, t.amplitude);
    for (const auto& term : t.shape) largest = std::max<std::int64_t>(largest, term.first);
  }
  const auto above = [](std::int64_t label) {
    std::int64_t stride = 1000000;
    while (stride <= label) stride *= 10;
    return stride;
  };
  const std::int64_t from_steering = above(largest);
  if (largest_in_records) largest = std::max(largest, largest_in_records());
  td.stride = above(largest);
  if (note != nullptr && td.stride > from_steering) {
    *note = "the records carry labels up to " + std::to_string(largest) + ", above the steering's: interval k of a "
            "time-dependent label L is L + k * " + std::to_string(td.stride) + " (`timestride " +
            std::to_string(td.stride) + "` in the steering file saves the read of the files that found it)";
  }
}

Steering templates_only(const Steering& steering) {
  Steering plain = steering;
  plain.time_dependence.labels.clear();
  plain.time_dependence.boundaries.clear();
  plain.time_dependence.automatic = false;
  return plain;
}

void check_time_dependence(const Steering& steering) {
  const TimeDependenceSpec& td = steering.time_dependence;
  if (!td.active()) {
    if (!td.boundaries.empty() || td.stride > 0 || td.automatic) {
      throw InputError(steering.steering_file.string() +
                           ": intervals or timestride without timedependent labels (name the labels that vary "
                           "in time with `timedependent`)",
                       exit_code::steering_error);
    }
    return;
  }
  const std::int64_t stride = td.label_stride();
  std::int64_t largest = 0;
  for (const auto& range : td.labels) {
    largest = std::max<std::int64_t>(largest, range.second);
    if (range.second >= stride) {
      throw InputError(where_text(td.where) + ": time-dependent label " + std::to_string(range.second) +
                           " is not below the label stride " + std::to_string(stride) +
                           " (interval k of label L is L + k * stride; set a larger `timestride`)",
                       exit_code::steering_error);
    }
  }
  if (td.automatic && !td.boundaries.empty()) {
    throw InputError(where_text(td.where) + ": both `intervals auto` and interval starts are given; use one",
                     exit_code::steering_error);
  }
  const std::int64_t last = largest + (td.intervals() - 1) * stride;
  if (last > INT32_MAX) {
    throw InputError(where_text(td.where) + ": " + std::to_string(td.intervals()) + " intervals with label stride " +
                         std::to_string(stride) + " give labels up to " + std::to_string(last) +
                         ", beyond the largest Mille label 2147483647 (fewer intervals or a smaller `timestride`)",
                     exit_code::steering_error);
  }
}

Steering expand_for_intervals(const Steering& steering) {
  const TimeDependenceSpec& td = steering.time_dependence;
  Steering out = steering;
  if (!td.active()) return out;
  const std::int64_t stride = td.label_stride(), intervals = td.intervals();
  const auto expand_lines = [&](const std::vector<LinearSpec>& lines) {
    std::vector<LinearSpec> expanded;
    for (const LinearSpec& line : lines) {
      const bool varies = std::any_of(line.terms.begin(), line.terms.end(),
                                      [&](const auto& term) { return td.varies(term.first); });
      if (!varies) {
        expanded.push_back(line);
        continue;
      }
      const bool mixed = std::any_of(line.terms.begin(), line.terms.end(),
                                     [&](const auto& term) { return !td.varies(term.first); });
      if (mixed && intervals > 1) {
        out.warnings.push_back(where_text(line.where) + ": a constraint or measurement that names time-dependent " +
                               "and static labels is applied in each of the " + std::to_string(intervals) +
                               " intervals with the static labels shared, which ties the intervals' values of its "
                               "time-dependent labels together");
      }
      for (std::int64_t k = 0; k < intervals; ++k) {
        LinearSpec copy = line;
        for (auto& term : copy.terms) {
          if (td.varies(term.first)) term.first = static_cast<std::int32_t>(term.first + k * stride);
        }
        expanded.push_back(std::move(copy));
      }
    }
    return expanded;
  };
  out.constraints = expand_lines(steering.constraints);
  out.measurements = expand_lines(steering.measurements);
  out.parameters.clear();
  for (const ParameterSpec& p : steering.parameters) {
    if (!td.varies(p.label)) {
      out.parameters.push_back(p);
      continue;
    }
    for (std::int64_t k = 0; k < intervals; ++k) {
      ParameterSpec copy = p;
      copy.label = static_cast<std::int32_t>(p.label + k * stride);
      out.parameters.push_back(copy);
    }
  }
  return out;
}

IntervalSource::IntervalSource(RecordSource& inner, const Steering& steering)
    : m_inner(inner), m_steering(steering), m_td(steering.time_dependence), m_stride(m_td.label_stride()) {
  for (std::size_t t = 0; t < m_td.templates.size(); ++t) {
    for (const auto& [label, c] : m_td.templates[t].shape) m_template_of[label] = {t, c};
  }
  if (!m_td.active()) return;
  const std::int64_t n = m_td.intervals();
  m_intervals.resize(static_cast<std::size_t>(n));
  for (std::int64_t k = 0; k < n; ++k) {
    TimeInterval& interval = m_intervals[k];
    interval.begin = k == 0 ? kNoTime : m_td.boundaries[k - 1];
    interval.end = k + 1 < n ? m_td.boundaries[k] : kNoTime;
    interval.first_seen = interval.last_seen = kNoTime;
  }
}

void IntervalSource::rewind() {
  m_inner.rewind();
  // Counts come from the first read only (after the first rewind); later passes read the same
  // records.
  if (m_rewound) m_counting = false;
  m_rewound = true;
}

void IntervalSource::apply_templates(RecordBatch& batch, std::size_t first_record) const {
  // The global arrays from the first record's first measurement on, rebuilt: per measurement,
  // its derivatives on template labels summed into one on each amplitude.
  const std::size_t m_first = static_cast<std::size_t>(batch.record_begin[first_record]);
  const std::size_t n_meas = batch.n_measurements();
  const std::size_t g_first = static_cast<std::size_t>(batch.global_begin[m_first]);
  std::vector<std::int32_t> labels(batch.global_label.begin() + g_first, batch.global_label.end());
  std::vector<double> derivs(batch.global_deriv.begin() + g_first, batch.global_deriv.end());
  std::vector<std::int64_t> begins(batch.global_begin.begin() + m_first, batch.global_begin.end());
  batch.global_label.resize(g_first);
  batch.global_deriv.resize(g_first);
  std::vector<std::pair<std::size_t, double>> amplitudes;  // (template, derivative) of this measurement
  for (std::size_t m = m_first; m < n_meas; ++m) {
    amplitudes.clear();
    const auto g0 = static_cast<std::size_t>(begins[m - m_first] - begins[0]);
    const auto g1 = static_cast<std::size_t>(begins[m + 1 - m_first] - begins[0]);
    batch.global_begin[m] = static_cast<std::int64_t>(batch.global_label.size());
    for (std::size_t e = g0; e < g1; ++e) {
      const auto found = m_template_of.find(labels[e]);
      if (found == m_template_of.end()) {
        batch.global_label.push_back(labels[e]);
        batch.global_deriv.push_back(derivs[e]);
        continue;
      }
      const std::size_t t = found->second.first;
      const double c = found->second.second;
      auto at = std::find_if(amplitudes.begin(), amplitudes.end(), [&](const auto& a) { return a.first == t; });
      if (at == amplitudes.end()) {
        amplitudes.emplace_back(t, 0.0);
        at = amplitudes.end() - 1;
      }
      at->second += c * derivs[e];
    }
    for (const auto& [t, d] : amplitudes) {
      if (d == 0.0) continue;
      batch.global_label.push_back(m_td.templates[t].amplitude);
      batch.global_deriv.push_back(d);
    }
  }
  batch.global_begin[n_meas] = static_cast<std::int64_t>(batch.global_label.size());
  batch.global_index.assign(batch.global_label.size(), -1);
}

std::size_t IntervalSource::next(RecordBatch& batch, std::size_t max_records) {
  const std::size_t before = batch.n_records();
  const std::size_t got = m_inner.next(batch, max_records);
  if (got > 0 && !m_template_of.empty()) apply_templates(batch, before);
  if (!m_td.active()) return got;
  const auto name = [&](std::size_t r) { return record_in_files(batch, r, m_steering); };
  for (std::size_t r = before; r < before + got; ++r) {
    const RecordTime t = r < batch.record_time.size() ? batch.record_time[r] : kNoTime;
    if (t == kNoTime) throw_without_time(name(r), where_text(m_td.where) + " declares time-dependent labels");
    const std::int64_t k = m_td.interval_of(t);
    if (m_counting) {
      TimeInterval& interval = m_intervals[static_cast<std::size_t>(k)];
      ++interval.records;
      interval.first_seen = interval.first_seen == kNoTime ? t : std::min(interval.first_seen, t);
      interval.last_seen = interval.last_seen == kNoTime ? t : std::max(interval.last_seen, t);
    }
    const std::int64_t m0 = batch.record_begin[r], m1 = batch.record_begin[r + 1];
    for (std::int64_t e = batch.global_begin[m0]; e < batch.global_begin[m1]; ++e) {
      std::int32_t& label = batch.global_label[e];
      if (label >= m_stride) {
        throw InputError(name(r) + " names label " + std::to_string(label) + ", not below the time-dependent label " +
                             "stride " + std::to_string(m_stride) + " (interval k of label L is L + k * stride): " +
                             "set a larger `timestride` in the steering file",
                         exit_code::bad_binary);
      }
      if (k > 0 && m_td.varies(label)) label = static_cast<std::int32_t>(label + k * m_stride);
    }
  }
  return got;
}

void combine_intervals(std::vector<TimeInterval>& intervals, ProcessGroup* processes) {
  if (processes == nullptr || processes->size() < 2) return;
  Packer mine;
  for (const TimeInterval& i : intervals) {
    mine.put(i.records);
    mine.put(i.first_seen);
    mine.put(i.last_seen);
  }
  const std::vector<std::vector<char>> all = processes->gather(mine.bytes());
  for (TimeInterval& i : intervals) i = TimeInterval{i.begin, i.end, 0, kNoTime, kNoTime};
  for (const auto& bytes : all) {
    Unpacker u(bytes);
    for (TimeInterval& i : intervals) {
      const auto records = u.get<std::int64_t>();
      const auto first = u.get<std::int64_t>(), last = u.get<std::int64_t>();
      i.records += records;
      if (first != kNoTime) i.first_seen = i.first_seen == kNoTime ? first : std::min(i.first_seen, first);
      if (last != kNoTime) i.last_seen = i.last_seen == kNoTime ? last : std::max(i.last_seen, last);
    }
  }
}

}  // namespace detail
}  // namespace gpede
