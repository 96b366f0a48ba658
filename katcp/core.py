"""Core KATCP classes: messages, parser, protocol flags, exceptions, sensors and helpers.

This is katcp-python's ``katcp.core``.  The names are defined by job in the layers below:

* :mod:`katcp._protocol.message` -- :class:`Message`, :class:`MessageParser`,
  :class:`ProtocolFlags`, the exceptions and the version constants;
* :mod:`katcp._protocol.metaclass` -- :class:`AttrDict`, :class:`DeviceMetaclass` (the
  handler tables of servers and clients);
* :mod:`katcp._protocol.sensor` -- :class:`Sensor` and :class:`Reading` (katcp-python kept
  them in this module too);
* :mod:`katcp._aio.futures` -- the tornado/asyncio helpers (:class:`AsyncEvent`,
  :func:`until_any`, ...).
"""

from __future__ import annotations

from katcp._aio.futures import (
    AsyncCallbackEvent,
    AsyncEvent,
    AsyncState,
    LatencyTimer,
    future_timeout_manager,
    hashable_identity,
    log_coroutine_exceptions,
    log_future_exceptions,
    steal_docstring_from,
    until_any,
    until_later,
    until_some,
)
from katcp._protocol.message import (
    DEFAULT_KATCP_MAJOR,
    FLOAT_TS_KATCP_MAJOR,
    INTERFACE_CHANGED_KATCP_MAJOR,
    MID_KATCP_MAJOR,
    MS_TO_SEC_FAC,
    SEC_TO_MS_FAC,
    SEC_TS_KATCP_MAJOR,
    VERSION_CONNECT_KATCP_MAJOR,
    AsyncReply,
    FailReply,
    KatcpClientDisconnected,
    KatcpClientError,
    KatcpDeviceError,
    KatcpSyntaxError,
    KatcpTypeError,
    KatcpVersionError,
    Message,
    MessageParser,
    ProtocolFlags,
    encode_utf8_with_error_log,
)
from katcp._protocol.metaclass import (
    AttrDict,
    DefaultAttrDict,
    DeviceMetaclass,
    DeviceServerMetaclass,
    convert_method_name,
)
from katcp._protocol.sensor import Reading, Sensor

__all__ = [
    "Message",
    "MessageParser",
    "ProtocolFlags",
    "AttrDict",
    "DefaultAttrDict",
    "DeviceMetaclass",
    "DeviceServerMetaclass",
    "FailReply",
    "AsyncReply",
    "KatcpDeviceError",
    "KatcpClientError",
    "KatcpClientDisconnected",
    "KatcpVersionError",
    "KatcpSyntaxError",
    "KatcpTypeError",
    "convert_method_name",
    "encode_utf8_with_error_log",
    "DEFAULT_KATCP_MAJOR",
    "MID_KATCP_MAJOR",
    "VERSION_CONNECT_KATCP_MAJOR",
    "INTERFACE_CHANGED_KATCP_MAJOR",
    "SEC_TS_KATCP_MAJOR",
    "FLOAT_TS_KATCP_MAJOR",
    "SEC_TO_MS_FAC",
    "MS_TO_SEC_FAC",
    "AsyncEvent",
    "AsyncCallbackEvent",
    "AsyncState",
    "LatencyTimer",
    "until_any",
    "until_some",
    "until_later",
    "future_timeout_manager",
    "steal_docstring_from",
    "hashable_identity",
    "log_future_exceptions",
    "log_coroutine_exceptions",
    "Sensor",
    "Reading",
]

# Names katcp-python 0.9.3 also exposed in this module (it imported them here), which
# code still imports from it; not part of __all__.  Pinned by tests/test_katcp093_names.py.
from katcp._protocol.kattypes import (  # noqa: E402, F401
    Address,
    Bool,
    Discrete,
    Float,
    Int,
    Lru,
    Str,
    Timestamp,
)
from katcp.compat import (  # noqa: E402, F401
    byte_chars,
    ensure_native_str,
    is_bytes,
    is_text,
)
