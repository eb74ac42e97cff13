#!/usr/bin/env bash
# Cost growth beside pede: time and peak memory of pede and gpede on the break-point problem of
# bench/make_breakpoint_problem.cpp, against the number of parameters (records fixed) and against
# the number of records (parameters fixed). Same steering for both (3 iterations, 2 threads);
# each size runs pede, then gpede, once. Prints Markdown tables.
# Usage: bench/cost_growth.sh GPEDE PEDE [WORK (/tmp/gpede-growth)] [METHOD (sparseMINRES)]
#   GPEDE_ARGS (environment): extra gpede options, e.g. --no-cache.
set -euo pipefail
gpede=$(realpath "$1")
pede=$(realpath "$2")
work=${3:-/tmp/gpede-growth}
method=${4:-sparseMINRES}
generator=$(dirname "$gpede")/../bench/make_breakpoint_problem
[ -x "$generator" ] || { echo "no $generator: build the bench targets first" >&2; exit 2; }
mkdir -p "$work"

run() {  # folder, name, command...: prints "wall_s peak_mb chi2ndf"
  local folder=$1 name=$2; shift 2
  local out="$folder/run-$name"
  rm -rf "$out"; mkdir -p "$out"
  ( cd "$out" && /usr/bin/time -f "%e %M" -o time.txt "$@" > stdout.txt 2> stderr.txt ) || {
    echo "$name failed in $out" >&2; exit 1; }
  local chi2
  chi2=$(grep -A2 "Sum(Chi" "$out/millepede.log" | tail -1 | awk '{print $2}')
  read -r t m < "$out/time.txt"
  echo "$t $((m / 1024)) $chi2"
}

one() {  # label, records, nx, ny
  local label=$1 records=$2 nx=$3 ny=$4
  local folder="$work/$label"
  if [ ! -s "$folder/data.bin" ]; then "$generator" "$folder" "$records" "$method" "$nx" "$ny" > /dev/null; fi
  sed "s#^data.bin#$folder/data.bin#; s#^constraints.txt#$folder/constraints.txt#" "$folder/steer.txt" > "$folder/steer-abs.txt"
  read -r pt pm pc < <(run "$folder" pede "$pede" "$folder/steer-abs.txt")
  # shellcheck disable=SC2086
  read -r gt gm gc < <(run "$folder" gpede "$gpede" -q ${GPEDE_ARGS:-} "$folder/steer-abs.txt")
  local iterations
  iterations=$(grep "internal MINRES" "$folder/run-gpede/millepede.log" | awk '{print $3}')
  printf "| %s | %s | %d | %s | %s | %s | %s | %.2fx | %s | %s |\n" "$((14 * nx * ny))" "$records" \
    "$(stat -c %s "$folder/data.bin" | awk '{print int($1 / 1048576)}')" "$pt" "$pm" "$gt" "$gm" \
    "$(echo "$pt / $gt" | bc -l)" "${iterations:--}" "$pc / $gc"
}

header="| parameters | records | data MiB | pede s | pede MB | gpede s | gpede MB | ratio | gpede MINRES iterations | chi2/ndf pede / gpede |"
rule="|---|---|---|---|---|---|---|---|---|---|"
echo "Against the parameters, 200,000 records ($method, 2 threads${GPEDE_ARGS:+, gpede $GPEDE_ARGS}):"
echo "$header"; echo "$rule"
for grid in "6 12" "16 18" "32 36" "64 72"; do
  read -r nx ny <<< "$grid"
  one "n$((14 * nx * ny))" 200000 "$nx" "$ny"
done
echo
echo "Against the records, 4,032 parameters:"
echo "$header"; echo "$rule"
for records in 50000 100000 200000 400000; do
  one "r$records" "$records" 16 18
done
