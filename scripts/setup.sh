#!/usr/bin/env bash
# Installs the Debian packages gpede needs (idempotent: installs only what is missing).
set -euo pipefail
packages=(build-essential cmake zlib1g-dev libopenblas-dev liblapack-dev libeigen3-dev
          libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev python3
          libopenmpi-dev openmpi-bin libscalapack-openmpi-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
