"""Listening: :func:`~katcp.connection.create_server` and its accept path (see :mod:`katcp.connection`)."""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from typing import Callable

from katcp._aio import lowlevel
from katcp._transport.protocol import (
    Codec,
    Connection,
    ConnectionHandler,
    _check_ssl,
    format_address,
)


async def create_server(
    handler: ConnectionHandler,
    codec_factory: Callable[[], Codec],
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
    if start_serving and ssl_ctx is None and lowlevel.can_accept_directly(loop):
        for sock in server.sockets:
            lowlevel.accept_directly(loop, server, sock, factory, backlog, format_address)
    return server
