#!/usr/bin/env python3
"""Wall time and peak memory of gpede on the pede reference problems, per method. Prints a
Markdown table.

With --baseline, a second gpede binary (an earlier build) runs alternately with the first on every
case, so that the ratio of the two comes from one session. With --pede, the reference pede runs the
same steering files in the same session (1 thread), so that the ratio to pede does too; without
it, pede's figures are those of ../shared/reference/README.md.

usage: bench/reference_times.py [--gpede build/host/gpede] [--baseline OLD_GPEDE] [--pede PEDE]
                                [--reference ../shared/reference] [--threads 1] [--repeat 5]
                                [--methods inversion,diagonalization,decomposition,sparseMINRES]
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
    ("wirechamber", "sparseMINRES"): (3.72, 75), ("sl0", "sparseMINRES"): (0.46, 25), ("bp", "sparseMINRES"): (1.70, 47),
}


def timed(cmd, cwd):
    proc = subprocess.run(["/usr/bin/time", "-f", "%e %M"] + cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    wall, rss_kb = proc.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss_kb) / 1024.0


def run_gpede(gpede, problem_dir, method, threads):
    with tempfile.TemporaryDirectory() as out:
        wall, rss = timed([gpede, "-q", "--threads", str(threads), "--output-dir", out, f"pede/{method}/steer.txt"],
                          problem_dir)
        with open(os.path.join(out, "gpede.json")) as f:
            phases = json.load(f)["phases"]
        return wall, rss, phases


PLAIN = {}  # problem folder -> scratch folder with the plain Fortran data that pede can read


def run_pede(pede, problem_dir, method):
    # pede reads Fortran files plain only and writes into its working directory: run it in a
    # scratch folder with the constraints and the unzipped data.
    if problem_dir not in PLAIN:
        PLAIN[problem_dir] = tempfile.mkdtemp(prefix="pede-ref-")
        data = PLAIN[problem_dir]
        os.symlink(os.path.join(problem_dir, "mp2con.txt"), os.path.join(data, "mp2con.txt"))
        subprocess.run(f"gzip -dc '{os.path.join(problem_dir, 'mp2tst.bin.gz')}' > '{os.path.join(data, 'mp2tst.bin')}'",
                       shell=True, check=True)
    data = PLAIN[problem_dir]
    with open(os.path.join(problem_dir, "pede", method, "steer.txt")) as f:
        steer = f.read().replace("mp2tst.bin.gz", "mp2tst.bin")
    with tempfile.TemporaryDirectory(dir=data) as work:
        with open(os.path.join(work, "steer.txt"), "w") as f:
            f.write(steer.replace("mp2con.txt", "../mp2con.txt").replace("mp2tst.bin", "../mp2tst.bin"))
        return timed([pede, "steer.txt"], work)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpede", default=os.path.join(here, "..", "build", "host", "gpede"))
    ap.add_argument("--baseline", help="an earlier gpede binary, run alternately with --gpede")
    ap.add_argument("--pede", help="the reference pede, run in the same session")
    ap.add_argument("--reference", default=os.path.join(here, "..", "..", "shared", "reference"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--methods", default="inversion,diagonalization,decomposition,sparseMINRES",
                    help="comma-separated: the methods of ../shared/reference to time")
    args = ap.parse_args()
    print(f"threads={args.threads}, median of {args.repeat} runs"
          + (", baseline and gpede alternately" if args.baseline else "")
          + (", pede in the same session" if args.pede else ", pede from reference/README.md"))
    head = "| problem | method | gpede wall s | pede wall s | ratio | gpede MB | pede MB "
    if args.baseline:
        head += "| baseline wall s | baseline / gpede "
    head += "| reading s | local fits s | matrix s | solving s |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for problem in ("wirechamber", "sl0", "bp"):
        for method in args.methods.split(","):
            pdir = os.path.join(args.reference, problem)
            runs, base, pede = [], [], []
            for _ in range(args.repeat):
                if args.baseline:
                    base.append(run_gpede(args.baseline, pdir, method, args.threads))
                runs.append(run_gpede(args.gpede, pdir, method, args.threads))
                if args.pede:
                    pede.append(run_pede(args.pede, pdir, method))
            wall = statistics.median(r[0] for r in runs)
            rss = statistics.median(r[1] for r in runs)
            ph = {k: statistics.median(r[2][k] for r in runs) for k in runs[0][2]}
            if pede:
                pw, pm = statistics.median(p[0] for p in pede), statistics.median(p[1] for p in pede)
            else:
                pw, pm = PEDE[(problem, method)]
            line = f"| {problem} | {method} | {wall:.2f} | {pw:.2f} | {pw / wall:.1f}x | {rss:.0f} | {pm:.0f} "
            if base:
                bw = statistics.median(b[0] for b in base)
                line += f"| {bw:.2f} | {bw / wall:.2f} "
            line += (f"| {ph['reading_s']:.3f} | {ph['local_fits_s']:.3f} | {ph['matrix_s']:.3f} "
                     f"| {ph['solving_s']:.3f} |")
            print(line, flush=True)


if __name__ == "__main__":
    main()
