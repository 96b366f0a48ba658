"""Device servers: `DeviceServer`, `AsyncDeviceServer`, `DeviceServerBase` and `DeviceLogger`.

The implementation is split by job:

* :mod:`katcp._server.connections` -- client connection objects and `KATCPServer` (the
  connection registry on top of the shared transport, and the ioloop);
* :mod:`katcp._server.dispatch` -- `DeviceServerBase`: message dispatch, per-client
  ordering and the concurrency options;
* :mod:`katcp._server.handler_thread` -- `MessageHandlerThread` (the handler thread and its
  queue: one wake-up per burst of requests);
* :mod:`katcp._server.sensors` -- sensors, sampling strategies and connect informs;
* :mod:`katcp._server.requests` -- `DeviceServer` (the standard requests) and
  `AsyncDeviceServer`;
* :mod:`katcp._server.logger` -- `DeviceLogger`.

This module is the public import path and re-exports them all.
"""

from __future__ import annotations

from katcp._protocol.message import (
    DEFAULT_KATCP_MAJOR,
    MS_TO_SEC_FAC,
    SEC_TO_MS_FAC,
    SEC_TS_KATCP_MAJOR,
    VERSION_CONNECT_KATCP_MAJOR,
)
from katcp._server.connections import (
    ClientConnection,
    ClientRequestConnection,
    KATCPServer,
    ThreadsafeClientConnection,
)
from katcp._server.dispatch import DeviceServerBase, construct_name_filter, return_future
from katcp._server.handler_thread import MessageHandlerThread
from katcp._server.logger import DeviceLogger
from katcp._server.requests import AsyncDeviceServer, DeviceServer

#: List of basic KATCP requests that a minimal device server should implement.
BASE_REQUESTS = frozenset([
    "halt",
    "help",
    "log-level",
    "restart",
    "client-list",
    "sensor-list",
    "sensor-sampling",
    "sensor-sampling-clear",
    "sensor-value",
    "watchdog",
    "version-list",
])

__all__ = [
    "AsyncDeviceServer",
    "BASE_REQUESTS",
    "ClientConnection",
    "ClientRequestConnection",
    "DEFAULT_KATCP_MAJOR",
    "DeviceLogger",
    "DeviceServer",
    "DeviceServerBase",
    "KATCPServer",
    "MS_TO_SEC_FAC",
    "MessageHandlerThread",
    "SEC_TO_MS_FAC",
    "SEC_TS_KATCP_MAJOR",
    "ThreadsafeClientConnection",
    "VERSION_CONNECT_KATCP_MAJOR",
    "construct_name_filter",
    "return_future",
]

# Names katcp-python 0.9.3 also exposed in this module (it imported them here), which
# code still imports from it; not part of __all__.  Pinned by tests/test_katcp093_names.py.
from katcp._aio.ioloop import (  # noqa: E402, F401
    IOLoopManager,
    with_relative_timeout,
)
from katcp._protocol.decorators import (  # noqa: E402, F401
    has_katcp_protocol_flags,
    minimum_katcp_version,
    request,
    return_reply,
)
from katcp._protocol.kattypes import (  # noqa: E402, F401
    Int,
    Str,
)
from katcp._protocol.message import (  # noqa: E402, F401
    AsyncReply,
    FailReply,
    Message,
    MessageParser,
    ProtocolFlags,
)
from katcp._protocol.metaclass import (  # noqa: E402, F401
    DeviceServerMetaclass,
)
from katcp._server.strategies import (  # noqa: E402, F401
    SampleNone,
    SampleStrategy,
    format_inform_v4,
    format_inform_v5,
)
from katcp.compat import (  # noqa: E402, F401
    ensure_native_str,
)
