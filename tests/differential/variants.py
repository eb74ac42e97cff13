"""The steering variants of the differential test (pede_diff.py), and the random ones.

A variant is the steering of one gpede run and, where pede is known to be wrong or does something
else on purpose, the steering of the pede run it is compared with:
  gpede        its Setup: keyword lines, extra text files, command-line arguments;
  pede         the reference steering for pede (default: the same as gpede's);
  pede_errors  a second pede run whose error column is the reference for gpede's errors;
  skip         checks that do not apply (names as in pede_diff.compare);
  problems     the test problems where the variant means something.
Every steering file lists the problem's constraint file (unless constraints=False), the extra
text files and the binary file by absolute path, after `Fortranfiles`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Union

# Problem name -> pede's option that writes it (mptest1.f90, mptest2.f90).
PROBLEMS = {"WC": "-t", "SL0": "-t=SL0", "SLE": "-t=SLE", "BP": "-t=BP", "BRLF": "-t=BRLF",
            "BRLC": "-t=BRLC"}
ALL = tuple(PROBLEMS)

# Lines added to pede's steering only, before `end`. BRLF and BRLC fit their tracks with broken
# lines, whose local matrix pede solves as a bordered band matrix. For the pull histograms pede
# then computes only the band part of the local covariance but reads all of it, so the pulls take
# whatever was left in memory; a NaN among them sends the histogram binning into an endless loop
# (pede hangs at random, also `pede -t=BRLF`). `localfit 0` switches the pull calculation off;
# values, errors and chi2 stay the same to the last digit.
PEDE_ONLY_LINES = {"BRLF": ("localfit 0",), "BRLC": ("localfit 0",)}


@dataclass
class ProblemContext:
    """What the variants may use of a problem: its files and, from the baseline pede run, its labels."""
    name: str
    folder: Path
    labels: list = field(default_factory=list)     # every label in millepede.res
    variable: list = field(default_factory=list)   # labels fitted in the baseline
    fixed: list = field(default_factory=list)      # labels fixed there (entries cut)
    values: dict = field(default_factory=dict)     # baseline value per label
    constraints: list = field(default_factory=list)  # [[label, ...], ...] from mp2con.txt

    @property
    def con(self) -> Path:
        return self.folder / "mp2con.txt"

    @property
    def bin(self) -> Path:
        return self.folder / "mp2tst.bin"

    @classmethod
    def plain(cls, name: str, folder: Path) -> "ProblemContext":
        return cls(name, folder)

    @classmethod
    def from_baseline(cls, name: str, folder: Path, rows: dict) -> "ProblemContext":
        ctx = cls(name, folder)
        ctx.labels = sorted(rows)
        ctx.variable = [l for l in ctx.labels if len(rows[l].reals) >= 3]
        ctx.fixed = [l for l in ctx.labels if len(rows[l].reals) < 3]
        ctx.values = {l: float(rows[l].reals[0]) for l in ctx.labels}
        current = None
        for line in ctx.con.read_text().splitlines():
            tokens = line.split()
            if not tokens:
                continue
            if tokens[0].lower().startswith("constraint"):
                current = []
                ctx.constraints.append(current)
            elif current is not None and re.match(r"^\d+$", tokens[0]):
                current.append(int(tokens[0]))
        return ctx


Lines = Union[tuple, Callable[[ProblemContext], list]]


@dataclass(frozen=True)
class Setup:
    """One program run: steering keyword lines (after the data files), lines before the constraint
    file, extra text files (written into the run folder and listed after the constraint file),
    an optional binary-file weight, and command-line arguments."""
    lines: Lines = ()
    head: tuple = ()
    constraints: bool = True
    weight: str | None = None
    files: dict = field(default_factory=dict)
    args: tuple = ()

    def steering(self, ctx: ProblemContext, title: str, extra: tuple = ()) -> str:
        body = ["* " + title, "Fortranfiles"]
        body += list(self.head)
        if self.constraints:
            body.append(str(ctx.con))
        body += list(self.files)
        body.append(str(ctx.bin) + (f" -- {self.weight}" if self.weight else ""))
        body += list(self.lines(ctx) if callable(self.lines) else self.lines)
        body += list(extra)
        body.append("end")
        return "\n".join(body) + "\n"

    def describe(self) -> str:
        """The steering with the problem's paths left symbolic (for --list and report.json)."""
        parts = list(self.head)
        if self.constraints:
            parts.append("<mp2con.txt>")
        parts += [f"<{name}>" for name in self.files]
        parts.append("<mp2tst.bin>" + (f" -- {self.weight}" if self.weight else ""))
        parts += ([f"<{self.lines.__name__}(problem)>"] if callable(self.lines) else list(self.lines))
        text = " / ".join(parts)
        return text + (f"  [args: {' '.join(self.args)}]" if self.args else "")


@dataclass(frozen=True)
class Variant:
    name: str
    gpede: Setup
    problems: tuple = ("SL0", "BP")
    pede: Setup | None = None
    pede_errors: Setup | None = None
    skip: frozenset = frozenset()
    quick: bool = False
    note: str = ""


METHOD_RE = re.compile(r"^\s*method\s+(\S+)(.*)$", re.IGNORECASE)


def with_method(lines: tuple, method: str) -> tuple:
    """The same lines with the method name replaced (iterations and dflim kept)."""
    return tuple(METHOD_RE.sub(lambda m: f"method {method}{m.group(2)}", l) for l in lines)


def method_of(lines: tuple) -> str | None:
    found = [METHOD_RE.match(l).group(1).lower() for l in lines if METHOD_RE.match(l)]
    return found[-1] if found else None


def variant(name: str, *lines: str, problems=("SL0", "BP"), quick=False, note="", skip=(),
            pede_lines: tuple | None = None, pede_args: tuple | None = None,
            pede_errors_lines: tuple | None = None, **setup) -> Variant:
    """A variant whose gpede steering is `lines`; pede's documented defects are routed around:
    - diagonalization with elimination: pede's errors are not transformed back from the reduced
      space, so gpede's errors are compared with pede's inversion run of the same steering;
    - diagonalization with withmultipliers: pede's eigen-solution of the bordered matrix loses
      the smallest eigenvalues in rounding, so pede runs the same steering with inversion."""
    gpede = Setup(lines=tuple(lines), **setup)
    pede = None
    pede_errors = None
    if pede_lines is not None or pede_args is not None:
        pede = replace(gpede, lines=tuple(pede_lines) if pede_lines is not None else gpede.lines,
                       args=tuple(pede_args) if pede_args is not None else gpede.args)
    if pede_errors_lines is not None:
        pede_errors = replace(gpede, lines=tuple(pede_errors_lines))
    reference = pede or gpede
    multipliers = not callable(reference.lines) and any(
        l.strip().lower().startswith("withmultipliers") for l in reference.lines)
    if multipliers and method_of(reference.lines) == "decomposition":
        # not a defect to route around, but easy to miss: gpede has to do the same
        note = (note + "; " if note else "") + "pede's decomposition eliminates the constraints even with withmultipliers"
    if not callable(reference.lines) and method_of(reference.lines) == "diagonalization":
        if multipliers:
            pede = replace(reference, lines=with_method(reference.lines, "inversion"))
            note = (note + "; " if note else "") + "pede reference: inversion (bordered diagonalization inaccurate)"
        elif pede_errors is None:
            pede_errors = replace(reference, lines=with_method(reference.lines, "inversion"))
            note = (note + "; " if note else "") + "errors from pede's inversion run (pede's diagonalization errors wrong with elimination)"
    return Variant(name, gpede, tuple(problems), pede, pede_errors, frozenset(skip), quick, note)


# ----------------------------------------------------------------------------------------------
# Extra text files, built from the problem's labels


def _spread(labels: list, count: int, offset: int = 0) -> list:
    """count labels spread evenly over the list, starting at offset."""
    if not labels:
        return []
    step = max(1, len(labels) // count)
    return [labels[(offset + i * step) % len(labels)] for i in range(min(count, len(labels)))]


def parameter_file(ctx: ProblemContext) -> str:
    """Start values and individual presigmas for some labels, and some labels fixed (-1)."""
    lines = ["Parameter"]
    for i, label in enumerate(_spread(ctx.variable, 12, 3)):
        lines.append(f"{label:10d}  {0.0005 * (i % 5 - 2):.6f}  {[0.0, 0.005, 0.05][i % 3]:.4f}")
    for label in _spread(ctx.variable, 4, 7):
        lines.append(f"{label:10d}  {0.001:.6f}  -1.0")
    return "\n".join(lines) + "\n"


def infeasible_start_file(ctx: ProblemContext) -> str:
    """Start values that violate the problem's first constraint (its sum becomes non-zero)."""
    lines = ["Parameter"]
    for i, label in enumerate(ctx.constraints[0][:3] if ctx.constraints else []):
        lines.append(f"{label:10d}  {0.002 * (i + 1):.6f}  0.0")
    return "\n".join(lines) + "\n"


def fixed_only_constraint_file(ctx: ProblemContext) -> str:
    """A constraint on labels that are all fixed (entries cut or, if none, a presigma -1)."""
    lines = []
    labels = ctx.fixed[:3]
    if not labels:  # no label fails the entries cut: fix three with presigma -1
        labels = _spread(ctx.variable, 3, 5)
        lines += ["Parameter"] + [f"{l:10d}  0.0  -1.0" for l in labels]
    lines.append("Constraint 0.0")
    lines += [f"{l:10d}  1.0" for l in labels]
    return "\n".join(lines) + "\n"


def unknown_label_constraint_file(ctx: ProblemContext) -> str:
    """A constraint naming label 99999, which is in no record, beside two fitted labels."""
    a, b = _spread(ctx.variable, 2, 11)
    return f"Constraint 0.0\n     99999  1.0\n{a:10d}  1.0\n{b:10d}  -1.0\n"


def measurement_one_file(ctx: ProblemContext) -> str:
    label = _spread(ctx.variable, 1, 9)[0]
    value = ctx.values.get(label, 0.0)
    return f"Measurement {value + 0.001:.6f} 0.0005\n{label:10d}  1.0\n"


def measurement_several_file(ctx: ProblemContext) -> str:
    labels = _spread(ctx.variable, 3, 13)
    return ("Measurement 0.002 0.0005\n" + f"{labels[0]:10d}  1.0\n{labels[1]:10d}  -1.0\n"
            f"{labels[2]:10d}  0.5\n")


# ----------------------------------------------------------------------------------------------
# The table

INV3 = "method inversion 3 0.001"
VARIANTS: list = []

# pede takes 4 to 6 s for a run of WC or BP, against about 1 s on the other problems. By default
# (the test suite's run) a variant runs there only where it is quick, random, listed for no other
# problem, or in EXPENSIVE_ALSO (each method and constraint mode once more on the large problems);
# pede_diff.py --all-problems runs every variant on every problem it lists.
EXPENSIVE = ("WC", "BP")
EXPENSIVE_ALSO = {"inversion-mult", "decomposition", "diagonalization-mult", "fullMINRES", "sparseMINRES-band"}


def in_default_selection(v: "Variant", problem: str) -> bool:
    return (problem not in EXPENSIVE or v.quick or v.name.startswith("random-") or v.name in EXPENSIVE_ALSO
            or all(p in EXPENSIVE for p in v.problems))


def add(*variants: Variant) -> None:
    VARIANTS.extend(variants)


# Exact methods, with constraints by elimination (default) and by Lagrange multipliers.
for method in ("inversion", "decomposition", "diagonalization"):
    add(variant(method, f"method {method} 3 0.001", problems=ALL,
                quick=method in ("inversion", "diagonalization")))
    add(variant(f"{method}-mult", "withmultipliers", f"method {method} 3 0.001", problems=ALL,
                quick=method == "decomposition"))
add(variant("inversion-withelimination", "withelimination", INV3, problems=("SL0",)))

# Packed storage (--storage packed: the lower triangle in RFP, constraints in range-space form) of
# the exact methods gives pede's answers, with elimination and multipliers, cuts and pre-sigmas.
for method in ("inversion", "decomposition"):
    add(variant(f"{method}-packed", f"method {method} 3 0.001", args=("--storage", "packed"), pede_args=(),
                problems=ALL, quick=method == "inversion"))
    add(variant(f"{method}-mult-packed", "withmultipliers", f"method {method} 3 0.001", args=("--storage", "packed"),
                pede_args=(), problems=ALL))
add(variant("inversion-packed-combo", "chisqcut 30 6", "outlierdownweighting 3", "dwfractioncut 0.1", "presigma 0.01",
            INV3, args=("--storage", "packed"), pede_args=(), problems=("SL0", "BRLC", "BP")))

# MINRES, pede's default method: both storage names, both constraint modes, without the
# preconditioner, a tighter tolerance, with cuts and down-weighting; MINRES-QLP (the -QLP names).
add(variant("sparseMINRES", "method sparseMINRES 3 0.001", problems=ALL, quick=True))
add(variant("sparseMINRES-mult", "withmultipliers", "method sparseMINRES 3 0.001", problems=ALL, quick=True))
add(variant("fullMINRES", "method fullMINRES 3 0.001", problems=("SL0", "BP", "WC")))
add(variant("sparseMINRES-no-cache", "method sparseMINRES 3 0.001", args=("--no-cache",), pede_args=(),
            problems=("SL0", "BRLC")))
add(variant("fullMINRES-noprecond", "bandwidth -1", "method fullMINRES 3 0.001", problems=("SL0", "BP", "WC")))
# Without a preconditioner the bordered system of SL0 and BP is badly scaled (|A| ~ 1e9): both
# solvers then stop each solution after about 200 iterations at different points, and three
# iterations do not converge; WC's is well conditioned.
add(variant("fullMINRES-mult-noprecond", "withmultipliers", "bandwidth -1", "method fullMINRES 3 0.001",
            problems=("WC",)))
add(variant("sparseMINRES-mrestol", "mrestol 1e-9", "method sparseMINRES 2 0.001", problems=("SL0", "BRLC", "WC")))
add(variant("sparseMINRES-1", "method sparseMINRES 1 0.001", problems=("SL0", "BP", "WC")))
add(variant("sparseMINRES-QLP", "method sparseMINRES-QLP 3 0.001", problems=("SL0", "BP", "WC")))
add(variant("fullMINRES-QLP-mult", "withmultipliers", "method fullMINRES-QLP 3 0.001", problems=("SL0", "WC")))
# pede runs the QLP phase from the first iteration with `mresmode 2`, after a few iterations with a
# low transition condition; without constraints the matrix is singular (the QLP phase's case).
add(variant("sparseMINRES-QLP-only", "mresmode 2", "method sparseMINRES-QLP 3 0.001", problems=("SL0", "BP")))
add(variant("sparseMINRES-QLP-transition", "mrestranscond 20", "method sparseMINRES-QLP 3 0.001",
            problems=("SL0", "BP", "WC")))
add(variant("nocons-sparseMINRES-QLP", "method sparseMINRES-QLP 3 0.001", constraints=False,
            problems=("SL0", "BP", "WC")))
add(variant("sparseMINRES-combo", "chisqcut 30 6", "outlierdownweighting 3", "dwfractioncut 0.1",
            "presigma 0.01", "method sparseMINRES 5 0.001", problems=("SL0", "BRLC", "BP")))
# pede's band preconditioner (`bandwidth w`, and `bandwidth w 1`, which keeps dependent rows as
# their diagonal): the band of the reduced matrix with elimination, C's band bordered by the
# constraints with multipliers. gpede's iteration counts equal pede's on these problems.
add(variant("sparseMINRES-band", "bandwidth 6", "method sparseMINRES 3 0.001", problems=("SL0", "BRLC", "BP", "WC")))
add(variant("sparseMINRES-band-mult", "withmultipliers", "bandwidth 6", "method sparseMINRES 3 0.001",
            problems=("SL0", "BRLC")))
add(variant("fullMINRES-band-skyline", "bandwidth 30 1", "method fullMINRES 3 0.001", problems=("SL0", "BP")))
for method in ("fullLAPACK", "unpackedLAPACK"):
    for errors in (False, True):
        for multipliers in (False, True):
            name = method + ("-errors" if errors else "") + ("-mult" if multipliers else "")
            lines = (("LAPACKwitherrors",) if errors else ()) + \
                    (("withmultipliers",) if multipliers else ()) + (f"method {method} 3 0.001",)
            # pede's unpackedLAPACK is broken in this version: with elimination its solution
            # violates the constraints by 1e5 and every record is then rejected (end code 26),
            # with multipliers it crashes. fullLAPACK does the same in packed storage.
            unpacked = method == "unpackedLAPACK"
            add(variant(name, *lines, quick=name == "fullLAPACK-errors",
                        pede_lines=tuple(l.replace("unpacked", "full") for l in lines) if unpacked else None,
                        note="pede reference: fullLAPACK (pede's unpackedLAPACK is broken)" if unpacked else ""))

# Iterations (3 0.001 is the variant `inversion`).
for name, line in (("iter-1", "method inversion 1 0.001"), ("iter-10", "method inversion 10 0.0001"),
                   ("iter-5-dflim1", "method inversion 5 1.0")):
    add(variant(name, line, problems=("SL0", "BRLC", "WC") if name == "iter-10" else ("SL0", "BRLC")))

# Local-fit chi2 cuts.
for name, line in (("chisqcut", "chisqcut"), ("chisqcut-5", "chisqcut 5"),
                   ("chisqcut-10-3", "chisqcut 10 3"), ("chisqcut-30-6", "chisqcut 30 6"),
                   ("chisqcut-0.5-3", "chisqcut 0.5 3"), ("hugecut-3", "hugecut 3"),
                   ("hugecut-1", "hugecut 1")):
    wide = name in ("chisqcut-10-3", "chisqcut-30-6", "hugecut-3")
    add(variant(name, line, INV3, problems=("SL0", "SLE", "WC") if wide else ("SL0", "SLE"),
                quick=name == "chisqcut-30-6"))

# Outlier down-weighting, with and without the down-weight fraction cut.
for n, fraction in ((2, None), (3, None), (5, None), (2, "0.2"), (3, "0.1"), (3, "0.2"), (5, "0.1")):
    lines = (f"outlierdownweighting {n}",) + ((f"dwfractioncut {fraction}",) if fraction else ())
    name = f"outlier-{n}" + (f"-dwf-{fraction}" if fraction else "")
    problems = ("SL0", "BRLC")
    if not fraction and n in (3, 5):
        problems += ("BP", "WC") if n == 3 else ("BP",)
    add(variant(name, *lines, INV3, problems=problems,
                quick=name == "outlier-3-dwf-0.1"))

# Priors and regularisation.
add(variant("presigma-0.01", "presigma 0.01", INV3, problems=("SL0", "BRLC", "WC"), quick=True))
add(variant("presigma-1", "presigma 1.0", INV3, problems=("SL0", "BRLC")))
add(variant("parameter-file", INV3, problems=("SL0", "BRLC", "BP", "WC"), files={"params.txt": parameter_file},
            note="start values, individual presigmas, 4 labels fixed"))
add(variant("regularisation-1-0.01", "regularisation 1.0 0.01", INV3, problems=("SL0", "BRLC")))
add(variant("regularisation-0.1-presigma", "presigma 0.01", "regularisation 0.1", INV3,
            problems=("SL0", "BRLC")))

# Line search and matrix recalculation, in iterations that move (down-weighting, cuts).
for n in (0, 1, 2, 3):
    add(variant(f"linesearch-{n}", f"linesearch {n}", "outlierdownweighting 3", "chisqcut 30 6",
                "method inversion 5 0.0001", problems=("SL0", "WC") if n in (0, 2) else ("SL0", "BRLC")))
for n in (2, 3):
    add(variant(f"matiter-{n}", f"matiter {n}", "chisqcut 10 3", "outlierdownweighting 3",
                "method inversion 4 0.0001", problems=("SL0", "WC")))

# Entries cuts and counting.
for name, line in (("entries-25-10", "entries 25 10"), ("entries-50", "entries 50"),
                   ("entries-30-100", "entries 30 100"), ("entries-30-10-2", "entries 30 10 2"),
                   ("iterateentries-100", "iterateentries 100"), ("countrecords", "countrecords")):
    add(variant(name, line, INV3, problems=("SL0", "BRLC"),
                note="pede ends with code 2 (insufficient measurements)" if name == "entries-30-100" else ""))
add(variant("countrecords-entries-60", "countrecords", "entries 60", INV3, problems=("SL0",)))
add(variant("printcounts", "printcounts", INV3))
add(variant("printcounts-2", "printcounts 2", INV3, problems=("SL0",)))
add(variant("globalcorr", "globalcorr", INV3))
add(variant("globalcorr-diagonalization", "globalcorr", "method diagonalization 3 0.001", problems=("SL0",)))

# Constraints.
add(variant("weightedcons", INV3, head=("weightedcons",), problems=("SL0", "BRLC", "WC")))
add(variant("skipemptycons", "skipemptycons", INV3, files={"fixedcons.txt": fixed_only_constraint_file},
            note="extra constraint on fixed labels only"))
add(variant("emptycons", INV3, files={"fixedcons.txt": fixed_only_constraint_file},
            note="extra constraint on fixed labels only, without skipemptycons"))
add(variant("constraint-unknown-label", INV3, files={"unknowncons.txt": unknown_label_constraint_file},
            problems=("SL0", "BRLC")))
add(variant("infeasible-start", INV3, files={"start.txt": infeasible_start_file},
            problems=("SL0", "BRLC"), note="start values violate the first constraint"))
add(variant("nofeasiblestart", "nofeasiblestart", INV3, files={"start.txt": infeasible_start_file},
            problems=("SL0", "BRLC")))
add(variant("nofeasiblestart-mult", "nofeasiblestart", "withmultipliers", INV3,
            files={"start.txt": infeasible_start_file}, problems=("SL0",)))

# External measurements.
add(variant("measurement-one", INV3, files={"meas.txt": measurement_one_file},
            problems=("SL0", "BRLC", "WC")))
add(variant("measurement-several", "method inversion 1", files={"meas.txt": measurement_several_file},
            pede_lines=("method inversion 1", "linesearch 0"), problems=("SL0", "BRLC"),
            note="pede reference: inversion 1 with linesearch 0 (pede's gradient wrong here)"))

# Error scaling, file weights, reading limits, run modes.
add(variant("scaleerrors-2", "scaleerrors 2", INV3))
add(variant("scaleerrors-1-3", "scaleerrors 1 3", INV3, problems=("BP", "BRLC")))
add(variant("file-weight-2", INV3, weight="2.0"))
add(variant("file-weight-0.5-cuts", "chisqcut 30 6", INV3, weight="0.5", problems=("SL0",)))
add(variant("maxrecord-3000", "maxrecord 3000", INV3, problems=("SL0", "WC")))
add(variant("subito", "subito", "chisqcut 10 3", INV3))
add(variant("subito-cmdline", "chisqcut 10 3", INV3, args=("-s",)))
add(variant("force", "force", INV3, problems=("SL0",)))
add(variant("threads-2", "threads 2", INV3, problems=("SL0", "WC")))

# Singular matrix (no constraints), and no method line.
add(variant("nocons-inversion", INV3, constraints=False, problems=("SL0", "BP", "WC"),
            note="singular: pede warns (3) and writes results"))
add(variant("nocons-decomposition", "method decomposition 3 0.001", constraints=False,
            problems=("SL0", "BP")))
add(variant("indefinite-decomposition", "chisqcut 0.5 3", "outlierdownweighting 2", "dwfractioncut 0.1",
            "hugecut 5", "linesearch 2", "matiter 3", "scaleerrors 0.5", "method decomposition 2 0.001",
            problems=("BRLC",),
            note="down-weighting makes the second matrix indefinite: both stop without its step (3)"))
add(variant("indefinite-decomposition-nan", "outlierdownweighting 5", "matiter 3", "withmultipliers",
            "scaleerrors 1 3", "method decomposition 2 1.0", problems=("BP",),
            note="the second matrix indefinite: pede's decomposition ends on NaNs (25), gpede without "
                 "the step (3); first drawn as random seed 194803"))
add(variant("nomethod", problems=("SL0", "BP", "WC"), quick=True, note="pede's default: sparseMINRES 1"))

# Check-input and debug printout.
add(variant("checkinput", "checkinput", INV3))
add(variant("checkinput-2", "checkinput 2", INV3, problems=("SL0",)))
add(variant("printrecord-5-10", "printrecord 5 10", INV3, problems=("SL0",)))
add(variant("printrecord-bad", "printrecord -1 -1", INV3, problems=("SL0",)))

# Realistic combinations.
COMBO = ("chisqcut 30 6", "outlierdownweighting 3", "dwfractioncut 0.1", "presigma 0.01")
for iterations in (3, 5, 10):
    for method in ("inversion", "decomposition"):
        for multipliers in (False, True):
            name = f"combo-{method}-{iterations}" + ("-mult" if multipliers else "")
            lines = COMBO + (("withmultipliers",) if multipliers else ()) + \
                    (f"method {method} {iterations} 0.001",)
            # BP's local fits (30 parameters, down-weighted) make it the slow problem here
            if name == "combo-inversion-5":
                problems = ("SL0", "BP", "WC")
            elif name == "combo-decomposition-5-mult":
                problems = ("SL0", "BRLC", "BP", "WC")
            elif iterations == 10 and method == "decomposition":
                problems = ("SL0",)
            else:
                problems = ("SL0", "BRLC")
            add(variant(name, *lines, problems=problems, quick=name == "combo-inversion-5"))
add(variant("combo-matiter-inversion-5", *COMBO, "matiter 2", "method inversion 5 0.001",
            problems=("SL0", "BRLC", "WC")))
add(variant("combo-matiter-decomposition-5-mult", *COMBO, "matiter 2", "withmultipliers",
            "method decomposition 5 0.001", problems=("SL0", "BRLC", "BP")))
add(variant("combo-hugecut", "chisqcut 10 3", "hugecut 5", "outlierdownweighting 4",
            "method inversion 5 0.001", problems=("SL0", "BP", "WC")))

# The reference of every check: the steering of the per-problem baseline run (labels for the
# variants' text files, and the error scale of values where a run has no error column).
BASELINE = Setup(lines=(INV3,))

_names = [v.name for v in VARIANTS]
assert len(_names) == len(set(_names)), "variant names must be unique"


# ----------------------------------------------------------------------------------------------
# Random variants

def random_variant(seed: int, index: int) -> Variant:
    """Variant `random-<index>`: a combination of keyword choices drawn from (seed, index) alone,
    so that `--seed S --random N` rebuilds the same variants whatever else is selected."""
    rng = random.Random(f"{seed}:{index}")
    lines = []
    if rng.random() < 0.5:
        lines.append(rng.choice(["chisqcut", "chisqcut 5", "chisqcut 10 3", "chisqcut 30 6",
                                 "chisqcut 0.5 3", "chisqcut 3 2"]))
    if rng.random() < 0.4:
        lines.append(f"outlierdownweighting {rng.randint(2, 5)}")
        if rng.random() < 0.5:
            lines.append(f"dwfractioncut {rng.choice(['0.1', '0.2', '0.3'])}")
    presigma = rng.random() < 0.3
    if presigma:
        lines.append(f"presigma {rng.choice(['0.01', '0.1', '1.0'])}")
    if rng.random() < 0.2:
        lines.append(rng.choice(["regularisation 1.0 0.01", "regularisation 0.1"]))
        if lines[-1] == "regularisation 0.1" and not presigma:
            lines.insert(-1, "presigma 0.05")
    if rng.random() < 0.3:
        lines.append(f"hugecut {rng.choice(['1', '3', '5', '50'])}")
    if rng.random() < 0.4:
        lines.append(f"linesearch {rng.randint(0, 3)}")
    if rng.random() < 0.3:
        lines.append(f"matiter {rng.randint(1, 3)}")
    if rng.random() < 0.3:
        lines.append("withmultipliers")
    if rng.random() < 0.2:
        lines.append(f"scaleerrors {rng.choice(['2', '1 3', '0.5'])}")
    method = rng.choice(["inversion", "decomposition", "diagonalization"])
    iterations = rng.randint(1, 10)
    dflim = rng.choice(["1.0", "0.1", "0.01", "0.001", "0.0001"])
    lines.append(f"method {method} {iterations} {dflim}")
    return variant(f"random-{index}", *lines, problems=ALL, note=f"random seed {seed}")
