#!/usr/bin/env bash
# Every check that needs a CUDA device, in one command, for a fresh machine that has one:
#   bench/gpu_check.sh            (about 10 minutes on an H200)
#   bench/gpu_check.sh --quick    (build, GPU tests and sanitizers only)
# Steps, each logged to ${OUT:-out/gpu-check}/<step>.txt, all run even when one fails:
#   build       Release, sm_90 (CMAKE_CUDA_ARCHITECTURES), only the targets below, in ${GPEDE_BUILD_DIR:-build-gpu}
#   gpu-tests   ctest -L gpu and the CUDA engine tests; a skipped test counts as a failure here
#   memcheck    compute-sanitizer memcheck on the CUDA accumulation and solution tests
#   racecheck   compute-sanitizer racecheck on the accumulation tests (shared memory, barriers)
#   large-n     bench_cuda_large_probe 50000 20: elimination, multipliers, residual checks at n^2 > 2^31
#   solve       bench_cuda_solve: Cholesky and inversion at n = 60,000, Xsyevd at n = 20,000
#   accumulate  bench_cuda_accumulate
#   reference   --backend cuda against --backend cpu on the reference problems (a copy of
#               ../shared/reference in ${GPEDE_REFERENCE_DIR:-data/reference}, carried to the machine)
#   belle2      gpede simulate --preset belle2 --tracks 200000 --fix-wires --solve, cuda against cpu:
#               the same millepede.end, values within 1e-6 of their errors
#   mpi         mpirun -np 2 gpede --backend cuda (both processes on the one GPU, the device matrices
#               summed through host memory) against one cpu process
# Ends with one table (step, result, figure) and exit status 1 if any step failed.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${GPEDE_BUILD_DIR:-$root/build-gpu}"
out="${OUT:-$root/out/gpu-check}"
reference="${GPEDE_REFERENCE_DIR:-$root/data/reference}"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
mkdir -p "$out"
jobs="$(nproc)"
sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
started=$(date +%s)

steps=()
results=()
figures=()
record() {  # step result figure
  steps+=("$1")
  results+=("$2")
  figures+=("$3")
  printf '== %-11s %-4s %s\n' "$1" "$2" "$3"
}

# ---- build ------------------------------------------------------------------------------------
targets=(gpede test_cuda_backend test_dense_solution_engines test_cooperative_schur bench_cuda_solve
         bench_cuda_accumulate bench_cuda_large_probe)
if cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGPEDE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
     -DGPEDE_TESTS=ON -DGPEDE_BENCHMARKS=ON >"$out/cmake.txt" 2>&1 &&
   cmake --build "$build" -j "$jobs" --target "${targets[@]}" >"$out/build.txt" 2>&1; then
  record build PASS "$(( $(date +%s) - started )) s"
else
  tail -30 "$out/build.txt" "$out/cmake.txt" 2>/dev/null
  record build FAIL "see $out/build.txt"
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/device.txt" 2>&1 || true
echo "device: $(cat "$out/device.txt")"

# ---- tests on the device ------------------------------------------------------------------------
{
  (cd "$build" && ctest -L gpu --output-on-failure -j 1)
  "$build/tests/test_dense_solution_engines" --gtest_filter='*Cuda*'
  "$build/tests/test_cooperative_schur"
} >"$out/gpu-tests.txt" 2>&1
status=$?
skipped=$(grep -cE '\*\*\*Skipped|\[  SKIPPED \] [A-Za-z]' "$out/gpu-tests.txt")
if [ $status -eq 0 ] && [ "$skipped" -eq 0 ]; then
  record gpu-tests PASS "$(grep -E 'tests passed' "$out/gpu-tests.txt" | head -1)"
else
  record gpu-tests FAIL "exit $status, $skipped skipped (see gpu-tests.txt)"
fi

accumulation_filter='CudaAccumulation*:CudaBackend.*'
if [ -x "$sanitizer" ]; then
  "$sanitizer" --tool memcheck --leak-check full --error-exitcode 3 \
    "$build/tests/test_cuda_backend" --gtest_filter="$accumulation_filter:CudaSolution*" >"$out/memcheck.txt" 2>&1
  status=$?
  record memcheck "$([ $status -eq 0 ] && echo PASS || echo FAIL)" "$(grep -E 'ERROR SUMMARY' "$out/memcheck.txt" | tail -1)"
  "$sanitizer" --tool racecheck --error-exitcode 3 \
    "$build/tests/test_cuda_backend" --gtest_filter="$accumulation_filter" >"$out/racecheck.txt" 2>&1
  status=$?
  record racecheck "$([ $status -eq 0 ] && echo PASS || echo FAIL)" "$(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$out/racecheck.txt" | tail -1)"
else
  record memcheck FAIL "compute-sanitizer not found"
  record racecheck FAIL "compute-sanitizer not found"
fi

if [ $quick -eq 0 ]; then
  # ---- the large-n probe ------------------------------------------------------------------------
  "$build/bench/bench_cuda_large_probe" 50000 20 >"$out/large-n.txt" 2>&1
  status=$?
  record large-n "$([ $status -eq 0 ] && echo PASS || echo FAIL)" \
    "$(grep -E '^(inversion|decomposition)' "$out/large-n.txt" | tr -s ' ' | paste -sd ';' -)"

  # ---- benchmarks ---------------------------------------------------------------------------------
  "$build/bench/bench_cuda_solve" \
    --benchmark_filter='^(cholesky|cholesky_covariance_diagonal)/60000|^eigen_decomposition/20000' \
    --benchmark_min_time=0.1 --benchmark_out="$out/solve.json" --benchmark_out_format=json >"$out/solve.txt" 2>&1
  status=$?
  record solve "$([ $status -eq 0 ] && echo PASS || echo FAIL)" \
    "$(grep -E '^(cholesky|eigen)' "$out/solve.txt" | awk '{print $1, $2, $3}' | paste -sd ';' -)"
  "$build/bench/bench_cuda_accumulate" --benchmark_out="$out/accumulate.json" --benchmark_out_format=json \
    >"$out/accumulate.txt" 2>&1
  status=$?
  record accumulate "$([ $status -eq 0 ] && echo PASS || echo FAIL)" \
    "$(grep -E '^accumulate' "$out/accumulate.txt" | awk '{print $1, $2, $3}' | paste -sd ';' -)"

  # ---- cuda against cpu -------------------------------------------------------------------------
  if [ -d "$reference" ]; then
    python3 - "$build/host/gpede" "$reference" "$out/compare" >"$out/reference.txt" 2>&1 <<'PY'
import os, re, subprocess, sys
gpede, reference, work = sys.argv[1:4]
def res(path):
    rows = {}
    with open(path) as f:
        next(f)
        for line in f:
            t = line.split()
            rows[int(t[0])] = [float(x) for x in t[1:]]
    return rows
def chi2(path):
    text = open(path).read()
    return float(re.findall(r"\n\s*=\s*([-+.\dE]+)", text)[-1])
failures = runs = 0
for problem in sorted(os.listdir(reference)):
    methods = os.path.join(reference, problem, "pede")
    if not os.path.isdir(methods):
        continue
    for method in sorted(os.listdir(methods)):
        found = {}
        for backend in ("cpu", "cuda"):
            folder = os.path.join(work, problem, method, backend)
            os.makedirs(folder, exist_ok=True)
            p = subprocess.run([gpede, "-q", "--backend", backend, "--output-dir", folder,
                                f"pede/{method}/steer.txt"], cwd=os.path.join(reference, problem),
                               capture_output=True, text=True)
            found[backend] = (p.returncode, folder, p.stderr.strip())
        (rc_cpu, cpu, _), (rc_gpu, gpu, err) = found["cpu"], found["cuda"]
        def end(folder):
            path = os.path.join(folder, "millepede.end")
            return open(path).read().split()[0] if os.path.exists(path) else "none"
        ok = rc_cpu == rc_gpu and end(cpu) == end(gpu)
        worst = 0.0
        if ok and os.path.exists(os.path.join(cpu, "millepede.res")):
            a, b = res(os.path.join(cpu, "millepede.res")), res(os.path.join(gpu, "millepede.res"))
            for label, row in a.items():
                if len(row) >= 4 and row[3] != 0:
                    worst = max(worst, abs(row[0] - b[label][0]) / abs(row[3]))
                elif len(row) == 3 and row[0] != 0:
                    # no error column (decomposition, MINRES): one unit of the 5th printed digit
                    # (1.5e-4 relative) counts as 1e-3 "sigma"
                    worst = max(worst, 1e-3 * abs(row[0] - b[label][0]) / (1.5e-4 * abs(row[0])))
            c1, c2 = chi2(os.path.join(cpu, "millepede.log")), chi2(os.path.join(gpu, "millepede.log"))
            ok = worst <= 1e-3 and abs(c1 - c2) <= 1e-9 * abs(c1)
        runs += 1
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {problem} {method}: end {end(cpu)}/{end(gpu)}, worst value {worst:.2g} sigma"
              + ("" if ok else f" ({err[-200:]})"))
print(f"{runs - failures} of {runs} runs agree")
sys.exit(1 if failures else 0)
PY
    status=$?
    record reference "$([ $status -eq 0 ] && echo PASS || echo FAIL)" "$(tail -1 "$out/reference.txt")"
  else
    record reference FAIL "no reference data at $reference (copy ../shared/reference there and carry it)"
  fi

  for backend in cpu cuda; do
    rm -rf "$out/belle2-$backend"
    /usr/bin/time -v "$build/host/gpede" simulate --preset belle2 --tracks 200000 --fix-wires --solve \
      --backend "$backend" -o "$out/belle2-$backend" >"$out/belle2-$backend.txt" 2>&1
    echo "exit $?" >>"$out/belle2-$backend.txt"
  done
  python3 - "$out/belle2-cpu" "$out/belle2-cuda" >"$out/belle2.txt" 2>&1 <<'PY'
import os, sys
cpu, gpu = sys.argv[1:3]
def rows(folder):
    out = {}
    with open(os.path.join(folder, "millepede.res")) as f:
        next(f)
        for line in f:
            t = line.split()
            out[int(t[0])] = [float(x) for x in t[1:]]
    return out
a, b = rows(cpu), rows(gpu)
end = [open(os.path.join(d, "millepede.end")).read().split()[0] for d in (cpu, gpu)]
worst = 0.0
for label, row in a.items():
    if len(row) >= 4 and row[3] != 0:
        worst = max(worst, abs(row[0] - b[label][0]) / abs(row[3]))
ok = end[0] == end[1] and set(a) == set(b) and worst <= 1e-6
print(f"{'PASS' if ok else 'FAIL'} {len(a)} parameters, end {end[0]}/{end[1]}, worst value difference {worst:.2g} sigma")
sys.exit(0 if ok else 1)
PY
  status=$?
  seconds=$(for b in cpu cuda; do grep -E 'Elapsed \(wall' "$out/belle2-$b.txt" | awk -v b=$b '{print b, $NF}'; done | paste -sd ' ' -)
  record belle2 "$([ $status -eq 0 ] && echo PASS || echo FAIL)" "$(tail -1 "$out/belle2.txt"); wall $seconds"
fi

# ---- two MPI processes sharing the GPU: the device matrices summed through host memory -------------
if [ "$quick" -eq 0 ]; then
  if command -v mpirun >/dev/null; then
    rm -rf "$out/mpi"
    "$build/host/gpede" simulate --preset small --tracks 10000 --files 2 --fix-wires -o "$out/mpi" >"$out/mpi.txt" 2>&1
    root_flag=()
    [ "$(id -u)" -eq 0 ] && root_flag=(--allow-run-as-root)
    (cd "$out/mpi" && "$build/host/gpede" steer.txt --backend cpu --output-dir cpu >>"$out/mpi.txt" 2>&1 &&
     mpirun "${root_flag[@]}" --oversubscribe -np 2 "$build/host/gpede" steer.txt --backend cuda --output-dir cuda2 \
       >>"$out/mpi.txt" 2>&1)
    python3 - "$out/mpi/cpu" "$out/mpi/cuda2" >>"$out/mpi.txt" 2>&1 <<'PY'
import json, os, sys
a, b = (json.load(open(os.path.join(d, "gpede.json"))) for d in sys.argv[1:3])
pa = {p["label"]: p for p in a["parameters"]}
worst = max(abs(p["value"] - q["value"]) / p["error"] for q in b["parameters"] for p in [pa[q["label"]]]
            if p.get("error"))
ok = a["exit_code"] == b["exit_code"] and b["backend"] == "cuda" and worst <= 1e-6
print(f"{'PASS' if ok else 'FAIL'} 2 processes on cuda against 1 on cpu: worst value difference {worst:.2g} sigma")
sys.exit(0 if ok else 1)
PY
    status=$?
    record mpi "$([ $status -eq 0 ] && echo PASS || echo FAIL)" "$(tail -1 "$out/mpi.txt")"
  else
    record mpi FAIL "no mpirun (Debian: openmpi-bin)"
  fi
fi

# ---- the table ------------------------------------------------------------------------------------
echo
echo "gpu check on $(cat "$out/device.txt" 2>/dev/null), $(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - started )) s"
printf '%-11s  %-6s  %s\n' step result figure
failed=0
for i in "${!steps[@]}"; do
  printf '%-11s  %-6s  %s\n' "${steps[$i]}" "${results[$i]}" "${figures[$i]}"
  [ "${results[$i]}" = PASS ] || failed=1
done
echo "logs: $out"
exit $failed
