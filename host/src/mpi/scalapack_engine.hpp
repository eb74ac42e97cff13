// The ScaLAPACK engine (scalapack_engine.cpp): matrices in 2D block-cyclic layout over all MPI
// processes (MPI_COMM_WORLD, whose ProcessGroup it sums with). MPI must be initialised; every
// process creates it, together.
#pragma once

#include <memory>

#include "gpede/detail/linalg.hpp"
#include "gpede/solver.hpp"

namespace gpede::detail::linalg {

std::unique_ptr<DistributedEngine> make_scalapack_engine(ProcessGroup& processes);

}  // namespace gpede::detail::linalg
