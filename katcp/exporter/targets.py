"""What to watch: one :class:`Target` per device, with its sensor selection and strategies.

A target is built from the manager's device syntax plus the exporter's own settings
(:mod:`katcp.exporter.settings`); the watchers need nothing else.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Sequence, Tuple

__all__ = ["DEFAULT_STRATEGY", "SensorRules", "Target", "targets_for_ports"]

#: Strategy for sensors that no rule names: report a change at most once a second, and the
#: current value at least every 10 s (a fast sensor cannot flood the exporter; a quiet one
#: still shows fresh timestamps at a 10 s scrape interval).
DEFAULT_STRATEGY: Tuple[str, ...] = ("event-rate", "1", "10")


@dataclass(frozen=True)
class SensorRules:
    """Which sensors to export and with which sampling strategy.

    Parameters
    ----------
    patterns : tuple of str
        Glob patterns (:func:`fnmatch.fnmatchcase`) of the sensor names to export.
    strategies : tuple of (str, tuple of str)
        ``(pattern, strategy words)`` pairs; the first pattern that matches a sensor gives
        its strategy, e.g. ``("*.temp*", ("event-rate", "5", "60"))``.
    default_strategy : tuple of str
        Strategy of sensors that no pattern of `strategies` matches.
    """

    patterns: Tuple[str, ...] = ("*",)
    strategies: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()
    default_strategy: Tuple[str, ...] = DEFAULT_STRATEGY

    def selects(self, name: str) -> bool:
        """Whether sensor `name` is exported."""
        return any(fnmatchcase(name, pattern) for pattern in self.patterns)

    def strategy_for(self, name: str) -> Tuple[str, ...]:
        """Sampling strategy (name and parameters) for sensor `name`."""
        for pattern, strategy in self.strategies:
            if fnmatchcase(name, pattern):
                return strategy
        return self.default_strategy


@dataclass(frozen=True)
class Target:
    """One device to watch.

    Parameters
    ----------
    name : str
        Device name (the ``device`` label).
    kind : str
        ``"katcp"`` or ``"ncp"``.
    host : str
        Host name or address.
    port : int
        TCP port.
    rules : SensorRules
        Sensor selection and strategies.
    ssl_context : ssl.SSLContext, optional
        TLS context (``DeviceSpec.client_ssl_context()``), for either kind.
    username, password : str
        Credentials: an NCP node's, or the user a KATCP device is logged in to as (on
        every connection, before the sync); empty for none.
    """

    name: str
    kind: str
    host: str
    port: int
    rules: SensorRules = field(default_factory=SensorRules)
    ssl_context: ssl.SSLContext | None = None
    username: str = ""
    password: str = ""


def targets_for_ports(host: str, ports: Sequence[int], prefix: str = "sim",
                      rules: SensorRules | None = None) -> Tuple[Target, ...]:
    """KATCP targets named ``<prefix><index>`` for servers on `ports` (fleets, tests).

    Parameters
    ----------
    host : str
        Host of every server.
    ports : sequence of int
        Their ports.
    prefix : str
        Device name prefix; names are zero-padded to 4 digits.
    rules : SensorRules, optional
        Rules of every target (default: every sensor, default strategy).
    """
    rules = rules or SensorRules()
    return tuple(Target(f"{prefix}{i:04d}", "katcp", host, port, rules)
                 for i, port in enumerate(ports))
