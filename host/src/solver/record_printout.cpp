// pede's record printout (see record_printout.hpp).
#include "record_printout.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "gpede/detail/batch_layout.hpp"
#include "gpede/kernels/local_fit.hpp"
#include "gpede/output.hpp"

namespace gpede::detail {
namespace {

const char* status_text(kernels::LocalFitStatus s) {
  switch (s) {
    case kernels::LocalFitStatus::accepted:
      return "accepted";
    case kernels::LocalFitStatus::no_local_parameters:
      return "no local parameters: skipped";
    case kernels::LocalFitStatus::rank_deficient:
      return "rank deficit/NaN ---> rejected!";
    case kernels::LocalFitStatus::no_degrees_of_freedom:
      return "Ndf <= 0 ---> rejected!";
    case kernels::LocalFitStatus::huge_chi2:
      return "chi2 above hugecut ---> rejected!";
    case kernels::LocalFitStatus::chi2_cut:
      return "chi2 above the cut ---> rejected!";
    case kernels::LocalFitStatus::downweight_fraction:
      return "down-weight fraction above dwfractioncut ---> rejected!";
    case kernels::LocalFitStatus::scratch_too_small:
      return "not fitted (scratch)";
  }
  return "";
}

// One record's local fit with its own scratch.
struct HostFit {
  std::vector<double> buffer;
  kernels::LocalFitScratch scratch;
  kernels::LocalFitResult result;

  void run(const kernels::RecordBatchView& view, const kernels::GlobalStateView& state, std::int64_t r,
           const kernels::LocalFitOptions& options) {
    const kernels::RecordShape shape = kernels::record_shape(view, r);
    buffer.assign(kernels::local_fit_scratch_bytes(shape) / sizeof(double) + 1, 0.0);
    scratch = kernels::make_local_fit_scratch(buffer.data(), shape);
    result = kernels::fit_record(view, state, r, options, scratch);
  }
};

kernels::GlobalStateView state_of(const PassSetup& setup) {
  kernels::GlobalStateView state;
  state.n_all = setup.n_all;
  state.n_variable = setup.n_variable;
  state.parameter_value = setup.parameter_value.data();
  state.variable_index = setup.variable_index.data();
  return state;
}

}  // namespace

RecordPrintout::RecordPrintout(const Steering& steering, std::filesystem::path file)
    : m_file(std::move(file)), m_first(steering.printrecord1), m_second(steering.printrecord2) {}

void RecordPrintout::after_pass(DataSet& data, const LabelMap& labels, const ParameterTable& parameters,
                                const PassSetup& setup, int iteration, bool new_iteration, int pass) {
  if (!active()) return;
  const bool print_now = new_iteration && (iteration == 1 || iteration == 3);
  const bool search = new_iteration && iteration == 2 && (m_first < 0 || m_second < 0);
  const bool find_error = m_first_error == 0 && pass == 1;
  if (!print_now && !search && !find_error) {
    if (new_iteration && iteration == 2) m_error = m_first_error;
    return;
  }
  const kernels::GlobalStateView state = state_of(setup);
  std::int64_t number = 0;
  HostFit fit;
  data.pass(labels, [&](const RecordBatch& batch) {
    const kernels::RecordBatchView view = host_view(batch);
    for (std::int64_t r = 0; r < view.n_records; ++r) {
      ++number;
      const bool chosen = print_now && (number == m_first || number == m_second || number == m_error);
      if (chosen) print(batch, r, number, parameters, setup, pass);
      if (!search && !find_error) continue;
      fit.run(view, state, r, setup.fit);
      const auto status = fit.result.status;
      if (find_error && m_first_error == 0 && status == kernels::LocalFitStatus::rank_deficient) m_first_error = number;
      if (!search || status == kernels::LocalFitStatus::rank_deficient ||
          status == kernels::LocalFitStatus::no_degrees_of_freedom ||
          status == kernels::LocalFitStatus::no_local_parameters) {
        continue;
      }
      const double chi2_ndf = static_cast<float>(fit.result.chi2 / fit.result.ndf);
      if (chi2_ndf > m_largest_chi2) {
        m_largest_chi2 = chi2_ndf;
        m_largest_chi2_record = number;
      }
      if (status != kernels::LocalFitStatus::accepted) continue;
      double largest = 0.0;
      for (std::int32_t i = 0; i < fit.result.measurements; ++i) {
        const double z = std::abs(fit.scratch.corrected[i] - fit.scratch.correction[i]) / fit.scratch.sigma[i];
        largest = std::max(largest, z);
      }
      if (static_cast<float>(largest) > m_largest_residual) {
        m_largest_residual = static_cast<float>(largest);
        m_largest_residual_record = number;
      }
    }
  });
  if (search || (new_iteration && iteration == 2)) {
    m_error = m_first_error;
    if (m_first < 0) m_first = m_largest_residual_record;
    if (m_second < 0) m_second = m_largest_chi2_record;
  }
}

void RecordPrintout::print(const RecordBatch& batch, std::int64_t r, std::int64_t number,
                           const ParameterTable& parameters, const PassSetup& setup, int pass) {
  char line[256];
  std::string& out = m_text;
  std::snprintf(line, sizeof line, "\n ------------------ Loop %d: Printout for record %lld (%s)\n\n", pass,
                static_cast<long long>(number), record_name(batch, r).c_str());
  out += line;
  const std::int64_t m0 = batch.record_begin[r], m1 = batch.record_begin[r + 1];
  out += " Measured value and local derivatives\n   i measured std_dev  index...derivative ...\n";
  for (std::int64_t m = m0; m < m1; ++m) {
    std::snprintf(line, sizeof line, "%4lld%12.4G%12.4G", static_cast<long long>(m - m0 + 1), batch.meas_value[m],
                  batch.meas_sigma[m]);
    out += line;
    for (std::int64_t k = batch.local_begin[m]; k < batch.local_begin[m + 1]; ++k) {
      std::snprintf(line, sizeof line, "%4d%12.4G", batch.local_index[k] + 1, batch.local_deriv[k]);
      out += line;
    }
    out += "\n";
  }
  out += "\n Global derivatives\n   i      label gindex vindex derivative ...\n";
  for (std::int64_t m = m0; m < m1; ++m) {
    if (batch.global_begin[m] == batch.global_begin[m + 1]) continue;
    std::snprintf(line, sizeof line, "%4lld", static_cast<long long>(m - m0 + 1));
    out += line;
    for (std::int64_t e = batch.global_begin[m]; e < batch.global_begin[m + 1]; ++e) {
      const std::int32_t i = batch.global_index[e];
      std::snprintf(line, sizeof line, "%11d%7d%7d%12.4G", batch.global_label[e], i + 1,
                    parameters.variable_index[i] >= 0 ? parameters.variable_index[i] + 1
                                                      : static_cast<int>(parameters.fixed_by[i]),
                    batch.global_deriv[e]);
      out += line;
    }
    out += "\n";
  }
  HostFit fit;
  const kernels::RecordBatchView view = host_view(batch);
  fit.run(view, state_of(setup), r, setup.fit);
  const auto& s = fit.scratch;
  const auto& result = fit.result;
  const bool fitted = result.status != kernels::LocalFitStatus::no_local_parameters &&
                      result.status != kernels::LocalFitStatus::scratch_too_small &&
                      result.measurements >= result.local_parameters;
  if (fitted) {
    out += "\n Data corrections using values of global parameters\n"
           " ==================================================\n"
           " index measvalue   corrvalue          sigma\n";
    for (std::int32_t i = 0; i < result.measurements; ++i) {
      std::snprintf(line, sizeof line, "%6d  %12.4G%12.4G +-%12.4G\n", i + 1, batch.meas_value[m0 + i], s.corrected[i],
                    s.sigma[i]);
      out += line;
    }
    std::snprintf(line, sizeof line, "\n Local fit: %d parameters, %d local iteration(s)\n", result.local_parameters,
                  std::max(1, setup.fit.downweight_iterations));
    out += line;
    if (result.status != kernels::LocalFitStatus::rank_deficient) {
      out += " Single residuals after the fit\n index corrvalue    residuum          sigma     nresid\n";
      for (std::int32_t i = 0; i < result.measurements; ++i) {
        const double residual = s.corrected[i] - s.correction[i];
        const double pull = residual / s.sigma[i];
        const char* stars = std::abs(pull) > 6.0 ? "***" : std::abs(pull) > 3.0 ? "** " : std::abs(pull) > 1.345 ? "*  " : "   ";
        std::snprintf(line, sizeof line, "%6d  %12.4G%12.4G +-%12.4G%7.2f %s\n", i + 1, s.corrected[i], residual,
                      s.sigma[i], pull, stars);
        out += line;
      }
      std::snprintf(line, sizeof line, "\n Chi^2= %.8G at %d degrees of freedom: 3-sigma limit is %.6G\n", result.chi2,
                    result.ndf, static_cast<double>(result.chi2_limit));
      out += line;
      std::snprintf(line, sizeof line, " Down-weight fraction: %.6G\n", result.downweight_fraction);
      out += line;
    }
  }
  out += std::string("   ---> ") + status_text(result.status) + "\n";
  std::snprintf(line, sizeof line, "\n ------------------ End of printout for record %lld\n",
                static_cast<long long>(number));
  out += line;
}

void RecordPrintout::finish(const RunLog& log) {
  if (!active()) return;
  if (m_largest_residual_record > 0) {
    log(" Record " + std::to_string(m_largest_residual_record) + " has largest residual: " +
        std::to_string(m_largest_residual));
  }
  if (m_largest_chi2_record > 0) {
    log(" Record " + std::to_string(m_largest_chi2_record) + " has largest Chi^2/Ndf: " + std::to_string(m_largest_chi2));
  }
  if (m_first_error > 0) log(" Record " + std::to_string(m_first_error) + " is first with error (rank deficit/NaN)");
  if (!m_file.empty()) write_file_atomically(m_file, m_text.empty() ? std::string(" (no record printed)\n") : m_text);
}

}  // namespace gpede::detail
