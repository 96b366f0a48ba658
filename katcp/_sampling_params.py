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
import threading
import weakref
from collections import deque
from typing import Any, Callable, Deque, Tuple

log = logging.getLogger("katcp")


def _apply(fn: Callable, args: tuple) -> None:
    fn(*args)


class LoopCalls:
    """Calls handed to one event loop from any thread, run there in posting order.

    A burst of posts costs one ``call_soon_threadsafe`` (one wake-up of the loop):
    the first post of a burst schedules :meth:`_run`, later ones only queue the
    call while that wake-up is pending.  Each run handles the calls that were
    queued when it started, then lets the loop poll its I/O before the next lot,
    so a thread that posts without pause cannot starve the loop.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The loop that runs the calls.

    Notes
    -----
    A call is queued as three flat entries ``fn, a, b`` with one ``deque.extend``
    (atomic: a C loop over a tuple), so a queued call keeps no object of its own
    alive and a long burst does not feed the garbage collector.
    """

    __slots__ = ("_loop", "_calls", "_scheduled", "__weakref__")

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._calls: Deque[Any] = deque()
        self._scheduled = False

    def post(self, fn: Callable, *args: Any) -> bool:
        """Run ``fn(*args)`` in the loop's thread, after every call posted before it.

        Returns
        -------
        queued : bool
            False if the loop is closed (the call is dropped).
        """
        if len(args) == 2:
            return self.post2(fn, *args)
        return self.post2(_apply, fn, args)

    def post2(self, fn: Callable, a: Any, b: Any) -> bool:
        """Run ``fn(a, b)`` in the loop's thread (see :meth:`post`); the fast form."""
        calls = self._calls
        calls.extend((fn, a, b))
        if not self._scheduled:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._run)
            except RuntimeError:  # loop closed: nobody will run the calls
                self._scheduled = False
                calls.clear()
                return False
        elif not len(calls) & 0xFFF and self._loop.is_closed():
            # The pending wake-up will never run: do not grow without bound.
            self._scheduled = False
            calls.clear()
            return False
        return True

    def _run(self) -> None:
        # Loop thread.  The flag stays set while calls remain, so producers only
        # queue; it is cleared once the queue is empty (then re-checked, as a
        # producer may have queued just before and seen the flag still set).
        calls = self._calls
        popleft = calls.popleft
        for _ in range(len(calls) // 3):
            fn = popleft()
            a = popleft()
            b = popleft()
            try:
                fn(a, b)
            except (SystemExit, KeyboardInterrupt):
                self._loop.call_soon(self._run)  # the rest still run if the loop goes on
                raise
            except BaseException:  # as asyncio's handles: log, and carry on
                log.exception("Error in call %r handed to the event loop",
                              a if fn is _apply else fn)
        if not calls:
            self._scheduled = False
            if not calls or self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon(self._run)


_LOOP_CALLS: weakref.WeakKeyDictionary[Any, LoopCalls] = weakref.WeakKeyDictionary()
_LOOP_CALLS_LOCK = threading.Lock()


def loop_calls(loop: Any) -> LoopCalls:
    """Return the (shared) `LoopCalls` queue of an asyncio event loop."""
    try:
        return _LOOP_CALLS[loop]
    except KeyError:
        pass
    except TypeError:  # a loop that takes no weak references: a queue of its own
        return LoopCalls(loop)
    with _LOOP_CALLS_LOCK:
        calls = _LOOP_CALLS.get(loop)
        if calls is None:
            calls = _LOOP_CALLS[loop] = LoopCalls(loop)
        return calls


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


def _parse_periods(shortest_param, longest_param, strategy: str) -> Tuple[float, float]:
    """Validate ``shortest-period longest-period`` (seconds)."""
    shortest = _parse_float(shortest_param, strategy, "shortest period")
    longest = _parse_float(longest_param, strategy, "longest period")
    if longest <= 0:
        raise ValueError(
            f"The '{strategy}' strategy's longest period must be positive, "
            f"got {_show(longest_param)!r}.")
    if not 0 <= shortest <= longest:
        raise ValueError(
            f"The '{strategy}' strategy's periods must satisfy "
            f"0 <= shortest-period <= longest-period, got {_show(shortest_param)!r} "
            f"and {_show(longest_param)!r}.")
    return shortest, longest
