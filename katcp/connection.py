"""The one transport: a codec-parameterised stream connection on asyncio.

Every connection in the package -- server side and client side, KATCP and NCP, plain TCP and
TLS -- is a :class:`Connection`.  It is an :class:`asyncio.BufferedProtocol` that knows nothing
about the wire format: bytes read from the socket go to a sans-I/O *codec*
(``feed(bytes) -> list[message | Exception]``, ``encode(message) -> bytes``, ``buffer_size``)
and every decoded item is handed to a *handler* object, which may serve many connections:

* ``handler.connection_made(conn)``
* ``handler.message_received(conn, msg)`` -- each decoded message, in order
* ``handler.decode_error(conn, exc)`` -- a malformed message, or :class:`MessageTooLong`
  (after which the connection flushes what the handler wrote and closes)
* ``handler.connection_lost(conn, exc)`` -- exactly once; ``exc`` is None for a clean close

All callbacks run in the event loop's thread.  An exception raised by a handler callback is
logged and never stops the connection.

The connection owns:

* the receive buffer (one buffer per event loop, shared by all its connections, because asyncio
  fills it and calls :meth:`Connection.buffer_updated` synchronously; an idle connection costs
  only its own small objects);
* the maximum message size (an unterminated message longer than ``max_msg_size`` bytes is
  reported as :class:`MessageTooLong` and that connection alone is closed);
* the write-buffer limit (a peer too slow to read its output, so that more than
  ``max_write_buffer_size`` bytes are waiting to be sent, is logged and aborted; everyone else
  is served on);
* coalescing of writes: writes are queued and joined; those made while the messages of one
  read (or ``handler.connection_made``) are handled go out in one ``transport.write`` right
  after it, and other writes of one loop iteration in one ``transport.write`` at the end of
  the iteration (scheduled once with ``call_soon``); a large queue is handed over at once;
* close (after flushing), abort, the peer address and :meth:`Connection.wait_closed`;
* writes from other threads (:meth:`Connection.write_threadsafe`, once enabled): sent on the
  socket by the calling thread while nothing is queued, otherwise queued for the ioloop, so
  that a blocked client thread does not wait for the ioloop to send its request.

Use :func:`create_server` and :func:`open_connection` to make connections.  A plain TCP server
on asyncio's selector loop makes each connection's transport in the accept callback itself, so
a greeting written in ``handler.connection_made`` goes out one loop iteration after the accept
rather than two (asyncio's own path starts a task per connection first).
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import os
import socket
import ssl as _ssl
import threading
import weakref
from typing import Any, Callable, List, Tuple

__all__ = [
    "Connection",
    "MessageTooLong",
    "WriteBufferOverflow",
    "create_server",
    "open_connection",
    "start_connect",
    "format_address",
]

log = logging.getLogger("katcp.connection")

#: Size of the receive buffer shared by all connections of one event loop.
READ_BUFFER_SIZE = 65536
#: Pending (not yet handed to the transport) output above which a write is flushed at once.
FLUSH_THRESHOLD = 65536

# One receive buffer per event loop.  asyncio calls get_buffer(), recv_into() and
# buffer_updated() back to back in the loop's thread, and buffer_updated() copies what it
# needs, so the buffer can be shared by every connection of that loop.
_loop_buffers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, memoryview] = (
    weakref.WeakKeyDictionary()
)


def _buffer_for_loop(loop: asyncio.AbstractEventLoop) -> memoryview:
    buf = _loop_buffers.get(loop)
    if buf is None:
        buf = memoryview(bytearray(READ_BUFFER_SIZE))
        _loop_buffers[loop] = buf
    return buf


class MessageTooLong(ValueError):
    """An incoming message exceeded the connection's maximum message size.

    Parameters
    ----------
    limit : int
        The maximum message size in bytes (available as the ``limit`` attribute).
    size : int, optional
        Number of bytes buffered when the limit was detected (``size`` attribute).
    """

    def __init__(self, limit: int, size: int | None = None) -> None:
        self.limit = limit
        self.size = size
        if size is None:
            text = f"Message exceeds maximum message size of {limit} bytes"
        else:
            text = (
                f"Message exceeds maximum message size of {limit} bytes "
                f"({size} bytes received without a message terminator)"
            )
        super().__init__(text)


class WriteBufferOverflow(ConnectionError):
    """The peer did not read its output fast enough; the connection was aborted.

    Parameters
    ----------
    limit : int
        The write-buffer limit in bytes (``limit`` attribute).
    size : int
        Number of unsent bytes when the limit was passed (``size`` attribute).
    """

    def __init__(self, limit: int, size: int) -> None:
        self.limit = limit
        self.size = size
        super().__init__(
            f"Write buffer of {size} bytes exceeds limit of {limit} bytes: "
            "peer is not reading fast enough"
        )


def format_address(peer: Any) -> str:
    """Format a socket address as ``"host:port"`` (IPv6 hosts as ``"[host]:port"``).

    Parameters
    ----------
    peer : tuple or str or None
        Address as returned by ``socket.getpeername()``.

    Returns
    -------
    address : str
    """
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        if ":" in str(host):
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    return str(peer)


class Connection(asyncio.BufferedProtocol):
    """One stream connection, decoded by a codec and delivered to a handler.

    Created by :func:`create_server` and :func:`open_connection`, never by users.

    Parameters
    ----------
    handler : object
        Receives ``connection_made``, ``message_received``, ``decode_error`` and
        ``connection_lost`` callbacks (see the module docstring).
    codec : object
        Sans-I/O codec with ``feed(data) -> list``, ``encode(msg) -> bytes`` and
        ``buffer_size``.
    loop : asyncio.AbstractEventLoop
        The event loop the connection runs on.
    max_msg_size : int
        Largest unterminated message (bytes) accepted before the connection is closed.
    max_write_buffer_size : int
        Largest amount of unsent output (bytes) tolerated before the connection is aborted.
    logger : logging.Logger, optional
        Where problems are logged.

    Attributes
    ----------
    codec, handler, loop
        As given.
    peer : tuple
        ``(host, port)`` of the remote end (``None`` until connected).
    address : str
        ``"host:port"`` of the remote end (IPv6 as ``"[host]:port"``).
    closing : bool
        True once :meth:`close` or :meth:`abort` was called or the connection was lost.
    transport : asyncio.Transport
        The underlying transport (``None`` until connected).
    """

    __slots__ = (
        "codec",
        "handler",
        "loop",
        "peer",
        "address",
        "closing",
        "transport",
        "max_msg_size",
        "max_write_buffer_size",
        "logger",
        "_buf",
        "_pending",
        "_pending_size",
        "_flush_handle",
        "_lost",
        "_closed_future",
        "_close_exc",
        "_in_receive",
        "_paused",
        "_send_lock",
        "_direct_sock",
        "_xflush",
        "_backlog",
        "__weakref__",
    )

    def __init__(
        self,
        handler: Any,
        codec: Any,
        loop: asyncio.AbstractEventLoop,
        *,
        max_msg_size: int = 2**20,
        max_write_buffer_size: int = 2**22,
        logger: logging.Logger | None = None,
    ) -> None:
        self.handler = handler
        self.codec = codec
        self.loop = loop
        self.peer: Tuple[Any, ...] | None = None
        self.address = "<not connected>"
        self.closing = False
        self.transport: asyncio.Transport | None = None
        self.max_msg_size = max_msg_size
        self.max_write_buffer_size = max_write_buffer_size
        self.logger = logger if logger is not None else log
        self._buf = _buffer_for_loop(loop)
        self._pending: List[bytes] = []
        self._pending_size = 0
        self._flush_handle: asyncio.Handle | None = None
        self._lost = False
        self._closed_future: asyncio.Future | None = None
        self._close_exc: BaseException | None = None
        self._in_receive = False
        self._paused = False
        # Thread-safe writes (see enable_threadsafe_writes); off for server connections.
        self._send_lock: threading.RLock | None = None
        self._direct_sock: socket.socket | None = None
        self._xflush = False
        self._backlog = False

    def __repr__(self) -> str:
        state = "closing" if self.closing else "open"
        return f"<{type(self).__name__} {self.address} {state}>"

    # ------------------------------------------------------------------ asyncio protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Record the transport and peer, then tell the handler (asyncio callback)."""
        self.transport = transport  # type: ignore[assignment]
        # No TCP_NODELAY here: asyncio sets it on every TCP connection (Python >= 3.7).
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (peer[0], peer[1])
        else:
            self.peer = peer
        self.address = format_address(peer)
        # Like a read: what the handler writes here (a server's greeting) is sent in one
        # transport write as soon as it returns, not one loop iteration later.
        self._in_receive = True
        try:
            self.handler.connection_made(self)
        except Exception:
            self.logger.exception("Handler connection_made failed for %s", self.address)
        finally:
            self._in_receive = False
        if self._pending and not self.closing:
            self._flush()

    def get_buffer(self, sizehint: int) -> memoryview:
        """Return the loop's shared receive buffer (asyncio callback)."""
        return self._buf

    def buffer_updated(self, nbytes: int) -> None:
        """Decode ``nbytes`` fresh bytes and deliver the results (asyncio callback)."""
        if self.closing:
            return
        self._receive(bytes(self._buf[:nbytes]))

    def data_received(self, data: bytes) -> None:
        """Decode ``data`` and deliver the results (used by non-buffered transports)."""
        if self.closing:
            return
        self._receive(bytes(data))

    def eof_received(self) -> bool | None:
        """The peer closed its side: send what is queued, then close ours as well."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
        self.closing = True
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        """Tell the handler, exactly once (asyncio callback)."""
        if self._lost:
            return
        self._lost = True
        self.closing = True
        # The transport closes the socket once this returns: taking the send lock lets a
        # thread sending on it directly finish first; none starts afterwards (``_lost``).
        self._drop_pending()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._close_exc is not None:
            exc = self._close_exc
        try:
            self.handler.connection_lost(self, exc)
        except Exception:
            self.logger.exception("Handler connection_lost failed for %s", self.address)
        fut = self._closed_future
        if fut is not None and not fut.done():
            fut.set_result(None)

    # ------------------------------------------------------------------ receiving
    def _receive(self, data: bytes) -> None:
        try:
            items = self.codec.feed(data)
        except Exception as exc:  # a codec must not raise, but never let it kill us
            self.logger.exception("Codec failed on data from %s", self.address)
            self._protocol_error(exc)
            return
        handler = self.handler
        self._in_receive = True
        try:
            for item in items:
                if self.closing:
                    break
                try:
                    if isinstance(item, Exception):
                        handler.decode_error(self, item)
                    else:
                        handler.message_received(self, item)
                except Exception:
                    self.logger.exception("Handler failed on %r from %s", item, self.address)
            # A pending message of max_msg_size bytes cannot be completed within the limit
            # (its terminator counts), matching the KATCP codec's own limit check.  (Checked
            # once per read, whatever the codec: binary codecs have no terminator byte.)
            if not self.closing:
                size = self.codec.buffer_size
                if size >= self.max_msg_size:
                    exc = MessageTooLong(self.max_msg_size, size)
                    try:
                        handler.decode_error(self, exc)
                    except Exception:
                        self.logger.exception("Handler decode_error failed for %s", self.address)
                    self._protocol_error(exc)
        finally:
            self._in_receive = False
        if self._pending and not self.closing:
            self._flush()

    def _protocol_error(self, exc: BaseException) -> None:
        if self.closing:
            return
        self.logger.warning("Closing connection %s: %s", self.address, exc)
        if self._close_exc is None:
            self._close_exc = exc
        self.close()

    def pause_reading(self) -> None:
        """Stop reading from the socket until :meth:`resume_reading` (back-pressure)."""
        if not self._paused and self.transport is not None and not self.closing:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Resume reading from the socket after :meth:`pause_reading`."""
        if self._paused and self.transport is not None and not self.closing:
            self._paused = False
            self.transport.resume_reading()

    # ------------------------------------------------------------------ sending
    def write(self, msg: Any) -> None:
        """Encode ``msg`` with the codec and queue it for sending.

        Writes issued within one loop iteration are sent with one transport write.  Writing to
        a closing connection is silently ignored.

        Parameters
        ----------
        msg : object
            A message the codec can encode.
        """
        if self.closing:
            return
        data = self.codec.encode(msg)
        if self._send_lock is not None:
            self._write_locked(data)
            return
        # Same as write_bytes(data), inlined: this is the hot path of every reply.
        self._pending.append(data)
        size = self._pending_size + len(data)
        self._pending_size = size
        if size >= FLUSH_THRESHOLD:
            self._flush()
        elif not self._in_receive and self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def write_bytes(self, data: bytes) -> None:
        """Queue already-encoded bytes for sending (e.g. one sensor update shared by many).

        Parameters
        ----------
        data : bytes
            Encoded data, complete messages only.
        """
        if self.closing or not data:
            return
        if self._send_lock is not None:
            self._write_locked(data)
            return
        self._pending.append(data)
        size = self._pending_size + len(data)
        self._pending_size = size
        if size >= FLUSH_THRESHOLD:
            self._flush()
        elif not self._in_receive and self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _write_locked(self, data: bytes) -> None:
        """write_bytes() once other threads may write too (ioloop thread)."""
        with self._send_lock:  # type: ignore[union-attr]
            self._pending.append(data)
            size = self._pending_size + len(data)
            self._pending_size = size
            if size >= FLUSH_THRESHOLD:
                self._write_out()
                return
        if not self._in_receive and self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        lock = self._send_lock
        if lock is None:
            self._write_out()
        else:
            with lock:
                self._xflush = False
                self._write_out()

    def _write_out(self) -> None:
        """Hand queued output to the transport (ioloop thread, holding the send lock if any)."""
        pending = self._pending
        if not pending or self._lost:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._pending_size = 0
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        size = transport.get_write_buffer_size()
        # Other threads may send on the socket directly only while the transport holds
        # nothing back; the transport's buffer is read here, in the ioloop thread, only.
        self._backlog = size > 0
        if size > self.max_write_buffer_size and not self.closing:
            exc = WriteBufferOverflow(self.max_write_buffer_size, size)
            self.logger.warning("Aborting connection %s: %s", self.address, exc)
            self._abort(exc)

    def _drop_pending(self) -> None:
        """Discard queued output (under the send lock once other threads may write)."""
        lock = self._send_lock
        if lock is None:
            self._pending.clear()
        else:
            with lock:
                self._pending.clear()
        self._pending_size = 0

    # ------------------------------------------------------------------ other threads
    def enable_threadsafe_writes(self) -> None:
        """Allow :meth:`write_threadsafe` from threads other than the ioloop's.

        Call in the ioloop thread once connected.  On a plain TCP connection of asyncio's
        selector loop, other threads then send on the socket themselves while nothing is
        queued, without waking the ioloop; otherwise (TLS, other loops) their output is
        handed to the ioloop.
        """
        if self._send_lock is not None:
            return
        # Re-entrant: a flush that overflows the write buffer aborts, which clears the queue.
        self._send_lock = threading.RLock()
        transport = self.transport
        if transport is None or not isinstance(
            self.loop, asyncio.selector_events.BaseSelectorEventLoop
        ):
            return
        if type(transport).__name__ != "_SelectorSocketTransport":
            return  # e.g. TLS: the socket carries records, not our bytes
        sock = _raw_socket(transport.get_extra_info("socket"))
        if isinstance(sock, socket.socket):
            self._direct_sock = sock

    @property
    def threadsafe_writes(self) -> bool:
        """Whether :meth:`write_threadsafe` may be used (see :meth:`enable_threadsafe_writes`)."""
        return self._send_lock is not None

    def write_threadsafe(self, data: bytes) -> None:
        """Send already-encoded bytes from any thread.

        Needs :meth:`enable_threadsafe_writes`.  While nothing is queued for the connection
        the bytes are sent on the socket at once, in the calling thread; otherwise they are
        queued behind what is waiting and the ioloop is asked to send them.  Writes of all
        threads, the ioloop's included, go out in the order they were made and never
        interleave.  Writing to a closing connection is silently ignored, as with
        :meth:`write`.

        Parameters
        ----------
        data : bytes
            Encoded data, complete messages only.
        """
        lock = self._send_lock
        if lock is None:
            raise RuntimeError("enable_threadsafe_writes() was not called")
        if not data:
            return
        with lock:
            if self.closing or self._lost:
                return
            sock = self._direct_sock
            if sock is not None and not self._pending and not self._backlog:
                try:
                    sent = sock.send(data)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    # Let the ioloop meet the error through the transport and report it.
                    sent = 0
                if sent == len(data):
                    return
                data = data[sent:]
                # The ioloop must hand the rest to the transport before anyone sends again.
                self._backlog = True
            self._pending.append(data)
            self._pending_size += len(data)
            if self._xflush:
                return  # a flush is already on its way
            self._xflush = True
        self.loop.call_soon_threadsafe(self._flush)

    def flush(self) -> None:
        """Hand any queued output to the transport now instead of at the end of the iteration."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()

    def get_write_buffer_size(self) -> int:
        """Number of bytes written but not yet sent (queued here plus in the transport)."""
        size = self._pending_size
        if self.transport is not None and not self._lost:
            size += self.transport.get_write_buffer_size()
        return size

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Send whatever was written, then close the connection.  Idempotent."""
        if self.closing:
            return
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close the connection at once, discarding unsent output.  Idempotent."""
        self._abort(None)

    def _abort(self, exc: BaseException | None) -> None:
        if exc is not None and self._close_exc is None:
            self._close_exc = exc
        self.closing = True
        self._drop_pending()
        if self.transport is not None and not self._lost:
            self.transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the connection is lost (``handler.connection_lost`` has been called)."""
        if self._lost:
            return
        if self._closed_future is None:
            self._closed_future = self.loop.create_future()
        await asyncio.shield(self._closed_future)


def _check_ssl(ssl: Any) -> _ssl.SSLContext | None:
    if ssl is None or ssl is False:
        return None
    if isinstance(ssl, _ssl.SSLContext):
        return ssl
    raise TypeError(f"ssl must be an ssl.SSLContext or None, not {type(ssl).__name__}")


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


def _raw_socket(sock: Any) -> Any:
    """The socket inside asyncio's TransportSocket wrapper (sending/accepting needs it)."""
    return getattr(sock, "_sock", sock)


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
    if not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
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
    handler: Any,
    codec: Any,
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
    kwargs: dict = {}
    if ssl_ctx is not None:
        kwargs["ssl"] = ssl_ctx
        if server_hostname is not None:
            kwargs["server_hostname"] = server_hostname
        elif sock is not None:
            kwargs["server_hostname"] = host
        if timeout is not None:
            kwargs["ssl_handshake_timeout"] = timeout
    if sock is None:
        coro = loop.create_connection(lambda: conn, host, port, **kwargs)
    else:
        coro = _connect_sock(loop, sock, lambda: conn, kwargs)
    if timeout is None:
        await coro
    else:
        await asyncio.wait_for(coro, timeout)
    return conn


async def _connect_sock(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: Callable[[], Any], kwargs: dict
) -> None:
    try:
        await _until_connected(loop, sock)
        await loop.create_connection(factory, sock=sock, **kwargs)
    except BaseException:
        sock.close()
        raise
