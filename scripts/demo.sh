#!/usr/bin/env bash
# The simulate-then-align cycle: installs what is missing, builds gpede in Release, simulates a
# misaligned Belle II-like tracker (preset `small`), aligns it with gpede from the steering file the
# simulation wrote, and compares the recovered misalignment with the truth (pulls, chi2/ndf).
# Plots go to the output folder as PNG files.
#
# usage: scripts/demo.sh [OUTPUT_DIR] [extra `gpede simulate` options]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/out/demo}"
shift || true
GPEDE_TARGETS=gpede "$root/scripts/build.sh"
gpede="${GPEDE_BUILD_DIR:-$root/build}/host/gpede"

echo "== 1. simulate: $out"
rm -rf "$out"
"$gpede" simulate --preset small --seed 1 -o "$out" "$@"

echo "== 2. align: gpede $out/steer.txt"
(cd "$out" && "$gpede" -q --covariance 11-16,21-26,31-36,41-46 steer.txt)

echo "== 3. recovered against true misalignment"
python3 "$root/scripts/compare_truth.py" "$out/truth.res" "$out/millepede.res"

echo "== 4. weak modes: the same data without the constraint file, method diagonalization"
weak="$out/without-constraints"
mkdir -p "$weak"
grep -v -i "constraints.txt" "$out/steer.txt" | sed 's/^method .*/method diagonalization 1 0.001/' > "$weak/steer.txt"
(cd "$out" && "$gpede" -q --output-dir "$weak" "$weak/steer.txt") || true
grep -i "eigenvalues" "$weak/millepede.log" | head -3 || true

echo "== 5. plots"
if python3 "$root/scripts/plot_simulation.py" "$out" --out "$out/demo.png" --eigen "$weak/gpede.json"; then
  ls "$out"/*.png
else
  echo "plotting failed (matplotlib missing?); the alignment result above stands" >&2
fi
