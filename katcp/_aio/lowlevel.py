"""asyncio's private internals, quarantined: every use katcp makes of them, in one place.

Each trick buys speed on a hot path and has a public-API fallback that behaves the same,
only slower.  :data:`USE_PRIVATE` selects between them: tests set it to False (in
process) or run with ``KATCP_ASYNCIO_PUBLIC_ONLY=1`` (in a subprocess, so that
:func:`running_loop` is bound to its fallback too) and pass real traffic through the
fallbacks.

The tricks, and why each is safe on CPython 3.9 to 3.13 (checked against the asyncio
sources of each of those versions):

``asyncio._get_running_loop``  (:func:`running_loop`)
    The loop running in this thread, or None, without the exception
    :func:`asyncio.get_running_loop` raises outside a loop.  Present and C-accelerated
    (``_asyncio._get_running_loop``) since 3.7, unchanged through 3.13; asyncio itself
    calls it from ``get_event_loop()``, and 3.12 documents it in ``events.py`` as
    "the low-level function ... for use by third-party event loops".
    Fallback: ``get_running_loop()`` in a ``try``.

``loop._make_socket_transport`` and the replaced accept reader  (:func:`accept_directly`)
    A server's greeting goes out one loop iteration sooner when the transport is made in
    the accept callback rather than in the task asyncio starts per connection.
    ``BaseSelectorEventLoop._make_socket_transport(sock, protocol, waiter=None, *,
    extra=None, server=None)`` has had this signature from 3.7 to 3.13 (checked at run
    time by :func:`can_accept_directly`); the transport attaches itself to ``server``
    (3.9-3.11 ``server._attach()``, 3.12+ ``server._attach(transport)``), so
    ``Server.close()``/``wait_closed()`` treat it as one of asyncio's.  ``add_reader`` on
    the listening socket replaces asyncio's accept reader (the selector keeps one reader
    per descriptor and ``_add_reader`` cancels the old handle), and ``Server.close()``
    (``loop._stop_serving``) removes ours as it would remove asyncio's.
    Fallback: asyncio's own accept path.

Transport class name, ``TransportSocket._sock`` and ``sock.send`` from another thread  (:func:`direct_socket`, :func:`send_now`)
    ``blocking_request`` writes its request on the socket from the calling thread so that
    only the reply crosses threads; a threaded server's handler thread writes its replies
    the same way.  Only for ``_SelectorSocketTransport`` (the plain TCP
    transport of selector loops, named so from 3.4 to 3.13; over katcp's own TLS, which
    runs on such a transport, the sending thread encrypts first).
    ``get_extra_info("socket")`` is an ``asyncio.trsock.TransportSocket`` (3.8+) that
    refuses ``send``; its ``_sock`` is the real socket (same name 3.8 to 3.13).  ``socket.send`` on a non-blocking socket is
    thread-safe in CPython (one system call, the GIL released around it).  The
    connection sends directly only while neither it nor the transport holds unsent bytes
    (``Connection._backlog``), under the lock the loop thread takes for its own writes,
    so bytes never overtake or interleave; a partial send hands the rest to the loop.
    Fallback: every write handed to the loop thread.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import os
import socket
from typing import Any, Callable

log = logging.getLogger("katcp.connection")

#: Whether asyncio's private internals may be used (False: the public fallbacks only).
#: Read at each use, except by :func:`running_loop`, which is bound at import.
USE_PRIVATE: bool = os.environ.get("KATCP_ASYNCIO_PUBLIC_ONLY", "") in ("", "0")

#: Seconds to stop accepting after running out of file descriptors (as asyncio does).
ACCEPT_RETRY_DELAY = 1.0


def running_loop_public() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None (public-API version)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_private_running_loop: Callable[[], asyncio.AbstractEventLoop | None] | None = getattr(
    asyncio, "_get_running_loop", None
)

#: The event loop running in this thread, or None.  Hot paths bind it at import.
running_loop: Callable[[], asyncio.AbstractEventLoop | None] = (
    _private_running_loop
    if USE_PRIVATE and _private_running_loop is not None
    else running_loop_public
)


def _raw_socket(sock: Any) -> Any:
    """The socket inside asyncio's ``TransportSocket`` wrapper (or ``sock`` itself)."""
    return getattr(sock, "_sock", sock)


def is_selector_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is one of asyncio's selector loops (it can watch any socket)."""
    return isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)


def direct_socket(
    loop: asyncio.AbstractEventLoop, transport: asyncio.BaseTransport | None
) -> socket.socket | None:
    """The socket other threads may send on directly (see :func:`send_now`), or None.

    None unless :data:`USE_PRIVATE` and ``transport`` is plain TCP on a selector loop;
    writes must then be handed to the loop thread.
    """
    if not USE_PRIVATE or transport is None or not is_selector_loop(loop):
        return None
    if type(transport).__name__ != "_SelectorSocketTransport":
        return None  # e.g. asyncio's TLS transport: its records are not ours to send
    sock = _raw_socket(transport.get_extra_info("socket"))
    return sock if isinstance(sock, socket.socket) else None


def send_now(sock: socket.socket, data: bytes) -> int:
    """Send what the socket takes of ``data`` now, from any thread; return the byte count.

    Errors count as nothing sent: the loop meets them through the transport and reports
    them.  The caller must hold the connection's send lock (see the module notes).
    """
    try:
        return sock.send(data)
    except OSError:  # full (BlockingIOError), interrupted, or broken: the loop handles it
        return 0


def can_accept_directly(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether :func:`accept_directly` can be used on ``loop`` (asyncio's selector loops)."""
    if not USE_PRIVATE or not is_selector_loop(loop):
        return False
    make = getattr(loop, "_make_socket_transport", None)
    if make is None:
        return False
    try:
        params = inspect.signature(make).parameters
    except (TypeError, ValueError):
        return False
    return all(name in params for name in ("sock", "protocol", "waiter", "extra", "server"))


def accept_directly(
    loop: asyncio.AbstractEventLoop,
    server: asyncio.AbstractServer,
    listening: Any,
    factory: Callable[[], asyncio.BaseProtocol],
    backlog: int,
    format_address: Callable[[Any], str],
) -> None:
    """Accept on ``listening`` with the transport made in the accept callback itself.

    asyncio's own accept path makes the transport in a task started for each connection, a
    loop iteration later, so a server's greeting goes out two iterations after the accept.
    Here it goes out in the next one.  Call only if :func:`can_accept_directly` (TLS
    servers too: their TLS runs in the protocol, over a plain TCP transport).

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The loop serving ``server``.
    server : asyncio.AbstractServer
        The server ``listening`` belongs to; the transports are attached to it.
    listening : socket-like
        One of ``server.sockets``.
    factory : callable
        Makes the protocol of each connection.
    backlog : int
        Most connections accepted per wake-up.
    format_address : callable
        Formats an address for the log.
    """
    sock = _raw_socket(listening)
    fd = sock.fileno()
    make_transport = loop._make_socket_transport  # type: ignore[attr-defined]

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
                make_transport(conn, factory(), waiter=None, extra={"peername": addr},
                               server=server)
            except Exception:
                log.exception("Could not set up the connection from %s", format_address(addr))
                conn.close()

    def resume() -> None:
        if server.is_serving() and sock.fileno() == fd:
            loop.add_reader(fd, on_readable)

    # Replaces the reader asyncio registered for this socket.
    loop.add_reader(fd, on_readable)
