"""Concrete high-level KATCP clients: one device, containers of devices, groups.

:class:`KATCPClientResource` inspects one device and exposes its requests
under ``.req`` and its sensors under ``.sensor``; sampling strategies and
listeners are remembered and re-applied after reconnects and to sensors that
appear later.  :class:`KATCPClientResourceContainer` holds several of them.
The thread-safe wrappers let plain threads drive these objects, which live in
an ioloop thread.
"""

from __future__ import annotations

from katcp._aio.ioloop import (
    ThreadSafeMethodAttrWrapper,
)
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
