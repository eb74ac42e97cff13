// The processes of a run started by an MPI launcher (mpirun -np N gpede steer.txt): MPI is
// initialised only when such a launcher started the program, so that gpede run alone is one
// process with no MPI at all.
#pragma once

#include <memory>

#include "gpede/solver.hpp"

namespace gpede::cli {

/// True if an MPI launcher started this process (its environment says so), with how many processes.
bool launched_by_mpi(int* world_size = nullptr);
/// The processes on this node (for the default thread count), 1 if not known.
int local_processes();
/// True if this program was built with MPI.
bool built_with_mpi() noexcept;

/// The group of all processes (MPI_COMM_WORLD) of an MPI already initialised; built with MPI only.
std::unique_ptr<ProcessGroup> mpi_world();
/// Initialises MPI and returns the group of all processes (MPI_COMM_WORLD). Throws RuntimeError if
/// the program was built without MPI.
std::unique_ptr<ProcessGroup> start_mpi(int& argc, char**& argv);
/// After a failure: true if every process failed too within `seconds` (the library hands every
/// process a failure of one of them at the end of a pass or step), so that all can end normally;
/// false if some process is still working or waiting (then abort_mpi).
bool all_failed_together(double seconds);
/// Ends every process of the run with `code` (MPI_Abort); returns only without MPI.
void abort_mpi(int code);
/// MPI_Finalize where MPI was started.
void finish_mpi();

}  // namespace gpede::cli
