#!/usr/bin/env bash
# The Python package as a user gets it: `pip install .` into a virtual environment
# (${GPEDE_BUILD_DIR:-build}/python-venv), then its tests (python/tests, pytest) against the
# installed package, from outside the source tree. Idempotent: the environment and pip's CMake
# build folder (build/python/) are kept, so a second run rebuilds only what changed.
#
# The wheel is built without the CUDA plugin here (GPEDE_PYTHON_CUDA=ON builds it where nvcc is
# found, as a plain `pip install .` does); the CMake install test covers the plugin.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
build="$(realpath -m "${GPEDE_BUILD_DIR:-$root/build}")"
venv="$build/python-venv"
python="${GPEDE_PYTHON_INTERPRETER:-python3}"
if [[ ! -x "$venv/bin/python" ]]; then
  if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 keeps venv (ensurepip) in a package of its own.
    echo "python test: installing python3-venv"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    "$python" -m venv "$venv"
  fi
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/python" -m pip install -q numpy pytest
cuda="${GPEDE_PYTHON_CUDA:-OFF}"
"$venv/bin/python" -m pip install -q "$root" -C cmake.define.GPEDE_CUDA="$cuda" \
  -C build-dir="$build/python/{wheel_tag}"
cd "$(mktemp -d)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/python/tests"
