// The ScaLAPACK engine (scalapack_engine.cpp): matrices in 2D block-cyclic layout over all MPI
// processes. MPI must be initialised; every process creates it, together.
#pragma once

#include <memory>

#include "gpede/detail/linalg.hpp"

namespace gpede::detail::linalg {

std::unique_ptr<DistributedEngine> make_scalapack_engine();

}  // namespace gpede::detail::linalg
