// A fixed pool of worker threads that run one job at a time on every thread (the caller is thread
// 0), and the number of threads a run may use.
#pragma once

#include <filesystem>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace gpede::detail {

/// The CPUs this process may run on: its affinity mask, bounded by its cgroup's CPU quota; at
/// least 1.
int usable_cpus();

/// The CPUs a cgroup's quota allows under the cgroup file system mounted at `root` (v2 cpu.max,
/// else v1 cpu/cpu.cfs_quota_us over cpu.cfs_period_us), rounded up; 0 where there is no quota.
int cgroup_cpu_limit(const std::filesystem::path& root);

/// Bounds the threads of the BLAS library the process runs with (OpenBLAS) to `threads`; false
/// where that library offers no such call.
bool bound_blas_threads(int threads);

/// The thread count for a request: `requested` (0 or less: every usable CPU), capped at
/// usable_cpus(), since more threads than CPUs only share them. `note` receives a warning text
/// when the request was capped, else it is cleared.
int capped_threads(int requested, std::string& note);

/// Runs a job on n threads: the caller is thread 0, n - 1 workers wait for jobs. If the system
/// refuses a thread (process or memory limits), the pool keeps the threads it has: size() then
/// tells how many there are. Destruction stops and joins every worker.
class WorkerPool {
 public:
  /// `spawn` starts one worker thread running the function it is given; by default a std::thread.
  /// It may throw std::system_error (as std::thread does when the system refuses a thread).
  using Spawn = std::function<std::thread(std::function<void()>)>;

  explicit WorkerPool(int n, const Spawn& spawn = {}) {
    m_threads.reserve(static_cast<std::size_t>(n > 1 ? n - 1 : 0));
    for (int t = 1; t < n; ++t) {
      try {
        std::function<void()> body = [this, t] { loop(t); };
        m_threads.push_back(spawn ? spawn(std::move(body)) : std::thread(std::move(body)));
      } catch (const std::system_error&) {
        m_refused = true;
        break;
      }
    }
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      m_stop = true;
    }
    m_start.notify_all();
    for (auto& thread : m_threads) {
      if (thread.joinable()) thread.join();
    }
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Threads that run a job, the caller included.
  int size() const { return static_cast<int>(m_threads.size()) + 1; }
  /// True if the system refused to start a thread asked for.
  bool refused() const { return m_refused; }

  /// job(t) for every t in [0, size()); returns when all are done. job must not throw.
  void run(const std::function<void(int)>& job) {
    if (m_threads.empty()) {
      job(0);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      m_job = &job;
      m_pending = static_cast<int>(m_threads.size());
      ++m_generation;
    }
    m_start.notify_all();
    job(0);
    std::unique_lock<std::mutex> lock(m_mutex);
    m_done.wait(lock, [this] { return m_pending == 0; });
    m_job = nullptr;
  }

 private:
  void loop(int t) {
    std::uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* job = nullptr;
      {
        std::unique_lock<std::mutex> lock(m_mutex);
        m_start.wait(lock, [&] { return m_stop || m_generation != seen; });
        if (m_stop) return;
        seen = m_generation;
        job = m_job;
      }
      (*job)(t);
      {
        std::lock_guard<std::mutex> lock(m_mutex);
        --m_pending;
      }
      m_done.notify_one();
    }
  }

  std::vector<std::thread> m_threads;
  std::mutex m_mutex;
  std::condition_variable m_start;
  std::condition_variable m_done;
  const std::function<void(int)>* m_job = nullptr;
  std::uint64_t m_generation = 0;
  int m_pending = 0;
  bool m_stop = false;
  bool m_refused = false;
};

}  // namespace gpede::detail
