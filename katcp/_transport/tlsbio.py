"""TLS driven by the connection itself: :class:`TLSTransport` (see :mod:`katcp.connection`).

asyncio's own TLS (``ssl=`` to ``create_connection``/``create_server``) puts a protocol
layer of its own between the socket and our :class:`~katcp._transport.protocol.Connection`,
with buffers, flow control and callbacks of its own on every read and write: it cost a TLS
request about 1.5-1.9 times a plaintext one.  Here the event loop gives a plain TCP
transport and TLS runs in memory (:meth:`ssl.SSLContext.wrap_bio`) in one object that is
both sides at once:

* to the TCP transport it is the protocol: what arrives goes into the incoming BIO and
  the plaintext read out of the :class:`ssl.SSLObject` goes straight to the connection;
* to the :class:`Connection` it is the transport: a write is encrypted into the outgoing
  BIO and handed to the TCP transport in the same call.

The handshake runs first, bounded by a timeout (a peer that never speaks TLS is dropped
when it expires); only once it is done does the connection learn of the transport
(``Connection.connection_made``), as with asyncio's TLS.  A failed handshake never reaches
the connection: the client's :func:`~katcp.connection.open_connection` raises the
:class:`ssl.SSLError`; a server logs it and drops the socket.  After the handshake, TLS 1.3
post-handshake messages (session tickets) are read like data and yield none; the peer's
``close_notify`` is an end of file; :meth:`TLSTransport.close` sends ours.  Renegotiation
(TLS 1.2 only) is not supported: the contexts of :mod:`katcp._security.tls` refuse it
(``OP_NO_RENEGOTIATION``), and where it happens anyway, a write it holds up ends the
connection.

Threads: the ``SSLObject`` must not be used by two threads at once.  Once a connection
allows other threads to write (``Connection.enable_threadsafe_writes``) its send lock
covers every use: the loop thread takes it to read, and writers hold it anyway.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from typing import Any, List

from katcp._transport.protocol import format_address

log = logging.getLogger("katcp.connection")

#: Seconds a server gives a new connection to complete the TLS handshake.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds a client without a connect timeout gives the TLS handshake (asyncio's default).
CLIENT_HANDSHAKE_TIMEOUT = 60.0
#: Largest read from the SSLObject at once (TLS records hold at most 16 KiB).
_READ_SIZE = 65536


class TLSHandshakeTimeout(asyncio.TimeoutError):
    """The peer did not complete the TLS handshake in time (it may not speak TLS)."""


class TLSTransport(asyncio.Transport, asyncio.BufferedProtocol):
    """TLS over a plain TCP transport, in memory: its protocol below, a transport above.

    Created by :func:`~katcp.connection.open_connection` and
    :func:`~katcp.connection.create_server` for their ``ssl=`` contexts; never by users.

    Parameters
    ----------
    conn : Connection
        The connection it serves (told of this transport once the handshake is done).
    context : ssl.SSLContext
        TLS context.
    server_side : bool
        Whether this is the server end.
    server_hostname : str, optional
        Client: the name (or address) the server's certificate must be for; also sent as
        SNI when it is a name.
    handshake_timeout : float, optional
        Seconds allowed for the handshake (None: no limit of its own).
    waiter : asyncio.Future, optional
        Client: resolved once the handshake is done (with the exception if it fails).
    buffer : memoryview
        Receive buffer (may be shared with every connection of the loop: what arrives in it
        is copied into the incoming BIO at once).
    """

    # (No __slots__: asyncio.Transport keeps its extra info in an instance attribute.)

    def __init__(self, conn: Any, context: _ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None, handshake_timeout: float | None = None,
                 waiter: asyncio.Future | None = None, buffer: memoryview) -> None:
        super().__init__()
        self.conn = conn
        self.context = context
        self.server_side = server_side
        self.server_hostname = server_hostname
        self.handshake_timeout = handshake_timeout
        self.raw: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop = conn.loop
        self._incoming = _ssl.MemoryBIO()
        self._outgoing = _ssl.MemoryBIO()
        self.sslobj: _ssl.SSLObject | None = None
        self._buf = buffer
        self._waiter = waiter
        self._timer: asyncio.TimerHandle | None = None
        self._ready = False  # handshake done, connection told
        self._closing = False
        self._exc: BaseException | None = None
        self._records: List[bytes] = []  # encrypted by another thread, not yet sent

    def __repr__(self) -> str:
        return f"<TLSTransport {getattr(self.conn, 'address', '?')}>"

    # ------------------------------------------------------------------ TCP side (protocol)
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the handshake on the fresh TCP transport (asyncio callback)."""
        self.raw = transport  # type: ignore[assignment]
        try:
            self.sslobj = self.context.wrap_bio(
                self._incoming, self._outgoing, server_side=self.server_side,
                server_hostname=None if self.server_side else self.server_hostname or None)
        except Exception as exc:  # e.g. a bad server_hostname
            self._handshake_failed(exc)
            return
        if self.handshake_timeout is not None:
            self._timer = self.loop.call_later(self.handshake_timeout, self._handshake_expired)
        self._handshake()

    def get_buffer(self, sizehint: int) -> memoryview:
        """The receive buffer (asyncio callback)."""
        return self._buf

    def buffer_updated(self, nbytes: int) -> None:
        """Feed ``nbytes`` of TLS records to the SSLObject (asyncio callback)."""
        self._incoming.write(self._buf[:nbytes])
        if self._ready:
            self._read()
        elif self.sslobj is not None:
            self._handshake()

    def data_received(self, data: bytes) -> None:
        """Feed TLS records (transports that are not buffered)."""
        self._incoming.write(data)
        if self._ready:
            self._read()
        elif self.sslobj is not None:
            self._handshake()

    def eof_received(self) -> bool | None:
        """The peer closed its side of TCP (asyncio callback): an end of file either way."""
        if not self._ready:
            self._handshake_failed(ConnectionResetError(
                "the peer closed the connection during the TLS handshake"))
            return False
        if not self.conn.closing:
            self.conn.eof_received()
        self._send_close_notify()
        return False  # the TCP transport closes once what is queued is sent

    def connection_lost(self, exc: BaseException | None) -> None:
        """The TCP connection is gone (asyncio callback)."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._ready:
            self._handshake_failed(exc or ConnectionResetError(
                "connection lost during the TLS handshake"))
            return
        self.conn.connection_lost(self._exc or exc)

    def pause_writing(self) -> None:
        """The TCP transport's buffer is full: tell the connection (asyncio callback)."""
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        """The TCP transport's buffer drained: tell the connection (asyncio callback)."""
        self.conn.resume_writing()

    # ------------------------------------------------------------------ handshake
    def _handshake(self) -> None:
        try:
            self.sslobj.do_handshake()  # type: ignore[union-attr]
        except _ssl.SSLWantReadError:
            self._send_out()
            return
        except Exception as exc:  # SSLError, SSLCertVerificationError, ...
            self._send_out()  # the alert that tells the peer why
            self._handshake_failed(exc)
            return
        self._send_out()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._ready = True
        self.conn.connection_made(self)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._incoming.pending and not self.conn.closing:
            self._read()  # data (or session tickets) that came with the last flight

    def _handshake_expired(self) -> None:
        self._timer = None
        if self._ready or self._closing:
            return
        self._handshake_failed(TLSHandshakeTimeout(
            f"TLS handshake not done within {self.handshake_timeout:g} s"), abort=True)

    def _handshake_failed(self, exc: BaseException, abort: bool = False) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_exception(exc)
        elif self.server_side and not self._closing:
            peer = self.raw.get_extra_info("peername") if self.raw is not None else None
            log.info("TLS handshake with %s failed: %s", format_address(peer), exc)
        if not self._closing:
            self._closing = True
            raw = self.raw
            if raw is not None:
                if abort:
                    raw.abort()
                else:
                    raw.close()

    # ------------------------------------------------------------------ data
    def _read(self) -> None:
        """Decrypt what is in the incoming BIO and hand the plaintext to the connection."""
        conn = self.conn
        sslobj: Any = self.sslobj
        incoming = self._incoming
        chunks: List[bytes] = []
        eof = False
        exc: BaseException | None = None
        lock = conn._send_lock
        if lock is not None:
            lock.acquire()
        try:
            while True:
                data = sslobj.read(_READ_SIZE)
                if not data:
                    eof = True
                    break
                chunks.append(data)
                if not incoming.pending and not sslobj.pending():
                    break
        except _ssl.SSLWantReadError:
            pass  # all read (or only post-handshake messages, e.g. session tickets)
        except _ssl.SSLZeroReturnError:
            eof = True
        except _ssl.SSLError as e:
            exc = e
        finally:
            if self._outgoing.pending:
                self._send_out()  # e.g. a key update's answer
            if lock is not None:
                lock.release()
        if chunks:
            conn.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if exc is not None:
            self._fatal(exc)
        elif eof:
            # close_notify: the peer has said all it will say.
            if not conn.closing:
                conn.eof_received()
            self.close()

    def _fatal(self, exc: BaseException) -> None:
        if self._exc is None:
            self._exc = exc
        if not self._closing:
            log.warning("TLS error on %s: %s", getattr(self.conn, "address", "?"), exc)
            self._closing = True
            if self.raw is not None:
                self.raw.abort()

    def _send_out(self) -> None:
        """Send what the SSLObject wrote by itself (handshake, alerts, key updates)."""
        data = self._outgoing.read()
        raw = self.raw
        if data and raw is not None and not raw.is_closing():
            if self._records:
                self._write_records()
            raw.write(data)
            if self._ready and raw.get_write_buffer_size():
                # Held back by the TCP transport: other threads must not send directly
                # (and overtake it) until the connection's next flush says it is gone.
                self.conn._backlog = True

    def _send_close_notify(self) -> None:
        sslobj = self.sslobj
        if sslobj is None:
            return
        lock = self.conn._send_lock
        if lock is not None:
            lock.acquire()
        try:
            try:
                sslobj.unwrap()
            except (_ssl.SSLError, ValueError):
                pass  # SSLWantReadError: ours is queued, the peer's is not awaited
            if self._records:
                self._write_records()
            self._send_out()
        finally:
            if lock is not None:
                lock.release()

    # ------------------------------------------------------------ connection side (transport)
    def write(self, data: Any) -> None:
        """Encrypt ``data`` and hand the records to the TCP transport."""
        if self._closing:
            return
        if self._records:
            self._write_records()
        if data:
            try:
                self.sslobj.write(data)  # type: ignore[union-attr]
            except _ssl.SSLError as exc:  # the TLS session is broken: nothing more goes
                self._fatal(exc)
                return
            self.raw.write(self._outgoing.read())  # type: ignore[union-attr]

    def encrypt(self, data: bytes) -> bytes:
        """The TLS records carrying ``data``, for the caller to send on the socket itself.

        For ``Connection.write_threadsafe`` (any thread, holding the connection's send
        lock, while nothing waits to be sent): records are numbered, so they must go out
        in the order they were made.  What the socket does not take goes to
        :meth:`queue_records`.
        """
        if self._closing:
            return b""
        try:
            self.sslobj.write(data)  # type: ignore[union-attr]
        except _ssl.SSLError:
            return b""  # broken: the ioloop reports it, as it does a broken socket
        return self._outgoing.read()

    def queue_records(self, records: bytes) -> None:
        """Records from :meth:`encrypt` the socket did not take (any thread, send lock held).

        They go to the TCP transport ahead of anything written after them, at the next
        :meth:`write` (the connection's loop-thread flush writes, if only ``b""``).
        """
        self._records.append(records)

    def _write_records(self) -> None:
        records = self._records
        data = records[0] if len(records) == 1 else b"".join(records)
        records.clear()
        self.raw.write(data)  # type: ignore[union-attr]

    def writelines(self, list_of_data: Any) -> None:
        """Encrypt and send each buffer in turn."""
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        """Send what is queued and a ``close_notify``, then close the TCP connection."""
        if self._closing:
            return
        self._closing = True
        self._send_close_notify()
        if self.raw is not None:
            self.raw.close()

    def abort(self) -> None:
        """Close the TCP connection at once, unsent data discarded."""
        self._closing = True
        if self.raw is not None:
            self.raw.abort()

    def is_closing(self) -> bool:
        """Whether the transport is closing or closed."""
        return self._closing or self.raw is None or self.raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """TLS details (``ssl_object``, ``peercert``, ``cipher``, ...) or the TCP transport's."""
        sslobj = self.sslobj
        if sslobj is not None:
            if name == "ssl_object":
                return sslobj
            if name == "peercert":
                return sslobj.getpeercert()
            if name == "cipher":
                return sslobj.cipher()
            if name == "compression":
                return sslobj.compression()
            if name == "sslcontext":
                return self.context
        if self.raw is None:
            return default
        return self.raw.get_extra_info(name, default)

    def pause_reading(self) -> None:
        """Stop reading from the socket."""
        if self.raw is not None:
            self.raw.pause_reading()

    def resume_reading(self) -> None:
        """Resume reading from the socket."""
        if self.raw is not None:
            self.raw.resume_reading()

    def is_reading(self) -> bool:
        """Whether the socket is being read."""
        return self.raw is not None and self.raw.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Flow-control limits of the TCP transport (its buffer holds all unsent records)."""
        if self.raw is not None:
            self.raw.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple:
        """The TCP transport's ``(low, high)`` limits."""
        return self.raw.get_write_buffer_limits()  # type: ignore[union-attr]

    def get_write_buffer_size(self) -> int:
        """Bytes of TLS records not yet sent (everything written is encrypted at once)."""
        raw = self.raw
        return raw.get_write_buffer_size() if raw is not None else 0

    def can_write_eof(self) -> bool:
        """False: TLS has no half-close."""
        return False

    def get_protocol(self) -> Any:
        """The connection."""
        return self.conn

    def set_protocol(self, protocol: Any) -> None:
        """Not supported: the connection stays."""
        raise NotImplementedError("TLSTransport serves one connection")
