"""Hold a CPU wake-up latency (PM QoS) request of 0 µs while measuring.

On a virtual machine whose idle vCPUs halt, waking a peer that sleeps in ``epoll_wait``
costs tens of microseconds, so a loopback round trip measures mostly wake-ups.  Writing the
32-bit integer 0 to ``/dev/cpu_dma_latency`` and keeping the file open asks the kernel to
keep the CPUs out of deep idle states (the vCPUs poll instead), as ``cyclictest`` and tuned's
``latency-performance`` profile do; closing the file releases the request.  It needs root.

Usage::

    with pm_qos_zero() as held:
        print("PM QoS held" if held else f"PM QoS unavailable: {held.reason}")
        ...
"""

from __future__ import annotations

import contextlib
import os
import struct
from typing import Iterator

__all__ = ["DEVICE", "PmQos", "pm_qos_zero"]

DEVICE = "/dev/cpu_dma_latency"


class PmQos:
    """The state of one request: true while it is held, else ``reason`` says why not."""

    def __init__(self, held: bool, reason: str = "") -> None:
        self.held = held
        self.reason = reason

    def __bool__(self) -> bool:
        return self.held

    def __str__(self) -> str:
        return "held (0 us)" if self.held else f"unavailable ({self.reason})"


@contextlib.contextmanager
def pm_qos_zero(device: str = DEVICE) -> Iterator[PmQos]:
    """Hold a 0 µs CPU latency request for the duration of the ``with`` block.

    Yields a :class:`PmQos` that is false (with the reason) when the request could not be
    made (no such device, not root); the block runs either way.
    """
    try:
        fd = os.open(device, os.O_WRONLY)
    except OSError as exc:
        yield PmQos(False, f"{device}: {exc.strerror}")
        return
    try:
        try:
            os.write(fd, struct.pack("i", 0))
        except OSError as exc:
            yield PmQos(False, f"{device}: {exc.strerror}")
            return
        yield PmQos(True)
    finally:
        os.close(fd)


if __name__ == "__main__":
    import time

    with pm_qos_zero() as state:
        print(f"PM QoS request {state}; Ctrl-C releases it")
        if state:
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
