#!/usr/bin/env python3
"""Compares a fitted millepede.res with the true misalignment (truth.res, same format): pulls
(fitted - true) / error over the fitted parameters, per kind of parameter and in all.

usage: compare_truth.py TRUTH.res FITTED.res
Exit status 1 when the pulls are off (|mean| >= 0.1 or RMS outside [0.9, 1.1]).
"""
import math
import sys


def read_res(path):
    rows = {}
    with open(path) as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts:
                rows[int(parts[0])] = [float(x) for x in parts[1:]]
    return rows


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    truth, fitted = read_res(sys.argv[1]), read_res(sys.argv[2])
    pulls = []
    for label, cols in fitted.items():
        if len(cols) >= 4 and cols[3] > 0 and label in truth:
            pulls.append((cols[0] - truth[label][0]) / cols[3])
    if not pulls:
        sys.exit("no fitted parameter with an error in " + sys.argv[2])
    n = len(pulls)
    mean = sum(pulls) / n
    rms = math.sqrt(sum((p - mean) ** 2 for p in pulls) / n)
    print(f"{n} fitted parameters: pull mean {mean:+.3f}, pull RMS {rms:.3f} "
          f"(expected 0 and 1 if the misalignment is recovered within its errors)")
    ok = abs(mean) < 0.1 and 0.9 <= rms <= 1.1
    print("recovered: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
