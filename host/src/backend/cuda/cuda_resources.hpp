// Move-only owners of CUDA resources: device buffers, pinned host buffers, streams, events, cuBLAS
// and cuSOLVER handles, cusolverDnParams. Destructors never throw (a failing release is ignored:
// there is nothing left to do with it). Private to the CUDA backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "cuda_check.hpp"

namespace gpede::detail::cuda {

/// Owner of a handle released by Release{}(handle); empty when the handle is null.
template <class Handle, class Release>
class UniqueHandle {
 public:
  UniqueHandle() = default;
  explicit UniqueHandle(Handle handle) noexcept : m_handle(handle) {}
  ~UniqueHandle() { reset(); }
  UniqueHandle(UniqueHandle&& other) noexcept : m_handle(std::exchange(other.m_handle, Handle{})) {}
  UniqueHandle& operator=(UniqueHandle&& other) noexcept {
    if (this != &other) {
      reset();
      m_handle = std::exchange(other.m_handle, Handle{});
    }
    return *this;
  }
  UniqueHandle(const UniqueHandle&) = delete;
  UniqueHandle& operator=(const UniqueHandle&) = delete;

  Handle get() const noexcept { return m_handle; }
  explicit operator bool() const noexcept { return m_handle != Handle{}; }
  void reset() noexcept {
    if (m_handle != Handle{}) Release{}(m_handle);
    m_handle = Handle{};
  }

 private:
  Handle m_handle{};
};

struct StreamRelease {
  void operator()(cudaStream_t s) const noexcept { (void)cudaStreamDestroy(s); }
};
struct EventRelease {
  void operator()(cudaEvent_t e) const noexcept { (void)cudaEventDestroy(e); }
};
struct CublasRelease {
  void operator()(cublasHandle_t h) const noexcept { (void)cublasDestroy(h); }
};
struct CusolverRelease {
  void operator()(cusolverDnHandle_t h) const noexcept { (void)cusolverDnDestroy(h); }
};
struct CusolverParamsRelease {
  void operator()(cusolverDnParams_t p) const noexcept { (void)cusolverDnDestroyParams(p); }
};

using Stream = UniqueHandle<cudaStream_t, StreamRelease>;
using Event = UniqueHandle<cudaEvent_t, EventRelease>;
using CublasHandle = UniqueHandle<cublasHandle_t, CublasRelease>;
using CusolverHandle = UniqueHandle<cusolverDnHandle_t, CusolverRelease>;
using CusolverParams = UniqueHandle<cusolverDnParams_t, CusolverParamsRelease>;

/// A stream that does not synchronise with the legacy default stream.
inline Stream make_stream() {
  cudaStream_t s = nullptr;
  GPEDE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return Stream(s);
}

inline Event make_event(bool timing = false) {
  cudaEvent_t e = nullptr;
  GPEDE_CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  return Event(e);
}

inline CublasHandle make_cublas(cudaStream_t stream) {
  cublasHandle_t h = nullptr;
  GPEDE_CUBLAS_CHECK(cublasCreate(&h));
  CublasHandle owner(h);
  GPEDE_CUBLAS_CHECK(cublasSetStream(h, stream));
  return owner;
}

inline CusolverHandle make_cusolver(cudaStream_t stream) {
  cusolverDnHandle_t h = nullptr;
  GPEDE_CUSOLVER_CHECK(cusolverDnCreate(&h));
  CusolverHandle owner(h);
  GPEDE_CUSOLVER_CHECK(cusolverDnSetStream(h, stream));
  return owner;
}

inline CusolverParams make_cusolver_params() {
  cusolverDnParams_t p = nullptr;
  GPEDE_CUSOLVER_CHECK(cusolverDnCreateParams(&p));
  return CusolverParams(p);
}

/// Device memory for `size` elements of T (uninitialised).
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t size) { allocate(size); }
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : m_data(std::exchange(other.m_data, nullptr)), m_size(std::exchange(other.m_size, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      reset();
      m_data = std::exchange(other.m_data, nullptr);
      m_size = std::exchange(other.m_size, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  /// Replaces the contents by a fresh allocation of `size` elements.
  void allocate(std::size_t size) {
    reset();
    if (size == 0) return;
    void* p = nullptr;
    GPEDE_CUDA_CHECK(cudaMalloc(&p, size * sizeof(T)));
    m_data = static_cast<T*>(p);
    m_size = size;
  }
  /// Makes room for at least `size` elements; the contents are lost when it grows.
  void reserve(std::size_t size) {
    if (size > m_size) allocate(size);
  }
  void reset() noexcept {
    if (m_data != nullptr) (void)cudaFree(m_data);
    m_data = nullptr;
    m_size = 0;
  }

  T* data() const noexcept { return m_data; }
  std::size_t size() const noexcept { return m_size; }
  std::size_t bytes() const noexcept { return m_size * sizeof(T); }
  bool empty() const noexcept { return m_size == 0; }

 private:
  T* m_data = nullptr;
  std::size_t m_size = 0;
};

/// Page-locked host memory for `size` elements of T (for asynchronous copies).
template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(std::size_t size) { allocate(size); }
  ~PinnedBuffer() { reset(); }
  PinnedBuffer(PinnedBuffer&& other) noexcept
      : m_data(std::exchange(other.m_data, nullptr)), m_size(std::exchange(other.m_size, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept {
    if (this != &other) {
      reset();
      m_data = std::exchange(other.m_data, nullptr);
      m_size = std::exchange(other.m_size, 0);
    }
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void allocate(std::size_t size) {
    reset();
    if (size == 0) return;
    void* p = nullptr;
    GPEDE_CUDA_CHECK(cudaMallocHost(&p, size * sizeof(T)));
    m_data = static_cast<T*>(p);
    m_size = size;
  }
  void reserve(std::size_t size) {
    if (size > m_size) allocate(size);
  }
  void reset() noexcept {
    if (m_data != nullptr) (void)cudaFreeHost(m_data);
    m_data = nullptr;
    m_size = 0;
  }

  T* data() const noexcept { return m_data; }
  std::size_t size() const noexcept { return m_size; }
  T& operator[](std::size_t i) const noexcept { return m_data[i]; }

 private:
  T* m_data = nullptr;
  std::size_t m_size = 0;
};

}  // namespace gpede::detail::cuda
