"""The HTTP CONNECT preamble of NCP "tunnel mode" (TLS and/or authentication).

In tunnel mode the client first sends::

    CONNECT ncp.service HTTP/1.1\\r\\n
    Proxy-Authorization: Basic <base64(username:password)>\\r\\n
    \\r\\n

and the server answers ``HTTP/1.1 200 OK`` (then NCP packets follow), ``401 Unauthorized``,
``403 Forbidden`` or ``405 Method Not Allowed`` (then it closes).

:class:`StreamCodec` is the sans-I/O codec a tunnel-mode connection uses: it yields one
:class:`HttpHead` for the preamble and then NCP packets, from the same byte stream.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Dict, List, NamedTuple, Tuple, Union

from .errors import DecodeError
from .packets import DEFAULT_MAX_PACKET_SIZE, PacketCodec

__all__ = [
    "HttpHead",
    "StreamCodec",
    "connect_request",
    "parse_request",
    "parse_response",
    "parse_basic_auth",
    "RESPONSE_OK",
    "RESPONSE_UNAUTHORIZED",
    "RESPONSE_FORBIDDEN",
    "RESPONSE_METHOD_NOT_ALLOWED",
    "MAX_HEAD_SIZE",
]

#: Largest HTTP head accepted (bytes).
MAX_HEAD_SIZE = 65536
SERVICE_URI = "ncp.service"

RESPONSE_OK = b"HTTP/1.1 200 OK\r\nServer: python3-ncplib\r\n\r\n"
RESPONSE_UNAUTHORIZED = (
    b"HTTP/1.1 401 Unauthorized\r\n"
    b'Proxy-Authenticate: Basic realm="CRFS RFeye Node", charset="utf-8"\r\n'
    b"Server: python3-ncplib\r\n\r\n"
)
RESPONSE_FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nServer: python3-ncplib\r\n\r\n"
RESPONSE_METHOD_NOT_ALLOWED = b"HTTP/1.1 405 Method Not Allowed\r\nServer: python3-ncplib\r\n\r\n"

_REQUEST_RE = re.compile(r"^(\S+) (\S+) HTTP/1\.1$")
_RESPONSE_RE = re.compile(r"^HTTP/1\.1 (\d+) (.+)$")


class HttpHead(NamedTuple):
    """An HTTP head: the start line and the headers (names lower-cased)."""

    start_line: str
    headers: Dict[str, str]


def connect_request(username: str = "", password: str = "") -> bytes:
    """The exact CONNECT request ncplib clients send (credentials may be empty)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return (
        f"CONNECT {SERVICE_URI} HTTP/1.1\r\nProxy-Authorization: Basic {token}\r\n\r\n"
    ).encode()


def _parse_head(data: bytes) -> HttpHead:
    text = data.decode("latin-1")
    lines = text.split("\r\n")
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise DecodeError(f"Invalid HTTP header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return HttpHead(lines[0], headers)


def parse_request(head: HttpHead) -> Tuple[str, str]:
    """Return ``(method, uri)`` of a request head; :class:`DecodeError` if malformed."""
    match = _REQUEST_RE.match(head.start_line)
    if match is None:
        raise DecodeError(f"Invalid HTTP tunnel request {head.start_line!r}")
    return match.group(1), match.group(2)


def parse_response(head: HttpHead) -> Tuple[int, str]:
    """Return ``(status, reason)`` of a response head; :class:`DecodeError` if malformed."""
    match = _RESPONSE_RE.match(head.start_line)
    if match is None:
        raise DecodeError(f"Invalid HTTP tunnel response {head.start_line!r}")
    return int(match.group(1)), match.group(2)


def parse_basic_auth(head: HttpHead) -> Tuple[str, str] | None:
    """Return ``(username, password)`` from ``Proxy-Authorization: Basic``, or None.

    As with ncplib, the decoded token must split on ``:`` into exactly two parts.
    """
    value = head.headers.get("proxy-authorization")
    if value is None:
        return None
    parts = value.split()
    if len(parts) != 2 or parts[0].lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    creds = decoded.split(":")
    if len(creds) != 2:
        return None
    return creds[0], creds[1]


class StreamCodec:
    """NCP stream codec with an optional leading HTTP head (tunnel mode).

    ``feed`` returns :class:`HttpHead`, :class:`~katcp.ncp.packets.Packet` and
    :class:`DecodeError` items in order; ``encode`` takes a packet tuple or bytes.

    Parameters
    ----------
    http_head : bool
        Expect one HTTP head before the packets.
    max_packet_size : int
        Passed to :class:`~katcp.ncp.packets.PacketCodec`.
    """

    def __init__(self, http_head: bool = False, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE):
        self.packets = PacketCodec(max_packet_size)
        self._head: bytearray | None = bytearray() if http_head else None
        self._failed = False

    @property
    def failed(self) -> bool:
        """True once a framing error made the rest of the stream undecodable."""
        return self._failed or self.packets.failed

    @property
    def buffer_size(self) -> int:
        """Bytes held for an incomplete head or packet."""
        if self._head is not None:
            return len(self._head)
        return self.packets.buffer_size

    def encode(self, packet: Union[bytes, Tuple[Any, ...]]) -> bytes:
        """Encode a packet tuple (bytes pass through unchanged)."""
        return self.packets.encode(packet)

    def feed(self, data: bytes) -> List[Any]:
        """Decode received bytes into heads, packets and errors."""
        if self._head is None:
            return self.packets.feed(data)
        if self._failed:
            return []
        head = self._head
        start = max(0, len(head) - 3)
        head += data
        end = head.find(b"\r\n\r\n", start)
        if end < 0:
            if len(head) > MAX_HEAD_SIZE:
                self._failed = True
                self._head = bytearray()
                return [DecodeError(f"HTTP head longer than {MAX_HEAD_SIZE} bytes")]
            return []
        raw = bytes(head[:end])
        rest = bytes(head[end + 4 :])
        self._head = None
        try:
            out: List[Any] = [_parse_head(raw)]
        except DecodeError as exc:
            self._failed = True
            return [exc]
        if rest:
            out.extend(self.packets.feed(rest))
        return out
