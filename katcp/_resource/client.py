"""Concrete high-level KATCP clients: one device, containers of devices, groups.

:class:`KATCPClientResource` inspects one device and exposes its requests
under ``.req`` and its sensors under ``.sensor``; sampling strategies and
listeners are remembered and re-applied after reconnects and to sensors that
appear later.  :class:`KATCPClientResourceContainer` holds several of them.
The thread-safe wrappers let plain threads drive these objects, which live in
an ioloop thread.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from typing import Any, Dict, Iterable, List

import tornado.gen
import tornado.ioloop
from tornado.concurrent import Future

from katcp._protocol.metaclass import AttrDict
from katcp._resource import resource
from katcp._aio.loopcalls import in_loop_thread
from katcp._resource.helpers import list_sensors, transform_future
from katcp._resource.inspecting import InspectingClientAsync
from katcp._resource.inspecting_state import StateTracker
from katcp._resource.resource import KATCPReply, escape_name, normalize_strategy_parameters
from katcp._resource.sensor import KATCPSensor

log = logging.getLogger("katcp.resource_client")

PY2 = False

# Largest number of names put in one bulk ?sensor-sampling request.
BULK_CHUNK = 1000

__all__ = [
    "KATCPClientResource",
    "KATCPClientResourceRequest",
    "KATCPClientResourceSensorsManager",
    "ReplyWrappedInspectingClientAsync",
]


class ReplyWrappedInspectingClientAsync(InspectingClientAsync):
    """InspectingClientAsync whose :meth:`wrapped_request` returns :class:`KATCPReply`."""

    @staticmethod
    def reply_wrapper(x):
        """Turn a ``(reply, informs)`` tuple into a :class:`KATCPReply`."""
        reply, informs = x
        return KATCPReply(reply, informs)

    def wrapped_request(self, request, *args, **kwargs):
        """Issue a request; return a future of :class:`KATCPReply`.

        Parameters are as for :meth:`InspectingClientAsync.simple_request`.
        """
        f = self.simple_request(request, *args, **kwargs)
        return transform_future(self.reply_wrapper, f)


class KATCPClientResourceRequest(resource.KATCPRequest):
    """Callable wrapper of a KATCP request on a client resource.

    The timeout defaults to the request's timeout hint when the device gives one.
    """

    def __init__(self, request_description, client, is_active=lambda: True):
        super().__init__(request_description, is_active)
        self._client = client

    def issue_request(self, *args, **kwargs):
        """Issue the request; return a future of :class:`KATCPReply`.

        Parameters
        ----------
        *args : objects
            Request arguments.
        timeout : float, optional (keyword)
            Timeout in seconds (default: the timeout hint, else the client default).
        mid : int, optional (keyword)
            Message id.
        """
        timeout = kwargs.pop("timeout", None)
        if timeout is None:
            timeout = self.timeout_hint
        kwargs["timeout"] = timeout
        return self._client.wrapped_request(self.name, *args, **kwargs)


class KATCPClientResourceSensorsManager(resource.KATCPSensorsManager):
    """Sensors manager backed by an inspecting client.

    Remembers sampling strategies (keyed by KATCP sensor name) so they can be
    re-applied after reconnects; uses bulk ``?sensor-sampling`` when the device
    supports it.
    """

    def __init__(self, inspecting_client, resource_name, logger=log):
        self._inspecting_client = inspecting_client
        self._resource_name = resource_name
        self._logger = logger
        self._strategy_cache: Dict[str, tuple] = {}

    @property
    def resource_name(self) -> str:
        """Name of the owning resource."""
        return self._resource_name

    def time(self) -> float:
        """Current wall-clock time in seconds (received timestamps of readings)."""
        return time.time()

    def sensor_factory(self, **sensor_description):
        """Build a :class:`katcp.resource.KATCPSensor` managed by this manager."""
        return KATCPSensor(sensor_description, self)

    def get_sampling_strategy(self, sensor_name):
        """Cached strategy of the sensor as a tuple of str (``("none",)`` if none)."""
        cached = self._strategy_cache.get(sensor_name)
        return cached if cached else ("none",)

    def cache_sampling_strategy(self, sensor_name, strategy_and_params):
        """Remember a strategy without sending it."""
        self._strategy_cache[sensor_name] = normalize_strategy_parameters(strategy_and_params)

    @tornado.gen.coroutine
    def set_sampling_strategy(self, sensor_name, strategy_and_params):
        """Set (and remember) the strategy of one sensor.

        Returns
        -------
        tornado Future
            Resolves with ``{sensor_name: (True, strategy_tuple)}`` or
            ``{sensor_name: (False, error_message)}``.
        """
        try:
            strategy = normalize_strategy_parameters(strategy_and_params)
            self._strategy_cache[sensor_name] = strategy
            reply = yield self._inspecting_client.wrapped_request(
                "sensor-sampling", sensor_name, *strategy)
            if not reply.succeeded:
                raise resource.KATCPSensorError(
                    f"Error setting strategy for sensor {sensor_name}: \n{reply!s}")
            result = (True, strategy)
        except Exception as exc:
            self._logger.warning("Could not set strategy of sensor %r: %s", sensor_name, exc)
            result = (False, str(exc))
        return {sensor_name: result}

    @tornado.gen.coroutine
    def set_sampling_strategies(self, sensor_names: Iterable[str], strategy_and_params):
        """Set (and remember) one strategy on many sensors, in bulk when possible.

        Uses ``?sensor-sampling a,b,c <strategy>`` if the device has the ``B``
        flag, otherwise sends one request per sensor, all pipelined.

        Returns
        -------
        tornado Future
            Resolves with ``{sensor_name: (success, info)}``.
        """
        names = list(sensor_names)
        strategy = normalize_strategy_parameters(strategy_and_params)
        for name in names:
            self._strategy_cache[name] = strategy
        results = yield self._send_strategy(names, strategy)
        return results

    async def _send_strategy(self, names: List[str], strategy: tuple) -> Dict[str, tuple]:
        ic = self._inspecting_client
        results: Dict[str, tuple] = {}
        if not names:
            return results
        if ic.bulk_sensor_sampling and len(names) > 1:
            chunks = [names[i:i + BULK_CHUNK] for i in range(0, len(names), BULK_CHUNK)]
            futures = [ic.wrapped_request("sensor-sampling", ",".join(chunk), *strategy)
                       for chunk in chunks]
            replies = await asyncio.gather(*futures, return_exceptions=True)
            retry: List[str] = []
            for chunk, reply in zip(chunks, replies):
                if isinstance(reply, KATCPReply) and reply.succeeded:
                    for name in chunk:
                        results[name] = (True, strategy)
                elif isinstance(reply, KATCPReply) and not ic.failed_here(reply.reply):
                    # All-or-nothing refused: find out which ones work one by one.
                    retry.extend(chunk)
                else:
                    # Timed out or cut off: as many single requests to a device that is
                    # slow or gone would only add to its load (and to ours).
                    msg = str(reply)
                    self._logger.warning("Could not set strategy %s of %d sensors: %s",
                                         " ".join(strategy), len(chunk), msg)
                    for name in chunk:
                        results[name] = (False, msg)
            names = retry
            if not names:
                return results
        futures = [ic.wrapped_request("sensor-sampling", name, *strategy) for name in names]
        replies = await asyncio.gather(*futures, return_exceptions=True)
        for name, reply in zip(names, replies):
            if isinstance(reply, KATCPReply) and reply.succeeded:
                results[name] = (True, strategy)
            else:
                msg = str(reply)
                self._logger.warning("Could not set strategy %s of sensor %r: %s",
                                     " ".join(strategy), name, msg)
                results[name] = (False, msg)
        return results

    def drop_sampling_strategy(self, sensor_name):
        """Forget the cached strategy of the sensor (the device is not told)."""
        self._strategy_cache.pop(sensor_name, None)

    @tornado.gen.coroutine
    def reapply_sampling_strategies(self):
        """Send every cached strategy again (grouped, in bulk when possible).

        Strategies of sensors the device does not have (any more) stay cached
        and are sent when the sensor appears.
        """
        ic = self._inspecting_client
        by_strategy: Dict[tuple, List[str]] = collections.defaultdict(list)
        known = set(ic.sensors)
        unknown = []
        for name, strategy in list(self._strategy_cache.items()):
            if name in known:
                by_strategy[strategy].append(name)
            else:
                unknown.append(name)
        if unknown and not ic.initial_inspection:
            # The model is built lazily: look the missing names up.
            exists = yield [ic.future_check_sensor(name) for name in unknown]
            for name, found in zip(unknown, exists):
                if found:
                    by_strategy[self._strategy_cache[name]].append(name)
        results = {}
        pending = [self._send_strategy(names, strategy)
                   for strategy, names in by_strategy.items()]
        for res in (yield [tornado.gen.convert_yielded(p) for p in pending]):
            results.update(res)
        return results

    @tornado.gen.coroutine
    def poll_sensor(self, sensor_name):
        """Poll the sensor with ``?sensor-value`` and update the sensor object."""
        reply = yield self._inspecting_client.wrapped_request("sensor-value", sensor_name)
        if not reply.succeeded:
            raise resource.KATCPSensorError(
                f"Error polling sensor {sensor_name!r}: {reply!s}")
        for inform in reply.informs:
            self._inspecting_client._handle_sensor_inform(inform)


class _RequestAttrDict(dict):
    """AttrDict of requests; optionally answers unknown names with dummy requests."""

    def __init__(self, owner):
        super().__init__()
        self._owner = owner

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __missing__(self, key):
        owner = self._owner
        if owner.dummy_unknown_requests:
            return resource.KATCPDummyRequest(
                {"name": key.replace("_", "-"), "description": "Dummy request"},
                is_active=owner.is_active)
        raise KeyError(key)

    def __dir__(self):
        return list(self.keys()) + dir(dict)


class _NameAttrDict(dict):
    """Dict whose keys (Python identifiers) are also attributes, for ``.sensor``, ``.req``..."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __dir__(self):
        return list(self.keys()) + dir(dict)


class KATCPClientResource(resource.KATCPResource):
    """Client resource for one KATCP device.

    ``set_sampling_strategies`` goes through :meth:`set_sampling_strategy` when a
    subclass overrides the latter; otherwise it sends one bulk request.

    Inspects the device and exposes its sensors (``.sensor``) and requests
    (``.req``) as per the :class:`katcp.resource.KATCPResource` API.

    Parameters
    ----------
    resource_spec : dict
        ``name`` : str, name of the resource;
        ``address`` : (host, port);
        ``controlled`` : bool (default False), expose requests;
        ``always_allowed_requests`` : seq of str, exposed even if not controlled;
        ``always_excluded_requests`` : seq of str, never exposed ('-' and '_' equivalent);
        ``auto_reconnect`` : bool (default True);
        ``auto_reconnect_delay`` : float seconds;
        ``liveness_timeout`` : float seconds, how soon a device that has gone silent
        is noticed and disconnected (default
        :attr:`DeviceClient.LIVENESS_TIMEOUT <katcp.DeviceClient.LIVENESS_TIMEOUT>`);
        ``dummy_unknown_requests`` : bool, unknown ``req.x`` answer ok without a device;
        ``preset_protocol_flags`` : :class:`katcp.core.ProtocolFlags`, optional;
        ``ssl`` : :class:`ssl.SSLContext`, optional, connect with TLS;
        ``user``, ``password`` : str, optional, log in as this user on every connection.
    parent : :class:`KATCPResource`, optional
        Owning container.
    logger : logging.Logger
    """

    MAX_LOOP_LATENCY = 0.03

    #: True if the class keeps :meth:`set_sampling_strategy`, so that
    #: ``set_sampling_strategies`` may use one bulk request instead (set per class).
    _bulk_strategies = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._bulk_strategies = (cls.set_sampling_strategy
                                is KATCPClientResource.set_sampling_strategy)

    def __init__(self, resource_spec, parent=None, logger=log):
        super().__init__()
        self._resource_spec = resource_spec
        self._name = resource_spec["name"]
        self._description = resource_spec.get("description", "")
        self._address = tuple(resource_spec["address"])
        self._controlled = resource_spec.get("controlled", False)
        self.auto_reconnect = resource_spec.get("auto_reconnect", True)
        self.auto_reconnect_delay = resource_spec.get("auto_reconnect_delay", None)
        self.liveness_timeout = resource_spec.get("liveness_timeout", None)
        self.always_allowed_requests = {
            n.replace("_", "-") for n in resource_spec.get("always_allowed_requests", ())}
        self.always_excluded_requests = {
            n.replace("_", "-") for n in resource_spec.get("always_excluded_requests", ())}
        self._dummy_unknown_requests = resource_spec.get("dummy_unknown_requests", False)
        self._preset_protocol_flags = resource_spec.get("preset_protocol_flags")
        self._ssl = resource_spec.get("ssl")
        self._user = resource_spec.get("user")
        self._password = resource_spec.get("password")
        self._parent = parent
        self._logger = logger
        self._ioloop_set_to = None
        self.ioloop = None
        self._sensor = _NameAttrDict()
        self._req = _RequestAttrDict(self)
        self._state = StateTracker("disconnected")
        self._inspecting_client = None
        self._sensor_manager = None
        self._sensor_strategy_cache: Dict[str, Any] = {}
        self._sensor_filter_strategies: List[tuple] = []
        self._sensor_listener_cache: Dict[str, list] = collections.defaultdict(list)
        self._need_reapply = True

    # -- properties --------------------------------------------------------
    @property
    def name(self) -> str:
        """Name of the resource."""
        return self._name

    @property
    def address(self):
        """(host, port) of the device."""
        return self._address

    @property
    def host(self) -> str:
        """Host of the device."""
        return self._address[0]

    @property
    def port(self) -> int:
        """Port of the device."""
        return self._address[1]

    @property
    def address_string(self) -> str:
        """``"host:port"`` of the device."""
        return f"{self._address[0]}:{self._address[1]}"

    @property
    def controlled(self) -> bool:
        """True if the device's requests are exposed."""
        return self._controlled

    @property
    def dummy_unknown_requests(self) -> bool:
        """True if unknown ``req.<name>`` return dummy requests answering ok."""
        return self._dummy_unknown_requests

    @property
    def parent(self):
        """Parent resource or None."""
        return self._parent

    @property
    def parent_name(self):
        """Name of the parent resource, or None."""
        return self._parent.name if self._parent is not None else None

    @property
    def children(self):
        """Children resources (always empty for a single device)."""
        return AttrDict()

    @property
    def req(self):
        """Requests of the device keyed by Python identifier."""
        return self._req

    @property
    def sensor(self):
        """Sensors of the device keyed by Python identifier."""
        return self._sensor

    @property
    def state(self) -> str:
        """``"disconnected"``, ``"syncing"`` or ``"synced"``."""
        return self._state.state

    @property
    def synced(self) -> bool:
        """True if synced."""
        return self._state.state == "synced"

    def _started_inspecting_client(self):
        ic = self._inspecting_client
        if ic is None:
            raise RuntimeError("Cannot find inspecting client, have you called start()?")
        return ic

    @property
    def versions(self):
        """Versions reported by the device (from ``#version-connect``).

        Raises
        ------
        RuntimeError
            Before :meth:`start` (as katcp-python).
        """
        return self._started_inspecting_client().katcp_client.versions

    @property
    def last_connect_time(self):
        """Loop time of the last connection, or None.

        Raises
        ------
        RuntimeError
            Before :meth:`start` (as katcp-python).
        """
        return self._started_inspecting_client().katcp_client.last_connect_time

    def is_connected(self) -> bool:
        """True if the state is not ``"disconnected"`` (``"syncing"`` or ``"synced"``)."""
        return self._state.state != "disconnected"

    # -- life cycle --------------------------------------------------------
    def set_ioloop(self, ioloop=None):
        """Set the tornado IOLoop to use (default: current loop); call before :meth:`start`."""
        self._ioloop_set_to = ioloop

    def inspecting_client_factory(self, host, port, ioloop_set_to):
        """Return an instance of :class:`ReplyWrappedInspectingClientAsync` or similar.

        Override (even on the instance, before :meth:`start`) to substitute a
        fake; see :func:`katcp.fake_clients.fake_inspecting_client_factory`.
        """
        return ReplyWrappedInspectingClientAsync(
            host, port, ioloop=ioloop_set_to, auto_reconnect=self.auto_reconnect,
            logger=self._logger, ssl=self._ssl, user=self._user, password=self._password)

    def start(self):
        """Create the inspecting client and start connecting (does not block).

        May be called from another thread than the ioloop's: the start is then
        handed to the ioloop.
        """
        if self._ioloop_set_to is None:
            self._ioloop_set_to = tornado.ioloop.IOLoop.current()
        if not in_loop_thread(self._ioloop_set_to, idle_is_here=True):
            self._ioloop_set_to.add_callback(self.start)
            return
        host, port = self._address
        ic = self._inspecting_client = self.inspecting_client_factory(
            host, port, self._ioloop_set_to)
        self.ioloop = getattr(ic, "ioloop", None) or self._ioloop_set_to
        if self._preset_protocol_flags is not None:
            ic.preset_protocol_flags(self._preset_protocol_flags)
        if self.auto_reconnect_delay is not None:
            ic.katcp_client.auto_reconnect_delay = self.auto_reconnect_delay
        if self.liveness_timeout is not None:
            ic.katcp_client.liveness_timeout = self.liveness_timeout
        self._sensor_manager = KATCPClientResourceSensorsManager(
            ic, self._name, logger=self._logger)
        ic.sensor_factory = self._sensor_manager.sensor_factory
        ic.set_state_callback(self._inspecting_client_state_callback)
        self.reapply_sampling_strategies = self._sensor_manager.reapply_sampling_strategies
        f = ic.connect()
        f.add_done_callback(self._log_start_failure)

    def _log_start_failure(self, f):
        if not f.cancelled() and f.exception() is not None:
            self._logger.error("Could not start client for %s", self._name,
                               exc_info=f.exception())

    def stop(self):
        """Stop the inspecting client."""
        if self._inspecting_client is not None:
            return self._inspecting_client.stop()
        return None

    def until_stopped(self, timeout=None):
        """Future that resolves once the inspecting client has stopped."""
        if self._inspecting_client is None:
            f = Future()
            f.set_result(None)
            return f
        return self._inspecting_client.until_stopped(timeout)

    def until_state(self, state, timeout=None):
        """Future that resolves when the state (``"disconnected"``, ``"syncing"``,
        ``"synced"``) is attained; raises tornado.gen.TimeoutError after `timeout`."""
        if state not in ("disconnected", "syncing", "synced"):
            raise ValueError(f"Unknown state {state!r}")
        return self._state.until_state(state, timeout=timeout)

    def until_synced(self, timeout=None):
        """Future that resolves when synced."""
        return self._state.until_state("synced", timeout=timeout)

    def until_not_synced(self, timeout=None):
        """Future that resolves when not synced."""
        return self._state.until_predicate(lambda s: s != "synced", timeout=timeout)

    def wait_connected(self, timeout=None):
        """Future that resolves when the state is not ``"disconnected"``."""
        return self._state.until_state_in("syncing", "synced", timeout=timeout)

    # -- state callback from the inspecting client --------------------------
    @tornado.gen.coroutine
    def _inspecting_client_state_callback(self, state, model_changes):
        if not state.connected:
            self._need_reapply = True
            self._state.set_state("disconnected")
            return
        if state.synced:
            self._state.set_state("synced")
            return
        self._state.set_state("syncing")
        if not state.data_synced:
            return
        new_sensors: List[str] = []
        if model_changes:
            self._update_requests(model_changes.requests)
            new_sensors = self._update_sensors(model_changes.sensors)
        if self._need_reapply:
            self._need_reapply = False
            yield self._sensor_manager.reapply_sampling_strategies()
        elif new_sensors:
            yield self._apply_strategies(new_sensors)

    def _update_requests(self, changes):
        ic = self._inspecting_client
        removed_keys = []
        for name in changes.removed:
            key = escape_name(name)
            if self._req.pop(key, None) is not None:
                removed_keys.append(key)
        added_keys = []
        for name in changes.added:
            if name in self.always_excluded_requests:
                continue
            if not (self._controlled or name in self.always_allowed_requests):
                continue
            req_obj = ic.get_request_obj(name)
            if req_obj is None:
                continue
            description = {"name": req_obj.name, "description": req_obj.description,
                           "timeout_hint": req_obj.timeout_hint}
            key = escape_name(name)
            self._req[key] = KATCPClientResourceRequest(description, ic, self.is_active)
            added_keys.append(key)
        if self._parent is not None:
            if removed_keys:
                self._parent._child_remove_requests(self, removed_keys)
            if added_keys:
                self._parent._child_add_requests(self, added_keys)

    def _update_sensors(self, changes) -> List[str]:
        ic = self._inspecting_client
        removed_keys = []
        for name in changes.removed:
            key = escape_name(name)
            obj = self._sensor.pop(key, None)
            if obj is not None:
                obj.clear_listeners()
                removed_keys.append(key)
        added_names = []
        added_keys = []
        for name in sorted(changes.added):
            try:
                obj = ic.get_sensor_obj(name)
            except Exception:
                self._logger.exception("Could not create sensor %r of %s", name, self._name)
                continue
            if obj is None:
                continue
            key = obj.normalised_name
            self._sensor[key] = obj
            added_keys.append(key)
            added_names.append(name)
            for listener in self._sensor_listener_cache.get(key, ()):
                obj.register_listener(listener, reading=True)
            strategy = self._sensor_strategy_cache.get(key)
            if strategy is None:
                for regex, strat in self._sensor_filter_strategies:
                    if regex.search(key):
                        strategy = strat
            # Otherwise a strategy set on the sensor object before it went away
            # is still in the manager's cache and is sent again.
            if strategy is not None:
                self._sensor_manager.cache_sampling_strategy(name, strategy)
        if self._parent is not None:
            if removed_keys:
                self._parent._child_remove_sensors(self, removed_keys)
            if added_keys:
                self._parent._child_add_sensors(self, added_keys)
        return added_names

    @tornado.gen.coroutine
    def _apply_strategies(self, sensor_names):
        manager = self._sensor_manager
        by_strategy = collections.defaultdict(list)
        for name in sensor_names:
            strategy = manager.get_sampling_strategy(name)
            if strategy != ("none",):
                by_strategy[strategy].append(name)
        for strategy, names in by_strategy.items():
            yield manager.set_sampling_strategies(names, strategy)

    # -- sensors -----------------------------------------------------------
    def list_sensors(self, filter="", strategy=False, status="",
                     use_python_identifiers=True, tuple=False, refresh=False):
        """List sensors available on this resource matching certain criteria.

        See :meth:`katcp.resource.KATCPResource.list_sensors`.
        """
        return list_sensors(self, dict.items(self._sensor), filter, strategy, status,
                            use_python_identifiers, tuple, refresh)

    @tornado.gen.coroutine
    def set_sampling_strategy(self, sensor_name, strategy_and_parms):
        """Set a strategy for a sensor even if it is not yet known.

        The strategy persists across disconnects and is applied when the sensor
        appears.

        Parameters
        ----------
        sensor_name : str
            Name or Python identifier of the sensor.
        strategy_and_parms : seq of str or str
            ``(<strat_name>, [<strat_parm1>, ...])`` or the same space-separated.

        Returns
        -------
        tornado Future
            Resolves with ``{sensor_name: strategy_and_parms}`` on success or
            ``{sensor_name: error_message}``; empty if the sensor is not known yet.
        """
        key = escape_name(sensor_name)
        self._sensor_strategy_cache[key] = strategy_and_parms
        sensor_obj = self._sensor.get(key)
        result = {}
        if sensor_obj is not None and self._sensor_manager is not None:
            res = yield self._sensor_manager.set_sampling_strategy(
                sensor_obj.name, strategy_and_parms)
            ok, info = res[sensor_obj.name]
            result[key] = strategy_and_parms if ok else info
        return result

    @tornado.gen.coroutine
    def set_sampling_strategies(self, filter, strategy_and_parms):
        """Set a strategy for all sensors matching the filter, including unseen ones.

        The strategy persists across disconnects and applies to matching sensors
        that appear later.  Uses one bulk request when the device supports it.

        Parameters
        ----------
        filter : str
            Regular expression searched in the sensors' Python identifiers.
        strategy_and_parms : seq of str or str
            ``(<strat_name>, [<strat_parm1>, ...])`` or the same space-separated.

        Returns
        -------
        tornado Future
            Resolves with ``{sensor_identifier: strategy_and_parms or error}``.
        """
        regex = re.compile(filter)
        self._sensor_filter_strategies = [
            (r, s) for r, s in self._sensor_filter_strategies if r.pattern != regex.pattern]
        self._sensor_filter_strategies.append((regex, strategy_and_parms))
        keys = [k for k in list(self._sensor) if regex.search(k)]
        result = yield self._set_strategies_of(keys, strategy_and_parms)
        return result

    @tornado.gen.coroutine
    def _set_strategies_of(self, keys, strategy_and_parms):
        """Set one strategy on the known sensors ``keys`` (Python identifiers).

        Goes through :meth:`set_sampling_strategy` for each sensor when the class
        overrides it (katcp-python users do); otherwise one bulk request (when the
        device supports it) does the same work. The choice is made once per class.

        Returns
        -------
        tornado Future
            Resolves with ``{sensor_identifier: strategy_and_parms or error}``.
        """
        if not self._bulk_strategies:
            replies = yield [self.set_sampling_strategy(k, strategy_and_parms) for k in keys]
            merged: Dict[str, Any] = {}
            for reply in replies:
                merged.update(reply)
            return merged
        for key in keys:
            self._sensor_strategy_cache[key] = strategy_and_parms
        result: Dict[str, Any] = {}
        if self._sensor_manager is None or not keys:
            return result
        names = {self._sensor[k].name: k for k in keys}
        res = yield self._sensor_manager.set_sampling_strategies(list(names), strategy_and_parms)
        for name, (ok, info) in res.items():
            result[names[name]] = strategy_and_parms if ok else info
        return result

    def drop_sampling_strategy(self, sensor_name):
        """Drop the sampling strategy of the named sensor from the cache.

        The device's current strategy is not changed; the strategy is just not
        reapplied any more.  No error if there is none.
        """
        key = escape_name(sensor_name)
        self._sensor_strategy_cache.pop(key, None)
        obj = self._sensor.get(key)
        if self._sensor_manager is not None:
            self._sensor_manager.drop_sampling_strategy(obj.name if obj else sensor_name)

    @tornado.gen.coroutine
    def set_sensor_listener(self, sensor_name, listener):
        """Set a listener for a sensor even if it is not yet known.

        The registration persists across disconnects.  `listener` is called as
        ``listener(katcp_sensor, reading)`` (see
        :meth:`katcp.resource.KATCPSensor.register_listener` with reading=True).

        Returns
        -------
        tornado Future
            Resolves with ``{sensor_name: listener}`` if the sensor exists now.
        """
        key = escape_name(sensor_name)
        cache = self._sensor_listener_cache[key]
        if listener not in cache:
            cache.append(listener)
        result = {}
        sensor_obj = self._sensor.get(key)
        if sensor_obj is not None:
            sensor_obj.register_listener(listener, reading=True)
            result[key] = listener
        return result

    def __repr__(self):
        return f"<{type(self).__name__} {self._name!r} {self.address_string} {self.state}>"
