#!/usr/bin/env bash
# Builds gpede and its GoogleTest suite with clang, AddressSanitizer (with LeakSanitizer) and UBSan
# into ${GPEDE_ASAN_BUILD_DIR:-build-asan} and runs the CPU tests there (ctest -LE "gpu|differential").
# Any sanitizer report stops the process that made it and fails its test. Idempotent: installs and
# rebuilds only what is missing.
#
#   scripts/sanitize.sh [--quick] [--jobs J]
#
# --quick   leaves out the slowest tests (whole simulated solves, see quick_exclude below)
# --jobs J  build jobs and tests run at a time (default: ${GPEDE_JOBS:-number of cores})
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The tests that take longest under the sanitizers (10 to 30 s each, two thirds of the suite's
# test time): the solves of the simulated detector and pede's wirechamber reference problem. The
# rest of the suite covers the same code on smaller problems.
quick_exclude='^SimulateSolve\.|SimulateNullSpace\.|ReferenceProblem\.AgreesWithPede/wirechamber_'

quick=0
jobs="${GPEDE_JOBS:-$(nproc)}"
while (($#)); do
  case "$1" in
    --quick) quick=1; shift ;;
    --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
    --jobs=*) jobs="${1#*=}"; shift ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "sanitize: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$jobs" =~ ^[0-9]+$ && "$jobs" -gt 0 ]] || { echo "sanitize: --jobs needs a positive number" >&2; exit 2; }

# ---- tools: the project's packages and clang ---------------------------------------------------
"$root/scripts/setup.sh"
find_clang() {
  local cxx
  for cxx in clang++ $(compgen -c clang++- | sort -t- -k2 -n -r | uniq); do
    if command -v "$cxx" >/dev/null 2>&1; then
      echo "$cxx"
      return 0
    fi
  done
  return 1
}
links_sanitizers() {  # whether $1 can build a program with the sanitizers
  local dir
  dir="$(mktemp -d)"
  echo 'int main() { return 0; }' >"$dir/t.cpp"
  "$1" -fsanitize=address,undefined "$dir/t.cpp" -o "$dir/t" >/dev/null 2>&1
  local rc=$?
  rm -rf "$dir"
  return $rc
}
cxx="$(find_clang || true)"
if [[ -z "$cxx" ]] || ! links_sanitizers "$cxx"; then
  packages=(clang)
  # Debian 12 and later ship the sanitizer runtimes in libclang-rt-dev.
  apt-cache show libclang-rt-dev >/dev/null 2>&1 && packages+=(libclang-rt-dev)
  echo "sanitize: installing ${packages[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
  cxx="$(find_clang)"
  links_sanitizers "$cxx" || { echo "sanitize: $cxx cannot link -fsanitize=address,undefined programs" >&2; exit 1; }
fi
cc="${cxx/clang++/clang}"

# ---- build -------------------------------------------------------------------------------------
build="$(realpath -m "${GPEDE_ASAN_BUILD_DIR:-$root/build-asan}")"
# No NDEBUG, so that Eigen's own checks stay on. GoogleTest from the Debian packages is built with
# g++ against libstdc++, which clang uses too.
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
start=$SECONDS
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g" \
  -DGPEDE_TESTS=ON -DGPEDE_BENCHMARKS=OFF -DGPEDE_CUDA=OFF -DGPEDE_NATIVE_ARCH=OFF >/dev/null
# Keeps going past a file that does not compile, so that the rest of the suite still runs; its
# tests then fail as <test>_NOT_BUILT and the build failure is reported at the end.
keep_going=(-k)
grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja' "$build/CMakeCache.txt" && keep_going=(-k 0)
build_status=0
cmake --build "$build" -j "$jobs" -- "${keep_going[@]}" || build_status=$?
built=$SECONDS
echo "sanitize: built in $((built - start)) s$( ((build_status)) && echo ", with errors (see above)")"

# ---- test --------------------------------------------------------------------------------------
ctest_args=(--output-on-failure -j "$jobs" --timeout 900 -LE "gpu|differential|install")
((quick)) && ctest_args+=(-E "$quick_exclude")
status=0
(cd "$build" && ctest "${ctest_args[@]}") || status=$?
echo "sanitize: tests ran in $((SECONDS - built)) s$( ((quick)) && echo " (--quick)")"
if ((build_status)); then
  echo "sanitize: the build failed (the output above names the files)" >&2
  status=1
fi
exit $status
