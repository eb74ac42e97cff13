#!/usr/bin/env python3
"""gpede under mpirun against gpede alone, on data it simulates (no outside data needed).

A small misaligned detector (wires fixed, so that the system is well conditioned) with three
binary files (one gzip-compressed), solved with several steerings by one process, by `mpirun -np 2`
and `-np 3` (the first process solves), and with `--distributed-solve` by `-np 2` and `-np 4`
(ScaLAPACK on a 1 x 2 and a 2 x 2 grid). The records are split over the processes, so every sum is
formed in another order, and the answers must agree to rounding with the same records used and
rejected and the same iterations: values within 1e-10 of max(|value|, error), errors within 1e-6,
chi2/ndf within 1e-12 (MINRES, which stops on its tolerance: 1e-8 and 1e-10). Then what must
fail does: a broken record in the last process's share ends the whole run with the reader's error
and exit code and no results; `maxrecord` is refused. Exit 77 (skipped) where mpirun is missing.

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
    "fullMINRES": ["mrestol 1.0e-10", "method fullMINRES 2 0.1"],
    # sparse storage: the pattern made from every process's records (the distributed solve keeps
    # the matrix dense)
    "sparseMINRES": ["mrestol 1.0e-10", "method sparseMINRES 2 0.1"],
}


def launcher(n: int) -> list[str]:
    words = ["mpirun", "-np", str(n), "--oversubscribe", "--bind-to", "none"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        words.append("--allow-run-as-root")
    return words


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMPI_MCA_rmaps_base_oversubscribe="1")
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)


def solve(gpede: str, folder: Path, steering: str, out: str, processes: int,
          distributed: bool = False, extra: list[str] = ()) -> subprocess.CompletedProcess:
    command = ([gpede, steering, "--output-dir", out, "--threads", "1"] + (["--distributed-solve"] if distributed else [])
               + list(extra))
    if processes > 1:
        command = launcher(processes) + command
    return run(command, folder)


def results(folder: Path) -> dict:
    return json.loads((folder / "gpede.json").read_text())


def compare(name: str, one: dict, many: dict, where: str, values: float, chi2: float) -> list[str]:
    """`many` against `one`: the same exit code, counts and passes; every value within `values` of
    max(|value|, its error) (of the values' RMS for methods without errors), errors within 1e-6,
    chi2/ndf within `chi2`, relative."""
    problems = []
    where = f"{name}, {where}"
    for key in ("exit_code", "ndf_sum", "nfgb"):
        if one[key] != many[key]:
            problems.append(f"{where}: {key} {many[key]} against {one[key]} in one process")
    if one["records"] != many["records"]:
        problems.append(f"{where}: records {many['records']} against {one['records']}")
    if len(one["iterations"]) != len(many["iterations"]):
        problems.append(f"{where}: {len(many['iterations'])} passes against {len(one['iterations'])}")
    if abs(many["chi2_ndf"] - one["chi2_ndf"]) > chi2 * abs(one["chi2_ndf"]):
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
        has_error = isinstance(error, (int, float)) and error > 0
        d = abs(p["value"] - q["value"]) / max(abs(p["value"]), error if has_error else spread)
        if d > values:
            problems.append(f"{where}: label {label}: value {q['value']!r} against {p['value']!r}")
        if has_error and abs(q["error"] - error) > 1e-6 * error:
            problems.append(f"{where}: label {label}: error {q['error']!r} against {error!r}")
        worst = max(worst, (d, label))
    print(f"  {where}: largest value difference {worst[0]:.2g} (label {worst[1]}), "
          f"chi2/ndf {many['chi2_ndf']:.13g} against {one['chi2_ndf']:.13g}", flush=True)
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
    made = run([gpede, "simulate", "--preset", "small", "--tracks", "5000", "--seed", "11", "--files", "3",
                "--threads", "2", "--fix-wires", "-o", str(work / "data")], work)
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
    # (processes, distributed solve): summed onto process 0, which solves; or spread over all in
    # ScaLAPACK's layout and solved by all (1 x 2 and 2 x 2 process grids).
    runs = [(2, False), (3, False), (2, True), (4, True)]
    for name, lines in STEERINGS.items():
        steering = f"steer-{name}.txt"
        (data / steering).write_text("\n".join(base_lines + lines + ["end"]) + "\n")
        p = solve(gpede, data, steering, f"out-{name}-1", 1)
        if p.returncode != 0:
            problems.append(f"{name}, one process: exit code {p.returncode}\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
            continue
        one = results(data / f"out-{name}-1")
        for n, distributed in runs:
            out = f"out-{name}-{n}{'-distributed' if distributed else ''}"
            where = f"{n} processes" + (", distributed solve" if distributed else "")
            p = solve(gpede, data, steering, out, n, distributed)
            if p.returncode != 0:
                problems.append(f"{name}, {where}: exit code {p.returncode}\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
                continue
            many = results(data / out)
            if distributed and "distributed" not in many["matrix_storage"]:
                problems.append(f"{name}, {where}: matrix storage '{many['matrix_storage']}'")
            if not distributed and many["matrix_storage"] != one["matrix_storage"]:
                problems.append(f"{name}, {where}: matrix storage '{many['matrix_storage']}' against "
                                f"'{one['matrix_storage']}' in one process")
            if "MINRES" in name:  # stops on its tolerance, which rounding can move by an iteration
                problems += compare(name, one, many, where, 1e-8, 1e-10)
            else:
                problems += compare(name, one, many, where, 1e-10, 1e-12)

    # The distributed solve taken by itself where one process cannot hold the solution: with
    # --memory between what diagonalization needs on one process (the matrix and its eigenvectors,
    # 2 n^2 doubles) and what it needs on each of 4 (the full accumulated matrix and a quarter of
    # both, 1.5 n^2), one process and 2 processes (2 n^2 each) are refused before the first pass,
    # and 4 take the distributed solve with the answers of one process without the limit.
    one_diag = data / "out-diagonalization-1"
    if (one_diag / "gpede.json").exists():
        one = results(one_diag)
        m = one["constraints"]
        n = one["nfgb"] + m
        single = 2 * n * n * 8 + n * m * 8 + 64 * n
        spread = n * n * 8 + 64 * n + 2 * n * n * 8 / 4 + n * m * 8
        limit = ["--memory", f"{(single + spread) / 2 / 1e9:.6f}"]
        for n_proc, want in ((1, "not enough memory"), (2, "solved over the 2 processes it would need")):
            p = solve(gpede, data, "steer-diagonalization.txt", f"out-memory-{n_proc}", n_proc, extra=limit)
            if p.returncode != 30 or want not in p.stderr:
                problems.append(f"memory limit, {n_proc} process(es): exit code {p.returncode}, not 30 with "
                                f"'{want}'\n{(p.stdout + p.stderr)[-2000:]}")
            elif (data / f"out-memory-{n_proc}" / "millepede.res").exists():
                problems.append(f"memory limit, {n_proc} process(es): refused, but millepede.res was written")
        p = solve(gpede, data, "steer-diagonalization.txt", "out-memory-4", 4, extra=limit)
        if p.returncode != 0:
            problems.append(f"memory limit, 4 processes: exit code {p.returncode}\n{(p.stdout + p.stderr)[-2000:]}")
        else:
            many = results(data / "out-memory-4")
            if "distributed over 4" not in many["matrix_storage"]:
                problems.append(f"memory limit, 4 processes: matrix storage '{many['matrix_storage']}'")
            problems += compare("diagonalization", one, many, "4 processes, distributed solve for memory", 1e-10, 1e-12)
            print("  memory limit: refused on 1 and 2 processes (exit code 30), solved over 4 (distributed)",
                  flush=True)

    # Time dependence: records with their runs (a half-shell and the pixel bows step), intervals
    # given and found by the search; each process relabels its share of the records, and the
    # search's first look at the times and its two solutions are shared.
    made = run([gpede, "simulate", "--preset", "small", "--tracks", "6000", "--seed", "12", "--files", "2",
                "--threads", "2", "--fix-wires", "--runs", "6", "-o", str(work / "timed")], work)
    if made.returncode != 0:
        problems.append(f"time dependence: simulate failed\n{made.stdout[-1000:]}{made.stderr[-1000:]}")
    else:
        timed = work / "timed"
        text = (timed / "steer.txt").read_text()
        auto = "\n".join("intervals auto" if line.startswith("intervals") else line for line in text.splitlines())
        (timed / "steer-auto.txt").write_text(auto + "\n")
        # without `timestride`: the stride found from the records' labels, read by every process
        strideless = "\n".join(line for line in text.splitlines() if not line.startswith("timestride"))
        (timed / "steer-nostride.txt").write_text(strideless + "\n")
        for name, steering, n_proc in (("time", "steer.txt", 2), ("time-auto", "steer-auto.txt", 3),
                                       ("time-stride-found", "steer-nostride.txt", 3)):
            p1 = solve(gpede, timed, steering, f"out-{name}-1", 1)
            pn = solve(gpede, timed, steering, f"out-{name}-{n_proc}", n_proc)
            if p1.returncode != 0 or pn.returncode != 0:
                problems.append(f"{name}: exit codes {p1.returncode} and {pn.returncode}\n{pn.stdout[-1500:]}{pn.stderr[-1500:]}")
                continue
            one, many = results(timed / f"out-{name}-1"), results(timed / f"out-{name}-{n_proc}")
            if one.get("time_intervals") != many.get("time_intervals"):
                problems.append(f"{name}: intervals {many.get('time_intervals')} against {one.get('time_intervals')}")
            starts = [[s["start"] for s in r.get("interval_search", {}).get("starts", [])] for r in (one, many)]
            if starts[0] != starts[1]:
                problems.append(f"{name}: search starts {starts[1]} against {starts[0]} in one process")
            elif name == "time-auto":
                print(f"  {name}: starts {starts[0]} found alike by 1 and {n_proc} processes", flush=True)
            problems += compare(name, one, many, f"{n_proc} processes", 1e-10, 1e-12)
            if name == "time-stride-found" and (one.get("time_stride") != 10000000 or
                                                many.get("time_stride") != 10000000):
                problems.append(f"{name}: strides {one.get('time_stride')} and {many.get('time_stride')}, "
                                "not 10000000 (the wires' labels reach 2030894)")

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
