"""Device servers: `DeviceServer`, `AsyncDeviceServer`, `DeviceServerBase` and `DeviceLogger`.

The implementation is split by job:

* :mod:`katcp._server.connections` -- client connection objects and `KATCPServer` (the
  connection registry on top of the shared transport, and the ioloop);
* :mod:`katcp._server.dispatch` -- `DeviceServerBase`: message dispatch, per-client
  ordering and the concurrency options;
* :mod:`katcp._server.handler_thread` -- `MessageHandlerThread` (batched hand-over of requests
  to the handler thread);
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
