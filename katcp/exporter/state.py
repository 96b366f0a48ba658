"""What the exporter knows about each device: the state its watchers write and scrapes read.

Each sensor has a meta in ``DeviceState.sensors``, a reading, the tuple ``(value, status,
timestamp)`` in ``DeviceState.readings``, and its lines of the exposition, ready as bytes in
``DeviceState.lines`` (see :mod:`katcp.exporter.exposition`): one list per sensor family,
indexed by the sensor's position.  A reading holds only numbers and text, so the cyclic
garbage collector stops tracking it at its first pass: at 10,000 updates per second, readings
that live a few seconds would otherwise reach the oldest generation and set off full
collections of the whole heap (0.3 to 0.5 s each, holding the GIL).  :meth:`DeviceState.store` writes both, and rewrites only
the lines whose part of the reading changed, so a scrape (:mod:`katcp.exporter.collector`)
joins bytes and formats nothing per sensor.

Threads: the watchers write on the event loop thread; the HTTP thread of ``/metrics`` reads.
No lock is needed because every write is one atomic store under the GIL and every reading is
an immutable tuple:

* an update stores a new tuple in ``readings[key]`` and a new line in each list it changes
  (one ``__setitem__`` each), so a scrape sees each line whole;
* a scrape joins a device's list of a family with one ``bytes.join``, which runs in C
  without releasing the GIL for such sizes;
* a resync (sensors added or removed) builds a new ``lines`` tuple and stores it with one
  attribute store; a scrape takes each device's ``lines`` once, so it sees one set of the
  device's sensors;
* a resync replaces ``sensors`` and ``readings`` with new dicts, each with one store;
* ``collect()`` (prometheus_client's own path) copies a device's sensors and readings with
  ``list(d.items())``, which runs in C as well, and skips a sensor without a reading;
* the device flags and counter are single attribute stores.

A scrape thus costs the loop nothing: it never waits for the loop, and the loop never waits
for it (beyond the GIL's switch interval while the HTTP thread joins).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple, Union

from katcp.core import Sensor

from . import exposition
from .exposition import value_line

__all__ = [
    "DeviceState",
    "FAMILIES",
    "SensorMeta",
    "NUMBER",
    "STATESET",
    "INFO",
    "STATUS_UNKNOWN",
    "STATUS_UNREACHABLE",
    "sensor_meta",
    "shared_key",
    "status_code",
]

#: Kinds of exported sensors: a numeric gauge, a state set, or an info metric.
NUMBER, STATESET, INFO = "number", "stateset", "info"

#: Families of the sensor lines of a device, in exposition order: values of numeric
#: sensors, of state sets, of text sensors; statuses; timestamps.
FAMILIES = ("value", "state", "info", "status", "stamp")
_FAMILIES = {NUMBER: 0, STATESET: 1, INFO: 2}
_STATUS, _STAMP = 3, 4

STATUS_UNKNOWN = Sensor.UNKNOWN
STATUS_UNREACHABLE = Sensor.UNREACHABLE
_STATUS_CODES: Dict[bytes, int] = dict(Sensor.STATUS_NAMES_RAW)

#: KATCP sensor type -> exported kind.
_KINDS = {
    "integer": NUMBER,
    "float": NUMBER,
    "boolean": NUMBER,
    "timestamp": NUMBER,
    "discrete": STATESET,
    "lru": STATESET,
    "string": INFO,
    "address": INFO,
}

Value = Union[float, str, None]
Reading = Tuple[Value, int, Optional[float]]


#: One bytes object per sensor name: a fleet's devices of one kind name their sensors alike,
#: and each device's key would otherwise be a copy (45 B per sensor at 100,000 sensors).
#: Cleared when it grows past _KEYS_MAX, so devices renaming sensors cannot grow it forever.
_KEYS: Dict[bytes, bytes] = {}
_KEYS_MAX = 100000


def shared_key(raw: bytes) -> bytes:
    """`raw` (a sensor's raw name), or the equal bytes object already in use as a key."""
    key = _KEYS.get(raw)
    if key is None:
        if len(_KEYS) >= _KEYS_MAX:
            _KEYS.clear()
        key = _KEYS[raw] = raw
    return key


def status_code(raw: bytes) -> int:
    """Numeric KATCP status of a raw status word (``b"nominal"`` -> 1); unknown words -> 0."""
    return _STATUS_CODES.get(raw, STATUS_UNKNOWN)


def _to_float(raw: Union[bytes, str]) -> float | None:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def _to_bool(raw: Union[bytes, str]) -> float | None:
    if raw in (b"1", "1", True):
        return 1.0
    if raw in (b"0", "0", False):
        return 0.0
    return None


def _to_text(raw: Union[bytes, str]) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(raw)


class SensorMeta:
    """What does not change between readings of one sensor, with its label text.

    Parameters
    ----------
    device : str
        Device name (the ``device`` label).
    name : str
        Sensor name (the ``sensor`` label), exactly as the device names it.
    katcp_type : str
        KATCP type (``integer``, ``float``, ``boolean``, ``timestamp``, ``discrete``,
        ``lru``, ``string``, ``address``); anything else is exported as text (info).
    params : sequence of str
        The type's parameters from ``#sensor-list`` (the allowed values of a discrete).
    timestamp_scale : float
        Factor turning the device's timestamp values into seconds (1e-3 for KATCP v4).

    Attributes
    ----------
    kind : str
        :data:`NUMBER`, :data:`STATESET` or :data:`INFO`.
    family : int
        Index in ``DeviceState.lines`` of the family of its values (0 value, 1 state,
        2 info).
    states : tuple of str
        For a state set, the allowed values (one series each).
    convert : callable
        Raw value (bytes or str) -> exported value (float, str, or None if unparsable).
    labels : bytes
        ``{device="...",sensor="..."}`` as prometheus_client writes it, made once here.
    state_labels : tuple of bytes
        For a state set, the labels of each allowed value's series.
    index : int
        Position of the sensor in its device's ``lines`` (set by :class:`DeviceState`).
    """

    __slots__ = ("device", "name", "kind", "family", "states", "convert", "labels",
                 "state_labels", "index")

    def __init__(self, device: str, name: str, katcp_type: str,
                 params: Sequence[str] = (), timestamp_scale: float = 1.0) -> None:
        # Interned: the same names repeat on every device of a kind, and in every meta.
        self.device = sys.intern(device)
        self.name = name = sys.intern(name)
        self.kind = _KINDS.get(katcp_type, INFO)
        self.family = _FAMILIES[self.kind]
        self.states: Tuple[str, ...] = ()
        convert: Callable[[Union[bytes, str]], Value]
        if katcp_type == "boolean":
            convert = _to_bool
        elif katcp_type == "timestamp" and timestamp_scale != 1.0:
            def convert(raw, _scale=timestamp_scale):
                value = _to_float(raw)
                return None if value is None else value * _scale
        elif self.kind == NUMBER:
            convert = _to_float
        else:
            convert = _to_text
        self.convert = convert
        self.labels = exposition.sensor_labels(device, name)
        self.state_labels: Tuple[bytes, ...] = ()
        self.index = -1
        if self.kind == STATESET:
            allowed = list(params) if katcp_type == "discrete" else ["nominal", "error"]
            self.states = tuple(dict.fromkeys(allowed))
            self.state_labels = exposition.state_labels(device, name, self.states)

    def value_line(self, value: Value) -> bytes:
        """The line(s) of `value` in this sensor's family (empty for None)."""
        kind = self.kind
        if kind is NUMBER:
            return exposition.value_line(self.labels, value)  # type: ignore[arg-type]
        if kind is STATESET:
            return exposition.state_lines(self.state_labels, self.states,
                                          value)  # type: ignore[arg-type]
        return exposition.info_line(self.device, self.name, value)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<SensorMeta {self.device}/{self.name} {self.kind}>"


def sensor_meta(device: str, name: str, value: object) -> SensorMeta | None:
    """Meta of a sensor known only by a value (an NCP param): numbers and text, else None.

    Parameters
    ----------
    device, name : str
        Device and sensor name.
    value : object
        A value of the sensor.
    """
    if isinstance(value, (bool, int, float)):
        return SensorMeta(device, name, "float")
    if isinstance(value, str):
        return SensorMeta(device, name, "string")
    return None


#: What an absent reading is compared with: every line differs from it.
_NO_READING: Tuple[Any, ...] = (object(), object(), object())

Lines = Tuple[List[bytes], List[bytes], List[bytes], List[bytes], List[bytes]]


def _no_lines() -> Lines:
    return ([], [], [], [], [])


class DeviceState:
    """One watched device: connection flags, update counter, sensor readings and lines.

    Parameters
    ----------
    name : str
        Device name (the ``device`` label).
    kind : str
        ``"katcp"`` or ``"ncp"``.

    Attributes
    ----------
    connected, synced : bool
        Whether the device is connected, and whether its sensors are known and subscribed.
    updates : int
        Sensor updates received since the exporter started.
    sensors : dict
        Sensor key -> :class:`SensorMeta`, in exposition order.
    readings : dict
        Sensor key -> ``(value, status, timestamp)``; value and timestamp may be None (no
        reading yet, or a value the device sent that does not parse).
    lines : tuple of 5 lists of bytes
        Per family of :data:`FAMILIES`, each sensor's lines of the exposition (empty bytes
        where it has none), in the order of ``sensors``.
    labels : bytes
        ``{device="..."}`` for the per-device series.

    Notes
    -----
    Only :meth:`store`, :meth:`replace_sensors` and :meth:`set_disconnected` write them,
    from one thread (the loop's); any thread may read (see the module docstring).
    """

    __slots__ = ("name", "kind", "connected", "synced", "updates", "sensors", "readings",
                 "lines", "labels")

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.connected = False
        self.synced = False
        self.updates = 0
        self.sensors: Dict[Hashable, SensorMeta] = {}
        self.readings: Dict[Hashable, Reading] = {}
        self.lines: Lines = _no_lines()
        self.labels = exposition.device_labels(name)

    def store(self, key: Hashable, meta: SensorMeta, value: Value, status: int,
              ts: float | None) -> None:
        """Store a reading of sensor `key` and rewrite the lines it changes.

        A key not seen before (an NCP param) is added at the end; a key stored with
        another meta than before starts afresh in the same place.

        Parameters
        ----------
        key : hashable
            The sensor's key (its raw name).
        meta : SensorMeta
            The sensor.
        value : float, str or None
            The exported value (None: none, or unparsable).
        status : int
            Numeric KATCP status.
        ts : float or None
            The reading's timestamp in seconds.
        """
        lines = self.lines
        sensors = self.sensors
        if sensors.get(key) is meta:
            old = self.readings.get(key, _NO_READING)
        else:
            old_meta = sensors.get(key)
            if old_meta is None:
                meta.index = len(lines[0])
                for family in lines:
                    family.append(b"")
            else:
                meta.index = old_meta.index
                for family in lines:
                    family[meta.index] = b""
            sensors[key] = meta
            old = _NO_READING
        self.readings[key] = (value, status, ts)
        i = meta.index
        # Zeros are written afresh: -0.0 == 0.0, but they are written apart.
        if value != old[0] or not value:
            lines[meta.family][i] = (
                value_line(meta.labels, value) if meta.kind is NUMBER  # type: ignore[arg-type]
                else meta.value_line(value))
        if status != old[1]:
            lines[_STATUS][i] = exposition.status_line(meta.labels, status)
        if ts != old[2] or not ts:
            lines[_STAMP][i] = exposition.stamp_line(meta.labels, ts)

    def set_disconnected(self) -> None:
        """Mark the device gone: flags off, every sensor's status ``unreachable``.

        Values and timestamps are kept (filter on the status to hide them).  A scrape that
        sees the device disconnected sees all its sensors unreachable: ``connected`` drops
        last.
        """
        self.synced = False
        store, readings = self.store, self.readings
        for key, meta in list(self.sensors.items()):
            value, _status, ts = readings.get(key, (None, 0, None))
            store(key, meta, value, STATUS_UNREACHABLE, ts)
        self.connected = False

    def replace_sensors(self, metas: Dict[Hashable, SensorMeta]) -> None:
        """Keep exactly the sensors of `metas` (after a sync), keeping known readings.

        A sensor whose meta changed (new type, new allowed values) starts afresh.  Sensors
        kept stay in their order, new ones come after them.  The dicts and lines are built
        aside and each replaces the old one in one store.
        """
        old_sensors, old_readings = self.sensors, self.readings
        sensors: Dict[Hashable, SensorMeta] = {}
        readings: Dict[Hashable, Reading] = {}
        for key in [key for key in old_sensors if key in metas] + [
                key for key in metas if key not in old_sensors]:
            meta = metas[key]
            sensors[key] = meta
            old = old_sensors.get(key)
            reading = old_readings.get(key)
            if old is None or reading is None or not _same_meta(old, meta):
                reading = (None, STATUS_UNKNOWN, None)
            readings[key] = reading
        lines = _no_lines()
        status, stamp = lines[_STATUS], lines[_STAMP]
        for index, (meta, (val, st, ts)) in enumerate(zip(sensors.values(), readings.values())):
            meta.index = index
            for family in lines:
                family.append(b"")
            lines[meta.family][index] = meta.value_line(val)
            status[index] = exposition.status_line(meta.labels, st)
            stamp[index] = exposition.stamp_line(meta.labels, ts)
        self.sensors, self.readings, self.lines = sensors, readings, lines

    def counts(self) -> Tuple[int, int]:
        """``(sensors, sensors with a reading)``."""
        readings = list(self.readings.values())
        return len(readings), sum(1 for r in readings if r[2] is not None)


def _same_meta(a: SensorMeta, b: SensorMeta) -> bool:
    return a.kind == b.kind and a.states == b.states and a.name == b.name
