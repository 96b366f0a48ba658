"""Helpers of the exporter tests: run a coroutine with a deadline, scrape and index /metrics."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Callable, Dict, Tuple

from prometheus_client.parser import text_string_to_metric_families

#: (metric sample name, frozenset of label items) -> value
Series = Dict[Tuple[str, frozenset], float]


def run(coro, timeout: float = 20.0):
    """Run `coro` in a new loop, failing after `timeout` seconds."""
    async def main():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(main())


def fetch(url: str) -> str:
    """GET `url` (blocking) and return the body as text."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode("utf-8")


def parse(text: str) -> Series:
    """Index an exposition by sample name and labels, with prometheus_client's own parser."""
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in series, f"duplicate series {key}"
            series[key] = sample.value
    return series


async def scrape(url: str) -> Series:
    """Scrape `url` from a worker thread (the loop keeps running) and parse it."""
    return parse(await asyncio.to_thread(fetch, url))


def key(name: str, **labels: str) -> Tuple[str, frozenset]:
    """The index key of a sample."""
    return name, frozenset(labels.items())


async def scrape_until(url: str, predicate: Callable[[Series], bool],
                       timeout: float = 10.0) -> Series:
    """Scrape until `predicate(series)` holds; fail with the last scrape after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Series | None = None
    while loop.time() < deadline:
        last = await scrape(url)
        if predicate(last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s; last scrape had "
                         f"{len(last or {})} series")
