#!/usr/bin/env python3
"""Draw the benchmark results as bar charts (PNG), one per benchmark.

Reads the ``--json FILE`` output of the bench scripts (``bench_client.py``, ``bench_ncp.py``)
and/or the measured numbers committed in ``doc/benchmarks.csv``, and writes one PNG per
benchmark into the output directory (default ``bench/plots/``, which is not committed)::

    python3 bench/bench_client.py --json /tmp/client.json
    python3 bench/bench_ncp.py --json /tmp/ncp.json
    python3 bench/plot.py /tmp/client.json /tmp/ncp.json doc/benchmarks.csv
    python3 bench/plot.py --scaling doc/scaling.csv     # bench_scaling.py: line charts
    python3 bench/plot.py --scaling doc/scaling.csv --summary doc/_static/scaling.svg

Each bar is a *speed-up*: how many times faster (or smaller) ``katcp`` is than the peer
library measured in the same run (aiokatcp, ncplib), so longer is better and 1 means "as fast".
A dashed mark shows the goal where there is one.  Needs matplotlib (``pip install .[bench]``);
the documentation shows the plots when they exist (see doc/benchmarks.rst).
"""

import argparse
import csv
import json
import os
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "plots")


def _float(text):
    return float(text) if text not in ("", None) else None


def load(path):
    """``[(bench, case, speedup, peer_name, goal_speedup or None)]`` from a JSON or CSV file."""
    rows = []
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                rows.append((r["bench"], r["case"], float(r["speedup"]), r["peer"],
                             _float(r.get("goal"))))
        return rows
    with open(path, encoding="utf-8") as f:
        for r in json.load(f):
            ours, peer = r["ours"], r["peer"]
            speedup = peer / ours if r["lower_is_better"] else ours / peer
            goal = r.get("goal_ratio")
            rows.append((r["bench"], r["case"], speedup, r["peer_name"],
                         1 / goal if goal else None))
    return rows


def plot(rows, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_bench = defaultdict(list)
    for bench, case, speedup, peer, goal in rows:
        by_bench[bench].append((case, speedup, peer, goal))
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for bench, cases in sorted(by_bench.items()):
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(cases) + 1.2))
        labels = [f"{case} (vs {peer})" for case, _, peer, _ in cases]
        values = [speedup for _, speedup, _, _ in cases]
        y = range(len(cases))
        ax.barh(y, values, color=["#4c72b0" if v >= 1 else "#c44e52" for v in values])
        for i, (_, speedup, _, goal) in enumerate(cases):
            ax.text(speedup, i, f" {speedup:.2f}x", va="center", fontsize=8)
            if goal:
                ax.plot([goal, goal], [i - 0.4, i + 0.4], "k--", linewidth=1)
        ax.axvline(1.0, color="grey", linewidth=0.8)
        ax.set_yticks(list(y))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("speed-up over the peer: higher is better (dashed: goal)")
        ax.set_title(f"katcp benchmarks: {bench}")
        ax.set_xlim(0, max(values + [g for *_, g in cases if g]) * 1.2)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{bench}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def load_scaling(path):
    """``{(axis, metric, unit): {impl: [(x, value)]}}`` from a ``bench_scaling.py --csv`` file."""
    series = defaultdict(lambda: defaultdict(list))
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            series[(r["axis"], r["metric"], r["unit"])][r["impl"]].append(
                (float(r["x"]), float(r["value"])))
    return series


#: What the x value of each scaling axis counts.
SCALING_X = {"fanout": "clients (1,000 sensors each)", "sensors": "sensors",
             "idle": "idle connections", "container": "devices (100 sensors each)"}


def plot_scaling(series, out_dir):
    """One line chart per (axis, metric): x log scale, one line per implementation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for (axis, metric, unit), by_impl in sorted(series.items()):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for impl, points in sorted(by_impl.items()):
            points.sort()
            ax.plot([x for x, _ in points], [v for _, v in points], "o-", label=impl)
        ax.set_xscale("log")
        if axis in ("fanout", "container") and metric != "server CPU":
            ax.set_yscale("log")
        ax.set_xlabel(SCALING_X.get(axis, axis))
        ax.set_ylabel(f"{metric} ({unit})")
        ax.set_title(f"{axis}: {metric}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        slug = "".join(c if c.isalnum() else "-" for c in f"{axis}-{metric}").strip("-")
        path = os.path.join(out_dir, f"{slug}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


#: The panels of the scaling summary: (axis, metric, log y scale, goal or None, goal label).
SCALING_SUMMARY = (
    ("fanout", "informs/s", True, None, ""),
    ("fanout", "server CPU per inform", True, None, ""),
    ("sensors", "KB per sensor", False, 0.4, "goal 0.4 KB"),
    ("idle", "KB per idle connection", True, 4.0, "goal 4 KB"),
    ("idle", "server CPU to connect all", True, None, ""),
    ("container", "sync time", True, None, ""),
)


def _number(value, _pos=None):
    """Tick label: 1,000 rather than 10^3; 0.5 rather than 5e-1."""
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def plot_scaling_summary(series, path):
    """All axes in one figure (``path``: .svg or .png), the one the docs include.

    One panel per entry of `SCALING_SUMMARY` that has data, log scales, ours and the peer.
    An SVG keeps its text as text (no embedded glyphs), so the committed file stays small.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "katcp"  # the same data give the same file
    panels = []
    for axis, metric, log, goal, goal_label in SCALING_SUMMARY:
        for (a, m, unit), by_impl in sorted(series.items()):
            if a == axis and m == metric:
                panels.append((axis, metric, unit, by_impl, log, goal, goal_label))
    columns = 2
    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(9, 2.9 * rows), squeeze=False)
    colours = {"katcp": "#4c72b0", "aiokatcp": "#c44e52"}
    for ax, (axis, metric, unit, by_impl, log, goal, goal_label) in zip(axes.flat, panels):
        for impl, points in sorted(by_impl.items()):
            points = sorted(points)
            ax.plot([x for x, _ in points], [v for _, v in points], "o-", label=impl,
                    color=colours.get(impl))
        if goal is not None:
            ax.axhline(goal, color="k", linestyle="--", linewidth=1, label=goal_label)
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        xs = [x for points in by_impl.values() for x, _ in points]
        ys = [v for points in by_impl.values() for _, v in points if v > 0]
        for scale, is_log, values in ((ax.xaxis, True, xs), (ax.yaxis, log, ys)):
            if is_log and values and max(values) < 300 * min(values):
                # Two decades or so: labels at 1, 2, 5, 10, 20, ... too.
                scale.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            scale.set_major_formatter(FuncFormatter(_number))
            scale.set_minor_formatter(NullFormatter())
        ax.set_xlabel(SCALING_X.get(axis, axis), fontsize=8)
        ax.set_ylabel(f"{metric} ({unit})", fontsize=8)
        ax.set_title(f"{axis}: {metric}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None} if path.endswith(".svg") else None)
    plt.close(fig)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", metavar="FILE",
                        help="JSON written by a bench script's --json, or a CSV like "
                             "doc/benchmarks.csv")
    parser.add_argument("-o", "--out",
                        help="directory for the PNGs (default bench/plots/, and "
                             "bench/plots/scaling/ with --scaling)")
    parser.add_argument("--scaling", action="store_true",
                        help="the inputs are bench_scaling.py --csv files (e.g. "
                             "doc/scaling.csv): draw line charts of cost against scale")
    parser.add_argument("--summary", metavar="FILE",
                        help="with --scaling: also draw every axis in one figure (.svg or "
                             ".png), e.g. doc/_static/scaling.svg, which the docs include")
    args = parser.parse_args()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit("bench/plot.py needs matplotlib: pip install .[bench]")
    if args.scaling:
        series = defaultdict(lambda: defaultdict(list))
        for path in args.inputs:
            for key, by_impl in load_scaling(path).items():
                for impl, points in by_impl.items():
                    series[key][impl] += points
        for path in plot_scaling(series, args.out or os.path.join(DEFAULT_OUT, "scaling")):
            print("wrote", os.path.relpath(path))
        if args.summary:
            print("wrote", os.path.relpath(plot_scaling_summary(series, args.summary)))
        return
    args.out = args.out or DEFAULT_OUT
    rows = []
    for path in args.inputs:
        for bench, case, speedup, peer, goal in load(path):
            if len(args.inputs) > 1:   # say which run each bar comes from
                case = f"{case} [{os.path.basename(path)}]"
            rows.append((bench, case, speedup, peer, goal))
    for path in plot(rows, args.out):
        print("wrote", os.path.relpath(path))


if __name__ == "__main__":
    main()
