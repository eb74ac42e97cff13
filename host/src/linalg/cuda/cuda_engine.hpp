// The CUDA engine of the linear-algebra layer: device memory, cuSOLVER (64-bit API where it exists)
// and cuBLAS on one stream. Private to the CUDA backend.
#pragma once

#include <cstdint>
#include <memory>

#include "cuda_resources.hpp"
#include "gpede/detail/linalg.hpp"

namespace gpede::detail::cuda {

/// An engine whose work is enqueued on `stream` (which must outlive it). Operations that return
/// host values synchronise the stream.
std::unique_ptr<linalg::Engine> make_cuda_engine(cudaStream_t stream);

/// A matrix of the CUDA engine that takes over the device buffer (rows x cols, column-major).
linalg::Matrix adopt_device_matrix(DeviceBuffer<double>&& buffer, std::int64_t rows, std::int64_t cols);

}  // namespace gpede::detail::cuda
