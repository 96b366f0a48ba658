"""Client that mirrors a KATCP device's requests and sensors.

:class:`InspectingClientAsync` connects to a device, learns its requests
(``?help``, plus ``?request-timeout-hint`` when the device has the ``T`` flag)
and its sensors (``?sensor-list``), keeps that model current when the device
sends ``#interface-changed`` and after every reconnect, and reports its state
(connected / synced / model changed / data synced) to a callback and through
``until_*`` futures.
"""

from __future__ import annotations

from katcp._resource.inspecting import (
    ExponentialRandomBackoff,
    InspectingClientAsync,
    RequestType,
    SyncError,
)
from katcp._resource.inspecting_state import (
    InspectingClientStateType,
)

__all__ = [
    "ExponentialRandomBackoff",
    "InspectingClientAsync",
    "InspectingClientStateType",
    "RequestType",
    "SyncError",
]

# Names katcp-python 0.9.3 also exposed in this module (it imported them here), which
# code still imports from it; not part of __all__.  Pinned by tests/test_katcp093_names.py.
from katcp._aio.futures import (  # noqa: E402, F401
    future_timeout_manager,
    steal_docstring_from,
    until_any,
)
from katcp._protocol.metaclass import (  # noqa: E402, F401
    AttrDict,
)
from katcp.compat import (  # noqa: E402, F401
    ensure_native_str,
)
