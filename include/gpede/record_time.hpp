// The time of a Mille record: the run it was taken in (experiment and run number, or a time stamp
// in the run number), carried in the record's special block, which pede skips, so that files with
// times stay readable by pede.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

namespace gpede {

/// A record's time as one ordered number: experiment in the high 32 bits, run in the low ones
/// (both 0 to 2^31 - 1), so that times order by experiment, then run.
using RecordTime = std::int64_t;

/// A record without a time.
inline constexpr RecordTime kNoTime = std::numeric_limits<std::int64_t>::min();

inline constexpr RecordTime record_time(std::int32_t experiment, std::int32_t run) {
  return (static_cast<std::int64_t>(experiment) << 32) | static_cast<std::int64_t>(static_cast<std::uint32_t>(run));
}
inline constexpr std::int32_t experiment_of(RecordTime t) { return static_cast<std::int32_t>(t >> 32); }
inline constexpr std::int32_t run_of(RecordTime t) { return static_cast<std::int32_t>(t & 0xffffffff); }

/// "run" for experiment 0, else "experiment:run"; "none" for kNoTime.
std::string time_text(RecordTime t);

/// Reads "run" or "experiment:run" (whole numbers 0 to 2^31 - 1); false if the text is not one.
bool parse_time(const std::string& text, RecordTime& t);

/// The special block that carries a record's time, three pairs (value, index):
///   (1.0, kTimeBlockTag), (0.0, experiment), (0.0, run).
/// The integers carry the numbers exactly. A record holds at most one; other special blocks are
/// user data and are skipped, as pede skips all of them.
inline constexpr std::int32_t kTimeBlockTag = 0x656d6974;  // the bytes "time"
inline constexpr int kTimeBlockPairs = 3;

}  // namespace gpede
