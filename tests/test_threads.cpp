// The thread bounds of a run: a cgroup's CPU quota (v2 and v1 files, read from a folder laid out as
// /sys/fs/cgroup), and LAPACK's own threads (OpenBLAS) held to the run's thread count.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <fstream>

#include "gpede/detail/worker_pool.hpp"
#include "gpede/record_builder.hpp"
#include "gpede/solver.hpp"
#include "gpede/steering.hpp"
#include "test_support.hpp"

namespace {

using gpede::detail::cgroup_cpu_limit;
using gpede::test::TempDir;

void write(const std::filesystem::path& file, const std::string& text) {
  std::filesystem::create_directories(file.parent_path());
  std::ofstream(file) << text;
}

TEST(Threads, CgroupQuotaV2) {
  TempDir dir("cgroup-v2");
  EXPECT_EQ(cgroup_cpu_limit(dir.path()), 0);  // no files: no quota
  write(dir.path() / "cpu.max", "max 100000\n");
  EXPECT_EQ(cgroup_cpu_limit(dir.path()), 0);
  write(dir.path() / "cpu.max", "150000 100000\n");
  EXPECT_EQ(cgroup_cpu_limit(dir.path()), 2);  // 1.5 CPUs: two threads share them
  write(dir.path() / "cpu.max", "400000 100000\n");
  EXPECT_EQ(cgroup_cpu_limit(dir.path()), 4);
  write(dir.path() / "cpu.max", "garbage 100000\n");
  EXPECT_EQ(cgroup_cpu_limit(dir.path()), 0);
}

TEST(Threads, CgroupQuotaV1) {
  TempDir dir("cgroup-v1");
  write(dir.path() / "cpu" / "cpu.cfs_quota_us", "-1\n");
  write(dir.path() / "cpu" / "cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(cgroup_cpu_limit(dir.path()), 0);
  write(dir.path() / "cpu" / "cpu.cfs_quota_us", "50000\n");
  EXPECT_EQ(cgroup_cpu_limit(dir.path()), 1);
  write(dir.path() / "cpu" / "cpu.cfs_quota_us", "300000\n");
  EXPECT_EQ(cgroup_cpu_limit(dir.path()), 3);
}

TEST(Threads, LapackThreadsFollowTheRun) {
  using GetThreads = int (*)();
  auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (get == nullptr) GTEST_SKIP() << "the BLAS library here is not OpenBLAS";
  TempDir dir("blas-threads");
  std::ofstream(dir.path() / "steer.txt") << "Parameter\n1 0.0 -1.0\nmethod inversion 1 0.1\nend\n";
  gpede::RecordBuilder records;
  const double one[] = {1.0};
  for (int r = 0; r < 30; ++r) {
    for (std::int32_t plane = 1; plane <= 2; ++plane) {
      const std::int32_t label[] = {plane};
      records.add_measurement(one, one, label, 0.01 * r + 0.1 * plane, 1.0);
    }
    records.end_record();
  }
  auto source = records.source();
  gpede::SolverOptions options;
  options.threads = 1;
  const auto result = gpede::solve(gpede::parse_steering(dir.path() / "steer.txt"), options, source.get());
  ASSERT_LT(result.exit_code, 10) << result.message;
  EXPECT_EQ(get(), 1);
}

}  // namespace
