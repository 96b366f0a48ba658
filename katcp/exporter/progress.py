"""A one-line progress report of a long sync on a terminal: devices connected / synced.

It runs on the exporter's loop every half second, reads the device flags (cheap), and
rewrites one line on its stream (stderr) only when the counts change; once every device is
synced it ends the line with the time taken, and starts a new one if devices drop out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Sequence, TextIO

from .state import DeviceState

__all__ = ["Progress"]


class Progress:
    """Reports sync progress of `devices` on `stream`.

    Parameters
    ----------
    devices : sequence of DeviceState
        The watched devices.
    stream : file-like
        Where to write (a terminal: the line is rewritten with ``\\r``).
    interval : float
        Seconds between checks.
    """

    def __init__(self, devices: Sequence[DeviceState], stream: TextIO,
                 interval: float = 0.5) -> None:
        self._devices = devices
        self._stream = stream
        self._interval = interval
        self._task: asyncio.Task | None = None
        self._last: tuple | None = None
        self._started = time.monotonic()
        self._line_open = False

    def line(self) -> str:
        """The current progress line, e.g. ``devices: 512/1000 connected, 300/1000 synced``."""
        total = len(self._devices)
        connected = sum(1 for d in self._devices if d.connected)
        synced = sum(1 for d in self._devices if d.synced)
        return f"devices: {connected}/{total} connected, {synced}/{total} synced"

    def start(self) -> None:
        """Start reporting (call on the loop)."""
        self._started = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Stop reporting, with the final counts; end an open line."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self.check()
        if self._line_open:
            self._write("\n")
            self._line_open = False

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not stop the exporter

    def check(self) -> None:
        """Write the line if the counts changed since the last check."""
        total = len(self._devices)
        counts = (sum(1 for d in self._devices if d.connected),
                  sum(1 for d in self._devices if d.synced))
        if counts == self._last:
            return
        self._last = counts
        line = f"\rdevices: {counts[0]}/{total} connected, {counts[1]}/{total} synced"
        if counts[1] == total:
            elapsed = time.monotonic() - self._started
            self._write(f"{line} (all synced after {elapsed:.1f} s)\n")
            self._line_open = False
        else:
            self._write(f"{line}\x1b[K")
            self._line_open = True

    async def _run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(self._interval)
