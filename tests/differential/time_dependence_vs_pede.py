#!/usr/bin/env python3
"""Time dependence against the reference pede.

A toy telescope (six planes measuring straight tracks, plane i shifted by label i) over 9 runs,
written as a Mille C file whose records carry their run in a time block. Three cases:
  plain     pede and gpede on the time-tagged file without time dependence: pede skips the time
            blocks, and both must give the same millepede.res (the files stay readable by pede);
  jump      gpede with `timedependent 3` and `intervals 5` on the time-tagged file against pede on
            a copy whose records of runs 5 and later name label 1000003 instead of 3;
  shifts    every plane time-dependent with two constraints and a template: gpede with
            `timedependent`, `template` and `intervals 4 7` against pede on a copy with the interval
            labels and the folded template written in, and the constraints written per interval.
Values and errors must agree to pede's printed digits (5 significant), end codes equal.

usage: time_dependence_vs_pede.py --gpede PATH --work DIR [--pede PATH | --shared DIR]
Exit 77 (skipped) where no pede can be had.
"""
import argparse
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pede_diff  # noqa: E402  (find_pede, read_res, read_end)

TAG = 0x656D6974
STRIDE = 1000000
SIGMA = 0.01


def truth(plane: int, run: int) -> float:
    base = {1: 0.0, 2: 0.03, 3: 0.1, 4: -0.04, 5: 0.02, 6: 0.0}[plane]
    if plane == 3 and run >= 5:
        base += 0.15
    if plane == 4 and run >= 7:
        base += 0.05
    return base


def write_records(path: Path, relabel=None, seed: int = 3, runs: int = 9, tracks: int = 1200) -> None:
    """relabel(plane, run) -> [(label, derivative)]; None: label = plane, derivative 1."""
    rng = random.Random(seed)
    with open(path, "wb") as out:
        for run in range(1, runs + 1):
            for _ in range(tracks):
                a, b = rng.gauss(0, 1), rng.gauss(0, 0.1)
                values, indices = [0.0], [0]
                for plane in range(1, 7):
                    measured = a + b * plane + truth(plane, run) + rng.gauss(0, SIGMA)
                    values += [measured, 1.0, float(plane), SIGMA]
                    indices += [0, 1, 2, 0]
                    for label, d in (relabel(plane, run) if relabel else [(plane, 1.0)]):
                        values.append(d)
                        indices.append(label)
                values += [0.0, -3.0, 1.0, 0.0, 0.0]
                indices += [0, 0, TAG, 0, run]
                m = len(values)
                out.write(struct.pack("<i", 2 * m) + struct.pack(f"<{m}f", *values) + struct.pack(f"<{m}i", *indices))


def run(command: list, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)


def compare(name: str, pede_dir: Path, gpede_dir: Path) -> list:
    problems = []
    pede_end, gpede_end = pede_diff.read_end(pede_dir / "millepede.end"), pede_diff.read_end(gpede_dir / "millepede.end")
    if pede_end is None or gpede_end is None or pede_end[0] != gpede_end[0]:
        problems.append(f"{name}: end codes pede {pede_end}, gpede {gpede_end}")
    a, b = pede_diff.read_res(pede_dir / "millepede.res"), pede_diff.read_res(gpede_dir / "millepede.res")
    if a is None or b is None:
        return problems + [f"{name}: millepede.res missing (pede {a is not None}, gpede {b is not None})"]
    if sorted(a.rows) != sorted(b.rows):
        return problems + [f"{name}: labels differ: pede {sorted(a.rows)}, gpede {sorted(b.rows)}"]
    for label, row in a.rows.items():
        other = b.rows[label]
        if len(row.reals) != len(other.reals):
            problems.append(f"{name}: label {label}: pede {row.tokens}, gpede {other.tokens}")
            continue
        x_all, y_all = [float(v) for v in row.reals], [float(v) for v in other.reals]
        error = x_all[3] if len(x_all) > 3 else 0.0
        for k, (x, y) in enumerate(zip(x_all, y_all)):
            if k == 1:
                continue  # presigma column
            # pede prints 5 significant digits: a last-digit rounding apart, or 1e-3 of the error
            if abs(x - y) > max(2e-5 * max(abs(x), abs(y)), 1e-3 * error, 1e-12):
                problems.append(f"{name}: label {label} column {k + 1}: pede {row.reals[k]}, gpede {other.reals[k]}")
    if not problems:
        print(f"PASS {name}: {len(a.rows)} labels equal to pede's digits, end code {pede_end[0]}", flush=True)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpede", required=True)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--pede")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[3] / "shared")
    args = parser.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        pede = pede_diff.find_pede(args)
    except SystemExit as e:  # pede_diff said why: skipped (77), or a failure in CI
        return int(e.code or 0)
    gpede = str(Path(args.gpede).resolve())
    work = args.work / "time"
    work.mkdir(exist_ok=True)
    problems = []

    def solve_both(name: str, data: str, pede_lines: list, gpede_data: str, gpede_lines: list) -> None:
        pede_dir, gpede_dir = work / name / "pede", work / name / "gpede"
        for d in (pede_dir, gpede_dir):
            d.mkdir(parents=True, exist_ok=True)
        (pede_dir / "steer.txt").write_text("\n".join(["Cfiles", str(work / data)] + pede_lines + ["end"]) + "\n")
        (gpede_dir / "steer.txt").write_text("\n".join(["Cfiles", str(work / gpede_data)] + gpede_lines + ["end"]) + "\n")
        p = run([str(pede), "steer.txt"], pede_dir)
        g = run([gpede, "steer.txt", "-q"], gpede_dir)
        if g.returncode not in (0, 1, 2, 3):
            problems.append(f"{name}: gpede exit {g.returncode}: {g.stderr[-1000:]}")
            return
        problems.extend(compare(name, pede_dir, gpede_dir))

    fixed = ["Parameter", "1 0.0 -1.0", "6 0.0 -1.0"]
    method = ["method inversion 3 0.001"]
    write_records(work / "timed.bin")
    solve_both("plain", "timed.bin", fixed + method, "timed.bin", fixed + method)

    write_records(work / "jump.bin", relabel=lambda plane, r: [(plane + STRIDE if plane == 3 and r >= 5 else plane, 1.0)])
    solve_both("jump", "jump.bin", fixed + method, "timed.bin", fixed + ["timedependent 3", "intervals 5"] + method)

    # every plane time-dependent, starts at runs 4 and 7, two constraints per interval; planes 2 and
    # 3 through a template (amplitude 100: plane 2 moves 0.3 of plane 3)
    def interval(r: int) -> int:
        return 0 if r < 4 else 1 if r < 7 else 2

    def folded(plane: int, r: int):
        k = interval(r) * STRIDE
        if plane == 2:
            return [(100 + k, 0.3)]
        if plane == 3:
            return [(100 + k, 1.0)]
        return [(plane + k, 1.0)]

    write_records(work / "shifts.bin", relabel=folded)
    constraints_pede = []
    for k in range(3):
        labels = [1 + k * STRIDE, 100 + k * STRIDE, 4 + k * STRIDE, 5 + k * STRIDE, 6 + k * STRIDE]
        # the template's amplitude stands for planes 2 (0.3) and 3 (1.0): factors summed
        constraints_pede += ["Constraint 0.0"] + [f"{labels[0]} 1.0", f"{labels[1]} 1.3", f"{labels[2]} 1.0",
                                                  f"{labels[3]} 1.0", f"{labels[4]} 1.0"]
        constraints_pede += ["Constraint 0.0"] + [f"{labels[0]} 1.0", f"{labels[1]} {0.3 * 2 + 3.0}",
                                                  f"{labels[2]} 4.0", f"{labels[3]} 5.0", f"{labels[4]} 6.0"]
    constraints_gpede = ["Constraint 0.0", "1 1.0", "100 1.3", "4 1.0", "5 1.0", "6 1.0",
                         "Constraint 0.0", "1 1.0", "100 3.6", "4 4.0", "5 5.0", "6 6.0"]
    solve_both("shifts", "shifts.bin", constraints_pede + method, "timed.bin",
               ["template 100 2 0.3 3 1.0", "timedependent 1 4-6 100", "intervals 4 7"] + constraints_gpede + method)

    for line in problems:
        print("FAIL " + line)
    print("PASS" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
