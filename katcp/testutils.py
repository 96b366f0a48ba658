"""Test helpers for suites that test KATCP devices and clients.

Importable with the standard library's :mod:`unittest.mock` alone (the
third-party ``mock`` package is not needed).

* Clients: :class:`BlockingTestClient` (assertions on requests and sensors),
  :class:`MessageRecorder`.
* Servers: :class:`DeviceTestServer`, :class:`AsyncDeviceTestServer`,
  :class:`DeviceTestServerWithTimeoutHints`, :class:`DeviceTestSensor`,
  :class:`ClientConnectionTest`, :func:`mock_req`, :func:`handle_mock_req`.
* Waiting: :class:`WaitingMock`, :class:`AsyncWaitingMock`,
  :func:`counting_callback`, :class:`SensorTransitionWaiter`,
  :class:`SensorTransitionStatusWaiter`, :func:`wait_sensor`,
  :func:`wait_sensor_async`, :func:`suppress_queue_repeats`.
* Assertions: :class:`SensorComparisonMixin`, :class:`TestUtilMixin`.
* Plumbing: :class:`TestLogHandler`, :func:`start_thread_with_cleanup`,
  :func:`call_in_ioloop`, :class:`TimewarpAsyncTestCase`,
  :class:`TimewarpAsyncTestCaseTimeAdvancer`, :class:`AtomicIaddCallback`,
  :func:`add_mid_to_msg_str`, :func:`list_to_native_strings`.
"""

from katcp._testutils.client import BlockingTestClient, MessageRecorder, list_to_native_strings
from katcp._testutils.misc import (
    AsyncWaitingMock,
    AtomicIaddCallback,
    SensorComparisonMixin,
    SensorTransitionStatusWaiter,
    SensorTransitionWaiter,
    TestLogHandler,
    TestUtilMixin,
    TimewarpAsyncTestCase,
    TimewarpAsyncTestCaseTimeAdvancer,
    WaitingMock,
    add_mid_to_msg_str,
    call_in_ioloop,
    counting_callback,
    start_thread_with_cleanup,
    suppress_queue_repeats,
    wait_sensor,
    wait_sensor_async,
)
from katcp._testutils.server import (
    AsyncDeviceTestServer,
    ClientConnectionTest,
    DeviceTestSensor,
    DeviceTestServer,
    DeviceTestServerWithTimeoutHints,
    handle_mock_req,
    mock_req,
)

__all__ = [
    "AsyncDeviceTestServer",
    "AsyncWaitingMock",
    "AtomicIaddCallback",
    "BlockingTestClient",
    "ClientConnectionTest",
    "DeviceTestSensor",
    "DeviceTestServer",
    "DeviceTestServerWithTimeoutHints",
    "MessageRecorder",
    "SensorComparisonMixin",
    "SensorTransitionStatusWaiter",
    "SensorTransitionWaiter",
    "TestLogHandler",
    "TestUtilMixin",
    "TimewarpAsyncTestCase",
    "TimewarpAsyncTestCaseTimeAdvancer",
    "WaitingMock",
    "add_mid_to_msg_str",
    "call_in_ioloop",
    "counting_callback",
    "handle_mock_req",
    "list_to_native_strings",
    "mock_req",
    "start_thread_with_cleanup",
    "suppress_queue_repeats",
    "wait_sensor",
    "wait_sensor_async",
]

# Names katcp-python 0.9.3 also exposed in this module (it imported them here), which
# code still imports from it; not part of __all__.  Pinned by tests/test_katcp093_names.py.
from katcp._aio.futures import (  # noqa: E402, F401
    AsyncEvent,
    steal_docstring_from,
)
from katcp._aio.proxies import (  # noqa: E402, F401
    ObjectWrapper,
)
from katcp._protocol.decorators import (  # noqa: E402, F401
    concurrent_reply,
    request,
    request_timeout_hint,
    return_reply,
)
from katcp._protocol.kattypes import (  # noqa: E402, F401
    Bool,
    Discrete,
    Float,
    Int,
    Str,
)
from katcp._protocol.message import (  # noqa: E402, F401
    AsyncReply,
    FailReply,
    Message,
    ProtocolFlags,
)
from katcp._protocol.sensor import (  # noqa: E402, F401
    Sensor,
)
from katcp._server.connections import (  # noqa: E402, F401
    ClientConnection,
)
from katcp._server.requests import (  # noqa: E402, F401
    DeviceServer,
)
from katcp.compat import (  # noqa: E402, F401
    ensure_native_str,
    is_bytes,
    is_text,
)
