// GPEDE_HOST_DEVICE marks the per-record math that the CPU backend calls in a plain loop and the
// CUDA kernels call per thread/warp: __host__ __device__ under nvcc, nothing elsewhere.
#pragma once

#if defined(__CUDACC__)
#define GPEDE_HOST_DEVICE __host__ __device__
#define GPEDE_INLINE __forceinline__
#else
#define GPEDE_HOST_DEVICE
#define GPEDE_INLINE inline
#endif
