// Time of the sum of a global matrix over MPI processes onto process 0 (MPI_Reduce in pieces of
// 2^28 doubles, as the command's ProcessGroup does), for the scaling model in bench/RESULTS.md.
//   mpirun -np 2 build/bench/mpi_reduce [n ...]   (n: matrix dimension, full storage n^2 doubles)
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<long> dims;
  for (int i = 1; i < argc; ++i) dims.push_back(std::atol(argv[i]));
  if (dims.empty()) dims = {1000, 2000, 4000, 6400};
  if (rank == 0) std::printf("%d processes\n%8s %12s %10s %10s\n", size, "n", "MB", "seconds", "GB/s");
  for (const long n : dims) {
    const std::size_t count = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
    std::vector<double> matrix(count, 1.0 + rank);
    constexpr std::size_t piece = std::size_t{1} << 28;
    double best = 1e30;
    for (int repeat = 0; repeat < 3; ++repeat) {
      MPI_Barrier(MPI_COMM_WORLD);
      const auto t0 = std::chrono::steady_clock::now();
      for (std::size_t at = 0; at < count; at += piece) {
        const int k = static_cast<int>(std::min(piece, count - at));
        if (rank == 0) {
          MPI_Reduce(MPI_IN_PLACE, matrix.data() + at, k, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        } else {
          MPI_Reduce(matrix.data() + at, nullptr, k, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        }
      }
      MPI_Barrier(MPI_COMM_WORLD);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    const double mb = static_cast<double>(count) * 8.0 / 1e6;
    if (rank == 0) std::printf("%8ld %12.1f %10.3f %10.2f\n", n, mb, best, mb / 1e3 / best);
  }
  MPI_Finalize();
  return 0;
}
