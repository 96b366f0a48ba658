"""What the manager's server needs from a proxied device, and what a device needs from it.

A :class:`ProxiedDevice` (a KATCP device in :mod:`katcp.manager.katcp_device`, an NCP node in
:mod:`katcp.manager.ncp_device`) keeps the manager-side view of one device: its proxy sensors
(real :class:`katcp.Sensor` objects named ``<device>.<sensor>``, so that every sampling
strategy of the manager's server works on them) and its requests (``<device>-<request>``).
When that view changes it calls :meth:`DeviceOwner.device_changed`; the server then adds and
removes sensors and tells clients ``#interface-changed``.
"""

from __future__ import annotations

import abc
import logging
from typing import Any, Callable, Dict, Protocol, Sequence

from katcp.core import Message, Sensor
from katcp.sensor import now
from katcp.server import ClientRequestConnection

__all__ = ["DeviceOwner", "ProxiedDevice", "unreachable_reply"]

log = logging.getLogger("katcp.manager")


class DeviceOwner(Protocol):
    """The manager's side of the contract with its devices."""

    def device_changed(self, device: ProxiedDevice, sensors: bool, requests: bool) -> None:
        """The device's sensors and/or requests changed (or it came up or went down)."""

    def device_log(self, device: ProxiedDevice, level: str, text: str) -> None:
        """Send ``#log`` to every client on behalf of the device."""


def unreachable_reply(name: str, device: str) -> Message:
    """The reply to a request for a device that is not connected."""
    return Message.reply(name, "fail", f"device {device} is unreachable")


class ProxiedDevice(abc.ABC):
    """Base class of the manager's devices.

    Parameters
    ----------
    name : str
        Device name: the prefix of its request and sensor names.
    owner : DeviceOwner
        The manager.

    Attributes
    ----------
    sensors : dict of str to Sensor
        Proxy sensors by their manager-side name (``<device>.<sensor>``).
    requests : dict of str to str
        Help text by request suffix (``<request>`` of ``<device>-<request>``).
    """

    #: ``katcp`` or ``ncp`` (or ``registered`` for devices that dialled in).
    kind = ""

    def __init__(self, name: str, owner: DeviceOwner) -> None:
        self.name = name
        self.owner = owner
        self.sensors: Dict[str, Sensor] = {}
        self.requests: Dict[str, str] = {}

    # -- what subclasses provide ------------------------------------------------
    @property
    @abc.abstractmethod
    def up(self) -> bool:
        """Whether requests can be sent to the device now."""

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """Where the device is, as text."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start connecting (and reconnecting) to the device; return at once."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Disconnect and stop reconnecting."""

    @abc.abstractmethod
    def forward(self, req: ClientRequestConnection, suffix: str,
                args: Sequence[bytes]) -> None:
        """Send request ``<suffix>`` with `args` to the device; reply to `req` when done.

        The reply (and informs) to `req` carry the manager-side name ``req.msg.name``.
        Must always reply, also on timeout and disconnect.
        """

    def forward_message(self, connection: Any, msg: Message, suffix: str,
                        done: Callable[[Any, Message, Message], None]) -> bool:
        """Forward the client's request `msg` the fast way, if the device has one.

        The reply and informs go to the client on `connection` with ``msg``'s name and
        message id; then ``done(connection, msg, reply)`` is called.  Returns False
        (doing nothing) when the device cannot: :meth:`forward` is used instead.  The
        default has no fast way.
        """
        return False

    # -- shared helpers ------------------------------------------------------------
    def sensor_name(self, remote: str) -> str:
        """Manager-side name of the device's sensor `remote`."""
        return f"{self.name}.{remote}"

    def request_name(self, suffix: str) -> str:
        """Manager-side name of the device's request `suffix`."""
        return f"{self.name}-{suffix}"

    def mark_unreachable(self) -> None:
        """Set every proxy sensor to status ``unreachable``, keeping its last value."""
        timestamp = now()
        for sensor in self.sensors.values():
            try:
                sensor.set(timestamp, Sensor.UNREACHABLE, sensor.value())
            except ValueError:
                log.debug("Could not mark sensor %s unreachable", sensor.name, exc_info=True)
