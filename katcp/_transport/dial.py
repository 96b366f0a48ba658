"""Connecting: :func:`~katcp.connection.open_connection` and :func:`~katcp.connection.start_connect`.

(See :mod:`katcp.connection`.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl as _ssl
from typing import Any, Awaitable, Callable

from katcp._aio.lowlevel import is_selector_loop
from katcp._transport.protocol import (
    Codec,
    Connection,
    ConnectionHandler,
    _buffer_for_loop,
    _check_ssl,
)
from katcp._transport.tlsbio import CLIENT_HANDSHAKE_TIMEOUT, TLSTransport


def start_connect(
    loop: asyncio.AbstractEventLoop, host: str, port: int
) -> socket.socket | None:
    """Begin a non-blocking TCP connection to a numeric address at once, without the loop.

    Lets a client put its SYN on the wire in the same call that asked for the connection,
    before any loop iteration; :func:`open_connection` (``sock=``) then finishes the job.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The loop that will own the connection.
    host : str
        Numeric IPv4 or IPv6 address (a host name gives None: it needs a resolver).
    port : int
        Port number.

    Returns
    -------
    sock : socket.socket or None
        The connecting socket, or None when this cannot be done up front (host name,
        a loop that cannot watch sockets, or an immediate error, which the regular
        :func:`open_connection` path then reports).
    """
    if not is_selector_loop(loop):
        return None  # e.g. the proactor loop on Windows cannot wait for writability
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, TypeError, ValueError):
            continue
        break
    else:
        return None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.connect((host, port))
    except BlockingIOError:
        pass
    except OSError:
        sock.close()
        return None
    return sock


async def _until_connected(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait for a socket from :func:`start_connect` to be connected; raise OSError if not."""
    try:
        sock.getpeername()
        return  # connected already (typical on loopback): no loop iteration needed
    except OSError:
        pass
    fut = loop.create_future()
    fd = sock.fileno()

    def writable() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_writer(fd, writable)
    try:
        await fut
    finally:
        loop.remove_writer(fd)
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, f"Connect call failed: {os.strerror(err)}")


async def open_connection(
    handler: ConnectionHandler,
    codec: Codec,
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | None = None,
    timeout: float | None = None,
    max_msg_size: int = 2**20,
    max_write_buffer_size: int = 2**22,
    logger: logging.Logger | None = None,
    server_hostname: str | None = None,
    sock: socket.socket | None = None,
) -> Connection:
    """Connect to ``host:port`` and return the :class:`Connection`.

    ``handler.connection_made(conn)`` has been called by the time this returns.

    Parameters
    ----------
    handler : object
        Receives the connection's callbacks.
    codec : object
        The codec for this connection.
    host : str
        Host name or address (IPv4 or IPv6).
    port : int
        Port number.
    ssl : ssl.SSLContext, optional
        Client-side TLS context.
    timeout : float, optional
        Seconds allowed for connecting (and the TLS handshake); raises
        :class:`asyncio.TimeoutError` when exceeded.
    max_msg_size : int
        Maximum size in bytes of one incoming message.
    max_write_buffer_size : int
        Maximum unsent output in bytes before the connection is aborted.
    logger : logging.Logger, optional
        Logger for the connection.
    server_hostname : str, optional
        Host name to check the server's TLS certificate against (defaults to ``host``).
    sock : socket.socket, optional
        A socket already connecting to ``host:port`` (from :func:`start_connect`); it is
        used instead of a new one, and closed if the connection fails.

    Returns
    -------
    conn : Connection

    Raises
    ------
    OSError
        The connection was refused or could not be made.
    asyncio.TimeoutError
        Connecting took longer than ``timeout``.
    """
    loop = asyncio.get_running_loop()
    ssl_ctx = _check_ssl(ssl)
    conn = Connection(
        handler,
        codec,
        loop,
        max_msg_size=max_msg_size,
        max_write_buffer_size=max_write_buffer_size,
        logger=logger,
    )
    tls: TLSTransport | None = None
    waiter: asyncio.Future | None = None
    if ssl_ctx is None:
        factory: Callable[[], Any] = lambda: conn  # noqa: E731
    else:
        # TLS in our own transport (see katcp._transport.tlsbio); asyncio gives plain TCP.
        waiter = loop.create_future()
        tls = TLSTransport(
            conn, ssl_ctx, server_side=False,
            server_hostname=server_hostname if server_hostname is not None else host,
            handshake_timeout=CLIENT_HANDSHAKE_TIMEOUT if timeout is None else None,
            waiter=waiter, buffer=_buffer_for_loop(loop))
        factory = lambda: tls  # noqa: E731
    coro: Awaitable[Any]
    if sock is None:
        coro = _connect(loop, factory, host, port, tls, waiter)
    else:
        coro = _connect_sock(loop, sock, factory, tls, waiter)
    if timeout is None:
        await coro
    else:
        await asyncio.wait_for(coro, timeout)
    return conn


async def _connect(loop: asyncio.AbstractEventLoop, factory: Callable[[], Any], host: str,
                   port: int, tls: TLSTransport | None, waiter: asyncio.Future | None) -> None:
    await loop.create_connection(factory, host, port)
    if tls is not None:
        await _handshake(tls, waiter)


async def _handshake(tls: TLSTransport, waiter: asyncio.Future | None) -> None:
    """Wait for the TLS handshake; drop the connection if it fails or is cancelled."""
    try:
        await waiter  # type: ignore[misc]
    except BaseException:
        tls.abort()
        raise


async def _connect_sock(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: Callable[[], Any],
    tls: TLSTransport | None, waiter: asyncio.Future | None
) -> None:
    try:
        await _until_connected(loop, sock)
        await loop.create_connection(factory, sock=sock)
    except BaseException:
        sock.close()
        raise
    if tls is not None:
        await _handshake(tls, waiter)
