// The CUDA backend's memory plan (pure arithmetic, runs without a device): the bytes it counts
// against the sizes the methods need by construction (n^2 doubles per n x n matrix, LAPACK's
// 2 n^2 + 6 n + 1 doubles of dsyevd workspace), and the advice it gives when a problem does not fit.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <fstream>
#include <string>

#include "gpede/detail/cuda_device.hpp"
#include "gpede/detail/host_memory.hpp"

namespace {

using gpede::ConstraintMode;
using gpede::Method;
using gpede::detail::CudaDeviceInfo;
using gpede::detail::MemoryPlan;
using gpede::detail::plan_cuda_memory;

CudaDeviceInfo device_with(double free_gb) {
  CudaDeviceInfo device;
  device.present = true;
  device.name = "test device";
  device.free_bytes = static_cast<std::size_t>(free_gb * 1e9);
  device.total_bytes = device.free_bytes;
  return device;
}

constexpr std::size_t kBatch = std::size_t{64} << 20;

double matrix_bytes(double n) { return n * n * 8.0; }

TEST(MemoryPlan, NoDeviceNeverFitsAndSaysWhy) {
  CudaDeviceInfo none;
  none.reason = "built without CUDA";
  const MemoryPlan plan = plan_cuda_memory(1000, 0, Method::inversion, ConstraintMode::elimination, kBatch, none);
  EXPECT_FALSE(plan.fits);
  EXPECT_EQ(plan.available_bytes, 0u);
  EXPECT_NE(plan.message.find("built without CUDA"), std::string::npos) << plan.message;
  EXPECT_NE(plan.message.find("--backend cpu"), std::string::npos) << plan.message;
}

TEST(MemoryPlan, CountsTheMatricesOfEachMethod) {
  const CudaDeviceInfo device = device_with(1000.0);
  const double n = 20000.0;
  const double one = matrix_bytes(n);
  const MemoryPlan decomposition =
      plan_cuda_memory(20000, 0, Method::decomposition, ConstraintMode::elimination, kBatch, device);
  const MemoryPlan inversion = plan_cuda_memory(20000, 0, Method::inversion, ConstraintMode::elimination, kBatch, device);
  const MemoryPlan diagonalization =
      plan_cuda_memory(20000, 0, Method::diagonalization, ConstraintMode::elimination, kBatch, device);
  EXPECT_EQ(decomposition.matrix_bytes, static_cast<std::size_t>(one));
  // One matrix plus batches and small workspaces for decomposition and for inversion (the factor
  // is inverted in place); three (eigenvectors in place and a 2 n^2 workspace) for
  // diagonalization. Small extras stay below 1 GB here.
  EXPECT_GE(static_cast<double>(decomposition.needed_bytes), one);
  EXPECT_LT(static_cast<double>(decomposition.needed_bytes), one + 1e9);
  EXPECT_GE(static_cast<double>(inversion.needed_bytes), one);
  EXPECT_LT(static_cast<double>(inversion.needed_bytes), one + 1e9);
  EXPECT_GE(static_cast<double>(diagonalization.needed_bytes), 3.0 * one);
  EXPECT_LT(static_cast<double>(diagonalization.needed_bytes), 3.0 * one + 1e9);
  EXPECT_TRUE(decomposition.fits && inversion.fits && diagonalization.fits);
}

TEST(MemoryPlan, MultipliersNeedTheBorderedMatrix) {
  const CudaDeviceInfo device = device_with(1000.0);
  const double nb = 10000.0 + 500.0;
  const MemoryPlan plan = plan_cuda_memory(10000, 500, Method::inversion, ConstraintMode::multipliers, kBatch, device);
  // The global matrix while the bordered one is built from it; then the factor and blocks of
  // 4096 columns of the identity solved with it for the diagonal of the inverse.
  EXPECT_GE(static_cast<double>(plan.factorize_bytes), matrix_bytes(10000.0) + matrix_bytes(nb));
  EXPECT_LT(static_cast<double>(plan.factorize_bytes), matrix_bytes(10000.0) + matrix_bytes(nb) + 1e9);
}

TEST(MemoryPlan, SaysWhatFitsWhenTheMethodDoesNot) {
  // An 80 GB device and 60,000 parameters: 28.8 GB per matrix. Diagonalization needs three
  // (86.4 GB), inversion and decomposition one.
  const CudaDeviceInfo device = device_with(80.0);
  const MemoryPlan diagonalization =
      plan_cuda_memory(60000, 10, Method::diagonalization, ConstraintMode::elimination, kBatch, device);
  EXPECT_FALSE(diagonalization.fits);
  EXPECT_GT(diagonalization.needed_bytes, diagonalization.available_bytes);
  EXPECT_NE(diagonalization.message.find("method inversion"), std::string::npos) << diagonalization.message;
  EXPECT_NE(diagonalization.message.find("method decomposition"), std::string::npos) << diagonalization.message;
  EXPECT_NE(diagonalization.message.find("--backend cpu"), std::string::npos) << diagonalization.message;
  const MemoryPlan inversion =
      plan_cuda_memory(60000, 10, Method::inversion, ConstraintMode::elimination, kBatch, device);
  EXPECT_TRUE(inversion.fits) << inversion.message;

  const MemoryPlan too_large =
      plan_cuda_memory(200000, 0, Method::decomposition, ConstraintMode::elimination, kBatch, device);
  EXPECT_FALSE(too_large.fits);
  EXPECT_NE(too_large.message.find("No other method fits"), std::string::npos) << too_large.message;
}

TEST(MemoryPlan, DeterministicModeCountsAVectorPerResidentWarp) {
  CudaDeviceInfo device = device_with(80.0);
  device.multiprocessors = 132;
  const MemoryPlan plain = plan_cuda_memory(60000, 0, Method::inversion, ConstraintMode::elimination, kBatch, device);
  const MemoryPlan exact =
      plan_cuda_memory(60000, 0, Method::inversion, ConstraintMode::elimination, kBatch, device, {}, true);
  // 132 x 16 = 2,112 resident warps, each with b of 60,000 doubles: 1.01 GB, plus the diagonal's words
  const double extra = static_cast<double>(exact.accumulate_bytes) - static_cast<double>(plain.accumulate_bytes);
  EXPECT_NEAR(extra, (2112.0 + 2.0) * 60000.0 * 8.0, 1e3);
}

TEST(MemoryPlan, KeepsAReserveForTheContext) {
  const CudaDeviceInfo device = device_with(1.0);
  const MemoryPlan plan = plan_cuda_memory(100, 0, Method::inversion, ConstraintMode::elimination, 0, device);
  EXPECT_LT(plan.available_bytes, device.free_bytes);
  EXPECT_TRUE(plan.fits);
}

}  // namespace

// ----- the CPU backend's floor ---------------------------------------------------------------------

gpede::detail::HostMemory host_with(double gb) {
  gpede::detail::HostMemory memory;
  memory.available_bytes = static_cast<std::size_t>(gb * 1e9);
  memory.limited_by = "test limit";
  return memory;
}

// The belle2 preset's 61,520 parameters on a 24 GB machine: the matrix alone is 30.3 GB, so no
// exact method fits in full storage, but decomposition and inversion fit in packed storage; with 40 GB decomposition and inversion fit (the matrix once), but
// diagonalization needs the eigenvectors beside it (2 n^2 doubles, 60.6 GB).
TEST(HostMemoryPlan, Belle2SizeOnA24GBMachine) {
  const double n = 61520.0;
  const auto small = gpede::detail::plan_host_memory(61520, 30, Method::inversion, ConstraintMode::elimination,
                                                     host_with(22.0));
  EXPECT_FALSE(small.fits);
  EXPECT_GE(static_cast<double>(small.needed_bytes), matrix_bytes(n));
  EXPECT_NE(small.message.find("30.3 GB"), std::string::npos) << small.message;
  EXPECT_NE(small.message.find("test limit"), std::string::npos) << small.message;
  // No exact method fits in full storage; packed storage and MINRES over the sparse matrix are proposed.
  EXPECT_EQ(small.message.find("method decomposition ("), std::string::npos) << small.message;
  EXPECT_NE(small.message.find("These would fit: method decomposition with packed storage"), std::string::npos)
      << small.message;
  EXPECT_NE(small.message.find("method inversion with packed storage"), std::string::npos) << small.message;
  EXPECT_NE(small.message.find("method sparseMINRES"), std::string::npos) << small.message;
  // Packed: n(n+1)/2 doubles, 15.1 GB, and the constraints' n x m arrays beside it.
  for (ConstraintMode mode : {ConstraintMode::elimination, ConstraintMode::multipliers}) {
    const auto packed = gpede::detail::plan_host_memory(61520, 367, Method::inversion, mode, host_with(22.0), false, true);
    EXPECT_TRUE(packed.fits) << packed.message;
    EXPECT_NE(packed.message.find("packed storage"), std::string::npos) << packed.message;
    EXPECT_GE(static_cast<double>(packed.needed_bytes), n * (n + 1.0) / 2.0 * 8.0 + 2.0 * n * 367.0 * 8.0);
    EXPECT_LT(static_cast<double>(packed.needed_bytes), 0.52 * matrix_bytes(n));
  }
  const auto packed_tight = gpede::detail::plan_host_memory(61520, 367, Method::decomposition, ConstraintMode::elimination,
                                                            host_with(14.0), false, true);
  EXPECT_FALSE(packed_tight.fits);
  EXPECT_NE(packed_tight.message.find("the packed global matrix alone is 15.1 GB"), std::string::npos)
      << packed_tight.message;
  const auto sparse = gpede::detail::plan_host_memory(61520, 30, Method::minres, ConstraintMode::elimination,
                                                      host_with(22.0), true);
  EXPECT_TRUE(sparse.fits) << sparse.message;
  EXPECT_NE(sparse.message.find("sparse storage"), std::string::npos) << sparse.message;
  EXPECT_LT(static_cast<double>(sparse.needed_bytes), 0.01 * matrix_bytes(n));

  const auto large = gpede::detail::plan_host_memory(61520, 30, Method::diagonalization, ConstraintMode::elimination,
                                                     host_with(40.0));
  EXPECT_FALSE(large.fits);
  EXPECT_GE(static_cast<double>(large.factorize_bytes), 2.0 * matrix_bytes(n));
  EXPECT_NE(large.message.find("method decomposition ("), std::string::npos) << large.message;
  EXPECT_NE(large.message.find("method inversion ("), std::string::npos) << large.message;

  const auto fits = gpede::detail::plan_host_memory(61520, 30, Method::decomposition, ConstraintMode::elimination,
                                                    host_with(40.0));
  EXPECT_TRUE(fits.fits) << fits.message;
  // The floor is the matrix, the reflectors of the constraints and vectors: within 1 % of n^2.
  EXPECT_LT(static_cast<double>(fits.needed_bytes), 1.01 * matrix_bytes(n));
}

// With multipliers the bordered matrix is filled from the global one: both at once.
TEST(HostMemoryPlan, MultipliersHoldTheBorderedMatrixBesideTheGlobalOne) {
  const auto plan = gpede::detail::plan_host_memory(20000, 1000, Method::decomposition, ConstraintMode::multipliers,
                                                    host_with(1000.0));
  EXPECT_TRUE(plan.fits);
  EXPECT_GE(static_cast<double>(plan.factorize_bytes), matrix_bytes(20000) + matrix_bytes(21000));
  const auto tight = gpede::detail::plan_host_memory(20000, 1000, Method::decomposition, ConstraintMode::multipliers,
                                                     host_with(5.0));
  EXPECT_FALSE(tight.fits);
  EXPECT_NE(tight.message.find("method decomposition with elimination ("), std::string::npos) << tight.message;
}

// A distributed solve over P processes: each keeps its full accumulated matrix (n^2) and holds 1/P
// of the matrices one process would factorise. Belle II's 61,520 parameters with diagonalization
// (60.6 GB on one process) need 30.3 + 60.6 / 8 = 37.9 GB on each of 8; with multipliers the
// bordered matrix is shared out instead of the global one.
TEST(HostMemoryPlan, DistributedSolveHoldsTheAccumulationAndAShare) {
  const double n = 61520.0;
  const auto one = gpede::detail::plan_host_memory(61520, 30, Method::diagonalization, ConstraintMode::elimination,
                                                   host_with(40.0));
  EXPECT_FALSE(one.fits);
  const auto eight = gpede::detail::plan_distributed_memory(61520, 30, Method::diagonalization,
                                                            ConstraintMode::elimination, host_with(40.0), 8);
  EXPECT_TRUE(eight.fits) << eight.message;
  EXPECT_GE(static_cast<double>(eight.needed_bytes), matrix_bytes(n) * (1.0 + 2.0 / 8.0));
  EXPECT_LT(static_cast<double>(eight.needed_bytes), matrix_bytes(n) * (1.0 + 2.0 / 8.0) * 1.01);
  EXPECT_NE(eight.message.find("solved over 8 processes"), std::string::npos) << eight.message;
  EXPECT_NE(eight.message.find("test limit"), std::string::npos) << eight.message;
  // Two processes gain nothing for diagonalization: n^2 + 2 n^2 / 2 is what one process needs.
  const auto two = gpede::detail::plan_distributed_memory(61520, 30, Method::diagonalization,
                                                          ConstraintMode::elimination, host_with(40.0), 2);
  EXPECT_FALSE(two.fits);
  EXPECT_GE(static_cast<double>(two.needed_bytes), static_cast<double>(one.needed_bytes) * 0.999);
  const double m = 1000.0;
  const auto bordered = gpede::detail::plan_distributed_memory(20000, 1000, Method::decomposition,
                                                               ConstraintMode::multipliers, host_with(1000.0), 4);
  EXPECT_GE(static_cast<double>(bordered.needed_bytes), matrix_bytes(20000) + matrix_bytes(20000 + m) / 4.0);
  EXPECT_LT(static_cast<double>(bordered.needed_bytes), (matrix_bytes(20000) + matrix_bytes(20000 + m) / 4.0) * 1.01);
}

// What this process may allocate is read from the system; a limit set with setrlimit shows.
// The soft limit is lowered to 1 GB above the process's present size and restored.
TEST(HostMemoryPlan, QueryReadsTheAddressSpaceLimit) {
  const auto before = gpede::detail::query_host_memory();
  EXPECT_GT(before.available_bytes, std::size_t{0});
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_AS, &old), 0);
  std::size_t vm_kb = 0;
  {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmSize:", 0) == 0) vm_kb = std::stoull(line.substr(7));
    }
  }
  ASSERT_GT(vm_kb, 0u);
  const rlim_t limit = static_cast<rlim_t>(vm_kb * 1024 + (std::size_t{1} << 30));
  if (old.rlim_max != RLIM_INFINITY && old.rlim_max < limit) GTEST_SKIP() << "the hard limit is below the test's";
  const rlimit lowered{limit, old.rlim_max};
  ASSERT_EQ(setrlimit(RLIMIT_AS, &lowered), 0);
  const auto memory = gpede::detail::query_host_memory();
  ASSERT_EQ(setrlimit(RLIMIT_AS, &old), 0);
  EXPECT_NE(memory.limited_by.find("ulimit -v"), std::string::npos) << memory.limited_by;
  EXPECT_LE(memory.available_bytes, std::size_t{1} << 30);
  EXPECT_GT(memory.available_bytes, std::size_t{1} << 29);
}

// MINRES's band preconditioner: its factor (and, with multipliers, K = L^-1 A^T and the factor of
// K K^T) is planned beside the sparse matrix.
TEST(HostMemoryPlan, TheBandPreconditionerIsCounted) {
  const std::int64_t n = 200000, m = 1000;
  const int w = 30;
  const auto none = gpede::detail::plan_host_memory(n, m, Method::minres, ConstraintMode::elimination, host_with(100.0), true);
  const auto band = gpede::detail::plan_host_memory(n, m, Method::minres, ConstraintMode::elimination, host_with(100.0), true,
                                                    false, w);
  EXPECT_EQ(band.factorize_bytes - none.factorize_bytes, static_cast<std::size_t>((n - m) * w * 8));
  const auto none_mult =
      gpede::detail::plan_host_memory(n, m, Method::minres, ConstraintMode::multipliers, host_with(100.0), true);
  const auto band_mult = gpede::detail::plan_host_memory(n, m, Method::minres, ConstraintMode::multipliers,
                                                         host_with(100.0), true, false, w);
  EXPECT_EQ(band_mult.factorize_bytes - none_mult.factorize_bytes,
            static_cast<std::size_t>(((n + m) * w + n * m + m * m) * 8));
  // Exact methods have no band.
  const auto exact = gpede::detail::plan_host_memory(20000, 10, Method::inversion, ConstraintMode::elimination,
                                                     host_with(100.0), false, false, w);
  const auto exact_none = gpede::detail::plan_host_memory(20000, 10, Method::inversion, ConstraintMode::elimination,
                                                          host_with(100.0));
  EXPECT_EQ(exact.factorize_bytes, exact_none.factorize_bytes);
}
