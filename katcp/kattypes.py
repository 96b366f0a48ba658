"""KATCP value types: Python values <-> message argument bytes.

The types (:class:`Int`, :class:`Float`, :class:`Bool`, :class:`Str`,
:class:`Discrete`, :class:`DiscreteMulti`, :class:`Lru`, :class:`Timestamp`,
:class:`TimestampOrNow`, :class:`StrictTimestamp`, :class:`Address`,
:class:`Struct`, :class:`Regex`) convert between Python values and the byte
strings carried as KATCP message arguments.  Both directions depend on the
KATCP major version for timestamps: version 5 sends float seconds (``%.6f``),
version 4 integer milliseconds.

The decorators that use them on handlers live in :mod:`katcp._protocol.decorators`;
:mod:`katcp.kattypes` re-exports both.
"""

from __future__ import annotations

from katcp._protocol.decorators import (
    async_make_reply,
    concurrent_reply,
    has_katcp_protocol_flags,
    inform,
    make_reply,
    minimum_katcp_version,
    request,
    request_timeout_hint,
    return_reply,
    send_reply,
    unpack_message,
)
from katcp._protocol.kattypes import (
    Address,
    Bool,
    Discrete,
    DiscreteMulti,
    Float,
    Int,
    KatcpType,
    Lru,
    Parameter,
    Regex,
    Str,
    StrictTimestamp,
    Struct,
    Timestamp,
    TimestampOrNow,
    pack_types,
    unpack_types,
)
from katcp._security.roles import requires_role
from katcp._protocol.message import (
    DEFAULT_KATCP_MAJOR,
    MS_TO_SEC_FAC,
    SEC_TO_MS_FAC,
    SEC_TS_KATCP_MAJOR,
)

__all__ = [
    "DEFAULT_KATCP_MAJOR",
    "MS_TO_SEC_FAC",
    "SEC_TO_MS_FAC",
    "SEC_TS_KATCP_MAJOR",
    "KatcpType",
    "Int",
    "Float",
    "Bool",
    "Str",
    "Discrete",
    "DiscreteMulti",
    "Lru",
    "Address",
    "Timestamp",
    "TimestampOrNow",
    "StrictTimestamp",
    "Struct",
    "Regex",
    "Parameter",
    "unpack_types",
    "pack_types",
    "request",
    "inform",
    "unpack_message",
    "return_reply",
    "send_reply",
    "make_reply",
    "async_make_reply",
    "concurrent_reply",
    "minimum_katcp_version",
    "has_katcp_protocol_flags",
    "request_timeout_hint",
    "requires_role",
]

# Names katcp-python 0.9.3 also exposed in this module (it imported them here), which
# code still imports from it; not part of __all__.  Pinned by tests/test_katcp093_names.py.
from katcp._protocol.message import (  # noqa: E402, F401
    FailReply,
    Message,
)
from katcp._protocol.metaclass import (  # noqa: E402, F401
    convert_method_name,
)
from katcp.compat import (  # noqa: E402, F401
    ensure_native_str,
    is_bytes,
    is_text,
)
