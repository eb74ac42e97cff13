// Stand-in for the CUDA backend where gpede is built without CUDA (-DGPEDE_CUDA=OFF or no nvcc):
// the link line never changes, and asking for the backend gives a clear error.
#include "gpede/detail/backend.hpp"
#include "gpede/error.hpp"

namespace gpede::detail {

std::unique_ptr<Backend> make_cuda_backend() {
  throw RuntimeError("the CUDA backend is not available: gpede was built without CUDA "
                     "(rebuild with nvcc on PATH and -DGPEDE_CUDA=ON, or use --backend cpu)");
}

}  // namespace gpede::detail
