"""The ``prometheus_client`` collector of the devices' sensors, and the registry it serves from.

A scrape reads the devices' state (see :mod:`katcp.exporter.state` for why that needs no
lock) and yields

=====================================  ======================================================
``katcp_sensor_value``                 gauge: integer, float, boolean (0/1) and timestamp
                                       sensors
``katcp_sensor_state``                 state set: discrete and LRU sensors, one series per
                                       allowed value (1 for the current one, else 0)
``katcp_sensor_info``                  info: string and address sensors, the text in the
                                       ``value`` label
``katcp_sensor_status``                gauge: numeric KATCP status (0 unknown, 1 nominal,
                                       2 warn, 3 error, 4 failure, 5 unreachable, 6 inactive)
``katcp_sensor_timestamp_seconds``     gauge: the reading's own timestamp (Unix seconds)
``katcp_device_connected``             gauge per device: 1 while connected
``katcp_device_synced``                gauge per device: 1 once its sensors are subscribed
``katcp_device_sensors``               gauge per device: sensors exported
``katcp_sensor_updates_total``         counter per device: sensor updates received
=====================================  ======================================================

Sensor series carry the labels ``device`` and ``sensor``; metric names are fixed, and label
values may hold any text (prometheus_client escapes them), so no sensor name can make the
exposition invalid.

Two ways to the same text: :meth:`FleetCollector.collect` is the standard collector
interface (prometheus_client formats a sample per series, 10 to 30 µs each), and
:meth:`FleetCollector.render` (what the endpoint serves, through
:meth:`ScrapeRegistry.render_chunks`) joins the lines that the device state keeps ready,
some hundred times faster at 100,000 sensors.
"""

from __future__ import annotations

import gc
import threading
from typing import Any, Dict, Iterable, Iterator, List, Sequence, Tuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from .exposition import Families, number_text
from .state import FAMILIES, INFO, NUMBER, STATESET, DeviceState, Reading, SensorMeta

__all__ = ["FleetCollector", "SENSOR_LABELS", "ScrapeRegistry"]

SENSOR_LABELS = ("device", "sensor")

#: OpenMetrics' end marker, which must come once, at the very end of a scrape.
_EOF = b"# EOF\n"


def _device_families() -> Tuple[Metric, ...]:
    """The empty per-device families, in exposition order."""
    labels = ["device"]
    return (
        GaugeMetricFamily("katcp_device_connected",
                          "1 while the exporter is connected to the device", labels=labels),
        GaugeMetricFamily("katcp_device_synced",
                          "1 once the device's sensors are listed and subscribed",
                          labels=labels),
        GaugeMetricFamily("katcp_device_sensors", "Number of the device's sensors exported",
                          labels=labels),
        CounterMetricFamily("katcp_sensor_updates", "Sensor updates received from the device",
                            labels=labels),
    )


def _sensor_families() -> Tuple[Metric, ...]:
    """The empty per-sensor families, in exposition order: value, state, info, status, stamp."""
    labels = list(SENSOR_LABELS)
    return (
        GaugeMetricFamily("katcp_sensor_value",
                          "Value of a numeric KATCP sensor (booleans as 0/1)", labels=labels),
        StateSetMetricFamily("katcp_sensor_state", "Value of a discrete KATCP sensor",
                             labels=labels),
        InfoMetricFamily("katcp_sensor", "Value of a string KATCP sensor", labels=labels),
        GaugeMetricFamily(
            "katcp_sensor_status",
            "KATCP sensor status: 0 unknown, 1 nominal, 2 warn, 3 error, 4 failure, "
            "5 unreachable, 6 inactive", labels=labels),
        GaugeMetricFamily("katcp_sensor_timestamp_seconds",
                          "Timestamp of the sensor reading (Unix time)", labels=labels),
    )


def _encode(collector: Any, openmetrics: bool) -> bytes:
    """`collector` in one of prometheus_client's formats, without OpenMetrics' end marker."""
    if not openmetrics:
        return generate_latest(collector)
    text = generate_openmetrics(collector)
    return text[:-len(_EOF)] if text.endswith(_EOF) else text


#: Per format (OpenMetrics or not), the ``# HELP``/``# TYPE`` lines of each family (device
#: families, then sensor families), as prometheus_client writes them for a family without
#: samples.
_HEADERS: Dict[bool, Tuple[bytes, ...]] = {}


def _headers(openmetrics: bool) -> Tuple[bytes, ...]:
    headers = _HEADERS.get(openmetrics)
    if headers is None:
        headers = _HEADERS[openmetrics] = tuple(
            _encode(Families(family), openmetrics)
            for family in _device_families() + _sensor_families())
    return headers


#: Bytes per chunk of rendered text.
_CHUNK_BYTES = 256 * 1024


class FleetCollector:
    """Collector of the sensors of a fixed set of devices (register it in a registry).

    :meth:`collect` is the standard prometheus_client interface (every sample a
    :class:`~prometheus_client.samples.Sample`, formatted per scrape by
    ``generate_latest``); :meth:`render` writes the same exposition several times faster,
    and is what the endpoint serves (see its docstring for how).

    Parameters
    ----------
    devices : sequence of DeviceState
        The devices to export, in the order their series appear.
    """

    def __init__(self, devices: Sequence[DeviceState]) -> None:
        self._devices = tuple(devices)

    @property
    def devices(self) -> Sequence[DeviceState]:
        """The exported devices."""
        return self._devices

    def _device_samples(self) -> Tuple[Tuple[Metric, ...],
                                       List[List[Tuple[SensorMeta, Reading]]]]:
        """The per-device families filled in, and each device's sensors with their readings."""
        connected, synced, count, updates = families = _device_families()
        snapshot = []
        for dev in self._devices:
            dev_labels = {"device": dev.name}
            # One atomic copy of each: see katcp.exporter.state.
            sensors, readings = list(dev.sensors.items()), dict(dev.readings.items())
            snapshot.append([(meta, readings[key]) for key, meta in sensors if key in readings])
            connected.samples.append(
                Sample("katcp_device_connected", dev_labels, 1.0 if dev.connected else 0.0))
            synced.samples.append(
                Sample("katcp_device_synced", dev_labels, 1.0 if dev.synced else 0.0))
            count.samples.append(Sample("katcp_device_sensors", dev_labels, len(snapshot[-1])))
            updates.samples.append(Sample("katcp_sensor_updates_total", dev_labels, dev.updates))
        return families, snapshot

    def collect(self) -> Iterator[Metric]:
        """Build and yield the metric families (called by prometheus_client per scrape)."""
        device_families, snapshot = self._device_samples()
        value, state, info, status, stamp = sensor_families = _sensor_families()
        # Samples are appended directly: add_metric() would rebuild each label dict.
        add_value = value.samples.append
        add_state = state.samples.append
        add_info = info.samples.append
        add_status = status.samples.append
        add_stamp = stamp.samples.append
        for device_sensors in snapshot:
            for meta, (val, st, ts) in device_sensors:
                lab = {"device": meta.device, "sensor": meta.name}
                add_status(Sample("katcp_sensor_status", lab, st))
                if ts is not None:
                    add_stamp(Sample("katcp_sensor_timestamp_seconds", lab, ts))
                if val is None:
                    continue
                kind = meta.kind
                if kind is NUMBER:
                    add_value(Sample("katcp_sensor_value", lab, float(val)))
                elif kind is STATESET:
                    for allowed in meta.states:
                        add_state(Sample("katcp_sensor_state",
                                         {**lab, "katcp_sensor_state": allowed},
                                         1.0 if allowed == val else 0.0))
                elif kind is INFO:
                    add_info(Sample("katcp_sensor_info", {**lab, "value": str(val)}, 1.0))
        yield from device_families
        yield from sensor_families

    def describe(self) -> Iterable[Metric]:
        """The families without samples: their names let a registry serve ``name[]`` queries."""
        return _device_families() + _sensor_families()

    def render(self, openmetrics: bool = False) -> Iterator[bytes]:
        """The exposition of :meth:`collect`, byte for byte, joined from prepared lines.

        Every sensor's lines are kept ready by its device's state (see
        :mod:`katcp.exporter.state` and :mod:`katcp.exporter.exposition`), rewritten when
        its reading changes; a scrape joins each device's lines of each family and writes
        four lines per device.  prometheus_client still writes each family's
        ``# HELP``/``# TYPE`` lines.

        Parameters
        ----------
        openmetrics : bool
            OpenMetrics rather than the Prometheus text format (the samples are the same;
            the headers differ).  The ``# EOF`` marker is left to the caller.

        Yields
        ------
        bytes
            Chunks of some 256 kB, families in the order of :meth:`collect`, each made when
            asked for: a scrape sends one while it joins the next, and never holds the
            whole text (28 MB at 100,000 sensors), which the allocator would keep.
        """
        return _chunked(self._parts(openmetrics))

    def _parts(self, openmetrics: bool) -> Iterator[bytes]:
        # One look at each device: its lines may be replaced (a resync) meanwhile.
        snapshot = [(dev.labels, dev.connected, dev.synced, dev.updates, dev.lines)
                    for dev in self._devices]
        number = number_text
        headers = iter(_headers(openmetrics))
        yield next(headers)
        for labels, connected, _s, _u, _l in snapshot:
            yield b"katcp_device_connected%s %s\n" % (labels, b"1.0" if connected else b"0.0")
        yield next(headers)
        for labels, _c, synced, _u, _l in snapshot:
            yield b"katcp_device_synced%s %s\n" % (labels, b"1.0" if synced else b"0.0")
        yield next(headers)
        for labels, _c, _s, _u, lines in snapshot:
            yield b"katcp_device_sensors%s %s\n" % (labels, number(len(lines[-1])))
        yield next(headers)
        for labels, _c, _s, updates, _l in snapshot:
            yield b"katcp_sensor_updates_total%s %s\n" % (labels, number(updates))
        join = b"".join
        for family in range(len(FAMILIES)):
            yield next(headers)
            for _labels, _c, _s, _u, lines in snapshot:
                yield join(lines[family])


def _chunked(parts: Iterable[bytes]) -> Iterator[bytes]:
    """`parts` joined into chunks of some 256 kB.

    Fewer, larger writes than a part each; smaller than the whole, so no join holds the
    GIL against the event loop for long.
    """
    pending: List[bytes] = []
    size = 0
    for part in parts:
        pending.append(part)
        size += len(part)
        if size >= _CHUNK_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


class _GcPause:
    """Pauses the cyclic garbage collector while at least one scrape is being formatted.

    A :meth:`FleetCollector.collect` of 100,000 sensors allocates some 400,000 samples that all survive until the
    text is built, so the collector would run full collections over the whole heap during
    it: seconds of CPU, all holding the GIL, during which the event loop is frozen too.
    Samples hold no reference cycles and are freed by reference counting, so nothing is
    lost by pausing; cyclic garbage of the loop thread waits a few seconds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._was_enabled = False

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._depth += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._was_enabled:
                gc.enable()


_GC_PAUSE = _GcPause()


class ScrapeRegistry(CollectorRegistry):
    """A :class:`prometheus_client.CollectorRegistry` with a fast way to the whole exposition.

    :meth:`render` (what the endpoint serves) joins what :meth:`FleetCollector.render`
    writes with what prometheus_client writes for the other collectors.  The registry also
    works as any other, e.g. with ``generate_latest`` or for ``name[]`` queries; then it
    pauses the cyclic GC during :meth:`collect` (prometheus_client formats each family as
    it is yielded, so the pause covers the whole scrape; concurrent scrapes share it).
    """

    def __init__(self) -> None:
        # auto_describe: the names of collectors without describe() (prometheus_client's
        # process metrics) are learnt from one collect() at registration, so that
        # ``name[]`` queries find them; FleetCollector describes itself.
        super().__init__(auto_describe=True)
        # Registration order, which is the order of the exposition (the base class keeps
        # it too, but privately).
        self._ordered: List[Collector] = []

    def register(self, collector: Collector) -> None:
        """Register `collector` (see :meth:`prometheus_client.CollectorRegistry.register`)."""
        super().register(collector)
        with self._lock:
            self._ordered.append(collector)

    def unregister(self, collector: Collector) -> None:
        """Unregister `collector`."""
        super().unregister(collector)
        with self._lock:
            self._ordered.remove(collector)

    def collect(self) -> Iterator[Metric]:
        """Yield every registered collector's metrics, with the cyclic GC paused."""
        with _GC_PAUSE:
            yield from super().collect()

    def render(self, openmetrics: bool = False) -> bytes:
        """The whole exposition, as ``generate_latest`` of this registry would write it.

        Parameters
        ----------
        openmetrics : bool
            OpenMetrics (with its ``# EOF``) rather than the Prometheus text format.
        """
        return b"".join(self.render_chunks(openmetrics))

    def render_chunks(self, openmetrics: bool = False) -> Iterator[bytes]:
        """:meth:`render` in chunks of some 256 kB, each made when asked for, to send (or
        compress) one at a time.

        Collectors with a ``render`` method (:class:`FleetCollector`) write their own part;
        the others (e.g. prometheus_client's process metrics) are formatted by
        prometheus_client as usual.

        Parameters
        ----------
        openmetrics : bool
            OpenMetrics (with its ``# EOF``) rather than the Prometheus text format.
        """
        with self._lock:
            collectors = list(self._ordered)
        for collector in collectors:
            render = getattr(collector, "render", None)
            if render is not None:
                yield from render(openmetrics)
            else:
                yield _encode(collector, openmetrics)
        if openmetrics:
            yield _EOF
