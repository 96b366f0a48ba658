"""Shared plumbing of the operator tools (``katcp-cmd`` and ``katcp-shell``).

One :class:`ToolClient` (an :class:`katcp.client.AsyncClient` running on the
caller's asyncio loop) connects, reports connection failures with the
operating system's reason, sends requests with the reply informs streamed to
a callback, and hands every other inform (``#version-connect``,
``#sensor-status``, ``#log``...) to another callback. Helpers parse
``HOST:PORT`` and typed request lines, and format messages as wire lines.
:func:`add_security_arguments` and :func:`security_from_args` give both tools the same
TLS and login options (``--tls --cafile --cert --key --insecure --user``; the password
comes from ``KATCP_PASSWORD`` or a prompt).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import socket
import ssl as _ssl
import sys
from dataclasses import dataclass, field
from typing import Callable, TextIO, Tuple

import tornado.ioloop

from .._security.tls import INSECURE_WARNING, client_context
from ..client import AsyncClient
from ..core import KatcpClientError, KatcpSyntaxError, Message, MessageParser

#: Port used when ``HOST`` is given without ``:PORT`` (the de-facto KATCP port).
DEFAULT_PORT = 7147
#: Longest wait for the server's ``#version-connect`` before sending without ids.
PROTOCOL_WAIT = 1.0

InformCallback = Callable[[Message], None]

#: Environment variable the tools read the login password from.
PASSWORD_ENV = "KATCP_PASSWORD"


class ToolError(Exception):
    """A failure the tools report on stderr and exit with status 2."""


class ConnectFailed(ToolError):
    """The connection could not be made (the message says why)."""


class ConnectionLost(ToolError):
    """The connection closed before the reply arrived."""


@dataclass
class Security:
    """TLS context and login credentials chosen on a tool's command line."""

    ssl: _ssl.SSLContext | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr or log


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the TLS and login options shared by ``katcp-cmd`` and ``katcp-shell``."""
    group = parser.add_argument_group("security")
    group.add_argument("--tls", action="store_true",
                       help="connect with TLS (implied by --cafile, --cert, --insecure)")
    group.add_argument("--cafile", metavar="CA",
                       help="CA certificate(s) to check the server against (for a "
                            "self-signed server: its certificate); default: the system's")
    group.add_argument("--cert", metavar="CERT", help="client certificate, for mutual TLS")
    group.add_argument("--key", metavar="KEY", help="private key of --cert (if not in it)")
    group.add_argument("--insecure", action="store_true",
                       help="do not check the server's certificate (prints a warning)")
    group.add_argument("--user", metavar="USER",
                       help=f"log in as USER (password from ${PASSWORD_ENV}, else asked for)")


def security_from_args(args: argparse.Namespace, address: str,
                       stderr: TextIO | None = None) -> Security:
    """Build the TLS context and read the password the options ask for.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options (see :func:`add_security_arguments`).
    address : str
        Server address, for the password prompt.
    stderr : file, optional
        Where the ``--insecure`` warning goes (default ``sys.stderr``).

    Returns
    -------
    security : Security

    Raises
    ------
    ToolError
        A certificate or key cannot be loaded, or no password was given.
    """
    stderr = stderr or sys.stderr
    security = Security()
    if args.tls or args.cafile or args.cert or args.key or args.insecure:
        if args.insecure:
            print(INSECURE_WARNING, file=stderr, flush=True)
        try:
            security.ssl = client_context(cafile=args.cafile, certfile=args.cert,
                                          keyfile=args.key, insecure=args.insecure)
        except (OSError, _ssl.SSLError) as exc:
            raise ToolError(f"cannot load the TLS certificates: {exc}") from None
    if args.user:
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            try:
                password = getpass.getpass(f"Password for {args.user} at {address}: ")
            except EOFError:
                password = ""
        if not password:
            raise ToolError(f"no password for {args.user} (set {PASSWORD_ENV} or type it)")
        security.user, security.password = args.user, password
    return security


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> Tuple[str, int]:
    """Split ``HOST:PORT`` (``[V6ADDR]:PORT``, or ``HOST`` alone) into its parts.

    Parameters
    ----------
    text : str
        The address typed by the user.
    default_port : int, optional
        Port used when none is given.

    Returns
    -------
    host : str
    port : int

    Raises
    ------
    ValueError
        If the port is not an integer in 1..65535 or the host is empty.
    """
    text = text.strip()
    port_text: str | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"missing ']' in address {text!r}")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad address {text!r}: expected [HOST]:PORT")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host = text  # a bare IPv6 address or a host name
    if not host:
        raise ValueError(f"no host in address {text!r}")
    if port_text is None:
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad port {port_text!r} in address {text!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} out of range 1..65535")
    return host, port


def format_address(host: str, port: int) -> str:
    """Return ``host:port`` (``[host]:port`` for IPv6 addresses)."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def parse_request_line(line: str) -> Message:
    """Parse a typed request line (``?`` optional) with the KATCP parser.

    Arguments are separated by spaces and use the wire escapes, so
    ``echo a\\_b`` sends the single argument ``a b``.

    Parameters
    ----------
    line : str
        The line, e.g. ``"?sensor-value temperature"`` or ``"help"``.

    Returns
    -------
    Message
        The request.

    Raises
    ------
    ValueError
        If the line is empty, is an inform or reply, or is not valid KATCP.
    """
    text = line.strip()
    if not text:
        raise ValueError("empty request")
    if text[0] in "#!":
        raise ValueError(f"only requests can be sent, not {text[0]}{text[1:].split()[0]}")
    if text[0] != "?":
        text = "?" + text
    try:
        # surrogateescape: bytes that are not UTF-8 (read the same way) go through as-is.
        return MessageParser().parse(text.encode("utf-8", "surrogateescape"))
    except KatcpSyntaxError as exc:
        raise ValueError(str(exc)) from None


def wire_line(msg: Message, show_mid: bool = False) -> str:
    """Return `msg` as a KATCP wire line (no terminator).

    Parameters
    ----------
    msg : Message
        The message.
    show_mid : bool, optional
        Keep the message id (by default it is dropped: the tools assign ids
        themselves and users did not ask for them).
    """
    if msg.mid is not None and not show_mid:
        msg = msg.copy()
        msg.mid = None
    return str(msg)


class _ClientLogHandler(logging.Handler):
    """Watches the client's log: remembers connection errors, shows others if verbose."""

    def __init__(self, client: ToolClient, verbose: bool) -> None:
        super().__init__(logging.DEBUG)
        self._client = client
        self._verbose = verbose
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def handle(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, BaseException):
                self._client._connect_error(arg)
        if record.exc_info and isinstance(record.exc_info[1], BaseException):
            self._client._connect_error(record.exc_info[1])
        client = self._client
        if client.quiet_log:
            return False
        # Connection failures before the first connection are reported by the
        # tool itself; later errors (e.g. garbage from the server) are shown.
        if self._verbose or (record.levelno >= logging.ERROR and client._ever_connected):
            return super().handle(record)
        return False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


class ToolClient(AsyncClient):
    """AsyncClient for the operator tools, run on the current asyncio loop.

    Parameters
    ----------
    host : str
        Server host.
    port : int
        Server port.
    auto_reconnect : bool, optional
        Whether to reconnect when the server goes away.
    on_inform : callable, optional
        ``on_inform(msg)`` for every inform that is not part of a reply
        (``#version-connect``, ``#sensor-status``, ``#log``...).
    on_connection : callable, optional
        ``on_connection(connected)`` on every connect and disconnect.
    verbose : bool, optional
        Show the client's debug log on stderr.
    """

    def __init__(self, host: str, port: int, auto_reconnect: bool = False,
                 on_inform: InformCallback | None = None,
                 on_connection: Callable[[bool], None] | None = None,
                 verbose: bool = False, security: Security | None = None) -> None:
        logger = logging.Logger("katcp.tools.client")
        self.security = security or Security()
        # timeout=None: no default timeout, call() waits as long as its caller says.
        # AsyncClient accepts None but its signature says float (katcp/_client/requests.py);
        # drop this ignore when that says Optional[float].
        super().__init__(host, port, timeout=None,  # type: ignore[arg-type]
                         logger=logger, auto_reconnect=auto_reconnect,
                         ssl=self.security.ssl)
        #: Role granted by the server after ``--user`` logged in.
        self.role: str | None = None
        #: Suppress the client's own log lines (set while quitting).
        self.quiet_log = False
        self.on_inform = on_inform
        self.on_connection = on_connection
        self.last_error: BaseException | None = None
        self._ever_connected = False
        self._failed: asyncio.Future | None = None
        self._routed = False
        logger.addHandler(_ClientLogHandler(self, verbose))

    @property
    def address(self) -> str:
        """The server address as ``host:port``."""
        return format_address(*self.bind_address)

    # ------------------------------------------------------------------ hooks
    def _connect_error(self, exc: BaseException) -> None:
        self.last_error = exc
        failed = self._failed
        if not self._ever_connected and failed is not None and not failed.done():
            failed.set_result(exc)

    def notify_connected(self, connected: bool) -> None:
        """Report the connection state to ``on_connection``."""
        if connected:
            self._ever_connected = True
        if self.on_connection is not None:
            self.on_connection(connected)

    def handle_inform(self, msg: Message):
        """Route the inform; hand it to ``on_inform`` unless a request took it."""
        self._routed = False
        result = super().handle_inform(msg)
        if not self._routed and self.on_inform is not None:
            self.on_inform(msg)
        return result

    # ------------------------------------------------------------------ life cycle
    def describe_error(self) -> str:
        """The reason of the last connection failure, as text."""
        exc = self.last_error
        if self.last_connect_error and (self.ssl is not None or isinstance(exc, _ssl.SSLError)
                                        or exc is None):
            return self.last_connect_error  # names TLS problems and mismatches plainly
        if exc is None:
            return "connection failed"
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return "timed out"
        if isinstance(exc, socket.gaierror) and exc.strerror:
            return f"cannot resolve host: {exc.strerror}"
        if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
            # asyncio's own text ("Connect call failed (...)") hides the reason.
            return os.strerror(exc.errno)
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror
        return str(exc) or type(exc).__name__

    async def connect(self, timeout: float) -> None:
        """Start the client on the running loop and wait until it is connected.

        Also waits (at most :data:`PROTOCOL_WAIT` seconds) for the server's
        protocol version, so that message ids are used when supported.

        Parameters
        ----------
        timeout : float
            Seconds allowed for the connection.

        Raises
        ------
        ConnectFailed
            If the first connection attempt fails or takes too long.
        """
        loop = asyncio.get_running_loop()
        self._failed = loop.create_future()
        self.connect_timeout = timeout
        self.set_ioloop(tornado.ioloop.IOLoop.current())
        self.start()
        connected = asyncio.ensure_future(self.until_connected())
        stopped = asyncio.ensure_future(self.until_stopped())
        waiters = {connected, stopped, self._failed}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (connected, stopped):
                waiter.cancel()
        if not self.is_connected():
            if self.last_error is None and not self._failed.done():
                self.last_error = asyncio.TimeoutError()
            raise ConnectFailed(f"could not connect to {self.address}: {self.describe_error()}")
        protocol = asyncio.ensure_future(self.until_protocol())
        try:
            await asyncio.wait({protocol}, timeout=min(timeout, PROTOCOL_WAIT))
        finally:
            protocol.cancel()
        if self.security.user:
            await self._log_in(timeout)

    async def _log_in(self, timeout: float) -> None:
        user, password = self.security.user, self.security.password
        if user is None or password is None:
            return
        try:
            self.role = await asyncio.wait_for(self.login(user, password, timeout=timeout),
                                               timeout)
        except asyncio.TimeoutError:
            raise ConnectFailed(f"no reply to ?login from {self.address} within "
                                f"{timeout:g} s{self._hint()}") from None
        except KatcpClientError as exc:
            raise ConnectFailed(f"{exc}{self._hint()}") from None

    def _hint(self) -> str:
        return f" ({self.last_connect_error})" if self.last_connect_error else ""

    async def close(self, timeout: float = 2.0) -> None:
        """Stop the client and wait (bounded) until it has stopped."""
        if self.ioloop is None:
            return
        self.quiet_log = True
        self.stop()
        stopped = asyncio.ensure_future(self.until_stopped())
        try:
            await asyncio.wait({stopped}, timeout=timeout)
        finally:
            stopped.cancel()

    # ------------------------------------------------------------------ requests
    async def call(self, msg: Message, timeout: float | None,
                   on_reply_inform: InformCallback | None = None,
                   on_late_reply: Callable[[Message], None] | None = None) -> Message:
        """Send a request and wait for its reply.

        Parameters
        ----------
        msg : Message
            The request (a message id is added when the server supports ids).
        timeout : float or None
            Seconds to wait for the reply (None waits for ever).
        on_reply_inform : callable, optional
            Called with each inform of the reply as it arrives.
        on_late_reply : callable, optional
            Called with the reply if it arrives after the wait timed out or
            was cancelled.

        Returns
        -------
        Message
            The server's reply.

        Raises
        ------
        asyncio.TimeoutError
            If no reply came within `timeout`.
        ConnectionLost
            If the connection closed before the reply.
        katcp.core.KatcpClientError
            If the request could not be sent (e.g. not connected, or a message
            id given to a server that does not support ids).
        """
        if not self.is_connected():
            if self._ever_connected:
                raise ConnectionLost(f"connection to {self.address} closed")
            raise ConnectionLost(f"not connected to {self.address}")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        name = msg.name

        def reply_cb(reply: Message) -> None:
            lost = not self.is_connected()
            if fut.done():
                if on_late_reply is not None and not lost:
                    on_late_reply(reply)
                return
            if lost:
                fut.set_exception(ConnectionLost(
                    f"connection to {self.address} closed before the reply to "
                    f"?{name}{self._hint()}"))
            else:
                fut.set_result(reply)

        def inform_cb(inform: Message) -> None:
            self._routed = True
            if on_reply_inform is not None:
                on_reply_inform(inform)

        self.callback_request(msg, reply_cb=reply_cb, inform_cb=inform_cb)
        return await asyncio.wait_for(fut, timeout)
