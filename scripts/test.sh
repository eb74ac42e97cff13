#!/usr/bin/env bash
# Installs what is missing, builds in Release and runs the whole test suite (ctest).
# GPU tests skip with a message where no CUDA device is present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh"
build="${GPEDE_BUILD_DIR:-$root/build}"
cd "$build"
ctest --output-on-failure -j "${GPEDE_JOBS:-$(nproc)}" --timeout 900
