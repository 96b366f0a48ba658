"""NCP (Node Communication Protocol) for katcp, with ncplib's API.

``from katcp import ncp as ncplib`` lets code written for ncplib 6.1 run unchanged::

    from katcp import ncp as ncplib

    async with await ncplib.connect("127.0.0.1", 9999) as connection:
        field = await connection.send("DSPC", "TIME", SAMP=1024, FCTR=1200).recv()
        print(field["TSDC"])

    async def client_connected(connection):
        async for field in connection:
            field.send(ACKN=1)
            field.send(TSDC=0)

    server = await ncplib.start_server(client_connected, "0.0.0.0", 9999)

Contents: :func:`connect`, :func:`start_server`, :class:`Connection`, :class:`Response`,
:class:`Field`, the value wrappers :class:`u32`, :class:`i64`, :class:`u64`, :class:`f64`, the
errors and warnings, the sans-I/O codec in :mod:`katcp.ncp.packets`, and a blocking client for
scripts in :mod:`katcp.ncp.blocking`. Connections run on katcp's shared transport
(:mod:`katcp.connection`).

Where this differs from ncplib 6.1.0 it fixes ncplib bugs listed in the protocol reference:
malformed packets always raise :class:`DecodeError` (never a bare ``struct.error``, ``ValueError``
or an endless loop); an unknown param type decodes as raw bytes with a :class:`DecodeWarning`;
fields after a dropped ``ACKN``/``ERRO``/``WARN`` field in the same packet are delivered; the
keep-alive interval is at least 1 s (no flood when a peer grants 1 s); a server refusing a
client's credentials closes the connection after ``401``; identifiers longer than 4 bytes are
cut with an :class:`NCPWarning` instead of silently; out-of-range values raise
:class:`EncodeRangeError` (a ``ValueError`` and an ``OverflowError``).
"""

from .client import connect
from .connection import Connection, Field, Response
from .errors import (
    AuthenticationError,
    CommandError,
    CommandWarning,
    ConnectionClosed,
    DecodeError,
    DecodeWarning,
    EncodeRangeError,
    NCPError,
    NCPWarning,
    NetworkError,
    NetworkTimeoutError,
)
from .server import start_server
from .values import f64, i64, u32, u64

__all__ = [
    "connect",
    "start_server",
    "Connection",
    "Field",
    "Response",
    "AuthenticationError",
    "CommandError",
    "CommandWarning",
    "ConnectionClosed",
    "DecodeError",
    "DecodeWarning",
    "EncodeRangeError",
    "NCPError",
    "NCPWarning",
    "NetworkError",
    "NetworkTimeoutError",
    "f64",
    "i64",
    "u32",
    "u64",
]


def __getattr__(name: str):
    # katcp.ncp.blocking needs tornado (the managed ioloop): import it on first use only.
    if name == "blocking":
        import importlib

        return importlib.import_module(".blocking", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
