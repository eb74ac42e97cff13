#!/usr/bin/env python3
"""Plots of a `gpede simulate` folder: the detector (x-y and r-z views), the true misalignment per
kind of parameter, and, given a millepede.res of a fit, fitted against true values and the pulls
(fitted - true) / error.

usage: plot_simulation.py DIR [--res FILE] [--json FILE] [--out FILE.png] [--eigen FILE]

DIR holds geometry.txt and truth.res as `gpede simulate -o DIR` writes them; FILE is the
millepede.res of a fit (default: DIR/millepede.res when it exists) and the gpede.json of the same
run (default: DIR/gpede.json), whose version, method and chi2/ndf go into the title. Where that run
asked for the half-shells' covariance (`gpede --covariance 11-16,21-26,...`), the half-shells are
checked with it: their fitted-minus-true vectors have chi2 = d^T V^-1 d, one per kind of
half-shell parameter (4 degrees of freedom each). Their plain pulls cannot show this: the four
half-shells move almost together against the frame that the constraints define (correlations near
0.99), so the four pulls of a kind are one random draw, not four. matplotlib is installed with
apt-get (python3-matplotlib) when it is missing.
"""
import argparse
import math
import os
import subprocess
import sys


SYSTEM_PYTHON = "/usr/bin/python3"


def import_matplotlib():
    """matplotlib, installed with apt-get if missing. The Debian package serves the system Python:
    another interpreter (a virtual environment, pyenv) without it hands over to the system one."""
    try:
        import matplotlib
    except ImportError:
        system = os.path.exists(SYSTEM_PYTHON) and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON)
        has_it = system and subprocess.run([SYSTEM_PYTHON, "-c", "import matplotlib"],
                                           capture_output=True).returncode == 0
        if not has_it:
            print("matplotlib is missing: installing python3-matplotlib with apt-get", file=sys.stderr)
            prefix = [] if os.geteuid() == 0 else ["sudo"]
            subprocess.run(prefix + ["apt-get", "install", "-y", "python3-matplotlib"], check=True)
        if system:
            os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, os.path.abspath(__file__)] + sys.argv[1:])
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def read_res(path):
    """label -> list of the numbers on its line (value, presigma[, difference, error ...])."""
    result = {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields or not fields[0].isdigit():
                continue
            result[int(fields[0])] = [float(x) for x in fields[1:]]
    return result


def read_geometry(path):
    sensors, layers = [], []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if fields[0] == "sensor":
                v = [float(x) for x in fields[6:]]
                sensors.append({"layer": int(fields[1]), "pixel": fields[4] == "1", "center": v[0:3],
                                "u": v[3:6], "v": v[6:9], "half_width": v[12], "half_length": v[13]})
            elif fields[0] == "layer":
                layers.append({"number": int(fields[1]), "wires": int(fields[3]), "radius": float(fields[4]),
                               "z_backward": float(fields[5]), "z_forward": float(fields[6]),
                               "twist": float(fields[7])})
    return sensors, layers


SENSOR_NAMES = ["du", "dv", "dw", "alpha", "beta", "gamma"]


def group_of(label):
    """Kind of parameter, following the label scheme of include/gpede/simulate.hpp."""
    if label < 100:
        return "half-shell " + ["dx", "dy", "dz", "rot x", "rot y", "rot z"][label % 10 - 1]
    if label < 1000000:
        p = label % 100
        return "sensor " + (SENSOR_NAMES[p - 1] if p <= 6 else "bowing")
    if label < 2000000:
        return "layer " + ["dx bwd", "dy bwd", "dphi bwd", "dx fwd", "dy fwd", "dphi fwd"][label % 10 - 1]
    return "wire " + ["dx bwd", "dy bwd", "dx fwd", "dy fwd"][label % 10 - 1]


def draw_detector(ax_xy, ax_rz, sensors, layers):
    for s in sensors:
        c, u, v = s["center"], s["u"], s["v"]
        hw, hl = s["half_width"], s["half_length"]
        color = "tab:red" if s["pixel"] else "tab:blue"
        ax_xy.plot([c[0] - hw * u[0], c[0] + hw * u[0]], [c[1] - hw * u[1], c[1] + hw * u[1]], color=color, lw=1)
        r = math.hypot(c[0], c[1])
        ax_rz.plot([c[2] - hl * v[2], c[2] + hl * v[2]], [r, r], color=color, lw=1)
    for layer in layers:
        t = [2 * math.pi * k / 180 for k in range(181)]
        stereo = abs(layer["twist"]) > 0
        ax_xy.plot([layer["radius"] * math.cos(a) for a in t], [layer["radius"] * math.sin(a) for a in t],
                   color="tab:green" if not stereo else "tab:olive", lw=0.4)
        ax_rz.plot([layer["z_backward"], layer["z_forward"]], [layer["radius"]] * 2,
                   color="tab:green" if not stereo else "tab:olive", lw=0.6)
    ax_xy.set_aspect("equal")
    ax_xy.set_xlabel("x [cm]")
    ax_xy.set_ylabel("y [cm]")
    ax_xy.set_title("x-y view (red pixels, blue strips, green/olive axial/stereo layers)", fontsize=8)
    ax_rz.set_xlabel("z [cm]")
    ax_rz.set_ylabel("r [cm]")
    ax_rz.set_title("r-z view", fontsize=8)


def family_of(label):
    """(family, unit, scale from the file's unit) for fitted-against-true panels in own units."""
    um, mrad = ("um", 1e4), ("mrad", 1e3)
    if label < 100:
        return ("half-shell shifts",) + um if label % 10 <= 3 else ("half-shell rotations",) + mrad
    if label < 1000000:
        p = label % 100
        if p <= 3:
            return ("sensor shifts",) + um
        return ("sensor rotations",) + mrad if p <= 6 else ("sensor deformations",) + um
    if label < 2000000:
        return ("layer rotations",) + mrad if label % 10 in (3, 6) else ("layer shifts",) + um
    return ("wire shifts",) + um


def chi2_survival(x, dof):
    """P(chi2 > x) for an even number of degrees of freedom."""
    term, total = 1.0, 1.0
    for k in range(1, dof // 2):
        term *= (x / 2) / k
        total += term
    return math.exp(-x / 2) * total


def half_shell_check(run, truth, fit):
    """chi2 of the half-shells' fitted - true per kind of parameter with the covariance block of
    gpede.json; None without it."""
    block = run.get("covariance") if run else None
    if not block:
        return None
    import numpy as np
    labels = block["labels"]
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.array(block["matrix"], dtype=float)
    rows = []
    for kind in range(1, 7):
        members = [10 * h + kind for h in range(1, 10) if 10 * h + kind in index and 10 * h + kind in truth
                   and 10 * h + kind in fit]
        if len(members) < 2:
            continue
        at = [index[m] for m in members]
        d = np.array([fit[m][0] - truth[m][0] for m in members])
        v = matrix[np.ix_(at, at)]
        chi2 = float(d @ np.linalg.solve(v, d))
        corr = v / np.sqrt(np.outer(np.diag(v), np.diag(v)))
        mean_corr = float((corr.sum() - len(at)) / (len(at) * (len(at) - 1)))
        rows.append((["dx", "dy", "dz", "rot x", "rot y", "rot z"][kind - 1], chi2, len(members), mean_corr))
    # All of them together, with the correlations between kinds.
    members = [m for m in labels if m in truth and m in fit and m < 100]
    at = [index[m] for m in members]
    d = np.array([fit[m][0] - truth[m][0] for m in members])
    total = float(d @ np.linalg.solve(matrix[np.ix_(at, at)], d)) if members else 0.0
    return rows, total, len(members)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--res", help="millepede.res of a fit (default: FOLDER/millepede.res)")
    parser.add_argument("--json", help="gpede.json of the fit (default: FOLDER/gpede.json)")
    parser.add_argument("--out", help="output image (default: FOLDER/simulation.png)")
    parser.add_argument("--eigen", help="gpede.json of a diagonalization run: draws its eigenvalue spectrum")
    args = parser.parse_args()

    truth_path = os.path.join(args.folder, "truth.res")
    geometry_path = os.path.join(args.folder, "geometry.txt")
    for path in (truth_path, geometry_path):
        if not os.path.exists(path):
            sys.exit(f"plot_simulation.py: {path} not found (write the folder with gpede simulate -o DIR)")
    res_path = args.res or os.path.join(args.folder, "millepede.res")
    fit = read_res(res_path) if os.path.exists(res_path) else None
    if args.res and fit is None:
        sys.exit(f"plot_simulation.py: {args.res} not found")
    truth = read_res(truth_path)
    sensors, layers = read_geometry(geometry_path)
    json_path = args.json or os.path.join(args.folder, "gpede.json")
    run = None
    if fit is not None and os.path.exists(json_path):
        import json
        with open(json_path) as f:
            run = json.load(f)
        # The same fit at full precision (millepede.res prints 5 digits, which matters for the
        # half-shells' chi2: their differences are known far better than each of them).
        for p in run.get("parameters", []):
            if p["label"] in fit and p.get("error") is not None and len(fit[p["label"]]) >= 4:
                fit[p["label"]] = [p["value"], p["presigma"], p["difference"], p["error"]]
    plt = import_matplotlib()

    groups = {}
    for label, values in truth.items():
        groups.setdefault(group_of(label), []).append(label)
    names = sorted(groups)

    eigenvalues = None
    if args.eigen:
        import json
        with open(args.eigen) as f:
            eigenvalues = json.load(f).get("eigenvalues")
        if not eigenvalues:
            sys.exit(f"plot_simulation.py: {args.eigen} holds no eigenvalues (run method diagonalization)")
    from matplotlib.gridspec import GridSpec
    families = {}
    if fit is not None:
        for label in fit:
            if label in truth and len(fit[label]) >= 4:
                families.setdefault(family_of(label), []).append(label)
    family_rows = (len(families) + 3) // 4
    rows = 2 + family_rows + (1 if (eigenvalues or fit is not None) else 0)
    fig = plt.figure(figsize=(18, 4.6 * rows))
    grid = GridSpec(rows, 12, figure=fig, left=0.06, right=0.98, bottom=0.03, top=1 - 0.25 / rows,
                    hspace=0.35, wspace=2.5)
    draw_detector(fig.add_subplot(grid[0, 0:4]), fig.add_subplot(grid[0, 4:8]), sensors, layers)

    ax = fig.add_subplot(grid[0, 8:12])
    shifts = [n for n in names if not any(k in n for k in ("rot", "alpha", "beta", "gamma", "dphi"))]
    ax.boxplot([[1e4 * truth[l][0] for l in groups[n]] for n in shifts], vert=False, labels=shifts, showfliers=False)
    ax.set_xlabel("true shift [um]")
    ax.set_title("true misalignment: shifts and deformations", fontsize=8)
    ax.tick_params(axis="y", labelsize=6)

    ax = fig.add_subplot(grid[1, 0:4])
    turns = [n for n in names if n not in shifts]
    if turns:
        ax.boxplot([[1e3 * truth[l][0] for l in groups[n]] for n in turns], vert=False, labels=turns,
                   showfliers=False)
    ax.set_xlabel("true rotation [mrad]")
    ax.set_title("true misalignment: rotations", fontsize=8)
    ax.tick_params(axis="y", labelsize=6)

    check = None
    if fit is not None:
        pulls, by_group = [], {}
        for label, values in fit.items():
            if label not in truth or len(values) < 4 or values[3] <= 0:
                continue
            pull = (values[0] - truth[label][0]) / values[3]
            pulls.append(pull)
            by_group.setdefault(group_of(label), []).append(pull)
        ax = fig.add_subplot(grid[1, 4:8])
        if pulls:
            n = len(pulls)
            mean = sum(pulls) / n
            rms = math.sqrt(sum(p * p for p in pulls) / n)
            ax.hist(pulls, bins=60, range=(-5, 5), histtype="step", label=f"{n} parameters\nmean {mean:.3f}\nRMS {rms:.3f}")
            width = 10 / 60
            xs = [-5 + 0.05 * k for k in range(201)]
            ax.plot(xs, [n * width * math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) for x in xs], "r-", lw=0.8,
                    label="N(0, 1)")
            ax.legend(fontsize=7)
        ax.set_xlabel("(fitted - true) / error")
        ax.set_title("pulls", fontsize=8)
        ax = fig.add_subplot(grid[1, 8:12])
        keys = sorted(by_group)
        means = [sum(v) / len(v) for v in (by_group[k] for k in keys)]
        rmss = [math.sqrt(sum(p * p for p in v) / len(v)) for v in (by_group[k] for k in keys)]
        ax.barh(range(len(keys)), rmss, color="tab:blue", alpha=0.5, label="RMS")
        ax.plot(means, range(len(keys)), "ko", ms=3, label="mean")
        ax.axvline(1.0, color="r", lw=0.5)
        ax.axvline(0.0, color="k", lw=0.5)
        ax.set_yticks(range(len(keys)))
        ax.set_yticklabels([k + (" (correlated)" if k.startswith("half-shell") else "") for k in keys], fontsize=6)
        ax.legend(fontsize=7)
        ax.set_title("pulls by kind of parameter (half-shells: 4 entries that move together)", fontsize=8)
        print(f"pulls of {len(pulls)} parameters: mean {mean:.3f}, RMS {rms:.3f}" if pulls else "no fitted errors")

        # Fitted against true, one panel per family of parameters, each in its own unit.
        for k, (family, members) in enumerate(sorted(families.items(), key=lambda item: item[0][0])):
            name, unit, scale = family
            ax = fig.add_subplot(grid[2 + k // 4, 3 * (k % 4):3 * (k % 4) + 3])
            xs = [scale * truth[l][0] for l in members]
            ys = [scale * fit[l][0] for l in members]
            es = [scale * fit[l][3] for l in members]
            if len(members) <= 60:
                ax.errorbar(xs, ys, yerr=es, fmt=".", ms=3, lw=0.5)
            else:
                ax.plot(xs, ys, ".", ms=1.5)
            lo, hi = min(xs + ys), max(xs + ys)
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.5)
            median_error = sorted(es)[len(es) // 2]
            ax.set_xlabel(f"true [{unit}]", fontsize=7)
            ax.set_ylabel(f"fitted [{unit}]", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_title(f"{name}: {len(members)}, median error {median_error:.3g} {unit}", fontsize=8)

        check = half_shell_check(run, truth, fit)

    last = rows - 1
    if eigenvalues:
        ax = fig.add_subplot(grid[last, 0:6])
        largest = max(abs(v) for v in eigenvalues)
        ratio = sorted(max(abs(v) / largest, 1e-20) for v in eigenvalues)
        weak = sum(1 for r in ratio if r < 1e-12)
        ax.semilogy(range(1, len(ratio) + 1), ratio, ".", ms=2)
        ax.axhline(1e-12, color="r", lw=0.5)
        ax.set_xlabel("eigenvalue number (ascending)")
        ax.set_ylabel("|eigenvalue| / largest")
        ax.set_title(f"without constraints: {weak} weak modes below 1e-12 (red line)", fontsize=8)
        print(f"eigenvalue spectrum: {len(ratio)} eigenvalues, {weak} below 1e-12 of the largest")
    if fit is not None:
        ax = fig.add_subplot(grid[last, 6:12])
        if check:
            check, total, total_dof = check
            kinds = [row[0] for row in check]
            ax.bar(range(len(check)), [row[1] for row in check], color="tab:blue", alpha=0.6)
            dof = check[0][2]
            ax.axhline(dof, color="r", lw=0.8, label=f"expected {dof} (its RMS {math.sqrt(2 * dof):.1f})")
            ax.set_xticks(range(len(check)))
            ax.set_xticklabels([f"{k}\ncorr {row[3]:.2f}" for k, row in zip(kinds, check)], fontsize=7)
            p = chi2_survival(total, total_dof) if total_dof % 2 == 0 else float("nan")
            ax.set_ylabel("chi2 of fitted - true")
            ax.set_title(f"half-shells with their covariance: per kind (bars), all together chi2 {total:.1f} "
                         f"for {total_dof} dof (p = {p:.2g})", fontsize=8)
            ax.legend(fontsize=7)
            print(f"half-shells against the truth with their covariance: chi2 {total:.1f} for {total_dof} "
                  f"degrees of freedom (p = {p:.2g})")
        else:
            ax.axis("off")
            ax.text(0.02, 0.5, "half-shells: run gpede with --covariance 11-16,21-26,31-36,41-46\n"
                    "to check them with their covariance", fontsize=8)

    if run:
        fig.suptitle(f"gpede {run.get('gpede_version', '?')}: method {run.get('method_steered', run.get('method'))} "
                     f"on the {run.get('backend')} backend, chi2/ndf {run.get('chi2_ndf', float('nan')):.3f}, "
                     f"{run['records']['used']} of {run['records']['read']} records used, "
                     f"{run.get('message', '')}", fontsize=11)
    out = args.out or os.path.join(args.folder, "simulation.png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
