// Setting up a solution before the first pass, as pede does it: start values and pre-sigmas of
// the labels, the entries cut (and its iteration), the weights the pre-sigmas add to the global
// matrix; the constraints (weighted, empty, their rank) and the external measurements; the
// feasibility correction of the parameter values.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "gpede/detail/pivoted_sweep.hpp"
#include "gpede/error.hpp"
#include "solver_internal.hpp"

namespace gpede::detail {
namespace {

constexpr int no_variable_parameters = 22;  // pede's code for "no variable global parameters"

std::string where(const SourceLocation& loc) { return loc.file.string() + ":" + std::to_string(loc.line); }

// A line of numbers in the width pede prints counts with.
std::string width12(std::int64_t value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%12lld", static_cast<long long>(value));
  return buffer;
}

}  // namespace

ParameterTable set_up_parameters(const Steering& steering, const LabelMap& labels, const EntryCounter& counter,
                                 DataSet& data, const RunLog& log, ProcessGroup* processes) {
  ParameterTable t;
  const std::int64_t n = labels.size();
  t.label = labels.labels();
  t.start.assign(static_cast<std::size_t>(n), 0.0);
  t.presigma.assign(static_cast<std::size_t>(n), 0.0);
  t.entries.assign(static_cast<std::size_t>(n), 0);
  t.fixed_by.assign(static_cast<std::size_t>(n), FixedBy::none);
  t.variable_index.assign(static_cast<std::size_t>(n), -1);
  // pede keeps a start value or a pre-sigma of zero from a Parameter line out of its lists: a
  // zero does not replace an earlier value of the same label.
  for (const auto& p : steering.parameters) {
    const std::int32_t i = labels.index(p.label);
    if (i < 0) continue;
    if (p.value != 0.0) t.start[i] = p.value;
    if (p.presigma != 0.0) {
      t.presigma[i] = p.presigma;
      if (p.presigma > 0.0) ++t.presigmas;
    }
  }
  for (std::int64_t i = 0; i < n; ++i) {
    t.entries[i] = counter.count(t.label[i]);
    if (t.presigma[i] < 0.0) {
      t.fixed_by[i] = FixedBy::presigma;
    } else if (t.entries[i] < steering.entries_files) {
      t.fixed_by[i] = FixedBy::entries;
    }
  }
  log(" LOOP1: " + width12(n) + "  is total number NTGB of labels/parameters");
  log(" LOOP1: " + width12(t.presigmas) + "  is number of pre-sigmas");

  // The iterated entries cut: count again, without the measurements that name a label below the
  // cut; a label stays variable with enough new entries or with at least `entries_iterate` old ones.
  if (steering.entries_iterate > steering.entries_files) {
    if (steering.count_records) {
      log(" LOOP1: counting records, NO iteration of entries cut !");
    } else {
      log(" LOOP1: iterating the entries cut (labels with fewer than " +
          std::to_string(steering.entries_iterate) + " entries)");
      std::vector<std::int64_t> again(static_cast<std::size_t>(n), 0);
      data.pass(labels, [&](const RecordBatch& batch) {
        for (std::size_t m = 0; m < batch.n_measurements(); ++m) {
          const std::int64_t g0 = batch.global_begin[m], g1 = batch.global_begin[m + 1];
          bool low = false;
          for (std::int64_t g = g0; g < g1 && !low; ++g) low = t.fixed_by[batch.global_index[g]] == FixedBy::entries;
          if (low) continue;
          for (std::int64_t g = g0; g < g1; ++g) ++again[batch.global_index[g]];
        }
      });
      if (processes != nullptr && processes->size() > 1) processes->sum(again.data(), again.size());
      for (std::int64_t i = 0; i < n; ++i) {
        if (t.fixed_by[i] != FixedBy::none) continue;
        if (again[i] < steering.entries_files && t.entries[i] < steering.entries_iterate) {
          t.fixed_by[i] = FixedBy::iterated_entries;
        }
      }
    }
  }
  for (std::int64_t i = 0; i < n; ++i) {
    if (t.fixed_by[i] != FixedBy::none) continue;
    t.variable_index[i] = static_cast<std::int32_t>(t.variable_label.size());
    t.variable_label.push_back(i);
  }
  log(" LOOP1: " + width12(t.variables()) + "  is number NVGB of variable parameters");
  if (t.variables() == 0) {
    throw InputError("no variable parameter: every label is fixed (pre-sigma < 0) or has fewer than " +
                         std::to_string(steering.entries_files) + " entries (`entries` cut) in " +
                         steering.steering_file.string(),
                     no_variable_parameters);
  }

  // Weights on the diagonal: factor / presigma^2, the default pre-sigma for labels without one.
  // pede keeps the factor and the default pre-sigma in single precision.
  const double factor = static_cast<double>(static_cast<float>(steering.regularisation_factor));
  const float default_presigma = static_cast<float>(steering.presigma);
  t.prior_weight.assign(static_cast<std::size_t>(t.variables()), 0.0);
  for (std::int64_t v = 0; v < t.variables(); ++v) {
    const double s = t.presigma[t.variable_label[v]];
    double w = 0.0;
    if (s > 0.0) {
      w = 1.0 / (s * s);
    } else if (s == 0.0 && default_presigma > 0.0f) {
      w = 1.0 / static_cast<double>(default_presigma * default_presigma);
    }
    t.prior_weight[v] = factor * w;
  }
  return t;
}

std::vector<double> ConstraintTable::residuals(const std::vector<double>& value) const {
  std::vector<double> r(equations.size());
  for (std::size_t k = 0; k < equations.size(); ++k) {
    double v = equations[k].value;
    for (const auto& [i, f] : equations[k].terms) v -= f * value[i];
    r[k] = v;
  }
  return r;
}

std::vector<double> ConstraintTable::applied_residuals(const std::vector<double>& value) const {
  const std::vector<double> all = residuals(value);
  std::vector<double> r(applied.size());
  for (std::size_t k = 0; k < applied.size(); ++k) r[k] = all[applied[k]];
  return r;
}

ConstraintTable set_up_constraints(const Steering& steering, const LabelMap& labels,
                                   const ParameterTable& parameters, const RunLog& log) {
  ConstraintTable t;
  const std::int64_t n_var = parameters.variables();
  for (const auto& c : steering.constraints) {
    ConstraintEquation eq;
    eq.value = c.value;
    eq.where = c.where;
    std::int64_t variables = 0;
    for (const auto& [label, factor] : c.terms) {
      const std::int32_t i = labels.index(label);
      if (i < 0) throw RuntimeError("constraint at " + where(c.where) + ": label " + std::to_string(label) + " not mapped");
      double f = factor;
      if (c.weighted) f *= static_cast<double>(parameters.entries[i]);
      eq.terms.emplace_back(i, f);
      if (parameters.variable_index[i] >= 0) ++variables;
    }
    if (c.weighted) ++t.weighted;
    eq.empty = variables == 0;
    if (eq.empty) {
      ++t.empty;
      if (steering.skip_empty_constraints) continue;
    }
    t.equations.push_back(std::move(eq));
  }
  const std::int64_t m = t.size();
  if (t.empty > 0 && steering.skip_empty_constraints) {
    log(" PRPCON: " + width12(t.empty) + " empty constraints skipped");
  }
  if (m == 0) return t;

  // Dense rows over the variable parameters; the product matrix A A^T and its pseudo-inverse,
  // pivots as pede's constraint check takes them (16 eps relative).
  std::vector<double> a(static_cast<std::size_t>(m * n_var), 0.0);
  for (std::int64_t k = 0; k < m; ++k) {
    for (const auto& [i, f] : t.equations[k].terms) {
      const std::int32_t v = parameters.variable_index[i];
      if (v >= 0) a[k * n_var + v] += f;
    }
  }
  t.product_inverse.assign(static_cast<std::size_t>(m * m), 0.0);
  for (std::int64_t k = 0; k < m; ++k) {
    for (std::int64_t l = 0; l <= k; ++l) {
      double s = 0.0;
      const double* ak = &a[k * n_var];
      const double* al = &a[l * n_var];
      for (std::int64_t v = 0; v < n_var; ++v) s += ak[v] * al[v];
      t.product_inverse[k + l * m] = t.product_inverse[l + k * m] = s;
    }
  }
  const SweepOutcome outcome = sweep_inverse(t.product_inverse.data(), m, m,
                                             16.0 * std::numeric_limits<double>::epsilon(), SweepOrder::largest_first);
  t.rank = outcome.rank;
  std::vector<char> rejected(static_cast<std::size_t>(m), 0);
  for (std::int64_t k : outcome.rejected) rejected[k] = 1;
  for (std::int64_t k = 0; k < m; ++k) {
    if (!rejected[k] && !t.equations[k].empty) t.applied.push_back(k);
  }
  t.system.n = n_var;
  t.system.m = static_cast<std::int64_t>(t.applied.size());
  t.system.a.reserve(static_cast<std::size_t>(t.system.m * n_var));
  for (std::int64_t k : t.applied) {
    t.system.a.insert(t.system.a.end(), a.begin() + k * n_var, a.begin() + (k + 1) * n_var);
    t.system.value.push_back(t.equations[k].value);
  }
  log(" Rank of product matrix of constraints is" + width12(t.rank) + "  for" + width12(m) +
      "  constraint equations");
  if (t.rank < m) {
    std::ostringstream which;
    which << " Warning: insufficient constraint equations! (dependent or empty:";
    int shown = 0;
    for (std::int64_t k : outcome.rejected) {
      if (shown++ == 10) {
        which << " ...";
        break;
      }
      which << ' ' << where(t.equations[k].where);
    }
    which << ")";
    log(which.str());
  }
  return t;
}

std::vector<MeasurementEquation> set_up_measurements(const Steering& steering, const LabelMap& labels) {
  std::vector<MeasurementEquation> out;
  for (const auto& ms : steering.measurements) {
    if (!(ms.sigma > 0.0)) {
      throw InputError("measurement at " + where(ms.where) + " has sigma <= 0", exit_code::steering_error);
    }
    MeasurementEquation e;
    e.value = ms.value;
    e.weight = 1.0 / (ms.sigma * ms.sigma);
    for (const auto& [label, factor] : ms.terms) e.terms.emplace_back(labels.index(label), factor);
    out.push_back(std::move(e));
  }
  return out;
}

InputStatistics input_statistics(const Steering& steering, DataSet& data, const LabelMap& labels, bool appearance) {
  const std::int64_t n = labels.size();
  InputStatistics out;
  // Adjacent labels i, i+1 form one group if some equation names both and none names only one.
  std::vector<char> seen(static_cast<std::size_t>(n), 0), together(static_cast<std::size_t>(n), 0),
      broken(static_cast<std::size_t>(n), 0);
  std::vector<std::int32_t> set;
  auto each_equation = [&](const std::function<void(const std::vector<std::int32_t>&, const RecordBatch&, std::size_t)>& f) {
    data.pass(labels, [&](const RecordBatch& batch) {
      for (std::size_t r = 0; r < batch.n_records(); ++r) {
        auto take = [&](std::int64_t g0, std::int64_t g1) {
          set.assign(batch.global_index.begin() + g0, batch.global_index.begin() + g1);
          std::sort(set.begin(), set.end());
          set.erase(std::unique(set.begin(), set.end()), set.end());
          if (!set.empty()) f(set, batch, r);
        };
        const std::int64_t m0 = batch.record_begin[r], m1 = batch.record_begin[r + 1];
        if (steering.count_records) {
          take(batch.global_begin[m0], batch.global_begin[m1]);
        } else {
          for (std::int64_t m = m0; m < m1; ++m) take(batch.global_begin[m], batch.global_begin[m + 1]);
        }
      }
    });
  };
  each_equation([&](const std::vector<std::int32_t>& s, const RecordBatch&, std::size_t) {
    for (std::size_t k = 0; k < s.size(); ++k) {
      const std::int32_t l = s[k];
      seen[l] = 1;
      const bool previous = k > 0 && s[k - 1] == l - 1;
      const bool next = k + 1 < s.size() && s[k + 1] == l + 1;
      if (l > 0 && !previous) broken[l - 1] = 1;
      if (next) together[l] = 1;
      if (!next && l + 1 < n) broken[l] = 1;
    }
  });
  out.group_start.assign(static_cast<std::size_t>(n), 0);
  std::vector<std::int64_t> group(static_cast<std::size_t>(n), -1), group_size;
  for (std::int64_t i = 0; i < n; ++i) {
    if (!seen[i]) continue;
    const bool continues = i > 0 && seen[i - 1] && together[i - 1] && !broken[i - 1];
    if (continues) {
      group[i] = group[i - 1];
      ++group_size[group[i]];
    } else {
      out.group_start[i] = 1;
      group[i] = static_cast<std::int64_t>(group_size.size());
      group_size.push_back(1);
    }
  }
  if (!appearance) return out;

  out.appearance.assign(static_cast<std::size_t>(n), Appearance{});
  std::vector<std::pair<std::int64_t, std::int64_t>> pairs;
  each_equation([&](const std::vector<std::int32_t>& s, const RecordBatch& batch, std::size_t r) {
    const std::int32_t file = batch.record_file[r] + 1;
    const std::int64_t record = batch.record_number[r];
    for (std::int32_t l : s) {
      Appearance& a = out.appearance[l];
      if (a.first_file == 0) {
        a.first_file = file;
        a.first_record = record;
      }
      if (a.last_file != file) ++a.files;
      a.last_file = file;
      a.last_record = record;
    }
    for (std::size_t j = 0; j < s.size(); ++j) {
      for (std::size_t k = 0; k < j; ++k) {
        const std::int64_t gj = group[s[j]], gk = group[s[k]];
        if (gj != gk) pairs.emplace_back(std::min(gj, gk), std::max(gj, gk));
      }
    }
    if (pairs.size() > (1u << 22)) {
      std::sort(pairs.begin(), pairs.end());
      pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
    }
  });
  std::sort(pairs.begin(), pairs.end());
  pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
  std::vector<std::int64_t> paired(group_size.size(), 0);
  for (std::size_t g = 0; g < group_size.size(); ++g) paired[g] = group_size[g] - 1;
  for (const auto& [g, h] : pairs) {
    paired[g] += group_size[h];
    paired[h] += group_size[g];
  }
  for (std::int64_t i = 0; i < n; ++i) {
    if (group[i] >= 0) out.appearance[i].paired = paired[group[i]];
  }
  return out;
}

bool make_feasible(const ConstraintTable& constraints, const ParameterTable& parameters, std::vector<double>& value,
                   double cut, const RunLog& log) {
  const std::int64_t m = constraints.size();
  if (m == 0) return false;
  bool corrected = false;
  for (int round = 1; round <= 2; ++round) {
    const std::vector<double> r = constraints.residuals(value);
    double sum2 = 0.0, sum_abs = 0.0, max_abs = 0.0;
    for (double x : r) {
      sum2 += x * x;
      sum_abs += std::abs(x);
      max_abs = std::max(max_abs, std::abs(x));
    }
    const double rms = std::sqrt(sum2 / static_cast<double>(m));
    if (round == 1 && rms < cut) return false;
    char buffer[160];
    if (round == 1) {
      if (m <= 12) {
        log(" Constraint equation discrepancies:");
        std::string line;
        for (std::int64_t k = 0; k < m; ++k) {
          std::snprintf(buffer, sizeof buffer, "%5lld%12.4G", static_cast<long long>(k + 1), r[k]);
          line += buffer;
          if (k % 4 == 3 || k == m - 1) {
            log("    " + line);
            line.clear();
          }
        }
        std::snprintf(buffer, sizeof buffer, "           Cut on rms value is%8.1G", cut);
        log(buffer);
      }
      log(" Improve constraints");
    }
    corrected = true;
    std::snprintf(buffer, sizeof buffer, "%6d   rms%12.4G  avrg_abs%12.4G  max_abs%12.4G", round, rms,
                  sum_abs / static_cast<double>(m), max_abs);
    log(buffer);
    // y = (A A^T)^+ r; p_v += sum_k y_k a_kv
    std::vector<double> y(static_cast<std::size_t>(m), 0.0);
    for (std::int64_t l = 0; l < m; ++l) {
      if (r[l] == 0.0) continue;
      for (std::int64_t k = 0; k < m; ++k) y[k] += constraints.product_inverse[k + l * m] * r[l];
    }
    for (std::int64_t k = 0; k < m; ++k) {
      if (y[k] == 0.0) continue;
      for (const auto& [i, f] : constraints.equations[k].terms) {
        if (parameters.variable_index[i] >= 0) value[i] += y[k] * f;
      }
    }
  }
  return corrected;
}

}  // namespace gpede::detail
