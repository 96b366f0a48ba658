"""The request link: a connection of its own from the manager to one KATCP device.

Proxied requests do not go through the inspecting client that mirrors the device's sensors:
on a busy device they would queue behind its ``#sensor-status`` stream, and the generic
client machinery (a pending-request object, callbacks, a timer per request) costs more than
the proxying itself.  The link instead

* writes the client's request upstream with its name changed to the device's name
  (``rx1-echo`` -> ``echo``) and its message id replaced by the link's own, then restores
  the message (it is encoded at once);
* routes what comes back by message id to the client: each reply inform and the reply get
  the manager-side name and are sent with the client's message id, through the client
  connection's ``reply_inform``/``reply`` unless its class keeps them (the server's rule,
  :class:`katcp.server.ClientConnection`);
* times requests out with one timer per link (not per request) and fails every pending
  request at once when the device goes away.

A link needs the device to support message ids (it reads ``#version-connect
katcp-protocol``) and logs in first when the device spec has credentials.  Until it is
ready, :meth:`RequestLink.forward` returns False and the caller uses the inspecting client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Dict, Tuple

from katcp.connection import Connection, open_connection
from katcp.core import Message, ProtocolFlags
from katcp.codec import LineCodec

from .config import DeviceSpec

__all__ = ["RequestLink"]

log = logging.getLogger("katcp.manager")

_REPLY = Message.REPLY
_INFORM = Message.INFORM
#: Message ids of the link wrap around below the protocol's limit.
_MAX_MID = 2_000_000_000
#: Seconds between attempts to (re)connect while the device is up.
RETRY_DELAY = 1.0

#: ``done(connection, request, reply)`` after the reply was sent (for the audit log).
Done = Callable[[Any, Message, Message], None]
# upstream mid -> (client connection, client's request, deadline, done callback)
_Pending = Tuple[Any, Message, float, Done]


class RequestLink:
    """Forward requests to one device over a connection of their own.

    Parameters
    ----------
    spec : DeviceSpec
        Where the device is, with its TLS and credentials.
    device_name : str
        The device's name (for messages).
    unreachable : callable
        ``unreachable(local_name) -> Message``: the reply for requests pending when the
        link goes away.
    """

    def __init__(self, spec: DeviceSpec, device_name: str,
                 unreachable: Callable[[str], Message]) -> None:
        self.spec = spec
        self.device_name = device_name
        self._unreachable = unreachable
        self._conn: Connection | None = None
        self._connecting: asyncio.Future | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0  # (when _timer runs)
        self._pending: Dict[bytes, _Pending] = {}
        self._next_mid = 0
        self._login_mid: bytes | None = None
        self._wanted = False
        #: True while requests may be forwarded (connected, message ids, logged in).
        self.ready = False

    # -- life cycle -------------------------------------------------------------------
    def open(self) -> None:
        """Connect (and reconnect while wanted); returns at once (loop thread)."""
        self._wanted = True
        if self._conn is None and self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())

    def close(self) -> None:
        """Disconnect, fail what is pending and stop reconnecting."""
        self._wanted = False
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        conn = self._conn
        if conn is not None:
            conn.abort()
        self._lost()

    async def _connect(self) -> None:
        spec = self.spec
        try:
            conn = await open_connection(self, LineCodec(), spec.host, spec.port,
                                         ssl=spec.client_ssl_context(), timeout=10,
                                         logger=log)
        except (OSError, asyncio.TimeoutError) as exc:
            log.debug("Device %s: request link failed: %s", self.device_name, exc)
            self._connecting = None
            self._schedule_retry()
            return
        self._connecting = None
        if not self._wanted:
            conn.abort()

    def _schedule_retry(self) -> None:
        if self._wanted and self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(RETRY_DELAY, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        if self._wanted:
            self.open()

    # -- forwarding -------------------------------------------------------------------
    def forward(self, connection: Any, msg: Message, suffix: str, timeout: float,
                done: Done) -> bool:
        """Send `msg` (from the client on `connection`) to the device as ``?<suffix>``.

        Returns False, doing nothing, when the link is not ready.  Otherwise the reply
        (or a fail reply on timeout or when the device goes away) is sent to the client
        and then ``done(connection, msg, reply)`` is called.
        """
        conn = self._conn
        if not self.ready or conn is None or conn.closing:
            return False
        mid_number = self._next_mid + 1
        if mid_number > _MAX_MID:
            mid_number = 1
        self._next_mid = mid_number
        mid = b"%d" % mid_number
        deadline = conn.loop.time() + timeout
        self._pending[mid] = (connection, msg, deadline, done)
        # Encode the message renamed and re-numbered, then put its name and id back (the
        # reply to the client needs them); the bytes go out now, not at the end of the
        # loop iteration.
        name, client_mid = msg.name, msg.mid
        msg.name, msg.mid = suffix, mid
        try:
            data = conn.codec.encode(msg)
        finally:
            msg.name, msg.mid = name, client_mid
        conn.write_now(data)
        timer = self._timer
        if timer is None or deadline < self._timer_when:  # (shorter than the rest's)
            if timer is not None:
                timer.cancel()
            self._timer = conn.loop.call_at(deadline, self._expire)
            self._timer_when = deadline
        return True

    def _expire(self) -> None:
        """Fail the requests whose time is up; run again at the next deadline."""
        self._timer = None
        conn = self._conn
        if conn is None:
            return
        now = conn.loop.time()
        due = [mid for mid, entry in self._pending.items() if entry[2] <= now]
        for mid in due:
            connection, msg, _deadline, done = self._pending.pop(mid)
            self._answer(connection, msg, Message.reply(
                msg.name, "fail", f"Request {msg.name} timed out at device "
                f"{self.device_name}."), done)
        if self._pending:
            self._timer_when = min(e[2] for e in self._pending.values())
            self._timer = conn.loop.call_at(self._timer_when, self._expire)

    @staticmethod
    def _answer(connection: Any, msg: Message, reply: Message, done: Done) -> None:
        reply.mid = msg.mid
        if connection._direct_reply:
            connection._send(reply)
        else:
            connection.reply(reply, msg)
        done(connection, msg, reply)

    # -- ConnectionHandler ------------------------------------------------------------
    def connection_made(self, conn: Connection) -> None:
        """The link is connected; it is ready once the device has greeted (and login)."""
        self._conn = conn
        self.ready = False
        self._login_mid = None

    def message_received(self, conn: Connection, msg: Message) -> None:
        """Route a reply or reply inform to its client by message id."""
        mid = msg.mid
        if mid is not None:
            entry = self._pending.get(mid)
            if entry is not None:
                connection, orig, _deadline, done = entry
                msg.name = orig.name
                # What goes to the client leaves with the end of this read, in this loop
                # pass (not a pass later, as a write from outside its own read would).
                conn.flush_with_receive(connection._conn)
                if msg.mtype == _REPLY:
                    del self._pending[mid]
                    self._answer(connection, orig, msg, done)
                elif msg.mtype == _INFORM:
                    msg.mid = orig.mid
                    if connection._direct_inform:
                        connection._send(msg)
                    else:
                        connection.reply_inform(msg, orig)
                return
            if mid == self._login_mid and msg.mtype == _REPLY:
                self._login_mid = None
                if msg.reply_ok():
                    self.ready = True
                else:
                    log.warning("Device %s: the request link could not log in: %s",
                                self.device_name, msg)
                return
        if msg.mtype == _INFORM and msg.name == "version-connect" and msg.arguments \
                and msg.arguments[0] == b"katcp-protocol":
            self._greeted(conn, msg)

    def _greeted(self, conn: Connection, msg: Message) -> None:
        version = msg.arguments[1] if len(msg.arguments) > 1 else b""
        if not ProtocolFlags.parse_version(version).message_ids:
            log.info("Device %s has no message ids: requests go through its client",
                     self.device_name)
            return
        spec = self.spec
        if spec.username:
            self._next_mid += 1
            self._login_mid = b"%d" % self._next_mid
            conn.write(Message.request("login", spec.username, spec.password or "",
                                       mid=self._login_mid))
        else:
            self.ready = True

    def decode_error(self, conn: Connection, exc: Exception) -> None:
        """Log a line from the device that does not parse."""
        log.warning("Device %s: bad message on the request link: %s", self.device_name, exc)

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        """Fail the pending requests; reconnect in a while if still wanted."""
        if conn is self._conn:
            self._conn = None
            self._lost()
            self._schedule_retry()

    def _lost(self) -> None:
        self.ready = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        for connection, msg, _deadline, done in pending.values():
            try:
                self._answer(connection, msg, self._unreachable(msg.name), done)
            except Exception:
                log.exception("Device %s: failing %s", self.device_name, msg.name)
