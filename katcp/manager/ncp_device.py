"""An NCP node behind the manager: the NCP-to-KATCP gateway.

Mapping (written down for users in ``doc/manager.rst``):

* ``?<device>-<packettype>-<field> NAME=value ...`` sends one NCP field (packet type and field
  name upper-cased) with those params; the first answer that is not a bare acknowledgement
  (a field of the same packet type and name) becomes ``!<request> ok NAME=value ...``, with the
  params in the node's order.  An answer carrying ``ERRO``/``ERRC`` becomes
  ``!<request> fail <ERRO text> (code <ERRC>)``.
* Values are typed by their text: an integer is sent as ``i32`` (``i64``/``u64`` when it does
  not fit), a number with a point or exponent as ``f64``, anything else as a string.
* Fields the node sends unasked become sensors ``<device>.<field>.<param>`` (lower case) of
  type integer, float or string; ``ERRO``/``WARN`` params give the sensor status ``error`` /
  ``warn`` and a ``#log error|warn`` inform to every client.
* While the node is unreachable its sensors have status ``unreachable`` and its requests fail at
  once; the gateway reconnects with a growing delay.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from typing import Any, Deque, Dict, List, Sequence, Tuple

from katcp import ncp
from katcp.core import Message, Sensor
from katcp.ncp.values import f64, i64, u64
from katcp.server import ClientRequestConnection

from .config import DeviceSpec
from .device import DeviceOwner, ProxiedDevice, unreachable_reply

__all__ = ["NcpDevice", "parse_ncp_value", "split_request"]

log = logging.getLogger("katcp.manager")

_INT_RE = re.compile(r"[+-]?\d+\Z")
_FLOAT_RE = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+|inf|nan)\Z", re.I)
_ID_RE = re.compile(r"[A-Za-z0-9]{1,4}\Z")
_ERROR_PARAMS = ("ERRO", "ERRC")
_WARN_PARAMS = ("WARN", "WARC")


def parse_ncp_value(text: str) -> Any:
    """Turn a KATCP argument's value into the NCP value it stands for (see module doc)."""
    if _INT_RE.match(text):
        value = int(text)
        if -(2 ** 31) <= value < 2 ** 31:
            return value
        if -(2 ** 63) <= value < 2 ** 63:
            return i64(value)
        if 0 <= value < 2 ** 64:
            return u64(value)
        return text
    if _FLOAT_RE.match(text):
        return f64(float(text))
    return text


def split_request(suffix: str) -> Tuple[str, str]:
    """Split ``<packettype>-<field>`` into upper-case NCP identifiers.

    Raises
    ------
    ValueError
        If `suffix` is not two NCP identifiers (1-4 letters or digits) joined by ``-``.
    """
    packet_type, sep, field_name = suffix.partition("-")
    if not sep or not _ID_RE.match(packet_type) or not _ID_RE.match(field_name):
        raise ValueError(f"{suffix!r} is not <packettype>-<field> (each 1-4 letters/digits)")
    return packet_type.upper(), field_name.upper()


def _katcp_text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, (str, int)):
        return str(value)
    try:  # arrays: their items, comma separated
        return ",".join(str(item) for item in value)
    except TypeError:
        return str(value)


def _sensor_part(ident: str) -> str:
    return re.sub(r"[^a-z0-9]", "-", ident.strip().lower()) or "-"


class _Pending:
    __slots__ = ("req", "timer")

    def __init__(self, req: ClientRequestConnection, timer: asyncio.TimerHandle) -> None:
        self.req = req
        self.timer = timer


class NcpDevice(ProxiedDevice):
    """An NCP node reached by dialling it.

    Parameters
    ----------
    spec : DeviceSpec
        The node's config entry (``kind == "ncp"``); ``fields`` lists the requests to offer
        (any ``<packettype>-<field>`` is accepted anyway).
    owner : DeviceOwner
        The manager.
    request_timeout : float
        Seconds to wait for the node's answer to a request.
    reconnect_delay, reconnect_max_delay : float
        First and largest delay between connection attempts.
    """

    kind = "ncp"

    #: NCP link timeout offered to the node (seconds; nodes grant 5 to 60): a node silent for
    #: longer is taken as gone.  Also the time allowed for connecting.
    link_timeout = 10
    #: Most sensors made from unasked fields: a node inventing new field or param names
    #: without end cannot exhaust the manager's memory.
    max_sensors = 10_000

    def __init__(self, spec: DeviceSpec, owner: DeviceOwner, request_timeout: float = 10.0,
                 reconnect_delay: float = 0.5, reconnect_max_delay: float = 10.0) -> None:
        super().__init__(spec.name, owner)
        self.spec = spec
        self.request_timeout = request_timeout
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self._connection: Any = None
        self._task: asyncio.Task | None = None
        self._pending: Dict[Tuple[str, str], Deque[_Pending]] = {}
        self._warned_full = False
        for name in spec.fields:
            packet_type, _, field_name = name.partition(".")
            suffix = f"{packet_type.lower()}-{field_name.lower()}"
            self.requests[suffix] = (
                f"NCP field {packet_type.upper()} {field_name.upper()} of node {spec.name}.\n"
                f"?{self.request_name(suffix)} [NAME=value ...] sends the field with those "
                "params; the reply is 'ok NAME=value ...' from the node's answer.")

    @property
    def up(self) -> bool:
        return self._connection is not None and not self._connection.is_closing()

    @property
    def address(self) -> str:
        return f"{self.spec.host}:{self.spec.port}"

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await asyncio.wait_for(task, 5)
            except (asyncio.CancelledError, asyncio.TimeoutError):
                pass
        await self._disconnected("manager stopping")

    # -- connection ------------------------------------------------------------------
    async def _connect(self) -> Any:
        spec = self.spec
        context = spec.client_ssl_context()
        return await ncp.connect(
            spec.host, spec.port, timeout=self.link_timeout,
            auto_erro=False, auto_warn=False, auto_ackn=False,
            ssl=context if context is not None else False,
            username=spec.username or "", password=spec.password or "",
            hostname="katcp-manager")

    async def _run(self) -> None:
        delay = self.reconnect_delay
        while True:
            try:
                self._connection = await self._connect()
            except (ncp.NCPError, OSError, asyncio.TimeoutError) as exc:
                log.info("NCP node %s at %s: cannot connect (%s); retrying in %.1f s",
                         self.name, self.address, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_delay)
                continue
            delay = self.reconnect_delay
            log.info("NCP node %s connected at %s", self.name, self.address)
            self.owner.device_changed(self, sensors=False, requests=False)
            try:
                await self._read()
            except (ncp.NCPError, OSError) as exc:
                log.warning("NCP node %s: connection lost (%s: %s)", self.name,
                            type(exc).__name__, exc)
            await self._disconnected("connection lost")
            await asyncio.sleep(delay)

    async def _disconnected(self, reason: str) -> None:
        connection, self._connection = self._connection, None
        pending, self._pending = self._pending, {}
        for queue in pending.values():
            for item in queue:
                item.timer.cancel()
                self._reply(item.req, "fail", f"device {self.name} is unreachable ({reason})")
        if connection is not None:
            connection.close()
            self.mark_unreachable()
            self.owner.device_changed(self, sensors=False, requests=False)
            try:
                await asyncio.wait_for(connection.wait_closed(), 2)
            except (ncp.NCPError, OSError, asyncio.TimeoutError):
                pass

    async def _read(self) -> None:
        connection = self._connection
        while True:
            field = await connection.recv()
            try:
                self._field_received(field)
            except Exception:
                # A field we cannot map must not take the gateway down.
                log.exception("NCP node %s: could not handle %r", self.name, field)

    def _field_received(self, field: Any) -> None:
        if field.packet_type == "LINK":
            return
        queue = self._pending.get((field.packet_type, field.name))
        if queue:
            if set(field) == {"ACKN"}:
                return  # acknowledged; the answer is still to come
            item = queue.popleft()
            if not queue:
                del self._pending[(field.packet_type, field.name)]
            item.timer.cancel()
            if any(p in field for p in _ERROR_PARAMS):
                text = str(field.get("ERRO", "error"))
                code = field.get("ERRC")
                self._reply(item.req, "fail",
                            text if code is None else f"{text} (code {code})")
            else:
                self._reply(item.req, "ok",
                            *(f"{name}={_katcp_text(value)}" for name, value in field.items()))
            return
        self._unasked(field)

    def _unasked(self, field: Any) -> None:
        timestamp = field.packet_timestamp.timestamp()
        base = f"{self.name}.{_sensor_part(field.name)}"
        if any(p in field for p in _ERROR_PARAMS) or field.name == "ERRO":
            status, level = Sensor.ERROR, "error"
        elif any(p in field for p in _WARN_PARAMS) or field.name == "WARN":
            status, level = Sensor.WARN, "warn"
        else:
            status, level = Sensor.NOMINAL, ""
        if level:
            text = " ".join(f"{name}={_katcp_text(value)}" for name, value in field.items())
            self.owner.device_log(self, level, f"{field.packet_type} {field.name} {text}")
        added = False
        for param, value in field.items():
            name = f"{base}.{_sensor_part(param)}"
            sensor = self.sensors.get(name)
            if sensor is None:
                if len(self.sensors) >= self.max_sensors:
                    if not self._warned_full:
                        log.warning("NCP node %s: more than %d sensors; ignoring new params",
                                    self.name, self.max_sensors)
                        self._warned_full = True
                    continue
                sensor = self._new_sensor(name, field, param, value)
                self.sensors[name] = sensor
                added = True
            try:
                sensor.set(timestamp, status, self._sensor_value(sensor, value))
            except ValueError:
                log.warning("NCP node %s: value %r does not fit sensor %s", self.name,
                            value, name)
        if added:
            self.owner.device_changed(self, sensors=True, requests=False)

    @staticmethod
    def _new_sensor(name: str, field: Any, param: str, value: Any) -> Sensor:
        description = f"NCP {field.packet_type} {field.name} param {param}"
        if isinstance(value, int) and not isinstance(value, bool):
            return Sensor(Sensor.INTEGER, name, description, "")
        if isinstance(value, float):
            return Sensor(Sensor.FLOAT, name, description, "")
        return Sensor(Sensor.STRING, name, description, "")

    @staticmethod
    def _sensor_value(sensor: Sensor, value: Any) -> Any:
        if sensor.stype == "integer":
            return int(value)
        if sensor.stype == "float":
            return float(value)
        return _katcp_text(value)

    # -- requests --------------------------------------------------------------------
    def _reply(self, req: ClientRequestConnection, *args: str) -> None:
        try:
            req.reply_with_message(Message.reply(req.msg.name, *args))
        except RuntimeError:
            log.debug("Reply to %s already sent", req.msg.name)

    def forward(self, req: ClientRequestConnection, suffix: str,
                args: Sequence[bytes]) -> None:
        try:
            packet_type, field_name = split_request(suffix)
            params = self._params(args)
        except ValueError as exc:
            self._reply(req, "invalid", str(exc))
            return
        connection = self._connection
        if connection is None or connection.is_closing():
            req.reply_with_message(unreachable_reply(req.msg.name, self.name))
            return
        try:
            connection.send(packet_type, field_name, **params)
        except (ValueError, TypeError, OverflowError) as exc:
            self._reply(req, "invalid", f"cannot encode NCP field: {exc}")
            return
        key = (packet_type, field_name)
        loop = asyncio.get_running_loop()
        item = _Pending(req, loop.call_later(self.request_timeout, self._timed_out, key, req))
        self._pending.setdefault(key, deque()).append(item)

    @staticmethod
    def _params(args: Sequence[bytes]) -> Dict[str, Any]:
        params: Dict[str, Any] = {}
        for raw in args:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            name, sep, value = text.partition("=")
            if not sep or not _ID_RE.match(name):
                raise ValueError(f"argument {text!r} is not NAME=value (NAME: 1-4 letters/digits)")
            params[name.upper()] = parse_ncp_value(value)
        return params

    def _timed_out(self, key: Tuple[str, str], req: ClientRequestConnection) -> None:
        queue = self._pending.get(key)
        if not queue:
            return
        remaining: List[_Pending] = [item for item in queue if item.req is not req]
        if len(remaining) == len(queue):
            return
        if remaining:
            self._pending[key] = deque(remaining)
        else:
            del self._pending[key]
        self._reply(req, "fail", f"no answer from NCP node {self.name} within "
                                 f"{self.request_timeout} s")
