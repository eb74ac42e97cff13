# Sourced by scripts/sanitize.sh and scripts/fuzz.sh: the one sanitized build both use.
#
# Every object file carries AddressSanitizer (with LeakSanitizer), UBSan and libFuzzer's edge
# counters (-fsanitize-coverage=inline-8bit-counters,pc-table), so the same build holds the
# GoogleTest suite (scripts/sanitize.sh) and the libFuzzer programs (scripts/fuzz.sh,
# GPEDE_FUZZ=ON). The comparison hooks (trace-cmp) of -fsanitize=fuzzer-no-link would make the
# tests four times slower: GPEDE_FUZZ=ON adds them to the readers and the steering parser only
# (host/src/io), where the fuzzers need them to get past magic numbers and keywords. Line tables
# keep the reports readable. No NDEBUG, so that Eigen's own checks stay on.
#
#   sanitized_build_configure NAME   installs clang if needed, sets $sanitized_build (the folder:
#                                    ${GPEDE_ASAN_BUILD_DIR:-build-asan}) and configures it;
#                                    NAME prefixes the messages.

sanitized_find_clang() {
  local cxx
  for cxx in clang++ $(compgen -c clang++- | sort -t- -k2 -n -r | uniq); do
    if command -v "$cxx" >/dev/null 2>&1; then
      echo "$cxx"
      return 0
    fi
  done
  return 1
}

# Whether $1 links a libFuzzer program with the sanitizers (the runtimes are all there).
sanitized_links_fuzzer() {
  local dir rc
  dir="$(mktemp -d)"
  echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' >"$dir/t.cpp"
  "$1" -fsanitize=fuzzer,address,undefined "$dir/t.cpp" -o "$dir/t" >/dev/null 2>&1
  rc=$?
  rm -rf "$dir"
  return $rc
}

sanitized_build_configure() {
  local name="$1" root cxx cc flags
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  "$root/scripts/setup.sh"
  cxx="$(sanitized_find_clang || true)"
  if [[ -z "$cxx" ]] || ! sanitized_links_fuzzer "$cxx"; then
    local packages=(clang) sudo=""
    # Debian 12 and later ship the sanitizer and libFuzzer runtimes in libclang-rt-dev.
    apt-cache show libclang-rt-dev >/dev/null 2>&1 && packages+=(libclang-rt-dev)
    echo "$name: installing ${packages[*]}"
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
    cxx="$(sanitized_find_clang)"
    sanitized_links_fuzzer "$cxx" ||
      { echo "$name: $cxx cannot link -fsanitize=fuzzer,address,undefined programs" >&2; return 1; }
  fi
  cc="${cxx/clang++/clang}"
  sanitized_build="$(realpath -m "${GPEDE_ASAN_BUILD_DIR:-$root/build-asan}")"
  flags="-fsanitize=address,undefined -fsanitize-coverage=inline-8bit-counters,pc-table -fno-omit-frame-pointer"
  flags+=" -fno-sanitize-recover=undefined"
  cmake -S "$root" -B "$sanitized_build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -gline-tables-only" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -gline-tables-only" \
    -DGPEDE_TESTS=ON -DGPEDE_FUZZ=ON -DGPEDE_BENCHMARKS=OFF -DGPEDE_CUDA=OFF \
    -DGPEDE_NATIVE_ARCH=OFF -DGPEDE_MPI=OFF >/dev/null
}
