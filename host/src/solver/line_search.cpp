// The line search along a Newton step, following pede's rules (see line_search.hpp).
#include "gpede/detail/line_search.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace gpede::detail {

LineSearch::Settings LineSearch::make_settings(double slope_ratio, double max_step, int min_samples,
                                               int max_samples) {
  Settings s;
  // pede keeps the requested ratio in single precision and clamps it in single precision.
  const float requested = static_cast<float>(slope_ratio);
  s.slope_ratio = static_cast<double>(std::max(1.0e-4f, std::min(requested, 0.9f)));
  if (requested == 0.0f) s.slope_ratio = 0.9;
  s.max_step = max_step == 0.0 ? 10.0 : static_cast<double>(static_cast<float>(max_step));
  s.min_samples = std::max(1, std::min(min_samples, 18));
  s.max_samples = max_samples == 0 ? 5 : std::max(2, std::min(max_samples, 19));
  return s;
}

LineSearch::Outcome LineSearch::begin(const Settings& settings, double f0, double slope0) {
  m_settings = settings;
  m_samples.clear();
  m_f0 = f0;
  m_slope0 = slope0;
  m_left = -1;
  m_right = -1;
  m_chosen = -1;
  m_value = f0;
  if (!(slope0 < 0.0)) {
    m_step = 0.0;
    m_outcome = Outcome::not_descending;
    return m_outcome;
  }
  m_samples.push_back({0.0, 0.0, slope0, 0.0});
  m_left = 0;
  m_step = 1.0;
  m_outcome = Outcome::evaluate;
  return m_outcome;
}

LineSearch::Outcome LineSearch::next(double f, double slope) {
  if (m_outcome != Outcome::evaluate) return m_outcome;
  const double t = m_step;
  m_samples.push_back({t, f - m_f0, slope, 0.0});
  const int last = static_cast<int>(m_samples.size()) - 1;
  if (slope <= 0.0 && slope >= m_samples[m_left].slope) m_left = last;
  if (slope >= 0.0) {
    if (m_right < 0) m_right = last;
    if (slope <= m_samples[m_right].slope) m_right = last;
  }
  // Zero of the slope on the secant through the bracketing samples, or through the last two.
  const int i1 = m_right < 0 ? last - 1 : m_left;
  const int i2 = m_right < 0 ? last : m_right;
  const Sample& a = m_samples[i1];
  const Sample& b = m_samples[i2];
  const double zero = (a.step * b.slope - b.step * a.slope) / (b.slope - a.slope);
  m_samples[last].predicted_zero = zero;

  const int count = last + 1;
  if (count >= m_settings.min_samples && std::abs(slope) <= std::abs(m_slope0) * m_settings.slope_ratio) {
    return finish(Outcome::converged);
  }
  if (count >= m_settings.max_samples) return finish(Outcome::too_many_samples);
  // A zero that is not a number (equal slopes) is taken as beyond the maximum step.
  const double target = std::isnan(zero) ? m_settings.max_step : std::min(zero, m_settings.max_step);
  const double move = target - t;
  if (std::abs(move) < 1.0e-3) {
    return finish(zero > m_settings.max_step ? Outcome::max_step_reached : Outcome::step_too_small);
  }
  m_step = t + move;
  return m_outcome;
}

LineSearch::Outcome LineSearch::finish(Outcome outcome) {
  // Return to the sample with the smallest |slope| (the first one of equals).
  int best = 0;
  for (int i = 1; i < static_cast<int>(m_samples.size()); ++i) {
    if (std::abs(m_samples[i].slope) < std::abs(m_samples[best].slope)) best = i;
  }
  m_chosen = best;
  m_step = m_samples[best].step;
  m_value = m_samples[best].delta_f + m_f0;
  m_outcome = best == 0 ? Outcome::no_improvement : outcome;
  if (best == 0) m_step = 0.0;
  return m_outcome;
}

const char* line_search_outcome_text(LineSearch::Outcome outcome) {
  switch (outcome) {
    case LineSearch::Outcome::not_descending:
      return "input error (slope at the start not negative)";
    case LineSearch::Outcome::converged:
      return "convergence reached";
    case LineSearch::Outcome::too_many_samples:
      return "too many function calls";
    case LineSearch::Outcome::max_step_reached:
      return "maximum step reached";
    case LineSearch::Outcome::step_too_small:
      return "step too small (< 0.001)";
    case LineSearch::Outcome::no_improvement:
      return "no improvement";
    case LineSearch::Outcome::evaluate:
      return "searching";
  }
  return "";
}

std::vector<std::string> LineSearch::report() const {
  std::vector<std::string> lines;
  if (m_samples.empty()) return lines;
  char buffer[160];
  lines.emplace_back(" Line search along the Newton step (slopes, sufficient slope decrease)");
  std::snprintf(buffer, sizeof buffer, "   slope ratio limit %.6g, maximum step %.6g, %d <= samples <= %d",
                m_settings.slope_ratio, m_settings.max_step, m_settings.min_samples, m_settings.max_samples);
  lines.emplace_back(buffer);
  lines.emplace_back("  i      x              F(x)         F'(X)          minimum     F'(X)");
  for (std::size_t i = 0; i < m_samples.size(); ++i) {
    const Sample& s = m_samples[i];
    char flag[3] = "  ";
    if (static_cast<int>(i) == m_chosen) flag[0] = flag[1] = '*';
    if (static_cast<int>(i) == m_left) flag[0] = 'L';
    if (static_cast<int>(i) == m_right) flag[1] = 'R';
    // F(x) is f - f(0) in units of F / 2, as pede prints it.
    if (i == 0) {
      std::snprintf(buffer, sizeof buffer, "%3zu%12.6f %s%15.6G%14.6G%12.6f     ratio", i, s.step, flag, s.delta_f,
                    s.slope, s.predicted_zero);
    } else {
      std::snprintf(buffer, sizeof buffer, "%3zu%12.6f %s%15.6G%14.6G%12.6f%10.3f", i, s.step, flag, s.delta_f, s.slope,
                    s.predicted_zero, std::abs(s.slope / m_samples[0].slope));
    }
    lines.emplace_back(buffer);
  }
  std::snprintf(buffer, sizeof buffer, " Line search: %d  %s", static_cast<int>(m_outcome),
                line_search_outcome_text(m_outcome));
  lines.emplace_back(buffer);
  return lines;
}

}  // namespace gpede::detail
