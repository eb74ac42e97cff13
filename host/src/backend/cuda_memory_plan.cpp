// Device memory plan of the CUDA backend (pure arithmetic, in every build): the global matrix, the
// record batches and the scratch pool of the passes over the data, and the buffers and cuSOLVER
// workspaces of each method. Used to tell, before allocating, whether a problem fits and what would
// fit instead.
#include <algorithm>
#include <cstdio>
#include <string>

#include "gpede/detail/cuda_device.hpp"
#include "memory_plan_text.hpp"

namespace gpede::detail {
namespace {

constexpr double kDouble = sizeof(double);
// Kept free for the CUDA context, cuBLAS/cuSOLVER handles and their internal buffers.
constexpr std::size_t kReserveBytes = std::size_t{512} << 20;
// The scratch pool shrinks to what is free; below this the passes would crawl.
constexpr std::size_t kMinimumPoolBytes = std::size_t{64} << 20;
// Slack of the device layout of a batch: 16 arrays, each aligned to 256 bytes, plus the record lists.
constexpr std::size_t kBatchSlackBytes = 16 * 256;

double square(double x) { return x * x; }

// LAPACK's workspace of dsyevd with eigenvectors (cuSOLVER's own size is queried at run time).
double estimated_syevd_workspace(double n) { return (1.0 + 6.0 * n + 2.0 * n * n) * kDouble; }
// Blocked factorisations and Q applications need panels of ~256 columns.
double estimated_panel_workspace(double n) { return 256.0 * n * kDouble; }

struct Need {
  double accumulate = 0.0;
  double factorize = 0.0;
};

// `queried`: the library's own workspace of the factorisation (< 0: estimate it).
Need need_for(std::int64_t n_variable, std::int64_t n_constraints, Method method, ConstraintMode mode,
              std::size_t max_batch_bytes, double queried = -1.0) {
  const double n = static_cast<double>(std::max<std::int64_t>(n_variable, 0));
  const double m = static_cast<double>(std::max<std::int64_t>(n_constraints, 0));
  const bool bordered = mode == ConstraintMode::multipliers && m > 0;
  const double nb = bordered ? n + m : n;
  const double matrix = square(n) * kDouble;
  const double factor = square(nb) * kDouble;
  // Per label: value, variable index, entries; per parameter: b; both sides of the double buffer.
  const double vectors = n * (8.0 + 4.0 + 8.0 + 8.0) + 2.0 * n * kDouble;
  const double batches = 2.0 * (static_cast<double>(max_batch_bytes) + static_cast<double>(kBatchSlackBytes));
  Need need;
  // Later passes run while the factor of the first one is kept.
  need.accumulate = std::max(matrix, factor) + vectors + batches + static_cast<double>(kMinimumPoolBytes);

  const double q = mode == ConstraintMode::elimination ? n * m * kDouble + m * kDouble : 0.0;
  // Applying Q in compact-WY form: the explicit reflectors V (n x m), T (m x m) and two m x n
  // products; inversion with elimination also keeps the (n - m) x m block B21 aside.
  const double wy = mode == ConstraintMode::elimination ? (3.0 * n * m + m * m) * kDouble : 0.0;
  auto panel_workspace = [&](double size) { return queried >= 0.0 ? queried : estimated_panel_workspace(size); };
  auto syevd_workspace = [&](double size) { return queried >= 0.0 ? queried : estimated_syevd_workspace(size); };
  double peak = 0.0;
  if (method == Method::minres) {
    // C stays as accumulated; two vectors of n for the products; with elimination the reflectors,
    // their compact-WY products and, once, V and C V for the preconditioner's diagonal.
    const double reduced = mode == ConstraintMode::elimination ? q + wy + 2.0 * n * m * kDouble : 0.0;
    need.factorize = matrix + reduced + 2.0 * n * kDouble + vectors;
    return need;
  }
  if (!bordered) {
    switch (method) {
      case Method::decomposition:
        peak = matrix + std::max(panel_workspace(n), wy);
        break;
      case Method::inversion:  // the factor inverted in place
        peak = matrix + std::max(panel_workspace(n), wy + n * m * kDouble);
        break;
      case Method::diagonalization:  // eigenvectors in place + workspace + eigenvalues
        peak = matrix + std::max(syevd_workspace(n) + n * kDouble, wy);
        break;
      case Method::minres:  // planned above
        break;
    }
    peak += q;
  } else {
    const double building = matrix + factor;  // C and the bordered matrix during the copy
    switch (method) {
      case Method::decomposition:
        peak = std::max(building, factor + panel_workspace(nb));
        break;
      case Method::inversion:  // factor + blocks of up to 4096 columns of the identity solved with it
        peak = std::max(building, factor + std::min(nb, 4096.0) * nb * kDouble + panel_workspace(nb));
        break;
      case Method::diagonalization:
        peak = std::max(building, factor + syevd_workspace(nb) + nb * kDouble);
        break;
      case Method::minres:  // planned above
        break;
    }
  }
  need.factorize = peak + vectors;
  return need;
}

}  // namespace

MemoryPlan plan_cuda_memory(std::int64_t n_variable, std::int64_t n_constraints, Method method, ConstraintMode mode,
                            std::size_t max_batch_bytes, const CudaDeviceInfo& device,
                            const SolverWorkspace& workspace, bool deterministic) {
  MemoryPlan plan;
  const double queried = workspace.queried ? static_cast<double>(workspace.device_bytes) : -1.0;
  // Deterministic mode: one b per resident warp (the most groups of a launch: the accumulation
  // kernel's 128 registers per thread leave 16 warps a multiprocessor) and 16 bytes per diagonal
  // element, whatever the method.
  const double deterministic_bytes =
      deterministic ? (std::max(1.0, 16.0 * static_cast<double>(device.multiprocessors)) + 2.0) *
                          static_cast<double>(std::max<std::int64_t>(n_variable, 0)) * kDouble
                    : 0.0;
  Need need = need_for(n_variable, n_constraints, method, mode, max_batch_bytes, queried);
  need.accumulate += deterministic_bytes;
  const double n = static_cast<double>(std::max<std::int64_t>(n_variable, 0));
  plan.matrix_bytes = static_cast<std::size_t>(n * n * kDouble);
  plan.accumulate_bytes = static_cast<std::size_t>(need.accumulate);
  plan.factorize_bytes = static_cast<std::size_t>(need.factorize);
  plan.needed_bytes = std::max(plan.accumulate_bytes, plan.factorize_bytes);
  plan.available_bytes = device.free_bytes > kReserveBytes ? device.free_bytes - kReserveBytes : 0;
  // The CPU backend holds the matrix and one working copy in host memory.
  const std::string cpu_hint = "the CPU backend (--backend cpu) needs about " + gigabytes(2.0 * n * n * kDouble) +
                               " of host memory";
  const std::string what = std::string(method_name(method)) + " with " + mode_name(mode) + " of " +
                           std::to_string(n_variable) + " parameters and " + std::to_string(n_constraints) +
                           " constraints";
  if (!device.present) {
    plan.fits = false;
    plan.message = "no usable CUDA device (" + (device.reason.empty() ? std::string("unknown reason") : device.reason) +
                   "); " + cpu_hint;
    return plan;
  }
  plan.fits = plan.needed_bytes <= plan.available_bytes;
  const std::string on_device = " on " + (device.name.empty() ? std::string("the CUDA device") : device.name);
  if (plan.fits) {
    plan.message = what + " needs about " + gigabytes(static_cast<double>(plan.needed_bytes)) + on_device + ", " +
                   gigabytes(static_cast<double>(plan.available_bytes)) + " available";
    return plan;
  }
  const std::string alternatives =
      fitting_alternatives(method, mode, n_constraints, static_cast<double>(plan.available_bytes),
                           [&](Method m, ConstraintMode c) {
                             const Need other = need_for(n_variable, n_constraints, m, c, max_batch_bytes);
                             return std::max(other.accumulate + deterministic_bytes, other.factorize);
                           });
  plan.message = what + " needs about " + gigabytes(static_cast<double>(plan.needed_bytes)) + " of device memory" +
                 on_device + ", but only " + gigabytes(static_cast<double>(plan.available_bytes)) + " are available. " +
                 (alternatives.empty() ? std::string("No other method fits this device")
                                       : "These would fit: " + alternatives) +
                 "; or " + cpu_hint;
  return plan;
}

}  // namespace gpede::detail
