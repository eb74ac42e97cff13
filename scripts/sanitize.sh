#!/usr/bin/env bash
# Builds gpede, its GoogleTest suite and the fuzz targets with clang, AddressSanitizer (with
# LeakSanitizer) and UBSan into ${GPEDE_ASAN_BUILD_DIR:-build-asan} (scripts/lib/sanitized_build.sh;
# scripts/fuzz.sh uses the same build) and runs the CPU tests there (ctest -LE "gpu|differential").
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

# ---- tools and build ---------------------------------------------------------------------------
# shellcheck source=lib/sanitized_build.sh
source "$root/scripts/lib/sanitized_build.sh"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
start=$SECONDS
sanitized_build_configure sanitize
build="$sanitized_build"
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
