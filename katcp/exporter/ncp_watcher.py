"""Watching one NCP node: the fields it sends unasked become sensors ``<field>.<param>``.

An NCP node has no sensor list and no sampling strategies: it sends status fields when it
likes.  A :class:`NcpWatcher` keeps a connection open (reconnecting with a back-off) and
stores each param of each field received as a reading of the sensor ``<field>.<param>``
(numbers as values, text as info; other types, such as raw bytes and arrays, are not
exported).  The status is ``error`` for a field carrying ``ERRO``/``ERRC``, ``warn`` for
``WARN``/``WARC``, else ``nominal``; the timestamp is the packet's.  A node is synced as soon
as it is connected: there is nothing to list.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Dict

from katcp import ncp
from katcp.core import Sensor

from .state import INFO, NUMBER, DeviceState, SensorMeta, sensor_meta
from .targets import Target

__all__ = ["NcpWatcher"]

log = logging.getLogger("katcp.exporter")

#: Seconds allowed to connect, and the receive timeout offered to the node.
NCP_TIMEOUT = 30
#: Distinct ``<field>.<param>`` names remembered per node (a node that invents new names
#: without end must not exhaust the exporter's memory).
MAX_NCP_SENSORS = 10000
RECONNECT_DELAY_INITIAL = 0.5
RECONNECT_DELAY_MAX = 5.0


class NcpWatcher:
    """Watches one NCP node and keeps its :class:`DeviceState` current.

    Parameters
    ----------
    target : Target
        The node and its sensor rules (only the patterns apply).
    state : DeviceState
        Where readings go.
    """

    def __init__(self, target: Target, state: DeviceState) -> None:
        self.target = target
        self.state = state
        #: Sensor name -> meta, or None for a param that is not exported.
        self._metas: Dict[str, SensorMeta | None] = {}
        self._task: asyncio.Task | None = None
        self._full_logged = False

    def start(self) -> None:
        """Start watching (call on the exporter's loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop watching and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        delay = RECONNECT_DELAY_INITIAL
        target = self.target
        while True:
            try:
                connection = await ncp.connect(
                    target.host, target.port, timeout=NCP_TIMEOUT, auto_erro=False,
                    auto_warn=False, ssl=target.ssl_context or False,
                    username=target.username, password=target.password)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NCPError, OSError, ValueError: all mean "not now"
                log.debug("NCP node %s not reachable: %s", target.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_DELAY_MAX)
                continue
            delay = RECONNECT_DELAY_INITIAL
            self.state.connected = self.state.synced = True
            try:
                await self._receive(connection)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("NCP node %s disconnected: %s", target.name, exc)
            finally:
                self.state.set_disconnected()
                connection.close()
            await asyncio.sleep(RECONNECT_DELAY_INITIAL)

    async def _receive(self, connection: ncp.Connection) -> None:
        # A node's DecodeWarnings go through the warnings module, which shows each one once
        # per place of issue: no flood, and no process-wide filter to change from here.
        while True:
            try:
                field = await connection.recv()
            except ncp.NetworkTimeoutError:
                continue  # an idle node; the connection's keep-alive judges liveness
            self.store(field)

    def store(self, field: ncp.Field) -> None:
        """Store the params of one received field as readings."""
        if "ERRO" in field or "ERRC" in field:
            status = Sensor.ERROR
        elif "WARN" in field or "WARC" in field:
            status = Sensor.WARN
        else:
            status = Sensor.NOMINAL
        try:
            ts: float | None = field.packet_timestamp.timestamp()
        except (AttributeError, ValueError, OverflowError):
            ts = None
        metas = self._metas
        store = self.state.store
        rules = self.target.rules
        stored = 0
        for param, value in field.items():
            name = f"{field.name}.{param}"
            try:
                meta = metas[name]
            except KeyError:
                if len(metas) >= MAX_NCP_SENSORS:
                    self._log_full()
                    continue
                meta = sensor_meta(self.state.name, name, value) if rules.selects(name) else None
                metas[name] = meta
            if meta is None:
                continue
            if isinstance(value, (bool, int, float)):
                converted: float | str | None = float(value) if meta.kind is NUMBER else str(value)
            elif isinstance(value, str):
                converted = value if meta.kind is INFO else None
            else:
                converted = None
            store(name, meta, converted, status, ts)
            stored += 1
        self.state.updates += stored

    def _log_full(self) -> None:
        if not self._full_logged:
            self._full_logged = True
            log.warning("NCP node %s sent more than %d distinct params; ignoring new ones",
                        self.target.name, MAX_NCP_SENSORS)
