"""DeviceClient: connection, protocol detection and message dispatch.

This module holds the raw KATCP client (`DeviceClient`) and the helpers that
the request-tracking clients in :mod:`katcp._client.requests` build on. Users
import everything from :mod:`katcp.client`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import socket
import ssl as _ssl
import threading
import traceback
from typing import Any, Callable, Dict, List, Tuple, Type

import tornado.gen
import tornado.ioloop
from tornado.util import ObjectDict

from katcp._aio.ioloop import IOLoopManager
from katcp._aio.loopcalls import LoopCalls, call_blocking, in_loop_thread, loop_calls
from katcp._protocol.linecodec import LineCodec
from katcp._protocol.message import (
    KatcpClientDisconnected,
    KatcpVersionError,
    Message,
    ProtocolFlags,
)
from katcp._protocol.metaclass import DeviceMetaclass
from katcp._security.redact import loggable
from katcp._security.tls import describe_connect_error
from katcp._transport.dial import open_connection, start_connect
from katcp._transport.protocol import Connection

log = logging.getLogger("katcp.client")

#: KATCP major version from which timestamps are float milliseconds (v4).
FLOAT_TS_KATCP_MAJOR = 4
#: Factor to convert seconds to milliseconds.
SEC_TO_MS_FAC = 1000
#: KATCP major version from which timestamps are in seconds (v5).
SEC_TS_KATCP_MAJOR = 5

_REPLY = Message.REPLY

# asyncio.timeout() (3.11+) needs no extra task, unlike wait_for().
_asyncio_timeout = getattr(asyncio, "timeout", None)


def address_to_string(addr_tuple: Tuple[str, int]) -> str:
    """Format a ``(host, port)`` tuple as ``"host:port"``.

    Parameters
    ----------
    addr_tuple : tuple of (str, int)
        Host and port.

    Returns
    -------
    str
        ``"host:port"``.
    """
    host, port = addr_tuple[0], addr_tuple[1]
    return f"{host}:{port}"


def make_threadsafe(meth: Callable) -> Callable:
    """Mark a method to run in the client's ioloop when thread safety is on.

    After :meth:`DeviceClient.enable_thread_safety`, a call from another
    thread is scheduled in the ioloop and returns ``None`` at once; a call
    from the ioloop thread runs directly.  Without thread safety the method
    runs as it is.

    Parameters
    ----------
    meth : callable
        The method (of a :class:`DeviceClient` subclass) to mark.

    Returns
    -------
    callable
        The method, wrapped; its ``make_threadsafe`` attribute is True.
    """
    # The wrapper decides per call, from the client's own state, instead of
    # enable_thread_safety() assigning wrapped methods on the instance.
    @functools.wraps(meth)
    def threadsafe(self: DeviceClient, *args: Any, **kwargs: Any) -> Any:
        if self._threadsafe:
            loop = self._loop
            if loop is not None and not in_loop_thread(loop):
                self._schedule_from_thread(meth, self, *args, **kwargs)
                return None
        return meth(self, *args, **kwargs)

    threadsafe.make_threadsafe = True  # type: ignore[attr-defined]
    return threadsafe


def make_threadsafe_blocking(meth: Callable) -> Callable:
    """Mark a method to run in the ioloop and block for its result.

    After :meth:`DeviceClient.enable_thread_safety`, a call from another
    thread runs the method in the ioloop and waits (``timeout`` keyword,
    default 5 s) for its result, which is returned (or its exception raised).
    Without thread safety the method runs as it is.

    Parameters
    ----------
    meth : callable
        The method (of a :class:`DeviceClient` subclass) to mark.

    Returns
    -------
    callable
        The method, wrapped; its ``make_threadsafe_blocking`` attribute is True.
    """
    @functools.wraps(meth)
    def threadsafe_blocking(self: DeviceClient, *args: Any, **kwargs: Any) -> Any:
        if self._threadsafe:
            timeout = kwargs.pop("timeout", 5)
            loop = self._loop
            if loop is not None and not in_loop_thread(loop):
                return call_blocking(loop, meth, (self, *args), kwargs, timeout)
        return meth(self, *args, **kwargs)

    threadsafe_blocking.make_threadsafe_blocking = True  # type: ignore[attr-defined]
    return threadsafe_blocking


class _StateFlag:
    """A boolean state usable from the ioloop (futures) and threads (wait).

    Set and clear from the ioloop thread only; :meth:`wait` may be called
    from any thread. The threading.Event behind :meth:`wait` is only made
    when a thread first waits.
    """

    __slots__ = ("_flag", "_tevent", "_waiters")

    def __init__(self, initial: bool = False) -> None:
        self._flag = initial
        self._tevent: threading.Event | None = None
        self._waiters: list = []

    def is_set(self) -> bool:
        return self._flag

    isSet = is_set

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        tevent = self._tevent
        if tevent is not None:
            tevent.set()
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(True)

    def clear(self) -> None:
        self._flag = False
        tevent = self._tevent
        if tevent is not None:
            tevent.clear()

    def until_set(self, loop: asyncio.AbstractEventLoop, timeout: float | None = None):
        """Future resolving (to True) once the flag is set.

        Raises ``tornado.gen.TimeoutError`` through the future after `timeout`.
        """
        fut = loop.create_future()
        if self._flag:
            fut.set_result(True)
            return fut
        self._waiters.append(fut)
        if timeout is not None:
            def _expire() -> None:
                if not fut.done():
                    fut.set_exception(tornado.gen.TimeoutError(
                        f"Timed out after {timeout} s"))
            handle = loop.call_later(max(timeout, 0), _expire)
            fut.add_done_callback(lambda _f: handle.cancel())
        return fut

    def wait(self, timeout: float | None = None) -> bool:
        """Block the calling thread until set; return the flag."""
        if self._flag:
            return True  # (no Event made for a wait that need not block)
        tevent = self._tevent
        if tevent is None:
            # Threads that wait at once share one Event: another that replaced this one
            # would never be set, and its waiter would sleep through the flag.
            with _TEVENT_LOCK:
                tevent = self._tevent
                if tevent is None:
                    tevent = self._tevent = threading.Event()
        # Set (by the loop thread) before the Event was there to be set: look again.
        if self._flag:
            return True
        return tevent.wait(timeout)


# Guards the making of a _StateFlag's Event (once per flag, by its first waiting thread).
_TEVENT_LOCK = threading.Lock()


class _ClientHandler:
    """Transport handler forwarding connection events to a DeviceClient."""

    __slots__ = ("_client",)

    def __init__(self, client: DeviceClient) -> None:
        self._client = client

    def connection_made(self, conn) -> None:
        self._client._connection_made(conn)

    def message_received(self, conn, msg) -> None:
        client = self._client
        if conn is not client._conn:
            return
        if not client._received_any:
            client._received_any = True
            client.last_connect_error = None
        client._rx_count += 1
        if msg.mtype == _REPLY:
            if client._pings and client._is_ping_reply(msg):
                return
            client._replies_in += 1
        try:
            result = client.handle_message(msg)
        except Exception:
            client._logger.exception(
                "Unhandled exception in handle_message() from %s for message %r",
                client.bind_address_string, str(msg))
            return
        if result is not None and inspect.isawaitable(result):
            client._watch_awaitable(result, msg)

    def decode_error(self, conn, exc) -> None:
        client = self._client
        client._logger.error("BAD COMMAND from %s: %s", client.bind_address_string, exc)

    def connection_lost(self, conn, exc) -> None:
        self._client._connection_lost(conn, exc)


class DeviceClient(metaclass=DeviceMetaclass):
    """Device client proxy.

    Subclasses should implement ``reply_*``, ``inform_*`` and ``request_*``
    methods to handle messages from the server; unhandled messages go to
    :meth:`unhandled_reply`, :meth:`unhandled_inform` and
    :meth:`unhandled_request`.

    Parameters
    ----------
    host : str
        Host to connect to (empty means ``"0.0.0.0"``).
    port : int
        Port to connect to.
    tb_limit : int, optional
        Maximum number of stack frames in logged tracebacks.
    logger : logging.Logger, optional
        Logger to log to (default ``katcp.client``).
    auto_reconnect : bool, optional
        Whether to reconnect (with a bounded back-off starting at
        ``auto_reconnect_delay``) when the connection drops or fails.
    ssl : ssl.SSLContext, optional
        Connect with TLS using this context (e.g.
        ``katcp._security.tls.client_context(cafile="ca.crt")``); the server's
        certificate is checked against ``host``. Why a connection failed is in
        :attr:`last_connect_error`. See the Security chapter.

    Examples
    --------
    >>> class MyClient(DeviceClient):
    ...     def reply_myreq(self, msg):
    ...         print(str(msg))
    >>> c = MyClient('localhost', 10000)
    >>> c.start()
    >>> c.send_request(katcp.Message.request('myreq'))
    >>> # expect reply to be printed here
    >>> c.stop(); c.join()
    """

    # Handler tables, filled in by DeviceMetaclass.
    _request_handlers: Dict[str, Callable[..., Any]]
    _inform_handlers: Dict[str, Callable[..., Any]]
    _reply_handlers: Dict[str, Callable[..., Any]]

    #: The transport handler made per client: the request-tracking clients choose a
    #: faster one per class, for classes that do not override the dispatch methods.
    _handler_class: Type[_ClientHandler] = _ClientHandler

    #: Maximum length of a message (line) accepted from the server.
    MAX_MSG_SIZE = 2 * 1024 * 1024
    #: Unsent output above which the connection is dropped.
    MAX_WRITE_BUFFER_SIZE = 2 * MAX_MSG_SIZE
    #: Kept for compatibility: maximum time the reader may hog the ioloop.
    MAX_LOOP_LATENCY = 0.03
    #: Default of :attr:`liveness_timeout` (seconds) for new clients.
    LIVENESS_TIMEOUT: float | None = 10.0

    def __init__(self, host: str, port: int, tb_limit: int = 20,
                 logger: logging.Logger = log, auto_reconnect: bool = True, *,
                 ssl: _ssl.SSLContext | None = None) -> None:
        if not host:
            host = "0.0.0.0"
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext or None, not {type(ssl).__name__}")
        self._bindaddr = (host, port)
        #: TLS context for the connection (None: plain TCP).
        self.ssl = ssl
        #: Why the last connection attempt failed, or why the server closed the last
        #: connection before saying anything (None after a good connection); in plain
        #: words, with a hint for TLS mismatches.
        self.last_connect_error: str | None = None
        self._received_any = False
        self._tb_limit = tb_limit
        self._logger = logger
        self._auto_reconnect = auto_reconnect
        #: Seconds to wait before the first reconnection attempt.
        self.auto_reconnect_delay = 0.5
        #: Upper bound of the reconnection back-off, in seconds.
        self.auto_reconnect_max_delay = 5.0
        #: Seconds allowed for one TCP connection attempt.
        self.connect_timeout = 5.0
        #: Seconds within which a server that has gone silent (powered off, cable
        #: pulled, process stopped: the socket stays open) is noticed.  When nothing
        #: has arrived for a third of it the client sends ``?watchdog`` (its reply is
        #: not passed on); when nothing arrives for another third the connection is
        #: dropped as dead: pending requests fail, and the client reconnects if
        #: ``auto_reconnect``.  While replies to requests are due the server may
        #: rightly be silent (katcp-python servers handle one request per client at
        #: a time), so the requests' own timeouts apply instead.  None or 0: never.
        #: Set it before start() or the next connection.
        self.liveness_timeout: float | None = self.LIVENESS_TIMEOUT
        self._connect_failures = 0
        self._static_protocol_configuration = False
        self._static_protocol_flags = None
        self._last_msg_id = 0
        #: Guards the pending requests, the message id counter and
        #: ``_xthread_calls`` against the threads that send requests directly.
        self._request_lock = threading.RLock()  # re-entrant: send_request may be overridden
        #: Calls scheduled into the ioloop by other threads and not yet run.
        self._xthread_calls = 0
        #: Counts runs (start()s), to tell stale scheduled calls apart.
        self._xthread_run = 0
        self._ioloop: tornado.ioloop.IOLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The cross-thread call queue of ``_loop`` (set by start()).
        self._loop_calls: LoopCalls | None = None
        self.ioloop_thread_id: int | None = None
        self._ioloop_manager = IOLoopManager(managed_default=True, logger=logger)
        self._threadsafe = False
        self.last_connect_time: float | None = None
        self._handler = self._handler_class(self)
        self._task: asyncio.Future | None = None
        self._liveness_handle: asyncio.TimerHandle | None = None
        self._init_state_per_run()

    def _init_state_per_run(self) -> None:
        """Initialise the state of one start..stop run."""
        self._stopped = _StateFlag(True)
        self._running = _StateFlag()
        self._waiting_to_retry = _StateFlag()
        self._connected = _StateFlag()
        self._disconnected = _StateFlag(True)
        self._received_protocol_info = _StateFlag()
        self._server_supports_ids = False
        self._protocol_flags = None
        self._conn: Connection | None = None
        self._task = None
        self._run_started = _StateFlag()
        self._early_sock: socket.socket | None = None
        self._conn_lost: asyncio.Future | None = None
        self._wakeup: asyncio.Future | None = None
        self._reset_liveness()
        if self._static_protocol_configuration:
            self.preset_protocol_flags(self._static_protocol_flags)
        #: Version information received from the server (``#version-connect``).
        self.versions = ObjectDict()
        # Nothing has run on this state yet: start() need not make it again.
        self._state_fresh = True

    # ------------------------------------------------------------------ properties
    @property
    def protocol_flags(self):
        """:class:`katcp.core.ProtocolFlags` of the server (None until known)."""
        return self._protocol_flags

    @protocol_flags.setter
    def protocol_flags(self, val) -> None:
        self._protocol_flags = val
        self._server_supports_ids = bool(val is not None and val.supports(
            ProtocolFlags.MESSAGE_IDS))
        self._received_protocol_info.set()

    @property
    def bind_address(self) -> Tuple[str, int]:
        """(host, port) where the client is connecting."""
        return self._bindaddr

    @property
    def bind_address_string(self) -> str:
        """``"host:port"`` where the client is connecting."""
        return address_to_string(self._bindaddr)

    @property
    def sockname(self) -> Tuple[str, int]:
        """Local socket address, or ``(host, -1)`` when not connected."""
        conn = self._conn
        if conn is not None:
            transport = getattr(conn, "transport", None) or getattr(conn, "_transport", None)
            if transport is not None:
                sockname = transport.get_extra_info("sockname")
                if sockname:
                    return tuple(sockname[:2])
        return (self._bindaddr[0], -1)

    @property
    def sockname_string(self) -> str:
        """Local socket address as ``"host:port"``."""
        return address_to_string(self.sockname)

    @property
    def threadsafe(self) -> bool:
        """Whether :meth:`enable_thread_safety` has been applied."""
        return self._threadsafe

    @property
    def ioloop(self):
        """The tornado IOLoop the client runs on (None before start)."""
        return self._ioloop

    # ------------------------------------------------------------------ threads / ioloop
    def set_ioloop(self, ioloop=None) -> None:
        """Run on an existing tornado IOLoop (unmanaged) instead of a managed thread.

        Parameters
        ----------
        ioloop : tornado.ioloop.IOLoop, optional
            Loop to use (default ``IOLoop.current()``). Call before :meth:`start`.
        """
        if ioloop is None:
            ioloop = tornado.ioloop.IOLoop.current()
        self._ioloop_manager.set_ioloop(ioloop, managed=False)
        self._ioloop = ioloop

    def enable_thread_safety(self) -> None:
        """Make the marked public methods callable from any thread.

        The methods marked with :func:`make_threadsafe` or
        :func:`make_threadsafe_blocking` then hand calls from other threads to
        the ioloop.  Must be called before :meth:`start`.
        """
        if self._threadsafe:
            return
        if self._running.is_set():
            raise RuntimeError("Cannot enable thread safety after start")
        self._threadsafe = True

    def _schedule_from_thread(self, fn: Callable, *args, **kwargs) -> None:
        """Run ``fn(*args, **kwargs)`` in the ioloop soon (from another thread).

        While such calls are on their way, no thread sends requests directly
        (they go through the ioloop, behind these calls), so that the calls of
        a thread reach the wire in the order it made them.
        """
        with self._request_lock:
            self._xthread_calls += 1
            run = self._xthread_run
        calls = self._loop_calls
        assert calls is not None  # only called once started
        if not calls.post(self._run_scheduled, run, fn, args, kwargs):
            with self._request_lock:
                self._xthread_calls -= 1
            raise RuntimeError("IOLoop is closed")

    def _run_scheduled(self, run: int, fn: Callable, args, kwargs) -> None:
        try:
            fn(*args, **kwargs)
        finally:
            with self._request_lock:
                if run == self._xthread_run:  # not left over from an earlier run
                    self._xthread_calls -= 1

    def start(self, timeout: float | None = None) -> None:
        """Start the client (in a managed ioloop thread unless :meth:`set_ioloop` was used).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for the client to be running. Do not pass a timeout
            when starting from the thread of the (unmanaged) ioloop itself.
        """
        if self._running.is_set():
            raise RuntimeError("Device client already started.")
        # After stop(), a managed manager hands out a fresh loop for the new run.
        self._ioloop = ioloop = self._ioloop_manager.get_ioloop()
        self._loop = loop = ioloop.asyncio_loop  # type: ignore[attr-defined]
        self._loop_calls = loop_calls(loop)
        if not self._state_fresh:
            self._init_state_per_run()
        # _install goes with the manager's start: for a managed loop it runs here, before
        # the loop's thread starts (the SYN leaves at once, and start(timeout) need not
        # wait for the thread); otherwise in the loop's thread.
        self._ioloop_manager.start(first_call=self._install)
        if timeout and not in_loop_thread(loop):
            # Not wait_running(): the client may already have run and stopped.
            self._run_started.wait(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the managed ioloop thread to finish (no-op if unmanaged).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait.
        """
        self._ioloop_manager.join(timeout)

    def _stop_in_loop(self) -> None:
        """Begin stopping (ioloop thread): fail requests, drop connection."""
        self._state_fresh = False
        self._running.clear()
        self._on_stopping()
        self._disconnect()
        self._close_early_sock()  # in case the main task never got to run
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        task = self._task
        if task is not None and not task.done():
            task.cancel()

    def stop(self, timeout: float | None = None):
        """Stop the client.

        With a managed ioloop this must be called from another thread; the
        loop stops after the client's main coroutine ends (use :meth:`join`).
        From the thread of an unmanaged loop, yield :meth:`until_stopped`.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for the client to have started, and to stop.
        """
        if self._ioloop is None:
            raise RuntimeError("Call start() before stop()")
        from_loop = in_loop_thread(self._loop)

        async def _stop() -> None:
            if timeout and self._task is None:
                # Not installed in the loop yet: give it the chance to start.
                try:
                    await self._running.until_set(self._started_loop(), timeout)
                except tornado.gen.TimeoutError:
                    pass
            self._stop_in_loop()
            if not from_loop:
                try:
                    await self._stopped.until_set(self._started_loop(), timeout)
                except tornado.gen.TimeoutError:
                    self._logger.warning("Client %s did not stop within %s s",
                                         self.bind_address_string, timeout)

        return self._ioloop_manager.stop(timeout=timeout, callback=_stop)

    def until_stopped(self, timeout: float | None = None):
        """Future that resolves when the client has stopped (ioloop thread only).

        Parameters
        ----------
        timeout : float, optional
            Seconds before the future fails with ``tornado.gen.TimeoutError``.
        """
        return self._stopped.until_set(self._started_loop(), timeout)

    def running(self) -> bool:
        """Whether the client is running."""
        return self._running.is_set()

    def until_running(self, timeout: float | None = None):
        """Future that resolves when the client is running (ioloop thread only)."""
        return self._running.until_set(self._started_loop(), timeout)

    def wait_running(self, timeout: float | None = None) -> bool:
        """Block until the client is running; return whether it is.

        Do not call from the ioloop thread; use :meth:`until_running`.
        """
        if self._ioloop is None:
            raise RuntimeError("Call start() before wait_running()")
        return self._running.wait(timeout)

    def is_connected(self) -> bool:
        """Whether the client is connected to its server."""
        return self._connected.is_set()

    async def _until_flag(self, flag: _StateFlag, timeout: float | None) -> None:
        loop = self._started_loop()
        t0 = loop.time()
        await self._running.until_set(loop, timeout)
        remaining = None if timeout is None else timeout - (loop.time() - t0)
        await flag.until_set(loop, remaining)

    def until_connected(self, timeout: float | None = None):
        """Future that resolves when the client is connected (ioloop thread only)."""
        if self._running.is_set():
            return self._connected.until_set(self._started_loop(), timeout)
        return asyncio.ensure_future(self._until_flag(self._connected, timeout))

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until connected; return whether the client is connected.

        Do not call from the ioloop thread; use :meth:`until_connected`.
        """
        return self._connected.wait(timeout)

    def wait_disconnected(self, timeout: float | None = None) -> bool:
        """Block until disconnected; return whether the client is disconnected."""
        return self._disconnected.wait(timeout)

    def until_protocol(self, timeout: float | None = None):
        """Future that resolves once the server's protocol information is known."""
        if self._running.is_set():
            return self._received_protocol_info.until_set(self._started_loop(), timeout)
        return asyncio.ensure_future(self._until_flag(self._received_protocol_info, timeout))

    def wait_protocol(self, timeout: float | None = None) -> bool:
        """Block until the server's protocol information is known; return whether it is.

        When True, :attr:`protocol_flags` holds the server's flags. When it is not known in
        time although the connection is up and the server has sent nothing at all,
        :attr:`last_connect_error` says so (typically a plaintext client talking to a TLS
        server, which waits for a handshake).
        """
        known = self._received_protocol_info.wait(timeout)
        if not known and self._connected.is_set() and not self._received_any:
            self.last_connect_error = describe_connect_error(
                None, self.ssl is not None, silent_greeting=True)
        return known

    # ------------------------------------------------------------------ protocol
    def convert_seconds(self, time_seconds: float) -> float:
        """Convert a time in seconds to the device's timestamp units.

        KATCP v4 and earlier use milliseconds, v5 seconds; versions below
        v4 truncate to whole milliseconds.

        Parameters
        ----------
        time_seconds : float
            Time in seconds.

        Returns
        -------
        float or int
            Time in the device's units.
        """
        if self.protocol_flags.major >= SEC_TS_KATCP_MAJOR:
            return time_seconds
        device_time = time_seconds * SEC_TO_MS_FAC
        if self.protocol_flags.major < FLOAT_TS_KATCP_MAJOR:
            device_time = int(device_time)
        return device_time

    def preset_protocol_flags(self, protocol_flags) -> None:
        """Preset the server's protocol flags and disable version detection.

        Parameters
        ----------
        protocol_flags : :class:`katcp.core.ProtocolFlags`
            Flags to assume.
        """
        self._static_protocol_configuration = True
        self._static_protocol_flags = protocol_flags
        self.protocol_flags = protocol_flags

    def inform_version_connect(self, msg: Message) -> None:
        """Process a ``#version-connect`` inform (KATCP v5)."""
        if len(msg.arguments) < 2:
            return
        name = msg.arguments[0].decode("utf-8", "replace")
        self.versions[name] = tuple(a.decode("utf-8", "replace") for a in msg.arguments[1:])
        if msg.arguments[0] == b"katcp-protocol":
            try:
                protocol_flags = ProtocolFlags.parse_version(msg.arguments[1])
            except Exception:
                self._logger.error("Bad katcp-protocol version from %s: %r",
                                   self.bind_address_string, msg.arguments[1])
                return
            self._set_protocol_from_inform(protocol_flags, msg)

    def inform_version(self, msg: Message) -> None:
        """Handle a KATCP v4 ``#version`` inform."""
        self._set_v4_protocol(msg)

    def inform_build_state(self, msg: Message) -> None:
        """Handle a KATCP v4 ``#build-state`` inform."""
        self._set_v4_protocol(msg)

    def _set_v4_protocol(self, inform: Message) -> None:
        self._set_protocol_from_inform(ProtocolFlags(4, 0, ""), inform)

    def _set_protocol_from_inform(self, protocol_flags, inform: Message) -> None:
        if protocol_flags == self.protocol_flags:
            return
        if self.protocol_flags:
            if self._static_protocol_configuration:
                self._logger.warning(
                    "Protocol Version Warning: Ignoring inform received from server "
                    "indicating a katcp protocol revision inconsistent with the static "
                    "configuration. Static configuration: %r. Inform received: %r",
                    str(self.protocol_flags), str(inform))
                return
            self._logger.error(
                "Protocol Version Error: Inform received from server indicating a katcp "
                "protocol revision inconsistent with the previously detected version. "
                "Disconnecting. Previous version: %r. Inform received: %r",
                str(self.protocol_flags), str(inform))
            self._auto_reconnect = False
            self._disconnect()
        self.protocol_flags = protocol_flags

    # ------------------------------------------------------------------ sending
    def _get_mid_and_update_msg(self, msg: Message, use_mid: bool | None) -> bytes:
        """Return the active message id of `msg`, assigning one if needed.

        ``msg.mid`` is filled in with a fresh id when `use_mid` is True, or
        None and the server supports ids. An internal id is returned in any
        case so that the request can be tracked.
        """
        if use_mid is None:
            use_mid = self._server_supports_ids
        if msg.mid is None:
            self._last_msg_id += 1
            mid = b"%d" % self._last_msg_id
            if use_mid:
                msg.mid = mid
            return mid
        return msg.mid

    @make_threadsafe_blocking
    def request(self, msg: Message, use_mid: bool | None = None):
        """Send a request message, assigning a message id when appropriate.

        Parameters
        ----------
        msg : Message
            Request message.
        use_mid : bool or None, optional
            Force (True) or suppress (False) message ids; by default ids are
            used when the server supports them.

        Returns
        -------
        bytes
            The message id (internal id if none was put on the message).

        Raises
        ------
        KatcpVersionError
            If the message carries an id and the server does not support ids.
        KatcpClientDisconnected
            If not connected.
        """
        with self._request_lock:
            mid = self._get_mid_and_update_msg(msg, use_mid)
        self.send_request(msg)
        return mid

    def send_request(self, msg: Message) -> None:
        """Send a request message.

        Parameters
        ----------
        msg : Message
            The request to send.

        Raises
        ------
        KatcpVersionError
            If ``msg.mid`` is set but the server does not support ids.
        """
        if msg.mtype != Message.REQUEST:
            raise ValueError(f"send_request() needs a request message, got {str(msg)!r}")
        if msg.mid and not self._server_supports_ids:
            raise KatcpVersionError("Message IDs not supported by server")
        self.send_message(msg)
        self._requests_out += 1

    @make_threadsafe_blocking
    def send_message(self, msg: Message) -> None:
        """Send any kind of message.

        Parameters
        ----------
        msg : Message
            The message to send.

        Raises
        ------
        KatcpClientDisconnected
            If the client is not connected.
        """
        conn = self._conn
        if conn is None or conn.closing:
            raise KatcpClientDisconnected(
                f"Not connected to device {self.bind_address_string}")
        if self._logger.isEnabledFor(logging.DEBUG):
            self._logger.debug("Sending to %s: %r", self.bind_address_string, loggable(msg))
        try:
            # Latency: the first message of an idle connection goes out now
            # rather than at the end of the loop iteration; later ones in the
            # same iteration are still coalesced by the transport.
            idle = conn.get_write_buffer_size() == 0
            conn.write(msg)
            if idle:
                conn.flush()
        except Exception as exc:
            self._logger.warning("Could not send message %r to %r", loggable(msg),
                                 self._bindaddr, exc_info=True)
            self._disconnect()
            raise KatcpClientDisconnected(
                f"Could not send to device {self.bind_address_string}") from exc

    # ------------------------------------------------------------------ connection
    def _connection_made(self, conn) -> None:
        if not self._running.is_set():
            conn.abort()
            return
        if self._conn is not None and self._conn is not conn:
            self._conn.abort()
        self._conn = conn
        # Lets threads send requests without waking the ioloop (blocking_request).
        conn.enable_threadsafe_writes()
        loop = self._started_loop()
        self._conn_lost = loop.create_future()
        if self._connect_failures >= 5:
            self._logger.warning("Reconnected to %s", self.bind_address_string)
        self._connect_failures = 0
        self._received_any = False
        self._disconnected.clear()
        self._connected.set()
        self.last_connect_time = loop.time()
        self._start_liveness(loop, conn)
        self._logger.debug("Connected to %s", self.bind_address_string)
        try:
            self._on_connected()
        except Exception:
            self._logger.exception("Error starting the connection to %s",
                                   self.bind_address_string)
        try:
            self.notify_connected(True)
        except Exception:
            self._logger.exception("Notify connect failed. Disconnecting.")
            self._disconnect()

    def _connection_lost(self, conn, exc) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        if not self._received_any and self._running.is_set():
            # Closed by the server without a word: typically a TLS server that got
            # plain text, or one that refused our (missing) client certificate.
            self.last_connect_error = describe_connect_error(
                exc or ConnectionResetError("closed by the server"), self.ssl is not None,
                silent_close=True)
        self._reset_liveness()
        self._connected.clear()
        self._disconnected.set()
        if not self._static_protocol_configuration:
            # The next server on this address may speak another version.
            self._protocol_flags = None
            self._server_supports_ids = False
            self._received_protocol_info.clear()
        if exc is not None:
            self._logger.warning("Client stream for server %s closed with error %r",
                                 self.bind_address_string, exc)
        try:
            self._on_connection_lost()
        except Exception:
            self._logger.exception("Error failing requests for %s", self.bind_address_string)
        try:
            self.notify_connected(False)
        except Exception:
            self._logger.exception("Notify connect failed")
        lost = self._conn_lost
        if lost is not None and not lost.done():
            lost.set_result(None)

    def _on_connected(self) -> None:
        """Hook for subclasses: connected; runs before :meth:`notify_connected`, so that
        what it sends (a ``?login``) goes before anything the user's callbacks send."""

    def _on_connection_lost(self) -> None:
        """Hook for subclasses: the connection has just been lost."""

    # ------------------------------------------------------------------ liveness
    def _reset_liveness(self) -> None:
        """Forget the liveness state of a connection (none, or it has gone)."""
        handle = self._liveness_handle
        if handle is not None:
            handle.cancel()
        self._liveness_handle = None
        #: Messages received on this connection (the liveness check compares counts).
        self._rx_count = 0
        self._rx_seen = 0
        #: Our ``?watchdog`` pings whose replies are still due: their message ids
        #: (None for a server without ids); ``_pings`` is their number.
        self._ping_mids: List[bytes | None] = []
        self._pings = 0
        self._ping_sent = False
        #: Requests sent with send_request and replies received (see _replies_due).
        self._requests_out = 0
        self._replies_in = 0

    def _start_liveness(self, loop: asyncio.AbstractEventLoop, conn: Connection) -> None:
        timeout = self.liveness_timeout
        if not timeout or timeout <= 0:
            return
        self._liveness_handle = loop.call_later(timeout / 3, self._check_liveness, conn)

    def _check_liveness(self, conn: Connection) -> None:
        # Every third of liveness_timeout: silent for one third -> ping; for two -> dead.
        self._liveness_handle = None
        timeout = self.liveness_timeout
        if conn is not self._conn or conn.closing or not timeout or timeout <= 0:
            return
        if self._rx_count != self._rx_seen or self._replies_due():
            # Something arrived; or a reply is due, and a server that handles one
            # request at a time may rightly say nothing until it is ready: the
            # requests' own timeouts bound that wait.
            self._rx_seen = self._rx_count
            self._ping_sent = False
        elif not self._ping_sent:
            self._ping_sent = True
            self._send_ping()
        else:
            self._logger.warning(
                "Nothing received from %s for %.3g s, not even a ?watchdog reply: "
                "dropping the connection as dead", self.bind_address_string,
                timeout * 2 / 3)
            self._disconnect()
            return
        self._liveness_handle = self._started_loop().call_later(
            timeout / 3, self._check_liveness, conn)

    def _replies_due(self) -> bool:
        """Whether replies to requests sent on this connection are still due."""
        return self._requests_out > self._replies_in

    def _send_ping(self) -> None:
        msg = Message.request("watchdog")
        with self._request_lock:
            mid = self._get_mid_and_update_msg(msg, None)
        try:
            self.send_message(msg)
        except Exception:  # the connection is going: connection_lost does the rest
            return
        self._ping_mids.append(mid if msg.mid is not None else None)
        self._pings += 1

    def _is_ping_reply(self, msg: Message) -> bool:
        """Whether ``msg`` answers one of our pings (then it is consumed)."""
        if msg.name != "watchdog":
            return False
        mids = self._ping_mids
        try:
            mids.remove(msg.mid)
        except ValueError:
            return False
        self._pings -= 1
        return True

    async def _connect(self) -> bool:
        """Make one connection attempt; return whether it succeeded."""
        host, port = self._bindaddr
        codec = LineCodec(max_line_length=self.MAX_MSG_SIZE)
        # The first attempt uses the socket _install() began connecting.
        sock, self._early_sock = self._early_sock, None
        try:
            if _asyncio_timeout is not None:
                # asyncio.timeout() needs no extra task, unlike wait_for (< 3.12).
                async with _asyncio_timeout(self.connect_timeout):
                    await open_connection(
                        self._handler, codec, host, port, ssl=self.ssl,
                        max_msg_size=self.MAX_MSG_SIZE,
                        max_write_buffer_size=self.MAX_WRITE_BUFFER_SIZE, logger=self._logger,
                        sock=sock)
            else:
                await open_connection(
                    self._handler, codec, host, port, ssl=self.ssl,
                    timeout=self.connect_timeout, max_msg_size=self.MAX_MSG_SIZE,
                    max_write_buffer_size=self.MAX_WRITE_BUFFER_SIZE, logger=self._logger,
                    sock=sock)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = describe_connect_error(exc, self.ssl is not None)
            if isinstance(exc, _ssl.SSLError) and error != self.last_connect_error:
                # TLS failures do not cure themselves by retrying: say so once, loudly.
                self._logger.warning("Cannot connect to %s: %s", self.bind_address_string,
                                     error)
            if self._connect_failures % 5 == 0:
                self._logger.debug("Failed to connect to %r: %s", self._bindaddr, exc)
            self.last_connect_error = error
            self._connect_failures += 1
            return False
        return self._conn is not None

    def _disconnect(self) -> None:
        """Close the current connection (cleanup happens in connection_lost)."""
        conn = self._conn
        if conn is not None:
            conn.abort()

    @make_threadsafe
    def disconnect(self) -> None:
        """Drop the connection (the client reconnects if `auto_reconnect`)."""
        self._disconnect()

    def _install(self) -> None:
        """Put the client on its loop: running, then connect.

        Runs in the ioloop thread, or before a managed loop's thread starts (nothing can
        race with the loop then).
        """
        loop = self._started_loop()
        if in_loop_thread(loop):
            self.ioloop_thread_id = threading.get_ident()  # katcp-python's attribute
        else:
            # Before the managed loop's thread starts (see IOLoopManager.start): noted in
            # its first pass; a plain call_soon, as the loop runs nowhere yet.
            loop.call_soon(self._note_loop_thread)
        with self._request_lock:
            # Calls scheduled into the loop of an earlier run are not counted any more.
            self._xthread_calls = 0
            self._xthread_run += 1
        self._state_fresh = False
        self._stopped.clear()
        self._running.set()
        self._run_started.set()
        # Put the SYN on the wire now rather than one task step (and the set-up of
        # create_connection) later: the server's greeting then arrives that much sooner.
        self._early_sock = sock = start_connect(loop, *self._bindaddr)
        self._task = task = loop.create_task(self._run())
        if sock is not None:
            # Also when the task is cancelled before its first step (loop shut down).
            task.add_done_callback(lambda _task: self._close_early_sock(sock))

    def _note_loop_thread(self) -> None:
        self.ioloop_thread_id = threading.get_ident()

    def _started_loop(self) -> asyncio.AbstractEventLoop:
        """The client's asyncio loop; RuntimeError before :meth:`start`."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("Call start() first")
        return loop

    def _close_early_sock(self, only=None) -> None:
        """Close the socket _install() began connecting if no attempt took it.

        With ``only``, close it only if it is that socket (not one of a later run).
        """
        sock = self._early_sock
        if sock is None or (only is not None and sock is not only):
            return
        self._early_sock = None
        sock.close()

    async def _sleep_interruptibly(self, delay: float) -> None:
        loop = self._started_loop()
        self._wakeup = wakeup = loop.create_future()

        def wake() -> None:
            if not wakeup.done():
                wakeup.set_result(None)

        handle = loop.call_later(delay, wake)
        try:
            await wakeup
        finally:
            handle.cancel()
            self._wakeup = None

    async def _run(self) -> None:
        """Main coroutine: connect, wait for disconnect, reconnect."""
        self._logger.debug("Starting client loop for %r", self._bindaddr)
        delay = self.auto_reconnect_delay
        try:
            while self._running.is_set():
                if await self._connect():
                    delay = self.auto_reconnect_delay
                    lost = self._conn_lost
                    if lost is not None:
                        await lost
                elif not self._auto_reconnect:
                    self._logger.error("Failed to connect to %r", self._bindaddr)
                if not self._running.is_set() or not self._auto_reconnect:
                    break
                self._waiting_to_retry.set()
                try:
                    await self._sleep_interruptibly(delay)
                finally:
                    self._waiting_to_retry.clear()
                delay = min(delay * 1.5, max(self.auto_reconnect_max_delay,
                                             self.auto_reconnect_delay))
        except asyncio.CancelledError:
            pass
        except Exception:
            self._logger.exception("Unhandled exception in client loop for %r", self._bindaddr)
        finally:
            self._close_early_sock()
            self._running.clear()
            self._on_stopping()
            conn = self._conn
            if conn is not None:
                conn.abort()
                self._connection_lost(conn, None)
            self._logger.debug("Client connect loop for %r finished.", self._bindaddr)
            self._stopped.set()

    def _on_stopping(self) -> None:
        """Hook for subclasses: the client is stopping."""

    # ------------------------------------------------------------------ dispatch
    def _format_exc(self) -> str:
        return "".join(traceback.format_exc(limit=self._tb_limit))

    def _watch_awaitable(self, result, msg: Message) -> None:
        fut = asyncio.ensure_future(result)

        def _done(f) -> None:
            if not f.cancelled() and f.exception() is not None:
                self._logger.error("Handler for %s failed", msg.name, exc_info=f.exception())
        fut.add_done_callback(_done)

    def handle_message(self, msg: Message):
        """Dispatch a message from the server by type.

        Parameters
        ----------
        msg : Message
            The message to dispatch.
        """
        mtype = msg.mtype
        if mtype == Message.REPLY:
            return self.handle_reply(msg)
        if mtype == Message.INFORM:
            return self.handle_inform(msg)
        if mtype == Message.REQUEST:
            return self.handle_request(msg)
        self._logger.error("Unexpected message type from server [%r].", str(msg))

    def handle_inform(self, msg: Message):
        """Dispatch an inform to its ``inform_*`` method or :meth:`unhandled_inform`.

        Parameters
        ----------
        msg : Message
            The inform to dispatch.
        """
        method = self._inform_handlers.get(msg.name, type(self).unhandled_inform)
        try:
            return method(self, msg)
        except Exception:
            self._logger.error("Inform %s FAIL: %s", msg.name, self._format_exc())

    def handle_reply(self, msg: Message):
        """Dispatch a reply to its ``reply_*`` method or :meth:`unhandled_reply`.

        Parameters
        ----------
        msg : Message
            The reply to dispatch.
        """
        method = self._reply_handlers.get(msg.name, type(self).unhandled_reply)
        try:
            return method(self, msg)
        except Exception:
            self._logger.error("Reply %s FAIL: %s", msg.name, self._format_exc())

    def handle_request(self, msg: Message):
        """Dispatch a request from the server to ``request_*`` or :meth:`unhandled_request`.

        A handler returning a reply :class:`Message` has it sent (with the
        request's message id).

        Parameters
        ----------
        msg : Message
            The request to dispatch.
        """
        method = self._request_handlers.get(msg.name, type(self).unhandled_request)
        try:
            reply = method(self, msg)
            if isinstance(reply, Message):
                reply.mid = msg.mid
                if reply.mtype != Message.REPLY or reply.name != msg.name:
                    raise ValueError(f"Handler for {msg.name} returned {str(reply)!r}, not its reply")
                self._logger.info("%s OK", msg.name)
                self.send_message(reply)
                return None
            return reply
        except Exception:
            self._logger.error("Request %s FAIL: %s", msg.name, self._format_exc())

    def unhandled_inform(self, msg: Message) -> None:
        """Fallback for informs without an ``inform_*`` method (does nothing)."""

    def unhandled_reply(self, msg: Message) -> None:
        """Fallback for replies without a ``reply_*`` method (does nothing)."""

    def unhandled_request(self, msg: Message) -> None:
        """Fallback for requests without a ``request_*`` method (does nothing)."""

    def notify_connected(self, connected: bool) -> None:
        """Called (in the ioloop) whenever the connection state changes.

        Override in subclasses; must not block.

        Parameters
        ----------
        connected : bool
            True on connect, False on disconnect.
        """
