// Bytes for the processes of one run (ProcessGroup's broadcast and gather): plain values, strings
// and vectors packed in order and read back in the same order; and an exception as bytes, so that
// a process can throw the error another one met.
#pragma once

#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <type_traits>
#include <vector>

#include "gpede/error.hpp"

namespace gpede::detail {

/// Bytes out: plain values, strings and vectors of plain values (a 64-bit count, then the values).
class Packer {
 public:
  template <class T>
  void put(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    append(&value, sizeof(T));
  }
  void put(const std::string& text) { put_range(text.data(), text.size()); }
  template <class T>
  void put(const std::vector<T>& values) {
    put_range(values.data(), values.size());
  }
  std::vector<char>& bytes() { return m_bytes; }

 private:
  void append(const void* data, std::size_t n) {
    const std::size_t at = m_bytes.size();
    m_bytes.resize(at + n);
    if (n > 0) std::memcpy(m_bytes.data() + at, data, n);
  }
  template <class T>
  void put_range(const T* data, std::size_t count) {
    put(static_cast<std::uint64_t>(count));
    append(data, count * sizeof(T));
  }
  std::vector<char> m_bytes;
};

/// Bytes in, in the order they were packed; RuntimeError where the bytes end early.
class Unpacker {
 public:
  explicit Unpacker(const std::vector<char>& bytes) : m_bytes(bytes) {}
  template <class T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    T value{};
    take(&value, sizeof(T));
    return value;
  }
  std::string get_string() {
    std::string text(count(1), '\0');
    take(text.data(), text.size());
    return text;
  }
  template <class T>
  std::vector<T> get_vector() {
    std::vector<T> values(count(sizeof(T)));
    take(values.data(), values.size() * sizeof(T));
    return values;
  }
  /// Appends a packed vector to `values`.
  template <class T>
  void append_vector(std::vector<T>& values) {
    const std::size_t n = count(sizeof(T)), before = values.size();
    values.resize(before + n);
    take(values.data() + before, n * sizeof(T));
  }
  bool done() const { return m_at == m_bytes.size(); }

 private:
  std::size_t count(std::size_t element) {
    const auto n = get<std::uint64_t>();
    if (n > (m_bytes.size() - m_at) / element) throw RuntimeError("packed bytes: short message");
    return static_cast<std::size_t>(n);
  }
  void take(void* to, std::size_t n) {
    if (n > m_bytes.size() - m_at) throw RuntimeError("packed bytes: short message");
    if (n > 0) std::memcpy(to, m_bytes.data() + m_at, n);
    m_at += n;
  }
  const std::vector<char>& m_bytes;
  std::size_t m_at = 0;
};

/// `failure` (null: none) as its kind, exit code and message: InputError, Interrupted,
/// std::bad_alloc, anything else as RuntimeError.
void pack_exception(Packer& p, const std::exception_ptr& failure);
/// Throws what pack_exception packed, with `prefix` before its message; returns where it packed
/// none.
void rethrow_packed(Unpacker& u, const std::string& prefix = {});

}  // namespace gpede::detail
