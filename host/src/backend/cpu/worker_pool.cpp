// The number of threads a run may use (worker_pool.hpp).
#include "gpede/detail/worker_pool.hpp"

#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>

namespace gpede::detail {
namespace {

/// The words of a small control file; empty if it cannot be read.
std::vector<std::string> words_of(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  std::string word;
  while (in >> word) out.push_back(word);
  return out;
}

/// A positive number, or 0.
double positive(const std::string& text) {
  try {
    std::size_t used = 0;
    const double value = std::stod(text, &used);
    return used == text.size() && value > 0.0 && std::isfinite(value) ? value : 0.0;
  } catch (const std::exception&) {
    return 0.0;
  }
}

}  // namespace

int cgroup_cpu_limit(const std::filesystem::path& root) {
  double quota = 0.0, period = 0.0;
  // cgroup v2: cpu.max holds "QUOTA PERIOD" or "max PERIOD".
  const std::vector<std::string> v2 = words_of(root / "cpu.max");
  if (v2.size() == 2) {
    quota = positive(v2[0]);
    period = positive(v2[1]);
  } else {  // cgroup v1: a quota of -1 is no limit
    const std::vector<std::string> q = words_of(root / "cpu" / "cpu.cfs_quota_us");
    const std::vector<std::string> p = words_of(root / "cpu" / "cpu.cfs_period_us");
    if (q.size() == 1 && p.size() == 1) {
      quota = positive(q[0]);
      period = positive(p[0]);
    }
  }
  if (quota <= 0.0 || period <= 0.0) return 0;
  return std::max(1, static_cast<int>(std::ceil(quota / period - 1e-9)));
}

int usable_cpus() {
  int n = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int quota = cgroup_cpu_limit("/sys/fs/cgroup");
  return quota > 0 ? std::min(n, quota) : n;
}

bool bound_blas_threads(int threads) {
  // OpenBLAS (Debian's libopenblas0-pthread and -openmp) has its own thread pool for LAPACK's
  // level-3 work; other BLAS libraries leave the count to their environment variables.
  using SetThreads = void (*)(int);
  auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set == nullptr) return false;
  set(std::max(1, threads));
  return true;
}

int capped_threads(int requested, std::string& note) {
  note.clear();
  const int cpus = usable_cpus();
  if (requested <= 0) return cpus;
  if (requested <= cpus) return requested;
  note = "threads " + std::to_string(requested) + ": capped at " + std::to_string(cpus) +
         ", the CPUs this process may run on (more threads would only share them)";
  return cpus;
}

}  // namespace gpede::detail
