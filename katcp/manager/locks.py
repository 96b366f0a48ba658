"""Device locks of the manager, and the audit log they write to.

A lock gives one holder exclusive *control* of a device: while it is held, control requests on
that device from anyone else are refused with a reply naming the holder.  A lock ends when its
holder unlocks it, when its lease runs out, when its holder disconnects, or when it is broken.

Every lock event is written as one ``key=value`` line to the ``katcp.audit`` logger (see
:func:`audit`); the application decides where that logger writes.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Hashable, List

__all__ = ["AUDIT_LOGGER_NAME", "Lock", "LockError", "LockTable", "audit", "format_audit"]

#: Name of the logger that receives audit lines.
AUDIT_LOGGER_NAME = "katcp.audit"

audit_logger = logging.getLogger(AUDIT_LOGGER_NAME)


def _audit_value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\\n\r\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def format_audit(event: str, **fields: object) -> str:
    """Format one audit line: ``event=EVENT key=value ...`` (values quoted when needed).

    Parameters
    ----------
    event : str
        What happened, e.g. ``lock``.
    **fields
        Further ``key=value`` pairs, in the given order; None values are left out.

    Returns
    -------
    str
        The line, without a newline.
    """
    parts = [f"event={_audit_value(event)}"]
    parts.extend(f"{key}={_audit_value(value)}" for key, value in fields.items()
                 if value is not None)
    return " ".join(parts)


def audit(event: str, **fields: object) -> None:
    """Write one audit line to the ``katcp.audit`` logger (level INFO).

    Never pass secrets: audit lines are meant to be kept.
    """
    audit_logger.info(format_audit(event, **fields))


class LockError(Exception):
    """A lock operation was refused; the message says why (and names the holder)."""


@dataclass
class Lock:
    """A held lock.

    Attributes
    ----------
    device : str
        The locked device.
    owner : hashable
        Identity of the holder (a client connection, or a user name once users exist).
    holder : str
        How the holder is shown to people and in the audit log (``host:port`` or a user).
    expires : float or None
        Loop time at which the lease ends; None for no lease.
    """

    device: str
    owner: Hashable
    holder: str
    expires: float | None = None
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False, compare=False)


class LockTable:
    """The locks of one manager, with leases on the event loop's clock.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        Loop whose clock times the leases (all methods must be called on it).
    on_change : callable, optional
        ``on_change(device)`` after a lock of `device` is taken, renewed or ends.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_change: Callable[[str], None] | None = None) -> None:
        self._loop = loop
        self._locks: Dict[str, Lock] = {}
        self._on_change = on_change

    def holder_of(self, device: str) -> Lock | None:
        """Return the lock of `device`, or None when it is free."""
        return self._locks.get(device)

    def locks(self) -> List[Lock]:
        """Return the held locks, sorted by device name."""
        return [self._locks[name] for name in sorted(self._locks)]

    def remaining(self, lock: Lock) -> float | None:
        """Seconds left on the lease of `lock` (None: no lease)."""
        if lock.expires is None:
            return None
        return max(0.0, lock.expires - self._loop.time())

    def acquire(self, device: str, owner: Hashable, holder: str,
                lease: float | None = None) -> Lock:
        """Take (or, for its holder, renew) the lock of `device`.

        Parameters
        ----------
        device : str
            Device to lock.
        owner : hashable
            Identity of the taker.
        holder : str
            Display name of the taker.
        lease : float, optional
            Seconds until the lock ends by itself; None for no lease.

        Raises
        ------
        LockError
            If someone else holds it, or `lease` is not a positive finite number.
        """
        if lease is not None and not (math.isfinite(lease) and lease > 0):
            raise LockError(f"lease must be a positive number of seconds, not {lease!r}")
        current = self._locks.get(device)
        if current is not None and current.owner != owner:
            raise LockError(f"device {device} is locked by {current.holder}")
        if current is not None:
            self._cancel_timer(current)
        lock = Lock(device, owner, holder)
        if lease is not None:
            lock.expires = self._loop.time() + lease
            lock._timer = self._loop.call_at(lock.expires, self._expire, device, lock)
        self._locks[device] = lock
        audit("lock" if current is None else "lock-renew", device=device, holder=holder,
              lease=lease)
        self._changed(device)
        return lock

    def release(self, device: str, owner: Hashable) -> Lock:
        """Unlock `device` on behalf of its holder.

        Raises
        ------
        LockError
            If the device is not locked, or `owner` does not hold it.
        """
        current = self._locks.get(device)
        if current is None:
            raise LockError(f"device {device} is not locked")
        if current.owner != owner:
            raise LockError(f"device {device} is locked by {current.holder}")
        self._end(current)
        audit("unlock", device=device, holder=current.holder)
        return current

    def break_lock(self, device: str, by: str) -> Lock:
        """End the lock of `device` whoever holds it (an admin action).

        Raises
        ------
        LockError
            If the device is not locked.
        """
        current = self._locks.get(device)
        if current is None:
            raise LockError(f"device {device} is not locked")
        self._end(current)
        audit("lock-break", device=device, holder=current.holder, by=by)
        return current

    def release_owner(self, owner: Hashable, reason: str) -> List[Lock]:
        """End every lock held by `owner` (e.g. because it disconnected)."""
        ended = [lock for lock in self._locks.values() if lock.owner == owner]
        for lock in ended:
            self._end(lock)
            audit("lock-release", device=lock.device, holder=lock.holder, reason=reason)
        return ended

    def close(self) -> None:
        """Cancel all lease timers (the manager is stopping); locks are dropped silently."""
        for lock in self._locks.values():
            self._cancel_timer(lock)
        self._locks.clear()

    def _expire(self, device: str, lock: Lock) -> None:
        if self._locks.get(device) is lock:
            lock._timer = None
            self._end(lock)
            audit("lock-expire", device=device, holder=lock.holder)

    def _end(self, lock: Lock) -> None:
        self._cancel_timer(lock)
        del self._locks[lock.device]
        self._changed(lock.device)

    @staticmethod
    def _cancel_timer(lock: Lock) -> None:
        if lock._timer is not None:
            lock._timer.cancel()
            lock._timer = None

    def _changed(self, device: str) -> None:
        if self._on_change is not None:
            self._on_change(device)
