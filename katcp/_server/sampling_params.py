"""Private helpers of :mod:`katcp.sampling`: parameters and cross-thread calls.

Strategy parameters arrive as KATCP bytes (or as str/numbers from Python
callers); these helpers validate them with clear ``ValueError`` messages and
format them back for ``get_sampling_formatted``.

`LoopCalls` hands calls from other threads to an event loop: in order, with one
wake-up of the loop per burst.  Strategies (sensor updates set outside the loop
thread) and the device server (replies and informs from the handler thread) share
the queue of their loop (:func:`loop_calls`), so all cross-thread work for one loop
runs in the order it was posted.
"""

from __future__ import annotations

import logging
import math
from typing import Tuple

log = logging.getLogger("katcp")










def _param_bytes(param) -> bytes:
    """Format one strategy parameter as KATCP bytes (echoed as received)."""
    if isinstance(param, bytes):
        return param
    if isinstance(param, str):
        return param.encode("utf-8")
    if isinstance(param, bool):
        return b"1" if param else b"0"
    if isinstance(param, float):
        return repr(param).encode("ascii")
    return str(param).encode("utf-8")


def _show(param) -> str:
    """Param as text for error messages."""
    if isinstance(param, bytes):
        return param.decode("utf-8", "backslashreplace")
    return str(param)


def _parse_float(param, strategy: str, what: str) -> float:
    """Parse a finite float parameter or raise a clear ValueError."""
    try:
        value = float(param)
    except (TypeError, ValueError):
        raise ValueError(
            f"The '{strategy}' strategy's {what} must be a number, got {_show(param)!r}."
        ) from None
    if not math.isfinite(value):
        raise ValueError(
            f"The '{strategy}' strategy's {what} must be a finite number, got {_show(param)!r}."
        )
    return value


def _parse_int(param, strategy: str, what: str) -> int:
    """Parse an integer parameter (no fractions) or raise a clear ValueError."""
    if isinstance(param, float):
        if not param.is_integer():
            raise ValueError(
                f"The '{strategy}' strategy's {what} must be an integer, got {param!r}."
            )
        return int(param)
    try:
        return int(param)
    except (TypeError, ValueError):
        raise ValueError(
            f"The '{strategy}' strategy's {what} must be an integer, got {_show(param)!r}."
        ) from None


def _sensor_type_name(sensor) -> str:
    """KATCP type name (``'integer'``, ``'float'``, ...) of a sensor."""
    stype = getattr(sensor, "stype", None)
    if isinstance(stype, bytes):
        stype = stype.decode("ascii", "replace")
    if isinstance(stype, str):
        return stype
    return str(stype)


_DIFFERENTIAL_TYPES = ("integer", "float", "timestamp")


def _parse_difference(sensor, param, strategy: str):
    """Validate a ``difference`` parameter against the sensor's type."""
    stype = _sensor_type_name(sensor)
    if stype not in _DIFFERENTIAL_TYPES:
        raise ValueError(
            f"The '{strategy}' strategy is only valid for integer, float and timestamp "
            f"sensors; sensor {getattr(sensor, 'name', sensor)!r} is of type {stype!r}."
        )
    difference: float
    if stype == "integer":
        difference = _parse_int(param, strategy, "difference")
        if difference <= 0:
            raise ValueError(
                f"The '{strategy}' strategy's difference must be a positive integer, "
                f"got {_show(param)!r}."
            )
    else:
        difference = _parse_float(param, strategy, "difference")
        if difference <= 0:
            raise ValueError(
                f"The '{strategy}' strategy's difference must be positive, got {_show(param)!r}."
            )
    return difference


def _differs(reading, last, threshold) -> bool:
    """Differential test: status changed, or value moved by more than threshold."""
    if last is None or reading[1] != last[1]:
        return True
    try:
        return abs(reading[2] - last[2]) > threshold
    except TypeError:
        return reading[2] != last[2]


def _check_min_period(period: float, param, strategy: str, what: str,
                      min_period: float) -> None:
    """Refuse a period shorter than ``min_period`` (``SampleStrategy.MIN_PERIOD``)."""
    if period < min_period:
        raise ValueError(
            f"The '{strategy}' strategy's {what} must be at least {min_period!r} s "
            f"(SampleStrategy.MIN_PERIOD), got {_show(param)!r}.")


def _parse_periods(shortest_param, longest_param, strategy: str,
                   min_period: float = 0.0) -> Tuple[float, float]:
    """Validate ``shortest-period longest-period`` (seconds).

    The longest period, which sets the rate of reports of an unchanging sensor, must
    be at least ``min_period``; a shortest period of 0 means "no rate limit".
    """
    shortest = _parse_float(shortest_param, strategy, "shortest period")
    longest = _parse_float(longest_param, strategy, "longest period")
    if longest <= 0:
        raise ValueError(
            f"The '{strategy}' strategy's longest period must be positive, "
            f"got {_show(longest_param)!r}.")
    _check_min_period(longest, longest_param, strategy, "longest period", min_period)
    if not 0 <= shortest <= longest:
        raise ValueError(
            f"The '{strategy}' strategy's periods must satisfy "
            f"0 <= shortest-period <= longest-period, got {_show(shortest_param)!r} "
            f"and {_show(longest_param)!r}.")
    return shortest, longest
