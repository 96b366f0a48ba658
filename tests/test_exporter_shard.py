"""Rendezvous sharding of device names: a partition, stable, minimal moves when N grows."""

from __future__ import annotations

import collections
import hashlib

import pytest

from katcp.exporter.shard import ShardError, parse_shard, select, shard_of

NAMES = [f"rx{i:04d}" for i in range(2000)] + ["odd name é", "x" * 300, ""]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shards_partition_the_fleet(count):
    shares = [select(NAMES, index, count) for index in range(count)]
    assert sorted(n for share in shares for n in share) == sorted(NAMES)
    assert sum(len(share) for share in shares) == len(NAMES)  # no name twice
    if count > 1:
        # Balanced within a generous bound (binomial spread on 2003 names).
        expected = len(NAMES) / count
        assert all(abs(len(share) - expected) < 0.25 * expected + 30 for share in shares)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 10])
def test_adding_a_shard_moves_only_what_it_must(count):
    before = {n: shard_of(n, count) for n in NAMES}
    after = {n: shard_of(n, count + 1) for n in NAMES}
    moved = [n for n in NAMES if before[n] != after[n]]
    # Exactly the names the new shard takes move, and nothing else.
    assert all(after[n] == count for n in moved)
    assert moved == [n for n in NAMES if after[n] == count]
    share = len(moved) / len(NAMES)
    assert abs(share - 1 / (count + 1)) < 0.05


def test_removing_the_last_shard_moves_only_its_devices():
    before = {n: shard_of(n, 4) for n in NAMES}
    after = {n: shard_of(n, 3) for n in NAMES}
    assert all(before[n] == after[n] for n in NAMES if before[n] != 3)


def test_hash_is_stable_across_processes_and_versions():
    # Pinned values: a change here would reshuffle every deployed fleet.
    assert [shard_of(f"sim{i:04d}", 4) for i in range(8)] == PINNED
    assert collections.Counter(shard_of(n, 1) for n in NAMES) == {0: len(NAMES)}
    # The documented scheme: highest BLAKE2b-64 of "<shard>\0<name>" wins.
    for name in NAMES[:200]:
        scores = [int.from_bytes(hashlib.blake2b(f"{i}\0{name}".encode(), digest_size=8)
                                 .digest(), "big") for i in range(5)]
        assert shard_of(name, 5) == scores.index(max(scores))


#: Shards of sim0000..sim0007 among 4, as first released.
PINNED = [2, 1, 1, 2, 3, 1, 1, 2]


@pytest.mark.parametrize("text,parsed", [("0/1", (0, 1)), ("2/3", (2, 3)), (" 1 / 2 ", (1, 2))])
def test_parse_shard(text, parsed):
    assert parse_shard(text) == parsed


@pytest.mark.parametrize("text", ["1/1", "3/2", "-1/2", "0/0", "a/b", "1", "", "1/2/3"])
def test_parse_shard_rejects(text):
    with pytest.raises(ShardError):
        parse_shard(text)
