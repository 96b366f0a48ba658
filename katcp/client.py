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
