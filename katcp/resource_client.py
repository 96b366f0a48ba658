"""Concrete high-level KATCP clients: one device, containers of devices, groups.

:class:`KATCPClientResource` inspects one device and exposes its requests
under ``.req`` and its sensors under ``.sensor``; sampling strategies and
listeners are remembered and re-applied after reconnects and to sensors that
appear later.  :class:`KATCPClientResourceContainer` holds several of them.
The thread-safe wrappers let plain threads drive these objects, which live in
an ioloop thread.
"""

from __future__ import annotations

# Not in __all__: names katcp-python 0.9.3 had in this module because it imported them here,
# which real code imports from here (tests/test_katcp093_names.py pins them).
from katcp._aio.futures import (  # noqa: F401
    AsyncCallbackEvent,
    AsyncEvent,
    AsyncState,
    LatencyTimer,
    log_future_exceptions,
    steal_docstring_from,
    until_any,
    until_some,
)
from katcp._aio.ioloop import (  # noqa: F401
    IOLoopThreadWrapper,
    ThreadSafeMethodAttrWrapper,
)
from katcp._protocol.message import Message  # noqa: F401
from katcp._protocol.metaclass import AttrDict, DefaultAttrDict  # noqa: F401
from katcp._resource.client import (
    KATCPClientResource,
    KATCPClientResourceRequest,
    KATCPClientResourceSensorsManager,
    ReplyWrappedInspectingClientAsync,
)
from katcp._resource.container import (
    ClientGroup,
    GroupRequest,
    GroupResults,
    KATCPClientResourceContainer,
)
from katcp._resource.resource import KATCPReply, KATCPSensorError  # noqa: F401
from katcp._resource.helpers import (
    AttrMappingProxy,
    MappingProxy,
    list_sensors,
    monitor_resource_sync_state,
    transform_future,
)
from katcp._resource.wrappers import (
    ThreadSafeKATCPClientGroupWrapper,
    ThreadSafeKATCPClientResourceRequestWrapper,
    ThreadSafeKATCPClientResourceWrapper,
    ThreadSafeKATCPSensorWrapper,
)

__all__ = [
    "AttrMappingProxy",
    "ClientGroup",
    "GroupRequest",
    "GroupResults",
    "KATCPClientResource",
    "KATCPClientResourceContainer",
    "KATCPClientResourceRequest",
    "KATCPClientResourceSensorsManager",
    "MappingProxy",
    "ReplyWrappedInspectingClientAsync",
    "ThreadSafeKATCPClientGroupWrapper",
    "ThreadSafeKATCPClientResourceRequestWrapper",
    "ThreadSafeKATCPClientResourceWrapper",
    "ThreadSafeKATCPSensorWrapper",
    "ThreadSafeMethodAttrWrapper",
    "list_sensors",
    "monitor_resource_sync_state",
    "transform_future",
]
