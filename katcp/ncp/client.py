"""NCP client: :func:`connect`."""

from __future__ import annotations

import asyncio
import getpass
import logging
import socket
import ssl as _ssl
import warnings
from typing import Union

from .. import connection as _transport
from .connection import Connection
from .errors import AuthenticationError, NCPWarning, NetworkError, NetworkTimeoutError
from .packets import DEFAULT_MAX_PACKET_SIZE
from .tunnel import StreamCodec, connect_request, parse_response

__all__ = ["connect"]

logger = logging.getLogger("katcp.ncp.client")

DEFAULT_PORT = 9999
DEFAULT_TLS_PORT = 443
DEFAULT_AUTH_PORT = 80


def _default_hostname() -> str:
    try:
        return socket.gethostname() or "python3-ncplib"
    except OSError:  # pragma: no cover - platform dependent
        return "python3-ncplib"


def _default_username() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no login name (e.g. some containers)
        return ""


async def connect(
    host: str,
    port: int | None = None,
    *,
    remote_hostname: str | None = None,
    hostname: str | None = None,
    connection_username: str | None = None,
    connection_domain: str = "",
    timeout: int = 60,
    auto_erro: bool = True,
    auto_warn: bool = True,
    auto_ackn: bool = True,
    ssl: Union[bool, _ssl.SSLContext] = False,
    username: str = "",
    password: str = "",
) -> Connection:
    """Connect to an NCP server.

    Parameters
    ----------
    host : str
        The hostname or IP address of the NCP server.
    port : int, optional
        The port of the NCP server. Defaults to 9999, or 443 with TLS, or 80 with credentials
        and no TLS.
    remote_hostname : str, optional
        Identifying hostname of the remote end (a label for logs). Defaults to ``host:port``.
    hostname : str, optional
        Identifying hostname of this client (``CIW``/``CAR``). Defaults to the system hostname.
    connection_username : str, optional
        Identifying username sent in the connection request (``CUSR``). Defaults to the login
        name of the system user.
    connection_domain : str
        Identifying domain sent in the connection request (``CDOM``).
    timeout : int
        Network timeout in seconds (> 0): connecting, each receive, closing. It is also the
        timeout offered to the server, which may change it.
    auto_erro : bool
        Raise :class:`CommandError` on receiving a field with an ``ERRO``/``ERRC`` param.
    auto_warn : bool
        Issue :class:`CommandWarning` on receiving a field with a ``WARN``/``WARC`` param.
    auto_ackn : bool
        Ignore fields with an ``ACKN`` param.
    ssl : bool or ssl.SSLContext
        Use TLS: ``True`` for a default verifying context, or a context of your own.
    username, password : str
        Authenticate with the node (HTTP CONNECT ``Proxy-Authorization: Basic``).

    Returns
    -------
    Connection
        The connected client connection (use ``async with`` to close it).

    Raises
    ------
    NCPError
        If the connection failed: :class:`NetworkError`, :class:`NetworkTimeoutError`,
        :class:`AuthenticationError`, :class:`CommandError` (the server refused), ...
    ValueError
        If ``timeout`` is not positive.
    """
    if not timeout or timeout <= 0:
        raise ValueError(f"timeout must be > 0, not {timeout!r}")
    ssl_ctx: _ssl.SSLContext | None
    if ssl is True:
        ssl_ctx = _ssl.create_default_context()
    elif ssl is False or ssl is None:
        ssl_ctx = None
    elif isinstance(ssl, _ssl.SSLContext):
        ssl_ctx = ssl
    else:
        raise TypeError(f"ssl must be a bool or ssl.SSLContext, not {type(ssl).__name__}")
    tunnel = ssl_ctx is not None or bool(username) or bool(password)
    if port is None:
        port = (
            DEFAULT_TLS_PORT
            if ssl_ctx is not None
            else (DEFAULT_AUTH_PORT if tunnel else DEFAULT_PORT)
        )
    if remote_hostname is None:
        remote_hostname = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    loop = asyncio.get_running_loop()
    conn = Connection(
        loop,
        logger=logger,
        remote_hostname=remote_hostname,
        timeout=timeout,
        auto_erro=auto_erro,
        auto_warn=auto_warn,
        auto_ackn=auto_ackn,
    )
    codec = StreamCodec(http_head=tunnel, max_packet_size=DEFAULT_MAX_PACKET_SIZE)
    try:
        await _transport.open_connection(
            conn,
            codec,
            host,
            port,
            ssl=ssl_ctx,
            timeout=timeout,
            max_msg_size=DEFAULT_MAX_PACKET_SIZE + 1,
            max_write_buffer_size=2**28,
            logger=logger,
        )
    except asyncio.TimeoutError:
        raise NetworkTimeoutError(f"Timed out connecting to {remote_hostname}") from None
    except OSError as exc:
        raise NetworkError(f"Could not connect to {remote_hostname}: {exc}") from exc
    try:
        if tunnel:
            conn._conn.write_bytes(connect_request(username, password))
            status, reason = parse_response(await conn._recv_head())
            if status == 401:
                raise AuthenticationError(f"HTTP {status} {reason}")
            if status != 200:
                raise NetworkError(f"HTTP {status} {reason}")
        await _client_handshake(
            conn,
            hostname=hostname if hostname is not None else _default_hostname(),
            username=(
                connection_username if connection_username is not None else _default_username()
            ),
            domain=connection_domain,
            timeout=int(timeout),
        )
    except BaseException:
        conn.close()
        raise
    return conn


async def _client_handshake(
    conn: Connection, *, hostname: str, username: str, domain: str, timeout: int
) -> None:
    await conn.recv_field("LINK", "HELO")
    conn.send("LINK", "CCRE", CIW=hostname, CUSR=username, CDOM=domain, LINK=timeout)
    scar = await conn.recv_field("LINK", "SCAR")
    granted = conn._decode_remote_timeout(scar)
    if granted != 0 and granted != timeout:
        warnings.warn(NCPWarning(f"Server changed connection timeout to {granted}"), stacklevel=3)
    conn.send("LINK", "CARE", CAR=hostname)
    await conn.recv_field("LINK", "SCON")
    conn._apply_timeout(granted)
