"""Streaming KATCP line codec (sans-I/O): bytes in, :class:`~katcp.core.Message` objects out.

:class:`LineCodec` is what the transport uses: ``feed(data)`` returns the messages (and
:class:`~katcp.core.KatcpSyntaxError` instances for malformed lines) whose terminator was in
``data``; ``encode(msg)`` gives the wire form including the trailing newline.  It is
:class:`RustLineCodec` (SARAO's ``katcp-codec``) when that can be imported and
:class:`PyLineCodec` otherwise; :mod:`katcp._protocol.grammar` holds the line grammar both use.
"""

from __future__ import annotations

import itertools
from typing import Any, List, Sequence, Type, Union

from katcp._protocol.grammar import (
    _BLANK_STRIP,
    _HEAD_CACHE,
    _NAME_CACHE,
    _TYPE_BY_BYTE,
    HAVE_RUST_CODEC,
    MAX_MID,
    KatcpSyntaxError,
    _head_fullmatch,
    _object_new,
    _parse_general,
    _too_long_error,
    _unescape_fast,
    py_format_message,
)
from katcp._protocol.message import Message, _new_message

__all__ = ["LineCodec", "PyLineCodec", "RustLineCodec"]


class PyLineCodec:
    """Streaming KATCP line codec in pure Python (sans-I/O).

    Parameters
    ----------
    max_line_length : int
        Longest accepted line in bytes, terminator included.  A longer line is
        dropped and reported as a :class:`KatcpSyntaxError` once its
        terminator arrives; at most ``max_line_length`` bytes are buffered.
    """

    backend = "python"

    def __init__(self, max_line_length: int = 2**20) -> None:
        self.max_line_length = max_line_length
        self._message_class = Message
        self._new_message = _new_message
        self._pending: List[bytes] = []  # chunks of the unterminated line
        self._pending_size = 0
        self._overflow = False  # the current partial line is too long

    @property
    def buffer_size(self) -> int:
        """Number of bytes of the pending unterminated line (capped at the limit)."""
        return min(self._pending_size, self.max_line_length)

    def reset(self) -> None:
        """Discard any partial line."""
        self._pending = []
        self._pending_size = 0
        self._overflow = False

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> list:
        """Add received bytes; return the complete messages and errors, in order."""
        if type(data) is not bytes:
            data = bytes(data)
        if 13 in data:
            data = data.replace(b"\r", b"\n")
        elif 10 not in data:
            if data:
                self._append_partial(data)
            return []
        lines = data.split(b"\n")
        tail = lines.pop()
        joined_pending = False
        if self._pending_size or self._overflow:
            joined_pending = True
            first = lines[0]
            too_long = self._overflow or self._pending_size + len(first) + 1 > self.max_line_length
            if too_long:
                lines[0] = None  # type: ignore[call-overload]
            else:
                self._pending.append(first)
                lines[0] = b"".join(self._pending)
            self._pending = []
            self._pending_size = 0
            self._overflow = False
        out: list = []
        append = out.append
        head_fullmatch = _head_fullmatch
        unescape = _unescape_fast
        heads = _HEAD_CACHE
        heads_get = heads.get
        onew = _object_new
        cls = self._message_class
        types = _TYPE_BY_BYTE
        limit = self.max_line_length - 1
        new_message = self._new_message
        # One scan of the chunk tells whether any line may need the general parser (raw NUL,
        # ESC, vertical tab or form feed) or unescaping (a backslash).
        special = 0 in data or 27 in data or 11 in data or 12 in data or joined_pending
        escapes = 92 in data or joined_pending
        for line in lines:
            if not line:
                if line is None:
                    append(self._too_long())
                continue
            if len(line) > limit:
                append(self._too_long())
                continue
            if not special or not (0 in line or 27 in line or 11 in line or 12 in line):
                # Splitting on whitespace is exact: escapes never contain whitespace.
                parts = line.split()
                if not parts:
                    continue  # blank line
                head = parts[0]
                if line[0] != head[0]:
                    known = None  # leading whitespace: the general parser says so
                else:
                    # A head seen before, without id or with a plain id, skips the regex.
                    known = heads_get(head)
                    mid = None
                    if known is None and head[-1] == 93 and (i := head.find(b"[")) > 0:
                        known = heads_get(head[:i])
                        mid = head[i + 1 : -1]
                        if known is not None and not (
                            mid.isdigit()  # ASCII digits only, not empty
                            and mid[0] != 48  # no leading zero
                            and (len(mid) < 10 or len(mid) == 10 and int(mid) <= MAX_MID)
                        ):
                            known = None
                    if known is None:
                        m = head_fullmatch(head)
                        if m is not None:
                            name, mid = m.groups()
                            if mid is None or len(mid) < 10 or int(mid) <= MAX_MID:
                                known = (types[head[0]], name.decode("ascii"))
                                if len(heads) < 1024:
                                    heads[head if mid is None else head[: len(name) + 1]] = known
                if known is not None:
                    del parts[0]
                    if escapes and 92 in line:
                        try:
                            parts = [unescape(a) if 92 in a else a for a in parts]
                        except KatcpSyntaxError:
                            known = None  # the general parser describes the error
                    if known is not None:
                        msg = onew(cls)
                        msg.mtype, msg.name = known
                        msg.arguments = parts
                        msg.mid = mid
                        append(msg)
                        continue
            try:
                append(_parse_general(line, new_message))
            except KatcpSyntaxError as exc:
                if line.strip(_BLANK_STRIP):
                    append(exc)
        if tail:
            self._append_partial(tail)
        return out

    def _too_long(self) -> KatcpSyntaxError:
        return _too_long_error(self.max_line_length)

    def _append_partial(self, data: bytes) -> None:
        if self._overflow:
            self._pending_size += len(data)
            return
        self._pending_size += len(data)
        if self._pending_size >= self.max_line_length:
            # Cannot fit even with its terminator: drop, remember to report.
            self._overflow = True
            self._pending = []
        else:
            self._pending.append(data)

    def encode(self, msg: Any) -> bytes:
        """Wire form of ``msg`` including the trailing ``\\n``."""
        return py_format_message(msg.mtype, msg.name, msg.mid, msg.arguments) + b"\n"


if HAVE_RUST_CODEC:
    from katcp._protocol.grammar import (
        _RUST_INFORM,
        _RUST_REQUEST,
        _RUST_TYPES,
        _rust_error,
        _RustMessage,
        _RustParser,
        _tuple_message,
    )

    _repeat = itertools.repeat

    def _name_of(raw: bytes) -> str:
        """The name of a message from katcp-codec's bytes, cached for the next ones."""
        name = raw.decode("ascii")
        if len(_NAME_CACHE) < 1024:
            _NAME_CACHE[raw] = name
        return name

    def _from_rust(items: Sequence[Any], cls: type) -> list:
        """``katcp.Message`` objects from katcp-codec's (AttributeError if one is an error).

        The one place that converts a parsed katcp-codec message, kept to the least work:
        the objects are made in one C-level pass, then four slot stores per message.
        """
        req = _RUST_REQUEST
        inf = _RUST_INFORM
        names = _NAME_CACHE
        out: List[Any] = list(map(_object_new, _repeat(cls, len(items))))
        last_mid = 0  # never a valid id
        last_mid_bytes = b""
        for msg, m in zip(out, items):
            mt = m.mtype
            msg.mtype = 2 if mt is inf else 0 if mt is req else 1  # informs are most lines
            raw = m.name
            name = names.get(raw)
            msg.name = name if name is not None else _name_of(raw)
            msg.arguments = m.arguments
            mid = m.mid
            if mid is None:
                msg.mid = None
            elif mid == last_mid:
                # Informs and the reply to one request share its id: format it once.
                msg.mid = last_mid_bytes
            else:
                last_mid = mid
                msg.mid = last_mid_bytes = b"%d" % mid
        return out

    class RustLineCodec:
        """Streaming KATCP line codec backed by ``katcp-codec`` (Rust).

        Same interface and behaviour as :class:`PyLineCodec`.
        """

        backend = "rust"

        def __init__(self, max_line_length: int = 2**20) -> None:
            self.max_line_length = max_line_length
            self._message_class = Message
            self._parser = _RustParser(max_line_length)
            self._append = self._parser.append
            #: Number of bytes of the pending unterminated line (capped at the limit): the
            #: parser's count after the last feed, read by the transport after each read
            #: (an attribute: no property call per read).
            self.buffer_size = 0
            # Bytes of the pending partial line (None: unknown because too long),
            # kept only to describe syntax errors as precisely as PyLineCodec.
            self._tail: List[bytes] | None = []
            self._tail_size = 0

        def reset(self) -> None:
            """Discard any partial line."""
            self._parser.reset()
            self.buffer_size = 0
            self._tail = []
            self._tail_size = 0

        def feed(self, data: Union[bytes, bytearray, memoryview]) -> list:
            """Add received bytes; return the complete messages and errors, in order."""
            items = self._append(data)
            size = self.buffer_size = self._parser.buffer_size
            if len(items) == 1 and not size and not self._tail_size:
                # The usual read of a client waiting for a reply: one whole line, nothing
                # before or after it. Converted as _from_rust does, without its set-up.
                m = items[0]
                if type(m) is _RustMessage:  # (not a ValueError: a malformed line)
                    msg = _object_new(self._message_class)
                    mt = m.mtype
                    msg.mtype = 2 if mt is _RUST_INFORM else 0 if mt is _RUST_REQUEST else 1
                    raw = m.name
                    name = _NAME_CACHE.get(raw)
                    msg.name = name if name is not None else _name_of(raw)
                    msg.arguments = m.arguments
                    mid = m.mid
                    msg.mid = None if mid is None else b"%d" % mid
                    return [msg]
            try:
                out = _from_rust(items, self._message_class)
                errors = False
            except AttributeError:  # an item is a ValueError: a malformed line
                out = []
                limit = self.max_line_length
                cls = self._message_class
                for m in items:
                    if isinstance(m, ValueError):
                        out.append(_rust_error(m, limit))
                    else:
                        out += _from_rust((m,), cls)
                errors = True
            if errors:
                self._describe_errors(out, data)
            if size:
                self._keep_tail(data, size)
            elif self._tail_size or self._tail is None:
                self._tail = []
                self._tail_size = 0
            return out

        def _keep_tail(self, data: Union[bytes, bytearray, memoryview], size: int) -> None:
            if size >= self.max_line_length:
                self._tail = None  # the line is too long anyway
                self._tail_size = size
            elif size <= len(data):
                self._tail = [bytes(data[len(data) - size :])]
                self._tail_size = size
            elif self._tail is not None and self._tail_size + len(data) == size:
                self._tail.append(bytes(data))
                self._tail_size = size
            else:
                self._tail = None
                self._tail_size = size

        def _describe_errors(self, out: list, data: Union[bytes, bytearray, memoryview]) -> None:
            """Replace katcp-codec's terse errors by the pure parser's descriptions."""
            limit = self.max_line_length - 1
            if self._tail is None:
                # The pending line was too long: it ends at the first terminator.
                text = bytes(data)
                if 13 in text:
                    text = text.replace(b"\r", b"\n")
                lines = text.split(b"\n")
                lines[0] = b"x" * (limit + 1)  # stands for the over-long line
            else:
                text = b"".join(self._tail) + bytes(data)
                if 13 in text:
                    text = text.replace(b"\r", b"\n")
                lines = text.split(b"\n")
            lines.pop()  # the new partial line, if any
            items = [ln for ln in lines if len(ln) > limit or ln.strip(_BLANK_STRIP)]
            if len(items) != len(out):
                return  # cannot line them up: keep katcp-codec's messages
            for i, (line, item) in enumerate(zip(items, out)):
                if not isinstance(item, KatcpSyntaxError):
                    continue
                if len(line) > limit:
                    out[i] = _too_long_error(self.max_line_length)
                else:
                    try:
                        _parse_general(line, _tuple_message)
                    except KatcpSyntaxError as exc:
                        out[i] = exc

        def encode(self, msg: Any) -> bytes:
            """Wire form of ``msg`` including the trailing ``\\n``."""
            mid = msg.mid
            return bytes(
                _RustMessage(
                    _RUST_TYPES[msg.mtype],
                    msg.name.encode("ascii"),
                    None if mid is None else int(mid),
                    msg.arguments,
                )
            )

else:
    # None tells callers the backend is missing (see rust_parse_line in grammar.py).
    RustLineCodec = None  # type: ignore[assignment,misc]

#: The streaming codec of the active backend.
LineCodec: Type[Any] = RustLineCodec if RustLineCodec is not None else PyLineCodec
