#!/usr/bin/env python3
"""Soak test: one device server under a long, mixed, partly hostile load.

The server (an :class:`katcp.server.AsyncDeviceServer` with 1,000 sensors that change all the
time) runs in a process of its own; this process drives it over loopback with:

* 50 client slots, each connecting, living for a random 0.5-10 s and leaving: it sets and
  clears sampling strategies (``event``, ``period``, ``differential``, ``event-rate``,
  ``auto``, ``none``), asks ``?sensor-value``/``?sensor-list`` with names and patterns,
  ``?help``, ``?watchdog``, ``?client-list``, and mixes in hostile input (random bytes, lines
  with bad escapes, a 2 MB line without a terminator, requests with bad arguments); it leaves
  cleanly, with an abrupt reset (``SO_LINGER`` 0), or after not reading for a while;
* one probe connection that sends ``?watchdog`` every 20 ms and times the reply.

Every minute (``--interval``) it prints the server's resident memory, open file descriptors,
threads, the probe's request latency p50/p99 and what the clients did.  After the warm-up
(the first ten minutes, or a sixth of a shorter run) it fits a line through the memory and
descriptor samples and exits with status 1 if either keeps growing (more than
``--max-rss-growth`` MB or ``--max-fd-growth`` descriptors per hour of run-time), or if the
server died or stopped answering.

``--rst-rounds N`` runs the separate experiment of issue 16 instead: N rounds of 2,000
connections closed with RST; after each round it prints the server's RSS, the Python heap
(``tracemalloc``) and the count of live objects, which tells an allocator high-water mark
(RSS grows, heap and objects do not) from a leak (all three grow).

Usage::

    python bench/soak.py                    # one hour
    python bench/soak.py --minutes 5        # a short run
    python bench/soak.py --rst-rounds 6
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
N_SENSORS = 1000
SLOTS = 50


# --------------------------------------------------------------------------- server side


def serve() -> None:
    """Run the soak server (in its own process): prints ``PORT n``, stops when stdin closes."""
    sys.path.insert(0, ROOT)
    import tornado.ioloop

    from katcp import Sensor
    from katcp.kattypes import Str, request, return_reply
    from katcp.server import AsyncDeviceServer

    if os.environ.get("KATCP_SOAK_TRACEMALLOC"):
        tracemalloc.start(1)  # costs memory and time: only for the RST experiment

    class SoakServer(AsyncDeviceServer):
        VERSION_INFO = ("soak-server", 1, 0)
        BUILD_INFO = ("soak-server", 1, 0, "")

        def setup_sensors(self) -> None:
            self.soak_sensors: List[Sensor] = []
            for i in range(N_SENSORS):
                kind = i % 4
                if kind == 0:
                    s = Sensor.float(f"temp.s{i}", "soak float", "degC", [-100.0, 100.0])
                elif kind == 1:
                    s = Sensor.integer(f"count.s{i}", "soak integer", "", [0, 1_000_000])
                elif kind == 2:
                    s = Sensor.discrete(f"mode.s{i}", "soak discrete", "", ["idle", "run", "fault"])
                else:
                    s = Sensor.string(f"text.s{i}", "soak string", "")
                self.add_sensor(s)
                self.soak_sensors.append(s)

        @request(Str(optional=True))
        @return_reply(Str())
        def request_soak_stats(self, req, what):
            """Python heap (tracemalloc), live objects and connections, as JSON."""
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()  # (0, 0) unless tracing
            stats = {"heap": current, "peak": peak, "objects": len(gc.get_objects())}
            return ("ok", json.dumps(stats))

    async def updater(server: SoakServer) -> None:
        rng = random.Random(1)
        modes = ["idle", "run", "fault"]
        n = 0
        while True:
            await asyncio.sleep(0.05)
            for s in rng.sample(server.soak_sensors, 100):
                n += 1
                stype = s.stype
                if stype == "float":
                    s.set_value(rng.uniform(-100, 100))
                elif stype == "integer":
                    s.set_value(n % 1_000_000)
                elif stype == "discrete":
                    s.set_value(rng.choice(modes))
                else:
                    s.set_value(f"v{n}")

    async def main() -> None:
        server = SoakServer("127.0.0.1", 0)
        server.set_ioloop(tornado.ioloop.IOLoop.current())
        await server.start()
        print(f"PORT {server.bind_address[1]}", flush=True)
        task = asyncio.ensure_future(updater(server))
        done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def wait_stdin() -> None:
            sys.stdin.readline()
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=wait_stdin, daemon=True).start()
        await done.wait()
        task.cancel()
        await server.stop()

    asyncio.run(main())


# --------------------------------------------------------------------------- driver side


class ServerProcess:
    """The soak server in a child process, with /proc readings."""

    def __init__(self, log_path: str | None = None, trace_heap: bool = False) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if trace_heap:
            env["KATCP_SOAK_TRACEMALLOC"] = "1"
        # The server logs every bad line and reset connection: keep that out of the report.
        self.log = open(os.devnull if log_path is None else log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"soak server did not start: {line!r}")
        self.port = int(line.split()[1])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def threads(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        return -1

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> None:
        if self.alive():
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Counters:
    def __init__(self) -> None:
        self.connects = 0
        self.requests = 0
        self.hostile = 0
        self.resets = 0
        self.stalls = 0
        self.errors = 0

    def snapshot_and_reset(self) -> Dict[str, int]:
        out = dict(vars(self))
        for k in out:
            setattr(self, k, 0)
        return out


STRATEGIES = [
    ["event"], ["period", "0.5"], ["differential", "1"], ["event-rate", "0.2", "2"],
    ["auto"], ["none"], ["period", "0.05"],
]


def _hostile_line(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).replace(b"\n", b"") + b"\n"
    if kind == 1:
        return b"?sensor-value bad\\qescape\\\n"
    if kind == 2:
        return b"?sensor-sampling temp.s0 period not-a-number\n"
    if kind == 3:
        return b"?sensor-sampling no.such.sensor event\n"
    if kind == 4:
        return b"!not-a-request-from-a-client ok\n"
    return b"?watchdog[0] extra args\n"


async def _drain(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(65536):
            pass
    except (ConnectionError, OSError):
        pass


async def client_slot(port: int, rng: random.Random, counters: Counters, stop: asyncio.Event) -> None:
    """Connect, do a random mix for a random lifetime, leave in a random way; repeat."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        except (OSError, asyncio.TimeoutError):
            counters.errors += 1
            await asyncio.sleep(0.2)
            continue
        counters.connects += 1
        drain = asyncio.ensure_future(_drain(reader))
        end = time.monotonic() + rng.uniform(0.5, 10)
        stall = rng.random() < 0.05
        try:
            while time.monotonic() < end and not stop.is_set():
                r = rng.random()
                if r < 0.35:
                    i = rng.randrange(N_SENSORS)
                    name = ("temp", "count", "mode", "text")[i % 4] + f".s{i}"
                    strat = rng.choice(STRATEGIES)
                    writer.write(" ".join(["?sensor-sampling", name] + strat).encode() + b"\n")
                elif r < 0.5:
                    writer.write(f"?sensor-value temp.s{rng.randrange(0, N_SENSORS, 4)}\n".encode())
                elif r < 0.55:
                    writer.write(b"?sensor-value /count\\.s1[0-9]$/\n")
                elif r < 0.58:
                    writer.write(b"?sensor-list /mode/\n")
                elif r < 0.62:
                    writer.write(b"?help\n")
                elif r < 0.65:
                    writer.write(b"?client-list\n")
                elif r < 0.68:
                    writer.write(b"?sensor-sampling-clear\n")
                elif r < 0.9:
                    writer.write(b"?watchdog\n")
                elif r < 0.995:
                    writer.write(_hostile_line(rng))
                    counters.hostile += 1
                else:
                    # Longer than MAX_MSG_SIZE, no terminator: the server must drop us.
                    writer.write(b"?x " + b"a" * (2 * 1024 * 1024))
                    counters.hostile += 1
                counters.requests += 1
                if stall and not drain.done():
                    drain.cancel()  # stop reading: replies and informs pile up server-side
                    counters.stalls += 1
                if not stall:
                    await writer.drain()
                await asyncio.sleep(rng.uniform(0.005, 0.1))
        except (ConnectionError, OSError):
            pass
        how = rng.random()
        try:
            if how < 0.3:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                counters.resets += 1
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 2)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass
        drain.cancel()


async def probe(port: int, latencies: List[float], stop: asyncio.Event, failures: List[str],
                limit: float) -> None:
    """One steady connection timing ``?watchdog`` round trips (a reply over ``limit`` fails)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    while not stop.is_set():
        n += 1
        t0 = time.perf_counter()
        writer.write(b"?watchdog[%d]\n" % n)
        try:
            while True:
                line = await asyncio.wait_for(reader.readline(), limit)
                if not line:
                    failures.append("probe connection closed by the server")
                    return
                if line.startswith(b"!watchdog[%d]" % n):
                    break
        except asyncio.TimeoutError:
            failures.append(f"no ?watchdog reply within {limit:g} s at request {n}")
            return
        latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(0.02)
    writer.close()


def _slope_per_hour(samples: List[tuple]) -> float:
    """Least-squares slope of (t seconds, y) samples, in y per hour."""
    if len(samples) < 3:
        return 0.0
    ts = [t for t, _ in samples]
    ys = [y for _, y in samples]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    if den == 0:
        return 0.0
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / den * 3600


async def soak(args: argparse.Namespace) -> int:
    # Clients write to connections the server has just dropped on purpose: not news.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    server = ServerProcess(args.server_log)
    print(f"soak server pid {server.proc.pid} port {server.port}; {args.slots} client slots, "
          f"{N_SENSORS} sensors; {args.minutes:g} min, a line every {args.interval:g} s",
          flush=True)
    stop = asyncio.Event()
    counters = Counters()
    latencies: List[float] = []
    failures: List[str] = []
    rng = random.Random(args.seed)
    tasks = [asyncio.ensure_future(client_slot(server.port, random.Random(rng.random()),
                                               counters, stop)) for _ in range(args.slots)]
    tasks.append(asyncio.ensure_future(probe(server.port, latencies, stop, failures,
                                             args.probe_limit)))
    duration = args.minutes * 60
    warmup = min(600.0, duration / 6)
    t0 = time.monotonic()
    rss_samples, fd_samples = [], []
    print(f"{'min':>6} {'RSS MB':>8} {'objects':>8} {'fds':>5} {'spare':>5} {'thr':>4} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'conns':>6} {'reqs':>7} {'hostile':>7} {'resets':>6} {'stalls':>6}", flush=True)
    status = 0
    try:
        while time.monotonic() - t0 < duration:
            await asyncio.sleep(args.interval)
            if not server.alive():
                failures.append(f"server exited with status {server.proc.returncode}")
                break
            if failures:
                break
            now = time.monotonic() - t0
            rss, fds, thr = server.rss_mb(), server.fds(), server.threads()
            loop = asyncio.get_running_loop()
            try:  # live Python objects: tells a leak from the allocator keeping freed memory
                objects = (await loop.run_in_executor(None, _stats, server.port))["objects"]
                # Descriptors not explained by the clients connected at that moment.
                clients = await loop.run_in_executor(None, _client_count, server.port)
            except (OSError, RuntimeError, ValueError):
                objects = clients = -1
            spare_fds = fds - clients
            lat = sorted(latencies)
            latencies.clear()
            p50 = lat[len(lat) // 2] * 1e3 if lat else float("nan")
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3 if lat else float("nan")
            c = counters.snapshot_and_reset()
            print(f"{now / 60:6.1f} {rss:8.1f} {objects:8d} {fds:5d} {spare_fds:5d} {thr:4d} "
                  f"{p50:8.2f} {p99:8.2f} "
                  f"{c['connects']:6d} {c['requests']:7d} {c['hostile']:7d} {c['resets']:6d} "
                  f"{c['stalls']:6d}", flush=True)
            if now >= warmup:
                rss_samples.append((now, rss))
                fd_samples.append((now, spare_fds))
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=15)
        for t in tasks:
            t.cancel()
    rss_slope = _slope_per_hour(rss_samples)
    fd_slope = _slope_per_hour(fd_samples)
    print(f"after the {warmup / 60:.1f} min warm-up: RSS {rss_slope:+.2f} MB/hour, "
          f"descriptors beyond the connected clients {fd_slope:+.2f}/hour "
          f"({len(rss_samples)} samples)", flush=True)
    if failures:
        print("FAIL: " + "; ".join(failures), flush=True)
        status = 1
    if rss_slope > args.max_rss_growth:
        print(f"FAIL: memory keeps growing ({rss_slope:.2f} MB/hour > {args.max_rss_growth})")
        status = 1
    if fd_slope > args.max_fd_growth:
        print(f"FAIL: descriptors keep growing ({fd_slope:.2f}/hour > {args.max_fd_growth})")
        status = 1
    server.stop()
    if status == 0:
        print("PASS: no growth after the warm-up, server answered throughout")
    return status


def _stats(port: int) -> Dict[str, int]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"?soak-stats\n")
        buf = b""
        while b"!soak-stats" not in buf or not buf.endswith(b"\n"):
            data = sock.recv(65536)
            if not data:
                break
            buf += data
    for line in buf.split(b"\n"):
        if line.startswith(b"!soak-stats ok "):
            return json.loads(line[len(b"!soak-stats ok "):].replace(b"\\_", b" ").decode())
    raise RuntimeError(f"no ?soak-stats reply: {buf[-300:]!r}")


def _client_count(port: int) -> int:
    """Number of clients the server lists (``?client-list``), this one included."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"?client-list\n")
        buf = b""
        while not any(line.startswith(b"!client-list") for line in buf.split(b"\n")[:-1]):
            data = sock.recv(65536)
            if not data:
                break
            buf += data
    for line in buf.split(b"\n"):
        if line.startswith(b"!client-list ok "):
            return int(line.split()[2])
    raise RuntimeError(f"no ?client-list reply: {buf[-300:]!r}")


def rst_rounds(args: argparse.Namespace) -> int:
    """Rounds of connections closed with RST: RSS vs Python heap vs live objects."""
    server = ServerProcess(trace_heap=True)
    print("round  RSS MB   heap KB  objects  (2,000 connections per round, closed with RST)")
    base = _stats(server.port)
    print(f"{0:5d} {server.rss_mb():7.1f} {base['heap'] / 1024:9.0f} {base['objects']:8d}")
    for r in range(1, args.rst_rounds + 1):
        socks = []
        for _ in range(20):
            # In batches that the listen backlog takes, each one greeted before the next.
            batch = [socket.create_connection(("127.0.0.1", server.port), timeout=30)
                     for _ in range(100)]
            for s in batch:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                buf = b""
                while b"#version-connect katcp-protocol" not in buf:
                    data = s.recv(4096)
                    if not data:
                        raise RuntimeError("the server closed a connection before greeting it")
                    buf += data
            socks.extend(batch)
        for s in socks:
            s.close()
        # Measure once the server has seen every reset (only the asking connection is left).
        deadline = time.monotonic() + 60
        while _client_count(server.port) > 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        st = _stats(server.port)
        print(f"{r:5d} {server.rss_mb():7.1f} {st['heap'] / 1024:9.0f} {st['objects']:8d}",
              flush=True)
    server.stop()
    return 0


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--minutes", type=float, default=60.0, help="run time (default 60)")
    parser.add_argument("--interval", type=float, default=60.0,
                        help="seconds between report lines (default 60)")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--slots", type=int, default=SLOTS, help="concurrent clients (default 50)")
    parser.add_argument("--probe-limit", type=float, default=30.0,
                        help="seconds without a ?watchdog reply that fail the run (default 30)")
    parser.add_argument("--server-log", help="file for the server's own log (default: none)")
    parser.add_argument("--max-rss-growth", type=float, default=5.0,
                        help="MB per hour of RSS growth after the warm-up that fails the run")
    parser.add_argument("--max-fd-growth", type=float, default=5.0,
                        help="descriptors per hour of growth after the warm-up that fail the run")
    parser.add_argument("--rst-rounds", type=int, default=0,
                        help="instead of the soak: this many rounds of 2,000 RST-closed connections")
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    if args.rst_rounds:
        return rst_rounds(args)
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
