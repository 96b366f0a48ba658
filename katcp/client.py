"""KATCP clients.

:class:`DeviceClient` is the raw client (connection, reconnection, protocol
detection, dispatch of incoming messages to ``reply_*``/``inform_*``/
``request_*`` methods). :class:`AsyncClient` adds request tracking
(callbacks, futures, blocking calls, message ids, timeouts);
:class:`CallbackClient` and :class:`BlockingClient` are its thread-safe forms.
"""

from katcp._client.base import (
    FLOAT_TS_KATCP_MAJOR,
    SEC_TO_MS_FAC,
    SEC_TS_KATCP_MAJOR,
    DeviceClient,
    address_to_string,
    log,
    make_threadsafe,
    make_threadsafe_blocking,
)

from katcp._client.requests import AsyncClient, BlockingClient, CallbackClient, request_check

__all__ = [
    "FLOAT_TS_KATCP_MAJOR",
    "SEC_TO_MS_FAC",
    "SEC_TS_KATCP_MAJOR",
    "AsyncClient",
    "BlockingClient",
    "CallbackClient",
    "DeviceClient",
    "address_to_string",
    "log",
    "make_threadsafe",
    "make_threadsafe_blocking",
    "request_check",
]

# Names katcp-python 0.9.3 also exposed in this module (it imported them here), which
# code still imports from it; not part of __all__.  Pinned by tests/test_katcp093_names.py.
from katcp._aio.futures import (  # noqa: E402, F401
    AsyncEvent,
    LatencyTimer,
    until_later,
)
from katcp._aio.ioloop import (  # noqa: E402, F401
    IOLoopManager,
)
from katcp._protocol.message import (  # noqa: E402, F401
    KatcpClientDisconnected,
    KatcpClientError,
    KatcpVersionError,
    Message,
    MessageParser,
    ProtocolFlags,
)
from katcp._protocol.metaclass import (  # noqa: E402, F401
    DeviceMetaclass,
)
from katcp.compat import (  # noqa: E402, F401
    ensure_native_str,
)
