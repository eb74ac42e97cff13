// gpede::ProcessGroup over MPI_COMM_WORLD; without MPI (GPEDE_WITH_MPI unset) only the launcher
// detection, so that a build without MPI refuses mpirun instead of running N copies of the job.
#include "mpi_processes.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "gpede/error.hpp"

#ifdef GPEDE_WITH_MPI
#include <mpi.h>

#include "scalapack_engine.hpp"
#endif

namespace gpede::cli {
namespace {

int environment_number(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return -1;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  return end != text && value >= 0 && value < INT_MAX ? static_cast<int>(value) : -1;
}

#ifdef GPEDE_WITH_MPI
bool g_started = false;
// A second communicator for the meeting after a failure, apart from the run's sums (a process
// still inside a sum on MPI_COMM_WORLD must not be matched with it).
MPI_Comm g_end_comm = MPI_COMM_NULL;

void check(int status, const char* what) {
  if (status != MPI_SUCCESS) throw RuntimeError(std::string("MPI: ") + what + " failed");
}

// MPI counts are ints: larger arrays go in pieces.
constexpr std::size_t k_piece = std::size_t{1} << 28;

class MpiProcesses final : public ProcessGroup {
 public:
  MpiProcesses() {
    check(MPI_Comm_rank(MPI_COMM_WORLD, &m_rank), "MPI_Comm_rank");
    check(MPI_Comm_size(MPI_COMM_WORLD, &m_size), "MPI_Comm_size");
    // The processes that share this machine's memory.
    MPI_Comm machine = MPI_COMM_NULL;
    check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, m_rank, MPI_INFO_NULL, &machine),
          "MPI_Comm_split_type");
    check(MPI_Comm_size(machine, &m_on_machine), "MPI_Comm_size");
    MPI_Comm_free(&machine);
  }
  int rank() const override { return m_rank; }
  int size() const override { return m_size; }
  int processes_on_this_machine() const override { return m_on_machine; }

  // Onto process 0, then from it: every process holds the very same bits, so that all take the
  // same decisions whatever order the reduction adds in.
  void sum(double* data, std::size_t count) override {
    sum_to_first(data, count);
    send_from_first(data, count, MPI_DOUBLE);
  }
  void sum(std::int64_t* data, std::size_t count) override {
    for (std::size_t at = 0; at < count; at += k_piece) {
      const int n = static_cast<int>(std::min(k_piece, count - at));
      check(MPI_Allreduce(MPI_IN_PLACE, data + at, n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
    }
  }
  void bitwise_or(std::uint64_t* data, std::size_t count) override {
    for (std::size_t at = 0; at < count; at += k_piece) {
      const int n = static_cast<int>(std::min(k_piece, count - at));
      check(MPI_Allreduce(MPI_IN_PLACE, data + at, n, MPI_UINT64_T, MPI_BOR, MPI_COMM_WORLD), "MPI_Allreduce");
    }
  }
  void sum_to_first(double* data, std::size_t count) override {
    for (std::size_t at = 0; at < count; at += k_piece) {
      const int n = static_cast<int>(std::min(k_piece, count - at));
      if (m_rank == 0) {
        check(MPI_Reduce(MPI_IN_PLACE, data + at, n, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD), "MPI_Reduce");
      } else {
        check(MPI_Reduce(data + at, nullptr, n, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD), "MPI_Reduce");
      }
    }
  }
  void broadcast(std::vector<char>& bytes) override {
    std::uint64_t size = bytes.size();
    check(MPI_Bcast(&size, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD), "MPI_Bcast");
    bytes.resize(size);
    send_from_first(bytes.data(), bytes.size(), MPI_CHAR);
  }
  std::shared_ptr<detail::linalg::DistributedEngine> distributed_engine() override {
    return detail::linalg::make_scalapack_engine(*this);
  }
  std::vector<std::vector<char>> gather(const std::vector<char>& bytes) override {
    std::vector<std::uint64_t> sizes(static_cast<std::size_t>(m_size));
    std::uint64_t mine = bytes.size();
    check(MPI_Allgather(&mine, 1, MPI_UINT64_T, sizes.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD), "MPI_Allgather");
    std::vector<std::vector<char>> all(static_cast<std::size_t>(m_size));
    for (int r = 0; r < m_size; ++r) {
      auto& part = all[static_cast<std::size_t>(r)];
      part = r == m_rank ? bytes : std::vector<char>(sizes[static_cast<std::size_t>(r)]);
      // one broadcast per process: simple, and the tables gathered are small
      for (std::size_t at = 0; at < part.size(); at += k_piece) {
        const int n = static_cast<int>(std::min(k_piece, part.size() - at));
        check(MPI_Bcast(part.data() + at, n, MPI_CHAR, r, MPI_COMM_WORLD), "MPI_Bcast");
      }
    }
    return all;
  }

 private:
  template <class T>
  void send_from_first(T* data, std::size_t count, MPI_Datatype type) {
    for (std::size_t at = 0; at < count; at += k_piece) {
      const int n = static_cast<int>(std::min(k_piece, count - at));
      check(MPI_Bcast(data + at, n, type, 0, MPI_COMM_WORLD), "MPI_Bcast");
    }
  }
  int m_rank = 0;
  int m_size = 1;
  int m_on_machine = 1;
};
#endif

}  // namespace

bool launched_by_mpi(int* world_size) {
  int size = -1;
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"}) {
    size = std::max(size, environment_number(name));
  }
  if (size < 0 && std::getenv("PMIX_RANK") != nullptr) size = 1;
  if (world_size != nullptr) *world_size = size;
  return size >= 1;
}

int local_processes() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMI_LOCAL_SIZE"}) {
    const int n = environment_number(name);
    if (n >= 1) return n;
  }
  return 1;
}

bool built_with_mpi() noexcept {
#ifdef GPEDE_WITH_MPI
  return true;
#else
  return false;
#endif
}

#ifdef GPEDE_WITH_MPI
std::unique_ptr<ProcessGroup> mpi_world() { return std::make_unique<MpiProcesses>(); }
#endif

std::unique_ptr<ProcessGroup> start_mpi(int& argc, char**& argv) {
#ifdef GPEDE_WITH_MPI
  check(MPI_Init(&argc, &argv), "MPI_Init");
  g_started = true;
  check(MPI_Comm_dup(MPI_COMM_WORLD, &g_end_comm), "MPI_Comm_dup");
  return mpi_world();
#else
  (void)argc;
  (void)argv;
  throw RuntimeError("this gpede was built without MPI (no MPI library found when it was configured)");
#endif
}

bool all_failed_together(double seconds) {
#ifdef GPEDE_WITH_MPI
  if (!g_started) return true;
  MPI_Request request = MPI_REQUEST_NULL;
  if (MPI_Ibarrier(g_end_comm, &request) != MPI_SUCCESS) return false;
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    int done = 0;
    if (MPI_Test(&request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return false;
    if (done) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
#else
  (void)seconds;
  return true;
#endif
}

void abort_mpi(int code) {
#ifdef GPEDE_WITH_MPI
  if (g_started) MPI_Abort(MPI_COMM_WORLD, code);
#else
  (void)code;
#endif
}

void finish_mpi() {
#ifdef GPEDE_WITH_MPI
  if (g_end_comm != MPI_COMM_NULL) MPI_Comm_free(&g_end_comm);
  if (g_started) MPI_Finalize();
  g_started = false;
#endif
}

}  // namespace gpede::cli
