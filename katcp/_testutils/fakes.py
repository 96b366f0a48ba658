"""Network-free fakes of the inspecting and resource clients; documented and public in
:mod:`katcp.fake_clients`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from typing import Any, Callable, Dict

import tornado.gen
from tornado.concurrent import Future

from katcp._protocol.message import AsyncReply, FailReply, Message, ProtocolFlags
from katcp._protocol.metaclass import convert_method_name
from katcp._protocol.sensor import Sensor
from katcp._resource.inspecting import _InformHookDeviceClient
from katcp._resource.resource import escape_name
from katcp._server.connections import ClientConnection, ClientRequestConnection

log = logging.getLogger("katcp.fake_clients")

__all__ = [
    "FakeAsyncClient",
    "FakeClientRequestConnection",
    "FakeInspectingClientManager",
    "FakeKATCPClientResourceContainerManager",
    "FakeKATCPClientResourceManager",
    "FakeKATCPServer",
    "FakeKATCPServerError",
    "fake_KATCP_client_resource_container_factory",
    "fake_KATCP_client_resource_factory",
    "fake_inspecting_client_factory",
]


class FakeKATCPServerError(Exception):
    """Raised when a fake request handler tries what the fake server cannot do."""


class FakeKATCPServer:
    """Stand-in for KATCPServer under the fake requests' ClientConnection."""

    def send_message(self, conn_id, msg):
        """Not supported by the fake: raises :class:`FakeKATCPServerError`."""
        raise FakeKATCPServerError(
            "Fake request handlers cannot send messages outside the request")

    def mass_send_message(self, msg):
        """Not supported by the fake: raises :class:`FakeKATCPServerError`."""
        raise FakeKATCPServerError("Fake request handlers cannot mass-inform")

    def mass_send_message_from_thread(self, msg):
        """Not supported by the fake: raises :class:`FakeKATCPServerError`."""
        self.mass_send_message(msg)

    def flush_on_close(self, stream=None):
        """Return an already-resolved future: a fake connection has nothing to flush.

        ``stream`` is accepted so that callers written for :class:`katcp.server.KATCPServer`
        work too; katcp-python's fake takes no argument.
        """
        f = Future()
        f.set_result(None)
        return f

    def get_address(self, conn_id):
        """Fake address of the fake client."""
        return f"<fake-client-{conn_id}>"


class FakeClientRequestConnection(ClientRequestConnection):
    """``req`` object passed to fake request handlers; collects informs and the reply."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.informs_sent = []
        self.reply_sent = None
        self._reply_future = None

    @property
    def reply_future(self):
        """Future resolving with the reply message once the handler replies."""
        if self._reply_future is None:
            self._reply_future = Future()
            if self.reply_sent is not None:
                self._reply_future.set_result(self.reply_sent)
        return self._reply_future

    def inform(self, *args):
        """Record a reply inform with the given arguments."""
        if self.reply_sent is not None:
            raise RuntimeError(f"Cannot send inform for request {self.msg!r} after the reply")
        self.informs_sent.append(Message.reply_inform(self.msg, *args))

    def reply(self, *args):
        """Record the reply with the given arguments."""
        self.reply_with_message(Message.reply_to_request(self.msg, *args))

    def reply_with_message(self, rep_msg):
        """Record a reply message."""
        if self.reply_sent is not None:
            raise RuntimeError(f"Reply to request {self.msg!r} already sent")
        rep_msg.mid = self.msg.mid
        self.reply_sent = rep_msg
        if self._reply_future is not None and not self._reply_future.done():
            self._reply_future.set_result(rep_msg)


class FakeAsyncClient(_InformHookDeviceClient):
    """AsyncClient that answers requests from in-process handlers (no network).

    ``request_handlers`` maps request names to ``handler(req, msg)`` callables
    with the katcp server handler interface (return a reply Message, a future,
    or reply through ``req``; raise FailReply for a fail reply).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.request_handlers: Dict[str, Callable] = {}
        self._fake_connected = False
        self._fake_running = False
        self._fake_waiters: Dict[str, list] = {"running": [], "connected": [], "stopped": []}
        self._fake_conn = ClientConnection(FakeKATCPServer(), id(self))
        self._fake_flags = ProtocolFlags(5, 1, set("MIB"))

    # -- life cycle (no network) -------------------------------------------
    def _resolve(self, what):
        waiters, self._fake_waiters[what] = self._fake_waiters[what], []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    def _until(self, what, condition, timeout):
        f = Future()
        if condition():
            f.set_result(None)
            return f
        self._fake_waiters[what].append(f)
        if timeout:
            return tornado.gen.with_timeout(
                asyncio.get_event_loop().time() + timeout, f)
        return f

    def start(self, timeout=None):
        """Start "connecting": connected on the next loop iteration."""
        self._fake_running = True
        self._resolve("running")
        asyncio.get_event_loop().call_soon(self._fake_connect)

    def _fake_connect(self):
        if not self._fake_running or self._fake_connected:
            return
        self._fake_connected = True
        self.last_connect_time = asyncio.get_event_loop().time()
        self.protocol_flags = self._fake_flags
        self._resolve("connected")
        self.notify_connected(True)

    def fake_disconnect(self):
        """Simulate a lost connection (reconnects on the next iteration if running)."""
        if self._fake_connected:
            self._fake_connected = False
            self.notify_connected(False)
            if self._fake_running:
                asyncio.get_event_loop().call_soon(self._fake_connect)

    def stop(self, timeout=None):
        """Stop the fake client."""
        self._fake_running = False
        if self._fake_connected:
            self._fake_connected = False
            self.notify_connected(False)
        self._resolve("stopped")

    def join(self, timeout=None):
        """Nothing to join (no thread)."""

    def running(self):
        return self._fake_running

    def is_connected(self):
        return self._fake_connected

    def until_running(self, timeout=None):
        return self._until("running", lambda: self._fake_running, timeout)

    def until_connected(self, timeout=None):
        return self._until("connected", lambda: self._fake_connected, timeout)

    def until_protocol(self, timeout=None):
        return self._until("connected", lambda: self._fake_connected, timeout)

    def until_stopped(self, timeout=None):
        return self._until("stopped", lambda: not self._fake_running, timeout)

    # -- requests ----------------------------------------------------------
    def future_request(self, msg, timeout=None, use_mid=None):
        """Dispatch `msg` to its fake handler; future of ``(reply, informs)``."""
        return tornado.gen.convert_yielded(self._handle(msg))

    async def _handle(self, msg):
        req = FakeClientRequestConnection(self._fake_conn, msg)
        handler = self.request_handlers.get(msg.name)
        if handler is None:
            reply = Message.reply_to_request(msg, "invalid", f"Unknown request {msg.name}.")
            return reply, []
        try:
            result = handler(req, msg)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, Message):
                reply = result
                reply.mid = msg.mid
            else:
                reply = await req.reply_future
        except AsyncReply:
            reply = await req.reply_future
        except FailReply as exc:
            reply = Message.reply_to_request(msg, "fail", str(exc))
        except Exception:
            reply = Message.reply_to_request(msg, "fail", traceback.format_exc(limit=20))
        return reply, list(req.informs_sent)

    def inject_inform(self, msg):
        """Deliver an inform from the fake device to the client."""
        self.handle_inform(msg)


class FakeInspectingClientManager:
    """Control a fake inspecting client: its sensors, requests and readings.

    The fake device always offers ``help``, ``sensor-list``,
    ``sensor-sampling`` and ``sensor-value``.
    """

    def __init__(self, fake_inspecting_client):
        self._fic = fake_inspecting_client
        self._fkc = fake_inspecting_client.katcp_client
        self.fake_sensor_infos: Dict[str, tuple] = {}
        self.fake_sensor_readings: Dict[str, tuple] = {}
        self.fake_sensor_strategies: Dict[str, tuple] = {}
        # Like a real device, forget the client's strategies when it disconnects.
        self._fkc._connection_callbacks.append(
            lambda connected: connected or self.fake_sensor_strategies.clear())
        self.add_request_handlers_dict({
            "help": self.request_help,
            "sensor-list": self.request_sensor_list,
            "sensor-sampling": self.request_sensor_sampling,
            "sensor-value": self.request_sensor_value,
        }, announce=False)

    def _announce(self, what):
        if self._fkc.is_connected():
            self._fkc.inject_inform(Message.inform("interface-changed", what))

    def add_sensors(self, sensor_infos):
        """Add fake sensors.

        Parameters
        ----------
        sensor_infos : dict
            ``{name: (description, units, type, *params)}`` with the fields as
            they would be on the wire (numbers may be given unformatted).
        """
        for info in sensor_infos.values():
            s_type = Sensor.parse_type(_b(info[2]))
            Sensor.parse_params(s_type, [_b(p) for p in info[3:]])
        self.fake_sensor_infos.update(sensor_infos)
        self._announce("sensor-list")

    def add_request_handlers_object(self, rh_obj):
        """Add fake request handlers from an object's ``request_*`` methods."""
        rh_dict = {}
        for name in dir(rh_obj):
            if name.startswith("request_") and callable(getattr(rh_obj, name)):
                rh_dict[convert_method_name("request_", name)] = getattr(rh_obj, name)
        self.add_request_handlers_dict(rh_dict)

    def add_request_handlers_dict(self, rh_dict, announce=True):
        """Add fake request handlers from ``{"request-name": handler(req, msg)}``.

        Handlers need docstrings (they are the ``?help`` text).
        """
        for name, func in rh_dict.items():
            if not func.__doc__:
                raise ValueError(f"Fake request handler {name!r} needs a docstring")
        self._fkc.request_handlers.update(rh_dict)
        if announce:
            self._announce("request-list")

    def set_sensor_reading(self, name, value, status=Sensor.NOMINAL, timestamp=None):
        """Set a fake sensor's reading; sent as ``#sensor-status`` if sampled."""
        if name not in self.fake_sensor_infos:
            raise KeyError(f"Unknown fake sensor {name!r}")
        timestamp = time.time() if timestamp is None else timestamp
        self.fake_sensor_readings[name] = (timestamp, status, value)
        if self.fake_sensor_strategies.get(name, ("none",))[0] != "none":
            self._send_status(name)

    def _formatted(self, name):
        ts, status, value = self.fake_sensor_readings.get(name, (0.0, Sensor.UNKNOWN, ""))
        if isinstance(value, bool):
            value = int(value)
        return repr(float(ts)), Sensor.STATUSES[status], value

    def _send_status(self, name):
        ts, status, value = self._formatted(name)
        self._fkc.inject_inform(Message.inform("sensor-status", ts, 1, name, status, value))

    def request_help(self, req, msg):
        """Return help on the available requests (fake ``?help``)."""
        handlers = self._fkc.request_handlers
        names = [_s(msg.arguments[0])] if msg.arguments else sorted(handlers)
        for name in names:
            if name not in handlers:
                return Message.reply_to_request(msg, "fail", f"Unknown request method {name}.")
            req.inform(name, handlers[name].__doc__.strip())
        return Message.reply_to_request(msg, "ok", len(names))

    def request_sensor_list(self, req, msg):
        """List the available sensors (fake ``?sensor-list``)."""
        names = [_s(msg.arguments[0])] if msg.arguments else sorted(self.fake_sensor_infos)
        for name in names:
            if name not in self.fake_sensor_infos:
                return Message.reply_to_request(msg, "fail", f"Unknown sensor name {name}.")
            req.inform(name, *self.fake_sensor_infos[name])
        return Message.reply_to_request(msg, "ok", len(names))

    def request_sensor_sampling(self, req, msg):
        """Set or query sampling strategies (fake ``?sensor-sampling``, bulk allowed)."""
        if not msg.arguments:
            return Message.reply_to_request(msg, "fail", "No sensor name given.")
        names_arg = _s(msg.arguments[0])
        names = names_arg.split(",")
        unknown = [n for n in names if n not in self.fake_sensor_infos]
        if unknown:
            return Message.reply_to_request(msg, "fail", f"Unknown sensor name {unknown[0]}.")
        if len(msg.arguments) == 1:
            strategy = self.fake_sensor_strategies.get(names[0], ("none",))
            return Message.reply_to_request(msg, "ok", names_arg, *strategy)
        strategy = tuple(_s(a) for a in msg.arguments[1:])
        for name in names:
            self.fake_sensor_strategies[name] = strategy
            if strategy[0] != "none":
                self._send_status(name)
        return Message.reply_to_request(msg, "ok", names_arg, *strategy)

    def request_sensor_value(self, req, msg):
        """Report sensor values (fake ``?sensor-value``)."""
        names = [_s(msg.arguments[0])] if msg.arguments else sorted(self.fake_sensor_infos)
        for name in names:
            if name not in self.fake_sensor_infos:
                return Message.reply_to_request(msg, "fail", f"Unknown sensor name {name}.")
            ts, status, value = self._formatted(name)
            req.inform(ts, 1, name, status, value)
        return Message.reply_to_request(msg, "ok", len(names))


def _b(v):
    return v if isinstance(v, bytes) else str(v).encode()


def _s(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def fake_inspecting_client_factory(InspectingClass, fake_options, host, port, *args, **kwargs):
    """Return a fake inspecting client and its :class:`FakeInspectingClientManager`.

    Parameters
    ----------
    InspectingClass : class
        :class:`katcp.inspecting_client.InspectingClientAsync` or a subclass.
    fake_options : dict
        ``sensor_infos`` (as for :meth:`FakeInspectingClientManager.add_sensors`)
        and ``request_handlers`` (``{name: handler}``) to start with; may be empty.
    host, port, *args, **kwargs
        Passed to `InspectingClass`.
    """

    class FakeInspectingClient(InspectingClass):
        def inform_hook_client_factory(self, host, port, *args, **kwargs):
            return FakeAsyncClient(host, port, *args, **kwargs)

    fic = FakeInspectingClient(host, port, *args, **kwargs)
    manager = FakeInspectingClientManager(fic)
    fake_options = fake_options or {}
    if fake_options.get("sensor_infos"):
        manager.add_sensors(fake_options["sensor_infos"])
    if fake_options.get("request_handlers"):
        manager.add_request_handlers_dict(fake_options["request_handlers"])
    return fic, manager


class FakeKATCPClientResourceManager:
    """Control a fake :class:`katcp.resource_client.KATCPClientResource`.

    Sensors and handlers may be added before the resource is started; they
    are passed on to the fake device when it exists.
    """

    def __init__(self, fake_katcp_resource_client):
        self._fkrc = fake_katcp_resource_client
        self._pending: list = []

    @property
    def fake_sensor_infos(self) -> Dict[str, tuple]:
        """Sensor descriptions of the fake device."""
        m = self._manager()
        if m is not None:
            return m.fake_sensor_infos
        infos: Dict[str, tuple] = {}
        for meth, arg in self._pending:
            if meth == "add_sensors":
                infos.update(arg)
        return infos

    def _manager(self):
        m = getattr(self._fkrc, "fake_inspecting_client_manager", None)
        if m is not None and self._pending:
            pending, self._pending = self._pending, []
            for meth, arg in pending:
                getattr(m, meth)(arg)
        return m

    def _call(self, meth, arg):
        m = self._manager()
        if m is None:
            self._pending.append((meth, arg))
            return None
        return getattr(m, meth)(arg)

    def add_sensors(self, sensor_infos):
        """Add fake sensors (see :meth:`FakeInspectingClientManager.add_sensors`)."""
        return self._call("add_sensors", sensor_infos)

    def add_request_handlers_dict(self, rh_dict):
        """Add fake request handlers from a ``{name: handler}`` dict."""
        return self._call("add_request_handlers_dict", rh_dict)

    def add_request_handlers_object(self, rh_obj):
        """Add fake request handlers from an object's ``request_*`` methods."""
        return self._call("add_request_handlers_object", rh_obj)

    def set_sensor_reading(self, name, value, status=Sensor.NOMINAL, timestamp=None):
        """Set a fake sensor reading (the resource must be started)."""
        m = self._manager()
        if m is None:
            raise RuntimeError("Start the fake resource before setting readings")
        m.set_sensor_reading(name, value, status, timestamp)


def fake_KATCP_client_resource_factory(KATCPClientResourceClass, fake_options,
                                       resource_spec, *args, **kwargs):
    """Return a fake KATCPClientResource (no network) and its manager.

    Parameters
    ----------
    KATCPClientResourceClass : class
        :class:`katcp.resource_client.KATCPClientResource` or a subclass.
    fake_options : dict
        As for :func:`fake_inspecting_client_factory`.
    resource_spec, *args, **kwargs
        Passed to `KATCPClientResourceClass`.

    Returns
    -------
    (resource, :class:`FakeKATCPClientResourceManager`)
    """
    manager_holder: Dict[str, Any] = {}

    class FakeKATCPClientResource(KATCPClientResourceClass):
        def inspecting_client_factory(self, host, port, ioloop_set_to):
            real = super().inspecting_client_factory(host, port, ioloop_set_to)
            real_class = type(real)
            fic, fic_manager = fake_inspecting_client_factory(
                real_class, fake_options, host, port, ioloop=ioloop_set_to,
                auto_reconnect=self.auto_reconnect, logger=self._logger)
            self.fake_inspecting_client_manager = fic_manager
            manager_holder["manager"]._manager()
            return fic

    fkcr = FakeKATCPClientResource(resource_spec, *args, **kwargs)
    manager = FakeKATCPClientResourceManager(fkcr)
    manager_holder["manager"] = manager
    return fkcr, manager


class FakeKATCPClientResourceContainerManager:
    """Control a fake container: per-child managers keyed by child name."""

    def __init__(self, fake_katcp_resource_container):
        self._fkcrc = fake_katcp_resource_container
        self._child_managers: Dict[str, FakeKATCPClientResourceManager] = {}

    @property
    def child_managers(self) -> Dict[str, FakeKATCPClientResourceManager]:
        """``{child_name: FakeKATCPClientResourceManager}``."""
        return self._child_managers

    def add_sensors(self, child_name, sensor_infos):
        """Add fake sensors to the named child."""
        return self._child_managers[child_name].add_sensors(sensor_infos)

    def add_request_handlers_dict(self, child_name, rh_dict):
        """Add fake request handlers to the named child."""
        return self._child_managers[child_name].add_request_handlers_dict(rh_dict)

    def add_request_handlers_object(self, child_name, rh_obj):
        """Add fake request handlers (``request_*`` methods) to the named child."""
        return self._child_managers[child_name].add_request_handlers_object(rh_obj)


def fake_KATCP_client_resource_container_factory(KATCPClientResourceContainerClass,
                                                 fake_options, resources_spec,
                                                 *args, **kwargs):
    """Return a fake container whose children are fake resources, and its manager.

    Returns
    -------
    (container, :class:`FakeKATCPClientResourceContainerManager`)
    """
    holder: Dict[str, Any] = {}

    class FakeKATCPClientResourceContainer(KATCPClientResourceContainerClass):
        def client_resource_factory(self, res_spec, parent, logger):
            real = super().client_resource_factory(res_spec, parent, logger)
            fres, fmanager = fake_KATCP_client_resource_factory(
                type(real), fake_options, res_spec, parent=parent, logger=logger)
            # Keyed like the container's children: by escaped name (client_2), as katcp-python.
            key = escape_name(res_spec["name"])
            holder.setdefault("pending", {})[key] = fmanager
            if "manager" in holder:
                holder["manager"]._child_managers[key] = fmanager
            return fres

    container = FakeKATCPClientResourceContainer(resources_spec, *args, **kwargs)
    manager = FakeKATCPClientResourceContainerManager(container)
    manager._child_managers.update(holder.get("pending", {}))
    holder["manager"] = manager
    return container, manager
