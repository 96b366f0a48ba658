"""Rendezvous (highest random weight) sharding of device names.

Every exporter of a fleet computes, for each device, a score per shard from a stable hash of
``(shard, device name)`` and keeps the devices for which its own shard scores highest.  The N
exporters so split the fleet without talking to each other, and going from N to N + 1 shards
moves only the devices whose new highest score is the new shard's: about 1 / (N + 1) of them,
all to the new shard.  The hash is BLAKE2b, identical on every machine and Python version
(unlike :func:`hash`, which is salted per process).
"""

from __future__ import annotations

import hashlib
import re
from typing import Iterable, List, Tuple

__all__ = ["ShardError", "parse_shard", "shard_of", "select"]

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class ShardError(ValueError):
    """A shard specification that is not ``I/N`` with ``0 <= I < N``."""


def parse_shard(text: str) -> Tuple[int, int]:
    """Parse ``"I/N"`` into ``(I, N)``.

    Parameters
    ----------
    text : str
        Shard index and count, e.g. ``"0/3"`` (shards are numbered from 0).

    Returns
    -------
    (int, int)
        The shard index and the number of shards.

    Raises
    ------
    ShardError
        If the text is not of that form or ``I`` is not in ``0 .. N-1``.
    """
    match = _SHARD_RE.match(text)
    if not match:
        raise ShardError(f"shard must be I/N (e.g. 0/3), not {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise ShardError(f"shard index must be in 0..N-1 and N >= 1, not {text!r}")
    return index, count


def _score(shard: int, name: str) -> int:
    key = f"{shard}\0{name}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def shard_of(name: str, count: int) -> int:
    """The shard (``0 .. count-1``) that watches device `name`.

    Parameters
    ----------
    name : str
        The device name, as in the configuration.
    count : int
        The number of shards.

    Returns
    -------
    int
        The shard with the highest score for this name (ties go to the lowest index).
    """
    if count < 1:
        raise ShardError(f"number of shards must be >= 1, not {count}")
    best, best_score = 0, -1
    for shard in range(count):
        score = _score(shard, name)
        if score > best_score:
            best, best_score = shard, score
    return best


def select(names: Iterable[str], index: int, count: int) -> List[str]:
    """The names, in their order, that shard `index` of `count` watches.

    Parameters
    ----------
    names : iterable of str
        Device names.
    index, count : int
        This shard and the number of shards.
    """
    return [name for name in names if shard_of(name, count) == index]
