#!/usr/bin/env bash
# The belle2 preset with all 61,520 parameters solved exactly on one node: decomposition and
# inversion (one iteration each) with the global matrix in packed storage, which `--storage auto`
# chooses on a host where full storage (30.3 GB) does not fit. Prints each run's phases (matrix
# pass, solution), wall time and peak resident memory, and the pulls of the inversion against the
# truth. About 25 minutes (decomposition) and 45 minutes (inversion) on 2 cores; 18 GB of memory.
# Usage: bench/belle2_packed.sh GPEDE [WORK (/tmp/gpede-belle2)] [STORAGE (auto)] [METHODS ("decomposition inversion")]
set -euo pipefail
gpede=$(realpath "$1")
work=${2:-/tmp/gpede-belle2}
storage=${3:-auto}
methods=${4:-decomposition inversion}
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -s "$work/steer.txt" ]; then
  "$gpede" simulate --preset belle2 -o "$work" --seed 1
fi
for method in $methods; do
  sed "s/^method .*/method $method 1 0.1/" "$work/steer.txt" > "$work/steer_$method.txt"
  out="$work/out_$method"
  rm -rf "$out"; mkdir -p "$out"
  ( cd "$work" && /usr/bin/time -f "%e %M" -o "$out/time.txt" "$gpede" -q --threads 2 --storage "$storage" \
      -o "$out" "steer_$method.txt" > "$out/stdout.txt" 2> "$out/stderr.txt" ) || {
    echo "$method failed: see $out" >&2; exit 1; }
  read -r wall kb < "$out/time.txt"
  python3 - "$out/gpede.json" "$method" "$wall" "$kb" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
p = j["phases"]
print(f"{sys.argv[2]}: exit {j['exit_code']}, storage {j['matrix_storage']}")
print(f"  matrix pass {p['matrix_s']:.0f} s, solution {p['solving_s']:.0f} s, total {p['total_s']:.0f} s, "
      f"wall {float(sys.argv[3]):.0f} s, peak resident {int(sys.argv[4]) * 1024 / 1e9:.2f} GB, chi2/ndf {j['chi2_ndf']:.5f}")
EOF
done
if [ -s "$work/out_inversion/millepede.res" ]; then
  python3 "$here/../scripts/compare_truth.py" "$work/truth.res" "$work/out_inversion/millepede.res" || true
fi
