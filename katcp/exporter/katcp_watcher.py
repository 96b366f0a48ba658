"""Watching one KATCP device: connect, list and subscribe its sensors, store the updates.

A :class:`KatcpWatcher` is an :class:`~katcp.client.AsyncClient` that reconnects on its own,
over TLS and logged in when its target says so.  On every connection it syncs: ``?sensor-list``, then ``?sensor-sampling`` with each selected
sensor's strategy (bulk, ``a,b,c``, when the device has the ``B`` flag of KATCP 5.1, else one
request per sensor, all in flight at once), and ``#interface-changed`` syncs again.  Each
``#sensor-status`` inform becomes a new reading in the device's
:class:`~katcp.exporter.state.DeviceState`.  On disconnection every sensor turns
``unreachable`` and the device unsynced.  Nothing a device sends can raise out of here: an
unparsable value exports no value (its status still shows), an unknown sensor is ignored, a
failing sync is logged and retried with a back-off.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, Hashable, List, Sequence, Tuple

import tornado.gen

from katcp.client import AsyncClient
from katcp.core import Message

from .state import DeviceState, SensorMeta, shared_key, status_code
from .targets import Target

__all__ = ["KatcpWatcher", "supported_strategy"]

log = logging.getLogger("katcp.exporter")

#: Longest ``?sensor-sampling a,b,c`` line (bytes of names) sent in one request.
BULK_NAMES_MAX = 16384
#: Seconds allowed for ?sensor-list and ?sensor-sampling.
SYNC_TIMEOUT = 60.0
#: Seconds to wait for the device's protocol version before assuming KATCP v5 without
#: message ids (a device that never says which version it speaks).
PROTOCOL_TIMEOUT = 10.0
#: Seconds of silence after which a device is pinged and then dropped as dead (the clients'
#: ``liveness_timeout``, 10 s by default).  A fleet's devices are many per host and the
#: exporter's loop is busy: at 1,000 devices on 2 loaded cores, 10 s dropped healthy devices
#: during the sync storm, and each resync made the storm worse.  With ``event-rate 1 10`` a
#: live device speaks every 10 s, so 60 s still notices a dead one within a minute.
LIVENESS_TIMEOUT = 60.0
#: Seconds before a failed sync is tried again, doubling up to the maximum.
RESYNC_DELAY_INITIAL = 1.0
RESYNC_DELAY_MAX = 60.0
#: Stand-ins for strategies that a device's protocol version lacks (KATCP v4 has no
#: rate-limited strategies): the same events, without the rate limit.
#: Strategy to use instead where the device's version lacks one: (name, parameters kept).
_FALLBACK: Dict[str, Tuple[str, int]] = {"event-rate": ("event", 0),
                                         "differential-rate": ("differential", 1)}


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class KatcpWatcher(AsyncClient):
    """Watches one KATCP device and keeps its :class:`DeviceState` current.

    Run it on the exporter's loop: ``set_ioloop(ioloop)`` then ``start()`` from that loop.

    Parameters
    ----------
    target : Target
        The device and its sensor rules.
    state : DeviceState
        Where readings go.
    """

    def __init__(self, target: Target, state: DeviceState) -> None:
        super().__init__(target.host, target.port, timeout=SYNC_TIMEOUT, logger=log,
                         auto_reconnect=True, ssl=target.ssl_context)
        if target.username:
            # ?login goes first on every connection, before the sync's requests.
            self.set_credentials(target.username, target.password)
        self.liveness_timeout = LIVENESS_TIMEOUT
        self.target = target
        self.state = state
        #: Raw sensor name -> meta of the sensors subscribed on this connection.
        self._metas: Dict[Hashable, SensorMeta] = {}  # raw sensor name -> meta
        self._sync_task: asyncio.Task | None = None
        self._resync = False
        self._ts_scale = 1.0

    # ------------------------------------------------------------------ connection
    def notify_connected(self, connected: bool) -> None:
        """Start a sync on connection; mark the device unreachable on disconnection."""
        task = self._sync_task
        if task is not None and not task.done():
            task.cancel()
        self._sync_task = None
        self._metas = {}
        if connected:
            self.state.connected = True
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_loop())
        else:
            self.state.set_disconnected()

    def inform_interface_changed(self, msg: Message) -> None:
        """The device's sensors may have changed: sync again."""
        task = self._sync_task
        if task is not None and not task.done():
            self._resync = True  # the running sync goes round once more
        elif self.is_connected():
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_loop())

    async def _sync_loop(self) -> None:
        delay = RESYNC_DELAY_INITIAL
        self._resync = True
        while self._resync:
            self._resync = False
            try:
                await self._sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The device stays connected and unsynced, and is asked again later (the
                # task is cancelled if the connection drops: the next one syncs afresh).
                log.warning("Sync of %s (%s:%d) failed, retrying in %.0f s: %s",
                            self.target.name, self.target.host, self.target.port, delay, exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, RESYNC_DELAY_MAX)
                self._resync = True

    async def _sync(self) -> None:
        state = self.state
        state.synced = False
        try:
            await self.until_protocol(timeout=PROTOCOL_TIMEOUT)
        except tornado.gen.TimeoutError:
            log.info("%s sent no protocol version; assuming KATCP v5", self.target.name)
        flags = self.protocol_flags
        major = getattr(flags, "major", None) or 5
        self._ts_scale = 1.0 if major >= 5 else 1e-3
        reply, informs = await self.future_request(Message.request("sensor-list"))
        if not reply.reply_ok():
            raise RuntimeError(f"?sensor-list failed: {_describe(reply)}")
        rules = self.target.rules
        metas: Dict[Hashable, SensorMeta] = {}
        groups: Dict[Tuple[str, ...], List[bytes]] = {}
        for inform in informs:
            args = inform.arguments
            if len(args) < 4:
                continue  # malformed: skip it, keep the rest
            raw_name = shared_key(args[0])
            name = _text(raw_name)
            if not rules.selects(name):
                continue
            meta = SensorMeta(state.name, name, _text(args[3]),
                              [_text(a) for a in args[4:]], self._ts_scale)
            metas[raw_name] = meta
            strategy = supported_strategy(rules.strategy_for(name), flags)
            groups.setdefault(strategy, []).append(raw_name)
        state.replace_sensors(metas)
        # Updates for these are stored from now on; the state's dict maps the same keys to
        # the same metas, and one dict per device is enough.
        self._metas = state.sensors
        bulk = bool(flags is not None and flags.bulk_set_sensor_sampling)
        requests = []
        for strategy, names in groups.items():
            requests.extend(self._sampling_requests(strategy, names, bulk))
        results = await asyncio.gather(*(self._set_sampling(*req) for req in requests))
        failed = [name for ok_names in results for name in ok_names]
        if failed:
            log.warning("%s: %d sensor(s) refused their strategy (first: %s)",
                        self.target.name, len(failed), _text(failed[0]))
        state.synced = True

    def _sampling_requests(self, strategy: Tuple[str, ...], names: Sequence[bytes],
                           bulk: bool) -> List[Tuple[List[bytes], Tuple[str, ...]]]:
        if not bulk:
            return [([name], strategy) for name in names]
        requests: List[Tuple[List[bytes], Tuple[str, ...]]] = []
        chunk: List[bytes] = []
        size = 0
        for name in names:
            if b"," in name:  # cannot be part of a comma-separated list
                requests.append(([name], strategy))
                continue
            if chunk and size + len(name) > BULK_NAMES_MAX:
                requests.append((chunk, strategy))
                chunk, size = [], 0
            chunk.append(name)
            size += len(name) + 1
        if chunk:
            requests.append((chunk, strategy))
        return requests

    async def _set_sampling(self, names: List[bytes],
                            strategy: Tuple[str, ...]) -> List[bytes]:
        """Set `strategy` on `names`; return the names the device refused."""
        msg = Message.request("sensor-sampling", b",".join(names), *strategy)
        reply, _informs = await self.future_request(msg)
        if reply.reply_ok():
            return []
        if len(names) > 1:
            # One bad name fails a bulk request: find which, one by one.
            results = await asyncio.gather(
                *(self._set_sampling([name], strategy) for name in names))
            return [name for refused in results for name in refused]
        log.debug("%s: ?sensor-sampling %s refused: %s", self.target.name, _text(names[0]),
                  _describe(reply))
        return names

    # ------------------------------------------------------------------ updates
    def inform_sensor_status(self, msg: Message) -> None:
        """Store the readings of a ``#sensor-status`` inform (any malformed part skipped)."""
        args = msg.arguments
        if len(args) < 5:
            return
        try:
            ts: float | None = float(args[0]) * self._ts_scale
            count = int(args[1])
        except ValueError:
            return
        metas = self._metas
        store = self.state.store
        stored = 0
        for i in range(2, min(2 + 3 * count, len(args) - 2), 3):
            key = args[i]
            meta = metas.get(key)
            if meta is None:
                continue
            store(key, meta, meta.convert(args[i + 2]), status_code(args[i + 1]), ts)
            stored += 1
        self.state.updates += stored


def supported_strategy(strategy: Tuple[str, ...], flags: Any) -> Tuple[str, ...]:
    """`strategy`, or its stand-in if the device's protocol version lacks it.

    Parameters
    ----------
    strategy : tuple of str
        Strategy name and parameters, e.g. ``("event-rate", "1", "10")``.
    flags : katcp.core.ProtocolFlags or None
        The device's protocol (None: unknown, assumed to support everything).
    """
    if flags is None or flags.major is None or flags.strategy_allowed(strategy[0]):
        return strategy
    fallback = _FALLBACK.get(strategy[0])
    if fallback is None:
        return strategy  # let the device say no; the sync logs it
    name, keep = fallback
    return (name,) + tuple(strategy[1:1 + keep])


def _describe(reply: Message) -> str:
    return " ".join(_text(a) for a in reply.arguments) or "no reason given"
