"""Device locks of the manager, and the audit lines they write.

A lock gives one holder exclusive *control* of a device: while it is held, control requests on
that device from anyone else are refused with a reply naming the holder.  A lock ends when its
holder unlocks it, when its lease runs out, when it is broken (an admin action) or, when the
holder is a connection rather than a logged-in user, when that connection closes.

Every lock event is written with :func:`katcp.security.audit_event` to the ``katcp.audit``
logger: who did it (``user``, ``addr``), the event (``lock``, ``lock-renew``, ``unlock``,
``lock-break``, ``lock-expire``, ``lock-release``, ``lock-denied``), the request and its
status, and a ``detail`` of the form ``device=rx1,holder=alice[,lease=30]``.  The application
decides where that logger writes (:func:`katcp.security.open_audit_log`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Hashable, List

from katcp.security import AUDIT_LOGGER_NAME, audit_event

__all__ = ["AUDIT_LOGGER_NAME", "Lock", "LockError", "LockTable", "audit_lock"]


def audit_lock(event: str, device: str, holder: str, *, user: str | None = None,
               addr: object = None, request: str | None = None, status: str = "ok",
               lease: float | None = None, level: int = logging.INFO,
               logger: logging.Logger | None = None) -> str:
    """Write one lock event to the audit log.

    Parameters
    ----------
    event : str
        ``lock``, ``lock-renew``, ``unlock``, ``lock-break``, ``lock-expire``,
        ``lock-release`` or ``lock-denied``.
    device : str
        The device.
    holder : str
        Who holds (or held) its lock.
    user, addr : optional
        Who did it: user name (None without a user store) and peer address.
    request : str, optional
        The request that did it (None for a lease running out or a disconnect).
    status : str
        ``ok``, or ``fail`` for a refusal.
    lease : float, optional
        The lease asked for, in seconds.
    level : int
        Logging level.
    logger : logging.Logger, optional
        Audit logger (default ``katcp.audit``).

    Returns
    -------
    line : str
        The line written.
    """
    detail = f"device={device},holder={holder}"
    if lease is not None:
        detail += f",lease={lease:g}"
    return audit_event(event, user=user, addr=addr, request=request, status=status,
                       detail=detail, level=level, logger=logger)


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
        Identity of the holder: the client connection, or ``("user", name)`` on a manager
        with a user store (so that the lock survives the user's reconnection).
    holder : str
        How the holder is shown to people and in the audit log (``host:port`` or a user).
    user : str or None
        The holder's user name (None without a user store).
    addr : str or None
        Address the lock was taken from.
    expires : float or None
        Loop time at which the lease ends; None for no lease.
    """

    device: str
    owner: Hashable
    holder: str
    user: str | None = None
    addr: str | None = None
    expires: float | None = None
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False, compare=False)


class LockTable:
    """The locks of one manager, with leases on the event loop's clock.

    Every change is audited (:func:`audit_lock`).  The ``user`` and ``addr`` arguments of
    the methods say who acts, for the audit log.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        Loop whose clock times the leases (all methods must be called on it).
    on_change : callable, optional
        ``on_change(device)`` after a lock of `device` is taken, renewed or ends.
    audit_logger : logging.Logger, optional
        Where the lock events go (default ``katcp.audit``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_change: Callable[[str], None] | None = None,
                 audit_logger: logging.Logger | None = None) -> None:
        self._loop = loop
        self._locks: Dict[str, Lock] = {}
        self._on_change = on_change
        self._audit_logger = audit_logger

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
                lease: float | None = None, *, user: str | None = None,
                addr: str | None = None) -> Lock:
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
        user, addr : str, optional
            The taker's user name and address (for the audit log).

        Raises
        ------
        LockError
            If someone else holds it, or `lease` is not a positive finite number.
        """
        if lease is not None and not (math.isfinite(lease) and lease > 0):
            raise LockError(f"lease must be a positive number of seconds, not {lease!r}")
        current = self._locks.get(device)
        if current is not None and current.owner != owner:
            self._audit("lock-denied", device, current.holder, user=user, addr=addr,
                        request="lock", status="fail", level=logging.WARNING)
            raise LockError(f"device {device} is locked by {current.holder}")
        if current is not None:
            self._cancel_timer(current)
        lock = Lock(device, owner, holder, user=user, addr=addr)
        if lease is not None:
            lock.expires = self._loop.time() + lease
            lock._timer = self._loop.call_at(lock.expires, self._expire, device, lock)
        self._locks[device] = lock
        self._audit("lock" if current is None else "lock-renew", device, holder, user=user,
                    addr=addr, request="lock", lease=lease)
        self._changed(device)
        return lock

    def release(self, device: str, owner: Hashable, *, user: str | None = None,
                addr: str | None = None) -> Lock:
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
            self._audit("unlock", device, current.holder, user=user, addr=addr,
                        request="unlock", status="fail", level=logging.WARNING)
            raise LockError(f"device {device} is locked by {current.holder}")
        self._end(current)
        self._audit("unlock", device, current.holder, user=user, addr=addr, request="unlock")
        return current

    def break_lock(self, device: str, by: str, *, user: str | None = None,
                   addr: str | None = None) -> Lock:
        """End the lock of `device` whoever holds it (an admin action).

        Parameters
        ----------
        device : str
            The device.
        by : str
            Who breaks it, for people (e.g. ``"manager (device removed)"``).
        user, addr : str, optional
            Who breaks it, for the audit log (default: `by` as the address).

        Raises
        ------
        LockError
            If the device is not locked.
        """
        current = self._locks.get(device)
        if current is None:
            raise LockError(f"device {device} is not locked")
        self._end(current)
        self._audit("lock-break", device, current.holder, user=user,
                    addr=addr if addr is not None or user is not None else by,
                    request="lock-break")
        return current

    def release_owner(self, owner: Hashable, reason: str) -> List[Lock]:
        """End every lock held by `owner` (e.g. because it disconnected)."""
        ended = [lock for lock in self._locks.values() if lock.owner == owner]
        for lock in ended:
            self._end(lock)
            self._audit("lock-release", lock.device, lock.holder, user=lock.user,
                        addr=lock.addr, status=reason)
        return ended

    def close(self) -> None:
        """Cancel all lease timers (the manager is stopping); locks are dropped silently."""
        for lock in self._locks.values():
            self._cancel_timer(lock)
        self._locks.clear()

    def _audit(self, event: str, device: str, holder: str, **kwargs) -> None:
        audit_lock(event, device, holder, logger=self._audit_logger, **kwargs)

    def _expire(self, device: str, lock: Lock) -> None:
        if self._locks.get(device) is lock:
            lock._timer = None
            self._end(lock)
            self._audit("lock-expire", device, lock.holder, user=lock.user, addr=lock.addr)

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
