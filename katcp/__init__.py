"""katcp: control and monitor instruments over KATCP (and NCP).

The top-level namespace re-exports the names katcp-python users import from ``katcp``, and
``import katcp`` loads the same submodules katcp-python's does.  ``katcp.testutils``,
``katcp.fake_clients`` and ``katcp.ncp`` are imported explicitly when needed.
"""

from . import (
    client,
    compat,
    core,
    inspecting_client,
    ioloop_manager,
    kattypes,
    object_proxies,
    resource,
    resource_client,
    sampling,
    sensortree,
    server,
)
from .client import AsyncClient, BlockingClient, CallbackClient, DeviceClient
from .core import (
    AsyncReply,
    AttrDict,
    DeviceMetaclass,
    FailReply,
    KatcpClientError,
    KatcpDeviceError,
    KatcpSyntaxError,
    KatcpTypeError,
    Message,
    MessageParser,
    ProtocolFlags,
)
from .resource_client import KATCPClientResource, KATCPClientResourceContainer
from .sensor import Sensor
from .sensortree import AggregateSensorTree, BooleanSensorTree, GenericSensorTree
from .server import AsyncDeviceServer, DeviceLogger, DeviceServer, DeviceServerBase
from .version import VERSION, VERSION_STR, __version__

__all__ = [
    "AggregateSensorTree",
    "AsyncClient",
    "AsyncDeviceServer",
    "AsyncReply",
    "AttrDict",
    "BlockingClient",
    "BooleanSensorTree",
    "CallbackClient",
    "DeviceClient",
    "DeviceLogger",
    "DeviceMetaclass",
    "DeviceServer",
    "DeviceServerBase",
    "FailReply",
    "GenericSensorTree",
    "KATCPClientResource",
    "KATCPClientResourceContainer",
    "KatcpClientError",
    "KatcpDeviceError",
    "KatcpSyntaxError",
    "KatcpTypeError",
    "Message",
    "MessageParser",
    "ProtocolFlags",
    "Sensor",
    "VERSION",
    "VERSION_STR",
    "__version__",
    "client",
    "compat",
    "core",
    "inspecting_client",
    "ioloop_manager",
    "kattypes",
    "object_proxies",
    "resource",
    "resource_client",
    "sampling",
    "sensortree",
    "server",
]
