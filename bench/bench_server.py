#!/usr/bin/env python3
"""Server benchmark: our AsyncDeviceServer and DeviceServer against aiokatcp's DeviceServer.

Each server runs in a process of its own and the load comes from ``bench/loadgen.py`` in
another process.  For every server, in the same run, this prints:

* server CPU microseconds per ``?watchdog`` request (pipelined, 100 in flight, one
  connection) and requests/s;
* throughput: requests/s with 10 connections, each keeping 100 ``?watchdog`` requests in
  flight (``--connections``, ``--inflight``);
* ``#sensor-status`` informs/s (and server CPU microseconds per inform) with the ``event``
  strategy on 1000 sensors for 10 clients: the fan-out, measured last, with every server
  running at once and the servers taking turns (``--fanout-repeat`` rounds, medians);
* resident memory per idle connection (1000 idle connections, VmRSS difference);
* resident memory per sensor (10000 sensors added, VmRSS difference);

(``async-py`` is the AsyncDeviceServer with ``KATCP_CODEC=python``, i.e. without the Rust
codec, as on platforms that have no ``katcp-codec`` wheel; ``transport`` is our connection
layer alone answering ``?watchdog``, to show what the transport itself costs)

followed by the ratios against aiokatcp and the goals.  All servers run at once; the
request measurements (``watchdog``, ``throughput``) go round the servers ``--repeat``
times, interleaved, so that a change in machine load hits every server alike, and the
medians are reported.  Server CPU time is read from
``/proc/<pid>/stat`` (all threads of the server process), so the load generator's own work
is not counted.

Usage::

    python bench/bench_server.py [--requests 50000] [--repeat 3] [--fanout-repeat 5]
                                 [--servers async,default,async-py,aiokatcp,transport]
                                 [--steps kb_per_sensor,kb_per_conn,watchdog,throughput,informs]

A server process is started with ``python bench/bench_server.py --serve KIND``.
"""

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

from procstat import run_ns

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOADGEN = os.path.join(HERE, "loadgen.py")
N_SENSORS = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")

KINDS = {
    "async": "katcp AsyncDeviceServer",
    "default": "katcp DeviceServer (default: handler thread)",
    "async-py": "katcp AsyncDeviceServer, pure-Python codec",
    "aiokatcp": "aiokatcp DeviceServer",
    "transport": "katcp.connection only (watchdog echo)",
}
#: Measurements, in the order they run (``--steps`` picks some).
STEPS = ("kb_per_sensor", "kb_per_conn", "watchdog", "throughput", "informs")
#: Measurements taken in rounds over all servers, interleaved (the others: server by server).
ROUND_STEPS = ("watchdog", "throughput")
#: Measurements a kind supports (default: all).
KIND_STEPS = {"transport": ("kb_per_conn", "watchdog", "throughput")}
#: Extra environment per server kind (``KATCP_CODEC=python``: no Rust codec, as on Windows).
KIND_ENV = {"async-py": {"KATCP_CODEC": "python"}}


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _announce(port: int) -> None:
    print(f"PORT {port}", flush=True)


def _wait_stdin_then(callback) -> None:
    """Call ``callback`` (from a helper thread) once stdin has a line or is closed."""

    def waiter() -> None:
        sys.stdin.readline()
        callback()

    threading.Thread(target=waiter, daemon=True).start()


# ---------------------------------------------------------------------------- katcp servers
def _katcp_server_class(base):
    from katcp.core import Sensor
    from katcp.kattypes import Int, request, return_reply

    class BenchServer(base):
        VERSION_INFO = ("bench-server", 1, 0)
        BUILD_INFO = ("bench-server", 1, 0, "")

        def setup_sensors(self) -> None:
            self._counter = 0
            self._bench_sensors = []
            for i in range(N_SENSORS):
                sensor = Sensor.integer(f"s{i}", "Benchmark sensor", "", [0, 2**31 - 1])
                self._bench_sensors.append(sensor)
                self.add_sensor(sensor)

        def _update_round(self) -> None:
            self._counter += 1
            value = self._counter
            for sensor in self._bench_sensors:
                sensor.set_value(value)

        @request(Int(), Int(default=0))
        @return_reply()
        def request_bench_add_sensors(self, req, n, start):
            """Add n integer sensors x<start>... (memory benchmark)."""
            for i in range(start, start + n):
                self.add_sensor(
                    Sensor.integer(f"x{i}", "Benchmark sensor", "", [0, 2**31 - 1])
                )
            return ("ok",)

    return BenchServer


def serve_katcp_async() -> None:
    """Run our AsyncDeviceServer on the main thread's ioloop."""
    import tornado.ioloop

    from katcp.kattypes import Int, request, return_reply
    from katcp.server import AsyncDeviceServer

    base = _katcp_server_class(AsyncDeviceServer)

    class AsyncBench(base):
        @request(Int())
        @return_reply()
        async def request_bench_update(self, req, rounds):
            """Change every benchmark sensor ``rounds`` times."""
            for _ in range(rounds):
                self._update_round()
                await asyncio.sleep(0)
            return ("ok",)

    async def main() -> None:
        ioloop = tornado.ioloop.IOLoop.current()
        server = AsyncBench("127.0.0.1", 0)
        server.set_concurrency_options(thread_safe=False, handler_thread=False)
        server.set_ioloop(ioloop)
        started = server.start()
        if started is not None and hasattr(started, "__await__"):
            await started
        for _ in range(500):
            if server.bind_address[1]:
                break
            await asyncio.sleep(0.01)
        _announce(server.bind_address[1])
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        _wait_stdin_then(lambda: loop.call_soon_threadsafe(done.set))
        await done.wait()
        stopped = server.stop()
        if stopped is not None and hasattr(stopped, "__await__"):
            await asyncio.wait_for(stopped, 5)

    asyncio.run(main())


def serve_katcp_default() -> None:
    """Run our DeviceServer with its default concurrency options (managed ioloop thread)."""
    from katcp.kattypes import Int, request, return_reply
    from katcp.server import DeviceServer

    base = _katcp_server_class(DeviceServer)

    class DefaultBench(base):
        @request(Int())
        @return_reply()
        def request_bench_update(self, req, rounds):
            """Change every benchmark sensor ``rounds`` times."""
            for _ in range(rounds):
                self._update_round()
                # Updates from this (handler) thread coalesce when they outrun the loop
                # (SampleStrategy.MAX_THREAD_BACKLOG): let it catch up once per round,
                # so that every change is reported, as the other servers do.
                caught_up = threading.Event()
                self.ioloop.add_callback(caught_up.set)
                caught_up.wait()
            return ("ok",)

    server = DefaultBench("127.0.0.1", 0)
    server.start(timeout=10)
    _announce(server.bind_address[1])
    sys.stdin.readline()
    server.stop(timeout=5)
    server.join(timeout=5)


def serve_transport() -> None:
    """Only our transport (katcp.connection) and codec: greet, then answer ``?watchdog``.

    Shows what the connection layer itself costs (CPU per request, memory per idle
    connection) under the full servers' figures.
    """
    from katcp.codec import LineCodec
    from katcp.connection import create_server
    from katcp.core import Message

    greeting = Message.inform("version-connect", "katcp-protocol", "5.0-IM")

    class Handler:
        def connection_made(self, conn):
            conn.write(greeting)

        def message_received(self, conn, msg):
            if msg.mtype == Message.REQUEST:
                conn.write(Message.reply_to_request(msg, "ok"))

        def decode_error(self, conn, exc):
            conn.write(Message.inform("log", "error", str(exc)))

        def connection_lost(self, conn, exc):
            pass

    async def main() -> None:
        server = await create_server(Handler(), LineCodec, "127.0.0.1", 0, backlog=2048)
        _announce(server.sockets[0].getsockname()[1])
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        _wait_stdin_then(lambda: loop.call_soon_threadsafe(done.set))
        await done.wait()
        server.close()

    asyncio.run(main())


def serve_aiokatcp() -> None:
    """Run aiokatcp's DeviceServer."""
    import aiokatcp

    class AioBench(aiokatcp.DeviceServer):
        VERSION = "bench-server-1.0"
        BUILD_STATE = "bench-server-1.0.0"

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._counter = 0
            self._bench_sensors = []
            for i in range(N_SENSORS):
                sensor = aiokatcp.Sensor(int, f"s{i}", "Benchmark sensor")
                self._bench_sensors.append(sensor)
                self.sensors.add(sensor)

        async def request_bench_update(self, ctx, rounds: int) -> None:
            """Change every benchmark sensor ``rounds`` times."""
            for _ in range(rounds):
                self._counter += 1
                value = self._counter
                for sensor in self._bench_sensors:
                    sensor.value = value
                await asyncio.sleep(0)

        async def request_bench_add_sensors(self, ctx, n: int, start: int = 0) -> None:
            """Add n integer sensors x<start>... (memory benchmark)."""
            for i in range(start, start + n):
                self.sensors.add(aiokatcp.Sensor(int, f"x{i}", "Benchmark sensor"))

    async def main() -> None:
        server = AioBench("127.0.0.1", 0, max_backlog=2048)
        await server.start()
        _announce(server.sockets[0].getsockname()[1])
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        _wait_stdin_then(lambda: loop.call_soon_threadsafe(done.set))
        await done.wait()
        await server.stop()

    asyncio.run(main())


SERVE = {
    "async": serve_katcp_async,
    "default": serve_katcp_default,
    "async-py": serve_katcp_async,
    "aiokatcp": serve_aiokatcp,
    "transport": serve_transport,
}


# ---------------------------------------------------------------------------- measuring
class ServerProcess:
    """A benchmark server in a child process."""

    def __init__(self, kind: str, timeout: float) -> None:
        self.kind = kind
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env.update(KIND_ENV.get(kind, {}))
        # The server's log output goes to a file, shown if something fails.
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            cwd=ROOT,
        )
        self.port = self._read_port(timeout)

    def _read_port(self, timeout: float) -> int:
        result: List[str] = []

        def reader() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").strip()
                if line.startswith("PORT "):
                    result.append(line)
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        if not result:
            self.kill()
            raise RuntimeError(
                f"{self.kind} server did not start (or not within {timeout} s):\n"
                + self.log_tail()
            )
        return int(result[0].split()[1])

    def log_tail(self, size: int = 2000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-size:]

    def cpu_seconds(self) -> float:
        """CPU time of the server process (all its threads) in seconds.

        Uses the nanosecond run times in ``/proc/<pid>/task/*/schedstat`` when available,
        else the clock-tick ``utime + stime`` of ``/proc/<pid>/stat``.
        """
        total = run_ns(self.proc.pid)
        if total:
            return total / 1e9
        base = f"/proc/{self.proc.pid}"
        with open(f"{base}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_kb(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("VmRSS not found")

    def stop(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"stop\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _loadgen(args: List[str], timeout: float) -> dict:
    out = subprocess.run(
        [sys.executable, LOADGEN, *args], capture_output=True, timeout=timeout, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"loadgen {args} failed: {out.stderr.decode()[-800:]}")
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def _request(port: int, line: bytes, timeout: float) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(line + b"\n")
        name = line.split()[0][1:]
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            buf += data
            for reply in buf.split(b"\n"):
                if reply.startswith(b"!" + name):
                    return reply
    raise RuntimeError(f"no reply to {line!r}")


def watchdog_once(server: ServerProcess, requests: int, connections: int, inflight: int,
                  timeout: float) -> Dict[str, float]:
    """One pipelined ``?watchdog`` run: server CPU per request and requests/s."""
    c0 = server.cpu_seconds()
    res = _loadgen(["watchdog", "--port", str(server.port), "--requests", str(requests),
                    "--connections", str(connections), "--inflight", str(inflight),
                    "--timeout", str(timeout)], timeout + 10)
    c1 = server.cpu_seconds()
    return {"cpu_us": (c1 - c0) / res["replies"] * 1e6, "rate": res["rate"]}


def warm_up(server: ServerProcess, requests: int, timeout: float) -> None:
    """A short ``?watchdog`` run before the measured ones."""
    _loadgen(["watchdog", "--port", str(server.port), "--requests",
              str(max(requests // 10, 500))], timeout)


def measure_informs(server: ServerProcess, clients: int, rounds: int, timeout: float) -> dict:
    proc = subprocess.Popen(
        [sys.executable, LOADGEN, "sensors", "--port", str(server.port), "--clients",
         str(clients), "--sensors", str(N_SENSORS), "--rounds", str(rounds), "--timeout",
         str(timeout), "--sync"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        ready = proc.stdout.readline()
        if b"ready" not in ready:
            raise RuntimeError(f"sensors loadgen failed: {proc.communicate(timeout=10)[1][-800:]!r}")
        c0 = server.cpu_seconds()
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=timeout + 10)
        c1 = server.cpu_seconds()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"sensors loadgen failed: {err.decode()[-800:]}")
    res = json.loads(out.decode().strip().splitlines()[-1])
    return {"informs_per_s": res["rate"], "informs": res["informs"],
            "cpu_us_per_inform": (c1 - c0) / res["informs"] * 1e6}


def measure_idle_memory(server: ServerProcess, n: int, timeout: float) -> float:
    def open_idle(count: int) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, LOADGEN, "idle", "--port", str(server.port), "--clients",
             str(count), "--hold", str(timeout), "--timeout", str(timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise RuntimeError("idle loadgen failed to connect")
        return proc

    def close(proc: subprocess.Popen) -> None:
        assert proc.stdin is not None
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        proc.wait(timeout)

    close(open_idle(100))  # warm the allocator
    time.sleep(0.3)
    r0 = server.rss_kb()
    proc = open_idle(n)
    time.sleep(0.5)
    r1 = server.rss_kb()
    close(proc)
    return (r1 - r0) / n


def measure_sensor_memory(server: ServerProcess, n: int, timeout: float) -> float:
    time.sleep(0.2)
    r0 = server.rss_kb()
    reply = _request(server.port, b"?bench-add-sensors %d" % n, timeout)
    if not reply.split()[1:2] == [b"ok"]:
        raise RuntimeError(f"bench-add-sensors failed: {reply!r}")
    time.sleep(0.2)
    r1 = server.rss_kb()
    return (r1 - r0) / n


def run_one(server: ServerProcess, args: argparse.Namespace) -> Dict[str, Optional[float]]:
    """The measurements taken server by server (memory)."""
    result: Dict[str, Optional[float]] = {}
    steps = [
        ("kb_per_sensor", lambda: measure_sensor_memory(server, args.add_sensors,
                                                        args.timeout)),
        ("kb_per_conn", lambda: measure_idle_memory(server, args.idle, args.timeout)),
    ]
    for name, step in steps:
        if not _wanted(server.kind, name, args):
            continue
        try:
            value = step()
        except Exception as exc:  # report and carry on with the other figures
            print(f"  {server.kind}: {name} failed: {exc}", file=sys.stderr)
            if server.proc.poll() is not None:
                print(server.log_tail(), file=sys.stderr)
                break
            continue
        if isinstance(value, dict):
            result.update(value)
        else:
            result[name] = value
    return result


def _wanted(kind: str, step: str, args: argparse.Namespace) -> bool:
    supported = KIND_STEPS.get(kind)
    if supported is not None and step not in supported:
        return False
    return args.steps is None or step in args.steps


def run_rounds(servers: List[ServerProcess], args: argparse.Namespace
               ) -> Dict[str, Dict[str, Optional[float]]]:
    """The request measurements, ``args.repeat`` rounds over all servers, interleaved.

    ``watchdog``: one connection, 100 in flight (server CPU per request, requests/s);
    ``throughput``: ``args.connections`` connections, ``args.inflight`` in flight on each.
    """
    runs = [
        ("watchdog", 1, 100, "cpu_us_per_req", "req_per_s"),
        ("throughput", args.connections, args.inflight, "thr_cpu_us_per_req", "thr_req_per_s"),
    ]
    samples: Dict[str, Dict[str, List[float]]] = {s.kind: {} for s in servers}
    live = [s for s in servers if any(_wanted(s.kind, step, args) for step, *_ in runs)]
    for server in list(live):
        try:
            warm_up(server, args.requests, args.timeout)
        except Exception as exc:
            print(f"  {server.kind}: warm-up failed: {exc}", file=sys.stderr)
            live.remove(server)
    for _ in range(args.repeat):
        for step, connections, inflight, cpu_key, rate_key in runs:
            for server in live:
                if not _wanted(server.kind, step, args) or server.proc.poll() is not None:
                    continue
                try:
                    res = watchdog_once(server, args.requests, connections, inflight,
                                        args.timeout)
                except Exception as exc:
                    print(f"  {server.kind}: {step} failed: {exc}", file=sys.stderr)
                    continue
                got = samples[server.kind]
                got.setdefault(cpu_key, []).append(res["cpu_us"])
                got.setdefault(rate_key, []).append(res["rate"])
    return {kind: {key: statistics.median(values) for key, values in got.items()}
            for kind, got in samples.items()}


def run_fanout(servers: List[ServerProcess], args: argparse.Namespace,
               results: Dict[str, Dict[str, Optional[float]]]) -> None:
    """The fan-out, interleaved: every server runs, each takes its turn in every round.

    Load from the other processes on the machine then weighs on all servers alike; the
    medians over ``--fanout-repeat`` rounds go into ``results``, with the spread.
    """
    live = [s for s in servers if _wanted(s.kind, "informs", args)]
    kinds = [s.kind for s in live]
    samples: Dict[str, List[dict]] = {k: [] for k in kinds}
    for i in range(args.fanout_repeat):
        load = os.getloadavg()[0]
        print(f"fan-out round {i + 1}/{args.fanout_repeat} (load average {load:.2f})",
              flush=True)
        for server in live:
            if server.proc.poll() is not None:
                continue
            try:
                samples[server.kind].append(measure_informs(server, args.clients,
                                                            args.rounds, args.timeout))
            except Exception as exc:
                print(f"  {server.kind}: informs failed: {exc}", file=sys.stderr)
    for kind, runs in samples.items():
        if not runs:
            continue
        res = results.setdefault(kind, {})
        for key in ("informs_per_s", "cpu_us_per_inform"):
            values = sorted(r[key] for r in runs)
            res[key] = statistics.median(values)
        print(f"  {KINDS[kind]}: informs/s " + " ".join(f"{r['informs_per_s']:.0f}" for r in runs)
              + "; CPU us/inform " + " ".join(f"{r['cpu_us_per_inform']:.2f}" for r in runs))
    peer = samples.get("aiokatcp")
    if peer and len(peer) == len(samples.get("async", [])):
        # Ratios per round (the same moment's load), then their median.
        for kind in kinds:
            if kind == "aiokatcp" or len(samples[kind]) != len(peer):
                continue
            rates = [o["informs_per_s"] / p["informs_per_s"] for o, p in zip(samples[kind], peer)]
            cpu = [p["cpu_us_per_inform"] / o["cpu_us_per_inform"]
                   for o, p in zip(samples[kind], peer)]
            results[kind]["fanout_rate_ratio"] = statistics.median(rates)
            results[kind]["fanout_cpu_ratio"] = statistics.median(cpu)


def _fmt(value: Optional[float], spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def report(results: Dict[str, Dict[str, Optional[float]]]) -> None:
    cols = [
        ("cpu_us_per_req", "CPU us/req", ".1f"),
        ("req_per_s", "req/s", ".0f"),
        ("thr_req_per_s", "req/s 10x100", ".0f"),
        ("informs_per_s", "informs/s", ".0f"),
        ("cpu_us_per_inform", "CPU us/inform", ".2f"),
        ("kb_per_conn", "KB/idle conn", ".2f"),
        ("kb_per_sensor", "KB/sensor", ".3f"),
    ]
    print()
    print(f"{'server':46}" + "".join(f"{title:>16}" for _, title, _ in cols))
    for kind, res in results.items():
        print(f"{KINDS[kind]:46}" + "".join(f"{_fmt(res.get(k), spec):>16}" for k, _, spec in cols))
    peer = results.get("aiokatcp", {})
    print()
    print("Ratios against aiokatcp (measured in this run):")

    def ratio(kind: str, key: str, inverse: bool) -> Optional[float]:
        a, b = results.get(kind, {}).get(key), peer.get(key)
        if not a or not b:
            return None
        return b / a if inverse else a / b

    # (kind, key, inverse, goal, text): inverse gives aiokatcp/ours (higher is better);
    # a goal below 1 on a plain ratio is an upper bound (ours/aiokatcp, lower is better).
    goals = [
        ("async", "cpu_us_per_req", False, 0.2, "AsyncDeviceServer CPU per request (ours/aiokatcp)"),
        ("async", "req_per_s", False, None, "AsyncDeviceServer requests/s (ours/aiokatcp)"),
        ("async", "thr_req_per_s", False, 4.0,
         "AsyncDeviceServer requests/s, 10 conn x 100 (ours/aiokatcp)"),
        ("default", "cpu_us_per_req", False, None, "DeviceServer CPU per request (ours/aiokatcp)"),
        ("default", "req_per_s", False, None, "DeviceServer requests/s (ours/aiokatcp)"),
        ("default", "thr_req_per_s", False, None,
         "DeviceServer requests/s, 10 conn x 100 (ours/aiokatcp)"),
        ("async", "informs_per_s", False, 15.0, "AsyncDeviceServer informs/s (ours/aiokatcp)"),
        ("async", "cpu_us_per_inform", True, None, "AsyncDeviceServer CPU per inform (aiokatcp/ours)"),
        ("default", "informs_per_s", False, None, "DeviceServer informs/s (ours/aiokatcp)"),
        ("default", "cpu_us_per_inform", True, None, "DeviceServer CPU per inform (aiokatcp/ours)"),
        ("async-py", "cpu_us_per_req", False, None, "AsyncDeviceServer, Python codec, CPU/req"),
        ("async-py", "informs_per_s", False, None, "AsyncDeviceServer, Python codec, informs/s"),
    ]
    for kind, key, inverse, goal, text in goals:
        if kind not in results:
            continue
        r = ratio(kind, key, inverse)
        if goal is None or r is None:
            verdict = ""
        elif goal < 1:
            verdict = f"  goal <= {goal:g}x: {'met' if r <= goal else 'NOT met'}"
        else:
            verdict = f"  goal >= {goal:g}x: {'met' if r >= goal else 'NOT met'}"
        print(f"  {text:62} {_fmt(r, '.3f')}x{verdict}")
    for kind in ("async", "default", "async-py"):
        res = results.get(kind)
        if not res:
            continue
        if res.get("fanout_rate_ratio") is not None:
            print(f"  {KINDS[kind]}: fan-out, median of per-round ratios: informs/s "
                  f"{res['fanout_rate_ratio']:.2f}x, CPU per inform "
                  f"{res['fanout_cpu_ratio']:.2f}x (aiokatcp/ours)")
        conn, sensor = res.get("kb_per_conn"), res.get("kb_per_sensor")
        if conn is not None:
            print(f"  {KINDS[kind]}: {conn:.2f} KB per idle connection "
                  f"(goal <= 16: {'met' if conn <= 16 else 'NOT met'})")
        if sensor is not None:
            print(f"  {KINDS[kind]}: {sensor:.3f} KB per sensor "
                  f"(goal <= 0.9: {'met' if sensor <= 0.9 else 'NOT met'})")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=sorted(SERVE), help=argparse.SUPPRESS)
    parser.add_argument("--servers", default="async,default,async-py,aiokatcp,transport",
                        help="comma-separated: " + ",".join(KINDS))
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10, help="informs: clients")
    parser.add_argument("--connections", type=int, default=10, help="throughput: connections")
    parser.add_argument("--inflight", type=int, default=100,
                        help="throughput: requests in flight per connection")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--fanout-repeat", type=int, default=5,
                        help="fan-out rounds (every server takes a turn in each)")
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--add-sensors", type=int, default=10000)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--steps", default=None,
                        help="comma-separated measurements to run (default: all): "
                             + ",".join(STEPS))
    args = parser.parse_args(argv)
    if args.steps is not None:
        args.steps = {s.strip() for s in args.steps.split(",") if s.strip()}
        unknown = args.steps - set(STEPS)
        if unknown:
            parser.error(f"unknown step(s): {', '.join(sorted(unknown))}")
    _raise_fd_limit()
    if args.serve:
        sys.path.insert(0, ROOT)
        SERVE[args.serve]()
        return 0
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    for kind in kinds:
        if kind not in KINDS:
            parser.error(f"unknown server {kind!r}")
    results: Dict[str, Dict[str, Optional[float]]] = {kind: {} for kind in kinds}
    servers: List[ServerProcess] = []
    try:
        for kind in kinds:
            try:
                servers.append(ServerProcess(kind, args.timeout))
            except Exception as exc:
                print(f"  {kind}: failed: {exc}", file=sys.stderr)
        for server in servers:
            print(f"benchmarking {KINDS[server.kind]} ...", flush=True)
            results[server.kind].update(run_one(server, args))
        if args.steps is None or set(ROUND_STEPS) & args.steps:
            print(f"request rounds ({args.repeat}, interleaved) ...", flush=True)
            for kind, res in run_rounds(servers, args).items():
                results[kind].update(res)
        if args.steps is None or "informs" in args.steps:
            run_fanout(servers, args, results)
    finally:
        for server in servers:
            server.stop()
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
