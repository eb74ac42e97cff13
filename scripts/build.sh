#!/usr/bin/env bash
# Configures and builds gpede in Release into ${GPEDE_BUILD_DIR:-build} (idempotent).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
build="${GPEDE_BUILD_DIR:-$root/build}"
jobs="${GPEDE_JOBS:-$(nproc)}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGPEDE_NATIVE_ARCH=ON "$@" >/dev/null
targets=()
for t in ${GPEDE_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$jobs" "${targets[@]}"
