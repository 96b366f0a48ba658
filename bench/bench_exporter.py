"""Benchmark the exporter on a simulated fleet (by default 1,000 devices x 100 sensors).

The fleet simulator runs in a separate process (``katcp-fleetsim``); the exporter runs in
this one, so its memory and CPU are this process's.  Measured:

1. sync: time from start until every device is synced and every sensor has a reading
   (goal < 60 s on 2 cores);
2. memory per exported sensor (RSS growth from before the exporter starts to after sync,
   divided by the number of sensors; and again after the scrapes);
3. CPU of the exporter while the fleet changes ``--rate`` sensors per second (default
   10,000), over ``--window`` seconds without scrapes, and the update rate received;
4. scrape: wall time of a full GET /metrics (goal < 1 s), its size and series count, the
   CPU the exporter process spent meanwhile (its loop's too), the HTTP thread's own CPU
   rendering and its wall time rendering and sending, the time spent in the cyclic GC,
   and the worst delay of the exporter's event loop during the scrape (the loop keeps
   watching devices while the HTTP thread renders).  The scrapes after the first come
   ``--scrape-interval`` seconds apart (default 10 s, the longest period of the default
   ``event-rate 1 10`` strategy, so every reading has changed since the previous scrape, as
   Prometheus sees it at its usual intervals).  For reference, the worst loop delay over
   the same time without a scrape is printed too.

The machine is shared: note the number of cores and the load next to the figures.

Usage::

    PYTHONPATH=. .venv/bin/python bench/bench_exporter.py [--devices 1000] [--sensors 100]
        [--rate 10000] [--base-port 30000] [--window 10] [--scrapes 3]
        [--scrape-interval 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from katcp.exporter import Exporter  # noqa: E402
from katcp.exporter.service import SWITCH_INTERVAL, configure_process  # noqa: E402
from katcp.exporter.settings import load_config  # noqa: E402
from katcp.tools.fleetsim import raise_fd_limit  # noqa: E402


def rss_bytes(pid: str = "self") -> int:
    """Resident set size of a process (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: str = "self") -> float:
    """User + system CPU seconds of a process (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: What Prometheus 2.x asks for: OpenMetrics first, gzip-compressed.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0;q=0.75,"
              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def fetch(url: str, path: str, headers: dict | None = None) -> None:
    """GET `url` into the file `path`, with ``curl`` if there is one.

    A scraper is another process: reading tens of MB with urllib in this one would take
    the GIL from the exporter's threads and count in its CPU.  The body goes to a file, not
    through a pipe into this process, whose RSS would keep the buffers it took.
    """
    curl = shutil.which("curl")
    if curl is None:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=300) as response, open(path, "wb") as f:
            shutil.copyfileobj(response, f)
        return
    args = [curl, "-sS", "--fail", "--max-time", "300", "-o", path]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    subprocess.run(args + [url], check=True)


def count_series(path: str) -> int:
    """Sample lines of the exposition in `path` (gzipped or not), read a line at a time."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
        return sum(1 for line in f if not line.startswith(b"#"))


async def loop_lag(stop: asyncio.Event, period: float = 0.01) -> float:
    """Worst lateness (s) of a `period` timer on this loop until `stop` is set."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    while not stop.is_set():
        due = loop.time() + period
        await asyncio.sleep(period)
        worst = max(worst, loop.time() - due)
    return worst


class GcPauses:
    """Time spent in the cyclic garbage collector (any thread), from its callbacks."""

    def __init__(self) -> None:
        self.total = 0.0
        self.worst = 0.0
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._start = now
        else:
            self.total += now - self._start
            self.worst = max(self.worst, now - self._start)

    def take(self) -> tuple:
        """``(total, worst)`` seconds since the last take."""
        result = (self.total, self.worst)
        self.total = self.worst = 0.0
        return result


class RenderTimes:
    """Per response: wall time from the first chunk asked for to the last one sent, and the
    HTTP thread's CPU time spent making the chunks (the rendering alone).

    Wraps the registry's method for the benchmark only, to tell the rendering apart from
    the sending and from waiting for the GIL or a core.
    """

    def __init__(self, registry) -> None:
        self.calls: list = []
        self._render = registry.render_chunks
        registry.render_chunks = self  # benchmark instrumentation

    def __call__(self, openmetrics: bool = False):
        return self._timed(self._render(openmetrics))

    def _timed(self, chunks):
        chunks = iter(chunks)
        w0, cpu = time.perf_counter(), 0.0
        while True:
            c0 = time.thread_time()
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            finally:
                cpu += time.thread_time() - c0
            yield chunk
        self.calls.append((time.perf_counter() - w0, cpu))


async def bench(args: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp(prefix="bench-exporter-")
    config = os.path.join(workdir, "fleet.toml")
    body_path = os.path.join(workdir, "scrape")
    env = {**os.environ, "PYTHONPATH": ROOT}
    sim = subprocess.Popen(
        [sys.executable, "-m", "katcp.tools.fleetsim", "--devices", str(args.devices),
         "--sensors", str(args.sensors), "--rate", str(args.rate), "--base-port",
         str(args.base_port), "--write-config", config], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        t_sim = time.monotonic()
        while not os.path.exists(config):
            if sim.poll() is not None:
                raise SystemExit(f"fleet simulator failed: {sim.stderr.read().decode()}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.2)  # the file is written in one go; let it be closed
        print(f"fleet simulator: {args.devices} devices x {args.sensors} sensors up in "
              f"{time.monotonic() - t_sim:.1f} s, {args.rate:.0f} updates/s")
        targets, _settings = load_config(config)
        total_sensors = args.devices * args.sensors
        raise_fd_limit(len(targets) + 256)
        configure_process(args.switch_interval)  # as katcp-exporter does
        rss0 = rss_bytes()
        exporter = Exporter(targets, ("127.0.0.1", 0), process_metrics=False)
        renders = RenderTimes(exporter.registry)
        gc_pauses = GcPauses()
        t0 = time.monotonic()
        await exporter.start()
        if not await exporter.until_synced(args.sync_timeout, poll=0.1):
            print(f"NOT synced within {args.sync_timeout} s: {exporter.counts()}")
        t_synced = time.monotonic() - t0
        while sum(d.counts()[1] for d in exporter.devices) < total_sensors:
            if time.monotonic() - t0 > args.sync_timeout:
                break
            await asyncio.sleep(0.1)
        t_readings = time.monotonic() - t0
        have = sum(d.counts()[1] for d in exporter.devices)
        print(f"sync: all {len(targets)} devices synced after {t_synced:.1f} s, "
              f"{have}/{total_sensors} sensors with a reading after {t_readings:.1f} s "
              f"(goal < 60 s)")
        await asyncio.sleep(1.0)
        rss1 = rss_bytes()
        print(f"memory: {(rss1 - rss0) / 1e6:.1f} MB for {total_sensors} sensors = "
              f"{(rss1 - rss0) / total_sensors:.0f} B per sensor (RSS growth)")

        updates0 = sum(d.updates for d in exporter.devices)
        cpu0, sim_cpu0, w0 = cpu_seconds(), cpu_seconds(str(sim.pid)), time.monotonic()
        await asyncio.sleep(args.window)
        cpu1, sim_cpu1, w1 = cpu_seconds(), cpu_seconds(str(sim.pid)), time.monotonic()
        updates = sum(d.updates for d in exporter.devices) - updates0
        rate = updates / (w1 - w0)
        cpu = (cpu1 - cpu0) / (w1 - w0)
        print(f"CPU: exporter {100 * cpu:.1f} % of a core at {rate:.0f} updates/s received "
              f"({1e6 * cpu / max(rate, 1):.1f} us CPU per update); simulator "
              f"{100 * (sim_cpu1 - sim_cpu0) / (w1 - w0):.1f} %")

        async def scrape(what: str, headers: dict | None = None) -> tuple:
            stop = asyncio.Event()
            lag = asyncio.ensure_future(loop_lag(stop))
            renders.calls.clear()
            gc_pauses.take()
            c0, s0 = cpu_seconds(), time.monotonic()
            await asyncio.to_thread(fetch, exporter.url, body_path, headers)
            elapsed, cpu = time.monotonic() - s0, cpu_seconds() - c0
            gc_total, gc_worst = gc_pauses.take()
            render_wall, render_cpu = renders.calls[-1] if renders.calls else (0.0, 0.0)
            stop.set()
            worst_lag = await lag
            size = os.path.getsize(body_path)
            series = count_series(body_path)
            print(f"{what}: {elapsed:.2f} s, {size / 1e6:.1f} MB, {series} series, "
                  f"exporter CPU {cpu:.2f} s, worst loop delay during it "
                  f"{1e3 * worst_lag:.0f} ms")
            print(f"  HTTP thread: {1e3 * render_wall:.0f} ms wall rendering and sending, "
                  f"{1e3 * render_cpu:.0f} ms CPU rendering; cyclic GC meanwhile "
                  f"{1e3 * gc_total:.0f} ms "
                  f"(worst pause {1e3 * gc_worst:.0f} ms)")
            # The loop's own worst delay over as long without a scrape, to compare with.
            stop = asyncio.Event()
            lag = asyncio.ensure_future(loop_lag(stop))
            await asyncio.sleep(max(elapsed, 0.5))
            stop.set()
            print(f"  (without a scrape: worst loop delay {1e3 * await lag:.0f} ms)")
            return elapsed, cpu

        await scrape("first scrape")
        times = []
        for _ in range(args.scrapes):
            await asyncio.sleep(args.scrape_interval)
            times.append(await scrape(f"scrape {args.scrape_interval:g} s later"))
        print(f"scrape: median {statistics.median(t[0] for t in times):.2f} s wall, "
              f"{statistics.median(t[1] for t in times):.2f} s exporter CPU over "
              f"{len(times)} (goal < 1 s)")
        await asyncio.sleep(args.scrape_interval)
        await scrape("scrape with Prometheus's request headers (OpenMetrics preferred, gzip; "
                     "size compressed)", PROMETHEUS_HEADERS)
        rss2 = rss_bytes()
        print(f"memory after the scrapes: {(rss2 - rss0) / total_sensors:.0f} B per sensor "
              f"(RSS growth)")
        print(f"machine: {os.cpu_count()} cores, load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        await exporter.stop()
    finally:
        sim.terminate()
        try:
            sim.wait(30)
        except subprocess.TimeoutExpired:
            sim.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10000.0,
                        help="sensor updates per second over the fleet")
    parser.add_argument("--base-port", type=int, default=30000)
    parser.add_argument("--window", type=float, default=10.0,
                        help="seconds over which CPU is measured")
    parser.add_argument("--scrapes", type=int, default=3)
    parser.add_argument("--scrape-interval", type=float, default=10.0,
                        help="seconds between the scrapes after the first")
    parser.add_argument("--sync-timeout", type=float, default=300.0)
    parser.add_argument("--switch-interval", type=float, default=SWITCH_INTERVAL,
                        help="GIL switch interval of the exporter process (s)")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
