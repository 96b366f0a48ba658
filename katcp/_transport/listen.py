"""Listening: :func:`~katcp.connection.create_server` and its accept path (see :mod:`katcp.connection`)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl as _ssl
from typing import Callable, Tuple

from katcp._aio import lowlevel
from katcp._transport.protocol import (
    Codec,
    Connection,
    ConnectionHandler,
    _buffer_for_loop,
    _check_ssl,
    format_address,
)
from katcp._transport.tlsbio import HANDSHAKE_TIMEOUT, TLSTransport


#: What :func:`listen_socket` reports for the all-interfaces address ``""``: the address
#: katcp-python reports, and one every IPv4 client can connect to.
ALL_INTERFACES = "0.0.0.0"
# SO_REUSEADDR on Windows lets another socket steal the port: POSIX only, as asyncio does.
_POSIX_REUSE = os.name not in ("nt", "cygwin") and hasattr(socket, "SO_REUSEADDR")


def listen_socket(host: str | None, port: int, *, backlog: int = socket.SOMAXCONN,
                  reuse_address: bool = True) -> Tuple[socket.socket, Tuple[str, int]]:
    """Bind and listen on one TCP socket now, in the calling thread.

    Binding here rather than in the loop lets a server learn its port (when ``port`` is 0)
    before its loop runs, and hand the bound socket to :func:`create_server`.

    Parameters
    ----------
    host : str or None
        Address to bind.  ``""`` or None: all interfaces, on ONE socket for every address
        family -- an IPv6 socket that also accepts IPv4 (``IPV6_V6ONLY`` off) where the
        system offers that, else IPv4 only.  Any other host binds the first address
        ``getaddrinfo`` gives for it, IPv4 first (``"localhost"`` is ``127.0.0.1``,
        ``"0.0.0.0"`` IPv4 only, ``"::"`` IPv6 only).
    port : int
        Port to bind (0 picks a free one).
    backlog : int
        Listen backlog: connections the system completes and queues while the server is
        busy.  The default is the system's largest, so that clients connecting in a burst
        (thousands, while the server writes to those already connected) are queued, not
        turned away to retry a second later.
    reuse_address : bool
        Set ``SO_REUSEADDR`` (POSIX), so that a restarted server binds the same port again
        while old connections linger in ``TIME_WAIT``.

    Returns
    -------
    sock : socket.socket
        The bound, listening, non-blocking socket.
    address : tuple
        ``(host, port)`` clients can connect to: for all interfaces ``("0.0.0.0", port)``
        (a dual-stack socket also takes IPv6 clients on that port), otherwise the bound
        address.

    Raises
    ------
    OSError
        If the address cannot be resolved or bound (e.g. the port is in use).
    """
    if not host:
        dual = socket.has_dualstack_ipv6()
        sock = socket.create_server(
            ("", port), family=socket.AF_INET6 if dual else socket.AF_INET,
            backlog=backlog, dualstack_ipv6=dual)
        sock.setblocking(False)
        return sock, (ALL_INTERFACES, sock.getsockname()[1])
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    # A name with addresses of both families ("localhost"): its IPv4 address, which every
    # client reaches (one that tries ::1 first falls back to it).
    family, kind, proto, _name, addr = min(infos, key=lambda info: info[0] != socket.AF_INET)
    sock = socket.socket(family, kind, proto)
    try:
        if reuse_address and _POSIX_REUSE:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
            # As asyncio does: an IPv6 address means IPv6 only.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    bound = sock.getsockname()
    return sock, (bound[0], bound[1])


async def create_server(
    handler: ConnectionHandler,
    codec_factory: Callable[[], Codec],
    host: str | None,
    port: int | None,
    *,
    ssl: _ssl.SSLContext | None = None,
    max_msg_size: int = 2**20,
    max_write_buffer_size: int = 2**22,
    reuse_address: bool = True,
    logger: logging.Logger | None = None,
    backlog: int = socket.SOMAXCONN,
    start_serving: bool = True,
    sock: socket.socket | None = None,
    tls_handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
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
        Listen backlog (the system's largest by default, as for :func:`listen_socket`;
        asyncio sets it again on ``sock`` too), and the most connections accepted per loop
        pass.
    start_serving : bool
        Accept connections at once (the default); if False, the socket is bound but
        connections are only accepted after ``await server.start_serving()`` (or
        ``serve_forever()``).
    sock : socket.socket, optional
        A socket already bound and listening (see :func:`listen_socket`) to serve on
        instead of binding ``host`` and ``port``, which must then be None.
    tls_handshake_timeout : float, optional
        With ``ssl``: seconds a new connection has to complete the TLS handshake before it
        is dropped (e.g. a plaintext client that waits for a greeting); None for no limit.

    Returns
    -------
    server : asyncio.base_events.Server
        The listening server.
    """
    loop = asyncio.get_running_loop()
    ssl_ctx = _check_ssl(ssl)
    buffer = _buffer_for_loop(loop)

    def factory() -> asyncio.BaseProtocol:
        conn = Connection(
            handler,
            codec_factory(),
            loop,
            max_msg_size=max_msg_size,
            max_write_buffer_size=max_write_buffer_size,
            logger=logger,
        )
        if ssl_ctx is None:
            return conn
        # TLS in our own transport (see katcp._transport.tlsbio); asyncio gives plain TCP.
        return TLSTransport(conn, ssl_ctx, server_side=True,
                            handshake_timeout=tls_handshake_timeout, buffer=buffer)

    if sock is not None:
        if host is not None or port is not None:
            raise ValueError("host and port must be None when sock is given")
        server = await loop.create_server(
            factory, sock=sock, backlog=backlog, start_serving=start_serving)
    elif port is None:
        raise ValueError("port must be given unless sock is")
    else:
        server = await loop.create_server(
            factory,
            host or None,
            port,
            reuse_address=reuse_address,
            backlog=backlog,
            start_serving=start_serving,
        )
    if start_serving and lowlevel.can_accept_directly(loop):
        for sock in server.sockets:
            lowlevel.accept_directly(loop, server, sock, factory, backlog, format_address)
    return server
