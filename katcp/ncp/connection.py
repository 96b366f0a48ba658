"""NCP sessions: :class:`Connection`, :class:`Response` and :class:`Field`.

A :class:`Connection` is the NCP session on top of one :class:`katcp.connection.Connection`
(the shared transport) carrying the NCP :class:`~katcp.ncp.tunnel.StreamCodec`. It is the
transport's handler: decoded packets are split into :class:`Field` objects and queued; the
receive methods take them off the queue, each wait bounded by the receive timeout (any packet,
keep-alives included, restarts it). Keep-alives are sent while the sender is idle.

Create connections with :func:`katcp.ncp.connect` or :func:`katcp.ncp.start_server`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
import warnings
from collections import deque
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Deque, Iterable, Mapping, NamedTuple, Set, Tuple

from .._aio.loopcalls import Outcome

from .errors import (
    CommandError,
    CommandWarning,
    ConnectionClosed,
    DecodeError,
    DecodeWarning,
    NCPError,
    NetworkError,
    NetworkTimeoutError,
)
from .packets import Packet, encode_packet
from .tunnel import HttpHead

__all__ = ["Connection", "Response", "Field"]

_UTC = timezone.utc
_now = datetime.now
#: Keep-alive period (s) in legacy mode (the peer did not negotiate a timeout).
LEGACY_KEEPALIVE_INTERVAL = 3.0
#: Received fields queued before reading from the socket pauses (and resumes below LOW).
RECV_HIGH_WATER = 4096
RECV_LOW_WATER = 1024


def _host_id() -> bytes:
    """The 4 info bytes ncplib sends: the first four MAC octets in reverse order."""
    return uuid.getnode().to_bytes(6, "big")[:4][::-1]


HOST_ID = _host_id()

# One field id counter per process, shared by every connection, wrapping at 2**32.
_field_ids = itertools.count()


def next_field_id() -> int:
    """Return the next field id of the process-wide counter (0, 1, ..., 2**32 - 1, 0, ...)."""
    return next(_field_ids) & 0xFFFFFFFF


class Field(dict):
    """An NCP field received by a :class:`Connection`: a dict of param name -> value.

    Attributes
    ----------
    connection : Connection
        The connection that received the field.
    packet_type : str
        The type of the packet that contained the field.
    packet_id : int
        The id of the packet that contained the field.
    packet_timestamp : datetime.datetime
        When the containing packet was sent (timezone-aware, UTC).
    name : str
        The field name.
    id : int
        The field id.
    """

    __slots__ = ("connection", "packet_type", "packet_id", "packet_timestamp", "name", "id")

    def __init__(
        self,
        connection: Connection,
        packet_type: str,
        packet_id: int,
        packet_timestamp: datetime,
        name: str,
        id: int,
        params: Iterable[Tuple[str, Any]],
    ) -> None:
        dict.__init__(self, params)
        self.connection = connection
        self.packet_type = packet_type
        self.packet_id = packet_id
        self.packet_timestamp = packet_timestamp
        self.name = name
        self.id = id

    def __repr__(self) -> str:
        return f"<Field {self.packet_type} {self.name} id={self.id} {dict.__repr__(self)}>"

    def send(self, **params: Any) -> Response:
        """Send a packet with one field in reply to this field.

        The reply has this field's packet type, field name and field id.

        Parameters
        ----------
        **params
            One keyword argument per NCP param.

        Returns
        -------
        Response
            Access to fields received in reply.

        Raises
        ------
        ValueError
            If a name or value is invalid.
        TypeError
            If a value's type is not supported.
        """
        return self.connection._send_packet(self.packet_type, ((self.name, self.id, params),))


class _ReplyWatch(NamedTuple):
    """The reply a thread waits for: packet type, (field name, field id), and its outcome."""

    packet_type: str
    key: Tuple[str, int]
    outcome: Outcome


class _AsyncIteratorMixin:
    async def recv(self) -> Field:  # pragma: no cover - overridden
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[Field]:
        return self

    async def __anext__(self) -> Field:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None


class Response(_AsyncIteratorMixin):
    """Replies to a sent packet (returned by ``send``, ``send_packet`` and ``Field.send``).

    A reply is a field with the same packet type whose (field name, field id) is one that was
    sent. As with ncplib, fields that do not match are discarded while waiting. Iterating
    (``async for field in response``) ends only when the connection closes.
    """

    __slots__ = ("connection", "packet_type", "_expected")

    def __init__(
        self, connection: Connection, packet_type: str, expected_fields: Set[Tuple[str, int]]
    ) -> None:
        self.connection = connection
        self.packet_type = packet_type
        self._expected = expected_fields

    async def recv(self) -> Field:
        """Wait for the next field received in reply to the sent packet.

        Raises
        ------
        NCPError
            If a field could not be received (timeout, closed, decode error, ERRO reply...).
        """
        recv = self.connection.recv
        while True:
            field = await recv()
            if field.packet_type == self.packet_type and (field.name, field.id) in self._expected:
                return field

    async def recv_field(self, field_name: str) -> Field:
        """Wait for the next reply field named ``field_name``."""
        while True:
            field = await self.recv()
            if field.name == field_name:
                return field


class Connection(_AsyncIteratorMixin):
    """A connection between an NCP client and an NCP server.

    Do not create it directly: use :func:`katcp.ncp.connect` or :func:`katcp.ncp.start_server`.
    ``async for field in connection`` loops over received fields until the connection closes;
    ``async with connection`` closes it on exit.

    Attributes
    ----------
    logger : logging.Logger
        The logger used by this connection.
    remote_hostname : str
        The identifying hostname of the remote end.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        logger: logging.Logger,
        remote_hostname: str,
        timeout: float,
        auto_erro: bool = False,
        auto_warn: bool = False,
        auto_ackn: bool = False,
    ) -> None:
        self.logger = logger
        self.remote_hostname = remote_hostname
        self._loop = loop
        self._timeout = timeout
        self._auto_erro = auto_erro
        self._auto_warn = auto_warn
        self._auto_ackn = auto_ackn
        self._filtered = auto_erro or auto_warn or auto_ackn
        self._conn: Any = None
        self._items: Deque[Any] = deque()
        self._waiter: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._deadline = 0.0
        self._terminal: BaseException | None = None
        self._keepalive_handle: asyncio.Handle | None = None
        self._keepalive_interval = 0.0
        self._legacy = False
        self._last_send = loop.time()
        self._info = HOST_ID
        # A reply that a thread other than the loop's waits for (see _watch_reply).
        self._reply_watch: _ReplyWatch | None = None

    def __repr__(self) -> str:
        return f"<ncp.Connection {self.remote_hostname}>"

    # ------------------------------------------------------------ transport callbacks
    def connection_made(self, conn: Any) -> None:
        """Transport callback: remember the transport connection."""
        self._conn = conn

    def message_received(self, conn: Any, msg: Any) -> None:
        """Transport callback: queue the fields of a packet (or an HTTP head)."""
        if type(msg) is Packet:
            ptype, pid, ts, _info, fields = msg
            if fields:
                append = self._items.append
                for name, fid, params in fields:
                    append(Field(self, ptype, pid, ts, name, fid, params))
                if len(self._items) > RECV_HIGH_WATER and not self._paused:
                    # The application is not keeping up: stop reading until it does.
                    self._paused = True
                    conn.pause_reading()
        else:
            self._items.append(msg)
        if self._reply_watch is not None:
            self._serve_reply_watch()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def decode_error(self, conn: Any, exc: Exception) -> None:
        """Transport callback: a packet could not be decoded."""
        if not isinstance(exc, DecodeError):
            exc = DecodeError(str(exc))
        self._items.append(exc)
        if getattr(conn.codec, "failed", False) and self._terminal is None:
            # Framing is lost: nothing more can be read from this stream.
            self._terminal = exc
            self._cancel_keepalive()
        if self._reply_watch is not None:
            self._serve_reply_watch()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def connection_lost(self, conn: Any, exc: BaseException | None) -> None:
        """Transport callback: the connection is gone."""
        self._cancel_keepalive()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._terminal is None:
            if exc is not None:
                err: NCPError = NetworkError(f"Connection to {self.remote_hostname} lost: {exc}")
                err.__cause__ = exc
            elif conn.codec.buffer_size:
                err = DecodeError(
                    f"Connection to {self.remote_hostname} closed in the middle of a packet"
                )
            else:
                err = ConnectionClosed(f"Connection to {self.remote_hostname} closed")
            self._terminal = err
        if self._reply_watch is not None:
            self._serve_reply_watch()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(False)

    # ------------------------------------------------------------ receiving
    def _check_deadline(self) -> None:
        # One lazily re-armed timer per connection instead of a timer per receive: it fires
        # at most once per timeout period while packets keep arriving.
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)
        else:
            waiter.set_result(None)

    def _pop_item(self) -> Any:
        """Take the first queued item (there is one); raise it if it is an error."""
        items = self._items
        item = items.popleft()
        if self._paused and len(items) < RECV_LOW_WATER:
            self._paused = False
            self._conn.resume_reading()
        if isinstance(item, BaseException):
            raise item
        return item

    async def _next_item(self) -> Any:
        """Next queued field / head; raise queued errors; wait at most the receive timeout."""
        items = self._items
        while True:
            if items:
                return self._pop_item()
            terminal = self._terminal
            if terminal is not None:
                raise type(terminal)(*terminal.args) from terminal.__cause__
            conn = self._conn
            if conn is not None:
                # About to block: send what this task wrote (coalesced) without waiting for
                # the transport's end-of-iteration flush.
                conn.flush()
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = self._loop.create_future()
            self._deadline = self._loop.time() + self._timeout
            timer = self._timer
            if timer is None or timer.when() > self._deadline:
                if timer is not None:
                    timer.cancel()  # the timeout got shorter (negotiated)
                self._timer = self._loop.call_at(self._deadline, self._check_deadline)
            if await waiter is None:
                raise NetworkTimeoutError(
                    f"No packet from {self.remote_hostname} within {self._timeout} s"
                )

    def _accept(self, field: Field) -> bool:
        """Client filters (auto_erro, auto_warn, auto_ackn); True if the field is delivered."""
        if self._auto_erro:
            if "ERRO" in field or "ERRC" in field:
                raise CommandError(field, field.get("ERRO"), field.get("ERRC"))
            if field.name == "ERRO":
                return False
        if self._auto_warn:
            if "WARN" in field or "WARC" in field:
                warnings.warn(
                    CommandWarning(field, field.get("WARN"), field.get("WARC")), stacklevel=4
                )
            if field.name == "WARN":
                return False
        if self._auto_ackn and "ACKN" in field:
            return False
        return True

    async def recv(self) -> Field:
        """Wait for the next field received by the connection.

        Raises
        ------
        NetworkTimeoutError
            If no packet (of any kind) arrives within the receive timeout.
        ConnectionClosed
            If the peer closed the connection.
        CommandError
            (client, ``auto_erro``) for a field with an ``ERRO`` or ``ERRC`` param.
        NCPError
            For any other failure (decode error, network error).
        """
        while True:
            item = await self._next_item()
            if type(item) is Field and (not self._filtered or self._accept(item)):
                return item

    async def recv_field(self, packet_type: str, field_name: str) -> Field:
        """Wait for the next field with the given packet type and field name."""
        while True:
            field = await self.recv()
            if field.packet_type == packet_type and field.name == field_name:
                return field

    async def _recv_head(self) -> HttpHead:
        while True:
            item = await self._next_item()
            if type(item) is HttpHead:
                return item

    # ------------------------------------------------------------ sending
    def _send_packet(
        self, packet_type: str, fields: Iterable[Tuple[str, int, Mapping[str, Any]]]
    ) -> Response:
        encoded = [(name, fid, params.items()) for name, fid, params in fields]
        data = encode_packet(packet_type, 1, _now(_UTC), self._info, encoded)
        self._conn.write_bytes(data)
        self._last_send = self._loop.time()
        return Response(self, packet_type, {(name, fid) for name, fid, _ in encoded})

    # ------------------------------------------------------------ requests from other threads
    def _request_from_thread(
        self, packet_type: str, field_name: str, params: Mapping[str, Any], outcome: Outcome
    ) -> bool:
        """Send a one-field packet from a thread other than the loop's; hand its reply over.

        The packet is encoded and written in the calling thread (the transport connection's
        thread-safe write, enabled by the caller in the loop thread); the loop thread settles
        ``outcome`` with the first reply field, or with the error that ends the wait, taking
        fields off the queue as :meth:`Response.recv` would.  Only the reply crosses threads.
        Returns False, having sent nothing, when the connection is already closed or failed:
        the caller then takes the ordinary path, which reports why.  One request at a time:
        the caller clears the watch with :meth:`_drop_reply_watch` once its wait is over, so
        the watch is only ever written by the one thread that waits.
        """
        conn = self._conn
        fid = next_field_id()
        data = encode_packet(
            packet_type, 1, _now(_UTC), self._info, ((field_name, fid, params.items()),)
        )
        self._reply_watch = _ReplyWatch(packet_type, (field_name, fid), outcome)
        # Checked after the watch is up: a failure from now on settles the outcome.
        if conn is None or conn.closing or self._terminal is not None:
            self._reply_watch = None
            return False
        conn.write_threadsafe(data)
        self._last_send = self._loop.time()  # (a monotonic clock: any thread may read it)
        return True

    def _drop_reply_watch(self, outcome: Outcome) -> None:
        """Stop handing a reply to ``outcome`` (the waiting thread, once its wait is over)."""
        watch = self._reply_watch
        if watch is not None and watch.outcome is outcome:
            self._reply_watch = None

    def _serve_reply_watch(self) -> None:
        """Loop thread: hand the awaited reply (or what ends the wait) to the waiting thread."""
        # Only the waiting thread sets and clears the watch (see _request_from_thread); once
        # its outcome is settled or given up, fields stay queued for ordinary receivers.
        watch = self._reply_watch
        if watch is None:
            return
        outcome = watch.outcome
        if not outcome.pending:
            return
        try:
            while self._items:
                item = self._pop_item()
                if (
                    type(item) is Field
                    and (not self._filtered or self._accept(item))
                    and item.packet_type == watch.packet_type
                    and (item.name, item.id) == watch.key
                ):
                    break
            else:
                terminal = self._terminal
                if terminal is None:
                    return  # not yet
                raise type(terminal)(*terminal.args) from terminal.__cause__
        except Exception as exc:
            outcome.settle(None, exc)
        else:
            outcome.settle(item, None)

    def send_packet(self, packet_type: str, **fields: Mapping[str, Any]) -> Response:
        """Send a packet containing several fields.

        Parameters
        ----------
        packet_type : str
            The packet type identifier.
        **fields
            One keyword argument per field: field name -> dict of param name -> value.

        Returns
        -------
        Response
            Access to the fields received in reply.

        Raises
        ------
        ValueError
            If a name or value is invalid.
        TypeError
            If a value's type is not supported.
        """
        return self._send_packet(
            packet_type, [(name, next_field_id(), params) for name, params in fields.items()]
        )

    def send(self, packet_type: str, field_name: str, **params: Any) -> Response:
        """Send a packet containing one field.

        Parameters
        ----------
        packet_type : str
            The packet type identifier, e.g. ``"DSPC"``.
        field_name : str
            The field name, e.g. ``"TIME"``.
        **params
            One keyword argument per NCP param.

        Returns
        -------
        Response
            Access to the fields received in reply.

        Raises
        ------
        ValueError
            If a name or value is invalid.
        TypeError
            If a value's type is not supported.
        """
        return self._send_packet(packet_type, ((field_name, next_field_id(), params),))

    # ------------------------------------------------------------ timeout and keep-alive
    def _apply_timeout(self, granted: int) -> None:
        """Apply the negotiated timeout and start keep-alives (after SCON)."""
        self._cancel_keepalive()
        if granted > 0:
            self._timeout = granted
            self._legacy = False
            self._keepalive_interval = float(max(1, int(granted * 0.66)))
            self._keepalive_handle = self._loop.call_at(
                self._last_send + self._keepalive_interval, self._keepalive
            )
        else:
            self._legacy = True
            self._keepalive_interval = LEGACY_KEEPALIVE_INTERVAL
            self._keepalive_handle = self._loop.call_soon(self._keepalive)

    def _keepalive(self) -> None:
        self._keepalive_handle = None
        conn = self._conn
        if conn is None or conn.closing:
            return
        now = self._loop.time()
        due = self._last_send + self._keepalive_interval
        if not self._legacy and now < due - 0.001:
            # Ordinary traffic postponed it.
            self._keepalive_handle = self._loop.call_at(due, self._keepalive)
            return
        stamp = _now(_UTC).replace(microsecond=0)
        conn.write_bytes(encode_packet("LINK", 0, stamp, self._info, ()))
        if not self._legacy:
            self._last_send = now
        self._keepalive_handle = self._loop.call_at(now + self._keepalive_interval, self._keepalive)

    def _cancel_keepalive(self) -> None:
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None

    @staticmethod
    def _decode_remote_timeout(field: Field) -> int:
        value = field.get("LINK", 0)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return int(value)
        warnings.warn(
            DecodeWarning(f"Invalid LINK {field.name} LINK param: {value!r}"), stacklevel=3
        )
        return 0

    # ------------------------------------------------------------ closing
    @property
    def transport(self) -> Any:
        """The :class:`asyncio.WriteTransport` used by this connection."""
        return self._conn.transport if self._conn is not None else None

    def is_closing(self) -> bool:
        """True if the connection is closing (it should not be written to)."""
        return self._conn is None or self._conn.closing

    def close(self) -> None:
        """Close the connection (nothing is sent: NCP has no goodbye packet)."""
        self._cancel_keepalive()
        if self._conn is not None:
            self._conn.close()

    async def wait_closed(self) -> None:
        """Wait for the connection to finish closing, at most the connection timeout.

        Raises
        ------
        NetworkTimeoutError
            If closing takes longer than the timeout.
        """
        if self._conn is None:
            return
        try:
            await asyncio.wait_for(self._conn.wait_closed(), self._timeout)
        except asyncio.TimeoutError:
            raise NetworkTimeoutError(
                f"Closing the connection to {self.remote_hostname} timed out"
            ) from None

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()
