"""Sensors, sampling and client bookkeeping of `DeviceServer` (its non-request half)."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple, Union

from katcp import version as _version
from katcp._aio.loopcalls import in_loop_thread, loop_calls
from katcp._protocol.grammar import _SPECIAL_BYTES
from katcp._protocol.linecodec import LineCodec
from katcp._protocol.message import (
    MS_TO_SEC_FAC,
    SEC_TO_MS_FAC,
    SEC_TS_KATCP_MAJOR,
    VERSION_CONNECT_KATCP_MAJOR,
    FailReply,
    Message,
)
from katcp._server.connections import ClientConnection
from katcp._server.dispatch import DeviceServerBase
from katcp._server.logger import DeviceLogger
from katcp._server.strategies import SampleNone, SampleStrategy, StatusWriter

__all__ = ["SensorServerBase"]

_INTERFACE_CHANGED_MAJOR = 5


def _native(value: Union[str, bytes]) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _strategy_names():
    return SampleStrategy.SAMPLING_LOOKUP_REV


class SensorServerBase(DeviceServerBase):
    """`DeviceServerBase` plus sensors, sampling strategies, version informs and logging.

    The half of `DeviceServer` that is not a request handler; see `DeviceServer`.

    The version information it announces is defined here (with neutral defaults)
    and overridden by subclasses.

    """

    #: Interface version information: ``(name, major, minor)``.
    VERSION_INFO: Tuple[Any, ...] = ("device_stub", 0, 1)

    #: Device server build / instance information: ``(name, major, minor[, extra])``.
    BUILD_INFO: Tuple[Any, ...] = ("name", 0, 1, "")

    #: KATCP major versions this server can speak (``PROTOCOL_INFO.major`` must be one).
    SUPPORTED_PROTOCOL_MAJOR_VERSIONS: Tuple[int, ...] = (4, 5)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if self.PROTOCOL_INFO.major not in self.SUPPORTED_PROTOCOL_MAJOR_VERSIONS:
            raise ValueError(
                "Device server only supports katcp protocol versions "
                f"{self.SUPPORTED_PROTOCOL_MAJOR_VERSIONS!r}, not {self.PROTOCOL_INFO.major!r} "
                "as specified in self.PROTOCOL_INFO")
        super().__init__(*args, **kwargs)
        self.log = DeviceLogger(self, python_logger=self._logger)
        #: Maps role/component names to (version, build_state_or_serial_no) tuples.
        self.extra_versions: Dict[str, Any] = {}
        self._restart_queue = None
        self._sensors: Dict[str, Any] = {}
        # client connection -> {sensor: strategy}
        self._strategies: Dict[ClientConnection, Dict[Any, Any]] = {}
        self._client_conns: set = set()
        self._status_cache: Any = (None, None, b"")
        self._encode = LineCodec().encode
        # _status_bytes bound once: the sensors' relays format a reading once for all the
        # StatusWriters that share this object.
        self._format_status: Callable[[Any, Any], bytes] = self._status_bytes
        self._greeting_cache: Any = None
        self.setup_sensors()

    # ---------------------------------------------------------- connections

    def on_client_connect(self, client_conn: ClientConnection):
        """Inform client of build state and version on connect.

        Sends ``#version-connect`` informs (``katcp-protocol``, ``katcp-library``,
        ``katcp-device``), or ``#version`` and ``#build-state`` for KATCP v4, and
        tells the other clients with ``#client-connected``.

        Parameters
        ----------
        client_conn : ClientConnection object
            The client connection that has been successfully established.

        Returns
        -------
        Future that resolves when the device is ready to accept messages.

        """
        self._client_conns.add(client_conn)
        self._strategies[client_conn] = {}
        info = self.PROTOCOL_INFO
        greeting = self._greeting_bytes()
        if greeting is not None and client_conn._direct_bytes and self._server._direct_send:
            # One encoding per server, the same bytes for every client whose class
            # keeps ClientConnection.inform (the others get Messages through it).
            conn = client_conn._conn
            if not conn.closing:
                conn.write_bytes(greeting)
        else:
            for msg in self._greeting_messages():
                client_conn.inform(msg)
        if info.multi_client:
            connected = Message.inform("client-connected", client_conn.address)
            server = self._server
            if server.in_ioloop_thread():
                # Batched per loop pass, encoded once (n connections are not n^2 writes).
                server.announce(client_conn, connected, self._client_conns)
            else:  # a device driven without its server running (tests)
                for other in self._client_conns:
                    if other is not client_conn:
                        other.inform(connected)
        return self._done_future()

    def _greeting_messages(self) -> List[Message]:
        """The informs sent to every new client (``#version-connect``, or v4's pair)."""
        if self._protocol_major >= VERSION_CONNECT_KATCP_MAJOR:
            return [
                Message.inform("version-connect", "katcp-protocol", str(self.PROTOCOL_INFO)),
                Message.inform("version-connect", "katcp-library", *self._library_version()),
                Message.inform("version-connect", "katcp-device",
                               self.version(), self.build_state()),
            ]
        return [Message.inform("version", self.version()),
                Message.inform("build-state", self.build_state())]

    def _greeting_bytes(self) -> bytes | None:
        """The encoded greeting, built once and rebuilt if the version information changes.

        The cache is keyed on the contents of ``PROTOCOL_INFO``, ``VERSION_INFO`` and
        ``BUILD_INFO`` (which may be reassigned or changed on the instance). Returns None, so that the greeting is
        built for each client, when a subclass overrides :meth:`version`,
        :meth:`build_state` or :meth:`_library_version`.

        """
        cls = type(self)
        if (cls.version is not SensorServerBase.version
                or cls.build_state is not SensorServerBase.build_state
                or cls._library_version is not SensorServerBase._library_version):
            return None
        info = self.PROTOCOL_INFO
        key = (info, info.major, info.minor, frozenset(info.flags),
               tuple(self.VERSION_INFO), tuple(self.BUILD_INFO))
        cached = self._greeting_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        encode = self._encode
        data = b"".join(encode(msg) for msg in self._greeting_messages())
        self._greeting_cache = (key, data)
        return data

    @staticmethod
    def _library_version():
        return (f"katcp-python-{_version.__version__}", _version.__version__)

    def clear_strategies(self, client_conn: ClientConnection, remove_client: bool = False) -> None:
        """Clear the sensor strategies of a client connection (ioloop thread).

        Parameters
        ----------
        client_conn : ClientConnection instance
            The connection that should have its sampling strategies cleared.
        remove_client : bool, optional
            Remove the client connection from the strategies data-structure.
            Useful for clients that disconnect.

        """
        if remove_client:
            strategies = self._strategies.pop(client_conn, None)
        else:
            strategies = self._strategies.get(client_conn)
        if strategies:
            for strategy in list(strategies.values()):
                strategy.cancel()
            strategies.clear()

    def on_client_disconnect(self, client_conn: ClientConnection, msg: str,
                             connection_valid: bool):
        """Inform client it is about to be disconnected and drop its strategies.

        Parameters
        ----------
        client_conn : ClientConnection object
            The client connection being disconnected.
        msg : str
            Reason client is being disconnected.
        connection_valid : bool
            True if connection is still open for sending, False otherwise.

        Returns
        -------
        Future that resolves when the client connection can be closed.

        """
        self._client_conns.discard(client_conn)
        self.clear_strategies(client_conn, remove_client=True)
        if connection_valid:
            client_conn.inform(Message.inform("disconnect", msg))
            return client_conn.flush_on_close()
        return self._done_future()

    # ------------------------------------------------------------- versions

    def build_state(self) -> str:
        """Return build state string of the form name-major.minor[(a|b|rc)n]."""
        return "{}-{}.{}{}".format(*tuple(self.BUILD_INFO))

    def version(self) -> str:
        """Return a version string of the form type-major.minor."""
        return "{}-{}.{}".format(*tuple(self.VERSION_INFO))

    # -------------------------------------------------------------- sensors

    def _interface_changed(self, what: str) -> None:
        if self.running() and self._protocol_major >= _INTERFACE_CHANGED_MAJOR:
            self.mass_inform(Message.inform("interface-changed", what))

    def _call_in_loop(self, fn: Callable[[], None]) -> None:
        # Strategies are touched in the loop thread only, or before any loop runs them.
        server = self._server
        if in_loop_thread(server._loop, idle_is_here=True) or server._loop is None:
            fn()
        else:
            server._post(fn)

    def add_sensor(self, sensor: Any) -> None:
        """Add a sensor to the device.

        Usually called inside .setup_sensors() but may be called while the
        server runs, in which case clients get ``#interface-changed sensor-list``.
        A sensor replacing another of the same name loses the old one's strategies.

        Parameters
        ----------
        sensor : Sensor object
            The sensor object to register with the device server.

        """
        old = self._sensors.get(sensor.name)
        self._sensors[sensor.name] = sensor
        if old is not None and old is not sensor:
            self._call_in_loop(lambda: self._cancel_sensor_strategies(old))
        self._interface_changed("sensor-list")

    def has_sensor(self, sensor_name: str) -> bool:
        """Whether the sensor with specified name is known."""
        return sensor_name in self._sensors

    def remove_sensor(self, sensor: Any) -> None:
        """Remove a sensor from the device.

        Also deregisters all clients observing the sensor, and tells clients
        ``#interface-changed sensor-list`` if the server is running.

        Parameters
        ----------
        sensor : Sensor object or name string
            The sensor to remove from the device server.

        """
        name = sensor if isinstance(sensor, str) else sensor.name
        removed = self._sensors.pop(name)
        self._call_in_loop(lambda: self._cancel_sensor_strategies(removed))
        self._interface_changed("sensor-list")

    def _cancel_sensor_strategies(self, sensor: Any) -> None:
        for conn_strategies in self._strategies.values():
            strategy = conn_strategies.pop(sensor, None)
            if strategy is not None:
                strategy.cancel()

    def get_sensor(self, sensor_name: str) -> Any:
        """Fetch the sensor with the given name.

        Parameters
        ----------
        sensor_name : str
            Name of the sensor to retrieve.

        Returns
        -------
        sensor : Sensor object
            The sensor with the given name.

        Raises
        ------
        ValueError
            If no sensor has that name.

        """
        sensor = self._sensors.get(sensor_name)
        if sensor is None:
            raise ValueError(f"Unknown sensor '{sensor_name}'.")
        return sensor

    def get_sensors(self) -> List[Any]:
        """Fetch a list of all sensors.

        Returns
        -------
        sensors : list of Sensor objects
            The list of sensors registered with the device server.

        """
        return list(self._sensors.values())

    def set_restart_queue(self, restart_queue: Any) -> None:
        """Set the restart queue.

        When the device server should be restarted, it will be added to the queue.

        Parameters
        ----------
        restart_queue : queue.Queue object
            The queue to add the device server to when it should be restarted.

        """
        self._restart_queue = restart_queue

    def setup_sensors(self) -> None:
        """Populate the dictionary of sensors.

        Called from ``__init__``; the default adds no sensors. Subclasses
        should add their sensors here.

        Examples
        --------
        >>> class MyDevice(DeviceServer):
        ...     def setup_sensors(self):
        ...         self.add_sensor(Sensor(...))
        ...         self.add_sensor(Sensor(...))
        ...

        """

    # -------------------------------------------------------------- sampling

    def _status_bytes(self, sensor: Any, reading: Any) -> bytes:
        """The ``#sensor-status`` line for a reading, formatted once for all clients."""
        cached = self._status_cache
        if cached[1] is reading and cached[0] is sensor:
            return cached[2]
        ts, status, value = sensor.format_reading(reading, self.PROTOCOL_INFO.major)
        name = sensor.name
        data = None
        if (ts.__class__ is bytes and status.__class__ is bytes and value.__class__ is bytes
                and name.__class__ is str and name.isascii() and ts and status and value
                and name):
            # This runs once per sensor update: the line without building a Message, kept
            # if no argument needs escaping (the grammar's special bytes are then only the
            # five separators and the terminator); else the codec's encoding, below.
            data = b"#sensor-status %s 1 %s %s %s\n" % (ts, name.encode("ascii"), status, value)
            if len(data) - len(data.translate(None, _SPECIAL_BYTES)) != 6:
                data = None
        if data is None:
            data = self._encode(Message.inform("sensor-status", ts, b"1", name, status, value))
        self._status_cache = (sensor, reading, data)
        return data

    def _inform_callback(self, client_conn: ClientConnection) -> Callable[[Any, Any], None]:
        """The strategies' callback for one client (run in the ioloop thread).

        A client whose class keeps `ClientConnection.inform`, on a server whose class
        keeps ``send_message``, gets the bytes formatted once for all clients (a
        `StatusWriter`, which the sensor's relay may stand in for); any other gets a
        `Message` through its ``inform``.
        """
        if client_conn._direct_bytes and self._server._direct_send:
            return StatusWriter(self._format_status, client_conn._conn)

        inform = client_conn.inform
        status_message = self._status_message

        def inform_status(sensor: Any, reading: Any) -> None:
            inform(status_message(sensor, reading))

        return inform_status

    def _status_message(self, sensor: Any, reading: Any) -> Message:
        """A new ``#sensor-status`` Message for a reading (for overriding connections)."""
        ts, status, value = sensor.format_reading(reading, self.PROTOCOL_INFO.major)
        return Message.inform("sensor-status", ts, b"1", sensor.name, status, value)

    def _run_in_loop(self, fn: Callable[[], Message]):
        """Return ``fn()`` in the ioloop thread; elsewhere a future of it, run there.

        The strategies live in the loop thread, so a threaded server's ``?sensor-sampling``
        handler does its work there (:meth:`LoopCalls.post_future
        <katcp._aio.loopcalls.LoopCalls.post_future>`); a ``FailReply`` raised reaches
        the reply through the future.
        """
        server = self._server
        if server.in_ioloop_thread():
            return fn()
        return loop_calls(server._loop).post_future(fn)

    def _set_sampling(self, client: ClientConnection, names_arg: str, names: List[str],
                      strategy: bytes, params: List[Any], bulk: bool,
                      msg: Message) -> Message:
        # ioloop thread: validate everything first, then swap strategies (all or nothing).
        if len(set(names)) != len(names):
            raise FailReply(f"Duplicate sensor name in {names_arg}.")
        unknown = [n for n in names if n not in self._sensors]
        if unknown:
            if bulk:
                raise FailReply(f"Unknown sensor names: {unknown!r}.")
            raise FailReply(f"Unknown sensor name: {unknown[0]}.")
        info = self.PROTOCOL_INFO
        if strategy not in _strategy_names():
            raise FailReply(f"Unknown strategy name: {_native(strategy)}.")
        if not info.strategy_allowed(strategy):
            raise FailReply(f"Strategy {_native(strategy)} not allowed for version "
                            f"{info.major} of katcp")
        v4_period = self._protocol_major < SEC_TS_KATCP_MAJOR and strategy == b"period"
        if v4_period and params:
            try:
                params = [float(params[0]) * MS_TO_SEC_FAC] + list(params[1:])
            except ValueError as exc:
                raise FailReply(f"Invalid strategy requested: {str(exc).rstrip('.')}.") from None
        callback = self._inform_callback(client)
        new: Dict[Any, Any] = {}
        try:
            for name in names:
                sensor = self._sensors[name]
                new[sensor] = SampleStrategy.get_strategy(
                    strategy, callback, sensor, *params, ioloop=self._server.ioloop)
        except (ValueError, TypeError) as exc:
            raise FailReply(f"Invalid strategy requested: {str(exc).rstrip('.')}.") from None
        client_strategies = self._strategies.get(client)
        if client_strategies is None:
            raise FailReply("Client connection is closed.")
        last: SampleStrategy | None = None
        for sensor, strategy_obj in new.items():
            old = client_strategies.pop(sensor, None)
            if old is not None:
                old.cancel()
            if not isinstance(strategy_obj, SampleNone):
                client_strategies[sensor] = strategy_obj
                strategy_obj.start()
            last = strategy_obj
        assert last is not None  # the request parser never gives an empty name list
        name_b, formatted = last.get_sampling_formatted()
        param_b: List[Any] = formatted
        if v4_period and param_b:
            param_b = [int(float(param_b[0]) * SEC_TO_MS_FAC)] + param_b[1:]
        return Message.reply_to_request(msg, "ok", names_arg, name_b, *param_b)

    def _query_sampling(self, client: ClientConnection, name: str, msg: Message) -> Message:
        sensor = self._sensors.get(name)
        if sensor is None:
            raise FailReply(f"Unknown sensor name: {name}.")
        current = self._strategies.get(client, {}).get(sensor)
        if current is None:
            return Message.reply_to_request(msg, "ok", name, "none")
        strategy, params = current.get_sampling_formatted()
        if self._protocol_major < SEC_TS_KATCP_MAJOR and strategy == b"period" and params:
            params = [int(float(params[0]) * SEC_TO_MS_FAC)] + params[1:]
        return Message.reply_to_request(msg, "ok", name, strategy, *params)

