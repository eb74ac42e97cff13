// pede's record printout (`printrecord n1 n2`, its mpdebug.txt): the local fit of chosen records,
// step by step, in the first pass of iterations 1 and 3. Negative numbers ask for the records
// with the largest normalised residual (n1) and the largest chi2/ndf (n2) of iteration 2; the
// first record whose local fit failed (rank deficit or NaN) is printed too. The fits are done
// again on the host with the same per-record functions as the pass.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "gpede/detail/backend.hpp"
#include "solver_internal.hpp"

namespace gpede::detail {

class RecordPrintout {
 public:
  RecordPrintout(const Steering& steering, std::filesystem::path file);
  bool active() const { return m_first != 0 || m_second != 0; }

  /// After a pass with `setup`: `iteration` is pede's iteration number of the pass, `new_iteration`
  /// whether it is the first pass of that iteration.
  void after_pass(DataSet& data, const LabelMap& labels, const ParameterTable& parameters, const PassSetup& setup,
                  int iteration, bool new_iteration, int pass);
  /// Writes mpdebug.txt (whole) and the log lines on the records found.
  void finish(const RunLog& log);

 private:
  void print(const RecordBatch& batch, std::int64_t r, std::int64_t number, const ParameterTable& parameters,
             const PassSetup& setup, int pass);

  std::filesystem::path m_file;
  std::int64_t m_first = 0;
  std::int64_t m_second = 0;
  std::int64_t m_error = 0;          // record printed for its failed fit (from iteration 2 on)
  std::int64_t m_first_error = 0;    // first record whose local fit failed (0: none yet)
  std::int64_t m_largest_residual_record = 0;
  double m_largest_residual = 0.0;
  std::int64_t m_largest_chi2_record = 0;
  double m_largest_chi2 = 0.0;
  std::string m_text;
};

}  // namespace gpede::detail
