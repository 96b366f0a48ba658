"""Abstract high-level resource API: resources, requests and client-side sensors.

A *resource* is a KATCP device (or a collection of devices) seen from a client.
It exposes its requests as callables under ``.req`` and its sensors as
:class:`KATCPSensor` objects under ``.sensor``, both keyed by Python
identifiers (see :func:`escape_name`).  The concrete network-backed resources
live in :mod:`katcp.resource_client`.
"""

from __future__ import annotations

# Not in __all__: names katcp-python 0.9.3 had in this module because it imported them here
# (tests/test_katcp093_names.py pins them).
from katcp._aio.futures import hashable_identity  # noqa: F401
from katcp._protocol.message import Message  # noqa: F401
from katcp._protocol.sensor import Sensor  # noqa: F401
from katcp._resource.resource import (
    KATCPDummyRequest,
    KATCPReply,
    KATCPRequest,
    KATCPResource,
    KATCPResourceError,
    KATCPResourceInactive,
    KATCPSensorError,
    KATCPSensorReading,
    KATCPSensorsManager,
    SensorResultTuple,
    escape_name,
    normalize_strategy_parameters,
)
from katcp._resource.sensor import (
    KATCPSensor,
)
from katcp.compat import ensure_native_str  # noqa: F401

__all__ = [
    "KATCPDummyRequest",
    "KATCPReply",
    "KATCPRequest",
    "KATCPResource",
    "KATCPResourceError",
    "KATCPResourceInactive",
    "KATCPSensor",
    "KATCPSensorError",
    "KATCPSensorReading",
    "KATCPSensorsManager",
    "SensorResultTuple",
    "escape_name",
    "normalize_strategy_parameters",
]
