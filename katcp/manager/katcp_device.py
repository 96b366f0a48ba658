"""A KATCP device behind the manager, mirrored with an :class:`InspectingClientAsync`.

The inspecting client keeps the device's request and sensor lists in step (it follows
``#interface-changed``).  Its sensor objects *are* the manager's proxy sensors: they are made
by :meth:`_DeviceInspector.sensor_factory` with the manager-side name, registered on the
manager's server, and set by the inspecting client from ``#sensor-status``.  The manager
subscribes to each sensor upstream once (strategy ``auto`` unless the config says otherwise)
and the manager's own strategies serve its clients.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from typing import Any, Callable, Dict, List, Sequence, Set, Tuple

from katcp.core import DEFAULT_KATCP_MAJOR, Message, Sensor
from katcp.inspecting_client import InspectingClientAsync
from katcp.server import BASE_REQUESTS, ClientRequestConnection

from .config import DeviceSpec
from .device import DeviceOwner, ProxiedDevice, unreachable_reply
from .link import RequestLink

__all__ = ["KatcpDevice", "NOT_PROXIED"]

log = logging.getLogger("katcp.manager")

#: Requests of a device that the manager does not offer as ``<device>-<request>``: the
#: protocol's own requests, which the manager answers itself for its proxy sensors, and those
#: that would stop or reset the device for everyone (``halt``, ``restart``).
NOT_PROXIED = frozenset(BASE_REQUESTS | {"request-timeout-hint"})

#: Sensors per bulk ``?sensor-sampling`` request (keeps lines well below size limits).
_SAMPLING_CHUNK = 200


class _ProxySensor(Sensor):
    """A proxy sensor that keeps the device's bytes of the reading it was last set from.

    The inspecting client sets it from the device's ``#sensor-status`` fields
    (:meth:`set_formatted`): they are parsed once, for the reading that ``?sensor-value``,
    the strategies' comparisons and new subscribers use, and kept.  Whenever that very
    reading is formatted again for the same KATCP major version (every ``#sensor-status``
    the manager sends its clients), :meth:`format_reading` returns the device's bytes
    instead of formatting the reading anew: the manager's line differs from the device's
    only in the sensor's name.  Any other reading (``unreachable`` when the device goes
    away, a reading set by other means) is formatted as by :class:`~katcp.Sensor`.
    """

    __slots__ = ("_raw",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (timestamp, status, value) parsed, the major version, and the device's
        # (timestamp, status, value) bytes.
        self._raw: Tuple[Any, ...] = _NO_RAW

    def set_formatted(self, raw_timestamp: bytes, raw_status: bytes, raw_value: bytes,
                      major: int = DEFAULT_KATCP_MAJOR) -> None:
        status = _STATUS_BY_NAME.get(raw_status) if raw_status.__class__ is bytes else None
        if status is None:
            # Not a status: the base class raises the error that says so.
            super().set_formatted(raw_timestamp, raw_status, raw_value, major)
            return
        timestamp = self.TIMESTAMP_TYPE.decode(raw_timestamp, major)
        value = self.parse_value(raw_value, major)
        # Kept before set(): the strategies format the reading while set() notifies them.
        # (The status's bytes are the shared constant, not the line's copy.)  int() and
        # float() also take surrounding whitespace and underscores between digits, which
        # no one writes: such bytes are not passed on, the reading is formatted anew.
        # (95 is "_": a byte looked for as an int costs no exception inside ``in``.)
        if (95 in raw_timestamp or 95 in raw_value
                or raw_timestamp.strip() is not raw_timestamp
                or raw_value.strip() is not raw_value):
            self._raw = _NO_RAW
        else:
            self._raw = (timestamp, status, value, major, raw_timestamp,
                         self.STATUSES_RAW[status], raw_value)
        self.set(timestamp, status, value)

    def format_reading(self, reading: Any, major: int = DEFAULT_KATCP_MAJOR
                       ) -> Tuple[bytes, bytes, bytes]:
        raw = self._raw
        # The parsed objects themselves (set() stores them as they are): the reading is
        # the one the bytes were parsed into, not merely an equal one.
        if reading[0] is raw[0] and reading[2] is raw[2] and reading[1] == raw[1] \
                and major == raw[3]:
            return raw[4], raw[5], raw[6]
        return super().format_reading(reading, major)


_STATUS_BY_NAME = Sensor.STATUS_NAMES_RAW
# Matches no reading (no timestamp is this object).
_NO_RAW: Tuple[Any, ...] = (object(), None, object(), None, b"", b"", b"")


class _DeviceInspector(InspectingClientAsync):
    """Inspecting client whose sensor objects are the manager's proxy sensors."""

    def __init__(self, device: KatcpDevice, spec: DeviceSpec) -> None:
        self._device = device
        # TLS and login as the spec says; the client logs in first thing on every
        # connection, before it inspects the device.
        super().__init__(spec.host, spec.port, auto_reconnect=True, logger=log,
                         ssl=spec.client_ssl_context(), user=spec.username,
                         password=spec.password)

    def sensor_factory(self, name: str, sensor_type: int, description: str, units: str,
                       params: List[Any]) -> Sensor:
        return _ProxySensor(sensor_type, self._device.sensor_name(name), description, units,
                           params)


class KatcpDevice(ProxiedDevice):
    """A KATCP device server reached by dialling it (with TLS and login if the spec says).

    Parameters
    ----------
    spec : DeviceSpec
        The device's config entry (``kind == "katcp"``).
    owner : DeviceOwner
        The manager.
    request_timeout : float
        Seconds a proxied request may take when the device gives no timeout hint.
    """

    kind = "katcp"
    #: Whether proxied requests get a connection of their own (:mod:`.link`); else they
    #: go through the inspecting client.
    request_link = True

    def __init__(self, spec: DeviceSpec, owner: DeviceOwner, request_timeout: float = 60.0
                 ) -> None:
        super().__init__(spec.name, owner)
        self.spec = spec
        self.request_timeout = request_timeout
        self._strategy = spec.strategy or ("auto",)
        self._subscribed: Set[str] = set()
        self._inspector = _DeviceInspector(self, spec)
        self._inspector.set_state_callback(self._state_changed)
        #: Proxied requests go over a connection of their own while the device is up.
        self._link = RequestLink(spec, self.name,
                                 lambda local_name: unreachable_reply(local_name, self.name))
        #: Seconds each request may take (the device's timeout hint, if larger).
        self._timeouts: Dict[str, float] = {}

    @property
    def up(self) -> bool:
        return self._inspector.is_connected()

    @property
    def request_link_ready(self) -> bool:
        """Whether proxied requests go over the request link now (else the client's)."""
        return self._link.ready

    @property
    def address(self) -> str:
        return f"{self.spec.host}:{self.spec.port}"

    @property
    def client(self) -> Any:
        """The low-level client connected to the device."""
        return self._inspector.katcp_client

    async def start(self) -> None:
        await self._inspector.connect()

    async def stop(self) -> None:
        self._link.close()
        self._inspector.stop()
        try:
            await asyncio.wait_for(asyncio.ensure_future(self._inspector.until_stopped()), 5)
        except asyncio.TimeoutError:
            log.warning("Client of device %s did not stop within 5 s", self.name)

    # -- mirroring ------------------------------------------------------------------
    def _wanted(self, remote: str) -> bool:
        patterns = self.spec.sensors
        return not patterns or any(fnmatch.fnmatchcase(remote, p) for p in patterns)

    def _state_changed(self, state: Any, model_changes: Any) -> Any:
        if not state.connected:
            self._link.close()
            self._subscribed.clear()
            self.mark_unreachable()
            self.owner.device_changed(self, sensors=False, requests=False)
            return None
        if state.data_synced and not state.synced:
            if self.request_link:
                self._link.open()
            return self._synced()
        return None

    async def _synced(self) -> None:
        inspector = self._inspector
        sensors = {}
        for remote in inspector.sensors:
            if self._wanted(remote):
                sensor = inspector.get_sensor_obj(remote)
                if sensor is not None:
                    sensors[remote] = sensor
        requests = {}
        timeouts = {}
        for name in inspector.requests:
            if name not in NOT_PROXIED:
                request = inspector.get_request_obj(name)
                if request is not None:
                    requests[name] = request.description
                    timeouts[name] = self._timeout(request)
        self._timeouts = timeouts
        new_sensors = {s.name: s for s in sensors.values()}
        sensors_changed = new_sensors != self.sensors
        requests_changed = requests != self.requests
        # Subscriptions upstream are by name; a replaced sensor object (its description
        # changed) is subscribed again so that it gets the current reading at once.
        self._subscribed = {r for r in self._subscribed
                            if r in sensors and self.sensors.get(sensors[r].name) is sensors[r]}
        self.sensors = new_sensors
        self.requests = requests
        self.owner.device_changed(self, sensors=sensors_changed, requests=requests_changed)
        await self._subscribe([r for r in sensors if r not in self._subscribed])

    async def _subscribe(self, names: List[str]) -> None:
        if not names:
            return
        client = self.client
        timeout = self._inspector.sync_timeout
        if self._inspector.bulk_sensor_sampling:
            batches = [names[i:i + _SAMPLING_CHUNK] for i in range(0, len(names), _SAMPLING_CHUNK)]
            jobs = [(batch, Message.request("sensor-sampling", ",".join(batch), *self._strategy))
                    for batch in batches]
        else:
            jobs = [([name], Message.request("sensor-sampling", name, *self._strategy))
                    for name in names]
        results = await asyncio.gather(
            *(client.future_request(msg, timeout=timeout) for _, msg in jobs),
            return_exceptions=True)
        for (batch, _), result in zip(jobs, results):
            if isinstance(result, BaseException):
                log.warning("Device %s: ?sensor-sampling failed: %s", self.name, result)
                continue
            reply, _informs = result
            if reply.reply_ok():
                self._subscribed.update(batch)
            else:
                log.warning("Device %s refused ?sensor-sampling %s: %s", self.name,
                            ",".join(batch)[:200], reply)

    # -- requests --------------------------------------------------------------------
    def _timeout(self, request: Any) -> float:
        timeout = self.request_timeout
        if request is not None and request.timeout_hint:
            timeout = max(timeout, float(request.timeout_hint))
        return timeout

    def forward_message(self, connection: Any, msg: Message, suffix: str,
                        done: Callable[[Any, Message, Message], None]) -> bool:
        # (The link is ready only while the device is up: it is closed when the
        # inspecting client loses the device, and opened once it has synced again.)
        timeout = self._timeouts.get(suffix)
        if timeout is None:
            return False
        return self._link.forward(connection, msg, suffix, timeout, done)

    def forward(self, req: ClientRequestConnection, suffix: str,
                args: Sequence[bytes]) -> None:
        local_name = req.msg.name
        if not self.up:
            req.reply_with_message(unreachable_reply(local_name, self.name))
            return
        timeout = self._timeout(self._inspector.get_request_obj(suffix))

        def on_inform(inform: Message) -> None:
            try:
                req.inform(*inform.arguments)
            except RuntimeError:
                log.debug("Inform of %s after its reply dropped", local_name)

        def on_reply(reply: Message) -> None:
            req.reply_with_message(Message.reply(local_name, *reply.arguments))

        self.client.callback_request(Message.request(suffix, *args), reply_cb=on_reply,
                                     inform_cb=on_inform, timeout=timeout)
