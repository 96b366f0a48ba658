"""The inspecting client (mirrors a device's requests and sensors); documented and public in
:mod:`katcp.inspecting_client`."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import random
from typing import Any, Callable, Dict, Set

import tornado.gen
import tornado.ioloop

from katcp._client.requests import AsyncClient
from katcp._protocol.message import Message
from katcp._protocol.metaclass import AttrDict
from katcp._protocol.sensor import Sensor
from katcp._resource.inspecting_state import (
    InspectingClientStateType,
    StateTracker,
    with_optional_timeout,
)

ic_logger = logging.getLogger("katcp.inspect_client")

__all__ = [
    "ExponentialRandomBackoff",
    "InspectingClientAsync",
    "InspectingClientStateType",
    "RequestType",
    "SyncError",
]

_DISCONNECTED = InspectingClientStateType(False, False, False, False)
_SYNCING = InspectingClientStateType(True, False, False, False)
_DATA_SYNCED = InspectingClientStateType(True, False, False, True)
_SYNCED = InspectingClientStateType(True, True, False, True)


class SyncError(Exception):
    """Raised if an error occurs while syncing with a device."""


class RequestType(collections.namedtuple("RequestType", "name description timeout_hint")):
    """Description of a device request: (name, description, timeout_hint)."""

    __slots__ = []


# katcp-python's name for the default request factory.
Request = RequestType


class ExponentialRandomBackoff:
    """Randomised exponential back-off for retries.

    Parameters
    ----------
    delay_initial : float
        First delay (seconds) after a failure.
    delay_max : float
        Largest delay.
    exp_fac : float
        Factor by which the delay grows after each failure.
    randomicity : float
        Fraction (0..1) of the delay that is random: the delay used is
        ``d * (1 - randomicity) + d * randomicity * random()``.
    """

    def __init__(self, delay_initial=1.0, delay_max=90.0, exp_fac=3.0, randomicity=0.95):
        if not 0 <= randomicity <= 1:
            raise ValueError("randomicity must be in [0, 1]")
        self.delay_initial = delay_initial
        self.delay_max = delay_max
        self.exp_fac = exp_fac
        self.randomicity = randomicity
        self._base_delay = delay_initial
        self.delay = 0.0
        self._update_delay()

    def _update_delay(self):
        d = self._base_delay
        self.delay = d * (1 - self.randomicity) + d * self.randomicity * random.random()

    def failed(self) -> None:
        """Record a failure: grow the delay (up to `delay_max`)."""
        self._base_delay = min(self._base_delay * self.exp_fac, self.delay_max)
        self._update_delay()

    def success(self) -> None:
        """Record a success: reset the delay to `delay_initial`."""
        self._base_delay = self.delay_initial
        self._update_delay()


def _s(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _InformHookDeviceClient(AsyncClient):
    """AsyncClient that passes every inform to registered hooks first."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._inform_hooks: Dict[str, list] = collections.defaultdict(list)
        self._connection_callbacks: list = []

    def hook_inform(self, inform_name, callback):
        """Call `callback(msg)` for every inform named `inform_name`."""
        if callback not in self._inform_hooks[inform_name]:
            self._inform_hooks[inform_name].append(callback)

    def handle_inform(self, msg):
        for hook in self._inform_hooks.get(msg.name, ()):
            try:
                hook(msg)
            except Exception:
                self._logger.exception("Error calling inform hook for %s", msg.name)
        return super().handle_inform(msg)

    def notify_connected(self, connected):
        result = super().notify_connected(connected)
        for cb in list(self._connection_callbacks):
            try:
                cb(connected)
            except Exception:
                self._logger.exception("Error in connection callback")
        return result



def _bulk_capable(protocol_flags) -> bool:
    if protocol_flags is None:
        return False
    flag = getattr(protocol_flags, "bulk_set_sensor_sampling", None)
    if flag is not None:
        return bool(flag)
    return "B" in _flag_chars(protocol_flags)


def _hints_capable(protocol_flags) -> bool:
    if protocol_flags is None:
        return False
    flag = getattr(protocol_flags, "request_timeout_hints", None)
    if flag is not None:
        return bool(flag)
    return "T" in _flag_chars(protocol_flags)


def _flag_chars(protocol_flags) -> set:
    flags = getattr(protocol_flags, "flags", None) or ()
    return {_s(f) for f in flags}


class InspectingClientAsync:
    """Client that inspects and mirrors a KATCP device's requests and sensors.

    Parameters
    ----------
    host : str
        Device host.
    port : int
        Device port.
    ioloop : tornado.ioloop.IOLoop, optional
        Loop to run on (default: the current loop when started).
    initial_inspection : bool, optional
        Inspect everything on connect (default True).  If False, requests and
        sensors are inspected one by one when looked up.
    auto_reconnect : bool, optional
        Reconnect after the connection drops (default True).
    logger : logging.Logger
        Logger to use.
    ssl : ssl.SSLContext, optional
        Connect with TLS (see :func:`katcp._security.tls.client_context`).
    user, password : str, optional
        Log in as this user first thing on every connection (servers with login).

    Notes
    -----
    A device that goes silent without closing the connection is noticed within
    ``katcp_client.liveness_timeout`` seconds (see
    :attr:`DeviceClient.liveness_timeout <katcp.DeviceClient.liveness_timeout>`): the
    client is then disconnected and reconnects when the device is back.
    """

    sensor_factory: Callable = Sensor
    request_factory: Callable = RequestType
    sync_timeout = 20
    #: Above this many ``#interface-changed sensor <name>`` informs at once, the
    #: whole sensor (or request) list is inspected instead of each name.
    MAX_TARGETED_INSPECTIONS = 20
    initial_resync_timeout = 5
    max_resync_timeout = 90

    def __init__(self, host, port, ioloop=None, initial_inspection=None,
                 auto_reconnect=True, logger=ic_logger, *, ssl=None, user=None,
                 password=None):
        self._logger = logger
        self.initial_inspection = True if initial_inspection is None else bool(initial_inspection)
        self._auto_reconnect = auto_reconnect
        self._requests_index: Dict[str, Dict[str, Any]] = {}
        self._sensors_index: Dict[str, Dict[str, Any]] = {}
        self._running = False
        self._update_on_lookup = True
        self._state_cb: Callable | None = None
        self._state = StateTracker(_DISCONNECTED)
        self._pending_changes: Set[tuple] = set()
        # Incremented on every connect and disconnect, to notice a quick reconnect.
        self._conn_gen = 0
        self._wake: asyncio.Event | None = None
        self._loop_task = None
        self._backoff = None
        # ssl only when given: factories that substitute fakes need not know it.
        tls = {} if ssl is None else {"ssl": ssl}
        self.katcp_client = self.inform_hook_client_factory(
            host, port, auto_reconnect=auto_reconnect, logger=logger, **tls)
        if user is not None:
            # Logged in first thing on every connection, before the inspection.
            self.katcp_client.set_credentials(user, password)
        self.katcp_client.hook_inform("sensor-status", self._cb_inform_sensor_status)
        self.katcp_client.hook_inform("interface-changed", self._cb_inform_interface_change)
        self.katcp_client._connection_callbacks.append(self._cb_connection)
        self.ioloop = None
        if ioloop is not None:
            self.set_ioloop(ioloop)

    # -- construction hooks ------------------------------------------------
    def inform_hook_client_factory(self, host, port, *args, **kwargs):
        """Return the low-level client: an AsyncClient with ``hook_inform``.

        Override to substitute another client (see :mod:`katcp.fake_clients`).
        """
        return _InformHookDeviceClient(host, port, *args, **kwargs)

    async def login(self, user, password, timeout=None):
        """Log in now, and again first thing after every reconnection.

        See :meth:`katcp.client.AsyncClient.login` (returns the role granted; raises
        :class:`katcp.core.KatcpClientError` when refused).
        """
        return await self.katcp_client.login(user, password, timeout=timeout)

    def set_ioloop(self, ioloop):
        """Set the tornado IOLoop to use (before :meth:`start`)."""
        self.ioloop = ioloop
        self.katcp_client.set_ioloop(ioloop)

    def preset_protocol_flags(self, protocol_flags):
        """Assume the given :class:`katcp.core.ProtocolFlags` instead of the device's."""
        self.katcp_client.preset_protocol_flags(protocol_flags)

    def handle_sensor_value(self):
        """Also treat every ``#sensor-value`` inform as a sensor update."""
        self.katcp_client.hook_inform("sensor-value", self._cb_inform_sensor_value)

    def set_inform_hook(self, inform_name, callback):
        """Call ``callback(msg)`` for every inform named `inform_name` from the device.

        Hooks run before the client's own handling, in the ioloop thread.
        """
        self.katcp_client.hook_inform(inform_name, callback)

    def set_state_callback(self, cb):
        """Set a callback ``cb(state, model_changes)`` called on every state change.

        `state` is an :class:`InspectingClientStateType`; `model_changes` is
        None or ``AttrDict(requests=AttrDict(added=set, removed=set),
        sensors=AttrDict(added=set, removed=set))``.  If the callback returns a
        future, the client waits for it before moving on (for example before
        declaring itself synced).
        """
        self._state_cb = cb

    # -- properties --------------------------------------------------------
    @property
    def state(self) -> InspectingClientStateType:
        """Current :class:`InspectingClientStateType`."""
        return self._state.state

    @property
    def sensors(self):
        """Names of the known sensors."""
        return list(self._sensors_index.keys())

    @property
    def requests(self):
        """Names of the known requests."""
        return list(self._requests_index.keys())

    @property
    def connected(self) -> bool:
        """True if the low-level client is connected."""
        return self.katcp_client.is_connected()

    def is_connected(self) -> bool:
        """True if the low-level client is connected."""
        return self.katcp_client.is_connected()

    @property
    def synced(self) -> bool:
        """True if the model is in sync with the device."""
        return self.state.synced

    @property
    def bind_address(self):
        """(host, port) of the device."""
        return self.katcp_client.bind_address

    @property
    def bind_address_string(self) -> str:
        """``"host:port"`` of the device."""
        return self.katcp_client.bind_address_string

    @property
    def bulk_sensor_sampling(self) -> bool:
        """True if the device accepts ``?sensor-sampling a,b,c <strategy>``."""
        return _bulk_capable(getattr(self.katcp_client, "protocol_flags", None))

    # -- futures -----------------------------------------------------------
    def until_state(self, desired_state, timeout=None):
        """Future that resolves when the state equals `desired_state`."""
        return self._state.until_state(desired_state, timeout=timeout)

    def until_connected(self, timeout=None):
        """Future that resolves when connected."""
        return self.katcp_client.until_connected(timeout=timeout)

    def until_synced(self, timeout=None):
        """Future that resolves when fully synced."""
        return self._state.until_state(_SYNCED, timeout=timeout)

    def until_not_synced(self, timeout=None):
        """Future that resolves when not synced."""
        return self._state.until_predicate(lambda s: not s.synced, timeout=timeout)

    def until_data_synced(self, timeout=None):
        """Future that resolves when the request/sensor data is synced."""
        return self._state.until_predicate(lambda s: s.data_synced, timeout=timeout)

    def until_stopped(self, timeout=None):
        """Future that resolves once the client has stopped."""
        return self.katcp_client.until_stopped(timeout=timeout)

    # -- life cycle --------------------------------------------------------
    @tornado.gen.coroutine
    def connect(self, timeout=None):
        """Start the client; with a `timeout`, also wait until connected."""
        if self._running:
            raise RuntimeError("InspectingClientAsync already started")
        if self.ioloop is None:
            self.set_ioloop(tornado.ioloop.IOLoop.current())
        self.katcp_client.start()
        try:
            yield with_optional_timeout(self.katcp_client.until_running(), timeout)
            if timeout:
                yield with_optional_timeout(self.katcp_client.until_connected(), timeout)
        except tornado.gen.TimeoutError:
            self.katcp_client.stop()
            raise
        self._running = True
        # Retries of failed syncs back off from initial_resync_timeout (randomised).
        self._backoff = ExponentialRandomBackoff(
            delay_initial=self.initial_resync_timeout, delay_max=self.max_resync_timeout)
        self._wake = asyncio.Event()
        self._loop_task = asyncio.ensure_future(self._state_loop())
        self._loop_task.add_done_callback(self._state_loop_done)

    def _state_loop_done(self, task):
        if not task.cancelled() and task.exception() is not None:
            self._logger.error("State loop of inspecting client for %s died",
                               self.bind_address_string, exc_info=task.exception())

    def start(self, timeout=None):
        """Start the client (always pair with :meth:`stop` and :meth:`until_stopped`)."""
        return self.connect(timeout)

    def stop(self, timeout=None):
        """Stop the client and its state loop."""
        self._running = False
        if self._wake is not None:
            self._wake.set()
        return self.katcp_client.stop(timeout)

    close = stop

    def join(self, timeout=None):
        """Join the client's managed thread (if any)."""
        return self.katcp_client.join(timeout)

    # -- state machine -----------------------------------------------------
    def _cb_connection(self, connected):
        self._conn_gen += 1
        if not connected:
            self._set_state(_DISCONNECTED, None)
        if self._wake is not None:
            self._wake.set()

    def _set_state(self, state, model_changes):
        self._state.set_state(state)
        cb = self._state_cb
        if cb is None:
            return None
        try:
            return cb(state, model_changes)
        except Exception:
            self._logger.exception("Error in state callback of %s", self.bind_address_string)
            return None

    async def _send_state(self, state, model_changes):
        result = self._set_state(state, model_changes)
        if result is not None and inspect.isawaitable(result):
            try:
                await result
            except Exception:
                self._logger.exception("Error in state callback of %s", self.bind_address_string)
        # As katcp-python (tornado.gen.moment): let whatever reacts to this state run before
        # the state changes again, so each state is observable (until_state(S) finds S).
        await asyncio.sleep(0)

    async def _wait_wake(self):
        await self._wake.wait()
        self._wake.clear()

    async def _state_loop(self):
        first = True
        # As katcp-python, the state callback hears the initial state too.
        report_initial = True
        while self._running:
            if not self.katcp_client.is_connected():
                if report_initial or self.state != _DISCONNECTED:
                    report_initial = False
                    await self._send_state(_DISCONNECTED, None)
                    continue
                await self._wait_wake()
                continue
            report_initial = False
            gen = self._conn_gen

            def current(gen=gen):
                return (self._running and gen == self._conn_gen
                        and self.katcp_client.is_connected())

            try:
                # "Connected" is reported on TCP connect, before #version-connect.
                await self._send_state(_SYNCING, None)
                if not current():
                    continue
                await with_optional_timeout(self.katcp_client.until_protocol(), self.sync_timeout)
                if not current():
                    continue
                if self.state != _SYNCING:
                    await self._send_state(_SYNCING, None)
                self._pending_changes.clear()
                if first and not self.initial_inspection:
                    model_changes = None
                else:
                    model_changes = await with_optional_timeout(
                        tornado.gen.convert_yielded(self.inspect()), self.sync_timeout)
                first = False
                if not current():
                    continue
                changed = model_changes is not None
                await self._send_state(
                    InspectingClientStateType(True, False, changed, True), model_changes)
                if not current():
                    continue
                await self._send_state(_SYNCED, None)
                self._backoff.success()
                # Wait for interface changes or a disconnect.
                while current():
                    if not self._pending_changes:
                        await self._wait_wake()
                        continue
                    await self._resync_changes()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._running:
                    break
                self._backoff.failed()
                delay = self._backoff.delay
                self._logger.warning("Error syncing with device %s (%s: %s); retrying in %.2f s",
                                     self.bind_address_string, type(exc).__name__, exc, delay)
                await self._send_state(
                    InspectingClientStateType(self.katcp_client.is_connected(), False, False, False),
                    None)
                try:
                    await asyncio.wait_for(self._wait_wake(), delay)
                except asyncio.TimeoutError:
                    pass

    async def _resync_changes(self):
        await self._send_state(_SYNCING, None)
        pending = self._pending_changes
        self._pending_changes = set()
        sensor_names = {item[1] for item in pending if item[0] == "sensor"}
        request_names = {item[1] for item in pending if item[0] == "request"}
        whole_sensors = (("sensor-list",) in pending or ("all",) in pending
                         or len(sensor_names) > self.MAX_TARGETED_INSPECTIONS)
        whole_requests = (("request-list",) in pending or ("all",) in pending
                          or len(request_names) > self.MAX_TARGETED_INSPECTIONS)
        jobs = []
        if whole_requests:
            jobs.append(("r", self.inspect_requests(timeout=self.sync_timeout)))
        else:
            jobs.extend(("r", self.inspect_requests(n, timeout=self.sync_timeout))
                        for n in request_names)
        if whole_sensors:
            jobs.append(("s", self.inspect_sensors(timeout=self.sync_timeout)))
        else:
            jobs.extend(("s", self.inspect_sensors(n, timeout=self.sync_timeout))
                        for n in sensor_names)
        results = await asyncio.gather(*(job for _, job in jobs))
        added = {"r": set(), "s": set()}
        removed = {"r": set(), "s": set()}
        for (kind, _), changes in zip(jobs, results):
            added[kind] |= changes.added
            removed[kind] |= changes.removed
        model_changes = _model_changes(added["r"], removed["r"], added["s"], removed["s"])
        await self._send_state(
            InspectingClientStateType(True, False, model_changes is not None, True),
            model_changes)
        if self.katcp_client.is_connected():
            await self._send_state(_SYNCED, None)

    # -- inform handlers ---------------------------------------------------
    def _cb_inform_interface_change(self, msg):
        args = [_s(a) for a in msg.arguments]
        if len(args) >= 2 and args[0] in ("sensor", "request"):
            self._pending_changes.add((args[0], args[1]))
        elif len(args) == 1 and args[0] in ("sensor-list", "request-list"):
            self._pending_changes.add((args[0],))
        else:
            self._pending_changes.add(("all",))
        if self._wake is not None:
            self._wake.set()

    def _cb_inform_sensor_status(self, msg):
        self._handle_sensor_inform(msg)

    def _cb_inform_sensor_value(self, msg):
        self._handle_sensor_inform(msg)

    def __init_subclass__(cls, **kwargs):
        """Decide once per class whether one-sensor updates may skip :meth:`update_sensor`.

        A class that overrides :meth:`update_sensor` sees every update through it.
        """
        super().__init_subclass__(**kwargs)
        cls._plain_update = cls.update_sensor is InspectingClientAsync.update_sensor

    #: True while the class keeps :meth:`update_sensor` (see :meth:`__init_subclass__`).
    _plain_update = True

    def _handle_sensor_inform(self, msg):
        args = msg.arguments
        if len(args) == 5 and args[1] == b"1" and self._plain_update:
            # The usual line, one sensor: update_sensor inlined (a fleet behind a manager
            # sends hundreds of thousands of these a second).
            info = self._sensors_index.get(_s(args[2]))
            obj = None if info is None else info.get("obj")
            if obj is not None:
                try:
                    obj.set_formatted(args[0], args[3], args[4], self._katcp_major())
                except Exception:
                    self._logger.exception("Could not update sensor %r from %s",
                                           _s(args[2]), self.bind_address_string)
            return
        try:
            timestamp = args[0]
            num_sensors = int(args[1])
            if len(args) != 2 + num_sensors * 3:
                raise ValueError("wrong number of arguments")
        except (IndexError, ValueError) as exc:
            self._logger.error("Malformed #%s inform from %s (%s): %s", msg.name,
                               self.bind_address_string, exc, msg)
            return
        for n in range(num_sensors):
            base = 2 + n * 3
            try:
                self.update_sensor(_s(args[base]), timestamp, args[base + 1], args[base + 2])
            except Exception:
                self._logger.exception("Could not update sensor %r from %s",
                                       _s(args[base]), self.bind_address_string)

    def update_sensor(self, name, timestamp, status, value):
        """Apply a sensor update (raw bytes fields) to the sensor object, if created."""
        info = self._sensors_index.get(name)
        if info is None:
            return
        obj = info.get("obj")
        if obj is None:
            return
        obj.set_formatted(timestamp, status, value, self._katcp_major())

    def _katcp_major(self) -> int:
        """KATCP major version of the device (5 until it is known)."""
        return getattr(getattr(self.katcp_client, "protocol_flags", None), "major", 5) or 5

    # -- requests ----------------------------------------------------------
    def simple_request(self, request, *args, **kwargs):
        """Issue a request; return a future of ``(reply, informs)``.

        Parameters
        ----------
        request : str
            Request name.
        *args : objects
            Request arguments.
        timeout : float, optional (keyword)
            Timeout in seconds.
        use_mid : bool, optional (keyword)
            Whether to use a message id.
        mid : int, optional (keyword)
            Message id to use.
        """
        use_mid = kwargs.get("use_mid")
        timeout = kwargs.get("timeout")
        mid = kwargs.get("mid")
        msg = Message.request(request, *args, mid=mid)
        return self.katcp_client.future_request(msg, timeout, use_mid)

    # -- inspection --------------------------------------------------------
    @tornado.gen.coroutine
    def inspect(self):
        """Inspect requests and sensors; future resolves with the model changes or None."""
        timeout_manager = _Deadline(self.sync_timeout)
        # As katcp-python: if either inspection fails, neither counts.  Otherwise the one
        # that succeeded would have updated its index, and the retry would find no change
        # to report there: the resource would never hear of those sensors (or requests).
        sensors_before = {k: dict(v) for k, v in self._sensors_index.items()}
        requests_before = {k: dict(v) for k, v in self._requests_index.items()}
        # ?help (with ?request-timeout-hint) and ?sensor-list go out together: one round
        # trip to the device instead of two or three.
        requests_inspected = self.inspect_requests(timeout=timeout_manager.remaining())
        sensors_inspected = self.inspect_sensors(timeout=timeout_manager.remaining())
        try:
            try:
                request_changes = yield requests_inspected
            finally:
                # Also when the request inspection failed: its outcome is then not wanted.
                sensor_changes = yield sensors_inspected
        except Exception:
            self._sensors_index = sensors_before
            self._requests_index = requests_before
            raise
        return _model_changes(request_changes.added, request_changes.removed,
                              sensor_changes.added, sensor_changes.removed)

    @tornado.gen.coroutine
    def inspect_requests(self, name=None, timeout=None):
        """Inspect all requests (or just `name`) with ``?help``.

        Returns
        -------
        tornado Future
            Resolves with ``AttrDict(added=set, removed=set)`` of request names.
        """
        deadline = _Deadline(timeout)
        args = () if name is None else (name,)
        helped = self.simple_request("help", *args, timeout=deadline.remaining())
        # The hints are asked for at once (the flags are known by now), not a round trip later.
        hinted = None
        if _hints_capable(getattr(self.katcp_client, "protocol_flags", None)):
            hinted = self._get_request_timeout_hints(name, deadline.remaining())
        reply, informs = yield helped
        hints = {} if hinted is None else (yield hinted)
        if not reply.reply_ok():
            self._check_lookup_failure(name, reply)
            informs = []
            hints = {}
        original = set(self._requests_index)
        updated = set()
        for msg in informs:
            if len(msg.arguments) < 1:
                continue
            req_name = _s(msg.arguments[0])
            desc = _s(msg.arguments[1]) if len(msg.arguments) > 1 else ""
            data = {"name": req_name, "description": desc, "timeout_hint": hints.get(req_name)}
            updated.add(req_name)
            self._update_index(self._requests_index, req_name, data)
        added, removed = self._difference(original, updated, name,
                                          self._requests_index)
        return AttrDict(added=added, removed=removed)

    @tornado.gen.coroutine
    def _get_request_timeout_hints(self, name=None, timeout=None):
        args = () if name is None else (name,)
        reply, informs = yield self.simple_request("request-timeout-hint", *args, timeout=timeout)
        hints = {}
        if not reply.reply_ok():
            return hints
        for msg in informs:
            try:
                hint = float(msg.arguments[1])
            except (IndexError, ValueError):
                continue
            if hint > 0:
                hints[_s(msg.arguments[0])] = hint
        return hints

    @tornado.gen.coroutine
    def inspect_sensors(self, name=None, timeout=None):
        """Inspect all sensors (or just `name`) with ``?sensor-list``.

        Returns
        -------
        tornado Future
            Resolves with ``AttrDict(added=set, removed=set)`` of sensor names.
        """
        args = () if name is None else (name,)
        reply, informs = yield self.simple_request("sensor-list", *args, timeout=timeout)
        if not reply.reply_ok():
            self._check_lookup_failure(name, reply)
            informs = []
        original = set(self._sensors_index)
        updated = set()
        for msg in informs:
            a = msg.arguments
            if len(a) < 4:
                self._logger.warning("Malformed #sensor-list inform from %s: %s",
                                     self.bind_address_string, msg)
                continue
            s_name = _s(a[0])
            data = {"description": _s(a[1]), "units": _s(a[2]), "sensor_type": _s(a[3]),
                    "params": list(a[4:])}
            updated.add(s_name)
            self._update_index(self._sensors_index, s_name, data)
        added, removed = self._difference(original, updated, name,
                                          self._sensors_index)
        return AttrDict(added=added, removed=removed)

    def _check_lookup_failure(self, name, reply):
        """Raise SyncError unless `reply` says that the named item does not exist."""
        if name is None or self.failed_here(reply):
            raise SyncError(f"Error reply during sync process for "
                            f"{self.bind_address_string}: {reply}")

    def failed_here(self, reply) -> bool:
        """Whether a failed `reply` was made by the client, not sent by the device.

        True for the fail replies that end a request when it times out, the connection
        closes or the client stops (and for anything that is not a reply): the device
        has not judged the request.
        """
        text = b" ".join(reply.arguments[1:]).lower()
        return (reply.mtype != Message.REPLY or not self.katcp_client.is_connected()
                or b"timed out" in text or b"connection closed" in text
                or b"stopped" in text)

    @staticmethod
    def _update_index(index, name, data):
        existing = index.get(name)
        if existing is None:
            index[name] = dict(data)
            return
        if any(existing.get(k) != v for k, v in data.items()):
            existing.update(data)
            existing["obj"] = None
            existing["_changed"] = True

    @staticmethod
    def _difference(original_keys, updated_keys, name, item_index):
        added_keys = set(updated_keys) - set(original_keys)
        if name is None:
            removed_keys = set(original_keys) - set(updated_keys)
        elif name not in updated_keys and name in original_keys:
            removed_keys = {name}
        else:
            removed_keys = set()
        for key in removed_keys:
            item_index.pop(key, None)
        for key in set(updated_keys) - added_keys:
            if item_index[key].get("_changed"):
                item_index[key]["_changed"] = False
                added_keys.add(key)
                removed_keys.add(key)
        return added_keys, removed_keys

    # -- lookups -----------------------------------------------------------
    @tornado.gen.coroutine
    def future_check_sensor(self, name, update=None):
        """Future resolving True if the sensor exists (inspecting it if needed)."""
        exist = name in self._sensors_index
        if not exist and (update or (update is None and self._update_on_lookup)):
            yield self.until_data_synced()
            yield self.inspect_sensors(name)
            exist = name in self._sensors_index
        return exist

    @tornado.gen.coroutine
    def future_check_request(self, name, update=None):
        """Future resolving True if the request exists (inspecting it if needed)."""
        exist = name in self._requests_index
        if not exist and (update or (update is None and self._update_on_lookup)):
            yield self.until_data_synced()
            yield self.inspect_requests(name)
            exist = name in self._requests_index
        return exist

    @tornado.gen.coroutine
    def future_get_sensor(self, name, update=None):
        """Future resolving with the sensor object (from `sensor_factory`) or None."""
        exist = yield self.future_check_sensor(name, update)
        return self.get_sensor_obj(name) if exist else None

    @tornado.gen.coroutine
    def future_get_request(self, name, update=None):
        """Future resolving with the request object (from `request_factory`) or None."""
        exist = yield self.future_check_request(name, update)
        return self.get_request_obj(name) if exist else None

    def get_sensor_obj(self, name):
        """Return (creating if needed) the sensor object of a known sensor, else None."""
        info = self._sensors_index.get(name)
        if info is None:
            return None
        obj = info.get("obj")
        if obj is None:
            obj = self.sensor_factory(**self._sensor_description(name, info))
            info["obj"] = obj
        return obj

    def get_request_obj(self, name):
        """Return (creating if needed) the request object of a known request, else None."""
        info = self._requests_index.get(name)
        if info is None:
            return None
        obj = info.get("obj")
        if obj is None:
            obj = self.request_factory(name=info["name"], description=info["description"],
                                       timeout_hint=info["timeout_hint"])
            info["obj"] = obj
        return obj

    @staticmethod
    def _sensor_description(name, info):
        sensor_type = Sensor.parse_type(info["sensor_type"].encode())
        params = Sensor.parse_params(sensor_type, info["params"])
        return dict(name=name, sensor_type=sensor_type, description=info["description"],
                    units=info["units"], params=params)


def _model_changes(req_added, req_removed, sens_added, sens_removed):
    if not (req_added or req_removed or sens_added or sens_removed):
        return None
    return AttrDict(
        requests=AttrDict(added=set(req_added), removed=set(req_removed)),
        sensors=AttrDict(added=set(sens_added), removed=set(sens_removed)))


class _Deadline:
    def __init__(self, timeout):
        self._deadline = None if timeout is None else asyncio.get_event_loop().time() + timeout

    def remaining(self):
        if self._deadline is None:
            return None
        return max(self._deadline - asyncio.get_event_loop().time(), 0.001)
