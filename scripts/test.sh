#!/usr/bin/env bash
# Installs what is missing, builds in Release and runs the whole test suite:
#   1. ctest in the Release build: unit and command-line tests, replays of the fuzz seeds and past
#      findings, the differential test against pede; GPU tests skip with a message where no CUDA
#      device is present;
#   2. the Python package: `pip install .` into a virtual environment and its pytest suite
#      (scripts/python_test.sh);
#   3. the CPU tests again under AddressSanitizer and UBSan (scripts/sanitize.sh, build-asan/);
#   4. the three fuzz targets side by side for a minute with a fixed seed (scripts/fuzz.sh, in the
#      same sanitized build).
# GPEDE_TEST_PYTHON=0 leaves out step 2, GPEDE_TEST_SANITIZERS=0 step 3, GPEDE_FUZZ_SECONDS=0 step 4
# (any other number sets the time per fuzz target). The exit status is that of the first step that
# failed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh"
echo "test: set-up and Release build took $SECONDS s"
build="${GPEDE_BUILD_DIR:-$root/build}"
start=$SECONDS
(cd "$build" && ctest --output-on-failure -j "${GPEDE_JOBS:-$(nproc)}" --timeout 900)
echo "test: Release tests took $((SECONDS - start)) s"

if [[ "${GPEDE_TEST_PYTHON:-1}" != 0 ]]; then
  start=$SECONDS
  GPEDE_BUILD_DIR="$build" "$root/scripts/python_test.sh"
  echo "test: Python package (pip install ., pytest) took $((SECONDS - start)) s"
else
  echo "test: Python package left out (GPEDE_TEST_PYTHON=0)"
fi

if [[ "${GPEDE_TEST_SANITIZERS:-1}" != 0 ]]; then
  "$root/scripts/sanitize.sh"
else
  echo "test: sanitizer suite left out (GPEDE_TEST_SANITIZERS=0)"
fi
fuzz_seconds="${GPEDE_FUZZ_SECONDS:-60}"
if [[ "$fuzz_seconds" != 0 ]]; then
  fuzz_jobs="${GPEDE_JOBS:-$(nproc)}"
  ((fuzz_jobs >= 3)) || fuzz_jobs=3
  "$root/scripts/fuzz.sh" --seconds "$fuzz_seconds" --seed 1 --jobs "$fuzz_jobs"
else
  echo "test: fuzzing left out (GPEDE_FUZZ_SECONDS=0)"
fi
echo "test: everything took $SECONDS s"
