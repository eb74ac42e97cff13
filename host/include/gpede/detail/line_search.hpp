// The line search along a Newton step, with pede's rules (its slope-based search with sufficient
// slope decrease): the objective f(t) = F(x + t s) / 2 is sampled at step factors t, each sample a
// pass over the data that gives f and its slope f'(t) = -b(x + t s) . s. The next factor is the
// zero of the secant of the slopes through the bracketing samples (or the last two), capped at a
// maximum step. The search ends when |f'| has dropped to a fraction of |f'(0)| (after a minimum
// number of samples), after a maximum number of samples, or when the next move would be below
// 1e-3; it then returns to the sample with the smallest |slope|.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gpede::detail {

class LineSearch {
 public:
  /// Search parameters, as pede clamps them (its ptldef): slope ratio in [1e-4, 0.9] (0 means
  /// 0.9), maximum total step (0 means 10), samples in [1, 18] before convergence is accepted and
  /// in [2, 19] at most (0 means 5). Samples count the start point.
  struct Settings {
    double slope_ratio = 0.9;
    double max_step = 10.0;
    int min_samples = 1;
    int max_samples = 5;
  };
  /// Settings from the requested values, clamped as pede does (single-precision slope ratio).
  static Settings make_settings(double slope_ratio, double max_step, int min_samples, int max_samples);

  /// What the caller does next.
  enum class Outcome {
    not_descending = 0,   ///< f'(0) >= 0: no search; the step factor is 0
    converged = 1,        ///< |f'| <= slope_ratio |f'(0)|
    too_many_samples = 2,
    max_step_reached = 3,
    step_too_small = 4,   ///< the next move would be below 1e-3
    no_improvement = 5,   ///< the start point has the smallest |slope|: the step factor is 0
    evaluate = -1,        ///< evaluate f and f' at step() and call next()
  };

  /// One sample: step factor, f - f(0), slope, and the predicted zero of the slope after it.
  struct Sample {
    double step = 0.0;
    double delta_f = 0.0;
    double slope = 0.0;
    double predicted_zero = 0.0;
  };

  /// Starts at t = 0 with f(0) and f'(0). Returns evaluate (at step() == 1) or not_descending.
  Outcome begin(const Settings& settings, double f0, double slope0);
  /// f and f' at step(); returns evaluate with a new step(), or the final outcome with step()
  /// the chosen factor (the sample with the smallest |slope|) and value() f there.
  Outcome next(double f, double slope);

  /// The step factor to evaluate next, or the chosen one after a final outcome.
  double step() const { return m_step; }
  /// f at the chosen factor (after a final outcome).
  double value() const { return m_value; }
  const Settings& settings() const { return m_settings; }
  const std::vector<Sample>& samples() const { return m_samples; }
  /// Index of the chosen sample (after a final outcome), of the bracketing samples (-1: none).
  int chosen() const { return m_chosen; }
  int left() const { return m_left; }
  int right() const { return m_right; }
  Outcome outcome() const { return m_outcome; }

  /// The search as pede prints it in millepede.log: settings, the sample table, the outcome.
  std::vector<std::string> report() const;

 private:
  Outcome finish(Outcome outcome);

  Settings m_settings;
  std::vector<Sample> m_samples;
  double m_f0 = 0.0;
  double m_slope0 = 0.0;
  double m_step = 0.0;   // total step factor of the current position
  double m_value = 0.0;
  int m_left = -1;       // sample with the largest slope <= 0
  int m_right = -1;      // sample with the smallest slope >= 0
  int m_chosen = -1;
  Outcome m_outcome = Outcome::not_descending;
};

const char* line_search_outcome_text(LineSearch::Outcome outcome);

}  // namespace gpede::detail
