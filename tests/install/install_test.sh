#!/usr/bin/env bash
# Installs a build of gpede into a fresh prefix, builds tests/install/consumer (C++: only
# find_package(gpede) and gpede::gpede) and tests/install/consumer_c (C: gpede::c, the C API)
# against it and runs both on pede's sl0 reference problem, comparing with pede's millepede.res. Exit 77 (CTest: skipped) where ../shared/reference is missing.
#   install_test.sh BUILD_DIR WORK_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$(realpath "${1:?usage: install_test.sh BUILD_DIR WORK_DIR}")"
work="$(realpath -m "${2:?usage: install_test.sh BUILD_DIR WORK_DIR}")"
reference="${GPEDE_REFERENCE_DIR:-$root/../shared/reference}"
if [[ ! -f "$reference/sl0/pede/inversion/millepede.res" ]]; then
  echo "install test: $reference/sl0 not found; skipped"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work/run"
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log"
# pede's name for gpede, installed only on request.
test ! -e "$work/prefix/bin/pede"
cmake --install "$build" --prefix "$work/prefix" --component pede_command >>"$work/install.log"
"$work/prefix/bin/pede" --version | grep -q "^gpede "
# The consumer sees the installed tree only, from a prefix outside /usr and /usr/local.
cmake -S "$here/consumer" -B "$work/consumer-build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" >"$work/configure.log"
cmake --build "$work/consumer-build" -j "${GPEDE_JOBS:-2}" >"$work/build.log"
# The same through the C API, from a C program (C99, no C++ compiler asked for).
cmake -S "$here/consumer_c" -B "$work/consumer-c-build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" >"$work/configure-c.log"
cmake --build "$work/consumer-c-build" -j "${GPEDE_JOBS:-2}" >"$work/build-c.log"
test -f "$work/prefix/include/gpede/version.hpp"
test -f "$work/prefix/share/doc/gpede/LICENSE"
cd "$work/run"
ln -s "$reference/sl0/mp2con.txt" "$reference/sl0/mp2tst.bin.gz" .
cp "$reference/sl0/pede/inversion/steer.txt" steer.txt
"$work/consumer-build/consumer" steer.txt "$reference/sl0/pede/inversion/millepede.res"
"$work/consumer-c-build/c_consumer" steer.txt "$reference/sl0/pede/inversion/millepede.res"
