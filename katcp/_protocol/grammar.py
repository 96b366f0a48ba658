"""The KATCP line grammar (layer L0): escaping, parsing one line, formatting one message.

No messages of its own and no I/O: :func:`parse_line` builds its result with a factory it is
given, :func:`format_message` takes the parts of a message.  Two interchangeable backends: pure
Python (always available) and SARAO's ``katcp-codec`` Rust extension, used when it can be
imported (it has no Windows wheels).  ``KATCP_CODEC=python`` in the environment forces the pure
Python one, ``KATCP_CODEC=rust`` makes a missing ``katcp-codec`` an import error.

The grammar is KATCP v5.1 (see the guideline, section 2.1): where katcp-python 0.9.3 was laxer
(message ids ``0``, ``007`` or above 2**31-1, whitespace-only lines reported as errors) this
module follows the protocol.
"""

import os
import re
import sys
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = [
    "KatcpSyntaxError",
    "HAVE_RUST_CODEC",
    "CODEC_BACKEND",
    "parse_line",
    "py_parse_line",
    "rust_parse_line",
    "format_message",
    "py_format_message",
    "rust_format_message",
    "escape_argument",
    "unescape_argument",
]


class KatcpSyntaxError(ValueError):
    """Raised by parsers when encountering a syntax error."""


#: Message type values (katcp-python's ``Message.REQUEST`` etc.).
REQUEST, REPLY, INFORM = 0, 1, 2
_TYPE_SYMBOLS = (b"?", b"!", b"#")
_SYMBOL_TYPES = {b"?": REQUEST, b"!": REPLY, b"#": INFORM}

#: Largest message id allowed by the protocol.
MAX_MID = 2**31 - 1

#: Escape character (after the backslash) -> the byte it stands for.
ESCAPE_LOOKUP = {
    b"\\": b"\\",
    b"_": b" ",
    b"0": b"\0",
    b"n": b"\n",
    b"r": b"\r",
    b"e": b"\x1b",
    b"t": b"\t",
    b"@": b"",
}
_REVERSE_ESCAPE_LOOKUP = {v: b"\\" + k for k, v in ESCAPE_LOOKUP.items() if v}

# Head of a line: type, name, optional id, then whitespace or end of line.
# Argument bytes are checked with fast ``in`` scans instead of a regex.
_HEAD_RE = re.compile(
    rb"([?!#])([A-Za-z][A-Za-z0-9\-]*)(?:\[([1-9][0-9]{0,9})\])?(?:[ \t]|\Z)"
)
_head_match = _HEAD_RE.match
# A whole first token (after splitting on whitespace): type, name, optional id.
_head_fullmatch = re.compile(rb"[?!#]([A-Za-z][A-Za-z0-9\-]*)(?:\[([1-9][0-9]{0,9})\])?").fullmatch
_TYPE_BY_BYTE = {ord("?"): REQUEST, ord("!"): REPLY, ord("#"): INFORM}
_WS_SPLIT = re.compile(rb"[ \t]+").split
_UNESCAPE_RE = re.compile(rb"\\(.?)", re.DOTALL)
_ESCAPE_RE = re.compile(rb"[\\ \0\n\r\x1b\t]")
_NAME_RE = re.compile(rb"[A-Za-z][A-Za-z0-9\-]*")
_BLANK_STRIP = b" \t"
# Note: hot paths test single bytes as ints (``92 in data`` for a backslash):
# ``int in bytes`` is a plain memchr, several times faster than ``b"\\" in data``.
_object_new = object.__new__
#: Decoded message names (bounded): saves a decode per received message.
_NAME_CACHE: Dict[bytes, str] = {}
#: Heads without message id (``b"#sensor-status"``) already validated -> (type, name) (bounded):
#: saves the head regex and the decode for the lines that repeat most (informs).
_HEAD_CACHE: Dict[bytes, Tuple[int, str]] = {}


def _unescape_repl(match: "re.Match[bytes]") -> bytes:
    try:
        return ESCAPE_LOOKUP[match.group(1)]
    except KeyError:
        char = match.group(1)
        if not char:
            raise KatcpSyntaxError("Argument ends with a lone backslash.") from None
        raise KatcpSyntaxError(f"Invalid escape sequence \\{char.decode('latin-1')!r}.") from None


def _escape_repl(match: "re.Match[bytes]") -> bytes:
    return _REVERSE_ESCAPE_LOOKUP[match.group()]


def unescape_argument(arg: bytes) -> bytes:
    """Remove KATCP escapes from one (already split) argument.

    Raises
    ------
    KatcpSyntaxError
        For an unknown escape or a lone trailing backslash.
    """
    if 92 not in arg:
        return arg
    return _UNESCAPE_RE.sub(_unescape_repl, arg)


def escape_argument(arg: bytes) -> bytes:
    """Escape one argument for the wire (empty argument -> ``\\@``)."""
    if not arg:
        return b"\\@"
    return _ESCAPE_RE.sub(_escape_repl, arg)


def _diagnose(line: bytes) -> KatcpSyntaxError:
    """Explain why ``line`` (no terminator, not blank) failed the line regex."""
    if not line:
        return KatcpSyntaxError("Empty message received.")
    first = line[:1]
    if first not in _SYMBOL_TYPES:
        if first in b" \t":
            return KatcpSyntaxError("Whitespace before the message type character.")
        return KatcpSyntaxError(f"Bad type character {first!r}: expected '?', '!' or '#'.")
    match = _NAME_RE.match(line, 1)
    if match is None:
        if len(line) == 1 or line[1:2] in b" \t":
            return KatcpSyntaxError("Missing message name after the type character.")
        return KatcpSyntaxError(
            f"Message name must start with an ASCII letter (got {line[1:2]!r})."
        )
    pos = match.end()
    if pos < len(line) and line[pos : pos + 1] == b"[":
        close = line.find(b"]", pos)
        if close < 0:
            return KatcpSyntaxError("Unterminated message id: missing ']'.")
        mid = line[pos + 1 : close]
        if not mid.isdigit() or not mid.isascii():
            return KatcpSyntaxError(f"Invalid message id {mid!r}: must be decimal digits.")
        if mid[:1] == b"0":
            return KatcpSyntaxError(
                f"Invalid message id {mid!r}: must be 1 to 2147483647 without leading zeros."
            )
        if int(mid) > MAX_MID:
            return KatcpSyntaxError(f"Invalid message id {mid!r}: larger than 2147483647.")
        pos = close + 1
    if pos < len(line) and line[pos : pos + 1] not in (b" ", b"\t"):
        bad = line[pos : pos + 1]
        return KatcpSyntaxError(
            f"Invalid character {bad!r} at position {pos}: the message name (and id) "
            "must be followed by whitespace or the end of the line."
        )
    for char, label in ((b"\0", "NUL"), (b"\x1b", "ESC"), (b"\n", "LF"), (b"\r", "CR")):
        idx = line.find(char, pos)
        if idx >= 0:
            return KatcpSyntaxError(
                f"Raw {label} byte at position {idx} (must be escaped in arguments)."
            )
    return KatcpSyntaxError(f"Malformed message {line[:80]!r}.")


def _unescape_simple(arg: bytes) -> bytes:
    """Unescape an argument piece that contains no ``\\\\`` pair."""
    n = arg.count(b"\\")
    if not n:
        return arg
    if arg.count(b"\\_") == n:  # the common case: escaped spaces only
        return arg.replace(b"\\_", b" ")
    # Without "\\\\" every backslash starts a two-byte escape and no
    # replacement creates a new backslash, so the order does not matter.
    out = (
        arg.replace(b"\\_", b" ")
        .replace(b"\\@", b"")
        .replace(b"\\n", b"\n")
        .replace(b"\\t", b"\t")
        .replace(b"\\r", b"\r")
        .replace(b"\\0", b"\0")
        .replace(b"\\e", b"\x1b")
    )
    if 92 in out:
        _UNESCAPE_RE.sub(_unescape_repl, arg)  # raises a precise error
        raise KatcpSyntaxError(f"Invalid escape sequence in {arg!r}.")  # pragma: no cover
    return out


def _unescape_fast(arg: bytes) -> bytes:
    """Unescape one argument (raises KatcpSyntaxError on a bad escape)."""
    if b"\\\\" in arg:
        # Leftmost "\\\\" pairs are exactly the escaped backslashes.
        return b"\\".join([_unescape_simple(p) for p in arg.split(b"\\\\")])
    return _unescape_simple(arg)


class _BadArgumentBytes(Exception):
    """Raw NUL / ESC in the arguments (the caller builds the precise error)."""


def _split_args(rest: bytes) -> List[bytes]:
    """Split and unescape the argument part of a line (slow path)."""
    if 0 in rest or 27 in rest:
        raise _BadArgumentBytes()
    if 11 in rest or 12 in rest:
        # bytes.split() would also split on vertical tab / form feed, which are
        # ordinary argument bytes in KATCP.
        args = [a for a in _WS_SPLIT(rest) if a]
    else:
        args = rest.split()
    if 92 in rest:
        unescape = _unescape_fast if b"\\\\" in rest else _unescape_simple
        args = [unescape(a) if 92 in a else a for a in args]
    return args


MessageFactory = Callable[[int, str, List[bytes], Optional[bytes]], Any]


def _parse_general(line: bytes, new_message: MessageFactory) -> Any:
    """Complete pure-Python line parser (handles escapes and every error)."""
    m = _head_match(line)
    if m is None:
        if not line.strip(_BLANK_STRIP):
            raise KatcpSyntaxError("Empty message received.")
        raise _diagnose(line)
    sym, name, mid = m.groups()
    if mid is not None and len(mid) == 10 and int(mid) > MAX_MID:
        raise KatcpSyntaxError(f"Invalid message id {mid!r}: larger than 2147483647.")
    rest = line[m.end() :]
    if not rest:
        args = []
    elif (
        92 in rest
        or 0 in rest
        or 27 in rest
        or 11 in rest
        or 12 in rest
    ):
        try:
            args = _split_args(rest)
        except _BadArgumentBytes:
            raise _diagnose(line) from None
    else:
        args = rest.split()
    return new_message(_SYMBOL_TYPES[sym], name.decode("ascii"), args, mid)


def py_parse_line(line: bytes, new_message: MessageFactory) -> Any:
    """Parse one KATCP line (without terminator) in pure Python.

    Parameters
    ----------
    line : bytes
        The line, without its terminator.
    new_message : callable
        ``new_message(mtype, name, arguments, mid)`` builds the message from
        already-validated parts (``mtype`` int, ``name`` str, ``arguments``
        list of bytes, ``mid`` bytes or None).

    Raises
    ------
    KatcpSyntaxError
        If the line is blank or not a valid KATCP message.
    """
    if not (
        92 in line
        or 0 in line
        or 27 in line
        or 11 in line
        or 12 in line
    ):
        # Fast path: nothing to unescape, so whitespace splitting is exact.
        parts = line.split()
        if parts:
            head = parts[0]
            m = _head_fullmatch(head)
            if m is not None and line[0] == head[0]:
                name, mid = m.groups()
                if mid is None or len(mid) < 10 or int(mid) <= MAX_MID:
                    del parts[0]
                    return new_message(_TYPE_BY_BYTE[head[0]], name.decode("ascii"), parts, mid)
    return _parse_general(line, new_message)


def _too_long_error(limit: int) -> KatcpSyntaxError:
    return KatcpSyntaxError(
        f"Line too long: longer than the limit of {limit} bytes (terminator included)."
    )


def _check_line(line: bytes) -> bytes:
    """Validate the line given to the line API; strip one optional terminator."""
    if line[-1:] == b"\n":
        line = line[:-2] if line[-2:-1] == b"\r" else line[:-1]
    elif line[-1:] == b"\r":
        line = line[:-1]
    if 10 in line or 13 in line:
        raise KatcpSyntaxError("Line contains an embedded line terminator (CR or LF).")
    return line


_SPECIAL_BYTES = b"\\ \0\n\r\x1b\t"


def _escape_arg(arg: bytes) -> bytes:
    """Escape one non-empty argument (fast when there is nothing to escape)."""
    if len(arg.translate(None, _SPECIAL_BYTES)) == len(arg):
        return arg
    if 92 in arg:
        arg = arg.replace(b"\\", b"\\\\")
    return (
        arg.replace(b" ", b"\\_")
        .replace(b"\0", b"\\0")
        .replace(b"\n", b"\\n")
        .replace(b"\r", b"\\r")
        .replace(b"\x1b", b"\\e")
        .replace(b"\t", b"\\t")
    )


def py_format_message(mtype: int, name: str, mid: Optional[bytes], arguments: List[bytes]) -> bytes:
    """Format a message in canonical wire form, without the terminator.

    Escapes exactly ``\\ SP NUL LF CR ESC TAB`` and writes an empty argument
    as ``\\@``.
    """
    head = _TYPE_SYMBOLS[mtype] + name.encode("ascii")
    if mid is not None:
        if mid.__class__ is not bytes:  # e.g. an int or str assigned to msg.mid
            mid = b"%d" % int(mid)
        head += b"[" + mid + b"]"
    if not arguments:
        return head
    joined = b" ".join(arguments)
    # Only the separators may be special bytes, and no argument may be empty.
    if len(joined) - len(joined.translate(None, _SPECIAL_BYTES)) != len(arguments) - 1 or not all(
        arguments
    ):
        joined = b" ".join([_escape_arg(a) if a else b"\\@" for a in arguments])
    return head + b" " + joined




# --------------------------------------------------------------------------
# Rust (katcp-codec) implementation
# --------------------------------------------------------------------------

_FORCE = os.environ.get("KATCP_CODEC", "").strip().lower()



def _import_rust() -> Optional[ModuleType]:
    """``katcp_codec._lib``, or None when it is missing or ``KATCP_CODEC`` asks for Python."""
    if _FORCE in ("python", "py", "pure"):
        return None
    try:
        from katcp_codec import _lib
    except ImportError:
        if _FORCE == "rust":
            raise
        return None
    # Typed as a plain module on purpose: the checks then read the same on platforms with and
    # without katcp-codec (it has no Windows wheels), and the hot paths below test a parsed
    # item for ``.mtype`` rather than narrowing katcp-codec's ``Message | ValueError``.
    return _lib


_rust = _import_rust()
HAVE_RUST_CODEC = _rust is not None


if _rust is not None:
    _RUST_REQUEST = _rust.MessageType.REQUEST
    _RUST_REPLY = _rust.MessageType.REPLY
    _RUST_INFORM = _rust.MessageType.INFORM
    _RUST_TYPES = (_RUST_REQUEST, _RUST_REPLY, _RUST_INFORM)
    _RustParser = _rust.Parser
    _RustMessage = _rust.Message

    def _tuple_message(*parts: Any) -> tuple:
        return parts

    def _rust_error(exc: ValueError, limit: Optional[int] = None) -> KatcpSyntaxError:
        text = str(exc)
        if limit is not None and text.startswith('"Line too long"'):
            return _too_long_error(limit)
        if text.startswith('"') and '" at character' in text:
            reason, _, pos = text[1:].partition('" at character ')
            text = f"{reason} at character {pos}."
        return KatcpSyntaxError(text)


    def rust_format_message(
        mtype: int, name: str, mid: Optional[bytes], arguments: List[bytes]
    ) -> bytes:
        """Same as :func:`py_format_message`, using ``katcp-codec``."""
        return bytes(
            _RustMessage(
                _RUST_TYPES[mtype],
                name.encode("ascii"),
                None if mid is None else int(mid),
                arguments,
            )
        )[:-1]

    def rust_parse_line(line: bytes, new_message: MessageFactory) -> Any:
        """Parse one line with ``katcp-codec``; same contract as :func:`py_parse_line`."""
        if 10 in line or 13 in line:
            line = _check_line(line)
        result = _RustParser(sys.maxsize).append(line + b"\n")
        if not result:
            raise KatcpSyntaxError("Empty message received.")
        m = result[0]
        try:
            mt = m.mtype
        except AttributeError:
            # Use the pure-Python diagnosis for a descriptive message.
            try:
                py_parse_line(line, new_message)
            except KatcpSyntaxError as exc:
                raise exc from None
            raise _rust_error(m) from None
        mid = m.mid
        return new_message(
            0 if mt is _RUST_REQUEST else 1 if mt is _RUST_REPLY else 2,
            m.name.decode("ascii"),
            m.arguments,
            None if mid is None else b"%d" % mid,
        )

    CODEC_BACKEND = "rust"
else:
    # None tells callers the backend is missing; typed as the functions so that code using
    # them after checking HAVE_RUST_CODEC needs no narrowing.
    rust_parse_line = None  # type: ignore[assignment]
    rust_format_message = None  # type: ignore[assignment]
    CODEC_BACKEND = "python"


def _py_parse_checked(line: bytes, new_message: MessageFactory) -> Any:
    if 10 in line or 13 in line:
        line = _check_line(line)
    return py_parse_line(line, new_message)


#: Line parser of the active backend: ``parse_line(line, new_message)``.
parse_line = rust_parse_line if _rust is not None else _py_parse_checked

#: Formatter of the active backend, used by ``bytes(Message)`` (no terminator).
format_message = rust_format_message if _rust is not None else py_format_message
