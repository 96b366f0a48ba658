"""Failed-login backoff: :class:`LoginBackoff`, per user name and per peer address.

After a failed login, the next attempt for that user name, and the next from that
address, must wait: ``base`` seconds after the first failure, doubling with each further
failure up to ``cap``. Both are checked, so guessing one user's password from many
addresses is slowed by the user's delay, and guessing many users' passwords from one
address by the address's. A success clears the user's record (not the address's: an
attacker with an account of their own must not be able to reset their address's delay).
Records are forgotten ``forget_after`` seconds after their last failure.

Memory is bounded: at most ``max_entries`` user records and as many address records; the
records whose last failure is oldest go first. Users and addresses are kept apart so that
a flood of made-up user names cannot push out address records (the address's own delay
slows that flood), nor the reverse. IPv6 addresses count per /64 network, which one
host usually has to itself.

Times come from a monotonic clock (``clock``, :func:`time.monotonic` by default), so
changing the wall clock neither lifts nor extends a delay.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

__all__ = ["LoginBackoff", "address_key"]


@dataclass
class _Record:
    failures: int
    last_failure: float
    allowed_at: float


def address_key(host: str | None) -> str:
    """The key under which failures from ``host`` are counted.

    Parameters
    ----------
    host : str or None
        Peer host (numeric address; anything else is used as is).

    Returns
    -------
    key : str
        The IPv4 address, the /64 network of an IPv6 address, or ``host``.
    """
    if not host:
        return "-"
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class _Table:
    """Failure records under one kind of key, oldest last failure first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.records: OrderedDict[str, _Record] = OrderedDict()

    def get(self, key: str) -> _Record | None:
        return self.records.get(key)

    def fail(self, key: str, now: float, delay_for: Callable[[int], float]) -> _Record:
        record = self.records.pop(key, None)
        failures = record.failures + 1 if record else 1
        record = _Record(failures, now, now + delay_for(failures))
        self.records[key] = record  # now the newest
        while len(self.records) > self.max_entries:
            self.records.popitem(last=False)
        return record

    def clear(self, key: str) -> None:
        self.records.pop(key, None)

    def forget_before(self, when: float) -> None:
        while self.records:
            key, record = next(iter(self.records.items()))
            if record.last_failure >= when:
                break
            del self.records[key]


class LoginBackoff:
    """Delays imposed on login attempts after failures, per user and per address.

    Parameters
    ----------
    base : float
        Delay in seconds after the first failure.
    factor : float
        Each further failure multiplies the delay by this.
    cap : float
        Longest delay in seconds.
    forget_after : float
        Seconds after its last failure when a record is dropped.
    max_entries : int
        Most records kept for users, and for addresses.
    clock : callable
        Monotonic clock in seconds.

    Notes
    -----
    A login handler uses it like this::

        if backoff.delay(user, host) > 0:
            refuse("try again later")        # without checking the password
        elif store.verify(user, password):
            backoff.record_success(user, host)
        else:
            backoff.record_failure(user, host)
    """

    def __init__(self, *, base: float = 1.0, factor: float = 2.0, cap: float = 60.0,
                 forget_after: float = 900.0, max_entries: int = 10000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if base <= 0 or factor < 1 or cap < base or forget_after < cap or max_entries < 1:
            raise ValueError("need base > 0, factor >= 1, cap >= base, forget_after >= cap "
                             "and max_entries >= 1")
        self.base = base
        self.factor = factor
        self.cap = cap
        self.forget_after = forget_after
        self.clock = clock
        self._users = _Table(max_entries)
        self._addresses = _Table(max_entries)

    def _delay_for(self, failures: int) -> float:
        # Exponent bounded so that a long streak of failures cannot overflow the float.
        exponent = min(failures - 1, 64)
        return min(self.cap, self.base * self.factor ** exponent)

    def _expire(self, now: float) -> None:
        self._users.forget_before(now - self.forget_after)
        self._addresses.forget_before(now - self.forget_after)

    def delay(self, user: str | None, host: str | None) -> float:
        """Seconds to wait before ``user`` may try to log in from ``host`` (0: go ahead).

        Parameters
        ----------
        user : str or None
            User name attempted (None if not known yet).
        host : str or None
            Peer address.

        Returns
        -------
        delay : float
        """
        now = self.clock()
        self._expire(now)
        allowed_at = now
        for table, key in ((self._users, user), (self._addresses, address_key(host))):
            if key is None:
                continue
            record = table.get(key)
            if record is not None:
                allowed_at = max(allowed_at, record.allowed_at)
        return allowed_at - now

    def record_failure(self, user: str | None, host: str | None) -> float:
        """Count a failed login; return the delay before the next attempt.

        Parameters
        ----------
        user : str or None
            User name attempted (whether or not it exists, so as not to tell).
        host : str or None
            Peer address.

        Returns
        -------
        delay : float
            Seconds until this user, or this address, may try again.
        """
        now = self.clock()
        self._expire(now)
        allowed_at = self._addresses.fail(address_key(host), now, self._delay_for).allowed_at
        if user is not None:
            allowed_at = max(allowed_at, self._users.fail(user, now, self._delay_for).allowed_at)
        return allowed_at - now

    def record_success(self, user: str | None, host: str | None) -> None:
        """Count a successful login: the user's record goes; the address's stays.

        Parameters
        ----------
        user : str or None
            User who logged in.
        host : str or None
            Peer address (kept in the signature for symmetry and future policies).
        """
        if user is not None:
            self._users.clear(user)

    def failures(self, user: str | None = None, host: str | None = None) -> int:
        """Failures on record for ``user`` and ``host`` (the larger of the two counts)."""
        self._expire(self.clock())
        counts = [0]
        if user is not None:
            record = self._users.get(user)
            counts.append(record.failures if record else 0)
        if host is not None:
            record = self._addresses.get(address_key(host))
            counts.append(record.failures if record else 0)
        return max(counts)

    def __len__(self) -> int:
        """Records held (users and addresses)."""
        return len(self._users.records) + len(self._addresses.records)
