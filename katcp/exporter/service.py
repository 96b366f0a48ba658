"""The exporter: watchers on one event loop, ``/metrics`` served from a thread of its own.

The watchers (:mod:`katcp.exporter.katcp_watcher`, :mod:`katcp.exporter.ncp_watcher`) run
on the loop that :meth:`Exporter.start` is awaited in; ``/metrics`` is served by
prometheus_client's WSGI app in an HTTP thread (:mod:`katcp.exporter.endpoint`), which reads
the device state without ever waiting for the loop (see :mod:`katcp.exporter.state`).  A
scrape therefore delays sensor updates only by the GIL's hand-overs (see
:func:`configure_process`), and a long sync never delays a scrape.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from wsgiref.simple_server import WSGIServer
from typing import List, Sequence, TextIO, Tuple, Union

import tornado.ioloop
from prometheus_client import ProcessCollector

from .collector import FleetCollector, ScrapeRegistry
from .endpoint import serve_metrics
from .katcp_watcher import KatcpWatcher
from .ncp_watcher import NcpWatcher
from .progress import Progress
from .state import DeviceState
from .targets import Target

__all__ = ["DEFAULT_PORT", "Exporter", "SWITCH_INTERVAL", "configure_process"]

log = logging.getLogger("katcp.exporter")

#: Default port of ``/metrics`` (9700, as the issue and docs say).
DEFAULT_PORT = 9700

#: GIL switch interval (s) of an exporter process: see :func:`configure_process`.
SWITCH_INTERVAL = 0.0005


def configure_process(switch_interval: float = SWITCH_INTERVAL) -> None:
    """Process-wide settings for a process whose job is to run an exporter.

    While the HTTP thread formats a scrape it holds the GIL; each time the loop thread
    releases it for a system call (one ``recv`` per readable device connection), it gets
    it back only when the HTTP thread's switch interval expires (5 ms by default).  With
    hundreds of busy connections that turns a loop pass into seconds.  A shorter interval
    bounds that wait; the cost is more GIL hand-overs in the HTTP thread.  Call it from
    the program that owns the process (``katcp-exporter`` does), not from a library.

    Parameters
    ----------
    switch_interval : float
        Seconds, passed to :func:`sys.setswitchinterval`.
    """
    sys.setswitchinterval(switch_interval)


class Exporter:
    """Watches `targets` and serves their sensors at ``http://HOST:PORT/metrics``.

    Parameters
    ----------
    targets : sequence of Target
        The devices to watch (already this shard's share).
    listen : (str, int)
        Address of the HTTP endpoint (port 0 picks a free port; see :attr:`port`).
    progress : file-like, optional
        Stream for the sync progress line (a terminal's stderr), or None for none.
    process_metrics : bool
        Also export the ``process_*`` metrics (CPU, memory) of this process.
    openmetrics : bool
        Serve OpenMetrics to clients that ask for it (default: always the Prometheus text
        format, about twice as fast to produce; see :mod:`katcp.exporter.endpoint`).

    Examples
    --------
    >>> async def main():
    ...     exporter = Exporter(targets, ("", 9700))
    ...     await exporter.start()
    ...     await exporter.until_synced(60)
    """

    def __init__(self, targets: Sequence[Target], listen: Tuple[str, int] = ("", DEFAULT_PORT),
                 progress: TextIO | None = None, process_metrics: bool = True,
                 openmetrics: bool = False) -> None:
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise ValueError("device names must be unique")
        self.targets = tuple(targets)
        self.devices = tuple(DeviceState(t.name, t.kind) for t in self.targets)
        self.registry = ScrapeRegistry()
        self.collector = FleetCollector(self.devices)
        self.registry.register(self.collector)
        if process_metrics:
            ProcessCollector(registry=self.registry)
        self._listen = listen
        self._openmetrics = openmetrics
        self._progress_stream = progress
        self._progress: Progress | None = None
        self._watchers: List[Union[KatcpWatcher, NcpWatcher]] = []
        self._httpd: WSGIServer | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """Port of the HTTP endpoint (after :meth:`start`)."""
        if self._httpd is None:
            raise RuntimeError("exporter not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """URL of ``/metrics`` (after :meth:`start`)."""
        host = str(self._httpd.server_address[0]) if self._httpd is not None else ""
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        """Serve ``/metrics`` and start watching (call from the loop the watchers use).

        Raises
        ------
        OSError
            If the listen address cannot be bound.
        """
        host, port = self._listen
        self._httpd, self._http_thread = serve_metrics(self.registry, host or "0.0.0.0", port,
                                                       openmetrics=self._openmetrics)
        ioloop = tornado.ioloop.IOLoop.current()
        for target, state in zip(self.targets, self.devices):
            if target.kind == "ncp":
                watcher: Union[KatcpWatcher, NcpWatcher] = NcpWatcher(target, state)
                watcher.start()
            else:
                watcher = KatcpWatcher(target, state)
                watcher.set_ioloop(ioloop)
                watcher.start()
            self._watchers.append(watcher)
        if self._progress_stream is not None:
            self._progress = Progress(self.devices, self._progress_stream)
            self._progress.start()
        log.info("Exporting %d device(s) at %s", len(self.devices), self.url)

    async def stop(self) -> None:
        """Stop watching and serving."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        watchers, self._watchers = self._watchers, []
        stopping = []
        for watcher in watchers:
            if isinstance(watcher, NcpWatcher):
                stopping.append(watcher.stop())
            else:
                watcher.stop()
                stopping.append(watcher.until_stopped(timeout=5))
        await asyncio.gather(*stopping, return_exceptions=True)
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            # shutdown() waits for the serving thread: not on the loop.
            await asyncio.get_running_loop().run_in_executor(None, httpd.shutdown)
            httpd.server_close()

    def counts(self) -> Tuple[int, int, int]:
        """``(connected, synced, total)`` devices."""
        devices = self.devices
        return (sum(1 for d in devices if d.connected), sum(1 for d in devices if d.synced),
                len(devices))

    async def until_synced(self, timeout: float, poll: float = 0.05) -> bool:
        """Wait until every device is synced; return whether it happened within `timeout`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            _connected, synced, total = self.counts()
            if synced == total:
                return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(poll)
