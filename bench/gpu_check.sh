#!/usr/bin/env bash
# The checks that need a CUDA device, in one command for a machine that has one:
#  1. build gpede with CUDA (Release) into ${GPEDE_BUILD_DIR:-build-gpu};
#  2. the GPU tests (ctest label gpu) and the engine tests of the dense solution on the device;
#  3. --backend cuda against --backend cpu on the reference problems (a copy of ../shared/reference
#     in ${GPEDE_REFERENCE_DIR:-data/reference}; carry it to the device machine): millepede.end,
#     chi2/ndf (1e-9 relative), values within 1e-3 of the error;
#  4. the CUDA benchmarks (bench_cuda_solve, bench_cuda_accumulate), in JSON.
# Everything goes to ${OUT:-out/gpu-check}; the script stops at the first failing step. Without a
# device the tests skip and step 3 reports that the CUDA backend cannot run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${GPEDE_BUILD_DIR:-$root/build-gpu}"
out="${OUT:-$root/out/gpu-check}"
reference="${GPEDE_REFERENCE_DIR:-$root/data/reference}"
mkdir -p "$out"
jobs="$(nproc)"

echo "== 1. build ($build)"
"$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGPEDE_CUDA=ON >"$out/cmake.txt"
cmake --build "$build" -j "$jobs" >"$out/build.txt" 2>&1 || { tail -40 "$out/build.txt"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/device.txt" 2>&1 || true
cat "$out/device.txt"

echo "== 2. tests on the device"
(cd "$build" && ctest -L gpu --output-on-failure -j 1 | tee "$out/ctest-gpu.txt")
"$build/tests/test_dense_solution_engines" --gtest_filter='*Cuda*' | tee "$out/engines.txt" | tail -3

echo "== 3. --backend cuda against --backend cpu on the reference problems"
if [ -d "$reference" ]; then
  python3 - "$build/host/gpede" "$reference" "$out/compare" <<'PY' | tee "$out/compare.txt"
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
failures = 0
for problem in sorted(os.listdir(reference)):
    methods = os.path.join(reference, problem, "pede")
    if not os.path.isdir(methods):
        continue
    for method in sorted(os.listdir(methods)):
        runs = {}
        for backend in ("cpu", "cuda"):
            folder = os.path.join(work, problem, method, backend)
            os.makedirs(folder, exist_ok=True)
            p = subprocess.run([gpede, "-q", "--backend", backend, "--output-dir", folder,
                                f"pede/{method}/steer.txt"], cwd=os.path.join(reference, problem),
                               capture_output=True, text=True)
            runs[backend] = (p.returncode, folder, p.stderr.strip())
        (rc_cpu, cpu, _), (rc_gpu, gpu, err) = runs["cpu"], runs["cuda"]
        end_cpu = open(os.path.join(cpu, "millepede.end")).read().split()[0]
        end_gpu = open(os.path.join(gpu, "millepede.end")).read().split()[0] if os.path.exists(os.path.join(gpu, "millepede.end")) else "none"
        ok = rc_cpu == rc_gpu and end_cpu == end_gpu
        worst = 0.0
        if ok and os.path.exists(os.path.join(cpu, "millepede.res")):
            a, b = res(os.path.join(cpu, "millepede.res")), res(os.path.join(gpu, "millepede.res"))
            for label, row in a.items():
                if len(row) >= 4 and row[3] != 0:
                    worst = max(worst, abs(row[0] - b[label][0]) / abs(row[3]))
            c1, c2 = chi2(os.path.join(cpu, "millepede.log")), chi2(os.path.join(gpu, "millepede.log"))
            ok = worst <= 1e-3 and abs(c1 - c2) <= 1e-9 * abs(c1)
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {problem} {method}: end {end_cpu}/{end_gpu}, worst value {worst:.2g} sigma"
              + ("" if ok else f" ({err[-200:]})"))
sys.exit(1 if failures else 0)
PY
else
  echo "no reference data at $reference (copy ../shared/reference there and carry it): step left out"
fi

echo "== 4. CUDA benchmarks"
for b in bench_cuda_solve bench_cuda_accumulate; do
  "$build/bench/$b" --benchmark_out="$out/$b.json" --benchmark_out_format=json | tee "$out/$b.txt"
done
echo "gpu check done: $out"
