"""Network-free fakes of the inspecting and resource clients, for users' tests.

The fakes replace the low-level TCP client with :class:`FakeAsyncClient`,
which answers requests by calling in-process request handlers.  A manager
object returned with each fake lets the test add sensors and request handlers
(the fake device then announces ``#interface-changed`` so the client re-syncs)
and set sensor readings::

    res, manager = fake_KATCP_client_resource_factory(
        KATCPClientResource, {}, dict(name="dev", address=("fake", 0), controlled=True))
    res.start()
    manager.add_sensors({"temp": ("Temperature", "degC", "float", -50, 150)})
    manager.add_request_handlers_dict({"ping": ping_handler})
    await res.until_synced()
    manager.set_sensor_reading("temp", 21.5)
"""

from __future__ import annotations

from katcp._testutils.fakes import (
    FakeAsyncClient,
    FakeClientRequestConnection,
    FakeInspectingClientManager,
    FakeKATCPClientResourceContainerManager,
    FakeKATCPClientResourceManager,
    FakeKATCPServer,
    FakeKATCPServerError,
    fake_inspecting_client_factory,
    fake_KATCP_client_resource_container_factory,
    fake_KATCP_client_resource_factory,
)

__all__ = [
    "FakeAsyncClient",
    "FakeClientRequestConnection",
    "FakeInspectingClientManager",
    "FakeKATCPClientResourceContainerManager",
    "FakeKATCPClientResourceManager",
    "FakeKATCPServer",
    "FakeKATCPServerError",
    "fake_KATCP_client_resource_container_factory",
    "fake_KATCP_client_resource_factory",
    "fake_inspecting_client_factory",
]

# Names katcp-python 0.9.3 also exposed in this module (it imported them here), which
# code still imports from it; not part of __all__.  Pinned by tests/test_katcp093_names.py.
from katcp._protocol.message import (  # noqa: E402, F401
    Message,
    ProtocolFlags,
)
from katcp._protocol.metaclass import (  # noqa: E402, F401
    AttrDict,
    convert_method_name,
)
from katcp._protocol.sensor import (  # noqa: E402, F401
    Sensor,
)
