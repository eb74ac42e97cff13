// Time-dependent parameters (Steering::time_dependence): records relabelled as they are read, so
// that the rest of the solver sees one ordinary label per parameter and interval; the steering's
// constraints, parameters and measurements repeated for every interval.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "gpede/solver.hpp"
#include "gpede/steering.hpp"

namespace gpede::detail {

/// "record N of Mille file 'PATH'" for record r of a batch read from the steering's files.
std::string record_in_files(const RecordBatch& batch, std::size_t r, const Steering& steering);
/// The InputError (code 20) for a record without a time where `why` needs one.
[[noreturn]] void throw_without_time(const std::string& record, const std::string& why);

/// The largest label the source's records carry (one read; with processes, over all their shares).
std::int64_t largest_record_label(RecordSource& source, ProcessGroup* processes);

/// Without `timestride`: the stride set to the smallest power of ten, at least 10^6, above every
/// label the steering names (time-dependent labels, Parameter, Constraint and Measurement lines,
/// templates) and above `largest_in_records()` (the records' labels; called only where the stride
/// is resolved here), so that the intervals' labels stay clear of the static labels. `note`, if
/// given, receives a line for the log where the records' labels raised the stride.
void resolve_label_stride(Steering& steering, const std::function<std::int64_t()>& largest_in_records = {},
                          std::string* note = nullptr);

/// The steering with its templates only: no time-dependent labels, intervals or search, so that a
/// source over it hands out the records with their templates folded and every other label as read.
Steering templates_only(const Steering& steering);

/// Checks the time dependence against the labels' range (InputError naming the steering line).
void check_time_dependence(const Steering& steering);

/// The steering with every constraint, measurement and parameter line that names a time-dependent
/// label repeated for each interval, the time-dependent labels replaced by their interval's.
/// Lines without time-dependent labels stay once.
Steering expand_for_intervals(const Steering& steering);

/// A source whose records have their template labels folded into the templates' amplitudes and
/// then their time-dependent labels replaced by their interval's: label L of a record in interval
/// k becomes L + k * stride. With time dependence, a record without a time, or with a label at or
/// above the stride, is an InputError (code 20) naming the file and record.
class IntervalSource final : public RecordSource {
 public:
  IntervalSource(RecordSource& inner, const Steering& steering);
  std::size_t next(RecordBatch& batch, std::size_t max_records) override;
  void rewind() override;
  /// The intervals and what the reads so far saw in them (the first read's counts).
  std::vector<TimeInterval> intervals() const { return m_intervals; }

 private:
  RecordSource& m_inner;
  const Steering& m_steering;
  const TimeDependenceSpec& m_td;
  std::int64_t m_stride;
  /// Folds the derivatives on template labels of the records from first_record on.
  void apply_templates(RecordBatch& batch, std::size_t first_record) const;
  std::unordered_map<std::int32_t, std::pair<std::size_t, double>> m_template_of;  // label -> (template, c)
  bool m_counting = true;  // the first read counts records per interval
  bool m_rewound = false;
  std::vector<TimeInterval> m_intervals;
};

/// The intervals' counts summed over processes (each read its share of the records).
void combine_intervals(std::vector<TimeInterval>& intervals, ProcessGroup* processes);

}  // namespace gpede::detail
