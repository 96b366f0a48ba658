"""NCP server: :func:`start_server`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl as _ssl
import warnings
from typing import Any, Awaitable, Callable, Dict, Set

from .. import connection as _transport
from .connection import Connection, next_field_id
from .errors import NCPError, NCPWarning, NetworkTimeoutError
from .packets import DEFAULT_MAX_PACKET_SIZE
from .tunnel import (
    RESPONSE_FORBIDDEN,
    RESPONSE_METHOD_NOT_ALLOWED,
    RESPONSE_OK,
    RESPONSE_UNAUTHORIZED,
    SERVICE_URI,
    StreamCodec,
    parse_basic_auth,
    parse_request,
)

__all__ = ["start_server"]

logger = logging.getLogger("katcp.ncp.server")

DEFAULT_PORT = 9999
DEFAULT_TLS_PORT = 443
DEFAULT_AUTH_PORT = 80

ClientConnected = Callable[[Connection], Awaitable[None]]
Authenticate = Callable[[str, str], Any]


class _ServerHandler:
    """Transport handler shared by all connections of one server: one session per connection."""

    def __init__(
        self,
        client_connected: ClientConnected,
        *,
        timeout: float,
        tunnel: bool,
        authenticate: Authenticate | None,
        min_timeout: int,
        max_timeout: int,
    ) -> None:
        self.client_connected = client_connected
        self.timeout = timeout
        self.tunnel = tunnel
        self.authenticate = authenticate
        self.min_timeout = min_timeout
        self.max_timeout = max_timeout
        self.sessions: Dict[Any, Connection] = {}
        self.tasks: Set[asyncio.Task] = set()

    def connection_made(self, conn: Any) -> None:
        session = Connection(
            conn.loop, logger=logger, remote_hostname=conn.address, timeout=self.timeout
        )
        session.connection_made(conn)
        self.sessions[conn] = session
        task = conn.loop.create_task(self._run(session))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def message_received(self, conn: Any, msg: Any) -> None:
        self.sessions[conn].message_received(conn, msg)

    def decode_error(self, conn: Any, exc: Exception) -> None:
        self.sessions[conn].decode_error(conn, exc)

    def connection_lost(self, conn: Any, exc: BaseException | None) -> None:
        session = self.sessions.pop(conn, None)
        if session is not None:
            session.connection_lost(conn, exc)

    async def _tunnel(self, session: Connection) -> bool:
        """Handle the HTTP CONNECT preamble; False if the client was turned away."""
        head = await session._recv_head()
        method, uri = parse_request(head)
        write = session._conn.write_bytes
        if method.upper() != "CONNECT":
            write(RESPONSE_METHOD_NOT_ALLOWED)
            return False
        if uri != SERVICE_URI:
            write(RESPONSE_FORBIDDEN)
            return False
        if self.authenticate is not None:
            creds = parse_basic_auth(head)
            ok = False
            if creds is not None:
                try:
                    ok = self.authenticate(*creds)
                    if inspect.isawaitable(ok):
                        ok = await ok
                except Exception:
                    session.logger.exception("authenticate callback failed; refusing the client")
                    ok = False
            if not ok:
                session.logger.warning("Authentication failed for %s", session.remote_hostname)
                # Unlike ncplib 6.1.0, stop here: no 200 OK, no NCP session after a 401.
                write(RESPONSE_UNAUTHORIZED)
                return False
        write(RESPONSE_OK)
        return True

    async def _handshake(self, session: Connection) -> None:
        session.send("LINK", "HELO")
        ccre = await session.recv_field("LINK", "CCRE")
        offer = session._decode_remote_timeout(ccre)
        granted = 0 if offer == 0 else min(max(offer, self.min_timeout), self.max_timeout)
        if granted != offer:
            warnings.warn(
                NCPWarning(f"Changed connection timeout from {offer} to {granted}"), stacklevel=2
            )
        if "CIW" in ccre:
            session.remote_hostname = str(ccre["CIW"])
        session.send("LINK", "SCAR", LINK=granted)
        await session.recv_field("LINK", "CARE")
        session.send("LINK", "SCON")
        session._apply_timeout(granted)

    @staticmethod
    def _send_error(session: Connection, detail: str, code: int) -> None:
        if session.is_closing():
            return
        try:
            session._send_packet(
                "LINK", (("ERRO", next_field_id(), {"ERRO": detail, "ERRC": code}),)
            )
        except Exception:  # pragma: no cover - encoding constant values cannot fail
            session.logger.exception("Could not send the error reply")

    async def _run(self, session: Connection) -> None:
        try:
            if self.tunnel and not await self._tunnel(session):
                return
            await self._handshake(session)
            await self.client_connected(session)
        except asyncio.CancelledError:
            raise
        except NCPError as exc:
            session.logger.warning("Connection from %s: %s", session.remote_hostname, exc)
            self._send_error(session, "Bad request", 400)
        except Exception:
            session.logger.exception("Unexpected error serving %s", session.remote_hostname)
            self._send_error(session, "Server error", 500)
        finally:
            session.close()


async def start_server(
    client_connected: ClientConnected,
    host: str = "0.0.0.0",
    port: int | None = None,
    *,
    timeout: int = 60,
    start_serving: bool = True,
    ssl: _ssl.SSLContext | None = None,
    authenticate: Authenticate | None = None,
    min_timeout: int = 5,
    max_timeout: int = 60,
) -> asyncio.base_events.Server:
    """Create and return an NCP server listening on ``host`` and ``port``.

    Parameters
    ----------
    client_connected : coroutine function
        Called with each client's :class:`Connection` once the handshake is done. When it
        returns, the connection is closed. An :class:`NCPError` escaping from it makes the
        server reply ``LINK ERRO`` "Bad request" (400); any other exception "Server error"
        (500); then the connection is closed.
    host : str
        The address to bind to.
    port : int, optional
        The port to bind to (0 picks a free port). Defaults to 9999, or 443 with TLS, or 80
        with ``authenticate`` and no TLS.
    timeout : int
        Network timeout in seconds: binding, the handshake, each receive before a timeout has
        been negotiated (and when the client does not negotiate), closing.
    start_serving : bool
        Start accepting connections at once.
    ssl : ssl.SSLContext, optional
        Serve over TLS.
    authenticate : callable, optional
        ``authenticate(username, password) -> bool`` (or an awaitable of bool). When given,
        authentication is mandatory; a refused client gets ``401`` and is disconnected.
    min_timeout, max_timeout : int
        Bounds the offered connection timeout is clamped to (ncplib: 5 and 60). A katcp
        extension, meant for tests that need short keep-alive periods.

    Returns
    -------
    asyncio.base_events.Server
        The listening server.

    Raises
    ------
    NetworkTimeoutError
        If binding takes longer than ``timeout``.
    OSError
        If the address cannot be bound.
    """
    tunnel = ssl is not None or authenticate is not None
    if port is None:
        port = (
            DEFAULT_TLS_PORT if ssl is not None else (DEFAULT_AUTH_PORT if tunnel else DEFAULT_PORT)
        )
    handler = _ServerHandler(
        client_connected,
        timeout=timeout,
        tunnel=tunnel,
        authenticate=authenticate,
        min_timeout=min_timeout,
        max_timeout=max_timeout,
    )

    def codec_factory() -> StreamCodec:
        return StreamCodec(http_head=tunnel, max_packet_size=DEFAULT_MAX_PACKET_SIZE)

    coro = _transport.create_server(
        handler,
        codec_factory,
        host,
        port,
        ssl=ssl,
        max_msg_size=DEFAULT_MAX_PACKET_SIZE + 1,
        max_write_buffer_size=2**28,
        logger=logger,
        start_serving=start_serving,
    )
    try:
        return await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        raise NetworkTimeoutError(f"Timed out binding {host}:{port}") from None

