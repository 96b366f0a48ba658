"""Connection registry of a device server: client connection objects and `KATCPServer`.

`KATCPServer` is the handler of the shared transport (:mod:`katcp.connection`): it keeps
one `ClientConnection` per connected client, delivers decoded messages to the device,
answers bad input, and owns the event loop (a managed IOLoop thread or the user's).
With TLS (``ssl=``) and access control (``access=``, a
:class:`katcp._security.access.AccessControl`) each connection gets a login session when
it is made, and is closed if it has not logged in within the access control's
``login_timeout``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import ssl as _ssl
import sys
import threading
import traceback
from collections import deque
from functools import cached_property, partial
from typing import Any, Callable, Collection, Deque, Dict, List, Protocol, Sized, Tuple, cast

from katcp._aio.ioloop import IOLoopManager, StopFuture
from katcp._aio.loopcalls import LoopCalls, in_loop_thread, loop_calls
from katcp._protocol.linecodec import LineCodec
from katcp._protocol.message import Message
from katcp._security.access import AccessControl, Session
from katcp._transport.listen import create_server, listen_socket
from katcp._transport.tlsbio import HANDSHAKE_TIMEOUT

__all__ = ["ClientConnection", "ThreadsafeClientConnection", "ClientRequestConnection",
           "KATCPServer"]

log = logging.getLogger("katcp.server")
_REPLY = Message.REPLY
_INFORM = Message.INFORM


def _is_future(obj: Any) -> bool:
    return isinstance(obj, (asyncio.Future, concurrent.futures.Future))


class Stream(Protocol):
    """What a client connection needs of its transport (`katcp.connection.Connection`)."""

    @property
    def closing(self) -> bool: ...

    @property
    def address(self) -> str: ...

    def write(self, msg: Message) -> None: ...

    def write_bytes(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class ServerOwner(Protocol):
    """What a `ClientConnection` needs of its server: `KATCPServer`, or a test stand-in.

    Sending goes through :meth:`send_message`, so a stand-in server decides what
    "sending" means (the fakes in `katcp.fake_clients` refuse).
    """

    def send_message(self, stream: Any, msg: Message) -> None: ...

    def mass_send_message(self, msg: Message) -> None: ...

    def mass_send_message_from_thread(self, msg: Message) -> Any: ...

    def flush_on_close(self, stream: Any) -> Any: ...

    def get_address(self, stream: Any) -> str: ...


class Device(Protocol):
    """What `KATCPServer` needs of the device it serves (`DeviceServerBase`)."""

    def on_client_connect(self, conn: Any) -> Any: ...

    def on_client_disconnect(self, conn: Any, msg: str, connection_valid: bool) -> Any: ...

    def create_log_inform(self, level_name: str, msg: str, name: str,
                          timestamp: float | None = None) -> Message: ...

    def _submit(self, client: ClientConnection, msg: Message) -> None: ...


def _writes_transport(send: Callable) -> Callable:
    """Mark a ``_send`` of ours: it hands messages to the server's transport unchanged.

    A class whose ``_send`` is so marked (and whose ``inform`` is ours) may be sent
    pre-encoded bytes straight to its transport; see `ClientConnection.__init_subclass__`.
    """
    send._writes_transport = True  # type: ignore[attr-defined]
    return send


class ClientConnection:
    """Encapsulates the connection between a single client and the server.

    Parameters
    ----------
    server : KATCPServer object
        The server the client is connected to.
    conn_id : object
        The transport connection (`katcp.connection.Connection`).

    Notes
    -----
    Methods of this class must be called in the server's ioloop thread; see
    `ThreadsafeClientConnection` for a version that may be called from any thread.

    Everything the server sends to this client goes through :meth:`inform`,
    :meth:`reply_inform` (which calls :meth:`inform`) and :meth:`reply`, so a
    subclass (installed with ``KATCPServer.client_connection_factory``) that
    overrides them sees every message. For speed the server skips those methods
    only for classes that do not override them; the class flags below record
    that, once per class.

    """

    #: True if the class keeps :meth:`reply`: replies may go straight to ``_send``.
    _direct_reply = True
    #: True if the class keeps :meth:`inform` and :meth:`reply_inform`.
    _direct_inform = True
    #: True if, in addition, ``_send`` writes to the transport unchanged: the server
    #: may write a pre-encoded inform (greeting, ``#sensor-status``, ``#log``) as bytes.
    _direct_bytes = True
    #: True if the server should let other threads write on the connection
    #: (:meth:`katcp.connection.Connection.enable_threadsafe_writes`).
    _threadsafe_writes = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Decided once per class: which public methods the subclass overrides.
        base = ClientConnection
        cls._direct_reply = (cls.reply is base.reply
                             and cls._send_answer is base._send_answer)
        cls._direct_inform = (cls.inform is base.inform
                              and cls.reply_inform is base.reply_inform)
        cls._direct_bytes = cls._direct_inform and getattr(cls._send, "_writes_transport",
                                                           False)

    def __init__(self, server: ServerOwner, conn_id: Any) -> None:
        self._server = server
        self._conn = conn_id
        self._disconnect_called = False
        # Loop-side gate: messages received before on_client_connect() resolves (a list
        # made for the first such message: most clients send none).
        self._ready = False
        self._early: List[Message] | None = None
        # Handler-side gate: a non-concurrent handler's future is pending; the messages
        # held back meanwhile go to ``_backlog``, made on first use (see below).
        self._blocked = False
        # Threaded servers: messages handed to / handled by the handler thread.
        self._submitted = 0
        self._handled = 0
        self._queue_paused = False
        #: Login session (:class:`katcp._security.access.Session`) on a server with
        #: access control; None otherwise.
        self.session: Session | None = None
        self._login_timer: asyncio.TimerHandle | None = None
        # Loop clock of the client's last message or completed request (idle close only).
        self._last_active = 0.0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}>"

    @cached_property
    def _backlog(self) -> Deque[Message]:
        # Made on first use and then an ordinary attribute: an empty deque costs about
        # 0.75 KB, more than all the rest of an idle connection's state here.
        return deque()

    @property
    def address(self) -> str:
        """Text representation ``host:port`` of the client's network address."""
        return self._server.get_address(self._conn)

    @property
    def client_disconnect_called(self) -> bool:
        """True once ``on_client_disconnect`` has been called for this client."""
        return self._disconnect_called

    def flush_on_close(self) -> Any:
        """Flush this client's output and close it; returns a future of the close."""
        return self._server.flush_on_close(self._conn)

    def disconnect(self, reason: str):
        """Disconnect this client connection for the specified reason.

        Calls the device's ``on_client_disconnect`` (which sends ``#disconnect``)
        and then closes the connection once its output is flushed.

        Returns
        -------
        done : Future
            Resolves when the connection has been closed: an asyncio future in the
            ioloop thread, a `concurrent.futures.Future` elsewhere.

        """
        # Only a listening server's connections are disconnected (not a test stand-in's).
        server = cast(KATCPServer, self._server)
        if server.in_ioloop_thread():
            return server._start_disconnect(self._conn, self, reason)
        done: concurrent.futures.Future = concurrent.futures.Future()

        def finished(task: asyncio.Future) -> None:
            exc = None if task.cancelled() else task.exception()
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)

        def start() -> None:
            server._start_disconnect(self._conn, self, reason).add_done_callback(finished)

        server._post(start)
        return done

    @_writes_transport
    def _send(self, msg: Message) -> None:
        self._server.send_message(self._conn, msg)

    def inform(self, msg: Message) -> None:
        """Send an inform message to a particular client.

        Should only be used for asynchronous informs. Informs that are part of
        the response to a request should use :meth:`reply_inform` so that the
        message identifier from the original request can be attached to the
        inform.

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        """
        assert msg.mtype == _INFORM
        self._send(msg)

    def reply_inform(self, inform: Message, orig_req: Message) -> None:
        """Send an inform as part of the reply to an earlier request.

        Parameters
        ----------
        inform : Message object
            The inform message to send.
        orig_req : Message object
            The request message being replied to. The inform message's id is
            overridden with the id from orig_req before the inform is sent.

        """
        assert inform.mtype == _INFORM
        assert inform.name == orig_req.name
        inform.mid = orig_req.mid
        # Through inform(), so that a subclass overriding only inform() sees these too.
        self.inform(inform)

    def mass_inform(self, msg: Message) -> None:
        """Send an inform message to all clients.

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        """
        assert msg.mtype == _INFORM
        self._server.mass_send_message_from_thread(msg)

    def reply(self, reply: Message, orig_req: Message) -> None:
        """Send an asynchronous reply to an earlier request.

        Parameters
        ----------
        reply : Message object
            The reply message to send.
        orig_req : Message object
            The request message being replied to. The reply message's id is
            overridden with the id from orig_req before the reply is sent.

        """
        self._send_answer(reply, orig_req)

    def _send_answer(self, msg: Message, orig_req: Message) -> None:
        # A reply: same name as the request, and its message id.
        assert msg.mtype == _REPLY
        assert msg.name == orig_req.name
        msg.mid = orig_req.mid
        self._send(msg)

    def on_client_disconnect_was_called(self) -> None:
        """Prevent multiple calls to on_client_disconnect handler.

        Call this when an on_client_disconnect handler has been called.

        """
        if self._disconnect_called:
            raise RuntimeError('"on_client_disconnect" already called for this connection')
        self._disconnect_called = True


class ThreadsafeClientConnection(ClientConnection):
    """`ClientConnection` whose methods may be called from any thread.

    A message sent from another thread (a handler thread's reply) is written on the
    socket by that thread when nothing is queued before it, as the blocking client
    writes its requests (see ``KATCPServer._send_threadsafe``); otherwise it is
    handed to the ioloop in order (one wake-up of the loop per burst of messages).

    """

    _server: KATCPServer
    #: The server lets other threads write on this client's connection.
    _threadsafe_writes = True

    @_writes_transport
    def _send(self, msg: Message) -> None:
        server = self._server
        if in_loop_thread(server._loop):
            server.send_message(self._conn, msg)
        else:
            server._send_threadsafe(self._conn, msg)


class ClientRequestConnection:
    """Encapsulates a specific KATCP request and the associated client connection.

    This is the ``req`` object passed to request handlers.

    Parameters
    ----------
    client_connection : ClientConnection object
        The client that sent the request.
    req_msg : Message object
        The request being handled.

    """

    __slots__ = ("client_connection", "msg", "_replied")

    def __init__(self, client_connection: ClientConnection, req_msg: Message) -> None:
        self.client_connection = client_connection
        self.msg = req_msg
        self._replied = False

    @property
    def mass_inform(self) -> Callable[[Message], None]:
        """Send an inform message to all clients (see `ClientConnection.mass_inform`)."""
        return self.client_connection.mass_inform

    def inform(self, *args: Any) -> None:
        """Send a reply inform (same name and id as the request) with the given arguments.

        Raises
        ------
        RuntimeError
            If the reply has already been sent.

        """
        if self._replied:
            self.inform_after_reply(*args)
        conn = self.client_connection
        if conn._direct_inform:
            conn._send(Message.reply_inform(self.msg, *args))
        else:
            conn.reply_inform(Message.reply_inform(self.msg, *args), self.msg)

    def reply(self, *args: Any) -> None:
        """Send the reply (same name and id as the request) with the given arguments.

        May only be called once; afterwards `reply` and `inform` raise RuntimeError.

        """
        if self._replied:
            self.reply_again(*args)
        self._replied = True
        conn = self.client_connection
        if conn._direct_reply:
            conn._send(Message.reply_to_request(self.msg, *args))
        else:
            conn.reply(Message.reply_to_request(self.msg, *args), self.msg)

    def reply_with_message(self, rep_msg: Message) -> None:
        """Send a pre-created reply message to the client connection.

        The message's id is set to the request's id.

        """
        if self._replied:
            self.reply_again()
        self._replied = True
        self.client_connection.reply(rep_msg, self.msg)

    def reply_again(self, *args: Any) -> None:
        """Raise RuntimeError: the reply to this request has already been sent."""
        raise RuntimeError(f"Reply to request {self.msg!r} already sent.")

    def inform_after_reply(self, *args: Any) -> None:
        """Raise RuntimeError: no informs may follow the reply."""
        raise RuntimeError(f"Cannot send inform for request {self.msg!r} after sending reply.")

    def make_reply(self, *args: Any) -> Message:
        """Build (without sending) a reply Message for this request."""
        return Message.reply_to_request(self.msg, *args)


class KATCPServer:
    """Networking and connection registry for a device server.

    Listens on a TCP port via the shared transport, keeps one client connection
    object per client, and calls the device's ``on_client_connect``,
    ``on_client_disconnect`` and message hooks in the ioloop thread.

    Parameters
    ----------
    device : DeviceServerBase object
        The device that handles messages.
    host : str
        IP address to bind to ('' or '0.0.0.0' for all interfaces).
    port : int
        Port to listen on (0 picks a free port; see `bind_address`).
    tb_limit : int, optional
        Maximum number of stack frames in tracebacks sent to clients.
    logger : logging.Logger object, optional
        Logger to log messages to.
    ssl : ssl.SSLContext, optional
        Serve TLS with this context (see :func:`katcp._security.tls.server_context`).
    access : AccessControl, optional
        Give each connection a login session, closed after ``access.login_timeout``
        seconds without login.
    idle_timeout : float or None, optional
        Close a connection that sends nothing and completes no request for this many
        seconds (None: keep idle connections, as katcp-python does).

    """

    BACKLOG = 5
    DISCONNECT_TIMEOUT = 1
    MAX_MSG_SIZE = 2 * 1024 * 1024
    MAX_WRITE_BUFFER_SIZE = 4 * 1024 * 1024
    #: With ``ssl``: seconds a new connection has to complete the TLS handshake (a
    #: plaintext client waiting for a greeting is dropped then); with ``access``, at most
    #: its login timeout.
    TLS_HANDSHAKE_TIMEOUT = HANDSHAKE_TIMEOUT

    client_connection_factory = ClientConnection

    #: True if the class keeps :meth:`send_message`: other threads may then write a
    #: message on the connection themselves (:meth:`_send_threadsafe`).
    _direct_send = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Decided once per class: a subclass's send_message must see every message.
        cls._direct_send = cls.send_message is KATCPServer.send_message

    def __init__(self, device: Device, host: str, port: int, tb_limit: int = 20,
                 logger: logging.Logger = log, *, ssl: _ssl.SSLContext | None = None,
                 access: AccessControl | None = None,
                 idle_timeout: float | None = None) -> None:
        if idle_timeout is not None and not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be a positive number or None, not {idle_timeout!r}")
        self._device = device
        self.ssl = ssl
        self.access = access
        self.idle_timeout = idle_timeout
        self._idle_timer: asyncio.TimerHandle | None = None
        self._bindaddr = (host, port)
        # What start() binds: the host asked for (a restart binds it again, on the port
        # the first start got), and the socket bound for the next _install.
        self._listen_host = host
        self._listen_sock: Any = None
        self._bind_error: BaseException | None = None
        self._tb_limit = tb_limit
        self._logger = logger
        self._running = threading.Event()
        self._stopped = threading.Event()
        self.ioloop: Any = None
        self.ioloop_thread_id: int | None = None
        self._loop: Any = None  # asyncio loop, set by start()
        self._connections: Dict[Any, ClientConnection] = {}
        # Restartable: a stopped managed loop is replaced by a fresh one on the next start.
        self._ioloop_manager = IOLoopManager(managed_default=True, logger=logger)
        self._started_once = False
        self._aio_server: Any = None
        self._stop_future: concurrent.futures.Future | None = None
        self._calls: LoopCalls | None = None
        self._join_waiters: List[asyncio.Future] = []
        self._encode: Callable[[Message], bytes] = LineCodec().encode
        #: The queue of the device's handler thread, if it has one: while it holds
        #: messages, replies are handed to the loop, which coalesces them into one write.
        self.handler_queue: Sized | None = None
        # Announcements of new clients (see announce) made in this loop pass.
        self._announcements: List[Tuple[ClientConnection, Message]] = []
        self._announce_to: Collection[ClientConnection] = ()
        # Loop-clock seconds the last batch of announcements took to send.
        self._announce_cost = 0.0

    # ---------------------------------------------------------------- lifecycle

    @property
    def bind_address(self) -> Tuple[str, int]:
        """The (host, port) where the server is listening for connections."""
        return self._bindaddr

    def setDaemon(self, daemonic: bool) -> None:
        """Set daemonic state of the managed ioloop thread (call before start)."""
        self._ioloop_manager.setDaemon(daemonic)

    def set_ioloop(self, ioloop=None) -> None:
        """Use the given tornado IOLoop (default ``IOLoop.current()``), not a managed one.

        Must be called before :meth:`start`.

        """
        if ioloop is None:
            import tornado.ioloop
            ioloop = tornado.ioloop.IOLoop.current()
        self._ioloop_manager.set_ioloop(ioloop, managed=False)
        self.ioloop = ioloop

    @property
    def managed(self) -> bool:
        """True if the server runs its own ioloop thread."""
        return bool(getattr(self._ioloop_manager, "managed", True))

    def start(self, timeout: float | None = None):
        """Install the server on its IOLoop, starting a managed IOLoop thread if needed.

        The listening socket is bound before start() returns, in every case, so that
        `bind_address` is final (the port of a server started on port 0 is known) even
        when start() returns a future.  A restart (start() after stop() and join())
        binds the same host and port again.

        Parameters
        ----------
        timeout : float or None, optional
            Time in seconds to wait for the server to be listening. When called
            from a thread other than the ioloop's, start() waits until the server
            accepts connections.

        Returns
        -------
        result : bool or Future
            From another thread: whether the server is running. From the ioloop
            thread (or before a user ioloop runs): a future that resolves when the
            server is listening.

        """
        if self._running.is_set():
            raise RuntimeError("Server already started")
        self._started_once = True
        self._stopped.clear()
        self._stop_future = None
        self.ioloop = self._ioloop_manager.get_ioloop()
        self._loop = self.ioloop.asyncio_loop
        self._calls = loop_calls(self._loop)
        self._encode = LineCodec().encode
        self._bind()
        self._ioloop_manager.start()
        in_loop_thread = self._in_thread_of_loop()
        if in_loop_thread or not self._loop.is_running() and not self.managed:
            # Cannot block: the loop runs (or will run) in this thread.
            return asyncio.ensure_future(self._install(), loop=self._loop)
        cfut = asyncio.run_coroutine_threadsafe(self._install(), self._loop)
        try:
            cfut.result(timeout if timeout else 10.0)
        except concurrent.futures.TimeoutError:
            return False
        except BaseException:
            # Could not listen (e.g. port in use): do not leave a managed thread behind.
            if self.managed:
                self._ioloop_manager.stop().result(5.0)
                self._ioloop_manager.join(5.0)
            raise
        return self._running.is_set()

    def _in_thread_of_loop(self) -> bool:
        return in_loop_thread(self._loop)

    def _bind(self) -> None:
        """Bind the listening socket now, in the calling thread (see :meth:`start`).

        A failure is kept for :meth:`_install` to raise, so that it reaches the caller
        the way every other start-up error does (raised, or in the returned future).
        """
        self._bind_error = None
        try:
            self._listen_sock, self._bindaddr = listen_socket(
                self._listen_host, self._bindaddr[1])
        except OSError as exc:
            self._listen_sock = None
            self._bind_error = exc

    async def _install(self) -> None:
        # katcp-python's attribute, kept for users; the server asks in_loop_thread().
        self.ioloop_thread_id = threading.get_ident()
        sock, self._listen_sock = self._listen_sock, None
        try:
            if self._bind_error is not None:
                raise self._bind_error
            self._aio_server = await create_server(
                self, self._codec_factory, None, None, sock=sock, ssl=self.ssl,
                max_msg_size=self.MAX_MSG_SIZE,
                max_write_buffer_size=self.MAX_WRITE_BUFFER_SIZE,
                logger=self._logger, tls_handshake_timeout=self._tls_handshake_timeout())
        except Exception:
            if sock is not None:
                sock.close()
            self._logger.error("Unable to bind to %s", self._bindaddr, exc_info=True)
            self._stopped.set()
            raise
        if self.idle_timeout is not None:
            self._idle_timer = self._loop.call_later(self._idle_period(), self._close_idle)
        self._running.set()

    def _tls_handshake_timeout(self) -> float:
        timeout = self.TLS_HANDSHAKE_TIMEOUT
        access = self.access
        if access is not None and access.login_timeout is not None:
            timeout = min(timeout, access.login_timeout)
        return timeout

    def _idle_period(self) -> float:
        # Checked four times per timeout: a connection goes at most a quarter late.
        return max(0.01, self.idle_timeout / 4) if self.idle_timeout is not None else 0.0

    def _close_idle(self) -> None:
        """Loop thread: disconnect clients idle for ``idle_timeout`` seconds; run again."""
        timeout = self.idle_timeout
        if timeout is None:
            return
        now = self._loop.time()
        for conn, client in list(self._connections.items()):
            if not conn.closing and now - client._last_active >= timeout:
                self._logger.info("Closing connection to %s: idle for %g s",
                                  self.get_address(conn), timeout)
                if client.session is not None and self.access is not None:
                    self.access.audit_idle_close(client.session, timeout)
                self._start_disconnect(conn, client, f"Idle for {timeout:g} s.")
        self._idle_timer = self._loop.call_later(self._idle_period(), self._close_idle)

    def _codec_factory(self):
        return LineCodec(max_line_length=self.MAX_MSG_SIZE)

    async def _uninstall(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        try:
            if self._aio_server is not None:
                self._aio_server.close()
            for conn, client in list(self._connections.items()):
                await self._disconnect_client(conn, client, "Device server shutting down.")
        finally:
            self._aio_server = None
            if self._listen_sock is not None:  # stopped before _install ran
                self._listen_sock.close()
                self._listen_sock = None
            self._running.clear()
            self._stopped.set()
            waiters, self._join_waiters = self._join_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def stop(self, timeout: float | None = 1.0):
        """Stop a running server (from any thread).

        Parameters
        ----------
        timeout : float or None, optional
            Seconds to wait for the server to have *started* (ignored in the
            ioloop thread).

        Returns
        -------
        stopped : `katcp.ioloop_manager.StopFuture`
            Resolves when the server is stopped: a `concurrent.futures.Future`
            (``stopped.result(timeout)`` from another thread) that may also be
            awaited in a coroutine (``await server.stop()``).

        """

        if timeout and not self._in_thread_of_loop():
            self._running.wait(timeout)
        if self._stop_future is not None:
            return self._stop_future  # already stopping or stopped
        if self._loop is None:
            f = StopFuture()
            f.set_result(None)
            return f

        def uninstall():
            return asyncio.ensure_future(self._uninstall())

        self._stop_future = self._ioloop_manager.stop(callback=uninstall)
        return self._stop_future

    def join(self, timeout: float | None = None):
        """Wait for the server (and a managed ioloop thread) to stop.

        Parameters
        ----------
        timeout : float or None, optional
            Time in seconds to wait.

        Returns
        -------
        stopped : None or Future
            Called in the ioloop thread (where blocking would deadlock), returns a
            future that resolves once the server has stopped; otherwise blocks.

        """
        if self._in_thread_of_loop():
            fut = self._loop.create_future()
            if self._stopped.is_set() or not self._started_once:
                fut.set_result(None)
            else:
                self._join_waiters.append(fut)
            return fut
        import time
        t0 = time.monotonic()
        self._ioloop_manager.join(timeout=timeout)
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - t0))
        self._stopped.wait(remaining)

    def running(self) -> bool:
        """Whether the server is running (listening)."""
        return self._running.is_set()

    def wait_running(self, timeout: float | None = None) -> bool:
        """Wait until the server is running."""
        return self._running.wait(timeout)

    def in_ioloop_thread(self) -> bool:
        """Return True if called in the IOLoop thread of this server."""
        return in_loop_thread(self._loop)

    # ------------------------------------------------------ cross-thread calls

    def _post(self, fn: Callable, *args: Any) -> None:
        """Run ``fn(*args)`` in the ioloop thread, in posting order (thread-safe).

        Consecutive posts share one loop wake-up. The queue is the loop's, shared
        with the sampling strategies (:func:`katcp._aio.loopcalls.loop_calls`), so
        a sensor set in a handler before its reply is sent reports before the reply.
        """
        calls = self._calls
        if calls is None or not calls.post(fn, *args):
            self._logger.debug("ioloop closed: dropping cross-thread call")

    def call_from_thread(self, fn: Callable[[], Any]):
        """Run ``fn()`` in the ioloop thread and return a future of its result.

        Calls directly (returning a done future) when already in the ioloop
        thread; otherwise returns a `concurrent.futures.Future`.

        """
        if in_loop_thread(self._loop):
            f = self._loop.create_future()
            try:
                f.set_result(fn())
            except Exception as exc:
                self._logger.exception("Error executing callback in ioloop thread")
                f.set_exception(exc)
            return f
        cf: concurrent.futures.Future = concurrent.futures.Future()
        cf.set_running_or_notify_cancel()

        def run():
            try:
                cf.set_result(fn())
            except Exception as exc:
                self._logger.exception("Error executing wrapped async callback")
                cf.set_exception(exc)

        self._post(run)
        return cf

    # ------------------------------------------------------------- sending

    def get_address(self, stream: Any) -> str:
        """Text representation ``host:port`` of the network address of a connection."""
        try:
            return stream.address
        except Exception:
            return "<error>"

    def send_message(self, stream: Any, msg: Message) -> None:
        """Send a message to one client (ioloop thread only)."""
        if stream.closing:
            self._logger.debug("Not sending %s to closed connection %s", msg.name,
                               self.get_address(stream))
            return
        if self.idle_timeout is not None and msg.mtype == _REPLY:
            self._completed_request(stream)
        stream.write(msg)

    def _completed_request(self, stream: Any) -> None:
        # A reply ends a request: the client is active (see idle_timeout).
        client = self._connections.get(stream)
        if client is not None:
            client._last_active = self._loop.time()

    def _send_threadsafe(self, stream: Any, msg: Message) -> None:
        """Send a message to one client from any thread (not waiting for the ioloop).

        The calling thread encodes the message and writes it on the connection itself
        (:meth:`katcp.connection.Connection.write_threadsafe`, the blocking client's
        mechanism: on the socket at once if nothing is queued for it, else behind what
        is) when the class keeps :meth:`send_message`, the connection allows writes from
        other threads, and every call posted to the loop (:meth:`_post`, sensor updates)
        has run, so that nothing posted earlier is overtaken: a sensor set by a handler
        before its reply still reports first.  Otherwise, and while the handler thread
        has more messages queued (pipelined requests: the loop then sends a burst of
        replies in one write, not one system call each), it posts :meth:`send_message`.
        """
        calls = self._calls
        if (not self._direct_send or calls is None or calls.pending or self.handler_queue
                or not stream.threadsafe_writes):
            self._post(self.send_message, stream, msg)
            return
        if stream.closing:
            return
        if self.idle_timeout is not None and msg.mtype == _REPLY:
            self._completed_request(stream)
        stream.write_threadsafe(stream.codec.encode(msg))

    def send_message_from_thread(self, stream: Any, msg: Message):
        """Thread-safe version of :meth:`send_message` returning a future."""
        return self.call_from_thread(partial(self.send_message, stream, msg))

    def mass_send_message(self, msg: Message) -> None:
        """Send a message to all connected clients (ioloop thread only).

        The message is encoded once and the same bytes go to every client whose
        class keeps `ClientConnection.inform`, unless this class overrides
        ``send_message``; a client whose class overrides ``inform`` gets the message
        through it, and so does every client when ``send_message`` is overridden.

        """
        if not self._connections:
            return
        data = None
        direct = self._direct_send
        for conn, client in list(self._connections.items()):
            if conn.closing:
                continue
            if direct and client._direct_bytes:
                if data is None:
                    data = self._encode(msg)
                conn.write_bytes(data)
            else:
                client.inform(msg)

    #: Most announcements sent together: bounds the bytes copied per pass (see `announce`).
    MAX_ANNOUNCEMENTS = 256

    def announce(self, client: ClientConnection, msg: Message,
                 clients: Collection[ClientConnection]) -> None:
        """Send ``msg`` to the clients that were announced before ``client`` (ioloop thread).

        This is how a device tells its clients about a new one (``#client-connected``).
        Announcements are sent in batches, each client getting those about the clients
        that connected after it in one write. A client whose class keeps
        `ClientConnection.inform` gets bytes encoded once per batch and shared (the same
        object, or a tail of it); another gets each message through its ``inform``. A
        batch goes out in the next loop pass, or, when the last one took a while to send
        (thousands of clients), after three times as long: announcing then takes at most
        about a quarter of the loop's time, and n clients connecting in a burst cost O(n)
        writes per batch instead of a message to every other client per connection.

        Parameters
        ----------
        client : ClientConnection
            The new client: it is not sent ``msg``, nor any announcement made before it.
        msg : Message
            The inform to send.
        clients : collection of ClientConnection
            The device's clients, ``client`` included, each added just before it was
            announced (the live collection: it is read when the announcements are sent,
            and a client gone by then is skipped).
        """
        self._announce_to = clients
        pending = self._announcements
        if not pending:
            if self._announce_cost:
                self._loop.call_later(3 * self._announce_cost, self._send_announcements)
            else:
                self._loop.call_soon(self._send_announcements)
        pending.append((client, msg))
        if len(pending) >= self.MAX_ANNOUNCEMENTS:
            self._send_announcements()

    def _send_announcements(self) -> None:
        batch, self._announcements = self._announcements, []
        if not batch:
            return  # (sent early: MAX_ANNOUNCEMENTS)
        count = len(batch)
        start = self._loop.time()
        # A client of the batch gets the announcements after its own; every other client
        # was there before the batch and gets them all.
        first = {client: i + 1 for i, (client, _) in enumerate(batch)}
        data: bytes | None = None
        starts: List[int] = []
        direct = self._direct_send
        for client in list(self._announce_to):
            i = first.get(client, 0)
            conn = client._conn
            if i == count or conn.closing:
                continue
            if not (direct and client._direct_bytes):
                try:
                    for _, msg in batch[i:]:
                        client.inform(msg)
                except Exception:  # a user's inform: the other clients still hear
                    self._logger.exception("Error announcing new clients to %s",
                                           self.get_address(conn))
                continue
            if data is None:
                encoded = [self._encode(msg) for _, msg in batch]
                data = b"".join(encoded)
                offset = 0
                for chunk in encoded:
                    starts.append(offset)
                    offset += len(chunk)
            conn.write_bytes(data[starts[i]:] if i else data)
            conn.flush()  # now, not one more pass later: this pass is what is timed
        # (Below a millisecond: no delay; the loop clock may be that coarse.)
        cost = self._loop.time() - start
        self._announce_cost = cost if cost >= 0.001 else 0.0

    def mass_send_message_from_thread(self, msg: Message):
        """Thread-safe version of :meth:`mass_send_message`."""
        if in_loop_thread(self._loop):
            self.mass_send_message(msg)
        elif self._loop is not None:
            self._post(self.mass_send_message, msg)

    def flush_on_close(self, stream: Any):
        """Flush the connection's output, close it and refuse further writes.

        Returns a future that resolves when the connection is closed.

        """
        stream.close()
        return asyncio.ensure_future(stream.wait_closed())

    # ----------------------------------------------- transport handler protocol

    def connection_made(self, conn: Any) -> None:
        client = self.client_connection_factory(self, conn)
        self._connections[conn] = client
        if client._threadsafe_writes and self._direct_send:
            conn.enable_threadsafe_writes()
        if self.idle_timeout is not None:
            client._last_active = self._loop.time()
        if self.access is not None:
            self._open_session(conn, client, self.access)
        try:
            ready = self._device.on_client_connect(client)
            if asyncio.iscoroutine(ready):
                ready = asyncio.ensure_future(ready)
        except Exception:
            self._connect_failed(conn, client, sys.exc_info())
            return
        if ready is None or not _is_future(ready):
            self._client_ready(conn, client, None)
        elif ready.done():
            # The usual case (the default hooks return resolved futures): no extra callback.
            self._client_ready(conn, client, ready)
        elif isinstance(ready, asyncio.Future):
            ready.add_done_callback(partial(self._client_ready, conn, client))
        else:
            ready.add_done_callback(
                lambda f: self._post(self._client_ready, conn, client, f))

    def _open_session(self, conn: Any, client: ClientConnection, access: AccessControl) -> None:
        peer = conn.peer
        host = peer[0] if isinstance(peer, tuple) else None
        transport = conn.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport else None
        try:
            client.session = session = access.open_session(client.address, host, ssl_object)
        except Exception:
            # The user store is unusable: this connection stays logged out.
            self._logger.exception("Cannot open a login session for %s", client.address)
            client.session = session = Session(addr=client.address, host=host)
        if not session.authenticated and access.login_timeout is not None:
            client._login_timer = self._loop.call_later(
                access.login_timeout, self._login_timeout, conn, client, access)

    def _login_timeout(self, conn: Any, client: ClientConnection,
                       access: AccessControl) -> None:
        client._login_timer = None
        session = client.session
        if conn.closing or session is None or session.authenticated:
            return
        access.login_timed_out(session)
        self._start_disconnect(conn, client, "Login timeout.")

    def _client_ready(self, conn: Any, client: ClientConnection, fut) -> None:
        if fut is not None:
            exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
            if exc is not None:
                self._connect_failed(conn, client, (type(exc), exc, exc.__traceback__))
                return
        client._ready = True
        early, client._early = client._early, None
        if early is None:
            return
        submit = self._device._submit
        for msg in early:
            if conn.closing:
                break
            submit(client, msg)

    def _connect_failed(self, conn: Any, client: ClientConnection, exc_info) -> None:
        reason = "".join(traceback.format_exception(*exc_info, limit=self._tb_limit))
        log_msg = f"Device error initialising connection {reason}"
        self._logger.error(log_msg)
        if not conn.closing:
            client.inform(self._device.create_log_inform("error", log_msg, "root"))
            conn.close()

    def message_received(self, conn: Any, msg: Message) -> None:
        client = self._connections.get(conn)
        if client is None:
            return
        if self.idle_timeout is not None:
            client._last_active = self._loop.time()
        if client._ready:
            self._device._submit(client, msg)
        elif client._early is None:
            client._early = [msg]
        else:
            client._early.append(msg)

    def decode_error(self, conn: Any, exc: Exception) -> None:
        limit = getattr(exc, "limit", None)
        if limit is not None:
            reason = (f"Message too long: longer than the limit of {limit} bytes "
                      "(MAX_MSG_SIZE); closing connection.")
        else:
            reason = f"Bad message: {exc}"
        self._logger.error("BAD COMMAND from %s: %s", self.get_address(conn), reason)
        client = self._connections.get(conn)
        if client is not None and not conn.closing:
            client.inform(self._device.create_log_inform("error", reason, "root"))

    def connection_lost(self, conn: Any, exc: BaseException | None) -> None:
        client = self._connections.pop(conn, None)
        if client is None:
            return
        if "_backlog" in vars(client):  # (not made yet if nothing was ever held back)
            client._backlog.clear()
        if client._login_timer is not None:
            client._login_timer.cancel()
            client._login_timer = None
        if exc is not None:
            self._logger.warning("Connection to client %s closed with error %r",
                                 self.get_address(conn), exc)
        reason = repr(exc) if exc is not None else "Socket EOF"
        # The hook is called now; only a result still to come needs a task to wait for it
        # (the default hooks return resolved futures: no task, timer or loop pass).
        pending = self._call_disconnect_hook(conn, client, reason)
        if pending is not None:
            asyncio.ensure_future(self._await_disconnect_hook(conn, pending))

    def _start_disconnect(self, conn: Any, client: ClientConnection, reason: str):
        return asyncio.ensure_future(self._disconnect_client(conn, client, reason))

    async def _disconnect_client(self, conn: Any, client: ClientConnection,
                                 reason: str) -> None:
        try:
            pending = self._call_disconnect_hook(conn, client, reason)
            if pending is not None:
                await self._await_disconnect_hook(conn, pending)
        finally:
            self._connections.pop(conn, None)
            conn.close()

    def _call_disconnect_hook(self, conn: Any, client: ClientConnection, reason: str) -> Any:
        """Call the device's ``on_client_disconnect`` for ``client`` unless it was called.

        Returns what is still to be waited for (a future or coroutine not done yet), or
        None. A failure, also of a future that has already failed, is logged.
        """
        if client.client_disconnect_called:
            return None
        client.on_client_disconnect_was_called()
        try:
            res = self._device.on_client_disconnect(client, reason, not conn.closing)
            if res is None:
                return None
            if _is_future(res):
                if not res.done():
                    return res
                exc = None if res.cancelled() else res.exception()
                if exc is not None:
                    raise exc  # logged below, as a failure of the hook
                return None
            return res if asyncio.iscoroutine(res) else None
        except Exception:
            self._log_disconnect_error(conn)
            return None

    async def _await_disconnect_hook(self, conn: Any, pending: Any) -> None:
        """Wait (at most DISCONNECT_TIMEOUT) for the result of ``on_client_disconnect``."""
        try:
            await asyncio.wait_for(asyncio.ensure_future(
                asyncio.wrap_future(pending) if isinstance(
                    pending, concurrent.futures.Future) else pending),
                self.DISCONNECT_TIMEOUT)
        except Exception:
            self._log_disconnect_error(conn)

    def _log_disconnect_error(self, conn: Any) -> None:
        self._logger.error("Error while calling on_client_disconnect for client %s",
                           self.get_address(conn), exc_info=True)
