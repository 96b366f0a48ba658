"""bench/plot.py reads the committed measurements and the bench scripts' --json output."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _plot_module():
    spec = importlib.util.spec_from_file_location("bench_plot", os.path.join(ROOT, "bench",
                                                                           "plot.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_measurements_load():
    rows = _plot_module().load(os.path.join(ROOT, "doc", "benchmarks.csv"))
    assert {bench for bench, *_ in rows} == {"codec", "server", "client", "ncp"}
    for bench, case, speedup, peer, goal in rows:
        # (katcp-codec: issue 17 compares the stream parse with katcp-codec's parser alone)
        assert speedup > 0 and peer in ("aiokatcp", "ncplib", "katcp-codec"), (bench, case)
        assert goal is None or goal > 0


def test_committed_scaling_measurements_load():
    series = _plot_module().load_scaling(os.path.join(ROOT, "doc", "scaling.csv"))
    assert {axis for axis, _, _ in series} == {"fanout", "sensors", "idle", "container"}
    for (axis, metric, _unit), by_impl in series.items():
        assert set(by_impl) <= {"katcp", "aiokatcp"} and "katcp" in by_impl, (axis, metric)
        for points in by_impl.values():
            assert all(x >= 1 and value >= 0 for x, value in points), (axis, metric)


def test_json_output_of_the_bench_scripts(tmp_path):
    path = tmp_path / "ncp.json"
    path.write_text(json.dumps([
        {"bench": "ncp", "case": "request RTT", "ours": 50e-6, "peer": 100e-6,
         "peer_name": "ncplib", "unit": "s", "lower_is_better": True},
        {"bench": "ncp", "case": "decode", "ours": 3e5, "peer": 2e5, "peer_name": "ncplib",
         "unit": "per s", "lower_is_better": False, "goal_ratio": None},
        {"bench": "client", "case": "RTT", "ours": 40e-6, "peer": 100e-6,
         "peer_name": "aiokatcp", "unit": "s", "lower_is_better": True, "goal_ratio": 0.8},
    ]))
    plot = _plot_module()
    rows = plot.load(str(path))
    assert rows == [("ncp", "request RTT", 2.0, "ncplib", None),
                    ("ncp", "decode", 1.5, "ncplib", None),
                    ("client", "RTT", 2.5, "aiokatcp", 1.25)]
    pytest.importorskip("matplotlib", reason="plotting needs the 'bench' extra")
    written = plot.plot(rows, str(tmp_path / "plots"))
    assert sorted(os.path.basename(p) for p in written) == ["client.png", "ncp.png"]


def test_scaling_summary_figure(tmp_path):
    """The one figure the docs include: every axis of the committed CSV, as an SVG."""
    plot = _plot_module()
    series = plot.load_scaling(os.path.join(ROOT, "doc", "scaling.csv"))
    pytest.importorskip("matplotlib", reason="plotting needs the 'bench' extra")
    path = plot.plot_scaling_summary(series, str(tmp_path / "scaling.svg"))
    text = open(path, encoding="utf-8").read()
    for axis, metric, *_ in plot.SCALING_SUMMARY:
        if any(a == axis and m == metric for a, m, _ in series):
            assert f"{axis}: {metric}" in text  # titles stay text in the SVG
    # The committed copy is drawn from the committed CSV.
    assert os.path.exists(os.path.join(ROOT, "doc", "_static", "scaling.svg"))
