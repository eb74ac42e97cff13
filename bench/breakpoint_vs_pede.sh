#!/usr/bin/env bash
# gpede beside pede on the break-point problem of bench/make_breakpoint_problem.cpp (4,032
# parameters, 200,000 records, 28 local parameters): the same steering (sparseMINRES, 3 iterations,
# 2 threads), runs alternating pede, gpede, gpede --no-cache, REPEAT times; prints wall time and
# peak resident memory of each run and the median ratios.
# Usage: bench/breakpoint_vs_pede.sh GPEDE PEDE [WORK (/tmp/gpede-breakpoint)] [REPEAT (2)] [RECORDS]
#   GPEDE: the gpede binary (a build of this tree); PEDE: the reference pede (../shared/pede/build.sh)
#   METHOD=fullMINRES (environment) times the dense matrix instead.
set -euo pipefail
gpede=$(realpath "$1")
pede=$(realpath "$2")
work=${3:-/tmp/gpede-breakpoint}
repeat=${4:-2}
records=${5:-200000}
method=${METHOD:-sparseMINRES}
here=$(cd "$(dirname "$0")" && pwd)
generator=$(dirname "$gpede")/../bench/make_breakpoint_problem
[ -x "$generator" ] || { echo "no $generator: build the bench targets first" >&2; exit 2; }
mkdir -p "$work"
if [ ! -s "$work/data.bin" ] || ! grep -q "method $method " "$work/steer.txt"; then
  "$generator" "$work" "$records" "$method"
fi

run() {  # name, command...: prints "wall_s peak_kb" and checks the end code
  local name=$1; shift
  local out="$work/run-$name"
  rm -rf "$out"; mkdir -p "$out"
  ( cd "$out" && /usr/bin/time -f "%e %M" -o time.txt "$@" > stdout.txt 2> stderr.txt ) || {
    echo "$name failed: see $out" >&2; exit 1; }
  grep -q "^ *0 " "$out/millepede.end" || { echo "$name: end code $(cat "$out/millepede.end")" >&2; exit 1; }
  tail -1 "$out/time.txt"
}

sed "s#^data.bin#$work/data.bin#; s#^constraints.txt#$work/constraints.txt#" "$work/steer.txt" > "$work/steer-abs.txt"
declare -a pede_t gpede_t nocache_t pede_m gpede_m nocache_m
for ((k = 0; k < repeat; ++k)); do
  read -r t m < <(run pede "$pede" "$work/steer-abs.txt"); pede_t+=("$t"); pede_m+=("$m")
  read -r t m < <(run gpede "$gpede" -q "$work/steer-abs.txt"); gpede_t+=("$t"); gpede_m+=("$m")
  read -r t m < <(run gpede-nocache "$gpede" -q --no-cache "$work/steer-abs.txt"); nocache_t+=("$t"); nocache_m+=("$m")
done
chi2() { grep -A2 "Sum(Chi" "$work/run-$1/millepede.log" | tail -1 | awk '{print $2}'; }
iterations() { grep "internal MINRES" "$work/run-$1/millepede.log" | awk '{print $3}'; }
python3 - "$method" "${pede_t[*]}" "${gpede_t[*]}" "${nocache_t[*]}" "${pede_m[*]}" "${gpede_m[*]}" "${nocache_m[*]}" \
  "$(chi2 pede)" "$(chi2 gpede)" "$(chi2 gpede-nocache)" "$(iterations pede)" "$(iterations gpede)" <<'EOF'
import statistics, sys
method = sys.argv[1]
t = [list(map(float, a.split())) for a in sys.argv[2:5]]
m = [list(map(float, a.split())) for a in sys.argv[5:8]]
chi2 = sys.argv[8:11]
its = sys.argv[11:13]
names = ["pede", "gpede", "gpede --no-cache"]
print(f"| run ({method}, 2 threads) | wall s (each run) | median s | peak MB (median) | chi2/ndf | MINRES iterations |")
print("|---|---|---|---|---|---|")
for k in range(3):
    it = its[0] if k == 0 else its[1]
    print(f"| {names[k]} | {', '.join(f'{x:.2f}' for x in t[k])} | {statistics.median(t[k]):.2f} | "
          f"{statistics.median(m[k]) / 1024:.0f} | {chi2[k]} | {it} |")
for k in (1, 2):
    print(f"- {names[k]}: {statistics.median(t[0]) / statistics.median(t[k]):.2f}x faster than pede, "
          f"{statistics.median(m[k]) / statistics.median(m[0]):.2f} of its peak memory")
EOF
