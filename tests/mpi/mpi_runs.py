#!/usr/bin/env python3
"""gpede under mpirun against gpede alone, on data it simulates (no outside data needed).

A small misaligned detector with three binary files (one gzip-compressed), solved with several
steerings by one process and by `mpirun -np 2` and `-np 3`: the records are split over the
processes, so every sum is formed in another order, and the answers must agree to rounding
(values within 1e-6 of their errors, errors to 1e-6, chi2/ndf to 1e-9; MINRES, which
rounding moves further, within 1e-2 of the values' RMS and 1e-5) with the same records used
and rejected and the same iterations. Then what must fail does: a broken record in the last
process's share ends the whole run with the reader's error and exit code and no results;
`maxrecord` is refused. Exit 77 (skipped) where mpirun is missing.

usage: mpi_runs.py --gpede PATH --work DIR
"""
import argparse
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

TIMEOUT_S = 600

STEERINGS = {  # name: the lines after the files
    # cuts and down-weighting: rejections and weights decided per record, summed over processes
    "inversion-cuts": ["chisqcut 30.0 6.0", "outlierdownweighting 3", "dwfractioncut 0.2",
                       "method inversion 4 0.001"],
    # the iterated entries cut: a second count over the records before the solution
    "decomposition-entries": ["entries 60 10 120", "method decomposition 2 0.1"],
    "diagonalization": ["method diagonalization 2 0.1"],
    # MINRES on the dense matrix (sparse storage is per process, so several processes keep it dense)
    "fullMINRES": ["mrestol 1.0e-10", "method fullMINRES 2 0.1"],
}


def launcher(n: int) -> list[str]:
    words = ["mpirun", "-np", str(n), "--oversubscribe", "--bind-to", "none"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        words.append("--allow-run-as-root")
    return words


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMPI_MCA_rmaps_base_oversubscribe="1")
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)


def solve(gpede: str, folder: Path, steering: str, out: str, processes: int) -> subprocess.CompletedProcess:
    command = [gpede, steering, "--output-dir", out, "--threads", "1"]
    if processes > 1:
        command = launcher(processes) + command
    return run(command, folder)


def results(folder: Path) -> dict:
    return json.loads((folder / "gpede.json").read_text())


def compare(name: str, one: dict, many: dict, processes: int, tolerance: float) -> list[str]:
    """tolerance: on values relative to their errors (or to the values' RMS), errors, and (x 1e-3)
    chi2/ndf. MINRES gets a looser one: on this problem's weakly fixed wires its iterates move by
    1e-3 of the values' RMS with the order of the sums, in one process as in several."""
    problems = []
    where = f"{name}, {processes} processes"
    for key in ("exit_code", "ndf_sum", "nfgb"):
        if one[key] != many[key]:
            problems.append(f"{where}: {key} {many[key]} against {one[key]} in one process")
    if one["records"] != many["records"]:
        problems.append(f"{where}: records {many['records']} against {one['records']}")
    if len(one["iterations"]) != len(many["iterations"]):
        problems.append(f"{where}: {len(many['iterations'])} passes against {len(one['iterations'])}")
    if abs(many["chi2_ndf"] - one["chi2_ndf"]) > tolerance * 1e-3 * abs(one["chi2_ndf"]):
        problems.append(f"{where}: chi2/ndf {many['chi2_ndf']!r} against {one['chi2_ndf']!r}")
    a = {p["label"]: p for p in one["parameters"]}
    b = {p["label"]: p for p in many["parameters"]}
    if a.keys() != b.keys():
        return problems + [f"{where}: other labels"]
    worst = (0.0, None)
    spread = max(1e-300, (sum(p["value"] ** 2 for p in a.values()) / len(a)) ** 0.5)
    for label, p in a.items():
        q = b[label]
        error = p.get("error")
        if isinstance(error, (int, float)) and error > 0:
            d = abs(p["value"] - q["value"]) / error
            e = abs(q["error"] - error) / error
            if d > tolerance or e > tolerance:
                problems.append(f"{where}: label {label}: value {q['value']!r} error {q['error']!r} against "
                                f"{p['value']!r} {error!r}")
            worst = max(worst, (d, label))
        else:
            # no errors (decomposition, MINRES): against the spread of the values
            d = abs(p["value"] - q["value"]) / spread
            if d > tolerance:
                problems.append(f"{where}: label {label}: value {q['value']!r} against {p['value']!r}")
            worst = max(worst, (d, label))
    scale = "error" if one.get("has_errors") else "values' RMS"
    print(f"  {where}: largest value difference {worst[0]:.2g} of the {scale} (label {worst[1]}), "
          f"chi2/ndf {many['chi2_ndf']:.10g}", flush=True)
    return problems[:10]


def break_record(path: Path, from_end: int) -> tuple[int, int]:
    """Gives the record `from_end` records before the last of a C binary file an odd length word;
    returns its number (1-based) and byte offset."""
    data = bytearray(path.read_bytes())
    starts = []
    at = 0
    while at < len(data):
        starts.append(at)
        n = struct.unpack_from("<i", data, at)[0]
        at += 4 + abs(n) // 2 * (8 if n < 0 else 4) + abs(n) // 2 * 4
    record = len(starts) - from_end
    struct.pack_into("<i", data, starts[record - 1], 3)
    path.write_bytes(bytes(data))
    return record, starts[record - 1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpede", required=True)
    parser.add_argument("--work", required=True, type=Path)
    args = parser.parse_args()
    if shutil.which("mpirun") is None:
        print("SKIP: mpirun not found (Debian: openmpi-bin)")
        return 77
    gpede = str(Path(args.gpede).resolve())
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    made = run([gpede, "simulate", "--preset", "small", "--tracks", "6000", "--seed", "11", "--files", "3",
                "--threads", "2", "-o", str(work / "data")], work)
    if made.returncode != 0:
        print(made.stdout + made.stderr)
        return 1
    data = work / "data"
    # the middle file gzip-compressed: it goes whole to one process
    with open(data / "mille_001.bin", "rb") as src, gzip.open(data / "mille_001.bin.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (data / "mille_001.bin").unlink()
    base = (data / "steer.txt").read_text().replace("mille_001.bin\n", "mille_001.bin.gz\n")
    base_lines = [line for line in base.splitlines() if not line.startswith("method") and line != "end"]

    problems: list[str] = []
    for name, lines in STEERINGS.items():
        steering = f"steer-{name}.txt"
        (data / steering).write_text("\n".join(base_lines + lines + ["end"]) + "\n")
        outcomes = {}
        for n in (1, 2, 3):
            out = f"out-{name}-{n}"
            p = solve(gpede, data, steering, out, n)
            if p.returncode != 0:
                problems.append(f"{name}, {n} processes: exit code {p.returncode}\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
                break
            outcomes[n] = results(data / out)
        if len(outcomes) == 3:
            for n in (2, 3):
                problems += compare(name, outcomes[1], outcomes[n], n, 1e-2 if "MINRES" in name else 1e-6)

    # A broken record late in the last file: in the last process's share. Every process stops at the
    # end of that pass, the first prints the reader's error and writes it into millepede.end (code
    # 20, the file, record and offset named), and no results are written.
    broken = data / "mille_002.bin"
    (data / "steer-broken.txt").write_text("\n".join(base_lines + ["method inversion 1 0.1", "end"]) + "\n")
    record, offset = break_record(broken, 10)
    p = solve(gpede, data, "steer-broken.txt", "out-broken", 3)
    text = p.stdout + p.stderr
    if p.returncode != 20:
        problems.append(f"broken record: exit code {p.returncode}, not 20\n{text[-2000:]}")
    if "mille_002.bin" not in text or f"record {record} " not in text or f"byte offset {offset}" not in text:
        problems.append(f"broken record: the error does not name the file, record {record} and offset {offset}:\n"
                        f"{text[-2000:]}")
    end = (data / "out-broken" / "millepede.end")
    if not end.exists() or not end.read_text().split()[:1] == ["20"] or "(process 3 of 3)" not in end.read_text():
        problems.append("broken record: millepede.end does not give code 20 and process 3's error: " +
                        (end.read_text() if end.exists() else "missing"))
    if (data / "out-broken" / "millepede.res").exists():
        problems.append("broken record: millepede.res was written")
    else:
        print("  broken record in the last share: exit code 20, the file and record named by the first process "
              "and in millepede.end, no results", flush=True)

    (data / "steer-maxrecord.txt").write_text("\n".join(base_lines + ["maxrecord 100", "method inversion 1 0.1",
                                                                      "end"]) + "\n")
    p = solve(gpede, data, "steer-maxrecord.txt", "out-maxrecord", 2)
    if p.returncode != 10 or "maxrecord" not in p.stderr:
        problems.append(f"maxrecord: exit code {p.returncode}, not 10\n{(p.stdout + p.stderr)[-2000:]}")
    else:
        print("  maxrecord with 2 processes: refused, exit code 10", flush=True)

    for line in problems:
        print("FAIL " + line)
    print("PASS" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
