// An exception as bytes for the other processes of a run (byte_pack.hpp).
#include "gpede/detail/byte_pack.hpp"

#include <new>

namespace gpede::detail {
namespace {
enum class Kind : std::uint8_t { none = 0, input = 1, interrupted = 2, memory = 3, other = 4 };
}

void pack_exception(Packer& p, const std::exception_ptr& failure) {
  Kind kind = Kind::none;
  int code = 0;
  std::string what;
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const InputError& e) {
      kind = Kind::input, code = e.exit_code(), what = e.what();
    } catch (const Interrupted& e) {
      kind = Kind::interrupted, what = e.what();
    } catch (const std::bad_alloc&) {
      kind = Kind::memory;
    } catch (const std::exception& e) {
      kind = Kind::other, what = e.what();
    } catch (...) {
      kind = Kind::other, what = "an unknown exception";
    }
  }
  p.put(kind);
  p.put(code);
  p.put(what);
}

void rethrow_packed(Unpacker& u, const std::string& prefix) {
  const auto kind = u.get<Kind>();
  const int code = u.get<int>();
  const std::string what = prefix + u.get_string();
  switch (kind) {
    case Kind::none: return;
    case Kind::input: throw InputError(what, code);
    case Kind::interrupted: throw Interrupted(what);
    case Kind::memory: throw std::bad_alloc();
    case Kind::other: break;
  }
  throw RuntimeError(what);
}

}  // namespace gpede::detail
