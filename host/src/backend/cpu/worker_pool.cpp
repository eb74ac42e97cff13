// The number of threads a run may use (worker_pool.hpp).
#include "gpede/detail/worker_pool.hpp"

#include <sched.h>

#include <algorithm>

namespace gpede::detail {

int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
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
