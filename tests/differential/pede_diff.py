#!/usr/bin/env python3
"""Differential test of gpede against the reference pede (Millepede II).

Both programs solve pede's six built-in test problems with the same steering variants (table in
variants.py); their millepede.end, millepede.res and millepede.log are then compared:
  end code, gpede's exit status, labels, columns, values, differences, errors, presigma, counts,
  global correlations and Sum(Chi^2)/Sum(Ndf) with its ndf.
Standard library only. Exit status: 0 all runs pass, 1 a run failed, 2 usage error, 77 the
reference pede could not be found or built (a CTest skip; 1 instead when CI=true).
README.md beside this file says how to run one variant and how to rerun a random failure.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import fnmatch
import json
import math
import os
import random
import re
import shutil
import signal
import struct
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import variants as vt  # noqa: E402  (the variant table beside this file)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SKIP = 77
PEDE_TIMEOUT_S = 300
GPEDE_TIMEOUT_S = 300
GENERATE_TIMEOUT_S = 120

# Tolerances (README of ../shared/reference): values within 1 % of the error, errors within 1e-3
# relative, chi2/ndf within 1e-7 relative. Numbers in millepede.res carry 5 significant digits
# (G14.5), so each comparison of printed numbers also allows the rounding of both numbers: half a
# unit of the last printed digit of each (between 5e-6 and 5e-5 relative to the number).
VALUE_TOL_SIGMA = 0.01
ERROR_TOL_REL = 1e-3
CHI2_TOL_REL = 1e-7
GLOBALCORR_TOL = 0.0015  # F8.3: two half units of the third decimal plus some slack


# ----------------------------------------------------------------------------------------------
# Small helpers


def fail_setup(message: str) -> None:
    """The reference is unavailable: skip (77), or fail in CI, where everything must be there."""
    in_ci = os.environ.get("CI") == "true"
    print(f"pede_diff: {message}", file=sys.stderr)
    print("pede_diff: " + ("CI=true, so this is a failure" if in_ci else "skipping (exit 77)"),
          file=sys.stderr)
    sys.exit(1 if in_ci else SKIP)


@contextlib.contextmanager
def file_lock(path: Path):
    """Exclusive lock shared by concurrent harness processes (parallel ctest) on one work folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class ProcessResult:
    status: int | None  # None: killed after the timeout
    seconds: float


def run_process(command: list[str], cwd: Path, timeout_s: float, env=None) -> ProcessResult:
    """Runs a command in its own process group with stdout/stderr kept in files of cwd."""
    start = time.monotonic()
    with open(cwd / "stdout.txt", "wb") as out, open(cwd / "stderr.txt", "wb") as err:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env=env)
        try:
            status = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(process)
            status = None
    return ProcessResult(status, time.monotonic() - start)


def kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# ----------------------------------------------------------------------------------------------
# The reference pede and the six problems


def find_pede(args) -> Path:
    if args.pede:
        pede = Path(args.pede)
        if not os.access(pede, os.X_OK):
            fail_setup(f"--pede {pede} is not an executable file")
        return pede.resolve()
    if os.environ.get("GPEDE_PEDE"):
        pede = Path(os.environ["GPEDE_PEDE"])
        if not os.access(pede, os.X_OK):
            fail_setup(f"GPEDE_PEDE={pede} is not an executable file")
        return pede.resolve()
    build = args.shared / "pede" / "build.sh"
    if not build.is_file():
        fail_setup(f"{build} not found: the reference pede cannot be built "
                   f"(give --shared DIR, --pede PATH or GPEDE_PEDE)")
    prefix = args.work / "pede"
    with file_lock(args.work / "pede.lock"):
        if not os.access(prefix / "bin" / "pede", os.X_OK):
            print(f"building the reference pede: {build} {prefix}", flush=True)
        result = subprocess.run(["bash", str(build), str(prefix)], capture_output=True, text=True)
    if result.returncode != 0:
        fail_setup(f"building pede failed ({build}, status {result.returncode}):\n"
                   f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    pede = Path(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else prefix / "bin/pede"
    if not os.access(pede, os.X_OK):
        fail_setup(f"{build} did not produce an executable pede (expected {pede})")
    return pede


def fortran_record_count(path: Path) -> int:
    """Walks a Fortran sequential unformatted file; returns its record count, or -1 if it is cut."""
    count = 0
    size = path.stat().st_size
    with open(path, "rb") as handle:
        offset = 0
        while offset < size:
            head = handle.read(4)
            if len(head) < 4:
                return -1
            (length,) = struct.unpack("<i", head)
            if length <= 0 or offset + 8 + length > size:
                return -1
            handle.seek(length, os.SEEK_CUR)
            (tail,) = struct.unpack("<i", handle.read(4))
            if tail != length:
                return -1
            offset += 8 + length
            count += 1
    return count


def generate_problem(pede: Path, name: str, folder: Path) -> Path:
    """pede writes the problem's files in an empty folder, then solves it with its own steering
    file. Once it lists that steering file the data files are closed, so the process is ended
    there (pede -t=BRLF never ends by itself). A stamp is written only after the files check out."""
    stamp = folder / "generated.stamp"
    with file_lock(folder.parent / f"{name}.lock"):
        if stamp.is_file():
            return folder
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        option = vt.PROBLEMS[name]
        env = dict(os.environ, GFORTRAN_UNBUFFERED_PRECONNECTED="y")
        with open(folder / "generate.out", "wb") as out:
            process = subprocess.Popen([str(pede), option], cwd=folder, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, env=env)
            deadline = time.monotonic() + GENERATE_TIMEOUT_S
            while process.poll() is None and time.monotonic() < deadline:
                if b"Listing of steering file" in (folder / "generate.out").read_bytes():
                    time.sleep(0.5)
                    break
                time.sleep(0.2)
            if process.poll() is None:
                kill_group(process)
        problems = []
        for file in ("mp2str.txt", "mp2con.txt", "mp2tst.bin"):
            if not (folder / file).is_file() or (folder / file).stat().st_size == 0:
                problems.append(f"{file} missing or empty")
        records = fortran_record_count(folder / "mp2tst.bin") if not problems else 0
        if not problems and records <= 0:
            problems.append("mp2tst.bin is not a complete Fortran record file")
        if problems:
            raise RuntimeError(f"generating {name} with `pede {option}` in {folder} failed: "
                               + "; ".join(problems))
        for leftover in folder.iterdir():  # keep only the problem's files
            if leftover.name not in ("mp2str.txt", "mp2con.txt", "mp2tst.bin", "generate.out"):
                leftover.unlink() if leftover.is_file() else shutil.rmtree(leftover)
        stamp.write_text(f"pede {option}: {records} records, generated by {pede}\n")
        return folder


# ----------------------------------------------------------------------------------------------
# Output files


@dataclass
class ResRow:
    tokens: list[str]  # the columns after the label, as printed
    reals: list[str]   # value, presigma, [difference, [error, [global correlation]]]
    counts: list[str]  # printcounts columns (integers)


@dataclass
class ResFile:
    kind: str  # "result" (normal) or "checkinput" (pede's check-input statistics)
    rows: dict[int, ResRow]
    extra: list[str]  # checkinput appearance table lines


INT_RE = re.compile(r"^[+-]?\d+$")


def read_res(path: Path) -> ResFile | None:
    if not path.is_file():
        return None
    lines = path.read_text(errors="replace").splitlines()
    rows: dict[int, ResRow] = {}
    extra: list[str] = []
    if lines and lines[0].lstrip().startswith("***"):
        for line in lines[1:]:
            text = line.strip()
            if text.startswith("!.") or not text.startswith("!"):
                extra.append(" ".join(text.split()))
                continue
            body = text[1:]
            marker = ">" if body.startswith(">") else ""
            tokens = body.lstrip(">").split()
            if tokens and INT_RE.match(tokens[0]):
                rows[int(tokens[0])] = ResRow([marker] + tokens[1:], [], [])
        return ResFile("checkinput", rows, extra)
    for line in lines[1:]:
        tokens = line.split()
        if not tokens:
            continue
        try:
            label = int(tokens[0])
        except ValueError:
            extra.append(line.strip())
            continue
        reals = [t for t in tokens[1:] if not INT_RE.match(t)]
        counts = [t for t in tokens[1:] if INT_RE.match(t)]
        rows[label] = ResRow(tokens[1:], reals, counts)
    return ResFile("result", rows, extra)


@dataclass
class Chi2:
    weighted: bool
    chi2: float
    ndf: int
    nfgb: int
    mean_weight: float | None
    ratio: float


CHI2_HEAD = re.compile(r"Sum\((W\*)?Chi\^2\)/Sum\(Ndf\)(/<W>)?\s*=\s*(\S+)")
NDF_LINE = re.compile(r"/\s*\(\s*([+-]?\d+)\s*-\s*([+-]?\d+)\s*\)")
NUMBER_LINE = re.compile(r"^\s*([/=])\s*(\S+)\s*$")


def read_chi2(path: Path) -> Chi2 | None:
    """The last Sum(Chi^2)/Sum(Ndf) block of a millepede.log."""
    if not path.is_file():
        return None
    lines = path.read_text(errors="replace").splitlines()
    for i in range(len(lines) - 1, -1, -1):
        head = CHI2_HEAD.search(lines[i])
        if not head:
            continue
        try:
            ndf = NDF_LINE.search(lines[i + 1])
            weighted = head.group(1) is not None
            mean_weight = None
            k = i + 2
            if weighted:
                mean_weight = float(NUMBER_LINE.match(lines[k]).group(2))
                k += 1
            ratio = NUMBER_LINE.match(lines[k])
            if not ndf or not ratio or ratio.group(1) != "=":
                return None
            return Chi2(weighted, float(head.group(3)), int(ndf.group(1)), int(ndf.group(2)),
                        mean_weight, float(ratio.group(2)))
        except (IndexError, AttributeError, ValueError):
            return None
    return None


def read_end(path: Path) -> tuple[int, str] | None:
    if not path.is_file():
        return None
    text = path.read_text(errors="replace").strip()
    parts = text.split(None, 1)
    try:
        return int(parts[0]), (parts[1] if len(parts) > 1 else "")
    except (IndexError, ValueError):
        return None


def expected_status(code: int) -> int:
    return 0 if 0 <= code <= 4 else code


def print_quantum(text: str) -> float:
    """Half a unit of the last printed digit of a number as written (0 for an exact zero)."""
    value = float(text)
    if value == 0.0:
        return 0.0
    upper = text.upper()
    exponent = 0
    mantissa = upper
    match = re.match(r"^([+-]?[\d.]+)(?:E?([+-]\d+)|E(\d+))$", upper)
    if match and (match.group(2) or match.group(3)):
        mantissa = match.group(1)
        exponent = int(match.group(2) or match.group(3))
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    return 0.5 * 10.0 ** (exponent - decimals)


# ----------------------------------------------------------------------------------------------
# Comparison


@dataclass
class Check:
    name: str
    ok: bool
    message: str = ""
    worst: float | None = None  # the worst deviation, in the check's unit (sigma or relative)


@dataclass
class Outputs:
    folder: Path
    end: tuple[int, str] | None
    res: ResFile | None
    chi2: Chi2 | None
    status: int | None = None
    seconds: float = 0.0


def read_outputs(folder: Path, process: ProcessResult | None) -> Outputs:
    return Outputs(folder, read_end(folder / "millepede.end"), read_res(folder / "millepede.res"),
                   read_chi2(folder / "millepede.log"),
                   process.status if process else None, process.seconds if process else 0.0)


def compare(pede: Outputs, gpede: Outputs, errors_ref: Outputs | None, baseline: ResFile | None,
            skip: frozenset[str]) -> list[Check]:
    """All checks of one run; those named in skip are left out."""
    checks: list[Check] = []

    def add(check: Check) -> None:
        if check.name not in skip:
            checks.append(check)

    # (a) end codes, (b) gpede's exit status
    if pede.end is None:
        add(Check("end", False, f"pede wrote no millepede.end (status {pede.status})"))
    elif gpede.end is None:
        add(Check("end", False, f"gpede wrote no millepede.end (status {gpede.status}); "
                                f"pede: {pede.end[0]} {pede.end[1]}"))
    else:
        add(Check("end", pede.end[0] == gpede.end[0],
                  f"pede {pede.end[0]} '{pede.end[1]}', gpede {gpede.end[0]} '{gpede.end[1]}'"))
    if gpede.status is None:
        add(Check("exit", False, f"gpede did not finish within {GPEDE_TIMEOUT_S} s"))
    elif gpede.end is None:
        add(Check("exit", gpede.status != 0,
                  f"gpede exit status {gpede.status} without millepede.end"))
    else:  # consistent with gpede's own end code; the end check compares that code with pede's
        want = expected_status(gpede.end[0])
        add(Check("exit", gpede.status == want, f"gpede exit status {gpede.status}, expected "
                                                f"{want} for its end code {gpede.end[0]}"))

    # (c) millepede.res
    pede_wrote = pede.res is not None and pede.end is not None and pede.end[0] <= 4
    if pede_wrote and gpede.res is None:
        add(Check("res", False, "pede wrote millepede.res, gpede did not"))
    if pede.res is not None and gpede.res is not None and pede.end is not None and pede.end[0] <= 4:
        for check in compare_res(pede.res, gpede.res, errors_ref.res if errors_ref else None,
                                 baseline):
            add(check)

    # (d) chi2/ndf
    if pede.chi2 is not None or gpede.chi2 is not None:
        add(compare_chi2(pede.chi2, gpede.chi2))

    # (e) MINRES-QLP: iterations and stop code of each solve
    qlp = compare_minres_qlp(pede.folder / "millepede.log", gpede.folder / "millepede.log")
    if qlp is not None:
        add(qlp)
    return checks


PEDE_QLP_EXIT = re.compile(r"Exit\s+MINRES-QLP\.\s+istop\s*=\s*(\d+)\s+itn\s*=\s*(\d+)")
GPEDE_QLP_EXIT = re.compile(r"MINRES-QLP: (\d+) iterations .*?stop code (\d+)")


def compare_minres_qlp(pede_log: Path, gpede_log: Path) -> Check | None:
    """For runs where pede's log shows MINRES-QLP: the same number of solves and stop codes, and
    iteration counts within 2 (the Lanczos vectors of both programs agree to rounding, which over
    some 60 iterations of a singular system moves the estimates by a few per cent, enough to cross
    the stopping test one iteration earlier or later)."""
    try:
        pede_text = pede_log.read_text(errors="replace")
    except OSError:
        return None
    ref = [(int(itn), int(stop)) for stop, itn in PEDE_QLP_EXIT.findall(pede_text)]
    if not ref:
        return None
    try:
        got = [(int(itn), int(stop)) for itn, stop in GPEDE_QLP_EXIT.findall(gpede_log.read_text(errors="replace"))]
    except OSError:
        got = []
    shown = f"pede {' '.join(f'{i}/{s}' for i, s in ref)}, gpede {' '.join(f'{i}/{s}' for i, s in got)} (iterations/stop)"
    ok = len(ref) == len(got) and all(r[1] == g[1] and abs(r[0] - g[0]) <= 2 for r, g in zip(ref, got))
    return Check("minres-qlp", ok, shown)


def compare_res(ref: ResFile, got: ResFile, errors_ref: ResFile | None,
                baseline: ResFile | None) -> list[Check]:
    checks = []
    if ref.kind != got.kind:
        return [Check("res", False, f"millepede.res kinds differ: pede '{ref.kind}', "
                                    f"gpede '{got.kind}'")]
    missing = sorted(set(ref.rows) - set(got.rows))
    extra = sorted(set(got.rows) - set(ref.rows))
    checks.append(Check("labels", not missing and not extra,
                        f"{len(missing)} labels only in pede {missing[:5]}, "
                        f"{len(extra)} only in gpede {extra[:5]}"))
    common = sorted(set(ref.rows) & set(got.rows))
    if ref.kind == "checkinput":
        bad = [label for label in common if ref.rows[label].tokens != got.rows[label].tokens]
        message = "" if not bad else (f"{len(bad)} lines differ, first label {bad[0]}: pede "
                                      f"{ref.rows[bad[0]].tokens}, gpede {got.rows[bad[0]].tokens}")
        checks.append(Check("checkinput", not bad and ref.extra == got.extra,
                            message or "appearance tables differ"))
        return checks

    bad = [label for label in common
           if len(ref.rows[label].tokens) != len(got.rows[label].tokens)
           or len(ref.rows[label].reals) != len(got.rows[label].reals)]
    checks.append(Check("columns", not bad, "" if not bad else (
        f"{len(bad)} labels with other columns, first {bad[0]}: pede "
        f"'{' '.join(ref.rows[bad[0]].tokens)}', gpede '{' '.join(got.rows[bad[0]].tokens)}'")))

    def sigma_of(label: int) -> tuple[float | None, str]:
        for source, name in ((ref, "pede"), (errors_ref, "pede errors run"), (baseline, "baseline")):
            if source is not None and label in source.rows and len(source.rows[label].reals) >= 4:
                error = abs(float(source.rows[label].reals[3]))
                if error > 0:
                    return error, name
        return None, ""

    def compare_column(index: int, check_name: str) -> Check:
        worst = None  # (ratio to tolerance, label, pede text, gpede text, deviation in sigma)
        failures = 0
        unscaled = 0
        worst_sigma = 0.0  # the largest deviation in units of the error (reported when passing)
        for label in common:
            a, b = ref.rows[label].reals, got.rows[label].reals
            if len(a) <= index or len(b) <= index:
                continue
            x, y = float(a[index]), float(b[index])
            allowance = print_quantum(a[index]) + print_quantum(b[index])
            sigma, _ = sigma_of(label)
            if len(a) < 3 and len(b) < 3:  # fixed in both runs: the start value, as printed
                sigma = None
                tolerance = allowance
                deviation = abs(x - y) / max(abs(x), abs(y), 1e-300)
            elif sigma is None:  # no error anywhere: 1e-3 relative instead of 1 % of the error
                unscaled += 1
                tolerance = 1e-3 * max(abs(x), abs(y)) + allowance
                deviation = abs(x - y) / max(abs(x), abs(y), 1e-300)
            else:
                tolerance = VALUE_TOL_SIGMA * sigma + allowance
                deviation = abs(x - y) / sigma
                worst_sigma = max(worst_sigma, deviation if math.isfinite(deviation) else math.inf)
            ratio = abs(x - y) / tolerance if tolerance > 0 else (0.0 if x == y else math.inf)
            if not math.isfinite(x) or not math.isfinite(y):
                ratio = 0.0 if (math.isnan(x) and math.isnan(y)) or x == y else math.inf
            if ratio > 1.0:
                failures += 1
            if worst is None or ratio > worst[0]:
                worst = (ratio, label, a[index], b[index], deviation, sigma)
        if worst is None:
            return Check(check_name, True, "no common column", 0.0)
        ratio, label, x, y, deviation, sigma = worst
        scale = (f"{deviation:.3g} sigma (sigma {sigma:.5g})" if sigma is not None
                 else f"{deviation:.3g} relative (no error known)")
        return Check(check_name, failures == 0,
                     f"{failures} labels off; worst label {label}: pede {x}, gpede {y}, {scale}, "
                     f"{ratio:.3g} x tolerance" + (f"; {unscaled} labels without error" if unscaled else ""),
                     worst_sigma)

    checks.append(compare_column(0, "values"))
    checks.append(compare_column(2, "differences"))

    # errors: from pede's own run, or from the run named as the error reference
    eref = errors_ref if errors_ref is not None else ref
    worst = None
    failures = 0
    compared = 0
    for label in common:
        b = got.rows[label].reals
        if len(b) < 4 or label not in eref.rows or len(eref.rows[label].reals) < 4:
            continue
        compared += 1
        a_text, b_text = eref.rows[label].reals[3], b[3]
        x, y = float(a_text), float(b_text)
        tolerance = ERROR_TOL_REL * abs(x) + print_quantum(a_text) + print_quantum(b_text)
        ratio = abs(x - y) / tolerance if tolerance > 0 else (0.0 if x == y else math.inf)
        if ratio > 1.0:
            failures += 1
        relative = abs(x - y) / max(abs(x), 1e-300)
        if worst is None or ratio > worst[0]:
            worst = (ratio, label, a_text, b_text, relative)
    if worst is not None:
        ratio, label, x, y, relative = worst
        source = "pede errors run" if errors_ref is not None else "pede"
        checks.append(Check("errors", failures == 0,
                            f"{failures} of {compared} errors off; worst label {label}: {source} {x}, "
                            f"gpede {y}, {relative:.3g} relative, {ratio:.3g} x tolerance", relative))
    elif errors_ref is not None:
        has_errors = any(len(r.reals) >= 4 for r in got.rows.values())
        checks.append(Check("errors", not has_errors or not eref.rows,
                            "the errors reference run has no error column"))

    bad = [label for label in common
           if len(ref.rows[label].reals) >= 2 and len(got.rows[label].reals) >= 2
           and float(ref.rows[label].reals[1]) != float(got.rows[label].reals[1])]
    checks.append(Check("presigma", not bad, "" if not bad else (
        f"{len(bad)} labels differ, first {bad[0]}: pede {ref.rows[bad[0]].reals[1]}, "
        f"gpede {got.rows[bad[0]].reals[1]}")))

    if any(ref.rows[label].counts or got.rows[label].counts for label in common):
        bad = [label for label in common if ref.rows[label].counts != got.rows[label].counts]
        checks.append(Check("counts", not bad, "" if not bad else (
            f"{len(bad)} labels differ, first {bad[0]}: pede {ref.rows[bad[0]].counts}, "
            f"gpede {got.rows[bad[0]].counts}")))

    # global correlations come from the covariance, so from the same run as the errors
    if any(len(got.rows[label].reals) >= 5 or len(ref.rows[label].reals) >= 5 for label in common):
        worst = None
        failures = 0
        for label in common:
            if label not in eref.rows:
                continue
            a, b = eref.rows[label].reals, got.rows[label].reals
            if len(a) < 5 or len(b) < 5:
                continue
            deviation = abs(float(a[4]) - float(b[4]))
            failures += deviation > GLOBALCORR_TOL
            if worst is None or deviation > worst[0]:
                worst = (deviation, label, a[4], b[4])
        if worst is not None:
            checks.append(Check("globalcorr", failures == 0,
                                f"{failures} labels off; worst label {worst[1]}: pede {worst[2]}, "
                                f"gpede {worst[3]}", worst[0]))
    return checks


def relative_difference(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def compare_chi2(ref: Chi2 | None, got: Chi2 | None) -> Check:
    if ref is None or got is None:
        return Check("chi2", False, f"Sum(Chi^2)/Sum(Ndf) in the log of "
                                    f"{'pede only' if got is None else 'gpede only'}")
    if ref.weighted != got.weighted:
        kind = lambda c: "Sum(W*Chi^2)/Sum(Ndf)/<W>" if c.weighted else "Sum(Chi^2)/Sum(Ndf)"
        return Check("chi2", False, f"pede prints {kind(ref)}, gpede {kind(got)}")
    problems = []
    if (ref.ndf, ref.nfgb) != (got.ndf, got.nfgb):
        problems.append(f"ndf: pede ({ref.ndf} - {ref.nfgb}), gpede ({got.ndf} - {got.nfgb})")
    worst = relative_difference(ref.ratio, got.ratio)
    if worst > CHI2_TOL_REL:
        problems.append(f"chi2/ndf: pede {ref.ratio!r}, gpede {got.ratio!r}, {worst:.3g} relative")
    if ref.weighted:
        weight = relative_difference(ref.mean_weight, got.mean_weight)
        if weight > CHI2_TOL_REL:
            problems.append(f"<W>: pede {ref.mean_weight!r}, gpede {got.mean_weight!r}")
        worst = max(worst, weight)
    message = "; ".join(problems) or f"chi2/ndf {got.ratio!r}, {worst:.3g} relative"
    return Check("chi2", not problems, message, worst)


# ----------------------------------------------------------------------------------------------
# Runs


@dataclass
class RunSpec:
    problem: str
    variant: vt.Variant
    folder: Path


@dataclass
class RunResult:
    problem: str
    variant: str
    ok: bool
    checks: list[Check] = field(default_factory=list)
    error: str = ""
    seconds: dict = field(default_factory=dict)
    folder: str = ""
    pede_folders: list = field(default_factory=list)  # the pede runs compared with (shared)


def write_setup(folder: Path, setup: vt.Setup, ctx: vt.ProblemContext, title: str,
                for_pede: bool) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    extra = vt.PEDE_ONLY_LINES.get(ctx.name, ()) if for_pede else ()
    (folder / "steer.txt").write_text(setup.steering(ctx, title, extra))
    for name, content in setup.files.items():
        (folder / name).write_text(content(ctx) if callable(content) else content)


def gpede_command(args, setup: vt.Setup) -> list[str]:
    if args.self_test:
        return [sys.executable, str(Path(__file__).resolve()), "--as-gpede", str(args.pede_path),
                *setup.args, "steer.txt"]
    return [*args.launcher_words, str(args.gpede_path), *args.gpede_args_words, *setup.args, "steer.txt"]


def run_pede(args, setup: vt.Setup, ctx: vt.ProblemContext, folder: Path, title: str) -> Outputs:
    write_setup(folder, setup, ctx, title, for_pede=True)
    process = run_process([str(args.pede_path), *setup.args, "steer.txt"], folder, PEDE_TIMEOUT_S)
    return read_outputs(folder, process)


class PedeRuns:
    """The pede runs of one harness process, shared by every variant with the same pede input.

    Several variants give pede the same steering, title aside (the packed-storage variants, the
    inversion behind a diagonalization's errors, the baseline): pede runs once for them, in
    runs/<problem>/_pede/<first variant>/, and each compares with its outputs.
    """

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.entries: dict[tuple, dict] = {}

    @staticmethod
    def key(setup: vt.Setup, ctx: vt.ProblemContext) -> tuple:
        extra = vt.PEDE_ONLY_LINES.get(ctx.name, ())
        files = tuple(sorted((name, content(ctx) if callable(content) else content)
                             for name, content in setup.files.items()))
        return ctx.name, setup.steering(ctx, "", extra), files, tuple(setup.args)

    def run(self, setup: vt.Setup, ctx: vt.ProblemContext, name: str, title: str,
            user: str) -> Outputs:
        """pede's outputs for setup; name names the folder of a new run, user the variant."""
        key = self.key(setup, ctx)
        with self.lock:
            entry = self.entries.setdefault(key, {"lock": threading.Lock(), "outputs": None,
                                                  "users": set()})
            entry["users"].add((ctx.name, user))
        with entry["lock"]:  # the first user runs pede, the others wait for its outputs
            if entry["outputs"] is None:
                folder = self.args.work / "runs" / ctx.name / "_pede" / name
                entry["outputs"] = run_pede(self.args, setup, ctx, folder, title)
            return entry["outputs"]

    def remove_passed(self, passed: set) -> None:
        """Removes the folders of the pede runs whose every user passed."""
        for entry in self.entries.values():
            if entry["outputs"] is not None and entry["users"] <= passed:
                shutil.rmtree(entry["outputs"].folder, ignore_errors=True)


def run_one(args, spec: RunSpec, ctx: vt.ProblemContext, baseline: ResFile | None,
            pede_runs: PedeRuns) -> RunResult:
    variant = spec.variant
    title = f"gpede differential test {spec.problem}/{variant.name}"
    result = RunResult(spec.problem, variant.name, False, folder=str(spec.folder))
    try:
        pede_setup = variant.pede or variant.gpede
        pede = pede_runs.run(pede_setup, ctx, variant.name, title, variant.name)
        errors_ref = None
        if variant.pede_errors is not None:
            errors_ref = pede_runs.run(variant.pede_errors, ctx, variant.name + "-errors", title,
                                       variant.name)
        skip = set(variant.skip)
        gpede_setup = variant.gpede
        if args.self_test:
            # pede against itself: the stand-in gets pede's own steering; checks against another
            # pede run (errors from an error-reference run) are not meaningful then.
            gpede_setup = pede_setup
            if errors_ref is not None:
                skip.update(("errors", "globalcorr"))
                errors_ref = None
        folder = spec.folder / "gpede"
        write_setup(folder, gpede_setup, ctx, title, for_pede=args.self_test)
        process = run_process(gpede_command(args, gpede_setup), folder, GPEDE_TIMEOUT_S)
        gpede = read_outputs(folder, process)
        result.pede_folders = [str(out.folder) for out in (pede, errors_ref) if out is not None]
        result.seconds = {"pede": round(pede.seconds, 2), "gpede": round(gpede.seconds, 2)}
        if errors_ref is not None:
            result.seconds["pede-errors"] = round(errors_ref.seconds, 2)
        broken = [(name, out) for name, out in (("pede", pede), ("pede errors run", errors_ref))
                  if out is not None and out.status != 0]
        if broken:  # the reference itself failed (pede always exits 0 when it ends)
            name, out = broken[0]
            why = (f"did not finish within {PEDE_TIMEOUT_S} s" if out.status is None
                   else f"crashed (exit status {out.status})")
            result.checks = [Check("pede", False, f"the reference {name} {why}: {out.folder}")]
        else:
            singular = singular_solution(variant, pede, gpede)
            overflow = "" if singular else indefinite_overflow(variant, pede, gpede)
            if singular:
                # A random combination that makes the global matrix singular: its solution is not
                # unique, and which of its many answers each program returns depends on pivot
                # choices; both must say so (end code 3), and the passes before must agree.
                skip.update(("values", "differences", "errors", "globalcorr"))
            if overflow:
                # pede's decomposition of an indefinite matrix ran into NaNs (25) where
                # gpede stops without the step (3): the passes both logged must agree.
                skip.update(("end", "values", "differences", "errors", "globalcorr", "chi2"))
            result.checks = compare(pede, gpede, errors_ref, baseline, frozenset(skip))
            if singular:
                result.checks.append(Check("singular", True, singular))
            if overflow:
                result.checks.append(compare_passes(pede.folder / "millepede.log",
                                                    gpede.folder / "millepede.log"))
                result.checks.append(Check("indefinite", True, overflow))
        result.ok = all(check.ok for check in result.checks)
    except Exception as exc:  # a broken run is a failed run, with the reason
        result.error = f"{type(exc).__name__}: {exc}"
        result.ok = False
    return result


RANK_DEFECT = re.compile(r"rank defect of the symmetric\s+\d+\s*-by-\s*\d+\s+matrix is\s+(\d+)")


def singular_solution(variant, pede: Outputs, gpede: Outputs) -> str:
    """For a random variant whose global matrix pede found singular (a rank defect in its log)
    and which both programs end with code 3: why values are not compared; else ''."""
    if not variant.name.startswith("random-") or pede.end is None or gpede.end is None:
        return ""
    if pede.end[0] != 3 or gpede.end[0] != 3:
        return ""
    try:
        log = (pede.folder / "millepede.log").read_text(errors="replace")
    except OSError:
        return ""
    defects = [int(m) for m in RANK_DEFECT.findall(log)]
    if not defects or max(defects) == 0:
        return ""
    return (f"values not compared: pede found the global matrix singular (rank defect {max(defects)}), "
            f"so the solution is not unique")


NEGATIVE_PIVOTS = re.compile(r"Function not decreasing: the matrix has (\d+) negative pivots?")


def indefinite_overflow(variant, pede: Outputs, gpede: Outputs) -> str:
    """For a random or indefinite-* variant whose matrix down-weighting made indefinite: pede's decomposition keeps
    each non-positive pivot where its inverse belongs; with enough of them its solution holds NaNs
    and pede aborts (25) instead of stopping on "function not decreasing" (3, as in the
    variant indefinite-decomposition). Where pede ends so after a rank defect of its decomposition
    and gpede ends with 3 on negative pivots: why only the passes are compared; else ''."""
    if not variant.name.startswith(("random-", "indefinite-")) or pede.end is None or gpede.end is None:
        return ""
    if pede.end[0] != 25 or gpede.end[0] != 3:
        return ""
    try:
        pede_log = (pede.folder / "millepede.log").read_text(errors="replace")
        gpede_log = (gpede.folder / "millepede.log").read_text(errors="replace")
    except OSError:
        return ""
    defects = [int(m) for m in RANK_DEFECT.findall(pede_log)]
    negative = [int(m) for m in NEGATIVE_PIVOTS.findall(gpede_log)]
    if not defects or max(defects) == 0 or not negative:
        return ""
    return (f"an indefinite matrix ({negative[-1]} negative pivots): pede's decomposition ran "
            f"into NaNs (25), gpede stops without the step (3); values not compared")


# A line of the iteration table in millepede.log (pede's layout, which gpede keeps): iteration,
# pass and the objective function F with 5 digits.
PASS_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d\.\d{5}E[+-]\d+)", re.M)


def compare_passes(pede_log: Path, gpede_log: Path) -> Check:
    """The objective function of every pass that both logs show, to pede's printed digits."""
    def passes(path: Path) -> dict:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return {}
        return {(int(it), int(fc)): text_f for it, fc, text_f in PASS_LINE.findall(text)}
    ref, got = passes(pede_log), passes(gpede_log)
    common = sorted(set(ref) & set(got))
    bad = [key for key in common if ref[key] != got[key]]
    if not common:
        return Check("passes", False, "no pass in the iteration tables of both logs")
    if bad:
        it, fc = bad[0]
        return Check("passes", False, f"{len(bad)} of {len(common)} passes differ, first it {it} "
                                      f"fc {fc}: pede {ref[bad[0]]}, gpede {got[bad[0]]}")
    return Check("passes", True, f"{len(common)} passes agree")


def summary_of(result: RunResult) -> str:
    if result.error:
        return result.error
    failed = [c for c in result.checks if not c.ok]
    if failed:
        return " | ".join(f"{c.name}: {c.message}" for c in failed)
    parts = []
    for check in result.checks:
        if check.name == "values" and check.worst is not None:
            parts.append(f"values {check.worst:.2g} sigma")
        elif check.name == "errors" and check.worst is not None:
            parts.append(f"errors {check.worst:.2g} rel")
        elif check.name == "chi2" and check.worst is not None:
            parts.append(f"chi2/ndf {check.worst:.2g} rel")
    for check in result.checks:
        if check.name == "minres-qlp":
            parts.append("MINRES-QLP " + check.message)
        if check.name in ("singular", "indefinite", "passes"):
            parts.append(check.message)
    return ", ".join(parts) or "end code and exit status"


# ----------------------------------------------------------------------------------------------
# Self test: this script stands in for gpede by running pede


def as_gpede(argv: list[str]) -> int:
    """Runs pede with gpede's command line and returns gpede's exit status (for --self-test)."""
    pede, rest = argv[0], argv[1:]
    pede_args = []
    steering = None
    output_dir = None
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--threads":
            i += 1  # pede takes threads from the steering file only
        elif arg in ("--output-dir", "-o"):
            i += 1
            output_dir = rest[i]
        elif arg == "-s":
            pede_args.append("-s")
        elif arg == "-q":
            pass
        else:
            steering = arg
        i += 1
    cwd = Path(output_dir) if output_dir else Path.cwd()
    steering_path = str(Path(steering).resolve()) if steering else "steerfile"
    subprocess.run([pede, *pede_args, steering_path], cwd=cwd, check=False)
    end = read_end(cwd / "millepede.end")
    return expected_status(end[0]) if end else 1


def detection_self_check(baseline: ResFile, chi2: Chi2 | None) -> list[str]:
    """Perturbs a baseline result slightly beyond each tolerance; every perturbation must fail."""
    problems = []
    label = next((l for l, row in baseline.rows.items() if len(row.reals) >= 4), None)
    if label is None:
        return problems

    def perturbed(index: int, factor: float) -> ResFile:
        """Moves one number by factor x its tolerance (the print allowance of both included)."""
        rows = {l: ResRow(list(r.tokens), list(r.reals), list(r.counts)) for l, r in baseline.rows.items()}
        row = rows[label]
        text = row.reals[index]
        x, sigma = float(text), abs(float(row.reals[3]))
        scale = VALUE_TOL_SIGMA * sigma if index == 0 else ERROR_TOL_REL * abs(x)
        new = x + factor * (scale + print_quantum(text))  # printed with 8 digits below
        row.reals[index] = f"{new:.7E}"
        return ResFile(baseline.kind, rows, baseline.extra)

    def expect_fail(name: str, res: ResFile, check_name: str) -> None:
        checks = {c.name: c for c in compare_res(baseline, res, None, None)}
        if checks[check_name].ok:
            problems.append(f"{name} was not detected")
        others = [c.name for c in checks.values() if not c.ok and c.name != check_name]
        if others:
            problems.append(f"{name} also failed {others}")

    expect_fail("value + 1.05 x tolerance", perturbed(0, 1.05), "values")
    expect_fail("error + 1.05 x tolerance", perturbed(3, 1.05), "errors")
    for index, name in ((0, "values"), (3, "errors")):
        if not {c.name: c.ok for c in compare_res(baseline, perturbed(index, 0.9), None, None)}[name]:
            problems.append(f"{name}: a change of 0.9 x tolerance fails")
    same = {c.name: c.ok for c in compare_res(baseline, baseline, None, None)}
    if not all(same.values()):
        problems.append(f"a result compared with itself fails {same}")
    if chi2 is not None:
        other = Chi2(chi2.weighted, chi2.chi2, chi2.ndf, chi2.nfgb, chi2.mean_weight,
                     chi2.ratio * (1 + 3e-7))
        if compare_chi2(chi2, other).ok:
            problems.append("chi2/ndf x (1 + 3e-7) was not detected")
        other = Chi2(chi2.weighted, chi2.chi2, chi2.ndf, chi2.nfgb + 1, chi2.mean_weight, chi2.ratio)
        if compare_chi2(chi2, other).ok:
            problems.append("nfgb + 1 was not detected")
    return problems


# ----------------------------------------------------------------------------------------------
# Main


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Runs the reference pede and gpede on the same steering variants and compares "
                    "millepede.end, millepede.res and millepede.log.")
    parser.add_argument("--gpede", help="the gpede binary under test")
    parser.add_argument("--work", help="work folder (pede build, problems, runs, report.json)")
    parser.add_argument("--pede", help="the reference pede (default: $GPEDE_PEDE, else built with "
                                       "<shared>/pede/build.sh <work>/pede)")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared",
                        help="the shared folder (default: <repo>/../shared)")
    parser.add_argument("--problem", nargs="+", choices=list(vt.PROBLEMS), metavar="NAME",
                        help=f"problems to run: {' '.join(vt.PROBLEMS)} (default: all)")
    parser.add_argument("--variant", nargs="+", metavar="GLOB", help="variant names (shell patterns)")
    parser.add_argument("--quick", action="store_true", help="only the variants marked quick")
    parser.add_argument("--all-problems", action="store_true",
                        help="every variant on every problem it lists (default: on WC and BP only the "
                             "quick, random and core ones, see variants.in_default_selection)")
    parser.add_argument("--random", type=int, default=0, metavar="N",
                        help="N extra variants drawn at random from keyword choices")
    parser.add_argument("--seed", type=int, help="seed of the random variants (default: new)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs in parallel")
    parser.add_argument("--launcher", default="", metavar="COMMAND",
                        help="runs gpede under this launcher, e.g. 'mpirun -np 2 --oversubscribe' "
                             "(variants with checkinput, printrecord or maxrecord are left out)")
    parser.add_argument("--gpede-args", default="", metavar="ARGS",
                        help="more gpede options for every run, e.g. --gpede-args=--distributed-solve")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--keep", action="store_true", help="keep the folders of passing runs too")
    parser.add_argument("--report", type=Path, help="the JSON report (default: <work>/report.json)")
    parser.add_argument("--self-test", action="store_true",
                        help="compare pede with itself (a stand-in runs pede for gpede): every run "
                             "must pass; also checks that small deviations are detected")
    args = parser.parse_args(argv)
    return parser, args


SINGLE_PROCESS_KEYWORDS = ("checkinput", "printrecord", "maxrecord")


def select_variants(args, seed: int) -> list[vt.Variant]:
    chosen = list(vt.VARIANTS)
    chosen += [vt.random_variant(seed, i) for i in range(args.random)]
    if args.quick:
        chosen = [v for v in chosen if v.quick or v.name.startswith("random-")]
    if args.variant:
        chosen = [v for v in chosen if any(fnmatch.fnmatchcase(v.name, g) for g in args.variant)]
    if args.launcher:
        # What needs every record in one process is refused under a launcher of several.
        chosen = [v for v in chosen if not any(k in v.gpede.describe().lower() for k in SINGLE_PROCESS_KEYWORDS)]
    return chosen


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--as-gpede"]:
        return as_gpede(argv[1:])
    parser, args = parse_args(argv)
    args.launcher_words = shlex.split(args.launcher)
    args.gpede_args_words = shlex.split(args.gpede_args)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    variants = select_variants(args, seed)
    problems = args.problem or list(vt.PROBLEMS)
    runs = [(p, v) for v in variants for p in problems
            if p in v.problems and (args.all_problems or vt.in_default_selection(v, p))]
    if args.list:
        listed = [v for v in variants if any(rv is v for _, rv in runs)]
        for v in listed:
            where = ",".join(p for p, rv in runs if rv is v)
            print(f"{v.name:34s} {'quick ' if v.quick else '      '}{where:28s} {v.note}")
        print(f"{len(listed)} variants, {len(runs)} runs")
        return 0
    if not args.work or (not args.gpede and not args.self_test):
        parser.error("--work and --gpede (or --self-test) are required")
    args.work = Path(args.work).resolve()
    args.shared = args.shared.resolve()
    if not args.self_test:
        args.gpede_path = Path(args.gpede).resolve()
        if not os.access(args.gpede_path, os.X_OK):
            parser.error(f"--gpede {args.gpede} is not an executable file")
    print(f"random seed: {seed}", flush=True)
    if not runs:
        print("no runs selected")
        return 2
    args.pede_path = find_pede(args)
    print(f"pede: {args.pede_path}", flush=True)
    print("gpede: " + ("pede (self-test)" if args.self_test else str(args.gpede_path)), flush=True)
    started = time.monotonic()

    used = [p for p in problems if any(pr == p for pr, _ in runs)]
    jobs = max(1, args.jobs)
    contexts: dict[str, vt.ProblemContext] = {}
    baselines: dict[str, Outputs] = {}
    pede_runs = PedeRuns(args)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        # the problems, then a baseline pede run of each (labels, and errors for 4-column methods)
        futures = {p: pool.submit(generate_problem, args.pede_path, p, args.work / "problems" / p)
                   for p in used}
        for name, future in futures.items():
            try:
                future.result()
            except Exception as exc:
                print(f"FAIL {name}: {exc}")
                return 1

        def baseline_run(name: str) -> Outputs:
            ctx = vt.ProblemContext.plain(name, args.work / "problems" / name)
            return pede_runs.run(vt.BASELINE, ctx, "_baseline", f"gpede differential test {name}/baseline",
                                 "_baseline")

        futures = {p: pool.submit(baseline_run, p) for p in used}
        for name, future in futures.items():
            out = future.result()
            if out.res is None or out.end is None:
                print(f"FAIL {name}: the baseline pede run wrote no results ({out.folder})")
                return 1
            baselines[name] = out
            contexts[name] = vt.ProblemContext.from_baseline(name, args.work / "problems" / name,
                                                             out.res.rows)
        if args.self_test:
            for name in used:
                for problem in detection_self_check(baselines[name].res, baselines[name].chi2):
                    print(f"FAIL self-check {name}: {problem}")
                    return 1
            print("self-check: perturbations beyond each tolerance are detected", flush=True)
        print(f"{len(runs)} runs of {len({v.name for _, v in runs})} variants on {len(used)} problems, "
              f"{jobs} in parallel", flush=True)

        specs = [RunSpec(p, v, args.work / "runs" / p / v.name) for p, v in runs]
        futures = [pool.submit(run_one, args, s, contexts[s.problem], baselines[s.problem].res,
                               pede_runs) for s in specs]
        results: list[RunResult] = []
        for spec, future in zip(specs, futures):
            result = future.result()
            results.append(result)
            state = "PASS" if result.ok else "FAIL"
            seeded = f" [random seed {seed}]" if spec.variant.name.startswith("random-") else ""
            print(f"{state} {spec.problem:5s} {spec.variant.name:34s} {summary_of(result)}{seeded}",
                  flush=True)
            if not result.ok:
                print(f"     gpede in {spec.folder / 'gpede'}, pede in "
                      + ", ".join(result.pede_folders or ["(no run)"]), flush=True)
            if result.ok and not args.keep:
                shutil.rmtree(spec.folder, ignore_errors=True)
        if not args.keep:
            pede_runs.remove_passed({(r.problem, r.variant) for r in results if r.ok} |
                                    {(p, "_baseline") for p in used})

    elapsed = time.monotonic() - started
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} of {len(results)} runs pass, {len(failed)} fail "
          f"({elapsed:.0f} s with {jobs} jobs; random seed {seed})")
    if failed:
        print("failed: " + ", ".join(f"{r.problem}/{r.variant}" for r in failed))
        if any(r.variant.startswith("random-") for r in failed):
            print(f"rerun the random variants with: --seed {seed} --random {args.random}")
    write_report(args, seed, variants, results, elapsed)
    return 0 if not failed else 1


def write_report(args, seed, variants, results, elapsed) -> None:
    by_name = {v.name: v for v in variants}
    report = {
        "seed": seed,
        "pede": str(args.pede_path),
        "gpede": "self-test" if args.self_test else str(args.gpede_path),
        "seconds": round(elapsed, 1),
        "passed": sum(r.ok for r in results),
        "failed": sum(not r.ok for r in results),
        "runs": [{
            "problem": r.problem,
            "variant": r.variant,
            "ok": r.ok,
            "error": r.error,
            "seconds": r.seconds,
            "folder": r.folder,
            "pede_folders": r.pede_folders,
            "note": by_name[r.variant].note,
            "steering": by_name[r.variant].gpede.describe(),
            "checks": [{"name": c.name, "ok": c.ok, "message": c.message, "worst": c.worst}
                       for c in r.checks],
        } for r in results],
    }
    path = args.report or args.work / ("report-self-test.json" if args.self_test else "report.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"report: {path}")


if __name__ == "__main__":
    sys.exit(main())
