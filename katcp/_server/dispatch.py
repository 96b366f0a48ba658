"""`DeviceServerBase`: message dispatch and concurrency options of a device server.

A request travels: transport -> `KATCPServer.message_received` ->
`DeviceServerBase._submit` (handled here, or queued for the handler thread, as
:meth:`DeviceServerBase.set_concurrency_options` chose) ->
:meth:`DeviceServerBase.handle_message` -> handler -> reply through the client's
`ClientConnection.reply` (or straight to its ``_send`` when its class keeps ``reply``).

Plain handlers run inline (no task, no future). A handler that returns a future or
coroutine holds back further messages of *that* client until it resolves (unless it
is marked ``@concurrent_reply``); other clients are unaffected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import ssl as _ssl
import sys
import traceback
from functools import partial, wraps
from typing import Any, Callable, Dict, Tuple, Union, cast

from katcp._protocol import sensor as _sensor
from katcp._protocol.message import (
    DEFAULT_KATCP_MAJOR,
    SEC_TS_KATCP_MAJOR,
    AsyncReply,
    FailReply,
    Message,
    ProtocolFlags,
)
from katcp._protocol.metaclass import AttrDict, DeviceServerMetaclass
from katcp._security.access import AccessControl
from katcp._security.userstore import UserStore
from katcp._server.connections import (
    ClientConnection,
    ClientRequestConnection,
    KATCPServer,
    ThreadsafeClientConnection,
)
from katcp._server.handler_thread import MessageHandlerThread
from katcp._server.namefilter import construct_name_filter

__all__ = ["DeviceServerBase", "MessageHandlerThread", "return_future",
           "construct_name_filter"]

log = logging.getLogger("katcp.server")


class _Default:
    """Type of a parameter default that depends on other arguments (shown as "default")."""

    def __repr__(self) -> str:
        return "default"


_DEFAULT = _Default()
_REQUEST, _REPLY, _INFORM = Message.REQUEST, Message.REPLY, Message.INFORM
_new_reply = Message.reply
#: Pause reading from a client when this many of its messages wait behind a slow handler.
_BACKLOG_PAUSE = 200
#: Threaded servers: pause reading from a client with this many messages queued for the
#: handler thread, resume below _QUEUE_RESUME.
_QUEUE_PAUSE = 128
_QUEUE_RESUME = 32


def _now() -> float:
    return _sensor.now()


class _AuditedRequest(ClientRequestConnection):
    """The ``req`` of a request whose reply goes to the audit log (needs control/admin).

    ``audit(status)`` is called once the reply is sent, whoever sends it: the handler
    (``req.reply``, ``req.reply_with_message``) or the dispatcher (:func:`_note_reply`).
    """

    __slots__ = ("audit",)

    def __init__(self, client_connection: ClientConnection, req_msg: Message,
                 audit: Callable[[str], None]) -> None:
        super().__init__(client_connection, req_msg)
        self.audit = audit

    def reply(self, *args: Any) -> None:
        super().reply(*args)
        self.audit(str(args[0]) if args else "-")

    def reply_with_message(self, rep_msg: Message) -> None:
        super().reply_with_message(rep_msg)
        _note_reply(self, rep_msg)


def _note_reply(req: ClientRequestConnection, reply: Message) -> None:
    """Audit ``reply`` if ``req`` is audited (after the dispatcher has sent it)."""
    if req.__class__ is _AuditedRequest:
        args = reply.arguments
        req.audit(args[0].decode("utf-8", "replace") if args else "-")


def return_future(fn: Callable) -> Callable:
    """Decorator that turns a synchronous function into one returning a future.

    This should only be applied to non-blocking functions. The future holds the
    return value, or the exception raised. A future or coroutine returned by
    ``fn`` is passed through (coroutines are wrapped in a task).

    """
    @wraps(fn)
    def decorated(*args: Any, **kwargs: Any):
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            f: Any = loop.create_future() if loop else concurrent.futures.Future()
            f.set_exception(exc)
            return f
        if isinstance(result, (asyncio.Future, concurrent.futures.Future)):
            return result
        if inspect.isawaitable(result) and loop is not None:
            return asyncio.ensure_future(result)
        f = loop.create_future() if loop else concurrent.futures.Future()
        f.set_result(result)
        return f

    return decorated


@return_future
def _handle_to_future(device: DeviceServerBase, client_conn: Any, msg: Message) -> Any:
    # on_message() without a handler thread: handle now, return a future of it.
    return device.handle_message(client_conn, msg)


class DeviceServerBase(metaclass=DeviceServerMetaclass):
    r"""Base class for device servers.

    Subclasses should add .request\_* methods for dealing with request messages.
    These methods each take the client request connection and msg objects as
    arguments and should return the reply message or raise an exception as a
    result. They may also return a future (or be a coroutine) that resolves to
    the reply, or raise `AsyncReply` and reply later with ``req.reply(...)``.

    Subclasses can also add .inform\_* and reply\_* methods to handle those
    types of messages.

    Should a subclass need to generate inform messages it should do so using
    either the .inform() or .mass_inform() methods.

    Finally, this class should probably not be subclassed directly but rather
    via subclassing DeviceServer itself which implements common .request\_*
    methods.

    Parameters
    ----------
    host : str
        Host to listen on.
    port : int
        Port to listen on.
    tb_limit : int, optional
        Maximum number of stack frames to send in error tracebacks.
    logger : logging.Logger object, optional
        Logger to log messages to.
    ssl : ssl.SSLContext, optional
        Serve TLS with this context (e.g. from
        ``katcp._security.tls.server_context(cert, key, client_ca=...)``; with a client
        CA, clients must present a certificate signed by it).
    users : UserStore or str or os.PathLike or AccessControl, optional
        Turn on login and roles against this user store (or its file): a connection is
        unauthenticated until ``?login USER PASSWORD`` succeeds or its verified client
        certificate maps to a user; until then only ``?login``, ``?help``,
        ``?watchdog`` and ``?version-list`` are answered. See the Security chapter.
    login_timeout : float or None, optional
        With ``users``: seconds a connection may stay logged out before it is closed
        (None: no limit).
    idle_timeout : float or None, optional
        Close a connection that sends nothing and completes no request for this many
        seconds.  By default off (None) for an open server, as katcp-python keeps idle
        connections, and :attr:`LOGIN_IDLE_TIMEOUT` seconds when ``users`` is given.

    """

    #: Default ``idle_timeout`` (seconds) of a server that requires login.
    LOGIN_IDLE_TIMEOUT = 600.0

    #: Protocol versions and flags. Subclasses may override.
    PROTOCOL_INFO = ProtocolFlags(DEFAULT_KATCP_MAJOR, 0, {
        ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS})

    # Handler tables by KATCP name, built for each class by DeviceServerMetaclass.
    _request_handlers: Dict[str, Callable]
    _inform_handlers: Dict[str, Callable]
    _reply_handlers: Dict[str, Callable]

    @property
    def _protocol_major(self) -> int:
        """``PROTOCOL_INFO.major`` (a server's flags always have one; ProtocolFlags allows None)."""
        return cast(int, self.PROTOCOL_INFO.major)

    def __init__(self, host: str, port: int, tb_limit: int = 20,
                 logger: logging.Logger = log, *, ssl: _ssl.SSLContext | None = None,
                 users: Union[UserStore, str, os.PathLike, AccessControl, None] = None,
                 login_timeout: float | None = 60.0,
                 idle_timeout: Union[float, None, _Default] = _DEFAULT) -> None:
        if isinstance(idle_timeout, _Default):
            idle_timeout = None if users is None else self.LOGIN_IDLE_TIMEOUT
        if users is None or isinstance(users, AccessControl):
            access = users
        else:
            access = AccessControl(users, login_timeout=login_timeout)
        #: Login, roles and audit (:class:`katcp._security.access.AccessControl`), or
        #: None when the server is open to all.
        self.access_control: AccessControl | None = access
        if access is not None and ssl is None:
            logger.warning("Login is on but TLS is off: passwords will cross the network "
                           "in clear text (give the server ssl=)")
        self._server = KATCPServer(self, host, port, tb_limit, logger, ssl=ssl,
                                   access=access, idle_timeout=idle_timeout)
        self._logger = logger
        self._tb_limit = tb_limit
        self._handler_thread: MessageHandlerThread | None = None
        self.ioloop: Any = None  # tornado IOLoop, once set or started
        self.set_concurrency_options()

    # ------------------------------------------------------------ properties

    @property
    def bind_address(self) -> Tuple[str, int]:
        """The (host, port) the server listens on (the real port once started)."""
        return self._server.bind_address

    @property
    def MAX_MSG_SIZE(self) -> int:  # noqa: N802 - katcp-python name
        """Longest accepted message in bytes; longer lines close the connection."""
        return self._server.MAX_MSG_SIZE

    @MAX_MSG_SIZE.setter
    def MAX_MSG_SIZE(self, value: int) -> None:  # noqa: N802
        self._server.MAX_MSG_SIZE = value

    @property
    def MAX_WRITE_BUFFER_SIZE(self) -> int:  # noqa: N802 - katcp-python name
        """Unsent output (bytes) beyond which a slow client is disconnected."""
        return self._server.MAX_WRITE_BUFFER_SIZE

    @MAX_WRITE_BUFFER_SIZE.setter
    def MAX_WRITE_BUFFER_SIZE(self, value: int) -> None:  # noqa: N802
        self._server.MAX_WRITE_BUFFER_SIZE = value

    def setDaemon(self, daemonic: bool) -> None:
        """Set daemonic state of the managed ioloop thread to True / False.

        Calling this method for a non-managed ioloop has no effect. Must be
        called before start(), or it will also have no effect.

        """
        self._server.setDaemon(daemonic)

    # --------------------------------------------------------------- informs

    def create_log_inform(self, level_name: str, msg: str, name: str,
                          timestamp: float | None = None) -> Message:
        """Create a katcp logging inform message.

        Usually this will be called from inside a DeviceLogger object, but it
        is also used by the methods in this class when errors need to be
        reported to the client.

        """
        if timestamp is None:
            timestamp = _now()
        # Only PROTOCOL_INFO is read: katcp-python code borrows this method onto other objects.
        if cast(int, self.PROTOCOL_INFO.major) >= SEC_TS_KATCP_MAJOR:
            ts = f"{timestamp:.6f}"
        else:
            ts = str(int(timestamp * 1000))
        return Message.inform("log", level_name, ts, name, msg)

    def create_exception_reply_and_log(self, req_msg: Message, exc_info) -> Message:
        """Create a ``fail`` reply carrying a traceback (cut to ``tb_limit``) and log it."""
        e_type, e_value, trace = exc_info
        reason = "".join(traceback.format_exception(e_type, e_value, trace, self._tb_limit))
        self._logger.error("Request %s FAIL: %s", req_msg.name, reason)
        if self.access_control is not None:
            # A secured server tells the peer little: the traceback stays in the log.
            reason = (f"Internal error ({e_type.__name__}) while handling the request; "
                      "details are in the server log.")
        return _new_reply(req_msg.name, "fail", reason)

    def inform(self, connection: Any, msg: Message) -> None:
        """Send an inform message to a particular client.

        Should only be used for asynchronous informs. Informs that are part of
        the response to a request should use :meth:`reply_inform` so that the
        message identifier from the original request can be attached.

        Parameters
        ----------
        connection : ClientConnection object
            The client to send the message to.
        msg : Message object
            The inform message to send.

        """
        self._client_of(connection, "inform", "req.inform()").inform(msg)

    def mass_inform(self, msg: Message) -> None:
        """Send an inform message to all clients (encoded once).

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        """
        assert msg.mtype == _INFORM
        self._server.mass_send_message_from_thread(msg)

    def reply(self, connection: Any, reply: Message, orig_req: Message) -> None:
        """Send an asynchronous reply to an earlier request.

        Parameters
        ----------
        connection : ClientConnection object
            The client to send the reply to.
        reply : Message object
            The reply message to send.
        orig_req : Message object
            The request message being replied to. The reply message's id is
            overridden with the id from orig_req before the reply is sent.

        """
        self._client_of(connection, "reply", "req.reply(*msg_args)").reply(reply, orig_req)

    def reply_inform(self, connection: Any, inform: Message, orig_req: Message) -> None:
        """Send an inform as part of the reply to an earlier request.

        Parameters
        ----------
        connection : ClientConnection object
            The client to send the inform to.
        inform : Message object
            The inform message to send.
        orig_req : Message object
            The request message being replied to. The inform message's id is
            overridden with the id from orig_req before the inform is sent.

        """
        client = self._client_of(connection, "reply_inform", "req.inform()")
        client.reply_inform(inform, orig_req)

    def _client_of(self, connection: Any, method: str, instead: str) -> Any:
        """The client connection, warning if a handler passed its ``req`` instead."""
        if isinstance(connection, ClientRequestConnection):
            self._logger.warning("Deprecation warning: do not use self.%s() within a reply "
                                 "handler context -- use %s", method, instead)
            return connection.client_connection
        return connection

    # -------------------------------------------------------------- dispatch

    def on_message(self, client_conn: Any, msg: Message):
        """Handle a message where handlers run (see :meth:`set_concurrency_options`).

        With a handler thread the message is queued for it; otherwise it is handled
        here. Returns a future that resolves when the device is ready for the next
        message.

        """
        thread = self._handler_thread
        if thread is not None:
            return thread.on_message(client_conn, msg)
        return _handle_to_future(self, client_conn, msg)

    def handle_message(self, client_conn: Any, msg: Message):
        """Handle messages of all types from clients.

        Parameters
        ----------
        client_conn : ClientConnection object
            The client connection the message was from.
        msg : Message object
            The message to process.

        Returns
        -------
        done : Future or None
            For a request answered later, a future that resolves once it is answered.

        """
        mtype = msg.mtype
        if mtype == _REQUEST:
            return self.handle_request(client_conn, msg)
        if self.access_control is not None and not client_conn.session.authenticated:
            # Inform and reply handlers are server code too: not before login.
            self._logger.debug("Ignored %s from %s: not logged in", msg.name,
                               client_conn.address)
            return None
        if mtype == _INFORM:
            return self.handle_inform(client_conn, msg)
        if mtype == _REPLY:
            return self.handle_reply(client_conn, msg)
        reason = f"Unexpected message type received by server ['{msg}']."
        client_conn.inform(self.create_log_inform("error", reason, "root"))
        return None

    def handle_request(self, connection: Any, msg: Message):
        """Dispatch a request message to the appropriate method.

        The handler's result becomes the reply: a reply Message is sent at once;
        a future or coroutine is awaited and its result sent; `AsyncReply` means
        the handler replies itself later; `FailReply` becomes ``!name fail
        <reason>``; any other exception ``!name fail <traceback>``. Unknown
        requests get ``!name invalid Unknown\\_request.``.

        With access control (``users=``), the request is first checked here, in one
        place: before login only ``?login``, ``?help``, ``?watchdog`` and
        ``?version-list`` pass; afterwards the user's role must reach the request's
        (:func:`katcp._security.roles.required_role`). Refusals are ``!name fail``
        replies naming what is missing. ``?login`` is answered by the access control
        (the password is checked off the loop; later requests of that client wait for
        it), and the replies of requests that need ``control`` or ``admin`` go to the
        audit log.

        Parameters
        ----------
        connection : ClientConnection object
            The client connection the message was from.
        msg : Message object
            The request message to process.

        Returns
        -------
        done : Future or None
            None if the reply was sent (or will be sent by the handler itself);
            otherwise a future that resolves once the reply has been sent.

        """
        name = msg.name
        handler = self._request_handlers.get(name)
        access = self.access_control
        if access is not None:
            session = connection.session
            refusal = access.check(session, name, msg.arguments, handler)
            if refusal is not None:
                connection.reply(_new_reply(name, "fail", refusal.message), msg)
                return None
            if name == "login":
                req = ClientRequestConnection(connection, msg)
                return self._non_message_result(connection, req, None,
                                                self._login(access, session, msg))
            if access.is_audited(name, msg.arguments, handler):
                req = _AuditedRequest(connection, msg,
                                      partial(access.audit_reply, session, name))
                return self._call_request_handler(connection, req, handler)
        if handler is None:
            self._logger.error("%s INVALID: Unknown request.", name)
            connection.reply(_new_reply(name, "invalid", "Unknown request."), msg)
            return None
        return self._call_request_handler(connection, ClientRequestConnection(connection, msg),
                                          handler)

    async def _login(self, access: AccessControl, session: Any, msg: Message) -> Message:
        """The reply to ``?login USER PASSWORD`` (on a server with access control)."""
        args = msg.arguments
        if len(args) != 2:
            return _new_reply("login", "fail", "Usage: ?login USER PASSWORD")
        user = args[0].decode("utf-8", "replace")
        password = args[1].decode("utf-8", "replace")
        status, detail = await access.login(session, user, password)
        return _new_reply("login", status, detail)

    def _call_request_handler(self, connection: Any, req: ClientRequestConnection,
                              handler: Any):
        """Run a request handler and send (or arrange) its reply; see handle_request."""
        msg = req.msg
        name = msg.name
        try:
            reply = handler(self, req, msg)
        except AsyncReply:
            return None
        except FailReply as exc:
            reason = str(exc)
            self._logger.error("Request %s FAIL: %s", name, reason)
            reply = _new_reply(name, "fail", reason)
        except Exception:
            reply = self.create_exception_reply_and_log(msg, sys.exc_info())
        else:
            if reply.__class__ is not Message:
                return self._non_message_result(connection, req, handler, reply)
        req._replied = True
        if connection._direct_reply:
            reply.mid = msg.mid
            connection._send(reply)
        else:
            connection.reply(reply, msg)
        _note_reply(req, reply)
        return None

    def _non_message_result(self, connection: Any, req: ClientRequestConnection,
                            handler: Any, result: Any):
        msg = req.msg
        if inspect.isawaitable(result) or isinstance(result, concurrent.futures.Future):
            concurrent_reply = getattr(handler, "_concurrent_reply", False)
            if self._server.in_ioloop_thread():
                done = None if concurrent_reply else self._server._loop.create_future()
                self._await_reply(connection, req, result, done)
            else:
                done = None if concurrent_reply else concurrent.futures.Future()
                self._server._post(self._await_reply, connection, req, result, done)
            return done
        if isinstance(result, Message):
            req._replied = True
            connection.reply(result, msg)
            _note_reply(req, result)
        elif result is None and req._replied:
            pass  # the handler replied itself
        else:
            self._logger.error("Request %s handler returned %r, not a reply", msg.name, result)
            answer = _new_reply(msg.name, "fail", f"Request handler returned {result!r} "
                                "instead of a reply message.")
            connection.reply(answer, msg)
            _note_reply(req, answer)
        return None

    def _await_reply(self, connection: Any, req: ClientRequestConnection, result: Any,
                     done: Any) -> None:
        # ioloop thread: wait for a handler's future/coroutine, then reply.
        if isinstance(result, concurrent.futures.Future):
            fut = asyncio.wrap_future(result)
        else:
            fut = asyncio.ensure_future(result)
        fut.add_done_callback(partial(self._future_reply_done, connection, req, done))

    def _future_reply_done(self, connection: Any, req: ClientRequestConnection, done: Any,
                           fut: asyncio.Future) -> None:
        msg = req.msg
        answer = None
        try:
            reply = fut.result()
            if isinstance(reply, Message):
                req._replied = True
                answer = reply
            elif not (reply is None and req._replied):
                self._logger.error("Request %s future gave %r, not a reply", msg.name, reply)
                answer = _new_reply(msg.name, "fail", f"Request handler returned {reply!r} "
                                    "instead of a reply message.")
        except AsyncReply:
            pass
        except FailReply as exc:
            reason = str(exc)
            self._logger.error("Request %s FUTURE FAIL: %s", msg.name, reason)
            answer = _new_reply(msg.name, "fail", reason)
        except asyncio.CancelledError:
            answer = _new_reply(msg.name, "fail", "Request handler cancelled.")
        except Exception:
            answer = self.create_exception_reply_and_log(msg, sys.exc_info())
        finally:
            try:
                if answer is not None:
                    connection.reply(answer, msg)
                    _note_reply(req, answer)
            finally:
                if done is not None and not done.done():
                    done.set_result(None)

    def handle_inform(self, connection: Any, msg: Message) -> None:
        """Dispatch an inform message to the appropriate method.

        Parameters
        ----------
        connection : ClientConnection object
            The client connection the message was from.
        msg : Message object
            The inform message to process.

        """
        handler = self._inform_handlers.get(msg.name)
        if handler is None:
            self._logger.warning("%s INVALID: Unknown inform.", msg.name)
            return
        self._call_handler("Inform", handler, connection, msg)

    def handle_reply(self, connection: Any, msg: Message) -> None:
        """Dispatch a reply message to the appropriate method.

        A reply nobody expects is reported to the client with ``#log error``.

        Parameters
        ----------
        connection : ClientConnection object
            The client connection the message was from.
        msg : Message object
            The reply message to process.

        """
        handler = self._reply_handlers.get(msg.name)
        if handler is None:
            self._logger.warning("%s INVALID: Unknown reply.", msg.name)
            connection.inform(self.create_log_inform(
                "error", f"Unexpected reply {msg.name} received from client.", "root"))
            return
        self._call_handler("Reply", handler, connection, msg)

    def _call_handler(self, kind: str, handler: Callable, connection: Any,
                      msg: Message) -> None:
        # Inform and reply handlers: errors are logged (there is no reply to send).
        try:
            handler(self, connection, msg)
        except Exception:
            reason = "".join(traceback.format_exception(*sys.exc_info(), limit=self._tb_limit))
            self._logger.error("%s %s FAIL: %s", kind, msg.name, reason)

    # --------------------------------------------------- per-client ordering

    def _submit(self, client: ClientConnection, msg: Message) -> None:
        """Loop thread: take one message from `KATCPServer` (the hot path of a request).

        The path was chosen by :meth:`set_concurrency_options`: handled here, in
        order per client, or queued for the handler thread.
        """
        thread = self._handler_thread
        if thread is not None:
            # Count what the handler thread has yet to handle; pause a client that
            # floods it (resumed by _dispatch_counted).
            client._submitted += 1
            if (client._submitted - client._handled > _QUEUE_PAUSE
                    and not client._queue_paused):
                client._queue_paused = True
                client._conn.pause_reading()
            thread.submit(client, msg)
        elif client._blocked:
            self._dispatch(client, msg)
        else:  # _dispatch() inlined: the usual case of a request
            done = self.handle_message(client, msg)
            if done is not None:
                self._hold(client, done)

    def _dispatch(self, client: ClientConnection, msg: Message) -> None:
        """Handle one message in order (runs where handlers run)."""
        if client._blocked:
            backlog = client._backlog
            backlog.append(msg)
            if len(backlog) == _BACKLOG_PAUSE:
                if self._handler_thread is not None:
                    self._server._post(client._conn.pause_reading)
                else:
                    client._conn.pause_reading()
            return
        done = self.handle_message(client, msg)
        if done is not None:
            self._hold(client, done)

    def _hold(self, client: ClientConnection, done: Any) -> None:
        """Hold back the client's next messages until ``done`` resolves."""
        if done.done():
            return
        client._blocked = True
        thread = self._handler_thread
        if thread is None:
            if isinstance(done, asyncio.Future):
                done.add_done_callback(lambda f: self._release(client))
            else:
                done.add_done_callback(lambda f: self._server._post(self._release, client))
        elif isinstance(done, asyncio.Future):
            def attach() -> None:
                done.add_done_callback(lambda f: thread.call(partial(self._release, client)))
            self._server._post(attach)
        else:
            done.add_done_callback(lambda f: thread.call(partial(self._release, client)))

    def _release(self, client: ClientConnection) -> None:
        client._blocked = False
        backlog = client._backlog
        conn = client._conn
        if conn.closing:
            backlog.clear()
            return
        resume = len(backlog) >= _BACKLOG_PAUSE
        while backlog and not client._blocked:
            msg = backlog.popleft()
            done = self.handle_message(client, msg)
            if done is not None:
                self._hold(client, done)
        if resume and len(backlog) < _BACKLOG_PAUSE:
            if self._handler_thread:
                self._server._post(conn.resume_reading)
            else:
                conn.resume_reading()

    def _dispatch_counted(self, client: ClientConnection, msg: Message) -> None:
        # handler thread: _dispatch, plus the bookkeeping for pausing flooding clients.
        client._handled += 1
        self._dispatch(client, msg)
        if client._queue_paused and client._submitted - client._handled < _QUEUE_RESUME:
            client._queue_paused = False
            self._server._post(client._conn.resume_reading)

    # --------------------------------------------------------- configuration

    def set_ioloop(self, ioloop=None) -> None:
        """Set the tornado IOLoop to use.

        Sets the tornado.ioloop.IOLoop instance to use, defaulting to
        IOLoop.current(). If set_ioloop() is never called the IOLoop is
        started in a new thread, and will be stopped if self.stop() is called.

        Notes
        -----
        Must be called before start() is called.

        """
        self._server.set_ioloop(ioloop)
        self.ioloop = self._server.ioloop

    def set_concurrency_options(self, thread_safe: bool = True,
                                handler_thread: bool = True) -> None:
        """Set concurrency options for this device server. Must be called before :meth:`start`.

        Parameters
        ----------
        thread_safe : bool
            If True, make the server public methods thread safe: messages sent
            from other threads are handed to the ioloop. Incurs some overhead.
        handler_thread : bool
            Can only be set if `thread_safe` is True. Handle all requests (even
            from different clients) in a separate, single, request-handling
            thread. Blocking request handlers will prevent the server from
            handling new requests from any client, but sensor strategies should
            still function. This more or less mimics the behaviour of a server
            in library versions before 0.6.0.

        """
        if handler_thread and not thread_safe:
            raise ValueError("handler_thread=True requires thread_safe=True")
        self._server.client_connection_factory = (
            ThreadsafeClientConnection if thread_safe else ClientConnection)
        # The connection class and the handler thread (or None) are the whole choice:
        # _submit() and on_message() branch on it.
        if handler_thread:
            self._handler_thread = MessageHandlerThread(
                self.handle_message, self.create_log_inform, self._logger,
                dispatch=self._dispatch_counted)
            self._server.handler_queue = self._handler_thread.queued
        else:
            self._handler_thread = None
            self._server.handler_queue = None
        self._concurrency_options = AttrDict(thread_safe=thread_safe,
                                             handler_thread=handler_thread)

    # ------------------------------------------------------------- lifecycle

    def start(self, timeout: float | None = None):
        """Start the server.

        Without :meth:`set_ioloop`, the server runs a managed ioloop in a daemon
        thread and start() returns once it is listening. With a user ioloop,
        call start() from (or schedule it into) that loop: it then returns a
        future that resolves when the server is listening.

        Parameters
        ----------
        timeout : float or None, optional
            Time in seconds to wait for server thread to start.

        """
        if self._handler_thread and self._handler_thread.isAlive():
            raise RuntimeError("Message handler thread already started")
        result = self._server.start(timeout)
        self.ioloop = self._server.ioloop
        if self._handler_thread:
            self._handler_thread.set_ioloop(self.ioloop)
            self._handler_thread.start(timeout)
        return result

    def join(self, timeout: float | None = None):
        """Rejoin the server thread.

        Parameters
        ----------
        timeout : float or None, optional
            Time in seconds to wait for the thread to finish.

        Returns
        -------
        stopped : None or Future
            In the ioloop thread (an `AsyncDeviceServer` in its own loop), a future
            that resolves once the server has stopped; elsewhere join() blocks.

        """
        result = self._server.join(timeout)
        if result is not None:  # in the ioloop thread: a future, do not block
            return result
        if self._handler_thread:
            self._handler_thread.join(timeout)
        return None

    def stop(self, timeout: float | None = 1.0):
        """Stop a running server (from any thread).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for server to have *started*.

        Returns
        -------
        stopped : `katcp.ioloop_manager.StopFuture`
            Resolves when the server is stopped: a `concurrent.futures.Future`
            (``stopped.result(timeout)`` from another thread) that may also be
            awaited in a coroutine (``await server.stop()``).

        """
        stopped = self._server.stop(timeout)
        if self._handler_thread:
            self._handler_thread.stop(timeout)
        return stopped

    def running(self) -> bool:
        """Whether the server is running."""
        return self._server.running()

    def wait_running(self, timeout: float | None = None) -> bool:
        """Wait until the server is running."""
        return self._server.wait_running(timeout)

    def on_client_connect(self, conn: Any):
        """Called after client connection is established.

        Subclasses should override if they wish to send clients message or
        perform house-keeping at this point.

        Parameters
        ----------
        conn : ClientConnection object
            The client connection that has been successfully established.

        Returns
        -------
        Future that resolves when the device is ready to accept messages
        (overrides may also return None or a coroutine).

        """
        return self._done_future()

    def _done_future(self):
        """An already-resolved future (of the ioloop when called in its thread)."""
        loop = self._server._loop
        if loop is not None and self._server.in_ioloop_thread():
            f = loop.create_future()
        else:
            f = concurrent.futures.Future()
        f.set_result(None)
        return f

    def on_client_disconnect(self, conn: Any, msg: str, connection_valid: bool):
        """Called before a client connection is closed.

        Subclasses should override if they wish to send clients message or
        perform house-keeping at this point. The server cannot guarantee this
        will be called (for example, the client might drop the connection).
        The message parameter contains the reason for the disconnection.

        Parameters
        ----------
        conn : ClientConnection object
            Client connection being disconnected.
        msg : str
            Reason client is being disconnected.
        connection_valid : boolean
            True if connection is still open for sending, False otherwise.

        Returns
        -------
        Future that resolves when the client connection can be closed
        (overrides may also return None or a coroutine).

        """
        return self._done_future()

    def sync_with_ioloop(self, timeout: float | None = None):
        """Block for ioloop to complete a loop if called from another thread.

        Returns a future if called from inside the ioloop.

        Raises concurrent.futures.TimeoutError if timed out while blocking.

        """
        if self._server.in_ioloop_thread():
            f = self._server._loop.create_future()
            self._server._loop.call_soon(f.set_result, None)
            return f
        f2: concurrent.futures.Future = concurrent.futures.Future()
        self._server._post(f2.set_result, None)
        f2.result(timeout)
        return None
