#!/usr/bin/env python3
"""Plots of a `gpede simulate` folder: the detector (x-y and r-z views), the true misalignment per
kind of parameter, and, given a millepede.res of a fit, fitted against true values and the pulls
(fitted - true) / error.

usage: plot_simulation.py DIR [--res FILE] [--out FILE.png]

DIR holds geometry.txt and truth.res as `gpede simulate -o DIR` writes them; FILE is the
millepede.res of a fit (default: DIR/millepede.res when it exists). matplotlib is installed with
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--res", help="millepede.res of a fit (default: FOLDER/millepede.res)")
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
    rows = 2 if fit is None else 3
    fig = plt.figure(figsize=(16, 5 * rows))
    draw_detector(fig.add_subplot(rows, 3, 1), fig.add_subplot(rows, 3, 2), sensors, layers)

    ax = fig.add_subplot(rows, 3, 3)
    shifts = [n for n in names if not any(k in n for k in ("rot", "alpha", "beta", "gamma", "dphi"))]
    ax.boxplot([[1e4 * truth[l][0] for l in groups[n]] for n in shifts], vert=False, labels=shifts, showfliers=False)
    ax.set_xlabel("true shift [um]")
    ax.set_title("true misalignment: shifts and bowing", fontsize=8)
    ax.tick_params(axis="y", labelsize=6)

    ax = fig.add_subplot(rows, 3, 4)
    turns = [n for n in names if n not in shifts]
    if turns:
        ax.boxplot([[1e3 * truth[l][0] for l in groups[n]] for n in turns], vert=False, labels=turns,
                   showfliers=False)
    ax.set_xlabel("true rotation [mrad]")
    ax.set_title("true misalignment: rotations", fontsize=8)
    ax.tick_params(axis="y", labelsize=6)

    if fit is not None:
        pulls, by_group = [], {}
        for label, values in fit.items():
            if label not in truth or len(values) < 4 or values[3] <= 0:
                continue
            pull = (values[0] - truth[label][0]) / values[3]
            pulls.append(pull)
            by_group.setdefault(group_of(label), []).append(pull)
        ax = fig.add_subplot(rows, 3, 5)
        xs = [truth[l][0] for l in fit if l in truth and len(fit[l]) >= 4]
        ys = [fit[l][0] for l in fit if l in truth and len(fit[l]) >= 4]
        ax.plot(xs, ys, ".", ms=2)
        lo, hi = (min(xs + ys), max(xs + ys)) if xs else (-1, 1)
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.5)
        ax.set_xlabel("true value")
        ax.set_ylabel("fitted value")
        ax.set_title("fitted against true (all variable parameters)", fontsize=8)
        ax = fig.add_subplot(rows, 3, 6)
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
        ax = fig.add_subplot(rows, 3, 7)
        keys = sorted(by_group)
        means = [sum(v) / len(v) for v in (by_group[k] for k in keys)]
        rmss = [math.sqrt(sum(p * p for p in v) / len(v)) for v in (by_group[k] for k in keys)]
        ax.barh(range(len(keys)), rmss, color="tab:blue", alpha=0.5, label="RMS")
        ax.plot(means, range(len(keys)), "ko", ms=3, label="mean")
        ax.axvline(1.0, color="r", lw=0.5)
        ax.axvline(0.0, color="k", lw=0.5)
        ax.set_yticks(range(len(keys)))
        ax.set_yticklabels(keys, fontsize=6)
        ax.legend(fontsize=7)
        ax.set_title("pulls by kind of parameter", fontsize=8)
        print(f"pulls of {len(pulls)} parameters: mean {mean:.3f}, RMS {rms:.3f}" if pulls else "no fitted errors")

    if eigenvalues:
        ax = fig.add_subplot(rows, 3, 8 if fit is not None else 5)
        largest = max(abs(v) for v in eigenvalues)
        ratio = sorted(max(abs(v) / largest, 1e-20) for v in eigenvalues)
        weak = sum(1 for r in ratio if r < 1e-12)
        ax.semilogy(range(1, len(ratio) + 1), ratio, ".", ms=2)
        ax.axhline(1e-12, color="r", lw=0.5)
        ax.set_xlabel("eigenvalue number (ascending)")
        ax.set_ylabel("|eigenvalue| / largest")
        ax.set_title(f"eigenvalue spectrum: {weak} weak modes below 1e-12 (red line)", fontsize=8)
        print(f"eigenvalue spectrum: {len(ratio)} eigenvalues, {weak} below 1e-12 of the largest")

    fig.tight_layout()
    out = args.out or os.path.join(args.folder, "simulation.png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
