#!/usr/bin/env bash
# Passes over the records with MPI: the simulation's medium preset (files written once), solved by
# one process of 1 thread and by `mpirun -np 2` of 1 thread each; prints the time of the passes
# (local fits and matrix, from gpede.json's phases), the whole run, and their ratio, then the time
# of the matrix's sum over 2 processes (bench/mpi_reduce).
# Usage: bench/mpi_passes.sh [BUILD (build)] [WORK (/tmp/gpede-mpi-passes)] [TRACKS (50000)] [METHOD (inversion)]
set -euo pipefail
build=$(realpath "${1:-build}")
work=${2:-/tmp/gpede-mpi-passes}
tracks=${3:-50000}
method=${4:-inversion}
gpede="$build/host/gpede"
root_flag=()
[ "$(id -u)" -eq 0 ] && root_flag=(--allow-run-as-root)
mkdir -p "$work"
if [ ! -f "$work/data-$tracks/steer.txt" ]; then
  "$gpede" simulate --preset medium --tracks "$tracks" --files 4 --method "$method" -o "$work/data-$tracks" > /dev/null
fi
cd "$work/data-$tracks"
phases() {  # folder: "passes_s total_s local_s matrix_s solving_s"
  python3 -c "
import json, sys
p = json.load(open(sys.argv[1] + '/gpede.json'))['phases']
print(f\"{p['local_fits_s'] + p['matrix_s']:.2f} {p['total_s']:.2f} {p['local_fits_s']:.2f} {p['matrix_s']:.2f} {p['solving_s']:.2f}\")" "$1"
}
/usr/bin/time -f "%e" -o one.time "$gpede" steer.txt --threads 1 --output-dir one > one.log
mpirun "${root_flag[@]}" --bind-to none -np 2 "$gpede" steer.txt --threads 1 --output-dir two > two.log
read -r p1 t1 l1 m1 s1 <<< "$(phases one)"
read -r p2 t2 l2 m2 s2 <<< "$(phases two)"
echo "medium preset, $tracks tracks, $method: passes (local fits + matrix) and run, seconds"
echo "| processes x threads | local fits | matrix | passes | solving | run |"
echo "|---|---|---|---|---|---|"
echo "| 1 x 1 | $l1 | $m1 | $p1 | $s1 | $t1 |"
echo "| 2 x 1 | $l2 | $m2 | $p2 | $s2 | $t2 |"
python3 -c "import sys; print(f'passes {float(sys.argv[1]) / float(sys.argv[2]):.2f} times shorter with 2 processes')" "$p1" "$p2"
n=$(python3 -c "import json; print(json.load(open('one/gpede.json'))['nfgb'])")
mpirun "${root_flag[@]}" --bind-to none -np 2 "$build/bench/mpi_reduce" 2000 4000 "$n"
