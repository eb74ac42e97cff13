#!/usr/bin/env bash
# `intervals auto` on the time-dependent simulation: for each seed, the small preset's runs with a
# scenario (jumps: the pixel bows step at run ceil(N/2)+1 and the half-shell at ceil(N/3)+1;
# steady: nothing moves) written as Mille files, the steering's intervals replaced by
# `intervals auto`, solved; prints per seed the starts found, their chi2 gains, the penalty, the
# statistics' memory and the search's times (from gpede.json).
# Usage: bench/interval_search_sim.sh BUILD WORK SCENARIO TRACKS RUNS SEED...
# Environment: SIM_ARGS (default --fix-wires) for `gpede simulate`; TD_LINE, one more steering
# line before `intervals auto` (e.g. 'timedependent 2000000-2099999': the wires vary too).
set -euo pipefail
build=$(realpath "$1")
work=$2
scenario=$3
tracks=$4
runs=$5
shift 5
gpede="$build/host/gpede"
mkdir -p "$work"
for seed in "$@"; do
  dir="$work/$scenario-$runs-$tracks-$seed"
  if [ ! -f "$dir/steer.txt" ]; then
    # shellcheck disable=SC2086
    "$gpede" simulate --preset small --tracks "$tracks" --seed "$seed" ${SIM_ARGS---fix-wires} --runs "$runs" \
      --time-scenario "$scenario" -o "$dir" > /dev/null
  fi
  sed -i -e 's/^intervals .*/intervals auto/' -e 's/^\* One interval: the runs hold no step\./intervals auto/' "$dir/steer.txt"
  grep -q '^intervals auto' "$dir/steer.txt" || { echo "no intervals line in $dir/steer.txt" >&2; exit 1; }
  if [ -n "${TD_LINE:-}" ] && ! grep -qx "$TD_LINE" "$dir/steer.txt"; then
    sed -i "s/^intervals auto/$TD_LINE\nintervals auto/" "$dir/steer.txt"
  fi
  /usr/bin/time -f "%e %M" -o "$dir/time.txt" "$gpede" -q --threads 2 --output-dir "$dir/out" "$dir/steer.txt" > "$dir/log.txt"
  python3 - "$dir" "$seed" "$scenario" <<'EOF'
import json, sys
folder, seed, scenario = sys.argv[1:4]
result = json.load(open(folder + "/out/gpede.json"))
search = result["interval_search"]
wall, peak_kb = open(folder + "/time.txt").read().split()
starts = " ".join(f"{s['start']} ({s['chi2_gain']:.1f})"
                  for s in search["starts"]) or "none"
print(f"{scenario} seed {seed}: runs {search['runs']}, parameters {search['parameters']}, "
      f"penalty {search['penalty']:.1f}, starts: {starts}; statistics {search['statistics_bytes'] / 1e6:.3f} MB "
      f"in {search['statistics_s']:.2f} s, search {search['search_s']:.3f} s, run {float(wall):.1f} s, "
      f"peak {int(peak_kb) / 1024:.0f} MB")
EOF
done
