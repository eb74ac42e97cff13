// Host memory available to the process (meminfo, cgroups, RLIMIT_AS) and the floor of a CPU run's
// dense matrices, checked before the first pass.
#include "gpede/detail/host_memory.hpp"

#include "../memory_plan_text.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

namespace gpede::detail {
namespace {

constexpr std::size_t kUnlimited = std::numeric_limits<std::size_t>::max();

/// A "Key:   N kB" line of a /proc file, in bytes; 0 where absent.
std::size_t proc_kb(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) == 0 && line.size() > key.size() && line[key.size()] == ':') {
      std::istringstream fields(line.substr(key.size() + 1));
      std::size_t kb = 0;
      if (fields >> kb) return kb * 1024;
    }
  }
  return 0;
}

/// The first number in a file (a cgroup control file); kUnlimited for "max", absent or unreadable.
std::size_t number_in(const char* file) {
  std::ifstream in(file);
  std::string word;
  if (!(in >> word) || word == "max") return kUnlimited;
  try {
    const unsigned long long v = std::stoull(word);
    return v >= (1ULL << 60) ? kUnlimited : static_cast<std::size_t>(v);
  } catch (...) {
    return kUnlimited;
  }
}

void take(HostMemory& memory, std::size_t bytes, const char* what) {
  if (bytes < memory.available_bytes) {
    memory.available_bytes = bytes;
    memory.limited_by = what;
  }
}

struct Floor {
  double accumulate = 0.0;
  double factorize = 0.0;
  double peak() const { return std::max(accumulate, factorize); }
};

Floor floor_for(std::int64_t n_variable, std::int64_t n_constraints, Method method, ConstraintMode mode,
                bool sparse = false, bool packed = false, int band = 0) {
  const double n = static_cast<double>(std::max<std::int64_t>(n_variable, 0));
  const double m = static_cast<double>(std::max<std::int64_t>(n_constraints, 0));
  const double d = sizeof(double);
  if (packed) {
    Floor floor;
    const double matrix = n * (n + 1.0) / 2.0 * d;
    const double vectors = 8.0 * n * d;
    floor.accumulate = matrix + vectors;
    floor.factorize = matrix + (m > 0 ? (2.0 * n * m + m * m) * d : 0.0) + vectors;
    return floor;
  }
  const double matrix = sparse && method == Method::minres ? 0.0 : n * n * d;
  // Per label and parameter: values, start values, indices, entries, b, the step and the diagonal.
  const double vectors = 8.0 * n * d;
  Floor floor;
  floor.accumulate = matrix + vectors;
  if (method == Method::minres) {
    // C stays; the constraints (reflectors, or A and A scaled for the preconditioner) and, with
    // elimination, V and C V once for the preconditioner's diagonal.
    floor.factorize = matrix + (m > 0 ? 3.0 * n * m * d : 0.0) + vectors;
    if (band > 0) {
      const double w = static_cast<double>(band);
      floor.factorize += mode == ConstraintMode::multipliers ? ((n + m) * w + n * m + m * m) * d
                                                             : std::max(n - m, 0.0) * w * d;
    }
  } else if (mode == ConstraintMode::multipliers && m > 0) {
    const double bordered = (n + m) * (n + m) * d;
    // The bordered matrix is filled from the global one; diagonalization adds its eigenvectors.
    floor.factorize = std::max(matrix + bordered, method == Method::diagonalization ? 2.0 * bordered : bordered);
  } else {
    const double reflectors = mode == ConstraintMode::elimination ? n * m * d : 0.0;
    floor.factorize = (method == Method::diagonalization ? 2.0 * matrix : matrix) + reflectors;
  }
  floor.factorize += vectors;
  return floor;
}

}  // namespace

HostMemory query_host_memory() noexcept {
  HostMemory memory;
  memory.available_bytes = kUnlimited;
  memory.limited_by = "unknown";
  try {
    if (const std::size_t available = proc_kb("/proc/meminfo", "MemAvailable"); available > 0) {
      take(memory, available, "available memory (MemAvailable)");
    }
    // cgroup v2, then v1.
    std::size_t limit = number_in("/sys/fs/cgroup/memory.max");
    std::size_t usage = number_in("/sys/fs/cgroup/memory.current");
    if (limit == kUnlimited) {
      limit = number_in("/sys/fs/cgroup/memory/memory.limit_in_bytes");
      usage = number_in("/sys/fs/cgroup/memory/memory.usage_in_bytes");
    }
    if (limit != kUnlimited) take(memory, usage != kUnlimited && usage < limit ? limit - usage : 0, "the cgroup's memory limit");
    rlimit as{};
    if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {
      const std::size_t size = proc_kb("/proc/self/status", "VmSize");
      const std::size_t cap = static_cast<std::size_t>(as.rlim_cur);
      take(memory, size < cap ? cap - size : 0, "the address-space limit (ulimit -v)");
    }
  } catch (...) {
  }
  return memory;
}

HostMemoryPlan plan_host_memory(std::int64_t n_variable, std::int64_t n_constraints, Method method, ConstraintMode mode,
                                const HostMemory& memory, bool sparse, bool packed, int band) {
  HostMemoryPlan plan;
  packed = packed && packed_storage_method(method);
  const Floor floor = floor_for(n_variable, n_constraints, method, mode, sparse, packed, method == Method::minres ? band : 0);
  plan.accumulate_bytes = static_cast<std::size_t>(floor.accumulate);
  plan.factorize_bytes = static_cast<std::size_t>(floor.factorize);
  plan.needed_bytes = std::max(plan.accumulate_bytes, plan.factorize_bytes);
  plan.fits = plan.needed_bytes <= memory.available_bytes;
  const std::string what = std::string("method ") + method_name(method) +
                           (sparse ? " (sparse storage)" : packed ? " (packed storage)" : "") +
                           (n_constraints > 0 ? std::string(" with ") + mode_name(mode) : std::string()) + " of " +
                           std::to_string(n_variable) + " parameters and " + std::to_string(n_constraints) +
                           " constraints";
  const std::string available =
      memory.available_bytes == kUnlimited ? std::string("no limit could be read")
                                           : gigabytes(static_cast<double>(memory.available_bytes)) + " available, limited by " +
                                                 memory.limited_by;
  if (plan.fits) {
    plan.message = what + " needs at least " + gigabytes(static_cast<double>(plan.needed_bytes)) + " of memory; " + available;
    return plan;
  }
  std::string alternatives =
      fitting_alternatives(method, mode, n_constraints, static_cast<double>(memory.available_bytes),
                           [&](Method m, ConstraintMode c) { return floor_for(n_variable, n_constraints, m, c).peak(); });
  if (!sparse && !packed) {
    for (Method other : {Method::decomposition, Method::inversion}) {
      const double bytes = floor_for(n_variable, n_constraints, other, mode, false, true).peak();
      if (bytes <= static_cast<double>(memory.available_bytes)) {
        alternatives += std::string(alternatives.empty() ? "" : ", ") + "method " + method_name(other) +
                        " with packed storage (--storage packed, or auto; " + gigabytes(bytes) + ")";
      }
    }
  }
  if (!sparse && floor_for(n_variable, n_constraints, Method::minres, mode, true).peak() <=
                     static_cast<double>(memory.available_bytes)) {
    alternatives += std::string(alternatives.empty() ? "" : ", ") +
                    "method sparseMINRES (a sparse matrix, its size known after a look at the records; no errors)";
  }
  plan.message = what + " needs at least " + gigabytes(static_cast<double>(plan.needed_bytes)) +
                 " of memory (the " + (packed ? "packed" : "dense") + " global matrix alone is " +
                 gigabytes(static_cast<double>(n_variable) * static_cast<double>(packed ? n_variable + 1 : n_variable) *
                           (packed ? 4.0 : 8.0)) +
                 "), but only " +
                 available + ". " +
                 (alternatives.empty() ? std::string("No other exact method fits; fewer parameters (fix some, or "
                                                     "align in parts) or a machine with more memory would")
                                       : "These would fit: " + alternatives);
  return plan;
}

HostMemoryPlan plan_distributed_memory(std::int64_t n_variable, std::int64_t n_constraints, Method method,
                                       ConstraintMode mode, const HostMemory& memory, int processes) {
  const double n = static_cast<double>(std::max<std::int64_t>(n_variable, 0));
  const double m = static_cast<double>(std::max<std::int64_t>(n_constraints, 0));
  const double d = sizeof(double);
  const double p = static_cast<double>(std::max(processes, 1));
  const double vectors = 8.0 * n * d;
  const double accumulate = n * n * d + vectors;
  double share = 0.0;  // this process's part of the distributed matrices
  double whole = 0.0;  // what every process holds whole beside them
  if (method == Method::minres) {
    share = n * n * d / p;
    whole = m > 0 ? 3.0 * n * m * d : 0.0;
  } else if (mode == ConstraintMode::multipliers && m > 0) {
    share = (method == Method::diagonalization ? 2.0 : 1.0) * (n + m) * (n + m) * d / p;
  } else {
    share = (method == Method::diagonalization ? 2.0 : 1.0) * n * n * d / p;
    whole = mode == ConstraintMode::elimination ? n * m * d : 0.0;
  }
  HostMemoryPlan plan;
  plan.accumulate_bytes = static_cast<std::size_t>(accumulate);
  plan.factorize_bytes = static_cast<std::size_t>(accumulate + share + whole);
  plan.needed_bytes = std::max(plan.accumulate_bytes, plan.factorize_bytes);
  plan.fits = plan.needed_bytes <= memory.available_bytes;
  const std::string available =
      memory.available_bytes == kUnlimited ? std::string("no limit could be read")
                                           : gigabytes(static_cast<double>(memory.available_bytes)) +
                                                 " available to each, limited by " + memory.limited_by;
  plan.message = std::string("method ") + method_name(method) +
                 (n_constraints > 0 ? std::string(" with ") + mode_name(mode) : std::string()) + " of " +
                 std::to_string(n_variable) + " parameters and " + std::to_string(n_constraints) +
                 " constraints, solved over " + std::to_string(std::max(processes, 1)) +
                 " processes, needs at least " + gigabytes(static_cast<double>(plan.needed_bytes)) +
                 " on each (its full accumulated matrix and its share of the solution); " + available;
  return plan;
}

}  // namespace gpede::detail
