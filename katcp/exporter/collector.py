"""The ``prometheus_client`` collector: metric families built at scrape time from device state.

Nothing is done per sensor update on the prometheus_client side: a scrape walks the devices'
readings (see :mod:`katcp.exporter.state` for why that needs no lock) and yields

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
interface, and :meth:`FleetCollector.render` (what the endpoint serves, through
:meth:`ScrapeRegistry.render_chunks`) writes the same bytes several times faster by keeping
each sensor's label strings between scrapes.
"""

from __future__ import annotations

import gc
import re
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
from prometheus_client.utils import floatToGoString

from .state import INFO, NUMBER, STATESET, DeviceState, Reading, SensorMeta

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


class _Families:
    """The smallest prometheus_client collector: yields the given families."""

    def __init__(self, *families: Metric) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _encode(collector: Any, openmetrics: bool) -> bytes:
    """`collector` in one of prometheus_client's formats, without OpenMetrics' end marker."""
    if not openmetrics:
        return generate_latest(collector)
    text = generate_openmetrics(collector)
    return text[:-len(_EOF)] if text.endswith(_EOF) else text


#: Per format (OpenMetrics or not), the ``# HELP``/``# TYPE`` lines of each family (device
#: families, then sensor families), as prometheus_client writes them for a family without
#: samples.
_HEADERS: Dict[bool, Tuple[str, ...]] = {}


def _headers(openmetrics: bool) -> Tuple[str, ...]:
    headers = _HEADERS.get(openmetrics)
    if headers is None:
        headers = _HEADERS[openmetrics] = tuple(
            _encode(_Families(family), openmetrics).decode("utf-8")
            for family in _device_families() + _sensor_families())
    return headers


_TEMPLATE = "t"


def _label_texts(label_sets: Sequence[Dict[str, str]]) -> List[str]:
    """The label part (``{a="x",b="y"}``) of each label set, written by prometheus_client.

    One ``generate_latest`` call formats a sample per label set; escaped label values hold
    no newline, so a line is a sample.  It costs what a scrape used to cost per series
    (10 to 30 µs), so it is used for shapes and for the rare values that need escaping.
    """
    family = Metric(_TEMPLATE, "", "gauge")
    family.samples = [Sample(_TEMPLATE, labels, 0.0) for labels in label_sets]
    lines = [line for line in generate_latest(_Families(family)).decode("utf-8").split("\n")
             if line and not line.startswith("#")]
    if len(lines) != len(label_sets):  # pragma: no cover - a prometheus_client we don't know
        raise RuntimeError("unexpected prometheus_client output for label templates")
    return [line[len(_TEMPLATE):line.rindex(" ")] for line in lines]


#: A label value needs escaping in the exposition formats only if it holds one of these
#: (backslash, newline, double quote: the formats escape nothing else in label values).
_NEEDS_ESCAPE = re.compile(r'[\\\n"]').search
#: Values that needed escaping, escaped (awkward sensor names repeat on every device of
#: a kind); cleared when it grows past _ESCAPED_MAX, so NCP nodes cannot grow it forever.
_ESCAPED: Dict[str, str] = {}
_ESCAPED_MAX = 10000


def _escape_value(value: str) -> str:
    """`value` escaped as a label value: by prometheus_client, if there is anything to do."""
    if _NEEDS_ESCAPE(value) is None:
        return value
    escaped = _ESCAPED.get(value)
    if escaped is None:
        escaped = _label_texts([{"v": value}])[0][len('{v="'):-len('"}')]
        if len(_ESCAPED) >= _ESCAPED_MAX:
            _ESCAPED.clear()
        _ESCAPED[value] = escaped
    return escaped


class _Shape:
    """The label part of a sample for one set of label names, as prometheus_client writes it.

    prometheus_client formats a template sample whose label values are markers (control
    characters, which label values pass through unescaped); the text around the markers
    (label order, names, quotes, commas) is kept, and :meth:`text` puts each label's
    escaped value where its marker was.  So the layout is prometheus_client's, and a
    sensor's label strings cost a few string joins instead of a ``generate_latest``.

    Parameters
    ----------
    names : sequence of str
        The label names (at most 8).
    """

    def __init__(self, names: Sequence[str]) -> None:
        markers = {name: chr(1 + i) for i, name in enumerate(names)}
        parts = re.split("([\x01-\x08])", _label_texts([markers])[0])
        self._order = tuple(names[ord(marker) - 1] for marker in parts[1::2])
        if sorted(self._order) != sorted(names):  # pragma: no cover - unknown formatting
            raise RuntimeError("unexpected prometheus_client output for a label template")
        # The literal text with a %s per marker: one C-level % per label set.
        self._format = "%s".join(part.replace("%", "%%") for part in parts[0::2])
        self._positions = tuple(list(names).index(name) for name in self._order)
        self._in_order = self._positions == tuple(range(len(names)))

    def text(self, labels: Dict[str, str]) -> str:
        """The label part of a sample with `labels` (which has exactly this shape's names)."""
        return self._format % tuple(_escape_value(labels[name]) for name in self._order)

    def fill(self, *escaped: str) -> str:
        """The label part of a sample whose label values, escaped, are `escaped`.

        Parameters
        ----------
        *escaped : str
            The values in the order of the names the shape was made with.
        """
        if self._in_order:
            return self._format % escaped
        return self._format % tuple([escaped[i] for i in self._positions])


#: Shapes by label names, built on first use.
_SHAPES: Dict[Tuple[str, ...], _Shape] = {}


def _shape(*names: str) -> _Shape:
    shape = _SHAPES.get(names)
    if shape is None:
        shape = _SHAPES[names] = _Shape(names)
    return shape


class _SensorText:
    """A sensor's label strings, kept in ``SensorMeta.text`` by the first scrape that needs them.

    Attributes
    ----------
    labels : str
        ``{device="...",sensor="..."}``.
    states : tuple of (str, str)
        For a state set, each allowed value and the labels of its series.
    last : tuple
        ``(value, text)`` of the last value rendered: the formatted number, the state set's
        lines, or the info line.
    stamp : tuple
        ``(timestamp, text)`` of the last timestamp rendered.

    Notes
    -----
    A device's periodic reports (``event-rate``'s) repeat the reading's value and
    timestamp, so a scrape reuses these unless the sensor changed; formatting a
    timestamp is the costliest part of a series (the exponent form).  Each cache is one
    tuple, so two concurrent scrapes can both store it.
    """

    __slots__ = ("labels", "states", "last", "stamp")

    def __init__(self, meta: SensorMeta) -> None:
        device = _escape_value(meta.labels["device"])
        sensor = _escape_value(meta.labels["sensor"])
        self.labels = _shape(*SENSOR_LABELS).fill(device, sensor)
        if meta.states:
            fill = _shape("device", "katcp_sensor_state", "sensor").fill
            self.states = tuple((value, fill(device, _escape_value(value), sensor))
                                for value, _labels in meta.states)
        else:
            self.states = ()
        self.last: Tuple[Any, str] = (_NOTHING, "")
        self.stamp: Tuple[Any, str] = (_NOTHING, "")


#: Equal to nothing: what the caches of _SensorText start with.
_NOTHING = object()


def _state_lines(text: _SensorText, value: Any) -> str:
    last_value, lines = text.last
    if last_value != value:
        lines = "".join(f"katcp_sensor_state{labels} {'1.0' if allowed == value else '0.0'}\n"
                        for allowed, labels in text.states)
        text.last = (value, lines)
    return lines


def _info_line(meta: SensorMeta, text: _SensorText, value: Any) -> str:
    last_value, line = text.last
    if last_value != value:
        labels = _shape("device", "sensor", "value").text({**meta.labels, "value": str(value)})
        line = f"katcp_sensor_info{labels} 1.0\n"
        text.last = (value, line)
    return line


#: Characters per chunk of rendered text.
_CHUNK_CHARS = 256 * 1024

#: The text of each KATCP status (as prometheus_client formats the float).
_STATUS_TEXT = {code: floatToGoString(code) for code in range(7)}


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
        self._device_labels: Tuple[str, ...] = ()  # label strings, made by the first render

    @property
    def devices(self) -> Sequence[DeviceState]:
        """The exported devices."""
        return self._devices

    def _device_samples(self) -> Tuple[Tuple[Metric, ...], List[List[Reading]]]:
        """The per-device families filled in, and each device's readings (one atomic copy)."""
        connected, synced, count, updates = families = _device_families()
        snapshot = []
        for dev in self._devices:
            dev_labels = dev.labels
            readings = list(dev.readings.values())  # one atomic copy: see katcp.exporter.state
            snapshot.append(readings)
            connected.samples.append(
                Sample("katcp_device_connected", dev_labels, 1.0 if dev.connected else 0.0))
            synced.samples.append(
                Sample("katcp_device_synced", dev_labels, 1.0 if dev.synced else 0.0))
            count.samples.append(Sample("katcp_device_sensors", dev_labels, len(readings)))
            updates.samples.append(Sample("katcp_sensor_updates_total", dev_labels, dev.updates))
        return families, snapshot

    def collect(self) -> Iterator[Metric]:
        """Build and yield the metric families (called by prometheus_client per scrape)."""
        device_families, snapshot = self._device_samples()
        value, state, info, status, stamp = sensor_families = _sensor_families()
        # Samples are appended directly: add_metric() would rebuild each label dict, and
        # the metas hold them ready-made.
        add_value = value.samples.append
        add_state = state.samples.append
        add_info = info.samples.append
        add_status = status.samples.append
        add_stamp = stamp.samples.append
        for readings in snapshot:
            for meta, val, st, ts in readings:
                lab = meta.labels
                add_status(Sample("katcp_sensor_status", lab, st))
                if ts is not None:
                    add_stamp(Sample("katcp_sensor_timestamp_seconds", lab, ts))
                if val is None:
                    continue
                kind = meta.kind
                if kind is NUMBER:
                    add_value(Sample("katcp_sensor_value", lab, float(val)))
                elif kind is STATESET:
                    for allowed, state_labels in meta.states:
                        add_state(Sample("katcp_sensor_state", state_labels,
                                         1.0 if allowed == val else 0.0))
                elif kind is INFO:
                    add_info(Sample("katcp_sensor_info",
                                    {"device": lab["device"], "sensor": lab["sensor"],
                                     "value": str(val)}, 1.0))
        yield from device_families
        yield from sensor_families

    def render(self, openmetrics: bool = False) -> List[bytes]:
        """The exposition of :meth:`collect`, byte for byte, written several times faster.

        ``generate_latest`` spends 10 to 30 µs per series (building a sample, sorting and
        escaping its labels, formatting the value), seconds per scrape at 100,000
        sensors.  Here prometheus_client still writes everything that follows its rules:
        each family's ``# HELP``/``# TYPE`` lines, the layout of each set of label names
        (:class:`_Shape`), the escaping of label values that need it, and every number
        (``floatToGoString``).  Each sensor's label strings are built once and kept in its
        meta until its next sync, with the text of its last value and timestamp (see
        :class:`_SensorText`); a scrape pastes each reading's values after them.

        Parameters
        ----------
        openmetrics : bool
            OpenMetrics rather than the Prometheus text format (the samples are the same;
            the headers differ).  The ``# EOF`` marker is left to the caller.

        Returns
        -------
        list of bytes
            Chunks to concatenate, families in the order of :meth:`collect`.
        """
        fmt = floatToGoString
        if len(self._device_labels) != len(self._devices):
            shape = _shape("device")
            self._device_labels = tuple(shape.text(dev.labels) for dev in self._devices)
        connected: List[str] = []
        synced: List[str] = []
        count: List[str] = []
        updates: List[str] = []
        snapshot = []
        for dev, labels in zip(self._devices, self._device_labels):
            readings = list(dev.readings.values())  # one atomic copy: see katcp.exporter.state
            snapshot.append(readings)
            connected.append(f"katcp_device_connected{labels} {'1.0' if dev.connected else '0.0'}\n")
            synced.append(f"katcp_device_synced{labels} {'1.0' if dev.synced else '0.0'}\n")
            count.append(f"katcp_device_sensors{labels} {fmt(len(readings))}\n")
            updates.append(f"katcp_sensor_updates_total{labels} {fmt(dev.updates)}\n")
        # Each device's lines of a family are joined as soon as the device is done, so
        # the 355,000 line strings of a full scrape never live at once: as many small
        # objects would be kept by the allocator afterwards (~0.5 kB per sensor of RSS),
        # where a device's joined text is one block, freed whole.
        value: List[str] = []
        state: List[str] = []
        info: List[str] = []
        status: List[str] = []
        stamp: List[str] = []
        join = "".join
        status_text = _STATUS_TEXT
        for readings in snapshot:
            dev_value: List[str] = []
            dev_state: List[str] = []
            dev_info: List[str] = []
            dev_status: List[str] = []
            dev_stamp: List[str] = []
            add_value, add_state, add_info = dev_value.append, dev_state.append, dev_info.append
            add_status, add_stamp = dev_status.append, dev_stamp.append
            for meta, val, st, ts in readings:
                text = meta.text
                if text is None:
                    text = meta.text = _SensorText(meta)
                labels = text.labels
                add_status(f"katcp_sensor_status{labels} {status_text.get(st) or fmt(st)}\n")
                if ts is not None:
                    # Zeros are formatted afresh: -0.0 == 0.0, but they are written apart.
                    cached = text.stamp
                    if cached[0] != ts or not ts:
                        cached = text.stamp = (ts, fmt(ts))
                    add_stamp(f"katcp_sensor_timestamp_seconds{labels} {cached[1]}\n")
                if val is None:
                    continue
                kind = meta.kind
                if kind is NUMBER:
                    cached = text.last
                    if cached[0] != val or not val:
                        cached = text.last = (val, fmt(val))
                    add_value(f"katcp_sensor_value{labels} {cached[1]}\n")
                elif kind is STATESET:
                    add_state(_state_lines(text, val))
                elif kind is INFO:
                    add_info(_info_line(meta, text, val))
            value.append(join(dev_value))
            state.append(join(dev_state))
            info.append(join(dev_info))
            status.append(join(dev_status))
            stamp.append(join(dev_stamp))
        text_parts: List[str] = []
        for header, parts in zip(_headers(openmetrics), (connected, synced, count, updates,
                                                          value, state, info, status, stamp)):
            text_parts.append(header)
            text_parts.extend(parts)
        # Joined and encoded some 256 kB at a time: one join and one encoding of the whole
        # text (~28 MB at 100,000 sensors) would each hold the GIL for tens of ms against
        # the event loop.
        chunks = []
        pending: List[str] = []
        size = 0
        for part in text_parts:
            pending.append(part)
            size += len(part)
            if size >= _CHUNK_CHARS:
                chunks.append(join(pending).encode("utf-8"))
                pending, size = [], 0
        if pending:
            chunks.append(join(pending).encode("utf-8"))
        return chunks


class _GcPause:
    """Pauses the cyclic garbage collector while at least one scrape is being formatted.

    A scrape of 100,000 sensors allocates some 400,000 samples that all survive until the
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
    """A :class:`prometheus_client.CollectorRegistry` that pauses the cyclic GC per scrape.

    prometheus_client formats each family as :meth:`collect` yields it, so the pause covers
    the whole scrape: it starts with the first family and ends when the last has been
    formatted (or the scrape fails).  Concurrent scrapes share one pause.

    :meth:`render` is the fast way to the whole exposition (what the endpoint serves); the
    registry also works as any other, e.g. with ``generate_latest``.
    """

    def __init__(self) -> None:
        super().__init__(auto_describe=False)
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

    def render_chunks(self, openmetrics: bool = False) -> List[bytes]:
        """:meth:`render` in pieces of some 300 kB, to send (or compress) one at a time.

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
        chunks: List[bytes] = []
        with _GC_PAUSE:
            for collector in collectors:
                render = getattr(collector, "render", None)
                if render is not None:
                    chunks.extend(render(openmetrics))
                else:
                    chunks.append(_encode(collector, openmetrics))
        if openmetrics:
            chunks.append(_EOF)
        return chunks
