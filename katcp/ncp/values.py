"""NCP value types: the Python wrappers, the type codes and the per-value codecs.

NCP types map onto Python types as follows (the same mapping as ncplib):

=========  ================================  ==========================================
NCP type   Python type                       Notes
=========  ================================  ==========================================
i32        ``int`` (and ``bool`` to encode)   a plain ``int`` never widens to 64 bits
u32        :class:`u32`
i64        :class:`i64`
u64        :class:`u64`
f32        ``float``                         a plain ``float`` is sent single precision
f64        :class:`f64`
string     ``str``                           UTF-8 plus a NUL terminator
raw        ``bytes``                         ``bytearray``/``memoryview`` also encode
data *     ``array.array``                   typecodes ``B H I b h i L l f d``
=========  ================================  ==========================================

The 64-bit array types always carry 8-byte items on the wire; ``'q'``/``'Q'`` arrays are
accepted too, and ``'l'``/``'L'`` arrays on platforms where C ``long`` is 4 bytes are widened.
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import Any, Callable, Dict, Tuple, Union

from .errors import DecodeError, EncodeRangeError

__all__ = [
    "u32",
    "i64",
    "u64",
    "f64",
    "Value",
    "TYPE_I32",
    "TYPE_U32",
    "TYPE_STRING",
    "TYPE_I64",
    "TYPE_U64",
    "TYPE_F32",
    "TYPE_F64",
    "TYPE_RAW",
    "TYPE_ARRAY_U8",
    "TYPE_ARRAY_U16",
    "TYPE_ARRAY_U32",
    "TYPE_ARRAY_I8",
    "TYPE_ARRAY_I16",
    "TYPE_ARRAY_I32",
    "TYPE_ARRAY_U64",
    "TYPE_ARRAY_I64",
    "TYPE_ARRAY_F32",
    "TYPE_ARRAY_F64",
    "TYPE_NAMES",
    "encode_param",
    "decode_value",
]


class u32(int):
    """A u32 value. Wrap any ``int`` to be encoded as NCP u32 in ``u32``."""

    __slots__ = ()


class i64(int):
    """An i64 value. Wrap any ``int`` to be encoded as NCP i64 in ``i64``."""

    __slots__ = ()


class u64(int):
    """A u64 value. Wrap any ``int`` to be encoded as NCP u64 in ``u64``."""

    __slots__ = ()


class f64(float):
    """An f64 value. Wrap any ``float`` to be encoded as NCP f64 (double) in ``f64``."""

    __slots__ = ()


Value = Union[bytes, bytearray, memoryview, str, int, float, u32, i64, u64, f64, bool, array]

TYPE_I32 = 0x00
TYPE_U32 = 0x01
TYPE_STRING = 0x02
TYPE_I64 = 0x03
TYPE_U64 = 0x04
TYPE_F32 = 0x10
TYPE_F64 = 0x11
TYPE_RAW = 0x80
TYPE_ARRAY_U8 = 0x81
TYPE_ARRAY_U16 = 0x82
TYPE_ARRAY_U32 = 0x83
TYPE_ARRAY_I8 = 0x84
TYPE_ARRAY_I16 = 0x85
TYPE_ARRAY_I32 = 0x86
TYPE_ARRAY_U64 = 0x87
TYPE_ARRAY_I64 = 0x88
TYPE_ARRAY_F32 = 0x90
TYPE_ARRAY_F64 = 0x91

#: Wire type code -> NCP type name.
TYPE_NAMES: Dict[int, str] = {
    TYPE_I32: "i32",
    TYPE_U32: "u32",
    TYPE_STRING: "string",
    TYPE_I64: "i64",
    TYPE_U64: "u64",
    TYPE_F32: "f32",
    TYPE_F64: "f64",
    TYPE_RAW: "raw",
    TYPE_ARRAY_U8: "data u8",
    TYPE_ARRAY_U16: "data u16",
    TYPE_ARRAY_U32: "data u32",
    TYPE_ARRAY_I8: "data i8",
    TYPE_ARRAY_I16: "data i16",
    TYPE_ARRAY_I32: "data i32",
    TYPE_ARRAY_U64: "data u64",
    TYPE_ARRAY_I64: "data i64",
    TYPE_ARRAY_F32: "data f32",
    TYPE_ARRAY_F64: "data f64",
}

_LITTLE = sys.byteorder == "little"
#: Largest param (header included) that fits the u24 size word of its field.
MAX_PARAM_SIZE = (2**24 - 1) * 4 - 12

# Param header plus a fixed-size payload, packed in one call.
_P_I32 = struct.Struct("<4sIi").pack
_P_U32 = struct.Struct("<4sII").pack
_P_I64 = struct.Struct("<4sIq").pack
_P_U64 = struct.Struct("<4sIQ").pack
_P_F32 = struct.Struct("<4sIf").pack
_P_F64 = struct.Struct("<4sId").pack
_P_HDR = struct.Struct("<4sI").pack

_ST_I32 = 3 | (TYPE_I32 << 24)
_ST_U32 = 3 | (TYPE_U32 << 24)
_ST_I64 = 4 | (TYPE_I64 << 24)
_ST_U64 = 4 | (TYPE_U64 << 24)
_ST_F32 = 3 | (TYPE_F32 << 24)
_ST_F64 = 4 | (TYPE_F64 << 24)

_PADS = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")
_STR_TAILS = (b"\x00\x00\x00\x00", b"\x00\x00\x00", b"\x00\x00", b"\x00")

_INT_RANGES = {
    TYPE_I32: ("i32", -(2**31), 2**31 - 1),
    TYPE_U32: ("u32", 0, 2**32 - 1),
    TYPE_I64: ("i64", -(2**63), 2**63 - 1),
    TYPE_U64: ("u64", 0, 2**64 - 1),
}


def _range_error(name: bytes, type_id: int, value: Any) -> EncodeRangeError:
    if type_id == TYPE_F32:
        return EncodeRangeError(
            f"param {name!r}: float {value!r} is too large for f32 (wrap it in f64 to send a double)"
        )
    tname, lo, hi = _INT_RANGES[type_id]
    hint = " (wrap it in i64 or u64 to send 64 bits)" if type_id == TYPE_I32 else ""
    return EncodeRangeError(
        f"param {name!r}: {value!r} is out of range for {tname} [{lo}, {hi}]{hint}"
    )


def _enc_i32(name: bytes, value: int) -> bytes:
    try:
        return _P_I32(name, _ST_I32, value)
    except struct.error:
        raise _range_error(name, TYPE_I32, value) from None


def _enc_u32(name: bytes, value: int) -> bytes:
    try:
        return _P_U32(name, _ST_U32, value)
    except struct.error:
        raise _range_error(name, TYPE_U32, value) from None


def _enc_i64(name: bytes, value: int) -> bytes:
    try:
        return _P_I64(name, _ST_I64, value)
    except struct.error:
        raise _range_error(name, TYPE_I64, value) from None


def _enc_u64(name: bytes, value: int) -> bytes:
    try:
        return _P_U64(name, _ST_U64, value)
    except struct.error:
        raise _range_error(name, TYPE_U64, value) from None


def _enc_f32(name: bytes, value: float) -> bytes:
    try:
        return _P_F32(name, _ST_F32, value)
    except (OverflowError, struct.error):
        raise _range_error(name, TYPE_F32, value) from None


def _enc_f64(name: bytes, value: float) -> bytes:
    return _P_F64(name, _ST_F64, value)


def _enc_str(name: bytes, value: str) -> bytes:
    data = value.encode("utf-8")
    n = len(data)
    return b"".join((_P_HDR(name, ((n + 12) >> 2) | (TYPE_STRING << 24)), data, _STR_TAILS[n & 3]))


def _check_size(name: bytes, n: int) -> None:
    if n + 8 > MAX_PARAM_SIZE:
        raise EncodeRangeError(
            f"param {name!r}: payload of {n} bytes is larger than an NCP field can hold"
        )


def _enc_raw(name: bytes, value: Union[bytes, bytearray, memoryview]) -> bytes:
    if type(value) is memoryview:
        value = value.tobytes()
    n = len(value)
    _check_size(name, n)
    return b"".join((_P_HDR(name, ((n + 11) >> 2) | (TYPE_RAW << 24)), value, _PADS[n & 3]))


# array typecode -> (wire type code, itemsize on the wire, typecode to convert to or None)
_ARRAY_OUT: Dict[str, Tuple[int, str]] = {
    "B": (TYPE_ARRAY_U8, "B"),
    "H": (TYPE_ARRAY_U16, "H"),
    "I": (TYPE_ARRAY_U32, "I"),
    "b": (TYPE_ARRAY_I8, "b"),
    "h": (TYPE_ARRAY_I16, "h"),
    "i": (TYPE_ARRAY_I32, "i"),
    "L": (TYPE_ARRAY_U64, "Q"),
    "Q": (TYPE_ARRAY_U64, "Q"),
    "l": (TYPE_ARRAY_I64, "q"),
    "q": (TYPE_ARRAY_I64, "q"),
    "f": (TYPE_ARRAY_F32, "f"),
    "d": (TYPE_ARRAY_F64, "d"),
}
_WIRE_ITEMSIZE = {"B": 1, "H": 2, "I": 4, "b": 1, "h": 2, "i": 4, "Q": 8, "q": 8, "f": 4, "d": 8}


def array_parts(name: bytes, value: array) -> Tuple[bytes, Any, bytes, int]:
    """Split an array param into ``(header, payload buffer, padding, payload length)``.

    The payload buffer is the array itself when its memory already is the wire form
    (little-endian host, wire item size), so joining the parts copies the data only once.
    """
    try:
        type_id, wire_tc = _ARRAY_OUT[value.typecode]
    except KeyError:
        raise TypeError(
            f"param {name!r}: array typecode {value.typecode!r} has no NCP type "
            f"(use one of {''.join(_ARRAY_OUT)})"
        ) from None
    if value.itemsize != _WIRE_ITEMSIZE[wire_tc]:
        # e.g. 'l'/'L' where C long is 4 bytes: widen to the 8-byte wire items.
        value = array(wire_tc, value)
    if not _LITTLE:
        value = array(value.typecode, value)
        value.byteswap()
    n = len(value) * value.itemsize
    _check_size(name, n)
    return _P_HDR(name, ((n + 11) >> 2) | (type_id << 24)), value, _PADS[n & 3], n


def _enc_array(name: bytes, value: array) -> bytes:
    header, payload, pad, _ = array_parts(name, value)
    return b"".join((header, payload, pad))


#: exact Python class -> encoder(name_bytes, value) -> param bytes (header, payload, padding)
ENCODERS: Dict[type, Callable[[bytes, Any], bytes]] = {
    int: _enc_i32,
    bool: _enc_i32,
    u32: _enc_u32,
    i64: _enc_i64,
    u64: _enc_u64,
    float: _enc_f32,
    f64: _enc_f64,
    str: _enc_str,
    bytes: _enc_raw,
    bytearray: _enc_raw,
    memoryview: _enc_raw,
    array: _enc_array,
}


def encode_param(name: bytes, value: Any) -> bytes:
    """Encode one param: 8-byte header, payload and NUL padding.

    Parameters
    ----------
    name : bytes
        The param name, already encoded (at most 4 bytes; shorter names are NUL padded).
    value
        The value; its exact class picks the NCP type (see the module docstring).

    Raises
    ------
    TypeError
        If the value's class has no NCP type.
    ValueError
        If the value does not fit its NCP type (:class:`EncodeRangeError`, which is also an
        :class:`OverflowError`), or a string cannot be encoded as UTF-8.
    """
    try:
        enc = ENCODERS[type(value)]
    except KeyError:
        raise TypeError(
            f"Unsupported value type {type(value).__name__} for param {name!r}: expected int, "
            "bool, u32, i64, u64, float, f64, str, bytes or array.array"
        ) from None
    return enc(name, value)


# ----------------------------------------------------------------------------------------
# Decoding

_U_I32 = struct.Struct("<i").unpack_from
_U_U32 = struct.Struct("<I").unpack_from
_U_I64 = struct.Struct("<q").unpack_from
_U_U64 = struct.Struct("<Q").unpack_from
_U_F32 = struct.Struct("<f").unpack_from
_U_F64 = struct.Struct("<d").unpack_from


def _dec_int(buf: bytes, start: int, end: int, signed: bool) -> int:
    # Well-formed payloads have exactly `size` bytes. ncplib reads the whole region as one
    # little-endian integer; do the same for odd sizes so values match an ncplib peer.
    return int.from_bytes(buf[start:end], "little", signed=signed)


def _dec_i32(buf: bytes, start: int, end: int) -> int:
    if end - start == 4:
        return _U_I32(buf, start)[0]
    return _dec_int(buf, start, end, True)


def _dec_u32(buf: bytes, start: int, end: int) -> u32:
    if end - start == 4:
        return u32(_U_U32(buf, start)[0])
    return u32(_dec_int(buf, start, end, False))


def _dec_i64(buf: bytes, start: int, end: int) -> i64:
    if end - start == 8:
        return i64(_U_I64(buf, start)[0])
    return i64(_dec_int(buf, start, end, True))


def _dec_u64(buf: bytes, start: int, end: int) -> u64:
    if end - start == 8:
        return u64(_U_U64(buf, start)[0])
    return u64(_dec_int(buf, start, end, False))


def _dec_f32(buf: bytes, start: int, end: int) -> float:
    if end - start != 4:
        raise DecodeError(f"f32 param payload is {end - start} bytes, expected 4")
    return _U_F32(buf, start)[0]


def _dec_f64(buf: bytes, start: int, end: int) -> f64:
    if end - start != 8:
        raise DecodeError(f"f64 param payload is {end - start} bytes, expected 8")
    return f64(_U_F64(buf, start)[0])


def _dec_str(buf: bytes, start: int, end: int) -> str:
    nul = buf.find(b"\x00", start, end)
    try:
        return str(buf[start : end if nul < 0 else nul], "utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(str(exc)) from exc


def _dec_raw(buf: bytes, start: int, end: int) -> bytes:
    return buf[start:end]


def _array_decoder(typecode: str) -> Callable[[bytes, int, int], array]:
    if array(typecode).itemsize != _WIRE_ITEMSIZE.get(typecode, 8):
        typecode = {"L": "Q", "l": "q"}[typecode]
    itemsize = array(typecode).itemsize

    def decode(buf: bytes, start: int, end: int) -> array:
        if (end - start) % itemsize:
            raise DecodeError(
                f"array payload of {end - start} bytes is not a multiple of the item size {itemsize}"
            )
        result = array(typecode)
        result.frombytes(memoryview(buf)[start:end])
        if not _LITTLE:
            result.byteswap()
        return result

    return decode


#: wire type code -> decoder(buf, start, end) -> value
DECODERS: Dict[int, Callable[[bytes, int, int], Any]] = {
    TYPE_I32: _dec_i32,
    TYPE_U32: _dec_u32,
    TYPE_STRING: _dec_str,
    TYPE_I64: _dec_i64,
    TYPE_U64: _dec_u64,
    TYPE_F32: _dec_f32,
    TYPE_F64: _dec_f64,
    TYPE_RAW: _dec_raw,
    TYPE_ARRAY_U8: _array_decoder("B"),
    TYPE_ARRAY_U16: _array_decoder("H"),
    TYPE_ARRAY_U32: _array_decoder("I"),
    TYPE_ARRAY_I8: _array_decoder("b"),
    TYPE_ARRAY_I16: _array_decoder("h"),
    TYPE_ARRAY_I32: _array_decoder("i"),
    TYPE_ARRAY_U64: _array_decoder("L"),
    TYPE_ARRAY_I64: _array_decoder("l"),
    TYPE_ARRAY_F32: _array_decoder("f"),
    TYPE_ARRAY_F64: _array_decoder("d"),
}


def decode_value(type_id: int, buf: bytes, start: int, end: int) -> Any:
    """Decode the payload region ``buf[start:end]`` of a param of wire type ``type_id``.

    The region includes the padding, which (as with ncplib) becomes part of raw and array
    values. Unknown type codes return the raw payload bytes; the caller issues the warning.

    Raises
    ------
    DecodeError
        If the payload cannot be decoded as that type.
    """
    dec = DECODERS.get(type_id)
    if dec is None:
        return buf[start:end]
    return dec(buf, start, end)
