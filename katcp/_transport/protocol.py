"""The :class:`~katcp.connection.Connection` protocol and its errors (see :mod:`katcp.connection`)."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as _ssl
import threading
import weakref
from typing import Any, Callable, List, Protocol, Tuple

from katcp._aio.loopcalls import LoopCalls, loop_calls
from katcp._aio.lowlevel import direct_socket, send_now

log = logging.getLogger("katcp.connection")

#: Size of the receive buffer shared by all connections of one event loop.
READ_BUFFER_SIZE = 65536
#: Pending (not yet handed to the transport) output above which a write is flushed at once.
FLUSH_THRESHOLD = 65536
#: Messages one connection may hand its handler per loop iteration.  A read of 64 KiB holds
#: thousands of small requests; the rest wait (reading paused) for the next iteration, so
#: one client that pipelines costs the others about one burst, not one whole read.
MAX_BURST = 64

# One receive buffer per event loop.  asyncio calls get_buffer(), recv_into() and
# buffer_updated() back to back in the loop's thread, and buffer_updated() copies what it
# needs, so the buffer can be shared by every connection of that loop.
_loop_buffers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, memoryview] = (
    weakref.WeakKeyDictionary()
)


# Buffers of loops that have been garbage-collected (no loop writes into them any more),
# for new loops to take.  A fresh buffer cost a short-lived loop (a BlockingClient's, in a
# thread of its own) about 50 us on its connect path on the development VM: zeroing the
# 64 KiB took 15 page faults there (the pages malloc hands a new thread are fresh ones).
_spare_buffers: List[memoryview] = []
_MAX_SPARE_BUFFERS = 16


def _buffer_for_loop(loop: asyncio.AbstractEventLoop) -> memoryview:
    buf = _loop_buffers.get(loop)
    if buf is None:
        try:
            buf = _spare_buffers.pop()
        except IndexError:
            buf = memoryview(bytearray(READ_BUFFER_SIZE))
        _loop_buffers[loop] = buf
        weakref.finalize(loop, _spare_buffer, buf).atexit = False
    return buf


def _spare_buffer(buf: memoryview) -> None:
    """Keep the buffer of a loop that has gone for the next loop (see _buffer_for_loop)."""
    if len(_spare_buffers) < _MAX_SPARE_BUFFERS:
        _spare_buffers.append(buf)


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


class Codec(Protocol):
    """What a :class:`Connection` needs of its sans-I/O codec (KATCP lines, NCP packets)."""

    def feed(self, data: bytes) -> List[Any]:
        """Decode ``data``; return the complete messages and the errors, in order."""

    def encode(self, msg: Any) -> bytes:
        """Encode one message."""

    @property
    def buffer_size(self) -> int:
        """Bytes held for an incomplete message."""


class ConnectionHandler(Protocol):
    """The owner of a :class:`Connection`: the contract between transport and endpoint.

    Every callback runs in the loop's thread; an exception it raises is logged and the
    connection carries on.
    """

    def connection_made(self, conn: Connection) -> None:
        """The connection is up (a server writes its greeting here)."""

    def message_received(self, conn: Connection, msg: Any) -> None:
        """One decoded message arrived."""

    def decode_error(self, conn: Connection, exc: Exception) -> None:
        """Bytes that do not decode (or a message over the size limit) arrived."""

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        """The connection is gone (called exactly once; ``exc`` None on a clean close)."""


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
        "_reading_paused",
        "_held",
        "_held_at",
        "_held_handle",
        "max_burst",
        "_send_lock",
        "_direct_sock",
        "_encrypt",
        "_xflush",
        "_loop_calls",
        "_backlog",
        "_flush_also",
        "__weakref__",
    )

    def __init__(
        self,
        handler: ConnectionHandler,
        codec: Codec,
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
        # _paused: the handler asked (pause_reading); _reading_paused: the transport's state,
        # paused also while decoded messages are held back for a later iteration (_held).
        self._paused = False
        self._reading_paused = False
        self._held: List[Any] | None = None
        self._held_at = 0
        self._held_handle: asyncio.Handle | None = None
        self.max_burst = MAX_BURST
        # Thread-safe writes (see enable_threadsafe_writes); off for server connections.
        self._send_lock: threading.RLock | None = None
        self._direct_sock: socket.socket | None = None
        self._encrypt: Callable[[bytes], bytes] | None = None
        self._xflush = False
        self._backlog = False
        self._loop_calls: LoopCalls | None = None
        # Other connections whose output goes out when this read is handed over (see
        # flush_with_receive); None almost always.
        self._flush_also: List[Connection] | None = None

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
            host = peer[0]
            if host.startswith("::ffff:") and "." in host:
                # An IPv4 client of a dual-stack listener: name it as IPv4 clients are.
                host = host[7:]
            peer = self.peer = (host, peer[1])
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
        if self._held is not None:
            self._receive(bytes(self._buf[:nbytes]))
            return
        # The usual read, _receive() inlined (one frame less per read, on both ends).
        try:
            items = self.codec.feed(bytes(self._buf[:nbytes]))
        except Exception as exc:  # a codec must not raise, but never let it kill us
            self._codec_failed(exc)
            return
        self._deliver(items, 0, True)

    def data_received(self, data: bytes) -> None:
        """Decode ``data`` and deliver the results (used by non-buffered transports)."""
        if self.closing:
            return
        self._receive(bytes(data))

    def eof_received(self) -> bool | None:
        """The peer closed its side: send what is queued, then close ours as well."""
        if self._held is not None:
            # The peer said all it had to say: hand over what was held back, all of it.
            self._deliver_held(limit=False)
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
        self._held = None
        if self._held_handle is not None:
            self._held_handle.cancel()
            self._held_handle = None
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
            self._codec_failed(exc)
            return
        held = self._held
        if held is not None:  # (a transport that delivered data after pause_reading)
            items = held[self._held_at:] + items
            self._held = None
        self._deliver(items, 0, True)

    def _codec_failed(self, exc: Exception) -> None:
        self.logger.exception("Codec failed on data from %s", self.address)
        self._protocol_error(exc)

    def _deliver(self, items: List[Any], i: int, limit: bool) -> None:
        """Hand ``items[i:]`` to the handler: one burst, or up to a pause (see MAX_BURST).

        What is left is held, with reading paused, until the next loop iteration (or until
        the handler resumes reading).  The write-buffer limit is checked as the replies are
        written, so a client that does not read is cut off within one burst.
        """
        handler = self.handler
        n = len(items)
        end = i + self.max_burst if limit else n
        self._in_receive = True
        try:
            while i < n:
                if self.closing:
                    break
                if i >= end or self._paused and limit:
                    self._hold(items, i)
                    break
                item = items[i]
                i += 1
                try:
                    if isinstance(item, Exception):
                        handler.decode_error(self, item)
                    else:
                        handler.message_received(self, item)
                except Exception:
                    self.logger.exception("Handler failed on %r from %s", item, self.address)
            else:
                # A pending message of max_msg_size bytes cannot be completed within the
                # limit (its terminator counts), matching the KATCP codec's own limit check.
                # (Checked once per read, whatever the codec: binary codecs have no
                # terminator byte.)
                if not self.closing:
                    size = self.codec.buffer_size
                    if size >= self.max_msg_size:
                        too_long = MessageTooLong(self.max_msg_size, size)
                        try:
                            handler.decode_error(self, too_long)
                        except Exception:
                            self.logger.exception("Handler decode_error failed for %s",
                                                  self.address)
                        self._protocol_error(too_long)
        finally:
            self._in_receive = False
            others = self._flush_also
            if others is not None:
                self._flush_also = None
                self._flush_others(others)
        if self._pending and not self.closing:
            self._flush()

    def flush_with_receive(self, other: Connection) -> None:
        """Send what is written to `other` at the end of this connection's current read.

        For a handler that answers on another connection (a proxy relaying a reply): the
        messages written to `other` while this read's messages are handed over go out in
        one transport write when they all have been, as this connection's own replies do,
        instead of one loop iteration later.  Call it from ``message_received`` before
        writing to `other` (ioloop thread); elsewhere it does nothing.

        Parameters
        ----------
        other : Connection
            Another connection of the same event loop.
        """
        if not self._in_receive or other._in_receive:
            return  # (not in a read, or `other` is flushed by a read of its own already)
        other._in_receive = True
        if self._flush_also is None:
            self._flush_also = [other]
        else:
            self._flush_also.append(other)

    @staticmethod
    def _flush_others(others: List[Connection]) -> None:
        for other in others:
            other._in_receive = False
            if other._pending and not other.closing:
                other._flush()

    @property
    def holding(self) -> bool:
        """Whether messages already read are held back, to be handed over in the next loop
        iteration (see :meth:`_deliver`); False while reading is paused."""
        return self._held_handle is not None

    def _hold(self, items: List[Any], i: int) -> None:
        """Keep ``items[i:]`` for later and stop reading meanwhile."""
        self._held = items
        self._held_at = i
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        if not self._paused and self._held_handle is None:
            self._held_handle = self.loop.call_soon(self._deliver_held)

    def _deliver_held(self, limit: bool = True) -> None:
        self._held_handle = None
        items = self._held
        if items is None or self.closing:
            return
        self._held = None
        self._deliver(items, self._held_at, limit)
        if (self._held is None and not self._paused and self._reading_paused
                and not self.closing):
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def _protocol_error(self, exc: BaseException) -> None:
        if self.closing:
            return
        self.logger.warning("Closing connection %s: %s", self.address, exc)
        if self._close_exc is None:
            self._close_exc = exc
        self.close()

    def pause_reading(self) -> None:
        """Stop reading from the socket until :meth:`resume_reading` (back-pressure).

        Messages already read and not yet handed over wait too.
        """
        if not self._paused and self.transport is not None and not self.closing:
            self._paused = True
            if not self._reading_paused:
                self._reading_paused = True
                self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Resume reading from the socket after :meth:`pause_reading`."""
        if self._paused and self.transport is not None and not self.closing:
            self._paused = False
            if self._held is not None:
                # Messages read earlier go first; reading resumes once they are handed over.
                if self._held_handle is None:
                    self._held_handle = self.loop.call_soon(self._deliver_held)
            elif self._reading_paused:
                self._reading_paused = False
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

        Call in the ioloop thread once connected.  On a TCP connection of asyncio's
        selector loop, other threads then send on the socket themselves while nothing is
        queued, without waking the ioloop (over TLS they encrypt first, under the same
        lock); otherwise (other loops) their output is handed to the ioloop.
        """
        if self._send_lock is not None:
            return
        # Re-entrant: a flush that overflows the write buffer aborts, which clears the queue.
        self._send_lock = threading.RLock()
        self._loop_calls = loop_calls(self.loop)
        transport = self.transport
        # TLS (katcp._transport.tlsbio.TLSTransport): other threads encrypt, then send the
        # records on the TCP transport's socket.
        self._encrypt = getattr(transport, "encrypt", None)
        if self._encrypt is not None:
            transport = transport.raw  # type: ignore[union-attr]
        self._direct_sock = direct_socket(self.loop, transport)

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
                encrypt = self._encrypt
                out = data if encrypt is None else encrypt(data)
                sent = send_now(sock, out)
                if sent == len(out):
                    return
                if encrypt is None:
                    data = out[sent:]
                else:
                    # The rest is encrypted already: the TLS transport sends it first.
                    self.transport.queue_records(out[sent:])  # type: ignore[union-attr]
                    data = b""
                # The ioloop must hand the rest to the transport before anyone sends again.
                self._backlog = True
            self._pending.append(data)
            self._pending_size += len(data)
            if self._xflush:
                return  # a flush is already on its way
            self._xflush = True
        self._loop_calls.post(self._flush)  # type: ignore[union-attr]

    def write_now(self, data: bytes) -> None:
        """Send already-encoded bytes at once (ioloop thread), not at the end of the iteration.

        With :meth:`enable_threadsafe_writes` on a connection whose socket may be written
        directly, the bytes go to the socket as :meth:`write_threadsafe` sends them (no
        transport call while nothing is queued); otherwise they are queued and flushed.

        Parameters
        ----------
        data : bytes
            Encoded data, complete messages only.
        """
        if self._direct_sock is not None:
            self.write_threadsafe(data)
            return
        if self.closing or not data:
            return
        # Queued and flushed here, not through write_bytes(): that would schedule a flush
        # for the end of the iteration (cancelled at once, but the loop then polls again).
        if self._send_lock is None:
            self._pending.append(data)
            self._pending_size += len(data)
        else:
            with self._send_lock:
                self._pending.append(data)
                self._pending_size += len(data)
        self.flush()

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

