"""KATCP sensors: typed, time-stamped values with a status, observed by strategies.

:class:`Sensor` and :class:`Reading` are also available as
``katcp.Sensor`` / ``katcp.core.Sensor``.

Wall-clock timestamps come from the module-level function :data:`now`
(``time.time`` by default); tests may replace ``katcp.sensor.now``.
"""

from __future__ import annotations

from katcp._protocol.sensor import (
    Reading,
    Sensor,
    now,
)

__all__ = [
    "Sensor",
    "Reading",
    "now",
]
