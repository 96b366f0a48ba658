"""The fast exposition (``ScrapeRegistry.render``) against prometheus_client's own formatting.

The endpoint serves :meth:`katcp.exporter.collector.FleetCollector.render`, which pastes
values after label strings that prometheus_client formatted once; these tests hold it to
``generate_latest`` of the same collector byte for byte, in both formats, over awkward
names, values and changes between scrapes.
"""

from __future__ import annotations

import math
import threading
import urllib.request

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import ProcessCollector, generate_latest  # noqa: E402
from prometheus_client.openmetrics.exposition import (  # noqa: E402
    generate_latest as generate_openmetrics,
)

from katcp.exporter.collector import FleetCollector, ScrapeRegistry  # noqa: E402
from katcp.exporter.endpoint import serve_metrics  # noqa: E402
from katcp.exporter.state import DeviceState, SensorMeta  # noqa: E402

from _exporter_helpers import key, parse  # noqa: E402

AWKWARD = ['plain', 'sp ace', 'q"uote', 'back\\slash', 'new\nline', 'é ü 漢字', '%s %d {x}',
           '\x01ctrl', 'x",sensor="y', 'trail\\']


def fleet():
    """Devices with every kind of sensor, awkward names and values, and missing parts."""
    devices = []
    for d, dev_name in enumerate(["rx1", 'we"ird\\dev\nice é', "empty"]):
        dev = DeviceState(dev_name, "katcp")
        dev.connected = d != 1
        dev.synced = d == 0
        dev.updates = 17 * d
        if dev_name == "empty":
            devices.append(dev)
            continue
        values = {
            "float": [0.1, -2.5, 1e22, 1234567.0, 1e-9, float("nan"), float("inf"),
                      float("-inf"), 0.0, -0.0],
            "integer": [0.0, 7.0, 1000000.0, -3.0],
            "boolean": [0.0, 1.0],
            "timestamp": [1700000000.5, 1.5, 0.0],
            "discrete": ["idle", "on", 'q"', "not allowed"],
            "lru": ["nominal", "error"],
            "string": AWKWARD,
            "address": ["10.0.0.1:7148", "[::1]:80"],
        }
        i = 0
        for katcp_type, vals in values.items():
            for name in AWKWARD:
                for value in vals:
                    meta = SensorMeta(dev_name, f"{katcp_type} {name} {i}", katcp_type,
                                      ["idle", "on", 'q"', "a\\b", "é"])
                    ts = None if i % 7 == 3 else 1.7e9 + i / 8
                    value = None if i % 11 == 5 and katcp_type != "string" else value
                    dev.store(i, meta, value, i % 8, ts)
                    i += 1
        devices.append(dev)
    return devices


def registry_of(devices, process=False):
    registry = ScrapeRegistry()
    registry.register(FleetCollector(devices))
    if process:
        ProcessCollector(registry=registry)
    return registry


def test_render_is_generate_latest_byte_for_byte():
    devices = fleet()
    registry = registry_of(devices)
    for _ in range(2):  # the second time with every label string cached
        assert registry.render() == generate_latest(registry)
        assert registry.render(openmetrics=True) == generate_openmetrics(registry)


def test_render_follows_changes_of_readings_and_sensors():
    devices = fleet()
    registry = registry_of(devices)
    registry.render()
    dev = devices[0]
    for name, meta in list(dev.sensors.items()):
        value, status, ts = dev.readings[name]
        if meta.kind == "stateset":
            value = "on" if value != "on" else "idle"
        elif meta.kind == "info":
            value = f'new "{value}"'
        elif value is not None:
            value = value + 1
        dev.store(name, meta, value, (status + 1) % 7, None if ts is None else ts + 1)
    assert registry.render() == generate_latest(registry)
    # A resync: one sensor gone, one new, one with a new type, the rest kept as they were.
    metas = dict(list(dev.sensors.items())[1:])
    retyped = next(name for name, meta in metas.items() if meta.kind == "number")
    metas[retyped] = SensorMeta("rx1", metas[retyped].name, "string")
    metas["added"] = SensorMeta("rx1", "added", "discrete", ["a", "b"])
    dev.replace_sensors(metas)
    assert registry.render() == generate_latest(registry)
    dev.store("added", metas["added"], "b", 1, 5.0)
    dev.store(retyped, metas[retyped], "text", 1, 5.0)
    # An NCP param seen for the first time comes last.
    dev.store("ncp.param", SensorMeta("rx1", "ncp.param", "float"), 2.5, 1, 6.0)
    assert registry.render() == generate_latest(registry)
    dev.set_disconnected()
    assert registry.render() == generate_latest(registry)
    series = parse(registry.render().decode())
    assert series[("katcp_sensor_state", frozenset(
        {"device": "rx1", "sensor": "added", "katcp_sensor_state": "b"}.items()))] == 1.0
    assert series[key("katcp_sensor_value", device="rx1", sensor="ncp.param")] == 2.5
    assert series[key("katcp_sensor_status", device="rx1", sensor="ncp.param")] == 5.0
    assert series[key("katcp_device_sensors", device="rx1")] == len(dev.readings)


def test_render_parses_to_the_labels_as_given():
    series = parse(registry_of(fleet()).render().decode())
    sensors = {dict(labels)["sensor"] for _name, labels in series if "sensor" in dict(labels)}
    devices = {dict(labels)["device"] for _name, labels in series}
    assert {'we"ird\\dev\nice é', "rx1", "empty"} <= devices
    assert any("new\nline" in s for s in sensors) and any("漢字" in s for s in sensors)
    infos = {dict(labels).get("value") for name, labels in series if name == "katcp_sensor_info"}
    assert set(AWKWARD) <= infos
    values = [v for (name, _labels), v in series.items() if name == "katcp_sensor_value"]
    assert any(math.isnan(v) for v in values) and math.inf in values


def test_other_collectors_are_formatted_by_prometheus_client():
    registry = registry_of(fleet(), process=True)
    text = registry.render().decode()
    assert "process_cpu_seconds_total" in text and text.index("katcp_") < text.index("process_")
    om = registry.render(openmetrics=True)
    assert om.endswith(b"# EOF\n") and om.count(b"# EOF") == 1


def test_endpoint_serves_render_and_leaves_the_rest_to_prometheus_client():
    registry = registry_of(fleet())
    calls = []
    render = registry.render_chunks

    def counting_render(openmetrics=False):
        calls.append(openmetrics)
        return render(openmetrics)

    registry.render_chunks = counting_render  # type: ignore[method-assign]
    httpd, thread = serve_metrics(registry, "127.0.0.1", 0, openmetrics=True, compress=False)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"

    def get(url, accept=None):
        request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers["Content-Type"], response.read()

    try:
        ctype, body = get(url)
        assert ctype.startswith("text/plain; version=0.0.4") and body == generate_latest(registry)
        ctype, body = get(url, "application/openmetrics-text;version=1.0.0")
        assert ctype.startswith("application/openmetrics-text; version=1.0.0")
        assert body == generate_openmetrics(registry)
        assert calls == [False, True]
        ctype, body = get(url + "?name[]=katcp_device_connected&name[]=katcp_sensor_value")
        assert calls == [False, True]  # a filtered scrape is prometheus_client's
        series = parse(body.decode())
        assert {name for name, _labels in series} == {"katcp_device_connected",
                                                      "katcp_sensor_value"}
        assert series[key("katcp_device_connected", device="rx1")] == 1.0
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_concurrent_renders_agree():
    devices = fleet()
    registry = registry_of(devices)
    expected = generate_latest(registry)
    results = []

    def scrape():
        results.append(registry.render())

    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [expected] * 4


def test_kept_texts_tell_zero_from_minus_zero_and_nan():
    dev = DeviceState("d", "katcp")
    meta = SensorMeta("d", "s", "float")
    registry = registry_of([dev])
    for value, ts in [(0.0, 0.0), (-0.0, -0.0), (0.0, 0.0), (float("nan"), float("nan")),
                      (float("nan"), 1.0), (1.0, 1.0)]:
        dev.store("s", meta, value, 1, ts)
        assert registry.render() == generate_latest(registry), (value, ts)


def test_readings_leave_the_cyclic_gc_so_updates_do_not_set_off_full_collections():
    import gc

    dev = DeviceState("d", "katcp")
    for i, (katcp_type, value) in enumerate([("float", 1.5), ("string", "text"),
                                             ("discrete", "on"), ("float", None)]):
        dev.store(i, SensorMeta("d", f"s{i}", katcp_type, ["on", "off"]), value, 1, 5.0)
    gc.collect()
    assert dev.readings and not any(gc.is_tracked(r) for r in dev.readings.values())
