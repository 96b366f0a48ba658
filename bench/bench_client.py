"""Client benchmark: katcp clients side by side with aiokatcp's Client.

Each server runs in its own process (started here, on 127.0.0.1, random port):
our ``AsyncDeviceServer`` (``--server`` picks another) and aiokatcp's
``DeviceServer``, both with an ``?echo`` request. Measured in the same run, own and aiokatcp interleaved so
that machine load hits both alike (medians of per-block/per-connect samples):

1. sequential request RTT: our ``AsyncClient`` -> our server, and aiokatcp
   ``Client`` -> aiokatcp server (goal: ratio <= 0.6 with our ``AsyncDeviceServer``,
   ``--server async``, the default; <= 0.8 with the default ``DeviceServer`` and its
   handler thread, ``--server thread``); in the same turns the floor, a bare asyncio
   ``Protocol`` client (no library: it writes the request line and waits for a read that
   ends with the reply) to each server, so the output shows how much of the RTT and of the
   client's CPU time is the client library at all;
2. ``BlockingClient.blocking_request`` RTT from a plain thread -> our server,
   against aiokatcp's async client RTT (goal: ratio <= 1.0);
3. connect + ``#version-connect`` time (goal: ratio <= 0.6): from creating the client until
   the server's protocol is known (its ``#version-connect katcp-protocol`` inform parsed) --
   ours: ``AsyncClient(...)``, ``start()``, ``await until_protocol()``; aiokatcp:
   ``await Client.connect(...)`` (constructor + ``wait_connected()``). Closing is not timed;
4. the same for ``BlockingClient`` from a plain thread (goal: ratio <= 1.0): constructor,
   ``start()`` (which starts its ioloop thread) and ``wait_protocol()``, against aiokatcp's
   ``await Client.connect`` timed inside its event loop, in alternating turns; also the
   process's CPU time per connect (our ioloop thread's included).

Wall-clock round trips on a VM are dominated by waking the peer's idle vCPU, and they swing
with the machine's load; so 1. and 3. also report the CPU time both processes spent (this
client process, ``time.process_time``; the server process, all its threads, from
``/proc/PID/task/*/schedstat`` on Linux): per request, and per connection opened and
closed. That ratio holds under load.

Usage: ``python bench/bench_client.py [--requests N] [--connects N] [--repeats N]
[--server async|managed|thread]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import aiokatcp  # noqa: E402
import tornado.ioloop  # noqa: E402
from pmqos import pm_qos_zero  # noqa: E402
from procstat import run_ns  # noqa: E402

from katcp.client import AsyncClient, BlockingClient  # noqa: E402
from katcp.core import Message  # noqa: E402

OWN_SERVER = r'''
import asyncio
import sys
sys.path.insert(0, sys.argv[1])
import tornado.ioloop
from katcp.server import AsyncDeviceServer, DeviceServer

kind = sys.argv[2]
base = AsyncDeviceServer if kind == "async" else DeviceServer

class Server(base):
    VERSION_INFO = ("bench", 1, 0)
    BUILD_INFO = ("bench", 1, 0, "")

    def setup_sensors(self):
        pass

    def request_echo(self, req, msg):
        """Reply with the arguments."""
        return req.make_reply("ok", *msg.arguments)

async def serve_async():
    server = Server("127.0.0.1", 0)
    server.set_ioloop(tornado.ioloop.IOLoop.current())
    started = server.start()
    if started is not None:
        await started
    print(server.bind_address[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    stopped = server.stop()
    if stopped is not None:
        await stopped

if kind == "async":
    asyncio.run(serve_async())
else:
    server = Server("127.0.0.1", 0)
    if kind == "managed":
        server.set_concurrency_options(thread_safe=False, handler_thread=False)
    server.start(timeout=10)
    print(server.bind_address[1], flush=True)
    sys.stdin.read()
    server.stop(timeout=5)
    server.join(timeout=5)
'''

AIOKATCP_SERVER = r'''
import asyncio
import sys
from typing import Tuple
import aiokatcp

class Server(aiokatcp.DeviceServer):
    VERSION = "bench-1.0"
    BUILD_STATE = "bench-1.0.0"

    async def request_echo(self, ctx, *args: str) -> Tuple[str, ...]:
        """Reply with the arguments."""
        return tuple(args)

async def main():
    server = Server("127.0.0.1", 0)
    await server.start()
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop()

asyncio.run(main())
'''


#: Our server kinds (``--server``) and how the report names them.
SERVER_KINDS = {"async": "AsyncDeviceServer", "managed": "DeviceServer, managed ioloop, inline",
                "thread": "DeviceServer (handler thread)"}
#: Goal of the sequential RTT ratio per server kind (issue 17).
GOAL_RTT = {"async": 0.6, "managed": 0.6, "thread": 0.8}


class ServerProcess:
    """A benchmark server in a subprocess; ``port`` is where it listens."""

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, cwd="/")
        line: list = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(30)
        if not line or not line[0].strip():
            self.proc.kill()
            raise RuntimeError("benchmark server did not start")
        self.port = int(line[0])

    def cpu_ns(self) -> int | None:
        """CPU time the server process has used so far, all threads (None: not on Linux)."""
        return run_ns(self.proc.pid)

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait(10)


class Cpu:
    """CPU time of this process and of one server process, per operation, in blocks."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.client: list = []
        self.serv: list = []

    def start(self) -> None:
        self._c0 = time.process_time()
        self._s0 = self.server.cpu_ns()

    def stop(self, n: int) -> None:
        self.client.append((time.process_time() - self._c0) / n)
        s1 = self.server.cpu_ns()
        if s1 is not None and self._s0 is not None:
            self.serv.append((s1 - self._s0) / 1e9 / n)


class BareClient(asyncio.BufferedProtocol):
    """The floor: a bare asyncio protocol doing the same ``?echo`` ping-pong, no library.

    It writes ``?echo[N] x`` and takes the first read that ends a line holding
    ``!echo[N]`` as the reply; no parsing, no message objects, no timeouts.  A
    ``BufferedProtocol`` reading into one buffer, as both libraries do (a plain
    ``Protocol`` has asyncio allocate 256 KiB per read, which costs more than a library).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.expect = b""
        self.buf = b""
        self.mid = 0
        self.rbuf = memoryview(bytearray(65536))

    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.rbuf

    def buffer_updated(self, nbytes: int) -> None:
        buf = self.buf + self.rbuf[:nbytes]
        if buf[-1:] != b"\n":
            self.buf = buf
            return
        self.buf = b""
        waiter = self.waiter
        if waiter is not None and self.expect in buf:
            self.waiter = None
            waiter.set_result(buf)

    def request(self) -> asyncio.Future:
        self.mid += 1
        self.expect = b"!echo[%d] ok x" % self.mid
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        self.transport.write(b"?echo[%d] x\n" % self.mid)
        return waiter

    @classmethod
    async def connect(cls, port: int) -> BareClient:
        _, bare = await asyncio.get_running_loop().create_connection(cls, "127.0.0.1", port)
        await asyncio.wait_for(bare.request(), 10)  # (after the greeting informs)
        return bare


async def _timed_block(request, block: int, times: list, cpu: Cpu | None) -> None:
    """``block`` sequential requests; their mean time appended to ``times``."""
    if cpu:
        cpu.start()
    t0 = time.perf_counter()
    for _ in range(block):
        await request()
    times.append((time.perf_counter() - t0) / block)
    if cpu:
        cpu.stop(block)


async def rtt_pair(own_port: int, aio_port: int, n: int, block: int = 200,
                   cpu: tuple | None = None, floor: tuple | None = None):
    """Sequential RTTs, own and aiokatcp interleaved in blocks; per-block means.

    With ``cpu`` (a :class:`Cpu` for each), also the CPU time per request.  With
    ``floor`` (two lists, and two :class:`Cpu` or None), also the RTTs of a
    :class:`BareClient` to our server and to aiokatcp's, in the same turns.
    """
    own_cpu, aio_cpu = cpu if cpu is not None else (None, None)
    floor_own, floor_aio, floor_own_cpu, floor_aio_cpu = (
        floor if floor is not None else ([], [], None, None))
    bare_own = await BareClient.connect(own_port) if floor is not None else None
    bare_aio = await BareClient.connect(aio_port) if floor is not None else None
    own = AsyncClient("127.0.0.1", own_port, timeout=10)
    own.set_ioloop(tornado.ioloop.IOLoop.current())
    own.start()
    await own.until_protocol(timeout=10)
    aio = await aiokatcp.Client.connect("127.0.0.1", aio_port)
    own_t: list = []
    aio_t: list = []
    for _ in range(100):
        await own.future_request(Message.request("echo", "x"))
        await aio.request("echo", "x")
    for _ in range(max(n // block, 1)):
        if own_cpu:
            own_cpu.start()
        t0 = time.perf_counter()
        for _ in range(block):
            reply, _ = await own.future_request(Message.request("echo", "x"))
        own_t.append((time.perf_counter() - t0) / block)
        if own_cpu:
            own_cpu.stop(block)
        assert reply.reply_ok(), reply
        if aio_cpu:
            aio_cpu.start()
        t0 = time.perf_counter()
        for _ in range(block):
            await aio.request("echo", "x")
        aio_t.append((time.perf_counter() - t0) / block)
        if aio_cpu:
            aio_cpu.stop(block)
        if bare_own is not None and bare_aio is not None:
            await _timed_block(bare_own.request, block, floor_own, floor_own_cpu)
            await _timed_block(bare_aio.request, block, floor_aio, floor_aio_cpu)
    for bare in (bare_own, bare_aio):
        if bare is not None and bare.transport is not None:
            bare.transport.close()
    own.stop()
    await own.until_stopped(timeout=10)
    aio.close()
    await aio.wait_closed()
    return own_t, aio_t


def blocking_rtt(port: int, n: int, block: int = 200) -> list:
    """BlockingClient RTTs from this (plain) thread; per-block means."""
    client = BlockingClient("127.0.0.1", port, timeout=10)
    client.setDaemon(True)
    client.start(timeout=10)
    times: list = []
    try:
        if not client.wait_protocol(10):
            raise RuntimeError("BlockingClient did not connect")
        for _ in range(100):
            client.blocking_request(Message.request("echo", "x"))
        for _ in range(max(n // block, 1)):
            t0 = time.perf_counter()
            for _ in range(block):
                reply, _ = client.blocking_request(Message.request("echo", "x"))
            times.append((time.perf_counter() - t0) / block)
            assert reply.reply_ok(), reply
    finally:
        client.stop(timeout=10)
        client.join(timeout=10)
    return times


async def connect_pair(own_port: int, aio_port: int, n: int, cpu: tuple | None = None):
    """Connect + #version-connect times, own and aiokatcp alternating.

    With ``cpu`` (a :class:`Cpu` for each), also the CPU time per connection opened and
    closed (the closing is not in the times).
    """
    own_cpu, aio_cpu = cpu if cpu is not None else (None, None)
    own_t: list = []
    aio_t: list = []
    ioloop = tornado.ioloop.IOLoop.current()
    for _ in range(n):
        if own_cpu:
            own_cpu.start()
        t0 = time.perf_counter()
        client = AsyncClient("127.0.0.1", own_port, timeout=10)
        client.set_ioloop(ioloop)
        client.start()
        await client.until_protocol(timeout=10)
        own_t.append(time.perf_counter() - t0)
        client.stop()
        await client.until_stopped(timeout=10)
        if own_cpu:
            own_cpu.stop(1)
            aio_cpu.start()
        t0 = time.perf_counter()
        aio = await aiokatcp.Client.connect("127.0.0.1", aio_port)
        aio_t.append(time.perf_counter() - t0)
        aio.close()
        await aio.wait_closed()
        if aio_cpu:
            aio_cpu.stop(1)
    return own_t, aio_t


def blocking_connect_pair(own_port: int, aio_port: int, n: int):
    """``BlockingClient`` start + ``wait_protocol`` (its ioloop thread included) from this
    plain thread, against ``await aiokatcp.Client.connect`` in an event loop; alternating.

    Returns wall-clock and CPU times per connect, ours then aiokatcp's.  The CPU time is
    this process's (``time.process_time``: every thread, so our ioloop thread's share is
    in it; each server runs in a process of its own), which machine load disturbs less
    than the wall clock: a wall-clock connect is mostly hand-offs between threads and
    processes, whose cost depends on whether the other vCPU is busy, idle or asleep."""
    own_t: list = []
    aio_t: list = []
    own_cpu: list = []
    aio_cpu: list = []
    loop = asyncio.new_event_loop()
    cpu = time.process_time

    async def aio_connect() -> None:
        c0 = cpu()
        t0 = time.perf_counter()
        aio = await aiokatcp.Client.connect("127.0.0.1", aio_port)
        aio_t.append(time.perf_counter() - t0)
        aio_cpu.append(cpu() - c0)
        aio.close()
        await aio.wait_closed()

    try:
        for _ in range(n):
            c0 = cpu()
            t0 = time.perf_counter()
            client = BlockingClient("127.0.0.1", own_port, timeout=10)
            client.start(timeout=10)
            if not client.wait_protocol(10):
                raise RuntimeError("BlockingClient did not connect")
            own_t.append(time.perf_counter() - t0)
            own_cpu.append(cpu() - c0)
            client.stop(timeout=10)
            client.join(timeout=10)
            loop.run_until_complete(aio_connect())
    finally:
        loop.close()
    return own_t, aio_t, own_cpu, aio_cpu


def fmt(values: list) -> str:
    return (f"median {statistics.median(values) * 1e6:8.1f} us, "
            f"best {min(values) * 1e6:8.1f} us")


def cpu_lines(what: str, own: Cpu, aio: Cpu) -> list:
    """Report lines of the CPU per operation (client + server processes), and the ratio."""
    med = statistics.median
    if not own.serv or not aio.serv:
        return [f"CPU per {what}: server CPU time not available (needs Linux /proc)"]
    ours = med(own.client) + med(own.serv)
    theirs = med(aio.client) + med(aio.serv)
    return [
        f"CPU per {what:10s} katcp   : {ours * 1e6:8.1f} us (client {med(own.client) * 1e6:.1f}"
        f" + server {med(own.serv) * 1e6:.1f})",
        f"CPU per {what:10s} aiokatcp: {theirs * 1e6:8.1f} us (client {med(aio.client) * 1e6:.1f}"
        f" + server {med(aio.serv) * 1e6:.1f})",
        f"  ratio katcp/aiokatcp = {ours / theirs:.2f}  (client {med(own.client) / med(aio.client):.2f},"
        f" server {med(own.serv) / med(aio.serv):.2f})",
    ]


def floor_lines(own: list, aio: list, cpu: tuple, floor: tuple) -> list:
    """Report lines of the floor (a bare asyncio Protocol client) against each server."""
    med = statistics.median
    f_own, f_aio, c_own, c_aio = floor
    lines = [
        f"floor RTT       bare protocol     -> katcp server   : {fmt(f_own)}",
        f"floor RTT       bare protocol     -> aiokatcp server: {fmt(f_aio)}",
        f"  client library on top of the floor (wall): katcp {(med(own) - med(f_own)) * 1e6:.1f} us,"
        f" aiokatcp {(med(aio) - med(f_aio)) * 1e6:.1f} us",
    ]
    if c_own.client and c_aio.client:
        own_c, aio_c = med(cpu[0].client), med(cpu[1].client)
        lines.append(
            f"  client CPU per request: bare protocol {med(c_own.client) * 1e6:.1f} us (to katcp),"
            f" {med(c_aio.client) * 1e6:.1f} us (to aiokatcp); katcp AsyncClient {own_c * 1e6:.1f} us,"
            f" aiokatcp Client {aio_c * 1e6:.1f} us")
        lines.append(
            f"  client CPU above the floor: katcp {(own_c - med(c_own.client)) * 1e6:.1f} us,"
            f" aiokatcp {(aio_c - med(c_aio.client)) * 1e6:.1f} us")
    if c_own.serv and c_aio.serv:
        lines.append(
            f"  server CPU per bare request: katcp {med(c_own.serv) * 1e6:.1f} us,"
            f" aiokatcp {med(c_aio.serv) * 1e6:.1f} us")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--connects", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--server", choices=SERVER_KINDS, default="async",
                        help="our server: AsyncDeviceServer in its process's asyncio loop "
                             "(async, the default), DeviceServer in a managed ioloop thread "
                             "with handlers inline (managed), or the default DeviceServer "
                             "with its handler thread (thread)")
    parser.add_argument("--pm-qos", action="store_true",
                        help="hold a PM QoS request of 0 us while measuring (pmqos.py; needs "
                             "root): idle vCPUs poll, so wake-ups do not dominate the RTTs")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the medians to FILE, for bench/plot.py")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.pm_qos:
            qos = stack.enter_context(pm_qos_zero())
            print(f"PM QoS request of 0 us: {qos}")
        print(f"load average at the start: {os.getloadavg()[0]:.2f}")
        run(args)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")


def run(args: argparse.Namespace) -> None:
    """Measure and print (see the module docstring)."""
    own_server = ServerProcess(OWN_SERVER, ROOT, args.server)
    aio_server = ServerProcess(AIOKATCP_SERVER)
    own: list = []
    aio: list = []
    blk: list = []
    own_c: list = []
    aio_c: list = []
    own_b: list = []
    aio_b: list = []
    own_bc: list = []
    aio_bc: list = []
    runs_b: list = []  # per run: (wall ratio, CPU ratio) of the BlockingClient connects
    rtt_cpu = (Cpu(own_server), Cpu(aio_server))
    floor = ([], [], Cpu(own_server), Cpu(aio_server))
    connect_cpu = (Cpu(own_server), Cpu(aio_server))
    try:
        for _ in range(args.repeats):
            o, a = asyncio.run(rtt_pair(own_server.port, aio_server.port, args.requests,
                                        cpu=rtt_cpu, floor=floor))
            own += o
            aio += a
            blk += blocking_rtt(own_server.port, args.requests)
            o, a = asyncio.run(connect_pair(own_server.port, aio_server.port, args.connects,
                                            cpu=connect_cpu))
            own_c += o
            aio_c += a
            o, a, oc, ac = blocking_connect_pair(own_server.port, aio_server.port,
                                                 max(args.connects // 3, 1))
            own_b += o
            aio_b += a
            own_bc += oc
            aio_bc += ac
            runs_b.append((statistics.median(o) / statistics.median(a),
                           statistics.median(oc) / statistics.median(ac)))
    finally:
        own_server.close()
        aio_server.close()

    med = statistics.median
    server = SERVER_KINDS[args.server]
    print(f"requests per run: {args.requests}, connects per run: {args.connects} "
          f"(BlockingClient: {max(args.connects // 3, 1)}), runs: {args.repeats}; "
          f"each server in its own process; own and aiokatcp interleaved; our server: {server}")
    print(f"sequential RTT  katcp AsyncClient -> katcp server   : {fmt(own)}")
    print(f"sequential RTT  aiokatcp Client   -> aiokatcp server: {fmt(aio)}")
    print(f"  ratio katcp/aiokatcp = {med(own) / med(aio):.2f}  (goal <= {GOAL_RTT[args.server]:.2f})")
    for line in cpu_lines("request", *rtt_cpu):
        print(line)
    for line in floor_lines(own, aio, rtt_cpu, floor):
        print(line)
    print(f"blocking RTT    katcp BlockingClient (plain thread) : {fmt(blk)}")
    print(f"  ratio BlockingClient/aiokatcp async = {med(blk) / med(aio):.2f}  (goal <= 1.00)")
    print(f"connect+version katcp AsyncClient                   : {fmt(own_c)}")
    print(f"connect+version aiokatcp Client                     : {fmt(aio_c)}")
    print(f"  ratio katcp/aiokatcp = {med(own_c) / med(aio_c):.2f}  (goal <= 0.60)")
    for line in cpu_lines("connection", *connect_cpu):
        print(line)
    print(f"connect+version katcp BlockingClient (with thread)  : {fmt(own_b)}")
    print(f"connect+version aiokatcp Client (same turns)        : {fmt(aio_b)}")
    print(f"  ratio BlockingClient/aiokatcp = {med(own_b) / med(aio_b):.2f}  (goal <= 1.00); "
          f"median of the runs' ratios {med(r[0] for r in runs_b):.2f}")
    print(f"  CPU per connect (this process): BlockingClient {med(own_bc) * 1e6:.1f} us, "
          f"aiokatcp {med(aio_bc) * 1e6:.1f} us, ratio {med(own_bc) / med(aio_bc):.2f}; "
          f"median of the runs' ratios {med(r[1] for r in runs_b):.2f}")
    if args.json:
        write_json(args.json, "client", "aiokatcp", [
            ("sequential RTT", med(own), med(aio), GOAL_RTT[args.server]),
            ("BlockingClient RTT", med(blk), med(aio), 1.0),
            ("connect + #version-connect", med(own_c), med(aio_c), 0.6),
            ("BlockingClient connect", med(own_b), med(aio_b), 1.0),
        ])


def write_json(path, bench, peer, rows):
    """Results for bench/plot.py: one record per case, times in seconds (lower is better)."""
    import json
    records = [{"bench": bench, "case": case, "ours": ours, "peer": theirs, "peer_name": peer,
                "unit": "s", "lower_is_better": True, "goal_ratio": goal}
               for case, ours, theirs, goal in rows]
    with open(path, "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
