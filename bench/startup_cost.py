#!/usr/bin/env python3
"""Start-up cost of gpede builds on CPU runs, measured in one run, interleaved.

Runs each build's gpede on pede's sl0 reference problem (method inversion) with --backend cpu and
with the default backend (auto), and `gpede --version`, `--repeat` times each, in turn, and prints
per build and case the median wall time and the median peak resident memory (from wait4).

  startup_cost.py --build NAME=BUILD_DIR [--build ...] [--reference ../shared/reference] [--repeat 15]
"""
import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import tempfile
import time


def run(command, cwd):
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code >= 10 or code < 0:
        raise SystemExit(f"{' '.join(map(str, command))} ended with {code}")
    return elapsed, usage.ru_maxrss / 1024.0  # MB


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="append", required=True, help="NAME=BUILD_DIR (host/gpede inside)")
    root = pathlib.Path(__file__).resolve().parent.parent
    parser.add_argument("--reference", default=str(root.parent / "shared" / "reference"))
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    builds = []
    for item in args.build:
        name, _, folder = item.partition("=")
        binary = pathlib.Path(folder).resolve() / "host" / "gpede"
        if not binary.is_file():
            raise SystemExit(f"no gpede in {folder}/host")
        builds.append((name, binary))
    sl0 = pathlib.Path(args.reference) / "sl0"
    work = pathlib.Path(tempfile.mkdtemp(prefix="gpede-startup-"))
    try:
        for f in ("mp2con.txt", "mp2tst.bin.gz"):
            (work / f).symlink_to(sl0 / f)
        shutil.copy(sl0 / "pede" / "inversion" / "steer.txt", work / "steer.txt")
        cases = {
            "--version": lambda b: [b, "--version"],
            "sl0 --backend cpu": lambda b: [b, "-q", "--backend", "cpu", "--threads", "1", "steer.txt"],
            "sl0 (auto)": lambda b: [b, "-q", "--threads", "1", "steer.txt"],
        }
        figures = {(name, case): [] for name, _ in builds for case in cases}
        for _ in range(args.repeat):
            for case, command in cases.items():
                for name, binary in builds:
                    figures[(name, case)].append(run(command(str(binary)), work))
        print(f"{'build':<28} {'case':<20} {'median s':>9} {'peak MB':>8}")
        for case in cases:
            for name, _ in builds:
                runs = figures[(name, case)]
                print(f"{name:<28} {case:<20} {statistics.median(t for t, _ in runs):9.3f} "
                      f"{statistics.median(m for _, m in runs):8.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
