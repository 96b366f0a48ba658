"""The exporter's configuration and command line: the docs' example, errors, a real run."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import socket
import sys

import pytest

pytest.importorskip("prometheus_client")

from katcp.exporter import DEFAULT_STRATEGY, Exporter, select, targets_for_ports  # noqa: E402
from katcp.exporter.settings import ConfigError, load_config, parse_strategy  # noqa: E402
from katcp.tools import example_server  # noqa: E402
from katcp.tools import exporter as exporter_tool  # noqa: E402
from katcp.tools.fleetsim import Fleet, write_config  # noqa: E402

from _exporter_helpers import key, run, scrape_until  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "doc", "examples", "exporter.toml")


def test_docs_example_config():
    targets, settings = load_config(EXAMPLE)
    by_name = {t.name: t for t in targets}
    assert list(by_name) == ["rx1", "rx2", "node1"]
    assert settings.listen == ("0.0.0.0", 9700) and settings.openmetrics is False
    rx1, rx2, node1 = by_name["rx1"], by_name["rx2"], by_name["node1"]
    assert (rx1.kind, rx1.host, rx1.port) == ("katcp", "127.0.0.1", 7147)
    assert (node1.kind, node1.port) == ("ncp", 9999)
    assert rx1.rules.selects("anything") and not rx2.rules.selects("tick-count")
    assert rx2.rules.selects("rf.gain") and rx2.rules.selects("temperature")
    assert rx1.rules.strategy_for("time.now") == ("period", "10")
    assert rx1.rules.strategy_for("temperature") == ("event-rate", "5", "60")
    assert rx1.rules.strategy_for("rf.gain") == ("event-rate", "1", "10")
    assert rx2.rules.strategy_for("rf.gain") == ("event-rate", "2", "30")
    assert rx2.rules.strategy_for("temperature") == ("event-rate", "5", "60")
    assert node1.rules.selects("STAT.TEMP") and not node1.rules.selects("GPS.LAT")


def test_docs_example_config_against_the_example_instrument():
    """The chapter's config, pointed at a running example instrument, exports its sensors."""
    targets, _settings = load_config(EXAMPLE)
    rx2 = next(t for t in targets if t.name == "rx2")

    async def main():
        started = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        task = asyncio.ensure_future(example_server.run_server(
            "127.0.0.1", 0, 0.05, stop_event=stop, on_started=started.set_result))
        server = await started
        target = dataclasses.replace(rx2, port=server.bind_address[1])
        exporter = Exporter([target], ("127.0.0.1", 0), process_metrics=False)
        await exporter.start()
        try:
            series = await scrape_until(
                exporter.url,
                lambda s: key("katcp_sensor_value", device="rx2", sensor="temperature") in s)
            sensors = {dict(labels)["sensor"] for name, labels in series
                       if name == "katcp_sensor_status"}
            assert sensors == {"rf.frequency", "rf.gain", "rf.power", "temperature", "mode",
                               "device-status"}
            assert key("katcp_sensor_state", device="rx2", sensor="mode",
                       katcp_sensor_state="idle") in series
        finally:
            await exporter.stop()
            stop.set()
            await task
    run(main())


@pytest.mark.parametrize("text,words", [
    ("event-rate 1 10", ("event-rate", "1", "10")),
    ("event", ("event",)),
    (["period", 0.5], ("period", "0.5")),
])
def test_parse_strategy(text, words):
    assert parse_strategy(text) == words


@pytest.mark.parametrize("text", ["", "fast", "period", "event-rate 1", "period x", 3])
def test_parse_strategy_rejects(text):
    with pytest.raises(ConfigError):
        parse_strategy(text)


BAD_CONFIGS = {
    "not toml": "[devices.rx1\nkatcp = ",
    "no devices": "[exporter]\nlisten = \"127.0.0.1:9700\"\n",
    "unknown exporter key": "[exporter]\nlisten_on = \"x\"\n[devices.a]\nkatcp = \"h:1\"\n",
    "bad default strategy": "[exporter]\ndefault_strategy = \"often\"\n"
                            "[devices.a]\nkatcp = \"h:1\"\n",
    "bad rule": "[exporter]\nstrategies = [{pattern = \"*\"}]\n[devices.a]\nkatcp = \"h:1\"\n",
    "bad rule strategy": "[exporter]\nstrategies = [{pattern = \"*\", strategy = \"period\"}]\n"
                         "[devices.a]\nkatcp = \"h:1\"\n",
    "bad listen": "[exporter]\nlisten = \"here:port\"\n[devices.a]\nkatcp = \"h:1\"\n",
    "bad sensors": "[exporter]\nsensors = []\n[devices.a]\nkatcp = \"h:1\"\n",
    "bad device": "[devices.a]\nkatcp = \"no-port\"\n",
    "device strategy params": "[devices.a]\nkatcp = \"h:1\"\nstrategy = \"event-rate x y\"\n",
    "katcp tls without its ca file": "[devices.a]\nkatcp = \"h:1\"\ntls = true\n"
                                     "cafile = \"/nonexistent/ca.crt\"\n",
    "katcp user without password": "[devices.a]\nkatcp = \"h:1\"\nuser = \"alice\"\n",
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_with_a_clear_message(name, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(BAD_CONFIGS[name])
    assert exporter_tool.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("katcp-exporter: error: ") and "Traceback" not in err


def test_missing_file_and_bad_shard_exit_2(tmp_path, capsys):
    assert exporter_tool.main(["--config", str(tmp_path / "missing.toml")]) == 2
    good = tmp_path / "good.toml"
    good.write_text("[devices.a]\nkatcp = \"127.0.0.1:1\"\n")
    for shard in ("2/2", "x", "0/0"):
        assert exporter_tool.main(["--config", str(good), "--shard", shard]) == 2
    assert exporter_tool.main(["--config", str(good), "--listen", "nowhere:99999"]) == 2
    assert "error" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_command_line_run_with_shards_and_progress(tmp_path):
    """katcp-exporter as a process: shard 0/2 and 1/2 split the fleet; progress on stderr."""
    async def main():
        fleet = Fleet(12, 5, rate=20)
        await fleet.start()
        config = tmp_path / "fleet.toml"
        write_config(fleet, str(config))
        procs, ports = [], []
        try:
            for shard in range(2):
                port = _free_port()
                ports.append(port)
                procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "katcp.tools.exporter", "--config", str(config),
                    "--listen", f"127.0.0.1:{port}", "--shard", f"{shard}/2", "--progress",
                    stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": ROOT}))
            seen = []
            for port in ports:
                url = f"http://127.0.0.1:{port}/metrics"
                series = await _scrape_when_up(url, lambda s: s and all(
                    v == 1 for (n, _l), v in s.items() if n == "katcp_device_synced"))
                seen.append({dict(labels)["device"] for name, labels in series
                             if name == "katcp_device_synced"})
            assert seen == [set(select(fleet.names, i, 2)) for i in range(2)]
            assert seen[0] and seen[1] and seen[0] | seen[1] == set(fleet.names)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            outputs = [await asyncio.wait_for(proc.communicate(), 10) for proc in procs]
            await fleet.stop()
        for proc, (_out, err) in zip(procs, outputs):
            assert proc.returncode == 0, err.decode()
            assert "synced (all synced after" in err.decode()
    run(main(), timeout=40)


async def _scrape_when_up(url, predicate, timeout=20.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await scrape_until(url, predicate, timeout=max(0.1, deadline - loop.time()))
        except OSError:  # not listening yet
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_default_strategy_is_event_rate():
    assert DEFAULT_STRATEGY == ("event-rate", "1", "10")


def _exported_metric_names():
    """Sample names the exporter produces, from a scrape of one simulated device."""
    async def main():
        fleet = Fleet(1, 16, rate=0)
        await fleet.start()
        exporter = Exporter(targets_for_ports("127.0.0.1", fleet.ports), ("127.0.0.1", 0),
                            process_metrics=False)
        await exporter.start()
        try:
            await exporter.until_synced(10)
            series = await scrape_until(exporter.url, lambda s: True)
        finally:
            await exporter.stop()
            await fleet.stop()
        return {name for name, _labels in series}
    return run(main())


def test_docs_list_the_metrics_and_the_dashboard_uses_only_them():
    names = _exported_metric_names()
    with open(os.path.join(ROOT, "doc", "monitoring.rst"), encoding="utf-8") as f:
        chapter = f.read()
    documented = set(re.findall(r"^``(katcp_[a-z_]+)``", chapter, re.MULTILINE))
    assert documented == names
    assert "examples/exporter.toml" in chapter and "examples/prometheus-shards.yml" in chapter
    with open(os.path.join(ROOT, "doc", "examples", "grafana-example-instrument.json"),
              encoding="utf-8") as f:
        dashboard = json.load(f)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for expr in exprs for m in re.findall(r"\bkatcp_[a-z_]+", expr)}
    assert used and used <= names
    # The dashboard's sensors exist on the example instrument.
    sensors = {s for expr in exprs for s in re.findall(r'sensor="([^"]+)"', expr)}
    instrument = {"temperature", "rf.power", "rf.gain", "mode", "last-request"}
    assert sensors <= instrument


def test_busy_listen_port_exits_1(tmp_path, capsys):
    config = tmp_path / "fleet.toml"
    config.write_text("[devices.a]\nkatcp = \"127.0.0.1:1\"\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        interval = sys.getswitchinterval()
        try:
            status = exporter_tool.main(["--config", str(config), "--listen",
                                         f"127.0.0.1:{port}", "--no-progress"])
        finally:
            sys.setswitchinterval(interval)  # main() tunes its process: undo it here
    assert status == 1
    assert "cannot serve on 127.0.0.1" in capsys.readouterr().err
