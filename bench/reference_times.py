#!/usr/bin/env python3
"""Wall time and peak memory of gpede on the pede reference problems, per method, beside pede's
figures (../shared/reference/README.md, 1 thread). Prints a Markdown table.

usage: bench/reference_times.py [--gpede build/host/gpede] [--reference ../shared/reference]
                                [--threads 1] [--repeat 5]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

PEDE = {  # wall s / peak MB, pede V04-09, 1 thread, from ../shared/reference/README.md
    ("wirechamber", "inversion"): (2.43, 75), ("sl0", "inversion"): (0.48, 26), ("bp", "inversion"): (1.35, 48),
    ("wirechamber", "diagonalization"): (2.44, 75), ("sl0", "diagonalization"): (0.98, 30),
    ("bp", "diagonalization"): (1.96, 52),
    ("wirechamber", "decomposition"): (2.47, 75), ("sl0", "decomposition"): (0.34, 27),
    ("bp", "decomposition"): (1.42, 48),
}


def run_once(gpede, problem_dir, method, threads):
    with tempfile.TemporaryDirectory() as out:
        cmd = ["/usr/bin/time", "-f", "%e %M", gpede, "-q", "--threads", str(threads), "--output-dir", out,
               f"pede/{method}/steer.txt"]
        proc = subprocess.run(cmd, cwd=problem_dir, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        wall, rss_kb = proc.stderr.strip().splitlines()[-1].split()
        with open(os.path.join(out, "gpede.json")) as f:
            phases = json.load(f)["phases"]
        return float(wall), int(rss_kb) / 1024.0, phases


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpede", default=os.path.join(here, "..", "build", "host", "gpede"))
    ap.add_argument("--reference", default=os.path.join(here, "..", "..", "shared", "reference"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"threads={args.threads}, median of {args.repeat} runs")
    print("| problem | method | gpede wall s | pede wall s | ratio | gpede MB | pede MB "
          "| reading s | local fits s | matrix s | solving s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for problem in ("wirechamber", "sl0", "bp"):
        for method in ("inversion", "diagonalization", "decomposition"):
            runs = [run_once(args.gpede, os.path.join(args.reference, problem), method, args.threads)
                    for _ in range(args.repeat)]
            wall = statistics.median(r[0] for r in runs)
            rss = statistics.median(r[1] for r in runs)
            ph = {k: statistics.median(r[2][k] for r in runs) for k in runs[0][2]}
            pw, pm = PEDE[(problem, method)]
            print(f"| {problem} | {method} | {wall:.2f} | {pw:.2f} | {pw / wall:.1f}x | {rss:.0f} | {pm} "
                  f"| {ph['reading_s']:.3f} | {ph['local_fits_s']:.3f} | {ph['matrix_s']:.3f} "
                  f"| {ph['solving_s']:.3f} |")


if __name__ == "__main__":
    main()
