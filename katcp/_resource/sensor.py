"""Client-side sensor objects (:class:`KATCPSensor`), re-exported by katcp.resource."""

from __future__ import annotations

import asyncio
import collections.abc
import logging
from typing import Any, Callable, Dict, Tuple

import tornado.gen
from tornado.concurrent import Future

from katcp._protocol.sensor import Sensor
from katcp._resource.resource import (
    _NOMINAL,
    _STATUS_NAMES,
    _UNKNOWN,
    KATCPSensorError,
    KATCPSensorReading,
    KATCPSensorsManager,
    escape_name,
)

logger = logging.getLogger("katcp.resource")


def _listener_key(listener):
    """Hashable identity of a callable; bound methods of one object compare equal."""
    func = getattr(listener, "__func__", None)
    obj = getattr(listener, "__self__", None)
    if func is not None and obj is not None:
        return (id(obj), id(func))
    return id(listener)


def _parse_timestamp(raw, major: int) -> float:
    ts = float(raw.decode() if isinstance(raw, bytes) else raw)
    if major < 5:
        ts /= 1000.0
    return ts


class KATCPSensor:
    """Client-side view of a sensor of a KATCP device.

    Parameters
    ----------
    sensor_description : dict
        Keyword arguments for :class:`katcp.Sensor`: ``name``, ``sensor_type``,
        ``description``, ``units``, ``params``.
    sensor_manager : :class:`KATCPSensorsManager`
        Backend that sets strategies and polls values.
    """

    def __init__(self, sensor_description: Dict[str, Any], sensor_manager: KATCPSensorsManager):
        self._manager = sensor_manager
        self._listeners: Dict[Any, Tuple[Callable, bool]] = {}
        self._reading = KATCPSensorReading(0, 0, _UNKNOWN, None)
        description = dict(sensor_description)
        self._type_name = description.pop("type_name", None)
        # A katcp.Sensor does the value parsing for the sensor's type.
        self._sensor = Sensor(**description)
        self._name = self._sensor.name
        if isinstance(self._name, bytes):
            self._name = self._name.decode()
        self._normalised_name = escape_name(self._name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} value={self.value!r} status={self.status!r}>"

    @property
    def parent_name(self) -> str:
        """Name of the resource that owns this sensor."""
        return self._manager.resource_name

    @property
    def name(self) -> str:
        """KATCP name of the sensor."""
        return self._name

    @property
    def normalised_name(self) -> str:
        """Python identifier of the sensor (see :func:`escape_name`)."""
        return self._normalised_name

    @property
    def description(self) -> str:
        """Description text of the sensor."""
        return self._sensor.description

    @property
    def units(self) -> str:
        """Units of the sensor."""
        return self._sensor.units

    @property
    def type(self):
        """KATCP type name of the sensor (e.g. ``"float"``)."""
        if self._type_name:
            return self._type_name
        return _type_name_of(self._sensor)

    @property
    def sampling_strategy(self) -> Tuple[str, ...]:
        """Current sampling strategy as a tuple of str, e.g. ``("period", "1.0")``."""
        return self._manager.get_sampling_strategy(self.name)

    def set_strategy(self, strategy, params=None):
        """Set the sampling strategy of this sensor.

        Parameters
        ----------
        strategy : str
            Strategy name (``"none"``, ``"auto"``, ``"period"``, ``"event"``,
            ``"differential"``, ``"event-rate"``, ``"differential-rate"``).
        params : str, number, or sequence, optional
            Strategy parameters (space-separated if a string).

        Returns
        -------
        tornado Future
            Resolves with ``{sensor_name: (success, info)}``.
        """
        if params is None or (not isinstance(params, (int, float)) and not params):
            param_args = []
        elif isinstance(params, str):
            param_args = params.split()
        elif isinstance(params, collections.abc.Iterable):
            param_args = [str(p) for p in params]
        else:
            param_args = [str(params)]
        return self._manager.set_sampling_strategy(self.name, " ".join([strategy] + param_args))

    def set_sampling_strategy(self, strategy):
        """Set the sampling strategy from ``"name params..."`` or a sequence.

        Returns
        -------
        tornado Future
            Resolves with ``{sensor_name: (success, info)}``.
        """
        return self._manager.set_sampling_strategy(self.name, strategy)

    def drop_sampling_strategy(self):
        """Forget the cached sampling strategy so that it is not reapplied."""
        self._manager.drop_sampling_strategy(self.name)

    def register_listener(self, listener, reading=False):
        """Add a callback called with every sensor update.

        Parameters
        ----------
        listener : callable
            If `reading` is True it is called as ``listener(katcp_sensor, reading)``
            with this sensor and a :class:`KATCPSensorReading`; otherwise as
            ``listener(received_timestamp, timestamp, status, value)`` with the
            status as a name such as ``"nominal"``.
        reading : bool
            Selects the callback signature.
        """
        self._listeners[_listener_key(listener)] = (listener, bool(reading))

    def is_listener(self, listener) -> bool:
        """True if `listener` is registered."""
        return _listener_key(listener) in self._listeners

    def unregister_listener(self, listener) -> None:
        """Remove a listener; no error if it is not registered."""
        self._listeners.pop(_listener_key(listener), None)

    def clear_listeners(self) -> None:
        """Remove all listeners."""
        self._listeners = {}

    def call_listeners(self, reading: KATCPSensorReading) -> None:
        """Pass `reading` to every listener; listener exceptions are logged."""
        for listener, use_reading in list(self._listeners.values()):
            try:
                if use_reading:
                    listener(self, reading)
                else:
                    listener(reading.received_timestamp, reading.timestamp, reading.status, reading.value)
            except Exception:
                logger.exception("Unhandled exception calling KATCPSensor listener %r for sensor %r",
                                 listener, self.name)

    def set(self, timestamp, status, value) -> None:
        """Store a new reading and call the listeners.

        Parameters
        ----------
        timestamp : float
            Device timestamp of the reading (seconds).
        status : int
            Integer status (``katcp.Sensor.NOMINAL`` ...).
        value : object
            Parsed value.
        """
        reading = KATCPSensorReading(self._manager.time(), timestamp, status, value)
        self._reading = reading
        self.call_listeners(reading)

    def set_value(self, value, status=_NOMINAL, timestamp=None) -> None:
        """Store a value with a status (default nominal) and timestamp (default now)."""
        if timestamp is None:
            timestamp = self._manager.time()
        self.set(timestamp, status, value)

    def set_formatted(self, raw_timestamp, raw_status, raw_value, major) -> None:
        """Store a reading given in KATCP wire form (bytes).

        Parameters
        ----------
        raw_timestamp, raw_status, raw_value : bytes
            Fields of a ``#sensor-status``/``#sensor-value`` inform.
        major : int
            KATCP major version of the device (timestamps in ms before v5).
        """
        timestamp = _parse_timestamp(raw_timestamp, major)
        status_name = raw_status.decode() if isinstance(raw_status, bytes) else raw_status
        try:
            status = _STATUS_NAMES[status_name]
        except KeyError:
            raise ValueError(f"Invalid sensor status {status_name!r}") from None
        value = self.parse_value(raw_value)
        self.set(timestamp, status, value)

    def parse_value(self, s_value, katcp_major=5):
        """Parse a value from its KATCP wire form (bytes) to the sensor's Python type."""
        if not isinstance(s_value, bytes):
            s_value = str(s_value).encode()
        try:
            return self._sensor.parse_value(s_value, katcp_major)
        except TypeError:
            return self._sensor.parse_value(s_value)

    @property
    def reading(self) -> KATCPSensorReading:
        """Most recently received :class:`KATCPSensorReading`."""
        return self._reading

    @tornado.gen.coroutine
    def get_reading(self):
        """Poll the device for a fresh reading.

        Returns
        -------
        tornado Future
            Resolves with the new :class:`KATCPSensorReading`.
        """
        yield self._manager.poll_sensor(self._name)
        return self._reading

    @tornado.gen.coroutine
    def get_value(self):
        """Poll the device for the sensor value; future resolves with the value."""
        yield self._manager.poll_sensor(self._name)
        return self._reading.value

    @tornado.gen.coroutine
    def get_status(self):
        """Poll the device for the sensor status; future resolves with the status name."""
        yield self._manager.poll_sensor(self._name)
        return self._reading.status

    @property
    def value(self):
        """Most recently received value (None before any reading)."""
        return self._reading.value

    @property
    def status(self) -> str:
        """Status name of the most recent reading."""
        return self._reading.status

    def wait(self, condition_or_value, timeout=None):
        """Wait until the sensor satisfies a condition or takes a value.

        A sampling strategy must be set on the sensor so that updates arrive.

        Parameters
        ----------
        condition_or_value : obj or callable, or seq of objs or callables
            If obj, ``sensor.value`` is compared with it.  If callable, it is
            called as ``condition(reading)`` with a :class:`KATCPSensorReading`
            and must return True when satisfied.  A sequence (not a string)
            means each condition must be satisfied in turn, in order.
        timeout : float or None
            Seconds to wait; None (or 0) waits forever.

        Returns
        -------
        tornado Future
            Resolves with True; raises :class:`tornado.gen.TimeoutError` on timeout.

        Raises
        ------
        :class:`KATCPSensorError`
            If the sensor has no sampling strategy set.
        """
        if (isinstance(condition_or_value, collections.abc.Sequence)
                and not isinstance(condition_or_value, (str, bytes))):
            conditions = list(condition_or_value)
            if not conditions:
                raise ValueError("Empty sequence of conditions")
        else:
            conditions = [condition_or_value]

        def as_test(c):
            if callable(c):
                return c
            return lambda reading: reading.value == c

        tests = [as_test(c) for c in conditions]
        if tuple(self.sampling_strategy) == ("none",):
            raise KATCPSensorError(
                f"Cannot wait on sensor {self.name!r}: it has no sampling strategy set")
        loop = asyncio.get_event_loop()
        f = Future()
        state = {"index": 0}

        def handle_update(sensor, reading):
            if f.done():
                self.unregister_listener(handle_update)
                return
            try:
                if tests[state["index"]](reading):
                    state["index"] += 1
                    if state["index"] == len(tests):
                        self.unregister_listener(handle_update)
                        f.set_result(True)
            except Exception as exc:
                self.unregister_listener(handle_update)
                f.set_exception(exc)

        self.register_listener(handle_update, reading=True)
        # The sensor may already satisfy the (first) condition.
        loop.call_soon(handle_update, self, self._reading)
        if not timeout:
            return f
        result = Future()
        handle = loop.call_later(
            timeout,
            lambda: result.done() or result.set_exception(
                tornado.gen.TimeoutError(f"Timed out waiting on sensor {self.name!r}")))

        def done(fut):
            handle.cancel()
            self.unregister_listener(handle_update)
            if result.done():
                return
            if fut.exception() is not None:
                result.set_exception(fut.exception())
            else:
                result.set_result(fut.result())

        def result_done(res):
            self.unregister_listener(handle_update)
            if not f.done():
                f.cancel()

        f.add_done_callback(done)
        result.add_done_callback(result_done)
        return result


_TYPE_NAMES = {
    0: "integer", 1: "float", 2: "boolean", 3: "lru", 4: "discrete",
    5: "string", 6: "timestamp", 7: "address",
}


def _type_name_of(sensor) -> str:
    stype = getattr(sensor, "stype", None) or getattr(sensor, "type", None)
    if isinstance(stype, str):
        return stype
    if isinstance(stype, bytes):
        return stype.decode()
    key: Any = getattr(sensor, "_sensor_type", stype)
    return _TYPE_NAMES.get(key, str(stype))
