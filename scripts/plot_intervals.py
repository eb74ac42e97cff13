#!/usr/bin/env python3
"""Plots time-dependent parameters as SVG: the fitted value per interval of runs (gpede_intervals.txt)
as a horizontal bar with its error band, the truth per run (truth_runs.txt of `gpede simulate --runs`)
as points joined by a line, the truth per interval (truth_intervals.txt: the mean of the truth per
run over the interval's tracks) as a dashed bar, and the interval starts as vertical lines. One SVG
per label. Python 3 standard library only.

usage: plot_intervals.py [DIR] [--intervals FILE] [--truth-runs FILE] [--truth-intervals FILE]
                         [--label L ...] [-o OUT.svg]

DIR (default .) holds gpede_intervals.txt from the fit and, where the data was simulated,
truth_runs.txt and truth_intervals.txt; --intervals, --truth-runs and --truth-intervals name the
files elsewhere. --label picks labels (repeat it, or separate them by commas; default: the first
four of gpede_intervals.txt). -o names the SVG (default DIR/intervals.svg); with more than one label
each goes to OUT_LABEL.svg.

A run r spans r - 0.5 to r + 0.5 on the x axis; an interval's bar spans its runs, from its start to
the next interval's start. Times of another experiment than 0 (experiment:run) are placed in order,
one step apart.
"""
import argparse
import math
import os
import sys
from xml.sax.saxutils import escape


def parse_time(text):
    """'run' or 'experiment:run' -> (experiment, run); None for '-'."""
    if text == "-":
        return None
    if ":" in text:
        experiment, run = text.split(":", 1)
        return int(experiment), int(run)
    return 0, int(text)


def read_intervals(path):
    """gpede_intervals.txt -> (intervals, rows): intervals[k] = dict(start, next, records, first, last)
    with times as (experiment, run) or None; rows[label] = list of (interval, value, error)."""
    intervals, rows = [], {}
    in_table = False
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            if fields[0] == "*":
                if len(fields) > 1 and fields[1] == "interval":
                    in_table = True
                    continue
                if len(fields) > 1 and fields[1] == "label":
                    in_table = False
                    continue
                if in_table and len(fields) == 7 and fields[1].isdigit():
                    intervals.append({"start": parse_time(fields[2]), "next": parse_time(fields[3]),
                                      "records": int(fields[4]), "first": parse_time(fields[5]),
                                      "last": parse_time(fields[6])})
                continue
            if fields[0].startswith("*") or len(fields) < 7:
                continue
            label, interval = int(fields[0]), int(fields[1])
            rows.setdefault(label, []).append((interval, float(fields[5]), float(fields[6])))
    if not intervals:
        sys.exit(f"{path}: no interval table (is it gpede's gpede_intervals.txt?)")
    return intervals, rows


def truth_rows(path, columns):
    """The rows of a truth file (# comments) with at least `columns` fields; none if it is absent."""
    if not path or not os.path.exists(path):
        return
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= columns and not fields[0].startswith("#"):
                yield fields


def read_truth_runs(path):
    """truth_runs.txt -> label -> list of (time, value)."""
    truth = {}
    for fields in truth_rows(path, 3):
        truth.setdefault(int(fields[0]), []).append((parse_time(fields[1]), float(fields[2])))
    return truth


def read_truth_intervals(path):
    """truth_intervals.txt -> (label, interval) -> value."""
    return {(int(fields[0]), int(fields[1])): float(fields[3]) for fields in truth_rows(path, 4)}


class TimeAxis:
    """Maps times to x: runs of experiment 0 as they are; with other experiments, every time seen
    in order, one step apart."""

    def __init__(self, times):
        times = sorted({t for t in times if t is not None})
        self.plain = all(t[0] == 0 for t in times)
        self.rank = {t: i + 1 for i, t in enumerate(times)}

    def x(self, t):
        return float(t[1]) if self.plain else float(self.rank[t])

    def text(self, t):
        return str(t[1]) if t[0] == 0 else f"{t[0]}:{t[1]}"


def nice_ticks(low, high, count=6):
    """About `count` round tick values covering [low, high]."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * step:
        ticks.append(0.0 if abs(value) < 1e-12 * step else value)
        value += step
    return ticks


def svg_plot(label, intervals, fits, truth_runs, truth_intervals):
    """The SVG text of one label."""
    # The x range of each interval: from its start to the next one's, runs spanning r - 0.5 .. r + 0.5.
    times = [t for i in intervals for t in (i["start"], i["next"], i["first"], i["last"])]
    times += [t for t, _ in truth_runs]
    axis = TimeAxis(times)
    spans = []
    for k, i in enumerate(intervals):
        begin = i["start"] if i["start"] is not None else i["first"]
        if i["next"] is not None:
            end = axis.x(i["next"]) - 0.5
        elif i["last"] is not None:
            end = axis.x(i["last"]) + 0.5
        else:
            end = None
        spans.append((axis.x(begin) - 0.5 if begin is not None else None, end))
    xs = [x for span in spans for x in span if x is not None] + [axis.x(t) for t, _ in truth_runs]
    if not xs:
        xs = [0.0, 1.0]
    x_low, x_high = min(xs), max(xs)
    # Intervals without a start or end (no records seen) get the plot's edge.
    spans = [(a if a is not None else x_low, b if b is not None else x_high) for a, b in spans]

    ys = [v + s * e for _, v, e in fits for s in (-1, 1)] + [v for _, v in truth_runs]
    ys += [v for (l, _), v in truth_intervals.items() if l == label]
    y_low, y_high = min(ys), max(ys)
    pad = 0.08 * (y_high - y_low) if y_high > y_low else max(abs(y_low) * 0.1, 1e-6)
    y_low, y_high = y_low - pad, y_high + pad

    width, height = 760, 440
    left, right, top, bottom = 90, 20, 40, 80
    pw, ph = width - left - right, height - top - bottom

    def px(x):
        return left + (x - x_low) / (x_high - x_low if x_high > x_low else 1.0) * pw

    def py(y):
        return top + (y_high - y) / (y_high - y_low) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">label {label}: '
           f'fitted per interval and truth per run</text>']
    # Axes, ticks and grid.
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>')
    for y in nice_ticks(y_low, y_high):
        if y_low <= y <= y_high:
            out.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{left + pw}" y2="{py(y):.1f}" stroke="#e0e0e0"/>')
            out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.4g}</text>')
    x_ticks = nice_ticks(x_low + 0.5, x_high - 0.5, 10) if axis.plain else []
    if not axis.plain:
        x_ticks = [axis.x(t) for t in sorted(axis.rank)]
    names = {axis.x(t): axis.text(t) for t in axis.rank} if not axis.plain else {}
    for x in x_ticks:
        if x_low <= x <= x_high and (not axis.plain or abs(x - round(x)) < 1e-9):
            out.append(f'<line x1="{px(x):.1f}" y1="{top + ph}" x2="{px(x):.1f}" y2="{top + ph + 5}" stroke="black"/>')
            text = names.get(x, f"{x:g}")
            out.append(f'<text x="{px(x):.1f}" y="{top + ph + 18}" text-anchor="middle">{escape(text)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{top + ph + 38}" text-anchor="middle">run</text>')
    out.append(f'<text x="18" y="{top + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 18 {top + ph / 2})">value</text>')
    # Interval starts.
    for k in range(1, len(spans)):
        x = px(spans[k][0])
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#888" '
                   f'stroke-dasharray="6,4"/>')
    # Fitted value per interval with its error band.
    for interval, value, error in fits:
        if interval >= len(spans):
            continue
        a, b = px(spans[interval][0]), px(spans[interval][1])
        if error > 0:
            out.append(f'<rect x="{a:.1f}" y="{py(value + error):.1f}" width="{b - a:.1f}" '
                       f'height="{py(value - error) - py(value + error):.1f}" fill="#1f77b4" fill-opacity="0.25"/>')
        out.append(f'<line x1="{a:.1f}" y1="{py(value):.1f}" x2="{b:.1f}" y2="{py(value):.1f}" '
                   f'stroke="#1f77b4" stroke-width="2.5"/>')
    # Truth per interval (dashed) and per run.
    for (l, interval), value in sorted(truth_intervals.items()):
        if l != label or interval >= len(spans):
            continue
        a, b = px(spans[interval][0]), px(spans[interval][1])
        out.append(f'<line x1="{a:.1f}" y1="{py(value):.1f}" x2="{b:.1f}" y2="{py(value):.1f}" '
                   f'stroke="#d62728" stroke-width="1.5" stroke-dasharray="4,3"/>')
    if truth_runs:
        points = sorted((axis.x(t), v) for t, v in truth_runs)
        path = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="#d62728" stroke-width="1"/>')
        for x, v in points:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="3" fill="#d62728"/>')
    # Legend: one row under the plot.
    legend = [("#1f77b4", "fit per interval +-1 error", "band")]
    if truth_runs:
        legend.append(("#d62728", "truth per run", "dot"))
    if any(l == label for l, _ in truth_intervals):
        legend.append(("#d62728", "truth per interval", "dash"))
    legend.append(("#888", "interval start", "vdash"))
    x = left
    y = height - 14
    for color, text, kind in legend:
        if kind == "band":
            out.append(f'<rect x="{x}" y="{y - 6}" width="22" height="10" fill="{color}" fill-opacity="0.25"/>')
            out.append(f'<line x1="{x}" y1="{y - 1}" x2="{x + 22}" y2="{y - 1}" stroke="{color}" stroke-width="2.5"/>')
        elif kind == "dot":
            out.append(f'<circle cx="{x + 11}" cy="{y - 1}" r="3" fill="{color}"/>')
        elif kind == "dash":
            out.append(f'<line x1="{x}" y1="{y - 1}" x2="{x + 22}" y2="{y - 1}" stroke="{color}" '
                       f'stroke-width="1.5" stroke-dasharray="4,3"/>')
        else:
            out.append(f'<line x1="{x + 11}" y1="{y - 7}" x2="{x + 11}" y2="{y + 5}" stroke="{color}" '
                       f'stroke-dasharray="3,2"/>')
        out.append(f'<text x="{x + 30}" y="{y + 3}">{escape(text)}</text>')
        x += 44 + 6.3 * len(text)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", nargs="?", default=".")
    parser.add_argument("--intervals", help="gpede_intervals.txt (default DIR/gpede_intervals.txt)")
    parser.add_argument("--truth-runs", help="truth_runs.txt (default DIR/truth_runs.txt, if there)")
    parser.add_argument("--truth-intervals", help="truth_intervals.txt (default DIR/truth_intervals.txt, if there)")
    parser.add_argument("--label", action="append", default=[], help="label(s) to plot; repeat or separate by commas")
    parser.add_argument("-o", "--output", help="SVG file (default DIR/intervals.svg; OUT_LABEL.svg for several)")
    args = parser.parse_args()

    intervals_file = args.intervals or os.path.join(args.dir, "gpede_intervals.txt")
    intervals, rows = read_intervals(intervals_file)
    truth_runs = read_truth_runs(args.truth_runs or os.path.join(args.dir, "truth_runs.txt"))
    truth_intervals = read_truth_intervals(args.truth_intervals or os.path.join(args.dir, "truth_intervals.txt"))

    labels = []
    for text in args.label:
        for part in text.split(","):
            if part.strip():
                try:
                    labels.append(int(part))
                except ValueError:
                    sys.exit(f"--label: '{part}' is not a label")
    if not labels:
        labels = sorted(rows)[:4]
    if not labels:
        sys.exit(f"{intervals_file}: no time-dependent parameter")
    missing = [label for label in labels if label not in rows]
    if missing:
        sys.exit(f"{intervals_file}: no label {', '.join(map(str, missing))}")

    output = args.output or os.path.join(args.dir, "intervals.svg")
    stem, suffix = os.path.splitext(output)
    for label in labels:
        path = output if len(labels) == 1 else f"{stem}_{label}{suffix or '.svg'}"
        svg = svg_plot(label, intervals, sorted(rows[label]), truth_runs.get(label, []), truth_intervals)
        with open(path, "w") as f:
            f.write(svg)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
