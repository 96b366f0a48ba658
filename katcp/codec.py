"""KATCP line codec (layer L0): bytes <-> messages, no I/O.

Two interchangeable implementations of the same interface live here:

* a pure-Python one (always available), and
* one built on SARAO's ``katcp-codec`` Rust extension, used when it can be
  imported (it has no Windows wheels).

:class:`LineCodec` is the streaming codec used by the transport: ``feed(data)``
returns the messages (and :class:`KatcpSyntaxError` instances for malformed
lines) whose terminator was in ``data``; ``encode(msg)`` gives the wire form
including the trailing newline.  :func:`parse_line` parses one line (no
terminator) for :class:`katcp.core.MessageParser`.  :func:`format_message`
formats a message without its terminator for ``bytes(msg)``.

Set the environment variable ``KATCP_CODEC=python`` before importing to force
the pure-Python implementation (``KATCP_CODEC=rust`` makes a missing
``katcp-codec`` an import error instead of a silent fallback).

The grammar is KATCP v5.1 (see the guideline, section 2.1): where katcp-python
0.9.3 was laxer (message ids ``0``, ``007`` or above 2**31-1, whitespace-only
lines reported as errors) this module follows the protocol.
"""


from __future__ import annotations

from katcp._protocol.grammar import (
    CODEC_BACKEND,
    HAVE_RUST_CODEC,
    KatcpSyntaxError,
    escape_argument,
    format_message,
    parse_line,
    py_format_message,
    py_parse_line,
    rust_format_message,
    rust_parse_line,
    unescape_argument,
)
from katcp._protocol.linecodec import LineCodec, PyLineCodec, RustLineCodec

__all__ = [
    "KatcpSyntaxError",
    "LineCodec",
    "PyLineCodec",
    "RustLineCodec",
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
