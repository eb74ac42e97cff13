// Record times as text: "run" or "experiment:run".
#include "gpede/record_time.hpp"

#include <charconv>

namespace gpede {

std::string time_text(RecordTime t) {
  if (t == kNoTime) return "none";
  const std::int32_t experiment = experiment_of(t);
  return experiment == 0 ? std::to_string(run_of(t)) : std::to_string(experiment) + ":" + std::to_string(run_of(t));
}

bool parse_time(const std::string& text, RecordTime& t) {
  const auto number = [](const char* first, const char* last, std::int32_t& value) {
    const auto [ptr, ec] = std::from_chars(first, last, value);
    return ec == std::errc() && ptr == last && first != last && value >= 0;
  };
  const char* begin = text.data();
  const char* end = begin + text.size();
  const std::size_t colon = text.find(':');
  std::int32_t experiment = 0, run = 0;
  if (colon == std::string::npos) {
    if (!number(begin, end, run)) return false;
  } else if (!number(begin, begin + colon, experiment) || !number(begin + colon + 1, end, run)) {
    return false;
  }
  t = record_time(experiment, run);
  return true;
}

}  // namespace gpede
