"""The exporter against simulated devices over loopback: values, statuses, labels, outages.

Every check scrapes the real ``/metrics`` endpoint and parses it with prometheus_client's
own parser.
"""

from __future__ import annotations

import asyncio
import io
import math
import re
import threading
import time

import pytest

pytest.importorskip("prometheus_client")

from katcp import ncp  # noqa: E402
from katcp.core import Message, Sensor  # noqa: E402
from katcp.exporter import (  # noqa: E402
    DeviceState,
    Exporter,
    SensorRules,
    Target,
    targets_for_ports,
)
from katcp.exporter.progress import Progress  # noqa: E402
from katcp.tools import fleetsim  # noqa: E402
from katcp.tools.fleetsim import Fleet  # noqa: E402

from _exporter_helpers import fetch, key, parse, run, scrape, scrape_until  # noqa: E402

#: Every sensor on the event strategy, so a change shows at once (the default event-rate
#: strategy waits up to a second).
EVENT = SensorRules(strategies=(("*", ("event",)),))


def expected(device: str, sensor: Sensor):
    """The series the exporter must show for `sensor` of `device`, from its reading."""
    ts_raw, status_raw, value_raw = sensor.read_formatted()
    name = sensor.name
    labels = {"device": device, "sensor": name}
    out = {key("katcp_sensor_status", **labels): float(Sensor.STATUS_NAMES[status_raw.decode()]),
           key("katcp_sensor_timestamp_seconds", **labels): float(ts_raw)}
    text = value_raw.decode("utf-8")
    stype = sensor.stype
    if stype in ("float", "integer", "timestamp", "boolean"):
        out[key("katcp_sensor_value", **labels)] = float(text)
    elif stype in ("discrete", "lru"):
        allowed = sensor.params if stype == "discrete" else ["nominal", "error"]
        for value in allowed:
            out[key("katcp_sensor_state", katcp_sensor_state=value, **labels)] = \
                1.0 if value == text else 0.0
    else:
        out[key("katcp_sensor_info", value=text, **labels)] = 1.0
    return out


def mismatches(series, fleet: Fleet, device: int):
    """Differences between a scrape and device `device` of `fleet` (empty if none)."""
    name = fleet.names[device]
    wrong = []
    for sensor in fleet.sensors[device]:
        for k, want in expected(name, sensor).items():
            got = series.get(k)
            if got is None or not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-5):
                wrong.append((k, want, got))
    return wrong


def device_sensor_names(series, metric: str, device: str):
    return {dict(labels)["sensor"] for (name, labels) in series
            if name == metric and dict(labels)["device"] == device}


async def start(fleet: Fleet, rules: SensorRules = EVENT, **kwargs) -> Exporter:
    exporter = Exporter(targets_for_ports("127.0.0.1", fleet.ports, rules=rules),
                        ("127.0.0.1", 0), process_metrics=False, **kwargs)
    await exporter.start()
    assert await exporter.until_synced(10)
    return exporter


def test_values_statuses_and_labels_match_the_devices():
    async def main():
        fleet = Fleet(3, 24, rate=0, seed=3)
        await fleet.start()
        exporter = await start(fleet)
        try:
            series = await scrape_until(
                exporter.url, lambda s: not any(mismatches(s, fleet, d) for d in range(3)))
            for d, name in enumerate(fleet.names):
                assert series[key("katcp_device_connected", device=name)] == 1
                assert series[key("katcp_device_synced", device=name)] == 1
                assert series[key("katcp_device_sensors", device=name)] == 24
                assert series[key("katcp_sensor_updates_total", device=name)] >= 24
                assert device_sensor_names(series, "katcp_sensor_status", name) == \
                    {s.name for s in fleet.sensors[d]}
            # Names that need escaping arrive intact.
            odd = [s.name for s in fleet.sensors[0] if s.name.startswith("odd")]
            assert odd and all('"' in n and "\\" in n and " " in n for n in odd)
            # New readings of every type, with every status, show up.
            for i, sensor in enumerate(fleet.sensors[1]):
                value, _status = fleetsim.random_reading(sensor, fleet._rng)
                sensor.set_value(value, (Sensor.WARN, Sensor.ERROR, Sensor.FAILURE)[i % 3])
            await scrape_until(exporter.url, lambda s: not mismatches(s, fleet, 1))
        finally:
            await exporter.stop()
            await fleet.stop()
    run(main())


def test_device_going_away_and_coming_back():
    async def main():
        fleet = Fleet(3, 8, rate=0)
        await fleet.start()
        exporter = await start(fleet)
        gone = fleet.names[1]
        try:
            await fleet.stop_device(1)
            series = await scrape_until(
                exporter.url, lambda s: s[key("katcp_device_connected", device=gone)] == 0)
            assert series[key("katcp_device_synced", device=gone)] == 0
            for sensor in fleet.sensors[1]:
                assert series[key("katcp_sensor_status", device=gone, sensor=sensor.name)] == \
                    Sensor.UNREACHABLE
            for other in (0, 2):  # nobody else is affected
                assert series[key("katcp_device_synced", device=fleet.names[other])] == 1
                assert not mismatches(series, fleet, other)
            fleet.sensors[1][0].set_value(12.5, Sensor.WARN)  # changed while away
            await fleet.start_device(1)
            series = await scrape_until(
                exporter.url, lambda s: s[key("katcp_device_synced", device=gone)] == 1
                and not mismatches(s, fleet, 1))
            assert series[key("katcp_sensor_value", device=gone, sensor="float.0")] == 12.5
        finally:
            await exporter.stop()
            await fleet.stop()
    run(main())


def test_sensor_globs_and_interface_changes():
    async def main():
        fleet = Fleet(1, 16, rate=0)
        await fleet.start()
        rules = SensorRules(patterns=("float.*", "odd*"), strategies=(("*", ("event",)),))
        exporter = await start(fleet, rules)
        name = fleet.names[0]
        try:
            series = await scrape(exporter.url)
            want = {s.name for s in fleet.sensors[0]
                    if s.name.startswith("float.") or s.name.startswith("odd")}
            assert device_sensor_names(series, "katcp_sensor_status", name) == want
            server = fleet.servers[0]
            server.add_sensor(Sensor.float("float.new", "added", "", default=7.0,
                                           initial_status=Sensor.NOMINAL))
            server.add_sensor(Sensor.integer("integer.new", "not selected", "", default=1))
            server.remove_sensor("float.0")
            server.mass_inform(Message.inform("interface-changed"))
            series = await scrape_until(
                exporter.url,
                lambda s: key("katcp_sensor_value", device=name, sensor="float.new") in s)
            names = device_sensor_names(series, "katcp_sensor_status", name)
            assert names == (want - {"float.0"}) | {"float.new"}
            assert series[key("katcp_sensor_value", device=name, sensor="float.new")] == 7.0
        finally:
            await exporter.stop()
            await fleet.stop()
    run(main())


async def _fake_device(handler):
    """A TCP server running `handler(reader, writer)`; returns (server, port)."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


_REQUEST = re.compile(rb"^\?([a-z-]+)(?:\[(\d+)\])?(.*)$")


def test_garbage_from_a_device_does_not_break_the_exporter():
    sampled = []

    async def device(reader, writer):
        writer.write(b"#version-connect katcp-protocol 5.0-MI\n"
                     b"#version-connect katcp-library fake-1.0\n")
        while True:
            line = await reader.readline()
            if not line:
                return
            match = _REQUEST.match(line.strip())
            if not match:
                continue
            req, mid = match.group(1), match.group(2) or b""
            tag = b"[" + mid + b"]" if mid else b""
            if req == b"sensor-list":
                writer.write(
                    b"#sensor-list" + tag + b" good.float A\\_float degC float -10 10\n"
                    b"#sensor-list" + tag + b" good.disc A\\_discrete \\@ discrete a b\n"
                    b"#sensor-list" + tag + b" too.short\n"
                    b"#sensor-list" + tag + b" weird.type Odd \\@ frobnicator x\n"
                    b"!sensor-list" + tag + b" ok 4\n")
            elif req == b"sensor-sampling":
                writer.write(b"!sensor-sampling" + tag + b" ok" + match.group(3) + b"\n")
                sampled.append(line)
                if len(sampled) < 3:  # one request per sensor (no B flag): reply to the last
                    continue
                writer.write(
                    b"#sensor-status 1700000000.5 1 good.float nominal not-a-number\n"
                    b"#sensor-status garbage 1 good.float nominal 1.0\n"
                    b"#sensor-status 1700000000.5 9 good.float warn 2.5\n"
                    b"#sensor-status 1700000000.5 1 good.disc bogus-status c\n"
                    b"#sensor-status 1700000000.5 1 unknown.sensor nominal 1\n"
                    b"#sensor-status\n"
                    b"\xff\xfe garbage line \x00\n"
                    b"#sensor-status 1700000001.0 1 weird.type error \xc3\xa9t\xc3\xa9\n")
            await writer.drain()

    async def main():
        server, port = await _fake_device(device)
        exporter = Exporter([Target("fake", "katcp", "127.0.0.1", port)], ("127.0.0.1", 0),
                            process_metrics=False)
        await exporter.start()
        try:
            series = await scrape_until(
                exporter.url,
                lambda s: key("katcp_sensor_info", device="fake", sensor="weird.type",
                              value="été") in s)
            lab = {"device": "fake"}
            assert series[key("katcp_device_synced", **lab)] == 1
            assert series[key("katcp_sensor_value", sensor="good.float", **lab)] == 2.5
            assert series[key("katcp_sensor_status", sensor="good.float", **lab)] == Sensor.WARN
            # Unknown status word -> 0 (unknown); a value outside the allowed set -> all 0.
            assert series[key("katcp_sensor_status", sensor="good.disc", **lab)] == 0
            assert series[key("katcp_sensor_state", sensor="good.disc",
                              katcp_sensor_state="a", **lab)] == 0
            assert series[key("katcp_sensor_status", sensor="weird.type", **lab)] == Sensor.ERROR
            assert device_sensor_names(series, "katcp_sensor_status", "fake") == \
                {"good.float", "good.disc", "weird.type"}
        finally:
            await exporter.stop()
            server.close()
    run(main())


def test_devices_not_synced_are_reported_as_such():
    async def silent(reader, writer):
        writer.write(b"#version-connect katcp-protocol 5.0-MI\n")
        await reader.read()  # never answers ?sensor-list

    async def main():
        server, port = await _fake_device(silent)
        closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        closed_port = closed.sockets[0].getsockname()[1]
        closed.close()
        await closed.wait_closed()
        exporter = Exporter([Target("silent", "katcp", "127.0.0.1", port),
                             Target("absent", "katcp", "127.0.0.1", closed_port)],
                            ("127.0.0.1", 0), process_metrics=False)
        await exporter.start()
        try:
            series = await scrape_until(
                exporter.url, lambda s: s[key("katcp_device_connected", device="silent")] == 1)
            assert series[key("katcp_device_synced", device="silent")] == 0
            assert series[key("katcp_device_connected", device="absent")] == 0
            assert series[key("katcp_device_synced", device="absent")] == 0
            assert exporter.counts() == (1, 0, 2)
        finally:
            await exporter.stop()
            server.close()
    run(main())


def test_scrapes_never_wait_for_the_loop():
    """A scrape completes while the loop is busy: it reads state without the loop's help."""
    async def main():
        fleet = Fleet(2, 8, rate=0)
        await fleet.start()
        exporter = await start(fleet)
        try:
            done = threading.Event()
            result = {}

            def scrape_in_thread():
                result["series"] = parse(fetch(exporter.url))
                done.set()

            thread = threading.Thread(target=scrape_in_thread)
            thread.start()
            # Block the loop until the scrape is done (bounded: fails rather than hangs).
            assert done.wait(5), "scrape waited for the event loop"
            thread.join(5)
            assert result["series"][key("katcp_device_synced", device=fleet.names[0])] == 1
        finally:
            await exporter.stop()
            await fleet.stop()
    run(main())


def test_ncp_node_fields_become_sensors():
    async def node(connection):
        connection.send_packet("DSPC", STAT={"TEMP": 41.5, "MODE": "run", "RAW": b"\x00\x01",
                                             "CNT": ncp.u32(7)})
        connection.send("DSPC", "ALRM", ERRO="over temperature", LEVL=3)
        async for _field in connection:
            pass

    async def main():
        server = await ncp.start_server(node, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        exporter = Exporter([Target("node1", "ncp", "127.0.0.1", port)], ("127.0.0.1", 0),
                            process_metrics=False)
        await exporter.start()
        lab = {"device": "node1"}
        try:
            series = await scrape_until(
                exporter.url,
                lambda s: key("katcp_sensor_value", sensor="ALRM.LEVL", **lab) in s)
            assert series[key("katcp_device_connected", **lab)] == 1
            assert series[key("katcp_device_synced", **lab)] == 1
            assert series[key("katcp_sensor_value", sensor="STAT.TEMP", **lab)] == 41.5
            assert series[key("katcp_sensor_value", sensor="STAT.CNT", **lab)] == 7
            assert series[key("katcp_sensor_info", sensor="STAT.MODE", value="run", **lab)] == 1
            assert series[key("katcp_sensor_status", sensor="STAT.TEMP", **lab)] == Sensor.NOMINAL
            assert series[key("katcp_sensor_status", sensor="ALRM.LEVL", **lab)] == Sensor.ERROR
            assert series[key("katcp_sensor_info", sensor="ALRM.ERRO",
                              value="over temperature", **lab)] == 1
            assert abs(series[key("katcp_sensor_timestamp_seconds", sensor="STAT.TEMP", **lab)]
                       - time.time()) < 60
            assert "STAT.RAW" not in device_sensor_names(series, "katcp_sensor_status", "node1")
        finally:
            await exporter.stop()
            server.close()
    run(main())


def test_progress_line():
    devices = [DeviceState(f"d{i}", "katcp") for i in range(3)]
    stream = io.StringIO()
    progress = Progress(devices, stream)
    progress.check()
    devices[0].connected = devices[0].synced = True
    devices[1].connected = True
    progress.check()
    progress.check()  # unchanged: nothing written
    for d in devices:
        d.connected = d.synced = True
    progress.check()
    text = stream.getvalue()
    assert text.count("\r") == 3
    assert "devices: 2/3 connected, 1/3 synced" in text
    assert "3/3 synced (all synced after" in text and text.endswith("\n")


def test_fleetsim_rejects_bad_arguments():
    for argv in (["--devices", "0"], ["--rate", "-1"], ["--base-port", "65535", "--devices", "5"]):
        with pytest.raises(SystemExit) as info:
            fleetsim.main(argv)
        assert info.value.code == 2


def test_fleet_config_lists_every_device():
    fleet = Fleet(3, 2, base_port=21000)
    text = fleet.config_text()
    assert text.count("[devices.sim") == 3
    assert 'katcp = "127.0.0.1:21002"' in text


def test_katcp_v4_device_gets_strategies_it_knows_and_ms_timestamps():
    async def device(reader, writer):
        writer.write(b"#version old-device-1.0\n#build-state old-device-1.0.1\n")
        while True:
            line = await reader.readline()
            if not line:
                return
            match = _REQUEST.match(line.strip())
            if not match:
                continue
            req, rest = match.group(1), match.group(3)
            if req == b"sensor-list":
                writer.write(b"#sensor-list temp Temperature degC float 0 100\n"
                             b"!sensor-list ok 1\n")
            elif req == b"sensor-sampling":
                if rest.split()[1:] != [b"event"]:  # v4: no event-rate
                    writer.write(b"!sensor-sampling fail Unknown\\_strategy\n")
                else:
                    writer.write(b"!sensor-sampling ok temp event\n"
                                 b"#sensor-status 1700000000500 1 temp nominal 3.5\n")
            await writer.drain()

    async def main():
        server, port = await _fake_device(device)
        exporter = Exporter([Target("old", "katcp", "127.0.0.1", port)], ("127.0.0.1", 0),
                            process_metrics=False)
        await exporter.start()
        lab = {"device": "old", "sensor": "temp"}
        try:
            series = await scrape_until(
                exporter.url, lambda s: key("katcp_sensor_value", **lab) in s)
            assert series[key("katcp_sensor_value", **lab)] == 3.5
            assert series[key("katcp_sensor_timestamp_seconds", **lab)] == 1700000000.5
            assert series[key("katcp_device_synced", device="old")] == 1
        finally:
            await exporter.stop()
            server.close()
    run(main())


def test_fleetsim_command_runs_and_stops_cleanly(tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys

    from ports import free_consecutive_ports

    base = free_consecutive_ports(3)
    config = tmp_path / "fleet.toml"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "katcp.tools.fleetsim", "--devices", "3", "--sensors", "4",
         "--rate", "50", "--base-port", str(base), "--write-config", str(config)],
        env={**os.environ, "PYTHONPATH": root}, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not config.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert config.exists(), proc.stderr.read().decode() if proc.poll() is not None else ""
        with socket.create_connection(("127.0.0.1", base + 2), timeout=5) as conn:
            assert conn.recv(100).startswith(b"#version-connect")
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err.decode()
    assert f'katcp = "127.0.0.1:{base + 2}"' in config.read_text()


def test_scrapes_pause_the_cyclic_gc_and_restore_it():
    import gc

    from katcp.exporter.collector import FleetCollector, ScrapeRegistry
    from prometheus_client import generate_latest

    seen = []

    class Probe:
        def collect(self):
            seen.append(gc.isenabled())
            return iter(())

    registry = ScrapeRegistry()
    registry.register(FleetCollector([DeviceState("d", "katcp")]))
    registry.register(Probe())
    seen.clear()  # registration collected once, to learn the probe's names
    assert gc.isenabled()
    assert b'katcp_device_connected{device="d"} 0.0' in generate_latest(registry)
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        generate_latest(registry)
        assert not gc.isenabled()  # left as it was
    finally:
        gc.enable()


def test_endpoint_formats_and_compression():
    import gzip
    import urllib.request

    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as openmetrics_families,
    )

    om_accept = "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;q=0.5"

    def get(url, accept, encoding=None):
        headers = {"Accept": accept}
        if encoding:
            headers["Accept-Encoding"] = encoding
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
            return r.headers.get("Content-Type"), r.headers.get("Content-Encoding"), r.read()

    async def main():
        fleet = Fleet(1, 8, rate=0)
        await fleet.start()
        plain = await start(fleet)
        negotiating = Exporter(targets_for_ports("127.0.0.1", fleet.ports), ("127.0.0.1", 0),
                               process_metrics=False, openmetrics=True)
        await negotiating.start()
        assert await negotiating.until_synced(10)
        try:
            ctype, _enc, body = await asyncio.to_thread(get, plain.url, om_accept)
            assert ctype.startswith("text/plain") and parse(body.decode())
            ctype, enc, body = await asyncio.to_thread(get, plain.url, om_accept, "gzip")
            assert enc == "gzip" and parse(gzip.decompress(body).decode())
            ctype, _enc, body = await asyncio.to_thread(get, negotiating.url, om_accept)
            assert ctype.startswith("application/openmetrics-text")
            families = {f.name: f for f in openmetrics_families(body.decode())}
            assert families["katcp_sensor_state"].type == "stateset"
            assert families["katcp_sensor"].type == "info"
            assert families["katcp_sensor_updates"].type == "counter"
        finally:
            await negotiating.stop()
            await plain.stop()
            await fleet.stop()
    run(main())


def test_ncp_node_going_away_and_coming_back():
    connections = []

    async def node(connection):
        connections.append(connection)
        connection.send("DSPC", "STAT", TEMP=float(len(connections)))
        async for _field in connection:
            pass

    async def main():
        server = await ncp.start_server(node, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        exporter = Exporter([Target("node1", "ncp", "127.0.0.1", port)], ("127.0.0.1", 0),
                            process_metrics=False)
        await exporter.start()
        lab = {"device": "node1", "sensor": "STAT.TEMP"}
        try:
            await scrape_until(exporter.url,
                               lambda s: s.get(key("katcp_sensor_value", **lab)) == 1.0)
            server.close()
            for connection in connections:
                connection.close()
            await server.wait_closed()
            series = await scrape_until(
                exporter.url, lambda s: s[key("katcp_device_connected", device="node1")] == 0)
            assert series[key("katcp_sensor_status", **lab)] == Sensor.UNREACHABLE
            server = await ncp.start_server(node, "127.0.0.1", port)
            series = await scrape_until(
                exporter.url, lambda s: s.get(key("katcp_sensor_value", **lab)) == 2.0)
            assert series[key("katcp_device_connected", device="node1")] == 1
            assert series[key("katcp_sensor_status", **lab)] == Sensor.NOMINAL
        finally:
            await exporter.stop()
            server.close()
            for connection in connections:
                connection.close()
    run(main())


def test_a_failed_sync_is_retried():
    asked = []

    async def device(reader, writer):
        writer.write(b"#version-connect katcp-protocol 5.0-MI\n")
        while True:
            line = await reader.readline()
            if not line:
                return
            match = _REQUEST.match(line.strip())
            if not match:
                continue
            tag = b"[" + match.group(2) + b"]"
            if match.group(1) == b"sensor-list":
                asked.append(line)
                if len(asked) == 1:
                    writer.write(b"!sensor-list" + tag + b" fail Not\\_ready\\_yet\n")
                else:
                    writer.write(b"#sensor-list" + tag + b" x X \\@ integer 0 9\n"
                                 b"!sensor-list" + tag + b" ok 1\n")
            elif match.group(1) == b"sensor-sampling":
                writer.write(b"!sensor-sampling" + tag + b" ok x event-rate 1 10\n"
                             b"#sensor-status 1700000000.0 1 x nominal 4\n")
            await writer.drain()

    async def main():
        server, port = await _fake_device(device)
        exporter = Exporter([Target("late", "katcp", "127.0.0.1", port)], ("127.0.0.1", 0),
                            process_metrics=False)
        await exporter.start()
        try:
            series = await scrape_until(
                exporter.url, lambda s: s[key("katcp_device_synced", device="late")] == 1)
            assert len(asked) == 2
            assert series[key("katcp_sensor_value", device="late", sensor="x")] == 4
        finally:
            await exporter.stop()
            server.close()
    run(main())


def test_ipv6_listen_address():
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")

    async def main():
        exporter = Exporter([], ("::1", 0), process_metrics=False)
        await exporter.start()
        try:
            assert exporter.url.startswith("http://[::1]:")
            assert await scrape(exporter.url) == {}
        finally:
            await exporter.stop()
    run(main())


def test_ncp_node_inventing_names_is_capped(monkeypatch):
    from katcp.exporter import ncp_watcher

    monkeypatch.setattr(ncp_watcher, "MAX_NCP_SENSORS", 5)

    async def node(connection):
        for i in range(20):
            connection.send("DSPC", f"F{i:03d}", VALU=i)
        connection.send("DSPC", "F000", VALU=99)
        async for _field in connection:
            pass

    async def main():
        server = await ncp.start_server(node, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        exporter = Exporter([Target("node1", "ncp", "127.0.0.1", port)], ("127.0.0.1", 0),
                            process_metrics=False)
        await exporter.start()
        try:
            series = await scrape_until(
                exporter.url, lambda s: s.get(key("katcp_sensor_value", device="node1",
                                                  sensor="F000.VALU")) == 99)
            names = device_sensor_names(series, "katcp_sensor_status", "node1")
            assert names == {f"F{i:03d}.VALU" for i in range(5)}
        finally:
            await exporter.stop()
            server.close()
    run(main())
