"""Devices that dial out to the manager and register themselves (for devices behind firewalls).

Wire exchange, on the manager's *registration* address (``[manager] register = "host:port"``;
a separate port, so that a device link is never mistaken for a client)::

    device  -> manager   ?register-device rx9
    manager -> device    !register-device ok
                         (or "!register-device fail <reason>", then the manager closes)

From then on the roles turn around on that same TCP connection: the manager is the KATCP
*client* and the device the *server*.  The device side (:class:`DeviceRegistration`) pipes the
connection to its local :class:`~katcp.server.DeviceServer`, so the device server needs no
changes; the manager side (:class:`RegistrationListener`) pipes it to a loopback port that a
normal :class:`~katcp.manager.katcp_device.KatcpDevice` dials.  So a registered device is
proxied exactly like a configured one (``rx9-<request>``, ``rx9.<sensor>``, locks).

When the link drops, the device's sensors go ``unreachable`` and its requests fail; the
registration client dials again and, once it has registered, everything comes back.  A name
that is in the config, or registered by a link that is still up, is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Dict, Tuple

from katcp.core import KatcpSyntaxError, Message, MessageParser

from .config import DeviceSpec, valid_device_name
from .katcp_device import KatcpDevice

__all__ = ["DeviceRegistration", "RegisteredDevice", "RegistrationListener", "register_device"]

log = logging.getLogger("katcp.manager")

#: Longest first line accepted on the registration port.
MAX_REGISTER_LINE = 1024
#: Seconds a new link has to send its ``?register-device``.
REGISTER_TIMEOUT = 10.0
_CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes from `reader` to `writer` until EOF or an error; then close `writer`."""
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _splice(a: Tuple[asyncio.StreamReader, asyncio.StreamWriter],
                  b: Tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    """Pipe two connections into each other until either side ends; close both."""
    tasks = [asyncio.ensure_future(_pipe(a[0], b[1])), asyncio.ensure_future(_pipe(b[0], a[1]))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        a[1].close()
        b[1].close()


class _Relay:
    """A loopback listener spliced onto the device's current link (if any)."""

    def __init__(self) -> None:
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.link: Tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.link_done: asyncio.Event | None = None

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.link_done is not None:
            self.link_done.set()
        if self.link is not None:
            self.link[1].close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        link, done = self.link, self.link_done
        if link is None or done is None or done.is_set():
            writer.close()  # no device attached: the inspecting client retries
            return
        try:
            await _splice((reader, writer), link)
        finally:
            done.set()


class RegisteredDevice(KatcpDevice):
    """A KATCP device that dialled in; its inspecting client dials a loopback relay that is
    spliced onto the device's link while one is attached.  Create with :meth:`open`."""

    kind = "registered"
    #: The relay carries one connection only: the inspecting client's.
    request_link = False

    def __init__(self, name: str, owner: Any, relay: _Relay,
                 request_timeout: float = 60.0) -> None:
        super().__init__(DeviceSpec(name, "katcp", "127.0.0.1", relay.port), owner,
                         request_timeout)
        self._relay = relay
        self._peer = ""

    @classmethod
    async def open(cls, name: str, owner: Any, request_timeout: float = 60.0
                   ) -> RegisteredDevice:
        """Open the loopback relay and create the device."""
        relay = _Relay()
        await relay.open()
        return cls(name, owner, relay, request_timeout)

    @property
    def up(self) -> bool:
        return self._relay.link is not None and super().up

    @property
    def address(self) -> str:
        return f"{self._peer or 'not-registered'}(dialled-in)"

    @property
    def attached(self) -> bool:
        """Whether a device link is attached now."""
        return self._relay.link is not None

    async def attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: str) -> None:
        """Use this registered link until it ends (returns then)."""
        relay = self._relay
        relay.link = (reader, writer)
        relay.link_done = asyncio.Event()
        self._peer = peer
        log.info("Device %s registered from %s", self.name, peer)
        try:
            await relay.link_done.wait()
        finally:
            relay.link = None
            log.info("Device %s (%s) went away", self.name, peer)

    async def stop(self) -> None:
        await self._relay.close()
        await super().stop()


class RegistrationListener:
    """The manager's registration port: accepts device links and puts them behind `manager`.

    Parameters
    ----------
    manager : ManagerServer
        The manager (devices are added with its ``add_device``).
    host, port : str, int
        Where to listen for devices.
    """

    #: Most distinct names that may register (each keeps a relay and its sensors).
    max_registered = 1000

    def __init__(self, manager: Any, host: str, port: int) -> None:
        self.manager = manager
        self.host = host
        self.port = port
        self._server: asyncio.base_events.Server | None = None
        self._registered: Dict[str, RegisteredDevice] = {}
        self._tasks: set = set()

    @property
    def bind_address(self) -> Tuple[str, int]:
        """Where the listener is (the real port once started)."""
        if self._server is None:
            return self.host, self.port
        return self._server.sockets[0].getsockname()[:2]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connected, self.host, self.port,
                                                  limit=MAX_REGISTER_LINE * 2)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    async def _connected(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        peer_text = f"{peer[0]}:{peer[1]}" if peer else "?"
        try:
            name = await self._read_registration(reader, writer)
            if name is None:
                return
            device = self._registered.get(name)
            if device is not None and self.manager.devices.get(name) is not device:
                # Removed from the manager meanwhile: start afresh.
                del self._registered[name]
                device = None
            if device is None:
                device = await RegisteredDevice.open(name, self.manager,
                                                     self.manager.request_timeout)
                self._registered[name] = device
                await self.manager.add_device(device)
            writer.write(b"!register-device ok\n")
            await device.attach(reader, writer, peer_text)
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            log.info("Registration link from %s ended: %s", peer_text, exc)
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _read_registration(self, reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter) -> str | None:
        try:
            line = await asyncio.wait_for(reader.readline(), REGISTER_TIMEOUT)
        except (asyncio.TimeoutError, ValueError):  # ValueError: line over the limit
            return self._refuse(writer, "expected ?register-device NAME")
        try:
            msg = MessageParser().parse(line.rstrip(b"\r\n"))
        except KatcpSyntaxError:
            return self._refuse(writer, "expected ?register-device NAME")
        if msg.mtype != Message.REQUEST or msg.name != "register-device" or \
                len(msg.arguments) != 1:
            return self._refuse(writer, "expected ?register-device NAME")
        name = msg.arguments[0].decode("utf-8", "replace")
        if not valid_device_name(name):
            return self._refuse(writer, f"invalid device name {name!r}")
        existing = self.manager.devices.get(name)
        if existing is not None and not isinstance(existing, RegisteredDevice):
            return self._refuse(writer, f"device {name} is a configured device")
        registered = self._registered.get(name)
        if registered is not None and registered.attached:
            return self._refuse(writer, f"device {name} is registered already")
        if registered is None and len(self._registered) >= self.max_registered:
            return self._refuse(writer, "too many registered devices")
        return name

    @staticmethod
    def _refuse(writer: asyncio.StreamWriter, reason: str) -> None:
        writer.write(bytes(Message.reply("register-device", "fail", reason)) + b"\n")
        log.warning("Refused a device registration: %s", reason)
        return None


class DeviceRegistration:
    """Keep a local device server registered with a manager, re-dialling when the link drops.

    Parameters
    ----------
    name : str
        The device's name at the manager.
    manager : tuple of (str, int)
        The manager's registration address.
    device : tuple of (str, int)
        The local device server to expose.
    retry_delay : float
        Seconds between attempts when the manager cannot be reached or the link drops.
    """

    def __init__(self, name: str, manager: Tuple[str, int], device: Tuple[str, int],
                 retry_delay: float = 1.0) -> None:
        self.name = name
        self.manager = manager
        self.device = device
        self.retry_delay = retry_delay
        self.registered = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start registering (on the running loop)."""
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop and drop the link."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._register_once()
            except (ConnectionError, OSError, asyncio.IncompleteReadError,
                    asyncio.TimeoutError) as exc:
                log.info("Registration of %s with %s:%d: %s", self.name, *self.manager, exc)
            self.registered.clear()
            await asyncio.sleep(self.retry_delay)

    async def _register_once(self) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.manager), 10)
        try:
            writer.write(bytes(Message.request("register-device", self.name)) + b"\n")
            reply = await asyncio.wait_for(reader.readline(), REGISTER_TIMEOUT)
            if not reply.startswith(b"!register-device ok"):
                raise ConnectionError(f"manager refused: {reply.decode(errors='replace')!r}")
            local = await asyncio.wait_for(asyncio.open_connection(*self.device), 10)
        except BaseException:
            writer.close()
            raise
        self.registered.set()
        await _splice((reader, writer), local)


def register_device(name: str, manager: Tuple[str, int], device: Tuple[str, int],
                    retry_delay: float = 1.0) -> DeviceRegistration:
    """Register the device server at `device` with the manager as `name`; keep it registered.

    Call on a running event loop; ``await registration.stop()`` ends it.

    Returns
    -------
    DeviceRegistration
        Started; ``await registration.registered.wait()`` waits until the manager accepted it.
    """
    registration = DeviceRegistration(name, manager, device, retry_delay)
    registration.start()
    return registration
