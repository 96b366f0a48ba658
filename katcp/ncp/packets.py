"""Sans-I/O NCP packet codec.

:func:`encode_packet` and :func:`decode_packet` take and return the same shapes as ncplib's
functions of those names::

    encode_packet(packet_type, packet_id, timestamp, info, fields) -> bytes
    decode_packet(data) -> (packet_type, packet_id, timestamp, info,
                            [(field_name, field_id, [(param_name, value), ...]), ...])

:class:`PacketCodec` is the streaming form used by the shared transport
(:mod:`katcp.connection`): ``feed(bytes) -> list[Packet | DecodeError]``,
``encode(packet) -> bytes`` and ``buffer_size``.

The wire format is described in ``reference/ncp-protocol.md``. Differences from ncplib 6.1.0,
all on malformed input or bad arguments: every malformed packet raises :class:`DecodeError`
(never ``struct.error``, a bare ``ValueError`` or an endless loop); an unknown param type
issues :class:`DecodeWarning` and decodes as the raw payload bytes; identifiers longer than
4 bytes are still cut to 4 bytes (as on the wire) but with an :class:`NCPWarning`; bad
arguments raise ``TypeError`` or ``ValueError``.

Decisions the reference leaves open: the pre-3.0 "embedded footer" tolerance is **not**
brought back (such packets are a :class:`DecodeError`, as with 6.1.0); identifiers are not
checked for case or character set (6.1.0 does not either, and nodes send odd names).
Integer params with a payload of the wrong size decode from the whole payload region, like
ncplib, so values match what an ncplib peer sees.
"""

from __future__ import annotations

import struct
import time
import warnings
from operator import itemgetter
from array import array
from datetime import datetime, timezone
from typing import Any, Iterable, List, NamedTuple, Tuple, Union

from .errors import DecodeError, DecodeWarning, EncodeRangeError, NCPWarning
from .values import (
    _PADS,
    DECODERS,
    ENCODERS,
    MAX_PARAM_SIZE,
    TYPE_I32,
    TYPE_RAW,
    TYPE_STRING,
    array_parts,
    encode_param,
    u32,
)

__all__ = [
    "Packet",
    "PacketCodec",
    "encode_packet",
    "decode_packet",
    "encode_identifier",
    "decode_identifier",
    "PACKET_HEADER",
    "PACKET_FOOTER",
    "PACKET_HEADER_SIZE",
    "PACKET_FOOTER_SIZE",
    "FIELD_HEADER_SIZE",
    "PARAM_HEADER_SIZE",
    "PACKET_VERSION",
    "DEFAULT_MAX_PACKET_SIZE",
]

Param = Tuple[str, Any]
FieldTuple = Tuple[str, int, List[Param]]


class Packet(NamedTuple):
    """A decoded NCP packet (a tuple, so it compares equal to ncplib's plain tuples)."""

    packet_type: str
    packet_id: int
    timestamp: datetime
    info: bytes
    fields: List[FieldTuple]


PACKET_HEADER = b"\xdd\xcc\xbb\xaa"
PACKET_FOOTER = b"\xaa\xbb\xcc\xdd"
_FOOTER_BYTES = b"\x00\x00\x00\x00" + PACKET_FOOTER
PACKET_HEADER_SIZE = 32
PACKET_FOOTER_SIZE = 8
FIELD_HEADER_SIZE = 12
PARAM_HEADER_SIZE = 8
PACKET_VERSION = 1
#: Default largest packet the streaming decoder accepts (a 64 MiB field plus overhead).
DEFAULT_MAX_PACKET_SIZE = 2**26 + 1024

_HEADER = struct.Struct("<4s4sIIIII4s")
_HEADER_PACK = _HEADER.pack
_HEADER_UNPACK = _HEADER.unpack_from
_FIELD = struct.Struct("<4sII")
_FIELD_PACK = _FIELD.pack
_FIELD_UNPACK = _FIELD.unpack_from
_PARAM_UNPACK = struct.Struct("<4sI").unpack_from
_U32_UNPACK = struct.Struct("<I").unpack_from
_P_I32 = struct.Struct("<4sIi").pack
_U_I32 = struct.Struct("<i").unpack_from
_U_U32 = _U32_UNPACK
_ST_I32 = 3 | (TYPE_I32 << 24)
_ST_STRING = TYPE_STRING << 24
_ST_RAW = TYPE_RAW << 24
_MAX_RAW = MAX_PARAM_SIZE - 8
_P_HDR = struct.Struct("<4sI").pack
_STR_TAILS = (b"\x00\x00\x00\x00", b"\x00\x00\x00", b"\x00\x00", b"\x00")
_MAX_U24 = 2**24 - 1

_UTC = timezone.utc
_datetime = datetime
_gmtime = time.gmtime
#: (seconds since the epoch, its (year, month, day, hour, minute, second) in UTC).
_LAST_SECOND: Tuple[int, Tuple[int, int, int, int, int, int]] = (-1, (1970, 1, 1, 0, 0, 0))
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)

# Identifier caches (bounded): str -> wire bytes, wire bytes -> str.
_ENC_NAMES: dict = {}
_DEC_NAMES: dict = {}
_CACHE_LIMIT = 4096


def encode_identifier(name: str) -> bytes:
    """Encode an identifier (packet type, field or param name) as its wire bytes.

    The name is UTF-8 encoded. Shorter than 4 bytes: the wire form is NUL padded (the
    returned bytes are unpadded; struct packing pads). Longer than 4 bytes: it is cut to 4
    bytes, as ncplib does, and an :class:`NCPWarning` is issued.

    Raises
    ------
    TypeError
        If ``name`` is not a ``str``.
    """
    try:
        return _ENC_NAMES[name]
    except (KeyError, TypeError):
        pass
    if type(name) is not str:
        raise TypeError(f"NCP identifier must be str, not {type(name).__name__}: {name!r}")
    data = name.encode("utf-8")
    if len(data) > 4:
        warnings.warn(
            f"NCP identifier {name!r} is longer than 4 bytes; sent as {data[:4]!r}",
            NCPWarning,
            stacklevel=3,
        )
        return data[:4]
    if len(_ENC_NAMES) < _CACHE_LIMIT:
        _ENC_NAMES[name] = data
    return data


def decode_identifier(data: bytes) -> str:
    """Decode an identifier: strip trailing NULs and spaces, then Latin-1."""
    try:
        return _DEC_NAMES[data]
    except KeyError:
        pass
    name = data.rstrip(b"\x00 ").decode("latin-1")
    if len(_DEC_NAMES) < _CACHE_LIMIT:
        _DEC_NAMES[data] = name
    return name


def _encode_timestamp(timestamp: datetime) -> Tuple[int, int]:
    if type(timestamp) is not datetime:
        if not isinstance(timestamp, datetime):
            raise TypeError(f"timestamp must be a datetime, not {type(timestamp).__name__}")
    if timestamp.tzinfo is None:
        # ncplib quirk: a naive datetime is local time.
        timestamp = timestamp.astimezone(_UTC)
    delta = timestamp - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    if not 0 <= seconds <= 0xFFFFFFFF:
        raise EncodeRangeError(
            f"timestamp {timestamp.isoformat()} is outside the NCP range "
            "1970-01-01T00:00:00Z .. 2106-02-07T06:28:15Z"
        )
    return seconds, delta.microseconds * 1000


def _encode_field(name: str, field_id: int, params: Any, chunks: List[Any]) -> int:
    """Append a field's wire chunks to ``chunks``; return the field size in bytes."""
    start = len(chunks)
    chunks.append(b"")
    append = chunks.append
    size = 12
    if type(params) is dict:
        params = params.items()
    for pname, value in params:
        try:
            pn = _ENC_NAMES[pname]
        except (KeyError, TypeError):
            pn = encode_identifier(pname)
        tv = type(value)
        if tv is int:
            try:
                append(_P_I32(pn, _ST_I32, value))
            except struct.error:
                ENCODERS[int](pn, value)  # raises the range error
                raise
            size += 12
        elif tv is str:
            data = value.encode("utf-8")
            n = len(data)
            tail = _STR_TAILS[n & 3]
            chunks += (_P_HDR(pn, ((n + 12) >> 2) | _ST_STRING), data, tail)
            size += 8 + n + len(tail)
        elif tv is array:
            header, payload, pad, n = array_parts(pn, value)
            chunks += (header, payload, pad)
            size += 8 + n + len(pad)
        elif tv is bytes:
            n = len(value)
            if n > _MAX_RAW:
                ENCODERS[bytes](pn, value)  # raises the size error
            pad = _PADS[n & 3]
            chunks += (_P_HDR(pn, ((n + 11) >> 2) | _ST_RAW), value, pad)
            size += 8 + n + len(pad)
        else:
            chunk = encode_param(pn, value)
            append(chunk)
            size += len(chunk)
    if size > _MAX_U24 * 4:
        raise EncodeRangeError(f"field {name!r} is {size} bytes, more than an NCP field can hold")
    try:
        fn = _ENC_NAMES[name]
    except (KeyError, TypeError):
        fn = encode_identifier(name)
    try:
        chunks[start] = _FIELD_PACK(fn, size >> 2, field_id)
    except struct.error:
        raise _id_error("field id", field_id) from None
    return size


def _id_error(what: str, value: Any) -> Exception:
    if type(value) is not int and not isinstance(value, int):
        return TypeError(f"{what} must be an int, not {type(value).__name__}")
    return EncodeRangeError(f"{what} {value!r} is out of range for u32 [0, 4294967295]")


def encode_packet(
    packet_type: str,
    packet_id: int,
    timestamp: datetime,
    info: bytes,
    fields: Iterable[Tuple[str, int, Iterable[Tuple[str, Any]]]],
) -> bytes:
    """Encode an NCP packet.

    Parameters
    ----------
    packet_type : str
        The packet type identifier (e.g. ``"DSPC"``).
    packet_id : int
        The u32 packet id.
    timestamp : datetime.datetime
        The packet time. Aware datetimes are converted to UTC; naive ones are taken as local
        time (as ncplib does). Resolution is 1 µs.
    info : bytes
        The 4 info bytes (NUL padded when shorter, cut when longer).
    fields : iterable of (name, id, params)
        Each field's params is an iterable of ``(name, value)`` pairs (or a dict).

    Returns
    -------
    bytes
        The complete packet.

    Raises
    ------
    TypeError
        For an unsupported value class, or a non-str name, non-int id, non-bytes info,
        non-datetime timestamp.
    ValueError
        For a value out of range for its type (:class:`EncodeRangeError`, also an
        ``OverflowError``), an unencodable string, an id or timestamp out of range.
    """
    chunks: List[Any] = [b""]
    size = 40
    for fname, fid, params in fields:
        size += _encode_field(fname, fid, params, chunks)
    chunks.append(_FOOTER_BYTES)
    if type(timestamp) is datetime and timestamp.tzinfo is _UTC:
        delta = timestamp - _EPOCH
        seconds = delta.days * 86400 + delta.seconds
        nanos = delta.microseconds * 1000
        if seconds > 0xFFFFFFFF or seconds < 0:
            seconds, nanos = _encode_timestamp(timestamp)
    else:
        seconds, nanos = _encode_timestamp(timestamp)
    try:
        pt = _ENC_NAMES[packet_type]
    except (KeyError, TypeError):
        pt = encode_identifier(packet_type)
    try:
        chunks[0] = _HEADER_PACK(
            PACKET_HEADER, pt, size >> 2, packet_id, PACKET_VERSION, seconds, nanos, info
        )
    except struct.error:
        if not isinstance(info, (bytes, bytearray)):
            raise TypeError(f"info must be bytes, not {type(info).__name__}") from None
        if size >> 2 > 0xFFFFFFFF:
            raise EncodeRangeError(f"packet of {size} bytes is too large") from None
        raise _id_error("packet id", packet_id) from None
    return b"".join(chunks)


_tuple_new = tuple.__new__
_u32 = u32


def _field_size_error(fst: int, pos: int, fend: int, end: int) -> DecodeError:
    if fend > end:
        return DecodeError(f"Field overflow by {fend - end} bytes")
    return DecodeError(f"Field size {fst & 0xFFFFFF} words is smaller than its header")


def _param_size_error(pst: int, pos: int, pend: int, fend: int) -> DecodeError:
    if pend < pos + 8:
        return DecodeError(f"Parameter size {pst & 0xFFFFFF} words is smaller than its header")
    return DecodeError(f"Parameter overflow by {pend - fend} bytes")


# ---------------------------------------------------------------- field layouts
# A node sends the same fields again and again: same param names, types and sizes, new
# values.  The first time a field is seen, its layout (every param header) is compiled into
# one struct that unpacks the whole field, and a function that builds its params from the
# unpacked values.  Later fields with the same name and size word are unpacked in one call
# and used only if every param header in them equals the compiled one, so the result is
# always what the general loop below gives.  Only small fields of i32, u32 and string params
# are compiled (the commonest control fields); anything else takes the general loop.

#: (field name + size word) -> (unpack, header getter, expected headers, build), or None for
#: a field that is not compiled.
_LAYOUTS: dict = {}
_UNSEEN = ()  # (falsy, like None: "take the general loop")
#: Compiled layouts kept (each a struct and a small function: a few KB).
_LAYOUT_LIMIT = 1024
_LAYOUT_MAX_PARAMS = 16
_LAYOUT_MAX_STRING = 64


def _utf8_until_nul(raw: bytes) -> str:
    nul = raw.find(b"\x00")
    try:
        return str(raw if nul < 0 else raw[:nul], "utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(str(exc)) from exc


def _compile_layout(buf: bytes, pos: int, fend: int) -> Any:
    """The layout of the params in ``buf[pos:fend]`` (already decoded once), or None."""
    fmt = ["<"]
    heads: List[Any] = []
    head_idx: List[int] = []
    items: List[str] = []
    env: dict = {"_u32": _u32, "_str": _utf8_until_nul}
    k = 0
    while pos < fend:
        pname, pst = _PARAM_UNPACK(buf, pos)
        tid, size = pst >> 24, ((pst & 0xFFFFFF) << 2) - 8
        name = decode_identifier(pname)
        env[f"n{len(items)}"] = name
        if tid == 0 and size == 4:
            fmt.append("4sIi")
            value = f"v[{k + 2}]"
        elif tid == 1 and size == 4:
            fmt.append("4sII")
            value = f"_u32(v[{k + 2}])"
        elif tid == 2 and 0 < size <= _LAYOUT_MAX_STRING:
            fmt.append(f"4sI{size}s")
            value = f"_str(v[{k + 2}])"
        else:
            return None
        heads += [pname, pst]
        head_idx += [k, k + 1]
        items.append(f"(n{len(items)}, {value})")
        k += 3
        pos += size + 8
        if len(items) > _LAYOUT_MAX_PARAMS:
            return None
    if not items:
        return None
    # Generated once per layout (as namedtuple does): one list display, no loop.
    exec(f"def build(v):\n    return [{', '.join(items)}]", env)  # noqa: S102
    return (struct.Struct("".join(fmt)).unpack_from, itemgetter(*head_idx), tuple(heads),
            env["build"])


def _decode(buf: bytes, base: int, total: int) -> Packet:
    """Decode the packet ``buf[base:base + total]``; its header magic is already checked."""
    _magic, ptype, _size, pid, _fmt, seconds, nanos, info = _HEADER_UNPACK(buf, base)
    end = base + total - 8
    if buf[end + 4 : end + 8] != PACKET_FOOTER:
        raise DecodeError(f"Invalid packet footer {buf[end + 4 : end + 8]!r}")
    if nanos >= 1_000_000_000:
        raise DecodeError(f"Timestamp nanoseconds {nanos} out of range (must be < 10**9)")
    names = _DEC_NAMES
    fields: List[FieldTuple] = []
    pos = base + 32
    while pos < end:
        if pos + 12 > end:
            raise DecodeError(f"Field overflow by {pos + 12 - end} bytes")
        fname, fst, fid = _FIELD_UNPACK(buf, pos)
        fend = pos + ((fst & 0xFFFFFF) << 2)
        if fend > end or fend < pos + 12:
            raise _field_size_error(fst, pos, fend, end)
        pos += 12
        key = buf[pos - 12 : pos - 4]
        layout = _LAYOUTS.get(key, _UNSEEN)
        if layout:
            unpack, get_heads, heads, build = layout
            # (fits: the layout's size is in the key, and fend <= end was checked)
            values = unpack(buf, pos)
            if get_heads(values) == heads:
                try:
                    fields.append((names[fname], fid, build(values)))
                except KeyError:
                    fields.append((decode_identifier(fname), fid, build(values)))
                pos = fend
                continue
        start = pos
        params: List[Param] = []
        append = params.append
        while pos < fend:
            # The param header is always inside the buffer: fend <= end and the footer follows.
            pname, pst = _PARAM_UNPACK(buf, pos)
            pend = pos + ((pst & 0xFFFFFF) << 2)
            if pend > fend or pend < pos + 8:
                raise _param_size_error(pst, pos, pend, fend)
            tid = pst >> 24
            pos += 8
            if tid == 0 and pend - pos == 4:
                value = _U_I32(buf, pos)[0]
            elif tid == 2:
                nul = buf.find(b"\x00", pos, pend)
                try:
                    value = str(buf[pos : pend if nul < 0 else nul], "utf-8")
                except UnicodeDecodeError as exc:
                    raise DecodeError(str(exc)) from exc
            elif tid == 1 and pend - pos == 4:
                value = _u32(_U_U32(buf, pos)[0])
            else:
                dec = DECODERS.get(tid)
                if dec is None:
                    warnings.warn(DecodeWarning("Unsupported type ID", tid), stacklevel=3)
                    value = buf[pos:pend]
                else:
                    value = dec(buf, pos, pend)
            try:
                append((names[pname], value))
            except KeyError:
                append((decode_identifier(pname), value))
            pos = pend
        if layout is _UNSEEN and len(_LAYOUTS) < _LAYOUT_LIMIT:
            # Decoded without error, so its params tile it exactly: compile its layout.
            _LAYOUTS[key] = _compile_layout(buf, start, fend)
        try:
            fields.append((names[fname], fid, params))
        except KeyError:
            fields.append((decode_identifier(fname), fid, params))
    try:
        name = names[ptype]
    except KeyError:
        name = decode_identifier(ptype)
    # Packets come many to a second: the date and time of the last second seen are kept
    # (one tuple, replaced whole, so threads cannot see half an update).
    global _LAST_SECOND
    last = _LAST_SECOND
    if last[0] != seconds:
        t = _gmtime(seconds)
        last = _LAST_SECOND = (seconds, (t[0], t[1], t[2], t[3], t[4], t[5]))
    timestamp = _datetime(*last[1], nanos // 1000, _UTC)
    return _tuple_new(Packet, (name, pid, timestamp, info, fields))


def decode_packet(data: Union[bytes, bytearray, memoryview]) -> Packet:
    """Decode one complete NCP packet.

    Parameters
    ----------
    data : bytes-like
        Exactly one packet, header to footer.

    Returns
    -------
    Packet
        ``(packet_type, packet_id, timestamp, info, fields)``; ``fields`` is a list of
        ``(name, id, [(param_name, value), ...])``. The timestamp is an aware UTC datetime.

    Raises
    ------
    DecodeError
        For any malformed packet.

    Warns
    -----
    DecodeWarning
        For an unknown param type code (the value is then the raw payload bytes).
    """
    buf = data if type(data) is bytes else bytes(data)
    n = len(buf)
    if n < 40:
        if n >= 4 and buf[:4] != PACKET_HEADER:
            raise DecodeError(f"Invalid packet header {buf[:4]!r}")
        raise DecodeError(f"Packet too short: {n} bytes (the minimum is 40)")
    if buf[:4] != PACKET_HEADER:
        raise DecodeError(f"Invalid packet header {buf[:4]!r}")
    total = _U32_UNPACK(buf, 8)[0] << 2
    if total != n:
        raise DecodeError(f"Packet size word says {total} bytes, but {n} bytes were given")
    return _decode(buf, 0, total)


class PacketCodec:
    """Streaming, sans-I/O NCP codec with the shape of the KATCP line codec.

    Parameters
    ----------
    max_packet_size : int
        A header announcing a larger packet is a framing error.

    Notes
    -----
    ``feed`` returns decoded :class:`Packet` objects and :class:`DecodeError` instances in
    order. An error inside a packet's body does not lose framing, so decoding carries on
    with the next packet. A bad header magic or an impossible size word does: the codec then
    reports one :class:`DecodeError`, discards everything and ignores further input
    (:attr:`failed` becomes true); the connection should be closed.
    """

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self.max_packet_size = max_packet_size
        self._buf = bytearray()
        self.failed = False

    @property
    def buffer_size(self) -> int:
        """Number of bytes held for an incomplete packet."""
        return len(self._buf)

    def encode(self, packet: Union[bytes, Tuple[str, int, datetime, bytes, Iterable[Any]]]) -> bytes:
        """Encode a packet tuple ``(packet_type, packet_id, timestamp, info, fields)``.

        Already encoded bytes pass through unchanged.
        """
        if isinstance(packet, bytes):
            return packet
        return encode_packet(*packet)

    def _frame_error(self, exc: DecodeError, out: list) -> list:
        self.failed = True
        self._buf.clear()
        out.append(exc)
        return out

    def _packet_size(self, buf: Any, pos: int) -> int:
        """Check the header at ``buf[pos:]`` (12 bytes available); return the packet size."""
        if buf[pos : pos + 4] != PACKET_HEADER:
            raise DecodeError(f"Invalid packet header {bytes(buf[pos : pos + 4])!r}")
        total = _U32_UNPACK(buf, pos + 8)[0] << 2
        if total < 40 or total > self.max_packet_size:
            raise DecodeError(
                f"Invalid packet size {total} bytes (allowed: 40 to {self.max_packet_size})"
            )
        return total

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> list:
        """Add received bytes; return the packets (and errors) they complete, in order."""
        out: list = []
        if self.failed:
            return out
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        pos = 0
        pending = self._buf
        if pending:
            # Complete the packet started earlier, copying only its own bytes.
            if len(pending) < 12:
                pos = min(12 - len(pending), n)
                pending += data[:pos]
                if len(pending) < 12:
                    return out
            try:
                total = self._packet_size(pending, 0)
            except DecodeError as exc:
                return self._frame_error(exc, out)
            need = total - len(pending)
            if need > n - pos:
                pending += data[pos:] if pos else data
                return out
            pending += data[pos : pos + need]
            pos += need
            packet = bytes(pending)
            pending.clear()
            try:
                out.append(_decode(packet, 0, total))
            except DecodeError as exc:
                out.append(exc)
        while n - pos >= 12:
            try:
                total = self._packet_size(data, pos)
            except DecodeError as exc:
                return self._frame_error(exc, out)
            if n - pos < total:
                break
            try:
                out.append(_decode(data, pos, total))
            except DecodeError as exc:
                out.append(exc)
            pos += total
        if pos < n:
            pending += data[pos:] if pos else data
        return out
