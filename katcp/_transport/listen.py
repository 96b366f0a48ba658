"""Listening: :func:`~katcp.connection.create_server` and its accept path (see :mod:`katcp.connection`)."""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import socket
import ssl as _ssl
from typing import Any, Callable

from katcp._transport.protocol import Connection, _check_ssl, _raw_socket, format_address, log


async def create_server(
    handler: Any,
    codec_factory: Callable[[], Any],
    host: str | None,
    port: int,
    *,
    ssl: _ssl.SSLContext | None = None,
    max_msg_size: int = 2**20,
    max_write_buffer_size: int = 2**22,
    reuse_address: bool = True,
    logger: logging.Logger | None = None,
    backlog: int = 128,
    start_serving: bool = True,
) -> asyncio.base_events.Server:
    """Listen for connections; each gets a :class:`Connection` with a fresh codec.

    Parameters
    ----------
    handler : object
        Handler shared by all connections (see the module docstring for its callbacks).
    codec_factory : callable
        Called with no arguments for every new connection; returns its codec.  A codec with
        a line/packet limit of its own should use ``max_msg_size`` for it (e.g.
        ``LineCodec(max_line_length=max_msg_size)``), so that both limits agree.
    host : str or None
        Address to bind ("" or None: all interfaces; "::1" etc. for IPv6).
    port : int
        Port to bind (0 picks a free one; see ``server.sockets[0].getsockname()``).
    ssl : ssl.SSLContext, optional
        Server-side TLS context.
    max_msg_size : int
        Maximum size in bytes of one incoming message.
    max_write_buffer_size : int
        Maximum unsent output in bytes before a connection is aborted.
    reuse_address : bool
        Set SO_REUSEADDR on the listening socket.
    logger : logging.Logger, optional
        Logger for the connections.
    backlog : int
        Listen backlog.
    start_serving : bool
        Accept connections at once (the default); if False, the socket is bound but
        connections are only accepted after ``await server.start_serving()`` (or
        ``serve_forever()``).

    Returns
    -------
    server : asyncio.base_events.Server
        The listening server.
    """
    loop = asyncio.get_running_loop()
    ssl_ctx = _check_ssl(ssl)

    def factory() -> Connection:
        return Connection(
            handler,
            codec_factory(),
            loop,
            max_msg_size=max_msg_size,
            max_write_buffer_size=max_write_buffer_size,
            logger=logger,
        )

    if host == "":
        host = None
    server = await loop.create_server(
        factory,
        host,
        port,
        ssl=ssl_ctx,
        reuse_address=reuse_address,
        backlog=backlog,
        start_serving=start_serving,
    )
    if start_serving and ssl_ctx is None and _can_accept_directly(loop):
        for sock in server.sockets:
            _accept_directly(loop, server, _raw_socket(sock), factory, backlog)
    return server


#: Seconds to stop accepting after running out of file descriptors (as asyncio does).
ACCEPT_RETRY_DELAY = 1.0


def _can_accept_directly(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether :func:`_accept_directly` can be used on ``loop`` (asyncio's selector loops)."""
    if not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
        return False
    make = getattr(loop, "_make_socket_transport", None)
    if make is None:
        return False
    try:
        params = inspect.signature(make).parameters
    except (TypeError, ValueError):
        return False
    return all(name in params for name in ("sock", "protocol", "waiter", "extra", "server"))


def _accept_directly(
    loop: asyncio.AbstractEventLoop,
    server: asyncio.base_events.Server,
    sock: socket.socket,
    factory: Callable[[], Any],
    backlog: int,
) -> None:
    """Accept on ``sock`` with the transport made in the accept callback itself.

    asyncio's own accept path makes the transport in a task started for each connection, a
    loop iteration later, so a server's greeting goes out two iterations after the accept.
    Here it goes out in the next one.  Replaces asyncio's reader on the listening socket;
    ``server.close()`` removes it as it would asyncio's, and the transports are attached to
    ``server`` as asyncio's are.  Plain TCP on asyncio's selector loops only (see
    :func:`_can_accept_directly`); TLS servers keep asyncio's path.
    """
    fd = sock.fileno()

    def on_readable() -> None:
        for _ in range(backlog):
            try:
                conn, addr = sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The socket stays readable: stop watching it for a while, as asyncio
                    # does, instead of spinning; the server keeps serving its connections.
                    log.error("Cannot accept connections on %s for now: %s",
                              format_address(sock.getsockname()), exc)
                    loop.remove_reader(fd)
                    loop.call_later(ACCEPT_RETRY_DELAY, resume)
                    return
                raise  # the loop logs it and carries on
            try:
                loop._make_socket_transport(  # type: ignore[attr-defined]
                    conn, factory(), waiter=None, extra={"peername": addr}, server=server
                )
            except Exception:
                log.exception("Could not set up the connection from %s", format_address(addr))
                conn.close()

    def resume() -> None:
        if server.is_serving() and sock.fileno() == fd:
            loop.add_reader(fd, on_readable)

    # Replaces the reader asyncio registered for this socket.
    loop.add_reader(fd, on_readable)
