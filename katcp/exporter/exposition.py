"""The text of each series, written as prometheus_client writes it, prepared ahead of scrapes.

prometheus_client's ``generate_latest`` spends 10 to 30 µs per series (a sample object,
sorting and escaping its labels, formatting the value): seconds per scrape at 100,000
sensors.  The exporter instead keeps each series' line ready as bytes
(:class:`katcp.exporter.state.DeviceState` rewrites a line when its reading changes), so a
scrape only joins them.  prometheus_client still decides every character:

* the layout of each set of label names (order, quotes, commas) is taken from a sample it
  formats once (:class:`Shape`);
* label values that need escaping are escaped by it (:func:`escape_value`);
* every number is its ``floatToGoString``.

The tests hold the result to ``generate_latest`` of the same collector byte for byte.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Sequence, Tuple

from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = [
    "Families",
    "Shape",
    "device_labels",
    "escape_value",
    "info_line",
    "number_text",
    "sensor_labels",
    "shape",
    "stamp_line",
    "state_labels",
    "state_lines",
    "status_line",
    "value_line",
]


class Families:
    """The smallest prometheus_client collector: yields the given families."""

    def __init__(self, *families: Metric) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


_TEMPLATE = "t"


def _label_texts(label_sets: Sequence[Dict[str, str]]) -> List[str]:
    """The label part (``{a="x",b="y"}``) of each label set, written by prometheus_client.

    One ``generate_latest`` call formats a sample per label set; escaped label values hold
    no newline, so a line is a sample.  It costs what a scrape used to cost per series
    (10 to 30 µs), so it is used for shapes and for the rare values that need escaping.
    """
    family = Metric(_TEMPLATE, "", "gauge")
    family.samples = [Sample(_TEMPLATE, labels, 0.0) for labels in label_sets]
    lines = [line for line in generate_latest(Families(family)).decode("utf-8").split("\n")
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


def escape_value(value: str) -> str:
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


class Shape:
    """The label part of a sample for one set of label names, as prometheus_client writes it.

    prometheus_client formats a template sample whose label values are markers (control
    characters, which label values pass through unescaped); the text around the markers
    (label order, names, quotes, commas) is kept, and :meth:`fill` puts each label's
    escaped value where its marker was.  So the layout is prometheus_client's, and a
    series' label text costs a string format instead of a ``generate_latest``.

    Parameters
    ----------
    names : sequence of str
        The label names (at most 8).
    """

    def __init__(self, names: Sequence[str]) -> None:
        markers = {name: chr(1 + i) for i, name in enumerate(names)}
        parts = re.split("([\x01-\x08])", _label_texts([markers])[0])
        order = tuple(names[ord(marker) - 1] for marker in parts[1::2])
        if sorted(order) != sorted(names):  # pragma: no cover - unknown formatting
            raise RuntimeError("unexpected prometheus_client output for a label template")
        # The literal text with a %s per marker: one C-level % per label set.
        self._format = "%s".join(part.replace("%", "%%") for part in parts[0::2])
        self._positions = tuple(list(names).index(name) for name in order)
        self._in_order = self._positions == tuple(range(len(names)))

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
_SHAPES: Dict[Tuple[str, ...], Shape] = {}


def shape(*names: str) -> Shape:
    """The :class:`Shape` of these label names (made once, then shared)."""
    found = _SHAPES.get(names)
    if found is None:
        found = _SHAPES[names] = Shape(names)
    return found


def _utf8(text: str) -> bytes:
    return text.encode("utf-8")


def device_labels(device: str) -> bytes:
    """``{device="..."}``."""
    return _utf8(shape("device").fill(escape_value(device)))


def sensor_labels(device: str, sensor: str) -> bytes:
    """``{device="...",sensor="..."}``."""
    return _utf8(shape("device", "sensor").fill(escape_value(device), escape_value(sensor)))


def state_labels(device: str, sensor: str, allowed: Iterable[str]) -> Tuple[bytes, ...]:
    """The labels of each series of a state set, one per allowed value."""
    fill = shape("device", "katcp_sensor_state", "sensor").fill
    device, sensor = escape_value(device), escape_value(sensor)
    return tuple(_utf8(fill(device, escape_value(value), sensor)) for value in allowed)


#: The text of each KATCP status code (as prometheus_client formats the float).
_STATUS_TEXT = {code: floatToGoString(code).encode() for code in range(7)}

#: The last timestamp formatted and its text: every sensor of an inform (and every sensor a
#: device updates in one pass) shares one timestamp.  One tuple, replaced whole.
_last_stamp: Tuple[float, bytes] = (0.0, b"0.0")


def number_text(value: float) -> bytes:
    """`value` as prometheus_client writes a sample value."""
    return floatToGoString(value).encode()


def value_line(labels: bytes, value: float | None) -> bytes:
    """The ``katcp_sensor_value`` line of a numeric sensor (empty without a value)."""
    if value is None:
        return b""
    return b"".join((b"katcp_sensor_value", labels, b" ", floatToGoString(value).encode(),
                     b"\n"))


def status_line(labels: bytes, status: int) -> bytes:
    """The ``katcp_sensor_status`` line."""
    return b"".join((b"katcp_sensor_status", labels, b" ",
                     _STATUS_TEXT.get(status) or number_text(status), b"\n"))


def stamp_line(labels: bytes, ts: float | None) -> bytes:
    """The ``katcp_sensor_timestamp_seconds`` line (empty without a timestamp)."""
    global _last_stamp
    if ts is None:
        return b""
    last = _last_stamp
    # Zeros are formatted afresh: -0.0 == 0.0, but they are written apart.
    if last[0] != ts or not ts:
        last = _last_stamp = (ts, number_text(ts))
    return b"".join((b"katcp_sensor_timestamp_seconds", labels, b" ", last[1], b"\n"))


def state_lines(labels: Sequence[bytes], allowed: Sequence[str], value: str | None) -> bytes:
    """The ``katcp_sensor_state`` lines of a state set (empty without a value)."""
    if value is None:
        return b""
    return b"".join(b"katcp_sensor_state%s %s\n" % (text, b"1.0" if state == value else b"0.0")
                    for text, state in zip(labels, allowed))


def info_line(device: str, sensor: str, value: str | None) -> bytes:
    """The ``katcp_sensor_info`` line of a text sensor (empty without a value)."""
    if value is None:
        return b""
    labels = shape("device", "sensor", "value").fill(
        escape_value(device), escape_value(sensor), escape_value(str(value)))
    return b"katcp_sensor_info%s 1.0\n" % _utf8(labels)
