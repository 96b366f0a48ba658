"""The sampling strategies (when a ``#sensor-status`` is due); documented and public in
:mod:`katcp.sampling`."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import weakref
from collections import deque
from functools import wraps
from typing import Any, Callable, Deque, Dict, List, Protocol, Tuple

from katcp._aio.lowlevel import running_loop
from katcp._aio.loopcalls import LoopCalls, loop_calls
from katcp._protocol.message import Message
from katcp._server.sampling_params import (
    _differs,
    _param_bytes,
    _parse_difference,
    _parse_float,
    _check_min_period,
    _parse_periods,
    _show,
)

log = logging.getLogger("katcp.sampling")

#: Age of the universe in seconds: "no longest period" (katcp-python's sentinel).
AGE_OF_UNIVERSE = 4.32329886e17
#: Kept for katcp-python compatibility; this package is Python 3 only.
PY2 = False

#: Milliseconds per second (KATCP v4 timestamps are milliseconds).
_SEC_TO_MS_FAC = 1000

# Tolerance when a timer fires: asyncio runs a timer when ``when <`` the loop
# time plus its clock resolution, so "now" may be a hair before the due time.
_EPS = 1e-6

# Stored in ``_uloop`` once a strategy is cancelled: never the running loop, so
# the fast path of ``update`` falls through to the checking (slow) path.
_CANCELLED = object()

# SampleStrategy._fanout: what the relay reports for a class's strategies itself.
_EVERY = 1  # every reading (auto)
_ON_CHANGE = 2  # a reading whose value or status differs from the last reported (event)
# The methods a reading passes through from the relay to the inform callback: a class
# overriding one of them is reported through them (SampleStrategy.__init_subclass__).
_REPORT_PATH = ("update", "_deliver", "_process", "_changed", "inform", "_report",
                "_report_now", "_reported")

# The loop running in this thread (asyncio's fast private accessor; see _aio.lowlevel).
_get_running_loop = running_loop
_get_ident = threading.get_ident


class SampledSensor(Protocol):
    """A strategy's view of the sensor it samples (`katcp.Sensor` or a look-alike)."""

    name: str

    def attach(self, observer: Any) -> None: ...

    def detach(self, observer: Any) -> None: ...

    def read(self) -> Any: ...


#: ``inform_callback(sensor, reading)``: called whenever a report is due.
InformCallback = Callable[[SampledSensor, Any], Any]


class BytesSink(Protocol):
    """Where a `StatusWriter` writes (a `katcp.connection.Connection`)."""

    def write_bytes(self, data: bytes) -> None: ...


class StatusWriter:
    """An inform callback that writes a reading's ``#sensor-status`` line to one client.

    ``format(sensor, reading)`` makes the line once for all the clients of a server (it
    returns the same bytes for the same reading), and the callback hands them to
    ``conn.write_bytes``.  A sensor's relay recognises the callbacks of this class: for the
    strategies that report every reading or every change (`SampleAuto`, `SampleEvent`
    and subclasses that keep their report path) it formats a reading once and writes it
    to each of their connections in one loop, without a call per strategy.

    Parameters
    ----------
    format : callable, signature ``format(sensor, reading) -> bytes``
        Makes the line; the relay compares it by identity, so a server passes the same
        object for all its clients.
    conn : `BytesSink`
        The client's connection.
    """

    __slots__ = ("format", "conn")

    def __init__(self, format: Callable[[Any, Any], bytes], conn: BytesSink) -> None:
        self.format = format
        self.conn = conn

    def __call__(self, sensor: SampledSensor, reading: Any) -> None:
        self.conn.write_bytes(self.format(sensor, reading))


def _unpack_reading(reading: tuple) -> tuple:
    if len(reading) != 3:
        raise TypeError(f"expected a formatted reading (timestamp, status, value), got "
                        f"{len(reading)} values")
    return reading


def format_inform_v5(sensor, *reading):
    """Build a KATCP v5 ``#sensor-status`` inform.

    Parameters
    ----------
    sensor : :class:`katcp.Sensor`
        Sensor whose name goes into the inform.
    *reading : bytes
        Formatted reading ``timestamp, status, value``, as returned by
        ``sensor.format_reading(reading)``.

    Returns
    -------
    msg : :class:`katcp.Message`
        ``#sensor-status <timestamp> 1 <name> <status> <value>``.
    """

    timestamp, status, value = _unpack_reading(reading)
    return Message.inform("sensor-status", timestamp, "1", sensor.name, status, value)


def format_inform_v4(sensor, *reading):
    """Build a KATCP v4 ``#sensor-status`` inform (timestamp in milliseconds).

    Parameters
    ----------
    sensor : :class:`katcp.Sensor`
        Sensor whose name goes into the inform.
    *reading : bytes
        Formatted reading ``timestamp, status, value``; the timestamp is in seconds
        (v5 formatted) and is converted to integer milliseconds.

    Returns
    -------
    msg : :class:`katcp.Message`
        ``#sensor-status <ms-timestamp> 1 <name> <status> <value>``.
    """

    timestamp, status, value = _unpack_reading(reading)
    timestamp = int(float(timestamp) * _SEC_TO_MS_FAC)
    return Message.inform("sensor-status", timestamp, "1", sensor.name, status, value)


def _relay_may_skip(update: Callable) -> Callable:
    """Mark an ``update`` of ours: the relay may call ``_deliver`` in its place.

    A class whose ``update`` is so marked (decided once per class, in
    `SampleStrategy.__init_subclass__`) gets the sensor's readings in the loop thread
    through ``_deliver``, the same work without the loop-thread test; a class that
    overrides ``update`` gets them through its ``update``.
    """
    update._relay_may_skip = True  # type: ignore[attr-defined]
    return update


def _resolve_loop(ioloop) -> asyncio.AbstractEventLoop:
    """Return the asyncio loop underneath a tornado IOLoop or an asyncio loop."""
    return getattr(ioloop, "asyncio_loop", ioloop)


def update_in_ioloop(update):
    """Decorate an ``update(self, sensor, reading)`` method to run in the loop thread.

    When the decorated method is called from a thread other than the one
    running the strategy's event loop, the call is queued for that loop (in
    order; one wake-up of the loop per burst) instead of running at once.  The
    object must have an ``ioloop`` attribute (a tornado IOLoop or an asyncio loop).

    Parameters
    ----------
    update : callable
        The method to wrap.

    Returns
    -------
    wrapped_update : callable
        The thread-marshalling wrapper.
    """

    @wraps(update)
    def wrapped_update(self, sensor, reading):
        loop = getattr(self, "_loop", None) or _resolve_loop(self.ioloop)
        if _get_running_loop() is loop:
            update(self, sensor, reading)
        else:
            loop_calls(loop).post(update, self, sensor, reading)

    return wrapped_update


class SampleStrategy:
    """Base class of the sampling strategies.

    Parameters
    ----------
    inform_callback : callable, signature ``inform_callback(sensor, reading)``
        Called with the sensor and the :class:`katcp.core.Reading` whenever a
        report is due.
    sensor : :class:`katcp.Sensor`
        Sensor to sample.
    *params : bytes, str or numbers
        Strategy parameters, as received (they are echoed back unchanged by
        :meth:`get_sampling_formatted`).
    ioloop : tornado IOLoop or asyncio loop, optional (keyword)
        Loop whose clock and thread the strategy uses; default: the running
        asyncio loop, else ``tornado.ioloop.IOLoop.current()``.

    Notes
    -----
    Strategies live in the loop's thread.  :meth:`update` (the sensor
    observer callback) may be called from any thread; calls from other
    threads are handed to the loop.
    """

    # Sampling strategy constants
    NONE, AUTO, PERIOD, EVENT, DIFFERENTIAL, EVENT_RATE, DIFFERENTIAL_RATE = range(7)

    #: Mapping from strategy constant to strategy name.
    SAMPLING_LOOKUP: Dict[int | None, bytes] = {
        NONE: b"none",
        AUTO: b"auto",
        PERIOD: b"period",
        EVENT: b"event",
        DIFFERENTIAL: b"differential",
        EVENT_RATE: b"event-rate",
        DIFFERENTIAL_RATE: b"differential-rate",
    }

    #: Mapping from strategy name to strategy constant.
    SAMPLING_LOOKUP_REV: Dict[bytes, int] = {v: k for k, v in SAMPLING_LOOKUP.items()
                                             if k is not None}

    #: True if the strategy observes the sensor's updates.
    OBSERVE_UPDATES = False

    #: Most readings set outside the loop's thread that wait for the loop, per sensor (and
    #: loop: the strategies of one sensor on one loop share them); when setters outrun the
    #: loop the oldest are dropped (the newest always stays).  The value of the first
    #: strategy that samples a sensor on a loop counts.
    MAX_THREAD_BACKLOG: int = 16

    #: Shortest ``period`` (and ``longest-period`` of the ``*-rate`` strategies) accepted,
    #: in seconds: a client asking for less gets a ``fail`` reply that names this.
    #: It bounds the informs one client can ask for from one unchanging sensor.
    MIN_PERIOD: float = 0.001

    # Strategy constant reported by get_sampling (set by each subclass).
    _SAMPLING_TYPE: int | None = None

    #: True if the class keeps :meth:`inform`: a report may call the inform callback
    #: directly.  Decided once per class, as is ``_relay_skips_update``.
    _inform_inline = True
    #: True if the class keeps our ``update``: the relay calls ``_deliver`` instead.
    _relay_skips_update = True

    #: How the relay may report a reading for this class's strategies itself, when their
    #: inform callback is a `StatusWriter`: `_EVERY` (``auto``: every reading),
    #: `_ON_CHANGE` (``event``: the value or the status changed), or None (the relay calls
    #: ``_relayed``).  Set by `SampleAuto` and `SampleEvent`; a subclass keeps it only if it
    #: overrides no method of the report path (decided once per class).
    _fanout: int | None = None
    # The class that set _fanout: its report path is the one the relay stands in for.
    _fanout_base: type | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._inform_inline = cls.inform is SampleStrategy.inform
        cls._relay_skips_update = getattr(cls.update, "_relay_may_skip", False)
        cls._relayed = cls._deliver if cls._relay_skips_update else cls.update
        if "_fanout" in cls.__dict__:
            cls._fanout_base = cls
        elif cls._fanout is not None:
            base = cls._fanout_base
            if any(getattr(cls, name) is not getattr(base, name) for name in _REPORT_PATH):
                cls._fanout = None

    __slots__ = ("_inform_callback", "_sensor", "_params", "_ioloop", "_loop", "_uloop",
                 "_calls", "_last", "_relay", "_since", "__weakref__")

    def __init__(self, inform_callback: InformCallback, sensor: SampledSensor, *params, **kwargs) -> None:
        ioloop = kwargs.pop("ioloop", None)
        if kwargs:
            raise TypeError(f"Unexpected keyword arguments: {sorted(kwargs)}")
        if ioloop is None:
            running = _get_running_loop()
            if running is not None:
                ioloop = running
            else:
                import tornado.ioloop

                ioloop = tornado.ioloop.IOLoop.current()
        self._inform_callback = inform_callback
        self._sensor = sensor
        self._params = params
        self._ioloop = ioloop
        self._loop = _resolve_loop(ioloop)
        # The loop while active, _CANCELLED once cancelled (see update()).
        self._uloop: object = self._loop
        self._calls: LoopCalls | None = None  # the loop's cross-thread queue, fetched when needed
        # The last reading reported, for strategies that report changes.
        self._last = None
        # The sensor's relay while attached (see attach()), and how many readings it had
        # queued when this strategy joined: those are older than its first report.
        self._relay: _Relay | None = None
        self._since = 0

    @property
    def ioloop(self):
        """The loop this strategy schedules on (as passed in, or the default)."""
        return self._ioloop

    @property
    def sensor(self):
        """The sensor being sampled."""
        return self._sensor

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` has been called."""
        return self._uloop is _CANCELLED

    @classmethod
    def get_strategy(cls, strategyName, inform_callback: InformCallback, sensor: SampledSensor,
                     *params, **kwargs) -> SampleStrategy:
        """Create a strategy object from its KATCP name and parameters.

        Parameters
        ----------
        strategyName : str or bytes
            Name of the strategy (``none``, ``auto``, ``period``, ``event``,
            ``differential``, ``event-rate``, ``differential-rate``).
        inform_callback : callable, signature ``inform_callback(sensor, reading)``
            Callback that receives the readings to report.
        sensor : :class:`katcp.Sensor`
            Sensor to sample.
        *params : bytes, str or numbers
            Strategy parameters.
        ioloop : tornado IOLoop or asyncio loop, optional (keyword)
            Loop to use (default: the running loop).

        Returns
        -------
        strategy : :class:`SampleStrategy`
            The strategy, not yet started.

        Raises
        ------
        ValueError
            Unknown strategy, wrong number of parameters, invalid parameter
            values, or a strategy not valid for the sensor's type.
        """
        if isinstance(strategyName, str):
            key = strategyName.encode("utf-8", "replace")
        elif isinstance(strategyName, bytes):
            key = strategyName
        else:
            key = b""  # no strategy has that name
        strategy_type = cls.SAMPLING_LOOKUP_REV.get(key)
        if strategy_type is None:
            known = ", ".join(name.decode() for name in cls.SAMPLING_LOOKUP.values())
            raise ValueError(
                f"Unknown sampling strategy {_show(strategyName)!r}. "
                f"Known strategies are {known}."
            )
        return _STRATEGY_CLASSES[strategy_type](inform_callback, sensor, *params, **kwargs)

    # -- observer side -------------------------------------------------------

    @_relay_may_skip
    def update(self, sensor: SampledSensor, reading) -> None:
        """Sensor observer callback: the sensor was set to ``reading``.

        Parameters
        ----------
        sensor : :class:`katcp.Sensor`
            The sensor that was updated.
        reading : :class:`katcp.core.Reading`
            The new ``(timestamp, status, value)``.
        """
        if _get_running_loop() is self._uloop:
            self._process(reading)
        else:
            self._update_elsewhere(sensor, reading)

    def _deliver(self, sensor: SampledSensor, reading) -> None:
        """:meth:`update` as called by the relay, in the loop thread (see `_relay_may_skip`)."""
        if self._uloop is not _CANCELLED:
            self._process(reading)

    #: What the relay calls in the loop thread: ``_deliver``, or ``update`` for a class
    #: that overrides it (set per class in ``__init_subclass__``).
    _relayed = _deliver

    def _update_elsewhere(self, sensor: SampledSensor, reading) -> None:
        """Slow path of update(): cancelled, or called outside the loop thread.

        Only a strategy attached to its sensor by other means than :meth:`attach` is
        called so (:meth:`attach` hands the sensor's updates to the loop through the
        sensor's `_Relay`, which calls :meth:`update` in the loop thread): the call is
        posted to the loop as it is.
        """
        if self._uloop is _CANCELLED:
            return
        if not (self._calls or self._loop_calls()).post_pair(_update_in_loop, self, reading):
            log.debug("Dropping update of %r: event loop is closed", sensor)

    def _loop_calls(self) -> LoopCalls:
        """The loop's queue of calls from other threads (fetched on first use)."""
        calls = self._calls = loop_calls(self._loop)
        return calls

    def _changed(self, reading) -> bool:
        """Whether ``reading`` counts as a change from the last one reported (base: always)."""
        return True

    def _process(self, reading) -> None:
        """Decide whether ``reading`` is reported (loop thread only).

        The base strategy ignores updates; subclasses that observe the sensor
        override this.
        """
        return None

    # -- introspection -------------------------------------------------------

    def get_sampling(self) -> int | None:
        """Return this strategy's constant (e.g. :attr:`SampleStrategy.EVENT`)."""
        return self._SAMPLING_TYPE

    def get_sampling_formatted(self) -> Tuple[bytes, List[bytes]]:
        """Return the strategy name and parameters as KATCP bytes.

        Returns
        -------
        strategy_name : bytes
            KATCP name of the strategy, e.g. ``b"event-rate"``.
        params : list of bytes
            The parameters as they were given (bytes are echoed unchanged).
        """
        name = self.SAMPLING_LOOKUP[self.get_sampling()]
        return name, [_param_bytes(p) for p in self._params]

    # -- life cycle ----------------------------------------------------------

    def attach(self) -> None:
        """Observe the sensor and report (via :meth:`update`) its current reading.

        The strategy joins the sensor's relay for its loop, the one observer of the sensor
        for all the strategies on that loop, which calls :meth:`update` in the loop thread.
        """
        sensor = self._sensor
        if self._relay is None:
            self._relay = _join_relay(sensor, self._loop, self)
        self.update(sensor, sensor.read())

    def detach(self) -> None:
        """Stop observing the sensor."""
        relay = self._relay
        if relay is not None:
            self._relay = None
            _leave_relay(self._sensor, relay, self)
        try:  # attached by other means than attach()
            self._sensor.detach(self)
        except (KeyError, ValueError):  # was never attached
            pass

    def start(self) -> None:
        """Start the strategy: attach to the sensor and send the initial update.

        In the loop's thread this happens at once (so the initial
        ``#sensor-status`` goes out before the caller's reply); from any other
        thread it is scheduled on the loop.
        """
        if _get_running_loop() is self._loop:
            self._start_in_loop()
        else:
            (self._calls or self._loop_calls()).post(self._start_in_loop)

    def _start_in_loop(self) -> None:
        if self._uloop is _CANCELLED:
            return
        if self.OBSERVE_UPDATES:
            self.attach()

    def cancel(self) -> None:
        """Stop the strategy: detach from the sensor and cancel its timers.

        No callback is made after ``cancel`` returns (when called in the loop
        thread).  Calling it twice is harmless.
        """
        if self._uloop is _CANCELLED:
            return
        self._uloop = _CANCELLED  # (a relay delivering meanwhile checks it: no more reports)
        if self.OBSERVE_UPDATES:
            self.detach()
        if _get_running_loop() is self._loop:
            self.cancel_timeouts()
        else:  # if the loop is closed, its timers will never run anyway
            (self._calls or self._loop_calls()).post(self.cancel_timeouts)

    def cancel_timeouts(self) -> None:
        """Cancel pending loop timers (the base strategy has none)."""
        return None

    def inform(self, reading) -> None:
        """Report ``reading`` now: pass it to the inform callback, logging (not raising) errors.

        Strategies that keep state about what they reported (the last reading, the
        rate-limit clocks) update it in :meth:`_reported`, so this is the one way a
        report goes out.

        Parameters
        ----------
        reading : :class:`katcp.core.Reading`
            The reading to report.
        """
        self._report(reading, None)

    def _report(self, reading, when: float | None) -> None:
        """Report ``reading``, due at loop time ``when`` (None: now); see :meth:`inform`."""
        self._reported(reading, when)
        try:
            self._inform_callback(self._sensor, reading)
        except Exception:
            self._log_inform_error(reading)

    def _reported(self, reading, when: float | None) -> None:
        """Hook: ``reading`` is being reported (due at loop time ``when``; None: now)."""

    def _report_now(self, reading) -> None:
        """:meth:`inform` for the strategies with no timers (``auto``, ``event``, ...).

        Their report only records the reading, so while the class keeps :meth:`inform`
        this calls the inform callback itself (the hot path of every sensor update).
        """
        if self._inform_inline:
            self._last = reading
            try:
                self._inform_callback(self._sensor, reading)
            except Exception:
                self._log_inform_error(reading)
        else:
            self.inform(reading)

    def _log_inform_error(self, reading) -> None:
        log.exception("Unhandled exception trying to send %r for sensor %r",
                      reading, getattr(self._sensor, "name", self._sensor))

    def __repr__(self) -> str:
        name = self.SAMPLING_LOOKUP.get(self.get_sampling(), b"custom")
        args = " ".join(_param_bytes(p).decode("utf-8", "replace") for p in self._params)
        sensor_name = getattr(self._sensor, "name", self._sensor)
        state = " cancelled" if self.cancelled else ""
        return (f"<{type(self).__name__} {name.decode()}{' ' + args if args else ''} "
                f"sensor={sensor_name!r}{state}>")


class SampleNone(SampleStrategy):
    """Strategy ``none``: never report."""

    _SAMPLING_TYPE = SampleStrategy.NONE
    __slots__ = ()

    def __init__(self, inform_callback: InformCallback, sensor: SampledSensor, *params, **kwargs) -> None:
        if params:
            raise ValueError("The 'none' strategy takes no parameters.")
        super().__init__(inform_callback, sensor, **kwargs)

    def start(self) -> None:
        """Nothing to start: ``none`` never reports."""


class SampleAuto(SampleStrategy):
    """Strategy ``auto``: report every update of the sensor (even if unchanged)."""

    OBSERVE_UPDATES = True
    _SAMPLING_TYPE = SampleStrategy.AUTO
    _fanout = _EVERY
    __slots__ = ()

    def __init__(self, inform_callback: InformCallback, sensor: SampledSensor, *params, **kwargs) -> None:
        if params:
            raise ValueError("The 'auto' strategy takes no parameters.")
        super().__init__(inform_callback, sensor, **kwargs)

    @_relay_may_skip
    def update(self, sensor: SampledSensor, reading) -> None:
        """Report every reading (sensor observer callback)."""
        if _get_running_loop() is self._uloop:
            self._deliver(sensor, reading)
        else:
            self._update_elsewhere(sensor, reading)

    def _deliver(self, sensor: SampledSensor, reading) -> None:
        if self._uloop is not _CANCELLED:
            self._report_now(reading)

    def _process(self, reading) -> None:
        self.inform(reading)


class SamplePeriod(SampleStrategy):
    """Strategy ``period``: report the current reading every ``period`` seconds.

    Parameters
    ----------
    period : float (in ``*params``)
        Period in seconds (> 0).
    """

    _SAMPLING_TYPE = SampleStrategy.PERIOD
    __slots__ = ("_period", "_next_time", "_handle")

    def __init__(self, inform_callback: InformCallback, sensor: SampledSensor, *params, **kwargs) -> None:
        if len(params) != 1:
            raise ValueError(
                f"The 'period' strategy takes one parameter (period), got {len(params)}.")
        period = _parse_float(params[0], "period", "period")
        if period <= 0:
            raise ValueError(
                f"The 'period' strategy's period must be positive, got {_show(params[0])!r}.")
        _check_min_period(period, params[0], "period", "period", self.MIN_PERIOD)
        super().__init__(inform_callback, sensor, *params, **kwargs)
        self._period = period
        self._next_time = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def _start_in_loop(self) -> None:
        if self._uloop is _CANCELLED or self._handle is not None:
            return
        self._next_time = self._loop.time() + self._period
        self._handle = self._loop.call_at(self._next_time, self._tick)
        self.inform(self._sensor.read())

    def _tick(self) -> None:
        self._handle = None
        if self._uloop is _CANCELLED:
            return
        loop = self._loop
        next_time = self._next_time + self._period
        now = loop.time()
        if next_time <= now:  # fell behind by a whole period: skip, do not burst
            next_time = now + self._period
        self._next_time = next_time
        self._handle = loop.call_at(next_time, self._tick)
        self.inform(self._sensor.read())

    def cancel_timeouts(self) -> None:
        """Cancel the next periodic sample."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class SampleEventRate(SampleStrategy):
    """Strategy ``event-rate``: report changes, rate limited.

    A change (value or status differs from the last reading reported) is
    reported at once unless the previous report was less than
    ``shortest-period`` ago; then one report carrying the then-current reading
    is sent as soon as ``shortest-period`` has passed.  A report is also sent
    whenever ``longest-period`` passes without one.

    Parameters
    ----------
    shortest_period, longest_period : float (in ``*params``)
        Seconds, ``0 <= shortest_period <= longest_period``, ``longest_period > 0``.
    """

    OBSERVE_UPDATES = True
    _SAMPLING_TYPE = SampleStrategy.EVENT_RATE
    __slots__ = ("_shortest", "_longest", "_last_time", "_pending", "_long_handle")

    def __init__(self, inform_callback: InformCallback, sensor: SampledSensor, *params, **kwargs) -> None:
        if len(params) != 2:
            raise ValueError(
                "The 'event-rate' strategy takes two parameters "
                f"(shortest-period longest-period), got {len(params)}.")
        shortest, longest = _parse_periods(params[0], params[1], "event-rate",
                                           self.MIN_PERIOD)
        super().__init__(inform_callback, sensor, *params, **kwargs)
        self._init_rate(shortest, longest)

    def _init_rate(self, shortest: float, longest: float) -> None:
        self._shortest = shortest
        self._longest = longest
        self._last_time = -math.inf
        self._pending: asyncio.TimerHandle | None = None
        self._long_handle: asyncio.TimerHandle | None = None

    def _changed(self, reading) -> bool:
        """True if ``reading`` counts as a change from the last one reported."""
        last = self._last
        return last is None or reading[2] != last[2] or reading[1] != last[1]

    def _process(self, reading) -> None:
        if self._pending is not None or not self._changed(reading):
            return
        due = self._last_time + self._shortest
        if self._loop.time() >= due:
            self.inform(reading)
        else:
            self._pending = self._loop.call_at(due, self._send_pending, due)

    def _send_pending(self, due: float) -> None:
        self._pending = None
        if self._uloop is not _CANCELLED:
            self._report(self._sensor.read(), due)

    def _longest_expired(self) -> None:
        self._long_handle = None
        if self._uloop is _CANCELLED:
            return
        due = self._last_time + self._longest
        if self._loop.time() >= due - _EPS:
            self._report(self._sensor.read(), due)
        else:  # a report since this timer was set moved the deadline on
            self._long_handle = self._loop.call_at(due, self._longest_expired)

    def _reported(self, reading, when: float | None) -> None:
        # A report restarts the rate-limit clocks.
        loop = self._loop
        now = loop.time()
        if when is None:
            when = now
        self._last = reading
        # Use the scheduled time (no drift) unless we are a whole period late.
        self._last_time = when if now - when < self._longest else now
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._long_handle is None:
            # Lazily armed: an earlier timer re-arms itself for the new deadline.
            self._long_handle = loop.call_at(self._last_time + self._longest,
                                             self._longest_expired)

    def cancel_timeouts(self) -> None:
        """Cancel the pending rate-limited report and the longest-period timer."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._long_handle is not None:
            self._long_handle.cancel()
            self._long_handle = None


class _ReportEachChange(SampleStrategy):
    """Base of ``event`` and ``differential``: report every change at once.

    The class's ``_changed(reading)`` tells what counts as a change; there is no
    rate limit and no timer.
    """

    __slots__ = ()

    @_relay_may_skip
    def update(self, sensor: SampledSensor, reading) -> None:
        """Report ``reading`` if it counts as a change (sensor observer callback)."""
        if _get_running_loop() is self._uloop:
            self._deliver(sensor, reading)
        else:
            self._update_elsewhere(sensor, reading)

    def _deliver(self, sensor: SampledSensor, reading) -> None:
        if self._uloop is not _CANCELLED and self._changed(reading):
            self._report_now(reading)

    def _process(self, reading) -> None:
        if self._changed(reading):
            self.inform(reading)

    def _reported(self, reading, when: float | None) -> None:
        # The reading reported becomes the reference for the next change.
        self._last = reading


class SampleEvent(_ReportEachChange, SampleEventRate):
    """Strategy ``event``: report whenever the value or the status changes.

    The timestamp alone does not count as a change.  This is ``event-rate``
    without rate limits or timers.
    """

    _SAMPLING_TYPE = SampleStrategy.EVENT
    _fanout = _ON_CHANGE
    __slots__ = ()

    def __init__(self, inform_callback: InformCallback, sensor: SampledSensor, *params, **kwargs) -> None:
        if params:
            raise ValueError("The 'event' strategy takes no parameters.")
        SampleStrategy.__init__(self, inform_callback, sensor, **kwargs)
        self._init_rate(0.0, AGE_OF_UNIVERSE)

    def _deliver(self, sensor: SampledSensor, reading) -> None:
        # The most used strategy: _changed() inlined (value or status differs).
        last = self._last
        if (self._uloop is not _CANCELLED
                and (last is None or reading[2] != last[2] or reading[1] != last[1])):
            self._report_now(reading)


class SampleDifferential(_ReportEachChange):
    """Strategy ``differential``: report when the value moves by more than ``difference``.

    A report is due when ``abs(value - last_reported_value) > difference``
    (strictly) or when the status changes.  Valid for integer, float and
    timestamp sensors only.

    Parameters
    ----------
    difference : int or float (in ``*params``)
        Positive threshold; an integer for integer sensors.
    """

    OBSERVE_UPDATES = True
    _SAMPLING_TYPE = SampleStrategy.DIFFERENTIAL
    __slots__ = ("_threshold",)

    def __init__(self, inform_callback: InformCallback, sensor: SampledSensor, *params, **kwargs) -> None:
        if len(params) != 1:
            raise ValueError(
                f"The 'differential' strategy takes one parameter (difference), "
                f"got {len(params)}.")
        threshold = _parse_difference(sensor, params[0], "differential")
        super().__init__(inform_callback, sensor, *params, **kwargs)
        self._threshold = threshold

    def _changed(self, reading) -> bool:
        """True if ``reading`` passes the differential test against the last report."""
        return _differs(reading, self._last, self._threshold)


class SampleDifferentialRate(SampleEventRate):
    """Strategy ``differential-rate``: ``differential`` with ``event-rate``'s limits.

    Parameters
    ----------
    difference : int or float (in ``*params``)
        Positive threshold (see :class:`SampleDifferential`).
    shortest_period, longest_period : float (in ``*params``)
        Seconds (see :class:`SampleEventRate`).
    """

    _SAMPLING_TYPE = SampleStrategy.DIFFERENTIAL_RATE
    __slots__ = ("_threshold",)

    def __init__(self, inform_callback: InformCallback, sensor: SampledSensor, *params, **kwargs) -> None:
        if len(params) != 3:
            raise ValueError(
                "The 'differential-rate' strategy takes three parameters "
                f"(difference shortest-period longest-period), got {len(params)}.")
        threshold = _parse_difference(sensor, params[0], "differential-rate")
        shortest, longest = _parse_periods(params[1], params[2], "differential-rate",
                                           self.MIN_PERIOD)
        SampleStrategy.__init__(self, inform_callback, sensor, *params, **kwargs)
        self._threshold = threshold
        self._init_rate(shortest, longest)

    def _changed(self, reading) -> bool:
        return _differs(reading, self._last, self._threshold)


def _update_in_loop(strategy: SampleStrategy, reading: Any) -> None:
    """Loop thread: an update posted by `SampleStrategy._update_elsewhere`."""
    if strategy._uloop is not _CANCELLED:
        strategy.update(strategy._sensor, reading)


class _Relay:
    """The strategies of one sensor on one loop: the sensor's one observer for all of them.

    A sensor update costs one call here however many clients sample the sensor.  In the
    loop thread the reading goes to each strategy at once.  From any other thread the
    sensor's current reading joins a deque (under this relay's own lock, so readings
    queue in the order the sensor stored them, and a reading another thread overtook is
    left out rather than sent after a newer one), and the first reading of a burst posts
    one call of :func:`_drain_relay` to the loop's `LoopCalls`.  While a drain is due,
    updates in the loop thread queue too, so nothing overtakes a queued reading.  A
    reading older (by timestamp) than the last one, which another thread queued or passed
    on, was overtaken in the sensor itself and is left out: clients never see a sensor's
    time go back.  (One thread's own readings always go on, whatever their timestamps.) The
    deque keeps the newest ``maxlen`` readings: setters that outrun the loop cost bounded
    memory, and the loop is never far behind.

    A strategy whose class reports every reading or every change (``_fanout``, decided per
    class) and whose inform callback is a `StatusWriter` is reported by the relay itself:
    in one loop over those strategies it records each one's report, formats the reading
    once and writes the bytes to each one's connection (a sensor with ten such clients
    costs ten ``write_bytes`` calls, not forty calls through the strategies).  Each other
    strategy is called through its class's ``_relayed``: ``_deliver`` (our ``update``
    without the loop-thread test) or, if its class overrides ``update``, that (see
    `_relay_may_skip`).  The relay holds no reference to its sensor (the registry maps
    sensors to relays weakly); each strategy knows its own.  A relay is made for every
    sampled sensor, so it keeps small: the deque is made on the first update from another
    thread.
    """

    __slots__ = ("_loop", "_calls", "_members", "_fast", "_slow", "_joined_at", "_pending",
                 "_maxlen", "_lock", "_scheduled", "_last", "_setter", "_seq")

    def __init__(self, loop: asyncio.AbstractEventLoop, maxlen: int) -> None:
        self._loop = loop
        self._calls: LoopCalls | None = None
        # The strategies (replaced whole, under the lock): all of them, in the order they
        # joined; split into those the relay reports itself, as (strategy, format, conn,
        # every reading?) (see _fan_out), and the others.
        self._members: Tuple[SampleStrategy, ...] = ()
        self._fast: Tuple[Tuple[SampleStrategy, Callable[[Any, Any], bytes], BytesSink, bool],
                          ...] = ()
        self._slow: Tuple[SampleStrategy, ...] = ()
        self._joined_at = 0  # _seq when the last strategy joined (see _drain_relay)
        self._pending: Deque[Any] | None = None  # made on the first update from a thread
        self._maxlen = max(1, maxlen)
        self._lock = threading.Lock()
        self._scheduled = False  # a _drain_relay call is posted or running
        self._last: Any = None  # the last reading queued or passed on at once
        self._setter = 0  # the thread that queued or passed it on
        self._seq = 0  # readings queued so far

    def update(self, sensor: SampledSensor, reading: Any) -> None:
        """Sensor observer callback: pass ``reading`` on (loop thread) or queue it."""
        lock = self._lock
        lock.acquire()
        if self._scheduled or _get_running_loop() is not self._loop:
            self._queue(sensor)
            return
        last = self._last
        me = _get_ident()
        if last is not None and reading[0] < last[0] and me != self._setter:
            lock.release()  # overtaken by another thread (see _queue)
            return
        self._last = reading
        self._setter = me
        lock.release()
        self._fan_out(sensor, reading)

    def _fan_out(self, sensor: SampledSensor, reading: Any) -> None:
        """Report ``reading`` to every strategy (loop thread).

        For the strategies in ``_fast`` this is their report path (`SampleStrategy._deliver`
        then `SampleStrategy._report_now`, with the `StatusWriter` callback) in one loop.
        """
        made_by = data = None
        for strategy, fmt, conn, every in self._fast:
            if not every:
                last = strategy._last
                if last is not None and reading[2] == last[2] and reading[1] == last[1]:
                    continue
            if strategy._uloop is _CANCELLED:
                continue
            strategy._last = reading
            try:
                if fmt is not made_by:
                    data = fmt(sensor, reading)
                    made_by = fmt
                conn.write_bytes(data)  # type: ignore[arg-type]
            except Exception:
                strategy._log_inform_error(reading)
        for slow in self._slow:
            if slow._uloop is not _CANCELLED:
                slow._relayed(sensor, reading)

    def _queue(self, sensor: SampledSensor) -> None:
        # Called with the lock held; releases it.
        current = sensor.read()
        last = self._last
        if current is last:  # queued already, by the thread that overtook us
            self._lock.release()
            return
        me = _get_ident()
        if last is not None and current[0] < last[0] and me != self._setter:
            # Overtaken by another thread: set_value takes the time before it stores the
            # reading, so a thread held in between stores an older one after a newer one.
            # (One thread's own readings always go on, whatever their timestamps.)
            self._lock.release()
            return
        self._last = current
        self._setter = me
        self._seq += 1
        pending = self._pending
        if pending is None:
            pending = self._pending = deque(maxlen=self._maxlen)
        pending.append(current)
        if self._scheduled:
            self._lock.release()
            return
        self._scheduled = True
        self._lock.release()
        calls = self._calls
        if calls is None:
            calls = self._calls = loop_calls(self._loop)
        if not calls.post_pair(_drain_relay, self, None):
            log.debug("Dropping update of %r: event loop is closed", sensor)

    def _join(self, strategy: SampleStrategy) -> None:
        callback = strategy._inform_callback
        with self._lock:
            strategy._since = self._joined_at = self._seq
            self._members = self._members + (strategy,)
            fanout = type(strategy)._fanout
            if fanout is not None and type(callback) is StatusWriter:
                self._fast = self._fast + ((strategy, callback.format, callback.conn,
                                            fanout == _EVERY),)
            else:
                self._slow = self._slow + (strategy,)

    def _leave(self, strategy: SampleStrategy) -> None:
        with self._lock:
            self._members = tuple(s for s in self._members if s is not strategy)
            self._fast = tuple(f for f in self._fast if f[0] is not strategy)
            self._slow = tuple(s for s in self._slow if s is not strategy)


def _drain_relay(relay: _Relay, _: Any) -> None:
    """Loop thread: pass the readings queued by other threads to the relay's strategies."""
    lock = relay._lock
    with lock:
        pending = relay._pending
        batch = tuple(pending) if pending else ()
        if pending:
            pending.clear()
        seq = relay._seq - len(batch)
    try:
        for reading in batch:
            seq += 1
            members = relay._members
            if not members:
                break
            if relay._joined_at < seq:  # every strategy joined before it was queued
                relay._fan_out(members[0]._sensor, reading)
                continue
            for strategy in members:
                # (a strategy that joined after the reading was queued reported a newer one)
                if strategy._since < seq and strategy._uloop is not _CANCELLED:
                    strategy._relayed(strategy._sensor, reading)
    finally:
        with lock:
            again = bool(relay._pending)
            if not again:
                relay._scheduled = False
        if again:  # queued meanwhile: in a later loop pass, after the I/O due now
            assert relay._calls is not None
            relay._calls.post_pair(_drain_relay, relay, None)


# sensor -> its relay, or a tuple of its relays on several loops; weak, so the registry
# never keeps a sensor alive.
_RELAYS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
# Guards the registry and the relays' attachment to their sensors (strategies joining and
# leaving; never taken on a sensor update's path).
_RELAYS_LOCK = threading.Lock()


def _registered(sensor: SampledSensor) -> Tuple[bool, Tuple[_Relay, ...]]:
    """Whether ``sensor`` may be in the registry, and its relays there (lock held).

    Only sensors hashed by identity share relays (a look-alike that compares equal to
    another must not share its relay), and only those that take weak references.
    """
    if type(sensor).__hash__ is not object.__hash__:
        return False, ()
    try:
        found = _RELAYS.get(sensor)
    except TypeError:
        return False, ()
    if found is None:
        return True, ()
    return True, found if isinstance(found, tuple) else (found,)


def _join_relay(sensor: SampledSensor, loop: asyncio.AbstractEventLoop,
                strategy: SampleStrategy) -> _Relay:
    """Add ``strategy`` to the relay of ``sensor`` on ``loop`` (made and attached if new)."""
    with _RELAYS_LOCK:
        shared, relays = _registered(sensor)
        for relay in relays:
            if relay._loop is loop:
                break
        else:
            relay = _Relay(loop, strategy.MAX_THREAD_BACKLOG)
            sensor.attach(relay)  # (first: if it raises, nothing is registered)
            if shared:
                _RELAYS[sensor] = relays + (relay,) if relays else relay
        relay._join(strategy)
    return relay


def _leave_relay(sensor: SampledSensor, relay: _Relay, strategy: SampleStrategy) -> None:
    """Remove ``strategy`` from ``relay``; the last one out detaches it from ``sensor``."""
    with _RELAYS_LOCK:
        relay._leave(strategy)
        if relay._members:
            return
        try:
            sensor.detach(relay)
        except (KeyError, ValueError):
            pass
        shared, relays = _registered(sensor)
        if relay in relays:
            rest = tuple(r for r in relays if r is not relay)
            if not rest:
                del _RELAYS[sensor]
            else:
                _RELAYS[sensor] = rest if len(rest) > 1 else rest[0]


_STRATEGY_CLASSES = {
    SampleStrategy.NONE: SampleNone,
    SampleStrategy.AUTO: SampleAuto,
    SampleStrategy.PERIOD: SamplePeriod,
    SampleStrategy.EVENT: SampleEvent,
    SampleStrategy.DIFFERENTIAL: SampleDifferential,
    SampleStrategy.EVENT_RATE: SampleEventRate,
    SampleStrategy.DIFFERENTIAL_RATE: SampleDifferentialRate,
}

__all__ = [
    "AGE_OF_UNIVERSE",
    "SampleAuto",
    "SampleDifferential",
    "SampleDifferentialRate",
    "SampleEvent",
    "SampleEventRate",
    "SampleNone",
    "SamplePeriod",
    "SampleStrategy",
    "format_inform_v4",
    "format_inform_v5",
    "update_in_ioloop",
]
