"""CPU time of another process, read from ``/proc`` (Linux), for the benchmarks."""

from __future__ import annotations

import os


def run_ns(pid: int) -> int | None:
    """Nanoseconds all threads of process ``pid`` have run so far, or None off Linux.

    Read from ``/proc/PID/task/*/schedstat``: exact, where the user and system times of
    ``/proc/PID/stat`` count clock ticks (10 ms).  A thread that ends meanwhile is left out.
    """
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total = 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                total += int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):  # (the thread ended meanwhile)
            continue
    return total
