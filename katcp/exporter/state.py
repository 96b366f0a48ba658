"""What the exporter knows about each device: the state its watchers write and scrapes read.

Threads: the watchers write on the event loop thread; the HTTP thread of ``/metrics`` reads.
No lock is needed because every write is one atomic store under the GIL and every reading is
an immutable tuple:

* a sensor reading is the tuple ``(meta, value, status, timestamp)``; an update stores a new
  tuple in ``DeviceState.readings[key]`` (one ``dict.__setitem__``), so a scrape sees a
  reading whole, never the value of one update with the status of another;
* a scrape copies a device's readings with ``list(readings.values())``, which runs in C
  without releasing the GIL, so it sees one consistent set of that device's sensors even
  while the loop adds or removes sensors (a resync);
* the device flags and counter are single attribute stores.

A scrape thus costs the loop nothing: it never waits for the loop, and the loop never waits
for it (beyond the GIL's switch interval while the HTTP thread formats).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Hashable, Optional, Sequence, Tuple, Union

from katcp.core import Sensor

__all__ = [
    "DeviceState",
    "SensorMeta",
    "NUMBER",
    "STATESET",
    "INFO",
    "STATUS_UNKNOWN",
    "STATUS_UNREACHABLE",
    "sensor_meta",
    "status_code",
]

#: Kinds of exported sensors: a numeric gauge, a state set, or an info metric.
NUMBER, STATESET, INFO = "number", "stateset", "info"

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
Reading = Tuple["SensorMeta", Value, int, Optional[float]]


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
    """What does not change between readings of one sensor.

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
    labels : dict
        ``{"device": ..., "sensor": ...}``, built once and shared by every series.
    states : tuple of (str, dict)
        For a state set, each allowed value and the labels of its series.
    convert : callable
        Raw value (bytes or str) -> exported value (float, str, or None if unparsable).
    text : object
        Left None here; the scrape side (:mod:`katcp.exporter.collector`) keeps this
        sensor's label strings in it, escaped once by prometheus_client rather than on
        every scrape.  Only the HTTP thread writes it, with one attribute store.
    """

    __slots__ = ("name", "kind", "labels", "states", "convert", "text")

    def __init__(self, device: str, name: str, katcp_type: str,
                 params: Sequence[str] = (), timestamp_scale: float = 1.0) -> None:
        self.name = name
        self.kind = _KINDS.get(katcp_type, INFO)
        self.labels = {"device": device, "sensor": name}
        self.states: Tuple[Tuple[str, Dict[str, str]], ...] = ()
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
        self.text: Any = None
        if self.kind == STATESET:
            allowed = list(params) if katcp_type == "discrete" else ["nominal", "error"]
            self.states = tuple(
                (value, {"device": device, "sensor": name, "katcp_sensor_state": value})
                for value in dict.fromkeys(allowed))

    def __repr__(self) -> str:
        return f"<SensorMeta {self.labels['device']}/{self.name} {self.kind}>"


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


class DeviceState:
    """One watched device: connection flags, update counter and sensor readings.

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
    readings : dict
        Sensor key -> ``(meta, value, status, timestamp)``; value and timestamp may be None
        (no reading yet, or a value the device sent that does not parse).
    """

    __slots__ = ("name", "kind", "connected", "synced", "updates", "readings", "labels")

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.connected = False
        self.synced = False
        self.updates = 0
        self.readings: Dict[Hashable, Reading] = {}
        self.labels = {"device": name}

    def set_disconnected(self) -> None:
        """Mark the device gone: flags off, every sensor's status ``unreachable``.

        Values and timestamps are kept (filter on the status to hide them).  A scrape that
        sees the device disconnected sees all its sensors unreachable: ``connected`` drops
        last.
        """
        self.synced = False
        readings = self.readings
        for key, (meta, value, _status, ts) in list(readings.items()):
            readings[key] = (meta, value, STATUS_UNREACHABLE, ts)
        self.connected = False

    def replace_sensors(self, metas: Dict[Hashable, SensorMeta]) -> None:
        """Keep exactly the sensors of `metas` (after a sync), keeping known readings.

        A sensor whose meta changed (new type, new allowed values) starts afresh.
        """
        readings = self.readings
        for key in [key for key in readings if key not in metas]:
            del readings[key]
        for key, meta in metas.items():
            old = readings.get(key)
            if old is None or not _same_meta(old[0], meta):
                readings[key] = (meta, None, STATUS_UNKNOWN, None)
            elif old[0] is not meta:
                readings[key] = (meta,) + old[1:]

    def counts(self) -> Tuple[int, int]:
        """``(sensors, sensors with a reading)``."""
        readings = list(self.readings.values())
        return len(readings), sum(1 for r in readings if r[3] is not None)


def _same_meta(a: SensorMeta, b: SensorMeta) -> bool:
    return a.kind == b.kind and a.states == b.states and a.name == b.name
