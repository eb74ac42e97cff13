// Host memory: what this process may still allocate, and the floor of what a dense solution on the
// CPU backend needs. Used before the first pass to refuse at once, with a message that says what
// would fit, a problem whose global matrix cannot be held, instead of failing in an allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "gpede/steering.hpp"

namespace gpede::detail {

/// Memory this process may still allocate, and what limits it.
struct HostMemory {
  std::size_t available_bytes = 0;
  /// "available memory" (/proc/meminfo's MemAvailable), "the cgroup's memory limit",
  /// "the address-space limit (ulimit -v)"; "unknown" where nothing could be read.
  std::string limited_by;
};

/// The smallest of: MemAvailable, the cgroup (v2 or v1) limit less its usage, RLIMIT_AS less this
/// process's virtual size. Never throws; where none can be read, available_bytes is SIZE_MAX and
/// limited_by "unknown".
HostMemory query_host_memory() noexcept;

/// The host memory a CPU run needs at least, and whether it fits.
struct HostMemoryPlan {
  bool fits = true;
  std::size_t needed_bytes = 0;      ///< the larger of the two phases below
  std::size_t accumulate_bytes = 0;  ///< while a pass builds the matrix: the matrix and the vectors
  std::size_t factorize_bytes = 0;   ///< while the method factorises (in place where LAPACK allows)
  /// For a user: what is needed and available, and, when it does not fit, the methods and
  /// constraint modes that would.
  std::string message;
};

/// The floor of a CPU run's new allocations after reading: n_variable^2 doubles for the global
/// matrix; for multipliers, the bordered (n+m)^2 matrix beside it while it is filled; for
/// diagonalization, the eigenvectors beside the matrix (dsyevr); for elimination, the n x m
/// reflectors; plus the per-parameter vectors. Workspaces of a few columns and the optional
/// per-thread copies of the matrix are not counted, so a refusal is certain: a run refused here
/// could not have finished. Pure arithmetic. `sparse`: MINRES over sparse storage, whose elements
/// are known only after the pattern pass: the vectors and the constraints are counted.
/// `packed`: decomposition or inversion with the matrix in packed storage (n(n+1)/2 doubles), the
/// constraints beside it as A, A^T W^1/2 and then H^-1 A^T (n x m each) and m x m. A refusal of
/// full storage names packed storage where that would fit.
/// `band` is MINRES's band preconditioner's width (`bandwidth`, 0 or less: none): its factor of
/// (n + m) x band doubles (elimination: (n - m) x band) and, with multipliers, K = L^-1 A^T
/// (n x m) and the factor of K K^T (m x m) beside the matrix.
HostMemoryPlan plan_host_memory(std::int64_t n_variable, std::int64_t n_constraints, Method method, ConstraintMode mode,
                                const HostMemory& memory, bool sparse = false, bool packed = false, int band = 0);
/// The floor per process of a distributed solve over `processes` processes (mpirun with
/// --distributed-solve, or chosen where one process cannot hold the solution): every process
/// keeps its full n^2 accumulation of the passes and the per-parameter vectors; its share of the
/// distributed matrices is 1/processes of what one process would factorise (the n^2 matrix, or the
/// bordered (n+m)^2 one for multipliers; twice that for diagonalization's eigenvectors), while the
/// constraints (n x m; 3 n x m for MINRES) stay whole on every process. MINRES is counted dense
/// (the distributed solve has no sparse storage). `memory` is one process's share.
HostMemoryPlan plan_distributed_memory(std::int64_t n_variable, std::int64_t n_constraints, Method method,
                                       ConstraintMode mode, const HostMemory& memory, int processes);
/// Whether a method has packed storage (decomposition, inversion).
inline bool packed_storage_method(Method method) {
  return method == Method::decomposition || method == Method::inversion;
}

}  // namespace gpede::detail
